import pytest
import torch

from tutorial_lib import shapes as S


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_generate_shapes_ranges_and_dtypes():
    images, labels, captions = S.generate(64, _gen(), size=32)
    assert images.shape == (64, 3, 32, 32) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1
    assert set(labels) == set(S.ATTRIBUTES)
    for name, values in S.ATTRIBUTES.items():
        assert labels[name].shape == (64,) and labels[name].dtype == torch.long
        assert 0 <= int(labels[name].min()) and int(labels[name].max()) < len(values)
    assert len(captions) == 64 and all(isinstance(c, str) for c in captions)


def test_vocabulary_meets_the_issue():
    assert len(S.ATTRIBUTES["shape"]) >= 3
    assert S.ATTRIBUTES["colour"] == ("red", "green", "blue", "yellow", "purple", "orange")
    assert S.ATTRIBUTES["size"] == ("small", "large")
    assert len(S.ATTRIBUTES["position"]) == 5
    d = torch.cdist(S.COLOURS_RGB, S.COLOURS_RGB) + 10 * torch.eye(6)
    assert d.min() > 0.35  # colours are well separated


def test_deterministic_from_seed():
    a = S.generate(16, _gen(3))
    b = S.generate(16, _gen(3))
    c = S.generate(16, _gen(4))
    assert torch.equal(a[0], b[0]) and a[2] == b[2]
    assert all(torch.equal(a[1][k], b[1][k]) for k in a[1])
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize("size", [24, 17, 48])
def test_any_size(size):
    images, _, _ = S.generate(4, _gen(), size=size)
    assert images.shape == (4, 3, size, size)


def test_caption_template_and_round_trip():
    labels = {"colour": 0, "shape": 0, "size": 1, "position": 0}
    assert S.caption_from_labels(labels) == "a large red circle in the top left"
    _, lab, caps = S.generate(50, _gen(1))
    for i, cap in enumerate(caps):
        parsed = S.labels_from_caption(cap)
        assert parsed == {k: int(v[i]) for k, v in lab.items()}


def test_all_captions_unique_and_ordered():
    caps = S.all_captions()
    assert len(caps) == 180 == len(set(caps))
    assert caps[0] == "a small red circle in the top left"


def test_partial_captions_keep_labels_of_mentioned_attributes():
    labels = S.sample_labels(200, _gen(2))
    caps, mentioned = S.partial_captions(labels, _gen(5), p_partial=1.0, p_drop=0.5)
    assert any(not m for v in mentioned.values() for m in v.tolist())
    for i, cap in enumerate(caps):
        parsed = S.labels_from_caption(cap)
        for k in S.ATTRIBUTES:
            if mentioned[k][i]:
                assert parsed[k] == int(labels[k][i])
            else:
                assert parsed[k] is None
    full, m_full = S.partial_captions(labels, _gen(5), p_partial=0.0)
    assert full == S.caption_from_labels(labels) and all(v.all() for v in m_full.values())


def test_rendered_content_matches_labels():
    table = torch.tensor([[c, s, z, p] for c in range(6) for s in range(3) for z in range(2) for p in range(5)])
    labels = {k: table[:, j] for j, k in enumerate(S.ATTRIBUTES)}
    img = S.to_unit_range(S.render(labels, size=32, jitter=False))
    bg = S.BACKGROUND_RGB.view(1, 3, 1, 1)
    mask = (img - bg).abs().sum(1) > 0.3  # (n, H, W) shape pixels
    area = mask.float().sum((1, 2))
    assert (area > 5).all()
    # colour: mean colour of the shape pixels is closest to the labelled colour
    mean_col = (img * mask[:, None]).sum((2, 3)) / area[:, None]
    assert torch.equal(torch.cdist(mean_col, S.COLOURS_RGB).argmin(1), labels["colour"])
    # size: every large shape is bigger than every small shape of the same kind
    for s in range(3):
        small = area[(labels["shape"] == s) & (labels["size"] == 0)]
        large = area[(labels["shape"] == s) & (labels["size"] == 1)]
        assert small.max() < large.min()
    # position: the centroid is in the labelled region
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    cx = (mask * xs).sum((1, 2)) / area / 32
    cy = (mask * ys).sum((1, 2)) / area / 32
    expected = torch.tensor([[0.27, 0.27], [0.73, 0.27], [0.27, 0.73], [0.73, 0.73], [0.5, 0.5]])[labels["position"]]
    assert ((torch.stack([cx, cy], 1) - expected).abs() < 0.08).all()


def test_unit_range_helpers():
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0])
    assert torch.equal(S.to_unit_range(x), torch.tensor([0.0, 0.5, 1.0, 1.0]))
    assert torch.equal(S.from_unit_range(torch.tensor([0.0, 1.0])), torch.tensor([-1.0, 1.0]))


def test_dataset_api():
    ds = S.ShapesDataset(seed=7, length=10)
    img, lab, cap = ds[3]
    img2, lab2, cap2 = S.ShapesDataset(seed=7, length=10)[3]
    assert torch.equal(img, img2) and lab == lab2 and cap == cap2
    assert len(ds) == 10 and ds.batch(5)[0].shape == (5, 3, 32, 32)
    with pytest.raises(IndexError):
        ds[10]


def test_bad_input_errors():
    with pytest.raises(TypeError, match="n must be an int"):
        S.generate(2.5)
    with pytest.raises(ValueError, match="size"):
        S.generate(2, size=4)
    with pytest.raises(TypeError, match="generator"):
        S.generate(2, generator=0)
    with pytest.raises(ValueError, match="colour"):
        S.render({"colour": torch.tensor([9]), "shape": torch.tensor([0]),
                  "size": torch.tensor([0]), "position": torch.tensor([0])})
    with pytest.raises(ValueError, match="p_drop"):
        S.partial_captions(S.sample_labels(2), p_drop=2.0)
