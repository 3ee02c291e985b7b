"""Cross-attention (and self-attention) with attention-map capture.

Introduced in notebook 03. Queries come from image tokens, keys and values
from text tokens:

    Q = LN(x) W_Q,   K = c W_K,   V = c W_V,
    head_j = softmax(Q_j K_jᵀ / √d) V_j,   y = x + [head_1, …, head_h] W_O

with ``x`` the flattened feature map ``(B, N_img, query_dim)``, ``c`` the text
embeddings ``(B, N_txt, context_dim)`` and ``d`` the head width. Entry
``P[b, j, i, k]`` of the probability matrix says how much image position ``i``
reads from word ``k`` in head ``j``.

Two computation paths give the same numbers (tested to 1e-5):

- ``attention_path="math"`` writes the formula out (used for teaching and for
  capturing the probabilities);
- ``attention_path="sdpa"`` (the default) calls
  :func:`torch.nn.functional.scaled_dot_product_attention`, which never
  materialises the probabilities and can use fused kernels.

Capturing maps without slowing the fast path: wrap a forward pass in
:func:`capture_attention`. Inside the ``with`` block the selected attention
modules take the math path and store their probabilities; outside it they are
untouched and run SDPA.

Key padding mask convention (read this twice): ``key_padding_mask`` is a bool
tensor ``(B, N_txt)`` with **True = keep this key** (a real token) and
False = ignore it (padding). This is the convention of SDPA's boolean
``attn_mask`` and of transformers' ``attention_mask`` (1 = real token), and it
is the **opposite** of ``torch.nn.MultiheadAttention``'s ``key_padding_mask``,
where True means "ignore".
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import _checks

__all__ = [
    "CrossAttention",
    "SelfAttention",
    "capture_attention",
    "attention_flops",
    "cell_attention_shares",
    "ATTENTION_PATHS",
]

ATTENTION_PATHS = ("math", "sdpa")


class CrossAttention(nn.Module):
    """Multi-head attention whose queries come from ``x`` and keys/values from ``context``.

    Introduced in notebook 03: a ``CrossAttention`` with key padding masks, heads
    of any width and two equal computation paths.

    Args:
        query_dim: width of the image tokens ``x``.
        context_dim: width of the context tokens (768 for CLIP ViT-L/14). ``None``
            means self-attention: ``context_dim = query_dim`` and a call with
            ``context=None`` attends over ``LN(x)`` itself.
        num_heads: number of heads ``h``.
        head_dim: width ``d`` of each head; default ``query_dim // num_heads``
            (which must then divide evenly). Inner width is ``h * d``.
        dropout: dropout on the attention probabilities and on the output
            projection (training only).
        residual: return ``x + out`` (a pre-norm residual, as in a transformer layer) instead of ``out``.
        norm: apply ``LayerNorm`` to ``x`` before computing ``Q`` (pre-norm).
        attention_path: ``"sdpa"`` (default, fast) or ``"math"`` (explicit).

    Attributes ``is_cross_attention`` (False for self-attention) and
    ``attention_path`` (settable) are read by :func:`capture_attention`.
    """

    def __init__(
        self,
        query_dim: int,
        context_dim: int | None = None,
        num_heads: int = 8,
        head_dim: int | None = None,
        dropout: float = 0.0,
        residual: bool = True,
        norm: bool = True,
        attention_path: str = "sdpa",
    ):
        super().__init__()
        query_dim, num_heads = _checks.positive("query_dim", query_dim), _checks.positive("num_heads", num_heads)
        self.is_cross_attention = context_dim is not None
        context_dim = _checks.positive("context_dim", query_dim if context_dim is None else context_dim)
        _checks.that(head_dim is not None or query_dim % num_heads == 0, f"num_heads={num_heads} must divide query_dim={query_dim} (or pass head_dim explicitly)")
        head_dim = _checks.positive("head_dim", query_dim // num_heads if head_dim is None else head_dim)
        _checks.that(0.0 <= _checks.real("dropout", dropout) < 1.0, f"dropout must be in [0, 1), got {dropout}")

        self.query_dim, self.context_dim = query_dim, context_dim
        self.num_heads, self.head_dim = num_heads, head_dim
        self.scale = head_dim**-0.5  # 1 / sqrt(d)
        self.dropout = float(dropout)
        self.residual = bool(residual)
        self.attention_path = attention_path
        inner_dim = num_heads * head_dim

        self.norm = nn.LayerNorm(query_dim) if norm else nn.Identity()
        self.to_q = nn.Linear(query_dim, inner_dim, bias=False)
        self.to_k = nn.Linear(context_dim, inner_dim, bias=False)
        self.to_v = nn.Linear(context_dim, inner_dim, bias=False)
        self.to_out = nn.Linear(inner_dim, query_dim)
        self.out_dropout = nn.Dropout(dropout)
        # Set by capture_attention: a callback receiving the probabilities.
        self._attention_recorder = None

    # -- the attention path property validates on assignment -----------------
    @property
    def attention_path(self) -> str:
        return self._attention_path

    @attention_path.setter
    def attention_path(self, value: str) -> None:
        _checks.one_of("attention_path", value, ATTENTION_PATHS)
        self._attention_path = value

    # -- shapes ----------------------------------------------------------------
    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        """``(B, N, h*d) -> (B, h, N, d)``."""
        b, n, _ = t.shape
        return t.reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)

    def _merge_heads(self, t: torch.Tensor) -> torch.Tensor:
        """``(B, h, N, d) -> (B, N, h*d)``."""
        b, _, n, _ = t.shape
        return t.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim)

    def _check_inputs(self, x, context, key_padding_mask) -> None:
        _checks.shape("x", x, (None, None, self.query_dim), f"(B, N_img, query_dim={self.query_dim})")
        _checks.that(context is not None or not self.is_cross_attention, f"context is required for cross-attention (this module has context_dim={self.context_dim}); use SelfAttention for self-attention")
        if context is not None:
            _checks.shape("context", context, (x.shape[0], None, self.context_dim), "(B, N_txt, context_dim)")
        if key_padding_mask is not None:
            _check_key_padding_mask(key_padding_mask, x.shape[0], (x if context is None else context).shape[1])

    # -- the two paths -----------------------------------------------------------
    def attention_math(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The explicit formula: ``P = softmax(Q K^T / sqrt(d))``, ``out = P V``.

        ``q`` is ``(B, h, N_q, d)``, ``k`` and ``v`` are ``(B, h, N_k, d)`` and
        ``mask`` is ``(B, N_k)`` bool (True = keep) or None. Masked keys get
        score −∞, hence probability exactly 0. Returns
        ``(out (B, h, N_q, d), P (B, h, N_q, N_k))``; ``P`` is before dropout.
        """
        scores = torch.matmul(q, k.transpose(-2, -1)) * self.scale  # (B, h, N_q, N_k)
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
        probs = scores.softmax(dim=-1)
        dropped = F.dropout(probs, p=self.dropout, training=self.training)
        return torch.matmul(dropped, v), probs

    def attention_sdpa(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """The same computation with ``F.scaled_dot_product_attention`` (no probabilities)."""
        attn_mask = None if mask is None else mask[:, None, None, :]  # True = take part
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0, scale=self.scale,
        )

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        return_attention: bool = False,
        validate: bool = True,
    ):
        """Attend from ``x`` to ``context`` (or to ``x`` itself for self-attention).

        Args:
            x: image tokens ``(B, N_img, query_dim)``.
            context: context tokens ``(B, N_txt, context_dim)``; ``None`` only for
                self-attention modules.
            key_padding_mask: ``(B, N_txt)`` bool, **True = keep**, False = padding
                (the opposite of ``nn.MultiheadAttention``). Each row must keep at
                least one key.
            return_attention: also return the probabilities (forces the math path).
            validate: check the inputs' shapes (a ``ConditionedResBlock`` passes False: it has
                checked them once for all its layers).

        Returns:
            ``(B, N_img, query_dim)`` (``x + out`` when ``residual``), and if
            ``return_attention`` the probabilities ``(B, heads, N_img, N_txt)``.
        """
        if validate:
            self._check_inputs(x, context, key_padding_mask)
        h = self.norm(x)
        kv_source = h if context is None else context.to(h.dtype)
        q = self._split_heads(self.to_q(h))  # (B, heads, N_img, d)
        k = self._split_heads(self.to_k(kv_source))  # (B, heads, N_txt, d)
        v = self._split_heads(self.to_v(kv_source))  # (B, heads, N_txt, d)

        recording = self._attention_recorder is not None  # inside capture_attention
        probs = None
        if return_attention or recording or self.attention_path == "math":
            out, probs = self.attention_math(q, k, v, key_padding_mask)
            if recording:
                self._attention_recorder(probs.detach())
        else:
            out = self.attention_sdpa(q, k, v, key_padding_mask)

        out = self.out_dropout(self.to_out(self._merge_heads(out)))  # (B, N_img, query_dim)
        if self.residual:
            out = x + out
        return (out, probs) if return_attention else out

    def extra_repr(self) -> str:
        kind = "cross" if self.is_cross_attention else "self"
        return (
            f"{kind}, query_dim={self.query_dim}, context_dim={self.context_dim}, "
            f"num_heads={self.num_heads}, head_dim={self.head_dim}, "
            f"residual={self.residual}, attention_path={self.attention_path!r}"
        )


