"""Attribute classifiers for the captioned shapes: a judge and a noise-robust classifier.

Introduced in notebook 05 (classifier guidance) and used to score samples in
notebooks 06-08.

Two models share one architecture, :class:`AttributeClassifier`, a small CNN
with one linear head per attribute (colour, shape, size, position; see
:data:`tutorial_lib.shapes.ATTRIBUTES`):

- the **judge** (``time_conditioned=False``) sees clean images and only
  *scores* generated samples. It is trained on fresh data from
  :mod:`tutorial_lib.shapes` and never used to guide sampling: a guided sampler
  can fool the classifier it follows, so the scorer must be a different model.
- the **noise-robust classifier** (``time_conditioned=True``) sees noised
  images x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε
  at random t and models p_φ(y | x_t, t). Its gradient
  ∇_{x_t} log p_φ(y | x_t, t) is what classifier guidance
  adds to the score (Dhariwal & Nichol 2021, eq. 9-10).

The attributes are modelled as independent given the image, so the joint
log-probability of a label set is the sum of per-attribute log-softmaxes:

    log p(y | x_t) = Σ_a log softmax(ℓ_a(x_t, t))_{y_a}

:meth:`AttributeClassifier.log_prob` computes it; :class:`AttributeHead` and
:class:`JointLabelClassifier` expose one attribute, or all 180 label sets, as
an ordinary classifier ``(x_t, t) -> logits (B, K)`` (the course's classifier
protocol), so the sampler's ``classifier_labels`` can be a class index.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from . import _checks
from .conditioning import TimestepMLP
from .shapes import ATTRIBUTES, NUM_CLASSES

__all__ = [
    "ATTRIBUTE_ORDER",
    "ClassifierConfig",
    "AttributeClassifier",
    "AttributeHead",
    "JointLabelClassifier",
    "joint_label_index",
    "joint_label_table",
    "accuracy",
    "CELL_READINGS",
    "SceneClassifierConfig",
    "SceneClassifier",
    "cell_targets",
    "scene_reading_accuracy",
    "SceneCellHead",
]

#: Attribute order of the concatenated logits.
ATTRIBUTE_ORDER: tuple[str, ...] = tuple(ATTRIBUTES)


def _check_channels(channels, num_groups: int) -> tuple[int, ...]:
    """The stage widths as a tuple, each a positive multiple of ``num_groups`` (GroupNorm)."""
    channels = tuple(int(c) for c in channels)
    _checks.that(channels and all(c > 0 and c % num_groups == 0 for c in channels), f"channels must be positive multiples of num_groups={num_groups}, got {channels}")
    return channels


def _check_input(config, x, t) -> torch.Tensor | None:
    """``x`` an image batch of the classifier's size; ``t`` (if time-conditioned) as ``(B,)``."""
    s = config.image_size
    _checks.shape("x", x, (None, config.in_channels, s, s), "(B, in_channels, image_size, image_size)")
    if not config.time_conditioned:
        return t
    _checks.that(t is not None, "t is required: this classifier is time-conditioned (noise-robust)")
    t = _checks.tensor("t", t)
    return _checks.shape("t", t.expand(x.shape[0]) if t.dim() == 0 else t, (x.shape[0],))


