"""The CLIP text transformer, written out: what ``transformers.CLIPTextModel`` computes.

Introduced in notebook 02; the course's shipped text encoder (``load_pretrained()``) is an
instance of :class:`CLIPTextEncoder`. Why the course has its own copy: **load time**. Using
``transformers.CLIPTextModel`` means importing ``transformers``' modeling code (about 2 s on the
course's 2-core CPU, for ``torch.distributed.tensor``, ``torch._dynamo`` and ``sympy``), longer
than loading every shipped model. This module needs only ``torch``.

It is **proven equal** to ``transformers.CLIPTextModel`` by ``tests/test_clip_text.py``: same
module tree and parameter names (``transformers`` 5 layout: ``embeddings.token_embedding``,
``encoder.layers.{i}.self_attn.q_proj``, ..., ``final_layer_norm``, no ``text_model.`` prefix),
so a checkpoint of one loads ``strict`` into the other, and ``last_hidden_state``,
``pooler_output`` and every ``hidden_states`` entry agree to 1e-6.

Shapes: ``B`` prompts, ``L ≤ 77`` tokens, width ``D``, ``H`` heads of ``d = D / H``.
For ``input_ids`` ``x`` of shape ``(B, L)``::

    h⁽⁰⁾ = E_tok[x] + E_pos[0..L-1]                     embeddings        (B, L, D)
    h ← h + Attn(LN₁(h))      causal: token i sees 0..i  for each of the N layers
    h ← h + W₂ act(W₁ LN₂(h))                           act = quick_gelu: z·σ(1.702 z)
    last_hidden_state = LN_final(h⁽ᴺ⁾)                                    (B, L, D)
    pooler_output     = last_hidden_state[b, EOS position of row b]       (B, D)

with ``Attn(h) = W_o · softmax(Q Kᵀ / √d + M) V`` per head, ``M`` = −∞ above the diagonal
(and on the keys where ``attention_mask`` is 0).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from . import _checks

__all__ = ["CLIPTextModelConfig", "CLIPTextOutput", "CLIPTextEncoder"]


def quick_gelu(z: torch.Tensor) -> torch.Tensor:
    """OpenAI CLIP's activation ``z·σ(1.702 z)`` (a module-level function: models stay picklable)."""
    return z * torch.sigmoid(1.702 * z)


_ACTIVATIONS = {"quick_gelu": quick_gelu, "gelu": F.gelu}  # gelu: OpenCLIP's (exact, erf)


