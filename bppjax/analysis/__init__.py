"""Looking inside a trained network: update norms (Fig. 7) and LinearScope (Fig. 8).

Both tools work from what the model itself exposes (sown ``update_norms``
intermediates, the ``freeze`` switch of its activations), so the same calls
serve BPP, the ResNet baseline and the ODE model::

    from bppjax.analysis import decompose, filters, mean_update_norms
    heat = mean_update_norms(model, params, images)      # (levels, blocks), max 100
    d = decompose(model, params, x)                      # y = F x + r
    d.global_fraction                                    # ||r|| / ||y|| per sample
"""

from bppjax.analysis.linearscope import (
    METHODS,
    Decomposition,
    affine_parts,
    can_replay,
    decompose,
    filters,
    frozen_map,
    frozen_twin,
    jvp_by_transpose,
    linear_part,
    record,
    replay,
)
from bppjax.analysis.plots import plot_filters, plot_linearscope, plot_update_norms, plot_update_norms_grid
from bppjax.analysis.update_norms import average, mean_update_norms, normalise, stack_update_norms, update_norms

__all__ = [
    "METHODS", "Decomposition", "affine_parts", "average", "can_replay", "decompose", "filters", "frozen_map", "frozen_twin", "jvp_by_transpose",
    "linear_part", "mean_update_norms", "normalise", "plot_filters", "plot_linearscope", "plot_update_norms",
    "plot_update_norms_grid", "record", "replay", "stack_update_norms", "update_norms",
]
