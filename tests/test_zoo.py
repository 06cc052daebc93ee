"""The shipped models: checksums, loading by name everywhere, model-card scores, packaging."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import jax
import numpy as np
import pytest

import bppjax
from bppjax import zoo
from bppjax.workdir import load_model
from bppjax.evaluation import evaluate
from bppjax.data.embedded import load_embedded
from bppjax.image.io import read_image, write_image
from bppjax.training import load_config_file
from bppjax.training.config import ConfigError, default_config
from bppjax.training.loop import train_and_evaluate
from bppjax.zoo.export import SRCNN

NAMES = zoo.names()
PER_FACTOR = {2: "bpp-sr-x2", 3: "bpp-sr-x3", 4: "bpp-sr-x4"}
REPO = Path(__file__).resolve().parents[1]


def test_the_zoo_ships_models_with_cards():
    assert "bpp-sr-x2" in NAMES
    for name in NAMES:
        c = zoo.card(name)
        assert c["name"] == name
        for key in ("sha256", "params", "steps", "wall_seconds", "config", "training", "evaluation"):
            assert key in c, f"{name}: model card lacks {key!r}"
        assert c["training"]["command"].startswith("python -m bppjax.train ")
        assert zoo.weights_path(name).stat().st_size <= 2.2e6


def _strings(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def test_cards_describe_the_recipe_not_the_machine():
    """No card holds an absolute path; ``portable`` writes one as a user beside the repository runs it."""
    from bppjax.zoo.export import portable

    for name in NAMES:
        words = [w for s in _strings(zoo.card(name)) for w in s.split()]
        assert not [w for w in words if w.startswith("/")], f"{name}: absolute paths in the model card"
    config = {"data": {"train": {"dirs": ["/home/u/work/shared/data/T91", "/data/mine/BSDS200"]}, "patch": 96}}
    assert portable(config) == {"data": {"train": {"dirs": ["../shared/data/T91", "<BSDS200 folder>"]}, "patch": 96}}
    assert (portable("python -m bppjax.train --workdir /abs/runs/zoo_x3 --checkpoint bpp-sr-x2")
            == "python -m bppjax.train --workdir <zoo_x3 folder> --checkpoint bpp-sr-x2")


@pytest.mark.parametrize("name", NAMES)
def test_each_model_loads_and_its_checksum_matches(name):
    assert zoo.sha256(zoo.weights_path(name)) == zoo.card(name)["sha256"]
    m = bppjax.pretrained(name)
    assert isinstance(m, bppjax.LoadedModel) and m.which == "pretrained"
    assert sum(int(np.size(a)) for a in jax.tree.leaves(m.params)) == zoo.card(name)["params"]
    same = load_model(name)  # every --checkpoint goes through load_model
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), m.params, same.params))
    y = np.asarray(m.at_factor(2).apply(np.full((1, 16, 16, 3), 0.5, np.float32)))  # a conditioned model is told its factor
    assert y.shape == (1, 16, 16, 3) and np.isfinite(y).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_each_model_reproduces_its_cards_set5_scores(name, shared_data):
    c = zoo.card(name)
    m = bppjax.pretrained(name)
    expected = c["evaluation"]["results"]["Set5"]
    got = evaluate(m, [shared_data / "Set5"], [int(s) for s in expected], progress=False)["Set5"]  # m: told each factor
    for s, r in expected.items():
        assert got[int(s)]["psnr"] == pytest.approx(r["psnr"], abs=0.01), f"{name} x{s}"


def test_the_multi_factor_model_is_within_0_3_db_of_each_per_factor_model():
    """The cards' tables (each reproduced on Set5 above): bpp-sr-multi gives up at most 0.3 dB on any set and factor."""
    if zoo.MULTI_SCALE_MODEL not in NAMES:
        pytest.skip("no multi-factor model shipped")
    multi = zoo.card(zoo.MULTI_SCALE_MODEL)["evaluation"]["results"]
    gaps = {(s, d): r[str(s)]["psnr"] - multi[d][str(s)]["psnr"]
            for s, name in PER_FACTOR.items() if name in NAMES for d, r in zoo.card(name)["evaluation"]["results"].items()}
    assert len(gaps) == 9 and all(g <= 0.30 for g in gaps.values()), gaps


def test_every_per_factor_model_passes_srcnn_by_a_tenth_of_a_db_on_every_set():
    """The cards' tables (Set5 reproduced above) against SRCNN's published row: a margin, not a tie."""
    margins = {(s, d): zoo.card(name)["evaluation"]["results"][d][str(s)]["psnr"] - srcnn
               for s, name in PER_FACTOR.items() if name in NAMES for d, srcnn in SRCNN[s].items()}
    assert len(margins) == 9 and all(m >= 0.10 for m in margins.values()), margins


