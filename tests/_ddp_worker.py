"""Run by tests/test_distributed.py under torchrun: a few data-parallel steps of a tiny denoiser."""

import json
import os
import sys

from tutorial_lib import train as T

out = sys.argv[1]
cfg = T.DenoiserTrainConfig(
    steps=4, batch_size=8, lr=3e-3, warmup_steps=1, image_size=16, checkpoint_every=2, log_every=2,
    world="scenes", text_aux_weight=0.1, autocast="fp32", num_threads=1,
    unet={"base_channels": 8, "channel_mults": [1, 2], "attention_levels": [False, True],
          "num_heads": 2, "time_embed_dim": 16},
    text_encoder={"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2},
)
res = T.train_denoiser(cfg, out, progress=False, resume="--resume" in sys.argv)
res.pop("losses", None)
with open(os.path.join(out, f"rank{os.environ.get('RANK', '0')}.json"), "w") as f:
    json.dump(res, f)
