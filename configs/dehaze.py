"""Dehazing on paired hazy/clear folders (e.g. NTIRE dehazing, RESIDE) with the paper's BPP and L1.

Command:

    python -m bppjax.train --config configs/dehaze.py --workdir runs/dehaze \\
        --config.data.train.input_dir=/data/dehaze/train/hazy \\
        --config.data.train.target_dir=/data/dehaze/train/GT \\
        --config.data.val.input_dir=/data/dehaze/val/hazy \\
        --config.data.val.target_dir=/data/dehaze/val/GT

Pairs are matched by name after removing ``_hazy`` / ``_GT`` suffixes. Paper
model, 128x128 patches, batch 16, L1, Adam 1e-4 halved every 200k steps;
validation in the ``RGB`` convention (mean over R, G, B; dehazing benchmarks),
no border shaved. Expected result: not measured here (GPU-scale training).

Variant ``:tiny`` (tests): tiny model, 2 pairs, 32x32 patches, 6 steps.
"""

from bppjax.data.pipeline import source_config
from bppjax.training.config import paired_task_config

STRIP = ("_hazy", "_GT")


def get_config(variant: str = ""):
    return paired_task_config(
        "dehaze",
        variant,
        train=source_config(source="paired", input_dir="data/dehaze/train/hazy", target_dir="data/dehaze/train/GT", strip_suffixes=STRIP),
        val=source_config(source="paired", input_dir="data/dehaze/val/hazy", target_dir="data/dehaze/val/GT", strip_suffixes=STRIP),
        patch=128, loss="l1", convention="RGB",
    )
