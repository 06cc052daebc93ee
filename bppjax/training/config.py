"""Training configs: the schema every task config starts from, the embedded
default, loading ``configs/<task>.py[:variant]`` files, and validation.

Layout (keep it)::

    config.model   a model config from bppjax.models.presets (model.kind=ode etc.)
    config.data    sources, scales, patch, batch, augmentation
    config.optim   optimizer and learning-rate schedule
    config.train   steps, loss, logging / validation / checkpoint cadence, seed
    config.eval    metric convention and crop border for validation
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import ml_collections

from bppjax.data import embedded
from bppjax.data.pipeline import check_source, source_config
from bppjax.metrics import CONVENTIONS
from bppjax.models import input_space, output_scale
from bppjax.models.presets import build_model, model_config, preset, validate_model_config
from bppjax.training.step import LOSSES

SCHEDULES = ("constant", "cosine", "step")


class ConfigError(ValueError):
    """A config problem found before anything is compiled; the message names the key."""


def base_config() -> ml_collections.ConfigDict:
    """Every key a training config may have, with neutral defaults."""
    c = ml_collections.ConfigDict()
    c.model = preset("small")
    c.data = dict(
        train=source_config(),
        val=source_config(),
        scales=(2,),  # SR factors; ignored by paired sources (scale comes from the sizes)
        patch=96,  # square patch side in target pixels
        batch=8,  # global batch (all devices, all hosts)
        augment=True,  # flips and 90-degree rotations
        align_crops=True,  # crop offsets at multiples of the scale (keeps the bicubic phase)
        min_std=0.0,  # skip target patches flatter than this (in [0, 1] units)
        workers=2,  # threads degrading the images at start-up (streamed: cutting patches ahead of the step)
        max_memory_gb=64.0,  # refuse to pre-degrade more than this (0: no limit)
    )
    c.optim = dict(
        lr=1e-4,  # peak learning rate
        b1=0.9,
        b2=0.999,
        eps=1e-8,
        weight_decay=0.0,  # decoupled (AdamW) when > 0
        schedule="step",  # constant | cosine | step
        warmup_steps=0,
        decay_every=200_000,  # step schedule: multiply by decay_factor every this many steps
        decay_factor=0.5,
        final_lr=0.0,  # cosine schedule: rate reached at train.steps
        clip_norm=0.0,  # global gradient-norm clipping (0: off)
    )
    c.train = dict(
        steps=1000,
        loss="l1",  # l1 | l2 | neg_ssim (DPED)
        seed=0,
        log_every=50,
        val_every=500,  # 0: only at the end
        ckpt_every=500,
        keep=3,  # latest checkpoints kept (the best by val PSNR is kept too)
        async_checkpoint=True,
        progress=True,  # tqdm bar on the first host
        distributed=False,  # call jax.distributed.initialize() (multi-host)
        coordinator_address="",  # host:port of process 0 ("" : $JAX_COORDINATOR_ADDRESS, else auto-detect)
        num_processes=0,  # processes in all (0: $JAX_NUM_PROCESSES, else auto-detect)
        process_id=-1,  # this process's index (-1: $JAX_PROCESS_ID, else auto-detect)
        curve=True,  # write training_curve.png at the end
    )
    c.eval = dict(
        convention="Y_M",  # Y_M (paper SR) | Y_P (raindrop) | RGB (dehaze, DPED)
        crop_border=-1,  # pixels shaved before scoring; -1: the SR scale (0 for restoration)
        max_images=0,  # validate on the first N images only (0: all)
    )
    return c


def default_config(variant: str = "") -> ml_collections.ConfigDict:
    """The embedded default: small BPP, SR x2 on scikit-image photos, ~5 min on 2 CPU cores.

    Variant ``tiny``: the same pipeline at test size (tiny model, a few dozen steps).
    """
    c = base_config()
    c.model = preset("small")
    c.data.train = source_config(source="embedded", names=embedded.TRAIN_NAMES)
    c.data.val = source_config(source="embedded", names=embedded.VAL_NAMES)
    c.data.update(scales=(2,), patch=96, batch=8, min_std=3 / 255)
    c.optim.update(lr=1e-3, schedule="cosine", warmup_steps=50, final_lr=0.0)
    c.train.update(steps=2000, log_every=25, val_every=500, ckpt_every=500)
    if variant == "tiny":
        c.model = preset("tiny")
        c.data.train.names = ("astronaut", "coffee")
        c.data.val.names = ("chelsea",)
        c.data.update(patch=32, batch=4)
        c.optim.update(lr=2e-3, warmup_steps=0)
        c.train.update(steps=30, log_every=5, val_every=0, ckpt_every=10, progress=False, curve=False)
        c.eval.max_images = 1
    elif variant:
        raise ConfigError(f"unknown variant {variant!r} of the default config; choose '' or 'tiny'")
    return c


def with_defaults(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """``config`` with every key of the schema it lacks added at its default (a config.json of an older version)."""
    schema = base_config()
    schema.model = model_config()

    def fill(cfg: ml_collections.ConfigDict, ref: ml_collections.ConfigDict) -> None:
        for k in ref.keys():
            if k not in cfg:
                cfg[k] = ref[k]
            elif isinstance(ref[k], ml_collections.ConfigDict) and isinstance(cfg[k], ml_collections.ConfigDict):
                fill(cfg[k], ref[k])

    out = ml_collections.ConfigDict(config.to_dict())
    fill(out, schema)
    return out


def tiny_variant(c: ml_collections.ConfigDict, patch: int = 32, steps: int = 6) -> ml_collections.ConfigDict:
    """Shrink a task config to test size: tiny model, few steps, small patches, 2 training images."""
    c.model = preset("tiny")
    c.data.update(patch=patch, batch=4, workers=1)
    c.data.train.limit = 2
    c.data.val.limit = 1
    c.optim.update(lr=1e-3, schedule="constant", warmup_steps=0)
    c.train.update(steps=steps, log_every=2, val_every=0, ckpt_every=steps, keep=1, progress=False, curve=False)
    c.eval.max_images = 1
    return c


def paired_task_config(
    name: str,
    variant: str,
    train: ml_collections.ConfigDict,
    val: ml_collections.ConfigDict,
    *,
    patch: int = 128,
    loss: str = "l1",
    convention: str = "RGB",
    align_crops: bool = False,
) -> ml_collections.ConfigDict:
    """The paper's schedule for a paired-image task (raindrop, dehaze, DPED, HDR+SR).

    Paper model, batch 16, Adam 1e-4 halved every 200k steps, no border shaved;
    the task files differ only in data, patch, loss and metric convention.
    """
    c = base_config()
    c.model = preset("paper")
    c.data.train, c.data.val = train, val
    c.data.update(scales=(), patch=patch, batch=16, align_crops=align_crops)
    c.optim.update(lr=1e-4, schedule="step", decay_every=200_000, decay_factor=0.5)
    c.train.update(steps=400_000, loss=loss, log_every=100, val_every=5_000, ckpt_every=5_000)
    c.eval.update(convention=convention, crop_border=0)
    if variant == "tiny":
        tiny_variant(c)
    elif variant:
        raise ValueError(f"{name}.py has variants '' and 'tiny'; got {variant!r}")
    return c


def load_config_file(spec: str) -> ml_collections.ConfigDict:
    """Load ``path/to/config.py[:variant]`` by calling its ``get_config([variant])``."""
    path_text, _, variant = spec.partition(":")
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise ConfigError(f"--config: config file {path} does not exist")
    spec_ = importlib.util.spec_from_file_location(f"bppjax_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(module)  # type: ignore[union-attr]
    if not hasattr(module, "get_config"):
        raise ConfigError(f"--config: {path} has no get_config() function")
    cfg = module.get_config(variant) if variant else module.get_config()
    if not isinstance(cfg, ml_collections.ConfigDict):
        raise ConfigError(f"--config: {path}:get_config() returned {type(cfg).__name__}, not a ConfigDict")
    return cfg


# --------------------------------------------------------------------------- validation


def _unknown_keys(cfg: Any, schema: Any, prefix: str) -> list[str]:
    if not isinstance(cfg, ml_collections.ConfigDict) or not isinstance(schema, ml_collections.ConfigDict):
        return []
    out = []
    for k in cfg.keys():
        if k not in schema:
            out.append(f"{prefix}{k}")
        else:
            out += _unknown_keys(cfg[k], schema[k], f"{prefix}{k}.")
    return out


def _missing_keys(cfg: Any, schema: Any, prefix: str) -> list[str]:
    if not isinstance(schema, ml_collections.ConfigDict):
        return []
    if not isinstance(cfg, ml_collections.ConfigDict):
        return [prefix.rstrip(".")]
    out = []
    for k in schema.keys():
        out += [f"{prefix}{k}"] if k not in cfg else _missing_keys(cfg[k], schema[k], f"{prefix}{k}.")
    return out


def _positive_int(cfg: ml_collections.ConfigDict, key: str, minimum: int = 1) -> None:
    *path, leaf = key.split(".")
    node = cfg
    for p in path:
        node = node[p]
    v = node[leaf]
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ConfigError(f"{key} must be an integer >= {minimum}; got {v!r}")


def validate_config(
    config: ml_collections.ConfigDict, device_count: int | None = None, process_count: int = 1, check_data: bool = True
) -> None:
    """Check a training config before any image is read or anything compiled.

    Raises ConfigError (one message naming the key) for unknown or missing keys,
    bad values, missing data folders (unless ``check_data`` is False), and a
    batch the devices cannot share.
    """
    schema = base_config()
    schema.model = model_config()
    unknown = _unknown_keys(config, schema, "")
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
    missing = _missing_keys(config, schema, "")
    if missing:
        raise ConfigError(f"missing config key(s): {', '.join(missing)} (start task configs from bppjax.training.config.base_config())")
    try:
        validate_model_config(config.model)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    d, o, t, ev = config.data, config.optim, config.train, config.eval
    for key in ("data.patch", "data.batch", "train.steps", "train.log_every", "train.ckpt_every", "train.keep", "data.workers"):
        _positive_int(config, key)
    _positive_int(config, "train.process_id", -1)
    if not isinstance(config.train.coordinator_address, str):
        raise ConfigError(f"train.coordinator_address must be 'host:port' text; got {config.train.coordinator_address!r}")
    for key in ("train.num_processes", "train.val_every", "optim.warmup_steps", "optim.decay_every", "eval.max_images", "train.seed", "data.train.limit", "data.val.limit"):
        _positive_int(config, key, 0)
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in d.scales):
        raise ConfigError(f"data.scales must be positive integers; got {tuple(d.scales)}")
    if not math.isfinite(float(o.lr)) or float(o.lr) <= 0:
        raise ConfigError(f"optim.lr must be a positive number; got {o.lr!r}")
    if o.schedule not in SCHEDULES:
        raise ConfigError(f"optim.schedule must be one of {SCHEDULES}; got {o.schedule!r}")
    if t.loss not in LOSSES:
        raise ConfigError(f"train.loss must be one of {tuple(LOSSES)}; got {t.loss!r}")
    if ev.convention not in CONVENTIONS:
        raise ConfigError(f"eval.convention must be one of {CONVENTIONS}; got {ev.convention!r}")
    if not 0 <= float(d.min_std) < 1:
        raise ConfigError(f"data.min_std is in [0, 1) units of the peak value; got {d.min_std!r}")
    model = build_model(config.model)
    if d.patch % model.multiple:
        raise ConfigError(f"data.patch={d.patch} must be a multiple of {model.multiple} for a {len(tuple(config.model.features))}-level BPP")
    if input_space(model) == "lr":  # one upsampler: the data must be degraded at the model's factor
        s = output_scale(model)
        if tuple(d.scales) not in ((), (s,)):
            raise ConfigError(f"data.scales={tuple(d.scales)} but model.{config.model.arch}.scale={s}: a model that takes the "
                              f"LR image upscales by its own factor only; set data.scales=({s},)")
        if d.patch % s:
            raise ConfigError(f"data.patch={d.patch} must be a multiple of model.{config.model.arch}.scale={s} (LR patches are patch / scale)")
    if t.loss == "neg_ssim" and d.patch < 11:
        raise ConfigError(f"train.loss='neg_ssim' needs data.patch >= 11 (the SSIM window); got {d.patch}")
    if device_count is not None and d.batch % device_count:
        raise ConfigError(
            f"data.batch={d.batch} is not divisible by the {device_count} devices; use a multiple of {device_count}"
        )
    if d.batch % process_count:
        raise ConfigError(f"data.batch={d.batch} is not divisible by the {process_count} hosts")
    for key in ("train", "val") if check_data else ():
        if key == "val" and not d.val.source:
            continue
        try:
            check_source(d[key], f"data.{key}")
        except (ValueError, FileNotFoundError) as e:
            raise ConfigError(str(e)) from e
