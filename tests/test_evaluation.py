"""Measurements of generated shapes (tutorial_lib.evaluation): accuracy, diversity, the sweep."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from tutorial_lib import shapes
from tutorial_lib.evaluation import (
    ATTRIBUTE_NAMES,
    data_reference,
    diversity,
    guidance_sweep,
    judge_accuracy,
    pixel_stats,
    sample_images,
)
from tutorial_lib.guiders import ClassifierFreeGuidance, WeightedPromptsGuidance
from tutorial_lib.pretrained import MODELS_DIR
from tutorial_lib.sampler import ConditionalDDIMSampler, SamplerConfig
from tutorial_lib.schedule import NoiseSchedule


class FixedJudge:
    """Predicts the given labels whatever the image (to test the bookkeeping)."""

    def __init__(self, pred):
        self.pred = pred
        self.seen = None

    def predict(self, images):
        self.seen = images
        return self.pred


class ColourJudge:
    """A crude real judge: colour = nearest palette colour to the darkest-ish pixel mean; others fixed 0."""

    def predict(self, images):
        u = shapes.to_unit_range(images)
        # the shape's pixels are the ones farthest from the light background
        far = (u - shapes.BACKGROUND_RGB.view(1, 3, 1, 1)).norm(dim=1)  # (N, H, W)
        w = (far > far.flatten(1).max(1).values.view(-1, 1, 1) * 0.5).float().unsqueeze(1)
        mean = (u * w).sum((2, 3)) / w.sum((2, 3)).clamp(min=1)
        colour = torch.cdist(mean, shapes.COLOURS_RGB).argmin(1)
        zeros = torch.zeros(images.shape[0], dtype=torch.long)
        return {"colour": colour, "shape": zeros, "size": zeros, "position": zeros}


def _labels(n, seed=0):
    return shapes.sample_labels(n, torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------- judge_accuracy


def test_judge_accuracy_counts_per_attribute_and_all():
    labels = {a: torch.tensor([0, 1, 1, 0]) for a in ATTRIBUTE_NAMES}
    pred = {a: torch.tensor([0, 1, 1, 0]) for a in ATTRIBUTE_NAMES}
    pred["colour"] = torch.tensor([0, 0, 1, 0])  # one wrong colour
    pred["shape"] = torch.tensor([0, 1, 0, 0])  # one wrong shape (another image)
    judge = FixedJudge(pred)
    acc = judge_accuracy(judge, torch.zeros(4, 3, 8, 8), labels)
    assert acc == {"colour": 0.75, "shape": 0.75, "size": 1.0, "position": 1.0, "all": 0.5}


def test_judge_accuracy_clamps_images_first():
    judge = FixedJudge({a: torch.zeros(2, dtype=torch.long) for a in ATTRIBUTE_NAMES})
    judge_accuracy(
        judge,
        torch.full((2, 3, 8, 8), 3.0),
        {a: torch.zeros(2, dtype=torch.long) for a in ATTRIBUTE_NAMES},
    )
    assert judge.seen.max() == 1.0


def test_judge_accuracy_on_real_data_with_a_simple_judge():
    labels = _labels(64)
    images = shapes.render(labels, torch.Generator().manual_seed(1))
    assert judge_accuracy(ColourJudge(), images, labels)["colour"] > 0.9


@pytest.mark.parametrize(
    "images, labels, error, match",
    [
        ("not a tensor", None, TypeError, "images must be a torch.Tensor"),
        (torch.zeros(2, 3, 8), None, ValueError, "at least 4 dims"),
        (
            torch.zeros(2, 3, 8, 8),
            {"colour": torch.zeros(2, dtype=torch.long)},
            ValueError,
            "missing",
        ),
        (torch.zeros(2, 3, 8, 8), "labels", TypeError, "labels must be a dict"),
        (torch.zeros(3, 3, 8, 8), None, ValueError, "one entry per image"),
        (
            torch.zeros(2, 3, 8, 8),
            {a: torch.zeros(2) for a in ATTRIBUTE_NAMES},
            TypeError,
            "integer tensor",
        ),
    ],
)
def test_judge_accuracy_bad_input(images, labels, error, match):
    labels = (
        {a: torch.zeros(2, dtype=torch.long) for a in ATTRIBUTE_NAMES} if labels is None else labels
    )
    judge = FixedJudge({a: torch.zeros(2, dtype=torch.long) for a in ATTRIBUTE_NAMES})
    with pytest.raises(error, match=match):
        judge_accuracy(judge, images, labels)


def test_judge_accuracy_needs_a_predict_method():
    with pytest.raises(TypeError, match="predict"):
        judge_accuracy(
            object(),
            torch.zeros(1, 3, 8, 8),
            {a: torch.zeros(1, dtype=torch.long) for a in ATTRIBUTE_NAMES},
        )


# ---------------------------------------------------------------------------- diversity


def test_diversity_of_identical_samples_is_zero():
    x = torch.rand(3, 1, 3, 8, 8) * 2 - 1
    assert diversity(x.expand(3, 4, 3, 8, 8)) == pytest.approx(0.0, abs=1e-7)


def test_diversity_of_black_and_white_is_one():
    x = torch.stack([-torch.ones(3, 4, 4), torch.ones(3, 4, 4)])[None]  # (1, 2, 3, 4, 4)
    assert diversity(x) == pytest.approx(1.0)


def test_diversity_is_the_mean_over_pairs_and_prompts():
    # prompt 0: values 0, 0.5, 1 (unit range): pair distances 0.5, 1, 0.5 -> 2/3; prompt 1: all equal -> 0
    vals = torch.tensor([[0.0, 0.5, 1.0], [0.2, 0.2, 0.2]]) * 2 - 1
    x = vals[:, :, None, None, None].expand(2, 3, 3, 2, 2)
    assert diversity(x) == pytest.approx((2 / 3 + 0) / 2)


def test_diversity_clamps_to_the_unit_range():
    x = torch.stack([-5 * torch.ones(3, 2, 2), 5 * torch.ones(3, 2, 2)])[None]
    assert diversity(x) == pytest.approx(1.0)


def test_diversity_with_one_sample_per_prompt_is_nan():
    assert math.isnan(diversity(torch.zeros(4, 1, 3, 8, 8)))


def test_diversity_bad_input():
    with pytest.raises(TypeError, match="images_by_prompt"):
        diversity([[1.0]])
    with pytest.raises(ValueError, match="at least 3 dims"):
        diversity(torch.zeros(4, 2))


def test_real_data_is_diverse_but_not_maximally():
    labels = {a: v.repeat_interleave(4) for a, v in _labels(8).items()}
    real = shapes.render(labels, torch.Generator().manual_seed(2))
    d = diversity(real.reshape(8, 4, 3, 32, 32))
    assert 0.01 < d < 0.3


# --------------------------------------------------------------------------- pixel_stats


def test_pixel_stats():
    x = torch.tensor([[0.0, 1.0, 1.06, -2.0]])
    s = pixel_stats(x)
    assert s["frac_out_of_range"] == 0.5
    assert s["pixel_std"] == pytest.approx(x.std().item())
    assert pixel_stats(shapes.render(_labels(16)))["frac_out_of_range"] == 0.0


# ------------------------------------------------------------------ sampling and the sweep


def _fake_models(size=8):
    """A tiny stand-in for PretrainedModels: a linear 'denoiser' whose output depends on the context."""
    schedule = NoiseSchedule()

    def denoiser(x, t, context):
        return 0.5 * x + context.mean((1, 2)).view(-1, 1, 1, 1)

    def encode(prompts, negative_prompts=None):
        cond = torch.stack([torch.full((4, 8), 0.01 * len(p)) for p in prompts])
        uncond = torch.full_like(cond, -0.02)  # the "encoded empty prompt" (not zeros)
        return cond, uncond

    return SimpleNamespace(
        encode=encode,
        sampler=lambda config=None, cfg_mode="auto": ConditionalDDIMSampler(
            denoiser, schedule, config, cfg_mode=cfg_mode
        ),
        unet=SimpleNamespace(config=SimpleNamespace(sample_size=size, in_channels=3)),
        judge=ColourJudge(),
    )


def test_sample_images_gamma_zero_is_the_unconditional_model():
    m = _fake_models()
    cond, uncond = m.encode(["a red circle", "a blue square"])
    lat = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    x0 = sample_images(m, cond, uncond, ClassifierFreeGuidance(0.0), 5, latents=lat)
    ref = m.sampler().sample((2, 3, 8, 8), uncond, None, None, 5, latents=lat, progress=False)
    # the full formula ε_u + 0 · (ε_c − ε_u), without CFG(0)'s one-pass shortcut
    direct = m.sampler().sample(
        (2, 3, 8, 8), cond, uncond, WeightedPromptsGuidance([1.0], 0.0), 5, latents=lat, progress=False
    )
    assert torch.equal(x0, ref)
    assert torch.allclose(x0, direct, atol=1e-6)


def test_sample_images_chunks_give_the_same_images():
    m = _fake_models()
    cond, uncond = m.encode(["a", "bb", "ccc"])
    lat = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    a = sample_images(m, cond, uncond, ClassifierFreeGuidance(3.0), 4, latents=lat)
    b = sample_images(m, cond, uncond, ClassifierFreeGuidance(3.0), 4, latents=lat, chunk=2)
    assert torch.allclose(a, b, atol=1e-6)


def test_sample_images_per_image_guider_follows_the_chunks():
    """A function ``rows -> Guider`` gets each chunk's slice, so per-image weights stay with their image."""
    m = _fake_models()
    cond, uncond = m.encode(["a", "bb", "ccc"])
    lat = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    weights = torch.tensor([[1.0], [3.0], [0.0]])  # γ = 1, 3, 0 per image

    def guider(rows):
        return WeightedPromptsGuidance(weights[rows], guidance_scale=1.0)

    chunked = sample_images(m, cond, uncond, guider, 4, latents=lat, chunk=2)
    for i, gamma in enumerate([1.0, 3.0, 0.0]):
        alone = sample_images(m, cond[i : i + 1], uncond[i : i + 1], ClassifierFreeGuidance(gamma), 4,
                              latents=lat[i : i + 1])
        assert torch.allclose(chunked[i : i + 1], alone, atol=1e-6)


