"""Guidance functions: identities (hypothesis), parity with diffusers, classifier gradients, bad input."""

import math

import pytest
import torch
from diffusers import DDIMScheduler
from diffusers.guiders.guider_utils import rescale_noise_cfg as diffusers_rescale_noise_cfg
from hypothesis import given, settings
from hypothesis import strategies as st

from tutorial_lib.guidance import (
    cfg_combine,
    classifier_guided_eps,
    classifier_log_prob_grad,
    combine_weighted_prompts,
    dynamic_threshold,
    log_prob_grad,
    rescale_noise_cfg,
)
from tutorial_lib.guiders import ClassifierFreeGuidance

torch.set_num_threads(1)

scales = st.floats(min_value=0.0, max_value=20.0, allow_nan=False, allow_infinity=False)
seeds = st.integers(min_value=0, max_value=2**31 - 1)
shapes = st.sampled_from([(1, 2), (3, 2), (2, 3, 4, 4), (1, 4, 2, 3)])


def _pair(seed, shape, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=dtype), torch.randn(
        shape, generator=g, dtype=dtype
    )


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


# -------------------------------------------------------------- CFG identities
@settings(max_examples=40, deadline=None)
@given(seed=seeds, shape=shapes)
def test_scale_one_gives_cond_and_zero_gives_uncond(seed, shape):
    eu, ec = _pair(seed, shape)
    _close(cfg_combine(eu, ec, 1.0), ec)
    assert torch.equal(cfg_combine(eu, ec, 0.0), eu)


@settings(max_examples=40, deadline=None)
@given(seed=seeds, shape=shapes, g1=scales, g2=scales, lam=st.floats(0, 1))
def test_cfg_is_affine_in_scale(seed, shape, g1, g2, lam):
    eu, ec = _pair(seed, shape)
    mix = lam * g1 + (1 - lam) * g2
    _close(
        cfg_combine(eu, ec, mix),
        lam * cfg_combine(eu, ec, g1) + (1 - lam) * cfg_combine(eu, ec, g2),
    )


@settings(max_examples=40, deadline=None)
@given(seed=seeds, shape=shapes, gamma=scales)
def test_one_weighted_prompt_of_weight_one_is_cfg(seed, shape, gamma):
    eu, ec = _pair(seed, shape)
    assert torch.equal(combine_weighted_prompts(eu, [ec], [1.0], gamma), cfg_combine(eu, ec, gamma))


@settings(max_examples=40, deadline=None)
@given(seed=seeds, shape=shapes, gamma=scales)
def test_negative_prompt_is_the_replaced_unconditional_input(seed, shape, gamma):
    """ε_neg + γ(ε_c − ε_neg): the negative prompt's prediction simply takes ε_u's place."""
    e_neg, ec = _pair(seed, shape)
    expected = e_neg + gamma * (ec - e_neg)
    assert torch.equal(cfg_combine(e_neg, ec, gamma), expected)


@settings(max_examples=30, deadline=None)
@given(seed=seeds, gamma=scales, w=st.lists(st.floats(-2, 2), min_size=1, max_size=4))
def test_weighted_prompts_formula(seed, gamma, w):
    g = torch.Generator().manual_seed(seed)
    eu = torch.randn(2, 3, generator=g, dtype=torch.float64)
    eks = [torch.randn(2, 3, generator=g, dtype=torch.float64) for _ in w]
    expected = eu + sum(wk * gamma * (ek - eu) for wk, ek in zip(w, eks, strict=True))
    _close(combine_weighted_prompts(eu, eks, w, gamma), expected)
    _close(
        combine_weighted_prompts(eu, torch.stack(eks), torch.tensor(w, dtype=torch.float64), gamma),
        expected,
    )


def test_weighted_prompts_a1111_combine_denoised():
    """Transcription of AUTOMATIC1111's CFGDenoiser.combine_denoised (one batch item, two sub-prompts)."""
    g = torch.Generator().manual_seed(0)
    x_out = torch.randn(3, 4, 2, 2, generator=g)  # [cond a, cond b, uncond]
    conds_list, cond_scale = [[(0, 0.7), (1, 0.3)]], 6.0
    denoised_uncond = x_out[-1:]
    denoised = torch.clone(denoised_uncond)
    for i, conds in enumerate(conds_list):
        for cond_index, weight in conds:
            denoised[i] += (x_out[cond_index] - denoised_uncond[i]) * (weight * cond_scale)
    got = combine_weighted_prompts(x_out[2:3], [x_out[0:1], x_out[1:2]], [0.7, 0.3], cond_scale)
    assert torch.equal(got, denoised)


