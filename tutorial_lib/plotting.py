"""Small matplotlib helpers shared by the notebooks: image grids and attention overlays.

Introduced in notebook 03. Images are the course's tensors in ``[-1, 1]``
(``(3, H, W)`` or ``(B, 3, H, W)``); attention maps are ``(h, w)`` grids of
probabilities, e.g. one column of a cross-attention matrix reshaped to the
feature map (:func:`token_attention_map`). The helpers draw into axes and return
them; the notebook calls ``plt.show()``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from . import _checks

__all__ = ["to_numpy_image", "show_images", "token_attention_map", "mean_attention_maps", "overlay_attention",
           "image_rows", "pareto_curves"]


def to_numpy_image(image: torch.Tensor):
    """``(3, H, W)`` in ``[-1, 1]`` -> ``(H, W, 3)`` numpy array in ``[0, 1]`` (clamped)."""
    _checks.that(_checks.tensor("image", image).ndim == 3 and image.shape[0] in (1, 3), f"image must have shape (3, H, W) or (1, H, W), got {tuple(image.shape)}")
    return ((image.detach().float().cpu() + 1) / 2).clamp(0, 1).permute(1, 2, 0).numpy()


def show_images(images: torch.Tensor, titles: Sequence[str] | None = None, ncols: int | None = None,
                size: float = 1.8, axes=None, fontsize: int = 8):
    """Draw a batch ``(B, 3, H, W)`` in ``[-1, 1]`` as a grid; returns the axes (a flat list).

    ``titles`` (one per image) are wrapped at spaces if long; ``axes`` reuses existing axes.
    """
    import matplotlib.pyplot as plt

    _checks.shape("images", images, (None,) * 4, "(B, 3, H, W)")
    n = images.shape[0]
    _checks.that(titles is None or len(titles) == n, f"titles must have one entry per image ({n}), got {len(titles or ())}")
    if axes is None:
        ncols = min(n, ncols or 8)
        nrows = -(-n // ncols)
        _, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.3 * bool(titles)),
                               squeeze=False)
    axes = list(getattr(axes, "flat", axes))
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i < n:
            ax.imshow(to_numpy_image(images[i]), interpolation="nearest")
            if titles is not None:
                ax.set_title(_wrap(titles[i], 22), fontsize=fontsize)
    return axes


def token_attention_map(probs: torch.Tensor, token: int, height: int | None = None) -> torch.Tensor:
    """The attention every image position pays to one text token, as an ``(h, w)`` grid.

    ``probs`` is ``(heads, N_img, N_txt)`` (averaged over heads) or ``(N_img, N_txt)``;
    ``N_img = h * w`` in row-major order (the U-Net's ``flatten(2)``). ``height``
    defaults to a square map.
    """
    if probs.ndim == 3:
        probs = probs.mean(0)
    _checks.that(probs.ndim == 2, f"probs must be (heads, N_img, N_txt) or (N_img, N_txt), got {tuple(probs.shape)}")
    n_img = probs.shape[0]
    height = height or int(round(n_img**0.5))
    _checks.that(n_img % height == 0, f"height={height} does not divide N_img={n_img}")
    return probs[:, token].reshape(height, n_img // height)


def mean_attention_maps(maps: Sequence[torch.Tensor], size: int | tuple[int, int] | None = None,
                        mode: str = "bilinear") -> torch.Tensor:
    """The mean of attention maps of different resolutions, each first resized to one grid.

    Introduced in notebook 03: the scenes U-Net attends at 16×16 and at 8×8, and one picture of
    "where does this word go" averages its layers. Each map is ``(..., h_i, w_i)`` (the leading
    dims, e.g. steps or images, the same for all); its values are attention per position (a share
    of that position's attention), a quantity that resizing keeps on the same scale, so no
    re-normalisation is needed: a map that is constant stays that constant.

    Args:
        maps: the maps, one per layer.
        size: the common ``(h, w)`` (an int for a square); default the largest side of each axis.
        mode: ``"bilinear"`` (smooth, ``align_corners=False``) or ``"nearest"`` (each coarse
            cell copied into the block it covers).

    Returns:
        ``(..., h, w)``: the mean over the layers.
    """
    maps = list(maps)
    _checks.that(maps and all(isinstance(m, torch.Tensor) and m.ndim >= 2 for m in maps), "maps must be a non-empty sequence of tensors (..., h, w)")
    lead = maps[0].shape[:-2]
    _checks.that(all(m.shape[:-2] == lead for m in maps), f"maps must share their leading dims, got {[tuple(m.shape) for m in maps]}")
    _checks.one_of("mode", mode, ("bilinear", "nearest"))
    if size is None:
        size = (max(m.shape[-2] for m in maps), max(m.shape[-1] for m in maps))
    size = (size, size) if isinstance(size, int) else tuple(size)
    extra = {"align_corners": False} if mode == "bilinear" else {}
    resized = [F.interpolate(m.detach().float().reshape(-1, 1, *m.shape[-2:]), size=size, mode=mode, **extra)
               for m in maps]                                # each (prod(lead), 1, h, w)
    return torch.stack(resized).mean(0).reshape(*lead, *size)


def overlay_attention(ax, image: torch.Tensor, attn_map: torch.Tensor, title: str | None = None,
                      alpha: float = 0.6, cmap: str = "inferno", vmax: float | None = None):
    """Draw ``image`` (``(3, H, W)`` in ``[-1, 1]``) in grey with ``attn_map`` ``(h, w)`` on top.

    The map is upsampled to the image size with nearest neighbours (each cell is
    one feature-map position). Colours run from 0 to ``vmax`` (default: the map's
    maximum). Returns the ``AxesImage`` of the map (for a colour bar).
    """
    grey = to_numpy_image(image).mean(-1)
    size = grey.shape
    up = F.interpolate(attn_map.detach().float()[None, None], size=size, mode="nearest")[0, 0]
    ax.imshow(grey, cmap="gray", vmin=0, vmax=1)
    vmax = float(attn_map.max()) if vmax is None else vmax
    im = ax.imshow(up.numpy(), cmap=cmap, alpha=alpha, vmin=0, vmax=vmax)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=8)
    return im


def _wrap(text: str, width: int) -> str:
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    return "\n".join(lines + [line]) if line else "\n".join(lines)


def image_rows(rows: dict[str, torch.Tensor], row_notes: dict[str, str] | None = None, size: float = 1.2,
               title: str | None = None):
    """One row of images per entry of ``rows`` (``label -> (B, 3, H, W)``, the same B), the label
    (and its ``row_notes`` entry) written left of the row; returns the figure."""
    import matplotlib.pyplot as plt

    labels = list(rows)
    n = rows[labels[0]].shape[0]
    fig, axes = plt.subplots(len(labels), n, figsize=(size * n + 2.6, size * len(labels) + 0.4), squeeze=False)
    for r, label in enumerate(labels):
        for i, ax in enumerate(axes[r]):
            ax.imshow(to_numpy_image(rows[label][i]), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        note = (row_notes or {}).get(label, "")
        axes[r, 0].set_ylabel(_wrap(label, 24) + (f"\n{note}" if note else ""), rotation=0, ha="right",
                              va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def pareto_curves(ax, rows: Sequence[dict], methods: dict[str, str], x: str = "recall", y: str = "all"):
    """Fidelity against diversity, one curve per method through its guidance scales.

    ``rows`` are :func:`tutorial_lib.after_cfg.committed_rows` dicts; ``methods`` maps a
    method name to its legend label. Each point is labelled with its scale; the bars are the
    95 % intervals of both metrics. Returns ``ax``.
    """
    for method, label in methods.items():
        pts = sorted((r for r in rows if r["method"] == method), key=lambda r: r["scale"])
        if not pts:  # a method whose committed rows are absent
            continue
        xs, ys = [100 * r[x]["value"] for r in pts], [100 * r[y]["value"] for r in pts]
        xerr = [[v - 100 * r[x]["low"] for v, r in zip(xs, pts, strict=True)], [100 * r[x]["high"] - v for v, r in zip(xs, pts, strict=True)]]
        yerr = [[v - 100 * r[y]["low"] for v, r in zip(ys, pts, strict=True)], [100 * r[y]["high"] - v for v, r in zip(ys, pts, strict=True)]]
        line = ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, marker="o", ms=4, capsize=2, lw=1.2, elinewidth=0.5,
                           label=label)
        for xv, yv, r in zip(xs, ys, pts, strict=True):
            ax.annotate(f"{r['scale']:g}", (xv, yv), textcoords="offset points", xytext=(3, 3), fontsize=6,
                        color=line[0].get_color())
    ax.set_xlabel(f"{x} (%, judge features, k-NN)")
    ax.set_ylabel(f"{y} of the caption correct (%)" if y == "all" else f"{y} (%)")
    ax.legend(fontsize=7)
    return ax
