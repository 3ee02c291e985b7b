"""Notebook 10's experiments: the caption helpers, the judge's "object found", the committed table,
and a negative prompt having no effect at guidance_scale <= 1 on the pipeline's own code path."""

import pytest
import torch

from tutorial_lib import bridge_experiments as bx
from tutorial_lib.scenes import caption_spec


def test_captions_are_split_and_emphasised_on_the_second_object():
    captions = ["a red circle and a small blue square", "a green triangle and a large yellow circle"]
    assert bx.second_objects(captions) == ["a small blue square", "a large yellow circle"]
    assert bx.emphasised_captions(captions, 1.5) == ["a red circle and (a small blue square:1.5)",
                                                     "a green triangle and (a large yellow circle:1.5)"]


def test_two_object_scenes_are_and_captions_with_two_objects():
    labels, captions, spec = bx.two_object_scenes(12, seed=3)
    assert len(captions) == 12 and all(" and " in c for c in captions)
    assert (spec["count"] == 2).all()
    assert bx.two_object_scenes(12, seed=3)[1] == captions  # seeded


def test_object_found_reads_each_objects_attributes_in_any_cell():
    labels, captions, spec = bx.two_object_scenes(2, seed=0)
    spec = caption_spec(labels)
    reading = {"present": torch.zeros(2, 4, dtype=torch.bool)}
    for name in ("colour", "shape", "size"):
        reading[name] = torch.full((2, 4), -1)
    # image 0 holds both objects (cells 0 and 3); image 1 holds only the second one
    for img, cells in ((0, ((0, 0), (3, 1))), (1, ((2, 1),))):
        for cell, j in cells:
            reading["present"][img, cell] = True
            for name in ("colour", "shape", "size"):
                reading[name][img, cell] = max(int(spec[name][img, j]), 0)
    found = bx.object_found(reading, spec)
    assert found.tolist() == [[True, True, False], [False, True, False]]


def test_committed_results_have_both_experiments():
    results = bx.committed_results()
    assert results["config"]["n"] >= 256
    assert {r["s_min_uncond"] for r in results["min_uncond"]} >= {0.0, 1.0}
    plain = next(r for r in results["min_uncond"] if r["s_min_uncond"] == 0)
    assert plain["skipped_steps"] == 0 and plain["calls_per_image"] == 2 * results["config"]["steps"]
    assert {r["method"] for r in results["emphasis"]} == {"plain", "emphasis", "AND"}


def test_a_negative_prompt_changes_nothing_at_guidance_scale_one():
    pytest.importorskip("diffusers")
    from tutorial_lib.sd_bridge import sd_pipeline, tiny_sd_components

    pipe = sd_pipeline(tiny_sd_components(seed=0))
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    at_one = bx.negative_prompt_without_uncond(pipe, "a red circle", "blurry", latents, 1.0, num_inference_steps=2)
    assert at_one == {"do_classifier_free_guidance": False, "max_abs_difference": 0.0}
    guided = bx.negative_prompt_without_uncond(pipe, "a red circle", "blurry", latents, 7.5, num_inference_steps=2)
    assert guided["do_classifier_free_guidance"] and guided["max_abs_difference"] > 0
