"""Tests for tutorial_lib.mixture, .tilted and .mixture_experiments: exact scores, the oracle denoiser, guidance identities.

Everything that compares numbers to closed forms runs in float64. Monte-Carlo
checks use tolerances derived from the standard error of the estimate (and a
fixed generator, so they are deterministic, not flaky).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tutorial_lib.guidance import cfg_combine, classifier_guided_eps, classifier_log_prob_grad
from tutorial_lib.guiders import ClassifierFreeGuidance, ClassifierGuidance
from tutorial_lib.mixture import (
    ExactClassifier,
    GaussianMixture,
    OracleDenoiser,
    example_mixture_1d,
    example_mixture_2d,
    interval_demo_mixture,
)
from tutorial_lib.mixture_experiments import (
    GuidanceSweep,
    IntervalDemo,
    ddpm_sample,
    guidance_interval_demo,
    guidance_sweep_table,
    sample_guided,
)
from tutorial_lib.sampler import ConditionalDDIMSampler, SamplerConfig
from tutorial_lib.schedule import NoiseSchedule
from tutorial_lib.tilted import tilted_target

F64 = torch.float64
SCHED = NoiseSchedule()
# 200 steps with 5x larger betas: as fully noised at t = T-1 as the default (ab ~ 4e-5),
# for the tests whose claim does not depend on T (keeps them fast on a shared 2-core CPU).
SHORT = NoiseSchedule(num_train_timesteps=200, beta_start=5e-4, beta_end=0.1)


@pytest.fixture(autouse=True)
def _one_thread():
    """Sampling runs thousands of small ops; on a shared 2-core CPU two intra-op threads were
    measured 50-90x slower than one (threads waiting on each other). Restored after each test."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def mixture_2d_shared_class() -> GaussianMixture:
    """Four components, three classes, class 1 owns two of them; full and diagonal covariances."""
    return GaussianMixture(
        weights=[0.2, 0.3, 0.1, 0.4],
        means=[[-2.0, 0.5], [1.0, 1.0], [0.0, -2.0], [2.0, -1.0]],
        covariances=[[[0.5, 0.2], [0.2, 0.3]], [[0.2, 0.0], [0.0, 0.4]], [[1.0, -0.3], [-0.3, 0.5]], [[0.1, 0.05], [0.05, 0.2]]],
        labels=[0, 1, 1, 2],
    )


MIXTURES = {
    "1d": example_mixture_1d,
    "1d-shared": interval_demo_mixture,
    "2d": example_mixture_2d,
    "2d-shared": mixture_2d_shared_class,
}


# ----------------------------------------------------------------------------
# exact densities and scores
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MIXTURES))
@pytest.mark.parametrize("t", [None, 0, 10, 300, 999, "per-sample"])
def test_score_equals_autograd_of_log_density(name, t):
    m = MIXTURES[name]()
    x = (2.0 * torch.randn(64, m.dim, generator=gen(1), dtype=F64)).requires_grad_(True)
    if t == "per-sample":
        t = torch.randint(0, 1000, (64,), generator=gen(2))
    for c in [None, *range(m.num_classes), torch.randint(0, m.num_classes, (64,), generator=gen(3))]:
        (g,) = torch.autograd.grad(m.log_prob(x, t, c).sum(), x)
        s = m.score(x, t, c)
        assert s.shape == x.shape and s.dtype == F64
        torch.testing.assert_close(s, g, rtol=1e-10, atol=1e-10)


def test_1d_accepts_vectors_without_trailing_dim():
    m = example_mixture_1d()
    x = torch.linspace(-3, 3, 7, dtype=F64)
    assert m.score(x, 100, 1).shape == (7,)
    torch.testing.assert_close(m.score(x, 100, 1), m.score(x[:, None], 100, 1)[:, 0])
    assert m.log_prob(x[:, None]).shape == (7,)