def test_sample_images_bad_input():
    m = _fake_models()
    cond, uncond = m.encode(["a", "b"])
    with pytest.raises(ValueError, match="guidance_scale must be >= 0"):
        sample_images(m, cond, uncond, ClassifierFreeGuidance(-1.0))
    with pytest.raises(TypeError, match="guider must be a Guider or a function rows -> Guider"):
        sample_images(m, cond, uncond, 2.0)
    with pytest.raises(ValueError, match="uncond must have cond's shape"):
        sample_images(m, cond, uncond[:1], ClassifierFreeGuidance(2.0))
    with pytest.raises(ValueError, match="latents must have shape"):
        sample_images(m, cond, uncond, ClassifierFreeGuidance(2.0), latents=torch.zeros(2, 3, 4, 4))


def test_guidance_sweep_rows():
    m = _fake_models()
    rows = guidance_sweep(
        m, 3, [0, 1, 4], n_per_prompt=2, steps=4, generator=torch.Generator().manual_seed(0)
    )
    assert [r["gamma"] for r in rows] == [0.0, 1.0, 4.0]
    keys = {
        "gamma",
        "n",
        *ATTRIBUTE_NAMES,
        "all",
        "diversity",
        "pixel_std",
        "frac_out_of_range",
        "sec_per_image",
    }
    for r in rows:
        assert set(r) == keys
        assert r["n"] == 6
        assert 0 <= r["all"] <= 1 and r["diversity"] >= 0


