"""Text-encoder configurations: tiny ones to run, real ones to count.

Introduced in notebook 02. The three real text encoders of the course's tables (CLIP
ViT-L/14, OpenCLIP ViT-bigG/14, T5 v1.1 XXL) are written **once**, as data
(``_REAL_ENCODERS``: the values of their hub ``config.json`` files), and turned into
``transformers`` config objects by one function. Built on PyTorch's ``meta`` device they
have real shapes and no memory, so their parameters are counted exactly, in milliseconds,
without a download.

Facts the course teaches from this module:

* CLIP ViT-L/14's text width is 768 at every layer (512 is ViT-B's); bigG/14's is 1280,
  and SDXL's context is the two side by side: 768 + 1280 = 2048.
* The "encoder sizes" that matter for diffusion are the text towers only (123 M, 695 M,
  4.76 B parameters), not the whole CLIP model or the whole encoder-decoder T5.

``transformers`` is imported on first use (``_transformers``), not with this module: its
modeling code costs ~2 s to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import nn

from . import _checks
from .tokenizer import BOS_TOKEN_ID, CLIP_MAX_LENGTH, CLIP_VOCAB_SIZE, EOS_TOKEN_ID

if TYPE_CHECKING:
    from transformers import CLIPTextConfig, T5Config

__all__ = [
    "tiny_clip_text_config",
    "tiny_t5_encoder_config",
    "clip_vit_l14_text_config",
    "openclip_bigg14_text_config",
    "t5_v1_1_xxl_encoder_config",
    "build_on_meta",
    "count_parameters",
    "real_encoder_sizes",
    "sdxl_context_widths",
]


def _transformers(name: str):
    """``transformers.<name>``, importing ``transformers`` (and that class's module) only now."""
    import transformers

    return getattr(transformers, name)


# The values every CLIP text tower of the course shares (the real ones, and the tiny ones).
_CLIP_TEXT = dict(vocab_size=CLIP_VOCAB_SIZE, max_position_embeddings=CLIP_MAX_LENGTH, layer_norm_eps=1e-5,
                  pad_token_id=1)
# The legacy special ids of the hub configs of SD 1.x / SDXL (transformers then pools at argmax of the ids).
_CLIP_LEGACY_IDS = dict(bos_token_id=0, eos_token_id=2)
# T5 v1.1 (not T5 1.0): gated-GELU feed-forward, untied input/output embeddings.
_T5_V1_1 = dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False, pad_token_id=0, eos_token_id=1)


class _RealEncoder(NamedTuple):
    """One real text encoder: its config's values and what the course's tables say about it."""

    name: str  # as the course's tables print it
    model_class: str  # the transformers class of the text tower
    max_tokens: int | None  # None: relative position biases, no hard limit
    tokenizer: str
    used_by: str
    config_class: str
    config: dict  # the values of the hub config.json


#: The real text encoders, each written once. ``config``: the values of the hub
#: ``config.json`` (``openai/clip-vit-large-patch14``'s ``text_config`` = SD 1.5's
#: ``text_encoder/``; SDXL base's ``text_encoder_2/``; ``google/t5-v1_1-xxl``).
_REAL_ENCODERS = {
    "clip_vit_l14": _RealEncoder(
        "CLIP ViT-L/14 text", "CLIPTextModel", 77, "CLIP byte-level BPE, 49408 ids",
        "SD 1.x text_encoder; SDXL text_encoder", "CLIPTextConfig",
        dict(**_CLIP_TEXT, **_CLIP_LEGACY_IDS, hidden_size=768, intermediate_size=3072, projection_dim=768,
             num_hidden_layers=12, num_attention_heads=12, hidden_act="quick_gelu")),
    "openclip_bigg14": _RealEncoder(
        "OpenCLIP ViT-bigG/14 text + projection", "CLIPTextModelWithProjection", 77,
        "CLIP byte-level BPE, 49408 ids (pads with 0)", "SDXL text_encoder_2", "CLIPTextConfig",
        dict(**_CLIP_TEXT, **_CLIP_LEGACY_IDS, hidden_size=1280, intermediate_size=5120, projection_dim=1280,
             num_hidden_layers=32, num_attention_heads=20, hidden_act="gelu")),
    "t5_v1_1_xxl": _RealEncoder(
        "T5-XXL v1.1 encoder", "T5EncoderModel", None,
        "SentencePiece unigram, 32000 pieces + 100 sentinels (32128 rows)", "DeepFloyd IF, SD3, FLUX", "T5Config",
        dict(**_T5_V1_1, vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_decoder_layers=24,
             num_heads=64, relative_attention_num_buckets=32, relative_attention_max_distance=128,
             layer_norm_epsilon=1e-6, dropout_rate=0.1, decoder_start_token_id=0)),
}