#: What a zoo recipe may cost, every stage counted: ~90 minutes of a 2-core CPU (2% for the machine's jitter).
ZOO_BUDGET_SECONDS = 90 * 60 * 1.02


@pytest.mark.parametrize("name", NAMES)
def test_each_recipe_fits_about_90_cpu_minutes(name):
    assert zoo.card(name)["training"]["wall_seconds"] <= ZOO_BUDGET_SECONDS, f"{name}: {zoo.card(name)['training']['wall_seconds']:.0f} s"


@pytest.mark.parametrize("name", NAMES)
def test_each_card_keeps_every_stage_of_its_recipe_and_their_summed_time(name):
    t = zoo.card(name)["training"]
    stages = t.get("stages") or [{"config": t["command"], "steps": t["steps"], "wall_seconds": t["wall_seconds"], "machine": t["machine"]}]
    assert sum(st["wall_seconds"] for st in stages) == pytest.approx(t["wall_seconds"], abs=1.0)
    assert sum(st["steps"] for st in stages) == t["steps"] == zoo.card(name)["steps"]
    assert all(st.get("machine") for st in stages), f"{name}: a stage without the machine it was timed on"
    for st in stages[1:]:  # every later stage names the run it starts from
        assert st.get("init_from"), f"{name}: stage {st['config']} does not say what it starts from"


@pytest.mark.parametrize("name", NAMES)
def test_each_cards_last_stage_is_the_config_it_names(name):
    """The recipe a card gives reruns what was shipped: its last stage's config file holds the card's optimiser, schedule, data and model."""
    t, card = zoo.card(name)["training"], zoo.card(name)["config"]
    words = t["command"].split()
    stages = t.get("stages") or [{"config": words[words.index("--config") + 1], "steps": t["steps"]}]  # one run: its command
    for st in stages:  # every stage's config loads
        load_config_file(str(REPO / st["config"]))
    c = load_config_file(str(REPO / stages[-1]["config"])).to_dict()
    assert c["optim"] == card["optim"] and c["train"]["steps"] == card["train"]["steps"] == stages[-1]["steps"]
    for key in ("scales", "patch", "batch"):
        assert list(np.atleast_1d(c["data"][key])) == list(np.atleast_1d(card["data"][key])), key
    for key in ("features", "depth"):
        assert list(np.atleast_1d(c["model"][key])) == list(np.atleast_1d(card["model"][key])), key
    assert c["model"]["factor_conditioning"] == card["model"].get("factor_conditioning", False)  # older cards: before the option


def test_pretrained_without_a_name_lists_the_cards():
    listed = bppjax.pretrained()
    assert set(listed) == set(NAMES)
    table = zoo.format_cards(listed)
    assert all(f"`{n}`" in table for n in NAMES)


def test_the_zoo_command_lists_the_models(capsys):
    from bppjax.zoo.__main__ import main

    assert main([]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in NAMES) and "Set5" in out


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(zoo.ZooError, match="bpp-sr-x2"):
        bppjax.pretrained("bpp-sr-x9")
    with pytest.raises(zoo.ZooError, match="shipped models are: .*bpp-sr-x2"):
        load_model("bpp-sr-x9")


