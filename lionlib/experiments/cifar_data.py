"""CIFAR-10 for the experiments: find it, check it, decode it once, cache it, augment it.

Data sources, in order (`find_source`):
1. `data_dir` argument, then `lionlib.experiments.common.data_dir()` (the `LIONLIB_DATA_DIR` variable or `<repo>/data`;
   a `LIONLIB_DATA_DIR` that lacks the images is downloaded into, never silently replaced by the
   offline copy): an image folder (`train/<class>/*.jpg`, `test/<class>/*.jpg`, or one level down in `cifar10-jpeg/`)
   or the official `cifar-10-python.tar.gz`;
2. without `LIONLIB_DATA_DIR`, the offline JPEG copy next to the repository (`../shared/data/cifar10-jpeg`);
3. otherwise the official archive is downloaded into that folder and its md5 checked.
When none of these works, a `DataError` says in one line what was looked for where and how to fix
it. An archive the user placed is md5-checked too (and never deleted); a partial copy (fewer images
in a class than asked) and an unreadable JPEG are errors naming the folder or the file.
Decoded sets are cached in `<repo>/data/` (git-ignored) as uint8 (N, 3, 32, 32) + int64 labels, with
a sidecar sha256 of the cache file: a corrupt or truncated cache is detected and rebuilt.
Results from the image folder are labelled "CIFAR-10 (JPEG copy)": JPEG is lossy, so pixels (and
accuracies) differ slightly from the official release.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import tarfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lionlib.experiments import common
from lionlib.experiments.common import OFFLINE_DATA as OFFLINE, DataError, atomic_write, cache_dir, file_digest
from lionlib.experiments.common import data_dir as default_data_dir

__all__ = ["CLASSES", "MEAN", "STD", "LAYOUT", "Source", "find_source", "fetch", "load_cifar10", "augment"]

# ----------------------------------------------------------------------------------------------
# Data

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE = "cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"  # published on the CIFAR-10 page
JPEG_SHA256 = "ad60c587690fa24e860a0a0a0ae93ce77911f8a427903dad4f4851eb11ff3652"  # shared/data/README.md
LAYOUT = "cifar10-jpeg/{train,test}/<class>/*.jpg"
OFFICIAL_PER_CLASS = {"train": 5000, "test": 1000}
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CACHE = cache_dir()  # decoded caches always go here, so a shared or offline data folder is only read
MEAN = (0.4914, 0.4822, 0.4465)  # CIFAR-10 train statistics, for input normalisation
STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class Source:
    kind: str  # "folder" (image-folder layout) or "archive" (official python tarball)
    path: Path
    label: str  # what results say they were measured on


def _as_source(d: Path) -> Source | None:
    for root in (d, d / "cifar10-jpeg"):
        if (root / "train").is_dir() and (root / "test").is_dir():
            return Source("folder", root, "CIFAR-10 (JPEG copy)")
    if (d / ARCHIVE).is_file():
        return Source("archive", d / ARCHIVE, "CIFAR-10")
    return None


def _looked(dirs) -> str:
    return f"{LAYOUT} or {ARCHIVE} in " + " and ".join(str(d) for d in dirs)


FIX = "point LIONLIB_DATA_DIR at a folder that holds either"


def find_source(data_dir: str | Path | None = None, download: bool = True) -> Source:
    """Where the images come from (see the module docstring for the order); a DataError if nowhere."""
    if data_dir is not None:
        d = Path(data_dir).expanduser().resolve()
        found = _as_source(d)
        if found is None:
            raise DataError(f"CIFAR-10 not found: looked for {_looked([d])}. Fix: pass the folder that holds "
                            f"cifar10-jpeg/ (or train/ and test/) or {ARCHIVE}")
        return found
    data = default_data_dir()  # a LIONLIB_DATA_DIR that does not exist is a DataError here
    chosen = bool(os.environ.get("LIONLIB_DATA_DIR"))  # the user's folder only: never a silent fallback
    dirs = [data] + [OFFLINE] * (not chosen and OFFLINE.is_dir() and OFFLINE != data)
    for d in dirs:
        if (found := _as_source(d)) is not None:
            return found
    dest = data / ARCHIVE
    if not download:
        raise common.missing_data("CIFAR-10", _looked(dirs), FIX, URL, dest, ARCHIVE_MD5, "md5")
    return Source("archive", fetch(URL, dest, ARCHIVE_MD5, looked=_looked(dirs)), "CIFAR-10")


def fetch(url: str, dest: Path, md5: str, looked: str = "") -> Path:
    """The CIFAR-10 archive at `dest`, md5-checked, downloaded first if missing (`common.fetch`)."""
    return common.fetch(url, dest, md5, "md5", name="CIFAR-10", looked=looked or str(dest), fix=FIX)


def _decode_archive(path: Path, per_class: dict[str, int | None]) -> dict:
    """The official pickled batches -> uint8 (N, 3, 32, 32) + int64 labels, per split."""
    out = {}
    with tarfile.open(path, "r:gz") as tar:
        for split, names in (("train", [f"data_batch_{i}" for i in range(1, 6)]), ("test", ["test_batch"])):
            xs, ys = [], []
            for name in names:
                batch = pickle.load(tar.extractfile(f"cifar-10-batches-py/{name}"), encoding="bytes")
                xs.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                ys.append(np.asarray(batch[b"labels"], dtype=np.int64))
            x, y = np.concatenate(xs), np.concatenate(ys)
            keep = _first_per_class(y, per_class[split])
            out[split] = (torch.from_numpy(x[keep].copy()), torch.from_numpy(y[keep]))
    return out


def _first_per_class(y: np.ndarray, n: int | None) -> np.ndarray:
    """Indices of the first n images of every class, in the original order (a balanced subset)."""
    if n is None:
        return np.arange(len(y))
    rank = np.zeros(len(y), dtype=np.int64)
    for c in range(10):
        rank[y == c] = np.arange((y == c).sum())
    return np.nonzero(rank < n)[0]


def _folder_files(root: Path, per_class: dict[str, int | None]) -> list[str]:
    """Sorted relative paths `split/class/file.jpg`, the first n files (by name) of every class.

    A class with fewer images than asked is a DataError (a partial copy would silently shrink the
    experiment); with n = None (all), fewer than the official 5,000 / 1,000 is a warning.
    """
    files, short = [], []
    for split in ("test", "train"):  # sorted order of the relative paths, as in the README checksum
        for c in CLASSES:
            names = sorted(p.name for p in (root / split / c).glob("*.jpg"))
            want = per_class[split]
            if len(names) < (want or 1):
                raise DataError(f"CIFAR-10 in {root} is incomplete: {split}/{c}/ has {len(names)} images, "
                                f"{want or 'some'} asked; expected layout {LAYOUT} "
                                f"({OFFICIAL_PER_CLASS[split]:,} a class): complete the copy or ask for fewer")
            if want is None and len(names) < OFFICIAL_PER_CLASS[split]:
                short.append(f"{split}/{c} {len(names)}")
            files += [f"{split}/{c}/{n}" for n in names[:want]]
    if short:
        warnings.warn(f"CIFAR-10 in {root} is a partial copy (images a class: {', '.join(short[:4])}"
                      f"{', ...' if len(short) > 4 else ''}; the official set has 5,000 / 1,000)", stacklevel=3)
    return files


def _decode_folder(root: Path, files: list[str]) -> tuple[dict, str]:
    """Decode the listed JPEGs with Pillow (a thread pool: Pillow releases the GIL while decoding).

    Returns the splits and the sha256 over (path, bytes) in sorted order, the scheme of the data
    README, so the full copy can be compared with its published checksum.
    """
    from PIL import Image

    def load(rel: str) -> tuple[bytes, np.ndarray]:
        raw = (root / rel).read_bytes()
        try:
            img = np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))
        except (OSError, ValueError, SyntaxError) as e:  # Pillow's errors for truncated or foreign files
            raise DataError(f"CIFAR-10: {root / rel} is not a readable JPEG ({e}): replace it from the "
                            f"original copy (expected layout {LAYOUT})") from None
        if img.shape != (32, 32, 3):
            raise DataError(f"CIFAR-10: {root / rel} is {img.shape[1]}x{img.shape[0]}, not a 32x32 CIFAR image")
        return raw, img

    h = hashlib.sha256()
    xs = {"train": [], "test": []}
    ys = {"train": [], "test": []}
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for rel, (raw, img) in zip(files, pool.map(load, files, chunksize=64)):
            h.update(f"cifar10-jpeg/{rel}".encode())  # the README hashes paths relative to shared/data
            h.update(raw)
            split, c, _ = rel.split("/")
            xs[split].append(img)
            ys[split].append(CLASSES.index(c))
    out = {}
    for split in ("train", "test"):
        x = torch.from_numpy(np.stack(xs[split])).permute(0, 3, 1, 2).contiguous()
        out[split] = (x, torch.tensor(ys[split], dtype=torch.int64))
    return out, h.hexdigest()


def _save_cache(obj: dict, path: Path) -> None:
    """torch.save + a sidecar with the file's sha256 and size, both written atomically."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))
    meta = {"sha256": file_digest(path, "sha256"), "size": path.stat().st_size}
    common.atomic_write_text(path.with_name(path.name + ".json"), json.dumps(meta))


