"""The machinery behind exercise checks: run a learner's function on cases, explain failures.

A check never just says ``AssertionError``: it names the case, shows what was
expected and what came back, and gives a hint. Introduced in notebook 01 (the
first exercise); every chapter's checks are built from these helpers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch


class ExerciseCheckFailed(AssertionError):
    """Raised by a check; the message is the whole explanation for the learner."""


@dataclass
class Case:
    """One input to a learner's function, with a name the message can refer to."""

    name: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        if x.numel() <= 6:
            return f"tensor {[round(v, 4) for v in x.detach().flatten().tolist()]} of shape {tuple(x.shape)}"
        return f"tensor of shape {tuple(x.shape)}, dtype {x.dtype}"
    return repr(x)


def fail(exercise: str, case: str, problem: str, hint: str | None = None) -> None:
    message = f"{exercise}, case '{case}': {problem}"
    if hint:
        message += f"\nHint: {hint}"
    raise ExerciseCheckFailed(message)


def compare(exercise: str, case: str, got: Any, expected: torch.Tensor, *,
            atol: float = 1e-5, rtol: float = 1e-4, hint: str | None = None) -> None:
    """Fail with a sentence unless ``got`` is a tensor equal to ``expected`` (shape, then values)."""
    if got is None:
        fail(exercise, case, "your function returned None (did you forget `return`?)", hint)
    if not isinstance(got, torch.Tensor):
        fail(exercise, case, f"expected a tensor, got {type(got).__name__}", hint)
    if got.shape != expected.shape:
        fail(exercise, case, f"expected shape {tuple(expected.shape)}, got {tuple(got.shape)}", hint)
    if got.dtype.is_floating_point and not torch.isfinite(got).all():
        fail(exercise, case, "the result contains NaN or inf", hint)
    if not torch.allclose(got.to(expected.dtype), expected, atol=atol, rtol=rtol):
        err = (got.to(expected.dtype) - expected).abs().max().item()
        fail(exercise, case,
             f"values differ (largest difference {err:.3g}); expected {_describe(expected)}, got {_describe(got)}",
             hint)


def run_cases(exercise: str, learner_fn: Callable, reference_fn: Callable, cases: Iterable[Case], *,
              atol: float = 1e-5, rtol: float = 1e-4, diagnose: Callable[[Case, Any], str | None] | None = None,
              hint: str | None = None) -> str:
    """Run ``learner_fn`` and ``reference_fn`` on every case and compare.

    ``diagnose(case, got)`` may return a specific hint for a recognised mistake
    (for example cond and uncond swapped), which replaces the generic ``hint``.
    Returns a one-line success message (notebooks print it).
    """
    n = 0
    for case in cases:
        try:
            got = learner_fn(*case.args, **case.kwargs)
        except NotImplementedError:
            fail(exercise, case.name, "not implemented yet", "replace the `raise NotImplementedError` with your code")
        except Exception as exc:  # the learner's error, explained
            fail(exercise, case.name, f"your function raised {type(exc).__name__}: {exc}", hint)
        expected = reference_fn(*case.args, **case.kwargs)
        specific = diagnose(case, got) if diagnose is not None and isinstance(got, torch.Tensor) else None
        compare(exercise, case.name, got, expected, atol=atol, rtol=rtol, hint=specific or hint)
        n += 1
    return f"✓ {exercise}: all {n} cases pass."
