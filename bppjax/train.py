"""Train a BPP: ``python -m bppjax.train [--config FILE[:VARIANT]] [--workdir DIR] [--config.KEY=VALUE ...]``.

Examples::

    python -m bppjax.train                                   # embedded default -> ./runs/default
    python -m bppjax.train --config configs/t91.py --workdir runs/t91
    python -m bppjax.train --config configs/zoo.py:x2 --workdir runs/ft --checkpoint bpp-sr-x2   # fine-tune a shipped model
    python -m bppjax.train --config configs/sr.py:x4 --workdir runs/x4 \\
        --config.data.train.dirs="('/data/DIV2K_train_HR',)" --config.optim.lr=2e-4

Re-running the same command resumes from the workdir's latest checkpoint; with
only ``--workdir`` it resumes with the workdir's own ``config.json``. SIGTERM or
Ctrl-C saves the step in flight and exits with 128 + the signal number; a second
run on a workdir in use exits with status 1. All the logic lives in
``bppjax.training.train_and_evaluate``; see docs/TRAINING.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import NoReturn, Sequence

import ml_collections

from bppjax.cli import EXIT_FAILED, command, usage_error
from bppjax.workdir import CONFIG_FILE, load_config
from bppjax.overrides import apply_overrides, split_overrides
from bppjax.training.config import with_defaults
from bppjax.training import CheckpointWriteError, ConfigError, NonFiniteLossError, default_config, load_config_file, train_and_evaluate
from bppjax.training.lock import WorkdirBusyError
from bppjax.training.signals import TrainingInterrupted, signal_name

DEFAULT_WORKDIR = Path("runs/default")


def resolve_config(config: str | None, workdir: Path, overrides: Sequence[str]) -> tuple[ml_collections.ConfigDict, str]:
    """The config to run and where it came from: ``--config``, the workdir's config.json, or the embedded default."""
    if config:
        cfg, origin = load_config_file(config), config
    elif (workdir / CONFIG_FILE).is_file():
        cfg, origin = with_defaults(load_config(workdir)), str(workdir / CONFIG_FILE)
    else:
        cfg, origin = default_config(), "the embedded default (bppjax.training.config.default_config)"
    try:
        return apply_overrides(cfg, overrides), origin
    except ValueError as e:
        raise ConfigError(str(e)) from e


@command
def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        overrides, rest = split_overrides(argv)
    except ValueError as e:
        return usage_error(e)
    parser = argparse.ArgumentParser(
        prog="python -m bppjax.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", help="config file, optionally with a variant: configs/sr.py:x4")
    parser.add_argument("--workdir", type=Path, help=f"output folder (default {DEFAULT_WORKDIR})")
    parser.add_argument("--checkpoint", metavar="WORKDIR|NAME",
                        help="warm-start a fresh run from this workdir's or zoo model's parameters (e.g. bpp-sr-x2)")
    args = parser.parse_args(rest)
    workdir = args.workdir or DEFAULT_WORKDIR
    if workdir.exists() and not workdir.is_dir():
        return usage_error(f"--workdir {workdir} is a file; give a folder (it is created if missing)")
    try:
        config, origin = resolve_config(args.config, workdir, overrides)
        print(f"training {origin} in {workdir.absolute()}", file=sys.stderr)
        train_and_evaluate(config, workdir, init_from=args.checkpoint)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except (NonFiniteLossError, CheckpointWriteError, WorkdirBusyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except TrainingInterrupted as e:
        print(f"stopped by {signal_name(e.signum)}: step {e.step} is saved in {e.workdir}; resume with: "
              f"python -m bppjax.train {shlex.join(argv)}", file=sys.stderr)
        return e.exit_status
    return 0


def end_process(code: int) -> NoReturn:
    """How ``python -m bppjax.train`` and ``bppjax train`` end the process with ``main``'s exit status.

    A run stopped by a failed write (status 1) skips the exit handlers: TensorBoard's and Orbax's
    would retry the writes that failed (a full disk) and print each failure again, at length.
    """
    if code == EXIT_FAILED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    end_process(main())
