"""Facts about the installed ``diffusers`` that notebook 08 states (issue 14, item 7; item 6).

Notebook 08 calls "clip x̂_0 but keep the model's ε̂" a wrong DDIM step and says that
``diffusers.DDIMScheduler`` takes exactly that step with its defaults: ``clip_sample=True``
in the scheduler's config and ``use_clipped_model_output=False`` in ``step`` (``DDIMPipeline``
passes nothing for it unless asked). It also says that SDXL's pipeline uses zeros for an empty
prompt on purpose (``force_zeros_for_empty_prompt=True``). If a ``diffusers`` release changes
one of these defaults, these tests fail and the notebook's text must change with it.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect

import pytest
import torch
from diffusers import DDIMScheduler

from tutorial_lib.sampler import ConditionalDDIMSampler, SamplerConfig
from tutorial_lib.schedule import NoiseSchedule

T_FROM, T_TO, STEPS = 600, 500, 10  # leading spacing, n = 10: diffusers steps t → t − T // n


def test_ddim_scheduler_clips_by_default():
    params = inspect.signature(DDIMScheduler.__init__).parameters
    assert params["clip_sample"].default is True
    assert params["clip_sample_range"].default == 1.0
    assert params["thresholding"].default is False
    assert DDIMScheduler().config.clip_sample is True


def test_ddim_step_keeps_the_model_output_by_default():
    assert inspect.signature(DDIMScheduler.step).parameters["use_clipped_model_output"].default is False


def test_ddim_pipeline_passes_nothing_by_default():
    from diffusers import DDIMPipeline

    assert inspect.signature(DDIMPipeline.__call__).parameters["use_clipped_model_output"].default is None


def test_sdxl_pipeline_uses_zeros_for_an_empty_prompt_by_default():
    # Read from the source (importing the SDXL pipeline pulls in much of transformers).
    spec = importlib.util.find_spec("diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl")
    tree = ast.parse(open(spec.origin, encoding="utf-8").read())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "StableDiffusionXLPipeline")
    init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    args = init.args.args[-len(init.args.defaults):]
    defaults = {a.arg: ast.literal_eval(d) for a, d in zip(args, init.args.defaults, strict=True) if isinstance(d, ast.Constant)}
    assert defaults["force_zeros_for_empty_prompt"] is True


def _step_inputs():
    """x_t at t = 600 and an ε̂ whose x̂_0 overshoots [-1, 1] (as under strong guidance)."""
    schedule = NoiseSchedule()
    g = torch.Generator().manual_seed(0)
    x0 = 1.6 * torch.rand(2, 3, 8, 8, generator=g) * 2 - 1.6  # partly outside [-1, 1]
    eps = torch.randn(2, 3, 8, 8, generator=g)
    x_t = schedule.add_noise(x0, eps, T_FROM)
    eps_hat = eps + 0.1 * torch.randn(2, 3, 8, 8, generator=g)
    return schedule, x_t, eps_hat


@pytest.fixture(scope="module")
def steps():
    schedule, x_t, eps_hat = _step_inputs()

    def ours(**config):  # the course's step with its clip options in a SamplerConfig
        return ConditionalDDIMSampler(lambda x, t, c: torch.zeros_like(x), schedule, SamplerConfig(**config))

    clip_and_keep = ours(clip_sample=True, use_clipped_model_output=False)
    sched = DDIMScheduler()  # every argument at its default: the course's β's, clipping on
    assert torch.allclose(sched.betas, schedule.betas)
    sched.set_timesteps(STEPS)
    return {
        "diffusers_default": sched.step(eps_hat, T_FROM, x_t).prev_sample,
        "diffusers_consistent": sched.step(eps_hat, T_FROM, x_t, use_clipped_model_output=True).prev_sample,
        "post_style": clip_and_keep.step(eps_hat, T_FROM, x_t, T_TO).prev_sample,
        "consistent": ours(clip_sample=True).step(eps_hat, T_FROM, x_t, T_TO).prev_sample,
    }


def test_diffusers_default_step_is_clip_and_keep(steps):
    assert torch.allclose(steps["diffusers_default"], steps["post_style"], atol=1e-6)
    assert not torch.allclose(steps["diffusers_default"], steps["consistent"], atol=1e-3)


def test_use_clipped_model_output_is_the_package_default(steps):
    assert torch.allclose(steps["diffusers_consistent"], steps["consistent"], atol=1e-6)
