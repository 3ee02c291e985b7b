"""The course's conditional U-Net, assembled from the blocks of notebooks 01, 03 and 04.

Introduced in notebook 04. It follows the denoiser protocol of
``docs/CONTRIBUTING.md``: ``model(x_t, t, context) -> prediction`` with the
prediction shaped like ``x_t``, and the attributes ``prediction_type`` and
``context_dim`` that the sampler reads.

Layout at the defaults (32×32 RGB, ``channel_mults=(1, 2, 2)``)::

    conv_in 3->32                                              32×32
    down 0: ConditionedResBlock 32->32   (no attention)  skip  32×32 -> Downsample
    down 1: ConditionedResBlock 32->64   (attention)     skip  16×16 -> Downsample
    down 2: ConditionedResBlock 64->64   (attention)     skip   8×8
    mid:    ConditionedResBlock 64->64   (attention)            8×8
    up 2:   ConditionedResBlock 64+64->64 (attention)           8×8  -> Upsample
    up 1:   ConditionedResBlock 64+64->64 (attention)          16×16 -> Upsample
    up 0:   ConditionedResBlock 64+32->32 (no attention)       32×32
    GroupNorm, SiLU, conv_out 32->3 (zero-initialised: the model predicts 0 at init)

The time embedding (sinusoidal + MLP) goes to every ResBlock by scale/shift (AdaGN,
the course's choice after ADM; Stable Diffusion's U-Net adds it as a per-channel bias
instead, see notebook 04); the text embeddings go to every attention-enabled block by
cross-attention.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import _checks
from .attention import CrossAttention, SelfAttention, _check_key_padding_mask
from .blocks import ConditionedResBlock, Downsample, FeedForward, ResBlock, Upsample
from .conditioning import TimestepMLP

__all__ = ["UNetConfig", "ConditionalUNet", "parameter_breakdown", "PREDICTION_TYPES"]

PREDICTION_TYPES = ("epsilon", "v_prediction")


@dataclass
class UNetConfig:
    """Hyper-parameters of :class:`ConditionalUNet` (saved as JSON beside the weights).

    Introduced in notebook 04. Names follow diffusers where an equivalent exists
    (``sample_size``, ``in_channels``, ``prediction_type``, ``norm_num_groups`` is
    ``norm_groups`` here).

    Attributes:
        in_channels, out_channels: image channels in and out (3 for RGB).
        sample_size: the training resolution (informational; any H, W divisible
            by ``2**(len(channel_mults) - 1)`` works).
        base_channels: channels of level 0; level ``i`` has ``base_channels * channel_mults[i]``.
        channel_mults: one multiplier per resolution level.
        num_res_blocks: ConditionedResBlocks per level on each path.
        attention_levels: one flag per level: use self/cross-attention there.
        mid_attention: attention in the middle block.
        context_dim: width of the text embeddings (the last dim of ``context``).
        num_heads: attention heads (must divide every level's channels).
        time_embed_dim: width of the time embedding given to the ResBlocks.
        dropout: dropout probability inside the blocks.
        prediction_type: ``"epsilon"`` or ``"v_prediction"``.
        norm_groups: GroupNorm groups (must divide every level's channels).
    """

    in_channels: int = 3
    out_channels: int = 3
    sample_size: int = 32
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attention_levels: tuple[bool, ...] = (False, True, True)
    mid_attention: bool = True
    context_dim: int = 128
    num_heads: int = 4
    time_embed_dim: int = 128
    dropout: float = 0.0
    prediction_type: str = "epsilon"
    norm_groups: int = 8

    def __post_init__(self) -> None:
        self.channel_mults = tuple(self.channel_mults)
        self.attention_levels = tuple(bool(a) for a in self.attention_levels)
        ints = ("in_channels", "out_channels", "sample_size", "base_channels", "num_res_blocks",
                "context_dim", "num_heads", "time_embed_dim", "norm_groups")
        mults = [(f"channel_mults[{i}]", m) for i, m in enumerate(self.channel_mults)]
        for name, value in [(n, getattr(self, n)) for n in ints] + mults:
            _checks.that(type(value) is int and value > 0, f"{name} must be a positive int, got {value!r}")
        _checks.that(len(self.channel_mults) > 0, "channel_mults must be a non-empty tuple of positive ints")
        _checks.that(len(self.attention_levels) == len(self.channel_mults), f"attention_levels needs one flag per level ({len(self.channel_mults)}), got {len(self.attention_levels)}")
        for ch in self.level_channels:
            _checks.that(ch % self.norm_groups == 0, f"norm_groups={self.norm_groups} must divide channels {ch}")
            _checks.that(ch % self.num_heads == 0, f"num_heads={self.num_heads} must divide channels {ch}")
        f = self.downsample_factor
        _checks.that(self.sample_size % f == 0, f"sample_size={self.sample_size} must be divisible by {f}")
        _checks.that(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        _checks.one_of("prediction_type", self.prediction_type, PREDICTION_TYPES)

    @property
    def level_channels(self) -> tuple[int, ...]:
        """Channels of each resolution level, ``base_channels * mult``."""
        return tuple(self.base_channels * m for m in self.channel_mults)

    @property
    def downsample_factor(self) -> int:
        """``2**(levels - 1)``: H and W must be divisible by this."""
        return 2 ** (len(self.channel_mults) - 1)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: Mapping) -> UNetConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        unknown = sorted(set(_checks.instance("d", d, Mapping, "a mapping")) - {f.name for f in fields(cls)})
        _checks.that(not unknown, f"unknown UNetConfig keys: {unknown}")
        return cls(**dict(d))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> UNetConfig:
        return cls.from_dict(json.loads(text))


class ConditionalUNet(nn.Module):
    """A text-conditioned U-Net predicting ε (or v) from ``(x_t, t, context)``.

    Introduced in notebook 04. See the module docstring for the layout.

    Attributes read by the sampler: ``prediction_type``, ``context_dim``; also
    ``config``, ``sample_size``, ``in_channels``.
    """

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        config = UNetConfig() if config is None else config
        self.config = _checks.instance("config", config, UNetConfig, "a UNetConfig")
        self.context_dim = config.context_dim
        self.prediction_type = config.prediction_type
        self.sample_size = config.sample_size
        self.in_channels = config.in_channels
        self.out_channels = config.out_channels

        chans = config.level_channels
        self.time_embed = TimestepMLP(config.base_channels, config.time_embed_dim)
        self.conv_in = nn.Conv2d(config.in_channels, chans[0], 3, padding=1)

        def block(cin: int, cout: int, attention: bool) -> ConditionedResBlock:
            return ConditionedResBlock(
                cin, cout, config.time_embed_dim, config.context_dim, config.num_heads,
                config.dropout, use_attention=attention, num_groups=config.norm_groups,
            )

        # Down path: each block's output is kept as a skip connection.
        self.down_blocks = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        skip_channels = []
        ch = chans[0]
        for level, (level_ch, attn) in enumerate(zip(chans, config.attention_levels, strict=True)):
            blocks = nn.ModuleList()
            for _ in range(config.num_res_blocks):
                blocks.append(block(ch, level_ch, attn))
                ch = level_ch
                skip_channels.append(ch)
            self.down_blocks.append(blocks)
            last = level == len(chans) - 1
            self.downsamplers.append(nn.Identity() if last else Downsample(ch))

        self.mid = block(ch, ch, config.mid_attention)

        # Up path (deepest level first): each block consumes one skip (concatenated).
        self.up_blocks = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        for level in reversed(range(len(chans))):
            blocks = nn.ModuleList()
            for _ in range(config.num_res_blocks):
                blocks.append(block(ch + skip_channels.pop(), chans[level],
                                    config.attention_levels[level]))
                ch = chans[level]
            self.up_blocks.append(blocks)
            self.upsamplers.append(Upsample(ch) if level > 0 else nn.Identity())

        self.norm_out = nn.GroupNorm(config.norm_groups, ch)
        self.conv_out = nn.Conv2d(ch, config.out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # predict 0 at init: a stable start
        nn.init.zeros_(self.conv_out.bias)

    # -- validation ----------------------------------------------------------
    def _prepare_inputs(self, x_t, t, context, key_padding_mask) -> torch.Tensor:
        """Check every input, once for all the blocks; return ``t`` as ``(B,)`` on ``x_t``'s device."""
        _checks.shape("x_t", x_t, (None, self.in_channels, None, None), f"(B, {self.in_channels}, H, W)")
        _checks.that(x_t.is_floating_point(), f"x_t must be a floating-point tensor, got dtype {x_t.dtype}", TypeError)
        f, batch = self.config.downsample_factor, x_t.shape[0]
        _checks.that(x_t.shape[2] % f == 0 and x_t.shape[3] % f == 0, f"x_t's height and width must be divisible by {f} (2**(levels-1)), got {tuple(x_t.shape[2:])}")
        if isinstance(t, (int, float)) and not isinstance(t, bool):
            t = torch.tensor(t, device=x_t.device)
        _checks.instance("t", t, torch.Tensor, "a tensor or a number")
        _checks.that(t.dtype != torch.bool and not t.is_complex(), f"t must be an integer or float tensor, got dtype {t.dtype}", TypeError)
        t = t.expand(batch) if t.ndim == 0 else t  # a scalar t: the same timestep for every sample
        _checks.that(t.shape == (batch,), f"t must have shape (B,) = ({batch},) or be a scalar, got {tuple(t.shape)}")
        _checks.shape("context", context, (batch, None, self.context_dim), "(B, N, context_dim)")
        if key_padding_mask is not None:
            _check_key_padding_mask(key_padding_mask, batch, context.shape[1])
        return t.to(x_t.device)

    # -- forward -------------------------------------------------------------
    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor | int | float,
        context: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict ε (or v) for the noisy images ``x_t`` at timesteps ``t`` given ``context``.

        Args:
            x_t: noisy images ``(B, in_channels, H, W)``, H and W divisible by
                ``2**(levels - 1)``.
            t: training timesteps ``(B,)`` (long or float), or a scalar (tensor or
                number) which is broadcast to every sample.
            context: text embeddings ``(B, N, context_dim)``.
            key_padding_mask: optional ``(B, N)`` bool, True = real token (keep).

        Returns:
            ``(B, out_channels, H, W)``; all zeros at initialisation (zero ``conv_out``).
        """
        t = self._prepare_inputs(x_t, t, context, key_padding_mask)
        temb = self.time_embed(t).to(x_t.dtype)  # (B, time_embed_dim)
        context = context.to(x_t.dtype)

        h = self.conv_in(x_t)
        skips = []
        for blocks, down in zip(self.down_blocks, self.downsamplers, strict=True):
            for blk in blocks:
                h = blk(h, temb, context, key_padding_mask, validate=False)  # checked above
                skips.append(h)
            h = down(h)

        h = self.mid(h, temb, context, key_padding_mask, validate=False)

        for blocks, up in zip(self.up_blocks, self.upsamplers, strict=True):
            for blk in blocks:
                h = blk(torch.cat([h, skips.pop()], dim=1), temb, context, key_padding_mask, validate=False)
            h = up(h)

        return self.conv_out(F.silu(self.norm_out(h)))


_CATEGORIES = (
    # (category, module classes) -- the most specific module owning a parameter decides.
    ("time embedding", (TimestepMLP,)),
    ("self-attention", (SelfAttention,)),
    ("cross-attention", (CrossAttention,)),
    ("feed-forward", (FeedForward,)),
    ("resblocks", (ResBlock,)),
    ("down/upsampling", (Downsample, Upsample)),
)


def _category_of(module: nn.Module) -> str | None:
    for name, classes in _CATEGORIES:
        if isinstance(module, classes):
            return name
    return None


def parameter_breakdown(model: nn.Module) -> dict[str, int]:
    """Count parameters by component, for the table in notebook 04.

    Keys: ``"time embedding"``, ``"conv in/out"`` (``conv_in``, ``norm_out``,
    ``conv_out``), ``"resblocks"``, ``"self-attention"``, ``"cross-attention"``,
    ``"feed-forward"``, ``"down/upsampling"`` and ``"other"`` (only if anything
    is left). The values sum to ``sum(p.numel() for p in model.parameters())``.
    """
    _checks.instance("model", model, nn.Module, "an nn.Module")
    owners = {name: _category_of(m) for name, m in model.named_modules()}
    counts = {name: 0 for name, _ in _CATEGORIES}
    counts = {"time embedding": 0, "conv in/out": 0, **counts}
    for pname, p in model.named_parameters():
        parts = pname.split(".")[:-1]
        category = None
        for i in range(len(parts), -1, -1):  # longest owning prefix first
            category = owners.get(".".join(parts[:i]))
            if category is not None:
                break
        if category is None:
            category = "conv in/out" if parts and parts[0] in (
                "conv_in", "conv_out", "norm_out") else "other"
        counts[category] = counts.get(category, 0) + p.numel()
    return counts
