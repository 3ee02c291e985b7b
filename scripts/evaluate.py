"""Evaluate the shipped models: guidance-scale sweep, classifier guidance, negative prompts.

``make eval`` runs this script; its table is committed as ``docs/results.md``.

For ``--prompts`` random full captions ("a large red circle in the top left"),
each sampled with ``--seeds`` different seeds (``prompts * seeds >= 512``
images per setting), the course's :class:`ConditionalDDIMSampler` generates
images at every guidance scale γ of ``--gammas`` and for every variant of
``--variants``:

- ``plain``: DDIM (η = 0), no thresholding, no rescale;
- ``dynamic``: dynamic thresholding (Imagen; ratio 0.995) of x̂₀;
- ``rescale``: guidance rescale φ = 0.7 (Lin et al. 2023);

and reports per setting the judge's accuracy for colour, shape, size and
position (and all four at once), a diversity measure (the mean pairwise RMS
pixel distance, in [0, 1] units, between the samples of the same prompt;
the same measure on real data of those prompts is the reference), and the
seconds per image on this machine.

γ = 0 is the unconditional model (sampled as γ = 1 on the empty prompt, the
same prediction for half the cost); γ = 1 is the conditional model without
guidance.

Also: classifier guidance (the noise-robust classifier's joint log-probability
of the caption's labels guiding the *unconditional* model) at a few scales, and
a negative-prompt experiment ("a circle" with negative prompt "red" vs the
empty negative prompt: the fraction of red samples).

Results go to a JSON file (written after every setting, so a partial run keeps
what it measured) and to a Markdown table.

    python scripts/evaluate.py                       # the full evaluation
    python scripts/evaluate.py --prompts 16 --seeds 2 --gammas 1 3  # a quick look
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

from tutorial_lib import shapes  # noqa: E402
from tutorial_lib.classifiers import ATTRIBUTE_ORDER, JointLabelClassifier, joint_label_index  # noqa: E402
from tutorial_lib.evaluation import sample_images  # noqa: E402
from tutorial_lib.guiders import ClassifierFreeGuidance, ClassifierGuidance  # noqa: E402
from tutorial_lib.pretrained import load_pretrained  # noqa: E402
from tutorial_lib.sampler import SamplerConfig  # noqa: E402

_THRESHOLDING = SamplerConfig(thresholding=True, dynamic_thresholding_ratio=0.995)
VARIANTS = {  # variant -> (γ -> Guider, SamplerConfig)
    "plain": (ClassifierFreeGuidance, None),
    "dynamic": (ClassifierFreeGuidance, _THRESHOLDING),
    "rescale": (lambda g: ClassifierFreeGuidance(g, guidance_rescale=0.7), None),
    "dynamic+rescale": (lambda g: ClassifierFreeGuidance(g, guidance_rescale=0.7), _THRESHOLDING),
}


def judge_scores(judge, images, labels: dict[str, torch.Tensor]) -> dict[str, float]:
    with torch.no_grad():
        pred = judge.predict(images.clamp(-1, 1))
    correct = {a: (pred[a] == labels[a]) for a in ATTRIBUTE_ORDER}
    out = {a: correct[a].float().mean().item() for a in ATTRIBUTE_ORDER}
    out["all"] = torch.stack([correct[a] for a in ATTRIBUTE_ORDER]).all(0).float().mean().item()
    return out


def diversity(images: torch.Tensor, n_prompts: int, n_seeds: int) -> float:
    """Mean pairwise RMS distance (images in [0, 1]) between samples of the same prompt.

    ``images`` is ordered prompt-major: ``images[p * n_seeds + s]``.
    """
    if n_seeds < 2:
        return float("nan")
    x = shapes.to_unit_range(images).reshape(n_prompts, n_seeds, -1)
    d = torch.cdist(x, x) / x.shape[-1] ** 0.5  # (P, S, S) RMS distances
    iu = torch.triu_indices(n_seeds, n_seeds, 1)
    return d[:, iu[0], iu[1]].mean().item()


def sample(models, cond, uncond, guider, steps, seed, chunk, config=None) -> tuple[torch.Tensor, float]:
    """Generate ``cond.shape[0]`` images in chunks; returns images and seconds per image."""
    t0 = time.perf_counter()
    with torch.no_grad():
        images = sample_images(models, cond, uncond, guider, steps, generator=torch.Generator().manual_seed(seed),
                               chunk=chunk, config=config)
    return images, (time.perf_counter() - t0) / images.shape[0]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=None, help="model folder (default: the shipped assets)")
    p.add_argument("--prompts", type=int, default=128, help="random full captions")
    p.add_argument("--seeds", type=int, default=4, help="samples per caption (diversity)")
    # The most informative γ first: the JSON is rewritten after every setting, so a partial run
    # keeps them. The table is sorted.
    p.add_argument("--gammas", type=float, nargs="+", default=[1, 3, 7.5, 0, 5, 2, 10, 1.5])
    p.add_argument("--variants", nargs="+", default=["plain", "dynamic+rescale"], choices=list(VARIANTS))
    p.add_argument("--variant-gammas", type=float, nargs="+", default=[3, 7.5],
                   help="γ values for the non-plain variants")
    p.add_argument("--steps", type=int, default=10, help="DDIM steps")
    p.add_argument("--chunk", type=int, default=128)
    p.add_argument("--classifier-scales", type=float, nargs="*", default=[0, 3, 10])
    p.add_argument("--classifier-prompts", type=int, default=64)
    p.add_argument("--negative-samples", type=int, default=64)
    p.add_argument("--negative-gamma", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=str(ROOT / "docs" / "results.json"))
    p.add_argument("--markdown", default=str(ROOT / "docs" / "results.md"))
    p.add_argument("--skip-sweep", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    t_load = time.perf_counter()
    models = load_pretrained(args.models)
    t_load = time.perf_counter() - t_load
    judge = models.judge
    results = {
        "config": {**{k: v for k, v in vars(args).items() if k not in ("json", "markdown")},
                   "torch": torch.__version__, "python": platform.python_version(),
                   "machine": platform.machine(), "threads": torch.get_num_threads(),
                   "load_pretrained_s": round(t_load, 3), "eta": 0.0, "timestep_spacing": "leading"},
        "sweep": [], "classifier_guidance": [], "negative_prompt": [], "reference": {},
        "training": models.info,
    }
    path_json = Path(args.json)

    def save():
        path_json.write_text(json.dumps(results, indent=2) + "\n")
        Path(args.markdown).write_text(to_markdown(results))

    # Prompts: random full captions, each repeated --seeds times (prompt-major).
    g = torch.Generator().manual_seed(args.seed)
    labels_p = shapes.sample_labels(args.prompts, g)
    labels = {a: v.repeat_interleave(args.seeds) for a, v in labels_p.items()}
    captions = shapes.caption_from_labels(labels)
    cond, uncond = models.encode(captions)
    n = len(captions)

    # Reference: real images of the same captions (judge accuracy and diversity of the data).
    real = shapes.render(labels, torch.Generator().manual_seed(args.seed + 1), size=models.unet.config.sample_size)
    results["reference"] = {"judge": judge_scores(judge, real, labels),
                            "diversity": diversity(real, args.prompts, args.seeds), "n": n}
    print("reference", results["reference"], flush=True)
    save()

    def sweep(variant):
        gammas = args.gammas if variant == "plain" or args.variant_gammas is None else args.variant_gammas
        for gamma in gammas:
            if variant != "plain" and gamma in (0, 1):
                continue  # no guidance: thresholding/rescale act only on guided samples
            make_guider, config = VARIANTS[variant]
            images, spi = sample(models, cond, uncond, make_guider(gamma), args.steps, args.seed + 2, args.chunk,
                                 config)
            row = {"variant": variant, "gamma": gamma, "n": n, **judge_scores(judge, images, labels),
                   "diversity": diversity(images, args.prompts, args.seeds), "sec_per_image": spi,
                   "pixel_std": images.std().item(),
                   "frac_out_of_range": (images.abs() > 1.05).float().mean().item()}
            results["sweep"].append(row)
            print(json.dumps(row), flush=True)
            save()

    # The plain sweep first, then the cheap experiments, then the other variants, so a
    # partial run (the JSON is rewritten after every setting) keeps the most important rows.
    if not args.skip_sweep and "plain" in args.variants:
        sweep("plain")

    # Classifier guidance: the noise-robust classifier guides the unconditional model.
    if args.classifier_scales and models.noisy_classifier is not None:
        m = args.classifier_prompts
        gl = torch.Generator().manual_seed(args.seed + 3)
        lab = shapes.sample_labels(m, gl)
        joint = JointLabelClassifier(models.noisy_classifier)
        target = joint_label_index(lab)
        _, unc = models.encode([""] * m)
        for scale in args.classifier_scales:
            def guider(rows, s=float(scale)):  # per chunk: the chunk's labels
                return ClassifierGuidance(joint, target[rows], s)

            images, spi = sample(models, unc, unc, guider, args.steps, args.seed + 4, args.chunk)
            row = {"classifier_scale": scale, "n": m, **judge_scores(judge, images, lab), "sec_per_image": spi}
            results["classifier_guidance"].append(row)
            print(json.dumps(row), flush=True)
            save()

    # Negative prompt: "a circle" with negative "red" vs the empty negative prompt.
    if args.negative_samples:
        k = args.negative_samples
        red = shapes.ATTRIBUTES["colour"].index("red")
        circle = shapes.ATTRIBUTES["shape"].index("circle")
        for negative in ("", "red", "a red shape"):
            c, u = models.encode(["a circle"] * k, [negative] * k)
            images, spi = sample(models, c, u, ClassifierFreeGuidance(args.negative_gamma), args.steps,
                                 args.seed + 5, args.chunk)
            with torch.no_grad():
                pred = judge.predict(images.clamp(-1, 1))
            colour_hist = torch.bincount(pred["colour"], minlength=6).tolist()
            row = {"prompt": "a circle", "negative_prompt": negative, "gamma": args.negative_gamma, "n": k,
                   "frac_red": (pred["colour"] == red).float().mean().item(),
                   "frac_circle": (pred["shape"] == circle).float().mean().item(),
                   "colour_counts": dict(zip(shapes.ATTRIBUTES["colour"], colour_hist, strict=False)),
                   "sec_per_image": spi}
            results["negative_prompt"].append(row)
            print(json.dumps(row), flush=True)
            save()

    if not args.skip_sweep:
        for variant in args.variants:
            if variant != "plain":
                sweep(variant)
    save()
    return 0


def _pct(x) -> str:
    return "—" if x is None or x != x else f"{100 * x:.1f}"


SCENES_POINTER = (
    "This file is the **shapes** world (one object per image; guidance has little left to do). The "
    "**scenes** world, where γ = 1 is clearly imperfect, has its own committed sweeps, written by the same "
    "`make eval`: `results_scenes.md` / `results_scenes.json` (CFG with thresholding, rescale and a guidance "
    "interval; fidelity, Fréchet distance, precision/recall, free-attribute coverage, N = 512 per point) and "
    "`results_guiders.md` / `results_guiders.json` (APG, CFG-Zero*, autoguidance, PAG on the same captions and noise)."
)


def to_markdown(results: dict) -> str:
    cfg = results["config"]
    lines = [
        "# Evaluation of the shipped models",
        "",
        "Written by `scripts/evaluate.py` (`make eval`); do not edit by hand. "
        "Numbers are measured on the machine and settings below.",
        "",
        SCENES_POINTER,
        "",
        f"- Sampler: the course's `ConditionalDDIMSampler`, {cfg['steps']} DDIM steps, η = 0, "
        f"`timestep_spacing=\"leading\"`, two-pass CFG; torch {cfg['torch']}, torch threads: {cfg['threads']}.",
        f"- Prompts: {cfg['prompts']} random full captions × {cfg['seeds']} seeds = "
        f"{cfg['prompts'] * cfg['seeds']} images per setting (seed {cfg['seed']}).",
        "- Accuracy: the judge (a separate clean-image classifier, never used for guidance) "
        "agrees with the caption's attribute; *all* = all four attributes right.",
        "- Diversity: mean pairwise RMS pixel distance (images in [0, 1]) between the samples "
        "of the same prompt; the real data of those prompts is the reference.",
        "- s/img: wall-clock seconds per image for the whole DDIM loop, on a 2-core CPU that "
        "was shared with other jobs (treat as indicative).",
        f"- `load_pretrained()` took {cfg['load_pretrained_s']:.2f} s.",
        "",
    ]
    info = results.get("training") or {}
    if info:
        lines += ["## Training", ""]
        for name, d in info.get("models", {}).items():
            lines.append(f"- **{name}**: `{d.get('command', '?')}` — " + "; ".join(
                f"{k.replace('_', ' ')} {v}" for k, v in d.items() if k not in ("command", "train_config")))
        for note in info.get("notes", []):
            lines.append(f"- {note}")
        lines.append("")
    ref = results.get("reference") or {}
    if ref:
        j = ref["judge"]
        lines += [
            f"Reference (real images of the same captions): judge accuracy colour {_pct(j['colour'])}, "
            f"shape {_pct(j['shape'])}, size {_pct(j['size'])}, position {_pct(j['position'])}, "
            f"all {_pct(j['all'])} %; diversity {ref['diversity']:.3f}.",
            "",
        ]
    if results["sweep"]:
        lines += [
            "## Guidance-scale sweep (classifier-free guidance)",
            "",
            "| variant | γ | colour % | shape % | size % | position % | all % | diversity | s/img |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in sorted(results["sweep"], key=lambda r: (r["variant"] != "plain", r["variant"], r["gamma"])):
            lines.append(
                f"| {r['variant']} | {r['gamma']:g} | {_pct(r['colour'])} | {_pct(r['shape'])} | "
                f"{_pct(r['size'])} | {_pct(r['position'])} | {_pct(r['all'])} | {r['diversity']:.3f} | "
                f"{r['sec_per_image']:.3f} |"
            )
        lines += [
            "",
            "Variants: *plain* = no thresholding, no rescale; *dynamic* = dynamic thresholding "
            "(ratio 0.995); *rescale* = guidance rescale φ = 0.7; *dynamic+rescale* = both. "
            "γ = 0 is the unconditional model, γ = 1 the conditional one without guidance.",
            "",
        ]
    if results["classifier_guidance"]:
        lines += [
            "## Classifier guidance (noise-robust classifier guiding the unconditional model)",
            "",
            "The guiding term is ∇ log p_φ(y | x_t) with log p_φ the sum of the per-attribute "
            "log-softmaxes of the noise-robust classifier for the caption's labels; "
            "the text condition is the empty prompt (γ = 1).",
            "",
            "| scale s | colour % | shape % | size % | position % | all % | s/img |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in results["classifier_guidance"]:
            lines.append(
                f"| {r['classifier_scale']:g} | {_pct(r['colour'])} | {_pct(r['shape'])} | "
                f"{_pct(r['size'])} | {_pct(r['position'])} | {_pct(r['all'])} | {r['sec_per_image']:.3f} |"
            )
        lines.append("")
    if results["negative_prompt"]:
        lines += [
            "## Negative prompt",
            "",
            "| prompt | negative prompt | γ | n | red % | circle % | colours (judge) |",
            "|---|---|---:|---:|---:|---:|---|",
        ]
        for r in results["negative_prompt"]:
            neg = f'"{r["negative_prompt"]}"'
            counts = ", ".join(f"{k} {v}" for k, v in r["colour_counts"].items())
            lines.append(
                f"| \"{r['prompt']}\" | {neg} | {r['gamma']:g} | {r['n']} | {_pct(r['frac_red'])} | "
                f"{_pct(r['frac_circle'])} | {counts} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
