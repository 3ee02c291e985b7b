"""Captioned shapes: the procedurally generated data every trained model of the course uses.

Introduced in notebook 04 (the U-Net's training data) and used by notebooks 05-08.

Each image is one coloured shape on a light background, described by four
attributes with exact integer labels:

====================  =====================================================
attribute             values (label = index in the list)
====================  =====================================================
``colour``            red, green, blue, yellow, purple, orange
``shape``             circle, square, triangle
``size``              small, large
``position``          top left, top right, bottom left, bottom right, center
====================  =====================================================

and by a templated caption, ``"a large red circle in the top left"``
(:func:`caption_from_labels`). For training variety, :func:`partial_captions`
drops attributes from a caption ("a red circle", "a large shape in the center");
the labels are still the image's true attributes and a ``mentioned`` mask says
which of them the caption states.

Rendering is vectorised: every image of a batch is drawn at once from signed
distance functions with one pixel of anti-aliasing, so generation runs at tens
of thousands of 32x32 images per second on a laptop CPU. All randomness goes
through an explicit ``torch.Generator``, so a seed fixes the batch exactly.

Pixel range: images come out in ``[-1, 1]`` (what the diffusion model sees);
:func:`to_unit_range` maps them to ``[0, 1]`` for plotting.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import _checks

__all__ = [
    "ATTRIBUTES",
    "COLOURS_RGB",
    "BACKGROUND_RGB",
    "NUM_CLASSES",
    "ShapesDataset",
    "all_captions",
    "caption_from_labels",
    "coverage",
    "caption_targets",
    "generate",
    "labels_from_caption",
    "partial_captions",
    "render",
    "sample_labels",
    "to_unit_range",
    "from_unit_range",
]

#: The attribute vocabulary. A label is the index of a value in its list.
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "colour": ("red", "green", "blue", "yellow", "purple", "orange"),
    "shape": ("circle", "square", "triangle"),
    "size": ("small", "large"),
    "position": ("top left", "top right", "bottom left", "bottom right", "center"),
}

#: Number of classes per attribute.
NUM_CLASSES: dict[str, int] = {k: len(v) for k, v in ATTRIBUTES.items()}

#: RGB in [0, 1] of each colour (well separated: min pairwise distance > 0.35).
COLOURS_RGB = torch.tensor(
    [
        [0.90, 0.10, 0.10],  # red
        [0.10, 0.65, 0.15],  # green
        [0.15, 0.25, 0.90],  # blue
        [0.95, 0.85, 0.05],  # yellow
        [0.55, 0.10, 0.70],  # purple
        [1.00, 0.50, 0.00],  # orange
    ]
)

#: The light background, RGB in [0, 1] (jittered slightly per image).
BACKGROUND_RGB = torch.tensor([0.94, 0.94, 0.90])

# Shape centres as fractions of the image side, indexed like ATTRIBUTES["position"].
_POSITION_XY = torch.tensor(
    [
        [0.27, 0.27],  # top left  (x, y), y grows downwards
        [0.73, 0.27],  # top right
        [0.27, 0.73],  # bottom left
        [0.73, 0.73],  # bottom right
        [0.50, 0.50],  # center
    ]
)
# "Radius" of each size as a fraction of the image side.
_SIZE_RADIUS = torch.tensor([0.11, 0.20])

# Jitter amplitudes (fractions of the side / of the colour range). Small enough
# that every label stays unambiguous: position centres are 0.23 apart, jitter
# moves a centre by at most 0.04; radii differ by 0.09, jitter by at most 0.015.
_POS_JITTER = 0.04
_RADIUS_JITTER = 0.015
_COLOUR_JITTER = 0.04
_BG_JITTER = 0.03


def _check_size(size) -> int:
    """Image side in pixels: the smallest shapes need 8."""
    _checks.that(_checks.integer("size", size) >= 8, f"size must be at least 8 pixels, got {size}")
    return size


def sample_labels(n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Draw ``n`` label sets uniformly: a dict ``attribute -> (n,) long tensor``."""
    n = _checks.integer("n", n, 0)
    return {
        name: torch.randint(len(values), (n,), generator=generator)
        for name, values in ATTRIBUTES.items()
    }