@dataclass
class CLIPTextModelConfig:
    """The fields of ``transformers.CLIPTextConfig`` the text transformer uses (same names, defaults).

    ``from_dict`` reads the full JSON that ``transformers`` writes (unknown keys are ignored);
    ``to_dict`` writes JSON that ``transformers.CLIPTextConfig.from_dict`` reads back.
    """

    vocab_size: int = 49408
    hidden_size: int = 512
    intermediate_size: int = 2048
    projection_dim: int = 512
    num_hidden_layers: int = 12
    num_attention_heads: int = 8
    max_position_embeddings: int = 77
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    attention_dropout: float = 0.0
    initializer_factor: float = 1.0
    pad_token_id: int = 1
    bos_token_id: int = 49406
    eos_token_id: int = 49407

    model_type = "clip_text_model"  # a class attribute, as in transformers (not a field)

    def __post_init__(self):
        _checks.one_of("hidden_act", self.hidden_act, _ACTIVATIONS)
        _checks.that(self.hidden_size % self.num_attention_heads == 0, f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads ({self.num_attention_heads})")

    @classmethod
    def from_dict(cls, d: dict) -> CLIPTextModelConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict:
        return {**asdict(self), "model_type": self.model_type}


@dataclass
class CLIPTextOutput:
    """What :class:`CLIPTextEncoder` returns; indexable like ``transformers``' output.

    ``out[0]`` is ``last_hidden_state`` ``(B, L, D)``, ``out[1]`` ``pooler_output`` ``(B, D)``,
    ``out[2]`` ``hidden_states`` (only when asked for); ``out["pooler_output"]`` works too.
    """

    last_hidden_state: torch.Tensor
    pooler_output: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None

    def to_tuple(self) -> tuple:
        return tuple(v for v in (self.last_hidden_state, self.pooler_output, self.hidden_states) if v is not None)

    def __getitem__(self, key):
        return getattr(self, key) if isinstance(key, str) else self.to_tuple()[key]


class CLIPTextEmbeddings(nn.Module):
    """``h⁽⁰⁾ = E_tok[x] + E_pos[0..L-1]``: ``(B, L)`` ids to ``(B, L, D)``."""

    def __init__(self, config: CLIPTextModelConfig):
        super().__init__()
        # `_weight=empty`: no default N(0, 1) init here (CLIPTextEncoder.reset_parameters does it);
        # on the meta device that init would import torch._dynamo (~1 s).
        v, p, d = config.vocab_size, config.max_position_embeddings, config.hidden_size
        self.token_embedding = nn.Embedding(v, d, _weight=torch.empty(v, d))
        self.position_embedding = nn.Embedding(p, d, _weight=torch.empty(p, d))
        # On the CPU even inside a meta-device context: `arange` on meta imports sympy (~0.6 s),
        # and `.to(device)` moves the buffer with the module.
        positions = torch.arange(p, device="cpu").expand((1, -1))
        self.register_buffer("position_ids", positions, persistent=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.token_embedding(input_ids) + self.position_embedding(self.position_ids[:, : input_ids.shape[1]])


class CLIPAttention(nn.Module):
    """Multi-head self-attention ``(B, L, D) → (B, L, D)`` under a causal (and padding) mask."""

    def __init__(self, config: CLIPTextModelConfig):
        super().__init__()
        d = config.hidden_size
        self.num_heads, self.dropout = config.num_attention_heads, config.attention_dropout
        self.k_proj, self.v_proj = nn.Linear(d, d), nn.Linear(d, d)  # created in transformers' order
        self.q_proj, self.out_proj = nn.Linear(d, d), nn.Linear(d, d)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, D) → (B, H, L, d)
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        q, k, v = self._heads(self.q_proj(h)), self._heads(self.k_proj(h)), self._heads(self.v_proj(h))
        p = self.dropout if self.training else 0.0
        if mask is None:  # softmax(Q Kᵀ / √d + M_causal) V
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.out_proj(out.transpose(1, 2).flatten(2))


class CLIPMLP(nn.Module):
    """``W₂ act(W₁ z)``: ``(B, L, D) → (B, L, D_mlp) → (B, L, D)``."""

    def __init__(self, config: CLIPTextModelConfig):
        super().__init__()
        self.act = _ACTIVATIONS[config.hidden_act]
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(z)))


class CLIPEncoderLayer(nn.Module):
    """One pre-LayerNorm block: ``h ← h + Attn(LN₁(h))``, then ``h ← h + MLP(LN₂(h))``."""

    def __init__(self, config: CLIPTextModelConfig):
        super().__init__()
        self.self_attn = CLIPAttention(config)
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = CLIPMLP(config)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        h = h + self.self_attn(self.layer_norm1(h), mask)
        return h + self.mlp(self.layer_norm2(h))


class CLIPEncoder(nn.Module):
    """The ``N`` layers, as ``encoder.layers`` (the name ``transformers`` uses)."""

    def __init__(self, config: CLIPTextModelConfig):
        super().__init__()
        self.layers = nn.ModuleList(CLIPEncoderLayer(config) for _ in range(config.num_hidden_layers))


def _attention_mask(attention_mask: torch.Tensor | None, length: int) -> torch.Tensor | None:
    """``None`` (causal only) or the boolean ``(B, 1, L, L)`` "query i may see key j" mask."""
    if attention_mask is None:
        return None
    causal = torch.ones(length, length, dtype=torch.bool, device=attention_mask.device).tril()
    return causal & attention_mask.bool()[:, None, None, :]


