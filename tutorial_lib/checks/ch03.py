"""Checks for the exercises of notebook 03 (cross-attention).

* ``check_attention(my_attention)``: scaled dot-product attention
  ``softmax(Q K^T / sqrt(d)) V`` over the keys, with an optional key padding mask
  ``(B, N_k)`` where **True = keep** (the convention of
  :class:`tutorial_lib.attention.CrossAttention` and of SDPA's boolean mask). The
  reference is :func:`torch.nn.functional.scaled_dot_product_attention`.
* ``check_split_heads(my_split_heads)``: ``(B, N, h*d) -> (B, h, N, d)``, head ``j``
  owning features ``j*d ... (j+1)*d - 1`` of every token, as
  ``CrossAttention._split_heads`` does.

Queries, keys and values are random tensors used as *inputs* (any tensors will do).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._core import Case, run_cases

__all__ = ["check_attention", "check_split_heads"]

# ------------------------------------------------------------------------------ attention

_ATT = "Exercise 1 (my_attention)"


def _reference_attention(q, k, v, mask=None):
    attn_mask = None if mask is None else mask[:, None, None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)


def _attention_cases() -> list[Case]:
    g = torch.Generator().manual_seed(3)

    def qkv(b, h, nq, nk, d, spread=1.0):
        # Random inputs; `spread` makes the scores large enough that a wrong scale shows.
        return tuple(torch.randn(b, h, n, d, generator=g) * spread for n in (nq, nk, nk))

    mask = torch.tensor([[True, True, True, False, False], [True, False, True, True, False]])
    return [
        Case("no mask, B=2, 2 heads, 6 queries, 5 keys, d=16", qkv(2, 2, 6, 5, 16)),
        Case("no mask, 1 head, 4 queries, 7 keys, d=4 (large scores)", qkv(1, 1, 4, 7, 4, 2.0)),
        Case("mask (True = keep), B=2, 3 heads, 6 queries, 5 keys, d=8",
             qkv(2, 3, 6, 5, 8), {"mask": mask}),
    ]


def _finish_probs(scores, keep, dim=-1):
    """Softmax of ``scores`` with the keys where ``keep`` is False set to -inf."""
    if keep is not None:
        scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
    return scores.softmax(dim=dim)


def _planted_attention(q, k, v, mask) -> dict[str, torch.Tensor]:
    d = q.shape[-1]
    raw = q @ k.transpose(-2, -1)

    def finish(scores, keep=mask):
        return _finish_probs(scores, keep) @ v

    planted = {
        "you divided the scores by d; divide by sqrt(d) (the head width's square root), so "
        "that the scores keep unit variance.": finish(raw / d),
        "the scores are not scaled: divide Q K^T by sqrt(d) before the softmax.": finish(raw),
        "you multiplied the scores by sqrt(d); divide by it instead.": finish(raw * math.sqrt(d)),
    }
    # Softmax over the queries: with a mask, whole columns are -inf (NaN, shown as 0).
    planted[
        "the softmax runs over the wrong axis: each query's weights over the KEYS must sum "
        "to 1, so use softmax(dim=-1) on the (B, h, N_q, N_k) scores."
    ] = torch.nan_to_num(_finish_probs(raw / math.sqrt(d), mask, dim=-2)) @ v
    if mask is not None:
        scores = raw / math.sqrt(d)
        planted.update({
            "your mask is inverted: here True means KEEP the key (like SDPA's boolean attn_mask "
            "and transformers' attention_mask), the opposite of nn.MultiheadAttention's "
            "key_padding_mask. Fill the scores where the mask is False.": finish(scores, ~mask),
            "the mask is ignored: set the scores of masked keys (mask False) to -inf before "
            "the softmax.": finish(scores, None),
            "you set masked scores to 0, which still gives those keys weight exp(0); use "
            "-inf so their probability is exactly 0.":
                scores.masked_fill(~mask[:, None, None, :], 0.0).softmax(-1) @ v,
            "you zeroed the probabilities of masked keys after the softmax without "
            "renormalising; mask the scores with -inf BEFORE the softmax.":
                (scores.softmax(-1) * mask[:, None, None, :]) @ v,
        })
    return planted


def _diagnose_attention(case: Case, got: torch.Tensor) -> str | None:
    q, k, v = case.args
    mask = case.kwargs.get("mask")
    if got.shape != q.shape[:-1] + (v.shape[-1],):
        return (
            "the output has one row per QUERY: shape (B, h, N_q, d). Compute P = "
            "softmax(q @ k.transpose(-2, -1) / sqrt(d), dim=-1) of shape (B, h, N_q, N_k), then P @ v."
        )
    for hint, wrong in _planted_attention(q, k, v, mask).items():
        if torch.isfinite(wrong).all() and torch.allclose(got, wrong, atol=1e-5, rtol=1e-4):
            return hint
    return None


def check_attention(fn) -> str:
    """Check ``fn(q, k, v, mask=None) -> (B, h, N_q, d)`` against PyTorch's SDPA."""
    return run_cases(
        _ATT,
        fn,
        _reference_attention,
        _attention_cases(),
        diagnose=_diagnose_attention,
        hint="scores = q @ k.transpose(-2, -1) / sqrt(d); scores.masked_fill(~mask[:, None, None, :], "
        "-inf) if a mask is given; return scores.softmax(dim=-1) @ v.",
    )


