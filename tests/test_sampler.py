"""ConditionalDDIMSampler: step-by-step parity with diffusers.DDIMScheduler, guidance paths, bad input.

About diffusers' previous timestep: ``DDIMScheduler.step`` computes the previous
timestep as ``t - T // num_inference_steps``. That is the next entry of the
timestep list only for "leading" spacing (and "trailing" when n divides T).
For "linspace" (999, 888, …, 0 at n = 10) diffusers steps to ᾱ_{899} and then
calls the model at t = 888: the sample's noise level and the model's timestep
disagree. So the trajectory is compared

- with a loop over the installed ``diffusers.DDIMScheduler.step`` wherever its
  previous timestep is the next list entry, and
- everywhere with ``ddim_reference_step`` below: the DDIM equations (Song et al.
  2021, eqs. 12 and 16) written out independently, whose previous timestep is
  the next list entry (ᾱ = final_alpha_cumprod after the last). The reference is
  itself checked against diffusers where diffusers is right.
"""

import pytest
import torch
from diffusers import DDIMScheduler
from diffusers.guiders.guider_utils import rescale_noise_cfg as diffusers_rescale_noise_cfg

from tutorial_lib.guidance import classifier_log_prob_grad
from tutorial_lib.guiders import (
    ClassifierFreeGuidance,
    ClassifierGuidance,
    WeightedPromptsGuidance,
)
from tutorial_lib.sampler import ConditionalDDIMSampler, DDIMStepOutput, SamplerConfig, Trajectory
from tutorial_lib.schedule import NoiseSchedule

torch.set_num_threads(1)
B, C, H, W, N, D = 2, 3, 6, 6, 4, 8
SHAPE = (B, C, H, W)
STEPS = 10


class TinyDenoiser(torch.nn.Module):
    """A fixed small conv net with the denoiser protocol; counts its calls and rows.

    Its prediction is the exact one for Gaussian data x_0 ~ N(0, σ_d² I) plus a small
    context- and time-dependent conv perturbation, so trajectories stay O(1) like a
    trained model's (a raw random net makes x̂_0 explode and float32 tolerances meaningless).
    """

    def __init__(self, prediction_type="epsilon", context_dim=D, channels=C, sigma_data=0.5):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = torch.nn.Conv2d(channels, channels, 3, padding=1)
        self.ctx = torch.nn.Linear(context_dim, channels)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
        self.register_buffer("alphas_cumprod", NoiseSchedule().alphas_cumprod)
        self.sigma_data = sigma_data
        self.prediction_type = prediction_type
        self.context_dim = context_dim
        self.calls = self.rows = 0

    def forward(self, x, t, context):
        self.calls += 1
        self.rows += x.shape[0]
        a = self.alphas_cumprod[t][:, None, None, None]
        s = a * self.sigma_data**2 + 1 - a
        time = torch.cos(t.float() / 300)[:, None, None, None]
        eps = (1 - a).sqrt() * x / s + 0.3 * torch.tanh(
            self.conv(x) + self.ctx(context.mean(1))[:, :, None, None] * time
        )
        if self.prediction_type == "epsilon":
            return eps
        x0 = (
            (x - (1 - a).sqrt() * eps) * a.sqrt() / (a + 1e-3)
        )  # bounded version of (x − √(1−ᾱ)ε)/√ᾱ
        return a.sqrt() * eps - (1 - a).sqrt() * x0


class PointDenoiser(torch.nn.Module):
    """The same idea for 2-D points (B, 2) with a (B, 1, D) context."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.lin, self.ctx = torch.nn.Linear(2, 2), torch.nn.Linear(D, 2)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
        self.calls = 0

    def forward(self, x, t, context):
        self.calls += 1
        return torch.tanh(
            self.lin(x) + self.ctx(context[:, 0]) * torch.sin(t.float() / 200)[:, None]
        )


def _sampler(model, schedule=None, cfg_mode="auto", **config):
    """The sampler over ``model`` with ``SamplerConfig(**config)``."""
    return ConditionalDDIMSampler(model, schedule or NoiseSchedule(), SamplerConfig(**config), cfg_mode=cfg_mode)


def _embeddings(seed=0, batch=B):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, N, D, generator=g), torch.randn(batch, N, D, generator=g)


def _noises(seed, n, shape=SHAPE):
    """x_T (from its own seed) and the z's a sampler with ``Generator().manual_seed(seed)``
    and given ``latents`` draws: one z of the sample's shape per step, in order."""
    latents = torch.randn(shape, generator=torch.Generator().manual_seed(seed + 1000))
    g = torch.Generator().manual_seed(seed)
    return latents, [torch.randn(shape, generator=g) for _ in range(n)]


