"""tutorial_lib: the reference implementations of the conditional-diffusion course.

Every notebook in ``notebooks/`` imports from here; nothing is redefined there.
One module per idea (see the README's chapter map):

- ``utils``         seeding and device selection (notebook 00)
- ``schedule``      noise schedules, ``add_noise``, timestep spacings
- ``conditioning``  time embeddings, concatenation, adaptive GroupNorm (01)
- ``paradigms``     the small "paint by tokens" task solved three ways (01)
- ``text``          the CLIP tokenizer and text encoders (02)
- ``attention``     cross-attention with attention-map capture (03)
- ``blocks``/``unet``  the conditioned ResBlock and the conditional U-Net (04)
- ``guidance``      classifier guidance, CFG, weighted prompts, rescale, thresholding (05-07)
- ``sampler``       the conditional DDIM sampler (08)
- ``mixture``       analytic Gaussian mixtures with exact scores (05-06)
- ``tilted``        the tilted target p(x|c)^γ p(x)^(1−γ) of a mixture (06)
- ``mixture_experiments``  CFG on a mixture with the sampler: DDPM/DDIM, sweeps, demos (06)
- ``shapes``        procedurally generated captioned shapes (the course's data)
- ``classifiers``   the noise-robust classifier (05) and the judge that scores samples
- ``train``/``pretrained``  training loops and the shipped, hash-checked weights (09, 00)
- ``checks``        exercise checks, one per exercise
"""

from .utils import get_device, seed_everything

__version__ = "0.1.0"

__all__ = ["get_device", "seed_everything", "__version__"]
