"""The conditional DDIM sampler: text embeddings in, guided samples out.

Introduced in notebook 08.

One DDIM step (Song et al. 2021, eq. 12), from timestep t to the previous
timestep t' of the inference list (ᾱ' = ᾱ_{t'}, or ``final_alpha_cumprod``
after the last step):

    x̂_0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t                       "predicted x_0"
    σ_t = η √((1 − ᾱ') / (1 − ᾱ_t)) √(1 − ᾱ_t / ᾱ')            (eq. 16)
    x_t' = √ᾱ' x̂_0 + √(1 − ᾱ' − σ_t²) ε̂ + σ_t z,   z ~ N(0, I)

η = 0 is deterministic DDIM, η = 1 is DDPM's ancestral sampler.

Clipping x̂_0. With ``clip_sample`` or ``thresholding`` x̂_0 is clipped; the
direction term must then use the ε that is *consistent* with the clipped x̂_0,
ε = (x_t − √ᾱ_t x̂_0) / √(1 − ᾱ_t) (diffusers' ``use_clipped_model_output=True``,
GLIDE's choice; our default). A common implementation clamps x̂_0 but keeps
the unclipped ε̂ — diffusers' ``DDIMScheduler`` with its defaults does exactly that
(``clip_sample=True`` in its config, ``use_clipped_model_output=False`` in ``step``) —
so x_t' mixes two different guesses of x_0; under strong guidance that
inconsistency costs the samples their prompt's attributes (measured in notebook 08).
``use_clipped_model_output=False`` reproduces it for comparison.

The previous timestep. Our step goes to the *next entry of the timestep list*.
diffusers' ``DDIMScheduler.step`` instead computes ``t − T // n``, which is only
right for "leading" spacing (and for "trailing" when n divides T): with
"linspace" (999, 888, …) it steps to ᾱ_{899} while the next model call is told
t = 888 — the sample's noise level and the timestep the model sees disagree.
The tests check our trajectory against diffusers where diffusers is right and
against the DDIM equations everywhere.

The sampling loop, from x_T ~ N(0, I):

    for each timestep t of the inference list (next entry t'):
        ε̃ = guider(step)               the guided prediction (``tutorial_lib.guiders``)
        x_t' = DDIM step (x_t, ε̃)      the equations above, options in ``SamplerConfig``

Which predictions a step needs (conditional, unconditional, a weak model, a
perturbed model) and how they combine is the guider's business: the sampler
knows only the denoiser, the schedule and its ``SamplerConfig``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from . import _checks
from .guidance import _dynamic_threshold as dynamic_threshold  # unchecked: SamplerConfig checks
from .guiders import CFG_MODES, ClassifierFreeGuidance, GuidanceStep, Guider
from .schedule import PREDICTION_TYPES, TIMESTEP_SPACINGS, NoiseSchedule

__all__ = ["ConditionalDDIMSampler", "SamplerConfig", "DDIMStepOutput", "Trajectory", "CFG_MODES"]


@dataclass(frozen=True)
class SamplerConfig:
    """How the sampler walks the schedule and treats x̂_0 — diffusers keeps the same
    options in ``DDIMScheduler``'s config (``use_clipped_model_output`` is a ``step``
    argument there).

    Attributes:
        timestep_spacing, steps_offset: the inference timesteps (``NoiseSchedule.timesteps``).
        clip_sample, clip_sample_range: clip x̂_0 to [−r, r].
        thresholding, dynamic_thresholding_ratio, sample_max_value: Imagen's dynamic
            thresholding of x̂_0 (``guidance.dynamic_threshold``; takes precedence over
            clipping, as in diffusers).
        use_clipped_model_output: recompute ε from the clipped x̂_0 (module docstring).
    """

    timestep_spacing: str = field(default="leading", metadata={"choices": TIMESTEP_SPACINGS})
    steps_offset: int = field(default=0, metadata={"low": 0})
    clip_sample: bool = False
    clip_sample_range: float = field(default=1.0, metadata={"low": 0.0})
    thresholding: bool = False
    dynamic_thresholding_ratio: float = field(default=0.995, metadata={"low": 0.0, "high": 1.0, "open_low": True})
    sample_max_value: float = field(default=1.0, metadata={"low": 1.0})
    use_clipped_model_output: bool = True

    def __post_init__(self):
        _checks.fields(self)  # the types and the ranges declared above


class DDIMStepOutput(NamedTuple):
    """The result of one DDIM step; all tensors have the sample's shape ``(B, ...)``."""

    prev_sample: torch.Tensor  # x_{t'}
    pred_original_sample: torch.Tensor  # x̂_0 (after clipping/thresholding)
    pred_epsilon: torch.Tensor  # the ε used in the direction term


