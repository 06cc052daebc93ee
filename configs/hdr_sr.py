"""HDR super-resolution on paired folders: low-resolution LDR inputs, high-resolution HDR targets.

Command:

    python -m bppjax.train --config configs/hdr_sr.py --workdir runs/hdr_sr \\
        --config.data.train.input_dir=/data/hdr_sr/train/LR \\
        --config.data.train.target_dir=/data/hdr_sr/train/HR \\
        --config.data.val.input_dir=/data/hdr_sr/val/LR \\
        --config.data.val.target_dir=/data/hdr_sr/val/HR

Inputs smaller than their targets by an integer factor are bicubic-upscaled
(MATLAB kernel) once at load time, so the network sees target-size inputs as
for SR; 16-bit targets are kept at 16 bits (inputs are raised to 16 bits to
match) and scaled to [0, 1] on the device. Paper model, 128x128 patches
(aligned to the factor), batch 16, L1, Adam 1e-4 halved every 200k steps;
validation in the ``RGB`` convention on the 8-bit quantised images.
Expected result: not measured here.

Variant ``:tiny`` (tests): tiny model, 2 pairs, 32x32 patches, 6 steps.
"""

from bppjax.data.pipeline import source_config
from bppjax.models.presets import preset
from bppjax.training.config import base_config, tiny_variant


def get_config(variant: str = ""):
    c = base_config()
    c.model = preset("paper")
    c.data.train = source_config(source="paired", input_dir="data/hdr_sr/train/LR", target_dir="data/hdr_sr/train/HR")
    c.data.val = source_config(source="paired", input_dir="data/hdr_sr/val/LR", target_dir="data/hdr_sr/val/HR")
    c.data.update(scales=(), patch=128, batch=16, align_crops=True)
    c.optim.update(lr=1e-4, schedule="step", decay_every=200_000, decay_factor=0.5)
    c.train.update(steps=400_000, loss="l1", log_every=100, val_every=5_000, ckpt_every=5_000)
    c.eval.update(convention="RGB", crop_border=0)
    if variant == "tiny":
        tiny_variant(c)
    elif variant:
        raise ValueError(f"hdr_sr.py has variants '' and 'tiny'; got {variant!r}")
    return c
