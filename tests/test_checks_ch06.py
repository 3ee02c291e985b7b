"""The checks of notebook 06 pass a right answer, explain a stub, and name planted mistakes."""

import pytest
import torch

from tutorial_lib.checks import (
    ExerciseCheckFailed,
    ch06,
    check_cfg_combine,
    check_rescale_noise_cfg,
)
from tutorial_lib.guidance import cfg_combine, rescale_noise_cfg


def stub(*args):
    raise NotImplementedError


def test_checks_are_exported():
    assert set(ch06.__all__) == {"check_cfg_combine", "check_rescale_noise_cfg"}


# ----------------------------------------------------------------------------- CFG


def cfg_solution(eps_uncond, eps_cond, scale):
    return eps_uncond + scale * (eps_cond - eps_uncond)


def test_cfg_passes_on_solution():
    assert "all 5 cases pass" in check_cfg_combine(cfg_solution)


def test_cfg_passes_on_the_weighted_form():
    assert "pass" in check_cfg_combine(lambda u, c, s: (1 - s) * u + s * c)


def test_cfg_passes_on_the_package_function():
    assert "pass" in check_cfg_combine(cfg_combine)


def test_cfg_stub_is_not_implemented():
    with pytest.raises(ExerciseCheckFailed, match="not implemented yet"):
        check_cfg_combine(stub)


@pytest.mark.parametrize(
    "mistake, message",
    [
        (lambda u, c, s: c + s * (u - c), "swapped the conditional and the unconditional"),
        (lambda u, c, s: s * u + (1 - s) * c, "swapped the conditional and the unconditional"),
        (lambda u, c, s: (s - 1) * u + s * c, "1 − γ, not γ − 1"),
        (lambda u, c, s: (1 - s) * u + c, "γ is missing on eps_cond"),
        (lambda u, c, s: c + s * (c - u), "the base is eps_uncond"),
        (lambda u, c, s: s * (c - u), "only the guidance direction"),
        (lambda u, c, s: (u + s * c) / (1 + s), "not an average"),
        (lambda u, c, s: c, "the scale is ignored"),
    ],
    ids=[
        "swapped",
        "weights-exchanged",
        "gamma-minus-one",
        "no-gamma-on-cond",
        "cond-base",
        "direction-only",
        "average",
        "scale-ignored",
    ],
)
def test_cfg_names_planted_mistakes(mistake, message):
    with pytest.raises(ExerciseCheckFailed, match=message):
        check_cfg_combine(mistake)


def test_cfg_wrong_shape_is_explained():
    with pytest.raises(ExerciseCheckFailed, match="expected shape"):
        check_cfg_combine(lambda u, c, s: cfg_solution(u, c, s).sum(-1))


def test_cfg_none_is_explained():
    with pytest.raises(ExerciseCheckFailed, match="returned None"):
        check_cfg_combine(lambda u, c, s: None)


def test_cfg_cases_use_differing_real_predictions():
    for u, c, _ in ch06._mixture_eps():
        assert u.dtype == torch.float32 and torch.isfinite(u).all()
        assert (u - c).abs().max() > 1e-2  # a swap changes the result


# ------------------------------------------------------------------------- rescale


def rescale_solution(noise_cfg, noise_pred_text, guidance_rescale):
    dims = list(range(1, noise_cfg.ndim))
    std_text = noise_pred_text.std(dim=dims, keepdim=True)
    std_cfg = noise_cfg.std(dim=dims, keepdim=True)
    rescaled = noise_cfg * (std_text / std_cfg)
    return guidance_rescale * rescaled + (1 - guidance_rescale) * noise_cfg


def test_rescale_passes_on_solution():
    assert "all 4 cases pass" in check_rescale_noise_cfg(rescale_solution)


def test_rescale_passes_on_the_package_function():
    assert "pass" in check_rescale_noise_cfg(rescale_noise_cfg)


def test_rescale_biased_std_is_also_right():
    # The ratio of two stds with the same correction does not depend on it.
    def biased(cfg, text, phi):
        dims = list(range(1, cfg.ndim))
        r = cfg * (
            text.std(dim=dims, keepdim=True, unbiased=False)
            / cfg.std(dim=dims, keepdim=True, unbiased=False)
        )
        return phi * r + (1 - phi) * cfg

    assert "pass" in check_rescale_noise_cfg(biased)


def test_rescale_stub_is_not_implemented():
    with pytest.raises(ExerciseCheckFailed, match="not implemented yet"):
        check_rescale_noise_cfg(stub)


def _dims(x):
    return list(range(1, x.ndim))


@pytest.mark.parametrize(
    "mistake, message",
    [
        (
            lambda cfg, text, phi: phi * cfg * (text.std() / cfg.std()) + (1 - phi) * cfg,
            "per \\*sample\\*",
        ),
        (
            lambda cfg, text, phi: (
                phi * cfg * (text.std(dim=[2, 3], keepdim=True) / cfg.std(dim=[2, 3], keepdim=True))
                + (1 - phi) * cfg
            ),
            "std per channel",
        ),
        (
            lambda cfg, text, phi: (
                phi
                * cfg
                * (cfg.std(dim=_dims(cfg), keepdim=True) / text.std(dim=_dims(cfg), keepdim=True))
                + (1 - phi) * cfg
            ),
            "upside down",
        ),
        (
            lambda cfg, text, phi: (1 - phi) * rescale_solution(cfg, text, 1.0) + phi * cfg,
            "exchanged",
        ),
        (lambda cfg, text, phi: rescale_solution(cfg, text, 1.0), "fully rescaled"),
    ],
    ids=["batch-std", "channel-std", "inverted-ratio", "phi-exchanged", "no-mix"],
)
def test_rescale_names_planted_mistakes(mistake, message):
    with pytest.raises(ExerciseCheckFailed, match=message):
        check_rescale_noise_cfg(mistake)