def _check_labels(labels, n: int | None = None) -> int:
    """A dict attribute -> ``(n,)`` integer tensor of valid class indices (``n`` entries when given); returns n."""
    _checks.instance("labels", labels, dict, "a dict attribute -> (n,) long tensor")
    for name, k in NUM_CLASSES.items():
        _checks.that(name in labels, f"labels is missing the attribute {name!r}")
        v = labels[name]
        ok = isinstance(v, torch.Tensor) and v.dim() == 1 and v.dtype in (torch.int64, torch.int32)
        _checks.that(ok, f"labels[{name!r}] must be a (n,) integer tensor (int64 or int32), got {getattr(v, 'dtype', type(v))}", TypeError)
        n = v.shape[0] if n is None else n
        _checks.that(v.shape[0] == n, f"labels[{name!r}] has {v.shape[0]} entries, not one entry per image ({n})")
        _checks.that(not v.numel() or 0 <= int(v.min()) and int(v.max()) < k, f"labels[{name!r}] must lie in [0, {k - 1}]")
    return int(n)


def coverage(shape: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Anti-aliased coverage ``a = clamp(0.5 − d, 0, 1)`` of each object from its signed distance ``d``.

    Shared by :func:`render` and :func:`tutorial_lib.scenes.render`.

    Args:
        shape: ``(n,)`` shape labels (index into ``ATTRIBUTES["shape"]``).
        dx: ``(n, 1, W)`` pixel-centre x minus the object's centre, in pixels.
        dy: ``(n, H, 1)`` the same for y (y grows downwards).
        r: ``(n, 1, 1)`` the object's "radius" in pixels.

    Returns:
        ``(n, H, W)`` coverage in ``[0, 1]`` (one pixel of anti-aliasing).
    """
    n, size = shape.shape[0], dy.shape[1]
    d = torch.empty(n, size, dx.shape[2])
    # Signed distance d (pixels, negative inside), computed per shape type on its subset only.
    for kind in range(NUM_CLASSES["shape"]):
        idx = (shape == kind).nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        ddx, ddy, rr = dx[idx], dy[idx], r[idx]
        if kind == 0:  # circle: |p| − r
            d[idx] = torch.sqrt(ddx * ddx + ddy * ddy) - rr
        elif kind == 1:  # square of half-side 0.88 r (about the circle's area)
            d[idx] = torch.maximum(ddx.abs(), ddy.abs()) - 0.88 * rr
        else:  # upward equilateral triangle, circumradius 1.25 r: max of three half-planes
            R = 1.25 * rr
            dyt = ddy - 0.25 * R  # centroid a little lower so the triangle looks centred
            s3 = 3**0.5 / 2
            d[idx] = torch.maximum(
                dyt - 0.5 * R,  # bottom edge
                torch.maximum(s3 * ddx - 0.5 * dyt, -s3 * ddx - 0.5 * dyt) - 0.5 * R,
            )
    return (0.5 - d).clamp_(0, 1)


def render(
    labels: dict[str, torch.Tensor],
    generator: torch.Generator | None = None,
    size: int = 32,
    jitter: bool = True,
) -> torch.Tensor:
    """Draw the images for given labels.

    Each pixel is ``background * (1 - a) + colour * a`` where the coverage
    ``a = clamp(0.5 - d, 0, 1)`` comes from the shape's signed distance ``d``
    in pixels (one pixel of anti-aliasing).

    Args:
        labels: dict ``attribute -> (n,) long tensor`` (see :data:`ATTRIBUTES`).
        generator: randomness for the jitter of position, size and colours.
        size: image side ``H = W`` in pixels (>= 8).
        jitter: if False, draw the canonical image of each label set.

    Returns:
        ``(n, 3, size, size)`` float tensor in ``[-1, 1]``.
    """
    n = _check_labels(labels)
    size = _check_size(size)

    def rand(*shape):
        if not jitter:
            return torch.zeros(*shape)
        return torch.rand(*shape, generator=generator) * 2 - 1  # uniform in [-1, 1]

    centre = _POSITION_XY[labels["position"]] + _POS_JITTER * rand(n, 2)  # (n, 2) fractions
    radius = _SIZE_RADIUS[labels["size"]] + _RADIUS_JITTER * rand(n)  # (n,)
    colour = (COLOURS_RGB[labels["colour"]] + _COLOUR_JITTER * rand(n, 3)).clamp(0, 1)  # (n, 3)
    background = (BACKGROUND_RGB + _BG_JITTER * rand(n, 1)).clamp(0, 1)  # (n, 3)

    # Pixel-centre coordinates in pixels, relative to each shape's centre.
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    cx = (centre[:, 0] * size).view(n, 1, 1)
    cy = (centre[:, 1] * size).view(n, 1, 1)
    r = (radius * size).view(n, 1, 1)
    dx = coords.view(1, 1, size) - cx  # (n, 1, W)
    dy = coords.view(1, size, 1) - cy  # (n, H, 1)

    a = coverage(labels["shape"], dx, dy, r).unsqueeze(1)  # (n, 1, H, W)

    # Blend in [-1, 1] directly: img = bg + (colour - bg) * a.
    bg = (background * 2 - 1).view(n, 3, 1, 1)
    return torch.addcmul(bg, (colour * 2 - 1).view(n, 3, 1, 1) - bg, a)


def generate(
    n: int,
    generator: torch.Generator | None = None,
    size: int = 32,
    jitter: bool = True,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[str]]:
    """Generate ``n`` captioned images.

    Args:
        n: number of images.
        generator: a ``torch.Generator``; the same seed gives the same batch.
        size: image side in pixels (default 32).
        jitter: small random jitter of position, size and colours (default on).

    Returns:
        ``(images, labels, captions)``: images ``(n, 3, size, size)`` in ``[-1, 1]``;
        labels a dict ``attribute -> (n,) long tensor``; captions the full
        templated captions, e.g. ``"a large red circle in the top left"``.
    """
    labels = sample_labels(n, generator)
    images = render(labels, generator, size=size, jitter=jitter)
    return images, labels, caption_from_labels(labels)


def caption_from_labels(
    labels: dict[str, torch.Tensor] | dict[str, int],
    mentioned: dict[str, torch.Tensor] | None = None,
) -> list[str] | str:
    """The templated caption ``"a {size} {colour} {shape} in the {position}"``.

    Args:
        labels: dict ``attribute -> (n,) long tensor`` (returns a list of ``n``
            captions) or ``attribute -> int`` (returns one caption).
        mentioned: optional dict ``attribute -> (n,) bool tensor``; attributes
            whose entry is False are left out ("a red shape" when only the
            colour is mentioned; the noun "shape" stands for an unmentioned shape).
    """
    if isinstance(labels, dict) and labels and all(isinstance(v, int) for v in labels.values()):
        single = {k: torch.tensor([v]) for k, v in labels.items()}
        single_m = None if mentioned is None else {k: torch.tensor([bool(v)]) for k, v in mentioned.items()}
        return caption_from_labels(single, single_m)[0]
    n = _check_labels(labels)
    cols = {k: labels[k].tolist() for k in ATTRIBUTES}
    if mentioned is None:
        ment = {k: [True] * n for k in ATTRIBUTES}
    else:
        ment = {k: (mentioned[k].tolist() if k in mentioned else [True] * n) for k in ATTRIBUTES}
    out = []
    for i in range(n):
        words = ["a"]
        if ment["size"][i]:
            words.append(ATTRIBUTES["size"][cols["size"][i]])
        if ment["colour"][i]:
            words.append(ATTRIBUTES["colour"][cols["colour"][i]])
        words.append(ATTRIBUTES["shape"][cols["shape"][i]] if ment["shape"][i] else "shape")
        if ment["position"][i]:
            words += ["in", "the", ATTRIBUTES["position"][cols["position"][i]]]
        out.append(" ".join(words))
    return out


def partial_captions(
    labels: dict[str, torch.Tensor],
    generator: torch.Generator | None = None,
    p_partial: float = 0.3,
    p_drop: float = 0.5,
) -> tuple[list[str], dict[str, torch.Tensor]]:
    """Captions that leave some attributes out, for training variety.

    With probability ``p_partial`` an image's caption is partial; in a partial
    caption each attribute is dropped independently with probability ``p_drop``
    (all four may go: "a shape"). This teaches the model what "a circle" means
    without a colour, which the negative-prompt experiment of notebook 07 needs.

    Returns:
        ``(captions, mentioned)`` where ``mentioned`` is a dict
        ``attribute -> (n,) bool tensor`` (True where the caption states it).
    """
    n = _check_labels(labels)
    p_partial, p_drop = _checks.real("p_partial", p_partial, 0.0, 1.0), _checks.real("p_drop", p_drop, 0.0, 1.0)
    partial = torch.rand(n, generator=generator) < p_partial
    mentioned = {}
    for name in ATTRIBUTES:
        drop = torch.rand(n, generator=generator) < p_drop
        mentioned[name] = ~(partial & drop)
    return caption_from_labels(labels, mentioned), mentioned


def all_captions() -> list[str]:
    """The 180 full captions, in label order (colour, shape, size, position nested)."""
    out = []
    for c in range(NUM_CLASSES["colour"]):
        for s in range(NUM_CLASSES["shape"]):
            for z in range(NUM_CLASSES["size"]):
                for p in range(NUM_CLASSES["position"]):
                    out.append(caption_from_labels({"colour": c, "shape": s, "size": z, "position": p}))
    return out


def labels_from_caption(caption: str) -> dict[str, int | None]:
    """Parse a (full or partial) caption back into labels; unmentioned attributes are None."""
    _checks.instance("caption", caption, str)
    text = " " + " ".join(caption.lower().split()) + " "
    out: dict[str, int | None] = {}
    for name, values in ATTRIBUTES.items():
        found = None
        # longest values first so "top left" is not mistaken for something shorter
        for idx in sorted(range(len(values)), key=lambda i: -len(values[i])):
            if f" {values[idx]} " in text:
                found = idx
                break
        out[name] = found
    return out


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """Map images from ``[-1, 1]`` to ``[0, 1]`` (clamped) for plotting."""
    return ((images + 1) / 2).clamp(0, 1)


def from_unit_range(images: torch.Tensor) -> torch.Tensor:
    """Map images from ``[0, 1]`` to ``[-1, 1]``."""
    return images * 2 - 1


@dataclass
class ShapesDataset:
    """An endless source of captioned shapes with a fixed seed.

    ``ShapesDataset(seed=0).batch(64)`` returns the same batches in the same
    order on every run; ``dataset[i]`` is the single example ``i`` (seeded by
    ``seed`` and ``i``), so the dataset also works as a map-style dataset of
    any ``length``.
    """

    seed: int = 0
    size: int = 32
    length: int = 10_000
    jitter: bool = True

    def __post_init__(self):
        _check_size(self.size)
        self._generator = torch.Generator().manual_seed(self.seed)

    def batch(self, n: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[str]]:
        """The next ``n`` examples of this dataset's stream."""
        return generate(n, self._generator, size=self.size, jitter=self.jitter)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        _checks.that(0 <= i < self.length, f"index {i} out of range for a dataset of length {self.length}", IndexError)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        images, labels, captions = generate(1, g, size=self.size, jitter=self.jitter)
        return images[0], {k: int(v[0]) for k, v in labels.items()}, captions[0]


def caption_targets(labels: dict[str, torch.Tensor], mentioned: dict[str, torch.Tensor]) -> dict:
    """What the text encoder's pooled output learns to read from a caption (``train.caption_aux_loss``).

    Returns ``name -> (num_classes, labels (n,), stated (n,) bool)``, one entry per
    attribute, stated where the caption mentions it.
    """
    return {a: (NUM_CLASSES[a], labels[a], mentioned[a]) for a in ATTRIBUTES}
