"""lionlib.experiments.cifar: loaders (real JPEG copy, official archive format, caches), augmentation, training.

No network: downloads go to a local file:// archive built here. Training runs use a few hundred
real images and a net a few channels wide, so the whole file runs in well under a minute.
"""

import hashlib
import io
import json
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lionlib.experiments import cifar, cifar_data
from lionlib.experiments.checkpoint import CheckpointError
from lionlib.experiments.common import DataError

# The offline copy: $LIONLIB_DATA_DIR if set (a worktree has no ../shared beside it), else ../shared/data.
JPEG = Path(os.environ.get("LIONLIB_DATA_DIR") or cifar_data.OFFLINE) / "cifar10-jpeg"
needs_jpeg = pytest.mark.skipif(not JPEG.is_dir(), reason="offline CIFAR-10 JPEG copy not present")
TINY = dict(widths=(8, 16, 16), batch_size=50, epochs=2, train_per_class=30, test_per_class=20, warmup=0.2,
            verbose=False, lr=2e-3, weight_decay=1.0)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """300 training and 200 test images of the real JPEG copy, decoded into a private cache."""
    if not JPEG.is_dir():
        pytest.skip("offline CIFAR-10 JPEG copy not present")
    return cifar_data.load_cifar10(JPEG, train_per_class=30, test_per_class=20, cache_dir=tmp_path_factory.mktemp("cache"))


# ----------------------------------------------------------------------------------------------
# Data


@needs_jpeg
def test_jpeg_copy_loads_in_label_order(tmp_path):
    d = cifar_data.load_cifar10(JPEG, train_per_class=200, test_per_class=3, cache_dir=tmp_path)
    x, y = d["train"]
    assert d["label"] == "CIFAR-10 (JPEG copy)" and not d["verified"]  # a subset cannot match the full checksum
    assert x.shape == (2000, 3, 32, 32) and x.dtype == torch.uint8 and y.dtype == torch.int64
    assert y.tolist() == [c for c in range(10) for _ in range(200)]  # alphabetical class folders = CIFAR labels
    assert d["test"][0].shape == (30, 3, 32, 32)
    # Pixels equal an independent Pillow decode, channels first.
    for cls, i in (("airplane", 0), ("truck", 199)):
        ref = np.asarray(Image.open(JPEG / "train" / cls / f"{i:04d}.jpg").convert("RGB")).transpose(2, 0, 1)
        assert np.array_equal(x[cifar_data.CLASSES.index(cls) * 200 + i].numpy(), ref)
    # Airplanes are sky-blue. The data README quotes (0.502, 0.513, 0.527) for the first 2,000; decoding
    # them gives (0.526, 0.562, 0.589) (the first 200: within 0.015), so we check the decoded value.
    mean = x[:200].double().mean((0, 2, 3)) / 255
    assert torch.allclose(mean, torch.tensor([0.526, 0.562, 0.589], dtype=torch.double), atol=0.015)


def test_find_source_order(tmp_path, monkeypatch):
    """Explicit folder, then DATA (LIONLIB_DATA_DIR), then the offline copy; `cifar10-jpeg/` one level down works."""
    layout = tmp_path / "shared" / "cifar10-jpeg"
    for split in ("train", "test"):
        (layout / split).mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("LIONLIB_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr(cifar_data, "OFFLINE", tmp_path / "shared")
    assert cifar_data.find_source().path == layout
    monkeypatch.setenv("LIONLIB_DATA_DIR", str(tmp_path / "shared"))
    assert cifar_data.find_source().path == layout
    with pytest.raises(DataError, match="CIFAR-10 not found"):
        cifar_data.find_source(tmp_path / "empty")
    monkeypatch.setattr(cifar_data, "OFFLINE", tmp_path / "nowhere")
    monkeypatch.setenv("LIONLIB_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(DataError, match="CIFAR-10 not found"):
        cifar_data.find_source(download=False)


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "drop_sidecar", "garbage"])
def test_corrupt_cache_is_rebuilt(tmp_path, capsys, damage, image_folder):
    src = image_folder(tmp_path / "imgs")
    first = cifar_data.load_cifar10(src, cache_dir=tmp_path / "cache")
    (path,) = (tmp_path / "cache").glob("*.pt")
    raw = path.read_bytes()
    if damage == "flip_byte":
        path.write_bytes(raw[:1000] + bytes([raw[1000] ^ 0xFF]) + raw[1001:])
    elif damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "drop_sidecar":
        path.with_name(path.name + ".json").unlink()
    else:  # a well-formed file with the right sidecar but the wrong content
        torch.save({"train": (torch.zeros(3), torch.zeros(3)), "test": None}, path)
        path.with_name(path.name + ".json").write_text(json.dumps(
            {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "size": path.stat().st_size}))
    second = cifar_data.load_cifar10(src, cache_dir=tmp_path / "cache")
    if damage != "drop_sidecar":
        assert "unusable cache" in capsys.readouterr().out
    for split in ("train", "test"):
        assert all(torch.equal(a, b) for a, b in zip(first[split], second[split]))
    assert cifar_data._load_cache(path) is not None  # the rebuilt cache is whole again


