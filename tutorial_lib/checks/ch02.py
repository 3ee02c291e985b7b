"""Checks for the exercises of notebook 02 (text encoders).

* ``check_pooled_output(my_pooled_output)``: CLIP's pooled vector is the hidden state at
  the (first) end-of-text position, not token 0 and not the last of the 77 positions.
* ``check_clip_skip(my_clip_skip)``: clip-skip takes ``hidden_states[-(clip_skip + 1)]``
  and applies the encoder's final layer norm, as diffusers does.

Every case uses real CLIP token ids (the course's tokenizer, both padding conventions)
and, for clip-skip, the hidden states of a small randomly initialised ``CLIPTextModel``.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from ..text import clip_pooled_output
from ..text_loading import load_text_encoder
from ..tokenizer import load_clip_tokenizer, tokenize_prompts
from ._core import Case, run_cases

__all__ = ["check_pooled_output", "check_clip_skip"]

_PROMPTS = ["a red circle", "a cat", "a large blue square in the top left corner"]


@lru_cache(maxsize=None)
def _ids(convention: str) -> torch.Tensor:
    return tokenize_prompts(load_clip_tokenizer(convention), _PROMPTS)


def _truncated_ids() -> torch.Tensor:
    long_prompt = " ".join(["a very very small green triangle"] * 20)
    return tokenize_prompts(load_clip_tokenizer("sd1"), [long_prompt, "a cat"])


# ------------------------------------------------------------------------------ pooling

_POOL = "Exercise 1 (my_pooled_output)"


def _pooled_cases() -> list[Case]:
    g = torch.Generator().manual_seed(2)
    cases = []
    for name, ids in (
        ("SD 1.x padding (pads are 49407 too)", _ids("sd1")),
        ("OpenCLIP padding (pads are 0)", _ids("openclip")),
        ("a prompt truncated to 77 tokens", _truncated_ids()),
    ):
        # Random features as *inputs* (any (B, 77, D) tensor will do for this exercise).
        hidden = torch.randn(ids.shape[0], ids.shape[1], 8, generator=g)
        cases.append(Case(name, (hidden, ids)))
    return cases


def _diagnose_pooled(case: Case, got: torch.Tensor) -> str | None:
    hidden, ids = case.args
    if got.shape != hidden[:, 0].shape:
        return (
            "return one D-dimensional vector per prompt: shape (B, D). Index the batch and the "
            "position together, e.g. last_hidden_state[torch.arange(B), positions]."
        )
    batch = torch.arange(hidden.shape[0])
    eos = (ids == 49407).int().argmax(-1)
    last_eos = ids.shape[1] - 1 - (ids == 49407).flip(-1).int().argmax(-1)
    if torch.equal(got, hidden[:, 0]):
        return (
            "you returned token 0, the start token <|startoftext|>. Under CLIP's causal mask "
            "it sees nothing but itself, so it is the same for every prompt. Pool at the "
            "end-of-text token (id 49407)."
        )
    if torch.equal(got, hidden[:, -1]) or torch.equal(got, hidden[batch, last_eos]):
        return (
            "you returned the last position (or the last 49407). With SD 1.x padding the pads "
            "are 49407 as well, so take the FIRST position holding 49407, e.g. "
            "(input_ids == 49407).int().argmax(-1)."
        )
    if torch.equal(got, hidden[batch, (eos - 1).clamp(min=0)]):
        return "off by one: you returned the last word, the token just before <|endoftext|>."
    if torch.equal(got, hidden.mean(1)):
        return "CLIP does not average the positions: it picks the one end-of-text position."
    return None


def check_pooled_output(fn) -> str:
    """Check ``fn(last_hidden_state (B, L, D), input_ids (B, L)) -> (B, D)`` against CLIP's pooling."""
    return run_cases(
        _POOL,
        fn,
        lambda hidden, ids: clip_pooled_output(hidden, ids),
        _pooled_cases(),
        atol=0,
        rtol=0,
        diagnose=_diagnose_pooled,
        hint="pool at the first position whose id is <|endoftext|> = 49407, one per row.",
    )


# ------------------------------------------------------------------------------ clip-skip

_SKIP = "Exercise 2 (my_clip_skip)"


@lru_cache(maxsize=None)
def _encoder_outputs():
    model = load_text_encoder("tiny-clip", hidden_size=32, num_hidden_layers=4, seed=5)
    with torch.no_grad():
        out = model(_ids("sd1"), output_hidden_states=True)
    # transformers 5 keeps final_layer_norm on the model, transformers 4 under .text_model.
    owner = model if hasattr(model, "final_layer_norm") else model.text_model
    return out.hidden_states, owner.final_layer_norm, out.last_hidden_state


def _reference_clip_skip(hidden_states, final_layer_norm, clip_skip):
    with torch.no_grad():
        return final_layer_norm(hidden_states[-(clip_skip + 1)])


def _skip_cases() -> list[Case]:
    hidden_states, norm, _ = _encoder_outputs()
    return [Case(f"clip_skip={k}", (hidden_states, norm, k)) for k in (1, 0, 2, 3)]


def _diagnose_skip(case: Case, got: torch.Tensor) -> str | None:
    hidden_states, norm, k = case.args
    n = len(hidden_states)

    def close(a):
        return a.shape == got.shape and torch.allclose(got, a, atol=1e-5, rtol=1e-4)

    with torch.no_grad():
        if close(hidden_states[-(k + 1)]):
            return (
                "right layer, but you forgot the final layer norm: diffusers passes the chosen "
                "hidden state through text_model.final_layer_norm (the argument final_layer_norm)."
            )
        if k == 0 and close(norm(hidden_states[0])):
            return (
                "hidden_states[-0] is hidden_states[0], the token embeddings. clip_skip=0 means "
                "the last layer: index -(clip_skip + 1)."
            )
        for j in (k, k + 2):
            if 1 <= j <= n and close(norm(hidden_states[-j])):
                return (
                    f"off by one: you took hidden_states[-{j}]. The tuple has num_layers + 1 "
                    "entries (embeddings first); clip_skip=k skips k final layers, so use "
                    "hidden_states[-(k + 1)]."
                )
        if 0 <= k < n and close(norm(hidden_states[k])):
            return "count from the end of the tuple (the last layer), not from the embeddings."
    return None


def check_clip_skip(fn) -> str:
    """Check ``fn(hidden_states, final_layer_norm, clip_skip) -> (B, L, D)`` against diffusers' clip-skip."""
    return run_cases(
        _SKIP,
        fn,
        _reference_clip_skip,
        _skip_cases(),
        diagnose=_diagnose_skip,
        hint="final_layer_norm(hidden_states[-(clip_skip + 1)]); clip_skip=0 is the last layer.",
    )
