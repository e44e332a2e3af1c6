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

from lionlib.experiments import cifar_data, cifar_train, engine, nets, specs
from lionlib.experiments.checkpoint import CheckpointError
from lionlib.experiments.common import DataError

# The offline copy: $LIONLIB_DATA_DIR if set (a worktree has no ../shared beside it), else ../shared/data.
JPEG = Path(os.environ.get("LIONLIB_DATA_DIR") or cifar_data.OFFLINE) / "cifar10-jpeg"
needs_jpeg = pytest.mark.skipif(not JPEG.is_dir(), reason="offline CIFAR-10 JPEG copy not present")
TINY = dict(model="resnet_tiny", batch_size=16, n_train=180, n_val=20, n_test=100, warmup=2, lr=2e-3, weight_decay=1.0,
            eval_every=5, monitor_every=1)


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
    """Explicit folder, then LIONLIB_DATA_DIR (that folder only), else data/ and the offline copy;
    `cifar10-jpeg/` one level down works."""
    layout = tmp_path / "shared" / "cifar10-jpeg"
    for split in ("train", "test"):
        (layout / split).mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    monkeypatch.setattr(cifar_data, "OFFLINE", tmp_path / "shared")
    real = cifar_data.default_data_dir
    monkeypatch.delenv("LIONLIB_DATA_DIR", raising=False)
    monkeypatch.setattr(cifar_data, "default_data_dir", lambda: tmp_path / "empty")
    assert cifar_data.find_source().path == layout  # data/ empty: the offline copy
    monkeypatch.setattr(cifar_data, "default_data_dir", real)
    monkeypatch.setenv("LIONLIB_DATA_DIR", str(tmp_path / "shared"))
    assert cifar_data.find_source().path == layout
    with pytest.raises(DataError, match="CIFAR-10 not found"):
        cifar_data.find_source(tmp_path / "empty")
    monkeypatch.setenv("LIONLIB_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(DataError, match=r"CIFAR-10 not found: .* in .*empty\. Fix: point LIONLIB_DATA_DIR"):
        cifar_data.find_source(download=False)  # a chosen folder without the images: not the offline copy


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
    model = nets.build("resnet", widths=(4, 8, 8))
    for p in (1.0, 1.5, 2.0):
        (opt,) = engine.make_optimizers(model.named_parameters(), "lion_lp", lr=1e-3, weight_decay=2.0, betas=(0.9, 0.99), p=p)
        assert len(opt.param_groups) == sum(q.requires_grad for q in model.parameters())
        for g in opt.param_groups:
            n = g["params"][0].numel()
            assert g["lr"] == pytest.approx(1e-3 * n ** (1 - 1 / p)) and g["lr_scale"] == pytest.approx(n ** (1 - 1 / p))
            if g["weight_decay"]:
                assert g["lr"] * g["weight_decay"] == pytest.approx(2e-3)


# ----------------------------------------------------------------------------------------------
# Training (cifar_train, the one CIFAR trainer)


def spec(**kw):
    return specs.cifar_spec("tiny", **{**TINY, **kw})


@needs_jpeg
def test_training_decreases_the_loss_and_records_the_monitor():
    rec = cifar_train.train(spec(steps=60, model="resnet8_narrow", monitor_every=2), device="cpu", data_dir=str(JPEG),
                            show_progress=False)
    loss = rec.train["loss"]
    assert np.mean(loss[-10:]) < np.mean(loss[:10]) - 0.1
    assert rec.final["test_acc"] > 0.15 and rec.data["label"] == "CIFAR-10 (JPEG copy)"  # chance is 0.1
    assert rec.data["n_test"] == 100 and rec.data["n_val"] == 20
    mon = rec.monitor
    decayed = {n for n, q in rec.model.named_parameters() if q.dim() >= 2}
    assert set(mon["constraint"]) == decayed and mon["step"] == [1, *range(2, 61, 2)]
    assert max(mon["box_violation"]) <= 1e-5  # Theorem B.9: below the phase-1 bound at every record
    assert mon["sum_lr_lambda"][-1] == pytest.approx(sum(rec.spec.lr * engine.lr_factor("linear", t, 60, 6)
                                                         for t in range(60)))


@needs_jpeg
@pytest.mark.parametrize("optimizer", ["lion_lp", "adamw", "muon"])
def test_other_optimizers_train(optimizer):
    hyper = dict(adamw=dict(lr=1e-2, weight_decay=0.1), muon=dict(lr=0.05, weight_decay=2.0), lion_lp=dict(p=1.5))
    rec = cifar_train.train(spec(steps=30, optimizer=optimizer, **hyper[optimizer]), device="cpu", data_dir=str(JPEG),
                            show_progress=False)
    assert np.mean(rec.train["loss"][-6:]) < np.mean(rec.train["loss"][:6])


def test_validation_split_is_disjoint_and_fixed_by_split_seed():
    tr, va = cifar_train.split(100, 80, 20, split_seed=0)
    assert len(set(tr.tolist()) | set(va.tolist())) == 100 and not set(tr.tolist()) & set(va.tolist())
    assert torch.equal(cifar_train.split(100, 80, 20, 0)[1], va) and not torch.equal(cifar_train.split(100, 80, 20, 1)[1], va)


@needs_jpeg
def test_resume_mid_epoch_is_identical(tmp_path, monkeypatch):
    """A run stopped in the middle of an epoch and resumed ends bit-identical to an uninterrupted one:
    the same model, curves, monitor rows and record fields (wall time excepted)."""
    s = spec(steps=12)  # 5 steps an epoch (90 images, batch 16): step 7 is mid-epoch
    full = cifar_train.train(s, device="cpu", data_dir=str(JPEG), show_progress=False)
    assert cifar_train.train(s, device="cpu", data_dir=str(JPEG), out_dir=tmp_path, stop_at=7, show_progress=False) is None
    real, steps = cifar_train.augment, []
    monkeypatch.setattr(cifar_train, "augment", lambda x, gen: (steps.append(1), real(x, gen))[1])
    resumed = cifar_train.train(s, device="cpu", data_dir=str(JPEG), out_dir=tmp_path, resume=True, show_progress=False)
    assert len(steps) == 12 - 7  # continued, not trained again
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    a, b = full.numbers(), resumed.numbers()
    assert b["env"].pop("resumed") == 1 and a["env"].pop("resumed") == 0
    assert a == b
    with pytest.raises(CheckpointError, match=r"another configuration \(lr 0.002 -> 0.001\)"):
        cifar_train.train(spec(steps=12, lr=1e-3), device="cpu", data_dir=str(JPEG), out_dir=tmp_path, resume=True)


@needs_jpeg
def test_paper_path_end_to_end_at_a_tiny_size(tmp_path):
    """The `paper` scale's code path (its batch norm nets, channels-last, DDP-ready trainer, the store)
    on CPU at a tiny paper-like size: a record the notebooks can read back, with the full test set's
    keys."""
    from lionlib.experiments.store import RunStore

    paper = specs.cifar_spec("paper")
    assert paper.model == "resnet18" and paper.n_test is None and paper.n_train + paper.n_val == 50_000
    tiny = specs.with_(paper, model="resnet_tiny", steps=4, batch_size=16, n_train=40, n_val=10, n_test=20,
                       eval_every=2, monitor_every=1)
    store = RunStore(tmp_path)
    (rec,) = store.run([tiny], data_dir=str(JPEG), show_progress=False)
    assert rec.spec.scale == "paper" and rec.spec.channels_last and np.isfinite(rec.final["test_loss"])
    again = store.match({"scale": "paper", "model": "resnet_tiny"}, task="cifar")
    assert len(again) == 1 and again[0].numbers() == rec.numbers()
