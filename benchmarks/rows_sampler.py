"""Benchmark rows for the conditional DDIM sampler (notebook 08).

``rows()`` returns dicts with keys ``name``, ``value``, ``unit``, ``note``:

- the sampler's own overhead: (time of a full sample − the denoiser's forward
  time) / sample time, in percent (budget: < 5 %);
- one doubled batch vs two passes for classifier-free guidance at batch sizes
  1, 8 and 64: speedup = two-pass time / batched time (> 1: batching is faster).

The model is ``ConditionalUNet(UNetConfig())`` (the course's U-Net, 32×32) when
``tutorial_lib.unet`` is present, else a ~1.2M-parameter conv net. The text
embeddings are random tensors of the encoder's output shape (B, 77, D): only
their shape matters for timing. Run: ``python benchmarks/rows_sampler.py``.
"""

from __future__ import annotations

import statistics
import time

import torch

from tutorial_lib.guiders import ClassifierFreeGuidance
from tutorial_lib.sampler import ConditionalDDIMSampler
from tutorial_lib.schedule import NoiseSchedule

TOKENS = 77


def _model() -> tuple[torch.nn.Module, str, int]:
    try:
        from tutorial_lib.unet import ConditionalUNet, UNetConfig

        model = ConditionalUNet(UNetConfig()).eval()
        name = "ConditionalUNet(UNetConfig())"
    except ImportError:  # the U-Net module is not there yet
        model = _FallbackConvNet().eval()
        name = "fallback conv net"
    return model, name, sum(p.numel() for p in model.parameters())


class _FallbackConvNet(torch.nn.Module):
    """~1.2M parameters at 32×32, the denoiser protocol, a pooled-context bias."""

    context_dim = 128

    def __init__(self, ch: int = 160):
        super().__init__()
        self.inp = torch.nn.Conv2d(3, ch, 3, padding=1)
        self.body = torch.nn.Sequential(*[torch.nn.Conv2d(ch, ch, 3, padding=1) for _ in range(5)])
        self.ctx = torch.nn.Linear(self.context_dim, ch)
        self.out = torch.nn.Conv2d(ch, 3, 3, padding=1)

    def forward(self, x, t, context):
        h = self.inp(x) + self.ctx(context.mean(1))[:, :, None, None]
        for conv in self.body:
            h = torch.nn.functional.silu(conv(h)) + h
        return self.out(h)


class _TimedDenoiser:
    """Wraps a denoiser and accumulates the wall time spent inside its forward calls."""

    def __init__(self, model):
        self.model = model
        self.context_dim = getattr(model, "context_dim", None)
        self.prediction_type = getattr(model, "prediction_type", "epsilon")
        self.seconds = 0.0

    def __call__(self, x, t, context):
        start = time.perf_counter()
        out = self.model(x, t, context)
        self.seconds += time.perf_counter() - start
        return out


def _inputs(model, batch: int, size: int = 32):
    g = torch.Generator().manual_seed(0)
    d = model.context_dim
    cond = torch.randn(batch, TOKENS, d, generator=g)
    neg = torch.randn(batch, TOKENS, d, generator=g)
    return (batch, 3, size, size), cond, neg


def _sample_seconds(samplers, shape, cond, neg, steps: int, cfg_mode: str) -> float:
    start = time.perf_counter()
    samplers[cfg_mode].sample(shape, cond, neg, ClassifierFreeGuidance(7.5), steps,
                              generator=torch.Generator().manual_seed(0), progress=False)
    return time.perf_counter() - start


def _samplers(model) -> dict:
    return {mode: ConditionalDDIMSampler(model, NoiseSchedule(), cfg_mode=mode) for mode in ("batched", "two_pass")}


def overhead_row(model, model_name: str, batch: int = 2, steps: int = 5, repeats: int = 3) -> dict:
    timed = _TimedDenoiser(model)
    sampler = _samplers(timed)
    shape, cond, neg = _inputs(model, batch)
    _sample_seconds(sampler, shape, cond, neg, 1, "batched")  # warm-up
    fractions = []
    for _ in range(repeats):
        timed.seconds = 0.0
        total = _sample_seconds(sampler, shape, cond, neg, steps, "batched")
        fractions.append(100.0 * (total - timed.seconds) / total)
    return {
        "name": "sampler overhead",
        "value": round(statistics.median(fractions), 2),
        "unit": "% of sample time",
        "note": f"{model_name}, batch {batch}, {steps} DDIM steps, batched CFG γ=7.5, median of {repeats}; "
        f"(sample − denoiser forward) / sample; budget < 3%",
    }


def cfg_rows(model, model_name: str, batches=(1, 8, 64), repeats: int = 3) -> list[dict]:
    sampler = _samplers(model)
    rows = []
    for batch in batches:
        shape, cond, neg = _inputs(model, batch)
        steps = 2 if batch < 64 else 1
        _sample_seconds(sampler, shape, cond, neg, 1, "batched")  # warm-up
        times = {"batched": [], "two_pass": []}
        for _ in range(repeats):  # interleaved, so a load spike hits both modes
            for mode in times:
                times[mode].append(_sample_seconds(sampler, shape, cond, neg, steps, mode) / steps)
        best = {mode: min(ts) for mode, ts in times.items()}
        rows.append(
            {
                "name": f"CFG batched vs two-pass speedup, batch {batch}",
                "value": round(best["two_pass"] / best["batched"], 2),
                "unit": "x (two-pass time / batched time)",
                "note": f"{model_name} at 32x32, {torch.get_num_threads()} threads; per step: batched "
                f"{best['batched'] * 1e3:.0f} ms, two-pass {best['two_pass'] * 1e3:.0f} ms (best of {repeats}); "
                "> 1 means the doubled batch is faster",
            }
        )
    return rows


