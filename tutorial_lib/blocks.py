r"""The building blocks of the conditional U-Net: ResBlock and ConditionedResBlock.

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

from .attention import CrossAttention, SelfAttention
from .conditioning import AdaptiveGroupNorm

__all__ = ["ResBlock", "FeedForward", "ConditionedResBlock", "Downsample", "Upsample"]


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def _check_feature_map(x, channels: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"x must have shape (B, {channels}, H, W), got {tuple(x.shape)}")


def _check_time_emb(time_emb, batch: int, time_dim: int) -> None:
    if not isinstance(time_emb, torch.Tensor):
        raise TypeError(f"time_emb must be a torch.Tensor, got {type(time_emb).__name__}")
    if tuple(time_emb.shape) != (batch, time_dim):
        raise ValueError(
            f"time_emb must have shape (B, time_dim) = ({batch}, {time_dim}), "
            f"got {tuple(time_emb.shape)}"
        )


class ResBlock(nn.Module):
    r"""A residual block with the timestep injected by scale/shift (AdaGN, as in ADM).

    .. math::
        h = \mathrm{Conv}_1(\mathrm{SiLU}(\mathrm{GN}(x))),\quad
        h = \mathrm{Conv}_2(\mathrm{Drop}(\mathrm{SiLU}(\mathrm{AdaGN}(h, \mathrm{SiLU}(\tau))))),\quad
        y = \mathrm{skip}(x) + h

    where :math:`\tau` is the time embedding and ``skip`` is a 1×1 conv when
    ``in_ch != out_ch`` (identity otherwise). Introduced in notebook 04, which also runs
    diffusers' ``ResnetBlock2D``: Stable Diffusion's block replaces the AdaGN line by
    :math:`\mathrm{GN}(h + W\,\mathrm{SiLU}(\tau))`, a per-channel bias.

    Shapes: ``x`` ``(B, in_ch, H, W)``, ``time_emb`` ``(B, time_dim)`` ->
    ``(B, out_ch, H, W)``.
    """

    def __init__(
        self, in_ch: int, out_ch: int, time_dim: int, dropout: float = 0.0, num_groups: int = 8
    ):
        super().__init__()
        self.in_ch = _check_positive_int("in_ch", in_ch)
        self.out_ch = _check_positive_int("out_ch", out_ch)
        self.time_dim = _check_positive_int("time_dim", time_dim)
        if in_ch % num_groups != 0:
            raise ValueError(f"num_groups={num_groups} must divide in_ch={in_ch}")
        self.norm1 = nn.GroupNorm(num_groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2 = AdaptiveGroupNorm(out_ch, time_dim, num_groups)  # time -> scale, shift
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        _check_feature_map(x, self.in_ch)
        _check_time_emb(time_emb, x.shape[0], self.time_dim)
        h = self.conv1(F.silu(self.norm1(x)))
        h = F.silu(self.norm2(h, F.silu(time_emb)))
        h = self.conv2(self.dropout(h))
        return self.skip(x) + h


class FeedForward(nn.Module):
    r"""The transformer's position-wise MLP as a pre-norm residual.

    .. math::  y = x + W_2\,\mathrm{GELU}(W_1\,\mathrm{LN}(x))

    ``(B, N, dim) -> (B, N, dim)`` with hidden width ``mult * dim``.
    Introduced in notebook 04.
    """

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0):
        super().__init__()
        self.dim = _check_positive_int("dim", dim)
        hidden = _check_positive_int("mult", mult) * dim
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

    1. ``h = ResBlock(x, time_emb)``, ``(B, out_ch, H, W)``;
    2. ``tokens = h.flatten(2).transpose(1, 2)``, ``(B, H*W, out_ch)``;
    3. ``tokens = SelfAttention(tokens)``  (pixels look at each other);
    4. ``tokens = CrossAttention(tokens, context, key_padding_mask)`` (pixels read words);
    5. ``tokens = FeedForward(tokens)``;
    6. back to ``(B, out_ch, H, W)`` -- with the *output* channel count.

    Args:
        in_ch, out_ch: channels in and out.
        time_dim: width of the time embedding.
        context_dim: width of the text embeddings.
        num_heads: attention heads (must divide ``out_ch`` unless ``head_dim`` is given).
        dropout: dropout in the ResBlock, attention and feed-forward.
        use_attention: False turns the block into a plain ResBlock (used at high
            resolution where ``(H W)^2`` attention is too expensive); ``context``
            is then still validated but unused.
        num_groups: GroupNorm groups.
        head_dim: optional explicit head width.
        ff_mult: hidden width multiplier of the feed-forward.

    ``forward(x (B, in_ch, H, W), time_emb (B, time_dim), context (B, N, context_dim),
    key_padding_mask (B, N) bool True=keep or None) -> (B, out_ch, H, W)``.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
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
        self.in_ch, self.out_ch = in_ch, out_ch
        self.context_dim = _check_positive_int("context_dim", context_dim)
        self.use_attention = bool(use_attention)
        self.resblock = ResBlock(in_ch, out_ch, time_dim, dropout, num_groups)
        if self.use_attention:
            self.self_attn = SelfAttention(out_ch, num_heads, head_dim, dropout)
            self.cross_attn = CrossAttention(out_ch, context_dim, num_heads, head_dim, dropout)
            self.ff = FeedForward(out_ch, ff_mult, dropout)

    def forward(
        self,
        x: torch.Tensor,
        time_emb: torch.Tensor,
        context: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        _check_feature_map(x, self.in_ch)
        if not isinstance(context, torch.Tensor):
            raise TypeError(f"context must be a torch.Tensor, got {type(context).__name__}")
        if context.ndim != 3 or context.shape[-1] != self.context_dim:
            raise ValueError(
                f"context must have shape (B, N, context_dim={self.context_dim}), "
                f"got {tuple(context.shape)}"
            )
        if context.shape[0] != x.shape[0]:
            raise ValueError(
                f"context has batch size {context.shape[0]} but x has batch size {x.shape[0]}"
            )
        h = self.resblock(x, time_emb)  # (B, out_ch, H, W)
        if not self.use_attention:
            return h
        b, c, height, width = h.shape  # c == out_ch, not in_ch (the classic bug)
        tokens = h.flatten(2).transpose(1, 2)  # (B, H*W, out_ch)
        tokens = self.self_attn(tokens)
        tokens = self.cross_attn(tokens, context, key_padding_mask)
        tokens = self.ff(tokens)
        return tokens.transpose(1, 2).reshape(b, c, height, width)

    def extra_repr(self) -> str:
        return f"in_ch={self.in_ch}, out_ch={self.out_ch}, use_attention={self.use_attention}"


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
