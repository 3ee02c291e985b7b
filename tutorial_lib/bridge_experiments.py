"""The experiments of notebook 10 on the course's trained scenes model: A1111's knobs, measured.

Above the sampler (it runs it). Three questions, each answered on the same captions and the
same initial noise, judged by the scenes classifier (never used to guide):

1. :func:`min_uncond_rows` — what does ``s_min_uncond`` (skip the unconditional pass below a
   noise level σ) save in denoiser calls, and what does it cost in fidelity and recall?
2. :func:`emphasis_rows` — on two-object captions "A and B", does emphasis ``A and (B:w)``
   (A1111: scale B's encoder features by w, rescale the context's mean) make B appear more
   often, and how does that compare with composing ``A and B AND B :w`` (a second guided
   prompt, one more denoiser pass per step)?
3. :func:`negative_prompt_without_uncond` — a guidance-distilled or few-step model sampled
   with ``guidance_scale ≤ 1`` never evaluates the unconditional branch, so a negative prompt
   cannot change its output: shown on the pipeline's own code path (latents equal).

``scripts/evaluate_a1111.py`` runs 1 and 2 at N = 256 and commits ``docs/results_a1111.*``;
the notebook runs a small live version of each, labelled with its n.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from . import _checks
from .a1111 import MinUncondGuidance, encode_prompt_with_emphasis
from .evaluation import RESULTS_DIR, load_committed, sample_images, wilson_interval
from .guiders import ClassifierFreeGuidance, WeightedPromptsGuidance
from .scenes import (
    KINDS,
    MAX_OBJECTS,
    OBJECT_ATTRIBUTES,
    caption_from_labels,
    caption_spec,
    sample_labels,
)

__all__ = ["committed_results", "reading", "two_object_scenes", "object_found", "second_objects", "emphasised_captions", "generate",
           "min_uncond_rows", "emphasis_rows", "negative_prompt_without_uncond"]



def committed_results(results_dir: str | Path = RESULTS_DIR) -> dict:
    """The committed N = 256 run of ``scripts/evaluate_a1111.py``: ``{"config", "sigmas",
    "reference", "min_uncond": [row, ...], "emphasis": [row, ...]}`` (rows as returned by
    :func:`min_uncond_rows` and :func:`emphasis_rows`)."""
    return load_committed("results_a1111.json", results_dir)


def _versus(row: dict, base: dict, key: str, pct: bool = True) -> str:
    """"value [low, high] (base's value; higher / lower / within the intervals)" for one metric."""
    r, b, k = row[key], base[key], 100 if pct else 1
    verdict = "higher" if r["low"] > b["high"] else "lower" if r["high"] < b["low"] else "intervals overlap"
    return f"{k * r['value']:.1f} [{k * r['low']:.1f}, {k * r['high']:.1f}] vs {k * b['value']:.1f} ({verdict})"


def _paired(row: dict, base: dict, key: str) -> str:
    """"x % vs y %, paired difference d [lo, hi] points (verdict)" for one rate of an emphasis row."""
    d = row["paired_difference"][key]
    verdict = "higher" if d["low"] > 0 else "lower" if d["high"] < 0 else "no difference shown"
    return (f"{100 * row[key]['value']:.1f} % vs {100 * base[key]['value']:.1f} %, paired difference "
            f"{100 * d['value']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}] points ({verdict})")


def reading(results: dict, part: str | None = None) -> list[str]:
    """One line per row of :func:`committed_results` (``part`` "min_uncond" or "emphasis", default
    both), computed from the numbers so that a rerun of ``make eval-a1111`` rewrites it: each
    setting against plain CFG on the same captions and noise: for ``s_min_uncond`` "higher"/"lower"
    only where the two 95 % intervals do not overlap (conservative), for emphasis from the 95 %
    interval of the paired per-image difference."""
    _checks.one_of("part", part, (None, "min_uncond", "emphasis"))
    lines = []
    base = next(r for r in results["min_uncond"] if r["s_min_uncond"] == 0)
    for r in results["min_uncond"]:
        if r is not base:
            lines.append(f"s_min_uncond {r['s_min_uncond']:g}{' (all steps)' if r['all_steps'] else ''}: "
                         f"{r['calls_per_image']}/{base['calls_per_image']} U-Net calls; binding % "
                         f"{_versus(r, base, 'binding')}; FD {_versus(r, base, 'frechet_distance', False)}; "
                         f"recall % {_versus(r, base, 'recall')}")
    if part == "emphasis":
        lines = []
    plain = next(r for r in results["emphasis"] if r["method"] == "plain")
    for r in results["emphasis"] if part != "min_uncond" else []:
        if r is not plain:
            lines.append(f"{r['method']} w = {r['weight']:g}: " + "; ".join(
                f"{label} {_paired(r, plain, key)}" for label, key in
                (("B found", "second_found"), ("A found", "first_found"), ("both right", "all"))))
    return lines


def two_object_scenes(n: int, seed: int = 0) -> tuple[dict, list[str], dict]:
    """``(labels, captions, spec)`` of ``n`` seeded scenes with captions "A and B" (two objects)."""
    n = _checks.positive("n", n)
    g = torch.Generator().manual_seed(seed)
    labels = sample_labels(20 * n, g)  # "and" captions with two objects are about 1/10 of all
    keep = ((labels["kind"] == KINDS.index("and")) & (labels["count"] == 2)).nonzero().squeeze(1)[:n]
    labels = {k: v[keep] for k, v in labels.items()}
    return labels, caption_from_labels(labels), caption_spec(labels)


def object_found(reading: dict[str, torch.Tensor], spec: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(N, 3)`` bool: is the caption's j-th object in the image — some present cell with
    every attribute the caption states for it (False for slots the caption does not use)?
    Unlike ``scene_scores``' binding, two objects may be found in the same cell."""
    used = torch.arange(MAX_OBJECTS).view(1, -1) < spec["count"].view(-1, 1)
    found = []
    for j in range(MAX_OBJECTS):
        ok = reading["present"].clone()  # (N, cells)
        for name in OBJECT_ATTRIBUTES:
            want = spec[name][:, j : j + 1]
            ok &= (want < 0) | (reading[name] == want)
        found.append(ok.any(1))
    return torch.stack(found, 1) & used


