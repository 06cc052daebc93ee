"""The shipped BPP super-resolution models (``bppjax.pretrained``): one recipe per zoo model.

Trained on T91 + BSDS200 (``../shared/data``, the classic 291-image SR training
set), validated on the embedded photos ``chelsea`` and ``rocket`` (outside every
benchmark set); the last checkpoint is shipped (no selection on test sets).

Commands (one at a time on a quiet 2-core machine; each resumes if interrupted)::

    python -m bppjax.train --config configs/zoo.py:x2 --workdir ../runs/zoo_x2
    python -m bppjax.train --config configs/zoo.py:x3 --workdir ../runs/zoo_x3
    python -m bppjax.train --config configs/zoo.py:x3ft --workdir ../runs/zoo_x3ft --checkpoint ../runs/zoo_x3
    python -m bppjax.train --config configs/zoo.py:x3ft2 --workdir ../runs/zoo_x3ft2 --checkpoint ../runs/zoo_x3ft
    python -m bppjax.train --config configs/zoo.py:x3w --workdir ../runs/zoo_x3w --checkpoint bpp-sr-x2
    python -m bppjax.train --config configs/zoo.py:x3l2 --workdir ../runs/zoo_x3l2 --checkpoint ../runs/zoo_x3w
    python -m bppjax.train --config configs/zoo.py:x4 --workdir ../runs/zoo_x4
    python -m bppjax.train --config configs/zoo.py:multift --workdir ../runs/zoo_multift --checkpoint bpp-sr-x2
    python -m bppjax.train --config configs/zoo.py:multic --workdir ../runs/zoo_multic --checkpoint bpp-sr-x2
    python -m bppjax.train --config configs/zoo.py:multic2 --workdir ../runs/zoo_multic2 --checkpoint ../runs/zoo_multic
    python -m bppjax.train --config configs/zoo.py:x3w12k --workdir ../runs/zoo_x3w12k --checkpoint ../runs/zoo_x2r
    python -m bppjax.train --config configs/zoo.py:multic12k --workdir ../runs/zoo_multic12k --checkpoint ../runs/zoo_x2r

The shipped ``bpp-sr-x3`` and ``bpp-sr-multi`` share a first stage, the x2
recipe (86 and 85 minutes with it)::

    python -m bppjax.train --config configs/zoo.py:x2 --workdir ../runs/zoo_x2r
    python -m bppjax.train --config configs/zoo.py:x3w12kh --workdir ../runs/zoo_x3w12kh --checkpoint ../runs/zoo_x2r
    python -m bppjax.train --config configs/zoo.py:multic10k5 --workdir ../runs/zoo_multic10k5 --checkpoint ../runs/zoo_x2r

then ``python -m bppjax.zoo export ../runs/zoo_x2 bpp-sr-x2`` (and likewise)
to write the weights and model card into ``bppjax/zoo/``. Wall times and
scores of the shipped models: ``python -m bppjax.zoo`` and the README's zoo
table; each model card (``bppjax/zoo/<name>.json``) records the exact command,
steps, wall time, seed and the evaluation table.

Recipe: the ``medium`` preset (3 levels, 48/32/24 features, 4 flux blocks), 96x96
target patches, batch 8, L1, Adam 1e-3 with 100 warm-up steps and a cosine
decay to 0. ``multi`` draws every patch at a random factor in {2, 3, 4}.
``bpp-sr-x3`` is ``x3w12kh``: the x2 recipe re-run (``../runs/zoo_x2r``), then
12,000 steps at x3 from its weights at the x2 recipe's peak rate (1e-3).
``x3w12k`` (the same at 5e-4) was the model shipped before it, and ``x3w``
(``bpp-sr-x2`` trained 6,000 more steps at x3, 5e-4) before that;
``x3l2`` (3,000 more steps after ``x3w`` on the squared error, 1e-4) was tried
and not shipped (no gain on the validation photos). The first ``bpp-sr-x3``
was trained in three stages: ``x3`` (4,000 steps), ``x3ft`` (4,000
more from its weights, peak rate 5e-4, a fresh cosine), ``x3ft2`` (2,000 more,
2.5e-4). ``bpp-sr-multi`` is ``multic10k5``: the x2 recipe re-run, then 10,500 steps
on the x2/x3/x4 mix from its weights with the BPP conditioned on each patch's
factor (the conditioning starting at zero; 5e-4). Before it, ``multic12k`` (the
same with 12,000 steps, 96 minutes in all), and before that ``multic2``:
``multic`` is ``bpp-sr-x2`` trained 8,000
more steps on the x2/x3/x4 mix with the BPP conditioned on each patch's
factor (``model.factor_conditioning``; 5e-4), ``multic2`` 4,000 more from it
(2.5e-4). ``multift`` (the same as ``multic`` without the conditioning) was
shipped before those, and ``multi``
(3,000 steps from scratch) the first, weaker recipe (Set5 35.34 / 31.96 /
30.04 dB at x2 / x3 / x4 against 36.39 / 32.43 / 30.47 for ``multift`` and
36.62 / 32.64 / 30.53 for ``multic2``).

Wall times on a 2-core Intel Xeon (``/usr/bin/time``): ``x2`` 35 min, ``x3w12kh``
51 min, ``x3w12k`` 54 min, ``multic10k5`` 50 min, ``multic12k`` 61 min. On a 2-core AMD EPYC: ``x2`` 60 min, ``x3w``
35 min, ``x3l2`` 17 min, ``x3`` 34 min, ``x3ft`` 48 min, ``x3ft2`` 9 min, ``x4`` 37 min, ``multi`` 21 min,
``multift`` 38 min, ``multic`` 47 min, ``multic2`` 31 min (the model cards give
seconds per stage and the machine).

Variant ``tiny`` (tests): 2 T91 images, tiny model, 6 steps, e.g. ``x2,tiny``.
"""