def test_guidance_sweep_is_deterministic_and_shares_the_noise():
    m = _fake_models()
    a = guidance_sweep(
        m, 2, [1, 3], 2, steps=3, generator=torch.Generator().manual_seed(5), keep_images=True
    )
    b = guidance_sweep(
        m, 2, [3], 2, steps=3, generator=torch.Generator().manual_seed(5), keep_images=True
    )
    assert torch.equal(
        a[1]["images"], b[0]["images"]
    )  # the γ = 3 samples do not depend on the other γs
    assert a[0]["captions"] == b[0]["captions"] and len(a[0]["captions"]) == 4
    assert a[0]["captions"][0] == a[0]["captions"][1]  # prompt-major


def test_guidance_sweep_accepts_labels_and_sampler_options():
    m = _fake_models()
    labels = _labels(2)
    rows = guidance_sweep(
        m,
        labels,
        [5],
        2,
        steps=3,
        generator=torch.Generator().manual_seed(0),
        keep_images=True,
        config=SamplerConfig(thresholding=True),
    )
    assert rows[0]["captions"][0] == shapes.caption_from_labels(labels)[0]
    assert rows[0]["frac_out_of_range"] == 0.0  # thresholded x̂0 keeps the samples in range


def test_guidance_sweep_make_guider_builds_each_rows_guider():
    m = _fake_models()
    seen = []

    def interval_cfg(gamma):  # guide only at t <= 400: 2 of the 3 steps (666, 333, 0)
        seen.append(gamma)
        return ClassifierFreeGuidance(gamma, interval=(0, 400))

    def sweep(**kw):
        gen = torch.Generator().manual_seed(0)
        return guidance_sweep(m, 2, [4], 2, steps=3, generator=gen, keep_images=True, **kw)[0]["images"]

    plain, default, interval = sweep(), sweep(make_guider=ClassifierFreeGuidance), sweep(make_guider=interval_cfg)
    assert seen == [4.0]
    assert torch.equal(plain, default)
    assert not torch.allclose(plain, interval, atol=1e-4)


