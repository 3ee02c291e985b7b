"""Guiders: one small object per guidance method, with the names diffusers' ``guiders`` use.

Introduced in the chapter "Guidance after CFG". A guider turns the denoiser's
predictions at one sampling step into the *guided* prediction. Each class
validates its options once, at construction; at every step it asks the
:class:`GuidanceStep` for the predictions it needs (``step.predict(context)``)
and combines them with its equation, written in its ``combine`` method so the
maths can be tested on hand-made tensors and against diffusers.

============================================  =========================================================
guider                                        guided prediction ε̃ (per image)
============================================  =========================================================
:class:`ClassifierFreeGuidance`               ε_u + γ (ε_c − ε_u)                       (Ho & Salimans 2022)
:class:`WeightedPromptsGuidance`              ε_u + Σₖ w_{b,k} (ε_k − ε_u)              (Liu et al. 2022)
:class:`ClassifierGuidance`                   ε_c − s √(1 − ᾱ_t) ∇ log p(y | x_t)       (Dhariwal & Nichol 2021)
:class:`AdaptiveProjectedGuidance`            ε_u + γ (Δ_⊥ + η Δ_∥)                     (Sadat et al. 2024)
:class:`ClassifierFreeZeroStarGuidance`       s* ε_u + γ (ε_c − s* ε_u), 0 at first steps (Fan et al. 2025)
:class:`AutoGuidance`                         ε_weak + γ (ε_c − ε_weak)                 (Karras et al. 2024)
:class:`PerturbedAttentionGuidance`           CFG + s (ε_c − ε_c^{perturbed})           (Ahn et al. 2024)
:class:`PerpNegGuidance`                      ε_u + γ Δ_c − w Δ_n^⊥                    (Armandpour et al. 2023)
============================================  =========================================================

Convention: ``guidance_scale`` is γ of the Imagen form ``ε_u + γ (ε_c − ε_u)`` (γ = 1
is the conditional model alone, γ = 0 the unconditional one), as diffusers uses it;
Ho & Salimans write ``(1 + w) ε_c − w ε_u``, so ``w = γ − 1``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from . import _checks
from .guidance import _rescale_noise_cfg as _rescale  # unchecked: the guider checked φ once
from .guidance import classifier_log_prob_grad

__all__ = [
    "GuidanceStep",
    "Guider",
    "ClassifierFreeGuidance",
    "WeightedPromptsGuidance",
    "ClassifierGuidance",
    "AdaptiveProjectedGuidance",
    "ClassifierFreeZeroStarGuidance",
    "AutoGuidance",
    "PerturbedAttentionGuidance",
    "PerpNegGuidance",
    "perturbed_self_attention",
    "CFG_MODES",
    "AUTO_BATCHED_MAX_ROWS",
]

CFG_MODES = ("batched", "two_pass", "auto")

# cfg_mode="auto": one concatenated batch when it has at most this many rows, else one
# pass per condition. Measured with benchmarks/rows_sampler.py on the course's 2-core CPU
# (ConditionalUNet(UNetConfig()), 1.12M params, 32×32, 77 context tokens, 2 threads, other
# jobs running), speedup = two-pass / batched:
#     batch 1:  1.32x, 1.36x, 2.06x, 1.25x   (batched faster)
#     batch 8:  1.00x, 1.10x, 1.25x, 1.03x   (about even)
#     batch 64: 0.95x, 0.84x, 0.63x, 0.80x   (batched *slower*; not profiled why)
# (four runs; the machine was shared, so the spread is wide but the signs agree).
# So the common claim "the batch trick is ~1.5x faster" holds only at small batch here.
AUTO_BATCHED_MAX_ROWS = 16


_real = _checks.real


def _interval(interval) -> tuple[float, float] | None:
    if interval is None:
        return None
    _checks.that(isinstance(interval, (tuple, list)) and len(interval) == 2, f"interval must be None or (t_low, t_high), got {interval!r}")
    lo, hi = (_real("interval", v, 0.0) for v in interval)
    _checks.that(lo <= hi, f"interval must have t_low <= t_high, got {interval!r}")
    return lo, hi


# --------------------------------------------------------------------------- the step a guider sees


@dataclass
class GuidanceStep:
    """Everything a guider may use at one step of the sampler.

    Attributes:
        sample: x_t, ``(B, C, H, W)``.
        timestep: t (an int of the training schedule).
        index: the step's position ``i`` in ``0 .. num_inference_steps − 1``.
        num_inference_steps: the number of sampling steps.
        alpha_cumprod: ᾱ_t (0-d tensor).
        prompt_embeds: the conditions, ``(B, 77, D)``, or a list of them for weighted prompts.
        negative_prompt_embeds: the unconditional / negative condition ``(B, 77, D)`` (the
            encoded ``""`` by default), or None.
        denoiser: ``(x_t, t, context) -> prediction`` (the course's denoiser protocol).
        cfg_mode: "batched" evaluates several contexts as one concatenated batch (the "CFG
            batch trick"), "two_pass" one pass each, "auto" batches up to
            ``AUTO_BATCHED_MAX_ROWS`` rows (measured on this CPU: it pays only at small batch).
        prediction_type: what the denoiser predicts ("epsilon", "v_prediction", "sample").
    """

    sample: torch.Tensor
    timestep: int
    index: int
    num_inference_steps: int
    alpha_cumprod: torch.Tensor
    prompt_embeds: torch.Tensor | list[torch.Tensor]
    negative_prompt_embeds: torch.Tensor | None
    denoiser: Callable
    cfg_mode: str = "two_pass"
    prediction_type: str = "epsilon"

    def predict(self, context: torch.Tensor, denoiser: Callable | None = None) -> torch.Tensor:
        """``denoiser(x_t, t, context)`` (the step's own denoiser unless another is given)."""
        model = denoiser or self.denoiser
        t = torch.full((self.sample.shape[0],), self.timestep, dtype=torch.long, device=self.sample.device)
        return self._checked(model(self.sample, t, context), self.sample.shape[0])

    def predict_all(self, contexts: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """One prediction per context: one concatenated batch or one pass each (``cfg_mode``)."""
        b = self.sample.shape[0]
        rows = b * len(contexts)
        batched = self.cfg_mode == "batched" or (self.cfg_mode == "auto" and rows <= AUTO_BATCHED_MAX_ROWS)
        if not batched or len(contexts) == 1:
            return [self.predict(c) for c in contexts]
        x = self.sample.repeat(len(contexts), *(1,) * (self.sample.dim() - 1))
        t = torch.full((rows,), self.timestep, dtype=torch.long, device=x.device)
        return list(self._checked(self.denoiser(x, t, torch.cat(list(contexts))), rows).split(b))

    def _checked(self, out, rows: int) -> torch.Tensor:
        """The denoiser's output, checked at the first step only: a wrong denoiser is reported
        at once, not as a broadcast deep in the step, and later steps pay nothing."""
        want = (rows, *self.sample.shape[1:])
        if self.index == 0:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            _checks.that(got == want, f"denoiser must return a tensor of shape {want} (x_t's shape), got {got}")
        return out

    def to_epsilon(self, prediction: torch.Tensor) -> torch.Tensor:
        """The ε a prediction of ``prediction_type`` implies:  x̂_0-form  ε = (x_t − √ᾱ_t x̂_0)/√(1 − ᾱ_t),
        v-form  ε = √ᾱ_t v + √(1 − ᾱ_t) x_t."""
        a, x = self.alpha_cumprod.to(prediction), self.sample
        if self.prediction_type == "epsilon":
            return prediction
        if self.prediction_type == "v_prediction":
            return a.sqrt() * prediction + (1 - a).sqrt() * x
        return (x - a.sqrt() * prediction) / (1 - a).sqrt()

    def to_x0(self, prediction: torch.Tensor) -> torch.Tensor:
        """The denoised image a prediction implies, x̂_0 = (x_t − √(1 − ᾱ_t) ε)/√ᾱ_t."""
        a = self.alpha_cumprod.to(prediction)
        return (self.sample - (1 - a).sqrt() * self.to_epsilon(prediction)) / a.sqrt()

    def from_x0(self, x0: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`to_x0`: the prediction whose x̂_0 is ``x0``."""
        a = self.alpha_cumprod.to(x0)
        return self.from_epsilon((self.sample - a.sqrt() * x0) / (1 - a).sqrt())

    def from_epsilon(self, eps: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`to_epsilon`."""
        a, x = self.alpha_cumprod.to(eps), self.sample
        if self.prediction_type == "epsilon":
            return eps
        if self.prediction_type == "v_prediction":
            return (eps - (1 - a).sqrt() * x) / a.sqrt()
        return (x - (1 - a).sqrt() * eps) / a.sqrt()


class Guider:
    """Base class: ``guider(step) -> guided prediction``; the sampler calls :meth:`prepare` once
    before the first step of every sampling call, so the steps check nothing."""

    takes_prompt_list = False  # True for a guider of K prompt conditions (a list)

    def __init__(self, guidance_scale: float = 1.0, guidance_rescale: float = 0.0):
        """γ ≥ 0 and φ ∈ [0, 1] (used by the guiders that rescale), checked here for every guider."""
        self.guidance_scale = _real("guidance_scale", guidance_scale, 0.0)
        self.guidance_rescale = _real("guidance_rescale", guidance_rescale, 0.0, 1.0)

    def uses_negative(self) -> bool:
        """Whether the steps evaluate the negative / null condition."""
        return True

    def prepare(self, prompt_embeds, negative_prompt_embeds) -> None:
        """Check that a sampling call's conditions suit this guider, then :meth:`reset`."""
        _checks.that(self.takes_prompt_list or isinstance(prompt_embeds, torch.Tensor), "this guider takes one prompt_embeds tensor; for several use WeightedPromptsGuidance")
        _checks.that(negative_prompt_embeds is not None or not self.uses_negative(), "negative_prompt_embeds is required by this guider: pass the encoded empty prompt \"\" (the null condition) or a negative prompt; the sampler never substitutes zeros")
        self.reset()

    def reset(self) -> None:
        """Clear per-sampling state (e.g. APG's momentum). Stateless guiders do nothing."""

    def __call__(self, step: GuidanceStep) -> torch.Tensor:
        raise NotImplementedError


def _negative(step: GuidanceStep) -> torch.Tensor:
    return step.negative_prompt_embeds  # present: checked by Guider.prepare


def _single(step: GuidanceStep) -> torch.Tensor:
    return step.prompt_embeds  # one tensor: checked by Guider.prepare


def _cond_uncond(step: GuidanceStep) -> tuple[torch.Tensor, torch.Tensor]:
    cond, uncond = step.predict_all([_single(step), _negative(step)])
    return cond, uncond


# --------------------------------------------------------------------------- CFG and its relatives


class ClassifierFreeGuidance(Guider):
    """Classifier-free guidance (Ho & Salimans 2022), Imagen form: ``ε̃ = ε_u + γ (ε_c − ε_u)``.

    Args:
        guidance_scale: γ (Ho & Salimans' ``w = γ − 1``); 1 is the conditional model alone.
        guidance_rescale: φ of Lin et al. (WACV 2024): mix ε̃ with ε̃·std(ε_c)/std(ε̃).
        interval: ``(t_low, t_high)``: guide only for timesteps in this closed range
            (Kynkäänniemi et al. 2024); outside it the step uses ε_c (γ = 1), one pass.
    """

    def __init__(self, guidance_scale: float = 7.5, guidance_rescale: float = 0.0, interval=None):
        super().__init__(guidance_scale, guidance_rescale)
        self.interval = _interval(interval)

    def uses_negative(self) -> bool:
        return self.guidance_scale != 1.0

    def active(self, timestep: int) -> bool:
        """Whether guidance applies at ``timestep`` (inside the interval, and γ ≠ 1)."""
        inside = self.interval is None or self.interval[0] <= timestep <= self.interval[1]
        return inside and self.guidance_scale != 1.0

    def combine(self, pred_cond: torch.Tensor, pred_uncond: torch.Tensor) -> torch.Tensor:
        """``ε_u + γ (ε_c − ε_u)``, then guidance rescale if φ > 0."""
        pred = pred_uncond + self.guidance_scale * (pred_cond - pred_uncond)
        if self.guidance_rescale > 0:
            pred = _rescale(pred, pred_cond, self.guidance_rescale)
        return pred

    def __call__(self, step: GuidanceStep) -> torch.Tensor:
        if not self.active(step.timestep):
            return step.predict(_single(step))
        if self.guidance_scale == 0.0:  # the unconditional model: one pass on the negative condition
            return step.predict(_negative(step))
        return self.combine(*_cond_uncond(step))


class WeightedPromptsGuidance(Guider):
    """Composable prompts (Liu et al. 2022; AUTOMATIC1111's ``AND``):
    ``ε̃ = ε_u + γ Σₖ w_{b,k} (ε_k − ε_u)``.

    The sampler's ``prompt_embeds`` is the list of the K prompts' conditions. With one
    prompt of weight 1 this is :class:`ClassifierFreeGuidance`.

    Args:
        weights: ``(B, K)`` per-image weights of the K prompt conditions (a zero leaves a
            prompt out of that image, as AUTOMATIC1111's ``conds_list`` lets every image have
            its own list), or K floats for every image; a negative weight pushes away.
        guidance_scale: γ, multiplying every weight (A1111: ``weight * cond_scale``).
        guidance_rescale: φ of Lin et al., towards the std of the γ = 1 combination
            ε_u + Σₖ w_{b,k} (ε_k − ε_u) (the single-prompt ε_c's analogue).
    """

    takes_prompt_list = True

    def __init__(self, weights, guidance_scale: float = 7.5, guidance_rescale: float = 0.0):
        w = torch.as_tensor(weights, dtype=torch.float32)
        _checks.that(w.dim() in (1, 2) and w.numel() and torch.isfinite(w).all(), f"weights must be K finite floats or a (B, K) tensor, got shape {tuple(w.shape)}")
        self.weights = w
        super().__init__(guidance_scale, guidance_rescale)

    def prepare(self, prompt_embeds, negative_prompt_embeds) -> None:
        conds = [prompt_embeds] if isinstance(prompt_embeds, torch.Tensor) else list(prompt_embeds)
        want, got = (conds[0].shape[0], len(conds)), tuple(self.weights.shape)
        _checks.that(got in (want, want[1:]), f"weights must have shape {want} (batch, prompts), got {got}")
        super().prepare(prompt_embeds, negative_prompt_embeds)

    def combine(self, preds: Sequence[torch.Tensor], pred_uncond: torch.Tensor) -> torch.Tensor:
        """``ε_u + γ Σₖ w_{b,k} (ε_k − ε_u)`` for ``preds`` = ``[ε_1, …, ε_K]``, each ``(B, ...)``."""
        w = self.weights if self.weights.dim() == 2 else self.weights.expand(pred_uncond.shape[0], -1)
        w = w.to(pred_uncond).view(*w.shape, *(1,) * (pred_uncond.dim() - 1))
        text = pred_uncond + sum(w[:, k] * (p - pred_uncond) for k, p in enumerate(preds))
        pred = pred_uncond + self.guidance_scale * (text - pred_uncond)
        if self.guidance_rescale > 0:
            pred = _rescale(pred, text, self.guidance_rescale)
        return pred

    def __call__(self, step: GuidanceStep) -> torch.Tensor:
        contexts = list(step.prompt_embeds) if isinstance(step.prompt_embeds, (list, tuple)) else [step.prompt_embeds]
        *preds, uncond = step.predict_all(contexts + [_negative(step)])
        return self.combine(preds, uncond)


class ClassifierGuidance(Guider):
    """Classifier guidance (Dhariwal & Nichol 2021, eq. 14): ``ε̃ = ε − s √(1 − ᾱ_t) ∇_{x_t} log p_φ(y | x_t, t)``.

    ``ε`` is the prediction on the prompt condition (give the encoded ``""`` to guide the
    unconditional model, as notebook 05 does), or what ``guider`` makes of the step (e.g.
    CFG first, then the classifier — the order of the course's earlier sampler).
    Any ``classifier(x_t, t) -> logits (B, K)``. The gradient is added in ε-form; a
    v- or x̂₀-predicting denoiser's output is converted there and back.

    Args:
        classifier: a noise-robust classifier.
        labels: ``(B,)`` class indices to steer towards.
        classifier_scale: s ≥ 0.
        guider: the guider whose prediction the gradient is added to (default: the
            conditional model alone).
    """

    def __init__(self, classifier: Callable, labels: torch.Tensor, classifier_scale: float = 1.0,
                 guider: Guider | None = None):
        _checks.function("classifier", classifier, "(x_t, t) -> logits")
        _checks.integers("labels", labels, "a (B,) integer tensor of class indices", ndim=1)
        _checks.instance("guider", guider, (Guider, type(None)), "a Guider or None")
        self.classifier, self.labels, self.guider = classifier, labels, guider
        self.classifier_scale = _real("classifier_scale", classifier_scale, 0.0)

    def uses_negative(self) -> bool:
        return self.guider is not None and self.guider.uses_negative()

    def prepare(self, prompt_embeds, negative_prompt_embeds) -> None:
        # labels' shape (one class per image) and range: checked at step 0, with the logits
        if self.guider is not None:
            self.guider.prepare(prompt_embeds, negative_prompt_embeds)  # the inner guider's rules
        else:
            super().prepare(prompt_embeds, negative_prompt_embeds)

    def reset(self) -> None:
        if self.guider is not None:
            self.guider.reset()

    def combine(self, pred: torch.Tensor, grad_log_prob: torch.Tensor, alpha_cumprod: torch.Tensor) -> torch.Tensor:
        """``ε − s √(1 − ᾱ_t) ∇ log p(y | x_t)``."""
        a = torch.as_tensor(alpha_cumprod).to(pred)  # in the prediction's precision (float64 on the mixtures)
        return pred - self.classifier_scale * (1 - a).sqrt() * grad_log_prob

    def __call__(self, step: GuidanceStep) -> torch.Tensor:
        pred = self.guider(step) if self.guider is not None else step.predict(_single(step))
        if self.classifier_scale == 0:
            return pred
        t = torch.full((step.sample.shape[0],), step.timestep, dtype=torch.long, device=step.sample.device)
        labels = self.labels.to(step.sample.device)
        if step.index == 0:  # checked once per call: the classifier's logits and the labels' range
            grad = classifier_log_prob_grad(self.classifier, step.sample, t, labels)
        else:
            grad = self._grad_log_prob(step.sample, t, labels)
        return step.from_epsilon(self.combine(step.to_epsilon(pred), grad, step.alpha_cumprod))

    def _grad_log_prob(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``classifier_log_prob_grad`` without its checks, which the first step ran."""
        with torch.enable_grad():
            x = x_t.detach().requires_grad_(True)
            log_p = torch.log_softmax(self.classifier(x, t), dim=-1).gather(1, labels.long()[:, None])
            return torch.autograd.grad(log_p.sum(), x)[0]


# --------------------------------------------------------------------------- after CFG


def _flat_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image inner product ``⟨a_b, b_b⟩`` over all non-batch dims, shape ``(B, 1, …, 1)``."""
    dims = list(range(1, a.dim()))
    return (a * b).sum(dim=dims, keepdim=True)


class AdaptiveProjectedGuidance(Guider):
    """Adaptive projected guidance, APG (Sadat et al. 2024, "Eliminating Oversaturation …", Alg. 1).

    With ``Δ = ε_c − ε_u`` per image:

    1. momentum (optional, β < 0 in the paper): ``Δ ← Δ + β Δ_prev`` (a running sum across steps);
    2. norm threshold r: ``Δ ← Δ · min(1, r / ‖Δ‖)``;
    3. split Δ into its component along ε_c and the rest: ``Δ_∥ = ⟨Δ, ε̂_c⟩ ε̂_c``, ``Δ_⊥ = Δ − Δ_∥``
       (ε̂_c = ε_c/‖ε_c‖) — the parallel part is what oversaturates;
    4. ``ε̃ = ε_u + γ (Δ_⊥ + η Δ_∥)`` (diffusers' default), or, with
       ``use_original_formulation``, ``ε̃ = ε_c + γ (Δ_⊥ + η Δ_∥)`` — the paper's Alg. 1 is
       this form with scale w − 1: ``D̃ = D_c + (w − 1)(Δ_⊥ + η Δ_∥)``.

    The two forms differ unless η = 1: the default is ``ε_c + (γ − 1) Δ_⊥ + (γη − 1) Δ_∥``, so
    with η = 0 it also removes the conditional prediction's own parallel part and at γ = 1 it
    is *not* the conditional model. For the paper's method at scale w use
    ``AdaptiveProjectedGuidance(w - 1, eta=0, use_original_formulation=True, space="x0")``.

    With ``eta=1``, no threshold and no momentum it is CFG. Equal to diffusers'
    ``AdaptiveProjectedGuidance`` (tested; the projection is computed in float64, as there).

    Which predictions are split. The paper applies the update to the *denoised* predictions
    D(x_t) = x̂_0 (``space="x0"``: ε_c, ε_u → x̂_0,c, x̂_0,u, the update, back to the model's
    prediction type); diffusers applies it to whatever the model outputs (``space="prediction"``,
    the default here too, for parity) — ε for this course's U-Net and for SD. The two differ:
    the parallel direction is ε̂_c in one and x̂_0,c/‖x̂_0,c‖ in the other. Notebook 09 measures both.

    Args:
        guidance_scale: γ.
        eta: η, the weight kept on the parallel component (0 removes it).
        norm_threshold: r > 0 caps ‖Δ‖ (diffusers' ``adaptive_projected_guidance_rescale``); 0 turns it off.
        momentum: β (diffusers' ``adaptive_projected_guidance_momentum``) or None.
        guidance_rescale: φ of Lin et al., applied afterwards as in diffusers.
        space: "prediction" (diffusers) or "x0" (the paper's denoised predictions).
        use_original_formulation: start from ε_c instead of ε_u (diffusers' flag of the same name).
    """

    SPACES = ("prediction", "x0")

    def __init__(self, guidance_scale: float = 7.5, eta: float = 1.0, norm_threshold: float = 15.0,
                 momentum: float | None = None, guidance_rescale: float = 0.0, space: str = "prediction",
                 use_original_formulation: bool = False):
        super().__init__(guidance_scale, guidance_rescale)
        self.eta = _real("eta", eta)
        self.norm_threshold = _real("norm_threshold", norm_threshold, 0.0)
        self.momentum = None if momentum is None else _real("momentum", momentum)
        _checks.one_of("space", space, self.SPACES)
        self.use_original_formulation = bool(use_original_formulation)
        self.space, self._running = space, None

    def reset(self) -> None:
        self._running = None

    def combine(self, pred_cond: torch.Tensor, pred_uncond: torch.Tensor) -> torch.Tensor:
        """One step of Alg. 1 (updates the momentum state)."""
        diff = pred_cond - pred_uncond
        if self.momentum is not None:
            self._running = diff + (self.momentum * self._running if self._running is not None else 0)
            diff = self._running
        dims = list(range(1, diff.dim()))
        if self.norm_threshold > 0:
            norm = diff.norm(p=2, dim=dims, keepdim=True)
            diff = diff * torch.minimum(torch.ones_like(norm), self.norm_threshold / norm)
        v0 = diff.double()
        v1 = torch.nn.functional.normalize(pred_cond.double(), dim=dims)  # ε̂_c
        parallel = _flat_dot(v0, v1) * v1
        update = (v0 - parallel).to(diff.dtype) + self.eta * parallel.to(diff.dtype)
        pred = (pred_cond if self.use_original_formulation else pred_uncond) + self.guidance_scale * update
        if self.guidance_rescale > 0:
            pred = _rescale(pred, pred_cond, self.guidance_rescale)
        return pred

    def __call__(self, step: GuidanceStep) -> torch.Tensor:
        cond, uncond = _cond_uncond(step)
        if self.space == "x0":
            return step.from_x0(self.combine(step.to_x0(cond), step.to_x0(uncond)))
        return self.combine(cond, uncond)


class ClassifierFreeZeroStarGuidance(Guider):
    """CFG-Zero* (Fan et al. 2025): an optimised scale on ε_u, and zero-init of the first steps.

    ``s* = ⟨ε_c, ε_u⟩ / ‖ε_u‖²`` per image (the least-squares fit of ε_c by s·ε_u), then
    ``ε̃ = s* ε_u + γ (ε_c − s* ε_u)``; for the first ``zero_init_steps`` steps ``ε̃ = 0``.

    The paper works with flow-matching *velocities*, where a zero velocity leaves the
    sample where it is. For this course's ε-prediction DDIM a zero ε means x̂₀ = x_t/√ᾱ_t
    (the noisy sample taken as the clean image), a different intervention; the chapter
    measures what it does here. Equal to diffusers' ``ClassifierFreeZeroStarGuidance`` (tested).
    """

    def __init__(self, guidance_scale: float = 7.5, zero_init_steps: int = 1, guidance_rescale: float = 0.0):
        super().__init__(guidance_scale, guidance_rescale)
        self.zero_init_steps = _checks.integer("zero_init_steps", zero_init_steps, 0)

    def combine(self, pred_cond: torch.Tensor, pred_uncond: torch.Tensor, index: int) -> torch.Tensor:
        if index < self.zero_init_steps:
            pred = torch.zeros_like(pred_cond)
        else:
            c, u = pred_cond.flatten(1).float(), pred_uncond.flatten(1).float()
            s_star = ((c * u).sum(1, keepdim=True) / ((u * u).sum(1, keepdim=True) + 1e-8)).to(pred_cond.dtype)
            scaled = pred_uncond * s_star.view(-1, *(1,) * (pred_cond.dim() - 1))
            pred = scaled + self.guidance_scale * (pred_cond - scaled)
        if self.guidance_rescale > 0:
            pred = _rescale(pred, pred_cond, self.guidance_rescale)
        return pred

    def __call__(self, step: GuidanceStep) -> torch.Tensor:
        if step.index < self.zero_init_steps:
            return torch.zeros_like(step.sample)
        return self.combine(*_cond_uncond(step), step.index)


class AutoGuidance(Guider):
    """Autoguidance (Karras et al. 2024): guide with a *weaker model of the same task*.

    ``ε̃ = ε_weak(x_t, c) + γ (ε(x_t, c) − ε_weak(x_t, c))``: the unconditional branch of CFG
    is replaced by a smaller / less trained denoiser on the *same* condition, so guidance
    pushes away from that model's errors rather than from the unconditional distribution
    (the paper's claim: better fidelity without CFG's loss of variety). The combination is
    diffusers' ``AutoGuidance.forward`` (tested); diffusers builds the weak model by skipping
    layers of the main one, the course uses a separately trained weak U-Net, as the paper does.

    Args:
        weak_denoiser: ``(x_t, t, context) -> prediction``, sharing the main model's text encoder.
        guidance_scale: γ.
    """

    def __init__(self, weak_denoiser: Callable, guidance_scale: float = 2.0):
        self.weak_denoiser = _checks.function("weak_denoiser", weak_denoiser, "(x_t, t, context)")
        super().__init__(guidance_scale)

    def uses_negative(self) -> bool:
        return False

    def combine(self, pred_cond: torch.Tensor, pred_weak: torch.Tensor) -> torch.Tensor:
        return pred_weak + self.guidance_scale * (pred_cond - pred_weak)

    def __call__(self, step: GuidanceStep) -> torch.Tensor:
        cond = _single(step)
        return self.combine(step.predict(cond), step.predict(cond, self.weak_denoiser))


def perturbed_self_attention(unet: torch.nn.Module, layers: Sequence[str] | None = None):
    """Context manager: the chosen self-attention layers use the identity attention map.

    Perturbed-attention guidance (Ahn et al. 2024) replaces a self-attention map ``softmax(QKᵀ/√d)``
    by the identity, so each token keeps its own value: ``out = x + W_o W_v LN(x)``. Done with
    forward hooks on the course's :class:`~tutorial_lib.attention.SelfAttention` modules (the
    U-Net's code is untouched); ``layers`` are module names of ``unet.named_modules()``
    (default: the middle block's self-attention, as PAG's default on SD's mid block).
    """
    return _identity_attention(_self_attention_layers(unet, layers))


def _self_attention_layers(unet: torch.nn.Module, layers: Sequence[str] | None) -> list[torch.nn.Module]:
    """The U-Net's self-attention modules named by ``layers`` (checked), in order."""
    from .attention import SelfAttention

    found = {name: m for name, m in unet.named_modules() if isinstance(m, SelfAttention)}
    names = list(layers) if layers is not None else [n for n in found if n.startswith("mid")]
    missing = [n for n in names if n not in found]
    _checks.that(names and not missing, f"layers must name self-attention modules of the U-Net, one of {sorted(found)}; got {missing or names}")
    return [found[n] for n in names]


@contextmanager
def _identity_attention(modules: Sequence[torch.nn.Module]):
    """Hook ``modules`` (self-attention) so each token attends only to itself, while inside."""

    def identity_attention(module, args, output):
        x = args[0]
        out = module.to_out(module.to_v(module.norm(x)))  # each token attends only to itself
        return x + out if module.residual else out

    handles = [m.register_forward_hook(identity_attention) for m in modules]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


class PerturbedAttentionGuidance(Guider):
    """Perturbed-attention guidance, PAG (Ahn et al. 2024), optionally with CFG.

    ``ε̃ = ε_u + γ (ε_c − ε_u) + s (ε_c − ε_c^{pert})`` where ``ε_c^{pert}`` is the prediction
    with identity self-attention maps (:func:`perturbed_self_attention`); with γ = 1 the CFG
    term vanishes and no unconditional pass runs: ``ε̃ = ε_c^{pert} + s (ε_c − ε_c^{pert})``
    — guidance that needs no text at all. Equal to diffusers'
    ``PerturbedAttentionGuidance.forward`` (tested).

    Args:
        unet: the U-Net whose self-attention is perturbed (the step's denoiser must run it).
        perturbed_guidance_scale: s.
        guidance_scale: γ of the CFG term (1: no CFG).
        layers: see :func:`perturbed_self_attention`.
    """

    def __init__(self, unet: torch.nn.Module, perturbed_guidance_scale: float = 3.0, guidance_scale: float = 1.0,
                 layers: Sequence[str] | None = None):
        self.unet, self.layers = unet, layers
        self._modules = _self_attention_layers(unet, layers)  # the names checked once, here
        self.perturbed_guidance_scale = _real("perturbed_guidance_scale", perturbed_guidance_scale, 0.0)
        super().__init__(guidance_scale)

    def uses_negative(self) -> bool:
        return self.guidance_scale != 1.0

    def combine(self, pred_cond, pred_perturbed, pred_uncond=None) -> torch.Tensor:
        if pred_uncond is None:
            return pred_perturbed + self.perturbed_guidance_scale * (pred_cond - pred_perturbed)
        return (pred_uncond + self.guidance_scale * (pred_cond - pred_uncond)
                + self.perturbed_guidance_scale * (pred_cond - pred_perturbed))

    def __call__(self, step: GuidanceStep) -> torch.Tensor:
        cond = step.predict(_single(step))
        with _identity_attention(self._modules):
            perturbed = step.predict(_single(step))
        uncond = step.predict(_negative(step)) if self.uses_negative() else None
        return self.combine(cond, perturbed, uncond)


class PerpNegGuidance(Guider):
    """Perpendicular negative prompts, Perp-Neg (Armandpour et al. 2023, eq. 6).

    With ``Δ_c = ε_c − ε_u`` and ``Δ_n = ε_n − ε_u`` per image, only the part of the negative
    direction perpendicular to the positive one is subtracted, so a negative prompt that
    overlaps the positive one ("a red circle" vs "red") does not cancel it:

    ``Δ_n^⊥ = Δ_n − (⟨Δ_n, Δ_c⟩ / ‖Δ_c‖²) Δ_c``,   ``ε̃ = ε_u + γ Δ_c − w Δ_n^⊥``.

    Args:
        negative_embeds: the negative prompt's condition ``(B, 77, D)`` (the step's
            ``negative_prompt_embeds`` stays the unconditional ``""``).
        guidance_scale: γ; negative_scale: w ≥ 0.
    """

    def __init__(self, negative_embeds: torch.Tensor, guidance_scale: float = 7.5, negative_scale: float = 1.0):
        ok = isinstance(negative_embeds, torch.Tensor) and negative_embeds.dim() == 3
        _checks.that(ok, "negative_embeds must be a (B, 77, D) tensor (the encoded negative prompt)")
        self.negative_embeds = negative_embeds
        super().__init__(guidance_scale)
        self.negative_scale = _real("negative_scale", negative_scale, 0.0)

    def combine(self, pred_cond, pred_uncond, pred_negative) -> torch.Tensor:
        pos, neg = pred_cond - pred_uncond, pred_negative - pred_uncond
        perp = neg - _flat_dot(neg, pos) / _flat_dot(pos, pos).clamp(min=1e-12) * pos
        return pred_uncond + self.guidance_scale * pos - self.negative_scale * perp

    def __call__(self, step: GuidanceStep) -> torch.Tensor:
        cond, uncond, neg = step.predict_all([_single(step), _negative(step), self.negative_embeds])
        return self.combine(cond, uncond, neg)
