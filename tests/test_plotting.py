"""The plotting helpers: image conversion, grids, attention maps and overlays."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from tutorial_lib.plotting import (  # noqa: E402
    mean_attention_maps,
    overlay_attention,
    show_images,
    to_numpy_image,
    token_attention_map,
)


def test_to_numpy_image_maps_range_and_layout():
    img = torch.tensor([-1.0, 0.0, 1.0, 3.0]).reshape(1, 2, 2).expand(3, 2, 2)
    arr = to_numpy_image(img)
    assert arr.shape == (2, 2, 3)
    assert arr[..., 0].tolist() == [[0.0, 0.5], [1.0, 1.0]]  # clamped to [0, 1]


@pytest.mark.parametrize("bad", [torch.zeros(4, 4), torch.zeros(2, 4, 4)])
def test_to_numpy_image_rejects_bad_shapes(bad):
    with pytest.raises(ValueError, match="image must have shape"):
        to_numpy_image(bad)


def test_show_images_grid_and_titles():
    axes = show_images(torch.zeros(5, 3, 8, 8), titles=list("abcde"), ncols=3)
    assert len(axes) == 6 and axes[0].get_title() == "a"
    assert not axes[5].images  # the spare cell stays empty
    plt.close("all")
    with pytest.raises(ValueError, match="one entry per image"):
        show_images(torch.zeros(2, 3, 8, 8), titles=["only one"])


def test_token_attention_map_is_a_column_in_row_major_order():
    probs = torch.zeros(2, 6, 4)
    probs[:, :, 1] = torch.arange(6.0)
    m = token_attention_map(probs, 1, height=2)
    assert m.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert token_attention_map(torch.zeros(16, 3), 0).shape == (4, 4)
    with pytest.raises(ValueError, match="does not divide"):
        token_attention_map(torch.zeros(6, 3), 0, height=4)


def test_overlay_attention_upsamples_to_the_image():
    fig, ax = plt.subplots()
    im = overlay_attention(ax, torch.zeros(3, 8, 8), torch.eye(2), title="t")
    assert im.get_array().shape == (8, 8) and ax.get_title() == "t"
    plt.close(fig)


def test_mean_attention_maps_resizes_then_averages():
    coarse = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    fine = torch.zeros(4, 4)
    m = mean_attention_maps([fine, coarse], mode="nearest")  # default size: the largest map's
    expected = torch.zeros(4, 4)
    expected[:2, :2] = 0.5  # the coarse cell covers a 2x2 block, halved by the mean with zeros
    assert m.tolist() == expected.tolist()
    # leading dims are kept; constant maps stay constant (no re-normalisation), bilinear too
    c = mean_attention_maps([torch.full((3, 2, 8, 8), 0.2), torch.full((3, 2, 16, 16), 0.2)])
    assert c.shape == (3, 2, 16, 16)
    torch.testing.assert_close(c, torch.full((3, 2, 16, 16), 0.2))
    assert mean_attention_maps([coarse], size=3).shape == (3, 3)


def test_mean_attention_maps_validates():
    with pytest.raises(ValueError, match="non-empty"):
        mean_attention_maps([])
    with pytest.raises(ValueError, match="leading dims"):
        mean_attention_maps([torch.zeros(2, 4, 4), torch.zeros(3, 2, 2)])
    with pytest.raises(ValueError, match="mode"):
        mean_attention_maps([torch.zeros(4, 4)], mode="bicubic")
