"""Facts that notebooks 05-07 state, pinned where a test can pin them (issue 14).

Each test names the notebook section whose text rests on it; if one fails, that text is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tutorial_lib.mixture import example_mixture_2d, interval_demo_mixture
from tutorial_lib.mixture_experiments import sample_guided
from tutorial_lib.schedule import NoiseSchedule

ROOT = Path(__file__).resolve().parents[1]


def test_05_log_gradient_is_large_over_the_whole_class_0_region_not_a_band():
    """05 §3: at t = 100, |∇ log p_t(y=1|x_t)| is large across class 0; |∇ p| only near p = 0.5."""
    mixture = example_mixture_2d(NoiseSchedule())
    axis = torch.linspace(-3.5, 3.5, 140)
    gx, gy = torch.meshgrid(axis, axis, indexing="xy")
    points = torch.stack([gx, gy], -1).double().reshape(-1, 2)
    p = mixture.class_posterior(points, 100)[:, 1]
    grad_log = mixture.log_posterior_grad(points, 100, 1).norm(dim=-1)
    grad_p = p * grad_log
    large_log = grad_log > 0.1 * grad_log.max()
    large_p = grad_p > 0.1 * grad_p.max()
    assert large_log[p < 0.5].double().mean() > 0.9  # nearly all of the class-0 region
    assert large_p.double().mean() < 0.15  # a band
    assert large_log.double().mean() > 3 * large_p.double().mean()


def test_06_interval_keeps_the_unguided_modes_and_narrows_the_minor_mode():
    """06 §6: γ = 4 in [80, 250] moves (almost) no sample between modes; it narrows the mode next to class 1."""
    mixture = interval_demo_mixture()
    runs = {}
    for name, gamma, interval in (("none", 1.0, None), ("interval", 4.0, (80, 250))):
        x = sample_guided(mixture, 4000, 0, gamma, num_inference_steps=50,
                          generator=torch.Generator().manual_seed(0), guidance_interval=interval)
        runs[name] = (x, mixture.nearest_component(x, 0))
    (x_u, k_u), (x_i, k_i) = runs["none"], runs["interval"]
    assert int((k_u != k_i).sum()) <= 4  # at most 0.1 % of the samples change mode (1 of 4000 when written)
    minor = int(torch.nonzero(mixture.labels == 0).flatten()[1])  # the +0.5 mode, next to class 1
    assert x_i[k_i == minor].std() < 0.8 * x_u[k_u == minor].std()
    assert x_i[k_i == minor].mean() < x_u[k_u == minor].mean()  # pushed away from class 1 (at +2.5)


def _committed():
    return json.loads((ROOT / "docs" / "results.json").read_text())


def test_07_committed_negative_prompt_counts_match_the_text():
    """07 §2: in the committed run, "a red shape" removes red, orange and purple; "red" removes red only."""
    rows = {r["negative_prompt"]: r for r in _committed()["negative_prompt"]}
    none, word, caption = rows[""]["colour_counts"], rows["red"]["colour_counts"], rows["a red shape"]["colour_counts"]
    assert none["orange"] >= 5 and none["purple"] >= 5
    assert caption["red"] == 0 and caption["orange"] == 0 and caption["purple"] <= 1
    assert word["red"] <= 1 and word["orange"] >= 3 and word["purple"] >= 3


def test_06_committed_sweep_diversity_is_not_falling_steadily():
    """06 §5: the committed N = 512 diversity is flat for γ in [1.5, 5] and rises at 7.5 and 10."""
    sweep = {r["gamma"]: r for r in _committed()["sweep"] if r["variant"] == "plain"}
    flat = [sweep[g]["diversity"] for g in (1.5, 2, 3, 5)]
    assert max(flat) - min(flat) < 0.005
    assert sweep[10]["diversity"] > sweep[7.5]["diversity"] > max(flat)
    assert sweep[1]["all"] < 0.99 and all(sweep[g]["all"] == 1.0 for g in (2, 3, 5))


@pytest.fixture(scope="module")
def models():
    from tutorial_lib.pretrained import load_pretrained

    return load_pretrained()


def test_07_zeros_are_a_different_eps_input_than_the_encoded_empty_prompt(models):
    """07 §1: ε(zeros) ≠ ε(""), by a sizeable fraction of the caption's effect."""
    from tutorial_lib import shapes

    g = torch.Generator().manual_seed(0)
    x0, _, captions = shapes.generate(8, g)
    eps = torch.randn(x0.shape, generator=g)
    cond, empty = models.encode(captions)
    t = torch.full((8,), 400)
    x_t = models.schedule.add_noise(x0, eps, 400)
    with torch.no_grad():
        e_c, e_u, e_0 = (models.unet(x_t, t, c) for c in (cond, empty, torch.zeros_like(empty)))
    assert (e_0 - e_u).norm() / (e_c - e_u).norm() > 0.1
    assert (e_0 - e_u).norm() / e_u.norm() > 1e-3
