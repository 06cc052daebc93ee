"""A deterministic, checkpointable patch sampler: batch k is a pure function of (seed, k).

Its whole iterator state is ``{"seed": seed, "step": k}``, so a run resumed from
a checkpoint at step k draws exactly the batches the uninterrupted run would
have, and every host of a multi-host job gets its own slice of the same
global batch (``local_batch``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Sequence

import numpy as np

from bppjax.data.pairs import ImagePair

Batch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class PatchSampler:
    """Random aligned crops from in-memory pairs.

    An input smaller than its target by a factor r (the LR image of a model
    that takes it) is cropped at the same place in its own pixels: a P x P
    target patch at (y, x) pairs with the P/r x P/r input patch at (y/r, x/r),
    offsets on multiples of r.

    Attributes:
      pairs: training pairs (all of one dtype, each at least ``patch`` on both sides).
      patch: square patch side in target pixels.
      batch: global batch size.
      seed: base seed; batch k uses ``np.random.default_rng([seed, k])``.
      augment: random flips and 90-degree rotations (the 8 dihedral transforms).
      align: crop offsets are multiples of each pair's scale (keeps the
        bicubic sampling phase of the benchmark images).
      min_std: reject patches whose target standard deviation (in [0, 1] units)
        is below this; 0 disables. Flat patches (black sky, retina borders) teach little.
      max_tries: rejected draws per patch before one is accepted anyway.
      with_factor: batches also carry each patch's SR factor (``"scale"``,
        float32 (batch,)), for a model conditioned on it. The crops are the same.
    """

    pairs: tuple[ImagePair, ...]
    patch: int
    batch: int
    seed: int = 0
    augment: bool = True
    align: bool = True
    min_std: float = 0.0
    max_tries: int = 20
    with_factor: bool = False

    def __post_init__(self) -> None:
        if not self.pairs:
            raise ValueError("PatchSampler needs at least one image pair")
        small = [p.name for p in self.pairs if min(p.shape) < self.patch]
        if small:
            raise ValueError(f"data.patch={self.patch} is larger than image(s) {small}")
        if len({p.target.dtype for p in self.pairs}) > 1:
            raise ValueError("training pairs mix bit depths (uint8 and uint16); convert them to one depth")
        self._check_ratios()

    def _check_ratios(self) -> None:
        ratios = sorted({self._ratio(p) for p in self.pairs})
        if len(ratios) > 1:
            raise ValueError(f"an LR input of several scales makes patches of several sizes ({self.patch} / {ratios}), which "
                             "cannot share a batch; train a model that takes the LR image on one scale (data.scales)")
        odd = sorted({self._ratio(p) for p in self.pairs if self.patch % self._ratio(p)})
        if odd:
            raise ValueError(f"data.patch={self.patch} must be a multiple of the LR input's factor {odd[0]} (a patch of "
                             f"P target pixels pairs with P/{odd[0]} input pixels)")

    @property
    def peak(self) -> float:
        """Maximum sample value of the stored dtype (255 or 65535)."""
        return float(np.iinfo(self.pairs[0].target.dtype).max)

    def state(self, step: int) -> dict[str, int]:
        """Iterator state before drawing batch ``step`` (saved in checkpoints)."""
        return {"seed": int(self.seed), "step": int(step)}

    def _ratio(self, pair: Any) -> int:
        """Target size over input size (1 for an upscaled input, the scale for an LR one)."""
        return pair.target.shape[0] // pair.input.shape[0]

    def _target(self, pair: Any, y: int, x: int) -> np.ndarray:
        return pair.target[y : y + self.patch, x : x + self.patch]

    def _input(self, pair: Any, y: int, x: int) -> np.ndarray:
        r = self._ratio(pair)
        return pair.input[y // r : (y + self.patch) // r, x // r : (x + self.patch) // r]

    def _pick(self, rng: np.random.Generator) -> tuple[Any, int, int]:
        """One random pair and aligned crop offset (y, x) in target pixels."""
        P = self.patch
        pair = self.pairs[rng.integers(len(self.pairs))]
        a = pair.scale if self.align else self._ratio(pair)  # an LR input needs offsets on its grid
        H, W = pair.shape
        y = int(rng.integers((H - P) // a + 1)) * a
        x = int(rng.integers((W - P) // a + 1)) * a
        return pair, y, x

    def _draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
        thresh = self.min_std * self.peak
        for attempt in range(self.max_tries + 1):
            pair, y, x = self._pick(rng)
            tgt = self._target(pair, y, x)
            if thresh <= 0 or attempt == self.max_tries or float(tgt.std()) >= thresh:
                return self._input(pair, y, x), tgt, int(pair.scale)

    def batch_at(self, step: int) -> Batch:
        """Global batch number ``step``: ``{"input", "target"}``, (batch, patch, patch, 3) (the input patch/r for an LR input),
        and ``"scale"`` (batch,) ``with_factor``."""
        return self._make(step, 0, 1)

    def local_batch(self, step: int, process_index: int, process_count: int) -> Batch:
        """This host's share of global batch ``step``: ``local_slice(batch_at(step), ...)``.

        Without ``min_std`` the crops do not depend on the pixels, so only this
        host's patches are cut (what matters when they are decoded on demand).
        """
        return self._make(step, process_index, process_count)

    def _make(self, step: int, index: int, count: int) -> Batch:
        rng = np.random.default_rng([int(self.seed), int(step)])
        if count > 1 and self.min_std <= 0:
            if self.batch % count:
                raise ValueError(f"data.batch={self.batch} is not divisible by the number of hosts ({count})")
            draws = [(*self._pick(rng), int(rng.integers(8)) if self.augment else 0) for _ in range(self.batch)]
            k = self.batch // count
            xs, ys, ss = [], [], []
            for pair, y, x, t in draws[index * k : (index + 1) * k]:
                xs.append(dihedral(self._input(pair, y, x), t))
                ys.append(dihedral(self._target(pair, y, x), t))
                ss.append(int(pair.scale))
            return self._batch(xs, ys, ss)
        xs, ys, ss = [], [], []
        for _ in range(self.batch):
            x, y, s = self._draw(rng)
            if self.augment:
                t = int(rng.integers(8))
                x, y = dihedral(x, t), dihedral(y, t)
            xs.append(x)
            ys.append(y)
            ss.append(s)
        batch = self._batch(xs, ys, ss)
        return local_slice(batch, index, count) if count > 1 else batch

    def _batch(self, xs: list[np.ndarray], ys: list[np.ndarray], scales: list[int]) -> Batch:
        batch = {"input": np.stack(xs), "target": np.stack(ys)}
        if self.with_factor:
            batch["scale"] = np.asarray(scales, np.float32)
        return batch

    def iterate(self, start: int = 0) -> Iterator[Batch]:
        """Batches ``start, start + 1, ...``."""
        k = start
        while True:
            yield self.batch_at(k)
            k += 1


def dihedral(x: np.ndarray, t: int) -> np.ndarray:
    """One of the 8 flips/rotations of an HxWxC array (t in 0..7; 0 is the identity)."""
    if t & 4:
        x = x.transpose(1, 0, 2)
    if t & 2:
        x = x[::-1]
    if t & 1:
        x = x[:, ::-1]
    return x


def local_slice(batch: Batch, process_index: int, process_count: int) -> Batch:
    """This host's contiguous share of a global batch (multi-host data parallelism)."""
    n = next(iter(batch.values())).shape[0]
    if n % process_count:
        raise ValueError(f"data.batch={n} is not divisible by the number of hosts ({process_count})")
    k = n // process_count
    return {key: v[process_index * k : (process_index + 1) * k] for key, v in batch.items()}


def validate_state(state: dict[str, Any], sampler: PatchSampler) -> None:
    """Check a checkpointed iterator state belongs to this sampler (same seed)."""
    if int(state.get("seed", sampler.seed)) != sampler.seed:
        raise ValueError(
            f"checkpoint data iterator has seed {state.get('seed')} but train.seed is {sampler.seed}; "
            "resume with the original seed or use a new workdir"
        )


__all__: Sequence[str] = ["Batch", "PatchSampler", "dihedral", "local_slice", "validate_state"]
