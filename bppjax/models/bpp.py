"""The Back-Projection Pipeline (BPP); the network and its arithmetic are described in docs/ARCHITECTURE.md.

Levels are indexed 0 (lowest resolution, H/2^(L-1)) to L-1 (the input
resolution). Data flow:

    image -> Scalers (pyramid X_l) -> Analysis (states h_l, down-projections p_l)
          -> D x FluxBlock (levels 1..L-1 updated bottom-up, level 0 fixed)
          -> Synthesis (residual image added to the input)

Each FluxUnit holds Upscale P_l (IN -> ReLU -> stride-2 transposed conv of
``concat[h_{l-1}, p_l]``) and Downscale R_l (stride-2 conv of h_l). The same
``FluxUnit`` methods are the vector field of the continuous-time model
(``bppjax.models.ode``), so the architecture exists once.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bppjax.models.flux import flux_unit_step
from bppjax.models.layers import Conv, ConvUp, NormReLU, dirac_init
from bppjax.models.padding import pad_batch_to_multiple
from bppjax.models.reversible import ProjectFn, UpdateFn, reversible_blocks

Array = jax.Array

#: Matlab imresize(., 0.5) bicubic taps (Keys a=-0.5 at half rate) in a 9-box.
BICUBIC_HALF_TAPS = np.array(
    [0, -0.01171875, -0.03515625, 0.11328125, 0.43359375, 0.43359375, 0.11328125, -0.03515625, -0.01171875],
    dtype=np.float32,
)

DOWN_PROJECTIONS = ("carried", "eq2")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
REMATS = ("none", "block", "checkpoint")


def _bicubic_scaler_init(key: Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> Array:
    del key
    k2 = np.outer(BICUBIC_HALF_TAPS, BICUBIC_HALF_TAPS)
    return jnp.broadcast_to(jnp.asarray(k2, dtype)[:, :, None, None], shape)


class Scaler(nn.Module):
    """Learnable x1/2 downscaler: depthwise 9x9, stride 2, reflect padding 4, bicubic init."""

    channels: int = 3

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kernel = self.param("kernel", _bicubic_scaler_init, (9, 9, 1, self.channels))
        xp = jnp.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)), mode="reflect")
        return jax.lax.conv_general_dilated(
            xp,
            kernel.astype(x.dtype),
            (2, 2),
            "VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=self.channels,
        )[:, : x.shape[1] // 2, : x.shape[2] // 2]


class Analysis(nn.Module):
    """Single linear convs lifting the pyramid to states h_l and down-projections p_l."""

    features: Sequence[int]
    with_projections: bool = True
    dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, pyramid: Sequence[Array]) -> tuple[list[Array], list[Array | None]]:
        conv = lambda c, name: Conv(c, dtype=self.dtype, kernel_init=self.kernel_init, name=name)  # noqa: E731
        h = [conv(c, f"h_{l}")(x) for l, (c, x) in enumerate(zip(self.features, pyramid))]
        p: list[Array | None] = [None]
        for l in range(1, len(self.features)):
            p.append(conv(self.features[l - 1], f"p_{l}")(pyramid[l - 1]) if self.with_projections else None)
        return h, p


class Downscale(nn.Module):
    """R_l: stride-2 3x3 conv from level l (C_l) to level l-1 (C_{l-1})."""

    features: int
    dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.lecun_normal()
    conv_impl: str = "auto"  # layers.conv2d's impl ("loop" inside a loop body)

    @nn.compact
    def __call__(self, h: Array) -> Array:
        return Conv(self.features, stride=2, dtype=self.dtype, kernel_init=self.kernel_init, impl=self.conv_impl,
                    name="conv")(h)


class Upscale(nn.Module):
    """P_l: ReLU(IN(concat[h_{l-1}, p_l])) -> stride-2 transposed conv to C_l channels."""

    features: int
    instance_norm: bool = True
    freeze: bool = False
    dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, h_lower: Array, p: Array) -> Array:
        if not self.freeze:
            # One fused op, same numbers: fewer memory passes (layers.norm_relu_conv_up).
            prenorm = "in" if self.instance_norm else "relu"
            return ConvUp(self.features, self.dtype, self.kernel_init, prenorm, name="conv")(h_lower, p)
        u = jnp.concatenate([h_lower.astype(self.dtype), p.astype(self.dtype)], axis=-1)
        u = NormReLU(self.instance_norm, self.freeze, name="act")(u)
        return ConvUp(self.features, dtype=self.dtype, kernel_init=self.kernel_init, name="conv")(u)


class FluxUnit(nn.Module):
    """The flux unit of level l >= 1 in one block: h_l += P_l(h_{l-1}, p_l); p_l = R_l(h_l).

    ``update`` is the vector field term dh_l/dt, ``project`` the down-projection;
    ``__call__`` composes them as the discrete network does.
    """

    features: int  # C_l
    lower_features: int  # C_{l-1}
    with_downscale: bool = True
    instance_norm: bool = True
    freeze: bool = False
    dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.lecun_normal()
    conv_impl: str = "auto"  # R_l's convolution (Downscale.conv_impl)

    def setup(self):
        self.upscale = Upscale(self.features, self.instance_norm, self.freeze, self.dtype, self.kernel_init)
        if self.with_downscale:
            self.downscale = Downscale(self.lower_features, self.dtype, self.kernel_init, self.conv_impl)

    def update(self, h_lower: Array, p: Array) -> Array:
        """P_l(p_l, h_{l-1}): the residual added to h_l."""
        return self.upscale(h_lower, p)

    def project(self, h: Array) -> Array:
        """R_l(h_l): the down-projection read by the next block."""
        return self.downscale(h)

    def __call__(self, h_lower: Array, h: Array, p: Array | None, eq2: bool = False) -> tuple[Array, Array | None, Array]:
        h, p_next, dh, _ = flux_unit_step(self.update, self.project, h_lower, h, p, eq2=eq2, carries_r=self.with_downscale)
        return h, p_next, dh


class FluxBlock(nn.Module):
    """One depth step t: flux units of levels 1..L-1 in order (Gauss-Seidel in scale).

    ``carries_r``: whether the block's units hold R_l (``BPP.carries_r(t)``);
    ``conv_impl``: R_l's convolution (``"loop"`` for a block applied inside a
    loop body, as the ODE's scan and diffrax's solves do; ``layers.conv2d``).
    """

    features: Sequence[int]
    carries_r: bool = True
    eq2: bool = False
    instance_norm: bool = True
    freeze: bool = False
    dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.lecun_normal()
    conv_impl: str = "auto"

    def unit(self, l: int, **kwargs: Any) -> FluxUnit:
        """The flux unit of level ``l`` of this block (``kwargs``: ``name``, or ``parent=None`` for a template)."""
        return FluxUnit(
            self.features[l],
            self.features[l - 1],
            with_downscale=self.carries_r,
            instance_norm=self.instance_norm,
            freeze=self.freeze,
            dtype=self.dtype,
            kernel_init=self.kernel_init,
            conv_impl=self.conv_impl,
            **kwargs,
        )

    def unit_functions(self) -> tuple[UpdateFn, ProjectFn]:
        """P_l and R_l of this block's units as pure functions of their parameters (``bppjax.models.reversible``).

        ``update(l, params_of_unit_l_upscale, h_lower, p)`` and ``project(l, params_of_unit_l_downscale, h)``
        apply ``FluxUnit.update`` and ``FluxUnit.project`` of unit ``l`` to the given parameters.
        """
        units = {l: self.unit(l, parent=None) for l in range(1, len(self.features))}

        def update(l: int, theta: Any, h_lower: Array, p: Array) -> Array:
            return units[l].apply({"params": {"upscale": theta}}, h_lower, p, method=FluxUnit.update)

        def project(l: int, theta: Any, h: Array) -> Array:
            return units[l].apply({"params": {"downscale": theta}}, h, method=FluxUnit.project)

        return update, project

    @nn.compact
    def __call__(self, h: Sequence[Array], p: Sequence[Array | None]):
        h, p = list(h), list(p)
        updates = [jnp.zeros((), jnp.float32)]  # level 0 never moves
        for l in range(1, len(self.features)):
            h[l], p[l], dh = self.unit(l, name=f"unit_{l}")(h[l - 1], h[l], p[l], eq2=self.eq2)
            updates.append(jnp.sqrt(jnp.sum(jnp.square(dh.astype(jnp.float32)), axis=(1, 2, 3))))
        self.sow("intermediates", "update_norms", jnp.stack([jnp.broadcast_to(u, updates[-1].shape) for u in updates]))
        return tuple(h), tuple(p)


class Synthesis(nn.Module):
    """Residual image from the top state, added to the input: Y = X + Conv(h_top)."""

    @nn.compact
    def __call__(self, h_top: Array, x: Array) -> Array:
        init = nn.initializers.variance_scaling(0.01, "fan_in", "truncated_normal")
        r = Conv(x.shape[-1], use_bias=True, dtype=h_top.dtype, kernel_init=init, name="conv")(h_top)
        return x + r.astype(x.dtype)


def validate_input(x: Any, multiple: int = 1, min_size: int = 1) -> None:
    """Raise a clear ValueError for inputs the network cannot take (rank, channels, NaN/Inf)."""
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) != 4:
        raise ValueError(f"BPP input must be a batch of images shaped (B, H, W, 3); got shape {shape}")
    if shape[-1] != 3:
        raise ValueError(f"BPP input must have 3 (RGB) channels in the last axis; got shape {tuple(shape)}")
    if shape[1] < min_size or shape[2] < min_size:  # side by side: symbolic sides (jax.export) compare only to numbers
        raise ValueError(f"BPP input of size {shape[1]}x{shape[2]} is too small; this model needs at least {min_size}x{min_size}")
    if not isinstance(x, jax.core.Tracer) and not bool(np.all(np.isfinite(np.asarray(x, dtype=np.float32)))):
        raise ValueError("BPP input contains NaN or Inf values")


#: Where a conditioned BPP keeps its ``FactorFiLM`` parameters.
FACTOR_FILM = "factor_film"


class FactorFiLM(nn.Module):
    """Conditions the initial states on the SR factor s: h_l <- (1 + gamma_l(s)) h_l + beta_l(s), per channel.

    gamma_l and beta_l are affine in (z, z^2) with z = log2(s) - 1, so x2 is
    z = 0 and fractional factors fall between the trained ones. Zero-initialised:
    a new conditioned network (or one warm-started from an unconditioned
    model) starts as the unconditioned network.
    """

    features: Sequence[int]

    @nn.compact
    def __call__(self, h: Sequence[Array], factor: Array) -> list[Array]:
        z = jnp.log2(factor.astype(jnp.float32)) - 1.0
        e = jnp.stack([z, z * z], axis=-1)  # (B, 2)
        out = []
        for l, (hl, c) in enumerate(zip(h, self.features)):
            gb = nn.Dense(2 * int(c), kernel_init=nn.initializers.zeros, name=f"level_{l}")(e)
            gamma, beta = gb[:, None, None, :c], gb[:, None, None, c:]
            out.append((hl.astype(jnp.float32) * (1.0 + gamma) + beta).astype(hl.dtype))
        return out


class BPP(nn.Module):
    """The Back-Projection Pipeline.

    Attributes:
      features: channels per level, lowest resolution first (paper: 256, 128, 64, 48).
      depth: number of flux blocks D (paper: 16).
      instance_norm: IN before each ReLU; off means Dirac init plus Gaussian noise.
      down_projection: "carried" (analysis p, R after each update, none in the last
        block) or "eq2" (R recomputed at the start of every unit, Eq. 2 literally).
      dtype: compute dtype; parameters stay float32.
      remat: "none"; "block" (the backward pass recomputes each flux block from its
        outputs and stores only the down-projections, ``bppjax.models.reversible``);
        or "checkpoint" (``jax.checkpoint`` around each flux block).
      dirac_noise: std of the noise added to Dirac kernels when IN is off.
      freeze: LinearScope mode (see ``NormReLU``).
      factor_conditioning: the initial states are modulated by the SR factor
        (``FactorFiLM``), so that one network serves several factors knowing
        which one it enhances. The factor is bound with ``at_factor``.
      factor: the SR factor a conditioned network runs at: a number, or one per
        sample (B,); any positive value, fractional ones included. Not a
        config key: ``bppjax.models.at_factor(model, s)`` binds it.
    """

    features: Sequence[int] = (256, 128, 64, 48)
    depth: int = 16
    instance_norm: bool = True
    down_projection: str = "carried"
    dtype: Any = jnp.float32
    remat: str = "none"
    dirac_noise: float = 1e-3
    freeze: bool = False
    factor_conditioning: bool = False
    factor: Any = None

    @property
    def levels(self) -> int:
        return len(self.features)

    @property
    def multiple(self) -> int:
        """Height and width are padded to a multiple of this."""
        return 2 ** (self.levels - 1)

    @property
    def min_size(self) -> int:
        """Smallest height and width: reflect padding by 4 in the last scaler needs 5 pixels there."""
        return 5 * 2 ** max(self.levels - 2, 0) if self.levels > 1 else 1

    def state_shapes(self, height: int, width: int, batch: int = 1) -> list[tuple[int, int, int, int]]:
        """Shapes of the per-level states h_l for a ``(batch, height, width, C)`` input, lowest level first.

        The input is reflect-padded to a multiple of ``self.multiple``; each level up doubles the resolution.
        """
        m = self.multiple
        ph, pw = -(-height // m) * m, -(-width // m) * m
        return [(batch, ph * 2**l // m, pw * 2**l // m, int(c)) for l, c in enumerate(self.features)]

    def carries_r(self, t: int) -> bool:
        """Whether flux block ``t`` computes down-projections R_l: every block in the "eq2"
        reading, all but the last in the "carried" one (nothing reads the last block's)."""
        return self.down_projection == "eq2" or t < self.depth - 1

    def receptive_margin(self) -> int | None:
        """Radius (px) of the input region one output pixel can depend on, instance norm aside."""
        return receptive_radius(self.levels, self.depth, self.down_projection == "eq2")

    def macs_per_pixel(self, channels: int = 3) -> float:
        """Multiply-accumulates per output pixel of one forward pass (``receptive_radius``'s level layout).

        Level l holds N / 4^(L-1-l) of the N output pixels. The transposed conv
        of P_l costs 9 * 2C_{l-1} * C_l per level l-1 pixel (the zeros of its
        dilated input skipped), R_l 9 * C_l * C_{l-1} per level l-1 pixel.
        """
        c, L = [int(f) for f in self.features], self.levels
        pix = [4.0 ** -(L - 1 - l) for l in range(L)]
        scalers = sum(81 * channels * pix[l - 1] for l in range(1, L))
        analysis = sum(9 * channels * c[l] * pix[l] for l in range(L))
        if self.down_projection != "eq2":
            analysis += sum(9 * channels * c[l - 1] * pix[l - 1] for l in range(1, L))
        p_macs = sum(9 * 2 * c[l - 1] * c[l] * pix[l - 1] for l in range(1, L))
        r_macs = sum(9 * c[l] * c[l - 1] * pix[l - 1] for l in range(1, L))
        n_r = sum(self.carries_r(t) for t in range(self.depth))
        return scalers + analysis + self.depth * p_macs + n_r * r_macs + 9 * c[-1] * channels

    @property
    def can_replay_decisions(self) -> bool:
        """Whether LinearScope can record the decisions (IN statistics, ReLU masks) and replay them."""
        return True

    def frozen_twin(self) -> "BPP":
        """The same network in LinearScope mode (decisions frozen); parameters are shared."""
        return self.clone(freeze=True)

    def pad(self, x: Array) -> Array:
        """Reflect-pads H and W at the bottom/right to a multiple of ``multiple`` = 2^(L-1).

        ValueError for an input below ``min_size`` once padded, or too small to reflect.
        """
        H, W = x.shape[1], x.shape[2]
        m = self.multiple
        if -(-H // m) * m < self.min_size or -(-W // m) * m < self.min_size:
            raise ValueError(f"BPP input of size {H}x{W} is too small; {self.levels} levels need at least {self.min_size}x{self.min_size}")
        return pad_batch_to_multiple(x, m, "BPP input")

    def _kernel_init(self):
        return nn.initializers.lecun_normal() if self.instance_norm else dirac_init(self.dirac_noise)

    def pyramid(self, x: Array) -> list[Array]:
        """X_{L-1} = x, X_{l-1} = S_l(X_l); returned lowest level first."""
        xs = [x]
        for l in range(self.levels - 1, 0, -1):
            xs.append(Scaler(x.shape[-1], name=f"scaler_{l}")(xs[-1]))
        return xs[::-1]

    def states(self, x: Array) -> tuple[list[Array], list[Array | None]]:
        """Initial states h_l and down-projections p_l (Analysis of the pyramid)."""
        eq2 = self.down_projection == "eq2"
        return Analysis(self.features, not eq2, self.dtype, self._kernel_init(), name="analysis")(
            [xi.astype(self.dtype) for xi in self.pyramid(x)]
        )

    def block(self, t: int) -> nn.Module:
        """Flux block ``t`` (``block_XX``), wrapped in ``nn.remat`` for ``remat: checkpoint``."""
        cls = nn.remat(FluxBlock) if self.remat == "checkpoint" else FluxBlock
        return cls(**self._block_fields(t), name=f"block_{t:02d}")

    def _block_fields(self, t: int) -> dict[str, Any]:
        return dict(
            features=self.features,
            carries_r=self.carries_r(t),
            eq2=self.down_projection == "eq2",
            instance_norm=self.instance_norm,
            freeze=self.freeze,
            dtype=self.dtype,
            kernel_init=self._kernel_init(),
        )

    def bound_factor(self, batch: int) -> Array:
        """The bound SR factor, one per sample; a clear error when a conditioned network has none (at init, x2)."""
        if self.factor is None and self.is_initializing():
            return jnp.full((batch,), 2.0, jnp.float32)
        if self.factor is None:
            raise ValueError("this BPP is conditioned on the SR factor (model.factor_conditioning=True): bind the factor "
                             "first, bppjax.models.at_factor(model, scale) or LoadedModel.at_factor(scale)")
        f = jnp.asarray(self.factor, jnp.float32)
        if f.ndim > 1 or (f.ndim == 1 and f.shape[0] != batch):
            raise ValueError(f"the SR factor must be a number or one per sample ({batch}); got shape {f.shape}")
        if not isinstance(f, jax.core.Tracer) and not bool(np.all(f > 0)):
            raise ValueError(f"the SR factor must be > 0; got {np.asarray(f)}")
        return jnp.broadcast_to(f, (batch,))

    def validate(self) -> None:
        """Check the hyper-parameters (no binding needed); the model's one validator, which subclasses extend."""
        check_config(self)

    def check(self) -> None:
        """Checks made when the model runs: its hyper-parameters (subclasses add their own)."""
        self.validate()

    def evolve(self, h: Sequence[Array], p: Sequence[Array | None]) -> Sequence[Array]:
        """Depth dynamics from the initial states to the final ones: D flux blocks.

        The continuous-time model (``bppjax.models.ode.BPPODE``) overrides this
        with an ODE solve over the same parameters.
        """
        if self.remat == "block" and not (self.is_initializing() or self.freeze or self.is_mutable_collection("intermediates")):
            return self._reversible_evolve(h, p)
        for t in range(self.depth):
            h, p = self.block(t)(h, p)
        return h

    def _reversible_evolve(self, h: Sequence[Array], p: Sequence[Array | None]) -> Sequence[Array]:
        """The D flux blocks as one op whose backward pass rematerialises the states (``bppjax.models.reversible``).

        Initialisation, LinearScope (``freeze``) and sowing update norms take the
        plain path; the parameter tree is the same.
        """
        # Block 0's units: P_l is the same in every block, and R_l wherever a block has one.
        update, project = FluxBlock(**self._block_fields(0), parent=None).unit_functions()
        params = [self.variables["params"][f"block_{t:02d}"] for t in range(self.depth)]
        return reversible_blocks(update, project, params, h, p, eq2=self.down_projection == "eq2")

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Enhance a batch (B, H, W, 3) float images; any H, W (reflect-padded internally)."""
        self.check()
        validate_input(x, min_size=1)
        x = x.astype(jnp.float32)
        H, W = x.shape[1], x.shape[2]
        x = self.pad(x)
        h, p = self.states(x)
        if self.factor_conditioning:
            h = FactorFiLM(self.features, name=FACTOR_FILM)(h, self.bound_factor(x.shape[0]))
        h = self.evolve(h, p)
        y = Synthesis(name="synthesis")(h[-1], x)
        return y[:, :H, :W]


def receptive_radius(levels: int, depth: int, eq2: bool) -> int:
    """Radius (px) of the input support of one output pixel of a discrete BPP, by propagating intervals.

    r[l] is the radius, in input pixels, of the support of one feature of level
    l, whose features sit every s[l] = 2^(L-1-l) input pixels. An upper bound,
    tight to a few px (``bppjax.tiling.probe_receptive_margin``): 24 px for
    ``tiny``, 32 for ``small``, 164 for the paper's network.
    """
    s = [2 ** (levels - 1 - l) for l in range(levels)]
    rx = [0] * levels
    for l in range(levels - 1, 0, -1):
        rx[l - 1] = rx[l] + 4 * s[l]  # Scaler: 9 taps, stride 2
    rh = [rx[l] + s[l] for l in range(levels)]  # Analysis h: 3x3
    rp = [0] + [rx[l - 1] + s[l - 1] for l in range(1, levels)]  # Analysis p: 3x3 on the level below
    for t in range(depth):
        for l in range(1, levels):
            if eq2:
                rp[l] = rh[l] + s[l]  # R: stride-2 3x3 conv
            ru = max(rh[l - 1], rp[l])  # concat
            rh[l] = max(rh[l], ru + s[l])  # h += P(u): stride-2 transposed 3x3
            if not eq2 and t < depth - 1:
                rp[l] = rh[l] + s[l]
    return rh[-1] + 1  # Synthesis: 3x3


def check_config(m: BPP) -> None:
    """Validate BPP hyper-parameters with messages naming the offending field."""
    if len(m.features) < 1 or any(int(c) <= 0 for c in m.features):
        raise ValueError(f"model.features must be a non-empty list of positive ints; got {tuple(m.features)}")
    if m.depth < 1:
        raise ValueError(f"model.depth must be >= 1; got {m.depth}")
    if m.down_projection not in DOWN_PROJECTIONS:
        raise ValueError(f"model.down_projection must be one of {DOWN_PROJECTIONS}; got {m.down_projection!r}")
    if m.remat not in REMATS:
        raise ValueError(f"model.remat must be one of {REMATS}; got {m.remat!r}")