def _fake_archive(path, n=3, seed=0):
    """A cifar-10-python.tar.gz with the official member names and pickle layout, n images per batch."""
    rng = np.random.default_rng(seed)
    batches = {}
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            b = {b"data": rng.integers(0, 256, (n * 10, 3072), dtype=np.uint8), b"labels": list(range(10)) * n}
            batches[name] = b
            raw = pickle.dumps(b)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return batches


def test_download_verifies_md5(tmp_path, monkeypatch):
    server = tmp_path / "server" / cifar_data.ARCHIVE
    server.parent.mkdir()
    batches = _fake_archive(server)
    md5 = hashlib.md5(server.read_bytes()).hexdigest()
    dest = tmp_path / "data" / cifar_data.ARCHIVE
    # A wrong checksum: error, and neither the file nor a partial download (nor its folder) is left behind.
    with pytest.raises(DataError, match="md5"):
        cifar_data.fetch(server.as_uri(), dest, "0" * 32)
    assert not dest.parent.exists()
    # A corrupt file already at dest is the user's: an error naming it, and it is kept.
    dest.parent.mkdir()
    dest.write_bytes(b"partial")
    with pytest.raises(DataError, match=f"{dest}.*md5"):
        cifar_data.fetch(server.as_uri(), dest, md5)
    assert dest.read_bytes() == b"partial"
    assert cifar_data.fetch(server.as_uri(), tmp_path / "d2" / dest.name, md5).read_bytes() == server.read_bytes()
    # find_source downloads when nothing is found, and the archive decodes to the official layout.
    dest.unlink()
    monkeypatch.setenv("LIONLIB_DATA_DIR", str(tmp_path / "data"))
    for k, v in dict(URL=server.as_uri(), ARCHIVE_MD5=md5, OFFLINE=tmp_path / "none").items():
        monkeypatch.setattr(cifar_data, k, v)
    d = cifar_data.load_cifar10(cache_dir=tmp_path / "cache")
    assert dest.is_file() and d["verified"] and d["label"] == "CIFAR-10"
    x, y = d["train"]
    assert x.shape == (150, 3, 32, 32) and x.dtype == torch.uint8 and y.dtype == torch.int64
    assert np.array_equal(x[0].numpy().reshape(-1), batches["data_batch_1"][b"data"][0])
    assert np.array_equal(d["test"][0][-1].numpy().reshape(-1), batches["test_batch"][b"data"][-1])
    sub = cifar_data.load_cifar10(tmp_path / "data", train_per_class=2, test_per_class=1, cache_dir=tmp_path / "cache")
    assert sub["train"][1].tolist() == list(range(10)) * 2  # the first 2 of each class, in archive order
    assert sub["test"][0].shape == (10, 3, 32, 32)


# ----------------------------------------------------------------------------------------------
# Augmentation


def test_augment_is_a_flip_and_a_crop_of_each_image():
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    out = cifar_data.augment(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out, cifar_data.augment(x, torch.Generator().manual_seed(1)))  # same generator, same batch
    assert not torch.equal(out, cifar_data.augment(x, torch.Generator().manual_seed(2)))
    padded = torch.nn.functional.pad(x, (2,) * 4, mode="reflect")
    flips = set()
    for i in range(len(x)):
        matches = [(f, dy, dx) for f in (False, True) for dy in range(5) for dx in range(5)
                   if torch.equal(out[i], (padded[i].flip(2) if f else padded[i])[:, dy:dy + 32, dx:dx + 32])]
        assert matches, f"image {i} is not a crop of its padded (flipped) self"
        flips.add(matches[0][0])
    assert flips == {False, True}


