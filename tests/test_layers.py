"""Layers with hand-written gradients, checked against plain autodiff and finite differences."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.test_util import check_grads

from bppjax.models import build_model, preset
from bppjax.models import gemm_conv as G
from bppjax.models import layers as L


def _rand(key, shape, dtype=jnp.float32):
    return jax.random.normal(jax.random.key(key), shape, dtype)


def _reference_conv_up(u, kernel):
    """The defining correlation with the zero-dilated input, through another JAX entry point.

    ``lax.conv_transpose`` (``transpose_kernel=False``) dilates the input and pads
    it (1, 2): the map ``layers.conv_up_dilated`` documents. Its equality with
    PyTorch's ``ConvTranspose2d`` is checked in ``test_torch_reference.py``.
    """
    return lax.conv_transpose(u, kernel, (2, 2), ((1, 2), (1, 2)), dimension_numbers=L._DN)


def _reference_norm_relu_conv_up(parts, kernel, instance_norm=True, eps=L.IN_EPS):
    """The unfused chain, differentiated by JAX."""
    u = jnp.concatenate(parts, axis=-1)
    if instance_norm:
        mean = jnp.mean(u, axis=(1, 2), keepdims=True)
        u = (u - mean) * lax.rsqrt(jnp.var(u, axis=(1, 2), keepdims=True) + eps)
    return _reference_conv_up(jnp.maximum(u, 0), kernel)


SHAPES = [(1, 4, 4, 3, 5), (2, 5, 3, 8, 48), (2, 3, 6, 4, 96)]  # b, h, w, cin, cout


@pytest.mark.parametrize("b, h, w, cin, cout", SHAPES)
def test_conv_up_forms_agree(b, h, w, cin, cout):
    u, k = _rand(0, (b, h, w, cin)), _rand(1, (3, 3, cin, cout))
    ref = _reference_conv_up(u, k)
    assert ref.shape == (b, 2 * h, 2 * w, cout)
    np.testing.assert_allclose(L.conv_up_dilated(u, k), ref, atol=1e-4)
    np.testing.assert_allclose(L.conv_up_phases(u, k), ref, atol=1e-4)
    np.testing.assert_allclose(jax.jit(L.conv_up)(u, k), ref, atol=1e-4)


@pytest.mark.parametrize("b, h, w, cin, cout", SHAPES)
def test_conv_up_gradients_match_autodiff(b, h, w, cin, cout):
    u, k, g = _rand(0, (b, h, w, cin)), _rand(1, (3, 3, cin, cout)), _rand(2, (b, 2 * h, 2 * w, cout))
    got = jax.vjp(L.conv_up, u, k)[1](g)
    want = jax.vjp(_reference_conv_up, u, k)[1](g)
    for a, e in zip(got, want):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4)


def _parts(b=2, h=5, w=4, widths=(3, 5), seed=0):
    # Offsets and scales per part, so that the instance norm has something to remove.
    return tuple(2.0 * _rand(seed + i, (b, h, w, c)) + (i + 1.5) for i, c in enumerate(widths))


@pytest.mark.parametrize("instance_norm", [True, False])
@pytest.mark.parametrize("widths, cout", [((3, 5), 4), ((8, 8), 48), ((6,), 96)])
def test_norm_relu_conv_up_matches_unfused(instance_norm, widths, cout):
    parts = _parts(widths=widths)
    k = _rand(9, (3, 3, sum(widths), cout))
    got = jax.jit(L.norm_relu_conv_up, static_argnums=(2, 3))(parts, k, instance_norm, L.IN_EPS)
    np.testing.assert_allclose(got, _reference_norm_relu_conv_up(parts, k, instance_norm), atol=1e-4)


@pytest.mark.parametrize("instance_norm", [True, False])
@pytest.mark.parametrize("widths, cout", [((3, 5), 4), ((8, 8), 48)])
def test_norm_relu_conv_up_gradients_match_autodiff(instance_norm, widths, cout):
    parts = _parts(widths=widths)
    k = _rand(9, (3, 3, sum(widths), cout))
    y, vjp = jax.vjp(lambda p, k: L.norm_relu_conv_up(p, k, instance_norm), parts, k)
    g = _rand(11, y.shape)
    got = vjp(g)
    want = jax.vjp(lambda p, k: _reference_norm_relu_conv_up(p, k, instance_norm), parts, k)[1](g)
    for a, e in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4 * float(jnp.abs(e).max()))


def test_gradients_by_finite_differences():
    """float64 finite differences: the custom VJPs against the definition, not against another VJP."""
    with jax.enable_x64(True):
        u = jax.random.normal(jax.random.key(0), (1, 3, 4, 2), jnp.float64)
        k = jax.random.normal(jax.random.key(1), (3, 3, 2, 3), jnp.float64)
        check_grads(L.conv_up, (u, k), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)
        parts = tuple(jax.random.normal(jax.random.key(i + 2), (2, 3, 3, c), jnp.float64) + i for i, c in enumerate((2, 3)))
        k2 = jax.random.normal(jax.random.key(5), (3, 3, 5, 2), jnp.float64)
        for instance_norm in (True, False):
            f = lambda p0, p1, k: L.norm_relu_conv_up((p0, p1), k, instance_norm)  # noqa: E731
            check_grads(f, (*parts, k2), order=1, modes=["rev"], atol=1e-5, rtol=1e-5)


def test_backward_passes_are_linear_in_the_cotangent():
    """LinearScope transposes VJPs (``jax.linear_transpose``); it must see linear primitives only."""
    parts, k = _parts(widths=(3, 5)), _rand(9, (3, 3, 8, 4))
    y, vjp = jax.vjp(lambda p, k: L.norm_relu_conv_up(p, k), parts, k)
    t = jax.linear_transpose(vjp, y)
    (back,) = t((tuple(jnp.ones_like(p) for p in parts), jnp.ones_like(k)))
    assert back.shape == y.shape and bool(jnp.all(jnp.isfinite(back)))


def test_bfloat16_close_to_float32():
    parts, k = _parts(widths=(8, 8)), _rand(9, (3, 3, 16, 48)) * 0.1
    y32 = L.norm_relu_conv_up(parts, k)
    y16 = L.norm_relu_conv_up(tuple(p.astype(jnp.bfloat16) for p in parts), k.astype(jnp.bfloat16))
    assert y16.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y16, np.float32), y32, atol=0.05 * float(jnp.abs(y32).max()))
    g = jax.grad(lambda p: jnp.sum(L.norm_relu_conv_up(p, k.astype(jnp.bfloat16)).astype(jnp.float32)))(
        tuple(p.astype(jnp.bfloat16) for p in parts))
    assert all(a.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(a))) for a in g)


@pytest.mark.parametrize("instance_norm", [True, False])
def test_fused_model_path_equals_unfused_path(instance_norm):
    """BPP's fused upscale (no freeze) against the unfused one (LinearScope's record mode)."""
    cfg = preset("tiny")
    cfg.instance_norm = instance_norm
    cfg.dirac_noise = 0.1
    x = jax.random.uniform(jax.random.key(0), (2, 24, 16, 3))
    model = build_model(cfg)
    params = model.init(jax.random.key(1), x)["params"]
    y = model.apply({"params": params}, x)
    frozen = build_model(cfg, freeze=True)
    assert jax.tree.structure(frozen.init(jax.random.key(1), x)["params"]) == jax.tree.structure(params)
    y_unfused, _ = frozen.apply({"params": params}, x, mutable=["frozen"])
    np.testing.assert_allclose(y, y_unfused, atol=1e-5)


def test_compiler_options():
    assert L.compiler_options("none") == {}
    assert L.compiler_options("block") == {}  # the sweep orders its own recomputation
    if jax.default_backend() == "cpu":
        assert L.compiler_options("checkpoint") == {"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"}


def test_convup_rejects_unknown_prenorm():
    with pytest.raises(ValueError, match="prenorm"):
        L.ConvUp(4, prenorm="bn").init(jax.random.key(0), jnp.ones((1, 2, 2, 3)), jnp.ones((1, 2, 2, 3)))


# --------------------------------------------------------------------------- convolutions as GEMMs


@pytest.mark.parametrize("h, w, stride", [(10, 12, 1), (10, 12, 2), (9, 7, 2), (9, 7, 1)])
def test_gemm_conv2d_and_its_gradients_equal_the_lax_convolution(h, w, stride):
    x, k = _rand(0, (2, h, w, 5)), _rand(1, (3, 3, 5, 7))
    y, vjp = jax.vjp(lambda a, b: G.conv2d(a, b, stride), x, k)
    y_ref, vjp_ref = jax.vjp(lambda a, b: lax.conv_general_dilated(a, b, (stride, stride), ((1, 1), (1, 1)),
                                                                      dimension_numbers=L._DN), x, k)
    np.testing.assert_allclose(y, y_ref, atol=1e-4)
    g = _rand(2, y.shape)
    for a, e in zip(vjp(g), vjp_ref(g)):
        np.testing.assert_allclose(a, e, atol=1e-4)


@pytest.mark.parametrize("h, w, stride, k", [(10, 12, 1, 3), (10, 12, 2, 3), (9, 7, 2, 3), (9, 7, 1, 3), (8, 8, 2, 1)])
def test_loop_conv2d_gradients_equal_autodiff_of_the_lax_convolution(h, w, stride, k):
    """``impl="loop"``: the hand-written VJP (canonical convolution + per-tap GEMMs) against JAX's."""
    x, kernel = _rand(0, (2, h, w, 5)), _rand(1, (k, k, 5, 7))
    y, vjp = jax.vjp(lambda a, b: L.conv2d(a, b, stride, impl="loop"), x, kernel)
    y_ref, vjp_ref = jax.vjp(lambda a, b: L.conv2d(a, b, stride, impl="xla"), x, kernel)
    np.testing.assert_array_equal(y, y_ref)  # the same forward convolution
    g = _rand(2, y.shape)
    for a, e in zip(vjp(g), vjp_ref(g)):
        np.testing.assert_allclose(a, e, atol=1e-4)
    # Linear in the cotangent, as LinearScope needs.
    t = jax.linear_transpose(vjp, y)
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in t((jnp.ones_like(x), jnp.ones_like(kernel))))