def ddim_reference_step(
    acp,
    final_acp,
    model_output,
    t,
    t_prev,
    x,
    eta,
    z,
    prediction_type,
    clip=False,
    threshold_fn=None,
    use_clipped=True,
):
    """The DDIM equations, written out: x̂_0, clip, ε from x̂_0, σ_t (eq. 16), x_{t'} (eq. 12)."""
    a_t = acp[t]
    a_p = acp[t_prev] if t_prev >= 0 else final_acp
    if prediction_type == "epsilon":
        eps = model_output
        x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    else:  # v: x_0 = √ᾱ x − √(1−ᾱ) v,  ε = √ᾱ v + √(1−ᾱ) x
        x0 = a_t.sqrt() * x - (1 - a_t).sqrt() * model_output
        eps = a_t.sqrt() * model_output + (1 - a_t).sqrt() * x
    if threshold_fn is not None or clip:
        x0 = threshold_fn(x0) if threshold_fn is not None else x0.clamp(-1, 1)
        if use_clipped:
            eps = (x - a_t.sqrt() * x0) / (1 - a_t).sqrt()
    sigma = eta * ((1 - a_p) / (1 - a_t)).sqrt() * (1 - a_t / a_p).sqrt()
    return a_p.sqrt() * x0 + (1 - a_p - sigma**2).sqrt() * eps + sigma * z


def _cfg(model, x, t, cond, neg, gamma):
    tb = torch.full((x.shape[0],), int(t), dtype=torch.long)
    eu, ec = model(x, tb, neg), model(x, tb, cond)
    return eu + gamma * (ec - eu), ec


