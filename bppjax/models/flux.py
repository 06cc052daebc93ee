"""The flux-unit rule, written once: what one level of one block does.

    p_read = R_l(h_l) in the "eq2" reading, else the carried p_l
    dh     = P_l(h_{l-1}, p_read)            (h_{l-1} already updated in this block)
    h_l   <- h_l + dh
    p_l   <- R_l(h_l) when the block carries R ("carried" reading), else nothing

``FluxUnit`` (the Flax module, with its submodules as ``update``/``project``)
and the reversible sweep of ``remat: block`` (with pure functions of the
parameters) both step through it. The continuous-time model's vector field
(``bppjax.models.ode.FluxField``) evaluates the rates of the same P and R
instead: dh_l/dt = P_l(h_{l-1}, p_read) and, carried, dp_l/dt = R_l(h_l) - p_l.
"""

from __future__ import annotations

from typing import Callable

import jax

Array = jax.Array


def flux_unit_step(
    update: Callable[[Array, Array], Array],
    project: Callable[[Array], Array],
    h_lower: Array,
    h: Array,
    p: Array | None,
    *,
    eq2: bool,
    carries_r: bool,
) -> tuple[Array, Array | None, Array, Array]:
    """One flux unit: returns ``(h_new, p_next, dh, p_read)``.

    ``update(h_lower, p) -> dh`` is P_l, ``project(h) -> p`` is R_l; ``p_next``
    is None where nothing carries a projection onward (eq2, or the last block).
    """
    p_read = project(h) if eq2 else p
    dh = update(h_lower, p_read)
    h_new = h + dh.astype(h.dtype)
    p_next = project(h_new) if (carries_r and not eq2) else None
    return h_new, p_next, dh, p_read