# ----------------------------------------------------------------------------------------------
# Optimizer grouping


def test_lp_groups_keep_lr_times_wd():
    model = cifar.CifarNet((8, 16, 16))
    for p in (1.0, 1.5, 2.0):
        groups = cifar.lp_groups(model, lr=1e-3, weight_decay=2.0, p=p)
        assert len(groups) == sum(q.requires_grad for q in model.parameters())
        for g in groups:
            n = g["params"][0][1].numel()
            assert g["lr"] == pytest.approx(1e-3 * n ** (1 - 1 / p))
            assert g["lr"] * g["weight_decay"] == pytest.approx(2e-3)


# ----------------------------------------------------------------------------------------------
# Training


def test_training_decreases_the_loss(small, tmp_path):
    cfg = cifar.Config(**{**TINY, "epochs": 4}, out_dir=str(tmp_path), monitor=True)
    res = cifar.train(cfg, small)
    losses = res["losses"]
    assert np.mean(losses[-6:]) < np.mean(losses[:6]) - 0.1
    assert res["final_test_acc"] > 0.15  # chance is 0.1
    assert res["dataset"] == "CIFAR-10 (JPEG copy)"
    saved = cifar.load_result(tmp_path)
    assert saved["final_test_acc"] == res["final_test_acc"] and saved["config"]["optimizer"] == "lion"
    mon = saved["monitor"]
    # Phase 1: every tensor's lambda ||x||_inf stays below the bound, whatever the gradients.
    assert set(mon["name"]) == {n for n, p in res["model"].named_parameters() if p.requires_grad}
    assert all(c <= b * (1 + 1e-5) for c, b in zip(mon["constraint"], mon["bound"]))  # float32 rounding


@pytest.mark.parametrize("optimizer", ["lion_lp", "adamw"])
def test_other_optimizers_train(small, tmp_path, optimizer):
    hyper = dict(lr=1e-2, weight_decay=0.1) if optimizer == "adamw" else {}
    res = cifar.train(cifar.Config(**{**TINY, **hyper}, optimizer=optimizer, p=1.5, out_dir=str(tmp_path)), small)
    assert np.mean(res["losses"][-6:]) < np.mean(res["losses"][:6])


def test_resume_is_identical(small, tmp_path, monkeypatch):
    """An interrupted run resumed from its checkpoint ends bit-identical to an uninterrupted one (CPU)."""
    cfg = cifar.Config(**TINY, monitor=True, resume=False, out_dir=str(tmp_path / "a"))
    full = cifar.train(cfg, small)
    cfg_b = cifar.Config(**TINY, monitor=True, out_dir=str(tmp_path / "b"), stop_at=1, resume=True)
    part = cifar.train(cfg_b, small)
    assert part["stopped"] and len(part["history"]) == 1
    cfg_b.stop_at = None
    real, steps = cifar.augment, []
    monkeypatch.setattr(cifar, "augment", lambda x, gen: (steps.append(1), real(x, gen))[1])
    resumed = cifar.train(cfg_b, small)
    assert len(steps) == len(full["losses"]) // 2  # the second epoch only: continued, not trained again
    for (k, a), (_, b) in zip(full["model"].state_dict().items(), resumed["model"].state_dict().items()):
        assert torch.equal(a, b), k
    assert full["losses"] == resumed["losses"]
    assert [h["test_acc"] for h in full["history"]] == [h["test_acc"] for h in resumed["history"]]
    assert full["monitor"] == resumed["monitor"]
    with pytest.raises(CheckpointError, match=r"another configuration \(lr 0.002 -> 0.001\)"):
        cifar.train(cifar.Config(**{**TINY, "lr": 1e-3}, monitor=True, out_dir=str(tmp_path / "b"), resume=True), small)


def test_paper_path_end_to_end(small, tmp_path):
    """The `paper` scale's code path (its batch size, schedule, compile flag) on CPU at a tiny size."""
    cfg = cifar.config("paper", widths=(8, 8, 8), train_per_class=30, test_per_class=20, epochs=1,
                       out_dir=str(tmp_path), verbose=False)
    assert cfg.compile and cfg.batch_size == 1024
    res = cifar.run(cfg, small)
    assert res["n_train"] == 300 and len(res["history"]) == 1 and np.isfinite(res["final_test_loss"])
    again = cifar.run(cfg, small, reuse=True)  # read back from result.json, no training
    assert "model" not in again and again["losses"] == res["losses"]
