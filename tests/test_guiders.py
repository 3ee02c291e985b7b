"""The guiders: each combination equals diffusers' guider (<= 1e-6) or the paper's equation."""

import pytest
import torch
from diffusers.guiders import (
    AdaptiveProjectedGuidance as DAPG,
)
from diffusers.guiders import (
    AutoGuidance as DAutoGuidance,
)
from diffusers.guiders import (
    ClassifierFreeGuidance as DCFG,
)
from diffusers.guiders import (
    ClassifierFreeZeroStarGuidance as DZeroStar,
)
from diffusers.guiders import (
    PerturbedAttentionGuidance as DPAG,
)
from diffusers.guiders.adaptive_projected_guidance import MomentumBuffer

from tutorial_lib import guiders as G
from tutorial_lib.attention import SelfAttention
from tutorial_lib.guidance import combine_weighted_prompts
from tutorial_lib.schedule import PREDICTION_TYPES, NoiseSchedule
from tutorial_lib.unet import ConditionalUNet, UNetConfig

TOL = 1e-6


def _preds(n=3, seed=0, shape=(4, 3, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) for _ in range(n)]


def _diffusers(guider, step=0, steps=10, **preds):
    guider.set_state(step, steps, torch.tensor(500))
    return guider.forward(**preds).pred


@pytest.mark.parametrize("gamma,phi", [(1.0, 0.0), (3.0, 0.0), (7.5, 0.7), (0.0, 0.0)])
def test_cfg_equals_diffusers(gamma, phi):
    cond, uncond = _preds(2)
    ours = G.ClassifierFreeGuidance(gamma, guidance_rescale=phi).combine(cond, uncond)
    theirs = _diffusers(DCFG(guidance_scale=gamma, guidance_rescale=phi), pred_cond=cond, pred_uncond=uncond)
    assert (ours - theirs).abs().max() <= TOL


@pytest.mark.parametrize("momentum,threshold,eta", [(None, 0.0, 1.0), (None, 15.0, 0.0), (-0.5, 10.0, 0.0),
                                                    (-0.75, 0.0, 0.5)])
def test_apg_equals_diffusers_over_several_steps(momentum, threshold, eta):
    ours = G.AdaptiveProjectedGuidance(10.0, eta=eta, norm_threshold=threshold, momentum=momentum)
    theirs = DAPG(guidance_scale=10.0, adaptive_projected_guidance_momentum=momentum,
                  adaptive_projected_guidance_rescale=threshold, eta=eta)
    theirs.momentum_buffer = MomentumBuffer(momentum) if momentum is not None else None  # its step-0 set-up
    ours.reset()
    for step in range(4):
        cond, uncond = _preds(2, seed=step)
        a = ours.combine(cond, uncond)
        b = _diffusers(theirs, step=step, pred_cond=cond, pred_uncond=uncond)
        assert (a - b).abs().max() <= TOL, step


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_apg_original_formulation_equals_diffusers(eta):
    cond, uncond = _preds(2, seed=9)
    ours = G.AdaptiveProjectedGuidance(4.0, eta=eta, norm_threshold=0.0, use_original_formulation=True)
    theirs = DAPG(guidance_scale=4.0, eta=eta, adaptive_projected_guidance_rescale=0.0,
                  use_original_formulation=True)
    assert (ours.combine(cond, uncond) - _diffusers(theirs, pred_cond=cond, pred_uncond=uncond)).abs().max() <= TOL


def test_apg_paper_form_at_scale_one_is_the_conditional_model_and_the_default_form_is_not():
    cond, uncond = _preds(2, seed=10)
    paper = G.AdaptiveProjectedGuidance(0.0, eta=0.0, norm_threshold=0.0, use_original_formulation=True)  # w − 1 = 0
    assert torch.equal(paper.combine(cond, uncond), cond)
    default = G.AdaptiveProjectedGuidance(1.0, eta=0.0, norm_threshold=0.0)
    assert (default.combine(cond, uncond) - cond).abs().max() > 1e-2


