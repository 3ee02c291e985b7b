"""The course's encode → guided DDIM drives diffusers' SD components and reproduces
``StableDiffusionPipeline``'s latents (issue 16's bar; the SD bridge chapter will show it).

Small randomly initialised components with the real architecture classes (UNet2DConditionModel,
CLIPTextModel through ``load_text_encoder("tiny-clip")``, the shipped real CLIP tokenizer); the SD
1.x scheduler config (scaled_linear betas, steps_offset=1, set_alpha_to_one=False, no clipping).
"""

import pytest
import torch

from tutorial_lib.guiders import ClassifierFreeGuidance
from tutorial_lib.sampler import ConditionalDDIMSampler, SamplerConfig
from tutorial_lib.schedule import NoiseSchedule
from tutorial_lib.text import encode_prompt, load_clip_tokenizer, load_text_encoder

diffusers = pytest.importorskip("diffusers")


class UNetDenoiser(torch.nn.Module):
    """diffusers' UNet2DConditionModel in the course's denoiser protocol ``(x_t, t, context) -> ε``."""

    prediction_type = "epsilon"

    def __init__(self, unet):
        super().__init__()
        self.unet, self.context_dim = unet, unet.config.cross_attention_dim

    def forward(self, x_t, t, context):
        return self.unet(x_t, t, encoder_hidden_states=context).sample


@pytest.fixture(scope="module")
def components():
    torch.manual_seed(0)
    encoder = load_text_encoder("tiny-clip", seed=0)
    unet = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=encoder.config.hidden_size, attention_head_dim=8, norm_num_groups=8).eval()
    scheduler = diffusers.DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                        clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return load_clip_tokenizer(), encoder, unet, scheduler


@pytest.mark.parametrize("eta, rescale", [(0.0, 0.0), (1.0, 0.0), (0.0, 0.7)])
def test_course_sampler_reproduces_the_pipelines_latents(components, eta, rescale):
    tok, encoder, unet, scheduler = components
    pipe = diffusers.StableDiffusionPipeline(vae=diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32,), norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",)),
        text_encoder=encoder, tokenizer=tok, unet=unet, scheduler=scheduler, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    prompt, negative, steps, gamma = ["a red circle", "two blue squares"], ["blurry", ""], 4, 7.5
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = pipe(prompt, height=64, width=64, num_inference_steps=steps, guidance_scale=gamma,
                      negative_prompt=negative, eta=eta, guidance_rescale=rescale, latents=latents.clone(),
                      generator=torch.Generator().manual_seed(2), output_type="latent").images

    schedule = NoiseSchedule(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                             set_alpha_to_one=False)
    sampler = ConditionalDDIMSampler(UNetDenoiser(unet), schedule,
                                     SamplerConfig(timestep_spacing="leading", steps_offset=1), cfg_mode="batched")
    cond, neg = encode_prompt(tok, encoder, prompt, negative)
    # diffusers draws DDPM noise with the generator after x_T is given: the same order as the course's sampler
    ours = sampler.sample(latents.shape, cond, neg, ClassifierFreeGuidance(gamma, guidance_rescale=rescale), steps,
                          eta=eta, generator=torch.Generator().manual_seed(2), latents=latents.clone(), progress=False)
    assert (ours - theirs).abs().max().item() <= 1e-5
