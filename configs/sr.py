"""Paper super-resolution settings (docs/TRAINING.md): x2, x3, x4, x8 or multi-scale.

Commands (give your HR training folders, e.g. DIV2K + Flickr2K):

    python -m bppjax.train --config configs/sr.py:x4 --workdir runs/sr_x4 \\
        --config.data.train.dirs="('/data/DIV2K_train_HR', '/data/Flickr2K_HR')"
    python -m bppjax.train --config configs/sr.py:x4,tfds --workdir runs/sr_x4_tfds   # DIV2K via TFDS
    python -m bppjax.train --config configs/sr.py:multi --workdir runs/sr_multi \\
        --config.data.train.dirs="('/data/DIV2K_train_HR',)"
    python -m bppjax.train --config configs/sr.py:x4,stream --workdir runs/sr_x4 --config.data.workers=16 \\
        --config.data.train.dirs="('/data/DIV2K_train_HR', '/data/Flickr2K_HR')"   # larger than memory

Variants: ``x2 | x3 | x4 | x8 | multi`` (scales 2, 3, 4 and 8 mixed in each
batch), optionally ``,tfds`` (the HR images of ``div2k/bicubic_x<s>`` from
TensorFlow Datasets, degraded here with the MATLAB bicubic like a folder;
needs ``pip install 'bppjax[tfds]'`` and a download of ~4 GB per scale),
``,stream`` (``data.train.stream=True``: patches read and degraded on demand,
for sets larger than memory; same batches) and ``,tiny`` (tests: tiny model,
6 steps; embedded photos, or the first 4 TFDS examples with ``,tfds``).
Settings: paper model preset (18.65M parameters), HR patches of 48s x 48s (192 for x8 and multi),
batch 16, L1, flips and 90-degree rotations, Adam 1e-4 halved every 200k steps,
validation on Set5 and Set14 (../shared/data) in the Y_M convention with the
border shaved by the scale.

Expected result: not measured here (a GPU-week of training per scale). The
paper reports BPP at about the level of contemporary 19M-parameter SR networks;
bicubic references (Y_M) are Set5 33.67/30.40/28.43 dB and Set14
30.33/27.63/26.09 dB at x2/x3/x4. Holding DIV2K degraded in memory needs
~14 GB at x2 (HR + input), ~34 GB for ``multi``; see data.max_memory_gb, or
stream (docs/TRAINING.md, "Data larger than memory: streaming").
"""

from pathlib import Path

from bppjax.data.pipeline import source_config
from bppjax.models.presets import preset
from bppjax.training.config import ConfigError, base_config, tiny_variant

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # benchmark images beside the repo

SCALES = {"x2": (2,), "x3": (3,), "x4": (4,), "x8": (8,), "multi": (2, 3, 4, 8)}


def get_config(variant: str = "x4"):
    tokens = [t for t in variant.split(",") if t]
    scale_tokens = [t for t in tokens if t in SCALES]
    extra = [t for t in tokens if t not in SCALES and t not in ("tfds", "stream", "tiny")]
    if len(scale_tokens) != 1 or extra:
        raise ConfigError(f"sr.py variant {variant!r}: give one of {sorted(SCALES)}, optionally ',tfds', ',stream' and/or ',tiny'")
    name = scale_tokens[0]
    scales = SCALES[name]
    c = base_config()
    c.model = preset("paper")
    if "tfds" in tokens:  # HR only, degraded here at every scale (DIV2K's own LR images are MATLAB-made too)
        c.data.train = source_config(source="tfds", tfds=f"div2k/bicubic_x{scales[0] if len(scales) == 1 else 2}", tfds_split="train")
    else:
        c.data.train = source_config(source="folder", dirs=("data/DIV2K_train_HR",))
    c.data.val = source_config(source="folder", dirs=(str(SHARED_DATA / "Set5"), str(SHARED_DATA / "Set14")))
    c.data.update(scales=scales, patch=192 if name in ("x8", "multi") else 48 * scales[0], batch=16)
    c.optim.update(lr=1e-4, schedule="step", decay_every=200_000, decay_factor=0.5)
    c.train.update(steps=800_000, log_every=100, val_every=5_000, ckpt_every=5_000, keep=3)
    c.eval.update(convention="Y_M", crop_border=-1)
    c.data.train.stream = "stream" in tokens
    if "tiny" in tokens:
        if "tfds" not in tokens:
            c.data.train = source_config(source="embedded", names=("astronaut", "coffee"))
        c.data.val = source_config(source="embedded", names=("chelsea",))
        tiny_variant(c, patch=32 if max(scales) <= 4 else 64)
        if "tfds" in tokens:  # small images (TFDS's mock data are 5-49 pixels a side)
            c.data.update(patch=4 * max(scales))
            c.data.train.limit = 4
        c.data.train.stream = "stream" in tokens
    return c
