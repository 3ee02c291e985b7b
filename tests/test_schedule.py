"""NoiseSchedule: parity with the installed diffusers.DDIMScheduler, round trips, bad input."""

import pytest
import torch
from diffusers import DDIMScheduler

from tutorial_lib.schedule import NoiseSchedule

SCHEDULES = [
    dict(beta_schedule="linear"),
    dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
    dict(beta_schedule="squaredcos_cap_v2"),
    dict(beta_schedule="linear", num_train_timesteps=100, beta_start=1e-3, beta_end=0.05),
]


def _diffusers(**kw) -> DDIMScheduler:
    return DDIMScheduler(**kw)


@pytest.mark.parametrize("cfg", SCHEDULES)
def test_betas_and_alphas_cumprod_equal_diffusers(cfg):
    ours, ref = NoiseSchedule(**cfg), _diffusers(**cfg)
    for name in ("betas", "alphas", "alphas_cumprod"):
        a, b = getattr(ours, name), getattr(ref, name)
        assert a.dtype == b.dtype == torch.float32
        assert torch.equal(a, b), name
    assert torch.equal(ours.final_alpha_cumprod, ref.final_alpha_cumprod)


def test_cosine_alias_and_set_alpha_to_one_false():
    assert torch.equal(
        NoiseSchedule(beta_schedule="cosine").betas,
        _diffusers(beta_schedule="squaredcos_cap_v2").betas,
    )
    assert NoiseSchedule(beta_schedule="cosine").beta_schedule == "squaredcos_cap_v2"
    ours, ref = NoiseSchedule(set_alpha_to_one=False), _diffusers(set_alpha_to_one=False)
    assert torch.equal(ours.final_alpha_cumprod, ref.final_alpha_cumprod)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 25, 50, 999, 1000])
@pytest.mark.parametrize("offset", [0, 1])
def test_timesteps_equal_set_timesteps(spacing, n, offset):
    ours = NoiseSchedule()
    if spacing == "leading" and offset == 1 and n == 1000:
        # diffusers returns 1000 as the first timestep, an index past ᾱ's end; we refuse.
        with pytest.raises(ValueError, match="steps_offset"):
            ours.timesteps(n, spacing, offset)
        return
    ref = _diffusers(timestep_spacing=spacing, steps_offset=offset)
    ref.set_timesteps(n)
    got = ours.timesteps(n, timestep_spacing=spacing, steps_offset=offset)
    assert got.dtype == torch.int64
    assert torch.equal(got, ref.timesteps)
    assert len(got) == n and bool((got[:-1] > got[1:]).all())


def test_timesteps_small_T_every_n():
    ours = NoiseSchedule(num_train_timesteps=37)
    for spacing in ("leading", "trailing", "linspace"):
        ref = _diffusers(num_train_timesteps=37, timestep_spacing=spacing)
        for n in range(1, 38):
            ref.set_timesteps(n)
            if len(ref.timesteps) == n:
                assert torch.equal(ours.timesteps(n, spacing), ref.timesteps), (spacing, n)


def test_diffusers_trailing_quirk_extra_minus_one():
    """diffusers' trailing spacing yields n+1 steps ending in -1 for some n (61 at T=1000);
    -1 then indexes alphas_cumprod[-1], the noisiest level. We return the first n."""
    ref = _diffusers(timestep_spacing="trailing")
    ref.set_timesteps(61)
    assert len(ref.timesteps) == 62 and int(ref.timesteps[-1]) == -1  # the quirk, as installed
    ours = NoiseSchedule().timesteps(61, "trailing")
    assert len(ours) == 61 and torch.equal(ours, ref.timesteps[:61]) and int(ours.min()) >= 0