@pytest.mark.parametrize("t", [None, 50, 500])
def test_log_prob_integrates_to_one(t):
    m1 = interval_demo_mixture()
    x = torch.linspace(-8, 8, 8001, dtype=F64)
    h = float(x[1] - x[0])
    for c in (None, 0, 1):
        assert abs(float(m1.log_prob(x, t, c).exp().sum()) * h - 1.0) < 1e-9
    m2 = mixture_2d_shared_class()
    g = torch.linspace(-7, 7, 561, dtype=F64)
    pts = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    h2 = float(g[1] - g[0]) ** 2
    for c in (None, 1):
        assert abs(float(m2.log_prob(pts, t, c).exp().sum()) * h2 - 1.0) < 1e-6


def test_noised_density_is_the_forward_process():
    """Samples of x_t = add_noise(x0, eps, t) satisfy Stein's identities for the exact score:
    E[score(x_t)] = 0 and E[score(x_t) x_t^T] = -I (within 5 standard errors)."""
    m = mixture_2d_shared_class()
    n, t = 40000, 200
    x0 = m.sample(n, generator=gen(4))
    xt = SCHED.add_noise(x0, torch.randn(x0.shape, generator=gen(5), dtype=F64), t)
    s = m.score(xt, t)
    outer = s[:, :, None] * xt[:, None, :]
    for est, target in ((s, torch.zeros(2, dtype=F64)), (outer, -torch.eye(2, dtype=F64))):
        mean, se = est.mean(0), est.std(0) / math.sqrt(n)
        assert ((mean - target).abs() <= 5 * se).all(), (mean, se)


def test_class_posterior_is_bayes_rule_and_its_gradient():
    m = mixture_2d_shared_class()
    x = (2.0 * torch.randn(50, 2, generator=gen(6), dtype=F64)).requires_grad_(True)
    for t in (None, 0, 400, 999):
        post = m.class_posterior(x, t)
        assert post.shape == (50, 3)
        torch.testing.assert_close(post.sum(-1), torch.ones(50, dtype=F64))
        for c in range(3):
            bayes = (m.log_prob(x, t, c) + m.class_priors[c].log() - m.log_prob(x, t)).exp()
            torch.testing.assert_close(post[:, c], bayes, rtol=1e-10, atol=1e-12)
            (g,) = torch.autograd.grad(m.class_log_posterior(x, t)[:, c].sum(), x)
            torch.testing.assert_close(m.log_posterior_grad(x, t, c), g, rtol=1e-9, atol=1e-10)
            # Bayes for scores: grad log p(c|x) = score(x|c) - score(x)
            torch.testing.assert_close(m.log_posterior_grad(x, t, c), m.score(x, t, c) - m.score(x, t))


def test_eps_and_tweedie_are_the_same_score():
    m = example_mixture_2d()
    x = torch.randn(20, 2, generator=gen(7), dtype=F64)
    t = 300
    ab = SCHED.alphas_cumprod[t].double()
    for c in (None, 0, 1):
        eps = m.eps(x, t, c)
        torch.testing.assert_close(eps, -(1 - ab).sqrt() * m.score(x, t, c))
        x0 = m.posterior_mean_x0(x, t, c)
        # x_t = sqrt(ab) E[x0|x_t] + sqrt(1 - ab) E[eps|x_t]
        torch.testing.assert_close(ab.sqrt() * x0 + (1 - ab).sqrt() * eps, x)


