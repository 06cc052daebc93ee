"""Digests of a fixed set of outputs, to show that a refactor left behaviour unchanged.

    PYTHONPATH=<checkout A> python benchmarks/behaviour_snapshot.py > a.json
    PYTHONPATH=<checkout B> python benchmarks/behaviour_snapshot.py > b.json && diff a.json b.json

Recorded: the paper preset's parameter and MAC counts, a tiny training run's final
parameters and validation PSNR, one x2 enhance output, one LinearScope decomposition
and the tiny model's Set5 x2 scores (SHA-256 prefixes of the float32 bytes). It imports
the summary, enhance and evaluate functions from their library modules or, where a
checkout has none, from the command modules, so it runs on both.
"""
import hashlib
import json
import tempfile
from pathlib import Path

import jax
import numpy as np

import bppjax
from bppjax.training import train_and_evaluate, default_config
try:
    from bppjax.models import summary
except ImportError:
    from bppjax import summary
try:
    from bppjax.inference import enhance
except ImportError:
    from bppjax.enhance import enhance
try:
    from bppjax.evaluation import evaluate
except ImportError:
    from bppjax.evaluate import evaluate
from bppjax.analysis import linearscope as ls

SET5 = Path(__file__).resolve().parents[2] / "shared" / "data" / "Set5"

def digest(*arrays):
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(np.asarray(a, np.float32)).tobytes())
    return h.hexdigest()[:16]

out = {"module": bppjax.__file__}
s = summary.summarize(bppjax.preset("paper"))
out["summary_paper"] = {"params": s["params"], "macs_per_pixel": round(float(s["macs_per_pixel"]), 3)}
with tempfile.TemporaryDirectory() as d:
    c = default_config("tiny")
    r = train_and_evaluate(c, d)
    params = r.state.params
    out["tiny_training"] = {"params": digest(*jax.tree.leaves(params)), "val_psnr": r.val["psnr"]}
    model = bppjax.build_model(c.model)
    img = np.random.default_rng(0).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    out["enhance_x2"] = digest(enhance(img, model, params, scale=2))
    x = jax.numpy.asarray(np.random.default_rng(1).random((1, 32, 32, 3), dtype=np.float32))
    dec = ls.decompose(model, params, x)
    out["linearscope"] = {"fx": digest(dec.fx), "r": digest(dec.r), "y": digest(dec.y)}
    from bppjax.tiling import tiled_inference
    res = evaluate(lambda z: np.asarray(tiled_inference(model, params, z), np.float32), [str(SET5)], [2], progress=False)
    out["set5_x2"] = res["Set5"][2]
print(json.dumps(out, indent=1))
