"""Guidance: how a sampler turns model predictions into guided predictions.

Introduced in notebooks 05 (classifier guidance), 06 (classifier-free
guidance, rescale, thresholding, intervals) and 07 (negative, weighted and
composed prompts). Every function here is pure: tensors in, tensors out, no
model state. The sampler (``sampler.py``, notebook 08) calls them once per step.

Notation: ε_u = ε̂(x_t, ∅) is the unconditional prediction (the "null"
condition is the encoded empty prompt "" — or a negative prompt), ε_c =
ε̂(x_t, c) the conditional one, γ the guidance scale, ᾱ_t the noise level.

Shapes: every prediction is ``(B, ...)`` (images ``(B, C, H, W)``, 2-D points
``(B, 2)``). Shapes must match *exactly*: nothing here broadcasts silently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from . import _checks

__all__ = [
    "cfg_combine",
    "combine_weighted_prompts",
    "rescale_noise_cfg",
    "dynamic_threshold",
    "log_prob_grad",
    "classifier_log_prob_grad",
    "classifier_guided_eps",
]


# ---------------------------------------------------------------- validation
_check_real = _checks.real  # the shared check (tutorial_lib._checks)


_check_tensor = _checks.floats  # a floating-point tensor (B, ...) of at least min_ndim dims


# ------------------------------------------------------ classifier-free guidance
def cfg_combine(
    eps_uncond: torch.Tensor, eps_cond: torch.Tensor, guidance_scale: float
) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022, eq. 6).

        ε̃ = ε_u + γ (ε_c − ε_u)

    γ = 0 gives ε_u, γ = 1 gives ε_c, γ > 1 extrapolates away from ε_u. A
    *negative prompt* is nothing more than passing its prediction as
    ``eps_uncond``. Introduced in notebook 06.

    At each noise level ε̃ is (in ε units) the score of p_t(x | c)^γ p_t(x)^(1−γ).
    That holds per step only: for γ ≠ 0, 1 the final samples do not follow
    p(x | c)^γ p(x)^(1−γ), and DDIM and DDPM disagree about what they follow
    (notebook 06 §4 measures both on an exact mixture).

    Attribution: the ``guidance_type == "classifier-free"`` wrapper that one of
    the course's source posts credits to k-diffusion is DPM-Solver's
    ``model_wrapper`` (Lu et al. 2022); k-diffusion's samplers take an already
    guided denoiser.

    Args:
        eps_uncond: ε_u, shape ``(B, ...)``.
        eps_cond: ε_c, the same shape, dtype and device.
        guidance_scale: γ, finite and ≥ 0.

    Returns:
        ε̃, shape ``(B, ...)``.
    """
    _check_tensor("eps_uncond", eps_uncond)
    _checks.like("eps_cond", eps_cond, eps_uncond, "eps_uncond", possessive=True)
    gamma = _check_real("guidance_scale", guidance_scale, low=0.0)
    return eps_uncond + gamma * (eps_cond - eps_uncond)


def combine_weighted_prompts(
    eps_uncond: torch.Tensor,
    eps_conds: Sequence[torch.Tensor] | torch.Tensor,
    weights: Sequence[float] | torch.Tensor,
    guidance_scale: float,
) -> torch.Tensor:
    """Composable guidance over K weighted prompts (Liu et al. 2022, eq. 11).

        ε̃ = ε_u + Σ_k w_k · γ · (ε_k − ε_u)

    This is exactly AUTOMATIC1111's ``combine_denoised`` (prompts joined with
    ``AND``, each with its own weight): each sub-prompt pulls along its own
    difference direction, so "a red circle AND a blue square" composes two
    concepts, and a negative weight pushes *away* from a concept. With K = 1
    and w = 1 it is ``cfg_combine``. At each noise level ε̃ is the score of
    p_t(x) Π_k p_t(c_k | x)^(w_k γ), a product of experts; as for CFG, the final
    samples do not follow the product of the clean densities. Introduced in
    notebook 07.

    Args:
        eps_uncond: ε_u, shape ``(B, ...)``.
        eps_conds: K predictions ε_k, each ``eps_uncond``'s shape; a sequence
            or a tensor of shape ``(K, B, ...)``.
        weights: K finite weights w_k (a sequence or a ``(K,)`` tensor); they
            may be negative.
        guidance_scale: γ, finite and ≥ 0.

    Returns:
        ε̃, shape ``(B, ...)``.
    """
    _check_tensor("eps_uncond", eps_uncond)
    if isinstance(eps_conds, torch.Tensor):
        eps_conds = (
            list(eps_conds.unbind(0)) if eps_conds.ndim == eps_uncond.ndim + 1 else [eps_conds]
        )
    _checks.that(isinstance(eps_conds, Sequence) and eps_conds, "eps_conds must be a non-empty sequence of tensors (or a (K, B, ...) tensor)")
    for k, eps_k in enumerate(eps_conds):
        _checks.like(f"eps_conds[{k}]", eps_k, eps_uncond, "eps_uncond", possessive=True)
    if isinstance(weights, torch.Tensor):
        _checks.shape("weights", weights, (None,), "(K,)")
        weights = weights.tolist()
    _checks.instance("weights", weights, Sequence, "a sequence of K numbers or a (K,) tensor")
    _checks.that(len(weights) == len(eps_conds), f"weights must have one entry per prompt (K={len(eps_conds)}), got {len(weights)}")
    weights = [_check_real(f"weights[{k}]", w) for k, w in enumerate(weights)]
    gamma = _check_real("guidance_scale", guidance_scale, low=0.0)

    out = eps_uncond.clone()
    for eps_k, w_k in zip(eps_conds, weights, strict=True):
        out += (eps_k - eps_uncond) * (w_k * gamma)  # the order of A1111's combine_denoised
    return out


