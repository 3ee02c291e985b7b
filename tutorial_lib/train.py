"""Training loops for the course's models: the text-conditioned denoiser and two classifiers.

Introduced in the training appendix notebook; the shipped weights
(:mod:`tutorial_lib.pretrained`) come from exactly these loops.

Three models, one command each (``--config full`` reproduces the shipped
weights; ``--config fast`` is the learner's quick version)::

    python -m tutorial_lib.train denoiser         --config full --out runs/denoiser
    python -m tutorial_lib.train judge            --config full --out runs/judge
    python -m tutorial_lib.train noisy_classifier --config full --out runs/noisy_classifier

The configs live in :mod:`tutorial_lib.train_configs` (one base config shared by the
three models). Every model trains in the same loop skeleton, :func:`train_loop`, given
a per-batch loss: a fixed seed, a tqdm progress bar, the optimizer step, the EMA, a
checkpoint every ``checkpoint_every`` steps (``--resume`` continues from it) and
data parallelism under ``torchrun`` (:mod:`tutorial_lib.distributed`); each model then
writes its final weights as safetensors with the config as JSON beside them
(``<out>/final/``).

**Denoiser** (notebook 04). The loss is the DDPM "simple" loss (Ho et al. 2020, eq. 14)

    L = E_{x_0, c, t, ε} ‖ε − ε_θ(√ᾱ_t x_0 + √(1 − ᾱ_t) ε, t, τ(c))‖²

with condition dropout (Ho & Salimans 2022): with probability ``p_uncond`` the
caption ``c`` is replaced by the empty prompt ``""``, so the same network also
learns the unconditional ε_θ(x_t, t, τ("")) that
classifier-free guidance needs. The null condition is the *encoded* empty
prompt, as in Stable Diffusion 1/2 — never a zero tensor.

The text encoder τ is a small ``transformers.CLIPTextModel``
(real CLIP tokenizer, 77 positions, random initialisation) **trained jointly**
with the U-Net: its token features then mean something about the shapes, so
the cross-attention maps of notebook 03 show words attending to the regions
they describe, and the encoding of ``""`` becomes a learned null condition. A
frozen random encoder would also carry the caption (the tokens are distinct),
but its features and attention maps would be arbitrary.

One addition to the plain loss: a small linear head reads the caption's
attributes from the text encoder's pooled (end-token) output, and its
cross-entropy (weight ``text_aux_weight``) trains the encoder too. Real CLIP
gets a caption summary from its contrastive objective; a tiny encoder trained
only through the denoiser did not, and "top"/"bottom" then never reached the
U-Net (see :func:`caption_aux_loss`). The head is not shipped.

The U-Net's and text encoder's weights are tracked by an exponential moving
average (EMA); the shipped weights are the EMA ones.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from . import _checks, distributed, shapes
from .classifiers import (
    AttributeClassifier,
    ClassifierConfig,
    SceneClassifier,
    SceneClassifierConfig,
    accuracy,
    scene_reading_accuracy,
)
from .schedule import NoiseSchedule
from .train_configs import (  # noqa: F401 (_lr_at: tests)
    CONFIGS,
    MODELS,
    BaseTrainConfig,
    ClassifierTrainConfig,
    DenoiserTrainConfig,
    _lr_at,
    get_config,
)
from .training import (
    EMA,
    TrainingRun,
    contiguous_copy,
    loss_summary,
    save_json,
    start_run,
    train_loop,
    weights_digest,
)

__all__ = [
    "BaseTrainConfig", "DenoiserTrainConfig", "ClassifierTrainConfig", "CONFIGS", "get_config",
    "build_text_encoder", "build_denoiser", "train_loop", "train_denoiser", "train_classifier",
    "denoiser_loss", "denoiser_batch", "caption_aux_loss", "world_module", "EMA", "main",
]


# --------------------------------------------------------------------------- builders


def build_text_encoder(overrides: dict | None = None):
    """A small randomly initialised ``CLIPTextModel`` with the real vocabulary and 77 positions."""
    from transformers import CLIPTextModel

    from .text import tiny_clip_text_config

    return CLIPTextModel(tiny_clip_text_config(**(overrides or {})))


def build_denoiser(cfg: DenoiserTrainConfig):
    """``(unet, text_encoder, schedule)`` for a denoiser config.

    The U-Net always starts from fresh weights; the text encoder too, unless
    ``cfg.text_encoder_init`` is ``"shipped"`` (the course's trained encoder of the config's
    world, its file checked against the manifest) or a folder holding a trained
    ``text_encoder.safetensors`` (e.g. ``runs/denoiser-scenes/final``: the weak scenes
    denoiser shares the scenes model's encoder). ``cfg.freeze_text_encoder`` turns its
    gradients off.
    """
    from .unet import ConditionalUNet, UNetConfig

    text_encoder = build_text_encoder(cfg.text_encoder)
    init = cfg.text_encoder_init
    if init == "shipped":
        from .pretrained import load_pretrained  # verifies the files against the manifest

        # fork_rng: building the shipped U-Net must not move the global RNG that seeds ours.
        with torch.random.fork_rng():
            shipped = load_pretrained(classifiers=False, world=cfg.world).text_encoder
        text_encoder.load_state_dict(shipped.state_dict())
    elif init is not None:
        path = Path(init) / "text_encoder.safetensors"
        _checks.that(path.is_file(), f"text_encoder_init must be None, 'shipped' or a folder with text_encoder.safetensors; {path} does not exist")
        from safetensors.torch import load_file

        text_encoder.load_state_dict(load_file(str(path)))
    if cfg.freeze_text_encoder:
        text_encoder.requires_grad_(False)
    unet_kwargs = {"sample_size": cfg.image_size, "context_dim": text_encoder.config.hidden_size,
                   **cfg.unet}
    unet = ConditionalUNet(UNetConfig(**unet_kwargs))
    schedule = NoiseSchedule(**cfg.schedule)
    return unet, text_encoder, schedule


class _Tokens:
    """Caches the token ids of captions (the caption set is small)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.cache: dict[str, torch.Tensor] = {}

    def __call__(self, captions: list[str]) -> torch.Tensor:
        missing = [c for c in dict.fromkeys(captions) if c not in self.cache]
        if missing:
            ids = self.tokenizer(missing, padding="max_length", max_length=77, truncation=True,
                                 return_tensors="pt").input_ids
            self.cache.update(zip(missing, ids, strict=False))
        return torch.stack([self.cache[c] for c in captions])


def cpu_has_native_bf16() -> bool:
    """True when the CPU advertises native bfloat16 arithmetic (Linux ``/proc/cpuinfo``)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _use_bf16(mode: str) -> bool:
    _checks.one_of("autocast", mode, ("auto", "bf16", "fp32"))
    return mode == "bf16" or (mode == "auto" and cpu_has_native_bf16())


def denoiser_loss(unet, text_encoder, schedule, images, input_ids, generator=None, bf16: bool = False,
                  text_aux=None):
    """The ε-prediction MSE of one batch (the conditions are already dropped out in ``input_ids``).

    Args:
        images: ``x_0`` of shape ``(B, 3, H, W)`` in ``[-1, 1]``.
        input_ids: ``(B, 77)`` token ids (the empty prompt's ids for dropped conditions).
        generator: for ``t`` and ``ε``.
        text_aux: optional ``(head, weight, targets)``: adds ``weight`` times
            :func:`caption_aux_loss` of the pooled text output.
    """
    b = images.shape[0]
    t = torch.randint(0, schedule.num_train_timesteps, (b,), generator=generator)
    noise = torch.randn(images.shape, generator=generator)
    x_t = schedule.add_noise(images, noise, t)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        text = text_encoder(input_ids=input_ids)
        context = text.last_hidden_state  # (B, 77, D)
        pred = unet(x_t, t, context)
    pred = pred.float()
    # getattr through a DistributedDataParallel wrapper: its module holds the attribute.
    if getattr(getattr(unet, "module", unet), "prediction_type", "epsilon") == "v_prediction":
        target = schedule.get_velocity(images, noise, t)
    else:
        target = noise
    loss = F.mse_loss(pred, target)
    if text_aux is not None:
        head, weight, targets = text_aux
        loss = loss + weight * caption_aux_loss(head, text.pooler_output.float(), targets)
    return loss


def caption_aux_loss(head, pooled, targets):
    """Cross-entropy of what the caption states, predicted from the pooled text vector.

    Real CLIP's pooled (EOS) vector is trained, contrastively, to summarise the
    whole caption; a small encoder trained only through the denoiser need not
    learn that. Measured on a run without this loss: "top"/"bottom" changed the
    features of their own token only (the EOS and padding features moved by
    0.05 against 10 for "left"/"right"), and the U-Net placed shapes at the
    right horizontal but a random vertical position. A linear head reading each
    *stated* fact from the EOS vector stands in for CLIP's objective.

    Args:
        head: ``nn.Linear(D, K)``, ``K`` the sum of the targets' class counts, logits in their order.
        pooled: ``(B, D)`` pooled output (the EOS position).
        targets: ``name -> (num_classes, labels (B,), stated (B,) bool)`` as returned by the
            world's ``caption_targets`` (``shapes`` or ``scenes``); ``stated`` is False where
            the caption omits the fact (or was dropped to ``""``).

    Returns:
        the mean over targets of the cross-entropy on the rows that state them.
    """
    logits = head(pooled)
    sizes = [k for k, _, _ in targets.values()]
    total = pooled.new_zeros(())
    for part, (_, labels, stated) in zip(torch.split(logits, sizes, dim=1), targets.values(), strict=True):
        if stated.any():
            total = total + F.cross_entropy(part[stated], labels[stated])
    return total / len(sizes)


def world_module(name: str):
    """The data module of a world: :mod:`tutorial_lib.shapes` or :mod:`tutorial_lib.scenes`."""
    from . import scenes

    worlds = {"shapes": shapes, "scenes": scenes}
    _checks.one_of("world", name, sorted(worlds))
    return worlds[name]


def denoiser_batch(cfg: DenoiserTrainConfig, data_gen: torch.Generator, batch_size: int | None = None):
    """One training batch with condition dropout: ``(images, captions, caption_targets)``.

    Images and captions come from the config's world; with probability
    ``cfg.p_partial`` a caption leaves attributes out, and with probability
    ``cfg.p_uncond`` it is replaced by the empty prompt ``""`` (whose *encoding*
    is the null condition). The targets of :func:`caption_aux_loss` are marked
    as not stated for dropped captions.
    """
    world = world_module(cfg.world)
    n = batch_size or cfg.batch_size
    images, labels, _ = world.generate(n, data_gen, size=cfg.image_size)
    captions, mentioned = world.partial_captions(labels, data_gen, p_partial=cfg.p_partial)
    drop = torch.rand(n, generator=data_gen) < cfg.p_uncond
    captions = ["" if d else c for c, d in zip(captions, drop.tolist(), strict=True)]
    targets = {k: (m, y, stated & ~drop) for k, (m, y, stated) in world.caption_targets(labels, mentioned).items()}
    return images, captions, targets


# --------------------------------------------------------------------------- denoiser


class _DenoiserRun(TrainingRun):
    """The state of one denoiser training run: models, optimizer, EMA, generators, step."""

    def __init__(self, cfg: DenoiserTrainConfig, ctx: distributed.Distributed):
        super().__init__(cfg, ctx)
        self.unet, self.text_encoder, self.schedule = build_denoiser(cfg)
        self.params = [p for m in (self.unet, self.text_encoder) for p in m.parameters() if p.requires_grad]
        # The auxiliary head exists only in training (never shipped); see caption_aux_loss.
        self.aux_head = None
        if cfg.text_aux_weight:
            sizes = world_module(cfg.world).caption_targets(*_probe_labels(cfg.world))
            self.aux_head = torch.nn.Linear(self.text_encoder.config.hidden_size, sum(k for k, _, _ in sizes.values()))
            self.params += list(self.aux_head.parameters())
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.grad_clip = cfg.grad_clip
        self.ema_unet = EMA(self.unet, cfg.ema_decay)
        self.ema_text = EMA(self.text_encoder, cfg.ema_decay)
        self.emas = [(self.ema_unet, self.unet), (self.ema_text, self.text_encoder)]
        # Rank r draws its own data and noise; rank 0 of any run draws what a single process draws.
        self.data_gen = torch.Generator().manual_seed(cfg.seed + 7919 * ctx.rank)
        self.noise_gen = torch.Generator().manual_seed(cfg.seed + 1 + 7919 * ctx.rank)

    def wrapped(self):
        """The modules the loss calls: DDP wrappers under torchrun (each syncs its gradients)."""
        wrap = self.ctx.wrap
        text = self.text_encoder if self.cfg.freeze_text_encoder else wrap(self.text_encoder)
        head = wrap(self.aux_head) if self.aux_head is not None else None
        return wrap(self.unet), text, head

    def state_dict(self) -> dict:
        gens = distributed.gather_objects(self.ctx, (self.data_gen.get_state(), self.noise_gen.get_state()))
        state = {"unet": self.unet.state_dict(), "text_encoder": self.text_encoder.state_dict(),
                 "opt": self.opt.state_dict(), "ema_unet": self.ema_unet.state_dict(),
                 "ema_text": self.ema_text.state_dict(), "data_gen": gens[0][0], "noise_gen": gens[0][1],
                 "rank_generators": gens, "step": self.step, "elapsed": self.elapsed}
        if self.aux_head is not None:
            state["text_aux_head"] = self.aux_head.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.unet.load_state_dict(state["unet"])
        self.text_encoder.load_state_dict(state["text_encoder"])
        self.opt.load_state_dict(state["opt"])
        self.ema_unet.load_state_dict(state["ema_unet"])
        self.ema_text.load_state_dict(state["ema_text"])
        if self.aux_head is not None:
            self.aux_head.load_state_dict(state["text_aux_head"])
        gens = state.get("rank_generators", [(state["data_gen"], state["noise_gen"])])
        _checks.that(len(gens) == self.ctx.world_size, f"the checkpoint was written by {len(gens)} process(es); resume it with as many (this run has {self.ctx.world_size})")
        self.data_gen.set_state(gens[self.ctx.rank][0])
        self.noise_gen.set_state(gens[self.ctx.rank][1])
        self.step, self.elapsed = state["step"], state["elapsed"]


def _probe_labels(world: str):
    """Labels and mention masks of a 2-example batch (to size the auxiliary head)."""
    mod = world_module(world)
    _, labels, _ = mod.generate(2, torch.Generator().manual_seed(0))
    return labels, mod.partial_captions(labels, torch.Generator().manual_seed(0))[1]


def train_denoiser(
    cfg: DenoiserTrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    max_steps: int | None = None,
) -> dict:
    """Train the U-Net and the text encoder jointly; returns a summary dict.

    Writes ``out_dir/checkpoint.pt`` every ``cfg.checkpoint_every`` steps (a
    training checkpoint, never shipped), ``out_dir/log.jsonl`` (loss per
    ``log_every`` steps) and at the end ``out_dir/final/`` with
    ``unet.safetensors`` (EMA weights), ``text_encoder.safetensors`` (EMA),
    ``unet_config.json``, ``text_encoder_config.json``, ``schedule.json`` and
    ``train_config.json``. ``max_steps`` stops early (tests) without changing
    the learning-rate schedule. It sets torch's thread count to
    ``cfg.num_threads`` for the whole process and leaves it so (pass
    ``num_threads=torch.get_num_threads()`` to keep the caller's).

    Started by ``torchrun`` it runs data-parallel (:mod:`tutorial_lib.distributed`):
    ``cfg.batch_size`` is the global batch, split over the processes; only rank 0
    writes files.
    """
    from .clip_tokenizer import CLIPBPETokenizer  # CLIPTokenizer's ids, no transformers import

    ctx = distributed.setup()
    out_dir, end = start_run(cfg, out_dir, max_steps)
    run = _DenoiserRun(cfg, ctx)
    tokens = _Tokens(CLIPBPETokenizer())
    if resume:
        run.resume(out_dir / "checkpoint.pt")
    if ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_json(out_dir / "train_config.json", asdict(cfg))
    losses = _denoiser_loop(run, tokens, end, out_dir, progress and ctx.is_main)
    result = {"steps": run.step, "elapsed_s": run.elapsed, "world_size": ctx.world_size,
              "weights_sha256": weights_digest(run.unet, run.text_encoder)}
    if ctx.is_main:
        final = export_denoiser(out_dir / "final", run.ema_unet.module, run.ema_text.module, run.schedule, cfg)
        result.update(**loss_summary(losses, cfg.log_every), final_dir=str(final))
    distributed.teardown(ctx)
    return result


def _denoiser_loop(run: _DenoiserRun, tokens, end: int, out_dir: Path, progress: bool) -> list[float]:
    """:func:`train_loop` with the denoiser's loss: a batch (:func:`denoiser_batch`), :func:`denoiser_loss`."""
    cfg = run.cfg
    unet, text_encoder, head = run.wrapped()
    bf16 = _use_bf16(cfg.autocast)
    share = run.ctx.share(cfg.batch_size)
    unet.train()
    text_encoder.train()

    def batch_loss() -> torch.Tensor:
        images, captions, targets = denoiser_batch(cfg, run.data_gen, share)
        text_aux = (head, cfg.text_aux_weight, targets) if head is not None else None
        return denoiser_loss(unet, text_encoder, run.schedule, images, tokens(captions), run.noise_gen,
                             bf16=bf16, text_aux=text_aux)

    def snapshot() -> None:
        if run.ctx.is_main and run.step in cfg.snapshot_steps:
            export_denoiser(out_dir / "snapshots" / f"step_{run.step}", run.ema_unet.module, run.ema_text.module,
                            run.schedule)

    return train_loop(run, batch_loss, end, out_dir, f"denoiser ({cfg.world})", progress, after_step=snapshot)


def export_denoiser(final_dir, unet, text_encoder, schedule, cfg: DenoiserTrainConfig | None = None) -> Path:
    """Write the safetensors + JSON configs of a denoiser into ``final_dir``."""
    final_dir = Path(final_dir)
    final_dir.mkdir(parents=True, exist_ok=True)
    save_file(contiguous_copy(unet.state_dict()), str(final_dir / "unet.safetensors"))
    save_file(contiguous_copy(text_encoder.state_dict()), str(final_dir / "text_encoder.safetensors"))
    save_json(final_dir / "unet_config.json", unet.config.to_dict())
    save_json(final_dir / "text_encoder_config.json", text_encoder.config.to_dict())
    save_json(final_dir / "schedule.json", schedule.to_config())
    if cfg is not None:
        save_json(final_dir / "denoiser_train_config.json", asdict(cfg))
    return final_dir


def export_denoiser_checkpoint(run_dir: str | Path, final_dir: str | Path | None = None) -> Path:
    """Write ``final/`` (EMA weights + configs) from a run's latest ``checkpoint.pt``.

    Use it to ship a run that was stopped before its last step; with the
    constant learning rate of the full config, ``--steps N`` reproduces the
    checkpoint of step N.
    """
    run_dir = Path(run_dir)
    cfg = DenoiserTrainConfig(**json.loads((run_dir / "train_config.json").read_text()))
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    unet, text_encoder, schedule = build_denoiser(cfg)
    unet.load_state_dict(state["ema_unet"]["module"])
    text_encoder.load_state_dict(state["ema_text"]["module"])
    cfg.steps = int(state["step"])  # what was actually trained
    out = export_denoiser(final_dir or run_dir / "final", unet, text_encoder, schedule, cfg)
    save_json(out / "checkpoint_info.json", {"step": int(state["step"]), "elapsed_s": state["elapsed"]})
    return out


# --------------------------------------------------------------------------- classifiers


class _ClassifierRun(TrainingRun):
    """The state of one classifier training run (one process): model, optimizer, generator, step."""

    def __init__(self, cfg: ClassifierTrainConfig):
        super().__init__(cfg, distributed.Distributed())
        config_cls, model_cls = ((SceneClassifierConfig, SceneClassifier) if cfg.world == "scenes"
                                 else (ClassifierConfig, AttributeClassifier))
        self.model_config = config_cls(image_size=cfg.image_size, **{"time_conditioned": cfg.noisy, **cfg.classifier})
        self.model = model_cls(self.model_config)
        self.schedule = NoiseSchedule(**cfg.schedule)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=1e-4)
        self.gen = torch.Generator().manual_seed(cfg.seed)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "gen": self.gen.get_state(),
                "step": self.step, "elapsed": self.elapsed}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["gen"])
        self.step, self.elapsed = state["step"], state["elapsed"]

    def batch_loss(self) -> torch.Tensor:
        """The summed cross-entropy of the heads on a fresh batch: ``x_t`` at random ``t`` when
        ``noisy``, else clean images with mild pixel noise (``aug_noise``)."""
        cfg, gen, schedule = self.cfg, self.gen, self.schedule
        x, labels, _ = world_module(cfg.world).generate(cfg.batch_size, gen, size=cfg.image_size)
        t = None
        if cfg.noisy:
            t = torch.randint(0, schedule.num_train_timesteps, (cfg.batch_size,), generator=gen)
            x = schedule.add_noise(x, torch.randn(x.shape, generator=gen), t)
        elif cfg.aug_noise > 0:
            sigma = torch.rand(cfg.batch_size, 1, 1, 1, generator=gen) * cfg.aug_noise
            x = x + sigma * torch.randn(x.shape, generator=gen)
        loss, _ = self.model.loss(x, labels, t)
        return loss