@pytest.mark.parametrize("t,c", [(100, None), (400, 1), (800, None), (800, 0)])
def test_posterior_mean_matches_monte_carlo(t, c):
    """E[x0 | x_t] (Tweedie, closed form) against self-normalised importance sampling:
    x0_i ~ p(x0 [| c]), weights q(x_t | x0_i); tolerance 5 delta-method standard errors."""
    m = mixture_2d_shared_class()
    ab = SCHED.alphas_cumprod[t].double()
    pts = m.sample_noised(6, t, c, gen(8))  # typical points of p_t
    x0 = m.sample(200000, c, gen(9))
    d2 = ((pts[:, None, :] - ab.sqrt() * x0[None]) ** 2).sum(-1)  # (P, N)
    w = torch.softmax(-0.5 * d2 / (1 - ab), dim=1)
    est = w @ x0  # (P, 2)
    se = torch.sqrt(torch.einsum("pn,pnd->pd", w**2, (x0[None] - est[:, None]) ** 2))
    exact = m.posterior_mean_x0(pts, t, c)
    assert ((est - exact).abs() <= 5 * se + 1e-12).all(), (est, exact, se)
    # and the oracle's eps is E[eps | x_t] estimated the same way
    eps_i = (pts[:, None, :] - ab.sqrt() * x0[None]) / (1 - ab).sqrt()
    est_eps = torch.einsum("pn,pnd->pd", w, eps_i)
    se_eps = se * ab.sqrt() / (1 - ab).sqrt()
    assert ((est_eps - m.eps(pts, t, c)).abs() <= 5 * se_eps + 1e-12).all()


@pytest.mark.parametrize("c", [None, 1])
def test_sample_has_the_exact_moments(c):
    m = mixture_2d_shared_class()
    n = 20000
    x = m.sample(n, c, gen(10))
    assert x.shape == (n, 2) and x.dtype == F64
    se = m.std(c) / math.sqrt(n)
    assert ((x.mean(0) - m.mean(c)).abs() <= 5 * se).all()
    cov = torch.cov(x.T)
    assert ((cov - m.covariance(c)).abs() <= 0.05 * m.covariance(c).diagonal().max()).all()
    if c is not None:
        comp = m.nearest_component(x, c)
        assert set(m.labels[comp].tolist()) == {c}


# ----------------------------------------------------------------------------
# the oracle denoiser's protocol
# ----------------------------------------------------------------------------


def test_oracle_follows_the_denoiser_protocol():
    m = mixture_2d_shared_class()
    oracle = OracleDenoiser(m, SCHED)
    assert oracle.prediction_type == "epsilon" and oracle.context_dim == m.num_classes + 1 == 4
    B = 6
    x = torch.randn(B, 2, generator=gen(11))  # float32, like a U-Net input
    t = torch.tensor([0, 10, 100, 500, 900, 999])
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    ctx = m.condition_context(labels)
    assert ctx.shape == (B, 1, 4) and ctx.dtype == torch.float32
    out = oracle(x, t, ctx)
    assert out.shape == x.shape and out.dtype == torch.float32
    torch.testing.assert_close(out, m.eps(x.double(), t, labels).float())
    null = m.condition_context(None, B)
    assert null[:, 0, -1].eq(1).all() and null[:, 0, :-1].eq(0).all()
    torch.testing.assert_close(oracle(x, t, null), m.eps(x.double(), t).float())
    # mixed conditional / null rows in one call, and an int t
    mixed = torch.cat([ctx[:3], null[3:]])
    expect = torch.cat([m.eps(x[:3].double(), 50, labels[:3]), m.eps(x[3:].double(), 50)]).float()
    torch.testing.assert_close(oracle(x, 50, mixed), expect)
    assert m.decode_context(mixed).tolist() == [0, 1, 2, -1, -1, -1]


def test_oracle_counts_evaluations_through_the_course_sampler():
    m = example_mixture_2d()
    oracle = OracleDenoiser(m)
    sampler = ConditionalDDIMSampler(oracle, SCHED)
    n = 32
    cond, null = m.condition_context(0, n), m.condition_context(None, n)
    x = sampler.sample((n, 2), cond, null, ClassifierFreeGuidance(1.0), 10, progress=False)
    assert x.shape == (n, 2) and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert (oracle.num_calls, oracle.num_rows) == (10, 10 * n)  # gamma = 1: no unconditional pass
    batched = ConditionalDDIMSampler(oracle, SCHED, cfg_mode="batched")
    batched.sample((n, 2), cond, null, ClassifierFreeGuidance(3.0), 10, progress=False)
    assert (oracle.num_calls, oracle.num_rows) == (20, 30 * n)


