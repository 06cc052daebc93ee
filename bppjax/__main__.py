"""``python -m bppjax`` / ``bppjax``: the commands, one line each; ``bppjax <command> ...`` runs one."""

from __future__ import annotations

import importlib
import sys
from typing import Sequence

#: Command -> (module whose ``main(argv)`` runs it, what it does).
COMMANDS = {
    "train": ("bppjax.train", "train a model from a config (resumable workdir)"),
    "evaluate": ("bppjax.evaluate", "PSNR/SSIM of a model or bicubic on benchmark folders"),
    "enhance": ("bppjax.enhance", "enhance or super-resolve image files (tiled, any size)"),
    "analyze": ("bppjax.analyze", "update-norm maps and LinearScope decompositions of a model"),
    "summary": ("bppjax.summary", "parameters, MACs per pixel and state shapes of a preset"),
    "bench": ("bppjax.bench", "forward and training-step speed (optionally beside PyTorch)"),
    "zoo": ("bppjax.zoo.__main__", "list the shipped trained models, or export one"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: bppjax <command> [arguments]   (or python -m bppjax.<command>)", "", "commands:"]
    lines += [f"  {name:{width}s}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "bppjax <command> --help shows a command's arguments."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; called without ``argv`` (the ``bppjax`` script), it ends the process as the command's own entry point does."""
    entry = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    code = int(module.main(rest) or 0)
    if entry and hasattr(module, "end_process"):
        module.end_process(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
