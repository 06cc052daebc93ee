"""LinearScope (the paper's Fig. 8): the network seen as an affine map around one input.

For an input x, freeze every non-linear decision the network takes on x (each
ReLU's on/off mask, each instance norm's mean and variance). The frozen
network is affine, ``frozen(z) = F z + r``, and at z = x it reproduces the
real output: ``y = F x + r``. ``F x`` is the *local* part (x filtered by
spatially varying interpolation filters, one per output pixel: the rows of F),
``r`` the *global* part (what the network adds regardless of the input's
scale, e.g. texture or a raindrop mask).

The freezing itself lives in ``NormReLU(freeze=True)``: applied with a mutable
``frozen`` collection it records the decisions, applied with a recorded
collection it replays them. This module only needs a model with a ``freeze``
field, so BPP, the ResNet baseline and the ODE model share one code path.

The three parts are computed independently, so that ``F x + r = y`` is a real
check of the decomposition rather than an identity:

* ``y``: the ordinary network;
* ``r``: the frozen network, replaying x's decisions, applied to a zero input;
* ``F x``: a Jacobian-vector product of the frozen network at x in direction x.

The ODE model cannot replay (its solver evaluates the field at times that
depend on the input); in freeze mode it recomputes the decisions under
``stop_gradient`` at every evaluation, which gives the same derivatives *at x*.
There ``F x`` is still a Jacobian-vector product and ``r = frozen(x) - F x``;
the check ``F x + r = y`` then only confirms that freeze mode does not change
the forward pass (``Decomposition.r_source`` says which case ran).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
AffineFn = Callable[[Array], Array]

METHODS = ("auto", "jvp", "vjp", "difference")


def frozen_twin(model: nn.Module) -> nn.Module:
    """The same network in LinearScope mode (``freeze=True``); parameters are shared.

    An ODE model (one with an ``adjoint`` field) also switches to diffrax's
    ``DirectAdjoint``: F x by :func:`jvp_by_transpose` differentiates the
    solve twice, which a diffrax solve (adaptive steps) supports only under
    that adjoint (fixed steps run the step loop, differentiable either way).
    """
    if not hasattr(model, "frozen_twin"):
        raise TypeError(f"{type(model).__name__} has no frozen_twin() (no freeze mode), so it cannot be frozen for LinearScope")
    return model.frozen_twin()


def record(frozen_model: nn.Module, params: Any, x: Array) -> dict:
    """The non-linear decisions (masks, IN statistics) the network takes on ``x``.

    Returns the ``frozen`` variable collection (empty for a network without
    activations), ready to pass to :func:`replay`.
    """
    _, state = frozen_model.apply({"params": params}, x, mutable=["frozen"])
    return dict(state).get("frozen", {})


def replay(frozen_model: nn.Module, params: Any, frozen: Any) -> AffineFn:
    """The frozen network as a function of its input: ``z -> F z + r``, affine in z."""
    variables = {"params": params, "frozen": frozen} if frozen else {"params": params}
    return lambda z: frozen_model.apply(variables, z)


def can_replay(frozen_model: nn.Module, params: Any, x: Array) -> bool:
    """Whether the model can record its decisions into a ``frozen`` collection and replay them (the model says)."""
    del params, x
    return bool(frozen_model.can_replay_decisions)


def frozen_map(frozen_model: nn.Module, params: Any, x: Array, replayable: bool = True) -> AffineFn:
    """The frozen network around ``x``.

    Replayable models: x's recorded decisions, replayed; affine everywhere.
    Otherwise the decisions are recomputed (under ``stop_gradient``) from
    whatever input it gets, so only its value and derivatives *at x* are
    those of the affine map.
    """
    if replayable:
        return replay(frozen_model, params, record(frozen_model, params, x))
    return lambda z: frozen_model.apply({"params": params}, z)


def jvp_by_transpose(f: AffineFn, x: Array, v: Array) -> Array:
    """``J_f(x) v`` from two reverse passes, for networks that forbid forward mode.

    BPP's transposed convolution carries a ``custom_vjp`` (fast gradients on
    CPU), which ``jax.jvp`` refuses. The VJP ``u -> J^T u`` is linear in u, and
    its own VJP applied to v is ``(J^T)^T v = J v``: exact, not a difference.
    """
    y, vjp = jax.vjp(f, x)
    _, vjp_of_vjp = jax.vjp(vjp, jnp.zeros_like(y))
    (jv,) = vjp_of_vjp((v,))
    return jv


def linear_part(f: AffineFn, x: Array, method: str = "jvp") -> Array:
    """``F x`` for an affine ``f(z) = F z + r``.

    Args:
      method: ``"jvp"`` (forward mode), ``"vjp"`` (:func:`jvp_by_transpose`) or
        ``"difference"`` (``f(x) - f(0)``: needs nothing from autodiff, but is
        only as accurate as the cancellation allows).
    """
    if method == "jvp":
        return jax.jvp(f, (x,), (x,))[1]
    if method == "vjp":
        return jvp_by_transpose(f, x, x)
    if method == "difference":
        return f(x) - f(jnp.zeros_like(x))
    raise ValueError(f"unknown LinearScope method {method!r}; choose one of {METHODS}")


@dataclasses.dataclass(frozen=True)
class Decomposition:
    """``y = F x + r`` for a batch; arrays are ``(B, H, W, C)`` NumPy float32."""

    x: np.ndarray
    y: np.ndarray
    fx: np.ndarray
    r: np.ndarray
    method: str
    r_source: str = "replay"  # "replay": frozen(0); "residual": frozen(x) - F x (models that cannot replay)

    @property
    def reconstruction_error(self) -> np.ndarray:
        """Per sample ``||F x + r - y|| / ||y||``: 0 up to rounding if the freeze is right."""
        return _norms(self.fx + self.r - self.y) / _norms(self.y)

    @property
    def local_fraction(self) -> np.ndarray:
        """Per sample ``||F x|| / ||y||``: the share carried by the input-dependent filters."""
        return _norms(self.fx) / _norms(self.y)

    @property
    def global_fraction(self) -> np.ndarray:
        """Per sample ``||r|| / ||y||``: the share the network adds independently of x's scale."""
        return _norms(self.r) / _norms(self.y)

    def summary(self, i: int = 0) -> dict[str, float | str]:
        """Sample ``i``'s scalars, JSON-ready."""
        return {
            "reconstruction_error": float(self.reconstruction_error[i]),
            "local_fraction": float(self.local_fraction[i]),
            "global_fraction": float(self.global_fraction[i]),
            "method": self.method,
            "r_source": self.r_source,
        }


