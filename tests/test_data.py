"""Data sources and the deterministic (seed, step) patch sampler."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bppjax.data import PatchSampler, build_sampler, dihedral, load_embedded, load_pairs, local_slice, match_pairs, source_config
from bppjax.data.pairs import ImagePair, paired
from bppjax.image.degrade import sr_input
from bppjax.training.config import default_config


def coord_pair(h: int = 60, w: int = 80, scale: int = 2) -> ImagePair:
    """A pair whose pixels encode their own coordinates: (y, x, 7) in the target, (y, x, 9) in the input."""
    yy, xx = np.mgrid[:h, :w]
    t = np.stack([yy, xx, np.full_like(yy, 7)], -1).astype(np.uint8)
    i = t.copy()
    i[..., 2] = 9
    return ImagePair("coords", i, t, scale)


def test_batch_is_a_pure_function_of_seed_and_step():
    s = PatchSampler((coord_pair(),), patch=16, batch=4, seed=3)
    a, b = s.batch_at(5), s.batch_at(5)
    assert a["input"].shape == (4, 16, 16, 3) and a["input"].dtype == np.uint8
    np.testing.assert_array_equal(a["target"], b["target"])
    assert not np.array_equal(a["target"], s.batch_at(6)["target"])
    assert not np.array_equal(a["target"], PatchSampler((coord_pair(),), 16, 4, seed=4).batch_at(5)["target"])
    it = s.iterate(start=5)
    np.testing.assert_array_equal(next(it)["target"], a["target"])
    np.testing.assert_array_equal(next(it)["target"], s.batch_at(6)["target"])
    assert s.state(5) == {"seed": 3, "step": 5}


def test_crops_aligned_to_scale_and_input_matches_target():
    for scale in (2, 3):
        s = PatchSampler((coord_pair(scale=scale),), patch=12, batch=16, seed=0, augment=False)
        b = s.batch_at(0)
        assert set((b["target"][:, 0, 0, :2] % scale).ravel()) == {0}
        np.testing.assert_array_equal(b["input"][..., :2], b["target"][..., :2])  # same crop in both
    unaligned = PatchSampler((coord_pair(),), patch=12, batch=64, seed=0, augment=False, align=False).batch_at(0)
    assert (unaligned["target"][:, 0, 0, :2] % 2).any()


def test_augmentation_transforms_input_and_target_alike():
    s = PatchSampler((coord_pair(),), patch=16, batch=32, seed=1, augment=True, align=False)
    b = s.batch_at(0)
    np.testing.assert_array_equal(b["input"][..., :2], b["target"][..., :2])
    # some patches are transposed: the y coordinate then varies along the width
    assert any((p[0, 1, 0] != p[0, 0, 0]) for p in b["target"])


def test_dihedral_gives_eight_distinct_transforms():
    x = np.arange(12).reshape(3, 4, 1)
    outs = {dihedral(x, t).tobytes() + bytes(dihedral(x, t).shape) for t in range(8)}
    assert len(outs) == 8
    np.testing.assert_array_equal(dihedral(x, 0), x)


def test_min_std_skips_flat_patches():
    t = np.zeros((64, 128, 3), np.uint8)
    t[:, 64:] = np.random.default_rng(0).integers(0, 255, (64, 64, 3))
    pair = ImagePair("half_flat", t, t, 1)
    flat = PatchSampler((pair,), patch=16, batch=64, seed=0, augment=False).batch_at(0)
    assert (flat["target"].reshape(64, -1).std(1) == 0).any()
    busy = PatchSampler((pair,), patch=16, batch=64, seed=0, augment=False, min_std=3 / 255).batch_at(0)
    assert (busy["target"].reshape(64, -1).std(1) >= 3).all()


def test_local_slice_partitions_the_global_batch():
    b = {"input": np.arange(8)[:, None], "target": np.arange(8)[:, None]}
    parts = [local_slice(b, i, 4)["input"].ravel().tolist() for i in range(4)]
    assert parts == [[0, 1], [2, 3], [4, 5], [6, 7]]
    with pytest.raises(ValueError, match="not divisible"):
        local_slice(b, 0, 3)


def test_embedded_images_need_no_download():
    (name, im), = load_embedded(["chelsea"])
    assert name == "chelsea" and im.shape == (300, 451, 3) and im.dtype == np.uint8
    with pytest.raises(ValueError, match="unknown embedded"):
        load_embedded(["lena"])


def _write(folder, name, array):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(folder / name)


def test_folder_source_degrades_with_matlab_bicubic(tmp_path):
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (41, 50, 3), dtype=np.uint8)
    _write(tmp_path / "hr", "a.png", hr)
    (pair,) = load_pairs(source_config(source="folder", dirs=(str(tmp_path / "hr"),)), (3,), "data.train")
    assert pair.shape == (39, 48) and pair.scale == 3 and pair.group == "hr"
    expected = sr_input(hr, 3)
    np.testing.assert_array_equal(pair.target, expected.hr)
    np.testing.assert_array_equal(pair.input, expected.net_input)


def test_paired_folders_match_by_name(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(3):
        im = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
        _write(tmp_path / "in", f"{i}_rain.png", im)
        _write(tmp_path / "gt", f"{i}_clean.png", 255 - im)
    pairs = match_pairs(tmp_path / "in", tmp_path / "gt", ("_rain", "_clean"))
    assert [n for n, _, _ in pairs] == ["0", "1", "2"]
    _write(tmp_path / "gt", "7_clean.png", np.zeros((20, 24, 3), np.uint8))
    _write(tmp_path / "in", "9_rain.png", np.zeros((20, 24, 3), np.uint8))
    with pytest.raises(ValueError, match=r"(?s)inputs without a target: 9_rain.png.*targets without an input: 7_clean.png"):
        match_pairs(tmp_path / "in", tmp_path / "gt", ("_rain", "_clean"))


def test_paired_input_smaller_by_integer_factor_is_upscaled():
    lr, hr = np.zeros((10, 12, 3), np.uint8), np.zeros((20, 24, 3), np.uint16)
    p = paired("x", lr, hr)
    assert p.input.shape == hr.shape and p.input.dtype == np.uint16 and p.scale == 2
    with pytest.raises(ValueError, match="must match or differ by an integer factor"):
        paired("y", np.zeros((10, 13, 3), np.uint8), np.zeros((20, 24, 3), np.uint8))


def test_patch_larger_than_images(tmp_path):
    _write(tmp_path / "hr", "small.png", np.zeros((30, 30, 3), np.uint8))
    _write(tmp_path / "hr", "big.png", np.full((80, 80, 3), 9, np.uint8))
    c = default_config("tiny").data
    c.train = source_config(source="folder", dirs=(str(tmp_path / "hr"),))
    c.patch = 48
    with pytest.warns(UserWarning, match="skipping 1 training image"):
        s = build_sampler(c, 0)
    assert [p.name for p in s.pairs] == ["big"]
    c.patch = 96
    with pytest.raises(ValueError, match="data.patch=96 is larger than every training image"):
        build_sampler(c, 0)


def test_tfds_missing_is_explained(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name.startswith("tensorflow_datasets"):
            raise ImportError("No module named 'tensorflow_datasets'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"bppjax\[tfds\]"):
        load_pairs(source_config(source="tfds", tfds="div2k/bicubic_x4", tfds_lr_key="lr"), (4,), "data.train")


def test_lr_input_space_keeps_the_lr_image(tmp_path):
    rng = np.random.default_rng(2)
    hr = rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)
    _write(tmp_path / "hr", "a.png", hr)
    src = source_config(source="folder", dirs=(str(tmp_path / "hr"),))
    (pair,) = load_pairs(src, (4,), "data.train", input_space="lr")
    np.testing.assert_array_equal(pair.input, sr_input(hr, 4).lr)
    assert pair.input.shape == (10, 13, 3) and pair.target.shape == (40, 52, 3)
    lr_hdr = paired("h", np.zeros((10, 12, 3), np.uint8), np.zeros((20, 24, 3), np.uint8), input_space="lr")
    assert lr_hdr.input.shape == (10, 12, 3) and lr_hdr.scale == 2
    with pytest.raises(ValueError, match="input_space must be one of"):
        load_pairs(src, (4,), "data.train", input_space="LR")
