"""Checks for the exercise of notebook 10 (from the course to Stable Diffusion).

* ``check_emphasis(my_apply_emphasis)``: AUTOMATIC1111's prompt emphasis on encoder features,
  ``my_apply_emphasis(z (B, T, D), weights (B, T)) -> (B, T, D)``: multiply each token's feature
  vector by its weight, then rescale each prompt so that the mean of its features is what it
  was before (``modules/sd_emphasis.py``, "Original"). The reference is
  ``tutorial_lib.a1111.apply_emphasis``. Recognised mistakes: no rescale ("No norm"), the mean
  taken over the whole batch instead of per prompt, the weights applied after the rescale
  (which undoes nothing), the rescale by the ratio the wrong way round.

The features are hand-made tensors with a clearly non-zero mean, as trained CLIP features have.
"""

from __future__ import annotations

import torch

from ..a1111 import apply_emphasis
from ._core import Case, run_cases

__all__ = ["check_emphasis"]

_EXERCISE = "Exercise (my_apply_emphasis)"


def _features(batch: int, tokens: int, dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, tokens, dim, generator=g) + 0.5 + torch.arange(batch).view(-1, 1, 1)


def _cases() -> list[Case]:
    w = torch.ones(2, 6)
    w[0, 2:4] = 1.5
    w[1, 1] = 0.5
    one = torch.ones(1, 5)
    one[0, 3] = 2.0
    return [
        Case("two prompts, (B:1.5) in the first, (A:0.5) in the second", (_features(2, 6, 4, 0), w)),
        Case("one prompt, one token at weight 2", (_features(1, 5, 3, 1), one)),
        Case("no emphasis at all (weights 1: z unchanged)", (_features(2, 6, 4, 2), torch.ones(2, 6))),
    ]


def _diagnose(case: Case, got: torch.Tensor) -> str | None:
    z, w = case.args
    weighted = z * w[..., None]
    if got.shape != z.shape:
        return f"return the features' shape {tuple(z.shape)}: one weight per token, broadcast over D"
    if torch.allclose(got, weighted, atol=1e-5) and not torch.allclose(weighted, apply_emphasis(z, w)):
        return ("you multiplied by the weights but did not restore the mean: rescale by "
                "mean(z) / mean(w ⊙ z), A1111's 'Original' mode")
    if torch.allclose(got, weighted * (z.mean() / weighted.mean()), atol=1e-5):
        return "take the means per prompt (dims 1 and 2), not over the whole batch: A1111 encodes one prompt at a time"
    if torch.allclose(got, weighted * (weighted.mean((1, 2), keepdim=True) / z.mean((1, 2), keepdim=True)),
                      atol=1e-5):
        return "the ratio is upside down: multiply by original_mean / new_mean"
    return None


def check_emphasis(fn) -> str:
    """Check ``fn(z (B, T, D), weights (B, T)) -> (B, T, D)`` against ``a1111.apply_emphasis``."""
    return run_cases(_EXERCISE, fn, apply_emphasis, _cases(), atol=1e-5, rtol=1e-5, diagnose=_diagnose,
                     hint="original = z.mean((1, 2), keepdim=True); zw = z * weights[..., None]; "
                          "return zw * (original / zw.mean((1, 2), keepdim=True))")