def second_objects(captions: list[str]) -> list[str]:
    """"A and B" → "B" (the second object's noun phrase)."""
    return [c.split(" and ", 1)[1] for c in captions]


def emphasised_captions(captions: list[str], weight: float) -> list[str]:
    """"A and B" → "A and (B:w)", A1111's emphasis syntax on the second object."""
    return [f"{c.split(' and ', 1)[0]} and ({b}:{weight:g})" for c, b in zip(captions, second_objects(captions),
                                                                              strict=True)]


@torch.no_grad()
def generate(models, prompt_embeds, negative_prompt_embeds: torch.Tensor, guider, latents: torch.Tensor,
             num_inference_steps: int = 20, chunk: int = 16) -> torch.Tensor:
    """Images ``(N, 3, H, W)`` from the scenes model, ``chunk`` at a time, from the given x_T:
    ``evaluation.sample_images`` in this module's argument order (``prompt_embeds`` one
    ``(N, 77, D)`` tensor or a list of them for weighted prompts)."""
    return sample_images(models, prompt_embeds, negative_prompt_embeds, guider, num_inference_steps,
                         latents=latents, chunk=chunk)


def _paired_difference(ok: torch.Tensor, base: torch.Tensor) -> dict:
    """Mean of ``ok − base`` over the same images (paired: same caption, same x_T) with a normal
    95 % interval, ``±1.96 s/√n`` of the per-image differences in {−1, 0, 1}."""
    d = ok.float() - base.float()
    half = 1.96 * float(d.std()) / d.numel() ** 0.5 if d.numel() > 1 else 0.0
    return {"value": float(d.mean()), "low": float(d.mean()) - half, "high": float(d.mean()) + half}


def _rate(ok: torch.Tensor) -> dict:
    k, n = int(ok.sum()), ok.numel()
    low, high = wilson_interval(k, n)
    return {"value": k / n, "low": low, "high": high, "n": n}


