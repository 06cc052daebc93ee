"""Raindrop removal (Qian et al. 2018 dataset) with the paper's BPP and L1 loss.

Command (point ``root`` at the unpacked dataset: train/{data,gt}, test_a/{data,gt}):

    python -m bppjax.train --config configs/raindrop.py --workdir runs/raindrop \\
        --config.data.train.input_dir=/data/raindrop/train/data \\
        --config.data.train.target_dir=/data/raindrop/train/gt \\
        --config.data.val.input_dir=/data/raindrop/test_a/data \\
        --config.data.val.target_dir=/data/raindrop/test_a/gt

Pairs are matched by name after removing ``_rain`` / ``_clean`` (``12_rain.png``
<-> ``12_clean.png``). Paper model, 128x128 patches, batch 16, L1, flips and
rotations, Adam 1e-4 halved every 200k steps; validation PSNR/SSIM in the
``Y_P`` convention (OpenCV Y, as the raindrop benchmark), no border shaved.
Expected result: not measured here (GPU-scale training); the input-vs-clean
PSNR of test_a is the baseline the validation log reports.

Variant ``:tiny`` (tests): tiny model, 2 pairs, 32x32 patches, 6 steps.
"""

from bppjax.data.pipeline import source_config
from bppjax.training.config import paired_task_config

STRIP = ("_rain", "_clean")


def get_config(variant: str = ""):
    return paired_task_config(
        "raindrop",
        variant,
        train=source_config(source="paired", input_dir="data/raindrop/train/data", target_dir="data/raindrop/train/gt", strip_suffixes=STRIP),
        val=source_config(source="paired", input_dir="data/raindrop/test_a/data", target_dir="data/raindrop/test_a/gt", strip_suffixes=STRIP),
        patch=128, loss="l1", convention="Y_P",
    )