def test_a_corrupted_weight_file_is_refused_with_a_clear_error(tmp_path):
    name = NAMES[0]
    shutil.copy(zoo.ZOO_DIR / f"{name}.json", tmp_path)
    data = bytearray(zoo.weights_path(name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / f"{name}.msgpack").write_bytes(bytes(data))
    with pytest.raises(zoo.ZooError, match=f"{name}.*corrupted.*SHA-256"):
        zoo.pretrained(name, folder=tmp_path)
    (tmp_path / f"{name}.msgpack").unlink()
    with pytest.raises(zoo.ZooError, match="missing"):
        zoo.pretrained(name, folder=tmp_path)


def test_scale_picks_the_per_factor_model_else_the_multi_scale_one():
    for s, name in PER_FACTOR.items():
        if name in NAMES:
            assert zoo.model_for_scale(s) == name
    if zoo.MULTI_SCALE_MODEL in NAMES:
        assert zoo.model_for_scale(2.5) == zoo.MULTI_SCALE_MODEL
        assert zoo.model_for_scale(8) == zoo.MULTI_SCALE_MODEL


def test_enhance_without_checkpoint_uses_the_shipped_model(tmp_path, capsys):
    from bppjax.enhance import main

    rng = np.random.default_rng(0)
    write_image(tmp_path / "in" / "photo.png", rng.integers(0, 256, (20, 28, 3), dtype=np.uint8))
    assert main([str(tmp_path / "in" / "photo.png"), "--scale", "2", "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert "bpp-sr-x2" in capsys.readouterr().err
    assert read_image(tmp_path / "out" / "photo.png", dtype="native").shape == (40, 56, 3)


def test_evaluate_accepts_a_zoo_name(shared_data, tmp_path, capsys):
    from bppjax.evaluate import main

    out = tmp_path / "r.json"
    assert main(["--checkpoint", "bpp-sr-x2", "--data", str(shared_data / "Set5"), "--scales", "2", "--json", str(out),
                 "--no-progress"]) == 0
    got = json.loads(out.read_text())["Set5"]["2"]["psnr"]
    assert got == pytest.approx(zoo.card("bpp-sr-x2")["evaluation"]["results"]["Set5"]["2"]["psnr"], abs=0.01)


def test_train_warm_starts_from_a_zoo_model(tmp_path):
    c = default_config("tiny")
    c.model = zoo.pretrained("bpp-sr-x2").config.model
    c.optim.lr = 1e-12  # two steps that cannot move the parameters measurably
    c.train.steps = 2
    result = train_and_evaluate(c, tmp_path / "ft", init_from="bpp-sr-x2")
    ref = bppjax.pretrained("bpp-sr-x2").params
    diff = jax.tree.map(lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))), result.state.params, ref)
    assert max(jax.tree.leaves(diff)) < 1e-6
    tiny = default_config("tiny")
    with pytest.raises(ConfigError, match="cannot warm-start from bpp-sr-x2"):
        train_and_evaluate(tiny, tmp_path / "bad", init_from="bpp-sr-x2")


@pytest.mark.slow
def test_a_wheel_carries_the_weights_and_cards(tmp_path):
    root = zoo.ZOO_DIR.parents[1]
    src = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(root / "bppjax", src / "bppjax", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(src)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("bppjax-*.whl")
    with zipfile.ZipFile(wheel) as z:
        files = set(z.namelist())
        for name in NAMES:
            card = json.loads(z.read(f"bppjax/zoo/{name}.json"))
            assert f"bppjax/zoo/{name}.msgpack" in files
            assert zoo.hashlib.sha256(z.read(f"bppjax/zoo/{name}.msgpack")).hexdigest() == card["sha256"]


def _tiny_run(tmp_path):
    c = default_config("tiny")  # x2 on embedded photos
    c.train.update(steps=6, ckpt_every=6, val_every=0)
    train_and_evaluate(c, tmp_path / "run")
    bench = tmp_path / "bench"
    bench.mkdir()
    for name, image in load_embedded(["chelsea"]):
        write_image(bench / f"{name}.png", image[:64, :64])
    return tmp_path / "run", bench


def test_export_records_every_stage_of_the_recipe_and_their_summed_time(tmp_path, capsys):
    from bppjax.zoo.__main__ import main as zoo_main
    from bppjax.zoo.export import export_model

    run, bench = _tiny_run(tmp_path)
    stages = [{"config": "configs/zoo.py:x2", "steps": 8000, "wall_seconds": 2000.5, "machine": "2 CPU cores, X", "note": "root"},
              {"config": "configs/zoo.py:x3w12k", "init_from": str(tmp_path / "zoo_x2r"), "steps": 6, "wall_seconds": 30.0}]
    card = export_model(run, "staged", command="python -m bppjax.train ...", data_dirs=[bench], scales=[2], folder=tmp_path / "zoo",
                        progress=False, stages=stages, choices="fixed before training")
    t = card["training"]
    assert card["wall_seconds"] == t["wall_seconds"] == 2030.5 and card["steps"] == t["steps"] == 8006
    assert t["stages"][1]["init_from"] == "<zoo_x2r folder>" and t["choices"] == "fixed before training"
    assert json.loads((tmp_path / "zoo" / "staged.json").read_text())["training"]["stages"] == t["stages"]
    with pytest.raises(ValueError, match="not the sum"):
        export_model(run, "staged", command="c", wall_seconds=100.0, data_dirs=[bench], folder=tmp_path / "zoo", stages=stages)
    with pytest.raises(ValueError, match="checkpoint is at step 6"):
        export_model(run, "staged", command="c", data_dirs=[bench], folder=tmp_path / "zoo", stages=stages[:1])
    bad = tmp_path / "stages.json"
    bad.write_text(json.dumps([{"config": "configs/zoo.py:x2", "steps": 8000}]))
    args = ["export", str(run), "staged", "--command", "c", "--data", str(bench), "--stages", str(bad)]
    assert zoo_main(args) == 2
    assert f"{bad}: stage 1: missing wall_seconds" in capsys.readouterr().err
    assert zoo_main(["export", str(run), "staged", "--command", "c", "--data", str(bench)]) == 2
    assert "wall_seconds" in capsys.readouterr().err
