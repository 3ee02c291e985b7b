"""Checks for the exercises of notebook 07 (negative prompts, weighted and composed prompts).

* ``check_negative_cfg(my_negative_cfg)``: classifier-free guidance with a negative
  prompt, ``my_negative_cfg(eps_neg, eps_cond, scale) -> ε̃ = ε_neg + γ (ε_c − ε_neg)``,
  checked against the package's ``cfg_combine``. Recognised mistakes: γ forgotten
  (the result is ε_c), the two predictions swapped, the wrong baseline (starting from
  ε_c instead of ε_neg), and "subtracting the negative prompt" as
  ε_c − γ ε_neg.
* ``check_combine(my_combine)``: composable guidance over K weighted prompts
  (AUTOMATIC1111's ``AND``), ``my_combine(eps_uncond, eps_conds, weights, scale) ->
  ε_u + Σ_k w_k γ (ε_k − ε_u)``, checked against ``combine_weighted_prompts``.
  Recognised mistakes: γ forgotten, weights normalised to sum to one, the
  differences averaged over the K prompts, the weighted sum of the predictions
  without the baseline, the first prompt used as the baseline, weights ignored.

The predictions are random tensors used as *inputs* (any tensors of matching shape
will do for checking the arithmetic; nothing here claims to be a model's output).
"""

from __future__ import annotations

import torch

from ..guidance import cfg_combine, combine_weighted_prompts
from ._core import Case, run_cases

__all__ = ["check_negative_cfg", "check_combine"]


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, atol=1e-5, rtol=1e-4))


# ------------------------------------------------------------------- negative prompt

_NEG = "Exercise 1 (my_negative_cfg)"


def _negative_cases() -> list[Case]:
    g = torch.Generator().manual_seed(7)
    cases = []
    for name, shape, scale in (
        ("images (4, 3, 8, 8), scale 7.5", (4, 3, 8, 8), 7.5),
        ("images (2, 3, 8, 8), scale 3", (2, 3, 8, 8), 3.0),
        ("points (5, 2), scale 0 (only the negative prompt's prediction)", (5, 2), 0.0),
        ("points (5, 2), scale 1 (only the prompt's prediction)", (5, 2), 1.0),
    ):
        eps_neg = torch.randn(shape, generator=g)
        eps_cond = torch.randn(shape, generator=g)
        cases.append(Case(name, (eps_neg, eps_cond, scale)))
    return cases


def _diagnose_negative(case: Case, got: torch.Tensor) -> str | None:
    eps_neg, eps_cond, scale = case.args
    if _close(got, eps_cond) and scale != 1.0:
        return (
            "you returned ε_c itself: the guidance scale γ is missing. The difference "
            "(ε_c − ε_neg) must be multiplied by scale."
        )
    if _close(got, eps_cond + scale * (eps_neg - eps_cond)):
        return (
            "the two predictions are swapped: start from the NEGATIVE prompt's ε_neg and move "
            "γ times towards ε_c, ε_neg + γ (ε_c − ε_neg)."
        )
    if _close(got, eps_cond + scale * (eps_cond - eps_neg)):
        return (
            "wrong baseline: you started from ε_c. The baseline is ε_neg (it takes the place "
            "of the unconditional ε_u): ε_neg + γ (ε_c − ε_neg)."
        )
    if _close(got, eps_cond - scale * eps_neg) or _close(got, eps_cond - eps_neg):
        return (
            "a negative prompt is not subtracted from the prompt's prediction: it replaces the "
            "empty prompt in the CFG formula, ε_neg + γ (ε_c − ε_neg)."
        )
    return None


def check_negative_cfg(fn) -> str:
    """Check ``fn(eps_neg, eps_cond, scale) -> ε_neg + γ (ε_c − ε_neg)`` against ``cfg_combine``."""
    return run_cases(
        _NEG,
        fn,
        cfg_combine,
        _negative_cases(),
        diagnose=_diagnose_negative,
        hint="it is CFG with ε_neg in the place of ε_u: eps_neg + scale * (eps_cond - eps_neg).",
    )


# ------------------------------------------------------------ composable guidance

_COMB = "Exercise 2 (my_combine)"


def _combine_cases() -> list[Case]:
    g = torch.Generator().manual_seed(70)
    cases = []
    for name, shape, weights, scale in (
        ("one prompt of weight 1 (plain CFG), scale 3", (2, 3, 8, 8), [1.0], 3.0),
        ("two prompts, weights [1, 0.5], scale 4", (2, 3, 8, 8), [1.0, 0.5], 4.0),
        (
            "three prompts, weights [1, 0.8, -0.6] (one negative), scale 2.5",
            (3, 2),
            [1.0, 0.8, -0.6],
            2.5,
        ),
        ("two prompts, weights [0.7, 0.7], scale 5", (4, 2), [0.7, 0.7], 5.0),
        (
            "two prompts, weights [1, -1] (they sum to zero), scale 2",
            (2, 3, 8, 8),
            [1.0, -1.0],
            2.0,
        ),
    ):
        eps_uncond = torch.randn(shape, generator=g)
        eps_conds = [torch.randn(shape, generator=g) for _ in weights]
        cases.append(Case(name, (eps_uncond, eps_conds, list(weights), scale)))
    return cases


def _diagnose_combine(case: Case, got: torch.Tensor) -> str | None:
    eps_u, eps_conds, weights, scale = case.args
    diffs = [e - eps_u for e in eps_conds]
    total = sum(weights)
    k = len(weights)

    def combo(ws, gamma, base=eps_u, ds=diffs):
        out = base.clone()
        for w, d in zip(ws, ds, strict=True):
            out = out + w * gamma * d
        return out

    expected = combo(weights, scale)
    if _close(got, expected):
        return None
    if _close(got, combo(weights, 1.0)):
        return "the guidance scale γ is missing: every term is w_k · γ · (ε_k − ε_u)."
    if abs(total) > 1e-6 and _close(got, combo([w / total for w in weights], scale)):
        return (
            "you normalised the weights to sum to one. AUTOMATIC1111's AND does not: each "
            "prompt pulls with its own weight w_k, and they need not sum to one (they may be negative)."
        )
    if k > 1 and _close(got, combo([w / k for w in weights], scale)):
        return "you averaged over the K prompts: the differences are summed, not averaged."
    if _close(got, combo(weights, scale, base=torch.zeros_like(eps_u), ds=eps_conds)) or _close(
        got, eps_u + scale * sum(w * e for w, e in zip(weights, eps_conds, strict=True))
    ):
        return (
            "each prompt contributes its DIFFERENCE from the unconditional prediction, "
            "w_k γ (ε_k − ε_u), not its prediction ε_k."
        )
    if k > 1 and _close(
        got,
        combo(weights[1:], scale, base=eps_conds[0], ds=[e - eps_conds[0] for e in eps_conds[1:]]),
    ):
        return (
            "the baseline is the unconditional ε_u (the empty prompt), not the first prompt's ε_1."
        )
    if _close(got, combo([1.0] * k, scale)):
        return "the weights are ignored: multiply each difference by its w_k."
    return None


def check_combine(fn) -> str:
    """Check ``fn(eps_uncond, eps_conds, weights, scale) -> ε_u + Σ_k w_k γ (ε_k − ε_u)``."""
    return run_cases(
        _COMB,
        fn,
        combine_weighted_prompts,
        _combine_cases(),
        diagnose=_diagnose_combine,
        hint="start from eps_uncond and add weights[k] * scale * (eps_conds[k] - eps_uncond) for every k.",
    )