@dataclass
class ClassifierConfig:
    """Configuration of :class:`AttributeClassifier`.

    Attributes:
        image_size: side of the square input image.
        in_channels: image channels (3).
        channels: width of each stage; every stage after the first halves the resolution.
        time_conditioned: if True, ``forward`` takes ``(x_t, t)`` and a
            sinusoidal time embedding (through an MLP) is added to every stage.
        time_dim: width of the time embedding.
        num_groups: GroupNorm groups.
    """

    image_size: int = 32
    in_channels: int = 3
    channels: tuple[int, ...] = (32, 64, 128)
    time_conditioned: bool = False
    time_dim: int = 128
    num_groups: int = 8
    num_classes: dict = field(default_factory=lambda: dict(NUM_CLASSES))

    def __post_init__(self):
        self.channels = _check_channels(self.channels, self.num_groups)
        f = 2 ** (len(self.channels) - 1)
        _checks.that(self.image_size % f == 0, f"image_size={self.image_size} must be divisible by 2**(len(channels)-1)={f}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ClassifierConfig:
        return cls(**d)


class _Stage(nn.Module):
    """conv3x3 -> GroupNorm -> (+ time) -> SiLU -> conv3x3 -> GroupNorm -> SiLU, with a residual."""

    def __init__(self, cin: int, cout: int, groups: int, time_dim: int | None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm1 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        self.time = nn.Linear(time_dim, cout) if time_dim else None

    def forward(self, x, temb=None):
        h = self.norm1(self.conv1(x))
        if self.time is not None:
            h = h + self.time(temb)[:, :, None, None]
        h = F.silu(h)
        h = F.silu(self.norm2(self.conv2(h)))
        return h + self.skip(x)


class AttributeClassifier(nn.Module):
    """A small CNN with one head per attribute.

    ``forward(x, t=None)``: ``x`` is an image batch ``(B, 3, H, W)`` in ``[-1, 1]``
    (for the noise-robust model, a noised ``x_t``); ``t`` is ``(B,)`` timesteps,
    required iff ``config.time_conditioned``. Returns the concatenated logits
    ``(B, 16)`` in :data:`ATTRIBUTE_ORDER` (6 colours, 3 shapes, 2 sizes,
    5 positions); :meth:`split` turns them into a dict.

    The final feature map is flattened (not pooled) before the heads, so the
    position of the shape stays visible to the position head.
    """

    def __init__(self, config: ClassifierConfig | None = None):
        super().__init__()
        self.config = config = config or ClassifierConfig()
        tdim = config.time_dim if config.time_conditioned else None
        self.time_embed = TimestepMLP(config.time_dim, config.time_dim) if tdim else None
        stages, pools = [], []
        cin = config.in_channels
        for i, c in enumerate(config.channels):
            stages.append(_Stage(cin, c, config.num_groups, tdim))
            pools.append(nn.AvgPool2d(2) if i < len(config.channels) - 1 else nn.Identity())
            cin = c
        self.stages = nn.ModuleList(stages)
        self.pools = nn.ModuleList(pools)
        final = config.image_size // 2 ** (len(config.channels) - 1)
        # Reduce channels before flattening to keep the head small.
        self.reduce = nn.Conv2d(cin, 16, 1)
        self.hidden = nn.Linear(16 * final * final, 256)
        self.heads = nn.ModuleDict({a: nn.Linear(256, config.num_classes[a]) for a in ATTRIBUTE_ORDER})

    @property
    def time_conditioned(self) -> bool:
        return self.config.time_conditioned

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        t = _check_input(self.config, x, t)
        temb = self.time_embed(t.to(x.device)) if self.time_embed is not None else None
        h = x
        for stage, pool in zip(self.stages, self.pools, strict=False):
            h = pool(stage(h, temb))
        h = F.silu(self.reduce(h)).flatten(1)
        h = F.silu(self.hidden(h))
        return torch.cat([self.heads[a](h) for a in ATTRIBUTE_ORDER], dim=1)

    def split(self, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split concatenated logits ``(B, 16)`` into ``attribute -> (B, K_a)``."""
        sizes = [self.config.num_classes[a] for a in ATTRIBUTE_ORDER]
        return dict(zip(ATTRIBUTE_ORDER, torch.split(logits, sizes, dim=1), strict=False))

    def attribute_logits(self, x, t=None) -> dict[str, torch.Tensor]:
        """``attribute -> logits (B, K_a)``."""
        return self.split(self(x, t))

    def predict(self, x, t=None) -> dict[str, torch.Tensor]:
        """``attribute -> predicted label (B,)`` (argmax of each head)."""
        return {a: v.argmax(dim=1) for a, v in self.attribute_logits(x, t).items()}

    def log_prob(self, x, t=None, labels: dict[str, torch.Tensor | int] | None = None) -> torch.Tensor:
        """Joint log-probability ``sum_a log softmax(l_a)[y_a]`` of a (partial) label set, shape ``(B,)``.

        ``labels`` maps some or all attributes to a label per example (``(B,)``
        long tensor) or one label for all (int). Attributes left out are
        marginalised (they contribute nothing). Differentiable in ``x``: this
        is the quantity whose gradient classifier guidance follows.
        """
        _checks.that(isinstance(labels, dict) and labels, "labels must be a non-empty dict attribute -> label(s)")
        logits = self.attribute_logits(x, t)
        total = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        for a, y in labels.items():
            _checks.that(a in logits, f"unknown attribute {a!r} in labels; expected one of {ATTRIBUTE_ORDER}")
            lp = F.log_softmax(logits[a].float(), dim=1)
            if isinstance(y, int):
                y = torch.full((x.shape[0],), y, dtype=torch.long, device=x.device)
            _checks.that(isinstance(y, torch.Tensor) and y.shape == (x.shape[0],), f"labels[{a!r}] must be an int or a ({x.shape[0]},) long tensor")
            _checks.that(not y.numel() or 0 <= int(y.min()) and int(y.max()) < lp.shape[1], f"labels[{a!r}] must lie in [0, {lp.shape[1] - 1}]")
            total = total + lp.gather(1, y.long().view(-1, 1)).squeeze(1).to(total.dtype)
        return total

    def loss(self, x, labels: dict[str, torch.Tensor], t=None) -> tuple[torch.Tensor, dict[str, float]]:
        """Sum of per-attribute cross-entropies; also returns each attribute's accuracy."""
        logits = self.attribute_logits(x, t)
        total = 0.0
        acc = {}
        for a in ATTRIBUTE_ORDER:
            total = total + F.cross_entropy(logits[a], labels[a])
            acc[a] = (logits[a].argmax(1) == labels[a]).float().mean().item()
        return total, acc


class AttributeHead(nn.Module):
    """One attribute of an :class:`AttributeClassifier` as a plain classifier ``(x_t, t) -> (B, K_a)``."""

    def __init__(self, classifier: AttributeClassifier, attribute: str):
        super().__init__()
        _checks.one_of("attribute", attribute, ATTRIBUTE_ORDER)
        self.classifier = classifier
        self.attribute = attribute

    def forward(self, x, t=None):
        return self.classifier.attribute_logits(x, t)[self.attribute]


def joint_label_table() -> torch.Tensor:
    """``(180, 4)`` long tensor: row ``k`` is the label set (colour, shape, size, position) of joint class ``k``.

    The order is that of :func:`tutorial_lib.shapes.all_captions`.
    """
    ranges = [range(NUM_CLASSES[a]) for a in ATTRIBUTE_ORDER]
    return torch.tensor(list(itertools.product(*ranges)), dtype=torch.long)


def joint_label_index(labels: dict[str, torch.Tensor | int]) -> torch.Tensor | int:
    """Index of a full label set in :func:`joint_label_table` (and in ``all_captions()``)."""
    idx = 0
    for a in ATTRIBUTE_ORDER:
        idx = idx * NUM_CLASSES[a] + labels[a]
    return idx


class JointLabelClassifier(nn.Module):
    """All 180 full label sets as one classifier ``(x_t, t) -> (B, 180)``.

    The output is already normalised log-probabilities,
    ``out[:, k] = sum_a log softmax(l_a)[y_a(k)]`` (independent heads), so
    ``log_softmax(out) == out`` and any sampler that takes
    ``log_softmax(logits)[y]`` gets the joint log-probability of label set ``y``.
    Class ``k`` is the caption ``all_captions()[k]``.
    """

    def __init__(self, classifier: AttributeClassifier):
        super().__init__()
        self.classifier = classifier
        self.register_buffer("table", joint_label_table(), persistent=False)

    def forward(self, x, t=None):
        logits = self.classifier.attribute_logits(x, t)
        out = 0
        for j, a in enumerate(ATTRIBUTE_ORDER):
            out = out + F.log_softmax(logits[a], dim=1)[:, self.table[:, j]]
        return out


@torch.no_grad()
def accuracy(classifier: AttributeClassifier, images, labels, t=None, batch_size: int = 512) -> dict[str, float]:
    """Per-attribute accuracy of ``classifier`` on ``images`` (and ``t`` for a noise-robust one)."""
    was_training = classifier.training
    classifier.eval()
    correct = {a: 0 for a in ATTRIBUTE_ORDER}
    n = images.shape[0]
    for i in range(0, n, batch_size):
        tt = None if t is None else t[i : i + batch_size]
        pred = classifier.predict(images[i : i + batch_size], tt)
        for a in ATTRIBUTE_ORDER:
            correct[a] += int((pred[a] == labels[a][i : i + batch_size]).sum())
    classifier.train(was_training)
    return {a: correct[a] / max(n, 1) for a in ATTRIBUTE_ORDER}


# --------------------------------------------------------------------------- scenes


@dataclass
class SceneClassifierConfig:
    """Configuration of :class:`SceneClassifier` (the scenes' judge and noise-robust classifier).

    Attributes:
        image_size: side of the square input image.
        channels: width of each stage; every stage after the first halves the resolution.
        feature_dim: width of each cell's feature vector (the judge's feature space
            for the distribution metrics is the four cells' vectors side by side).
        time_conditioned: if True, ``forward`` takes ``(x_t, t)`` (noise-robust).
        time_dim: width of the time embedding.
        num_groups: GroupNorm groups.
    """

    image_size: int = 32
    in_channels: int = 3
    channels: tuple[int, ...] = (32, 64, 128)
    feature_dim: int = 32
    time_conditioned: bool = False
    time_dim: int = 128
    num_groups: int = 8

    def __post_init__(self):
        self.channels = _check_channels(self.channels, self.num_groups)
        final = self.image_size / 2 ** (len(self.channels) - 1)
        _checks.that(final == int(final) and int(final) % 2 == 0, f"image_size={self.image_size} must leave an even final map after {len(self.channels) - 1} halvings (the 2 x 2 cells)")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SceneClassifierConfig:
        return cls(**d)


#: What the scene classifier reads in each of the four cells, and the number of classes.
CELL_READINGS: dict[str, int] = {"present": 2, "colour": NUM_CLASSES["colour"],
                                 "shape": NUM_CLASSES["shape"], "size": NUM_CLASSES["size"]}


def cell_targets(labels: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Scene labels (objects in caption order) -> per-cell targets ``(B, 4)``, −1 in empty cells.

    ``present`` is 0/1; ``colour``, ``shape``, ``size`` are the object's labels.
    """
    cells = labels["cell"]  # (B, MAX_OBJECTS), -1 for empty slots
    b = cells.shape[0]
    out = {name: torch.full((b, 4), -1, dtype=torch.long) for name in ("colour", "shape", "size")}
    rows = torch.arange(b).view(-1, 1).expand_as(cells)
    ok = cells >= 0
    for name in out:
        out[name][rows[ok], cells[ok]] = labels[name][ok]
    out["present"] = (out["colour"] >= 0).long()
    return out


class SceneClassifier(nn.Module):
    """A small CNN that reads each cell of a scene: is there an object, and its colour, shape and size.

    ``x`` ``(B, 3, H, W)`` -> stages of :class:`_Stage` (each halving the side after the
    first) -> the final map average-pooled over each of the 2 × 2 cells -> a per-cell
    feature ``f_c = SiLU(W h_c)`` of width ``feature_dim`` -> four heads shared by the
    cells (:data:`CELL_READINGS`). Reading cells rather than "objects" makes counts and
    relations exact functions of the readings: the count is the number of occupied
    cells, "left of" compares their columns.

    The judge (``time_conditioned=False``) only scores; a time-conditioned twin models
    ``p(cell readings | x_t, t)`` for classifier guidance.
    """

    def __init__(self, config: SceneClassifierConfig | None = None):
        super().__init__()
        self.config = config = config or SceneClassifierConfig()
        tdim = config.time_dim if config.time_conditioned else None
        self.time_embed = TimestepMLP(config.time_dim, config.time_dim) if tdim else None
        stages, cin = [], config.in_channels
        for c in config.channels:
            stages.append(_Stage(cin, c, config.num_groups, tdim))
            cin = c
        self.stages = nn.ModuleList(stages)
        self.to_feature = nn.Linear(cin, config.feature_dim)
        self.heads = nn.ModuleDict({k: nn.Linear(config.feature_dim, n) for k, n in CELL_READINGS.items()})

    def cell_features(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, 4, feature_dim)``: each cell's feature vector (cells row-major, as ``scenes.CELLS``)."""
        t = _check_input(self.config, x, t)
        temb = self.time_embed(t.to(x.device)) if self.time_embed is not None else None
        h = x
        for i, stage in enumerate(self.stages):
            h = stage(F.avg_pool2d(h, 2) if i else h, temb)
        h = F.adaptive_avg_pool2d(h, 2).flatten(2).transpose(1, 2)  # (B, 4, C)
        return F.silu(self.to_feature(h))

    def features(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, 4 · feature_dim)``: the feature space of the distribution metrics (:mod:`evaluation`)."""
        return self.cell_features(x, t).flatten(1)

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``reading -> logits (B, 4, K)`` for each of :data:`CELL_READINGS`."""
        f = self.cell_features(x, t)
        return {k: head(f) for k, head in self.heads.items()}

    @torch.no_grad()
    def read(self, x: torch.Tensor, t: torch.Tensor | None = None, batch_size: int = 512) -> dict[str, torch.Tensor]:
        """The argmax reading of every cell: ``present`` ``(B, 4)`` bool and ``colour``/``shape``/``size``
        ``(B, 4)`` long, −1 in cells read as empty."""
        parts = []
        for i in range(0, x.shape[0], batch_size):
            tt = None if t is None else t[i : i + batch_size]
            parts.append({k: v.argmax(-1) for k, v in self(x[i : i + batch_size], tt).items()})
        out = {k: torch.cat([p[k] for p in parts]) for k in CELL_READINGS}
        present = out.pop("present").bool()
        return {"present": present, **{k: torch.where(present, v, -1) for k, v in out.items()}}

    def loss(self, x, labels: dict[str, torch.Tensor], t=None) -> tuple[torch.Tensor, dict[str, float]]:
        """Sum over readings of the cross-entropy (attributes only in occupied cells); also the accuracies."""
        logits, target = self(x, t), cell_targets(labels)
        total, acc = 0.0, {}
        for k, lg in logits.items():
            y = target[k].to(lg.device)
            total = total + F.cross_entropy(lg.flatten(0, 1), y.flatten(), ignore_index=-1)
            ok = y >= 0
            acc[k] = (lg.argmax(-1)[ok] == y[ok]).float().mean().item()
        return total, acc


@torch.no_grad()
def scene_reading_accuracy(classifier: SceneClassifier, images, labels, t=None) -> dict[str, float]:
    """How often ``classifier`` reads each fact of the scenes right (the judge's held-out accuracy).

    ``present``: per cell; ``colour``/``shape``/``size``: per object; ``count``: per scene
    (number of cells read as occupied); ``relation``: per relation scene, the occupancy of
    both objects' cells read right, so the relation computed from the reading is the true
    one; ``scene``: every reading of every cell right.
    """
    was_training = classifier.training
    classifier.eval()
    read, target = classifier.read(images, t), cell_targets(labels)
    classifier.train(was_training)
    occupied = target["present"].bool()
    ok = {"present": read["present"] == occupied}
    for k in ("colour", "shape", "size"):
        ok[k] = (read[k] == target[k])[occupied]
    cells_ok = ok["present"] & torch.stack([read[k] == target[k] for k in ("colour", "shape", "size")]).all(0)
    has_rel = labels["relation"] >= 0
    rows = torch.arange(images.shape[0])[has_rel]
    rel_ok = ok["present"][rows.view(-1, 1), labels["cell"][has_rel][:, :2]].all(1)
    out = {k: v.float().mean().item() for k, v in ok.items()}
    out["count"] = (read["present"].sum(1) == labels["count"]).float().mean().item()
    out["relation"] = rel_ok.float().mean().item() if rel_ok.numel() else float("nan")
    out["scene"] = cells_ok.all(1).float().mean().item()
    return out


class SceneCellHead(nn.Module):
    """One reading of one cell of a :class:`SceneClassifier` as a plain classifier ``(x_t, t) -> (B, K)``.

    E.g. ``SceneCellHead(noisy, cell=0, reading="colour")`` gives the colour logits of the
    top-left cell, which classifier guidance (``guiders.ClassifierGuidance``) can steer.
    """

    def __init__(self, classifier: SceneClassifier, cell: int, reading: str):
        super().__init__()
        _checks.one_of("reading", reading, tuple(CELL_READINGS))
        _checks.integer("cell", cell, 0, 3)  # row-major 2 x 2 grid
        self.classifier, self.cell, self.reading = classifier, cell, reading

    def forward(self, x, t=None):
        return self.classifier(x, t)[self.reading][:, self.cell]
