"""CPU-scale SR x2 training on T91 + BSDS200 (../shared/data), validated on the embedded photos.

Command:

    python -m bppjax.train --config configs/t91.py --workdir runs/t91
    python -m bppjax.train --config configs/t91.py --workdir runs/t91_x4 --config.data.scales="(4,)"

The default recipe (``small`` model, 96x96 patches, batch 8, L1, Adam 1e-3
with a cosine decay) on the classic 291-image training set, for 6,000 steps.
Validation (and so the "best" checkpoint) uses the embedded photos ``chelsea``
and ``rocket``, outside every benchmark set. The measured CPU recipes, with
their times and scores, are the zoo's (``configs/zoo.py``).

Variant ``:tiny`` (tests): 2 T91 images, one embedded photo, tiny model, 6 steps.
"""

from pathlib import Path

from bppjax.data import embedded
from bppjax.data.pipeline import source_config
from bppjax.models.presets import preset
from bppjax.training.config import base_config, tiny_variant

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # benchmark images beside the repo


def get_config(variant: str = ""):
    c = base_config()
    c.model = preset("small")
    c.data.train = source_config(source="folder", dirs=(str(SHARED_DATA / "T91"), str(SHARED_DATA / "BSDS200")))
    c.data.val = source_config(source="embedded", names=embedded.VAL_NAMES)
    c.data.update(scales=(2,), patch=96, batch=8, min_std=3 / 255)
    c.optim.update(lr=1e-3, schedule="cosine", warmup_steps=50, final_lr=0.0)
    c.train.update(steps=6_000, log_every=50, val_every=1_000, ckpt_every=1_000)
    if variant == "tiny":
        tiny_variant(c)
        c.data.train.dirs = (str(SHARED_DATA / "T91"),)
    elif variant:
        raise ValueError(f"t91.py has variants '' and 'tiny'; got {variant!r}")
    return c