def test_oracle_doubled_batch_shortcut_is_exact():
    m = mixture_2d_shared_class()
    oracle = OracleDenoiser(m)
    x = torch.randn(8, 2, generator=gen(12), dtype=F64)
    ctx = torch.cat([m.condition_context(None, 8, F64), m.condition_context(1, 8, F64)])
    t = torch.full((16,), 321)
    out = oracle(torch.cat([x, x]), t, ctx)
    torch.testing.assert_close(out[:8], m.eps(x, 321), rtol=0, atol=0)
    torch.testing.assert_close(out[8:], m.eps(x, 321, 1), rtol=0, atol=0)


def test_oracle_and_context_reject_bad_input():
    m = example_mixture_2d()
    oracle = OracleDenoiser(m)
    x = torch.zeros(2, 2)
    good = m.condition_context(0, 2)
    with pytest.raises(ValueError, match="context"):
        oracle(x, torch.tensor([1, 1]), torch.zeros(2, 1, 5))  # wrong width
    with pytest.raises(ValueError, match="one-hot"):
        oracle(x, torch.tensor([1, 1]), torch.full((2, 1, 3), 1 / 3))
    with pytest.raises(ValueError, match="context"):
        oracle(x, torch.tensor([1, 1]), m.condition_context(0, 3))
    with pytest.raises(ValueError, match="x_t|x must"):
        oracle(torch.zeros(2, 3), torch.tensor([1, 1]), good)
    with pytest.raises(ValueError, match="t must"):
        oracle(x, torch.tensor([1, 1000]), good)
    with pytest.raises(ValueError, match="labels"):
        m.condition_context(torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="batch"):
        m.condition_context(None)
    with pytest.raises(TypeError, match="mixture"):
        OracleDenoiser("not a mixture")


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(weights=[0.5, -0.5], means=[0, 1], covariances=[1, 1]), ValueError, "weights"),
        (dict(weights=[0.5, 0.5], means=[[0, 1, 2], [1, 2, 3]], covariances=[1, 1]), ValueError, "means"),
        (dict(weights=[0.5, 0.5], means=[0, 1], covariances=[1, 1, 1]), ValueError, "covariances"),
        (dict(weights=[0.5, 0.5], means=[[0, 0], [1, 1]], covariances=[[[1, 2], [2, 1]], [[1, 0], [0, 1]]]), ValueError, "positive definite"),
        (dict(weights=[0.5, 0.5], means=[[0, 0], [1, 1]], covariances=[[[1, 0.5], [0, 1]], [[1, 0], [0, 1]]]), ValueError, "symmetric"),
        (dict(weights=[0.5, 0.5], means=[0, 1], covariances=[1, 1], labels=[0, 2]), ValueError, "classes \\[1\\]"),
        (dict(weights=[0.5, 0.5], means=[0, 1], covariances=[1, 1], labels=[0.5, 1]), TypeError, "labels"),
        (dict(weights=[0.5, 0.5], means=[0, 1], covariances=[1, float("nan")]), ValueError, "covariances"),
    ],
)
def test_mixture_rejects_bad_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        GaussianMixture(**kwargs)


def test_mixture_methods_reject_bad_queries():
    m = example_mixture_2d()
    x = torch.zeros(3, 2, dtype=F64)
    with pytest.raises(ValueError, match="x must have shape"):
        m.score(torch.zeros(3, 3), 10)
    with pytest.raises(TypeError, match="x must be"):
        m.score([[0.0, 0.0]], 10)
    with pytest.raises(ValueError, match="t must"):
        m.score(x, -1)
    with pytest.raises(ValueError, match="t of shape"):
        m.score(x, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="c must"):
        m.score(x, 10, 5)
    with pytest.raises(TypeError, match="c must"):
        m.score(x, 10, 0.5)
    with pytest.raises(ValueError, match="c must"):
        m.log_posterior_grad(x, 10, None)
    with pytest.raises(ValueError, match="gamma"):
        tilted_target(m, 0, -1.0)


