"""The CLIP tokenizer without importing ``transformers``: its own Rust backend, called directly.

``transformers.CLIPTokenizer`` (v5) is a thin Python layer over a ``tokenizers.Tokenizer``: a
byte-level BPE with CLIP's normaliser (NFC, whitespace collapsed, lower case), its split regex
and ``<|startoftext|>`` … ``<|endoftext|>`` added around every prompt. :class:`CLIPBPETokenizer`
builds that same backend from the vendored ``vocab.json`` and ``merges.txt`` and answers the
calls the course makes (``tokenizer(prompts, padding="max_length", max_length=77,
truncation=True, return_tensors="pt").input_ids`` and a few lookups).

Why it exists: importing ``transformers``' tokenizer machinery costs about 1.2 s, paid by every
notebook that encodes a prompt; ``tokenizers`` imports in milliseconds. ``load_pretrained()``
gives this tokenizer as ``models.tokenizer``; ``load_clip_tokenizer()`` still returns the real
``transformers.CLIPTokenizer`` (notebook 02 teaches that class). ``tests/test_clip_tokenizer.py``
proves the backend serialises identically to ``CLIPTokenizer``'s and that both give the same ids
on every caption of the course's worlds and on edge cases (long, empty, unicode, emphasis syntax).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from .tokenizer import BOS_TOKEN_ID, CLIP_MAX_LENGTH, CLIP_TOKENIZER_DIR, EOS_TOKEN_ID

__all__ = ["CLIPBPETokenizer", "clip_backend"]

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
# CLIP's pre-tokenizer split (CLIPTokenizer's, which follows OpenAI's SimpleTokenizer).
SPLIT_PATTERN = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def clip_backend(directory: Path = CLIP_TOKENIZER_DIR):
    """The ``tokenizers.Tokenizer`` that ``transformers.CLIPTokenizer`` builds from ``directory``'s
    ``vocab.json`` and ``merges.txt`` (the same model, normaliser, pre-tokenizer, post-processor
    and decoder, in the same order)."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from tokenizers.models import BPE

    vocab = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
    lines = (directory / "merges.txt").read_text(encoding="utf-8").splitlines()
    merges = [tuple(line.split()) for line in lines if line and not line.startswith("#version")]
    backend = Tokenizer(BPE(vocab=vocab, merges=merges, dropout=None, continuing_subword_prefix="",
                            end_of_word_suffix="</w>", fuse_unk=False, unk_token=EOS))
    backend.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="removed", invert=True),
         pre_tokenizers.ByteLevel(add_prefix_space=False)])
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in (BOS, EOS)])
    backend.post_processor = processors.RobertaProcessing((EOS, EOS_TOKEN_ID), (BOS, BOS_TOKEN_ID),
                                                          trim_offsets=False, add_prefix_space=False)
    return backend


class _Encoding(dict):
    """What a ``transformers`` tokenizer call returns, as far as the course reads it:
    ``enc.input_ids`` or ``enc["input_ids"]``."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc


class CLIPBPETokenizer:
    """CLIP's tokenizer (SD 1.x's ``tokenizer/``: pads with ``<|endoftext|>`` = 49407), with the
    call signature of ``transformers.CLIPTokenizer`` for what the course uses.

    ``tokenizer(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt")``
    gives ``input_ids`` ``(B, 77)``: ``[BOS, t_1 … t_n, EOS, pad …]`` with ``n ≤ 75`` (a long
    prompt is cut so that its last id is still EOS), exactly as ``CLIPTokenizer`` does.
    """

    bos_token, eos_token, pad_token = BOS, EOS, EOS
    bos_token_id, eos_token_id, pad_token_id = BOS_TOKEN_ID, EOS_TOKEN_ID, EOS_TOKEN_ID

    def __init__(self, directory: Path = CLIP_TOKENIZER_DIR, model_max_length: int = CLIP_MAX_LENGTH):
        self.backend = clip_backend(directory)
        self.model_max_length = model_max_length
        self.vocab_size = self.backend.get_vocab_size()

    def __repr__(self) -> str:
        return f"CLIPBPETokenizer(vocab_size={self.vocab_size}, model_max_length={self.model_max_length})"

    def __call__(self, text: str | Sequence[str], padding: bool | str = False, max_length: int | None = None,
                 truncation: bool = False, add_special_tokens: bool = True, return_tensors: str | None = None,
                 **ignored) -> _Encoding:
        """``input_ids`` (and ``attention_mask``) of one prompt or a list, as ``CLIPTokenizer``
        gives them for these arguments (``padding`` False or "max_length"; ``verbose`` and other
        keywords that only affect warnings are ignored)."""
        texts = [text] if isinstance(text, str) else list(text)
        length = max_length or self.model_max_length
        # The backend truncates (keeping room for the start/end ids its post-processor adds) and pads,
        # as transformers configures it for these arguments; reset afterwards so it holds no state.
        if truncation:
            self.backend.enable_truncation(length)
        if padding == "max_length":
            self.backend.enable_padding(length=length, pad_id=EOS_TOKEN_ID, pad_token=EOS)
        try:
            encodings = self.backend.encode_batch(texts, add_special_tokens=add_special_tokens)
        finally:
            self.backend.no_truncation()
            self.backend.no_padding()
        ids, mask = [e.ids for e in encodings], [e.attention_mask for e in encodings]
        if return_tensors == "pt":
            ids, mask = torch.tensor(ids, dtype=torch.long), torch.tensor(mask, dtype=torch.long)
        elif isinstance(text, str):
            ids, mask = ids[0], mask[0]
        return _Encoding(input_ids=ids, attention_mask=mask)

    def tokenize(self, text: str) -> list[str]:
        """The BPE tokens of ``text`` (no special tokens), e.g. ``["a</w>", "cat</w>"]``."""
        return self.backend.encode(text, add_special_tokens=False).tokens

    def convert_ids_to_tokens(self, ids) -> list[str] | str:
        if isinstance(ids, int):
            return self.backend.id_to_token(ids)
        return [self.backend.id_to_token(int(i)) for i in ids]

    def convert_tokens_to_ids(self, tokens) -> list[int] | int:
        if isinstance(tokens, str):
            return self.backend.token_to_id(tokens)
        return [self.backend.token_to_id(t) for t in tokens]

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """The text of ``ids``; the end-of-word marker ``</w>`` becomes a space, as ``CLIPTokenizer``
        does (its byte-level decoder alone would keep it)."""
        text = self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
        return text.replace("</w>", " ").strip()