def test_apg_without_its_options_is_cfg():
    cond, uncond = _preds(2)
    apg = G.AdaptiveProjectedGuidance(5.0, eta=1.0, norm_threshold=0.0)
    assert (apg.combine(cond, uncond) - G.ClassifierFreeGuidance(5.0).combine(cond, uncond)).abs().max() <= 1e-5


@pytest.mark.parametrize("ptype", PREDICTION_TYPES)
def test_apg_in_x0_space_splits_the_denoised_predictions(ptype):
    """space="x0" (the paper's Alg. 1 on D(x_t)): the same update applied to x̂_0,c and x̂_0,u by
    hand, mapped back to the model's prediction type; and it differs from the ε-space split."""
    schedule, t = NoiseSchedule(), 600
    x, pc, pu = (torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(s)) for s in (5, 6, 7))
    c, neg = _contexts(b=2, k=2)
    step = G.GuidanceStep(x, t, 0, 10, schedule.alphas_cumprod[t], c, neg,
                          lambda x_t, tt, ctx: pc if ctx is c else pu, "two_pass", ptype)
    apg = G.AdaptiveProjectedGuidance(7.0, eta=0.0, norm_threshold=0.0, space="x0")
    x0c, x0u = (schedule.predict_x0(p, x, t, ptype) for p in (pc, pu))
    diff = (x0c - x0u).double()
    unit = torch.nn.functional.normalize(x0c.double().flatten(1), dim=1).view_as(diff)
    orthogonal = diff - (diff * unit).sum(dim=(1, 2, 3), keepdim=True) * unit
    x0_guided = x0u + 7.0 * orthogonal.float()
    out = apg(step)
    torch.testing.assert_close(schedule.predict_x0(out, x, t, ptype), x0_guided, rtol=0, atol=1e-4)
    in_prediction_space = G.AdaptiveProjectedGuidance(7.0, eta=0.0, norm_threshold=0.0)(step)
    if ptype == "sample":  # an x̂_0-predicting model's output already is x̂_0: the same split
        torch.testing.assert_close(out, in_prediction_space, rtol=0, atol=1e-4)
    else:
        assert (out - in_prediction_space).abs().max() > 1e-2


@pytest.mark.parametrize("ptype", PREDICTION_TYPES)
def test_to_x0_and_from_x0_are_inverse(ptype):
    schedule, t = NoiseSchedule(), 300
    x, pred = _preds(2, seed=4, shape=(2, 3, 4, 4))
    step = G.GuidanceStep(x, t, 0, 10, schedule.alphas_cumprod[t], None, None, None, prediction_type=ptype)
    torch.testing.assert_close(step.to_x0(pred), schedule.predict_x0(pred, x, t, ptype), rtol=0, atol=1e-5)
    torch.testing.assert_close(step.from_x0(step.to_x0(pred)), pred, rtol=0, atol=1e-4)


@pytest.mark.parametrize("step", [0, 1, 3])
def test_cfg_zero_star_equals_diffusers(step):
    cond, uncond = _preds(2, seed=step)
    ours = G.ClassifierFreeZeroStarGuidance(6.0, zero_init_steps=1).combine(cond, uncond, step)
    theirs = _diffusers(DZeroStar(guidance_scale=6.0, zero_init_steps=1), step=step,
                        pred_cond=cond, pred_uncond=uncond)
    assert (ours - theirs).abs().max() <= TOL


def test_autoguidance_equals_diffusers_with_the_weak_prediction_as_uncond():
    cond, weak = _preds(2)
    ours = G.AutoGuidance(lambda x, t, c: x, 2.5).combine(cond, weak)
    theirs = _diffusers(DAutoGuidance(guidance_scale=2.5, auto_guidance_layers=[0], dropout=0.1), pred_cond=cond,
                        pred_uncond=weak)
    assert (ours - theirs).abs().max() <= TOL


