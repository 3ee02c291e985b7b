"""tutorial_lib.after_cfg: the committed rows, the mixture experiments of notebook 09."""

import pytest
import torch

from tutorial_lib import after_cfg as A
from tutorial_lib.guiders import ClassifierFreeGuidance
from tutorial_lib.mixture import example_mixture_2d
from tutorial_lib.mixture_experiments import sample_guided


@pytest.fixture(scope="module")
def mixture():
    return example_mixture_2d()


def test_committed_rows_cover_both_sweeps_with_intervals():
    rows = A.committed_rows()
    methods = {r["method"] for r in rows}
    assert {"cfg", "cfg_rescale", "cfg_dynamic_threshold", "cfg_interval", "apg", "autoguidance",
            "pag_unconditional"} <= methods
    for r in rows:
        for key in A.METRICS:
            assert r[key]["low"] <= r[key]["value"] <= r[key]["high"], (r["method"], r["scale"], key)
        assert 0 <= r["out_of_range"] <= 1
    assert A.reference_floor() > 0


def test_sample_mixture_with_cfg_is_sample_guided(mixture):
    """The chapter's sampler path and notebook 06's (the same DDIM, trailing spacing) agree."""
    latents = torch.randn(64, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ours = A.sample_mixture(mixture, ClassifierFreeGuidance(3.0), 1, 64, 20,
                            torch.Generator().manual_seed(3))
    theirs = sample_guided(mixture, 64, 1, 3.0, num_inference_steps=20, latents=latents)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-10)


def test_weaker_mixture_inflates_only_the_covariances(mixture):
    weak = A.weaker_mixture(mixture, 2.0)
    torch.testing.assert_close(weak.covariances, 2 * mixture.covariances)
    assert torch.equal(weak.means, mixture.means) and torch.equal(weak.labels, mixture.labels)


def test_energy_distance_is_zero_for_one_set_and_grows_with_a_shift():
    x = torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    assert abs(A.energy_distance(x, x)) < 1e-12
    shifts = [A.energy_distance(x, x + s) for s in (0.1, 0.5, 1.0)]
    assert 0 < shifts[0] < shifts[1] < shifts[2]


def test_mixture_report_of_exact_samples_is_at_the_floor(mixture):
    """γ = 1: p_γ is p(x | c); exact samples of it score like a second target set."""
    x = mixture.sample(800, 1, torch.Generator().manual_seed(1))
    r = A.mixture_report(mixture, x, 1, 1.0, torch.Generator().manual_seed(2))
    assert r["energy_to_target"] < 3 * r["target_floor"]
    assert r["fidelity"] > 0.95 and r["precision"] > 0.9 and r["recall"] > 0.9


def test_every_mixture_guider_runs_and_cfg_is_far_from_the_tilted_target(mixture):
    reports = {}
    for name, make in A.mixture_guiders(mixture).items():
        x = A.sample_mixture(mixture, make(3.0), 1, 400, 30, torch.Generator().manual_seed(0))
        assert x.shape == (400, 2) and torch.isfinite(x).all(), name
        reports[name] = A.mixture_report(mixture, x, 1, 3.0, torch.Generator().manual_seed(1))
    assert reports["CFG"]["energy_to_target"] > 5 * reports["CFG"]["target_floor"]  # notebook 06's point


def test_paper_apg_at_scale_one_samples_like_the_conditional_model(mixture):
    a = A.sample_mixture(mixture, A.paper_apg(1.0), 1, 64, 20, torch.Generator().manual_seed(5))
    b = A.sample_mixture(mixture, ClassifierFreeGuidance(1.0), 1, 64, 20, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-8)
