"""The guiders after CFG on the scenes model, measured like the CFG sweep (``make eval-guiders``).

The same ``--n`` full captions, the same real reference images and the same initial noise as
``scripts/evaluate_scenes.py`` (seeded identically), so every point here is comparable with the
plain-CFG points of ``docs/results_scenes.json``. Methods (``tutorial_lib.guiders``):

- ``apg``: adaptive projected guidance with η = 0 (the parallel component removed; no norm
  threshold, no momentum — the projection alone);
- ``apg_paper``: APG as the paper's Alg. 1 writes it: the projection of the denoised predictions x̂₀,
  ``x̂₀,c + (w − 1) Δ_⊥`` (``apg`` above is diffusers' default: ε split, ``ε_u + γ Δ_⊥``);
- ``cfg_zero_star``: CFG-Zero*'s optimised scale s* alone, at 20 steps and at 5; ``…_zero_init``: with
  its zero-init of the first step too (written for flow-matching velocities; on this ε-prediction
  DDIM it sets x̂₀ = x_T/√ᾱ_T at the first step, and the run shows what that does);
- ``cfg_5_steps``: plain CFG at 5 steps, CFG-Zero*'s baseline;
- ``autoguidance``: the shipped weak U-Net as the guiding model (Karras et al. 2024);
- ``pag_unconditional``: perturbed-attention guidance on the *empty* prompt (no text at all),
  scored against the real images' features (the captions' accuracies do not apply).

Writes ``docs/results_guiders.json`` after every point and ``docs/results_guiders.md`` at the end.

    python scripts/evaluate_guiders.py                     # every method (about 30 min on 2 cores)
    python scripts/evaluate_guiders.py --n 64 --methods apg  # a quick look
    python scripts/evaluate_guiders.py --resume --methods apg_paper  # add a method to the committed results
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from evaluate_scenes import _ci, caption_set, measure, reference  # noqa: E402

from tutorial_lib.after_cfg import paper_apg  # noqa: E402
from tutorial_lib.evaluation import sample_images  # noqa: E402
from tutorial_lib.guiders import (  # noqa: E402
    AdaptiveProjectedGuidance,
    AutoGuidance,
    ClassifierFreeGuidance,
    ClassifierFreeZeroStarGuidance,
    PerturbedAttentionGuidance,
)
from tutorial_lib.pretrained import load_pretrained  # noqa: E402


def methods(models) -> dict[str, tuple]:
    """``method -> (scales, scale -> Guider, DDIM steps, prompt: "caption" | "empty")``."""
    return {
        "apg": ([3, 5, 7.5, 10, 15, 20], lambda g: AdaptiveProjectedGuidance(g, eta=0.0, norm_threshold=0.0), 20,
                "caption"),
        "apg_paper": ([3, 7.5, 15], paper_apg, 20, "caption"),
        "cfg_zero_star": ([3, 7.5, 15], lambda g: ClassifierFreeZeroStarGuidance(g, zero_init_steps=0), 20, "caption"),
        "cfg_zero_star_zero_init": ([7.5], lambda g: ClassifierFreeZeroStarGuidance(g, zero_init_steps=1), 20,
                                    "caption"),
        "cfg_5_steps": ([1, 3, 7.5], ClassifierFreeGuidance, 5, "caption"),
        "cfg_zero_star_5_steps": ([3, 7.5], lambda g: ClassifierFreeZeroStarGuidance(g, zero_init_steps=0), 5,
                                  "caption"),
        "cfg_zero_star_zero_init_5_steps": ([7.5], lambda g: ClassifierFreeZeroStarGuidance(g, zero_init_steps=1), 5,
                                            "caption"),
        "autoguidance": ([1.5, 2, 3, 5, 7.5], lambda g: AutoGuidance(models.weak_unet, g), 20, "caption"),
        "pag_unconditional": ([2, 3, 5], lambda s: PerturbedAttentionGuidance(models.unet, s), 20, "empty"),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=512, help="images per point")
    p.add_argument("--methods", nargs="+", default=None)
    p.add_argument("--chunk", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--resume", action="store_true",
                   help="keep the points already in --json and measure only the missing ones")
    p.add_argument("--json", default=str(ROOT / "docs" / "results_guiders.json"))
    p.add_argument("--markdown", default=str(ROOT / "docs" / "results_guiders.md"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = load_pretrained(world="scenes")
    table = methods(models)
    chosen = args.methods or list(table)
    results = {"config": {**vars(args), "methods": chosen, "machine": platform.processor() or platform.machine(),
                          "torch": torch.__version__}, "points": []}
    if args.resume and Path(args.json).exists():
        results["points"] = json.loads(Path(args.json).read_text())["points"]
        results["config"]["methods"] = list(dict.fromkeys([p["method"] for p in results["points"]] + chosen))
    done = {(p["method"], p["scale"]) for p in results["points"]}
    labels, captions, spec, real = caption_set("full", args.n, args.seed)  # as evaluate_scenes.py
    real_features, real_free, floor = reference(models.judge, spec, real, args.seed)
    results["reference"] = floor
    cond, uncond = models.encode(captions)
    latents = torch.randn(args.n, 3, 32, 32, generator=torch.Generator().manual_seed(args.seed + 11))
    for method in chosen:
        scales, make_guider, steps, prompt = table[method]
        c = cond if prompt == "caption" else uncond
        for scale in scales:
            if (method, scale) in done:
                continue
            t0 = time.perf_counter()
            images = sample_images(models, c, uncond, make_guider(scale), steps, latents=latents.clone(),
                                   chunk=args.chunk)
            row = measure(models.judge, images, spec, real_features, real_free, time.perf_counter() - t0)
            results["points"].append({"method": method, "scale": scale, "steps": steps, "prompt": prompt, **row})
            Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
            print(f"{method:22s} {scale:<5g} all {row['all']['value']:.3f} FD {row['frechet_distance']['value']:.1f} "
                  f"P {row['precision']['value']:.3f} R {row['recall']['value']:.3f} oor {row['out_of_range']:.4f}",
                  flush=True)
    Path(args.markdown).write_text(to_markdown(results))
    return 0


def to_markdown(results: dict) -> str:
    cfg, floor = results["config"], results["reference"]
    lines = ["# Scenes: guidance after CFG", "",
             f"Written by `scripts/evaluate_guiders.py` ({cfg['n']} full captions per point, the captions, real "
             f"images and initial noise of `docs/results_scenes.md`; seed {cfg['seed']}, torch {cfg['torch']}). "
             "Intervals: Wilson 95 % for rates, bootstrap 95 % for the distribution metrics. FD is the Fréchet "
             "distance in the judge's feature space (not FID). `pag_unconditional` samples the empty prompt: its "
             "caption accuracies are not meaningful (shown for completeness); its FD/precision/recall compare "
             "with the real images of random scenes.", "",
             f"Noise floor (two independent real sets): FD {floor['frechet_distance']:.1f}, precision "
             f"{floor['precision']:.3f}, recall {floor['recall']:.3f}.", "",
             "| method | scale | steps | all % | binding % | relation % | count % | FD | precision % | recall % | "
             "out of range % | s/image |", "|" + "---|" * 12]
    for r in results["points"]:
        lines.append(f"| {r['method']} | {r['scale']:g} | {r['steps']} | {_ci(r['all'])} | {_ci(r['binding'])} | "
                     f"{_ci(r['relation'])} | {_ci(r['count'])} | {_ci(r['frechet_distance'], pct=False)} | "
                     f"{_ci(r['precision'])} | {_ci(r['recall'])} | {100 * r['out_of_range']:.2f} | "
                     f"{r['seconds_per_image']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
