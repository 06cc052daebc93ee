"""The embedded default: a small BPP for SR x2 on scikit-image's photographs.

Command (no arguments needed; writes ./runs/default):

    python -m bppjax.train
    python -m bppjax.train --config configs/default.py --workdir runs/default   # the same

Model preset ``small`` (3 levels, 32/24/16 features, 4 flux blocks, 118k
parameters); SR x2 (MATLAB bicubic) on 8 photos that ship with scikit-image
(no download, no ../shared), validated on the held-out ``chelsea`` and
``rocket`` in the Y_M convention; 96x96 patches, batch 8, L1, Adam peaking at
1e-3 with 50 warm-up steps and a cosine decay to 0 at 2,000 steps, patches with
HR std < 3/255 skipped, crops at even offsets.

Expected result (measured once, seed 0, jax 0.10.2 on XLA:CPU): validation
(chelsea + rocket, x2, Y_M) 34.52 dB / 0.9329 against bicubic 33.78 dB /
0.9155, a gain of +0.74 dB (chelsea +0.70, rocket +0.78); the same weights
score 35.75 dB on Set5 x2 (bicubic 33.67, +2.08 dB) and 32.05 dB on Set14 x2
(bicubic 30.33, +1.72 dB). Time: 5 min 45 s wall on an otherwise idle
2-core machine (2,000 steps in 342 s at ~5.8 steps/s, plus start-up; peak RSS
1.06 GB), measured with ``/usr/bin/time -v python -m bppjax.train``; the rerun
reproduced the gain (+0.744 dB) exactly. Validation gain by step:
+0.71 (500), +0.74 (1000), +0.65 (1500), +0.74 dB (2000).

Variant ``:tiny`` (tests): tiny model, 2 training photos, 32x32 patches, 30 steps, ~20 s.
"""

from bppjax.training.config import default_config


def get_config(variant: str = ""):
    return default_config(variant)
