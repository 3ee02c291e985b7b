"""AUTOMATIC1111's knobs on the scenes model, measured (``make eval-a1111``): notebook 10's table.

Two experiments of ``tutorial_lib.bridge_experiments``, 20 DDIM steps, CFG γ = 3 (the γ of the
highest binding in ``docs/results_scenes.md``):

- ``min_uncond``: ``s_min_uncond`` ∈ {0, 0.5, 1, 2, 4} (σ thresholds; 0 is plain CFG), every other
  step below the threshold (A1111's default) and all of them (``all_steps``); the full captions,
  real images and initial noise of ``scripts/evaluate_scenes.py`` (seeded identically), so the
  s = 0 row equals that sweep's γ = 3 point. Per row: every number of the CFG sweep (binding,
  Fréchet distance, precision/recall, ...), denoiser calls per image and seconds per image.
- ``emphasis``: N two-object captions "A and B"; how often each object appears with plain CFG,
  with A1111's emphasis ``A and (B:w)`` and with a second prompt ``A and B AND B :w``.

Writes ``docs/results_a1111.json`` and ``docs/results_a1111.md``.

    python scripts/evaluate_a1111.py              # both (about 20 min on 2 cores)
    python scripts/evaluate_a1111.py --n 32 --json /tmp/a.json --markdown /tmp/a.md   # a quick look
    python scripts/evaluate_a1111.py --parts emphasis  # rerun one experiment, keep the other
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

from tutorial_lib.a1111 import k_diffusion_sigma  # noqa: E402
from tutorial_lib.bridge_experiments import (  # noqa: E402
    emphasis_rows,
    min_uncond_rows,
    reading,
    two_object_scenes,
)
from tutorial_lib.pretrained import load_pretrained  # noqa: E402

THRESHOLDS = [0.0, 0.5, 1.0, 2.0, 4.0]


def run_min_uncond(models, args) -> tuple[list[dict], dict]:
    labels, captions, spec, real = caption_set("full", args.n, args.seed)  # as evaluate_scenes.py
    real_features, real_free, floor = reference(models.judge, spec, real, args.seed)
    latents = torch.randn(args.n, 3, 32, 32, generator=torch.Generator().manual_seed(args.seed + 11))

    def scores(images):
        return measure(models.judge, images, spec, real_features, real_free, 0.0)

    rows = []
    for all_steps in (False, True):
        thresholds = THRESHOLDS if not all_steps else THRESHOLDS[1:]
        for row in min_uncond_rows(models, captions, latents, thresholds, args.guidance_scale, args.steps,
                                   scores, args.chunk, all_steps=all_steps):
            row["seconds_per_image"] = row["seconds"] / args.n
            rows.append(row)
            print(f"s_min_uncond {row['s_min_uncond']:<4g} all_steps={all_steps!s:5} calls {row['calls_per_image']} "
                  f"binding {row['binding']['value']:.3f} FD {row['frechet_distance']['value']:.1f} "
                  f"R {row['recall']['value']:.3f} {row['seconds_per_image']:.3f} s/img", flush=True)
    return rows, floor


def run_emphasis(models, args) -> list[dict]:
    labels, captions, spec = two_object_scenes(args.n, args.seed + 200)
    latents = torch.randn(args.n, 3, 32, 32, generator=torch.Generator().manual_seed(args.seed + 211))
    rows = emphasis_rows(models, captions, spec, latents, guidance_scale=args.guidance_scale,
                         num_inference_steps=args.steps, chunk=args.chunk)
    for r in rows:
        r["seconds_per_image"] = r["seconds"] / args.n
        print(f"{r['method']:8s} w={r['weight']:<4g} first {r['first_found']['value']:.3f} "
              f"second {r['second_found']['value']:.3f} all {r['all']['value']:.3f}", flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=256, help="images per row")
    p.add_argument("--guidance-scale", type=float, default=3.0)
    p.add_argument("--steps", type=int, default=20, help="DDIM steps")
    p.add_argument("--chunk", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=str(ROOT / "docs" / "results_a1111.json"))
    p.add_argument("--markdown", default=str(ROOT / "docs" / "results_a1111.md"))
    p.add_argument("--parts", nargs="+", default=["min_uncond", "emphasis"], choices=["min_uncond", "emphasis"],
                   help="which experiments to run; the others are kept from --json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = load_pretrained(world="scenes")
    t0 = time.perf_counter()
    previous = json.loads(Path(args.json).read_text()) if Path(args.json).exists() else {}
    options = {k: v for k, v in vars(args).items() if k not in ("json", "markdown")}
    results = {"config": {**options, "machine": platform.processor() or platform.machine(), "torch": torch.__version__},
               "sigmas": {str(t): k_diffusion_sigma(float(models.schedule.alphas_cumprod[t])) for t in (999, 400, 200, 100)}}
    if "min_uncond" in args.parts:
        results["min_uncond"], results["reference"] = run_min_uncond(models, args)
        Path(args.json).write_text(json.dumps({**previous, **results}, indent=1) + "\n")
    else:
        results["min_uncond"], results["reference"] = previous["min_uncond"], previous["reference"]
    results["emphasis"] = run_emphasis(models, args) if "emphasis" in args.parts else previous["emphasis"]
    results["config"]["wall_seconds"] = time.perf_counter() - t0
    Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    Path(args.markdown).write_text(to_markdown(results))
    return 0


def to_markdown(results: dict) -> str:
    cfg = results["config"]
    sig = ", ".join(f"σ({t}) = {s:.2f}" for t, s in results["sigmas"].items())
    lines = ["# Scenes: AUTOMATIC1111's knobs", "",
             f"Written by `scripts/evaluate_a1111.py` ({cfg['n']} images per row, {cfg['steps']} DDIM steps, CFG "
             f"γ = {cfg['guidance_scale']:g}, seed {cfg['seed']}, torch {cfg['torch']}, {cfg['threads']} threads). "
             "Intervals: Wilson 95 % for rates, bootstrap 95 % for the distribution metrics; FD is the Fréchet "
             "distance in the judge's feature space. Seconds are wall time on the machine that ran the script, "
             "shared with other jobs when this table was made: U-Net calls per image are the machine-independent "
             "cost, and `make bench` times s_min_uncond on an idle machine.", "",
             "## s_min_uncond: skip the unconditional pass at low noise", "",
             f"The scenes schedule's noise levels: {sig}. Full captions, the initial noise of the CFG sweep.", "",
             "| s_min_uncond | skipped | calls / image | binding % | all % | FD | precision % | recall % | s/image |",
             "|" + "---|" * 9]
    for r in results["min_uncond"]:
        label = f"{r['s_min_uncond']:g}" + (" (all steps)" if r["all_steps"] else "")
        lines.append(f"| {label} | {r['skipped_steps']} | {r['calls_per_image']} | {_ci(r['binding'])} | "
                     f"{_ci(r['all'])} | {_ci(r['frechet_distance'], pct=False)} | {_ci(r['precision'])} | "
                     f"{_ci(r['recall'])} | {r['seconds_per_image']:.3f} |")
    lines += ["", "## Prompt emphasis (B:w) vs a second prompt AND B :w", "",
              "Two-object captions \"A and B\". *first* / *second*: the object is in the image with every attribute "
              "the caption gives it; *all*: both, in distinct cells, and nothing else (the sweep's `all`).", "",
              "| method | w | first % | second % | all % | passes / step | s/image |", "|" + "---|" * 7]
    for r in results["emphasis"]:
        lines.append(f"| {r['method']} | {r['weight']:g} | {_ci(r['first_found'])} | {_ci(r['second_found'])} | "
                     f"{_ci(r['all'])} | {r['calls_per_step']} | {r['seconds_per_image']:.3f} |")
    lines += ["", "## Reading (computed from the tables; each setting against plain CFG, same captions and noise)", "",
              *(f"- {line}" for line in reading(results))]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
