"""Paired folders (impaired input / clean target), matched by file name.

Used by the raindrop, dehaze, DPED and HDR-SR tasks. Names match on the file
stem after removing any of the configured suffixes (e.g. ``_rain``/``_clean``),
so ``12_rain.png`` pairs with ``12_clean.jpg``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from bppjax.data.folder import list_images


def _key(path: Path, strip: Sequence[str]) -> str:
    stem = path.stem
    for s in strip:
        if s and stem.endswith(s):
            return stem[: -len(s)]
    return stem


def match_pairs(
    input_dir: str | Path, target_dir: str | Path, strip_suffixes: Sequence[str] = (), key: str = "data"
) -> list[tuple[str, Path, Path]]:
    """(name, input path, target path) for every name present in both folders.

    Raises:
      ValueError: listing the files without a partner, when any exist.
    """
    inputs = {_key(p, strip_suffixes): p for p in list_images(input_dir, f"{key}.input_dir")}
    targets = {_key(p, strip_suffixes): p for p in list_images(target_dir, f"{key}.target_dir")}
    only_in, only_tg = sorted(set(inputs) - set(targets)), sorted(set(targets) - set(inputs))
    if only_in or only_tg:
        lines = [f"{key}: {len(only_in) + len(only_tg)} file(s) in {input_dir} / {target_dir} have no partner"]
        if only_in:
            lines.append(f"  inputs without a target: {', '.join(inputs[n].name for n in only_in[:20])}" + (" ..." if len(only_in) > 20 else ""))
        if only_tg:
            lines.append(f"  targets without an input: {', '.join(targets[n].name for n in only_tg[:20])}" + (" ..." if len(only_tg) > 20 else ""))
        lines.append(f"  (names are matched on the file stem after removing {list(strip_suffixes) or 'nothing'}; set {key}.strip_suffixes)")
        raise ValueError("\n".join(lines))
    return [(n, inputs[n], targets[n]) for n in sorted(inputs)]
