"""Checks for the exercises of notebook 09 (guidance after CFG).

* ``check_apg_update(my_apg_update)``: APG's projection, ``my_apg_update(diff, pred_cond, eta)
  -> Δ_⊥ + η Δ_∥`` per image, with ``Δ_∥ = ⟨Δ, u⟩ u``, ``u = pred_cond/‖pred_cond‖`` over all
  non-batch dims. Recognised mistakes: one projection for the whole batch, projecting onto
  the unnormalised ``pred_cond``, η on the wrong component, the parallel part returned.
* ``check_equal_fidelity(answer)``: a reading of the committed scenes sweep — the plain-CFG
  scale whose "all of the caption" accuracy is closest to autoguidance's at γ = 2, whether
  autoguidance's recall is higher there, and whether the two recalls' 95 % intervals overlap.
* ``check_saturation(answer)``: at γ = 15, which remedy has the lowest out-of-range fraction,
  and which leave it within one percentage point of plain CFG's.

The two readings are checked against ``tutorial_lib.after_cfg.committed_rows()``, so they
follow the committed results if ``make eval-guiders`` / ``make eval-scenes`` is rerun.
"""

from __future__ import annotations

import torch

from ..after_cfg import committed_rows
from ._core import Case, fail, run_cases

__all__ = ["check_apg_update", "check_equal_fidelity", "check_saturation", "reference_apg_update",
           "equal_fidelity_reading", "saturation_reading"]

REMEDIES = ("cfg_rescale", "cfg_dynamic_threshold", "cfg_interval", "apg", "apg_paper")


def reference_apg_update(diff: torch.Tensor, pred_cond: torch.Tensor, eta: float) -> torch.Tensor:
    """Δ_⊥ + η Δ_∥ with the projection onto pred_cond taken per image."""
    dims = tuple(range(1, diff.dim()))
    unit = pred_cond / torch.linalg.vector_norm(pred_cond, dim=dims, keepdim=True)
    parallel = (diff * unit).sum(dim=dims, keepdim=True) * unit
    return diff - parallel + eta * parallel


# ------------------------------------------------------------------ exercise 1
_APG = "Exercise 1 (my_apg_update)"


def _apg_cases() -> list[Case]:
    g = torch.Generator().manual_seed(90)
    cases = []
    for name, shape, eta in (("two images (2, 3, 4, 4), η = 0", (2, 3, 4, 4), 0.0),
                             ("three images (3, 3, 4, 4), η = 0.5", (3, 3, 4, 4), 0.5),
                             ("points (4, 2), η = 0", (4, 2), 0.0),
                             ("one image, η = 1 (plain CFG's Δ)", (1, 3, 4, 4), 1.0)):
        cases.append(Case(name, (torch.randn(shape, generator=g), 3 * torch.randn(shape, generator=g), eta)))
    return cases


def _diagnose_apg(case: Case, got: torch.Tensor) -> str | None:
    diff, cond, eta = case.args
    close = lambda a: a.shape == got.shape and bool(torch.allclose(got, a, atol=1e-5, rtol=1e-4))  # noqa: E731
    whole = cond / cond.norm()
    par_whole = (diff * whole).sum() * whole
    if close(diff - par_whole + eta * par_whole):
        return "one projection for the whole batch: the inner product and the norm are per image (dims 1…)."
    par_raw = (diff * cond).sum(dim=tuple(range(1, diff.dim())), keepdim=True) * cond
    if close(diff - par_raw + eta * par_raw):
        return "project onto the UNIT vector pred_cond/‖pred_cond‖, else the parallel part scales with ‖pred_cond‖²."
    parallel = diff - reference_apg_update(diff, cond, 0.0)
    if close(parallel):
        return "you returned Δ_∥; APG keeps Δ_⊥ and adds η Δ_∥."
    if close(eta * (diff - parallel) + parallel):
        return "η weights the PARALLEL component (the one that oversaturates); the orthogonal one is kept."
    return None


def check_apg_update(fn) -> str:
    """Check ``fn(diff, pred_cond, eta) -> Δ_⊥ + η Δ_∥`` against :func:`reference_apg_update`."""
    return run_cases(_APG, fn, reference_apg_update, _apg_cases(), diagnose=_diagnose_apg,
                     hint="per image: u = pred_cond / its norm; parallel = ⟨diff, u⟩ u; "
                          "return diff − parallel + eta · parallel.")


# ------------------------------------------------------------------ the two readings
def _rows(method: str) -> dict[float, dict]:
    return {r["scale"]: r for r in committed_rows() if r["method"] == method}


def equal_fidelity_reading() -> dict:
    """The committed answer of exercise 2 (see the module docstring)."""
    auto, cfg = _rows("autoguidance")[2], _rows("cfg")
    scale = min(cfg, key=lambda g: abs(cfg[g]["all"]["value"] - auto["all"]["value"]))
    a, c = auto["recall"], cfg[scale]["recall"]
    return {"cfg_scale": scale, "autoguidance_recall_higher": a["value"] > c["value"],
            "intervals_overlap": a["low"] <= c["high"] and c["low"] <= a["high"]}


def saturation_reading(scale: float = 15) -> dict:
    """The committed answer of exercise 3 (see the module docstring)."""
    plain = _rows("cfg")[scale]["out_of_range"]
    oor = {m: _rows(m)[scale]["out_of_range"] for m in REMEDIES if scale in _rows(m)}
    return {"lowest": min(oor, key=oor.get),
            "within_one_point": sorted(m for m, v in oor.items() if abs(v - plain) <= 0.01)}


def _check_reading(exercise: str, answer, expected: dict, hints: dict[str, str]) -> str:
    if not isinstance(answer, dict):
        fail(exercise, "the answer", f"must be a dict with the keys {sorted(expected)}, got {type(answer).__name__}")
    for key, want in expected.items():
        if key not in answer:
            fail(exercise, "the answer", f"has no key {key!r}", hints[key])
        got = answer[key]
        if isinstance(want, list):
            got = sorted(got) if isinstance(got, (list, tuple, set)) else got
        if got != want:
            fail(exercise, f"answer[{key!r}]", f"got {got!r}; the committed rows say otherwise", hints[key])
    return f"✓ {exercise}: correct, as the committed sweep reads."


def check_equal_fidelity(answer) -> str:
    """Check exercise 2's reading against the committed rows."""
    return _check_reading("Exercise 2 (equal fidelity)", answer, equal_fidelity_reading(), {
        "cfg_scale": "among the rows with method 'cfg', take the scale whose r['all']['value'] is nearest "
                     "autoguidance's at scale 2.",
        "autoguidance_recall_higher": "compare r['recall']['value'] of the two rows.",
        "intervals_overlap": "two intervals [low, high] overlap when each low is <= the other's high."})


def check_saturation(answer) -> str:
    """Check exercise 3's reading against the committed rows."""
    return _check_reading("Exercise 3 (saturation at γ = 15)", answer, saturation_reading(), {
        "lowest": f"compare r['out_of_range'] at scale 15 for the methods {REMEDIES} (those present).",
        "within_one_point": "list every remedy whose out_of_range differs from plain CFG's by <= 0.01 "
                            "(one percentage point)."})
