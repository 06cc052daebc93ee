"""Model configurations as data: named presets and ``build_model(config)``.

A model config is an ``ml_collections.ConfigDict`` (see ``model_config``); a
preset is a function returning one. Training, evaluation, enhancement and the
analysis tools all construct networks through ``build_model``.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from bppjax.models.bpp import BPP, DOWN_PROJECTIONS, DTYPES, REMATS
from bppjax.models.edsr import EDSR, edsr_width_for_params
from bppjax.models.edsr import SCALES as EDSR_SCALES
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
            levels=4,
            features=(256, 128, 64, 48),
            depth=16,
            instance_norm=True,
            down_projection="carried",
            dtype="float32",
            remat="none",
            dirac_noise=1e-3,
            resnet=dict(width=64, blocks=16, res_scale=1.0),
            edsr=dict(width=64, blocks=16, res_scale=1.0, scale=2),
            ode=dict(solver="causal_euler", dt=1.0, time="piecewise", adaptive=False, adjoint="recursive", rtol=1e-3, atol=1e-4, max_steps=4096),
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
    return model_config(levels=3, features=(32, 24, 16), depth=4)


def medium() -> ml_collections.ConfigDict:
    """3 levels, 48/32/24 features, 4 blocks (234k parameters): the shipped zoo models."""
    return model_config(levels=3, features=(48, 32, 24), depth=4)


def tiny() -> ml_collections.ConfigDict:
    """3 levels of 8 features, 2 blocks (~7.5k parameters): tests and CI."""
    return model_config(levels=3, features=(8, 8, 8), depth=2)


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


def validate_model_config(cfg: ml_collections.ConfigDict) -> None:
    """Check a model config before anything is compiled; errors name the config key."""

    def choice(key: str, options, where: str = "") -> None:
        if cfg.get(key) not in options:
            raise ValueError(f"model.{key} must be one of {tuple(options)}{where}; got {cfg.get(key)!r}")

    choice("arch", ARCHS)
    choice("kind", KINDS)
    choice("dtype", tuple(DTYPES))
    choice("remat", ARCH_REMATS[cfg.arch], "" if cfg.arch == "bpp" else f" for model.arch={cfg.arch!r}")
    if cfg.arch == "bpp":
        choice("down_projection", DOWN_PROJECTIONS)
        feats = tuple(cfg.features)
        if cfg.levels != len(feats):
            raise ValueError(f"model.levels ({cfg.levels}) does not match the number of model.features ({len(feats)}: {feats})")
        if any(int(c) < 1 for c in feats):
            raise ValueError(f"model.features must be positive; got {feats}")
        if int(cfg.depth) < 1:
            raise ValueError(f"model.depth must be >= 1; got {cfg.depth}")
    elif cfg.kind == "ode":
        raise ValueError("model.kind='ode' is only defined for model.arch='bpp'")
    elif cfg.arch == "edsr" and int(cfg.edsr.scale) not in EDSR_SCALES:
        raise ValueError(f"model.edsr.scale must be one of {EDSR_SCALES}; got {cfg.edsr.scale!r}")


def build_model(cfg: ml_collections.ConfigDict, freeze: bool = False) -> nn.Module:
    """The Flax module described by a model config (``freeze``: LinearScope mode)."""
    validate_model_config(cfg)
    dtype = DTYPES[cfg.dtype]
    if cfg.arch == "resnet":
        r = cfg.resnet
        return ResNet(int(r.width), int(r.blocks), float(r.res_scale), dtype=dtype, remat=cfg.remat, freeze=freeze)
    if cfg.arch == "edsr":
        e = cfg.edsr
        return EDSR(int(e.width), int(e.blocks), int(e.scale), float(e.res_scale), dtype=dtype, remat=cfg.remat, freeze=freeze)
    if cfg.kind == "ode":
        from bppjax.models.ode import build_ode_model  # local: diffrax import is slow

        return build_ode_model(cfg, freeze=freeze)
    return BPP(
        features=tuple(int(c) for c in cfg.features),
        depth=int(cfg.depth),
        instance_norm=bool(cfg.instance_norm),
        down_projection=cfg.down_projection,
        dtype=dtype,
        remat=cfg.remat,
        dirac_noise=float(cfg.dirac_noise),
        freeze=freeze,
    )


__all__ = ["ARCH_REMATS", "PRESETS", "build_model", "model_config", "preset", "validate_model_config", "jnp"]
