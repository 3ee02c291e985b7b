"""The training configs: one base config shared by the denoiser and the classifiers, and ``CONFIGS``.

Introduced in the training appendix notebook (11). A config is a dataclass holding
everything that defines a run (saved as ``train_config.json`` beside the weights);
:data:`CONFIGS` names the runs of each model (``full`` reproduces the shipped weights,
``fast`` is the learner's quick version) and :func:`get_config` builds one, with overrides.
:mod:`tutorial_lib.train` runs them.

The learning rate of every run (:meth:`BaseTrainConfig.learning_rate`) warms up linearly
and then decays with a cosine to ``min_lr_ratio`` of the base rate:

    lr(s) = lr · (s + 1) / warmup                                   for s < warmup
    lr(s) = lr · (r + (1 − r) · ½ (1 + cos(π p))),  p = (s − s₀) / (steps − s₀)   after it

with r = ``min_lr_ratio`` and s₀ the start of the decay (the end of the warm-up, or
``steps − decay_steps`` for the denoiser's constant-then-decay schedule).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

from . import _checks

__all__ = ["BaseTrainConfig", "DenoiserTrainConfig", "ClassifierTrainConfig", "CONFIGS", "MODELS", "get_config"]

MODELS = ("denoiser", "judge", "noisy_classifier")


def _lr_at(step: int, total: int, base: float, warmup: int, min_ratio: float, decay_steps: int = 0) -> float:
    """Linear warm-up, then cosine decay to ``min_ratio * base``.

    With ``decay_steps > 0`` the rate stays at ``base`` after the warm-up and
    the cosine decay only covers the last ``decay_steps`` steps.
    """
    if step < warmup:
        return base * (step + 1) / warmup
    start = max(warmup, total - decay_steps) if decay_steps else warmup
    if step < start:
        return base
    progress = min(1.0, (step - start) / max(1, total - start))
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def _linear_schedule() -> dict:
    return {"num_train_timesteps": 1000, "beta_schedule": "linear"}


@dataclass
class BaseTrainConfig:
    """What every training run has: length, batch, optimiser schedule, seed, data, checkpoints, threads."""

    steps: int = 2000
    batch_size: int = 64  # the global batch (split over the processes under torchrun)
    lr: float = 1e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    seed: int = 0
    # The data: "shapes" (one object, tutorial_lib.shapes) or "scenes" (one to three, tutorial_lib.scenes).
    world: str = "shapes"
    image_size: int = 32
    checkpoint_every: int = 100  # steps between training checkpoints (``--resume`` continues from the last)
    log_every: int = 25
    schedule: dict = field(default_factory=_linear_schedule)  # NoiseSchedule arguments
    num_threads: int = 2

    def learning_rate(self, step: int) -> float:
        """The learning rate of ``step`` (0-based): linear warm-up, then cosine decay (module docstring)."""
        return _lr_at(step, self.steps, self.lr, self.warmup_steps, self.min_lr_ratio)


@dataclass
class DenoiserTrainConfig(BaseTrainConfig):
    """Everything that defines a denoiser training run (saved as ``config.json``)."""

    decay_steps: int = 0  # 0: cosine over the whole run; N: constant, then cosine over the last N steps
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    p_uncond: float = 0.15
    p_partial: float = 0.3
    # Weight of the auxiliary caption loss on the text encoder's pooled (EOS) output
    # (see caption_aux_loss); 0 turns it off.
    text_aux_weight: float = 0.0
    # "shipped": start from the course's trained text encoder (tutorial_lib/assets/models) instead
    # of random weights; with freeze_text_encoder it stays fixed, as Stable Diffusion keeps CLIP.
    text_encoder_init: str | None = None
    freeze_text_encoder: bool = False
    # Steps at which the EMA weights are also exported to <out>/snapshots/step_<N>/ (training
    # snapshots: the appendix shows samples forming along the run).
    snapshot_steps: tuple[int, ...] = ()
    unet: dict = field(default_factory=dict)  # UNetConfig overrides
    text_encoder: dict = field(
        default_factory=lambda: {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    )
    # "auto": bfloat16 autocast for the forward pass when the CPU has native bf16
    # (avx512_bf16 / amx_bf16), else float32; "bf16" or "fp32" force it. Weights,
    # optimizer and loss stay float32; sampling runs in float32.
    autocast: str = "auto"

    def learning_rate(self, step: int) -> float:
        """As the base config's, with ``decay_steps``: constant after the warm-up, then the cosine."""
        return _lr_at(step, self.steps, self.lr, self.warmup_steps, self.min_lr_ratio, self.decay_steps)


@dataclass
class ClassifierTrainConfig(BaseTrainConfig):
    """A judge (``noisy=False``) or noise-robust classifier (``noisy=True``) training run.

    ``world`` "shapes" trains an ``AttributeClassifier``, "scenes" a ``SceneClassifier``.
    """

    noisy: bool = False
    # base fields with the classifiers' own defaults:
    steps: int = 600
    batch_size: int = 128
    lr: float = 2e-3
    warmup_steps: int = 50
    min_lr_ratio: float = 0.05
    seed: int = 1
    checkpoint_every: int = 200
    eval_size: int = 4000
    # Judge only: mild Gaussian pixel noise of std U(0, aug_noise) makes it robust to
    # slightly imperfect generated samples (it is still scored on clean data).
    aug_noise: float = 0.1
    classifier: dict = field(default_factory=dict)  # ClassifierConfig overrides