from pathlib import Path

from bppjax.data import embedded
from bppjax.data.pipeline import source_config
from bppjax.models.presets import preset
from bppjax.training.config import ConfigError, base_config, tiny_variant

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # training images beside the repo

SCALES = {"x2": (2,), "x3": (3,), "x3ft": (3,), "x3ft2": (3,), "x3w": (3,), "x3l2": (3,), "x4": (4,), "multi": (2, 3, 4),
          "multift": (2, 3, 4), "multic": (2, 3, 4), "multic2": (2, 3, 4),
          "x3w12k": (3,), "multic12k": (2, 3, 4), "x3w12kh": (3,), "multic10k5": (2, 3, 4)}
STEPS = {"x2": 8_000, "x3": 4_000, "x3ft": 4_000, "x3ft2": 2_000, "x3w": 6_000, "x3l2": 3_000, "x4": 5_000, "multi": 3_000,
         "multift": 8_000, "multic": 8_000, "multic2": 4_000, "x3w12k": 12_000, "multic12k": 12_000,
         "x3w12kh": 12_000, "multic10k5": 10_500}
PEAK_LR = {"x3ft": 5e-4, "x3ft2": 2.5e-4, "x3w": 5e-4, "x3l2": 1e-4, "multift": 5e-4, "multic": 5e-4, "multic2": 2.5e-4,
           "x3w12k": 5e-4, "multic12k": 5e-4, "x3w12kh": 1e-3, "multic10k5": 5e-4}
#: Variants whose BPP is told the SR factor of each patch (``model.factor_conditioning``).
CONDITIONED = ("multic", "multic2", "multic12k", "multic10k5")
#: Variants trained on the squared error (PSNR's own measure) rather than L1.
LOSS = {"x3l2": "l2"}


def get_config(variant: str = "x2"):
    tokens = [t for t in variant.split(",") if t]
    names = [t for t in tokens if t in SCALES]
    if len(names) != 1 or any(t not in SCALES and t != "tiny" for t in tokens):
        raise ConfigError(f"zoo.py variant {variant!r}: give one of {sorted(SCALES)}, optionally ',tiny'")
    name = names[0]
    c = base_config()
    c.model = preset("medium")
    c.model.factor_conditioning = name in CONDITIONED
    c.data.train = source_config(source="folder", dirs=(str(SHARED_DATA / "T91"), str(SHARED_DATA / "BSDS200")))
    c.data.val = source_config(source="embedded", names=embedded.VAL_NAMES)
    c.data.update(scales=SCALES[name], patch=96, batch=8, min_std=3 / 255)
    c.optim.update(lr=PEAK_LR.get(name, 1e-3), schedule="cosine", warmup_steps=100, final_lr=0.0)
    c.train.update(steps=STEPS[name], log_every=50, val_every=1_000, ckpt_every=500, keep=20, loss=LOSS.get(name, "l1"))
    c.eval.update(convention="Y_M", crop_border=-1)
    if "tiny" in tokens:
        tiny_variant(c)
        c.data.train.dirs = (str(SHARED_DATA / "T91"),)
    return c
