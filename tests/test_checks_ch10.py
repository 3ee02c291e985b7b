"""The check of notebook 10 passes a right answer, explains a stub, and names planted mistakes."""

import pytest
import torch

from tutorial_lib.checks import ExerciseCheckFailed, ch10, check_emphasis


def solution(z, weights):
    original = z.mean(dim=(1, 2), keepdim=True)
    zw = z * weights[..., None]
    return zw * (original / zw.mean(dim=(1, 2), keepdim=True))


def test_check_is_exported():
    assert ch10.__all__ == ["check_emphasis"]


def test_passes_on_solution():
    assert "all 3 cases pass" in check_emphasis(solution)


def test_stub_is_explained():
    def stub(z, weights):
        raise NotImplementedError

    with pytest.raises(ExerciseCheckFailed, match="not implemented"):
        check_emphasis(stub)


@pytest.mark.parametrize("wrong, words", [
    (lambda z, w: z * w[..., None], "did not restore the mean"),
    (lambda z, w: z * w[..., None] * (z.mean() / (z * w[..., None]).mean()), "per prompt"),
    (lambda z, w: z * w[..., None] * ((z * w[..., None]).mean((1, 2), keepdim=True) / z.mean((1, 2), keepdim=True)),
     "upside down"),
])
def test_planted_mistakes_are_named(wrong, words):
    with pytest.raises(ExerciseCheckFailed, match=words):
        check_emphasis(wrong)


def test_no_emphasis_leaves_features_unchanged():
    z = torch.randn(2, 4, 3) + 1
    assert torch.equal(solution(z, torch.ones(2, 4)), z) or torch.allclose(solution(z, torch.ones(2, 4)), z)
