"""The course's encode → guided DDIM drives diffusers' SD components and reproduces
``StableDiffusionPipeline``'s latents (issue 16's bar; the SD bridge chapter will show it).

Small randomly initialised components with the real architecture classes
(``sd_bridge.tiny_sd_components``) and SD 1.x's scheduler config.
"""

import pytest
import torch

from tutorial_lib.guiders import ClassifierFreeGuidance
from tutorial_lib.sampler import ConditionalDDIMSampler
from tutorial_lib.sd_bridge import (
    SD_SAMPLER_CONFIG,
    DiffusersUNetDenoiser,
    sd_noise_schedule,
    tiny_sd_components,
)
from tutorial_lib.text import encode_prompt

diffusers = pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def parts():
    return tiny_sd_components(seed=0)


@pytest.mark.parametrize("eta, rescale", [(0.0, 0.0), (1.0, 0.0), (0.0, 0.7)])
def test_course_sampler_reproduces_the_pipelines_latents(parts, eta, rescale):
    pipe = diffusers.StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None,
                                             requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    prompt, negative, steps, gamma = ["a red circle", "two blue squares"], ["blurry", ""], 4, 7.5
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = pipe(prompt, height=64, width=64, num_inference_steps=steps, guidance_scale=gamma,
                      negative_prompt=negative, eta=eta, guidance_rescale=rescale, latents=latents.clone(),
                      generator=torch.Generator().manual_seed(2), output_type="latent").images

    sampler = ConditionalDDIMSampler(DiffusersUNetDenoiser(parts["unet"]), sd_noise_schedule(), SD_SAMPLER_CONFIG,
                                     cfg_mode="batched")
    cond, neg = encode_prompt(parts["tokenizer"], parts["text_encoder"], prompt, negative)
    # the pipeline draws DDPM noise from the generator after x_T is given: the course's sampler's order
    ours = sampler.sample(latents.shape, cond, neg, ClassifierFreeGuidance(gamma, guidance_rescale=rescale), steps,
                          eta=eta, generator=torch.Generator().manual_seed(2), latents=latents.clone(), progress=False)
    assert (ours - theirs).abs().max().item() <= 1e-5