def train_classifier(
    cfg: ClassifierTrainConfig,
    out_dir: str | Path,
    name: str = "judge",
    resume: bool = False,
    progress: bool = True,
    max_steps: int | None = None,
) -> dict:
    """Train the judge (clean images) or the noise-robust classifier (x_t at random t).

    The loss is the sum over attributes of the cross-entropy of each head. For
    the noise-robust classifier, ``x_t = add_noise(x_0, ε, t)`` with ``t``
    uniform in ``[0, T)`` under the course schedule. Writes
    ``out_dir/final/{name}.safetensors`` and ``{name}_config.json``, and
    returns held-out accuracies (clean for the judge; per noise band for the
    noisy classifier).
    """
    out_dir, end = start_run(cfg, out_dir, max_steps)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = _ClassifierRun(cfg)
    if resume:
        run.resume(out_dir / "checkpoint.pt")
    save_json(out_dir / "train_config.json", asdict(cfg))
    run.model.train()
    losses = train_loop(run, run.batch_loss, end, out_dir, name, progress, log_file=False)
    run.model.eval()
    result = {"steps": run.step, "elapsed_s": run.elapsed, **loss_summary(losses, cfg.log_every),
              **_held_out_accuracy(run)}
    final = out_dir / "final"
    final.mkdir(exist_ok=True)
    save_file(contiguous_copy(run.model.state_dict()), str(final / f"{name}.safetensors"))
    save_json(final / f"{name}_config.json", run.model_config.to_dict())
    save_json(final / f"{name}_metrics.json", {k: v for k, v in result.items() if k != "losses"})
    return result


