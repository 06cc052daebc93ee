"""``LoadedModel``: a Flax module with its parameters and config, and the parameter-shape check.

What ``bppjax.load_model`` (a workdir) and ``bppjax.pretrained`` (a zoo model)
return; both check the loaded parameters against the config's model with
``check_param_shapes`` before returning one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from bppjax.models import at_factor, input_space, output_scale
from bppjax.tiling import tiled_inference

PyTree = Any


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A model ready for ``model.apply({"params": params}, x)``.

    Attributes:
      model: the Flax module built from ``config.model``.
      params: parameter pytree (the ``params`` collection), as JAX arrays.
      config: the workdir's full config with overrides applied.
      step: training step of the restored checkpoint.
      which: ``"best"`` or ``"latest"``: the checkpoint actually restored.
    """

    model: nn.Module
    params: PyTree
    config: ml_collections.ConfigDict
    step: int
    which: str

    def at_factor(self, scale: float) -> "LoadedModel":
        """This model told its SR factor, if it is conditioned on it (``model.factor_conditioning``); else itself."""
        return dataclasses.replace(self, model=at_factor(self.model, float(scale)))

    def apply(self, x: jax.Array) -> jax.Array:
        """Enhance a float batch (B, H, W, 3) in [0, 1] in one pass."""
        return self.model.apply({"params": self.params}, x)

    @property
    def patch(self) -> int | None:
        """The training patch side in the model's input pixels (``config.data.patch``, over the factor for an LR-input model)."""
        data = self.config.get("data") if hasattr(self.config, "get") else None
        value = data.get("patch") if data is not None and hasattr(data, "get") else None
        return max(1, int(value) // output_scale(self.model)) if value else None

    @property
    def input_space(self) -> str:
        """The image the model takes (``bppjax.models.input_space``): ``"upscaled"`` or ``"lr"``."""
        return input_space(self.model)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """``enhance``: a LoadedModel is an ``EnhanceFn`` of ``bppjax.evaluation`` (it says its ``input_space``)."""
        return self.enhance(image)

    def enhance(self, image: np.ndarray, mode: str = "auto") -> np.ndarray:
        """One float (H, W, 3) image through the network by tiles of the training patch (``bppjax.tiling``)."""
        return np.asarray(tiled_inference(self.model, self.params, image, mode, patch=self.patch), np.float32)


def param_shapes(model: nn.Module, model_cfg: ml_collections.ConfigDict | None = None) -> PyTree:
    """Abstract parameter shapes of a model (traced, nothing computed)."""
    del model_cfg  # the model knows its size constraints
    n = max(8 * int(model.multiple), int(model.min_size), 32)
    x = jax.ShapeDtypeStruct((1, n, n, 3), jnp.float32)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(x.shape, x.dtype)))["params"]


def _flat(tree: PyTree) -> dict[str, tuple[int, ...]]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(str(getattr(k, "key", k)) for k in path): tuple(np.shape(v)) for path, v in leaves}


def check_param_shapes(params: PyTree, expected: PyTree, source: str = "checkpoint") -> None:
    """Raise ValueError naming the first parameter paths whose shapes differ from the model's."""
    got, want = _flat(params), _flat(expected)
    problems = [f"{p}: saved {got[p]}, model expects {want[p]}" for p in want if p in got and got[p] != want[p]]
    problems += [f"{p}: missing (model expects {want[p]})" for p in want if p not in got]
    problems += [f"{p}: saved {got[p]}, not in the model" for p in got if p not in want]
    if problems:
        shown = "\n  ".join(problems[:8]) + (f"\n  ... and {len(problems) - 8} more" if len(problems) > 8 else "")
        raise ValueError(f"{source} parameters do not match the model config ({len(problems)} mismatches):\n  {shown}")


__all__ = ["LoadedModel", "check_param_shapes", "param_shapes"]