def test_gemm_conv_up_forward_and_input_gradient_equal_the_definition():
    u, k = _rand(0, (2, 5, 6, 8)), _rand(1, (3, 3, 8, 4))
    y, vjp = jax.vjp(lambda a: _reference_conv_up(a, k), u)
    np.testing.assert_allclose(G.conv_up_forward(u, k), y, atol=1e-4)
    g = _rand(2, y.shape)
    np.testing.assert_allclose(G.conv_up_input_grad(g, k), vjp(g)[0], atol=1e-4)


def _lowered(f, *args, platform=None):
    """The StableHLO of ``f`` lowered for ``platform`` (default: this process's backend)."""
    if platform is None:
        return jax.jit(f).lower(*args).as_text()
    return jax.export.export(jax.jit(f), platforms=[platform])(*args).mlir_module()


def _ops(f, *args, platform=None):
    text = _lowered(f, *args, platform=platform)
    return {"conv": "stablehlo.convolution" in text, "dot": "stablehlo.dot_general" in text}


def test_auto_runs_bfloat16_convolutions_as_gemms_on_cpu_only():
    x, k = _rand(0, (1, 8, 8, 16)), _rand(1, (3, 3, 16, 32))
    bf = (x.astype(jnp.bfloat16), k.astype(jnp.bfloat16))
    on_cpu = jax.default_backend() == "cpu"
    assert _ops(L.conv2d, x, k) == {"conv": True, "dot": False}
    assert _ops(L.conv2d, *bf) == {"conv": not on_cpu, "dot": on_cpu}
    assert _ops(lambda a, b: L.conv2d(a, b, impl="xla"), *bf) == {"conv": True, "dot": False}
    assert _ops(lambda a, b: L.conv2d(a, b, impl="gemm"), x, k) == {"conv": False, "dot": True}
    # 3 input channels (the analysis conv of RGB) stay a direct convolution.
    assert _ops(lambda a, b: L.conv2d(a, b, impl="gemm"), x[..., :3], k[:, :, :3]) == {"conv": True, "dot": False}
    u = _rand(2, (1, 4, 4, 32)).astype(jnp.bfloat16)
    up_grad = jax.grad(lambda u, k: jnp.sum(L.conv_up(u, k).astype(jnp.float32)))
    assert _ops(up_grad, u, bf[1].transpose(0, 1, 3, 2)) == {"conv": not on_cpu, "dot": on_cpu}
    # A program lowered for a GPU keeps the plain convolutions, whatever backend traced it.
    assert _ops(L.conv2d, *bf, platform="cuda") == {"conv": True, "dot": False}
    assert _ops(up_grad, u, bf[1].transpose(0, 1, 3, 2), platform="cuda") == {"conv": True, "dot": False}
    with pytest.raises(ValueError, match="conv impl must be one of"):
        L.conv2d(x, k, impl="cudnn")