def _real_config(key: str):
    """The ``transformers`` config object of ``_REAL_ENCODERS[key]``."""
    spec = _REAL_ENCODERS[key]
    return _transformers(spec.config_class)(**spec.config)


# --------------------------------------------------------------------------------------
# Tiny configurations: real token semantics, small widths, to run
# --------------------------------------------------------------------------------------


def tiny_clip_text_config(
    *,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    intermediate_size: int | None = None,
    projection_dim: int | None = None,
    hidden_act: str = "quick_gelu",
    eos_token_id: int = EOS_TOKEN_ID,
) -> CLIPTextConfig:
    """A small ``CLIPTextConfig`` with the real vocabulary (49408) and context (77).

    Introduced in notebook 02. A model built from it is randomly initialised: it has the
    real shapes and the real token/padding/EOS semantics, but its outputs mean nothing.

    Args:
        hidden_size: width ``D`` of every token feature (768 in ViT-L/14), divisible by
            ``num_attention_heads``.
        num_hidden_layers, num_attention_heads: depth and heads (12 and 12 in ViT-L/14).
        intermediate_size: MLP width, default ``4 * hidden_size``.
        projection_dim: width of ``text_embeds`` for ``CLIPTextModelWithProjection``,
            default ``hidden_size``.
        hidden_act: ``"quick_gelu"`` (OpenAI CLIP) or ``"gelu"`` (OpenCLIP bigG).
        eos_token_id: 49407 (current transformers convention: pool at the first 49407).
            2 reproduces the legacy configs of SD 1.x/SDXL, where transformers pools at
            ``input_ids.argmax(-1)`` instead; both give the same position with this
            tokenizer because 49407 is the largest id.
    """
    sizes = dict(hidden_size=hidden_size, num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads)
    for name, value in sizes.items():
        _checks.integer(name, value, low=1)
    _checks.that(hidden_size % num_attention_heads == 0, f"hidden_size ({hidden_size}) must be divisible by num_attention_heads ({num_attention_heads})")
    return _transformers("CLIPTextConfig")(
        **_CLIP_TEXT, **sizes, intermediate_size=intermediate_size or 4 * hidden_size,
        projection_dim=projection_dim or hidden_size, hidden_act=hidden_act, bos_token_id=BOS_TOKEN_ID,
        eos_token_id=eos_token_id,
    )


def tiny_t5_encoder_config(
    *,
    d_model: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    d_kv: int = 8,
    d_ff: int = 64,
    vocab_size: int = 384,
) -> T5Config:
    """A small T5 v1.1-style encoder config (gated-GELU, untied) for the ByT5 tokenizer.

    Introduced in notebook 02. ``vocab_size=384`` matches ``load_byt5_tokenizer()``; every
    size is a positive int.
    """
    sizes = dict(d_model=d_model, num_layers=num_layers, num_heads=num_heads, d_kv=d_kv, d_ff=d_ff,
                 vocab_size=vocab_size)
    for name, value in sizes.items():
        _checks.integer(name, value, low=1)
    return _transformers("T5Config")(
        **_T5_V1_1, **sizes, is_encoder_decoder=False, use_cache=False, dropout_rate=0.0
    )


# --------------------------------------------------------------------------------------
# The real configurations: to count, on the meta device
# --------------------------------------------------------------------------------------


def clip_vit_l14_text_config() -> CLIPTextConfig:
    """The text tower of OpenAI CLIP ViT-L/14: SD 1.x's ``text_encoder`` (and SDXL's first).

    Introduced in notebook 02. Width 768 at every layer, 12 layers of 12 heads, quick-GELU,
    legacy ``eos_token_id=2`` (pooling by ``argmax`` of the ids); all values in
    ``_REAL_ENCODERS["clip_vit_l14"]``.
    """
    return _real_config("clip_vit_l14")


