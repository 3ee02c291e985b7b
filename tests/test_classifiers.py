import pytest
import torch
import torch.nn.functional as F

from tutorial_lib import shapes as S
from tutorial_lib.classifiers import (
    ATTRIBUTE_ORDER,
    AttributeClassifier,
    AttributeHead,
    ClassifierConfig,
    JointLabelClassifier,
    accuracy,
    joint_label_index,
    joint_label_table,
)

TINY = dict(image_size=16, channels=(8, 16), time_dim=16)


def _models():
    torch.manual_seed(0)
    judge = AttributeClassifier(ClassifierConfig(**TINY)).eval()
    noisy = AttributeClassifier(ClassifierConfig(**TINY, time_conditioned=True)).eval()
    return judge, noisy


def test_output_shapes_and_split():
    judge, noisy = _models()
    x = torch.randn(5, 3, 16, 16)
    t = torch.randint(0, 1000, (5,))
    assert judge(x).shape == (5, 16)
    assert noisy(x, t).shape == (5, 16)
    parts = judge.split(judge(x))
    assert list(parts) == list(ATTRIBUTE_ORDER)
    assert [v.shape[1] for v in parts.values()] == [6, 3, 2, 5]
    assert set(judge.predict(x)) == set(ATTRIBUTE_ORDER)


def test_time_conditioning_matters_and_is_required():
    _, noisy = _models()
    x = torch.randn(2, 3, 16, 16)
    with pytest.raises(ValueError, match="t is required"):
        noisy(x)
    a = noisy(x, torch.tensor([10, 10]))
    b = noisy(x, torch.tensor([900, 900]))
    assert not torch.allclose(a, b)
    assert torch.allclose(noisy(x, torch.tensor(10)), a)  # a 0-d t broadcasts


def test_log_prob_is_sum_of_log_softmaxes_and_differentiable():
    _, noisy = _models()
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    t = torch.full((4,), 300)
    labels = {"colour": torch.tensor([0, 1, 2, 3]), "position": 4}
    lp = noisy.log_prob(x, t, labels)
    logits = noisy.attribute_logits(x, t)
    expected = F.log_softmax(logits["colour"], 1)[torch.arange(4), labels["colour"]] + F.log_softmax(
        logits["position"], 1
    )[:, 4]
    assert torch.allclose(lp, expected, atol=1e-6)
    (g,) = torch.autograd.grad(lp.sum(), x)
    assert g.shape == x.shape and g.abs().sum() > 0
    with pytest.raises(ValueError, match="unknown attribute"):
        noisy.log_prob(x, t, {"texture": 0})
    with pytest.raises(ValueError, match="lie in"):
        noisy.log_prob(x, t, {"size": 5})


def test_joint_label_classifier_matches_captions_and_log_prob():
    _, noisy = _models()
    table = joint_label_table()
    assert table.shape == (180, 4)
    caps = S.all_captions()
    for k in (0, 37, 179):
        lab = dict(zip(ATTRIBUTE_ORDER, table[k].tolist(), strict=False))
        assert joint_label_index(lab) == k
        assert S.caption_from_labels(lab) == caps[k]
    joint = JointLabelClassifier(noisy)
    x = torch.randn(3, 3, 16, 16)
    t = torch.tensor([5, 500, 995])
    out = joint(x, t)
    assert out.shape == (3, 180)
    assert torch.allclose(out.logsumexp(1), torch.zeros(3), atol=1e-5)  # normalised
    assert torch.allclose(F.log_softmax(out, 1), out, atol=1e-5)
    lab = {a: torch.tensor(table[37, j].item()).repeat(3) for j, a in enumerate(ATTRIBUTE_ORDER)}
    assert torch.allclose(out[:, 37], noisy.log_prob(x, t, lab), atol=1e-5)


def test_attribute_head_protocol():
    _, noisy = _models()
    head = AttributeHead(noisy, "shape")
    assert head(torch.randn(2, 3, 16, 16), torch.tensor([1, 2])).shape == (2, 3)
    with pytest.raises(ValueError, match="attribute"):
        AttributeHead(noisy, "texture")


def test_accuracy_helper_and_input_checks():
    judge, _ = _models()
    x, lab, _ = S.generate(20, torch.Generator().manual_seed(0), size=16)
    acc = accuracy(judge, x, lab, batch_size=7)
    assert set(acc) == set(ATTRIBUTE_ORDER) and all(0 <= v <= 1 for v in acc.values())
    with pytest.raises(ValueError, match="x must have shape"):
        judge(torch.randn(2, 3, 32, 32))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        judge([1, 2])
    with pytest.raises(ValueError, match="channels"):
        ClassifierConfig(channels=(12, 16))


def test_config_round_trip():
    cfg = ClassifierConfig(**TINY, time_conditioned=True)
    assert ClassifierConfig.from_dict(cfg.to_dict()) == cfg


def test_scene_classifier_reads_cells_and_a_cell_head_is_a_plain_classifier():
    from tutorial_lib import scenes
    from tutorial_lib.classifiers import (
        SceneCellHead,
        SceneClassifier,
        SceneClassifierConfig,
        cell_targets,
    )

    torch.manual_seed(0)
    model = SceneClassifier(SceneClassifierConfig(channels=(8, 16, 16), feature_dim=8, time_conditioned=True,
                                                  time_dim=16))
    x, labels, _ = scenes.generate(6, torch.Generator().manual_seed(0))
    t = torch.full((6,), 10)
    logits = model(x, t)
    assert logits["colour"].shape == (6, 4, 6) and logits["present"].shape == (6, 4, 2)
    assert model.features(x, t).shape == (6, 32)
    head = SceneCellHead(model, cell=2, reading="shape")
    assert torch.equal(head(x, t), logits["shape"][:, 2])
    target = cell_targets(labels)
    assert ((target["colour"] >= 0) == target["present"].bool()).all()
    loss, acc = model.loss(x, labels, t)
    assert loss.ndim == 0 and set(acc) == {"present", "colour", "shape", "size"}
    with pytest.raises(ValueError, match="t is required"):
        model(x)
    with pytest.raises(ValueError, match="reading must be one of"):
        SceneCellHead(model, cell=0, reading="position")