@pytest.mark.parametrize("gamma", [1.0, 4.0])
def test_pag_equals_diffusers(gamma):
    cond, uncond, pert = _preds(3)
    unet = ConditionalUNet(UNetConfig(base_channels=8, channel_mults=(1, 2), attention_levels=(False, True),
                                      num_heads=2, context_dim=8, time_embed_dim=16))
    ours = G.PerturbedAttentionGuidance(unet, 3.0, guidance_scale=gamma)
    a = ours.combine(cond, pert, uncond if gamma != 1 else None)
    theirs = DPAG(guidance_scale=gamma, perturbed_guidance_scale=3.0, perturbed_guidance_start=0.0,
                  perturbed_guidance_stop=1.0, perturbed_guidance_layers=[0])
    # step 1: diffusers' perturbed range is start < step < stop (strict at the start)
    b = _diffusers(theirs, step=1, pred_cond=cond, pred_uncond=uncond, pred_cond_skip=pert)
    assert (a - b).abs().max() <= TOL


def test_perturbed_self_attention_uses_the_identity_map_and_restores_the_unet():
    torch.manual_seed(0)
    unet = ConditionalUNet(UNetConfig(base_channels=8, channel_mults=(1, 2), attention_levels=(False, True),
                                      num_heads=2, context_dim=8, time_embed_dim=16)).eval()
    for p in unet.parameters():  # the output conv starts at zero: give every weight a value
        p.data.normal_(0, 0.2)
    x, t, ctx = torch.randn(2, 3, 8, 8), torch.tensor([10, 500]), torch.randn(2, 5, 8)
    before = unet(x, t, ctx)
    attn = dict(unet.named_modules())
    name = next(n for n, m in attn.items() if isinstance(m, SelfAttention))
    tokens = torch.randn(2, 16, attn[name].query_dim)
    with G.perturbed_self_attention(unet, [name]):
        perturbed = unet(x, t, ctx)
        # identity attention: softmax(QK^T) = I, so each token gets its own value
        m = attn[name]
        assert torch.allclose(m(tokens), tokens + m.to_out(m.to_v(m.norm(tokens))), atol=1e-6)
    assert not torch.allclose(perturbed, before)
    assert torch.equal(unet(x, t, ctx), before)  # the hooks are gone
    with pytest.raises(ValueError, match="layers must name self-attention modules"):
        G.PerturbedAttentionGuidance(unet, 3.0, layers=["nope"])


def test_weighted_prompts_per_image_weights():
    e1, e2, uncond = _preds(3)
    w = torch.tensor([[1.0, 0.0], [0.5, 0.5], [2.0, -1.0], [0.0, 3.0]])
    out = G.WeightedPromptsGuidance(w, guidance_scale=1.0).combine([e1, e2], uncond)
    for b in range(4):
        expected = uncond[b] + w[b, 0] * (e1[b] - uncond[b]) + w[b, 1] * (e2[b] - uncond[b])
        assert (out[b] - expected).abs().max() <= TOL
    # one weight set for the whole batch is the package's combine_weighted_prompts
    same = G.WeightedPromptsGuidance([2.0, 1.5], guidance_scale=1.0).combine([e1, e2], uncond)
    assert (same - combine_weighted_prompts(uncond, [e1, e2], [2.0 / 3.5, 1.5 / 3.5], 3.5)).abs().max() <= 1e-5
    # γ multiplies every weight: ε_u + Σₖ wₖ γ (ε_k − ε_u)
    scaled = G.WeightedPromptsGuidance([0.7, -0.3], guidance_scale=4.0).combine([e1, e2], uncond)
    assert (scaled - combine_weighted_prompts(uncond, [e1, e2], [0.7, -0.3], 4.0)).abs().max() <= 1e-5


def test_classifier_guidance_is_dhariwal_nichol_eq_14():
    x = torch.randn(2, 3, 8, 8)
    classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 4))
    labels = torch.tensor([1, 3])
    guider = G.ClassifierGuidance(lambda xt, t: classifier(xt), labels, classifier_scale=2.0)
    eps = torch.randn_like(x)
    step = G.GuidanceStep(x, 400, 0, 10, torch.tensor(0.3), torch.zeros(2, 5, 8), None, lambda xt, t, c: eps)
    out = guider(step)
    xr = x.clone().requires_grad_(True)
    lp = torch.log_softmax(classifier(xr), dim=1)[torch.arange(2), labels].sum()
    (grad,) = torch.autograd.grad(lp, xr)
    assert torch.allclose(out, eps - 2.0 * (0.7 ** 0.5) * grad, atol=1e-5)