# ------------------------------------------------------------------------------ split heads

_SPLIT = "Exercise 2 (my_split_heads)"


def _reference_split(x, num_heads):
    b, n, inner = x.shape
    return x.reshape(b, n, num_heads, inner // num_heads).transpose(1, 2)


def _split_cases() -> list[Case]:
    # Distinct values everywhere, so any scrambling shows.
    return [
        Case("x (2, 5, 12), 3 heads of width 4", (torch.arange(120.0).reshape(2, 5, 12), 3)),
        Case("x (1, 4, 8), 2 heads of width 4", (torch.arange(32.0).reshape(1, 4, 8), 2)),
        Case("x (3, 2, 6), 6 heads of width 1", (torch.arange(36.0).reshape(3, 2, 6), 6)),
    ]


def _diagnose_split(case: Case, got: torch.Tensor) -> str | None:
    x, h = case.args
    b, n, inner = x.shape
    d = inner // h
    if got.shape == (b, n, h, d) and torch.equal(got, x.reshape(b, n, h, d)):
        return "right split, but the head axis must come before the token axis: add .transpose(1, 2)."
    if got.shape == (b, h, n, d):
        if torch.equal(got, x.reshape(b, h, n, d)):
            return (
                "x.reshape(B, h, N, d) reads the memory in the wrong order and mixes tokens into "
                "heads. Split the last axis first, x.reshape(B, N, h, d), then .transpose(1, 2)."
            )
        if torch.equal(got, x.reshape(b, n, d, h).permute(0, 3, 1, 2)):
            return (
                "you split the features as (d, h) instead of (h, d): head j owns the contiguous "
                "features j*d ... (j+1)*d - 1, so reshape to (B, N, h, d)."
            )
    if got.shape != (b, h, n, d):
        return f"expected (B, h, N, d) = ({b}, {h}, {n}, {d}): d = (h*d) // num_heads."
    return None


def check_split_heads(fn) -> str:
    """Check ``fn(x (B, N, h*d), num_heads) -> (B, h, N, d)`` against ``CrossAttention``'s split."""
    return run_cases(
        _SPLIT,
        fn,
        _reference_split,
        _split_cases(),
        atol=0,
        rtol=0,
        diagnose=_diagnose_split,
        hint="x.reshape(B, N, num_heads, d).transpose(1, 2) with d = x.shape[-1] // num_heads.",
    )