def test_a_bfloat16_bpp_on_cpu_runs_its_flux_convolutions_as_gemms():
    cfg = preset("tiny")
    cfg.features = (16, 16, 24)
    x = jax.random.uniform(jax.random.key(0), (1, 24, 16, 3))
    counts = {}
    for dtype in ("float32", "bfloat16"):
        cfg.dtype = dtype
        model = build_model(cfg)
        params = model.init(jax.random.key(1), x)["params"]
        text = _lowered(jax.grad(lambda p: jnp.mean(model.apply({"params": p}, x).astype(jnp.float32))), params)
        counts[dtype] = (text.count("stablehlo.convolution"), text.count("stablehlo.dot_general"))
    if jax.default_backend() == "cpu":  # left as convolutions: those of the RGB image (analysis, synthesis, scalers)
        assert counts["bfloat16"][0] < counts["float32"][0] / 2 and counts["bfloat16"][1] > counts["float32"][1], counts


@pytest.mark.parametrize("widths, cout", [((16, 16), 16), ((24,), 64)])
def test_norm_relu_conv_up_as_gemms_equals_the_lax_path_with_gradients(widths, cout):
    parts, k = _parts(widths=widths), _rand(9, (3, 3, sum(widths), cout)) * 0.1
    y, vjp = jax.vjp(lambda p, k: L.norm_relu_conv_up(p, k, True, L.IN_EPS, "gemm"), parts, k)
    y_ref, vjp_ref = jax.vjp(lambda p, k: L.norm_relu_conv_up(p, k, True, L.IN_EPS, "xla"), parts, k)
    np.testing.assert_allclose(y, y_ref, atol=1e-4)
    g = _rand(3, y.shape)
    for a, e in zip(jax.tree.leaves(vjp(g)), jax.tree.leaves(vjp_ref(g))):
        np.testing.assert_allclose(a, e, atol=1e-4)
    (back,) = jax.linear_transpose(vjp, y)((tuple(jnp.ones_like(p) for p in parts), jnp.ones_like(k)))
    assert back.shape == y.shape and bool(jnp.all(jnp.isfinite(back)))  # still linear in the cotangent (LinearScope)