# ------------------------------------------------------------ diffusers parity
@pytest.mark.parametrize("phi", [0.0, 0.3, 0.7, 1.0])
@pytest.mark.parametrize("shape", [(2, 4, 8, 8), (5, 2)])
def test_rescale_noise_cfg_equals_diffusers(phi, shape):
    eu, ec = _pair(3, shape, dtype=torch.float32)
    noise_cfg = cfg_combine(eu, ec, 7.5)
    assert torch.equal(
        rescale_noise_cfg(noise_cfg, ec, phi), diffusers_rescale_noise_cfg(noise_cfg, ec, phi)
    )


def test_rescale_restores_conditional_std():
    eu, ec = _pair(4, (3, 4, 8, 8))
    out = rescale_noise_cfg(cfg_combine(eu, ec, 9.0), ec, 1.0)
    _close(out.std(dim=(1, 2, 3)), ec.std(dim=(1, 2, 3)))


@pytest.mark.parametrize("ratio, max_value", [(0.995, 1.0), (0.9, 2.5), (0.5, 10.0), (1.0, 1.5)])
def test_dynamic_threshold_equals_diffusers(ratio, max_value):
    sched = DDIMScheduler(
        thresholding=True, dynamic_thresholding_ratio=ratio, sample_max_value=max_value
    )
    g = torch.Generator().manual_seed(0)
    x0 = 2.0 * torch.randn(4, 3, 8, 8, generator=g)
    x0[0] *= 0.1  # one sample inside [-1, 1]: s = 1, unchanged
    ours = dynamic_threshold(x0, ratio, max_value)
    assert torch.equal(ours, sched._threshold_sample(x0))
    assert torch.equal(ours[0], x0[0])
    half = x0.to(torch.bfloat16)
    assert torch.equal(dynamic_threshold(half, ratio, max_value), sched._threshold_sample(half))


def test_dynamic_threshold_on_points_which_diffusers_rejects():
    x0 = torch.tensor([[3.0, -0.5], [0.2, 0.1]])
    out = dynamic_threshold(x0, ratio=1.0, max_value=2.0)
    torch.testing.assert_close(out, torch.tensor([[1.0, -0.25], [0.2, 0.1]]))
    with pytest.raises(TypeError):  # diffusers: reshape(B, C * np.prod([])) gets a float size
        DDIMScheduler(thresholding=True)._threshold_sample(x0)


# ------------------------------------------------------------ classifier guidance
class TinyClassifier(torch.nn.Module):
    def __init__(self, d=6, k=3):
        super().__init__()
        self.lin = torch.nn.Linear(d, k)

    def forward(self, x, t):
        return self.lin(x.flatten(1)) * (1 + t.float()[:, None] / 1000)


def test_classifier_log_prob_grad_matches_per_sample_autograd_and_leaves_no_grads():
    torch.manual_seed(0)
    clf = TinyClassifier()
    x = torch.randn(4, 2, 3)
    t = torch.tensor([0, 10, 500, 999])
    y = torch.tensor([0, 2, 1, 2])
    with torch.no_grad():  # works inside the sampler's no_grad
        grad = classifier_log_prob_grad(clf, x, t, y)
    assert grad.shape == x.shape and not grad.requires_grad
    assert all(p.grad is None for p in clf.parameters())
    for i in range(4):
        xi = x[i : i + 1].clone().requires_grad_(True)
        lp = torch.log_softmax(clf(xi, t[i : i + 1]), -1)[0, y[i]]
        (gi,) = torch.autograd.grad(lp, xi)
        torch.testing.assert_close(grad[i], gi[0])


def test_log_prob_grad_exact_for_gaussian():
    """log N(x; μ, I) has gradient μ − x: the general helper takes any scorer."""
    mu = torch.tensor([1.0, -2.0])
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    grad = log_prob_grad(
        lambda xx, tt: -0.5 * ((xx - mu) ** 2).sum(1), x, torch.zeros(5, dtype=torch.long)
    )
    torch.testing.assert_close(grad, mu - x)