class Trajectory:
    """A sampling callback that records the run: pass ``callback=Trajectory()`` to ``sample``.

    Afterwards ``traj["timesteps"]`` is ``(n,)``, ``traj["x_t"]`` ``(n+1, *shape)`` from x_T to
    x_0 and ``traj["pred_x0"]`` ``(n, *shape)`` (x̂_0 of every step). The sampler calls
    :meth:`start` with x_T before the first step, then the instance after every step.
    """

    def __init__(self):
        self._t, self._x, self._x0 = [], [], []

    def start(self, x_T: torch.Tensor) -> None:
        self._t, self._x, self._x0 = [], [x_T], []

    def __call__(self, step_index: int, t: int, x_prev: torch.Tensor, pred_x0: torch.Tensor) -> None:
        self._t.append(t)
        self._x.append(x_prev)
        self._x0.append(pred_x0)

    def __getitem__(self, key: str) -> torch.Tensor:
        if key == "timesteps":
            return torch.tensor(self._t, dtype=torch.long)
        return torch.stack({"x_t": self._x, "pred_x0": self._x0}[key])


class ConditionalDDIMSampler:
    """Guided DDIM sampling: a denoiser, its schedule, and how to walk it.

    Introduced in notebook 08.

    Args:
        denoiser: any callable ``denoiser(x_t, t, context) -> prediction`` with
            ``x_t`` ``(B, *sample_shape)``, ``t`` a ``(B,)`` long tensor and the
            prediction of ``x_t``'s shape (the course's denoiser protocol).
            Optional attributes read: ``prediction_type`` and ``context_dim``.
        schedule: the ``NoiseSchedule`` the denoiser was trained with.
        config: a ``SamplerConfig`` (default: leading spacing, no clipping).
        prediction_type: "epsilon", "v_prediction" or "sample"; default: the
            denoiser's ``prediction_type`` attribute, else "epsilon".
        cfg_mode: how a guider's several predictions are computed: "batched" (one
            call on the concatenated batch — the usual pipelines' trick), "two_pass"
            (one call per condition) or "auto" (batched up to
            ``guiders.AUTO_BATCHED_MAX_ROWS`` rows; chosen from measurement).
    """

    def __init__(self, denoiser: Callable, schedule: NoiseSchedule, config: SamplerConfig | None = None,
                 prediction_type: str | None = None, cfg_mode: str = "auto"):
        _checks.function("denoiser", denoiser, "(x_t, t, context) -> prediction")
        _checks.instance("schedule", schedule, NoiseSchedule, "a NoiseSchedule")
        config = _checks.instance("config", SamplerConfig() if config is None else config, SamplerConfig, "a SamplerConfig")
        prediction_type = prediction_type or getattr(denoiser, "prediction_type", None) or "epsilon"
        _checks.one_of("prediction_type", prediction_type, PREDICTION_TYPES)
        _checks.one_of("cfg_mode", cfg_mode, CFG_MODES)
        self.denoiser, self.schedule, self.config = denoiser, schedule, config
        self.prediction_type, self.cfg_mode = prediction_type, cfg_mode

    # ================================================================== one step
    def alpha_cumprod(self, timestep: int) -> torch.Tensor:
        """ᾱ_t as a 0-d float32 tensor; a negative timestep means "after the last step"
        and gives ``schedule.final_alpha_cumprod`` (1 by default)."""
        if timestep < 0:
            return self.schedule.final_alpha_cumprod
        return self.schedule.alphas_cumprod[timestep]

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int,
        sample: torch.Tensor,
        prev_timestep: int,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        variance_noise: torch.Tensor | None = None,
    ) -> DDIMStepOutput:
        """One DDIM update x_t → x_{t'} (module docstring; Song et al. 2021, eqs. 12 and 16).

        Args:
            model_output: the (guided) model prediction, ``sample``'s shape.
            timestep: t, an int in [0, T−1] (or a 0-d tensor).
            sample: x_t, shape ``(B, ...)``.
            prev_timestep: t', the next entry of the timestep list; negative
                for the last step (ᾱ' = ``final_alpha_cumprod``).
            eta: η ≥ 0 (σ_t's weight); 0 is deterministic.
            generator / variance_noise: where z comes from when η > 0 (at most one).

        Returns:
            ``DDIMStepOutput(prev_sample, pred_original_sample, pred_epsilon)``.
        """
        t = _checks.integer("timestep", int(timestep), low=0, high=self.schedule.num_train_timesteps - 1)
        t_prev = _checks.integer("prev_timestep", int(prev_timestep), high=t - 1)
        eta = _checks.real("eta", eta, low=0.0)
        cfg = self.config

        # 1. ᾱ_t and ᾱ' (0-d float32 tensors, as in diffusers)
        a_t, a_prev = self.alpha_cumprod(t), self.alpha_cumprod(t_prev)
        # 2. x̂_0 and ε̂ from the model output
        x0 = self.schedule.predict_x0(model_output, sample, t, self.prediction_type)
        eps = self.schedule.predict_eps(model_output, sample, t, self.prediction_type)
        # 3. clip or threshold x̂_0, and keep ε consistent with it
        if cfg.thresholding:
            x0 = dynamic_threshold(x0, cfg.dynamic_thresholding_ratio, cfg.sample_max_value)
        elif cfg.clip_sample:
            x0 = x0.clamp(-cfg.clip_sample_range, cfg.clip_sample_range)
        if (cfg.thresholding or cfg.clip_sample) and cfg.use_clipped_model_output:
            eps = self.schedule.eps_from_x0(x0, sample, t)
        # 4. σ_t = η √((1 − ᾱ')/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ')   (eq. 16)
        variance = ((1 - a_prev) / (1 - a_t)) * (1 - a_t / a_prev)
        std_dev_t = eta * variance**0.5
        # 5. x_t' = √ᾱ' x̂_0 + √(1 − ᾱ' − σ_t²) ε + σ_t z   (eq. 12)
        prev_sample = a_prev**0.5 * x0 + (1 - a_prev - std_dev_t**2) ** 0.5 * eps
        if eta > 0:
            z = self._variance_noise(sample, generator, variance_noise)
            prev_sample = prev_sample + std_dev_t * z
        return DDIMStepOutput(prev_sample, x0, eps)

    @staticmethod
    def _variance_noise(sample, generator, variance_noise) -> torch.Tensor:
        if variance_noise is None:
            return torch.randn(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
        _checks.that(generator is None, "pass either generator or variance_noise, not both")
        return _checks.like("variance_noise", variance_noise, sample, "sample")

    # ================================================================ sampling
    @torch.no_grad()
    def sample(
        self,
        shape: Sequence[int],
        prompt_embeds: torch.Tensor | Sequence[torch.Tensor],
        negative_prompt_embeds: torch.Tensor | None = None,
        guider: Guider | None = None,
        num_inference_steps: int = 50,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        callback: Callable | None = None,
        progress: bool = True,
    ) -> torch.Tensor:
        """Generate samples by guided DDIM, from x_T ~ N(0, I) to x_0.

        Args:
            shape: ``(B, *sample_shape)``, at least 2 dims: ``(B, C, H, W)`` images,
                ``(B, 2)`` points.
            prompt_embeds: the condition, ``(B, N, D)`` for the U-Net (any ``(B, ...)``
                layout the denoiser accepts), or a list of K such tensors for
                ``WeightedPromptsGuidance`` ("a AND b").
            negative_prompt_embeds: the null condition ε_u is computed with — the
                encoded empty prompt "" (or a negative prompt), one ``prompt_embeds``
                tensor's shape. Needed by every guider that uses ε_u; never replaced by zeros.
            guider: how the step's prediction is formed (``tutorial_lib.guiders``);
                default: the conditional model alone (``ClassifierFreeGuidance(1.0)``, one pass).
            num_inference_steps: n in [1, T].
            eta: η in [0, 1]; 0 is DDIM, 1 is DDPM-like.
            generator: draws, in order, x_T (unless ``latents`` is given) then,
                when η > 0, one z of the sample's shape at every step.
            latents: x_T of shape ``shape`` (else drawn with ``generator``).
            callback: called after every step as ``callback(step_index, t, x_prev, pred_x0)``
                (and, if it has a ``start`` method, once with x_T first): a :class:`Trajectory`
                records every x_t and x̂_0.
            progress: show a tqdm progress bar.

        Returns:
            x_0 of shape ``shape``.
        """
        shape = _checks.sizes("shape", shape, min_dims=2)
        context_dim = getattr(self.denoiser, "context_dim", None)
        ref = _checks.conditions(prompt_embeds, negative_prompt_embeds, context_dim, batch_size=shape[0])[0]
        guider = ClassifierFreeGuidance(1.0) if guider is None else guider
        _checks.instance("guider", guider, Guider, "a tutorial_lib.guiders.Guider")
        eta = _checks.real("eta", eta, low=0.0, high=1.0)
        timesteps = self.schedule.timesteps(num_inference_steps, self.config.timestep_spacing,
                                            self.config.steps_offset)
        _checks.boolean("progress", progress)
        _checks.function("callback", callback, "(step_index, t, x_prev, pred_x0)", optional=True)
        x = self._initial_latents(latents, shape, generator, ref)

        guider.prepare(prompt_embeds, negative_prompt_embeds)  # its checks, once per call
        if hasattr(callback, "start"):
            callback.start(x)
        steps = timesteps.tolist()
        for i, t in enumerate(tqdm(steps, desc="DDIM", disable=not progress)):
            t_prev = steps[i + 1] if i + 1 < len(steps) else -1
            step = GuidanceStep(x, t, i, len(steps), self.alpha_cumprod(t), prompt_embeds,
                                negative_prompt_embeds, self.denoiser, self.cfg_mode, self.prediction_type)
            model_output = guider(step)  # the guided prediction
            x, x0, _ = self.step(model_output, t, x, t_prev, eta=eta, generator=generator)
            if callback is not None:
                callback(i, t, x, x0)
        return x

    @staticmethod
    def _initial_latents(latents, shape, generator, ref: torch.Tensor) -> torch.Tensor:
        """x_T: ``latents`` if given, else drawn with ``generator`` (``ref``'s device; its dtype if float)."""
        dtype = ref.dtype if ref.is_floating_point() else torch.float32
        x_T = _checks.latents(latents, generator, shape, dtype, ref.device)
        return torch.randn(shape, generator=generator, device=ref.device, dtype=dtype) if x_T is None else x_T
