"""Guidance after CFG, measured: the experiments of notebook 09.

Introduced in notebook 09. Two worlds, the same guiders (``tutorial_lib.guiders``):

- **the scenes model** — the committed N = 512 sweeps (``docs/results_scenes.json`` for plain
  CFG and its remedies, ``docs/results_guiders.json`` for the methods after CFG), read into one
  list of rows by :func:`committed_rows`;
- **the exact 2-D mixture** (``mixture.example_mixture_2d``), where the oracle denoiser has no
  error at all, so whatever a guider samples is the guider's own doing and can be set beside
  the tilted target p_γ(x | c) ∝ p(x | c)^γ p(x)^(1−γ) (``tilted.tilted_target``):
  :func:`mixture_guiders`, :func:`sample_mixture`, :func:`mixture_report`.

Autoguidance on the mixture needs a *weaker model of the same task*: :func:`weaker_mixture`
gives the oracle of the same components with inflated covariances — a model that has learnt
where the modes are but not how narrow they are, the kind of error Karras et al. (2024)
describe for a smaller or less trained network.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import torch

from . import metrics, scenes
from .evaluation import OUT_OF_RANGE_LIMIT, RESULTS_DIR, load_committed, sample_images, scene_scores
from .guiders import (
    AdaptiveProjectedGuidance,
    AutoGuidance,
    ClassifierFreeGuidance,
    ClassifierFreeZeroStarGuidance,
    Guider,
    PerturbedAttentionGuidance,
)
from .mixture import GaussianMixture, OracleDenoiser
from .sampler import ConditionalDDIMSampler, SamplerConfig
from .tilted import TiltedTarget, tilted_target
from .utils import torch_threads

__all__ = ["RESULTS_DIR", "committed_rows", "reference_floor", "paper_apg", "scene_guiders", "compare_on_scenes", "weaker_mixture", "mixture_guiders", "sample_mixture",
           "mixture_target", "energy_distance", "mixture_report"]


# the plain-CFG variants of evaluate_scenes.py, under the names the chapter uses
_SCENES_VARIANTS = {"plain": "cfg", "rescale": "cfg_rescale", "dynamic": "cfg_dynamic_threshold",
                    "interval": "cfg_interval"}
METRICS = ("all", "binding", "relation", "count", "frechet_distance", "precision", "recall")


# ============================================================== the committed scenes sweeps
def committed_rows(results_dir: Path | str = RESULTS_DIR) -> list[dict]:
    """Every committed scenes point on full captions as one row: ``{"method", "scale", "steps",
    "all", "binding", "relation", "count", "frechet_distance", "precision", "recall"`` (each a
    ``{"value", "low", "high"}`` dict with its 95 % interval) ``, "out_of_range",
    "seconds_per_image"}``, sorted by method then scale.

    Methods: ``cfg`` (plain), ``cfg_rescale`` (φ = 0.7), ``cfg_dynamic_threshold``,
    ``cfg_interval`` from ``results_scenes.json``; ``apg``, ``apg_x0``, ``cfg_zero_star``,
    ``autoguidance``, ``pag_unconditional``, ``cfg_5_steps``, … from ``results_guiders.json``.
    Both were run on the same 512 captions and the same initial noise, so rows compare directly.
    """
    scenes = load_committed("results_scenes.json", results_dir)
    guiders = load_committed("results_guiders.json", results_dir)
    steps = scenes["config"]["steps"]
    rows = [_row(_SCENES_VARIANTS[p["variant"]], p["guidance_scale"], steps, p)
            for p in scenes["points"] if p["captions"] == "full"]
    rows += [_row(p["method"], p["scale"], p["steps"], p) for p in guiders["points"]]
    return sorted(rows, key=lambda r: (r["method"], r["scale"]))


def _row(method: str, scale: float, steps: int, point: dict) -> dict:
    return {"method": method, "scale": scale, "steps": steps, **{k: point[k] for k in METRICS},
            "out_of_range": point["out_of_range"], "seconds_per_image": point["seconds_per_image"]}


def paper_apg(w: float) -> AdaptiveProjectedGuidance:
    """APG as the paper's Alg. 1 writes it, at scale w ≥ 1: x̂₀,c + (w − 1) Δ_⊥ on the denoised
    predictions (η = 0, no norm threshold, no momentum: the projection alone)."""
    return AdaptiveProjectedGuidance(w - 1, eta=0.0, norm_threshold=0.0, space="x0", use_original_formulation=True)


# ============================================================== live runs on the scenes model
def scene_guiders(models) -> dict[str, tuple[Guider, str, SamplerConfig | None]]:
    """``label -> (guider, "caption" | "empty", sampler config)`` for the chapter's live comparison
    on the scenes model (``models = load_pretrained(world="scenes")``, which has ``weak_unet``)."""
    return {
        "CFG γ = 1 (no guidance)": (ClassifierFreeGuidance(1.0), "caption", None),
        "CFG γ = 3": (ClassifierFreeGuidance(3.0), "caption", None),
        "CFG γ = 15": (ClassifierFreeGuidance(15.0), "caption", None),
        "CFG γ = 15 + rescale φ = 0.7": (ClassifierFreeGuidance(15.0, guidance_rescale=0.7), "caption", None),
        "CFG γ = 15 + dynamic thresholding": (ClassifierFreeGuidance(15.0), "caption",
                                              SamplerConfig(thresholding=True)),
        "APG (paper) w = 15": (paper_apg(15.0), "caption", None),
        "autoguidance γ = 2": (AutoGuidance(models.weak_unet, 2.0), "caption", None),
        "PAG s = 3, empty prompt": (PerturbedAttentionGuidance(models.unet, 3.0), "empty", None),
    }


def compare_on_scenes(models, labels: dict[str, torch.Tensor], guiders: dict, num_inference_steps: int,
                      latents: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, dict]]:
    """Run every guider of ``guiders`` (as :func:`scene_guiders` gives them) on the captions of
    ``labels`` from the same ``latents`` ``(N, 3, H, W)``.

    Returns ``(images, scores)``: ``label -> (N, 3, H, W)`` unclamped samples, and ``label ->
    {"all", "binding", "count"``: ``(N,)`` bool judge readings (:func:`evaluation.scene_scores`)
    ``, "out_of_range"``: the fraction of pixel values outside ±``OUT_OF_RANGE_LIMIT``}.
    """
    captions, spec = scenes.caption_from_labels(labels), scenes.caption_spec(labels)
    cond, uncond = models.encode(captions)
    images, scores = {}, {}
    for label, (guider, prompt, config) in guiders.items():
        context = cond if prompt == "caption" else uncond
        x = sample_images(models, context, uncond, guider, num_inference_steps, latents=latents.clone(),
                          config=config)
        reading = scene_scores(models.judge.read(x.clamp(-1, 1)), spec)
        images[label] = x
        scores[label] = {k: reading[k] for k in ("all", "binding", "count")}
        scores[label]["out_of_range"] = float((x.abs() > OUT_OF_RANGE_LIMIT).double().mean())
    return images, scores


# ============================================================== the exact 2-D mixture
def weaker_mixture(mixture: GaussianMixture, inflation: float = 2.0) -> GaussianMixture:
    """The same components, weights and labels with every covariance × ``inflation``: the
    "weak model" of autoguidance on the mixture (it knows the modes, not their width)."""
    return GaussianMixture(mixture.weights, mixture.means, mixture.covariances * inflation,
                           labels=mixture.labels, num_classes=mixture.num_classes, schedule=mixture.schedule)


def mixture_guiders(mixture: GaussianMixture, inflation: float = 2.0) -> dict[str, Callable[[float], Guider]]:
    """``name -> (γ -> Guider)`` for every guider that applies to the mixture's oracle.

    Perturbed-attention guidance is absent: the oracle has no attention to perturb.
    Autoguidance uses the oracle of :func:`weaker_mixture` as its weak model. APG is the paper's
    form at scale w (``x̂₀,c + (w − 1) Δ_⊥`` on the denoised predictions), so γ ≥ 1.
    """
    weak = OracleDenoiser(weaker_mixture(mixture, inflation))
    return {
        "CFG": lambda g: ClassifierFreeGuidance(g),
        "CFG + rescale 0.7": lambda g: ClassifierFreeGuidance(g, guidance_rescale=0.7),
        "APG (paper: x̂₀, η = 0)": paper_apg,
        "CFG-Zero* (s* only)": lambda g: ClassifierFreeZeroStarGuidance(g, zero_init_steps=0),
        "autoguidance": lambda g: AutoGuidance(weak, g),
    }


def sample_mixture(mixture: GaussianMixture, guider: Guider, c: int, n: int, num_inference_steps: int = 50,
                   generator: torch.Generator | None = None, denoiser: Callable | None = None) -> torch.Tensor:
    """``n`` samples ``(n, d)`` float64 of class ``c`` from ``mixture``'s oracle (or ``denoiser``)
    with ``guider``: DDIM, η = 0, trailing spacing, one torch thread (many tiny operations)."""
    model = OracleDenoiser(mixture) if denoiser is None else denoiser
    sampler = ConditionalDDIMSampler(model, mixture.schedule, SamplerConfig(timestep_spacing="trailing"),
                                     cfg_mode="batched")
    cond = mixture.condition_context(c, n, dtype=torch.float64)
    null = mixture.condition_context(None, n, dtype=torch.float64)
    with torch_threads(1):
        return sampler.sample((n, mixture.dim), cond, null, guider, num_inference_steps, generator=generator,
                              progress=False)


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """The energy distance (Székely & Rizzo 2013) between samples ``x`` ``(n, d)`` and ``y``
    ``(m, d)``:  D² = 2 E‖X − Y‖ − E‖X − X′‖ − E‖Y − Y′‖  (V-statistic; 0 iff the laws agree)."""
    x, y = x.double(), y.double()
    return float(2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean())


@lru_cache(maxsize=64)
def mixture_target(mixture: GaussianMixture, c: int, gamma: float) -> TiltedTarget:
    """``tilted_target(mixture, c, γ)`` on a 128² grid (its ``grid_error`` is ~1e-6 for the
    example mixture, and it costs a tenth of the default 400² grid), cached per (mixture, c, γ)."""
    return tilted_target(mixture, c, gamma, grid_size=128)


def mixture_report(mixture: GaussianMixture, samples: torch.Tensor, c: int, gamma: float,
                   generator: torch.Generator | None = None) -> dict[str, float]:
    """How ``samples`` of class ``c`` compare with the class and with the tilted target at γ.

    Returns ``{"fidelity"``: mean exact p(c | x) at t = 0, ``"precision"``, ``"recall"``: k-NN
    (k = 3) against as many exact samples of p(x | c), ``"energy_to_target"``: energy distance to
    as many samples of p_γ, ``"target_floor"``: the same between two independent target sets
    (what "equal" looks like at this n), ``"target_fidelity"``: p_γ's own mean p(c | x)``}``.
    """
    n = samples.shape[0]
    target = mixture_target(mixture, c, float(gamma))
    draws = [target.sample(n, generator) for _ in range(2)]
    real = mixture.sample(n, c, generator)
    with torch_threads(1):  # the same sums on every machine and thread count
        return _report(mixture, samples, c, draws, real)


def _report(mixture, samples, c, draws, real) -> dict[str, float]:
    pr = metrics.precision_recall(real, samples.double())
    return {"fidelity": _fidelity(mixture, samples, c), "precision": pr["precision"], "recall": pr["recall"],
            "energy_to_target": energy_distance(samples, draws[0]),
            "target_floor": energy_distance(draws[0], draws[1]),
            "target_fidelity": _fidelity(mixture, draws[0], c)}


def _fidelity(mixture: GaussianMixture, x: torch.Tensor, c: int) -> float:
    return float(mixture.class_posterior(x.double())[..., c].mean())


def reference_floor(results_dir: Path | str = RESULTS_DIR) -> float:
    """The Fréchet distance between two independent real sets of the full captions (the noise
    floor of the committed sweeps: what "equal to the data" looks like at N = 512)."""
    return load_committed("results_scenes.json", results_dir)["reference"]["full"]["frechet_distance"]