def pipeline_row(steps: int = 10, repeats: int = 7) -> dict:
    """The course sampler's loop against StableDiffusionPipeline's on the same (tiny, random) SD
    components: the same prompt embeddings, γ, x_T and steps; the pipeline with
    ``output_type="latent"`` (no VAE decode) and embeddings given (no text encoding)."""
    from tutorial_lib.guiders import ClassifierFreeGuidance
    from tutorial_lib.sd_bridge import (
        SD_SAMPLER_CONFIG,
        DiffusersUNetDenoiser,
        sd_noise_schedule,
        sd_pipeline,
        tiny_sd_components,
    )
    from tutorial_lib.text import encode_prompt

    parts = tiny_sd_components(seed=0, sample_size=16)
    pipe = sd_pipeline(parts)
    sampler = ConditionalDDIMSampler(DiffusersUNetDenoiser(parts["unet"]), sd_noise_schedule(), SD_SAMPLER_CONFIG,
                                     cfg_mode="batched")
    cond, neg = encode_prompt(parts["tokenizer"], parts["text_encoder"], ["a red circle"])
    latents = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))

    def ours():
        sampler.sample(latents.shape, cond, neg, ClassifierFreeGuidance(7.5), steps, latents=latents.clone(),
                       progress=False)

    def theirs():
        pipe(prompt_embeds=cond, negative_prompt_embeds=neg, height=128, width=128, num_inference_steps=steps,
             guidance_scale=7.5, latents=latents.clone(), output_type="latent")

    times = {"ours": [], "theirs": []}
    ours(), theirs()  # warm-up
    for _ in range(repeats):  # interleaved, so a load spike hits both
        for key, fn in (("ours", ours), ("theirs", theirs)):
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    best = {k: min(v) for k, v in times.items()}
    return {
        "name": "sampler loop vs StableDiffusionPipeline",
        "value": round(best["ours"] / best["theirs"], 3),
        "unit": "x (course time / pipeline time)",
        "note": f"tiny random SD components (UNet2DConditionModel, 16x16 latents), batch 1, {steps} DDIM steps, "
        f"batched CFG γ=7.5, best of {repeats}: course {best['ours'] * 1e3:.0f} ms, pipeline "
        f"{best['theirs'] * 1e3:.0f} ms; budget <= 1",
    }


def min_uncond_row(steps: int = 20, batch: int = 16, threshold: float = 4.0, repeats: int = 3) -> dict:
    """A1111's ``s_min_uncond`` on the trained scenes model (notebook 10): wall time of a guided
    sample with the unconditional pass skipped below σ = ``threshold`` (every other step, A1111's
    default) over plain CFG, the same captions, noise and steps. ``docs/results_a1111.md`` has
    what it does to fidelity and recall (N = 256)."""
    from tutorial_lib.a1111 import MinUncondGuidance
    from tutorial_lib.pretrained import load_pretrained
    from tutorial_lib.scenes import caption_from_labels, sample_labels

    models = load_pretrained(world="scenes")
    sampler = models.sampler(cfg_mode="two_pass")
    cond, uncond = models.encode(caption_from_labels(sample_labels(batch, torch.Generator().manual_seed(0))))
    latents = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    guiders = {"cfg": MinUncondGuidance(3.0, s_min_uncond=0.0), "skip": MinUncondGuidance(3.0, s_min_uncond=threshold)}

    def run(key):
        start = time.perf_counter()
        sampler.sample(latents.shape, cond, uncond, guiders[key], steps, latents=latents, progress=False)
        return time.perf_counter() - start

    run("skip")  # warm-up
    times = {"cfg": [], "skip": []}
    for _ in range(repeats):  # interleaved, so a load spike hits both
        for key in times:
            times[key].append(run(key))
    best = {k: min(v) for k, v in times.items()}
    calls = 2 * steps - guiders["skip"].skipped_steps
    return {
        "name": f"s_min_uncond={threshold:g} vs plain CFG, scenes model",
        "value": round(best["skip"] / best["cfg"], 3),
        "unit": "x (wall time / plain CFG's)",
        "note": f"batch {batch}, {steps} DDIM steps, γ=3, two-pass CFG, best of {repeats}: plain {best['cfg']:.2f} s "
        f"({2 * steps} U-Net calls per image), skipping {best['skip']:.2f} s ({calls} calls, "
        f"{calls / (2 * steps):.3f} of them)",
    }


@torch.no_grad()
def rows() -> list[dict]:
    """All sampler rows (about 30-60 s on the 2-core CI CPU)."""
    model, name, params = _model()
    name = f"{name} ({params / 1e6:.2f}M params)"
    return [overhead_row(model, name), *cfg_rows(model, name), pipeline_row(), min_uncond_row()]


if __name__ == "__main__":
    start = time.perf_counter()
    for row in rows():
        print(f"{row['name']:<45} {row['value']:>8} {row['unit']:<34} {row['note']}")
    print(f"({time.perf_counter() - start:.1f} s)")
