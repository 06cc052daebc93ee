"""DIV2K through TensorFlow Datasets' real ``div2k`` builder and feature spec, on tfds's mock data."""

from __future__ import annotations

import json

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets", reason="tensorflow-datasets is not installed (pip install 'bppjax[tfds]')")

from bppjax.data import build_sampler, describe  # noqa: E402
from bppjax.data.pairs import sr_pairs  # noqa: E402
from bppjax.data.sampler import PatchSampler  # noqa: E402
from bppjax.data.tfds_source import open_source, read_hr  # noqa: E402
from bppjax.training import train_and_evaluate  # noqa: E402
from bppjax.training.config import load_config_file  # noqa: E402

EXAMPLES = 8
# tfds's mock images are 5-49 pixels a side: some are smaller than a patch and skipped, with a warning
pytestmark = pytest.mark.filterwarnings("ignore:data.patch=16. skipping")


def test_div2k_feature_spec_is_what_the_source_reads():
    builder = tfds.builder("div2k/bicubic_x4")
    features = builder.info.features
    assert {"hr", "lr"} <= set(features) and features["hr"].shape == (None, None, 3)
    assert np.dtype(features["hr"].np_dtype) == np.uint8


def test_sr_x4_tfds_tiny_trains_on_div2k(tmp_path):
    config = load_config_file("configs/sr.py:x4,tfds,tiny")
    assert config.data.train.source == "tfds" and config.data.train.tfds == "div2k/bicubic_x4"
    with tfds.testing.mock_data(num_examples=EXAMPLES):
        sampler = build_sampler(config.data, int(config.train.seed))
        assert all(p.name.startswith("div2k/bicubic_x4:") for p in sampler.pairs), describe(sampler.pairs)
        result = train_and_evaluate(config, tmp_path / "run")
    assert result.step == config.train.steps == 6
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses and all(np.isfinite(losses)) and losses[-1] > 0
    assert np.isfinite(result.val["psnr"])


def test_streaming_from_the_data_source_equals_in_memory(tmp_path):
    config = load_config_file("configs/sr.py:x4,tfds,stream,tiny")
    with tfds.testing.mock_data(num_examples=EXAMPLES):
        streamed = build_sampler(config.data, 3)
        source, sizes = open_source("div2k/bicubic_x4", "train", limit=4)
        images = [(name, read_hr(source, "hr", i)) for name, i, _ in sizes]
    assert all(not hasattr(p, "target") for p in streamed.pairs)
    pairs = [p for p in sr_pairs(images, (4,), "div2k") if min(p.shape) >= config.data.patch]
    in_memory = PatchSampler(tuple(pairs), config.data.patch, config.data.batch, seed=3)
    for step in (0, 5):
        a, b = in_memory.batch_at(step), streamed.batch_at(step)
        np.testing.assert_array_equal(a["input"], b["input"])
        np.testing.assert_array_equal(a["target"], b["target"])
    streamed.close()