# ----------------------------------------------------------------------------
# classifier guidance == classifier-free guidance with exact scores (chapter 06)
# ----------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    which=st.sampled_from(sorted(MIXTURES)),
    seed=st.integers(0, 2**31 - 1),
    t=st.integers(0, 999),
    s=st.floats(0.0, 20.0, allow_nan=False),
)
def test_classifier_guidance_equals_cfg_at_every_x_t(which, seed, t, s):
    """eps_u - sqrt(1 - ab) s grad log p(c|x) == eps_u + s (eps_c - eps_u): the derivation of ch. 06."""
    m = MIXTURES[which]()
    g = gen(seed)
    x = 3.0 * torch.randn(16, m.dim, generator=g, dtype=F64)
    c = int(torch.randint(0, m.num_classes, (1,), generator=g))
    ab = SCHED.alphas_cumprod[t].double()
    eps_u, eps_c = m.eps(x, t), m.eps(x, t, c)
    cfg = cfg_combine(eps_u, eps_c, s)
    cg = classifier_guided_eps(eps_u, m.log_posterior_grad(x, t, c), ab, s)
    scale = 1.0 + float(eps_u.abs().max() + eps_c.abs().max()) * (1.0 + s)
    assert float((cfg - cg).abs().max()) <= 1e-12 * scale
    # the same with the gradient taken by autograd of the exact classifier's logits
    grad = classifier_log_prob_grad(ExactClassifier(m), x, torch.full((16,), t), torch.full((16,), c))
    cg_auto = classifier_guided_eps(eps_u, grad, ab, s)
    assert float((cfg - cg_auto).abs().max()) <= 1e-10 * scale


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_classifier_guidance_and_cfg_give_the_same_samples(eta):
    """Through the course sampler: CFG at gamma = s vs pure classifier guidance with the exact
    classifier at scale s (text = the null condition, guidance_scale = 1)."""
    m = mixture_2d_shared_class()
    n, s, c = 512, 4.0, 1
    sampler = ConditionalDDIMSampler(OracleDenoiser(m, SCHED), SCHED, SamplerConfig(timestep_spacing="trailing"))
    cond, null = m.condition_context(c, n, F64), m.condition_context(None, n, F64)
    common = dict(num_inference_steps=50, eta=eta, progress=False)
    x_cfg = sampler.sample((n, 2), cond, null, ClassifierFreeGuidance(s), generator=gen(13), **common)
    classifier = ClassifierGuidance(ExactClassifier(m, SCHED), torch.full((n,), c), s)
    x_cg = sampler.sample((n, 2), null, None, classifier, generator=gen(13), **common)
    assert x_cfg.dtype == F64
    assert float((x_cfg - x_cg).abs().max()) < 1e-9


# ----------------------------------------------------------------------------
# samplers on the oracle
# ----------------------------------------------------------------------------


def test_ddpm_sample_is_the_course_sampler_with_eta_1_and_all_steps():
    """DDPM's posterior step == DDIM's step with eta = 1 at every training timestep; the two
    loops draw x_T and one z per step from the generator in the same order.

    The course sampler computes sigma_t in the schedule's dtype; with float32,
    1 - ab_t / ab_{t-1} = beta_t ~ 1e-4 keeps only ~3 significant digits (as in diffusers),
    so the comparison to round-off uses a float64 copy of the schedule, and the float32
    schedule is checked to a looser tolerance."""
    m = mixture_2d_shared_class()
    n, gamma = 64, 3.0
    cond, null = m.condition_context(2, n, F64), m.condition_context(None, n, F64)
    sched = SHORT  # the identity holds for any T; a short schedule keeps the test fast
    sched64 = NoiseSchedule(**SHORT.to_config())
    sched64.alphas_cumprod = sched64.alphas_cumprod.double()
    sched64.final_alpha_cumprod = torch.tensor(1.0, dtype=F64)
    oracle = OracleDenoiser(m, sched)
    for interval in (None, (20, 120)):
        ours = ddpm_sample(oracle, sched, (n, 2), cond, null, gamma, generator=gen(14),
                           guidance_interval=interval)
        for course_sched, tol in ((sched64, 1e-9), (sched, 5e-3)):
            course = ConditionalDDIMSampler(oracle, course_sched, cfg_mode="batched").sample(
                (n, 2), cond, null, ClassifierFreeGuidance(gamma, interval=interval),
                num_inference_steps=sched.num_train_timesteps, eta=1.0, generator=gen(14), progress=False)
            assert float((ours - course).abs().max()) < tol