class SelfAttention(CrossAttention):
    """Self-attention over image tokens: ``Q, K, V`` all from ``LN(x)``.

    Introduced in notebook 04 (the first attention of a ``ConditionedResBlock``).
    The same class as :class:`CrossAttention` with ``context_dim=None``;
    ``forward(x, key_padding_mask=None, return_attention=False)`` where the mask,
    if given, is ``(B, N_img)`` with True = keep. Probabilities are
    ``(B, heads, N_img, N_img)``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        head_dim: int | None = None,
        dropout: float = 0.0,
        residual: bool = True,
        norm: bool = True,
        attention_path: str = "sdpa",
    ):
        super().__init__(
            dim, None, num_heads=num_heads, head_dim=head_dim, dropout=dropout,
            residual=residual, norm=norm, attention_path=attention_path,
        )

    def forward(self, x, key_padding_mask=None, return_attention=False, validate=True):  # noqa: D102
        return super().forward(x, None, key_padding_mask, return_attention, validate)


def _check_key_padding_mask(mask, batch: int, n_keys: int) -> None:
    _checks.that(_checks.tensor("key_padding_mask", mask).dtype == torch.bool, f"key_padding_mask must be a bool tensor (True = keep the key), got {mask.dtype}; convert a 0/1 mask with `.bool()`", TypeError)
    _checks.shape("key_padding_mask", mask, (batch, n_keys), "(B, N_keys)")
    _checks.that(bool(mask.any(dim=-1).all()), "key_padding_mask keeps no key in some row (all False): softmax is NaN")


@contextlib.contextmanager
def capture_attention(
    model: nn.Module, kind: str = "cross", keep_all: bool = False
) -> Iterator[dict[str, torch.Tensor | list[torch.Tensor]]]:
    """Record attention probabilities of every attention module in ``model``.

    Introduced in notebook 03::

        with capture_attention(unet) as maps:
            unet(x_t, t, context)
        maps["mid.cross_attn"].shape   # (B, heads, N_img, N_txt)

    Inside the block the selected modules compute the math path (same outputs,
    to float rounding) and store ``probs.detach()`` under their name from
    ``model.named_modules()`` (``""`` if ``model`` itself is the attention
    module). Outside the block nothing changes: the fast SDPA path pays nothing
    for this feature.

    Args:
        model: any module containing :class:`CrossAttention` modules.
        kind: ``"cross"`` (default), ``"self"`` or ``"all"``.
        keep_all: if False each entry is the last call's tensor; if True a list
            with one tensor per call (e.g. one per sampling step).

    Yields:
        The dict being filled, keyed by module name.
    """
    _checks.one_of("kind", kind, ("cross", "self", "all"))
    _checks.instance("model", model, nn.Module, "an nn.Module")
    maps: dict[str, torch.Tensor | list[torch.Tensor]] = {}
    selected = [
        (name, m) for name, m in model.named_modules()
        if isinstance(m, CrossAttention)
        and (kind == "all" or m.is_cross_attention == (kind == "cross"))
    ]

    def recorder_for(name: str):
        def record(probs: torch.Tensor) -> None:
            if keep_all:
                maps.setdefault(name, []).append(probs)
            else:
                maps[name] = probs
        return record

    previous = [m._attention_recorder for _, m in selected]
    try:
        for name, m in selected:
            m._attention_recorder = recorder_for(name)
        yield maps
    finally:
        for (_, m), rec in zip(selected, previous, strict=True):
            m._attention_recorder = rec


def attention_flops(n_query: int, n_key: int, inner_dim: int) -> int:
    """Multiply-adds of ``Q K^T`` and ``P V`` for one example: ``2 * N_q * N_k * inner``.

    Introduced in notebook 03 to show why attention is left out at high
    resolution: the cost of self-attention grows as ``(H W)²``.
    """
    return 2 * n_query * n_key * inner_dim


def cell_attention_shares(token_maps: torch.Tensor, grid: int = 2) -> torch.Tensor:
    """The share of one token's attention that falls in each cell of a ``grid × grid`` partition.

    Introduced in notebook 03 to ask whether a colour word attends to *its own* object: a scene
    (:mod:`tutorial_lib.scenes`) puts each object in one cell of a 2 × 2 grid, and the judge says
    which cell holds which colour. For a token ``k`` and a cell ``c``

        share_c = Σ_{i ∈ c} P[i, k] / Σ_i P[i, k],

    the sum running over the positions ``i`` of the feature map. A map that is the same
    everywhere gives ``1 / grid²`` per cell, whatever its resolution, so layers at 16×16 and
    8×8 are compared on one scale.

    Args:
        token_maps: ``(..., h, w)`` non-negative, e.g. the attention every position pays to one
            token (:func:`tutorial_lib.plotting.token_attention_map`), with any leading dims
            (steps, images, heads); ``grid`` must divide ``h`` and ``w``.
        grid: cells per side (2 for the scenes' 2 × 2 grid).

    Returns:
        ``(..., grid * grid)``, cells row-major (as ``scenes.CELLS``: top left, top right, bottom
        left, bottom right); each row sums to 1.
    """
    _checks.that(_checks.tensor("token_maps", token_maps).ndim >= 2, f"token_maps must be a tensor (..., h, w), got shape {tuple(token_maps.shape)}")
    grid, (h, w) = _checks.positive("grid", grid), token_maps.shape[-2:]
    _checks.that(h % grid == 0 and w % grid == 0, f"grid={grid} must divide the map's sides, got a {h}x{w} map")
    lead = token_maps.shape[:-2]
    # (..., grid, h/grid, grid, w/grid): summing the two within-cell axes leaves one total per cell
    per_cell = token_maps.reshape(*lead, grid, h // grid, grid, w // grid).sum((-3, -1)).flatten(-2)
    return per_cell / per_cell.sum(-1, keepdim=True)