def _load_cache(path: Path) -> dict | None:
    """The cached set, or None if it is missing, truncated, corrupt or malformed (then it is rebuilt)."""
    side = path.with_name(path.name + ".json")
    if not (path.is_file() and side.is_file()):
        return None
    try:
        meta = json.loads(side.read_text())
        if path.stat().st_size != meta["size"] or file_digest(path, "sha256") != meta["sha256"]:
            raise ValueError("checksum mismatch")
        obj = torch.load(path, weights_only=True)
        for split in ("train", "test"):
            x, y = obj[split]
            if x.dtype != torch.uint8 or x.shape[1:] != (3, 32, 32) or y.dtype != torch.int64 or len(x) != len(y):
                raise ValueError(f"bad {split} tensors")
    except (OSError, ValueError, KeyError, RuntimeError, pickle.UnpicklingError) as e:
        print(f"{path.name}: unusable cache ({e}), rebuilding")
        return None
    return obj


def load_cifar10(data_dir: str | Path | None = None, train_per_class: int | None = None,
                 test_per_class: int | None = None, cache_dir: Path = CACHE, download: bool = True) -> dict:
    """CIFAR-10 as {"train": (x, y), "test": (x, y), "label", "sha256", "verified"}; x uint8 (N, 3, 32, 32).

    `*_per_class` keep the first n images of every class (balanced subsets for CPU scales); each
    subset is decoded and cached on its own, so a small run never decodes all 60,000 files.
    """
    src = find_source(data_dir, download)
    per_class = {"train": train_per_class, "test": test_per_class}
    if src.kind == "folder":
        files = _folder_files(src.path, per_class)
        # Key: the listing (paths and sizes), cheap to compute; the content hash is checked at decode.
        listing = "\n".join(f"{f} {(src.path / f).stat().st_size}" for f in files)
        key = hashlib.sha256(listing.encode()).hexdigest()[:16]
    else:  # an archive the user placed is checked like a download (a DataError if it differs)
        key = file_digest(fetch(URL, src.path, ARCHIVE_MD5), "md5")[:16]
        if (train_per_class, test_per_class) != (None, None):
            key += f"-{train_per_class}-{test_per_class}"
    path = cache_dir / f"cifar10-{src.kind}-{key}.pt"
    obj = _load_cache(path)
    if obj is None:
        if src.kind == "folder":
            splits, sha = _decode_folder(src.path, files)
            full = len(files) == 10 * sum(OFFICIAL_PER_CLASS.values())  # a partial copy was warned about
            obj = {**splits, "sha256": sha, "verified": full and sha == JPEG_SHA256}
            if full and not obj["verified"]:
                warnings.warn(f"CIFAR-10 in {src.path}: sha256 {sha} differs from the published {JPEG_SHA256}",
                              stacklevel=2)
        else:  # the archive's md5 was checked above
            obj = {**_decode_archive(src.path, per_class), "sha256": file_digest(src.path, "sha256"), "verified": True}
        _save_cache(obj, path)
    return {**obj, "label": src.label, "source": str(src.path)}


# ----------------------------------------------------------------------------------------------
# Augmentation: batched tensor ops, one random draw per image, no Python loop over images


def augment(x: torch.Tensor, gen: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random horizontal flip and random crop after reflect-padding by `pad`, for a batch (N, C, H, W).

    The random numbers come from `gen` (a CPU generator), so the result does not depend on the device.
    """
    n, _, h, w = x.shape
    flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if pad == 0:
        return x
    dy, dx = (torch.randint(0, 2 * pad + 1, (2, n), generator=gen)).to(x.device)
    padded = F.pad(x, (pad,) * 4, mode="reflect")
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (N, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (N, 1, 1, W)
    idx = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[idx, chan, rows, cols]
