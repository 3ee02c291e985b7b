"""Three ways to tell a network what to make: time embeddings, concatenation, AdaGN.

Introduced in notebook 01 (conditioning paradigms); reused by the blocks of
notebook 04.

- :class:`SinusoidalTimeEmbedding` turns a timestep ``t`` into a vector.
- :class:`TimestepMLP` is the sinusoidal embedding followed by a small MLP, the
  time embedding of the course's U-Net.
- :class:`ConcatConditioning` broadcasts a condition vector over the image and
  concatenates it with the channels (paradigm 1).
- :class:`AdaptiveGroupNorm` normalises, then scales and shifts the features with
  values predicted from the condition vector (paradigm 2, "AdaGN" / FiLM).

The third paradigm, cross-attention, lives in :mod:`tutorial_lib.attention`.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from . import _checks

__all__ = [
    "timestep_embedding",
    "SinusoidalTimeEmbedding",
    "TimestepMLP",
    "ConcatConditioning",
    "AdaptiveGroupNorm",
]


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of timesteps, ``(B,) -> (B, dim)``.

    With h = ⌊ dim/2 ⌋ frequencies
    ω_i = max_period^(-i/h) for i = 0..h-1:

        e(t) = [cos(ω_0 t), …, cos(ω_{h−1} t), sin(ω_0 t), …, sin(ω_{h−1} t)]

    (cosines first; an odd ``dim`` gets one trailing zero). This is exactly
    ``diffusers.models.embeddings.get_timestep_embedding(t, dim,
    flip_sin_to_cos=True, downscale_freq_shift=0)``, the convention of Stable
    Diffusion's U-Net.

    Args:
        t: timesteps of shape ``(B,)``, integer or float.
        dim: embedding width, a positive int (``SinusoidalTimeEmbedding`` checks it once,
            not on every forward).
        max_period: the longest period; controls the lowest frequency.

    Returns:
        A float32 tensor of shape ``(B, dim)`` on ``t``'s device.
    """
    _checks.shape("t", t, (None,), "(B,)")
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(exponent / half)  # (half,)
    angles = t.float()[:, None] * freqs[None, :]  # (B, half)
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    if dim % 2 == 1:
        emb = nn.functional.pad(emb, (0, 1))
    return emb


class SinusoidalTimeEmbedding(nn.Module):
    """The fixed (parameter-free) sinusoidal embedding of a timestep.

    Introduced in notebook 01. ``forward(t)`` maps ``t`` of shape ``(B,)`` to
    ``(B, dim)``; see :func:`timestep_embedding` for the formula and the
    diffusers convention it matches.
    """

    def __init__(self, dim: int, max_period: float = 10000.0):
        super().__init__()
        self.dim = _checks.positive("dim", dim)
        self.max_period = _checks.real("max_period", max_period, low=1.0, open_low=True)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return timestep_embedding(t, self.dim, self.max_period)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, max_period={self.max_period:g}"


class TimestepMLP(nn.Module):
    """Sinusoidal embedding followed by a two-layer MLP: ``(B,) -> (B, out_dim)``.

        τ(t) = W_2 SiLU(W_1 e(t) + b_1) + b_2

    Introduced in notebook 01; this is the time embedding of the U-Net in
    notebook 04 (diffusers calls the same pair ``Timesteps`` + ``TimestepEmbedding``).

    Args:
        freq_dim: width of the sinusoidal embedding e(t).
        out_dim: width of the output (``time_dim`` of the ResBlocks).
    """

    def __init__(self, freq_dim: int, out_dim: int, max_period: float = 10000.0):
        super().__init__()
        self.sinusoidal = SinusoidalTimeEmbedding(freq_dim, max_period)
        out_dim = _checks.positive("out_dim", out_dim)
        self.mlp = nn.Sequential(
            nn.Linear(freq_dim, out_dim),
            nn.SiLU(),
            nn.Linear(out_dim, out_dim),
        )
        self.out_dim = out_dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        emb = self.sinusoidal(t)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