def test_guidance_sweep_with_eta_reuses_the_same_noise_for_every_gamma():
    m = _fake_models()
    a = guidance_sweep(
        m,
        1,
        [2, 2],
        2,
        steps=3,
        generator=torch.Generator().manual_seed(0),
        eta=1.0,
        keep_images=True,
    )
    assert torch.equal(a[0]["images"], a[1]["images"])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"gammas": []}, TypeError, "gammas"),
        ({"gammas": 3.0}, TypeError, "gammas"),
        ({"gammas": [1, -2]}, ValueError, r"gammas\[1\]"),
        ({"n_per_prompt": 0}, ValueError, "n_per_prompt"),
        ({"prompts": "a red circle"}, TypeError, "prompts"),
        ({"steps": 0}, ValueError, "steps"),
    ],
)
def test_guidance_sweep_bad_input(kwargs, error, match):
    args = {"prompts": 2, "gammas": [1], "n_per_prompt": 2, "steps": 2, **kwargs}
    with pytest.raises(error, match=match):
        guidance_sweep(_fake_models(), **args)


def test_guidance_sweep_needs_a_judge():
    m = _fake_models()
    m.judge = None
    with pytest.raises(ValueError, match="judge"):
        guidance_sweep(m, 1, [1], 2)


def test_data_reference():
    ref = data_reference(ColourJudge(), 4, 3, torch.Generator().manual_seed(0))
    assert ref["n"] == 12 and ref["colour"] > 0.8 and ref["frac_out_of_range"] == 0.0
    assert 0 < ref["diversity"] < 0.3


@pytest.mark.skipif(
    not (MODELS_DIR / "unet.safetensors").is_file(), reason="shipped weights not present"
)
def test_guidance_sweep_on_the_shipped_models():
    from tutorial_lib.pretrained import load_pretrained

    rows = guidance_sweep(
        load_pretrained(), 1, [0, 3], 2, steps=2, generator=torch.Generator().manual_seed(0)
    )
    assert len(rows) == 2 and all(r["n"] == 2 for r in rows)


def test_wilson_interval_known_values_and_edges():
    from tutorial_lib.evaluation import wilson_interval

    low, high = wilson_interval(12, 32)  # scipy.stats.binomtest(12, 32).proportion_ci(method="wilson")
    assert abs(low - 0.229339) < 1e-5 and abs(high - 0.547456) < 1e-5
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 10)[1] > 0 and wilson_interval(10, 10)[0] < 1
    narrow, wide = wilson_interval(50, 100, 0.9), wilson_interval(50, 100, 0.99)
    assert wide[0] < narrow[0] < 0.5 < narrow[1] < wide[1]
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(11, 10)
    with pytest.raises(TypeError, match="n must be an int"):
        wilson_interval(1, 2.0)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 2, 1.0)


def test_load_committed_reads_every_committed_result():
    from tutorial_lib.evaluation import RESULTS_DIR, load_committed

    for name in ("results.json", "results_scenes.json", "results_guiders.json", "results_a1111.json"):
        assert load_committed(name) == json.loads((RESULTS_DIR / name).read_text())
