"""Checks for the exercises of notebook 08 (the full sampler).

* ``check_ddim_step(my_ddim_step)``: one DDIM update
  ``my_ddim_step(eps, x_t, alpha_t, alpha_prev, eta, noise) -> x_prev`` from the
  equations (Song et al. 2021, eqs. 12 and 16), checked against the package's
  ``ConditionalDDIMSampler.step``. Recognised mistakes: a missing square root on
  ᾱ, σ_t without η or squared twice, a direction term that forgets σ_t², the
  direction coefficient √(1 − ᾱ' − η²(1 − ᾱ_t)/ᾱ_t · (ᾱ_t − ᾱ')) that a published DDIM step
  uses, a missing noise term, ᾱ_t and ᾱ' swapped.
* ``check_cfg_batched(my_cfg_batched)``: classifier-free guidance with the batch
  trick, ``my_cfg_batched(denoiser, x, t, cond, uncond, scale) -> guided ε``: one
  denoiser call on the doubled batch, split, combined. Recognised mistakes: the
  chunks swapped (conditional and unconditional reversed), γ applied to the wrong
  base, γ ignored, the doubled batch returned unsplit, two calls instead of one.

The DDIM cases use ᾱ values of the course's schedule (``NoiseSchedule()``, linear,
T = 1000) and random tensors as *inputs* (ε̂ is any tensor for checking the
arithmetic). The CFG cases use a real denoiser: the exact ε of notebook 05's 2-D
Gaussian mixture (``OracleDenoiser``), whose conditional and unconditional
predictions differ, so a swap cannot go unnoticed.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from ..guidance import cfg_combine
from ..mixture import OracleDenoiser, example_mixture_2d
from ..sampler import ConditionalDDIMSampler
from ..schedule import NoiseSchedule
from ._core import Case, fail, run_cases

__all__ = ["check_ddim_step", "check_cfg_batched"]


# ------------------------------------------------------------------------- DDIM step

_STEP = "Exercise 1 (my_ddim_step)"


@lru_cache(maxsize=None)
def _schedule() -> NoiseSchedule:
    return NoiseSchedule()


def _timestep_of(alpha: torch.Tensor) -> int:
    """The training timestep whose ᾱ is ``alpha`` (−1 for the final ᾱ = 1)."""
    schedule = _schedule()
    if float(alpha) == float(schedule.final_alpha_cumprod):
        return -1
    hits = (schedule.alphas_cumprod == alpha).nonzero().flatten()
    if hits.numel() != 1:
        raise ValueError("alpha is not a value of the course's schedule")
    return int(hits[0])


def _reference_step(eps, x_t, alpha_t, alpha_prev, eta, noise):
    """The package's step on the same numbers: look the timesteps up, call ``step``."""
    sampler = ConditionalDDIMSampler(lambda *a: None, _schedule())
    t, t_prev = _timestep_of(alpha_t), _timestep_of(alpha_prev)
    out = sampler.step(eps, t, x_t, t_prev, eta=eta, variance_noise=noise if eta > 0 else None)
    return out.prev_sample


def _step_cases() -> list[Case]:
    schedule = _schedule()
    acp = schedule.alphas_cumprod
    g = torch.Generator().manual_seed(8)
    cases = []
    for name, t, t_prev, eta in (
        ("eta=0, t=500 -> 400", 500, 400, 0.0),
        ("eta=0, last step t=20 -> the clean end (alpha_prev = 1)", 20, -1, 0.0),
        ("eta=1, t=900 -> 800", 900, 800, 1.0),
        ("eta=0.5, t=300 -> 250", 300, 250, 0.5),
        ("eta=1 with all steps (DDPM), t=10 -> 9", 10, 9, 1.0),
    ):
        a_t = acp[t].clone()
        a_prev = acp[t_prev].clone() if t_prev >= 0 else schedule.final_alpha_cumprod.clone()
        # Inputs: a clean-looking x_0 in [-1, 1], the forward process to x_t, and an ε̂ that
        # is the true noise plus an error (what a good model's prediction looks like).
        x0 = torch.rand(2, 3, 8, 8, generator=g) * 2 - 1
        true_eps = torch.randn(2, 3, 8, 8, generator=g)
        x_t = a_t.sqrt() * x0 + (1 - a_t).sqrt() * true_eps
        eps = true_eps + 0.3 * torch.randn(2, 3, 8, 8, generator=g)
        noise = torch.randn(2, 3, 8, 8, generator=g)
        cases.append(Case(name, (eps, x_t, a_t, a_prev, eta, noise)))
    return cases