def rescale_noise_cfg(
    noise_cfg: torch.Tensor, noise_pred_text: torch.Tensor, guidance_rescale: float = 0.0
) -> torch.Tensor:
    """Guidance rescale (Lin et al., WACV 2024, "Common Diffusion Noise Schedules …", §3.4, eqs. 15-17).

    Large γ inflates the standard deviation of ε̃; rescaling brings it back to
    that of the conditional prediction, then mixes by φ = ``guidance_rescale``:

        σ_c = std(ε_c),  σ̃ = std(ε̃)          (per sample, over all non-batch dims)
        ε_rescaled = ε̃ · σ_c / σ̃
        ε_final = φ · ε_rescaled + (1 − φ) · ε̃

    Equal to diffusers' ``rescale_noise_cfg`` (tested). Note that a sample whose
    ε̃ is constant has σ̃ = 0 and gives NaN, in diffusers too. Introduced in
    notebook 06.

    Args:
        noise_cfg: ε̃, the guided prediction, shape ``(B, ...)`` with at least 2 dims.
        noise_pred_text: ε_c, the same shape.
        guidance_rescale: φ in [0, 1]; 0 returns ``noise_cfg`` unchanged.
    """
    _check_tensor("noise_cfg", noise_cfg, min_ndim=2)
    _checks.like("noise_pred_text", noise_pred_text, noise_cfg, "noise_cfg", possessive=True)
    return _rescale_noise_cfg(noise_cfg, noise_pred_text, _check_real("guidance_rescale", guidance_rescale, 0.0, 1.0))


def _rescale_noise_cfg(noise_cfg: torch.Tensor, noise_pred_text: torch.Tensor, phi: float) -> torch.Tensor:
    """:func:`rescale_noise_cfg` without its checks, for the guiders' steps (they checked φ once)."""
    dims = list(range(1, noise_cfg.ndim))
    std_text = noise_pred_text.std(dim=dims, keepdim=True)
    std_cfg = noise_cfg.std(dim=dims, keepdim=True)
    noise_pred_rescaled = noise_cfg * (std_text / std_cfg)
    return phi * noise_pred_rescaled + (1 - phi) * noise_cfg


def dynamic_threshold(
    x0: torch.Tensor, ratio: float = 0.995, max_value: float = 1.0
) -> torch.Tensor:
    """Dynamic thresholding of x̂_0 (Imagen, Saharia et al. 2022, §2.3).

    Per sample, s is the ``ratio`` quantile of |x̂_0|, clamped to [1, max_value];
    then x̂_0 is clipped to [−s, s] and divided by s:

        s = clamp(quantile(|x̂_0|, ratio), 1, max_value)
        x̂_0 ← clamp(x̂_0, −s, s) / s

    With s = 1 this is plain clipping to [−1, 1]. Pixel-space models only (not
    for latents). Equal to diffusers' ``DDIMScheduler._threshold_sample``
    (tested), but works for any sample rank ≥ 2, including 2-D points
    ``(B, 2)``. Half-precision input is thresholded in float32 and cast back.
    Introduced in notebook 06.

    Args:
        x0: x̂_0, shape ``(B, ...)`` with at least 2 dims.
        ratio: the quantile, in (0, 1].
        max_value: the largest s, ≥ 1.
    """
    _check_tensor("x0", x0, min_ndim=2)
    ratio = _check_real("ratio", ratio, low=0.0, high=1.0, open_low=True)
    return _dynamic_threshold(x0, ratio, _check_real("max_value", max_value, low=1.0))


def _dynamic_threshold(x0: torch.Tensor, ratio: float, max_value: float) -> torch.Tensor:
    """:func:`dynamic_threshold` without its checks, for the sampler's steps (its config checked them)."""
    dtype = x0.dtype
    flat = x0.reshape(x0.shape[0], -1)
    if dtype not in (torch.float32, torch.float64):
        flat = flat.float()  # torch.quantile needs float32/64
    s = torch.quantile(flat.abs(), ratio, dim=1).clamp(min=1, max=max_value).unsqueeze(1)
    return (torch.clamp(flat, -s, s) / s).reshape(x0.shape).to(dtype)


