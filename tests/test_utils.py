import numpy as np
import pytest
import torch

from tutorial_lib import get_device, seed_everything


def test_seed_everything_returns_a_seeded_generator():
    g = seed_everything(123)
    assert isinstance(g, torch.Generator)
    assert torch.equal(torch.randn(4, generator=g), torch.randn(4, generator=torch.Generator().manual_seed(123)))


def test_seed_everything_seeds_global_state():
    seed_everything(7)
    a = (torch.rand(3), np.random.rand(3))
    seed_everything(7)
    b = (torch.rand(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@pytest.mark.parametrize("bad, exc", [(-1, ValueError), (1.5, TypeError), ("3", TypeError), (True, TypeError)])
def test_seed_everything_rejects_bad_seeds(bad, exc):
    with pytest.raises(exc, match="seed"):
        seed_everything(bad)


def test_get_device():
    assert get_device().type in {"cpu", "cuda", "mps"}
    assert get_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="prefer"):
        get_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available"):
            get_device("cuda")


def test_show_source_folds_the_docstring(capsys):
    from tutorial_lib.train import denoiser_batch
    from tutorial_lib.utils import show_source

    show_source(denoiser_batch)
    out = capsys.readouterr().out
    assert out.startswith("def denoiser_batch(") and "(docstring: help(denoiser_batch))" in out
    assert "condition dropout" not in out.split("\n", 3)[3]  # the docstring body is folded away
    show_source(denoiser_batch, fold_docstring=False)
    assert "Images and captions come from the config's world" in capsys.readouterr().out
