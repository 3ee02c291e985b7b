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

The guided prediction at each step (the order of diffusers' pipelines):

1. model outputs for the negative/empty prompt and the K prompts (one doubled
   batch or separate passes, ``cfg_mode``);
2. CFG (``cfg_combine``) or composable guidance (``combine_weighted_prompts``),
   with γ = 1 outside ``guidance_interval``;
3. guidance rescale (``rescale_noise_cfg``) if ``guidance_rescale > 0``;
4. classifier guidance (``classifier_guided_eps``) if ``classifier_scale > 0``;
5. the DDIM step.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from .guidance import (
    cfg_combine,
    classifier_guided_eps,
    classifier_log_prob_grad,
    combine_weighted_prompts,
    dynamic_threshold,
    effective_guidance_scale,
    rescale_noise_cfg,
)
from .schedule import PREDICTION_TYPES, TIMESTEP_SPACINGS, NoiseSchedule

__all__ = ["ConditionalDDIMSampler", "DDIMStepOutput", "CFG_MODES", "AUTO_BATCHED_MAX_ROWS"]

CFG_MODES = ("batched", "two_pass", "auto")

# cfg_mode="auto": one doubled batch when the concatenated batch has at most this
# many rows, else one pass per condition. Measured with benchmarks/rows_sampler.py
# on the course's 2-core CPU (ConditionalUNet(UNetConfig()), 1.12M params, 32×32,
# 77 context tokens, 2 threads, other jobs running), speedup = two-pass / batched:
#     batch 1:  1.32x, 1.36x, 2.06x, 1.25x   (batched faster)
#     batch 8:  1.00x, 1.10x, 1.25x, 1.03x   (about even)
#     batch 64: 0.95x, 0.84x, 0.63x, 0.80x   (batched *slower*; not profiled why)
# (four runs; the machine was shared, so the spread is wide but the signs agree).
# So the common claim "the batch trick is ~1.5x faster" holds only at small batch here.
AUTO_BATCHED_MAX_ROWS = 16


class DDIMStepOutput(NamedTuple):
    """The result of one DDIM step; all tensors have the sample's shape ``(B, ...)``."""

    prev_sample: torch.Tensor  # x_{t'}
    pred_original_sample: torch.Tensor  # x̂_0 (after clipping/thresholding)
    pred_epsilon: torch.Tensor  # the ε used in the direction term


def _check_real(name: str, value, *, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


def _check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


class ConditionalDDIMSampler:
    """DDIM sampling with classifier-free, composable and classifier guidance.

    Introduced in notebook 08.

    Args:
        denoiser: any callable ``denoiser(x_t, t, context) -> prediction`` with
            ``x_t`` ``(B, *sample_shape)``, ``t`` a ``(B,)`` long tensor and the
            prediction of ``x_t``'s shape (the course's denoiser protocol).
            Optional attributes read: ``prediction_type`` and ``context_dim``.
        schedule: the ``NoiseSchedule`` the denoiser was trained with.
        prediction_type: "epsilon", "v_prediction" or "sample"; default: the
            denoiser's ``prediction_type`` attribute, else "epsilon".
    """

    def __init__(
        self, denoiser: Callable, schedule: NoiseSchedule, prediction_type: str | None = None
    ):
        if not callable(denoiser):
            raise TypeError(
                f"denoiser must be callable (x_t, t, context) -> prediction, got {type(denoiser).__name__}"
            )
        if not isinstance(schedule, NoiseSchedule):
            raise TypeError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
        if prediction_type is None:
            prediction_type = getattr(denoiser, "prediction_type", None) or "epsilon"
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}"
            )
        self.denoiser = denoiser
        self.schedule = schedule
        self.prediction_type = prediction_type

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
        clip_sample: bool = False,
        clip_sample_range: float = 1.0,
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        sample_max_value: float = 1.0,
        use_clipped_model_output: bool = True,
        prediction_type: str | None = None,
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
            clip_sample, clip_sample_range: clip x̂_0 to [−r, r].
            thresholding, dynamic_thresholding_ratio, sample_max_value: Imagen's
                dynamic thresholding of x̂_0 (takes precedence over clipping, as in diffusers).
            use_clipped_model_output: recompute ε from the clipped x̂_0 (default True).
            prediction_type: defaults to the sampler's.

        Returns:
            ``DDIMStepOutput(prev_sample, pred_original_sample, pred_epsilon)``.
        """
        prediction_type = prediction_type or self.prediction_type
        t, t_prev = int(timestep), int(prev_timestep)
        T = self.schedule.num_train_timesteps
        if not 0 <= t < T:
            raise ValueError(f"timestep must be in [0, {T - 1}], got {t}")
        if t_prev >= t:
            raise ValueError(f"prev_timestep must be < timestep ({t}), got {t_prev}")
        eta = _check_real("eta", eta, low=0.0)

        # 1. ᾱ_t and ᾱ' (0-d float32 tensors, as in diffusers)
        a_t, a_prev = self.alpha_cumprod(t), self.alpha_cumprod(t_prev)
        # 2. x̂_0 and ε̂ from the model output
        x0 = self.schedule.predict_x0(model_output, sample, t, prediction_type)
        eps = self.schedule.predict_eps(model_output, sample, t, prediction_type)
        # 3. clip or threshold x̂_0, and keep ε consistent with it
        if thresholding:
            x0 = dynamic_threshold(x0, dynamic_thresholding_ratio, sample_max_value)
        elif clip_sample:
            r = _check_real("clip_sample_range", clip_sample_range, low=0.0)
            x0 = x0.clamp(-r, r)
        if (thresholding or clip_sample) and use_clipped_model_output:
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
        if variance_noise is not None and generator is not None:
            raise ValueError("pass either generator or variance_noise, not both")
        if variance_noise is None:
            return torch.randn(
                sample.shape, generator=generator, device=sample.device, dtype=sample.dtype
            )
        if not isinstance(variance_noise, torch.Tensor) or variance_noise.shape != sample.shape:
            got = (
                tuple(variance_noise.shape)
                if isinstance(variance_noise, torch.Tensor)
                else type(variance_noise).__name__
            )
            raise ValueError(
                f"variance_noise must have the sample's shape {tuple(sample.shape)}, got {got}"
            )
        return variance_noise

    # ============================================================ model outputs
    def _model_outputs(
        self, x: torch.Tensor, t_batch: torch.Tensor, contexts: list[torch.Tensor], batched: bool
    ) -> list[torch.Tensor]:
        """The denoiser's outputs for each context, in one doubled batch or in separate passes."""
        if batched and len(contexts) > 1:
            n = len(contexts)
            out = self.denoiser(torch.cat([x] * n), torch.cat([t_batch] * n), torch.cat(contexts))
            self._check_output(out, (n * x.shape[0],) + tuple(x.shape[1:]))
            return list(out.chunk(n))
        outs = [self.denoiser(x, t_batch, c) for c in contexts]
        for o in outs:
            self._check_output(o, tuple(x.shape))
        return outs

    @staticmethod
    def _check_output(out, shape) -> None:
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"denoiser must return a tensor of shape {shape} (x_t's shape), got {got}"
            )

    def guided_prediction(
        self,
        x: torch.Tensor,
        t: int,
        conds: list[torch.Tensor],
        negative: torch.Tensor | None,
        guidance_scale: float,
        prompt_weights: list[float],
        guidance_rescale: float = 0.0,
        batched: bool = True,
    ) -> torch.Tensor:
        """Steps 1-3 of the module docstring at one timestep; returns the guided model output.

        The unconditional pass is skipped when it cannot matter: one prompt of
        weight 1 at γ = 1 (``cfg_combine(ε_u, ε_c, 1) = ε_c``). With several
        prompts, guidance rescale matches the std of the γ = 1 combination
        ε_u + Σ_k w_k (ε_k − ε_u) (the single-prompt ε_c's analogue).
        """
        t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        single = len(conds) == 1 and prompt_weights[0] == 1.0
        if single and guidance_scale == 1.0:
            return self._model_outputs(x, t_batch, conds, batched)[0]
        if negative is None:
            raise ValueError("negative is required here: pass the encoded empty prompt")
        uncond, *cond_outs = self._model_outputs(x, t_batch, [negative, *conds], batched)
        if single:
            guided, text = cfg_combine(uncond, cond_outs[0], guidance_scale), cond_outs[0]
        else:
            guided = combine_weighted_prompts(uncond, cond_outs, prompt_weights, guidance_scale)
            text = combine_weighted_prompts(uncond, cond_outs, prompt_weights, 1.0)
        if guidance_rescale > 0:
            guided = rescale_noise_cfg(guided, text, guidance_rescale)
        return guided

    # ================================================================ sampling
    @torch.no_grad()
    def sample(
        self,
        shape: Sequence[int],
        text_embeddings: torch.Tensor | Sequence[torch.Tensor],
        negative_embeddings: torch.Tensor | None = None,
        guidance_scale: float = 7.5,
        num_inference_steps: int = 50,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        timestep_spacing: str = "leading",
        steps_offset: int = 0,
        clip_sample: bool = False,
        clip_sample_range: float = 1.0,
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        sample_max_value: float = 1.0,
        use_clipped_model_output: bool = True,
        guidance_rescale: float = 0.0,
        guidance_interval: tuple[float, float] | None = None,
        prompt_weights: Sequence[float] | None = None,
        cfg_mode: str = "auto",
        classifier: Callable | None = None,
        classifier_labels: torch.Tensor | None = None,
        classifier_scale: float = 0.0,
        latents: torch.Tensor | None = None,
        progress: bool = True,
        callback: Callable | None = None,
        return_intermediates: bool = False,
    ):
        """Generate samples by guided DDIM, from x_T ~ N(0, I) to x_0.

        Args:
            shape: ``(B, *sample_shape)``, at least 2 dims: ``(B, C, H, W)`` images,
                ``(B, 2)`` points.
            text_embeddings: the condition, ``(B, N, D)`` for the U-Net (any
                ``(B, ...)`` layout the denoiser accepts), or a list of K such
                tensors for composable prompts ("a AND b").
            negative_embeddings: the null condition ε_u is computed with: the
                encoded empty prompt "" (or a negative prompt), the shape of
                one ``text_embeddings`` tensor. Required whenever the
                unconditional prediction is used; never replaced by zeros.
            guidance_scale: γ ≥ 0. At γ = 1 with one prompt the unconditional
                pass is skipped entirely.
            num_inference_steps: n in [1, T].
            eta: η in [0, 1]; 0 is DDIM, 1 is DDPM-like.
            generator: draws, in order, x_T (unless ``latents`` is given) then,
                when η > 0, one z of the sample's shape at every step.
            timestep_spacing, steps_offset: see ``NoiseSchedule.timesteps``.
            clip_sample, clip_sample_range, thresholding, dynamic_thresholding_ratio,
                sample_max_value, use_clipped_model_output: see ``step``.
            guidance_rescale: φ in [0, 1] (``rescale_noise_cfg``).
            guidance_interval: ``(t_lo, t_hi)`` in training timesteps; CFG uses
                γ inside [t_lo, t_hi] and γ = 1 outside (``None``: everywhere).
            prompt_weights: one weight per prompt when ``text_embeddings`` is a
                list (default: 1 each, as AUTOMATIC1111's ``AND``); the
                prediction is ε_u + Σ_k w_k γ (ε_k − ε_u).
            cfg_mode: "batched" (one call on the concatenated batch — the
                usual pipelines' trick), "two_pass" (one call per condition) or "auto"
                (batched when the concatenated batch has at most
                ``AUTO_BATCHED_MAX_ROWS`` rows; chosen from measurement).
            classifier, classifier_labels, classifier_scale: classifier
                guidance with ``classifier(x_t, t) -> logits (B, K)``, labels
                ``(B,)`` and scale s ≥ 0, applied after CFG. For pure
                classifier guidance pass the empty prompt as ``text_embeddings``
                and ``guidance_scale=1``.
            latents: x_T of shape ``shape`` (else drawn with ``generator``).
            progress: show a tqdm progress bar.
            callback: called after every step as
                ``callback(step_index, t, x_prev, pred_x0)``.
            return_intermediates: also return the trajectory.

        Returns:
            x_0 of shape ``shape``; with ``return_intermediates`` a pair
            ``(x_0, {"timesteps": (n,), "x_t": (n+1, *shape) from x_T to x_0,
            "pred_x0": (n, *shape)})``.
        """
        conds, weights = self._check_conditions(
            text_embeddings, negative_embeddings, prompt_weights
        )
        shape = self._check_shape(shape, conds[0])
        guidance_scale = _check_real("guidance_scale", guidance_scale, low=0.0)
        single = len(conds) == 1 and weights[0] == 1.0
        if negative_embeddings is None and not (single and guidance_scale == 1.0):
            raise ValueError(
                "negative_embeddings is required when guidance_scale != 1 or with weighted prompts: "
                'pass the encoded empty prompt "" (the null condition the model was trained with) '
                "or a negative prompt; the sampler never substitutes a zero tensor"
            )
        eta = _check_real("eta", eta, low=0.0, high=1.0)
        guidance_rescale = _check_real("guidance_rescale", guidance_rescale, low=0.0, high=1.0)
        for name, flag in (
            ("clip_sample", clip_sample),
            ("thresholding", thresholding),
            ("use_clipped_model_output", use_clipped_model_output),
            ("progress", progress),
            ("return_intermediates", return_intermediates),
        ):
            _check_bool(name, flag)
        _check_real("clip_sample_range", clip_sample_range, low=0.0)
        ratio = _check_real(
            "dynamic_thresholding_ratio", dynamic_thresholding_ratio, low=0.0, high=1.0
        )
        if ratio == 0.0:
            raise ValueError("dynamic_thresholding_ratio must be in (0, 1], got 0.0")
        _check_real("sample_max_value", sample_max_value, low=1.0)
        if guidance_interval is not None:
            effective_guidance_scale(guidance_scale, 0, guidance_interval)  # validates the pair
        if timestep_spacing not in TIMESTEP_SPACINGS:
            raise ValueError(
                f"timestep_spacing must be one of {TIMESTEP_SPACINGS}, got {timestep_spacing!r}"
            )
        timesteps = self.schedule.timesteps(num_inference_steps, timestep_spacing, steps_offset)
        batched = self._resolve_cfg_mode(cfg_mode, shape[0] * (len(conds) + 1))
        classifier_scale = self._check_classifier(
            classifier, classifier_labels, classifier_scale, shape[0]
        )
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")

        device = conds[0].device
        dtype = conds[0].dtype if conds[0].is_floating_point() else torch.float32
        if generator is not None:
            if not isinstance(generator, torch.Generator):
                raise TypeError(
                    f"generator must be a torch.Generator, got {type(generator).__name__}"
                )
            if generator.device.type != device.type:
                raise ValueError(
                    f"generator must be on the embeddings' device type {device.type!r}, got {generator.device.type!r}"
                )
        x = self._initial_latents(latents, shape, generator, device, dtype)

        traj_x, traj_x0 = [x], []
        steps = timesteps.tolist()
        for i, t in enumerate(tqdm(steps, desc="DDIM", disable=not progress)):
            t_prev = steps[i + 1] if i + 1 < len(steps) else -1
            gamma = effective_guidance_scale(guidance_scale, t, guidance_interval)
            out = self.guided_prediction(
                x, t, conds, negative_embeddings, gamma, weights, guidance_rescale, batched
            )
            ptype = self.prediction_type
            if classifier is not None and classifier_scale > 0:
                t_batch = torch.full((shape[0],), t, dtype=torch.long, device=device)
                grad = classifier_log_prob_grad(classifier, x, t_batch, classifier_labels)
                eps = self.schedule.predict_eps(out, x, t, ptype)
                out, ptype = (
                    classifier_guided_eps(eps, grad, self.alpha_cumprod(t), classifier_scale),
                    "epsilon",
                )
            x, x0, _ = self.step(
                out,
                t,
                x,
                t_prev,
                eta=eta,
                generator=generator,
                clip_sample=clip_sample,
                clip_sample_range=clip_sample_range,
                thresholding=thresholding,
                dynamic_thresholding_ratio=dynamic_thresholding_ratio,
                sample_max_value=sample_max_value,
                use_clipped_model_output=use_clipped_model_output,
                prediction_type=ptype,
            )
            if return_intermediates:
                traj_x.append(x)
                traj_x0.append(x0)
            if callback is not None:
                callback(i, t, x, x0)
        if not return_intermediates:
            return x
        return x, {
            "timesteps": timesteps,
            "x_t": torch.stack(traj_x),
            "pred_x0": torch.stack(traj_x0),
        }

    # ============================================================ validation
    def _check_conditions(self, text_embeddings, negative_embeddings, prompt_weights):
        """Returns (list of K condition tensors, list of K weights) after checking them."""
        if isinstance(text_embeddings, torch.Tensor):
            conds = [text_embeddings]
        elif (
            isinstance(text_embeddings, Sequence)
            and not isinstance(text_embeddings, (str, bytes))
            and len(text_embeddings) > 0
        ):
            conds = list(text_embeddings)
        else:
            raise TypeError(
                "text_embeddings must be a tensor (B, N, D) or a non-empty list of such tensors "
                f"(encode prompts first), got {type(text_embeddings).__name__}"
            )
        ref = conds[0]
        for k, c in enumerate(conds):
            name = "text_embeddings" if len(conds) == 1 else f"text_embeddings[{k}]"
            if not isinstance(c, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(c).__name__}")
            self._check_like(name, c, "text_embeddings[0]", ref)
            self._check_context(name, c)
        if negative_embeddings is not None:
            if not isinstance(negative_embeddings, torch.Tensor):
                raise TypeError(
                    f"negative_embeddings must be a torch.Tensor, got {type(negative_embeddings).__name__}"
                )
            self._check_like("negative_embeddings", negative_embeddings, "text_embeddings", ref)
            self._check_context("negative_embeddings", negative_embeddings)
        if prompt_weights is None:
            weights = [1.0] * len(conds)
        else:
            if isinstance(prompt_weights, torch.Tensor):
                prompt_weights = prompt_weights.tolist()
            if not isinstance(prompt_weights, Sequence) or len(prompt_weights) != len(conds):
                raise ValueError(
                    f"prompt_weights must be a sequence of one weight per prompt (K={len(conds)}), got {prompt_weights!r}"
                )
            weights = [_check_real(f"prompt_weights[{k}]", w) for k, w in enumerate(prompt_weights)]
        return conds, weights

    def _check_context(self, name: str, c: torch.Tensor) -> None:
        if c.ndim < 1:
            raise ValueError(f"{name} must have a batch dimension, got a 0-d tensor")
        if c.is_floating_point() and not bool(torch.isfinite(c).all()):
            raise ValueError(f"{name} contains NaN or inf")
        context_dim = getattr(self.denoiser, "context_dim", None)
        if context_dim is not None and c.shape[-1] != context_dim:
            raise ValueError(
                f"{name} must have last dimension context_dim={context_dim} (the denoiser's), "
                f"got shape {tuple(c.shape)}"
            )

    @staticmethod
    def _check_like(name: str, c: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
        if c.shape[0] != ref.shape[0]:
            raise ValueError(
                f"{name} must have the batch size of {ref_name} ({ref.shape[0]}), got {c.shape[0]}"
            )
        if c.shape != ref.shape:
            raise ValueError(
                f"{name} must have the shape of {ref_name} {tuple(ref.shape)}, got {tuple(c.shape)}"
            )
        if c.dtype != ref.dtype:
            raise TypeError(
                f"{name} must have the dtype of {ref_name} ({ref.dtype}), got {c.dtype}"
            )
        if c.device != ref.device:
            raise ValueError(
                f"{name} must be on the device of {ref_name} ({ref.device}), got {c.device}"
            )

    @staticmethod
    def _check_shape(shape, cond: torch.Tensor) -> tuple[int, ...]:
        if isinstance(shape, torch.Size):
            shape = tuple(shape)
        if (
            not isinstance(shape, (tuple, list))
            or len(shape) < 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)
        ):
            raise ValueError(
                f"shape must be a tuple of >= 2 positive ints (B, *sample_shape), got {shape!r}"
            )
        if shape[0] != cond.shape[0]:
            raise ValueError(
                f"shape[0] (batch size {shape[0]}) must equal text_embeddings' batch size {cond.shape[0]}"
            )
        return tuple(shape)

    @staticmethod
    def _resolve_cfg_mode(cfg_mode: str, rows: int) -> bool:
        if cfg_mode not in CFG_MODES:
            raise ValueError(f"cfg_mode must be one of {CFG_MODES}, got {cfg_mode!r}")
        if cfg_mode == "auto":
            return rows <= AUTO_BATCHED_MAX_ROWS
        return cfg_mode == "batched"

    @staticmethod
    def _check_classifier(classifier, labels, scale, batch: int) -> float:
        scale = _check_real("classifier_scale", scale, low=0.0)
        if classifier is None:
            if scale > 0:
                raise ValueError("classifier_scale > 0 needs a classifier (x_t, t) -> logits")
            return scale
        if not callable(classifier):
            raise TypeError(
                f"classifier must be callable (x_t, t) -> logits, got {type(classifier).__name__}"
            )
        if (
            not isinstance(labels, torch.Tensor)
            or labels.is_floating_point()
            or labels.dtype == torch.bool
        ):
            raise TypeError(
                f"classifier_labels must be an integer tensor of shape ({batch},) when a classifier is given"
            )
        if labels.shape != (batch,):
            raise ValueError(
                f"classifier_labels must have shape ({batch},), got {tuple(labels.shape)}"
            )
        return scale

    @staticmethod
    def _initial_latents(latents, shape, generator, device, dtype) -> torch.Tensor:
        if latents is None:
            return torch.randn(shape, generator=generator, device=device, dtype=dtype)
        if not isinstance(latents, torch.Tensor):
            raise TypeError(f"latents must be a torch.Tensor, got {type(latents).__name__}")
        if tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        if not latents.is_floating_point():
            raise TypeError(f"latents must be floating point, got {latents.dtype}")
        if latents.dtype != dtype:
            raise TypeError(f"latents must have the embeddings' dtype {dtype}, got {latents.dtype}")
        if latents.device != device:
            raise ValueError(
                f"latents must be on the embeddings' device {device}, got {latents.device}"
            )
        return latents
