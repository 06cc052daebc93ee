"""DPED photo enhancement (phone -> DSLR, Ignatov et al. 2017) with negative SSIM, as in the paper.

Command (the DPED training patches are 100x100 pairs named alike in two folders):

    python -m bppjax.train --config configs/dped.py --workdir runs/dped \\
        --config.data.train.input_dir=/data/dped/iphone/training_data/iphone \\
        --config.data.train.target_dir=/data/dped/iphone/training_data/canon \\
        --config.data.val.input_dir=/data/dped/iphone/test_data/patches/iphone \\
        --config.data.val.target_dir=/data/dped/iphone/test_data/patches/canon

Paper model, 96x96 crops of the 100x100 patches, batch 16, loss 1 - SSIM (RGB,
the gradient of the paper's -SSIM), Adam 1e-4 halved every 200k steps;
validation PSNR/SSIM in the ``RGB`` convention, no border shaved. Crops are not
aligned (no SR phase to keep). Expected result: not measured here.

Variant ``:tiny`` (tests): tiny model, 2 pairs, 32x32 patches, 6 steps.
"""

from bppjax.data.pipeline import source_config
from bppjax.models.presets import preset
from bppjax.training.config import base_config, tiny_variant


def get_config(variant: str = ""):
    c = base_config()
    c.model = preset("paper")
    c.data.train = source_config(source="paired", input_dir="data/dped/iphone/training_data/iphone", target_dir="data/dped/iphone/training_data/canon")
    c.data.val = source_config(source="paired", input_dir="data/dped/iphone/test_data/patches/iphone", target_dir="data/dped/iphone/test_data/patches/canon", limit=500)
    c.data.update(scales=(), patch=96, batch=16, align_crops=False)
    c.optim.update(lr=1e-4, schedule="step", decay_every=200_000, decay_factor=0.5)
    c.train.update(steps=400_000, loss="neg_ssim", log_every=100, val_every=5_000, ckpt_every=5_000)
    c.eval.update(convention="RGB", crop_border=0)
    if variant == "tiny":
        tiny_variant(c)
    elif variant:
        raise ValueError(f"dped.py has variants '' and 'tiny'; got {variant!r}")
    return c
