"""A program lowered for a GPU is the plain one, whatever machine lowers it.

The CPU formulations (``conv_up``'s phase decomposition and hand-written VJPs,
the fused IN-ReLU-transposed-conv, bfloat16 convolutions as GEMMs, the
reversible sweep's conditionals) are chosen per lowering platform
(``bppjax.models.backend``). These tests export BPP's training step and forward
pass for ``cuda`` with ``jax.export`` on this (CPU) machine and read the
StableHLO: no ``dot_general`` (BPP has no dense layer: every GEMM is a CPU
formulation), no 2-tap kernels (the phase decomposition), no conditional that
depends on data (the sweep's per-block ``lax.cond``), and the same checks fail
on the program lowered for CPU, so they can tell the two apart.
"""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import pytest

from bppjax.models import build_model
from bppjax.training.config import default_config
from bppjax.training.state import create_train_state, make_optimizer
from bppjax.training.step import train_step

PATCH = 32


def _model_config(dtype: str):
    cfg = default_config("tiny").model
    cfg.features = (16, 16, 24)  # wide enough for the GEMM formulation (layers.GEMM_MIN_CHANNELS)
    cfg.dtype = dtype
    cfg.remat = "block"  # the reversible sweep
    return cfg


def _train_step(dtype: str):
    """A flat-argument training step (optax states do not serialise as pytrees) and its abstract arguments."""
    c = default_config("tiny")
    model = build_model(_model_config(dtype))
    tx, schedule = make_optimizer(c.optim, 100)
    state = jax.eval_shape(lambda: create_train_state(model, tx, 0, PATCH))
    leaves, tree = jax.tree.flatten(state)
    step = functools.partial(train_step, loss="l1", schedule=schedule, peak=255.0)

    def flat_step(leaves, batch):
        new, metrics = step(jax.tree.unflatten(tree, leaves), batch)
        return jax.tree.leaves(new), metrics

    batch = {k: jax.ShapeDtypeStruct((2, PATCH, PATCH, 3), jnp.uint8) for k in ("input", "target")}
    return jax.jit(flat_step), (leaves, batch)


def _forward(dtype: str):
    model = build_model(_model_config(dtype))
    x = jax.ShapeDtypeStruct((1, 40, 48, 3), jnp.float32)
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(x.shape, x.dtype)))["params"]
    return jax.jit(lambda p, x: model.apply({"params": p}, x)), (params, x)


def _export(fn, args, platform: str) -> jax.export.Exported:
    return jax.export.export(fn, platforms=[platform])(*args)


def _branches(text: str, start: int) -> list[str]:
    """Bodies of the regions of the op whose region list opens at ``text[start] == "{"``."""
    out, i = [], start
    while True:
        depth, begin = 1, i + 1
        i += 1
        while depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        out.append(text[begin : i - 1])
        if not text.startswith(", {", i):
            return out
        i += 2


def _data_conditionals(text: str) -> int:
    """Conditionals that branch on data: ``case`` ops with several branches that compute something.

    A program lowered for one platform keeps each ``lax.platform_dependent`` as a
    one-branch ``case`` behind a selector whose branches only return constants;
    XLA folds both. ``if`` and ``while`` count too.
    """
    n = text.count("stablehlo.if") + text.count("stablehlo.while")
    for m in re.finditer(r'"stablehlo\.case"\([^)]*\) \(\{', text):
        branches = _branches(text, m.end() - 1)
        ops = {op for b in branches for op in re.findall(r"stablehlo\.[a-z_]+", b)}
        if len(branches) > 1 and not ops <= {"stablehlo.return", "stablehlo.constant"}:
            n += 1
    return n


def _two_tap_kernels(text: str) -> int:
    """Forward convolutions (kernel layout ``[0, 1, i, o]``) with a 2-tap spatial side: the phase decomposition."""
    n = 0
    for m in re.finditer(r"x\[0, 1, i, o\].*?: \(tensor<[^>]*>, tensor<(\d+)x(\d+)x", text):
        n += 2 in (int(m.group(1)), int(m.group(2)))
    return n


def _cpu_formulations(text: str) -> dict[str, int]:
    return {"dot_general": text.count("stablehlo.dot_general"), "conditionals": _data_conditionals(text),
            "two_tap_kernels": _two_tap_kernels(text)}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_training_step_lowered_for_cuda_is_the_plain_program(dtype):
    fn, args = _train_step(dtype)
    gpu = _cpu_formulations(_export(fn, args, "cuda").mlir_module())
    assert gpu == {"dot_general": 0, "conditionals": 0, "two_tap_kernels": 0}
    cpu = _cpu_formulations(fn.lower(*args).as_text())
    # The same step lowered for CPU: hand-written weight gradients (float32) or GEMM convolutions (bfloat16)
    # are dot_generals, the reversible sweep has conditionals per block, the narrow float32 conv_up uses phases.
    assert cpu["dot_general"] > 0 and cpu["conditionals"] >= 2, cpu
    assert (cpu["two_tap_kernels"] > 0) == (dtype == "float32"), cpu


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_forward_pass_lowered_for_cuda_is_the_plain_program(dtype):
    fn, args = _forward(dtype)
    assert _cpu_formulations(_export(fn, args, "cuda").mlir_module()) == {"dot_general": 0, "conditionals": 0,
                                                                         "two_tap_kernels": 0}
    cpu = _cpu_formulations(fn.lower(*args).as_text())
    # On CPU: the phase decomposition in float32, GEMM convolutions in bfloat16.
    assert (cpu["two_tap_kernels"] > 0, cpu["dot_general"] > 0) == ((True, False) if dtype == "float32" else (False, True)), cpu


def test_the_exported_training_step_serialises_and_reads_back():
    fn, args = _train_step("float32")
    exported = _export(fn, args, "cuda")
    back = jax.export.deserialize(exported.serialize())
    assert back.platforms == ("cuda",)
    assert back.in_avals == exported.in_avals and back.out_avals == exported.out_avals
    assert back.mlir_module() == exported.mlir_module()
    # The parameter, optimizer and step leaves all come back out, with their shapes.
    assert len(back.out_avals) == len(exported.in_avals) - 2 + 4  # state leaves + loss, grad_norm, param_norm, lr
