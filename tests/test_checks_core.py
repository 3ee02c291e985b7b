"""The exercise-check machinery explains failures in sentences."""

import pytest
import torch

from tutorial_lib.checks import Case, ExerciseCheckFailed, run_cases


def reference(x, y):
    return x + 2 * y


CASES = [Case("small", (torch.ones(2), torch.zeros(2))), Case("mixed", (torch.arange(3.0), torch.ones(3)))]


def test_passes_on_a_correct_function():
    assert "all 2 cases pass" in run_cases("Exercise", lambda x, y: y * 2 + x, reference, CASES)


def test_stub_is_reported_as_not_implemented():
    def stub(x, y):
        raise NotImplementedError

    with pytest.raises(ExerciseCheckFailed, match="not implemented yet"):
        run_cases("Exercise", stub, reference, CASES)


def test_wrong_values_name_the_case_and_hint():
    with pytest.raises(ExerciseCheckFailed, match=r"case 'mixed'.*values differ(.|\n)*Hint: twice") as info:
        run_cases("Exercise", lambda x, y: x + y * (x.numel() == 2) * 2, reference, CASES, hint="twice y")
    assert "expected tensor" in str(info.value)


def test_wrong_shape_and_missing_return():
    with pytest.raises(ExerciseCheckFailed, match="expected shape"):
        run_cases("Exercise", lambda x, y: (x + 2 * y)[:1], reference, CASES)
    with pytest.raises(ExerciseCheckFailed, match="returned None"):
        run_cases("Exercise", lambda x, y: None, reference, CASES)


def test_diagnose_gives_a_specific_hint():
    def diagnose(case, got):
        x, y = case.args
        return "you swapped x and y" if torch.allclose(got, y + 2 * x) else None

    with pytest.raises(ExerciseCheckFailed, match="swapped"):
        run_cases("Exercise", lambda x, y: y + 2 * x, reference, CASES, diagnose=diagnose)