@pytest.mark.parametrize("cfg", SCHEDULES[:3])
def test_add_noise_and_velocity_equal_diffusers(cfg):
    ours, ref = NoiseSchedule(**cfg), _diffusers(**cfg)
    g = torch.Generator().manual_seed(0)
    for shape in [(3, 2, 4, 4), (5, 2)]:
        x0, noise = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
        t = torch.randint(0, 1000, (shape[0],), generator=g)
        assert torch.equal(ours.add_noise(x0, noise, t), ref.add_noise(x0, noise, t))
        assert torch.equal(ours.get_velocity(x0, noise, t), ref.get_velocity(x0, noise, t))
    x0, noise = torch.randn(2, 3, generator=g), torch.randn(2, 3, generator=g)
    assert torch.equal(ours.add_noise(x0, noise, 500), ref.add_noise(x0, noise, torch.tensor(500)))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_predict_x0_and_eps_invert_the_forward_process(prediction_type):
    s = NoiseSchedule()
    g = torch.Generator().manual_seed(1)
    x0, eps = (
        torch.randn(4, 3, 2, 2, dtype=torch.float64, generator=g),
        torch.randn(4, 3, 2, 2, dtype=torch.float64, generator=g),
    )
    t = torch.tensor([0, 10, 500, 999])
    x_t = s.add_noise(x0, eps, t)
    target = {"epsilon": eps, "v_prediction": s.get_velocity(x0, eps, t), "sample": x0}[
        prediction_type
    ]
    torch.testing.assert_close(s.predict_x0(target, x_t, t, prediction_type), x0)
    if prediction_type == "sample":  # ε from x_0 divides by √(1−ᾱ_0) = 0.01: looser
        torch.testing.assert_close(
            s.predict_eps(target, x_t, t, prediction_type), eps, rtol=1e-6, atol=1e-6
        )
    else:
        torch.testing.assert_close(s.predict_eps(target, x_t, t, prediction_type), eps)


def test_config_round_trip():
    s = NoiseSchedule(num_train_timesteps=200, beta_schedule="cosine", set_alpha_to_one=False)
    cfg = s.to_config()
    assert cfg["beta_schedule"] == "squaredcos_cap_v2"
    s2 = NoiseSchedule.from_config(cfg)
    assert s2.to_config() == cfg and torch.equal(s2.alphas_cumprod, s.alphas_cumprod)
    assert "NoiseSchedule(" in repr(s)
    with pytest.raises(ValueError, match="unknown keys"):
        NoiseSchedule.from_config({**cfg, "clip_sample": True})
    with pytest.raises(TypeError, match="config"):
        NoiseSchedule.from_config([("beta_schedule", "linear")])


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (dict(beta_schedule="quadratic"), ValueError, "beta_schedule"),
        (dict(beta_schedule=3), TypeError, "beta_schedule"),
        (dict(num_train_timesteps=0), ValueError, "num_train_timesteps"),
        (dict(num_train_timesteps=10.0), TypeError, "num_train_timesteps"),
        (dict(beta_start=0.1, beta_end=0.01), ValueError, "beta_start"),
        (dict(beta_end=float("nan")), ValueError, "beta_end"),
        (dict(set_alpha_to_one=1), TypeError, "set_alpha_to_one"),
    ],
)
def test_bad_constructor_arguments(kwargs, err, match):
    with pytest.raises(err, match=match):
        NoiseSchedule(**kwargs)


def test_bad_timesteps_and_noise_arguments():
    s = NoiseSchedule(num_train_timesteps=100)
    with pytest.raises(ValueError, match=r"num_inference_steps must be in \[1, 100\]"):
        s.timesteps(0)
    with pytest.raises(ValueError, match="num_inference_steps"):
        s.timesteps(101)
    with pytest.raises(TypeError, match="num_inference_steps"):
        s.timesteps(10.0)
    with pytest.raises(ValueError, match="timestep_spacing"):
        s.timesteps(10, "uniform")
    with pytest.raises(ValueError, match="steps_offset"):
        s.timesteps(10, "leading", -1)
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="noise"):
        s.add_noise(x, torch.zeros(2, 4), 5)
    with pytest.raises(ValueError, match=r"t must lie in \[0, 99\]"):
        s.add_noise(x, x, torch.tensor([0, 100]))
    with pytest.raises(ValueError, match="t must be in"):
        s.add_noise(x, x, -1)
    with pytest.raises(TypeError, match="integer tensor"):
        s.add_noise(x, x, torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="one timestep per sample"):
        s.add_noise(x, x, torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match="x0"):
        s.add_noise(torch.zeros(2, 3, dtype=torch.long), x, 1)
    with pytest.raises(ValueError, match="prediction_type"):
        s.predict_x0(x, x, 1, "score")
