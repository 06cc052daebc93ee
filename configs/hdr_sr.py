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
from bppjax.training.config import paired_task_config


def get_config(variant: str = ""):
    return paired_task_config(
        "hdr_sr",
        variant,
        train=source_config(source="paired", input_dir="data/hdr_sr/train/LR", target_dir="data/hdr_sr/train/HR"),
        val=source_config(source="paired", input_dir="data/hdr_sr/val/LR", target_dir="data/hdr_sr/val/HR"),
        patch=128, loss="l1", convention="RGB", align_crops=True,
    )
