"""The building blocks of the conditional U-Net: ResBlock and ConditionedResBlock.

Introduced in notebook 04.

A :class:`ConditionedResBlock` is the block of a text-to-image U-Net::

    x ─ ResBlock(time by scale/shift) ─ flatten ─ self-attn ─ cross-attn ─ feed-forward ─ unflatten
        (B,C_in,H,W) -> (B,C_out,H,W)   (B,HW,C_out), each a pre-norm residual  -> (B,C_out,H,W)

The time embedding enters through adaptive GroupNorm (paradigm 2 of notebook 01: a
per-channel scale and shift, the course's choice after ADM; Stable Diffusion's
``ResnetBlock2D`` adds a per-channel bias instead, notebook 04 compares them); the text
enters through cross-attention (paradigm 3, notebook 03).

A common bug (notebook 04 §5): reshaping the tokens back with the block's *input*
channel count ``C`` (``reshape(B, C, H, W)``), which breaks (or silently scrambles)
whenever ``in_channels != out_channels``; here the tokens have ``out_channels``
features and are reshaped with that.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import _checks
from .attention import CrossAttention, SelfAttention, _check_key_padding_mask
from .conditioning import AdaptiveGroupNorm

__all__ = ["ResBlock", "FeedForward", "ConditionedResBlock", "Downsample", "Upsample"]


class ResBlock(nn.Module):
    """A residual block with the timestep injected by scale/shift (AdaGN, as in ADM).

        h = Conv_1(SiLU(GN(x))),   h = Conv_2(Drop(SiLU(AdaGN(h, SiLU(τ))))),   y = skip(x) + h

    where τ is the time embedding and ``skip`` is a 1×1 conv when
    ``in_channels != out_channels`` (identity otherwise). Introduced in notebook 04, which also runs
    diffusers' ``ResnetBlock2D``: Stable Diffusion's block replaces the AdaGN line by
    GN(h + W SiLU(τ)), a per-channel bias.

    Shapes: ``x`` ``(B, in_channels, H, W)``, ``time_emb`` ``(B, time_dim)`` ->
    ``(B, out_channels, H, W)``. ``forward`` does not check them: its owner, a
    :class:`ConditionedResBlock`, has.
    """

    def __init__(
        self, in_channels: int, out_channels: int, time_dim: int, dropout: float = 0.0, num_groups: int = 8
    ):
        super().__init__()
        self.in_channels, self.out_channels = _checks.positive("in_channels", in_channels), _checks.positive("out_channels", out_channels)
        self.time_dim = _checks.positive("time_dim", time_dim)
        _checks.that(in_channels % num_groups == 0, f"num_groups={num_groups} must divide in_channels={in_channels}")
        self.norm1 = nn.GroupNorm(num_groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = AdaptiveGroupNorm(out_channels, time_dim, num_groups)  # time -> scale, shift
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = F.silu(self.norm2(h, F.silu(time_emb), validate=False))
        h = self.conv2(self.dropout(h))
        return self.skip(x) + h


class FeedForward(nn.Module):
    """The transformer's position-wise MLP as a pre-norm residual.

        y = x + W_2 GELU(W_1 LN(x))

    ``(B, N, dim) -> (B, N, dim)`` with hidden width ``mult * dim``.
    Introduced in notebook 04.
    """

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0):
        super().__init__()
        self.dim = _checks.positive("dim", dim)
        hidden = _checks.positive("mult", mult) * dim
        self.norm = nn.LayerNorm(dim)
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(self.norm(x))


class ConditionedResBlock(nn.Module):
    """ResBlock (time) -> self-attention -> cross-attention (text) -> feed-forward.

    Introduced in notebook 04. The attention part is a transformer block over the
    ``H*W`` pixel tokens, each sub-layer a pre-norm residual:

    1. ``h = ResBlock(x, time_emb)``, ``(B, out_channels, H, W)``;
    2. ``tokens = h.flatten(2).transpose(1, 2)``, ``(B, H*W, out_channels)``;
    3. ``tokens = SelfAttention(tokens)``  (pixels look at each other);
    4. ``tokens = CrossAttention(tokens, context, key_padding_mask)`` (pixels read words);
    5. ``tokens = FeedForward(tokens)``;
    6. back to ``(B, out_channels, H, W)`` -- with the *output* channel count.

    Args:
        in_channels, out_channels: channels in and out.
        time_dim: width of the time embedding.
        context_dim: width of the text embeddings.
        num_heads: attention heads (must divide ``out_channels`` unless ``head_dim`` is given).
        dropout: dropout in the ResBlock, attention and feed-forward.
        use_attention: False turns the block into a plain ResBlock (used at high
            resolution where ``(H W)²`` attention is too expensive); ``context``
            is then still validated but unused.
        num_groups: GroupNorm groups.
        head_dim: optional explicit head width.
        ff_mult: hidden width multiplier of the feed-forward.

    ``forward(x (B, in_channels, H, W), time_emb (B, time_dim), context (B, N, context_dim),
    key_padding_mask (B, N) bool True=keep or None) -> (B, out_channels, H, W)`` checks its inputs
    once for all its layers, unless ``validate=False`` (the U-Net, which has checked them).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        time_dim: int,
        context_dim: int,
        num_heads: int = 4,
        dropout: float = 0.0,
        use_attention: bool = True,
        num_groups: int = 8,
        head_dim: int | None = None,
        ff_mult: int = 4,
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.context_dim = _checks.positive("context_dim", context_dim)
        self.use_attention = bool(use_attention)
        self.resblock = ResBlock(in_channels, out_channels, time_dim, dropout, num_groups)
        if self.use_attention:
            self.self_attn = SelfAttention(out_channels, num_heads, head_dim, dropout)
            self.cross_attn = CrossAttention(out_channels, context_dim, num_heads, head_dim, dropout)
            self.ff = FeedForward(out_channels, ff_mult, dropout)

    def forward(
        self,
        x: torch.Tensor,
        time_emb: torch.Tensor,
        context: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        validate: bool = True,
    ) -> torch.Tensor:
        if validate:
            self._check_inputs(x, time_emb, context, key_padding_mask)
        h = self.resblock(x, time_emb)  # (B, out_channels, H, W)
        if not self.use_attention:
            return h
        b, c, height, width = h.shape  # c == out_channels, not in_channels (the classic bug)
        tokens = h.flatten(2).transpose(1, 2)  # (B, H*W, out_channels)
        tokens = self.self_attn(tokens, validate=False)  # checked above, once for every layer
        tokens = self.cross_attn(tokens, context, key_padding_mask, validate=False)
        tokens = self.ff(tokens)
        return tokens.transpose(1, 2).reshape(b, c, height, width)

    def _check_inputs(self, x, time_emb, context, key_padding_mask) -> None:
        _checks.shape("x", x, (None, self.in_channels, None, None), f"(B, in_channels={self.in_channels}, H, W)")
        _checks.shape("time_emb", time_emb, (x.shape[0], self.resblock.time_dim), "(B, time_dim)")
        _checks.shape("context", context, (x.shape[0], None, self.context_dim), "(B, N, context_dim)")
        if key_padding_mask is not None:
            _check_key_padding_mask(key_padding_mask, x.shape[0], context.shape[1])

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}, use_attention={self.use_attention}"


class Downsample(nn.Module):
    """Halve the resolution with a stride-2 3×3 conv: ``(B, C, H, W) -> (B, C, H/2, W/2)``."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double the resolution: nearest-neighbour ×2, then a 3×3 conv. ``(B, C, H, W) -> (B, C, 2H, 2W)``."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