def test_ddpm_sample_rejects_bad_input_with_the_samplers_messages():
    m = mixture_2d_shared_class()
    cond, null = m.condition_context(2, 4, F64), m.condition_context(None, 4, F64)
    oracle = OracleDenoiser(m, SHORT)
    cases = [
        (dict(shape=(3, 2)), "batch size"),
        (dict(negative_prompt_embeds=None), "negative_prompt_embeds is required"),
        (dict(negative_prompt_embeds=null[:2]), "negative_prompt_embeds must have the shape of prompt_embeds"),
        (dict(negative_prompt_embeds=null.float()), "negative_prompt_embeds must have the dtype of prompt_embeds"),
        (dict(latents=torch.zeros(4, 3, dtype=F64)), "latents must be a tensor of shape"),
        (dict(guidance_scale=-1.0), "guidance_scale must be >= 0"),
    ]
    for change, message in cases:
        kwargs = dict(shape=(4, 2), prompt_embeds=cond, negative_prompt_embeds=null, guidance_scale=3.0) | change
        with pytest.raises((ValueError, TypeError), match=message):
            ddpm_sample(oracle, SHORT, generator=gen(0), **kwargs)
    assert ddpm_sample(oracle, SHORT, (4, 2), cond, None, 1.0, generator=gen(0)).shape == (4, 2)  # γ = 1: no null


def _check_moments(x: torch.Tensor, m: GaussianMixture, c: int, k: float = 4.0) -> None:
    """Mean and variance of each coordinate within k standard errors of the exact values."""
    n = x.shape[0]
    mean, var = x.mean(0), x.var(0)
    se_mean = var.sqrt() / math.sqrt(n)
    m4 = ((x - mean) ** 4).mean(0)
    se_var = ((m4 - var**2) / n).sqrt()
    exact_mean, exact_var = m.mean(c), m.covariance(c).diagonal()
    assert ((mean - exact_mean).abs() <= k * se_mean).all(), (mean, exact_mean, se_mean)
    assert ((var - exact_var).abs() <= k * se_var).all(), (var, exact_var, se_var)


@pytest.mark.parametrize("method,steps", [("ddim", 250), ("ddpm", None)])
def test_gamma_1_reproduces_the_class_conditional(method, steps):
    """With gamma = 1 the oracle sampler samples p(x | c): 10,000 samples, mean and variance
    within 4 standard errors. x_T is drawn from the exact p_T(x | c) (sample_noised), so the
    only errors left are Monte-Carlo and the DDIM discretisation (small at 250 steps)."""
    m = mixture_2d_shared_class()
    n, c = 10000, 1
    g = gen(15)
    x = sample_guided(m, n, c, 1.0, method=method, num_inference_steps=steps or 1, generator=g,
                      latents=m.sample_noised(n, SCHED.num_train_timesteps - 1, c, g))
    _check_moments(x, m, c)


def test_gamma_1_from_standard_normal_noise_too():
    """The usual start x_T ~ N(0, I) is also within Monte-Carlo error for this schedule."""
    m = example_mixture_1d()
    x = sample_guided(m, 10000, 1, 1.0, method="ddim", num_inference_steps=250, generator=gen(16))
    _check_moments(x, m, 1)


# ----------------------------------------------------------------------------
# the tilted target
# ----------------------------------------------------------------------------