def test_perp_neg_removes_only_the_perpendicular_part_of_the_negative():
    uncond = torch.zeros(1, 4)
    cond = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    guider = G.PerpNegGuidance(torch.zeros(1, 77, 8), guidance_scale=2.0, negative_scale=1.0)
    parallel = torch.tensor([[3.0, 0.0, 0.0, 0.0]])  # the negative overlaps the positive: nothing removed
    assert torch.allclose(guider.combine(cond, uncond, parallel), 2.0 * cond)
    perpendicular = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    assert torch.allclose(guider.combine(cond, uncond, perpendicular), torch.tensor([[2.0, -1.0, 0.0, 0.0]]))
    mixed = torch.tensor([[5.0, 2.0, 0.0, 0.0]])
    assert torch.allclose(guider.combine(cond, uncond, mixed), torch.tensor([[2.0, -2.0, 0.0, 0.0]]))


def test_cfg_guider_calls_and_interval():
    calls = []

    def denoiser(x, t, c):
        calls.append(c[0, 0, 0].item())
        return x * 0 + c[:, :1, :1].view(-1, 1, 1, 1)

    cond, uncond = torch.full((2, 3, 4), 2.0), torch.zeros(2, 3, 4)
    step = G.GuidanceStep(torch.zeros(2, 3, 4, 4), 900, 0, 10, torch.tensor(0.1), cond, uncond, denoiser)
    out = G.ClassifierFreeGuidance(3.0)(step)
    assert torch.allclose(out, torch.full_like(out, 6.0)) and calls == [2.0, 0.0]
    calls.clear()
    out = G.ClassifierFreeGuidance(3.0, interval=(100, 500))(step)  # t = 900 is outside: ε_c, one pass
    assert torch.allclose(out, torch.full_like(out, 2.0)) and calls == [2.0]
    calls.clear()
    step.cfg_mode = "batched"
    G.ClassifierFreeGuidance(3.0)(step)
    assert len(calls) == 1  # one doubled batch
    calls.clear()
    step.cfg_mode = "auto"  # 2 × 2 rows <= AUTO_BATCHED_MAX_ROWS: batched
    G.ClassifierFreeGuidance(3.0)(step)
    assert len(calls) == 1 and 4 <= G.AUTO_BATCHED_MAX_ROWS


@pytest.mark.parametrize("make, err, match", [
    (lambda: G.ClassifierFreeGuidance(-1.0), ValueError, "guidance_scale must be >= 0"),
    (lambda: G.ClassifierFreeGuidance(3.0, guidance_rescale=2.0), ValueError, "guidance_rescale must be <= 1"),
    (lambda: G.ClassifierFreeGuidance(3.0, interval=(500, 100)), ValueError, "t_low <= t_high"),
    (lambda: G.AdaptiveProjectedGuidance(float("nan")), ValueError, "guidance_scale must be finite"),
    (lambda: G.AdaptiveProjectedGuidance("7"), TypeError, "guidance_scale must be a real number"),
    (lambda: G.ClassifierFreeZeroStarGuidance(3.0, zero_init_steps=-1), ValueError, "zero_init_steps"),
    (lambda: G.AutoGuidance("weak"), TypeError, "weak_denoiser must be callable"),
    (lambda: G.WeightedPromptsGuidance([]), ValueError, "weights must be"),
    (lambda: G.WeightedPromptsGuidance([1.0], guidance_rescale=1.5), ValueError, "guidance_rescale must be <= 1"),
    (lambda: G.ClassifierGuidance(len, torch.tensor([0.5])), TypeError, "labels must be"),
    (lambda: G.PerpNegGuidance(torch.zeros(3), 1.0), ValueError, "negative_embeds must be"),
])
def test_bad_options_fail_at_construction(make, err, match):
    with pytest.raises(err, match=match):
        make()


