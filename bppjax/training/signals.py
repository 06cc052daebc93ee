"""SIGTERM and SIGINT stop a training run after the step in flight, and that step is saved.

Schedulers (SLURM, Kubernetes) stop a job with SIGTERM and kill it a grace period
later; a person presses Ctrl-C (SIGINT). While a ``StopSignals`` scope is open,
the first of these signals only records that a stop was asked for: the loop
finishes its step, checkpoints it and raises ``TrainingInterrupted``. The first
signal also hands both signals back to the operating system's default action,
so a second one ends the process at once, whatever it is doing (a checkpoint
being written then never appears: Orbax renames a checkpoint into place only
when it is complete). Leaving the scope puts the previous handlers back.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import jax
import numpy as np
from jax.experimental import multihost_utils

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(Exception):
    """A signal stopped the run; the step it reached is saved, and the same call or command resumes from it."""

    def __init__(self, signum: int, step: int, workdir: Path):
        self.signum, self.step, self.workdir = int(signum), int(step), Path(workdir)
        super().__init__(
            f"training stopped by {signal_name(signum)} after step {step}; that step is saved in "
            f"{self.workdir}; train the same config in the same workdir again to resume"
        )

    @property
    def exit_status(self) -> int:
        """128 + the signal number, as a shell reports a process the signal ended."""
        return 128 + self.signum


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class StopSignals:
    """A scope in which SIGTERM and SIGINT ask for a stop instead of ending the process.

    Handlers can only be installed from the main thread; elsewhere (a notebook's
    worker thread) the scope changes nothing and ``requested()`` stays False.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            for s in self._previous:  # a second signal: the default action, at once
                signal.signal(s, signal.SIG_DFL)

    def requested(self) -> int | None:
        """The signal that asked for a stop, agreed by every process; None to go on.

        With several processes each one reports its own flag and all stop at the
        same step if any was signalled (a scheduler may signal the hosts at
        slightly different times). This is one small all-gather per step, on
        multi-process runs only.
        """
        if jax.process_count() == 1:
            return self.signum
        flags = multihost_utils.process_allgather(np.int32(self.signum or 0))
        signalled = [int(f) for f in np.ravel(flags) if int(f)]
        return signalled[0] if signalled else None


__all__ = ["STOP_SIGNALS", "StopSignals", "TrainingInterrupted", "signal_name"]