class CLIPTextEncoder(nn.Module):
    """The CLIP text transformer, parameter for parameter ``transformers.CLIPTextModel``.

    Attributes ``embeddings``, ``encoder.layers[i]`` and ``final_layer_norm`` carry the same
    names as in ``transformers`` 5, so their checkpoints load ``strict`` here and back.
    ``config`` is a :class:`CLIPTextModelConfig`.
    """

    def __init__(self, config: CLIPTextModelConfig):
        super().__init__()
        self.config = config
        self.embeddings = CLIPTextEmbeddings(config)
        self.encoder = CLIPEncoder(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        if not self.final_layer_norm.weight.is_meta:  # on meta (to load weights into) nothing to draw
            self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Random weights with ``transformers``' CLIP scheme (``f`` = ``initializer_factor``).

        Embeddings ``N(0, 0.02 f)``; ``q, k, v`` and ``fc2`` ``N(0, f/√(2ND))``; ``out_proj``
        ``N(0, f/√D)``; ``fc1`` ``N(0, f/√(2D))``; biases 0; LayerNorms ``γ = 1, β = 0``.
        """
        c, f = self.config, self.config.initializer_factor
        deep = f * (c.hidden_size * 2 * c.num_hidden_layers) ** -0.5
        nn.init.normal_(self.embeddings.token_embedding.weight, std=0.02 * f)
        nn.init.normal_(self.embeddings.position_embedding.weight, std=0.02 * f)
        for layer in self.encoder.layers:
            a, m = layer.self_attn, layer.mlp
            stds = ((a.q_proj, deep), (a.k_proj, deep), (a.v_proj, deep), (a.out_proj, f * c.hidden_size ** -0.5),
                    (m.fc1, f * (2 * c.hidden_size) ** -0.5), (m.fc2, deep))
            for linear, std in stds:
                nn.init.normal_(linear.weight, std=std)
                nn.init.zeros_(linear.bias)
        for module in self.modules():
            if isinstance(module, nn.LayerNorm):
                module.reset_parameters()

    def pool(self, last_hidden_state: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """``(B, L, D)`` → ``(B, D)``: the state at the EOS position, as ``transformers`` picks it.

        Legacy configs (``eos_token_id == 2``, SD 1.x) take ``input_ids.argmax(-1)``, the first
        largest id (49407 = EOS with the CLIP vocabulary); others the first ``eos_token_id``.
        """
        ids = input_ids.to(dtype=torch.int, device=last_hidden_state.device)
        eos = self.config.eos_token_id
        pos = ids.argmax(dim=-1) if eos == 2 else (ids == eos).int().argmax(dim=-1)
        return last_hidden_state[torch.arange(ids.shape[0], device=ids.device), pos]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False) -> CLIPTextOutput:
        """``input_ids`` ``(B, L)`` (and optional ``attention_mask`` ``(B, L)``, 1 = token, 0 = pad).

        Returns a :class:`CLIPTextOutput`; with ``output_hidden_states`` its ``hidden_states``
        holds ``N + 1`` tensors ``(B, L, D)``: the embeddings, then each layer's output (the
        last one before the final LayerNorm), exactly as ``transformers``.
        """
        _checks.token_ids("input_ids", input_ids, self.config.max_position_embeddings)
        if attention_mask is not None:
            _checks.shape("attention_mask", attention_mask, tuple(input_ids.shape), "of input_ids")
        mask = _attention_mask(attention_mask, input_ids.shape[1])
        h = self.embeddings(input_ids)
        states = [h]
        for layer in self.encoder.layers:
            h = layer(h, mask)
            states.append(h)
        last = self.final_layer_norm(h)
        return CLIPTextOutput(last, self.pool(last, input_ids), tuple(states) if output_hidden_states else None)
