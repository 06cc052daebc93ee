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
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
AffineFn = Callable[[Array], Array]

METHODS = ("auto", "jvp", "vjp", "difference")


def frozen_twin(model: nn.Module) -> nn.Module:
    """The same network in LinearScope mode (``freeze=True``); parameters are shared."""
    if not any(f.name == "freeze" for f in dataclasses.fields(model)):
        raise TypeError(f"{type(model).__name__} has no 'freeze' field, so it cannot be frozen for LinearScope")
    return model.clone(freeze=True)


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
        }


def _norms(a: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(np.square(a.astype(np.float64)), axis=tuple(range(1, a.ndim))))


def _parts(model: nn.Module, frozen_model: nn.Module, params: Any, x: Array, method: str):
    y = model.apply({"params": params}, x)
    f = replay(frozen_model, params, record(frozen_model, params, x))
    r = f(jnp.zeros_like(x))
    return y, linear_part(f, x, method), r


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
        ``jvp``, then ``vjp``, then ``difference``, and the result records which ran.
    """
    if method not in METHODS:
        raise ValueError(f"unknown LinearScope method {method!r}; choose one of {METHODS}")
    frozen_model = frozen_twin(model) if frozen_model is None else frozen_model
    x = jnp.asarray(x, jnp.float32)
    tries = ("jvp", "vjp", "difference") if method == "auto" else (method,)
    for i, m in enumerate(tries):
        run = jax.jit(lambda p, z, m=m: _parts(model, frozen_model, p, z, m))
        try:
            y, fx, r = run(params, x)
            break
        except (TypeError, NotImplementedError, ValueError, jax.errors.JAXTypeError) as err:
            # Only autodiff refusals (custom_vjp, while loops) fall through to the next method.
            if i == len(tries) - 1 or "autodiff" not in str(err) and "differentiat" not in str(err):
                raise
    to_np = lambda a: np.asarray(a, np.float32)  # noqa: E731
    return Decomposition(to_np(x), to_np(y), to_np(fx), to_np(r), m)


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

    @jax.jit
    def rows(p, z, idx):
        f = replay(frozen_model, p, record(frozen_model, p, z))
        y, vjp = jax.vjp(f, z)

        def row(ij):
            e = jnp.zeros_like(y).at[0, ij[0], ij[1], :].set(weights.astype(y.dtype))
            return vjp(e)[0][0]

        return jax.lax.map(row, idx)

    idx = jnp.asarray(np.asarray(pixels, np.int32).reshape(-1, 2))
    return np.asarray(rows(params, x, idx), np.float32)