def _step_variant(eps, x, a, ap, eta, z, *, sqrt_x0=True, sqrt_prev=True, sigma="ddim",
                  dir_minus_sigma=True, add_noise=True, eta_sq_dir=False):
    """The DDIM step with one deliberate change (for recognising mistakes)."""
    a_x0 = a.sqrt() if sqrt_x0 else a
    x0 = (x - (1 - a).sqrt() * eps) / a_x0
    var = (1 - ap) / (1 - a) * (1 - a / ap)
    if sigma == "ddim":
        s = eta * var.sqrt()
    elif sigma == "no_eta":
        s = var.sqrt()
    elif sigma == "variance":  # σ² used where σ belongs
        s = eta * var
    elif sigma == "swapped":  # ᾱ_t and ᾱ' exchanged inside σ_t
        s = eta * ((1 - a) / (1 - ap) * (1 - ap / a)).clamp(min=0).sqrt()
    else:
        raise ValueError(sigma)
    if eta_sq_dir:  # √(1 − ᾱ' − η²(1 − ᾱ_t)/ᾱ_t · (ᾱ_t − ᾱ')): adds noise instead of removing σ²
        coef2 = 1 - ap - eta**2 * (1 - a) / a * (a - ap)
    elif dir_minus_sigma:
        coef2 = 1 - ap - s**2
    else:
        coef2 = 1 - ap
    out = (ap.sqrt() if sqrt_prev else ap) * x0 + coef2.clamp(min=0).sqrt() * eps
    return out + s * z if add_noise else out


def _diagnose_step(case: Case, got: torch.Tensor) -> str | None:
    eps, x, a, ap, eta, z = case.args
    if got.shape != x.shape:
        return "return x_prev, one value per entry of x_t: the same shape as x_t."
    if not torch.isfinite(got).all():
        return (
            "NaN usually means the square root of a negative number: σ_t² = "
            "(1 − ᾱ')/(1 − ᾱ_t) · (1 − ᾱ_t/ᾱ') is ≥ 0 because ᾱ' ≥ ᾱ_t (the previous timestep "
            "is less noisy); check that alpha_t and alpha_prev are not exchanged."
        )

    def close(**kw):
        v = _step_variant(eps, x, a, ap, eta, z, **kw)
        return bool(torch.isfinite(v).all()) and torch.allclose(got, v, atol=1e-5, rtol=1e-4)

    if close(sqrt_x0=False):
        return "x̂_0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t: you divided by ᾱ_t, not by its square root."
    if close(sqrt_prev=False):
        return "x_prev starts with √ᾱ' · x̂_0: you multiplied by ᾱ', not by its square root."
    if close(sqrt_x0=False, sqrt_prev=False):
        return "both ᾱ's need a square root: x̂_0 divides by √ᾱ_t and x_prev multiplies by √ᾱ'."
    if eta != 1 and close(sigma="no_eta"):
        return "σ_t = η · √(...): multiply by η (η = 0 is deterministic DDIM, η = 1 is DDPM)."
    if eta > 0:
        if close(eta_sq_dir=True):
            return (
                "that direction coefficient, √(1 − ᾱ' − η²(1 − ᾱ_t)/ᾱ_t · (ᾱ_t − ᾱ')), is a known published "
                "mistake (notebook 08 measures it): it is not √(1 − ᾱ' − σ_t²), and with η > 0 it adds "
                "too much noise."
            )
        if close(dir_minus_sigma=False):
            return (
                "the direction term is √(1 − ᾱ' − σ_t²) ε̂: the σ_t² you add as fresh noise "
                "must be taken out of the direction term, or x_prev has too much variance."
            )
        if close(add_noise=False):
            return "with η > 0 the step adds fresh noise: + σ_t · noise."
        if close(sigma="variance"):
            return "σ_t is the square root of (1 − ᾱ')/(1 − ᾱ_t) · (1 − ᾱ_t/ᾱ'), times η."
        if close(sigma="swapped"):
            return "inside σ_t, ᾱ_t and ᾱ' are exchanged: σ_t² = (1 − ᾱ')/(1 − ᾱ_t) · (1 − ᾱ_t/ᾱ')."
    return None


def check_ddim_step(fn) -> str:
    """Check ``fn(eps, x_t, alpha_t, alpha_prev, eta, noise) -> x_prev`` against the package's step.

    ``alpha_t`` and ``alpha_prev`` are 0-d float tensors (ᾱ_t and ᾱ'), ``eta`` a float,
    ``eps``/``x_t``/``noise`` tensors of shape ``(B, C, H, W)``.
    """
    return run_cases(
        _STEP,
        fn,
        _reference_step,
        _step_cases(),
        diagnose=_diagnose_step,
        hint=(
            "x̂_0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t;  σ_t = η √((1−ᾱ')/(1−ᾱ_t)) √(1 − ᾱ_t/ᾱ');  "
            "x_prev = √ᾱ' x̂_0 + √(1 − ᾱ' − σ_t²) ε̂ + σ_t · noise."
        ),
    )