def test_classifier_guided_eps_formula():
    eps, grad = _pair(0, (3, 2))
    a = torch.tensor([0.9, 0.5, 0.1], dtype=torch.float64)
    out = classifier_guided_eps(eps, grad, a, 2.0)
    _close(out, eps - (1 - a[:, None]).sqrt() * 2.0 * grad)
    _close(classifier_guided_eps(eps, grad, 0.25, 2.0), eps - math.sqrt(0.75) * 2.0 * grad)
    assert torch.equal(classifier_guided_eps(eps, grad, 0.3, 0.0), eps)


# ------------------------------------------------------------ guidance interval
def test_guidance_interval():
    # The interval lives in the guider (ClassifierFreeGuidance.active); closed at both ends.
    assert ClassifierFreeGuidance(7.5).active(500)
    cfg = ClassifierFreeGuidance(7.5, interval=(200, 800))
    assert cfg.active(500) and cfg.active(200) and cfg.active(800)
    assert not cfg.active(199) and not cfg.active(801)
    assert not ClassifierFreeGuidance(1.0).active(500)  # γ = 1 is the conditional model: nothing to guide


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "gamma, err",
    [
        (-0.1, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        ("7", TypeError),
        (True, TypeError),
    ],
)
def test_bad_guidance_scale(gamma, err):
    eu, ec = _pair(0, (2, 3))
    with pytest.raises(err, match="guidance_scale"):
        cfg_combine(eu, ec, gamma)
    with pytest.raises(err, match="guidance_scale"):
        combine_weighted_prompts(eu, [ec], [1.0], gamma)


def test_no_silent_broadcasting_and_type_checks():
    eu = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"eps_cond must have eps_uncond's shape \(2, 3\)"):
        cfg_combine(eu, torch.zeros(1, 3), 2.0)
    with pytest.raises(TypeError, match="eps_cond must have eps_uncond's dtype"):
        cfg_combine(eu, torch.zeros(2, 3, dtype=torch.float64), 2.0)
    with pytest.raises(TypeError, match="eps_uncond must be a torch.Tensor"):
        cfg_combine([0.0], eu, 2.0)
    with pytest.raises(TypeError, match="floating-point"):
        cfg_combine(torch.zeros(2, 3, dtype=torch.long), eu, 2.0)
    with pytest.raises(ValueError, match=r"eps_conds\[1\]"):
        combine_weighted_prompts(eu, [eu, torch.zeros(2, 4)], [1, 1], 2.0)
    with pytest.raises(ValueError, match="one entry per prompt"):
        combine_weighted_prompts(eu, [eu, eu], [1.0], 2.0)
    with pytest.raises(ValueError, match=r"weights\[0\]"):
        combine_weighted_prompts(eu, [eu], [float("nan")], 2.0)
    with pytest.raises(ValueError, match="non-empty"):
        combine_weighted_prompts(eu, [], [], 2.0)
    with pytest.raises(ValueError, match="guidance_rescale"):
        rescale_noise_cfg(eu, eu, 1.5)
    with pytest.raises(ValueError, match="noise_pred_text"):
        rescale_noise_cfg(eu, torch.zeros(3, 3), 0.5)
    with pytest.raises(ValueError, match="ratio"):
        dynamic_threshold(eu, ratio=0.0)
    with pytest.raises(ValueError, match="max_value"):
        dynamic_threshold(eu, max_value=0.5)
    with pytest.raises(ValueError, match="at least 2 dims"):
        dynamic_threshold(torch.zeros(3))
    with pytest.raises(ValueError, match="scale"):
        classifier_guided_eps(eu, eu, 0.5, -1.0)
    with pytest.raises(ValueError, match="alpha_cumprod_t"):
        classifier_guided_eps(eu, eu, 0.0, 1.0)
    with pytest.raises(ValueError, match="alpha_cumprod_t"):
        classifier_guided_eps(eu, eu, torch.tensor([0.5, 0.5, 0.5]), 1.0)
    with pytest.raises(ValueError, match="t_low <= t_high"):
        ClassifierFreeGuidance(7.5, interval=(800, 200))
    with pytest.raises(ValueError, match="interval"):
        ClassifierFreeGuidance(7.5, interval=200)


def test_bad_classifier_inputs():
    clf = TinyClassifier()
    x, t = torch.randn(2, 6), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        classifier_log_prob_grad(clf, x, t, torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="labels"):
        classifier_log_prob_grad(clf, x, t, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\]"):
        classifier_log_prob_grad(clf, x, t, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="logits of shape"):
        classifier_log_prob_grad(lambda xx, tt: xx.sum(1), x, t, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="log_prob_fn must return"):
        log_prob_grad(lambda xx, tt: xx, x, t)