def _norms(a: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(np.square(a.astype(np.float64)), axis=tuple(range(1, a.ndim))))


def affine_parts(f: AffineFn, x: Array, method: str = "jvp") -> tuple[Array, Array]:
    """``(F x, r)`` of an affine map ``f(z) = F z + r``, each computed without the other.

    ``r = f(0)``; ``F x`` by :func:`linear_part`. Their sum reproduces ``f(x)``
    only if ``f`` really is affine, which is what LinearScope checks.
    """
    return linear_part(f, x, method), f(jnp.zeros_like(x))


_record = jax.jit(record, static_argnames=("frozen_model",))


@functools.partial(jax.jit, static_argnames=("model", "frozen_model", "method"))
def _replayed_parts(model: nn.Module, frozen_model: nn.Module, params: Any, frozen: Any, x: Array, method: str):
    # The decisions come in as data, recorded by their own compiled call: inside one
    # program XLA may recompute a decision that sits near zero with other rounding
    # for F x than for r, and F x + r would then miss y.
    y = model.apply({"params": params}, x)
    return (y, *affine_parts(replay(frozen_model, params, frozen), x, method))


@functools.partial(jax.jit, static_argnames=("model", "frozen_model", "method"))
def _recomputed_parts(model: nn.Module, frozen_model: nn.Module, params: Any, x: Array, method: str):
    y = model.apply({"params": params}, x)
    f = frozen_map(frozen_model, params, x, replayable=False)
    fx = linear_part(f, x, method)
    return y, fx, f(x) - fx


