"""Noise schedules: betas, ᾱ_t, the forward process and inference timesteps.

Introduced in notebook 04 (training needs ``add_noise``) and used throughout
notebook 08 (the sampler walks the ``timesteps`` list).

The forward (noising) process of DDPM, for a clean sample ``x0`` and
standard normal noise ``ε``:

    q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I),  ᾱ_t = ∏_{s ≤ t} (1 − β_s)        (DDPM eq. 4)
    x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε

The names and the numbers are those of ``diffusers.DDIMScheduler`` (the tests
compare the two for every schedule and spacing):

- ``beta_schedule``: "linear", "scaled_linear" (Stable Diffusion's), or
  "squaredcos_cap_v2" (the cosine schedule of Nichol & Dhariwal 2021; "cosine"
  is accepted as an alias);
- ``timestep_spacing``: "leading", "trailing", "linspace" (Table 2 of Lin et
  al. 2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed").

Two diffusers quirks this module does *not* copy (both documented in the tests):

- diffusers' "trailing" spacing builds the list with a floating-point
  ``np.arange(T, 0, -T/n)``; for 67 step counts at T = 1000 (n = 61, 103, 121,
  ...) that yields n + 1 entries ending in ``-1``, which then indexes
  ``alphas_cumprod[-1]`` (the *noisiest* level) as the last step. We keep the
  first n entries, which equal diffusers' list wherever diffusers has n.
- ``steps_offset`` only shifts "leading" spacing (as in diffusers); we raise
  when the offset would push a timestep past T − 1 instead of failing later
  with an index error.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from . import _checks

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
BETA_SCHEDULE_ALIASES = {"cosine": "squaredcos_cap_v2"}
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
CONFIG_KEYS = ("num_train_timesteps", "beta_schedule", "beta_start", "beta_end", "set_alpha_to_one")


def cosine_betas(num_train_timesteps: int, max_beta: float = 0.999) -> torch.Tensor:
    """The cosine schedule ("squaredcos_cap_v2") of Nichol & Dhariwal (2021), eq. 17.

        ᾱ(τ) = cos²((τ + s)/(1 + s) · π/2),  s = 0.008,  τ = t/T
        β_t = min(1 − ᾱ((t+1)/T) / ᾱ(t/T), max_beta)

    Computed in float64 Python floats and returned as float32, like diffusers'
    ``betas_for_alpha_bar``.
    """

    def alpha_bar(tau: float) -> float:
        return math.cos((tau + 0.008) / 1.008 * math.pi / 2) ** 2

    T = num_train_timesteps
    betas = [min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), max_beta) for i in range(T)]
    return torch.tensor(betas, dtype=torch.float32)


class NoiseSchedule:
    """A discrete DDPM noise schedule with T training timesteps.

    Introduced in notebook 04 (training) and notebook 08 (sampling).

    Args:
        num_train_timesteps: T, the number of training timesteps (t = 0 … T−1).
        beta_schedule: "linear" (β linear in t), "scaled_linear" (√β linear in
            t, Stable Diffusion's), "squaredcos_cap_v2" or its alias "cosine".
        beta_start, beta_end: β_0 and β_{T−1} of the linear schedules (ignored
            by the cosine schedule).
        set_alpha_to_one: what ᾱ the last DDIM step lands on. ``True`` (the
            default, as in diffusers' DDIMScheduler): ᾱ_final = 1, a clean
            sample; ``False``: ᾱ_final = ᾱ_0.

    Attributes (float32 tensors of shape ``(T,)``, exactly diffusers' values):
        betas: β_t.
        alphas: α_t = 1 − β_t.
        alphas_cumprod: ᾱ_t = ∏_{s ≤ t} α_s.
        final_alpha_cumprod: 0-d float32 tensor, ᾱ used for "timestep −1".
    """

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_schedule: str = "linear",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        set_alpha_to_one: bool = True,
    ) -> None:
        self.num_train_timesteps = _checks.integer("num_train_timesteps", num_train_timesteps, 1)
        _checks.instance("beta_schedule", beta_schedule, str)
        beta_schedule = BETA_SCHEDULE_ALIASES.get(beta_schedule, beta_schedule)
        _checks.one_of("beta_schedule", beta_schedule, BETA_SCHEDULES + ("cosine",))
        self.beta_schedule = beta_schedule
        self.beta_start, self.beta_end = _checks.real("beta_start", beta_start), _checks.real("beta_end", beta_end)
        _checks.that(0 < self.beta_start <= self.beta_end < 1, f"beta_start and beta_end must satisfy 0 < beta_start <= beta_end < 1, got {self.beta_start}, {self.beta_end}")
        self.set_alpha_to_one = _checks.boolean("set_alpha_to_one", set_alpha_to_one)

        T = self.num_train_timesteps
        if beta_schedule == "linear":
            self.betas = torch.linspace(self.beta_start, self.beta_end, T, dtype=torch.float32)
        elif beta_schedule == "scaled_linear":
            self.betas = (
                torch.linspace(self.beta_start**0.5, self.beta_end**0.5, T, dtype=torch.float32)
                ** 2
            )
        else:
            self.betas = cosine_betas(T)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.final_alpha_cumprod = (
            torch.tensor(1.0) if set_alpha_to_one else self.alphas_cumprod[0].clone()
        )

    # ------------------------------------------------------------------ config
    def to_config(self) -> dict:
        """The constructor arguments as a plain dict (``from_config`` inverts it)."""
        return {
            "num_train_timesteps": self.num_train_timesteps,
            "beta_schedule": self.beta_schedule,
            "beta_start": self.beta_start,
            "beta_end": self.beta_end,
            "set_alpha_to_one": self.set_alpha_to_one,
        }

    @classmethod
    def from_config(cls, config: dict) -> NoiseSchedule:
        """Build a schedule from ``to_config()``'s dict; unknown keys raise ``ValueError``."""
        unknown = sorted(set(_checks.instance("config", config, dict)) - set(CONFIG_KEYS))
        _checks.that(not unknown, f"config has unknown keys {unknown}; expected some of {CONFIG_KEYS}")
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_config().items())
        return f"NoiseSchedule({args})"

    # ------------------------------------------------------------ coefficients
    def _check_t(self, t) -> torch.Tensor | int:
        """An int in [0, T − 1] or a 0-d / ``(B,)`` integer tensor of such timesteps."""
        T = self.num_train_timesteps
        if not isinstance(t, torch.Tensor):
            return _checks.integer("t", t, 0, T - 1)
        _checks.integers("t", t, "an integer tensor of timesteps")
        _checks.that(t.ndim <= 1, f"t must be an int, a 0-d or a (B,) tensor, got shape {tuple(t.shape)}")
        lo, hi = (int(t.min()), int(t.max())) if t.numel() else (0, 0)
        _checks.that(0 <= lo and hi < T, f"t must lie in [0, {T - 1}], got values in [{lo}, {hi}]")
        return t

    def alpha_cumprod_at(self, t, like: torch.Tensor) -> torch.Tensor:
        """ᾱ_t as a tensor that broadcasts against ``like`` (shape ``(B, ...)``).

        ``t`` is an int (gives a 0-d tensor) or a ``(B,)`` integer tensor (gives
        shape ``(B, 1, …, 1)``). The values are cast to ``like``'s device and
        dtype, as diffusers' ``add_noise`` does.
        """
        t = self._check_t(t)
        acp = self.alphas_cumprod.to(device=like.device, dtype=like.dtype)
        if isinstance(t, int):
            return acp[t]
        a = acp[t.to(like.device)].flatten()
        _checks.that(t.ndim != 1 or a.shape[0] == like.shape[0], f"t must have one timestep per sample ({like.shape[0]}), got {a.shape[0]}")
        return a.reshape(a.shape + (1,) * (like.ndim - a.ndim))

    @staticmethod
    def _check_pair(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
        """Two floating-point tensors of one shape (their dtypes may differ, as in diffusers)."""
        for name, x in ((name_a, a), (name_b, b)):
            _checks.floats(name, x, min_ndim=0)
        _checks.that(a.shape == b.shape, f"{name_b} must have {name_a}'s shape {tuple(a.shape)}, got {tuple(b.shape)}")

    # ----------------------------------------------------------- forward maths
    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t) -> torch.Tensor:
        """Sample q(x_t | x_0):  x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε   (DDPM eq. 4).

        Args:
            x0: clean samples, shape ``(B, ...)`` (any rank ≥ 1).
            noise: ε, the same shape.
            t: an int, or a ``(B,)`` integer tensor of training timesteps.

        Returns:
            x_t, the same shape as ``x0``.
        """
        self._check_pair("x0", x0, "noise", noise)
        a = self.alpha_cumprod_at(t, x0)
        return a**0.5 * x0 + (1 - a) ** 0.5 * noise

    def get_velocity(self, x0: torch.Tensor, noise: torch.Tensor, t) -> torch.Tensor:
        """The v-prediction target (Salimans & Ho 2022):  v = √ᾱ_t ε − √(1 − ᾱ_t) x_0."""
        self._check_pair("x0", x0, "noise", noise)
        a = self.alpha_cumprod_at(t, x0)
        return a**0.5 * noise - (1 - a) ** 0.5 * x0

    def predict_x0(
        self, model_output: torch.Tensor, x_t: torch.Tensor, t, prediction_type: str = "epsilon"
    ) -> torch.Tensor:
        """x̂_0 from a model output (DDIM eq. 12's "predicted x_0").

        - epsilon:       x̂_0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t
        - v_prediction:  x̂_0 = √ᾱ_t x_t − √(1 − ᾱ_t) v̂
        - sample:        x̂_0 = model_output

        Shapes: ``model_output`` and ``x_t`` are ``(B, ...)``, one shape (the sampler, which calls
        this every step, has checked them); ``t`` an int or ``(B,)``.
        """
        _checks.one_of("prediction_type", prediction_type, PREDICTION_TYPES)
        a = self.alpha_cumprod_at(t, x_t)
        if prediction_type == "epsilon":
            return (x_t - (1 - a) ** 0.5 * model_output) / a**0.5
        if prediction_type == "v_prediction":
            return a**0.5 * x_t - (1 - a) ** 0.5 * model_output
        return model_output

    def predict_eps(
        self, model_output: torch.Tensor, x_t: torch.Tensor, t, prediction_type: str = "epsilon"
    ) -> torch.Tensor:
        """ε̂ from a model output.

        - epsilon:       ε̂ = model_output
        - v_prediction:  ε̂ = √ᾱ_t v̂ + √(1 − ᾱ_t) x_t
        - sample:        ε̂ = (x_t − √ᾱ_t x̂_0) / √(1 − ᾱ_t)   (see ``eps_from_x0``)
        """
        _checks.one_of("prediction_type", prediction_type, PREDICTION_TYPES)
        a = self.alpha_cumprod_at(t, x_t)
        if prediction_type == "epsilon":
            return model_output
        if prediction_type == "v_prediction":
            return a**0.5 * model_output + (1 - a) ** 0.5 * x_t
        return (x_t - a**0.5 * model_output) / (1 - a) ** 0.5

    def eps_from_x0(self, x0: torch.Tensor, x_t: torch.Tensor, t) -> torch.Tensor:
        """Invert the forward process for the noise:  ε = (x_t − √ᾱ_t x_0) / √(1 − ᾱ_t)."""
        return self.predict_eps(x0, x_t, t, prediction_type="sample")

    # ------------------------------------------------------ inference timesteps
    def timesteps(
        self, num_inference_steps: int, timestep_spacing: str = "leading", steps_offset: int = 0
    ) -> torch.Tensor:
        """The descending training timesteps a sampler visits (diffusers' ``set_timesteps``).

        With T training steps and n inference steps:

        - "leading":  t_i = i·⌊T/n⌋ + steps_offset, i = n−1 … 0  (e.g. T=1000,
          n=10: 900, 800, …, 0). Stable Diffusion uses steps_offset = 1.
        - "trailing": t_i = round(T − i·T/n) − 1, i = 0 … n−1  (999, 899, …, 99):
          always starts at the noisiest level T−1.
        - "linspace": round(linspace(0, T−1, n)) reversed (999, 888, …, 0).

        ``steps_offset`` applies to "leading" only, as in diffusers.

        Returns:
            A ``(n,)`` int64 tensor, strictly descending.
        """
        T = self.num_train_timesteps
        n = _checks.integer("num_inference_steps", num_inference_steps, 1, T)
        offset = _checks.integer("steps_offset", steps_offset, 0)
        _checks.one_of("timestep_spacing", timestep_spacing, TIMESTEP_SPACINGS)
        if timestep_spacing == "leading":
            ts = (np.arange(0, n) * (T // n)).round()[::-1].astype(np.int64) + offset
            limit = T - 1 - (n - 1) * (T // n)
            _checks.that(ts[0] <= T - 1, f"steps_offset={offset} pushes the first timestep to {ts[0]} > T-1; use steps_offset <= {limit}")
        elif timestep_spacing == "trailing":
            # diffusers' formula; [:n] drops the spurious trailing -1 it yields for some n.
            ts = np.round(np.arange(T, 0, -T / n)).astype(np.int64)[:n] - 1
        else:
            ts = np.linspace(0, T - 1, n).round()[::-1].astype(np.int64)
        return torch.from_numpy(ts.copy())