# ------------------------------------------------------------ classifier guidance
def log_prob_grad(
    log_prob_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x_t: torch.Tensor,
    t: torch.Tensor,
) -> torch.Tensor:
    """∇_{x_t} log p(y | x_t) for any differentiable ``log_prob_fn(x_t, t) -> (B,)``.

    The general form of classifier guidance: the "classifier" can be anything
    that scores a noisy sample, e.g. a noisy CLIP's similarity to a caption as
    in GLIDE — not only a class-label classifier. Because sample i's score only
    depends on x_t[i], the gradient of the *sum* over the batch is the stack of
    per-sample gradients (the model must not mix samples: call ``.eval()`` on
    models with batch norm). Only ``x_t`` is differentiated, so no ``.grad`` is
    left on the model's parameters, and it works inside ``torch.no_grad()``.
    Introduced in notebook 05.

    Args:
        log_prob_fn: maps (x_t ``(B, ...)``, t ``(B,)``) to log-probabilities ``(B,)``.
        x_t: the noisy sample, ``(B, ...)`` floating point.
        t: ``(B,)`` timesteps.

    Returns:
        The gradient, ``x_t``'s shape, detached.
    """
    _check_tensor("x_t", x_t)
    with torch.enable_grad():
        x = x_t.detach().requires_grad_(True)
        log_p = log_prob_fn(x, t)
        got = tuple(getattr(log_p, "shape", ())) or type(log_p).__name__
        _checks.that(isinstance(log_p, torch.Tensor) and got == (x_t.shape[0],), f"log_prob_fn must return a ({x_t.shape[0]},) tensor, got {got}")
        (grad,) = torch.autograd.grad(log_p.sum(), x)
    return grad.detach()


def classifier_log_prob_grad(
    classifier: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x_t: torch.Tensor,
    t: torch.Tensor,
    labels: torch.Tensor,
) -> torch.Tensor:
    """∇_{x_t} log p_φ(y | x_t) of a noise-robust classifier (Dhariwal & Nichol 2021, Alg. 2).

        log p_φ(y | x_t) = log_softmax(classifier(x_t, t))[y]

    Introduced in notebook 05.

    Args:
        classifier: any callable ``(x_t, t) -> logits (B, K)``.
        x_t: ``(B, ...)`` noisy samples.
        t: ``(B,)`` timesteps.
        labels: ``(B,)`` integer class indices in [0, K).

    Returns:
        The gradient, ``x_t``'s shape.
    """
    _check_tensor("x_t", x_t)
    B = x_t.shape[0]
    _checks.shape("labels", _checks.integers("labels", labels, "an integer tensor of class indices, shape (B,)"), (B,))

    def log_prob(x: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
        logits = classifier(x, tt)
        got = tuple(getattr(logits, "shape", ())) or type(logits).__name__
        _checks.that(isinstance(logits, torch.Tensor) and logits.ndim == 2 and got[0] == B, f"classifier must return logits of shape ({B}, K), got {got}")
        _checks.that(0 <= int(labels.min()) and int(labels.max()) < got[1], f"labels must lie in [0, {got[1] - 1}]")
        log_probs = torch.log_softmax(logits, dim=-1)
        return log_probs.gather(1, labels.to(logits.device).long().unsqueeze(1)).squeeze(1)

    return log_prob_grad(log_prob, x_t, t)


def classifier_guided_eps(
    eps: torch.Tensor,
    grad_log_prob: torch.Tensor,
    alpha_cumprod_t: float | torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """Classifier guidance on ε (Dhariwal & Nichol 2021, Alg. 2 / eq. 14).

        ε̃ = ε − √(1 − ᾱ_t) · s · ∇_{x_t} log p(y | x_t)

    Since ε̂ = −√(1 − ᾱ_t) ∇ log p(x_t), this adds s · ∇ log p(y | x_t) to the
    score: at this noise level, the score of p_t(x_t) p_t(y | x_t)^s. For s = 1
    with an exact classifier the sampler then samples p(x | y); for s ≠ 1 the
    samples do not follow p(x) p(y | x)^s (the tilted noised densities are not
    one diffusion; notebook 06 §4). Introduced in notebook 05.

    Args:
        eps: ε̂, shape ``(B, ...)``.
        grad_log_prob: ∇ log p(y | x_t), the same shape.
        alpha_cumprod_t: ᾱ_t — a number, a 0-d tensor or a ``(B,)`` tensor.
        scale: s, finite and ≥ 0.
    """
    _check_tensor("eps", eps)
    _checks.like("grad_log_prob", grad_log_prob, eps, "eps", possessive=True)
    s = _check_real("scale", scale, low=0.0)
    if isinstance(alpha_cumprod_t, torch.Tensor):
        a = alpha_cumprod_t.to(device=eps.device, dtype=eps.dtype)
        _checks.that(a.ndim == 0 or a.shape == eps.shape[:1], f"alpha_cumprod_t must be a number, a 0-d or a ({eps.shape[0]},) tensor, got shape {tuple(a.shape)}")
        a = a.reshape(a.shape + (1,) * (eps.ndim - 1)) if a.ndim == 1 else a
        _checks.that(bool(((a > 0) & (a <= 1)).all()), "alpha_cumprod_t must lie in (0, 1]")
    else:
        a = _check_real("alpha_cumprod_t", alpha_cumprod_t, low=0.0, high=1.0, open_low=True)
    return eps - (1 - a) ** 0.5 * s * grad_log_prob
