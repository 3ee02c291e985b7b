"""Text encoders for conditional diffusion: from a prompt string to the ``(B, 77, D)`` context.

Introduced in notebook 02. Everything here uses the real ``transformers`` classes
(``CLIPTokenizer``, ``CLIPTextModel``, ``CLIPTextModelWithProjection``,
``T5EncoderModel``), never random tensors standing in for a model's output. The functions
also accept the course's :class:`~tutorial_lib.clip_text.CLIPTextEncoder` (the shipped
encoder of ``load_pretrained()``, proven equal to ``CLIPTextModel`` by tests).

``transformers`` is imported inside the functions that need it, not with this module:
importing its modeling code costs ~2 s, and ``import tutorial_lib.text`` should not. The
``transformers`` names this module used to import at the top (``CLIPTextModel``,
``CLIPTextConfig``, ``CLIPTokenizer``, ``T5EncoderModel``, ...) are still its attributes,
imported on first access.

The pipeline of a Stable-Diffusion-style model, and where each step lives here::

    "a cat"  --tokenizer-->  input_ids (B, 77)        load_clip_tokenizer, tokenize_prompts
             --encoder---->  hidden states (B, 77, D)  load_text_encoder, clip_hidden_states
             --pooling---->  pooled (B, D) at EOS      eos_positions, clip_pooled_output
             --both------->  (prompt_embeds, negative_prompt_embeds)   encode_prompt
                             SDXL: (B, 77, 768 + 1280) + pooled (B, 1280)  encode_prompt_dual

Facts the course teaches from this module (each one often stated wrongly):

* The CLIP tokenizer is a byte-level BPE with 49408 ids; ``"a cat"`` is
  ``[49406, 320, 2368, 49407]`` (start, "a", "cat", end), padded to 77. SD 1.x's
  tokenizer pads with the end token 49407; OpenCLIP's ``tokenize`` pads with 0.
* CLIP ViT-L/14's text width is 768 at every layer (512 is ViT-B's).
* Padding positions of the output are **not** zeros: the text transformer uses a
  causal mask, so position ``i`` mixes the tokens ``0..i``; every pad position
  has seen the whole prompt and they differ from each other (position
  embeddings). Stable Diffusion's cross-attention attends to all 77 positions
  with no mask, so the pads are part of the condition.
* The pooled vector is the hidden state at the first EOS position after the
  final layer norm (``pooler_output``); SDXL projects it (``text_embeds``). It
  is **not** token 0: with a causal mask token 0 sees only the start token, so
  its features are identical for every prompt.
* The unconditional input of SD 1.x/2.x is the encoding of the empty prompt
  ``""``, not zeros (SDXL's pipeline zeroes it only under
  ``force_zeros_for_empty_prompt`` when no negative prompt is given).
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import torch
from torch import nn

from .clip_text import CLIPTextEncoder

if TYPE_CHECKING:
    from transformers import ByT5Tokenizer, CLIPTextConfig, CLIPTokenizer, T5Config

__all__ = [
    "CLIP_TOKENIZER_DIR",
    "CLIP_MAX_LENGTH",
    "CLIP_VOCAB_SIZE",
    "BOS_TOKEN_ID",
    "EOS_TOKEN_ID",
    "PAD_CONVENTIONS",
    "EncoderNotAvailableError",
    "DualPromptEmbeds",
    "load_clip_tokenizer",
    "load_byt5_tokenizer",
    "tokenize_prompts",
    "tiny_clip_text_config",
    "tiny_t5_encoder_config",
    "clip_vit_l14_text_config",
    "openclip_bigg14_text_config",
    "t5_v1_1_xxl_encoder_config",
    "build_on_meta",
    "count_parameters",
    "real_encoder_sizes",
    "sdxl_context_widths",
    "load_text_encoder",
    "describe",
    "eos_positions",
    "clip_pooled_output",
    "clip_hidden_states",
    "encode_prompt",
    "encode_prompt_dual",
]

#: ``transformers`` names still reachable as ``tutorial_lib.text.<name>`` (imported lazily).
_LAZY_TRANSFORMERS = (
    "AutoConfig", "ByT5Tokenizer", "CLIPTextConfig", "CLIPTextModel", "CLIPTextModelWithProjection",
    "CLIPTokenizer", "T5Config", "T5EncoderModel",
)
_CLIP_MODULE = "transformers.models.clip.modeling_clip"
_T5_MODULE = "transformers.models.t5.modeling_t5"


def _transformers(name: str):
    """``transformers.<name>``, importing ``transformers`` (and that class's module) only now."""
    import transformers

    return getattr(transformers, name)


def __getattr__(name: str):
    # PEP 562: `from tutorial_lib.text import CLIPTextModel` keeps working, without making
    # `import tutorial_lib.text` pay for transformers' modeling code.
    if name in _LAZY_TRANSFORMERS:
        return _transformers(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _instance_of(obj, module: str, *names: str) -> bool:
    """``isinstance(obj, module.<names>)`` without importing ``module``: an object of a class
    from a module that is not imported yet cannot exist."""
    mod = sys.modules.get(module)
    return mod is not None and isinstance(obj, tuple(getattr(mod, n) for n in names))


def _is_t5(model) -> bool:
    return _instance_of(model, _T5_MODULE, "T5EncoderModel")


def _is_clip_projection(model) -> bool:
    return _instance_of(model, _CLIP_MODULE, "CLIPTextModelWithProjection")


# --------------------------------------------------------------------------------------
# The tokenizer
# --------------------------------------------------------------------------------------

# Why the vocabulary is vendored (converted once, committed) rather than read from an
# installed open-clip-torch wheel at run time: installing open-clip-torch pulls in
# torchvision, which on the course machines breaks beside the CPU torch and then breaks
# `from transformers import CLIPTextModel` too; reading the wheel would also need a
# download or a pip cache on every fresh machine. The converted files are 1.5 MB, MIT
# licensed (notice in the folder), reproducible with scripts/build_clip_vocab.py, and
# make `CLIPTokenizer.from_pretrained(folder)` work exactly as with a hub checkpoint.
CLIP_TOKENIZER_DIR = Path(__file__).resolve().parent / "assets" / "clip_tokenizer"

CLIP_MAX_LENGTH = 77  #: CLIP's context length (learned position embeddings for 77 slots)
CLIP_VOCAB_SIZE = 49408  #: 256 bytes + 256 bytes-with-</w> + 48894 merges + 2 specials
BOS_TOKEN_ID = 49406  #: ``<|startoftext|>``
EOS_TOKEN_ID = 49407  #: ``<|endoftext|>`` (also SD 1.x's pad and unk token)

#: The padding conventions one meets with the same vocabulary.
PAD_CONVENTIONS = {
    "sd1": "pad with <|endoftext|> = 49407: openai/clip-vit-large-patch14, SD 1.x "
    "`tokenizer/`, SDXL `tokenizer/`",
    "openclip": "pad with id 0 (the token '!'), as open_clip.tokenize does; a '!' in "
    "the prompt keeps its ordinary ids (256 for a word-final '!')",
    "sdxl_tokenizer_2": "pad with '!' registered as a special token, exactly as the hub "
    "files of SD 2.x `tokenizer/` and SDXL `tokenizer_2/`: pads are 0, and a '!' in the "
    "prompt also becomes 0 (diffusers issue #4153)",
}


def load_clip_tokenizer(
    convention: str = "sd1", *, model_max_length: int = CLIP_MAX_LENGTH
) -> CLIPTokenizer:
    """Load the real CLIP tokenizer (the ids of ``openai/clip-vit-large-patch14``) offline.

    Introduced in notebook 02. The vocabulary ships in ``tutorial_lib/assets/clip_tokenizer``
    (converted from OpenAI's ``bpe_simple_vocab_16e6.txt.gz`` by
    ``scripts/build_clip_vocab.py``); no model hub, no download, no ``open_clip``.

    The returned tokenizer adds ``<|startoftext|>`` (49406) and ``<|endoftext|>`` (49407)
    and, called with ``padding="max_length", truncation=True``, returns 77 ids where a
    too-long prompt is cut so that the last id is still the end token.

    Note on ``ftfy``: ``transformers``' ``CLIPTokenizer`` (tokenizers-backed) normalises
    with NFC + whitespace collapsing + lower-casing and never uses ``ftfy``. Its ids equal
    OpenAI's ``SimpleTokenizer`` on ordinary text (checked on thousands of prompts); they
    differ only where ``ftfy``/``html.unescape`` would rewrite the text first (HTML
    entities such as ``&amp;``, typographic quotes, ligatures, mojibake). This is the
    tokenizer diffusers feeds Stable Diffusion with.

    Args:
        convention: one of ``PAD_CONVENTIONS``: ``"sd1"`` (pad 49407, the default),
            ``"openclip"`` (pad 0 like ``open_clip.tokenize``) or ``"sdxl_tokenizer_2"``
            (pad ``"!"`` as a special token, as the SDXL hub files do).
        model_max_length: the padded length, 77 for every CLIP model.

    Returns:
        A ``transformers.CLIPTokenizer`` with ``model_max_length`` set.
    """
    if convention not in PAD_CONVENTIONS:
        raise ValueError(f"convention must be one of {sorted(PAD_CONVENTIONS)}, got {convention!r}")
    if isinstance(model_max_length, bool) or not isinstance(model_max_length, int):
        raise TypeError(f"model_max_length must be an int, got {type(model_max_length).__name__}")
    if model_max_length < 2:
        raise ValueError(f"model_max_length must be >= 2 (start + end), got {model_max_length}")
    kwargs = {"model_max_length": model_max_length}
    if convention == "sdxl_tokenizer_2":
        # Passing pad_token at load time registers "!" as an added special token, which is
        # what `tokenizer_2/tokenizer_config.json` of SDXL declares.
        kwargs["pad_token"] = "!"
    tok = _transformers("CLIPTokenizer").from_pretrained(str(CLIP_TOKENIZER_DIR), local_files_only=True, **kwargs)
    if convention == "openclip":
        # Setting the attribute after loading only changes the pad id (0); "!" stays an
        # ordinary BPE symbol, so prompt ids equal open_clip's.
        tok.pad_token = "!"
    return tok


def load_byt5_tokenizer(*, model_max_length: int = 128) -> ByT5Tokenizer:
    """An offline tokenizer for the T5 fallback encoder: ByT5's byte-level tokenizer.

    Introduced in notebook 02. ByT5 needs no vocabulary file: ids are the UTF-8 bytes + 3
    (``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2), 384 ids in all with 125 sentinels.

    Real T5 (v1.1, whose XXL encoder conditions DeepFloyd IF, SD3 and FLUX)
    uses a **SentencePiece unigram** vocabulary of 32000 pieces plus 100 sentinel
    ``<extra_id_*>`` tokens (its embedding has 32128 rows, padded to a multiple of 128).
    T5 has no 77-token limit: it uses relative position biases, was trained on 512-token
    inputs, and pipelines pick a length (e.g. 256 or 512). ``model_max_length`` here is
    only the length ``encode_prompt`` pads to.

    Returns:
        A ``transformers.ByT5Tokenizer`` (pads with 0, appends ``</s>`` = 1).
    """
    if isinstance(model_max_length, bool) or not isinstance(model_max_length, int):
        raise TypeError(f"model_max_length must be an int, got {type(model_max_length).__name__}")
    if model_max_length < 2:
        raise ValueError(f"model_max_length must be >= 2, got {model_max_length}")
    return _transformers("ByT5Tokenizer")(model_max_length=model_max_length)


def _as_prompt_list(prompts, name: str) -> list[str]:
    if isinstance(prompts, str):
        return [prompts]
    if not isinstance(prompts, Sequence) or isinstance(prompts, bytes):
        raise TypeError(f"{name} must be a str or a list of str, got {type(prompts).__name__}")
    prompts = list(prompts)
    if not prompts:
        raise ValueError(f"{name} must not be empty")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type(p).__name__}")
    return prompts


def _max_length(tokenizer, max_length: int | None) -> int:
    if max_length is None:
        max_length = getattr(tokenizer, "model_max_length", None)
        if not isinstance(max_length, int) or max_length > 100_000:
            raise ValueError(
                "max_length is required: the tokenizer declares no usable model_max_length "
                f"(got {max_length!r})"
            )
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"max_length must be an int >= 2, got {max_length!r}")
    return max_length


