"""Digest of the compiled training step, to show that a change left the CPU program (and so its speed) alone.

    PYTHONPATH=<checkout A> python benchmarks/compiled_step_hlo.py > a.json
    PYTHONPATH=<checkout B> python benchmarks/compiled_step_hlo.py > b.json && diff a.json b.json

For each compute dtype: the ``medium`` preset's ``train_step`` (4 x 96x96
patches, L1, Adam) compiled by this process's backend, its optimised HLO with
the debug metadata (source files, stack frames, op names) removed, its SHA-256
prefix and the number of instructions of each opcode. Equal digests mean XLA
runs the same program in both checkouts.
"""
import functools
import hashlib
import json
import re
from collections import Counter

import jax
import jax.numpy as jnp

import bppjax
from bppjax.models import build_model, preset
from bppjax.training.config import base_config
from bppjax.training.state import create_train_state, make_optimizer
from bppjax.training.step import train_step

INSTRUCTION = re.compile(r"^\s*(ROOT )?%|^ENTRY|^%|^fused|^[a-z_]+.*\{$")


def program(dtype: str) -> str:
    cfg = preset("medium")
    cfg.dtype = dtype
    model = build_model(cfg)
    tx, schedule = make_optimizer(base_config().optim, 1000)
    state = jax.eval_shape(lambda: create_train_state(model, tx, 0, 96))
    batch = {k: jax.ShapeDtypeStruct((4, 96, 96, 3), jnp.uint8) for k in ("input", "target")}
    step = jax.jit(functools.partial(train_step, loss="l1", schedule=schedule, peak=255.0))
    text = step.lower(state, batch).compile().as_text()
    text = re.sub(r", metadata=\{[^}]*\}", "", text)
    return "\n".join(line for line in text.splitlines() if INSTRUCTION.match(line))


out = {"module": bppjax.__file__, "backend": jax.default_backend()}
for dtype in ("float32", "bfloat16"):
    text = program(dtype)
    ops = Counter(re.findall(r"= \S+ (\w+)\(", text))
    out[dtype] = {"sha256": hashlib.sha256(text.encode()).hexdigest()[:16], "instructions": sum(ops.values()),
                  "opcodes": dict(sorted(ops.items()))}
print(json.dumps(out, indent=1))
