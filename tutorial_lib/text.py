"""Prompt encoding for conditional diffusion: from a prompt string to the ``(B, 77, D)`` context.

Introduced in notebook 02. Everything here uses the real ``transformers`` classes
(``CLIPTokenizer``, ``CLIPTextModel``, ``CLIPTextModelWithProjection``,
``T5EncoderModel``), never random tensors standing in for a model's output. The functions
also accept the course's :class:`~tutorial_lib.clip_text.CLIPTextEncoder` (the shipped
encoder of ``load_pretrained()``, proven equal to ``CLIPTextModel`` by tests).

The pipeline of a Stable-Diffusion-style model, and where each step lives::

    "a cat"  --tokenizer-->  input_ids (B, 77)        tokenizer: load_clip_tokenizer, tokenize_prompts
             --encoder---->  hidden states (B, 77, D)  text_loading: load_text_encoder; here: clip_hidden_states
             --pooling---->  pooled (B, D) at EOS      here: eos_positions, clip_pooled_output
             --both------->  (prompt_embeds, negative_prompt_embeds)   here: encode_prompt
                             SDXL: (B, 77, 768 + 1280) + pooled (B, 1280)  here: encode_prompt_dual

(``encoder_configs`` holds the tiny and the real encoder configurations.) Notebook 02
imports all of these from this module, which re-exports them (see ``__all__``).

Facts the course teaches from this module (each one often stated wrongly):

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

``transformers`` is imported inside the functions that need it, not with this module:
importing its modeling code costs ~2 s, and ``import tutorial_lib.text`` should not. The
``transformers`` names this module used to import at the top (``CLIPTextModel``,
``CLIPTextConfig``, ``CLIPTokenizer``, ``T5EncoderModel``, ...) are still its attributes,
imported on first access.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from . import _checks
from . import encoder_configs as _encoder_configs
from . import text_loading as _text_loading
from . import tokenizer as _tokenizer
from .clip_text import CLIPTextEncoder
from .encoder_configs import *  # noqa: F403  (re-exported, see __all__)
from .encoder_configs import _transformers
from .text_loading import *  # noqa: F403
from .tokenizer import *  # noqa: F403
from .tokenizer import EOS_TOKEN_ID, _as_prompt_list, _max_length, _tokenize

__all__ = [
    # Defined here: prompt encoding.
    "DualPromptEmbeds",
    "eos_positions",
    "clip_pooled_output",
    "clip_hidden_states",
    "encode_prompt",
    "encode_prompt_dual",
    # Re-exported, so that notebook 02's `from tutorial_lib.text import ...` finds every name of
    # the chapter here; each is defined in (and documented by) its own module:
    *_tokenizer.__all__,  # tutorial_lib.tokenizer: the ids, load_clip_tokenizer, tokenize_prompts, ...
    *_encoder_configs.__all__,  # tutorial_lib.encoder_configs: tiny and real configs, parameter counts
    *_text_loading.__all__,  # tutorial_lib.text_loading: load_text_encoder, describe, EncoderNotAvailableError
]

#: ``transformers`` names still reachable as ``tutorial_lib.text.<name>`` (imported lazily).
_LAZY_TRANSFORMERS = (
    "AutoConfig", "ByT5Tokenizer", "CLIPTextConfig", "CLIPTextModel", "CLIPTextModelWithProjection",
    "CLIPTokenizer", "T5Config", "T5EncoderModel",
)
_CLIP_MODULE = "transformers.models.clip.modeling_clip"
_T5_MODULE = "transformers.models.t5.modeling_t5"
_ENCODERS = "a CLIPTextModel, CLIPTextModelWithProjection, the course's CLIPTextEncoder or a T5EncoderModel"


def __getattr__(name: str):
    # PEP 562: `from tutorial_lib.text import CLIPTextModel` keeps working, without making
    # `import tutorial_lib.text` pay for transformers' modeling code.
    if name in _LAZY_TRANSFORMERS:
        return _transformers(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _loaded(module: str, *names: str) -> tuple[type, ...]:
    """The classes ``module.<names>``, or none while ``module`` is not imported: an object of a
    class from a module that is not imported yet cannot exist, so recognising one imports nothing."""
    mod = sys.modules.get(module)
    return () if mod is None else tuple(getattr(mod, n) for n in names)


def _t5_classes() -> tuple[type, ...]:
    return _loaded(_T5_MODULE, "T5EncoderModel")


def _clip_classes() -> tuple[type, ...]:
    return (CLIPTextEncoder, *_loaded(_CLIP_MODULE, "CLIPTextModel", "CLIPTextModelWithProjection"))


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
    _checks.token_ids("input_ids", input_ids)
    if eos_token_id == 2:
        return input_ids.to(torch.int).argmax(dim=-1)
    is_eos = input_ids == eos_token_id
    rows = (~is_eos.any(dim=-1)).nonzero().flatten().tolist()
    _checks.that(not rows, f"input_ids rows {rows} hold no eos_token_id {eos_token_id}")
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
    _checks.shape("last_hidden_state", last_hidden_state, (None, None, None), "(B, L, D)")
    pos = eos_positions(input_ids, eos_token_id)
    _checks.shape("input_ids", input_ids, tuple(last_hidden_state.shape[:2]), "(B, L) of last_hidden_state")
    batch = torch.arange(last_hidden_state.shape[0], device=last_hidden_state.device)
    return last_hidden_state[batch, pos.to(last_hidden_state.device)]


def _check_encoder(text_encoder, clip_skip, length: int) -> None:
    """What ``clip_hidden_states`` and ``encode_prompt`` need: a CLIP encoder with more than
    ``clip_skip`` layers and at least ``length`` positions, or a T5 encoder and no clip_skip."""
    if isinstance(text_encoder, _t5_classes()):
        _checks.that(clip_skip is None, "clip_skip applies to CLIP encoders only; pass clip_skip=None for T5")
        return
    config = _checks.instance("text_encoder", text_encoder, _clip_classes(), _ENCODERS).config
    n, positions = config.num_hidden_layers, config.max_position_embeddings
    if clip_skip is not None:
        _checks.integer(f"clip_skip (for a {n}-layer encoder)", clip_skip, 0, n - 1)
    _checks.that(length <= positions, f"input_ids has {length} positions; this CLIP encoder has {positions}")


def _final_layer_norm(text_encoder: nn.Module) -> nn.Module:
    # transformers 5 and the course's CLIPTextEncoder: `.final_layer_norm`;
    # CLIPTextModelWithProjection and transformers 4: `.text_model.final_layer_norm`.
    own = isinstance(getattr(text_encoder, "final_layer_norm", None), nn.Module)
    return (text_encoder if own else text_encoder.text_model).final_layer_norm


@torch.no_grad()
def _hidden_states(text_encoder: nn.Module, input_ids: torch.Tensor, clip_skip: int | None) -> torch.Tensor:
    """``clip_hidden_states`` on checked arguments."""
    input_ids = input_ids.to(next(text_encoder.parameters()).device)
    if clip_skip is None:
        return text_encoder(input_ids).last_hidden_state
    out = text_encoder(input_ids, output_hidden_states=True)
    return _final_layer_norm(text_encoder)(out.hidden_states[-(clip_skip + 1)])


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
    _checks.token_ids("input_ids", input_ids)
    _check_encoder(text_encoder, clip_skip, input_ids.shape[1])
    return _hidden_states(text_encoder, input_ids, clip_skip)


# --------------------------------------------------------------------------------------
# Both contexts of classifier-free guidance
# --------------------------------------------------------------------------------------


def _encode_with_negative(
    encode: Callable[[list[str]], tuple[torch.Tensor, ...]],
    prompts,
    negative_prompts,
    force_zeros_for_empty_prompt: bool,
) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """``(encode(prompts), encode(negatives))``: the conditional and unconditional contexts.

    The negative-prompt rule of ``encode_prompt`` and ``encode_prompt_dual`` (one place): one
    string is the negative of every prompt, a list holds one per prompt, and ``None`` means
    the encoded empty prompt ``""`` (SD 1.x/2.x), or zeros like the prompt's tensors when
    ``force_zeros_for_empty_prompt`` (SDXL's switch). Checks the prompt arguments first.
    """
    prompts = _as_prompt_list(prompts, "prompts")
    if isinstance(negative_prompts, str):
        negative_prompts = [negative_prompts] * len(prompts)
    negatives = None if negative_prompts is None else _as_prompt_list(negative_prompts, "negative_prompts")
    _checks.that(negatives is None or len(negatives) == len(prompts), f"negative_prompts has {len(negatives or ())} entries but prompts has {len(prompts)}; pass one per prompt, a single string, or None")
    _checks.boolean("force_zeros_for_empty_prompt", force_zeros_for_empty_prompt)
    cond = encode(prompts)
    if negatives is None and force_zeros_for_empty_prompt:
        return cond, tuple(torch.zeros_like(t) for t in cond)
    return cond, encode(negatives or [""] * len(prompts))


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
    length = _max_length(tokenizer, max_length)
    _check_encoder(text_encoder, clip_skip, length)

    def encode(texts: list[str]) -> tuple[torch.Tensor]:
        return (_hidden_states(text_encoder, _tokenize(tokenizer, texts, length), clip_skip),)

    (prompt_embeds,), (negative_prompt_embeds,) = _encode_with_negative(
        encode, prompts, negative_prompts, force_zeros_for_empty_prompt
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
def _dual_encode(tokenizers, lengths, text_encoders, texts: list[str], clip_skip: int | None):
    """``(B, 77, D1 + D2)`` features side by side and the second encoder's ``text_embeds`` ``(B, P)``."""
    features = []
    for tokenizer, length, encoder in zip(tokenizers, lengths, text_encoders, strict=True):
        out = encoder(_tokenize(tokenizer, texts, length).to(next(encoder.parameters()).device),
                      output_hidden_states=True)
        # SDXL always indexes from the penultimate layer and applies no final layer norm.
        features.append(out.hidden_states[-(2 + (clip_skip or 0))])
    return torch.cat(features, dim=-1), out.text_embeds  # `out`: the second encoder's, with projection


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
    _checks.that(len(tokenizers) == len(text_encoders) == 2, f"need exactly two tokenizers and two text encoders, got {len(tokenizers)} and {len(text_encoders)}")
    for i, encoder in enumerate(text_encoders):
        _checks.instance(f"text_encoders[{i}]", encoder, _clip_classes(), "a CLIP text model")
        n = encoder.config.num_hidden_layers
        if clip_skip is not None:
            _checks.integer(f"clip_skip (text_encoders[{i}] has {n} layers; SDXL starts from the penultimate)", clip_skip, 0, n - 2)
    projection = _loaded(_CLIP_MODULE, "CLIPTextModelWithProjection")
    _checks.instance("text_encoders[1]", text_encoders[1], projection, "a CLIPTextModelWithProjection (its pooled vector conditions SDXL)")
    lengths = [_max_length(t, None) for t in tokenizers]
    (embeds, pooled), (neg, neg_pooled) = _encode_with_negative(
        lambda texts: _dual_encode(tokenizers, lengths, text_encoders, texts, clip_skip),
        prompts, negative_prompts, force_zeros_for_empty_prompt,
    )
    return DualPromptEmbeds(embeds, neg, pooled, neg_pooled)
