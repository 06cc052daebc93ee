"""Which formulation of an op runs where: CPU-tuned code on CPU, plain XLA ops elsewhere.

Several ops have a second formulation measured faster on XLA:CPU
(docs/PERFORMANCE.md): ``conv_up``'s phase decomposition and hand-written
VJPs, the fused IN-ReLU-transposed-conv, convolutions as GEMMs in bfloat16,
and the conditionals that order the reversible sweep's recomputation. None of
them was measured on GPU or TPU, so they are chosen per lowering platform with
``lax.platform_dependent``: a program lowered for CPU contains only the CPU
formulation, one lowered (or exported) for ``cuda``, ``rocm`` or ``tpu`` only
the plain one, and neither contains a conditional on the platform. The choice
is made when the program is lowered, not from ``jax.default_backend()`` when it
is traced, so ``jax.export`` on a CPU host produces the plain GPU program.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from jax import lax

T = TypeVar("T")


def on_cpu(cpu: Callable[..., T], plain: Callable[..., T], *args: Any) -> T:
    """``cpu(*args)`` in a program lowered for CPU, ``plain(*args)`` in one lowered for any other platform.

    Both are traced (so both must accept ``args`` and return the same shapes and
    dtypes); the lowering keeps only the one of its platform.
    """
    return lax.platform_dependent(*args, cpu=cpu, default=plain)


__all__ = ["on_cpu"]
