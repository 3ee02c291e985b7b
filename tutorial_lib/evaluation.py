"""Measuring generated shapes: judge accuracy, diversity, saturation and the guidance-scale sweep.

Introduced in notebook 06 (the guidance-scale sweep); the same code scores the
full evaluation of ``scripts/evaluate.py`` (``make eval``), so the notebook's
small-N numbers and the committed table are computed the same way.

Three measurements of a batch of generated images ``(N, 3, H, W)`` in ``[-1, 1]``:

- **prompt accuracy** (:func:`judge_accuracy`): the *judge* (a clean-image
  attribute classifier, never used to guide) predicts colour, shape, size and
  position; accuracy is the fraction that agrees with the caption's labels,
  per attribute and for all four at once;
- **diversity** (:func:`diversity`): the mean pairwise RMS pixel distance
  between samples *of the same prompt* (images mapped to ``[0, 1]``):

      D = (1/P) Σ_{p=1..P} C(S, 2)⁻¹ Σ_{i<j} √((1/M) ‖u(x_{p,i}) − u(x_{p,j})‖²),
      u(x) = clamp((x + 1)/2, 0, 1),

  with ``P`` prompts, ``S`` samples each, ``M = 3 H W`` values per image. Real
  images of the same captions (:func:`data_reference`) give the reference value:
  the data's own variety (position, size and colour jitter, background);
- **saturation** (:func:`pixel_stats`): the pixel standard deviation and the
  fraction of pixel values outside ``[-1.05, 1.05]`` (the data never leaves
  ``[-1, 1]``), the symptom of over-guided samples.

:func:`guidance_sweep` runs the course's DDIM sampler at several guidance
scales from *the same* initial noise and returns one row of these numbers per
scale.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from . import _checks
from .shapes import (
    ATTRIBUTES,
    _check_labels,
    caption_from_labels,
    render,
    sample_labels,
    to_unit_range,
)

__all__ = [
    "ATTRIBUTE_NAMES",
    "OUT_OF_RANGE_LIMIT",
    "judge_accuracy",
    "diversity",
    "pixel_stats",
    "sample_images",
    "data_reference",
    "guidance_sweep",
    "wilson_interval",
    "scene_scores",
    "free_attribute_values",
    "RESULTS_DIR",
    "load_committed",
]

#: The attributes the judge scores, in the order of :data:`tutorial_lib.shapes.ATTRIBUTES`.
ATTRIBUTE_NAMES: tuple[str, ...] = tuple(ATTRIBUTES)

#: Pixel values beyond ±this count as "out of range" (real data stays inside [-1, 1]).
OUT_OF_RANGE_LIMIT = 1.05


# ----------------------------------------------------------------------------- checks


#: The repository's ``docs/``, where the ``make eval*`` targets commit their results.
RESULTS_DIR = Path(__file__).resolve().parents[1] / "docs"


def load_committed(name: str = "results.json", results_dir: str | Path = RESULTS_DIR) -> dict:
    """A committed ``make eval*`` result of ``docs/`` (``results.json``, ``results_scenes.json``,
    ``results_guiders.json``, ``results_a1111.json``): read, never recomputed. A notebook that
    shows one labels it as committed (its n, steps and date are in the file's ``config``)."""
    return json.loads((Path(results_dir) / name).read_text())


_check_images = _checks.floats  # a floating-point tensor of at least min_ndim dims


# ----------------------------------------------------------------------------- measurements


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``successes / n`` (Wilson 1927).

    Used wherever a notebook reports a proportion from a small sample ("12 of 32 samples are
    red"), so the reader sees how far the true rate could be from the measured one:

        p̂ = k/n,  z = Φ⁻¹(1 − (1 − confidence)/2),
        centre = (p̂ + z²/2n) / (1 + z²/n),
        half   = z √(p̂(1 − p̂)/n + z²/4n²) / (1 + z²/n).

    Unlike the normal approximation p̂ ± z√(p̂(1−p̂)/n) it stays inside [0, 1] and is not empty at
    k = 0 or k = n.

    Args:
        successes: the count k, ``0 <= k <= n``.
        n: the sample size, ``n >= 1``.
        confidence: the coverage, in ``(0, 1)``.

    Returns:
        ``(low, high)``, both in ``[0, 1]``.
    """
    _checks.that(_checks.integer("n", n) >= 1 and 0 <= _checks.integer("successes", successes) <= n, f"need n >= 1 and 0 <= successes <= n, got successes={successes}, n={n}")
    _checks.that(0.0 < _checks.real("confidence", confidence) < 1.0, f"confidence must be in (0, 1), got {confidence!r}")
    z = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(1 - (1 - float(confidence)) / 2)).item()
    p_hat = successes / n
    denominator = 1 + z * z / n
    centre = (p_hat + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p_hat * (1 - p_hat) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@torch.no_grad()
def judge_accuracy(
    judge, images: torch.Tensor, labels: dict[str, torch.Tensor]
) -> dict[str, float]:
    """Fraction of images whose judged attributes match the caption's labels.

    Args:
        judge: the clean-image classifier (:class:`~tutorial_lib.classifiers.AttributeClassifier`
            or anything with ``predict(images) -> {attribute: (N,) labels}``).
        images: ``(N, 3, H, W)`` generated images in ``[-1, 1]`` (clamped to it before judging,
            as a saved image would be).
        labels: ``attribute -> (N,)`` the labels the caption asked for.

    Returns:
        ``{"colour", "shape", "size", "position", "all"}`` -> accuracy in ``[0, 1]``;
        ``"all"`` counts an image as right only when all four attributes are.
    """
    if not hasattr(judge, "predict"):
        raise TypeError(f"judge must have a predict(images) method, got {type(judge).__name__}")
    images = _check_images("images", images, min_ndim=4)
    _check_labels(labels, images.shape[0])
    pred = judge.predict(images.clamp(-1, 1))
    correct = {a: pred[a].cpu() == labels[a].cpu() for a in ATTRIBUTE_NAMES}
    out = {a: correct[a].float().mean().item() for a in ATTRIBUTE_NAMES}
    out["all"] = torch.stack([correct[a] for a in ATTRIBUTE_NAMES]).all(0).float().mean().item()
    return out


def diversity(images_by_prompt: torch.Tensor) -> float:
    """Mean pairwise RMS distance between samples of the same prompt (module docstring).

    Args:
        images_by_prompt: ``(P, S, ...)``: ``S`` samples of each of ``P`` prompts, in ``[-1, 1]``
            (a flat prompt-major batch ``x`` of ``P * S`` images is ``x.reshape(P, S, *x.shape[1:])``).

    Returns:
        ``D`` in ``[0, 1]`` units of pixel intensity; ``nan`` when ``S < 2`` (no pairs).
    """
    x = _check_images("images_by_prompt", images_by_prompt, min_ndim=3)
    P, S = x.shape[:2]
    if S < 2:
        return float("nan")
    u = to_unit_range(x).reshape(P, S, -1).double()
    d = torch.cdist(u, u) / math.sqrt(u.shape[-1])  # (P, S, S) RMS distances
    iu = torch.triu_indices(S, S, 1)
    return d[:, iu[0], iu[1]].mean().item()


def pixel_stats(images: torch.Tensor, limit: float = OUT_OF_RANGE_LIMIT) -> dict[str, float]:
    """Saturation symptoms: ``{"pixel_std", "frac_out_of_range"}`` of raw samples ``(N, ...)``.

    ``frac_out_of_range`` is the fraction of pixel values with ``|x| > limit`` (before any clamping).
    """
    images = _check_images("images", images)
    return {
        "pixel_std": images.std().item(),
        "frac_out_of_range": (images.abs() > limit).float().mean().item(),
    }


# ----------------------------------------------------------------------------- sampling


@torch.no_grad()
def sample_images(
    models,
    cond: torch.Tensor,
    uncond: torch.Tensor,
    guider,
    num_inference_steps: int = 20,
    generator: torch.Generator | None = None,
    latents: torch.Tensor | None = None,
    chunk: int | None = None,
    config=None,
    eta: float = 0.0,
    callback: Callable | None = None,
) -> torch.Tensor:
    """Generate ``cond.shape[0]`` images with the course's DDIM sampler, in chunks.

    Args:
        models: :class:`~tutorial_lib.pretrained.PretrainedModels` (``.sampler()``, ``.unet``).
        cond, uncond: ``(N, 77, D)`` prompt and null-condition embeddings (``models.encode``);
            ``cond`` may be a list of such tensors, the prompts a ``WeightedPromptsGuidance`` composes.
        guider: a :class:`~tutorial_lib.guiders.Guider`, or a function ``rows -> Guider`` of
            the chunk's ``slice`` for guiders that hold per-image tensors (classifier labels,
            per-image weights). ``ClassifierFreeGuidance(0)`` is the unconditional model, one
            pass per step.
        num_inference_steps: DDIM steps.
        generator: draws x_T when ``latents`` is None (and the noise when ``eta > 0``).
        latents: x_T, ``(N, 3, H, W)``; give the same latents to compare settings sample by sample.
        chunk: images per sampler call (default: all at once).
        config: a :class:`~tutorial_lib.sampler.SamplerConfig` (thresholding, clipping, spacing).
        eta: η of DDIM.
        callback: the sampler's per-step ``callback(step_index, t, x_prev, pred_x0)`` (per chunk).

    Returns:
        ``(N, 3, H, W)`` samples, unclamped.
    """
    from .guiders import Guider

    conds = list(cond) if isinstance(cond, (list, tuple)) else [cond]
    _checks.shape("cond", conds[0], (None, None, None), "(N, tokens, D)")
    _checks.like("uncond", uncond, conds[0], "cond", possessive=True)
    _checks.that(isinstance(guider, Guider) or callable(guider), f"guider must be a Guider or a function rows -> Guider, got {type(guider).__name__}", TypeError)
    n = conds[0].shape[0]
    chunk = n if chunk is None else _checks.integer("chunk", chunk, 1)
    size, channels = models.unet.config.sample_size, models.unet.config.in_channels
    if latents is not None:
        _checks.shape("latents", latents, (n, channels, size, size))
    sampler = models.sampler(config, cfg_mode="two_pass")
    out = []
    for i in range(0, n, chunk):
        rows = slice(i, min(i + chunk, n))
        g = guider if isinstance(guider, Guider) else guider(rows)
        lat = None if latents is None else latents[rows]
        c = [x[rows] for x in conds] if len(conds) > 1 else conds[0][rows]
        out.append(sampler.sample((rows.stop - rows.start, channels, size, size), c, uncond[rows], g,
                                  num_inference_steps, eta=eta, generator=generator, latents=lat,
                                  callback=callback, progress=False))
    return torch.cat(out)


def _prompt_labels(prompts, generator) -> dict[str, torch.Tensor]:
    if isinstance(prompts, int) and not isinstance(prompts, bool):
        return sample_labels(_checks.integer("prompts", prompts, 1), generator)
    if isinstance(prompts, dict):
        _check_labels(prompts)
        return {a: prompts[a] for a in ATTRIBUTE_NAMES}
    raise TypeError(f"prompts must be a number of random full captions (int) or a labels dict attribute -> (P,) long tensor, got {type(prompts).__name__}")


@torch.no_grad()
def data_reference(
    judge, prompts, n_per_prompt: int, generator: torch.Generator | None = None, size: int = 32
) -> dict:
    """The same measurements on *real* images of the same captions (rendered by :mod:`shapes`).

    Returns ``{"n", **judge_accuracy, "diversity", **pixel_stats}``: the ceiling for accuracy
    (the judge's own error) and the data's diversity, the value a perfect sampler would match.
    """
    labels_p = _prompt_labels(prompts, generator)
    n_per_prompt = _checks.integer("n_per_prompt", n_per_prompt, 1)
    labels = {a: v.repeat_interleave(n_per_prompt) for a, v in labels_p.items()}
    real = render(labels, generator, size=size)
    P = labels_p["colour"].shape[0]
    return {
        "n": real.shape[0],
        **judge_accuracy(judge, real, labels),
        "diversity": diversity(real.reshape(P, n_per_prompt, *real.shape[1:])),
        **pixel_stats(real),
    }


@torch.no_grad()
def guidance_sweep(
    models,
    prompts,
    gammas: Sequence[float],
    n_per_prompt: int,
    steps: int = 20,
    generator: torch.Generator | None = None,
    chunk: int | None = None,
    keep_images: bool = False,
    make_guider: Callable[[float], object] | None = None,
    config=None,
    eta: float = 0.0,
    callback: Callable | None = None,
) -> list[dict]:
    """Judge accuracy, diversity and saturation of CFG samples at each guidance scale.

    Introduced in notebook 06. Every prompt is sampled ``n_per_prompt`` times; the initial
    noise x_T is drawn once (from ``generator``) and reused for every γ, so the rows differ
    only by the guidance scale.

    Args:
        models: :class:`~tutorial_lib.pretrained.PretrainedModels` (``encode``, ``sampler``,
            ``unet``, ``judge``).
        prompts: ``P``, a number of random full captions ("a large red circle in the top left")
            drawn with ``generator``; or their labels, a dict ``attribute -> (P,)`` long tensor.
        gammas: guidance scales γ ≥ 0 (0: the unconditional model; 1: the conditional model,
            no guidance).
        n_per_prompt: ``S`` ≥ 1 samples per prompt (≥ 2 for diversity).
        steps: DDIM steps.
        generator: the only source of randomness (labels when ``prompts`` is an int, then x_T;
            with ``eta > 0`` the per-step noise too, re-seeded identically for every γ).
        chunk: images per sampler call (default all ``P * S`` at once).
        keep_images: also store ``"images"`` ``(P * S, 3, H, W)`` and ``"captions"`` in each row.
        make_guider: ``γ -> Guider`` (default ``ClassifierFreeGuidance(γ)``); e.g.
            ``lambda g: ClassifierFreeGuidance(g, guidance_rescale=0.7)``.
        config: a :class:`~tutorial_lib.sampler.SamplerConfig` (e.g. ``thresholding=True``).
        eta: η of DDIM.
        callback: the sampler's per-step callback (see :func:`sample_images`).

    Returns:
        One dict per γ: ``gamma``, ``n``, ``colour``, ``shape``, ``size``, ``position``, ``all``
        (accuracies), ``diversity``, ``pixel_std``, ``frac_out_of_range``, ``sec_per_image``
        (wall clock of the sampling), and with ``keep_images`` ``images`` and ``captions``.
        Images are prompt-major: image ``p * S + s`` is sample ``s`` of prompt ``p``.
    """
    _checks.that(getattr(models, "judge", None) is not None, "models.judge is needed to score the samples (load_pretrained(classifiers=True))")
    _checks.that(isinstance(gammas, Sequence) and gammas, f"gammas must be a non-empty sequence of guidance scales, got {gammas!r}", TypeError)
    gammas = [_checks.real(f"gammas[{i}]", g, low=0.0) for i, g in enumerate(gammas)]
    n_per_prompt, steps = _checks.integer("n_per_prompt", n_per_prompt, 1), _checks.integer("steps", steps, 1)
    labels_p = _prompt_labels(prompts, generator)
    P = labels_p["colour"].shape[0]
    labels = {a: v.repeat_interleave(n_per_prompt) for a, v in labels_p.items()}
    captions = caption_from_labels(labels)
    cond, uncond = models.encode(captions)
    size, channels = models.unet.config.sample_size, models.unet.config.in_channels
    latents = torch.randn((len(captions), channels, size, size), generator=generator, dtype=cond.dtype,
                          device=cond.device)
    if make_guider is None:
        from .guiders import ClassifierFreeGuidance as make_guider
    noise_seed = None
    if float(eta) > 0:
        noise_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    rows = []
    for gamma in gammas:
        g = None if noise_seed is None else torch.Generator(cond.device).manual_seed(noise_seed)
        start = time.perf_counter()
        images = sample_images(models, cond, uncond, make_guider(gamma), steps, generator=g,
                               latents=latents, chunk=chunk, config=config, eta=eta, callback=callback)
        row = {"gamma": gamma, **_scores(models.judge, images, labels, P, time.perf_counter() - start)}
        if keep_images:
            row["images"], row["captions"] = images, captions
        rows.append(row)
    return rows


def _scores(judge, images: torch.Tensor, labels: dict, P: int, seconds: float) -> dict:
    """One sweep row's measurements of ``P * S`` prompt-major images sampled in ``seconds``."""
    return {
        "n": images.shape[0],
        **judge_accuracy(judge, images, labels),
        "diversity": diversity(images.reshape(P, images.shape[0] // P, *images.shape[1:])),
        **pixel_stats(images),
        "sec_per_image": seconds / images.shape[0],
    }


# ----------------------------------------------------------------------------- scenes


def _assignments() -> torch.Tensor:
    """Every injective placement of the caption's 3 object slots into the 4 cells, ``(24, 3)``."""
    import itertools

    return torch.tensor(list(itertools.permutations(range(4), 3)), dtype=torch.long)


def scene_scores(reading: dict[str, torch.Tensor], spec: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Does each image show what its caption asks? Per image, from the judge's cell readings.

    A caption's objects *bind* if the image has one distinct object per described
    object with every stated attribute (free attributes match anything); the relation
    holds if some binding also puts the first two objects in the stated relation.

    Args:
        reading: :meth:`~tutorial_lib.classifiers.SceneClassifier.read` of the images:
            ``present`` ``(N, 4)`` bool and ``colour``/``shape``/``size`` ``(N, 4)``.
        spec: :func:`tutorial_lib.scenes.caption_spec` (or ``specs_from_captions``) of their captions.

    Returns:
        ``(N,)`` bool tensors ``count`` (as many objects as described), ``binding``,
        ``relation`` (True for captions without one), ``all`` (count, binding and
        relation at once), and ``match`` ``(N, 3)`` long: the cell bound to each slot
        by the first full match (−1 where none, or the slot is empty).
    """
    from .scenes import MAX_OBJECTS, OBJECT_ATTRIBUTES, relation_holds

    cells = _assignments()  # (A, 3)
    slot_used = torch.arange(MAX_OBJECTS).view(1, -1) < spec["count"].view(-1, 1)  # (N, 3)
    ok_slots = []
    for j in range(MAX_OBJECTS):
        c = cells[:, j]
        ok = reading["present"][:, c]  # (N, A)
        for name in OBJECT_ATTRIBUTES:
            want = spec[name][:, j : j + 1]
            ok = ok & ((want < 0) | (reading[name][:, c] == want))
        ok_slots.append(ok | ~slot_used[:, j : j + 1])
    bound = torch.stack(ok_slots).all(0)  # (N, A)
    rel = relation_holds(cells[:, 0].view(1, -1), cells[:, 1].view(1, -1), spec["relation"].view(-1, 1))
    full = bound & rel
    first = torch.where(full.any(1), full.float().argmax(1), -1)
    match = torch.where((first >= 0).view(-1, 1) & slot_used, cells[first.clamp(min=0)], -1)
    count = reading["present"].sum(1) == spec["count"]
    relation = full.any(1)
    return {"count": count, "binding": bound.any(1), "relation": relation, "all": count & relation, "match": match}


def free_attribute_values(reading: dict[str, torch.Tensor], spec: dict[str, torch.Tensor],
                          match: torch.Tensor) -> dict[str, torch.Tensor]:
    """The values read for attributes the captions leave free, on the objects bound to them.

    Returns ``attribute -> (K,)`` long: one entry per (image, slot) whose caption left the
    attribute free and whose image bound the slot (``scene_scores(...)["match"]``). These
    are the samples of :func:`tutorial_lib.metrics.attribute_coverage`.
    """
    from .scenes import OBJECT_ATTRIBUTES

    rows = torch.arange(match.shape[0]).view(-1, 1).expand_as(match)
    bound = match >= 0
    out = {}
    for name in OBJECT_ATTRIBUTES:
        free = bound & (spec[name] < 0)
        out[name] = reading[name][rows[free], match[free]]
    return out