def _parts(model: nn.Module, frozen_model: nn.Module, params: Any, x: Array, method: str, replayable: bool):
    # Module-level jits keyed on the (hashable) modules: images of one size compile once.
    if replayable:
        return _replayed_parts(model, frozen_model, params, _record(frozen_model, params, x), x, method)
    return _recomputed_parts(model, frozen_model, params, x, method)


def decompose(
    model: nn.Module,
    params: Any,
    x: Array,
    frozen_model: nn.Module | None = None,
    method: str = "auto",
) -> Decomposition:
    """LinearScope of ``model`` at ``x`` (a batch ``(B, H, W, C)``): ``y``, ``F x`` and ``r``.

    Args:
      model: the ordinary network.
      frozen_model: its LinearScope twin; default ``frozen_twin(model)``.
      method: how to get ``F x`` (see :func:`linear_part`); ``"auto"`` tries
        ``jvp``, then ``vjp``, then ``difference`` (replayable models only), and
        the result records which ran.
    """
    if method not in METHODS:
        raise ValueError(f"unknown LinearScope method {method!r}; choose one of {METHODS}")
    frozen_model = frozen_twin(model) if frozen_model is None else frozen_model
    x = jnp.asarray(x, jnp.float32)
    replayable = can_replay(frozen_model, params, x)
    if method == "difference" and not replayable:
        raise ValueError(f"{type(model).__name__} cannot replay its decisions at another input, so F x cannot be a difference")
    tries = (("jvp", "vjp", "difference") if replayable else ("jvp", "vjp")) if method == "auto" else (method,)
    for i, m in enumerate(tries):
        try:
            y, fx, r = _parts(model, frozen_model, params, x, m, replayable)
            break
        except (TypeError, NotImplementedError, ValueError, jax.errors.JAXTypeError) as err:
            # Only autodiff refusals (custom_vjp, while loops) fall through to the next method.
            if i == len(tries) - 1 or "autodiff" not in str(err) and "differentiat" not in str(err):
                raise
    to_np = lambda a: np.asarray(a, np.float32)  # noqa: E731
    return Decomposition(to_np(x), to_np(y), to_np(fx), to_np(r), m, "replay" if replayable else "residual")


def filters(
    frozen_model: nn.Module,
    params: Any,
    x: Array,
    pixels: Sequence[tuple[int, int]],
    channel: int | None = None,
) -> np.ndarray:
    """Rows of F: the filter each output pixel ``p`` applies to the input.

    Row p of F is ``e_p^T F``, a vector-Jacobian product of the frozen network
    (one forward pass, one backward pass per pixel).

    Args:
      x: one image as a batch ``(1, H, W, C)``.
      pixels: output positions ``(row, col)``.
      channel: output channel whose filter to return; ``None`` averages the
        output channels (the filter of the pixel's mean intensity).

    Returns:
      ``(len(pixels), H, W, C)``: for each pixel, the weights on every input value.
    """
    x = jnp.asarray(x, jnp.float32)
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"filters expects one image as a (1, H, W, C) batch; got shape {x.shape}")
    c = x.shape[-1]
    weights = jnp.full((c,), 1.0 / c) if channel is None else jax.nn.one_hot(channel, c)
    replayable = can_replay(frozen_model, params, x)
    idx = jnp.asarray(np.asarray(pixels, np.int32).reshape(-1, 2))
    return np.asarray(_filter_rows(frozen_model, params, x, idx, weights, replayable), np.float32)


@functools.partial(jax.jit, static_argnames=("frozen_model", "replayable"))
def _filter_rows(frozen_model: nn.Module, params: Any, x: Array, idx: Array, weights: Array, replayable: bool) -> Array:
    f = frozen_map(frozen_model, params, x, replayable)
    y, vjp = jax.vjp(f, x)

    def row(ij):
        e = jnp.zeros_like(y).at[0, ij[0], ij[1], :].set(weights.astype(y.dtype))
        return vjp(e)[0][0]

    return jax.lax.map(row, idx)

