"""The CLIP tokenizer, offline: from prompt strings to the ``(B, 77)`` ``input_ids``.

Introduced in notebook 02 (the first step of ``tutorial_lib.text``'s pipeline). The
tokenizers are the real ``transformers`` classes (``CLIPTokenizer``, and ``ByT5Tokenizer`` for
the T5 fallback encoder), imported inside the functions that build them: ``import
tutorial_lib.tokenizer`` does not import ``transformers``.

Facts the course teaches from this module:

* The CLIP tokenizer is a byte-level BPE with 49408 ids; ``"a cat"`` is
  ``[49406, 320, 2368, 49407]`` (start, "a", "cat", end), padded to 77. SD 1.x's
  tokenizer pads with the end token 49407; OpenCLIP's ``tokenize`` pads with 0.
* A prompt longer than 77 ids is cut so that the last id is still the end token.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from . import _checks

if TYPE_CHECKING:
    from transformers import ByT5Tokenizer, CLIPTokenizer

__all__ = [
    "CLIP_TOKENIZER_DIR",
    "CLIP_MAX_LENGTH",
    "CLIP_VOCAB_SIZE",
    "BOS_TOKEN_ID",
    "EOS_TOKEN_ID",
    "PAD_CONVENTIONS",
    "load_clip_tokenizer",
    "load_byt5_tokenizer",
    "tokenize_prompts",
]

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
        model_max_length: the padded length (≥ 2: start + end), 77 for every CLIP model.

    Returns:
        A ``transformers.CLIPTokenizer`` with ``model_max_length`` set.
    """
    from transformers import CLIPTokenizer

    _checks.one_of("convention", convention, PAD_CONVENTIONS)
    kwargs = {"model_max_length": _checks.integer("model_max_length", model_max_length, low=2)}
    if convention == "sdxl_tokenizer_2":
        # Passing pad_token at load time registers "!" as an added special token, which is
        # what `tokenizer_2/tokenizer_config.json` of SDXL declares.
        kwargs["pad_token"] = "!"
    tok = CLIPTokenizer.from_pretrained(str(CLIP_TOKENIZER_DIR), local_files_only=True, **kwargs)
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
    inputs, and pipelines pick a length (e.g. 256 or 512). ``model_max_length`` (≥ 2) here
    is only the length ``encode_prompt`` pads to.

    Returns:
        A ``transformers.ByT5Tokenizer`` (pads with 0, appends ``</s>`` = 1).
    """
    from transformers import ByT5Tokenizer

    return ByT5Tokenizer(model_max_length=_checks.integer("model_max_length", model_max_length, low=2))


def _as_prompt_list(prompts, name: str) -> list[str]:
    """One prompt or a sequence of prompts as a non-empty ``list[str]`` (the check of every
    function that takes prompts)."""
    if isinstance(prompts, str):
        return [prompts]
    prompts = list(_checks.instance(name, prompts, Sequence, "a str or a list of str"))
    _checks.that(prompts, f"{name} must not be empty")
    for i, p in enumerate(prompts):
        _checks.instance(f"{name}[{i}]", p, str, "a str")
    return prompts


def _max_length(tokenizer, max_length: int | None) -> int:
    """``max_length``, or the tokenizer's ``model_max_length`` (77 for CLIP) when ``None``."""
    if max_length is None:
        max_length = getattr(tokenizer, "model_max_length", None)
        usable = isinstance(max_length, int) and max_length <= 100_000  # transformers' "no limit" is 1e30
        _checks.that(usable, f"max_length is required: the tokenizer declares no usable model_max_length (got {max_length!r})")
    return _checks.integer("max_length", max_length, low=2)


def _tokenize(tokenizer, prompts: list[str], max_length: int) -> torch.Tensor:
    """``tokenize_prompts`` on arguments already checked: ``(B, max_length)`` long ids."""
    return tokenizer(
        prompts, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt"
    ).input_ids


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
    return _tokenize(tokenizer, _as_prompt_list(prompts, "prompts"), _max_length(tokenizer, max_length))
