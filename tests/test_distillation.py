"""tutorial_lib.distillation: the student learns CFG, the shipped one matches it, files are checked."""

import shutil

import pytest
import torch

from tutorial_lib import after_cfg as A
from tutorial_lib.distillation import (
    STUDENT_DIR,
    DistillationConfig,
    GuidanceStudent,
    distill_guidance,
    load_student,
    save_student,
)
from tutorial_lib.guiders import ClassifierFreeGuidance
from tutorial_lib.mixture import example_mixture_2d
from tutorial_lib.pretrained import AssetVerificationError


def test_a_short_run_learns():
    _, losses = distill_guidance(example_mixture_2d(), DistillationConfig(steps=150, batch_size=128), progress=False)
    assert sum(losses[-20:]) < 0.3 * sum(losses[:20])


def test_student_at_scale_follows_the_denoiser_protocol():
    student = GuidanceStudent(2, 3, hidden=16)
    denoiser = student.at(2.5)
    x, t, ctx = torch.randn(5, 2), torch.randint(0, 1000, (5,)), torch.zeros(5, 1, 3)
    out = denoiser(x, t, ctx)
    assert out.shape == (5, 2) and denoiser.prediction_type == "epsilon" and denoiser.context_dim == 3
    torch.testing.assert_close(out, student(x, t, ctx, torch.full((5,), 2.5)))


def test_shipped_student_reproduces_two_pass_cfg_in_one_pass():
    mixture, gamma = example_mixture_2d(), 3.0
    student = load_student()
    teacher = A.sample_mixture(mixture, ClassifierFreeGuidance(gamma), 1, 1000, 50, torch.Generator().manual_seed(0))
    ours = A.sample_mixture(mixture, None, 1, 1000, 50, torch.Generator().manual_seed(0), denoiser=student.at(gamma))
    floor = A.mixture_report(mixture, teacher, 1, gamma, torch.Generator().manual_seed(1))["target_floor"]
    assert A.energy_distance(teacher, ours) < floor  # closer than two draws of one distribution


def test_save_load_round_trip_and_a_modified_file_is_named(tmp_path):
    student = GuidanceStudent(2, 3, hidden=8)
    save_student(student, DistillationConfig(steps=1), tmp_path / "s")
    loaded = load_student(tmp_path / "s")
    for (k, v), (_, w) in zip(student.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(v, w), k
    shutil.copytree(STUDENT_DIR, tmp_path / "bad")
    (tmp_path / "bad" / "student_config.json").write_text("{}")
    with pytest.raises(AssetVerificationError, match="student_config.json"):
        load_student(tmp_path / "bad")


@pytest.mark.parametrize("kwargs, match", [(dict(steps=0), "steps must be >= 1"),
                                           (dict(gamma_min=3.0, gamma_max=2.0), "gamma_min <= gamma_max"),
                                           (dict(learning_rate="x"), "learning_rate must be a real number")])
def test_bad_config(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        DistillationConfig(**kwargs)
