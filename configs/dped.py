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
from bppjax.training.config import paired_task_config


def get_config(variant: str = ""):
    return paired_task_config(
        "dped",
        variant,
        train=source_config(source="paired", input_dir="data/dped/iphone/training_data/iphone", target_dir="data/dped/iphone/training_data/canon"),
        val=source_config(source="paired", input_dir="data/dped/iphone/test_data/patches/iphone", target_dir="data/dped/iphone/test_data/patches/canon", limit=500),
        patch=96, loss="neg_ssim", convention="RGB",
    )
