"""An independent PyTorch implementation of BPP (docs/ARCHITECTURE.md).

It exists for two reasons: as a cross-check of the Flax model (same weights,
same outputs, ``tests/test_torch_reference.py``) and as the PyTorch side of
``python -m bppjax.bench --torch`` (same network, timed in its own process, in
float32 and under ``torch.autocast("cpu", dtype=torch.bfloat16)``: float32
weights and optimiser, bfloat16 convolutions).

Written from the spec, NCHW, in the plain PyTorch idiom (``nn.Conv2d``,
``nn.ConvTranspose2d``, ``F.instance_norm``); it shares no code with
``bppjax``. ``load_flax_params`` maps a Flax parameter tree (as numpy arrays)
onto it. Run directly it times itself and prints one JSON line::

    python benchmarks/torch_bpp.py --preset paper --json /tmp/torch.json
    python benchmarks/torch_bpp.py --preset paper --dtype bfloat16

The JSON holds, per preset, the float32 figures at the top level and the
bfloat16 ones under ``"bfloat16"`` (the layout of ``bppjax.benchmark``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

BICUBIC_HALF_TAPS = [0, -0.01171875, -0.03515625, 0.11328125, 0.43359375, 0.43359375, 0.11328125, -0.03515625, -0.01171875]

#: The presets of ``bppjax.models.presets`` that the bench times (kept in sync by a test).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(features=(256, 128, 64, 48), depth=16),
    "small": dict(features=(32, 24, 16), depth=4),
    "tiny": dict(features=(8, 8, 8), depth=2),
}


class Scaler(nn.Module):
    """Depthwise 9x9 stride-2 conv with reflect padding 4, bicubic init."""

    def __init__(self, channels: int = 3):
        super().__init__()
        k = torch.tensor(BICUBIC_HALF_TAPS)
        self.weight = nn.Parameter(torch.outer(k, k).expand(channels, 1, 9, 9).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2] // 2, x.shape[-1] // 2
        y = F.conv2d(F.pad(x, (4, 4, 4, 4), mode="reflect"), self.weight, stride=2, groups=x.shape[1])
        return y[..., :h, :w]


def _conv(cin: int, cout: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=bias)


class FluxUnit(nn.Module):
    """Level l >= 1: h += ConvT(ReLU(IN(cat[h_lower, p]))); p = Conv_s2(h)."""

    def __init__(self, c: int, c_lower: int, downscale: bool, instance_norm: bool):
        super().__init__()
        self.instance_norm = instance_norm
        self.upscale = nn.ConvTranspose2d(2 * c_lower, c, 3, stride=2, padding=1, output_padding=1, bias=False)
        self.downscale = _conv(c, c_lower, stride=2) if downscale else None

    def update(self, h_lower: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        u = torch.cat([h_lower, p], 1)
        if self.instance_norm:
            u = F.instance_norm(u, eps=1e-5)
        return self.upscale(F.relu(u))

    def forward(self, h_lower, h, p, eq2: bool = False):
        if eq2:
            p = self.downscale(h)
        h = h + self.update(h_lower, p)
        p = self.downscale(h) if (self.downscale is not None and not eq2) else None
        return h, p


class TorchBPP(nn.Module):
    """BPP, "carried" (default) or "eq2" down-projections, with or without IN."""

    def __init__(self, features: Sequence[int] = (256, 128, 64, 48), depth: int = 16,
                 instance_norm: bool = True, down_projection: str = "carried"):
        super().__init__()
        self.features, self.depth = tuple(features), depth
        self.eq2 = down_projection == "eq2"
        L = len(self.features)
        self.scalers = nn.ModuleList([Scaler() for _ in range(L - 1)])  # scalers[l-1] is S_l
        self.analysis_h = nn.ModuleList([_conv(3, c) for c in self.features])
        self.analysis_p = nn.ModuleList([_conv(3, self.features[l - 1]) for l in range(1, L)]) if not self.eq2 else None
        self.blocks = nn.ModuleList(
            nn.ModuleList(
                FluxUnit(self.features[l], self.features[l - 1], self.eq2 or t < depth - 1, instance_norm)
                for l in range(1, L)
            )
            for t in range(depth)
        )
        self.synthesis = _conv(self.features[-1], 3, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        m = 2 ** (len(self.features) - 1)
        ph, pw = (-H) % m, (-W) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect")
        xs = [x]
        for l in range(len(self.features) - 1, 0, -1):
            xs.append(self.scalers[l - 1](xs[-1]))
        xs = xs[::-1]
        h = [conv(xi) for conv, xi in zip(self.analysis_h, xs)]
        p = [None] + ([conv(xs[l - 1]) for l, conv in enumerate(self.analysis_p, 1)] if not self.eq2 else [None] * (len(h) - 1))
        for units in self.blocks:
            for l, unit in enumerate(units, 1):
                h[l], p[l] = unit(h[l - 1], h[l], p[l], self.eq2)
        y = x + self.synthesis(h[-1])
        return y[..., :H, :W]


def _t(a: Any) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float32, copy=True))


def _conv_weight(k: Any) -> torch.Tensor:
    """Flax HWIO -> torch OIHW."""
    return _t(np.asarray(k).transpose(3, 2, 0, 1))


def _conv_transpose_weight(k: Any) -> torch.Tensor:
    """Flax conv-over-dilated-input kernel (HWIO) -> torch ConvTranspose2d (I, O, H, W).

    The Flax kernel correlates the zero-dilated input, torch scatters the input
    through its kernel: the two kernels are spatial flips of each other.
    """
    return _t(np.flip(np.asarray(k), (0, 1)).transpose(2, 3, 0, 1))


def load_flax_params(model: TorchBPP, params: Mapping[str, Any]) -> TorchBPP:
    """Copy a Flax BPP parameter tree (``variables["params"]``, numpy leaves) into ``model``."""
    L = len(model.features)
    with torch.no_grad():
        for l in range(1, L):
            model.scalers[l - 1].weight.copy_(_conv_weight(params[f"scaler_{l}"]["kernel"]))
        for l in range(L):
            model.analysis_h[l].weight.copy_(_conv_weight(params["analysis"][f"h_{l}"]["kernel"]))
        if model.analysis_p is not None:
            for l in range(1, L):
                model.analysis_p[l - 1].weight.copy_(_conv_weight(params["analysis"][f"p_{l}"]["kernel"]))
        for t, units in enumerate(model.blocks):
            for l, unit in enumerate(units, 1):
                w = params[f"block_{t:02d}"][f"unit_{l}"]
                unit.upscale.weight.copy_(_conv_transpose_weight(w["upscale"]["conv"]["kernel"]))
                if unit.downscale is not None:
                    unit.downscale.weight.copy_(_conv_weight(w["downscale"]["conv"]["kernel"]))
        model.synthesis.weight.copy_(_conv_weight(params["synthesis"]["conv"]["kernel"]))
        model.synthesis.bias.copy_(_t(params["synthesis"]["conv"]["bias"]))
    return model


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- timing

#: The compute dtypes the bench can time: float32, and bfloat16 by CPU autocast.
DTYPES = ("float32", "bfloat16")


def autocast(dtype: str = "float32") -> contextlib.AbstractContextManager:
    """The context that runs the network in ``dtype``: nothing for float32, CPU autocast to bfloat16 otherwise."""
    if dtype == "float32":
        return contextlib.nullcontext()
    if dtype == "bfloat16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    raise ValueError(f"unknown dtype {dtype!r}; choose from {DTYPES}")



def _median_time(fn, reps: int) -> float:
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def time_forward(model: TorchBPP, size: int = 256, batch: int = 1, reps: int = 5, dtype: str = "float32") -> dict[str, float]:
    """Output pixels per second of an inference forward pass (first call timed separately)."""
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode(), autocast(dtype):
        t = time.perf_counter()
        model(x)
        first = time.perf_counter() - t
        s = _median_time(lambda: model(x), reps)
    return {"forward_s": s, "forward_px_per_s": batch * size * size / s, "forward_first_s": first}


def time_train_step(model: TorchBPP, patch: int = 96, batch: int = 4, reps: int = 5, dtype: str = "float32") -> dict[str, float]:
    """Seconds per L1 + Adam step on a fixed batch (first step timed separately).

    With bfloat16 the forward pass and the loss run under autocast, the backward
    pass and Adam outside it (the documented autocast recipe; no loss scaling,
    which bfloat16 does not need).
    """
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(batch, 3, patch, patch, generator=g), torch.rand(batch, 3, patch, patch, generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(dtype):
            loss = F.l1_loss(model(x), y)
        loss.backward()
        opt.step()

    t = time.perf_counter()
    step()
    first = time.perf_counter() - t
    return {"train_step_s": _median_time(step, reps), "train_first_s": first}


def matmul_gflops(n: int = 4096, reps: int = 5, dtype: str = "float32") -> float:
    """n x n matmul rate in this process in ``dtype`` (a lower bound of the machine's peak)."""
    a = torch.rand(n, n).to(getattr(torch, dtype))
    a @ a
    return 2 * n**3 / _median_time(lambda: a @ a, reps) / 1e9


def bench(preset: str, reps: int = 5, size: int = 256, patch: int = 96, batch: int = 4,
          dtypes: Sequence[str] = ("float32",)) -> dict[str, Any]:
    """Forward throughput and train-step time of one preset per dtype, this process's threads.

    float32 figures at the top level, other dtypes' under their name; every
    dtype starts from the same initial weights.
    """
    out: dict[str, Any] = {"threads": torch.get_num_threads(), "version": torch.__version__, "dtypes": list(dtypes)}
    for dt in dtypes:
        torch.manual_seed(0)
        model = TorchBPP(**PRESETS[preset])
        out["params"] = count_params(model)
        r = {**time_forward(model, size, 1, reps, dt), **time_train_step(model, patch, batch, reps, dt)}
        if dt == "float32":
            out.update(r)
        else:
            out[dt] = r
    return out


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", action="append", choices=sorted(PRESETS), help="repeatable; default paper and tiny")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--patch", type=int, default=96)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--dtype", action="append", choices=DTYPES, help="repeatable; default float32 and bfloat16 (autocast)")
    ap.add_argument("--matmul-size", type=int, default=4096, help="n of the n x n matmul timed as the peak")
    ap.add_argument("--json", help="write the results here as well as to stdout")
    a = ap.parse_args(argv)
    n = a.matmul_size
    dtypes = list(dict.fromkeys(a.dtype or DTYPES))
    res: dict[str, Any] = {"peak_gflops": matmul_gflops(n, a.reps)}
    if "bfloat16" in dtypes:
        res["peak_gflops_bfloat16"] = matmul_gflops(n, a.reps, "bfloat16")
    for name in a.preset or ["paper", "tiny"]:
        res[name] = bench(name, a.reps, a.size, a.patch, a.batch, dtypes)
    res["peak_gflops_after"] = matmul_gflops(n, a.reps)
    if "bfloat16" in dtypes:
        res["peak_gflops_bfloat16_after"] = matmul_gflops(n, a.reps, "bfloat16")
    text = json.dumps(res)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
