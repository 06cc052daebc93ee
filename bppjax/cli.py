"""What every ``python -m bppjax.<command>`` shares: one error format and one set of exit codes.

Exit codes: 0 everything done; 1 some inputs failed or the run stopped (a
non-finite loss, a checkpoint that could not be written); 2 a usage, config or
input-path error found before any work. An error is one line on stderr,
``error: <what> (<what to do>)``, followed by the line ``(add --debug, or set
BPPJAX_DEBUG=1, to see the traceback)``; ``--debug`` on any command (or
``BPPJAX_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import errno
import functools
import os
import sys
from typing import Callable, Sequence, TypeVar

T = TypeVar("T")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEBUG_ENV = "BPPJAX_DEBUG"

_HINTS = {
    errno.ENOSPC: "free disk space and run the same command again",
    errno.EDQUOT: "free disk space (quota) and run the same command again",
    errno.EACCES: "check the permissions of that path",
    errno.EPERM: "check the permissions of that path",
    errno.EROFS: "the file system is read-only; choose another path",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of that path is a file, not a folder",
    errno.EISDIR: "give a file, not a folder",
    errno.EEXIST: "that path already exists; choose another",
}


def debug_enabled() -> bool:
    """True when tracebacks were asked for (``--debug`` or ``BPPJAX_DEBUG=1``)."""
    return os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")


def describe(error: BaseException) -> str:
    """One line for an exception: the file or key it names, what went wrong, what to do."""
    if isinstance(error, OSError) and error.strerror and not isinstance(error, FileNotFoundError | NotADirectoryError):
        where = f"{error.filename}: " if error.filename else ""
        hint = _HINTS.get(error.errno or -1)
        return f"{where}{error.strerror}" + (f" ({hint})" if hint else "")
    text = str(error).strip() or type(error).__name__
    return text if "\n" in text or len(text) > 20 else f"{type(error).__name__}: {text}"


def exit_code(error: BaseException) -> int:
    """2 for problems with what the user gave (arguments, config, input paths; ``ConfigError`` is a ValueError), else 1."""
    if isinstance(error, FileNotFoundError | NotADirectoryError | IsADirectoryError | PermissionError):
        return EXIT_USAGE
    if isinstance(error, ValueError) and not isinstance(error, FloatingPointError):
        return EXIT_USAGE
    return EXIT_FAILED


def usage_error(message: object) -> int:
    """Prints ``error: <message>`` on stderr and returns the usage exit code, 2."""
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def arg_type(convert: Callable[[str], T], what: str) -> Callable[[str], T]:
    """An argparse ``type`` from a converter whose ValueError becomes ``invalid <what> 'TEXT': <reason>``."""

    def parse(text: str) -> T:
        try:
            return convert(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"invalid {what} {text!r}: {e}") from None

    return parse


def command(main: Callable[[Sequence[str]], int]) -> Callable[[Sequence[str] | None], int]:
    """Decorates a command's ``main(argv) -> exit code``: strips ``--debug`` and turns errors into one line."""

    @functools.wraps(main)
    def wrapped(argv: Sequence[str] | None = None) -> int:
        argv = list(sys.argv[1:] if argv is None else argv)
        debug = "--debug" in argv or debug_enabled()
        argv = [a for a in argv if a != "--debug"]
        try:
            return main(argv)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except Exception as e:  # noqa: BLE001 - the point of this wrapper
            if debug:
                raise
            print(f"error: {describe(e)}", file=sys.stderr)
            print("(add --debug, or set BPPJAX_DEBUG=1, to see the traceback)", file=sys.stderr)
            return exit_code(e)

    return wrapped


__all__ = [
    "DEBUG_ENV", "EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "arg_type", "command", "debug_enabled", "describe", "exit_code",
    "usage_error",
]
