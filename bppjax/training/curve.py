"""The training-curve figure written at the end of a run (loss and validation PSNR vs step).

It is drawn on its own ``matplotlib.figure.Figure`` (Agg canvas), never through
pyplot, so a notebook's plotting backend and figures stay as they were.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

CURVE_FILE = "training_curve.png"


def plot_curve(records: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path | None:
    """Two panels: training loss, validation PSNR (with the bicubic/input baseline). None if nothing to plot."""
    train = [r for r in records if r.get("kind") == "train" and r.get("loss") is not None]
    val = [r for r in records if r.get("kind") == "val" and r.get("psnr") is not None]
    if not train and not val:
        return None
    from matplotlib.figure import Figure  # noqa: PLC0415 - matplotlib loads only when a curve is drawn

    fig = Figure(figsize=(10, 3.6))
    a, b = fig.subplots(1, 2)
    if train:
        a.plot([r["step"] for r in train], [r["loss"] for r in train], lw=1)
        a.set_yscale("log")
    a.set(xlabel="step", ylabel="training loss", title="loss")
    if val:
        b.plot([r["step"] for r in val], [r["psnr"] for r in val], "o-", label="model")
        base = [r.get("input_psnr") for r in val if r.get("input_psnr") is not None]
        if base:
            b.axhline(base[-1], color="gray", ls="--", label="input (bicubic)")
        b.legend()
    b.set(xlabel="step", ylabel="PSNR (dB)", title="validation")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path
