"""The knobs AUTOMATIC1111's web UI adds: prompt emphasis ``(word:1.2)`` and ``s_min_uncond``.

Ported from AUTOMATIC1111/stable-diffusion-webui (read at the commits named below; the
webui's code is AGPL-3.0 — these are re-implementations of its documented behaviour,
checked against its docstring examples and formulas in ``tests/test_a1111.py``).

1. **Emphasis.** ``modules/prompt_parser.py::parse_prompt_attention`` splits a prompt into
   ``(text, weight)`` segments: ``(abc)`` multiplies by 1.1, ``[abc]`` divides by 1.1,
   ``(abc:w)`` multiplies by w, ``\\(`` ``\\)`` ``\\[`` ``\\]`` ``\\\\`` are literal characters.
   ``modules/sd_hijack_clip.py`` then gives every token its segment's weight, runs CLIP on
   the *unweighted* ids, and scales the output features (``modules/sd_emphasis.py``,
   ``EmphasisOriginal.after_transformers``; inline in ``process_tokens`` before v1.8)::

       z̃_{b,i} = w_{b,i} z_{b,i} · mean(z_b) / mean(w_b ⊙ z_b)        (means over all T·D entries)

   The rescale keeps the overall mean of the features ("likely not correct, but it seems to
   work well", says the source); since the mean is a single number, emphasis changes the
   *relative* size of the tokens' features, not just one token's.

2. **s_min_uncond** ("Negative Guidance minimum sigma", A1111 PR #9177).
   ``modules/sd_samplers_cfg_denoiser.py::CFGDenoiser.forward`` skips the unconditional
   pass when ``(self.step % 2 or opts.s_min_uncond_all) and s_min_uncond > 0 and
   sigma[0] < s_min_uncond``, and that step uses the conditional prediction alone
   (``cond_scale = 1``). σ is k-diffusion's noise level, ``σ_t = √((1 − ᾱ_t)/ᾱ_t)``.

What is not ported: A1111's prompts longer than 75 tokens are encoded in several 77-token
chunks side by side (and ``BREAK`` starts a new chunk); here, as in the course's
``encode_prompt``, a prompt is cut to one 77-token context, and ``BREAK`` is ordinary text.
Textual-inversion embeddings and comma back-tracking (which only act at chunk boundaries)
are not ported either.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch
from torch import nn

from . import _checks
from .guiders import ClassifierFreeGuidance, GuidanceStep, _single
from .text import _check_encoder, _clip_classes, _hidden_states
from .tokenizer import _as_prompt_list, _max_length

__all__ = [
    "EMPHASIS_MODES",
    "parse_prompt_attention",
    "tokenize_with_emphasis",
    "apply_emphasis",
    "encode_prompt_with_emphasis",
    "k_diffusion_sigma",
    "skips_uncond",
    "MinUncondGuidance",
]

#: A1111's ``opts.emphasis`` choices (``modules/sd_emphasis.py``): "Original" (weights and mean
#: rescale, the default), "No norm" (weights only, "seems to work better for SDXL"), "Ignore"
#: (brackets parsed away, no weighting), "None" (brackets are literal text).
EMPHASIS_MODES = ("Original", "No norm", "Ignore", "None")

# modules/prompt_parser.py's re_attention, token for token: escapes, brackets, ":w)", plain text, ":".
_RE_ATTENTION = re.compile(r"""
\\\(|
\\\)|
\\\[|
\\]|
\\\\|
\\|
\(|
\[|
:([+-]?[.\d]+)\)|
\)|
]|
[^\\()\[\]:]+|
:
""", re.X)

_ROUND, _SQUARE = 1.1, 1 / 1.1


# --------------------------------------------------------------------------- emphasis


def _weight(spelled: str, text: str) -> float:
    # The pattern [.\d]+ also matches "1.2.3" or "."; A1111 fails there with float()'s own error.
    try:
        return float(spelled)
    except ValueError:
        raise ValueError(f"text has an emphasis weight {spelled!r} that is not a number, in {text!r}") from None


def parse_prompt_attention(text: str) -> list[tuple[str, float]]:
    """Split a prompt into ``(text, weight)`` segments, as A1111's ``parse_prompt_attention``.

    ``(abc)`` → weight × 1.1, ``[abc]`` → weight ÷ 1.1, ``(abc:3.12)`` → weight × 3.12; nested
    brackets multiply; ``\\(`` ``\\)`` ``\\[`` ``\\]`` ``\\\\`` are the literal characters; brackets
    left open are closed at the end of the prompt; adjacent segments of equal weight are merged.
    The weights are the same floats as A1111's (the same multiplications in the same order),
    e.g. ``'a (((house:1.3)) [on]'`` gives house 1.3 · 1.1 · 1.1 = 1.5730000000000004.

    ``BREAK`` is ordinary text here (current A1111 turns it into a ``("BREAK", -1)`` marker that
    starts a new 75-token chunk; this module encodes one 77-token context, see the module
    docstring).

    Returns:
        A non-empty list of ``(text, weight)`` (``[("", 1.0)]`` for an empty prompt).
    """
    _checks.instance("text", text, str, "a str (one prompt)")
    res: list[list] = []
    round_brackets: list[int] = []
    square_brackets: list[int] = []

    def multiply_range(start: int, multiplier: float) -> None:
        for p in range(start, len(res)):
            res[p][1] *= multiplier

    for m in _RE_ATTENTION.finditer(text):
        token, weight = m.group(0), m.group(1)
        if token.startswith("\\"):
            res.append([token[1:], 1.0])
        elif token == "(":
            round_brackets.append(len(res))
        elif token == "[":
            square_brackets.append(len(res))
        elif weight is not None and round_brackets:
            multiply_range(round_brackets.pop(), _weight(weight, text))
        elif token == ")" and round_brackets:
            multiply_range(round_brackets.pop(), _ROUND)
        elif token == "]" and square_brackets:
            multiply_range(square_brackets.pop(), _SQUARE)
        else:  # plain text, or a bracket / ":w)" with nothing open: kept as text
            res.append([token, 1.0])
    for pos in round_brackets:  # unbalanced: closed at the end, in A1111's order
        multiply_range(pos, _ROUND)
    for pos in square_brackets:
        multiply_range(pos, _SQUARE)
    if not res:
        res = [["", 1.0]]
    i = 0
    while i + 1 < len(res):  # merge runs of identical weights (exact float equality, as A1111)
        if res[i][1] == res[i + 1][1]:
            res[i][0] += res[i + 1][0]
            res.pop(i + 1)
        else:
            i += 1
    return [(t, w) for t, w in res]


def _segments(prompt: str, emphasis: str) -> list[tuple[str, float]]:
    if emphasis == "None":  # the brackets are literal text
        return [(prompt, 1.0)]
    parsed = parse_prompt_attention(prompt)
    return parsed if emphasis != "Ignore" else [(t, 1.0) for t, _ in parsed]


def _row(tokenizer, segments: list[tuple[str, float]], length: int) -> tuple[list[int], list[float]]:
    """One prompt's ``length`` ids and weights: BOS, the segments' tokens (cut to ``length − 2``),
    EOS, then pads; BOS/EOS/pads weigh 1 (A1111's ``tokenize_line``)."""
    # Each segment is tokenised on its own, without special tokens, as A1111's `tokenize`.
    pieces = tokenizer([t for t, _ in segments], truncation=False, add_special_tokens=False,
                       verbose=False)["input_ids"]
    ids = [i for piece in pieces for i in piece]
    weights = [w for piece, (_, w) in zip(pieces, segments, strict=True) for _ in piece]
    ids, weights = ids[: length - 2], weights[: length - 2]  # one context: the first 75 tokens
    pad = length - 2 - len(ids)
    return ([tokenizer.bos_token_id, *ids, tokenizer.eos_token_id] + [tokenizer.pad_token_id] * pad,
            [1.0, *weights, 1.0] + [1.0] * pad)


def tokenize_with_emphasis(tokenizer, prompts: str | Sequence[str], *, max_length: int | None = None,
                           emphasis: str = "Original") -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts with A1111 emphasis to ``(input_ids (B, L), weights (B, L))``.

    The ids are those of the prompt with the emphasis syntax removed (each segment tokenised
    separately), padded and truncated like ``tokenize_prompts``: ``[BOS, t_1 … t_n, EOS, pad …]``
    with ``n ≤ L − 2``. ``weights[b, i]`` is token i's segment weight, 1 for BOS, EOS and pads
    (and everywhere with ``emphasis="Ignore"`` or ``"None"``).

    Args:
        tokenizer: a CLIP tokenizer (``load_clip_tokenizer()``): it needs BOS, EOS and pad ids.
        prompts: one prompt or ``B`` prompts.
        max_length: L, default ``tokenizer.model_max_length`` (77).
        emphasis: one of :data:`EMPHASIS_MODES`.
    """
    prompts = _as_prompt_list(prompts, "prompts")
    _checks.one_of("emphasis", emphasis, EMPHASIS_MODES)
    special = [getattr(tokenizer, f"{k}_token_id", None) for k in ("bos", "eos", "pad")]
    _checks.that(callable(tokenizer) and None not in special, "tokenizer must be a CLIP tokenizer with "
                 f"bos, eos and pad token ids (load_clip_tokenizer()), got {type(tokenizer).__name__}", TypeError)
    length = _max_length(tokenizer, max_length)
    rows = [_row(tokenizer, _segments(p, emphasis), length) for p in prompts]
    return (torch.tensor([ids for ids, _ in rows], dtype=torch.long),
            torch.tensor([w for _, w in rows], dtype=torch.float32))


def apply_emphasis(z: torch.Tensor, weights: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """A1111's emphasis on encoder features: ``z̃ = (w ⊙ z) · mean(z_b) / mean(w ⊙ z)_b``.

    ``modules/sd_emphasis.py::EmphasisOriginal.after_transformers`` (``sd_hijack_clip.py``'s
    ``process_tokens`` before v1.8)::

        original_mean = z.mean(); z = z * multipliers[..., None]; z = z * (original_mean / z.mean())

    A1111 takes the mean of the whole tensor it is given, and it gives it one prompt at a time
    (``prompt_parser.get_learned_conditioning`` encodes each prompt separately); so here the
    means are per prompt, over its ``T · D`` entries, and a prompt's features do not depend on
    the other prompts of the batch. For ``B = 1`` this is A1111's expression. The rescale is
    ill-conditioned when ``mean(w ⊙ z)`` is near 0 (as with the tiny random encoder, whose final
    LayerNorm has bias 0); trained CLIP features have a clearly non-zero mean.

    Args:
        z: ``(B, T, D)`` features (the encoder run on the unweighted ids).
        weights: ``(B, T)`` per-token multipliers.
        normalize: restore each prompt's mean (A1111 "Original"); False is "No norm".

    Returns:
        ``(B, T, D)``.
    """
    _checks.floats("z", z, min_ndim=3)
    _checks.shape("weights", weights, tuple(z.shape[:2]), "(B, T) of z")
    weighted = z * weights.to(z)[..., None]
    if not normalize:
        return weighted
    original_mean = z.mean(dim=(1, 2), keepdim=True)
    scaled = weighted * (original_mean / weighted.mean(dim=(1, 2), keepdim=True))
    # A prompt without emphasis stays z exactly: A1111's factor is then m/m = 1, except 0/0 = NaN
    # when the mean is 0 (an untrained CLIP's final LayerNorm has bias 0: every token averages 0).
    return torch.where((weights == 1).all(dim=1).view(-1, 1, 1).to(z.device), z, scaled)


def encode_prompt_with_emphasis(tokenizer, text_encoder: nn.Module, prompts: str | Sequence[str], *,
                                clip_skip: int | None = None, max_length: int | None = None,
                                emphasis: str = "Original") -> torch.Tensor:
    """Prompts with A1111 emphasis ``(word:1.2)`` to the ``(B, 77, D)`` context.

    :func:`tokenize_with_emphasis`, one encoder pass on the unweighted ids (as A1111), then
    :func:`apply_emphasis` (``modules/sd_hijack_clip.py`` / ``sd_emphasis.py``). A prompt
    without emphasis gives exactly ``encode_prompt(tokenizer, text_encoder, prompts)[0]``.
    The arguments come in ``encode_prompt``'s order; encode the negative prompt with a second
    call (the empty prompt ``""`` has no emphasis: it is ``encode_prompt``'s negative).
    One 77-token context: longer prompts are cut as ``encode_prompt`` cuts them (A1111 would
    encode them in several chunks).

    Args:
        tokenizer, text_encoder, prompts, clip_skip, max_length: as in ``text.encode_prompt``
            (the encoder a CLIP text model).
        emphasis: one of :data:`EMPHASIS_MODES` ("Original": A1111's default).

    Returns:
        ``(B, L, D)`` float tensor (no gradient).
    """
    ids, weights = tokenize_with_emphasis(tokenizer, prompts, max_length=max_length, emphasis=emphasis)
    _checks.instance("text_encoder", text_encoder, _clip_classes(), "a CLIP text model (A1111 emphasis is CLIP's)")
    _check_encoder(text_encoder, clip_skip, ids.shape[1])
    z = _hidden_states(text_encoder, ids, clip_skip)
    if emphasis in ("Ignore", "None"):
        return z
    return apply_emphasis(z, weights.to(z.device), normalize=emphasis == "Original")


# --------------------------------------------------------------------------- s_min_uncond


def k_diffusion_sigma(alpha_cumprod):
    """k-diffusion's noise level of a VP timestep, ``σ_t = √((1 − ᾱ_t)/ᾱ_t)`` (the ``sigma``
    A1111's k-diffusion samplers pass to ``CFGDenoiser``); a float or a tensor, as given."""
    if isinstance(alpha_cumprod, torch.Tensor):
        return ((1 - alpha_cumprod) / alpha_cumprod).sqrt()
    a = _checks.real("alpha_cumprod", alpha_cumprod, 0.0, 1.0, open_low=True)
    return math.sqrt((1 - a) / a)


def skips_uncond(step_index: int, sigma: float, s_min_uncond: float, all_steps: bool = False) -> bool:
    """A1111's rule: skip the unconditional pass at step ``step_index`` with noise level σ?

    ``(step_index % 2 or all_steps) and s_min_uncond > 0 and σ < s_min_uncond`` — every other
    step (odd indices) below the threshold, or every step with ``all_steps``
    (``opts.s_min_uncond_all``). ``modules/sd_samplers_cfg_denoiser.py``, ``CFGDenoiser.forward``;
    A1111's ``self.step`` counts the denoiser's calls since sampling began, which for DDIM is
    the step index.
    """
    return bool((step_index % 2 or all_steps) and s_min_uncond > 0 and sigma < s_min_uncond)


class MinUncondGuidance(ClassifierFreeGuidance):
    """CFG that skips the unconditional pass at low noise: A1111's ``s_min_uncond``.

    At step i with noise level ``σ_t = √((1 − ᾱ_t)/ᾱ_t)`` (:func:`k_diffusion_sigma`):

    * :func:`skips_uncond` ``(i, σ_t)``:  ``ε̃ = ε_c`` (one denoiser call);
    * otherwise CFG:                      ``ε̃ = ε_u + γ (ε_c − ε_u)`` (two).

    A1111's comment: "alternating uncond allows for higher thresholds without the quality loss
    normally expected from raising it". Its UI slider runs over σ in [0, 15]; SD 1.x's σ falls
    from 14.6 at t = 999 to 0.03 at t = 0, so e.g. ``s_min_uncond=1`` acts on t < 354, about the
    last third of the sampling. (A1111's own DDIM/PLMS/UniPC samplers, ``sd_samplers_timesteps.py``, pass
    the *timestep* where ``sigma`` is expected, so there the threshold is compared with t; the
    σ of the k-diffusion samplers is used here, as the option's name intends.)

    Args:
        guidance_scale, guidance_rescale, interval: as :class:`ClassifierFreeGuidance`; steps
            where that guider would not guide anyway are not counted as skipped.
        s_min_uncond: σ threshold ≥ 0; 0 turns the skipping off (plain CFG).
        all_steps: skip every step below the threshold, not every other one
            (A1111's ``s_min_uncond_all``, "NGMS all steps").

    Attributes:
        skipped_indices: the step indices whose unconditional pass was skipped in the current
            (last) sampling call; ``skipped_steps`` is their number. ``reset()`` clears them
            (the sampler calls it at the start of every ``sample``).
    """

    def __init__(self, guidance_scale: float = 7.5, s_min_uncond: float = 0.0, all_steps: bool = False,
                 guidance_rescale: float = 0.0, interval=None):
        super().__init__(guidance_scale, guidance_rescale, interval)
        self.s_min_uncond = _checks.real("s_min_uncond", s_min_uncond, 0.0)
        self.all_steps = _checks.boolean("all_steps", all_steps)
        self.skipped_indices: list[int] = []

    def reset(self) -> None:
        self.skipped_indices = []

    @property
    def skipped_steps(self) -> int:
        """How many unconditional passes were skipped since the last ``reset()``."""
        return len(self.skipped_indices)

    def __call__(self, step: GuidanceStep) -> torch.Tensor:
        sigma = k_diffusion_sigma(float(step.alpha_cumprod))
        if self.active(step.timestep) and skips_uncond(step.index, sigma, self.s_min_uncond, self.all_steps):
            self.skipped_indices.append(step.index)
            return step.predict(_single(step))  # A1111: the cond prediction alone (cond_scale 1)
        return super().__call__(step)
