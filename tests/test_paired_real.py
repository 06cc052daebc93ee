"""The paired (raindrop) pipeline end to end on real photographs, and the tfds source's code path."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from bppjax.image.io import read_image
from bppjax.metrics import psnr
from bppjax.training.config import load_config_file
from bppjax.training.loop import train_and_evaluate

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_raindrop_trains_and_validates_in_y_p_on_the_real_pairs(shared_data, tmp_path):
    root = shared_data / "RaindropSample"
    c = load_config_file(f"{CONFIGS / 'raindrop.py'}:tiny")
    c.data.train.update(input_dir=str(root / "rain"), target_dir=str(root / "clean"), limit=3)
    c.data.val.update(input_dir=str(root / "rain"), target_dir=str(root / "clean"), limit=1)
    c.train.update(steps=4, ckpt_every=4)
    result = train_and_evaluate(c, tmp_path / "w")
    assert c.eval.convention == "Y_P" and result.step == 4
    rain = read_image(root / "rain" / "0_rain.png", dtype="uint8")
    clean = read_image(root / "clean" / "0_clean.png", dtype="uint8")
    assert result.val["input_psnr"] == pytest.approx(psnr(clean, rain, convention="Y_P", shave=0), abs=1e-6)
    assert 15 < result.val["input_psnr"] < 30 and np.isfinite(result.val["psnr"])


def test_the_tfds_source_reads_a_dataset_built_in_the_test(tmp_path, monkeypatch):
    """``data.train.source='tfds'`` through a stand-in ``tensorflow_datasets`` module (TensorFlow is not installed in CI)."""
    from bppjax.data.pipeline import load_pairs, source_config

    rng = np.random.default_rng(0)
    examples = [{"hr": rng.integers(0, 256, (48, 40, 3), dtype=np.uint8), "lr": rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)}
                for _ in range(3)]
    calls = {}

    def load(name, split, data_dir=None, shuffle_files=False):
        calls.update(name=name, split=split)
        return examples

    fake = types.SimpleNamespace(load=load, as_numpy=lambda ds: iter(ds))
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
    src = source_config(source="tfds", tfds="div2k/bicubic_x2", tfds_lr_key="lr", limit=2)
    pairs = load_pairs(src, (2,), "data.train")
    assert calls == {"name": "div2k/bicubic_x2", "split": "train[:2]"}
    assert len(pairs) == 3 and pairs[0].shape[:2] == (48, 40)
    hr_only = load_pairs(source_config(source="tfds", tfds="div2k/bicubic_x2"), (2, 4), "data.train")
    assert len(hr_only) == 6  # each HR image degraded at both scales