def min_uncond_rows(models, captions: list[str], latents: torch.Tensor, thresholds=(0.0, 0.5, 1.0, 2.0, 4.0),
                    guidance_scale: float = 3.0, num_inference_steps: int = 20, measure=None,
                    chunk: int = 16, all_steps: bool = False) -> list[dict]:
    """One row per ``s_min_uncond``: denoiser calls per image, skipped steps, wall seconds, and
    ``measure(images)``'s numbers (e.g. fidelity, Fréchet distance, recall; default: the judge's
    binding rate). σ_t = √((1 − ᾱ_t)/ᾱ_t) of the scenes schedule; 0 is plain CFG. The skipped
    steps are the same in every chunk (they depend on the schedule only); ``all_steps`` is A1111's
    "NGMS all steps" (skip every step below the threshold, not every other one)."""
    from .evaluation import scene_scores
    from .scenes import specs_from_captions

    cond, uncond = models.encode(captions)
    spec = specs_from_captions(captions)
    measure = measure or (lambda images: {"binding": _rate(scene_scores(models.judge.read(images.clamp(-1, 1)),
                                                                        spec)["binding"])})
    rows = []
    for s in thresholds:
        guider = MinUncondGuidance(guidance_scale, s_min_uncond=s, all_steps=all_steps)
        t0 = time.perf_counter()
        images = generate(models, cond, uncond, guider, latents, num_inference_steps, chunk)
        seconds = time.perf_counter() - t0
        calls = 2 * num_inference_steps - guider.skipped_steps
        rows.append({"s_min_uncond": s, "all_steps": all_steps, "skipped_steps": guider.skipped_steps,
                     "calls_per_image": calls, "seconds": seconds, **measure(images)})
    return rows


def emphasis_rows(models, captions: list[str], spec: dict, latents: torch.Tensor, emphasis_weights=(1.2, 1.5, 2.0),
                  and_weights=(0.5, 1.0), guidance_scale: float = 3.0, num_inference_steps: int = 20,
                  chunk: int = 16) -> list[dict]:
    """Emphasis on the second object vs a second ``AND`` prompt for it, on "A and B" captions.

    Rows: ``plain`` (w = 1), ``emphasis`` ``A and (B:w)`` with CFG, and ``AND`` — prompts
    ``[A and B, B]`` with weights ``[1, w]`` in ``WeightedPromptsGuidance`` (A1111's
    ``A and B AND B :w``, one more denoiser pass per step). Each row: how often the first and the
    second object are found (:func:`object_found`), both bound to distinct cells with the right
    count (``scene_scores``' ``all``), denoiser calls per step, seconds.
    """
    from .evaluation import scene_scores

    negative = models.encode([""] * len(captions))[0]
    cfg = ClassifierFreeGuidance(guidance_scale)
    second = models.encode(second_objects(captions))[0]
    plain = models.encode(captions)[0]
    settings = [("plain", 1.0, plain, cfg, 2)]
    for w in emphasis_weights:
        embeds = encode_prompt_with_emphasis(models.tokenizer, models.text_encoder, emphasised_captions(captions, w))
        settings.append(("emphasis", w, embeds, cfg, 2))
    for w in and_weights:
        settings.append(("AND", w, [plain, second], WeightedPromptsGuidance([1.0, w], guidance_scale), 3))
    rows, base = [], None
    for method, w, embeds, guider, calls in settings:
        t0 = time.perf_counter()
        images = generate(models, embeds, negative, guider, latents, num_inference_steps, chunk)
        seconds = time.perf_counter() - t0
        reading_ = models.judge.read(images.clamp(-1, 1))
        found = object_found(reading_, spec)
        flags = {"first_found": found[:, 0], "second_found": found[:, 1], "all": scene_scores(reading_, spec)["all"]}
        base = base or flags  # the first setting, plain CFG, is every row's baseline
        rows.append({"method": method, "weight": w, **{k: _rate(v) for k, v in flags.items()},
                     "paired_difference": {k: _paired_difference(v, base[k]) for k, v in flags.items()},
                     "calls_per_step": calls, "seconds": seconds})
    return rows


@torch.no_grad()
def negative_prompt_without_uncond(pipe, prompt: str, negative_prompt: str, latents: torch.Tensor,
                                   guidance_scale: float = 1.0, num_inference_steps: int = 4) -> dict:
    """Run ``pipe`` (a ``StableDiffusionPipeline``) with and without ``negative_prompt`` at
    ``guidance_scale`` and report ``{"do_classifier_free_guidance", "max_abs_difference"}``:
    at γ ≤ 1 diffusers skips the unconditional branch (where the negative prompt would enter),
    so the latents are equal — what a guidance-distilled or turbo/LCM model, sampled at γ ≤ 1,
    does with a negative prompt: nothing."""
    common = {"num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale,
              "output_type": "latent", "latents": latents}
    without = pipe(prompt, **common).images
    with_negative = pipe(prompt, negative_prompt=negative_prompt, **common).images
    return {"do_classifier_free_guidance": bool(pipe.do_classifier_free_guidance),
            "max_abs_difference": float((without - with_negative).abs().max())}
