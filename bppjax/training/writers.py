"""Metric sinks of a run: ``metrics.jsonl`` (one object per record) and TensorBoard events."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

METRICS_FILE = "metrics.jsonl"
TB_DIR = "tensorboard"


def _clean(v: Any) -> Any:
    v = float(v) if hasattr(v, "__float__") and not isinstance(v, (bool, int, str)) else v
    return None if isinstance(v, float) and not math.isfinite(v) else v


class MetricWriter:
    """Appends records to ``workdir/metrics.jsonl`` and scalars to TensorBoard (first host only)."""

    def __init__(self, workdir: str | Path, enabled: bool = True, resume_step: int = 0) -> None:
        self.enabled = enabled
        self.path = Path(workdir) / METRICS_FILE
        self._tb = None
        if not enabled:
            return
        truncate_after(self.path, resume_step)
        from tensorboardX import SummaryWriter  # noqa: PLC0415

        self._tb = SummaryWriter(str(Path(workdir) / TB_DIR))

    def write(self, step: int, kind: str, values: Mapping[str, Any]) -> None:
        """One record ``{"step", "kind", **values}``; ``kind`` prefixes the TensorBoard tags."""
        if not self.enabled:
            return
        record = {"step": int(step), "kind": kind, **{k: _clean(v) for k, v in values.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        for k, v in values.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and self._tb is not None:
                self._tb.add_scalar(f"{kind}/{k}", v, int(step))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` (ignores a torn last line left by a crash)."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def truncate_after(path: Path, step: int) -> None:
    """Drop records past ``step``: a resumed run re-logs the steps the crashed one lost."""
    if not path.is_file():
        return
    keep = [r for r in read_records(path) if int(r.get("step", 0)) <= step]
    path.write_text("".join(json.dumps(r) + "\n" for r in keep))
