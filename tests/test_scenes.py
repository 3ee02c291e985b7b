"""The captioned scenes: exact labels, captions that parse back, objects that never overlap."""

import pytest
import torch

from tutorial_lib import scenes as S
from tutorial_lib.classifiers import cell_targets
from tutorial_lib.evaluation import free_attribute_values, scene_scores


def _batch(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    return S.generate(n, g), g


def test_generation_is_seeded_and_in_range():
    (x, labels, captions), _ = _batch()
    (x2, labels2, captions2), _ = _batch()
    assert x.shape == (400, 3, 32, 32) and torch.equal(x, x2) and captions == captions2
    assert float(x.min()) >= -1 and float(x.max()) <= 1


def test_labels_are_consistent():
    (_, labels, _), _ = _batch(2000)
    present = torch.arange(S.MAX_OBJECTS).view(1, -1) < labels["count"].view(-1, 1)
    for k in ("cell",) + S.OBJECT_ATTRIBUTES:
        assert ((labels[k] >= 0) == present).all()
    cells = labels["cell"].masked_fill(~present, -10 ** 6) + torch.arange(3) * 10 ** 5 * (~present)
    assert all(len(set(row)) == 3 for row in cells.tolist())  # distinct cells: no overlap
    count_kind = labels["kind"] == 3
    assert (labels["colour"][count_kind][:, 1] == labels["colour"][count_kind][:, 0]).all()
    rel = labels["relation"] >= 0
    assert torch.equal(rel, labels["kind"] == 1)
    assert S.relation_holds(labels["cell"][rel, 0], labels["cell"][rel, 1], labels["relation"][rel]).all()


def test_objects_do_not_overlap_in_pixels():
    (_, labels, _), _ = _batch(300, seed=3)
    total = S.render(labels, torch.Generator().manual_seed(1))
    # the same draws with every object removed: the background alone; objects change only their own cells
    bg_only = {**labels, **{k: torch.full_like(labels[k], -1) for k in ("cell",) + S.OBJECT_ATTRIBUTES}}
    diff = (total - S.render(bg_only, torch.Generator().manual_seed(1))).abs().sum(1)  # (n, H, W)
    for cell in range(4):
        r, c = divmod(cell, 2)
        mask = torch.zeros(32, 32, dtype=torch.bool)
        mask[16 * r : 16 * r + 16, 16 * c : 16 * c + 16] = True
        empty = ~(labels["cell"] == cell).any(1)
        assert float(diff[empty][:, mask].max()) < 1e-5  # nothing drawn into an empty cell


def test_captions_parse_back_to_their_spec():
    (_, labels, captions), g = _batch(3000)
    partial, mentioned = S.partial_captions(labels, g, p_partial=0.6)
    for caps, spec in ((captions, S.caption_spec(labels)), (partial, S.caption_spec(labels, mentioned))):
        parsed = S.specs_from_captions(caps)
        assert all(torch.equal(parsed[k], spec[k]) for k in spec)
    assert any(" an orange" in f" {c}" for c in partial)  # the article follows the next word
    assert any(" shape" in c for c in partial)


@pytest.mark.parametrize("caption", ["", "a red", "two small red circles", "a red circle and", "the red circle",
                                     "a red circle, a blue square, a green circle and a red square"])
def test_unreadable_captions_are_rejected_with_the_grammar(caption):
    with pytest.raises(ValueError, match="expected one of the templates"):
        S.parse_caption(caption)


def test_scene_scores_on_true_readings_are_perfect_and_on_shuffled_captions_poor():
    (_, labels, _), g = _batch(1000)
    t = cell_targets(labels)
    reading = {"present": t["present"].bool(), **{k: t[k] for k in S.OBJECT_ATTRIBUTES}}
    scores = scene_scores(reading, S.caption_spec(labels))
    assert all(bool(scores[k].all()) for k in ("count", "binding", "relation", "all"))
    perm = torch.randperm(1000, generator=g)
    shuffled = {k: v[perm] for k, v in S.caption_spec(labels).items()}
    assert float(scene_scores(reading, shuffled)["all"].float().mean()) < 0.05


def test_binding_fails_when_colours_are_swapped_between_objects():
    spec = S.specs_from_captions(["a red circle to the left of a blue square"])
    reading = {"present": torch.tensor([[True, True, False, False]]),
               "colour": torch.tensor([[2, 0, -1, -1]]), "shape": torch.tensor([[0, 1, -1, -1]]),
               "size": torch.tensor([[0, 1, -1, -1]])}
    s = scene_scores(reading, spec)
    assert bool(s["count"]) and not bool(s["binding"])  # a blue circle and a red square: unbound
    reading["colour"] = torch.tensor([[0, 2, -1, -1]])
    assert bool(scene_scores(reading, spec)["all"])
    flipped = S.specs_from_captions(["a red circle to the right of a blue square"])
    s = scene_scores(reading, flipped)
    assert bool(s["binding"]) and not bool(s["relation"])


def test_free_attributes_are_read_from_the_bound_objects():
    spec = S.specs_from_captions(["a red shape and a circle"])
    reading = {"present": torch.tensor([[True, False, False, True]]),
               "colour": torch.tensor([[0, -1, -1, 4]]), "shape": torch.tensor([[2, -1, -1, 0]]),
               "size": torch.tensor([[1, -1, -1, 0]])}
    s = scene_scores(reading, spec)
    free = free_attribute_values(reading, spec, s["match"])
    assert free["shape"].tolist() == [2] and free["colour"].tolist() == [4] and sorted(free["size"].tolist()) == [0, 1]