def _counting_denoiser(calls):
    """A nonlinear per-row denoiser (x_t, t, context) that records each call's row count."""

    def denoiser(x, t, c):
        calls.append(x.shape[0])
        return torch.tanh(x * c.mean((1, 2)).view(-1, 1, 1, 1) + t.view(-1, 1, 1, 1) / 1000)

    return denoiser


def _contexts(seed=0, b=2, k=3):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, 5, 8, generator=g) for _ in range(k)]


GUIDERS = {  # name: (make the guider, whether it takes the prompt list, contexts per step)
    "cfg": (lambda c: G.ClassifierFreeGuidance(4.0, guidance_rescale=0.5), False, 2),
    "weighted": (lambda c: G.WeightedPromptsGuidance([0.7, -0.3], 4.0), True, 3),
    "weighted-per-image": (lambda c: G.WeightedPromptsGuidance([[1.0, 0.0], [0.5, 2.0]], 2.0), True, 3),
    "apg": (lambda c: G.AdaptiveProjectedGuidance(5.0, eta=0.5, norm_threshold=1.0, momentum=-0.5), False, 2),
    "zero-star": (lambda c: G.ClassifierFreeZeroStarGuidance(4.0, zero_init_steps=0), False, 2),
    "perp-neg": (lambda c: G.PerpNegGuidance(c[2], 4.0, negative_scale=1.0), False, 3),
}


@pytest.mark.parametrize("name", list(GUIDERS))
def test_batched_and_two_pass_give_the_same_guided_prediction(name):
    """cfg_mode only changes how the predictions are computed: one call on the concatenated
    batch, or one call per context; the guided prediction agrees to <= 1e-5."""
    make, takes_list, n_contexts = GUIDERS[name]
    c1, c2, neg = _contexts()
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    prompts = [c1, c2] if takes_list else c1
    outs = {}
    for mode in ("batched", "two_pass"):
        calls = []
        step = G.GuidanceStep(x, 500, 1, 10, torch.tensor(0.3), prompts, neg, _counting_denoiser(calls), mode)
        guider = make([c1, c2, c2 * 0.5])
        guider.reset()
        outs[mode] = guider(step)
        assert calls == ([2 * n_contexts] if mode == "batched" else [2] * n_contexts)
    assert (outs["batched"] - outs["two_pass"]).abs().max() <= 1e-5


@pytest.mark.parametrize("ptype", PREDICTION_TYPES)
def test_to_epsilon_is_the_schedules_conversion_and_from_epsilon_its_inverse(ptype):
    schedule, t = NoiseSchedule(), 400
    x, pred = _preds(2, seed=3, shape=(2, 3, 4, 4))
    step = G.GuidanceStep(x, t, 0, 10, schedule.alphas_cumprod[t], None, None, None, prediction_type=ptype)
    eps = step.to_epsilon(pred)
    torch.testing.assert_close(eps, schedule.predict_eps(pred, x, t, ptype), rtol=0, atol=1e-5)
    torch.testing.assert_close(step.from_epsilon(eps), pred, rtol=0, atol=1e-5)


@pytest.mark.parametrize("ptype", ["epsilon", "v_prediction"])
def test_classifier_guidance_wrapping_cfg_is_cfg_then_the_gradient_in_epsilon_form(ptype):
    """ε̃ = CFG(ε_c, ε_u) − s √(1 − ᾱ_t) ∇ log p(y | x_t); for a v-prediction the CFG output is
    converted to ε (ε = √ᾱ v + √(1 − ᾱ) x_t), guided, and converted back."""
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 4))
    labels, a = torch.tensor([1, 3]), torch.tensor(0.3)
    cond, uncond, _ = _contexts(4)
    calls = []
    denoiser = _counting_denoiser(calls)
    step = G.GuidanceStep(x, 400, 0, 10, a, cond, uncond, denoiser, "two_pass", ptype)
    cfg = G.ClassifierFreeGuidance(3.0)
    out = G.ClassifierGuidance(lambda xt, t: classifier(xt), labels, 2.0, guider=cfg)(step)
    t = torch.full((2,), 400)
    pred_c, pred_u = denoiser(x, t, cond), denoiser(x, t, uncond)
    pred = pred_u + 3.0 * (pred_c - pred_u)
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(torch.log_softmax(classifier(xr), 1)[torch.arange(2), labels].sum(), xr)
    eps = pred if ptype == "epsilon" else a.sqrt() * pred + (1 - a).sqrt() * x
    eps = eps - 2.0 * (1 - a).sqrt() * grad
    expected = eps if ptype == "epsilon" else (eps - (1 - a).sqrt() * x) / a.sqrt()
    assert (out - expected).abs().max() <= 1e-5
    assert (out - pred).abs().max() > 1e-3  # the gradient term is not negligible here