# ----------------------------------------------------------------------- CFG batched

_CFG = "Exercise 2 (my_cfg_batched)"


class _CountingDenoiser:
    """Wraps a denoiser and counts calls and rows (the exercise is: one call, 2B rows)."""

    def __init__(self, model):
        self.model = model
        self.context_dim = getattr(model, "context_dim", None)
        self.prediction_type = getattr(model, "prediction_type", "epsilon")
        self.calls = 0
        self.rows = 0

    def __call__(self, x, t, context):
        self.calls += 1
        self.rows += x.shape[0]
        if not isinstance(t, torch.Tensor) or t.ndim != 1 or t.shape[0] != x.shape[0]:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(
                f"the denoiser needs one timestep per row of x: t of shape ({x.shape[0]},), got {got}"
            )
        return self.model(x, t, context)


@lru_cache(maxsize=None)
def _oracle() -> OracleDenoiser:
    return OracleDenoiser(example_mixture_2d())


def _cfg_cases() -> list[Case]:
    mixture = _oracle().mixture
    g = torch.Generator().manual_seed(9)
    cases = []
    for name, batch, labels, ts, scale in (
        ("B=4, one timestep, scale 3", 4, [0, 1, 1, 0], [600] * 4, 3.0),
        ("B=3, a different timestep per row, scale 7.5", 3, [1, 0, 1], [900, 400, 50], 7.5),
        ("B=2, scale 0 (gives the unconditional prediction)", 2, [0, 1], [300, 300], 0.0),
        ("B=2, scale 1 (gives the conditional prediction)", 2, [1, 1], [700, 700], 1.0),
    ):
        t = torch.tensor(ts, dtype=torch.long)
        # x_t: exact samples of the noised mixture at each row's timestep
        x = torch.cat([mixture.sample_noised(1, int(s), generator=g) for s in ts]).float()
        cond = mixture.condition_context(torch.tensor(labels))
        uncond = mixture.condition_context(None, batch=batch)
        cases.append(Case(name, (x, t, cond, uncond, scale)))
    return cases


def _two_pass(x, t, cond, uncond, scale):
    model = _oracle()
    return cfg_combine(model(x, t, uncond), model(x, t, cond), scale)


def _diagnose_cfg(case: Case, got: torch.Tensor) -> str | None:
    x, t, cond, uncond, scale = case.args
    model = _oracle()
    eps_u, eps_c = model(x, t, uncond), model(x, t, cond)
    if got.shape[0] == 2 * x.shape[0]:
        return (
            "you returned the doubled batch (2B rows): split the output with .chunk(2) into the "
            "unconditional and conditional halves and combine them with the CFG formula."
        )
    if got.shape != x.shape:
        return None

    def close(v):
        return torch.allclose(got, v, atol=1e-5, rtol=1e-4)

    if scale != 0.5 and close(eps_c + scale * (eps_u - eps_c)):
        return (
            "the halves are swapped: you treated the conditional output as the unconditional one. "
            "The first chunk comes from the first context you concatenated; if the batch is "
            "torch.cat([uncond, cond]), then eps_u, eps_c = out.chunk(2)."
        )
    if scale != 1 and close(eps_c + scale * (eps_c - eps_u)):
        return "CFG starts from the unconditional prediction: ε_u + γ (ε_c − ε_u), not ε_c + γ (...)."
    if scale != 1 and close(eps_c):
        return "you returned the conditional prediction: the guidance scale has to enter, ε_u + γ (ε_c − ε_u)."
    return None


def check_cfg_batched(fn) -> str:
    """Check ``fn(denoiser, x, t, cond, uncond, scale) -> ε̃`` (CFG with one doubled batch).

    The result must equal two separate passes combined by ``cfg_combine``, and the
    denoiser must be called exactly once, on ``2B`` rows.
    """
    cases = _cfg_cases()
    message = run_cases(
        _CFG,
        lambda *args: fn(_CountingDenoiser(_oracle()), *args),
        _two_pass,
        cases,
        diagnose=_diagnose_cfg,
        hint=(
            "out = denoiser(torch.cat([x, x]), torch.cat([t, t]), torch.cat([uncond, cond])); "
            "eps_u, eps_c = out.chunk(2); return eps_u + scale * (eps_c - eps_u)."
        ),
    )
    for case in cases:
        counter = _CountingDenoiser(_oracle())
        fn(counter, *case.args)
        batch = case.args[0].shape[0]
        if counter.calls != 1 or counter.rows != 2 * batch:
            fail(
                _CFG,
                case.name,
                f"the values are right, but the denoiser was called {counter.calls} time(s) on "
                f"{counter.rows} rows in all; the batch trick is ONE call on the doubled batch "
                f"of {2 * batch} rows.",
                "concatenate x with itself, t with itself and the two contexts, call once, then split.",
            )
    return message
