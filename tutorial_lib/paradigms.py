"""One small task solved three ways: the conditioning paradigms of notebook 01, side by side.

Introduced in notebook 01 (conditioning paradigms).

**The task ("paint by tokens").** An ``S x S`` RGB image (``S = 8`` by default; notebook 01
uses ``S = 4``, quadrants of 2x2 pixels) is split into four quadrants.
A condition is a short list of *tokens*, each a (colour, quadrant) pair such as
``("red", "top left")``; one to three objects, in distinct quadrants, listed in a
random order and padded to three tokens with a ``<pad>`` token. The clean image
x_0 paints each listed quadrant in its colour and leaves the others as
background. A denoiser sees x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε,
the timestep ``t`` and the tokens, and predicts x̂_0. At large ``t`` the
noisy image holds almost nothing, so the prediction must come from the condition.

**The three models** (:class:`PaintDenoiser`) share one small convolutional
backbone, the same token embedding and the same time injection (AdaGN with a
:class:`~tutorial_lib.conditioning.TimestepMLP`); they differ only in how the
tokens enter:

- ``"concat"``: the tokens are averaged into one vector, broadcast over the
  image and concatenated to the input channels
  (:class:`~tutorial_lib.conditioning.ConcatConditioning`);
- ``"adagn"``: the averaged vector is added to the time embedding and enters every
  :class:`~tutorial_lib.conditioning.AdaptiveGroupNorm` as a per-channel scale and shift;
- ``"cross_attention"``: every pixel attends over the token sequence
  (:class:`~tutorial_lib.attention.CrossAttention`), as Stable Diffusion reads its text;
  time still enters by AdaGN (the course's choice, ADM's; Stable Diffusion adds the time
  embedding as a per-channel bias instead).

Averaging ``colour + quadrant`` embeddings keeps *which colours* and *which
quadrants* occur but not *which colour goes where*; notebook 01 measures what that
costs, and ``pooling="bind"`` (a small MLP on each token before averaging) shows
how a global vector can be repaired.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import _checks
from .attention import CrossAttention
from .conditioning import AdaptiveGroupNorm, ConcatConditioning, TimestepMLP
from .schedule import NoiseSchedule
from .shapes import ATTRIBUTES, BACKGROUND_RGB, COLOURS_RGB

__all__ = [
    "COLOURS",
    "QUADRANTS",
    "PAD_COLOUR",
    "PAD_QUADRANT",
    "PARADIGMS",
    "paint",
    "sample_paint_task",
    "describe_tokens",
    "PaintDenoiser",
    "train_paint_denoiser",
    "evaluate_paint_denoiser",
]

#: Colour names (index = colour id); the palette of :mod:`tutorial_lib.shapes`.
COLOURS: tuple[str, ...] = ATTRIBUTES["colour"]
#: Quadrant names (index = quadrant id).
QUADRANTS: tuple[str, ...] = ("top left", "top right", "bottom left", "bottom right")
#: Ids of the padding token ``(<pad>, <pad>)``.
PAD_COLOUR, PAD_QUADRANT = len(COLOURS), len(QUADRANTS)
#: The three ways a condition enters :class:`PaintDenoiser`.
PARADIGMS: tuple[str, ...] = ("concat", "adagn", "cross_attention")


def paint(tokens: torch.Tensor, size: int = 8) -> torch.Tensor:
    """Render the clean images of token lists, ``(B, N, 2) long -> (B, 3, size, size)`` in [-1, 1].

    ``tokens[b, i] = (colour id, quadrant id)``; padding tokens paint nothing.
    """
    _checks.shape("tokens", tokens, (None, None, 2), "(B, N, 2)")
    _checks.that(size >= 2 and size % 2 == 0, f"size must be an even int >= 2, got {size}")
    b, half = tokens.shape[0], size // 2
    img = BACKGROUND_RGB.view(1, 3, 1, 1).repeat(b, 1, size, size)
    for i in range(tokens.shape[1]):
        colour, quadrant = tokens[:, i, 0], tokens[:, i, 1]
        for q in range(len(QUADRANTS)):
            rows = (quadrant == q) & (colour < PAD_COLOUR)
            y, x = (q // 2) * half, (q % 2) * half
            img[rows, :, y:y + half, x:x + half] = COLOURS_RGB[colour[rows]].view(-1, 3, 1, 1)
    return img * 2 - 1


def sample_paint_task(
    n: int, generator: torch.Generator, max_objects: int = 3, size: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` conditions and their images.

    Each condition has 1..``max_objects`` objects (uniform), in distinct random
    quadrants with random colours, listed in random order, padded to ``max_objects``.

    Returns:
        ``(images (n, 3, size, size) in [-1, 1], tokens (n, max_objects, 2) long)``.
    """
    _checks.integer("max_objects", max_objects, 1, len(QUADRANTS))
    count = torch.randint(1, max_objects + 1, (n,), generator=generator)  # (n,)
    quadrants = torch.rand(n, len(QUADRANTS), generator=generator).argsort(-1)[:, :max_objects]
    colours = torch.randint(len(COLOURS), (n, max_objects), generator=generator)
    pad = torch.arange(max_objects)[None, :] >= count[:, None]  # (n, max_objects)
    tokens = torch.stack(
        [colours.masked_fill(pad, PAD_COLOUR), quadrants.masked_fill(pad, PAD_QUADRANT)], dim=-1
    )
    return paint(tokens, size), tokens