def _pag_unet():
    return ConditionalUNet(UNetConfig(base_channels=8, channel_mults=(1, 2), attention_levels=(False, True),
                                      num_heads=2, context_dim=8, time_embed_dim=16)).eval()


ONCE_PER_CALL = {  # every guider of the package, as the sampler runs it
    **{name: make for name, (make, _, _) in GUIDERS.items()},
    "classifier": lambda c: G.ClassifierGuidance(lambda x, t: x.flatten(1)[:, :4], torch.tensor([1, 3]), 2.0,
                                                 guider=G.ClassifierFreeGuidance(3.0)),
    "autoguidance": lambda c: G.AutoGuidance(lambda x, t, ctx: 0.5 * x, 2.0),
    "pag": lambda c: G.PerturbedAttentionGuidance(_pag_unet(), 3.0, guidance_scale=2.0),
}


@pytest.mark.parametrize("name", list(ONCE_PER_CALL))
def test_a_guiders_checks_run_once_per_sampling_call_not_once_per_step(name, monkeypatch):
    """Issue 16's bar: after the first step, no shared check (``tutorial_lib._checks``) is called
    from ``guiders.py`` or ``guidance.py`` — they ran in the constructor, in ``Guider.prepare`` or
    at step 0. (The denoiser's own boundary checks, e.g. the U-Net's, are not the guider's.)"""
    import inspect
    import sys

    from tutorial_lib import _checks
    from tutorial_lib import guidance as guidance_module
    from tutorial_lib.sampler import ConditionalDDIMSampler

    late_calls, current = [], {"index": 0}

    def counting(fn):
        def wrapper(*args, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if current["index"] > 0 and caller.endswith(("guiders.py", "guidance.py")):
                late_calls.append((fn.__name__, current["index"]))
            return fn(*args, **kwargs)
        return wrapper

    for fn_name in [n for n, f in vars(_checks).items() if inspect.isfunction(f) and not n.startswith("_")]:
        monkeypatch.setattr(_checks, fn_name, counting(getattr(_checks, fn_name)))
    monkeypatch.setattr(guidance_module, "_check_real", counting(guidance_module._check_real))
    monkeypatch.setattr(guidance_module, "_check_tensor", counting(guidance_module._check_tensor))
    c1, c2, neg = _contexts(b=2)
    guider = ONCE_PER_CALL[name]([c1, c2, c2 * 0.5])
    takes_list = name in ("weighted", "weighted-per-image")
    unet = getattr(guider, "unet", None)
    denoiser = unet if unet is not None else _counting_denoiser([])
    calls_guider = guider.__call__

    class Tracking(type(guider)):  # records the step index the guider is called at
        def __call__(self, step):
            current["index"] = step.index
            return calls_guider(step)

    guider.__class__ = Tracking
    sampler = ConditionalDDIMSampler(denoiser, NoiseSchedule(num_train_timesteps=100))
    shape = (2, 3, 8, 8) if unet is not None else (2, 3, 4, 4)
    sampler.sample(shape, [c1, c2] if takes_list else c1, neg, guider, num_inference_steps=4,
                   generator=torch.Generator().manual_seed(0), progress=False)
    assert current["index"] == 3 and late_calls == []
