"""Distribution metrics on point sets where the answer is known."""

import math

import pytest
import torch

from tutorial_lib import metrics as M


def _gauss(n, d, mean=0.0, std=1.0, seed=0):
    return mean + std * torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_frechet_distance_of_gaussians_matches_the_closed_form():
    # N(0, I) vs N(m, s^2 I): d^2 = |m|^2 d + d (1 - s)^2 ... with estimated moments, approximately
    a, b = _gauss(20000, 4), _gauss(20000, 4, mean=0.5, std=2.0, seed=1)
    expected = 4 * 0.25 + 4 * (1 - 2) ** 2
    assert M.frechet_distance(a, b) == pytest.approx(expected, rel=0.05)
    assert M.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_is_symmetric_and_grows_with_the_shift():
    a = _gauss(2000, 8)
    values = [M.frechet_distance(a, _gauss(2000, 8, mean=m, seed=2)) for m in (0.0, 0.2, 0.5, 1.0)]
    assert values == sorted(values)
    b = _gauss(2000, 8, mean=0.3, seed=3)
    assert M.frechet_distance(a, b) == pytest.approx(M.frechet_distance(b, a), rel=1e-6)


def test_precision_recall_of_a_set_covering_half_the_support():
    # real: two clusters; generated: only one of them -> precision ~1, recall ~0.5
    left, right = _gauss(500, 2, mean=-5.0, std=0.5), _gauss(500, 2, mean=5.0, std=0.5, seed=1)
    real = torch.cat([left, right])
    half = _gauss(500, 2, mean=-5.0, std=0.5, seed=2)
    pr = M.precision_recall(real, half)
    assert pr["precision"] > 0.95 and abs(pr["recall"] - 0.5) < 0.05
    same = M.precision_recall(real, torch.cat([_gauss(500, 2, -5.0, 0.5, 4), _gauss(500, 2, 5.0, 0.5, 5)]))
    assert same["precision"] > 0.9 and same["recall"] > 0.9


def test_attribute_coverage_of_uniform_and_collapsed_values():
    uniform = torch.arange(6).repeat(100)
    assert M.attribute_coverage(uniform, 6) == {"entropy_ratio": pytest.approx(1.0), "coverage": pytest.approx(1.0),
                                                "n": 600}
    collapsed = M.attribute_coverage(torch.zeros(50, dtype=torch.long), 6)
    assert collapsed["entropy_ratio"] == 0.0 and collapsed["coverage"] == pytest.approx(1 / 6)
    two = M.attribute_coverage(torch.tensor([0, 1] * 30), 6)
    assert two["entropy_ratio"] == pytest.approx(math.log(2) / math.log(6))


def test_bootstrap_interval_contains_the_statistic_and_shrinks_with_n():
    small, large = _gauss(50, 1).squeeze(1), _gauss(5000, 1).squeeze(1)
    lo_s, hi_s = M.bootstrap_interval(lambda x: float(x.mean()), small)
    lo_l, hi_l = M.bootstrap_interval(lambda x: float(x.mean()), large)
    assert lo_s < float(small.mean()) < hi_s and (hi_l - lo_l) < (hi_s - lo_s) / 5
    fd = M.frechet_distance_with_interval(_gauss(300, 3), _gauss(300, 3, mean=1.0, seed=1), num_resamples=20)
    assert fd["low"] <= fd["value"] <= fd["high"]
    pr = M.precision_recall_with_interval(_gauss(300, 3), _gauss(300, 3, seed=1), num_resamples=50)
    assert pr["recall"]["low"] <= pr["recall"]["value"] <= pr["recall"]["high"]


def test_frechet_interval_is_bias_corrected_where_resampling_inflates_the_distance():
    # 64-d features from 150 points: resampling with replacement leaves ~95 distinct points,
    # and the covariance error alone raises FD, so the plain percentile interval misses FD.
    real, gen = _gauss(150, 64), _gauss(150, 64, mean=0.3, seed=1)
    value = M.frechet_distance(real, gen)
    lo, _ = M.bootstrap_interval(M.frechet_distance, real, gen, num_resamples=30)
    assert lo > value  # the uncorrected interval lies above the estimate
    fd = M.frechet_distance_with_interval(real, gen, num_resamples=30)
    assert fd["low"] <= value <= fd["high"]


@pytest.mark.parametrize("bad", [torch.zeros(5), torch.zeros(1, 3), "x"])
def test_bad_features_are_rejected(bad):
    with pytest.raises(ValueError, match="real must be a \\(N, D\\) tensor"):
        M.frechet_distance(bad, torch.zeros(4, 3))
    with pytest.raises(ValueError, match="expected 3"):
        M.precision_recall(torch.zeros(4, 3), torch.zeros(4, 2))