CONFIGS: dict[str, dict[str, dict]] = {
    "denoiser": {
        # The shipped weights: constant learning rate after warm-up, cosine decay over the
        # last 2000 steps, EMA of the weights, and the auxiliary caption loss on the text
        # encoder's pooled output (without it "top"/"bottom" never reached the U-Net:
        # see caption_aux_loss). About 35 min on an idle 2-core CPU.
        "full": {"steps": 6000, "batch_size": 32, "min_lr_ratio": 0.05, "decay_steps": 2000,
                 "ema_decay": 0.995, "text_aux_weight": 0.1,
                 # text reaches the U-Net at 8x8 (and the middle block): half the cost of
                 # attention at 16x16 on a CPU, enough for global attributes.
                 "unet": {"attention_levels": [False, False, True]}},
        # A learner's run, under 10 min on the course's 2-core CPU: a fresh U-Net on top of the
        # shipped text encoder, frozen (as Stable Diffusion keeps CLIP fixed). Trained jointly from
        # scratch, the encoder-plus-U-Net needs about 3000 steps before position is learnt; with
        # the encoder given, the U-Net alone gets there: measured 2026-11-30, 9.4 min, judge at
        # guidance scale 3 on 256 samples: colour 98.8 %, shape 96.9 %, position 99.6 %.
        "fast": {"steps": 2600, "batch_size": 32, "warmup_steps": 50, "lr": 2e-3, "decay_steps": 1200,
                 "min_lr_ratio": 0.05, "ema_decay": 0.99, "checkpoint_every": 100,
                 "text_encoder_init": "shipped", "freeze_text_encoder": True,
                 "unet": {"attention_levels": [False, False, True]}},
        # The scenes model (one to three objects, binding and relation captions): text reaches the
        # U-Net at 16x16 as well as 8x8, so per-word attention maps can be read on two-object prompts.
        # About 1.5 steps/s on an idle 2-core CPU (self-attention at 16x16 doubles the step of "full").
        "scenes": {"world": "scenes", "steps": 8000, "batch_size": 32, "min_lr_ratio": 0.05,
                   "decay_steps": 2500, "ema_decay": 0.999, "text_aux_weight": 0.1, "checkpoint_every": 250,
                   "snapshot_steps": [250, 1000, 3000, 6000],
                   "unet": {"attention_levels": [False, True, True]}},
        # The deliberately weaker denoiser for autoguidance (Karras et al. 2024): the same data,
        # conditioning, half the channels and a quarter of the training.
        # It shares the scenes model's text encoder (frozen), so both see the same context and
        # a sampler encodes the prompt once for the two models.
        "scenes-weak": {"world": "scenes", "steps": 2000, "batch_size": 32, "min_lr_ratio": 0.05,
                        "decay_steps": 800, "ema_decay": 0.995, "seed": 5, "checkpoint_every": 250,
                        "text_encoder_init": "runs/denoiser-scenes/final", "freeze_text_encoder": True,
                        "snapshot_steps": [100, 300, 1000],
                        "unet": {"base_channels": 16, "attention_levels": [False, True, True]}},
        # The learner's scenes run (the appendix): the weak denoiser's recipe on the shipped scenes
        # encoder, frozen, cut to 700 steps so it fits the 10-minute bar on a 2-core CPU (about
        # 1.4 steps/s); snapshots along the way show the samples forming.
        "scenes-fast": {"world": "scenes", "steps": 700, "batch_size": 32, "min_lr_ratio": 0.05,
                        "decay_steps": 300, "ema_decay": 0.99, "seed": 5, "checkpoint_every": 100,
                        "text_encoder_init": "shipped", "freeze_text_encoder": True,
                        "snapshot_steps": [100, 300],
                        "unet": {"base_channels": 16, "attention_levels": [False, True, True]}},
    },
    "judge": {
        "full": {"noisy": False, "steps": 600, "classifier": {"channels": [16, 32, 64]}},
        # Scenes: the judge reads each of the 2 x 2 cells (SceneClassifier).
        "scenes": {"world": "scenes", "noisy": False, "steps": 1500, "lr": 2e-3, "seed": 3,
                   "classifier": {"channels": [32, 64, 128]}},
        "fast": {"noisy": False, "steps": 200, "classifier": {"channels": [16, 32, 64]}},
    },
    "noisy_classifier": {
        "scenes": {"world": "scenes", "noisy": True, "steps": 2000, "batch_size": 64, "aug_noise": 0.0,
                   "seed": 4, "classifier": {"channels": [32, 64, 128], "time_conditioned": True}},
        "full": {"noisy": True, "steps": 800, "batch_size": 64, "aug_noise": 0.0, "seed": 2,
                 "classifier": {"channels": [32, 64, 128], "time_conditioned": True}},
        "fast": {"noisy": True, "steps": 300, "aug_noise": 0.0, "seed": 2,
                 "classifier": {"channels": [32, 64, 128], "time_conditioned": True}},
    },
}


def get_config(model: str, name: str = "full", **overrides):
    """The training config ``name`` ("full" or "fast") of ``model``, with optional overrides."""
    _checks.one_of("model", model, MODELS)
    _checks.one_of("config", name, sorted(CONFIGS[model]))
    kwargs = {**copy.deepcopy(CONFIGS[model][name]), **overrides}
    cls = DenoiserTrainConfig if model == "denoiser" else ClassifierTrainConfig
    return cls(**kwargs)
