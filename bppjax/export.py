"""Export a trained model to ONNX or to StableHLO, each file checked against JAX before it is written.

(Not to be confused with ``bppjax.zoo.export``, which writes the model cards of the shipped models.)

::

    python -m bppjax.export bpp-sr-x2 --format onnx --out bpp-sr-x2.onnx
    python -m bppjax.export runs/default --format stablehlo --out default.stablehlo [--tile 96]

    from bppjax.export import export_model
    result = export_model("bpp-sr-x2", "onnx", "bpp-sr-x2.onnx")   # result.max_abs_diff, result.metadata

What is exported is the network on its input, float32 in [0, 1], whatever
``bppjax.models.input_space(model)`` says it takes: the bicubic-upscaled image
for BPP and the ResNet (output the same size), the low-resolution image for
EDSR (output ``scale`` times larger).

* **Layout**: ONNX files take and return NCHW (``(B, 3, H, W)``), the layout of
  the ONNX tools (ONNX Runtime users, OpenCV's ``dnn.blobFromImage``,
  chaiNNer); StableHLO files keep JAX's NHWC (``(B, H, W, 3)``), since they are
  called from JAX.
* **Shapes**: batch, height and width are dynamic (from ``min_size`` up). BPP
  reflect-pads its input to a multiple of ``model.multiple``; here that padding
  is a reflection by ``multiple - 1`` rows and columns followed by a slice to
  the rounded-up size, which both formats express with symbolic sizes. With
  ``tile`` the height and width are fixed instead (for models whose forward
  pass needs concrete sizes, or runtimes that want static shapes).
* **Formulations**: layers choose CPU-tuned formulations per lowering platform
  (``bppjax.models.backend``). ONNX gets the platform-independent one
  (``platform_free``): plain convolutions and transposed convolutions. The
  StableHLO file is lowered for CPU and CUDA; the platform is chosen when it
  is compiled.
* **Model card**: ONNX ``metadata_props`` and a JSON file beside the StableHLO
  file (``FILE.json``) carry the model name, scale, input convention, layout,
  training data, scores, the SHA-256 of the weights, the size multiple and the
  tiling the library uses for the model (``tile``, ``stride``, ``margin``).
* **Check**: before the file is written its output is compared with the JAX
  model's on random [0, 1] images of several sizes (odd ones included); above
  ``ONNX_TOLERANCE`` / ``STABLEHLO_TOLERANCE`` nothing is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import export as jax_export
from jax import lax

PyTree = Any

FORMATS = ("onnx", "stablehlo")
#: Models this module knows how to export (class names); the ODE model's adaptive solver loops are not.
EXPORTABLE = ("BPP", "ResNet", "EDSR")
#: Max abs difference from the JAX output that an exported file may show.
ONNX_TOLERANCE = 1e-4
STABLEHLO_TOLERANCE = 1e-6
#: Platforms the StableHLO file is lowered for.
STABLEHLO_PLATFORMS = ("cpu", "cuda")
ONNX_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "input", "output"


class ExportError(ValueError):
    """A model, format or output path that cannot be exported, or an exported file that fails its check."""


class ParityError(ExportError):
    """An exported file whose output differs from the JAX model's by more than the tolerance (nothing written)."""


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What ``export_model`` wrote: the file, its metadata and the measured max abs difference from JAX."""

    path: Path
    format: str
    metadata: dict[str, str]
    max_abs_diff: float
    checked_shapes: tuple[tuple[int, ...], ...]
    sidecar: Path | None = None


# --------------------------------------------------------------------------- the function that is exported


def input_space(model: Any) -> str:
    """``"upscaled"`` or ``"lr"``: what the model takes (``bppjax.models.input_space`` where it exists)."""
    from bppjax import models

    ask = getattr(models, "input_space", None)
    return ask(model) if ask is not None else str(getattr(model, "input_space", "upscaled"))


def output_scale(model: Any) -> int:
    """Output side / input side: ``model.scale`` for models on the LR image, else 1."""
    return int(getattr(model, "scale", 1)) if input_space(model) == "lr" else 1


def pad_to_multiple(x: jax.Array, multiple: int) -> jax.Array:
    """Reflect-pad a (B, H, W, C) batch at the bottom/right to multiples of ``multiple``, also for symbolic H, W.

    Same values as ``bppjax.models.padding.pad_batch_to_multiple``: a reflection by
    ``multiple - 1`` (a static amount) then a slice to the rounded-up size (a
    symbolic one). Needs H, W >= ``multiple``.
    """
    if multiple <= 1:
        return x
    b, h, w, c = x.shape
    big = jnp.pad(x, ((0, 0), (0, multiple - 1), (0, multiple - 1), (0, 0)), mode="reflect")
    # (n + m - 1) // m rather than -(-n // m): ONNX divides integers towards zero.
    up = lambda n: (n + multiple - 1) // multiple * multiple  # noqa: E731
    return lax.slice(big, (0, 0, 0, 0), (b, up(h), up(w), c))


def network_function(model: Any, params: PyTree) -> Callable[[jax.Array], jax.Array]:
    """``x -> model(x)`` on NHWC float32 batches of any size the model takes, written for symbolic shapes."""
    variables = {"params": params}
    multiple = int(getattr(model, "multiple", 1))
    if input_space(model) == "lr" or multiple <= 1:
        return lambda x: model.apply(variables, x.astype(jnp.float32))

    def forward(x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        y = model.apply(variables, pad_to_multiple(x.astype(jnp.float32), multiple))
        return lax.slice(y, (0, 0, 0, 0), (b, h, w, c))

    return forward


def input_spec(model: Any, tile: int | None = None) -> jax.ShapeDtypeStruct:
    """The exported input: (B, H, W, 3) float32, H and W symbolic from ``model.min_size`` up, or ``tile`` x ``tile``."""
    low = max(int(getattr(model, "min_size", 1)), int(getattr(model, "multiple", 1)))
    if tile is not None:
        if int(tile) < low:
            raise ExportError(f"--tile {tile} is below this model's smallest input side, {low}")
        b, = jax_export.symbolic_shape("B")
        return jax.ShapeDtypeStruct((b, int(tile), int(tile), 3), jnp.float32)
    shape = jax_export.symbolic_shape("B, H, W, 3", constraints=(f"H >= {low}", f"W >= {low}"))
    return jax.ShapeDtypeStruct(shape, jnp.float32)


# --------------------------------------------------------------------------- platform-independent jaxpr

_INLINED = ("jit", "pjit", "closed_call", "core_call", "remat", "checkpoint", "custom_jvp_call", "custom_vjp_call")


def _default_branch(platforms: Sequence[Any]) -> int:
    for i, names in enumerate(platforms):
        if names is None:  # the ``default=`` branch of lax.platform_dependent
            return i
    raise ExportError(f"an op has formulations only for platforms {tuple(platforms)} and none for other runtimes")


def _eval_platform_free(closed: Any, *args: Any) -> list[Any]:
    from jax.extend import core as jcore

    env: dict[Any, Any] = {}
    read = lambda v: v.val if isinstance(v, jcore.Literal) else env[v]  # noqa: E731
    env.update(zip(closed.jaxpr.constvars, closed.consts))
    env.update(zip(closed.jaxpr.invars, args))
    for eqn in closed.jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        if name == "platform_index":
            outs = [_default_branch(eqn.params["platforms"])]
        elif name == "cond" and isinstance(ins[0], int):
            outs = _eval_platform_free(eqn.params["branches"][ins[0]], *ins[1:])
        elif name in _INLINED:
            sub = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
            sub = sub if isinstance(sub, jcore.ClosedJaxpr) else jcore.ClosedJaxpr(sub, ())
            outs = _eval_platform_free(sub, *ins)
        else:
            out = eqn.primitive.bind(*ins, **eqn.params)
            outs = out if eqn.primitive.multiple_results else [out]
        env.update(zip(eqn.outvars, outs))
    return [read(v) for v in closed.jaxpr.outvars]


def platform_free(fn: Callable[[jax.Array], jax.Array], spec: jax.ShapeDtypeStruct) -> Callable[[jax.Array], jax.Array]:
    """``fn`` with every ``lax.platform_dependent`` choice resolved to its platform-independent branch.

    The conversion rule ONNX needs for ``bppjax.models.backend``: the jaxpr of
    ``fn`` is replayed with each ``platform_index`` replaced by the index of the
    ``default`` branch and each ``cond`` on it by that branch, and nested calls
    (``jit``, custom VJPs, whose derivatives inference does not need) inlined.
    The result is traceable again, at the same (symbolic) input shape.
    """
    closed = jax.make_jaxpr(fn)(spec)
    return lambda x: _eval_platform_free(closed, x)[0]


# --------------------------------------------------------------------------- metadata


def weights_sha256(params: PyTree) -> str:
    """SHA-256 of the parameters as ``flax.serialization`` msgpack (the zoo's weights file format)."""
    from flax import serialization

    return hashlib.sha256(serialization.msgpack_serialize(jax.tree.map(np.asarray, params))).hexdigest()


def model_metadata(loaded: Any, name: str, card: dict[str, Any] | None = None) -> dict[str, str]:
    """The model card facts an exported file carries, as strings (ONNX ``metadata_props`` are strings)."""
    from bppjax import __version__
    from bppjax.tiling import resolve_spec

    model, config = loaded.model, loaded.config
    data = config.get("data", {}) if hasattr(config, "get") else {}
    scales = [float(s) for s in (data.get("scales") or [])] if hasattr(data, "get") else []
    meta: dict[str, Any] = {
        "name": name,
        "producer": f"bppjax {__version__}",
        "arch": type(model).__name__,
        "input_space": input_space(model),
        "input": "float32 RGB in [0, 1]; " + (
            "the low-resolution image" if input_space(model) == "lr" else "the MATLAB-bicubic-upscaled image"),
        "output_scale": output_scale(model),
        "scales": ",".join(f"{s:g}" for s in scales),
        "multiple": int(getattr(model, "multiple", 1)),
        "min_size": int(getattr(model, "min_size", 1)),
        "params": int(sum(np.size(p) for p in jax.tree.leaves(loaded.params))),
        "steps": int(loaded.step),
    }
    try:
        spec = resolve_spec(model, "auto", patch=loaded.patch)
        meta.update(tile=spec.tile or 0, stride=spec.stride, margin=spec.margin)
    except (TypeError, ValueError):
        pass
    if card is not None:
        training = card.get("training", {})
        meta.update(
            weights_sha256=card.get("sha256", ""),
            training_data=",".join(training.get("data", [])),
            training_command=training.get("command", ""),
            description=card.get("description", ""),
            scores=json.dumps(card.get("evaluation", {}).get("results", {}), sort_keys=True),
            scores_convention=card.get("evaluation", {}).get("convention", ""),
            scores_command=card.get("evaluation", {}).get("command", ""),
        )
    else:
        train = data.get("train", {}) if hasattr(data, "get") else {}
        dirs = train.get("dirs", []) if hasattr(train, "get") else []
        meta.update(
            weights_sha256=weights_sha256(loaded.params),
            training_data=",".join(Path(str(d)).name for d in dirs) or str(train.get("source", "")),
        )
    return {k: str(v) for k, v in meta.items()}


# --------------------------------------------------------------------------- conversion


def to_onnx(fn: Callable, spec: jax.ShapeDtypeStruct, metadata: dict[str, str], name: str = "bppjax") -> bytes:
    """Serialised ONNX model of ``fn`` (NCHW in and out) with ``metadata`` as ``metadata_props``."""
    try:
        from jax2onnx import to_onnx as jax2onnx_convert
    except ImportError as e:
        raise ExportError(f"ONNX export needs jax2onnx and onnx ({e}); pip install 'bppjax[dev]'") from None
    proto = jax2onnx_convert(
        platform_free(fn, spec), [spec], model_name=name, opset=ONNX_OPSET,
        inputs_as_nchw=[0], outputs_as_nchw=[0], input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
    )
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = f"{metadata.get('name', name)}: {metadata.get('input', '')}; layout NCHW"
    return proto.SerializeToString()


def to_stablehlo(fn: Callable, spec: jax.ShapeDtypeStruct, platforms: Sequence[str] = STABLEHLO_PLATFORMS) -> bytes:
    """``jax.export``'s serialised form of ``fn`` (NHWC), lowered for ``platforms``."""
    return bytes(jax_export.export(jax.jit(fn), platforms=tuple(platforms))(spec).serialize())


# --------------------------------------------------------------------------- parity


def check_shapes(model: Any, tile: int | None = None) -> tuple[tuple[int, int, int, int], ...]:
    """Input shapes (NHWC) an export is checked on: odd, even and non-square sides, batch 1 and 2."""
    if tile is not None:
        return ((1, tile, tile, 3), (2, tile, tile, 3))
    low = max(int(getattr(model, "min_size", 1)), int(getattr(model, "multiple", 1)), 8)
    odd = low | 1
    return ((1, odd, odd + 2, 3), (2, 2 * low + 3, low + 6, 3), (1, 4 * low, 4 * low, 3))


def random_inputs(shapes: Sequence[Sequence[int]], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random(tuple(s), dtype=np.float32) for s in shapes]


def onnx_runner(model_bytes: bytes | str | Path, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """An ONNX Runtime (CPU) function NHWC float32 batch -> NHWC output, for an exported bppjax ONNX file."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    src = model_bytes if isinstance(model_bytes, bytes) else str(model_bytes)
    session = ort.InferenceSession(src, options, providers=["CPUExecutionProvider"])

    def run(x: np.ndarray) -> np.ndarray:
        y = session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(np.asarray(x, np.float32).transpose(0, 3, 1, 2))})[0]
        return y.transpose(0, 2, 3, 1)

    return run


def stablehlo_runner(blob: bytes) -> Callable[[np.ndarray], np.ndarray]:
    """``jax.export.deserialize`` of an exported file, as a function NHWC batch -> NHWC output."""
    exported = jax_export.deserialize(bytearray(blob))
    return lambda x: np.asarray(exported.call(jnp.asarray(x, jnp.float32)))


def max_abs_diff(run: Callable[[np.ndarray], np.ndarray], reference: Callable, inputs: Sequence[np.ndarray]) -> float:
    """Largest |run(x) - reference(x)| over the inputs; inf when a shape differs."""
    worst = 0.0
    for x in inputs:
        got, want = np.asarray(run(x)), np.asarray(reference(x))
        if got.shape != want.shape:
            return float("inf")
        worst = max(worst, float(np.max(np.abs(got - want))))
    return worst


# --------------------------------------------------------------------------- the whole export


def _check_writable(out: Path) -> None:
    if out.is_dir():
        raise ExportError(f"output path {out} is a folder; give a file name")
    try:
        with tempfile.NamedTemporaryFile(dir=out.parent if str(out.parent) else ".", prefix=f".{out.name}.", delete=True):
            pass
    except OSError as e:
        raise ExportError(f"cannot write the output path {out}: {e.strerror or e}") from None


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # a reader never sees half a file


def load(spec: Any, overrides: Sequence[str] = ()) -> tuple[Any, str, dict[str, Any] | None]:
    """(LoadedModel, name, model card or None) of a zoo name, a workdir, or a LoadedModel."""
    import bppjax
    from bppjax import zoo

    if isinstance(spec, bppjax.LoadedModel):
        return spec, "model", None
    try:
        loaded = bppjax.load_model(spec, overrides)
    except (FileNotFoundError, ValueError) as e:  # a missing workdir, an unknown zoo name, a bad override
        raise ExportError(f"{e}") from None
    if zoo.is_zoo_name(spec):
        return loaded, str(spec), zoo.card(str(spec))
    return loaded, Path(str(spec)).name, None


def export_model(
    model: Any,
    format: str,
    out: str | Path,
    *,
    tile: int | None = None,
    overrides: Sequence[str] = (),
    check: bool = True,
    scale: float | None = None,
) -> ExportResult:
    """Export a zoo model (by name), a workdir or a ``LoadedModel`` to ``out`` as ``format`` ("onnx" or "stablehlo").

    The file is written (atomically) only after its output matched the JAX
    model's on ``check_shapes`` inputs within ``ONNX_TOLERANCE`` /
    ``STABLEHLO_TOLERANCE``; for StableHLO the metadata goes to ``out + ".json"``.
    A model conditioned on the SR factor is exported at one factor, ``scale``.

    Raises:
      ExportError: unknown format or model, unsupported architecture, an
        unwritable ``out``, or a file whose output differs from JAX's.
    """
    if format not in FORMATS:
        raise ExportError(f"unsupported format {format!r}; choose one of: {', '.join(FORMATS)}")
    out = Path(out)
    _check_writable(out)
    from bppjax.models import conditioned_on_factor  # noqa: PLC0415 - as the other model imports here

    loaded, name, card = load(model, overrides)
    if conditioned_on_factor(loaded.model):
        if scale is None:
            raise ExportError(f"{name} is conditioned on the SR factor: export it at one factor (--scale, e.g. --scale 3)")
        loaded = loaded.at_factor(float(scale))
    arch = type(loaded.model).__name__
    if arch not in EXPORTABLE:
        raise ExportError(f"unsupported architecture {arch} for export; supported: {', '.join(EXPORTABLE)}")
    metadata = model_metadata(loaded, name, card)
    if conditioned_on_factor(loaded.model):
        metadata["factor"] = f"{float(scale):g}"  # metadata values are strings (ONNX metadata_props)
    metadata.update(format=format, layout="NCHW" if format == "onnx" else "NHWC",
                    shape=f"fixed {tile}x{tile}" if tile else "dynamic")
    fn = network_function(loaded.model, loaded.params)
    spec = input_spec(loaded.model, tile)
    try:
        if format == "onnx":
            blob = to_onnx(fn, spec, metadata, name)
        else:
            blob = to_stablehlo(fn, spec)
    except (jax.errors.InconclusiveDimensionOperation, TypeError, ValueError) as e:  # TypeError: concrete values needed
        if tile is not None or isinstance(e, ExportError):
            raise
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise ExportError(f"{arch} cannot be exported with dynamic height/width ({first}); pass --tile N") from None
    shapes = check_shapes(loaded.model, tile)
    diff = float("nan")  # not measured
    if check:
        from bppjax.tiling import make_apply_fn

        reference = make_apply_fn(loaded.model, loaded.params)  # one compilation per architecture and shape
        run = onnx_runner(blob) if format == "onnx" else stablehlo_runner(blob)
        diff = max_abs_diff(run, reference, random_inputs(shapes))
        tolerance = ONNX_TOLERANCE if format == "onnx" else STABLEHLO_TOLERANCE
        if not diff <= tolerance:
            raise ParityError(f"the exported {format} model differs from JAX by {diff:.3g} (> {tolerance:g}); nothing written")
    _write(out, blob)
    sidecar = None
    if format == "stablehlo":
        sidecar = out.with_name(out.name + ".json")
        card_json = dict(metadata, platforms=",".join(STABLEHLO_PLATFORMS), max_abs_diff=f"{diff:.3g}")
        _write(sidecar, (json.dumps(card_json, indent=2) + "\n").encode())
    return ExportResult(out, format, metadata, diff, tuple(tuple(s) for s in shapes), sidecar)


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """``metadata_props`` of an ONNX file as a dict (what ``export_model`` wrote)."""
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


# --------------------------------------------------------------------------- command line


def _parser():
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m bppjax.export",
        description="Export a zoo model or a trained workdir to ONNX (NCHW) or StableHLO (NHWC), checked against JAX.",
    )
    p.add_argument("model", help="a zoo model name (python -m bppjax.zoo lists them) or a workdir")
    p.add_argument("--format", required=True, help="onnx or stablehlo")
    p.add_argument("--out", required=True, help="file to write (StableHLO: its metadata goes to FILE.json)")
    p.add_argument("--tile", type=int, default=None,
                   help="fixed input height and width (px of the model's input) instead of dynamic ones")
    p.add_argument("--config", action="append", default=[], metavar="KEY=VALUE", help="config override, e.g. model.dtype=float32")
    p.add_argument("--scale", type=float, default=None, help="the SR factor, for a model conditioned on it (model.factor_conditioning)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    import sys

    from bppjax.cli import EXIT_FAILED, command, usage_error

    @command
    def run(args_list: Sequence[str]) -> int:
        args = _parser().parse_args(args_list)
        try:
            result = export_model(args.model, args.format, args.out, tile=args.tile, overrides=args.config, scale=args.scale)
        except ParityError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_FAILED
        except ExportError as e:
            return usage_error(e)
        shapes = ", ".join("x".join(map(str, s[:3])) for s in result.checked_shapes)
        tolerance = ONNX_TOLERANCE if result.format == "onnx" else STABLEHLO_TOLERANCE
        print(f"wrote {result.path} ({result.format}, {result.metadata['layout']}, {result.metadata['shape']} H/W)")
        if result.sidecar is not None:
            print(f"wrote {result.sidecar} (model card)")
        print(f"checked against JAX on {shapes} (BxHxW): max abs difference {result.max_abs_diff:.3g} <= {tolerance:g}")
        return 0

    return run(argv)


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "EXPORTABLE", "FORMATS", "ExportError", "ExportResult", "ParityError", "ONNX_TOLERANCE", "STABLEHLO_TOLERANCE",
    "check_shapes",
    "export_model", "input_space", "main", "input_spec", "max_abs_diff", "model_metadata", "network_function", "onnx_runner",
    "pad_to_multiple", "platform_free", "read_onnx_metadata", "stablehlo_runner", "to_onnx", "to_stablehlo",
]
