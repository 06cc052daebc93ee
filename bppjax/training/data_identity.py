"""What a run trains on, saved with each checkpoint so that a resume on other data is refused.

Batch k is a pure function of the seed, the training pairs and the patch and
batch sizes; a resumed run continues the uninterrupted one exactly only when
all of them are unchanged. ``data_identity`` records them (image names and
sizes, not pixels); ``identity_changes`` lists what differs, one phrase each.
"""

from __future__ import annotations

from typing import Any

from bppjax.data.sampler import PatchSampler


def data_identity(sampler: PatchSampler) -> dict[str, Any]:
    """JSON-able identity of a sampler's data: patch, batch, scales, and each training image's size."""
    images: dict[str, list[int]] = {}
    for p in sampler.pairs:
        images.setdefault(p.name, [int(p.shape[0]), int(p.shape[1])])
    return {
        "patch": int(sampler.patch),
        "batch": int(sampler.batch),
        "scales": sorted({int(p.scale) for p in sampler.pairs}),
        "images": images,
    }


def _names(names: list[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def identity_changes(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between a checkpoint's data identity and this run's ([] when equal)."""
    out = [f"data.{k} {saved[k]} -> {current[k]}" for k in ("patch", "batch", "scales") if k in saved and saved[k] != current[k]]
    if "images" in saved:
        old, new = saved["images"], current["images"]
        added = sorted(set(new) - set(old))
        removed = sorted(set(old) - set(new))
        resized = sorted(k for k in set(old) & set(new) if list(old[k]) != list(new[k]))
        if added or removed or resized:
            parts = [f"{len(old)} -> {len(new)} training images"]
            parts += [f"added {_names(added)}"] if added else []
            parts += [f"removed {_names(removed)}"] if removed else []
            parts += [f"resized {_names([f'{k} {old[k][1]}x{old[k][0]} -> {new[k][1]}x{new[k][0]}' for k in resized])}"] if resized else []
            out.append(", ".join(parts))
    return out


__all__ = ["data_identity", "identity_changes"]