class ConcatConditioning(nn.Module):
    """Paradigm 1: broadcast a condition vector over space and concatenate it.

    ``forward(x, cond)`` with ``x`` of shape ``(B, C, H, W)`` and ``cond`` of
    shape ``(B, cond_dim)`` returns ``(B, C + cond_dim, H, W)``: every pixel
    receives a copy of the condition as extra input channels. Cheap and simple,
    but the condition is a single vector for the whole image, so it cannot say
    *where* things go or bind words to regions (that is what cross-attention adds).

    Introduced in notebook 01. The module has no parameters; the network that
    follows must accept ``C + cond_dim`` input channels (see :meth:`out_channels`).
    """

    def __init__(self, cond_dim: int):
        super().__init__()
        self.cond_dim = _checks.positive("cond_dim", cond_dim)

    def out_channels(self, in_channels: int) -> int:
        """The channel count after concatenation: ``in_channels + cond_dim``."""
        return in_channels + self.cond_dim

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        _checks.shape("x", x, (None,) * 4, "(B, C, H, W)")
        _checks.shape("cond", cond, (x.shape[0], self.cond_dim), "(B, cond_dim)")
        b, _, h, w = x.shape
        cond_map = cond[:, :, None, None].expand(b, self.cond_dim, h, w)  # (B, D, H, W)
        return torch.cat([x, cond_map.to(x.dtype)], dim=1)

    def extra_repr(self) -> str:
        return f"cond_dim={self.cond_dim}"


class AdaptiveGroupNorm(nn.Module):
    """Paradigm 2: adaptive group normalisation (AdaGN, a FiLM layer).

        AdaGN(h, c) = (1 + s(c)) ⊙ GroupNorm(h) + b(c),   [s(c), b(c)] = W c + w_0

    ``GroupNorm`` has no affine parameters of its own: the per-channel scale
    1 + s and shift b come from the condition. The projection
    W, w_0 is zero-initialised, so at initialisation the layer is a plain
    GroupNorm and the condition has no effect until training moves it.

    Introduced in notebook 01; the course's ResBlocks (notebook 04) inject the
    timestep this way, as ADM (Dhariwal & Nichol 2021) and Imagen do. Stable
    Diffusion 1.x/2.x/SDXL do not: their ResBlocks *add* a projection of the time
    embedding as a per-channel bias before the second GroupNorm (diffusers'
    ``ResnetBlock2D`` with ``time_embedding_norm="default"``), i.e. ``GN(h + W tau)``.

    Args:
        num_channels: ``C``, the channel count of ``h``.
        cond_dim: ``D``, the width of the condition vector ``c``.
        num_groups: GroupNorm groups; must divide ``num_channels``.
        eps: GroupNorm's epsilon.

    Shapes: ``h`` is ``(B, C, H, W)`` (any number of trailing spatial dims),
    ``cond`` is ``(B, D)``; the output has ``h``'s shape.
    """

    def __init__(self, num_channels: int, cond_dim: int, num_groups: int = 8, eps: float = 1e-5):
        super().__init__()
        num_channels, cond_dim = _checks.positive("num_channels", num_channels), _checks.positive("cond_dim", cond_dim)
        _checks.that(num_channels % _checks.positive("num_groups", num_groups) == 0, f"num_groups={num_groups} must divide num_channels={num_channels}")
        self.num_channels, self.cond_dim = num_channels, cond_dim
        self.norm = nn.GroupNorm(num_groups, num_channels, eps=eps, affine=False)
        self.proj = nn.Linear(cond_dim, 2 * num_channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def scale_shift(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-channel ``(scale, shift)``, each ``(B, C)``, predicted from ``cond``."""
        scale, shift = self.proj(cond).chunk(2, dim=-1)
        return scale, shift

    def forward(self, h: torch.Tensor, cond: torch.Tensor, validate: bool = True) -> torch.Tensor:
        if validate:  # a ResBlock passes False: its ConditionedResBlock has checked the inputs
            _checks.that(_checks.tensor("h", h).ndim >= 3 and h.shape[1] == self.num_channels,
                         f"h must have shape (B, num_channels={self.num_channels}, H, W), got {tuple(h.shape)}")
            _checks.shape("cond", cond, (h.shape[0], self.cond_dim), "(B, cond_dim)")
        scale, shift = self.scale_shift(cond)
        extra = (1,) * (h.ndim - 2)  # broadcast (B, C) over the spatial dims
        scale = scale.reshape(*scale.shape, *extra)
        shift = shift.reshape(*shift.shape, *extra)
        return self.norm(h) * (1 + scale) + shift

    def extra_repr(self) -> str:
        return f"num_channels={self.num_channels}, cond_dim={self.cond_dim}"
