"""The checks of notebook 09 pass right answers and name planted mistakes."""

import pytest
import torch

from tutorial_lib.checks import (
    ExerciseCheckFailed,
    ch09,
    check_apg_update,
    check_equal_fidelity,
    check_saturation,
)
from tutorial_lib.guiders import AdaptiveProjectedGuidance


def test_reference_apg_update_is_the_guiders_projection():
    diff, cond = torch.randn(3, 3, 4, 4), torch.randn(3, 3, 4, 4)
    apg = AdaptiveProjectedGuidance(1.0, eta=0.3, norm_threshold=0.0)
    # the guider returns ε_u + γ (Δ⊥ + ηΔ∥) with ε_u = cond − diff
    torch.testing.assert_close(apg.combine(cond, cond - diff) - (cond - diff), ch09.reference_apg_update(diff, cond, 0.3),
                               rtol=1e-5, atol=1e-5)


def test_right_answer_passes():
    assert "all 4 cases pass" in check_apg_update(ch09.reference_apg_update)


@pytest.mark.parametrize("wrong, words", [
    (lambda d, c, eta: d - (d * c / c.norm()).sum() * c / c.norm() * (1 - eta), "whole batch"),
    (lambda d, c, eta: d - (d * c).flatten(1).sum(1).view(-1, *(1,) * (d.dim() - 1)) * c * (1 - eta), "UNIT vector"),
    (lambda d, c, eta: d - ch09.reference_apg_update(d, c, 0.0), "returned Δ_∥"),
])
def test_planted_mistakes_are_named(wrong, words):
    with pytest.raises(ExerciseCheckFailed, match=words):
        check_apg_update(wrong)


def test_readings_pass_with_the_committed_answers_and_fail_otherwise():
    assert "correct" in check_equal_fidelity(ch09.equal_fidelity_reading())
    assert "correct" in check_saturation(ch09.saturation_reading())
    wrong = dict(ch09.equal_fidelity_reading(), intervals_overlap=not ch09.equal_fidelity_reading()["intervals_overlap"])
    with pytest.raises(ExerciseCheckFailed, match="intervals_overlap"):
        check_equal_fidelity(wrong)
    with pytest.raises(ExerciseCheckFailed, match="must be a dict"):
        check_saturation("dynamic thresholding")
