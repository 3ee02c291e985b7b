"""Checks for the exercise of notebook 11 (appendix: train your own).

* ``check_condition_dropout(my_condition_dropout)``: condition dropout applied to
  encoded prompts, ``my_condition_dropout(context, null_context, u, p_uncond) ->
  context'`` where row i becomes the null context (the encoded empty prompt "")
  when ``u[i] < p_uncond`` and stays as it is otherwise. The reference is the
  package's own rule (``train_denoiser`` replaces the caption by "" when
  ``torch.rand(...) < p_uncond``), applied after encoding; because the encoder
  is applied row by row, dropping the *caption* and dropping the *encoding* give
  the same context (the tests check it). Recognised mistakes: zeros instead of
  the encoded "" (SD 1/2 and the course's model are trained with enc(""); SDXL
  with zeros; a model should be sampled with the null it was trained with), the comparison inverted (dropping 1 − p of the rows), the whole batch
  dropped or kept, the null context not broadcast to every dropped row.

The contexts are encodings of real captions by a small, randomly initialised
(untrained) ``CLIPTextModel`` with the real tokenizer: real shapes and padding
semantics, meaningless values.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from ..text import encode_prompt, load_clip_tokenizer, load_text_encoder
from ._core import Case, run_cases

__all__ = ["check_condition_dropout"]

_DROP = "Exercise (my_condition_dropout)"

_CAPTIONS = [
    "a large red circle in the top left",
    "a small blue square",
    "a green triangle in the center",
    "a shape in the bottom right",
    "a large yellow circle",
    "a purple shape",
]


def reference_condition_dropout(context, null_context, u, p_uncond):
    """Row i of ``context`` becomes ``null_context`` where ``u[i] < p_uncond``."""
    drop = (u < p_uncond).view(-1, *([1] * (context.ndim - 1)))
    return torch.where(drop, null_context.expand_as(context), context)


@lru_cache(maxsize=None)
def _encodings() -> tuple[torch.Tensor, torch.Tensor]:
    """``(enc(captions) (6, 77, D), enc("") (1, 77, D))`` from an untrained tiny CLIP."""
    encoder = load_text_encoder("tiny-clip", hidden_size=32, seed=9)
    with torch.no_grad():
        cond, _ = encode_prompt(load_clip_tokenizer(), encoder, _CAPTIONS)
        null, _ = encode_prompt(load_clip_tokenizer(), encoder, [""])
    return cond, null


def _cases() -> list[Case]:
    cond, null = _encodings()
    u = torch.tensor([0.05, 0.40, 0.12, 0.90, 0.30, 0.70])
    return [
        Case("p_uncond=0.15 (rows 0 and 2 dropped)", (cond, null, u, 0.15)),
        Case("p_uncond=0.5 (rows 0, 2, 4 and 1 dropped)", (cond, null, u, 0.5)),
        Case("p_uncond=0 (nothing dropped)", (cond, null, u, 0.0)),
        Case("p_uncond=1 (everything dropped)", (cond, null, u, 1.0)),
        Case("two rows, p_uncond=0.2", (cond[:2], null, torch.tensor([0.9, 0.1]), 0.2)),
    ]


def _diagnose(case: Case, got: torch.Tensor) -> str | None:
    context, null, u, p = case.args
    expected = reference_condition_dropout(context, null, u, p)
    if got.shape != context.shape:
        return (
            f"return the whole batch, shape {tuple(context.shape)}: null_context has a batch of 1 "
            "and must be broadcast (expand_as) to the dropped rows."
        )
    if torch.allclose(got, expected):
        return None
    drop = (u < p).view(-1, *([1] * (context.ndim - 1)))
    if torch.allclose(got, torch.where(drop, torch.zeros_like(context), context)):
        return (
            "you used zeros for the dropped rows. Train with the null condition the model will be "
            'sampled with: for SD 1/2 and this course\'s model that is the ENCODED empty prompt "", a '
            "non-zero tensor (SDXL was trained with zeros instead): use null_context."
        )
    if torch.allclose(got, reference_condition_dropout(context, null, u, 1 - p)) or torch.allclose(
        got, torch.where(~drop, null.expand_as(context), context)
    ):
        return "the comparison is inverted: a row is dropped when u[i] < p_uncond (probability p_uncond)."
    if torch.allclose(got, null.expand_as(context)) or torch.allclose(got, context):
        return "decide row by row: each row is dropped on its own, with probability p_uncond."
    return None


def check_condition_dropout(fn) -> str:
    """Check ``fn(context (B, 77, D), null_context (1, 77, D), u (B,), p_uncond) -> (B, 77, D)``."""
    return run_cases(
        _DROP,
        fn,
        reference_condition_dropout,
        _cases(),
        atol=0,
        rtol=0,
        diagnose=_diagnose,
        hint="torch.where((u < p_uncond)[:, None, None], null_context.expand_as(context), context)",
    )
