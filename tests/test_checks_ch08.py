"""The checks of notebook 08 pass a right answer, explain a stub, and name planted mistakes."""

import pytest
import torch

from tutorial_lib.checks import ExerciseCheckFailed, ch08, check_cfg_batched, check_ddim_step
from tutorial_lib.sampler import ConditionalDDIMSampler
from tutorial_lib.schedule import NoiseSchedule


def stub(*args):
    raise NotImplementedError


def test_checks_are_exported():
    assert {"check_ddim_step", "check_cfg_batched"} <= set(ch08.__all__)


# ----------------------------------------------------------------------------- DDIM step


def ddim_solution(eps, x_t, alpha_t, alpha_prev, eta, noise):
    x0 = (x_t - (1 - alpha_t).sqrt() * eps) / alpha_t.sqrt()
    sigma = eta * ((1 - alpha_prev) / (1 - alpha_t) * (1 - alpha_t / alpha_prev)).sqrt()
    direction = (1 - alpha_prev - sigma**2).sqrt() * eps
    return alpha_prev.sqrt() * x0 + direction + sigma * noise


def test_ddim_passes_on_solution():
    assert "all 5 cases pass" in check_ddim_step(ddim_solution)


def test_ddim_passes_with_python_floats_and_math():
    import math

    def with_math(eps, x_t, a, ap, eta, noise):
        a, ap = float(a), float(ap)
        x0 = (x_t - math.sqrt(1 - a) * eps) / math.sqrt(a)
        sigma = eta * math.sqrt((1 - ap) / (1 - a) * (1 - a / ap))
        return math.sqrt(ap) * x0 + math.sqrt(max(1 - ap - sigma**2, 0.0)) * eps + sigma * noise

    assert "pass" in check_ddim_step(with_math)


def test_ddim_stub_is_not_implemented():
    with pytest.raises(ExerciseCheckFailed, match="not implemented yet"):
        check_ddim_step(stub)


def _mistake(**kw):
    return lambda eps, x, a, ap, eta, z: ch08._step_variant(eps, x, a, ap, eta, z, **kw)


@pytest.mark.parametrize(
    "mistake, message",
    [
        (_mistake(sqrt_x0=False), "you divided by ᾱ_t, not by its square root"),
        (_mistake(sqrt_prev=False), "you multiplied by ᾱ', not by its square root"),
        (_mistake(eta_sq_dir=True), "a known published mistake"),
        (_mistake(dir_minus_sigma=False), "must be taken out of the direction term"),
        (_mistake(add_noise=False), r"\+ σ_t · noise"),
        (_mistake(sigma="variance"), "is the square root of"),
        (_mistake(sigma="no_eta"), "multiply by η"),
        (
            lambda eps, x, a, ap, eta, z: ddim_solution(eps, x, ap, a, eta, z),
            "alpha_t and alpha_prev are not exchanged",
        ),
        (lambda eps, x, a, ap, eta, z: x, r"Hint: x̂_0 = "),
    ],
    ids=[
        "no-sqrt-x0",
        "no-sqrt-prev",
        "eta-squared-direction",
        "sigma-not-removed",
        "no-noise",
        "sigma-squared",
        "no-eta",
        "alphas-swapped",
        "identity",
    ],
)
def test_ddim_names_planted_mistakes(mistake, message):
    with pytest.raises(ExerciseCheckFailed, match=message):
        check_ddim_step(mistake)


def test_ddim_reference_is_the_package_step_and_the_equations():
    schedule = NoiseSchedule()
    sampler = ConditionalDDIMSampler(lambda *a: None, schedule)
    for case in ch08._step_cases():
        eps, x, a, ap, eta, z = case.args
        ref = ch08._reference_step(*case.args)
        assert torch.allclose(ref, ddim_solution(*case.args), atol=1e-5)
        t, tp = ch08._timestep_of(a), ch08._timestep_of(ap)
        assert torch.equal(ref, sampler.step(eps, t, x, tp, eta=eta, variance_noise=z if eta else None).prev_sample)


# ----------------------------------------------------------------------------- CFG batched


def cfg_solution(denoiser, x, t, cond, uncond, scale):
    out = denoiser(torch.cat([x, x]), torch.cat([t, t]), torch.cat([uncond, cond]))
    eps_u, eps_c = out.chunk(2)
    return eps_u + scale * (eps_c - eps_u)


def test_cfg_passes_on_solution():
    assert "all 4 cases pass" in check_cfg_batched(cfg_solution)


def test_cfg_stub_is_not_implemented():
    with pytest.raises(ExerciseCheckFailed, match="not implemented yet"):
        check_cfg_batched(stub)


def swapped(denoiser, x, t, cond, uncond, scale):
    out = denoiser(torch.cat([x, x]), torch.cat([t, t]), torch.cat([uncond, cond]))
    eps_c, eps_u = out.chunk(2)  # planted: the chunks in the wrong order
    return eps_u + scale * (eps_c - eps_u)


def wrong_base(denoiser, x, t, cond, uncond, scale):
    eps_u, eps_c = denoiser(torch.cat([x, x]), torch.cat([t, t]), torch.cat([uncond, cond])).chunk(2)
    return eps_c + scale * (eps_c - eps_u)


def unsplit(denoiser, x, t, cond, uncond, scale):
    return denoiser(torch.cat([x, x]), torch.cat([t, t]), torch.cat([uncond, cond]))


def two_passes(denoiser, x, t, cond, uncond, scale):
    eps_u, eps_c = denoiser(x, t, uncond), denoiser(x, t, cond)
    return eps_u + scale * (eps_c - eps_u)


def t_not_doubled(denoiser, x, t, cond, uncond, scale):
    eps_u, eps_c = denoiser(torch.cat([x, x]), t, torch.cat([uncond, cond])).chunk(2)
    return eps_u + scale * (eps_c - eps_u)


@pytest.mark.parametrize(
    "mistake, message",
    [
        (swapped, "the halves are swapped"),
        (wrong_base, "CFG starts from the unconditional prediction"),
        (unsplit, "you returned the doubled batch"),
        (two_passes, "called 2 time"),
        (t_not_doubled, r"one timestep per row of x"),
    ],
    ids=["swapped", "wrong-base", "unsplit", "two-passes", "t-not-doubled"],
)
def test_cfg_names_planted_mistakes(mistake, message):
    with pytest.raises(ExerciseCheckFailed, match=message):
        check_cfg_batched(mistake)


def test_cfg_cases_have_distinct_branches():
    """A swap is only detectable if ε_c ≠ ε_u in every case."""
    model = ch08._oracle()
    for case in ch08._cfg_cases():
        x, t, cond, uncond, _ = case.args
        assert (model(x, t, cond) - model(x, t, uncond)).abs().max() > 1e-2