def _diffusers_right(timesteps, T, n):
    nxt = timesteps[1:].tolist() + [-1]
    return all(
        (t - T // n == p) or (p < 0 and t - T // n < 0)
        for t, p in zip(timesteps.tolist(), nxt, strict=True)
    )


CASES = [
    (eta, spacing, clip, ptype)
    for eta in (0.0, 0.5, 1.0)
    for spacing in ("leading", "trailing", "linspace")
    for clip in (False, True)
    for ptype in ("epsilon", "v_prediction")
]


@pytest.mark.parametrize("eta, spacing, clip, ptype", CASES)
def test_trajectory_equals_diffusers_and_ddim_equations(eta, spacing, clip, ptype):
    model = TinyDenoiser(ptype)
    schedule = NoiseSchedule()
    cond, neg = _embeddings()
    gamma, offset = 3.0, (1 if spacing == "leading" else 0)
    latents, zs = _noises(7, STEPS)
    sampler = _sampler(model, schedule, timestep_spacing=spacing, steps_offset=offset, clip_sample=clip)
    traj = Trajectory()
    x_ours = sampler.sample(
        SHAPE,
        cond,
        neg,
        ClassifierFreeGuidance(gamma),
        num_inference_steps=STEPS,
        eta=eta,
        generator=torch.Generator().manual_seed(7),
        latents=latents,
        progress=False,
        callback=traj,
    )

    sched = DDIMScheduler(
        clip_sample=clip, prediction_type=ptype, timestep_spacing=spacing, steps_offset=offset
    )
    sched.set_timesteps(STEPS)
    ts = sched.timesteps
    assert torch.equal(ts, traj["timesteps"])
    check_diffusers = _diffusers_right(ts, 1000, STEPS)
    assert check_diffusers == (spacing != "linspace")  # n = 10 divides T; linspace never matches

    x_ref = x_dif = latents
    for i, t in enumerate(ts):
        t_prev = int(ts[i + 1]) if i + 1 < STEPS else -1
        out, _ = _cfg(model, x_ref, t, cond, neg, gamma)
        x_ref = ddim_reference_step(
            sched.alphas_cumprod,
            sched.final_alpha_cumprod,
            out,
            int(t),
            t_prev,
            x_ref,
            eta,
            zs[i],
            ptype,
            clip=clip,
        )
        torch.testing.assert_close(traj["x_t"][i + 1], x_ref, rtol=0, atol=1e-5)
        if check_diffusers:
            out_d, _ = _cfg(model, x_dif, t, cond, neg, gamma)
            x_dif = sched.step(
                out_d,
                t,
                x_dif,
                eta=eta,
                use_clipped_model_output=clip,
                variance_noise=zs[i] if eta > 0 else None,
            ).prev_sample
            assert (traj["x_t"][i + 1] - x_dif).abs().max() <= 1e-5, f"step {i}"
            assert (
                x_ref - x_dif
            ).abs().max() <= 1e-5  # the reference is faithful where diffusers is right
    assert torch.equal(x_ours, traj["x_t"][-1])


def test_diffusers_linspace_quirk_is_real():
    """diffusers' step with linspace spacing lands on noise levels off the timestep list."""
    model = TinyDenoiser()
    cond, neg = _embeddings()
    latents, _ = _noises(3, 0)
    ours = _sampler(model, timestep_spacing="linspace").sample(
        SHAPE, cond, neg, ClassifierFreeGuidance(2.0), STEPS, latents=latents, progress=False
    )
    sched = DDIMScheduler(clip_sample=False, timestep_spacing="linspace")
    sched.set_timesteps(STEPS)
    assert sched.timesteps.tolist()[:2] == [999, 888]  # but step(999) goes to 999 - 100 = 899
    x = latents
    for t in sched.timesteps:
        x = sched.step(_cfg(model, x, t, cond, neg, 2.0)[0], t, x).prev_sample
    assert (ours - x).abs().max() > 1e-3


@pytest.mark.parametrize("n", [3, 7])
def test_trailing_spacing_when_n_does_not_divide_T(n):
    """T // n = 333 at n = 3 but the list is 999, 666, 332: only the reference applies."""
    model, schedule = TinyDenoiser(), NoiseSchedule()
    cond, neg = _embeddings()
    latents, _ = _noises(4, 0)
    traj = Trajectory()
    _sampler(model, schedule, timestep_spacing="trailing").sample(
        SHAPE,
        cond,
        neg,
        ClassifierFreeGuidance(2.0),
        num_inference_steps=n,
        latents=latents,
        progress=False,
        callback=traj,
    )
    ts = traj["timesteps"]
    assert not _diffusers_right(ts, 1000, n)
    x = latents
    for i, t in enumerate(ts.tolist()):
        t_prev = ts[i + 1].item() if i + 1 < n else -1
        out, _ = _cfg(model, x, t, cond, neg, 2.0)
        x = ddim_reference_step(
            schedule.alphas_cumprod,
            schedule.final_alpha_cumprod,
            out,
            t,
            t_prev,
            x,
            0.0,
            0.0,
            "epsilon",
        )
        assert (traj["x_t"][i + 1] - x).abs().max() <= 1e-5


@pytest.mark.parametrize("ptype", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("use_clipped", [True, False])
def test_thresholding_and_use_clipped_model_output_equal_diffusers(ptype, use_clipped):
    model = TinyDenoiser(ptype)
    cond, neg = _embeddings(1)
    latents, zs = _noises(5, STEPS)
    sampler = _sampler(model, thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=3.0,
                       use_clipped_model_output=use_clipped)
    x_ours = sampler.sample(SHAPE, cond, neg, ClassifierFreeGuidance(4.0), STEPS, eta=0.5,
                            generator=torch.Generator().manual_seed(5), latents=latents, progress=False)
    sched = DDIMScheduler(
        thresholding=True,
        dynamic_thresholding_ratio=0.9,
        sample_max_value=3.0,
        prediction_type=ptype,
    )
    sched.set_timesteps(STEPS)
    x = latents
    for i, t in enumerate(sched.timesteps):
        x = sched.step(
            _cfg(model, x, t, cond, neg, 4.0)[0],
            t,
            x,
            eta=0.5,
            use_clipped_model_output=use_clipped,
            variance_noise=zs[i],
        ).prev_sample
    assert (x_ours - x).abs().max() <= 1e-5


def test_clipping_the_seed_way_differs():
    """use_clipped_model_output=False keeps the unclipped ε (the seed's ddim_step); it equals
    diffusers' default and differs from the consistent update."""
    model = TinyDenoiser()
    cond, neg = _embeddings()
    latents, _ = _noises(6, 0)

    def run(**config):
        return _sampler(model, clip_sample=True, **config).sample(
            SHAPE, cond, neg, ClassifierFreeGuidance(5.0), STEPS, latents=latents, progress=False
        )

    seed_way, consistent = run(use_clipped_model_output=False), run()
    sched = DDIMScheduler(clip_sample=True)
    sched.set_timesteps(STEPS)
    x = latents
    for t in sched.timesteps:
        x = sched.step(_cfg(model, x, t, cond, neg, 5.0)[0], t, x).prev_sample
    assert (seed_way - x).abs().max() <= 1e-5
    assert (seed_way - consistent).abs().max() > 1e-3


# ------------------------------------------------------------------ guidance paths
def _manual_loop(sampler, latents, steps, prediction):
    """DDIM with ``prediction(x, t)`` as the model output at every step (the sampler's ``step``)."""
    x, ts = latents, sampler.schedule.timesteps(steps).tolist()
    for i, t in enumerate(ts):
        x = sampler.step(prediction(x, t), t, x, ts[i + 1] if i + 1 < steps else -1).prev_sample
    return x


@pytest.mark.parametrize("cfg_mode", ["batched", "two_pass", "auto"])
def test_cfg_through_sampler_equals_manual_and_modes_agree(cfg_mode):
    model = TinyDenoiser()
    cond, neg = _embeddings(2)
    latents, _ = _noises(2, 0)
    sampler = _sampler(model, cfg_mode=cfg_mode)
    x_ours = sampler.sample(SHAPE, cond, neg, ClassifierFreeGuidance(7.5), 5, latents=latents, progress=False)
    expected_calls = 5 if cfg_mode in ("batched", "auto") else 10
    assert model.calls == expected_calls and model.rows == 5 * 2 * B
    x = _manual_loop(sampler, latents, 5, lambda x, t: _cfg(model, x, t, cond, neg, 7.5)[0])
    assert (x_ours - x).abs().max() <= 1e-5


@pytest.mark.parametrize("guider", [None, ClassifierFreeGuidance(1.0)], ids=["default", "cfg-1"])
@pytest.mark.parametrize("negative", [False, True], ids=["no-negative", "negative"])
def test_default_guider_is_the_conditional_model_one_call_per_step(guider, negative):
    """guider=None is ClassifierFreeGuidance(1.0): the conditional model alone, one pass per
    step (B rows even in batched mode), bit-equal to DDIM on ε_c; no negative is needed."""
    model = TinyDenoiser()
    cond, neg = _embeddings()
    latents, _ = _noises(0, 0)
    sampler = _sampler(model, cfg_mode="batched")
    x1 = sampler.sample(SHAPE, cond, neg if negative else None, guider, 6, latents=latents, progress=False)
    assert model.calls == 6 and model.rows == 6 * B
    x = _manual_loop(sampler, latents, 6, lambda x, t: model(x, torch.full((B,), t), cond))
    assert torch.equal(x1, x)


def test_guidance_rescale_path_equals_diffusers_rescale():
    model = TinyDenoiser()
    cond, neg = _embeddings(3)
    latents, _ = _noises(3, 0)
    sampler = _sampler(model)
    rescaled = ClassifierFreeGuidance(6.0, guidance_rescale=0.7)
    x_ours = sampler.sample(SHAPE, cond, neg, rescaled, 5, latents=latents, progress=False)
    sched = DDIMScheduler(clip_sample=False)
    sched.set_timesteps(5)
    x = latents
    for t in sched.timesteps:
        out, ec = _cfg(model, x, t, cond, neg, 6.0)
        x = sched.step(diffusers_rescale_noise_cfg(out, ec, guidance_rescale=0.7), t, x).prev_sample
    assert (x_ours - x).abs().max() <= 1e-5
    plain = sampler.sample(SHAPE, cond, neg, ClassifierFreeGuidance(6.0), 5, latents=latents, progress=False)
    assert (plain - x_ours).abs().max() > 1e-4


class TinyClassifier(torch.nn.Module):
    def __init__(self, k=3):
        super().__init__()
        g = torch.Generator().manual_seed(2)
        self.lin = torch.nn.Linear(C * H * W, k)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(0.1 * torch.randn(p.shape, generator=g))

    def forward(self, x, t):
        return self.lin(x.flatten(1)) * (1 - t.float()[:, None] / 2000)


@pytest.mark.parametrize("ptype", ["epsilon", "v_prediction"])
def test_classifier_guidance_after_cfg(ptype):
    """ClassifierGuidance(…, guider=CFG): CFG first, then ε − s √(1 − ᾱ_t) ∇ log p(y | x_t) in
    ε-form; a v-prediction is converted to ε, guided and converted back (stepped by diffusers)."""
    model, clf = TinyDenoiser(ptype), TinyClassifier()
    cond, neg = _embeddings(4)
    labels = torch.tensor([0, 2])
    latents, _ = _noises(4, 0)
    sampler = _sampler(model)
    guider = ClassifierGuidance(clf, labels, 3.0, guider=ClassifierFreeGuidance(2.0))
    x_ours = sampler.sample(SHAPE, cond, neg, guider, 5, latents=latents, progress=False)
    assert all(p.grad is None for p in clf.parameters())
    sched = DDIMScheduler(clip_sample=False, prediction_type=ptype)
    sched.set_timesteps(5)
    x = latents
    for t in sched.timesteps:
        a = sched.alphas_cumprod[t]
        out, _ = _cfg(model, x, t, cond, neg, 2.0)
        eps = out if ptype == "epsilon" else a.sqrt() * out + (1 - a).sqrt() * x
        grad = classifier_log_prob_grad(clf, x, torch.full((B,), int(t)), labels)
        eps = eps - (1 - a).sqrt() * 3.0 * grad
        out = eps if ptype == "epsilon" else (eps - (1 - a).sqrt() * x) / a.sqrt()
        x = sched.step(out, t, x).prev_sample
    assert (x_ours - x).abs().max() <= 1e-5
    unguided = sampler.sample(SHAPE, cond, neg, ClassifierFreeGuidance(2.0), 5, latents=latents, progress=False)
    assert (unguided - x_ours).abs().max() > 1e-4


def test_guidance_interval_uses_conditional_outside():
    model, schedule = TinyDenoiser(), NoiseSchedule()
    cond, neg = _embeddings(5)
    latents, _ = _noises(5, 0)
    sampler = _sampler(model, schedule, cfg_mode="two_pass")
    guider = ClassifierFreeGuidance(5.0, interval=(300, 700))
    x_ours = sampler.sample(SHAPE, cond, neg, guider, STEPS, latents=latents, progress=False)
    ts = schedule.timesteps(STEPS).tolist()  # 900 … 0: 300..700 holds 5 of them
    inside = sum(300 <= t <= 700 for t in ts)
    assert inside == 5 and model.calls == STEPS + inside

    def prediction(x, t):
        if 300 <= t <= 700:
            return _cfg(model, x, t, cond, neg, 5.0)[0]
        return model(x, torch.full((B,), t), cond)

    assert (x_ours - _manual_loop(sampler, latents, STEPS, prediction)).abs().max() <= 1e-5


def test_weighted_prompts():
    model = TinyDenoiser()
    cond_a, neg = _embeddings(6)
    cond_b, _ = _embeddings(7)
    latents, _ = _noises(6, 0)
    sampler = _sampler(model, cfg_mode="batched")
    guider = WeightedPromptsGuidance([0.7, -0.3], guidance_scale=4.0)
    x_ours = sampler.sample(SHAPE, [cond_a, cond_b], neg, guider, 5, latents=latents, progress=False)
    assert model.calls == 5 and model.rows == 5 * 3 * B  # one call with the tripled batch

    def prediction(x, t):
        tb = torch.full((B,), t)
        eu, ea, eb = model(x, tb, neg), model(x, tb, cond_a), model(x, tb, cond_b)
        return eu + 0.7 * 4.0 * (ea - eu) + (-0.3) * 4.0 * (eb - eu)

    assert (x_ours - _manual_loop(sampler, latents, 5, prediction)).abs().max() <= 1e-5
    # a single prompt in a list with weight 1 is plain CFG
    single = sampler.sample(SHAPE, [cond_a], neg, WeightedPromptsGuidance([1.0], 4.0), 5, latents=latents,
                            progress=False)
    plain = sampler.sample(SHAPE, cond_a, neg, ClassifierFreeGuidance(4.0), 5, latents=latents, progress=False)
    assert (single - plain).abs().max() <= 1e-5


def test_per_image_prompt_weights_equal_sampling_each_image_alone():
    """(B, K) weights: each image follows its own weights, as if sampled on its own."""
    model = TinyDenoiser()
    cond_a, neg = _embeddings(8)
    cond_b, _ = _embeddings(9)
    latents, _ = _noises(8, 0)
    weights = torch.tensor([[0.7, -0.3], [0.0, 1.5]])
    sampler = _sampler(model)
    together = sampler.sample(SHAPE, [cond_a, cond_b], neg, WeightedPromptsGuidance(weights, 3.0), 5,
                              latents=latents, progress=False)
    for b in range(B):
        rows = slice(b, b + 1)
        alone = sampler.sample((1, C, H, W), [cond_a[rows], cond_b[rows]], neg[rows],
                               WeightedPromptsGuidance(weights[b], 3.0), 5, latents=latents[rows], progress=False)
        assert (together[rows] - alone).abs().max() <= 1e-5
    assert (together[0] - together[1]).abs().max() > 1e-3


# ------------------------------------------------------------ outputs and randomness
def test_trajectory_and_callback():
    model, schedule = TinyDenoiser(), NoiseSchedule()
    cond, neg = _embeddings()
    seen = []
    traj = Trajectory()
    x0 = _sampler(model, schedule).sample(
        SHAPE,
        cond,
        neg,
        ClassifierFreeGuidance(2.0),
        num_inference_steps=4,
        generator=torch.Generator().manual_seed(0),
        progress=False,
        callback=traj,
    )
    assert traj["x_t"].shape == (5, *SHAPE) and traj["pred_x0"].shape == (4, *SHAPE)
    assert torch.equal(traj["timesteps"], schedule.timesteps(4))
    assert torch.equal(
        traj["x_t"][0], torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    )
    assert torch.equal(traj["x_t"][-1], x0)
    _sampler(model, schedule).sample(SHAPE, cond, neg, ClassifierFreeGuidance(2.0), num_inference_steps=4,
                                     progress=False, callback=lambda i, t, x, xh: seen.append((i, t, x.shape, xh.shape)))
    assert [s[:2] for s in seen] == [(0, 750), (1, 500), (2, 250), (3, 0)]
    assert all(s[2] == SHAPE and s[3] == SHAPE for s in seen)


def test_determinism_with_generator():
    model = TinyDenoiser()
    cond, neg = _embeddings()
    sampler = _sampler(model)

    def run(seed):
        return sampler.sample(SHAPE, cond, neg, ClassifierFreeGuidance(3.0), 5, eta=1.0,
                              generator=torch.Generator().manual_seed(seed), progress=False)

    a, b, c = run(11), run(11), run(12)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_points_any_sample_shape():
    model, schedule = PointDenoiser(), NoiseSchedule(beta_schedule="cosine")
    g = torch.Generator().manual_seed(0)
    cond, neg = torch.randn(5, 1, D, generator=g), torch.zeros(5, 1, D)
    traj = Trajectory()
    x = _sampler(model, schedule, thresholding=True, sample_max_value=2.0).sample(
        (5, 2),
        cond,
        neg,
        ClassifierFreeGuidance(3.0, guidance_rescale=0.5),
        num_inference_steps=8,
        eta=0.5,
        generator=g,
        progress=False,
        callback=traj,
    )
    assert x.shape == (5, 2) and traj["x_t"].shape == (9, 5, 2) and bool(torch.isfinite(x).all())


def test_progress_bar_can_be_turned_off(capsys):
    model = TinyDenoiser()
    cond, neg = _embeddings()
    sampler = _sampler(model)
    sampler.sample(SHAPE, cond, neg, num_inference_steps=2, progress=False)
    assert "DDIM" not in capsys.readouterr().err
    sampler.sample(SHAPE, cond, neg, num_inference_steps=2, progress=True)
    assert "DDIM" in capsys.readouterr().err


def test_step_on_its_own():
    schedule = NoiseSchedule()
    sampler = ConditionalDDIMSampler(lambda x, t, c: x, schedule)
    x, eps = torch.randn(2, 3), torch.randn(2, 3)
    out = sampler.step(eps, 500, x, 400)
    assert isinstance(out, DDIMStepOutput)
    torch.testing.assert_close(out.pred_original_sample, schedule.predict_x0(eps, x, 500))
    assert torch.equal(out.pred_epsilon, eps)
    # the last step (prev < 0) with set_alpha_to_one lands on x̂_0
    torch.testing.assert_close(
        sampler.step(eps, 20, x, -1).prev_sample, schedule.predict_x0(eps, x, 20)
    )
    z = torch.randn(2, 3)
    noisy = sampler.step(eps, 500, x, 400, eta=1.0, variance_noise=z).prev_sample
    sigma = (
        (1 - schedule.alphas_cumprod[400])
        / (1 - schedule.alphas_cumprod[500])
        * (1 - schedule.alphas_cumprod[500] / schedule.alphas_cumprod[400])
    ).sqrt()
    torch.testing.assert_close(
        noisy - sampler.step(eps, 500, x, 400, eta=1.0, variance_noise=0 * z).prev_sample, sigma * z
    )
    with pytest.raises(ValueError, match="prev_timestep must be <= 499"):
        sampler.step(eps, 500, x, 500)
    with pytest.raises(ValueError, match="timestep must be in"):
        sampler.step(eps, 1000, x, 10)
    with pytest.raises(ValueError, match="either generator or variance_noise"):
        sampler.step(eps, 500, x, 400, eta=0.5, generator=torch.Generator(), variance_noise=z)
    with pytest.raises(ValueError, match="variance_noise must have"):
        sampler.step(eps, 500, x, 400, eta=0.5, variance_noise=torch.randn(3, 2))
    with pytest.raises(ValueError, match="eta"):
        sampler.step(eps, 500, x, 400, eta=-0.5)


def test_step_clips_as_its_config_says():
    """The clip options of ``step`` come from the sampler's SamplerConfig."""
    schedule = NoiseSchedule()
    x, eps = 3 * torch.randn(2, 3), torch.randn(2, 3)
    x0 = schedule.predict_x0(eps, x, 500)
    assert x0.abs().max() > 2  # the clip below does something
    clipped = ConditionalDDIMSampler(lambda x, t, c: x, schedule, SamplerConfig(clip_sample=True, clip_sample_range=2.0))
    out = clipped.step(eps, 500, x, 400)
    assert torch.equal(out.pred_original_sample, x0.clamp(-2, 2))
    torch.testing.assert_close(out.pred_epsilon, schedule.eps_from_x0(x0.clamp(-2, 2), x, 500))


# ------------------------------------------------------------------ bad input
def _bad(**overrides):
    model = TinyDenoiser()
    cond, neg = _embeddings()
    kw = dict(
        shape=SHAPE,
        prompt_embeds=cond,
        negative_prompt_embeds=neg,
        guider=ClassifierFreeGuidance(7.5),
        num_inference_steps=2,
        progress=False,
    )
    kw.update(overrides)
    return ConditionalDDIMSampler(model, NoiseSchedule(num_train_timesteps=100)).sample(**kw)


@pytest.mark.parametrize(
    "overrides, err, match",
    [
        (
            dict(negative_prompt_embeds=None),
            ValueError,
            "negative_prompt_embeds is required by this guider: pass the encoded empty prompt",
        ),
        (
            dict(negative_prompt_embeds=torch.zeros(3, N, D)),
            ValueError,
            r"negative_prompt_embeds must have the shape of prompt_embeds \(.*2, 4, 8.*\), got .*3, 4, 8",
        ),
        (
            dict(negative_prompt_embeds=torch.zeros(B, N + 1, D)),
            ValueError,
            r"negative_prompt_embeds must have the shape of prompt_embeds \(.*2, 4, 8.*\), got .*2, 5, 8",
        ),
        (
            dict(negative_prompt_embeds=torch.zeros(B, N, D, dtype=torch.float64)),
            TypeError,
            r"negative_prompt_embeds must have the dtype of prompt_embeds \(torch.float32\)",
        ),
        (
            dict(negative_prompt_embeds=torch.zeros(B, N, D, device="meta")),
            ValueError,
            "negative_prompt_embeds must have the device of prompt_embeds",
        ),
        (dict(negative_prompt_embeds=[1.0]), TypeError, "negative_prompt_embeds must be a torch.Tensor"),
        (
            dict(prompt_embeds=torch.zeros(B, N, 5), negative_prompt_embeds=torch.zeros(B, N, 5)),
            ValueError,
            "context_dim=8",
        ),
        (
            dict(prompt_embeds=torch.full((B, N, D), float("nan"))),
            ValueError,
            "prompt_embeds contains NaN or inf",
        ),
        (dict(prompt_embeds="a red circle"), TypeError, "prompt_embeds must be a tensor"),
        (dict(guider=7.5), TypeError, r"guider must be a tutorial_lib\.guiders\.Guider"),
        (dict(num_inference_steps=0), ValueError, r"num_inference_steps must be in \[1, 100\]"),
        (dict(num_inference_steps=101), ValueError, r"num_inference_steps must be in \[1, 100\]"),
        (dict(num_inference_steps=2.5), TypeError, "num_inference_steps must be an int"),
        (dict(eta=-0.1), ValueError, "eta must be >= 0"),
        (dict(eta=1.5), ValueError, "eta must be <= 1"),
        (
            dict(latents=torch.zeros(B, C, H, W + 1)),
            ValueError,
            r"latents must have the shape of x_T .*\(2, 3, 6, 6\)",
        ),
        (
            dict(latents=torch.zeros(SHAPE, dtype=torch.float64)),
            TypeError,
            r"latents must have the dtype of x_T .*\(torch.float32\)",
        ),
        (
            dict(latents=torch.zeros(SHAPE, dtype=torch.long)),
            TypeError,
            r"latents must have the dtype of x_T",
        ),
        (
            dict(shape=(3, C, H, W)),
            ValueError,
            r"shape\[0\] \(batch size 3\) must equal prompt_embeds' batch size 2",
        ),
        (dict(shape=(B,)), ValueError, "shape must be a tuple of >= 2 positive ints"),
        (
            dict(guider=WeightedPromptsGuidance([1.0, 2.0])),
            ValueError,
            r"weights must have shape \(2, 1\) \(batch, prompts\)",
        ),
        (
            dict(guider=ClassifierGuidance(TinyClassifier(), torch.tensor([0]), 1.0)),
            ValueError,
            r"labels must have shape \(2,\)",
        ),
        (dict(generator=0), TypeError, "generator must be a torch.Generator"),
        (dict(progress="no"), TypeError, "progress must be a bool"),
        (dict(callback=3), TypeError, "callback must be callable"),
    ],
)
def test_bad_inputs(overrides, err, match):
    with pytest.raises(err, match=match):
        _bad(**overrides)


@pytest.mark.parametrize(
    "make, err, match",
    [
        (lambda: ClassifierFreeGuidance(-1.0), ValueError, "guidance_scale must be >= 0"),
        (lambda: ClassifierFreeGuidance(float("nan")), ValueError, "guidance_scale must be finite"),
        (lambda: ClassifierFreeGuidance(float("inf")), ValueError, "guidance_scale must be finite"),
        (lambda: ClassifierFreeGuidance("7.5"), TypeError, "guidance_scale must be a real number"),
        (lambda: ClassifierFreeGuidance(3.0, guidance_rescale=1.5), ValueError, "guidance_rescale must be <= 1"),
        (lambda: ClassifierFreeGuidance(3.0, interval=(700, 300)), ValueError, "t_low <= t_high"),
        (lambda: ClassifierGuidance(None, torch.tensor([0, 1])), TypeError, "classifier must be callable"),
        (lambda: ClassifierGuidance(TinyClassifier(), None), TypeError, r"labels must be a \(B,\) integer tensor"),
        (lambda: ClassifierGuidance(TinyClassifier(), torch.tensor([True, False])), TypeError, "labels must be"),
        (lambda: ClassifierGuidance(TinyClassifier(), torch.tensor([0, 1]), -1.0), ValueError,
         "classifier_scale must be >= 0"),
        (lambda: ClassifierGuidance(TinyClassifier(), torch.tensor([0, 1]), guider=3), TypeError,
         "guider must be a Guider"),
        (lambda: WeightedPromptsGuidance([1.0, float("nan")]), ValueError, "weights must be K finite floats"),
        (lambda: WeightedPromptsGuidance([1.0], guidance_scale=-2.0), ValueError, "guidance_scale must be >= 0"),
    ],
)
def test_bad_guider_options_fail_at_construction(make, err, match):
    with pytest.raises(err, match=match):
        make()


@pytest.mark.parametrize(
    "options, err, match",
    [
        (dict(timestep_spacing="karras"), ValueError, "timestep_spacing must be one of"),
        (dict(steps_offset=-1), ValueError, "steps_offset must be >= 0"),
        (dict(steps_offset=1.0), TypeError, "steps_offset must be an int"),
        (dict(clip_sample="yes"), TypeError, "clip_sample must be a bool"),
        (dict(thresholding=1), TypeError, "thresholding must be a bool"),
        (dict(use_clipped_model_output=None), TypeError, "use_clipped_model_output must be a bool"),
        (dict(clip_sample_range=-1.0), ValueError, "clip_sample_range must be >= 0"),
        (dict(clip_sample_range=float("inf")), ValueError, "clip_sample_range must be finite"),
        (dict(dynamic_thresholding_ratio=0.0), ValueError, r"dynamic_thresholding_ratio must be in \(0.0, 1.0\]"),
        (dict(dynamic_thresholding_ratio=1.5), ValueError, "dynamic_thresholding_ratio must be <= 1"),
        (dict(sample_max_value=0.5), ValueError, "sample_max_value must be >= 1"),
        (dict(sample_max_value="3"), TypeError, "sample_max_value must be a real number"),
    ],
)
def test_sampler_config_rejects_bad_values(options, err, match):
    with pytest.raises(err, match=match):
        SamplerConfig(**options)


def test_sampler_config_is_frozen_and_required_as_such():
    config = SamplerConfig(clip_sample=True)
    with pytest.raises(AttributeError):
        config.clip_sample = False
    assert ConditionalDDIMSampler(TinyDenoiser(), NoiseSchedule()).config == SamplerConfig()
    with pytest.raises(TypeError, match="config must be a SamplerConfig"):
        ConditionalDDIMSampler(TinyDenoiser(), NoiseSchedule(), {"clip_sample": True})


def test_bad_constructor_and_denoiser_output():
    with pytest.raises(TypeError, match="denoiser must be callable"):
        ConditionalDDIMSampler(3, NoiseSchedule())
    with pytest.raises(TypeError, match="schedule must be a NoiseSchedule"):
        ConditionalDDIMSampler(TinyDenoiser(), DDIMScheduler())
    with pytest.raises(ValueError, match="prediction_type"):
        ConditionalDDIMSampler(TinyDenoiser(), NoiseSchedule(), prediction_type="score")
    with pytest.raises(ValueError, match="cfg_mode must be one of"):
        ConditionalDDIMSampler(TinyDenoiser(), NoiseSchedule(), cfg_mode="fast")
    assert (
        ConditionalDDIMSampler(TinyDenoiser("v_prediction"), NoiseSchedule()).prediction_type
        == "v_prediction"
    )
    cond, neg = _embeddings()
    cfg = ClassifierFreeGuidance(7.5)
    # the doubled batch with too few rows, and the right rows with too few channels
    for denoiser, shape in ((lambda x, t, c: x[:1], r"\(4, 3, 6, 6\)"), (lambda x, t, c: x[:, :1], r"\(4, 3, 6, 6\)")):
        broken = ConditionalDDIMSampler(denoiser, NoiseSchedule(), cfg_mode="batched")
        with pytest.raises(ValueError, match=r"denoiser must return a tensor of shape " + shape):
            broken.sample(SHAPE, cond, neg, cfg, num_inference_steps=2, progress=False)