def test_tilted_target_closed_forms():
    m = mixture_2d_shared_class()
    t1 = tilted_target(m, 1, 1.0)
    assert t1.exact and "p(x|c)" in t1.method
    torch.testing.assert_close(t1.mean, m.mean(1))
    torch.testing.assert_close(t1.covariance, m.covariance(1))
    t0 = tilted_target(m, 1, 0.0)
    assert t0.exact
    torch.testing.assert_close(t0.mean, m.mean())
    one_class = GaussianMixture([0.3, 0.7], [-1.0, 2.0], [0.5, 0.2], labels=[0, 0])
    assert tilted_target(one_class, 0, 5.0).exact  # p(x|c) = p(x)


@pytest.mark.parametrize("name", ["1d-shared", "2d-shared"])
def test_tilted_grid_is_accurate(name):
    m = MIXTURES[name]()
    c = 1 if m.num_classes > 2 else 0
    # gamma -> 1: the grid must reproduce the exact class-conditional moments
    near1 = tilted_target(m, c, 1.0 + 1e-9)
    assert not near1.exact
    torch.testing.assert_close(near1.mean, m.mean(c), atol=1e-6, rtol=0)
    torch.testing.assert_close(near1.std, m.std(c), atol=1e-6, rtol=0)
    for gamma in (0.5, 3.0, 8.0):
        tt = tilted_target(m, c, gamma)
        assert tt.grid_error < 1e-6 and tt.boundary_mass < 1e-9
        torch.testing.assert_close(tt.probs.sum(), torch.tensor(1.0, dtype=F64))
        # the normaliser satisfies Z >= 1 for gamma >= 1 (Jensen) and Z <= 1 for gamma <= 1 (Hoelder)
        assert (tt.log_normalizer >= -1e-9) if gamma >= 1 else (tt.log_normalizer <= 1e-9)
        x = tt.sample(20000, gen(17))
        se = tt.std / math.sqrt(20000)
        assert ((x.mean(0) - tt.mean).abs() <= 5 * se).all()


def test_tilted_target_sharpens_towards_the_class():
    m = example_mixture_1d()
    means = [float(tilted_target(m, 1, g).mean) for g in (1, 3, 5, 8)]
    assert means == sorted(means) and means[0] == pytest.approx(1.0)


# ----------------------------------------------------------------------------
# the show functions
# ----------------------------------------------------------------------------


def test_guidance_sweep_table():
    res = guidance_sweep_table(example_mixture_1d(SHORT), gammas=(1, 3), n=2000, num_inference_steps=50)
    assert isinstance(res, GuidanceSweep) and len(res.rows) == 2
    text = str(res)
    assert "tilted target" in text and "DDPM" in text
    r1, r3 = res.rows
    assert r1["target_exact"] and not r3["target_exact"]
    for key in ("ddim_mean", "ddpm_mean"):  # gamma = 1: p(x|c) up to MC error
        assert float((r1[key] - r1["target_mean"]).abs().max()) < 5 * float(r1["target_std"].max()) / math.sqrt(2000)
    # gamma = 3: CFG does not sample the tilted target (far beyond MC error), and DDIM != DDPM
    se = float(r3["se_mean"].max())
    assert float(r3["ddim_mean"] - r3["target_mean"]) > 20 * se
    assert float(r3["ddim_mean"] - r3["ddpm_mean"]) > 20 * se


def test_guidance_interval_demo():
    demo = guidance_interval_demo(n=2000, samplers=("ddim",))
    assert isinstance(demo, IntervalDemo)
    torch.testing.assert_close(demo.true, torch.tensor([0.6, 0.4], dtype=F64))
    props = {run: p for (run, _), p in demo.proportions.items()}
    none, full, interval = props.values()
    assert (none - demo.true).abs().max() < 0.05
    assert full[1] < 0.02  # strong guidance at high noise drops the mode at +0.5
    assert (interval - demo.true).abs().max() < 0.05  # guiding only in [80, 250] keeps it
    assert "mode" in str(demo)
