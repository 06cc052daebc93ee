"""Model configurations as data: named presets and ``build_model(config)``.

A model config is an ``ml_collections.ConfigDict`` (see ``model_config``); a
preset is a function returning one. Training, evaluation, enhancement and the
analysis tools all construct networks through ``build_model``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from bppjax.models.bpp import BPP, DTYPES, REMATS
from bppjax.models.edsr import EDSR, edsr_width_for_params
from bppjax.models.resnet import REMATS as RESNET_REMATS
from bppjax.models.resnet import ResNet, width_for_params

ARCHS = ("bpp", "resnet", "edsr")
#: The ``model.remat`` values each architecture implements (``block`` is BPP's reversible sweep).
ARCH_REMATS = {"bpp": REMATS, "resnet": RESNET_REMATS, "edsr": RESNET_REMATS}
KINDS = ("discrete", "ode")


def model_config(**overrides) -> ml_collections.ConfigDict:
    """The paper's BPP (4 levels, 256/128/64/48, 16 blocks) with optional overrides."""
    cfg = ml_collections.ConfigDict(
        dict(
            arch="bpp",
            kind="discrete",
            levels=None,  # follows from features (a value given must equal len(features))
            features=(256, 128, 64, 48),
            depth=16,
            instance_norm=True,
            down_projection="carried",
            dtype="float32",
            remat="none",
            dirac_noise=1e-3,
            factor_conditioning=False,  # BPP: one network for several SR factors, told its factor (FactorFiLM)
            resnet=dict(width=64, blocks=16, res_scale=1.0),
            edsr=dict(width=64, blocks=16, res_scale=1.0, scale=2),
            ode=dict(solver="causal_euler", dt=1.0, time="piecewise", adaptive=False, adjoint="recursive", rtol=1e-3, atol=1e-4, max_steps=4096,
                     loop="auto"),
        )
    )
    for k, v in overrides.items():
        cfg[k] = v
    return cfg


def paper() -> ml_collections.ConfigDict:
    """The paper's configuration: 18,653,052 parameters, 762,200 MAC per output pixel."""
    return model_config()


def small() -> ml_collections.ConfigDict:
    """3 levels, 32/24/16 features, 4 blocks (118k parameters): CPU-scale training."""
    return model_config(features=(32, 24, 16), depth=4)


def medium() -> ml_collections.ConfigDict:
    """3 levels, 48/32/24 features, 4 blocks (234k parameters): the shipped zoo models."""
    return model_config(features=(48, 32, 24), depth=4)


def tiny() -> ml_collections.ConfigDict:
    """3 levels of 8 features, 2 blocks (~7.5k parameters): tests and CI."""
    return model_config(features=(8, 8, 8), depth=2)


def resnet_small() -> ml_collections.ConfigDict:
    """A ResNet with about the parameters of ``small`` (the paper's comparison)."""
    return model_config(arch="resnet", resnet=dict(width=width_for_params(118_000, 8), blocks=8, res_scale=1.0))


def resnet_tiny() -> ml_collections.ConfigDict:
    """A ResNet with about the parameters of ``tiny``."""
    return model_config(arch="resnet", resnet=dict(width=width_for_params(7_500, 2), blocks=2, res_scale=1.0))


def edsr_tiny() -> ml_collections.ConfigDict:
    """An x2 LR-space EDSR with about the parameters of ``tiny``."""
    return model_config(arch="edsr", edsr=dict(width=edsr_width_for_params(7_500, 2, 2), blocks=2, res_scale=1.0, scale=2))


PRESETS: dict[str, Callable[[], ml_collections.ConfigDict]] = {
    "paper": paper,
    "medium": medium,
    "small": small,
    "tiny": tiny,
    "resnet_small": resnet_small,
    "resnet_tiny": resnet_tiny,
    "edsr_tiny": edsr_tiny,
}


def preset(name: str) -> ml_collections.ConfigDict:
    """Model config of a named preset (``paper``, ``medium``, ``small``, ``tiny``, ``resnet_small``, ``resnet_tiny``, ``edsr_tiny``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()


def model_class(cfg: ml_collections.ConfigDict) -> type[nn.Module]:
    """The module class a model config describes (``arch`` and ``kind``); errors name the config key."""

    def choice(key: str, options) -> None:
        if cfg.get(key) not in options:
            raise ValueError(f"model.{key} must be one of {tuple(options)}; got {cfg.get(key)!r}")

    choice("arch", ARCHS)
    choice("kind", KINDS)
    choice("dtype", tuple(DTYPES))
    if cfg.kind == "ode":
        if cfg.arch != "bpp":
            raise ValueError("model.kind='ode' is only defined for model.arch='bpp'")
        from bppjax.models.ode import BPPODE  # noqa: PLC0415 - diffrax costs seconds that discrete models should not pay

        return BPPODE
    return {"bpp": BPP, "resnet": ResNet, "edsr": EDSR}[cfg.arch]


def constructor_args(cls: type[nn.Module], cfg: ml_collections.ConfigDict) -> dict[str, Any]:
    """The config's fields that are the constructor's (big_vision style: configs as data, no field-by-field copies).

    BPP reads the model group itself (``features``, ``depth``, ...); the
    baselines read their own group (``model.resnet``, ``model.edsr``) plus the
    shared ``dtype`` and ``remat``; the ODE model adds ``model.ode``.
    """
    names = {f.name for f in dataclasses.fields(cls)} - {"parent", "name"}
    groups = [cfg] if cfg.arch == "bpp" else [{"dtype": cfg.dtype, "remat": cfg.remat}, cfg[cfg.arch]]
    if cfg.kind == "ode":
        groups.append(cfg.ode)
    args = {k: v for g in groups for k, v in g.items() if k in names}
    args["dtype"] = DTYPES[cfg.dtype]
    return {k: tuple(v) if isinstance(v, list) else v for k, v in args.items()}


def build_model(cfg: ml_collections.ConfigDict, freeze: bool = False) -> nn.Module:
    """The Flax module described by a model config (``freeze``: LinearScope mode), validated by the model itself."""
    levels = cfg.get("levels")
    if cfg.get("arch") == "bpp" and levels is not None and int(levels) != len(tuple(cfg.features)):
        raise ValueError(f"model.levels ({levels}) does not match the number of model.features "
                         f"({len(tuple(cfg.features))}: {tuple(cfg.features)}); levels follow from features, leave it unset")
    cls = model_class(cfg)
    model = cls(**constructor_args(cls, cfg), freeze=freeze)
    model.validate()
    return model


def validate_model_config(cfg: ml_collections.ConfigDict) -> None:
    """Check a model config before anything is compiled: the model it builds checks its own hyper-parameters."""
    build_model(cfg)


__all__ = ["ARCH_REMATS", "PRESETS", "build_model", "constructor_args", "model_class", "model_config", "preset", "validate_model_config", "jnp"]