def openclip_bigg14_text_config() -> CLIPTextConfig:
    """The text tower of OpenCLIP ViT-bigG/14: SDXL's ``text_encoder_2`` (with projection).

    Introduced in notebook 02. Width 1280, 32 layers of 20 heads, projection 1280 (no bias),
    exact GELU; all values in ``_REAL_ENCODERS["openclip_bigg14"]``.
    """
    return _real_config("openclip_bigg14")


def t5_v1_1_xxl_encoder_config() -> T5Config:
    """T5 v1.1 XXL (``google/t5-v1_1-xxl``), whose encoder is FLUX's/SD3's/DeepFloyd IF's text encoder.

    Introduced in notebook 02. ``d_model`` 4096, gated-GELU feed-forward of 10240, 24 layers
    of 64 heads, 32128 ids, 32 relative-position buckets, untied embeddings; all values in
    ``_REAL_ENCODERS["t5_v1_1_xxl"]``.
    """
    return _real_config("t5_v1_1_xxl")


def build_on_meta(config, model_class: type[nn.Module]) -> nn.Module:
    """Instantiate ``model_class(config)`` on PyTorch's ``meta`` device: shapes, no memory.

    Introduced in notebook 02. Lets the course count the parameters of multi-billion
    parameter encoders in milliseconds, without downloading or allocating anything.
    """
    with torch.device("meta"):
        return model_class(config)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (each shared tensor counted once). Introduced in notebook 02."""
    return sum(p.numel() for p in model.parameters())


def _widths(config, model_class: str) -> tuple[int, int | None, int, int]:
    """``(hidden width D, pooled width or None, layers, heads)`` of a CLIP or T5 config."""
    if config.model_type == "t5":  # T5 has no pooled vector
        return config.d_model, None, config.num_layers, config.num_heads
    pooled = config.projection_dim if model_class == "CLIPTextModelWithProjection" else config.hidden_size
    return config.hidden_size, pooled, config.num_hidden_layers, config.num_attention_heads


def real_encoder_sizes() -> list[dict]:
    """Exact sizes of three real text encoders, counted from their configs on the meta device.

    Introduced in notebook 02. No download: the architectures are built with
    ``build_on_meta`` from ``clip_vit_l14_text_config()``, ``openclip_bigg14_text_config()``
    and ``t5_v1_1_xxl_encoder_config()``. These are the text towers only (tables of "encoder sizes"
    often give the whole CLIP model or the whole encoder-decoder T5 instead).

    Returns:
        One dict per encoder with keys ``name``, ``model_class``, ``params`` (int),
        ``hidden_width`` (width ``D`` of the token features), ``pooled_width`` (width of
        the pooled/projected vector, ``None`` for T5 which has none), ``layers``,
        ``heads``, ``max_tokens`` (``None``: no hard limit), ``tokenizer``, ``used_by``.
    """
    rows = []
    for key, spec in _REAL_ENCODERS.items():
        config, cls = _real_config(key), _transformers(spec.model_class)
        width, pooled, layers, heads = _widths(config, spec.model_class)
        rows.append({
            "name": spec.name, "model_class": cls.__name__, "params": count_parameters(build_on_meta(config, cls)),
            "hidden_width": width, "pooled_width": pooled, "layers": layers, "heads": heads,
            "max_tokens": spec.max_tokens, "tokenizer": spec.tokenizer, "used_by": spec.used_by,
        })
    return rows


def sdxl_context_widths() -> dict[str, int]:
    """SDXL's conditioning widths, read from the real configs of its two text encoders.

    Introduced in notebook 02. ``context_dim`` = 768 (ViT-L/14) + 1280 (bigG/14) = 2048
    is the last dimension of the cross-attention context ``(B, 77, 2048)``;
    ``pooled_dim`` = 1280 is the projected pooled vector of the second encoder.
    """
    first, second = clip_vit_l14_text_config(), openclip_bigg14_text_config()
    return {
        "first_width": first.hidden_size,
        "second_width": second.hidden_size,
        "context_dim": first.hidden_size + second.hidden_size,
        "pooled_dim": second.projection_dim,
    }