def _held_out_accuracy(run: _ClassifierRun) -> dict:
    """Accuracy on ``eval_size`` fresh images of a separate seed: clean for the judge, per noise band
    ``t`` in [0, 250), [250, 500), ... for the noisy classifier."""
    cfg, model, schedule = run.cfg, run.model, run.schedule
    eval_gen = torch.Generator().manual_seed(10_000 + cfg.seed)
    x, labels, _ = world_module(cfg.world).generate(cfg.eval_size, eval_gen, size=cfg.image_size)
    score = scene_reading_accuracy if cfg.world == "scenes" else accuracy
    if not cfg.noisy:
        return {"accuracy": score(model, x, labels)}
    bands = {}
    for lo, hi in ((0, 250), (250, 500), (500, 750), (750, 1000)):
        t = torch.randint(lo, hi, (cfg.eval_size,), generator=eval_gen)
        xt = schedule.add_noise(x, torch.randn(x.shape, generator=eval_gen), t)
        bands[f"t{lo}-{hi}"] = score(model, xt, labels, t)
    return {"accuracy_by_t": bands}


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tutorial_lib.train", description=__doc__.split("\n\n")[0])
    p.add_argument("model", choices=MODELS)
    p.add_argument("--config", default="full", help="a config name of CONFIGS[model] (full, fast, scenes, ...)")
    p.add_argument("--out", default=None, help="output folder (default runs/<model>-<config>)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    p.add_argument("--steps", type=int, default=None, help="override the number of steps")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--eval-size", type=int, default=None, help="classifiers: held-out images")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--export-only", action="store_true",
                   help="denoiser: write <out>/final from the latest checkpoint and stop")
    args = p.parse_args(argv)
    overrides = {}
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.batch_size is not None:
        overrides["batch_size"] = args.batch_size
    if args.eval_size is not None:
        if args.model == "denoiser":
            p.error("--eval-size applies to the classifiers")
        overrides["eval_size"] = args.eval_size
    cfg = get_config(args.model, args.config, **overrides)
    out = Path(args.out or f"runs/{args.model}-{args.config}")
    t0 = time.time()
    if args.export_only:
        if args.model != "denoiser":
            p.error("--export-only applies to the denoiser")
        print(export_denoiser_checkpoint(out))
        return 0
    if args.model == "denoiser":
        res = train_denoiser(cfg, out, resume=args.resume, progress=not args.no_progress)
    else:
        res = train_classifier(cfg, out, name=args.model, resume=args.resume, progress=not args.no_progress)
    res.pop("losses", None)
    res["wall_s"] = time.time() - t0
    save_json(out / "summary.json", res)
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