def tokenize_prompts(
    tokenizer, prompts: str | Sequence[str], *, max_length: int | None = None
) -> torch.Tensor:
    """Tokenise prompts the way Stable Diffusion pipelines do: pad to the max length, truncate.

    Introduced in notebook 02.

    Args:
        tokenizer: a ``transformers`` tokenizer (e.g. from ``load_clip_tokenizer``).
        prompts: one prompt or a list of ``B`` prompts.
        max_length: padded length; defaults to ``tokenizer.model_max_length`` (77 for CLIP).

    Returns:
        ``input_ids`` of shape ``(B, max_length)``, dtype ``long``. A truncated prompt
        keeps its end token as the last id.
    """
    prompts = _as_prompt_list(prompts, "prompts")
    length = _max_length(tokenizer, max_length)
    return tokenizer(
        prompts, padding="max_length", max_length=length, truncation=True, return_tensors="pt"
    ).input_ids


# --------------------------------------------------------------------------------------
# Configurations: tiny ones to run, real ones to count
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
        hidden_size: width ``D`` of every token feature (768 in ViT-L/14).
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
    for name, value in (
        ("hidden_size", hidden_size),
        ("num_hidden_layers", num_hidden_layers),
        ("num_attention_heads", num_attention_heads),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if hidden_size % num_attention_heads:
        raise ValueError(
            f"hidden_size ({hidden_size}) must be divisible by num_attention_heads ({num_attention_heads})"
        )
    return _transformers("CLIPTextConfig")(
        vocab_size=CLIP_VOCAB_SIZE,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 4 * hidden_size,
        projection_dim=projection_dim or hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        max_position_embeddings=CLIP_MAX_LENGTH,
        hidden_act=hidden_act,
        layer_norm_eps=1e-5,
        bos_token_id=BOS_TOKEN_ID,
        eos_token_id=eos_token_id,
        pad_token_id=1,
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

    Introduced in notebook 02. ``vocab_size=384`` matches ``load_byt5_tokenizer()``.
    """
    for name, value in (
        ("d_model", d_model),
        ("num_layers", num_layers),
        ("num_heads", num_heads),
        ("d_kv", d_kv),
        ("d_ff", d_ff),
        ("vocab_size", vocab_size),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    return _transformers("T5Config")(
        vocab_size=vocab_size,
        d_model=d_model,
        d_kv=d_kv,
        d_ff=d_ff,
        num_layers=num_layers,
        num_heads=num_heads,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        is_encoder_decoder=False,
        use_cache=False,
        dropout_rate=0.0,
        pad_token_id=0,
        eos_token_id=1,
    )


def clip_vit_l14_text_config() -> CLIPTextConfig:
    """The text tower of OpenAI CLIP ViT-L/14: SD 1.x's ``text_encoder`` (and SDXL's first).

    Values of ``openai/clip-vit-large-patch14`` (``text_config``) and of
    ``stable-diffusion-v1-5/text_encoder/config.json``: width 768 at every layer, 12
    layers, 12 heads, MLP 3072, 49408 ids, 77 positions, quick-GELU, legacy
    ``eos_token_id=2`` (pooling by ``argmax`` of the ids). Introduced in notebook 02.
    """
    return _transformers("CLIPTextConfig")(
        vocab_size=49408,
        hidden_size=768,
        intermediate_size=3072,
        projection_dim=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        bos_token_id=0,
        eos_token_id=2,
        pad_token_id=1,
    )


def openclip_bigg14_text_config() -> CLIPTextConfig:
    """The text tower of OpenCLIP ViT-bigG/14: SDXL's ``text_encoder_2`` (with projection).

    Values of ``stable-diffusion-xl-base-1.0/text_encoder_2/config.json``
    (``CLIPTextModelWithProjection``): width 1280, 32 layers, 20 heads, MLP 5120,
    projection 1280 (no bias), GELU, 49408 ids, 77 positions. Introduced in notebook 02.
    """
    return _transformers("CLIPTextConfig")(
        vocab_size=49408,
        hidden_size=1280,
        intermediate_size=5120,
        projection_dim=1280,
        num_hidden_layers=32,
        num_attention_heads=20,
        max_position_embeddings=77,
        hidden_act="gelu",
        layer_norm_eps=1e-5,
        bos_token_id=0,
        eos_token_id=2,
        pad_token_id=1,
    )


def t5_v1_1_xxl_encoder_config() -> T5Config:
    """T5 v1.1 XXL (``google/t5-v1_1-xxl``), whose encoder is FLUX's/SD3's/DeepFloyd IF's text encoder.

    d_model 4096, d_ff 10240 (gated GELU), 24 layers, 64 heads of d_kv 64, 32128 ids,
    untied embeddings, 32 relative-position buckets, RMS-norm eps 1e-6. Introduced in
    notebook 02.
    """
    return _transformers("T5Config")(
        vocab_size=32128,
        d_model=4096,
        d_kv=64,
        d_ff=10240,
        num_layers=24,
        num_decoder_layers=24,
        num_heads=64,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        layer_norm_epsilon=1e-6,
        dropout_rate=0.1,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )


def build_on_meta(config, model_class: type[nn.Module]) -> nn.Module:
    """Instantiate ``model_class(config)`` on PyTorch's ``meta`` device: shapes, no memory.

    Introduced in notebook 02. Lets the course count the parameters of multi-billion
    parameter encoders in milliseconds, without downloading or allocating anything.
    """
    with torch.device("meta"):
        return model_class(config)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (each shared tensor counted once). Introduced in notebook 02."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters())


_REAL_ENCODERS = (
    # name, config fn, transformers class name, max tokens, tokenizer, used by
    (
        "CLIP ViT-L/14 text",
        clip_vit_l14_text_config,
        "CLIPTextModel",
        77,
        "CLIP byte-level BPE, 49408 ids",
        "SD 1.x text_encoder; SDXL text_encoder",
    ),
    (
        "OpenCLIP ViT-bigG/14 text + projection",
        openclip_bigg14_text_config,
        "CLIPTextModelWithProjection",
        77,
        "CLIP byte-level BPE, 49408 ids (pads with 0)",
        "SDXL text_encoder_2",
    ),
    (
        "T5-XXL v1.1 encoder",
        t5_v1_1_xxl_encoder_config,
        "T5EncoderModel",
        None,
        "SentencePiece unigram, 32000 pieces + 100 sentinels (32128 rows)",
        "DeepFloyd IF, SD3, FLUX",
    ),
)


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
    for name, config_fn, class_name, max_tokens, tokenizer, used_by in _REAL_ENCODERS:
        config, cls = config_fn(), _transformers(class_name)
        model = build_on_meta(config, cls)
        if config.model_type == "t5":
            width, layers, heads, pooled = config.d_model, config.num_layers, config.num_heads, None
        else:
            width, layers, heads = (
                config.hidden_size,
                config.num_hidden_layers,
                config.num_attention_heads,
            )
            pooled = config.projection_dim if class_name == "CLIPTextModelWithProjection" else width
        rows.append(
            {
                "name": name,
                "model_class": cls.__name__,
                "params": count_parameters(model),
                "hidden_width": width,
                "pooled_width": pooled,
                "layers": layers,
                "heads": heads,
                "max_tokens": max_tokens,
                "tokenizer": tokenizer,
                "used_by": used_by,
            }
        )
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


# --------------------------------------------------------------------------------------
# Loading encoders: real ones when available, labelled tiny random ones offline
# --------------------------------------------------------------------------------------


class EncoderNotAvailableError(OSError):
    """A real encoder could not be loaded offline (and no download was allowed or possible)."""


_TINY = {  # name: (transformers class name, config fn)
    "tiny-clip": ("CLIPTextModel", tiny_clip_text_config),
    "tiny-clip-projection": ("CLIPTextModelWithProjection", tiny_clip_text_config),
    "tiny-t5": ("T5EncoderModel", tiny_t5_encoder_config),
}

_CLASS_NAMES = {  # model_class shorthand: transformers class name
    "clip": "CLIPTextModel",
    "clip-projection": "CLIPTextModelWithProjection",
    "t5": "T5EncoderModel",
}


def _fallback_hint() -> str:
    return (
        "Offline fallback: load_text_encoder('tiny-clip') (or 'tiny-clip-projection', "
        "'tiny-t5'), a small RANDOMLY INITIALISED transformers model with the real "
        "architecture and token semantics but untrained weights."
    )


def _hub_reachable(timeout: float) -> bool:
    """A quick TCP check of the model hub's endpoint (``HF_ENDPOINT``) with a short timeout."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _offline_env() -> bool:
    return any(
        os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _infer_class(config) -> type[nn.Module]:
    model_type = getattr(config, "model_type", "")
    if model_type in {"t5", "mt5", "umt5"}:
        return _transformers("T5EncoderModel")
    if model_type in {"clip_text_model", "clip"}:
        archs = getattr(config, "architectures", None) or []
        if any("WithProjection" in a for a in archs):
            return _transformers("CLIPTextModelWithProjection")
        return _transformers("CLIPTextModel")
    raise ValueError(
        f"cannot tell which text encoder class loads model_type {model_type!r}; "
        "pass model_class='clip', 'clip-projection' or 't5'"
    )


def _resolve_class(model_class) -> type[nn.Module] | None:
    if model_class is None or (
        isinstance(model_class, type) and issubclass(model_class, nn.Module)
    ):
        return model_class
    if isinstance(model_class, str) and model_class in _CLASS_NAMES:
        return _transformers(_CLASS_NAMES[model_class])
    raise ValueError(
        f"model_class must be None, one of {sorted(_CLASS_NAMES)} or a model class, got {model_class!r}"
    )


def _label(model: nn.Module, *, pretrained: bool, source: str) -> nn.Module:
    model.is_pretrained = pretrained
    model.source = source
    return model.eval()


def load_text_encoder(
    name_or_path: str | os.PathLike,
    *,
    model_class=None,
    subfolder: str | None = None,
    allow_download: bool = False,
    timeout: float = 2.0,
    seed: int = 0,
    **kwargs,
) -> nn.Module:
    """Load a text encoder: a real checkpoint when available, else a labelled tiny random one.

    Introduced in notebook 02.

    * ``"tiny-clip"``, ``"tiny-clip-projection"``, ``"tiny-t5"``: build a small randomly
      initialised ``CLIPTextModel`` / ``CLIPTextModelWithProjection`` / ``T5EncoderModel``
      from ``tiny_clip_text_config(**kwargs)`` / ``tiny_t5_encoder_config(**kwargs)``,
      seeded with ``seed``. Labelled ``is_pretrained = False``.
    * a local folder: ``from_pretrained(folder, local_files_only=True)``.
    * a hub id (``"openai/clip-vit-large-patch14"``): first
      ``from_pretrained(id, local_files_only=True)`` (the local cache); only with
      ``allow_download=True``, and only if a TCP check of the hub answers within
      ``timeout`` seconds, the real download. Otherwise an ``EncoderNotAvailableError``
      is raised at once, naming the offline fallback (a notebook never hangs for minutes
      on retries).

    Args:
        name_or_path: a tiny name, a folder or a hub id.
        model_class: ``None`` (inferred from the config), ``"clip"``, ``"clip-projection"``,
            ``"t5"`` or a ``transformers`` model class. For SD checkpoints use
            ``subfolder="text_encoder"`` (or ``"text_encoder_2"``).
        subfolder: sub-folder of the checkpoint holding the encoder.
        allow_download: permit network access (default ``False``).
        timeout: seconds for the reachability check.
        seed: seed of the random initialisation of tiny models.
        **kwargs: tiny models: config overrides (e.g. ``hidden_size=48``); real models:
            passed to ``from_pretrained`` (e.g. ``cache_dir``, ``torch_dtype``).

    Returns:
        The model in eval mode, with attributes ``is_pretrained`` (``bool``: ``True`` when
        the weights came from a checkpoint) and ``source`` (``str``). See ``describe``.
    """
    if isinstance(name_or_path, os.PathLike):
        name_or_path = os.fspath(name_or_path)
    if not isinstance(name_or_path, str) or not name_or_path:
        raise TypeError(f"name_or_path must be a non-empty str or path, got {name_or_path!r}")
    cls = _resolve_class(model_class)

    if name_or_path in _TINY:
        tiny_class_name, config_fn = _TINY[name_or_path]
        tiny_cls = _transformers(tiny_class_name)
        if cls is not None and cls is not tiny_cls:
            raise ValueError(f"{name_or_path!r} builds a {tiny_cls.__name__}, not {cls.__name__}")
        config = config_fn(**kwargs)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = tiny_cls(config)
        return _label(model, pretrained=False, source=f"{name_or_path} (random init, seed {seed})")

    sub = {"subfolder": subfolder} if subfolder else {}
    local = Path(name_or_path).expanduser()
    is_dir = local.is_dir()

    def _load(local_only: bool) -> nn.Module:
        config = _transformers("AutoConfig").from_pretrained(
            name_or_path,
            local_files_only=local_only,
            **sub,
            **{k: v for k, v in kwargs.items() if k == "cache_dir"},
        )
        model_cls = cls or _infer_class(config)
        return model_cls.from_pretrained(name_or_path, local_files_only=local_only, **sub, **kwargs)

    try:
        return _label(_load(True), pretrained=True, source=str(name_or_path))
    except (OSError, ValueError) as err:
        first_error = err
    if is_dir:
        raise EncoderNotAvailableError(
            f"could not load a text encoder from the folder {str(local)!r}"
            f"{' (subfolder ' + repr(subfolder) + ')' if subfolder else ''}: {first_error}. "
            + _fallback_hint()
        ) from first_error
    if not allow_download:
        raise EncoderNotAvailableError(
            f"{name_or_path!r} is not in the local cache and allow_download=False. "
            "Pass allow_download=True to download it (needs the model hub). " + _fallback_hint()
        ) from first_error
    if _offline_env():
        raise EncoderNotAvailableError(
            f"{name_or_path!r} is not cached and HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE is set. "
            + _fallback_hint()
        ) from first_error
    if not _hub_reachable(timeout):
        raise EncoderNotAvailableError(
            f"{name_or_path!r} is not cached and the model hub did not answer within {timeout} s. "
            + _fallback_hint()
        ) from first_error
    try:
        return _label(_load(False), pretrained=True, source=str(name_or_path))
    except (OSError, ValueError) as err:
        raise EncoderNotAvailableError(
            f"downloading {name_or_path!r} failed: {err}. " + _fallback_hint()
        ) from err


def describe(model: nn.Module) -> str:
    """One line saying what a text encoder is, and whether its weights are trained.

    Introduced in notebook 02. Every notebook cell that shows a tiny encoder's output
    prints this, so random weights are never mistaken for a trained model.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    config = getattr(model, "config", None)
    width = getattr(config, "hidden_size", None) or getattr(config, "d_model", None)
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "num_layers", None)
    n = count_parameters(model)
    size = f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"
    pretrained = getattr(model, "is_pretrained", None)
    if pretrained is False:
        status = "RANDOMLY INITIALISED, untrained: real shapes and semantics, meaningless values"
    elif pretrained is True:
        status = f"weights loaded from {getattr(model, 'source', 'a checkpoint')}"
    else:
        status = "origin unknown (not loaded through load_text_encoder)"
    return f"{type(model).__name__}: {size} parameters, width {width}, {layers} layers; {status}"


# --------------------------------------------------------------------------------------
# What comes out of an encoder
# --------------------------------------------------------------------------------------


def eos_positions(input_ids: torch.Tensor, eos_token_id: int = EOS_TOKEN_ID) -> torch.Tensor:
    """Index of the end-of-text token in each row, the position CLIP pools.

    Introduced in notebook 02. Mirrors ``transformers``' ``CLIPTextModel``: with a current
    config (``eos_token_id == 49407``) it is the **first** position holding the EOS id,
    which is right even when the pads are EOS ids too (SD 1.x); with a legacy config
    (``eos_token_id == 2``, as in SD 1.x's and SDXL's ``config.json``) it is
    ``input_ids.argmax(-1)``, the first occurrence of the largest id, i.e. 49407 again.

    Args:
        input_ids: ``(B, L)`` token ids.
        eos_token_id: the config's ``eos_token_id``.

    Returns:
        ``(B,)`` long tensor of positions.
    """
    if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2:
        raise ValueError(
            f"input_ids must be a (B, L) tensor, got {getattr(input_ids, 'shape', type(input_ids))}"
        )
    if input_ids.is_floating_point():
        raise TypeError("input_ids must hold integer token ids")
    if eos_token_id == 2:
        return input_ids.to(torch.int).argmax(dim=-1)
    is_eos = input_ids == eos_token_id
    if not bool(is_eos.any(dim=-1).all()):
        rows = (~is_eos.any(dim=-1)).nonzero().flatten().tolist()
        raise ValueError(f"input_ids rows {rows} hold no eos_token_id {eos_token_id}")
    return is_eos.to(torch.int).argmax(dim=-1)


def clip_pooled_output(
    last_hidden_state: torch.Tensor, input_ids: torch.Tensor, eos_token_id: int = EOS_TOKEN_ID
) -> torch.Tensor:
    """CLIP's pooled text vector: the final (layer-normed) hidden state at the EOS position.

    Introduced in notebook 02. Equals ``CLIPTextModel(...).pooler_output``; applying the
    model's ``text_projection`` gives ``CLIPTextModelWithProjection(...).text_embeds``
    (SDXL's pooled conditioning). It is **not** ``last_hidden_state[:, 0]``: that is the
    start token, which under the causal mask has seen nothing else.

    Args:
        last_hidden_state: ``(B, L, D)``, after the final layer norm.
        input_ids: ``(B, L)`` ids that produced it.
        eos_token_id: the encoder config's ``eos_token_id`` (see ``eos_positions``).

    Returns:
        ``(B, D)``.
    """
    if not isinstance(last_hidden_state, torch.Tensor) or last_hidden_state.ndim != 3:
        raise ValueError("last_hidden_state must be a (B, L, D) tensor")
    pos = eos_positions(input_ids, eos_token_id)
    if input_ids.shape != last_hidden_state.shape[:2]:
        raise ValueError(
            f"input_ids {tuple(input_ids.shape)} and last_hidden_state "
            f"{tuple(last_hidden_state.shape)} disagree on (B, L)"
        )
    batch = torch.arange(last_hidden_state.shape[0], device=last_hidden_state.device)
    return last_hidden_state[batch, pos.to(last_hidden_state.device)]


def _final_layer_norm(text_encoder: nn.Module) -> nn.Module:
    # transformers 5: CLIPTextModel.final_layer_norm, CLIPTextModelWithProjection.text_model.final_layer_norm;
    # transformers 4: both under .text_model.
    for owner in (text_encoder, getattr(text_encoder, "text_model", None)):
        if owner is not None and isinstance(getattr(owner, "final_layer_norm", None), nn.Module):
            return owner.final_layer_norm
    raise TypeError(f"{type(text_encoder).__name__} has no CLIP final_layer_norm")


def _is_clip(text_encoder) -> bool:
    return isinstance(text_encoder, CLIPTextEncoder) or _instance_of(
        text_encoder, _CLIP_MODULE, "CLIPTextModel", "CLIPTextModelWithProjection"
    )


def _check_clip_skip(clip_skip, num_layers: int) -> None:
    if clip_skip is None:
        return
    if isinstance(clip_skip, bool) or not isinstance(clip_skip, int):
        raise TypeError(f"clip_skip must be None or an int, got {type(clip_skip).__name__}")
    if not 0 <= clip_skip < num_layers:
        raise ValueError(
            f"clip_skip must be in [0, {num_layers - 1}] for a {num_layers}-layer encoder, got {clip_skip}"
        )


@torch.no_grad()
def clip_hidden_states(
    text_encoder: nn.Module,
    input_ids: torch.Tensor,
    *,
    clip_skip: int | None = None,
) -> torch.Tensor:
    """The per-token features ``(B, L, D)`` that condition the U-Net, with optional clip-skip.

    Introduced in notebook 02. ``clip_skip=None`` returns ``last_hidden_state`` (the last
    layer's output after the final layer norm). ``clip_skip=k`` returns
    ``final_layer_norm(hidden_states[-(k + 1)])``, exactly as diffusers'
    ``StableDiffusionPipeline.encode_prompt``: ``k = 1`` is the penultimate layer (what
    the WebUI calls "clip skip 2"); ``hidden_states`` holds ``num_layers + 1`` tensors,
    the embeddings first. For a T5 encoder only ``clip_skip=None`` is allowed.

    Args:
        text_encoder: a ``CLIPTextModel``, ``CLIPTextModelWithProjection`` or ``T5EncoderModel``.
        input_ids: ``(B, L)``.
        clip_skip: ``None`` or the number of final layers to skip.

    Returns:
        ``(B, L, D)`` float tensor (no gradient).
    """
    if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2:
        raise ValueError(
            f"input_ids must be a (B, L) tensor, got {getattr(input_ids, 'shape', type(input_ids))}"
        )
    device = next(text_encoder.parameters()).device
    input_ids = input_ids.to(device)
    if _is_t5(text_encoder):
        if clip_skip is not None:
            raise ValueError("clip_skip applies to CLIP encoders only; pass clip_skip=None for T5")
        return text_encoder(input_ids).last_hidden_state
    if not _is_clip(text_encoder):
        raise TypeError(
            "text_encoder must be a CLIPTextModel, CLIPTextModelWithProjection, the course's "
            f"CLIPTextEncoder or a T5EncoderModel, "
            f"got {type(text_encoder).__name__}"
        )
    _check_clip_skip(clip_skip, text_encoder.config.num_hidden_layers)
    if input_ids.shape[1] > text_encoder.config.max_position_embeddings:
        raise ValueError(
            f"input_ids has {input_ids.shape[1]} positions; this CLIP encoder has "
            f"{text_encoder.config.max_position_embeddings}"
        )
    if clip_skip is None:
        return text_encoder(input_ids).last_hidden_state
    out = text_encoder(input_ids, output_hidden_states=True)
    return _final_layer_norm(text_encoder)(out.hidden_states[-(clip_skip + 1)])


def encode_prompt(
    tokenizer,
    text_encoder: nn.Module,
    prompts: str | Sequence[str],
    negative_prompts: str | Sequence[str] | None = None,
    *,
    clip_skip: int | None = None,
    force_zeros_for_empty_prompt: bool = False,
    max_length: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts to ``(prompt_embeds, negative_prompt_embeds)``, the two contexts CFG needs.

    Introduced in notebook 02; used by the sampler in notebook 08. Follows diffusers'
    ``StableDiffusionPipeline.encode_prompt``: tokenise with padding to 77 and
    truncation, run the encoder with no attention mask (SD's text encoder only uses its
    causal mask; pads are part of the context), take ``last_hidden_state`` or, with
    ``clip_skip``, ``final_layer_norm(hidden_states[-(clip_skip + 1)])``.

    The negative (unconditional) context: a missing negative prompt means the encoded
    empty string ``""`` (SD 1.x/2.x, and the null condition the course's model is trained
    with), **not** zeros. Only with ``force_zeros_for_empty_prompt=True`` and no negative
    prompt does it become ``zeros_like(prompt_embeds)`` (SDXL's pipeline switch).
    Unlike diffusers 0.42's SD 1.x pipeline, which encodes the negative prompt from the
    last layer whatever ``clip_skip`` is, ``clip_skip`` applies to both here so the two
    branches of CFG come from the same layer (as in the A1111 WebUI).

    Args:
        tokenizer: e.g. ``load_clip_tokenizer()`` (or ``load_byt5_tokenizer()`` for T5).
        text_encoder: ``CLIPTextModel``, ``CLIPTextModelWithProjection`` or ``T5EncoderModel``.
        prompts: one prompt or ``B`` prompts.
        negative_prompts: ``None``, one string (used for every prompt) or ``B`` strings.
        clip_skip: see ``clip_hidden_states``.
        force_zeros_for_empty_prompt: SDXL's convention for a missing negative prompt.
        max_length: padded length, default ``tokenizer.model_max_length``.

    Returns:
        ``(prompt_embeds, negative_prompt_embeds)``, each ``(B, L, D)``, ready to be the
        sampler's ``context`` and null context.
    """
    prompts = _as_prompt_list(prompts, "prompts")
    if negative_prompts is None:
        negatives = None
    elif isinstance(negative_prompts, str):
        negatives = [negative_prompts] * len(prompts)
    else:
        negatives = _as_prompt_list(negative_prompts, "negative_prompts")
        if len(negatives) != len(prompts):
            raise ValueError(
                f"negative_prompts has {len(negatives)} entries but prompts has {len(prompts)}; "
                "pass one negative prompt per prompt, a single string, or None"
            )
    if not isinstance(force_zeros_for_empty_prompt, bool):
        raise TypeError("force_zeros_for_empty_prompt must be a bool")
    length = _max_length(tokenizer, max_length)

    def _encode(texts: list[str]) -> torch.Tensor:
        ids = tokenize_prompts(tokenizer, texts, max_length=length)
        return clip_hidden_states(text_encoder, ids, clip_skip=clip_skip)

    prompt_embeds = _encode(prompts)
    if negatives is None and force_zeros_for_empty_prompt:
        negative_prompt_embeds = torch.zeros_like(prompt_embeds)
    else:
        negative_prompt_embeds = _encode(
            negatives if negatives is not None else [""] * len(prompts)
        )
    return prompt_embeds, negative_prompt_embeds


@dataclass
class DualPromptEmbeds:
    """SDXL-style conditioning. Introduced in notebook 02.

    Attributes:
        prompt_embeds: ``(B, 77, D1 + D2)`` cross-attention context (2048 for SDXL).
        negative_prompt_embeds: ``(B, 77, D1 + D2)``.
        pooled_prompt_embeds: ``(B, P)`` projected pooled vector of the second encoder
            (1280 for SDXL), fed to the U-Net's added (time + text) embedding.
        negative_pooled_prompt_embeds: ``(B, P)``.
    """

    prompt_embeds: torch.Tensor
    negative_prompt_embeds: torch.Tensor
    pooled_prompt_embeds: torch.Tensor
    negative_pooled_prompt_embeds: torch.Tensor


@torch.no_grad()
def _dual_encode(tokenizers, text_encoders, texts, clip_skip):
    features, pooled = [], None
    for tokenizer, encoder in zip(tokenizers, text_encoders, strict=True):
        ids = tokenize_prompts(tokenizer, texts).to(next(encoder.parameters()).device)
        out = encoder(ids, output_hidden_states=True)
        # SDXL always indexes from the penultimate layer and applies no final layer norm.
        features.append(out.hidden_states[-(2 + (clip_skip or 0))])
        pooled = out.text_embeds if _is_clip_projection(encoder) else None
    return torch.cat(features, dim=-1), pooled


def encode_prompt_dual(
    tokenizers: Sequence,
    text_encoders: Sequence[nn.Module],
    prompts: str | Sequence[str],
    negative_prompts: str | Sequence[str] | None = None,
    *,
    clip_skip: int | None = None,
    force_zeros_for_empty_prompt: bool = True,
) -> DualPromptEmbeds:
    """SDXL's dual text encoding: two CLIP encoders' penultimate states side by side.

    Introduced in notebook 02. Follows diffusers' ``StableDiffusionXLPipeline.encode_prompt``:
    each encoder's ``hidden_states[-(clip_skip + 2)]`` (penultimate by default, **no** final
    layer norm) are concatenated on the feature axis, ``(B, 77, D1 + D2)``; with SDXL's
    ViT-L/14 and bigG/14 that is 768 + 1280 = 2048 (``sdxl_context_widths()``). The pooled
    vector is the second encoder's projected ``text_embeds`` ``(B, 1280)``. A missing
    negative prompt gives zeros when ``force_zeros_for_empty_prompt`` (SDXL's default),
    else the encoded ``""``. ``clip_skip`` applies to the negative prompt too (diffusers
    ignores it there).

    Args:
        tokenizers: ``(tokenizer_1, tokenizer_2)``, e.g. ``load_clip_tokenizer("sd1")`` and
            ``load_clip_tokenizer("sdxl_tokenizer_2")``.
        text_encoders: ``(CLIPTextModel, CLIPTextModelWithProjection)``.
        prompts, negative_prompts: as in ``encode_prompt``.
        clip_skip: extra layers to skip beyond the penultimate.
        force_zeros_for_empty_prompt: SDXL's switch (default ``True`` as in SDXL base).

    Returns:
        A ``DualPromptEmbeds``.
    """
    tokenizers, text_encoders = list(tokenizers), list(text_encoders)
    if len(tokenizers) != 2 or len(text_encoders) != 2:
        raise ValueError(
            f"need exactly two tokenizers and two text encoders, got {len(tokenizers)} and {len(text_encoders)}"
        )
    if clip_skip is not None and (isinstance(clip_skip, bool) or not isinstance(clip_skip, int)):
        raise TypeError(f"clip_skip must be None or an int, got {type(clip_skip).__name__}")
    for i, enc in enumerate(text_encoders):
        if not _is_clip(enc):
            raise TypeError(
                f"text_encoders[{i}] must be a CLIP text model, got {type(enc).__name__}"
            )
        if clip_skip is not None and not 0 <= clip_skip <= enc.config.num_hidden_layers - 2:
            raise ValueError(
                f"clip_skip must be in [0, {enc.config.num_hidden_layers - 2}] for text_encoders[{i}] "
                f"({enc.config.num_hidden_layers} layers; SDXL starts from the penultimate), got {clip_skip}"
            )
    if not _is_clip_projection(text_encoders[1]):
        raise TypeError(
            "text_encoders[1] must be a CLIPTextModelWithProjection (its projected pooled "
            f"vector conditions SDXL), got {type(text_encoders[1]).__name__}"
        )
    prompts = _as_prompt_list(prompts, "prompts")
    if negative_prompts is None:
        negatives = None
    elif isinstance(negative_prompts, str):
        negatives = [negative_prompts] * len(prompts)
    else:
        negatives = _as_prompt_list(negative_prompts, "negative_prompts")
        if len(negatives) != len(prompts):
            raise ValueError(
                f"negative_prompts has {len(negatives)} entries but prompts has {len(prompts)}"
            )
    embeds, pooled = _dual_encode(tokenizers, text_encoders, prompts, clip_skip)
    if negatives is None and force_zeros_for_empty_prompt:
        neg, neg_pooled = torch.zeros_like(embeds), torch.zeros_like(pooled)
    else:
        neg, neg_pooled = _dual_encode(
            tokenizers,
            text_encoders,
            negatives if negatives is not None else [""] * len(prompts),
            clip_skip,
        )
    return DualPromptEmbeds(embeds, neg, pooled, neg_pooled)
