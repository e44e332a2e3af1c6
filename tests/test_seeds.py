"""The run store (`lionlib.experiments.store`): records kept as data, deterministic runs, side by side
equal to alone, a missing record trained, REFRESH retrains, partial-spec matching."""

import json
import os
from pathlib import Path

import pytest
import torch

from lionlib.experiments import nets, specs
from lionlib.experiments.common import OFFLINE_DATA, ConfigError
from lionlib.experiments.record import MAX_POINTS, RunRecord, window_means
from lionlib.experiments.store import RunStore

DATA = Path(os.environ.get("LIONLIB_DATA_DIR") or OFFLINE_DATA)  # the offline copy (CIFAR-10 JPEG, tiny Shakespeare)
needs_data = pytest.mark.skipif(not (DATA / "cifar10-jpeg").is_dir(), reason="offline CIFAR-10 copy missing")


def test_conv_matches_conv2d():
    torch.manual_seed(0)
    c = nets.Conv(3, 5, 3, stride=2)
    ref = torch.nn.Conv2d(3, 5, 3, 2, 1, bias=False)
    ref.weight.data.copy_(c.weight.data.view(5, 3, 3, 3))
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(c(x), ref(x))


@pytest.mark.parametrize("arch", ["resnet", "vit"])
def test_nets_shapes(arch):
    m = nets.build(arch, **({"widths": (4, 8)} if arch == "resnet" else {"dim": 16, "depth": 1, "heads": 2}))
    assert m(torch.randn(3, 3, 32, 32)).shape == (3, 10)
    with pytest.raises(ValueError, match="unknown architecture"):
        nets.build("mlp")


def test_spec_hash_covers_the_spec_and_missing_keys_are_errors():
    s = specs.cifar_spec("cpu")
    assert len(specs.spec_hash(s)) == 16 and specs.spec_hash(s) == specs.spec_hash(specs.cifar_spec("cpu"))
    for change in (dict(seed=1), dict(lr=2e-3), dict(precision="bf16"), dict(split_seed=1), dict(role="eval")):
        assert specs.spec_hash(specs.with_(s, **change)) != specs.spec_hash(s)
    d = json.loads(specs.canonical(s))
    assert specs.spec_from_dict(d) == s
    del d["seed"]
    with pytest.raises(ConfigError, match=r"missing keys \['seed'\]"):
        specs.spec_from_dict(d)
    with pytest.raises(ConfigError, match="unknown cifar spec keys"):
        specs.cifar_spec("cpu", epochs=3)
    with pytest.raises(ConfigError, match="p None"):
        specs.cifar_spec("cpu", optimizer="lion_lp")


def test_window_means_keep_at_most_200_points():
    w = window_means(list(range(1, 1001)), [float(i) for i in range(1000)])
    assert len(w["step"]) == MAX_POINTS and w["step"][-1] == 1000 and w["loss"][0] == pytest.approx(2.0)
    assert window_means([1, 2, 3], [1.0, 2.0, 3.0]) == {"step": [1, 2, 3], "loss": [1.0, 2.0, 3.0]}


@needs_data
def test_records_are_bit_identical_re_runs_and_read_back(tmp_path):
    """A tiny spec trained twice writes the same record (wall time and date excepted); the store reads it
    back instead of training, and REFRESH retrains."""
    spec = specs.cifar_spec("tiny", optimizer="lion_lp", p=1.5)
    store = RunStore(tmp_path)
    (first,) = store.run([spec], data_dir=str(DATA), show_progress=False)
    path = store.path(spec)
    assert path == tmp_path / "cifar" / f"{specs.spec_hash(spec)}.json"
    text = path.read_text()
    d = json.loads(text)
    assert d["schema"] == "lionlib.run/1" and d["spec_hash"] == specs.spec_hash(spec) and d["task"] == "cifar"
    assert set(d) >= {"spec", "code", "env", "train", "eval", "monitor", "final", "wall_seconds"}
    assert d["env"]["threads"] == 1 and d["env"]["precision"] == "fp32" and not d["env"]["compile"]
    stamp = path.stat().st_mtime_ns
    (again,) = store.run([spec], data_dir=str(DATA), show_progress=False)
    assert path.stat().st_mtime_ns == stamp and again.numbers() == first.numbers()  # read back, not trained
    (fresh,) = RunStore(tmp_path / "other").run([spec], data_dir=str(DATA), show_progress=False)
    assert fresh.numbers() == first.numbers()  # bit-identical re-run
    (retrained,) = store.run([spec], refresh=True, data_dir=str(DATA), show_progress=False)
    assert path.stat().st_mtime_ns != stamp and retrained.numbers() == first.numbers()
    assert RunRecord.loads(path.read_text()).numbers() == first.numbers()


@needs_data
def test_side_by_side_equals_alone_and_match_finds_partial_specs(tmp_path):
    runs = [specs.cifar_spec("tiny", seed=s) for s in (0, 1)] + [specs.gpt_spec("tiny")]
    par = RunStore(tmp_path / "a").run(runs, workers=2, data_dir=str(DATA), show_progress=False)
    alone = RunStore(tmp_path / "b").run(runs, workers=0, data_dir=str(DATA), show_progress=False)
    for a, b in zip(par, alone):  # deterministic whichever process trains it
        assert a.numbers() == b.numbers()
    assert par[0].train != par[1].train
    store = RunStore(tmp_path / "a")
    assert [r.spec.seed for r in store.match({"model": "resnet_tiny"}, task="cifar")] in ([0, 1], [1, 0])
    assert len(store.match({"task": "gpt", "optimizer": "lion"})) == 1 and not store.match({"task": "gpt", "seed": 5})
    with pytest.raises(ConfigError, match="unknown cifar spec keys"):
        store.match({"epochs": 2}, task="cifar")


@needs_data
def test_a_failed_run_writes_nothing(tmp_path):
    bad = specs.cifar_spec("tiny")
    object.__setattr__(bad, "optimizer", "sgd")  # past the spec's own check: the trainer refuses it too
    with pytest.raises(ConfigError, match="optimizer 'sgd'"):
        RunStore(tmp_path).run([bad], data_dir=str(DATA), show_progress=False)
    assert not RunStore(tmp_path).path(bad).exists()
    assert not torch.are_deterministic_algorithms_enabled()  # the caller's settings are restored