def describe_tokens(tokens: torch.Tensor) -> str:
    """A caption for one token list ``(N, 2)``: ``"red top left, blue bottom right"``."""
    words = [f"{COLOURS[c]} {QUADRANTS[q]}" for c, q in tokens.tolist() if c != PAD_COLOUR]
    return ", ".join(words)


class PaintDenoiser(nn.Module):
    """A tiny x0-predicting denoiser whose condition enters by one of three paradigms.

    ``forward(x_t, t, tokens) -> x0_hat`` with ``x_t`` ``(B, 3, S, S)``, ``t`` ``(B,)``
    training timesteps and ``tokens`` ``(B, N, 2)`` long; ``x0_hat`` has ``x_t``'s shape.

    Backbone: ``[x_t, y, x]`` (two coordinate channels, so every model knows where
    a pixel is) -> 3x3 conv -> two residual blocks
    ``h + conv(SiLU(AdaGN(h, emb)))`` -> 3x3 conv. ``emb`` is the time embedding,
    plus the pooled condition for ``"adagn"``; ``"cross_attention"`` inserts
    :class:`CrossAttention` (pixels as queries, tokens as keys/values) after the first block.

    Args:
        paradigm: one of :data:`PARADIGMS`.
        channels: backbone width ``C``.
        token_dim: width ``D`` of a token embedding (colour + quadrant).
        pooling: how concat/AdaGN summarise the tokens into one ``(B, D)`` vector:
            ``"mean"`` of the embeddings, or ``"bind"`` (a 2-layer MLP on each token
            first, so a colour and its quadrant are combined before averaging).
        size: image side ``S``.
    """

    def __init__(self, paradigm: str, channels: int = 32, token_dim: int = 32,
                 pooling: str = "mean", size: int = 8):
        super().__init__()
        _checks.one_of("paradigm", paradigm, PARADIGMS)
        _checks.one_of("pooling", pooling, ("mean", "bind"))
        self.paradigm, self.pooling = paradigm, pooling
        self.colour_emb = nn.Embedding(len(COLOURS) + 1, token_dim)  # + <pad>
        self.quadrant_emb = nn.Embedding(len(QUADRANTS) + 1, token_dim)
        self.bind = (
            nn.Sequential(nn.Linear(token_dim, 4 * token_dim), nn.SiLU(),
                          nn.Linear(4 * token_dim, token_dim))
            if pooling == "bind" and paradigm != "cross_attention" else None
        )
        self.time = TimestepMLP(32, channels)
        ramp = torch.linspace(-1, 1, size)
        self.register_buffer("coords", torch.stack(torch.meshgrid(ramp, ramp, indexing="ij"))[None])
        in_channels = 3 + 2
        if paradigm == "concat":
            self.concat = ConcatConditioning(token_dim)
            in_channels = self.concat.out_channels(in_channels)
        if paradigm == "adagn":
            self.cond_proj = nn.Linear(token_dim, channels)
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.norms = nn.ModuleList(AdaptiveGroupNorm(channels, channels, 8) for _ in range(2))
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in range(2))
        if paradigm == "cross_attention":
            self.attn = CrossAttention(channels, token_dim, num_heads=2)
        self.conv_out = nn.Conv2d(channels, 3, 3, padding=1)

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token embeddings ``(B, N, 2) -> (B, N, D)``: colour embedding + quadrant embedding."""
        return self.colour_emb(tokens[..., 0]) + self.quadrant_emb(tokens[..., 1])

    def pooled(self, context: torch.Tensor) -> torch.Tensor:
        """The single condition vector of concat/AdaGN, ``(B, N, D) -> (B, D)``."""
        if self.bind is not None:
            context = self.bind(context)
        return context.mean(dim=1)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        b, _, s, _ = x_t.shape
        emb = self.time(t)  # (B, C): time enters by AdaGN in every model
        context = self.embed_tokens(tokens)  # (B, N, D)
        h = torch.cat([x_t, self.coords.expand(b, 2, s, s)], dim=1)  # (B, 5, S, S)
        if self.paradigm == "concat":
            h = self.concat(h, self.pooled(context))  # (B, 5 + D, S, S)
        if self.paradigm == "adagn":
            emb = emb + self.cond_proj(self.pooled(context))  # (B, C)
        h = self.conv_in(h)  # (B, C, S, S)
        for i in range(2):
            h = h + self.convs[i](F.silu(self.norms[i](h, emb)))
            if i == 0 and self.paradigm == "cross_attention":
                seq = h.flatten(2).transpose(1, 2)  # (B, S*S, C): one query per pixel
                h = self.attn(seq, context).transpose(1, 2).reshape(h.shape)
        return self.conv_out(F.silu(h))


def train_paint_denoiser(
    model: PaintDenoiser, steps: int = 200, batch_size: int = 96, lr: float = 4e-3,
    seed: int = 0, schedule: NoiseSchedule | None = None,
) -> list[float]:
    """Train with the x0 loss ``|| model(x_t, t, tokens) - x_0 ||²``, ``t`` uniform; return the losses.

    Fresh data every step from ``torch.Generator().manual_seed(seed)`` (so the
    same seed gives every model the same batches).
    """
    schedule = schedule or NoiseSchedule(1000, "cosine")
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        x0, tokens = sample_paint_task(batch_size, g, size=model.coords.shape[-1])
        t = torch.randint(schedule.num_train_timesteps, (batch_size,), generator=g)
        x_t = schedule.add_noise(x0, torch.randn(x0.shape, generator=g), t)
        loss = F.mse_loss(model(x_t, t, tokens), x0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def evaluate_paint_denoiser(
    model: PaintDenoiser, n: int = 600, seed: int = 12345, t: int = 999,
    schedule: NoiseSchedule | None = None,
) -> dict[str, float]:
    """Held-out scores at timestep ``t`` (default: the noisiest, where only the condition helps).

    Returns a dict with ``loss`` (x0 MSE), ``acc_1`` and ``acc_multi`` (fraction of
    objects whose quadrant is painted nearest to the right colour, for conditions
    with one object and with two or more), and ``n_1``, ``n_multi`` (objects counted).
    """
    schedule = schedule or NoiseSchedule(1000, "cosine")
    g = torch.Generator().manual_seed(seed)
    model.eval()
    x0, tokens = sample_paint_task(n, g, size=model.coords.shape[-1])
    tt = torch.full((n,), t, dtype=torch.long)
    x_t = schedule.add_noise(x0, torch.randn(x0.shape, generator=g), tt)
    x0_hat = model(x_t, tt, tokens)
    half = x0.shape[-1] // 2
    quads = x0_hat.unflatten(2, (2, half)).unflatten(4, (2, half)).mean((3, 5))  # (n, 3, 2, 2)
    quads = quads.flatten(2).transpose(1, 2)  # (n, 4, 3): mean colour of each quadrant
    palette = torch.cat([COLOURS_RGB, BACKGROUND_RGB[None]]) * 2 - 1  # (7, 3): colours + background
    nearest = torch.cdist(quads, palette[None].expand(n, -1, -1)).argmin(-1)  # (n, 4)
    real = tokens[..., 0] != PAD_COLOUR  # (n, N)
    q = tokens[..., 1].clamp(max=len(QUADRANTS) - 1)
    correct = (nearest.gather(1, q) == tokens[..., 0]) & real  # (n, N)
    single = (real.sum(1) == 1)[:, None] & real
    multi = (real.sum(1) > 1)[:, None] & real
    return {
        "loss": F.mse_loss(x0_hat, x0).item(),
        "acc_1": (correct & single).sum().item() / single.sum().item(),
        "acc_multi": (correct & multi).sum().item() / multi.sum().item(),
        "n_1": int(single.sum()),
        "n_multi": int(multi.sum()),
    }
