"""The checks of notebook 07 pass a right answer, explain a stub, and name planted mistakes."""

import pytest
import torch

from tutorial_lib.checks import ExerciseCheckFailed, ch07, check_combine, check_negative_cfg
from tutorial_lib.guidance import cfg_combine, combine_weighted_prompts


def stub(*args):
    raise NotImplementedError


def test_checks_are_exported():
    assert {"check_negative_cfg", "check_combine"} <= set(ch07.__all__)


# ----------------------------------------------------------------------- negative prompt


def negative_solution(eps_neg, eps_cond, scale):
    return eps_neg + scale * (eps_cond - eps_neg)


def test_negative_passes_on_solution():
    assert "all 4 cases pass" in check_negative_cfg(negative_solution)


def test_negative_passes_with_the_rearranged_formula():
    # ε_c + (γ − 1)(ε_c − ε_neg) is the same thing.
    assert "pass" in check_negative_cfg(lambda n, c, s: c + (s - 1) * (c - n))


def test_negative_stub_is_not_implemented():
    with pytest.raises(ExerciseCheckFailed, match="not implemented yet"):
        check_negative_cfg(stub)


@pytest.mark.parametrize(
    "mistake, message",
    [
        (lambda n, c, s: n + (c - n), "scale γ is missing"),
        (lambda n, c, s: c + s * (n - c), "swapped"),
        (lambda n, c, s: c + s * (c - n), "wrong baseline"),
        (lambda n, c, s: c - s * n, "not subtracted"),
        (lambda n, c, s: n + s * c, "Hint: it is CFG with"),
    ],
    ids=["no-gamma", "swapped", "cond-baseline", "subtract", "other"],
)
def test_negative_names_planted_mistakes(mistake, message):
    with pytest.raises(ExerciseCheckFailed, match=message):
        check_negative_cfg(mistake)


def test_negative_none_is_explained():
    with pytest.raises(ExerciseCheckFailed, match="returned None"):
        check_negative_cfg(lambda n, c, s: None)


def test_negative_reference_is_cfg_with_the_negative_as_baseline():
    g = torch.Generator().manual_seed(0)
    n, c = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    assert torch.allclose(cfg_combine(n, c, 5.0), negative_solution(n, c, 5.0))


# ------------------------------------------------------------------- composable guidance


def combine_solution(eps_uncond, eps_conds, weights, scale):
    out = eps_uncond.clone()
    for eps_k, w_k in zip(eps_conds, weights, strict=True):
        out = out + w_k * scale * (eps_k - eps_uncond)
    return out


def test_combine_passes_on_solution():
    assert "all 5 cases pass" in check_combine(combine_solution)


def test_combine_passes_vectorised():
    def vectorised(u, conds, w, s):
        stacked = torch.stack(conds)  # (K, B, ...)
        w = torch.tensor(w).view(-1, *([1] * u.ndim))
        return u + s * (w * (stacked - u)).sum(0)

    assert "pass" in check_combine(vectorised)


def test_combine_stub_is_not_implemented():
    with pytest.raises(ExerciseCheckFailed, match="not implemented yet"):
        check_combine(stub)


def _normalised(u, conds, w, s):
    total = sum(w)
    if abs(total) < 1e-9:
        total = 1.0
    return combine_solution(u, conds, [x / total for x in w], s)


@pytest.mark.parametrize(
    "mistake, message",
    [
        (lambda u, c, w, s: combine_solution(u, c, w, 1.0), "scale γ is missing"),
        (_normalised, "normalised the weights"),
        (lambda u, c, w, s: combine_solution(u, c, [x / len(w) for x in w], s), "averaged"),
        (lambda u, c, w, s: u + s * sum(x * e for x, e in zip(w, c, strict=True)), "DIFFERENCE"),
        (
            lambda u, c, w, s: (
                combine_solution(c[0], c[1:], w[1:], s)
                if len(c) > 1
                else combine_solution(u, c, w, s)
            ),
            "not the first prompt",
        ),
        (lambda u, c, w, s: combine_solution(u, c, [1.0] * len(w), s), "weights are ignored"),
    ],
    ids=["no-gamma", "normalised", "averaged", "no-baseline", "first-baseline", "no-weights"],
)
def test_combine_names_planted_mistakes(mistake, message):
    with pytest.raises(ExerciseCheckFailed, match=message):
        check_combine(mistake)


def test_combine_reference_is_the_package():
    for case in ch07._combine_cases():
        assert torch.allclose(combine_solution(*case.args), combine_weighted_prompts(*case.args))
