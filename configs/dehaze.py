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
from bppjax.models.presets import preset
from bppjax.training.config import base_config, tiny_variant

STRIP = ("_hazy", "_GT")


def get_config(variant: str = ""):
    c = base_config()
    c.model = preset("paper")
    c.data.train = source_config(source="paired", input_dir="data/dehaze/train/hazy", target_dir="data/dehaze/train/GT", strip_suffixes=STRIP)
    c.data.val = source_config(source="paired", input_dir="data/dehaze/val/hazy", target_dir="data/dehaze/val/GT", strip_suffixes=STRIP)
    c.data.update(scales=(), patch=128, batch=16, align_crops=False)
    c.optim.update(lr=1e-4, schedule="step", decay_every=200_000, decay_factor=0.5)
    c.train.update(steps=400_000, loss="l1", log_every=100, val_every=5_000, ckpt_every=5_000)
    c.eval.update(convention="RGB", crop_border=0)
    if variant == "tiny":
        tiny_variant(c)
    elif variant:
        raise ValueError(f"dehaze.py has variants '' and 'tiny'; got {variant!r}")
    return c
