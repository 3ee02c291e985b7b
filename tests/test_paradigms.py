"""The paint-by-tokens task and the three tiny denoisers of notebook 01."""

import pytest
import torch

from tutorial_lib.paradigms import (
    PAD_COLOUR,
    PAD_QUADRANT,
    PARADIGMS,
    PaintDenoiser,
    describe_tokens,
    evaluate_paint_denoiser,
    paint,
    sample_paint_task,
    train_paint_denoiser,
)
from tutorial_lib.shapes import COLOURS_RGB


def test_sample_shapes_and_padding():
    images, tokens = sample_paint_task(50, torch.Generator().manual_seed(0))
    assert images.shape == (50, 3, 8, 8) and tokens.shape == (50, 3, 2)
    assert images.min() >= -1 and images.max() <= 1
    real = tokens[..., 0] != PAD_COLOUR
    assert torch.equal(real, tokens[..., 1] != PAD_QUADRANT)  # pads come in pairs
    assert real[:, 0].all()  # at least one object
    assert torch.equal(real.sum(1) >= 2, real[:, 1])  # pads only at the end
    for row, mask in zip(tokens, real, strict=True):
        quadrants = row[mask, 1].tolist()
        assert len(set(quadrants)) == len(quadrants)  # distinct quadrants


def test_sample_is_reproducible():
    a = sample_paint_task(10, torch.Generator().manual_seed(3))
    b = sample_paint_task(10, torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_paint_puts_the_colour_in_the_quadrant():
    tokens = torch.tensor([[[0, 3], [PAD_COLOUR, PAD_QUADRANT]]])  # red bottom right
    img = paint(tokens, size=8)
    assert torch.allclose(img[0, :, 6, 6], COLOURS_RGB[0] * 2 - 1)
    assert not torch.allclose(img[0, :, 1, 1], COLOURS_RGB[0] * 2 - 1)
    assert describe_tokens(tokens[0]) == "red bottom right"


def test_order_of_tokens_does_not_change_the_image():
    tokens = torch.tensor([[[0, 0], [2, 3]], [[2, 3], [0, 0]]])
    img = paint(tokens)
    assert torch.equal(img[0], img[1])


def test_bad_arguments():
    with pytest.raises(ValueError, match="paradigm"):
        PaintDenoiser("film")
    with pytest.raises(ValueError, match="pooling"):
        PaintDenoiser("adagn", pooling="max")
    with pytest.raises(ValueError, match="tokens"):
        paint(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="max_objects"):
        sample_paint_task(2, torch.Generator(), max_objects=5)


@pytest.mark.parametrize("paradigm", PARADIGMS)
def test_forward_shape(paradigm):
    torch.manual_seed(0)
    model = PaintDenoiser(paradigm, channels=16, token_dim=8)
    x0, tokens = sample_paint_task(4, torch.Generator().manual_seed(1))
    out = model(x0, torch.tensor([0, 10, 500, 999]), tokens)
    assert out.shape == x0.shape


def test_mean_pooling_loses_the_binding():
    """Swapping the colours of two objects leaves the averaged vector unchanged."""
    torch.manual_seed(0)
    model = PaintDenoiser("adagn", channels=8, token_dim=8)
    a = torch.tensor([[[0, 0], [2, 3], [PAD_COLOUR, PAD_QUADRANT]]])
    b = torch.tensor([[[2, 0], [0, 3], [PAD_COLOUR, PAD_QUADRANT]]])
    pa, pb = model.pooled(model.embed_tokens(a)), model.pooled(model.embed_tokens(b))
    assert torch.allclose(pa, pb, atol=1e-6)
    assert not torch.equal(paint(a), paint(b))
    bound = PaintDenoiser("adagn", channels=8, token_dim=8, pooling="bind")
    assert not torch.allclose(bound.pooled(bound.embed_tokens(a)), bound.pooled(bound.embed_tokens(b)))


@pytest.mark.parametrize("paradigm", PARADIGMS)
def test_each_model_learns(paradigm):
    torch.manual_seed(0)
    model = PaintDenoiser(paradigm, channels=16, token_dim=16)
    losses = train_paint_denoiser(model, steps=30, batch_size=32, lr=5e-3, seed=0)
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    scores = evaluate_paint_denoiser(model, n=40)
    assert set(scores) == {"loss", "acc_1", "acc_multi", "n_1", "n_multi"}
    assert 0 <= scores["acc_1"] <= 1 and 0 <= scores["acc_multi"] <= 1
    assert scores["n_1"] + scores["n_multi"] > 40
