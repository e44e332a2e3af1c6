"""Token data for the GPT experiments: character-level tiny Shakespeare and GPT-2 BPE OpenWebText.

Both data sets end up as two 1-D arrays of token ids (train, val) that the trainer samples random
windows from, exactly as nanoGPT does:

- tiny Shakespeare (CPU scales) is 1.1M characters, so it is read, checked against its sha256 and
  encoded in memory (65 symbols, first 90% train, last 10% val). It is looked up in
  `<data dir>/tinyshakespeare/input.txt`, where the data dir is the `data_dir` argument, else
  `$LIONLIB_DATA_DIR`, else the repo's git-ignored `data/` (`lionlib.experiments.common.data_dir()`); when it is
  missing from `data/` it is downloaded there from karpathy/char-rnn. When that fails, or the file's
  checksum differs, a `DataError` says in one line what was looked for where and how to fix it.
- OpenWebText (the `paper` scale) is ~9B GPT-2 tokens, too big for memory: `prepare_openwebtext`
  tokenizes it once into `train.bin`/`val.bin` (uint16, since the GPT-2 vocabulary has 50,257 < 2^16
  ids) and `load_bins` memory-maps them. The Hugging Face `datasets` and `tiktoken` packages (extra
  `owt`) are imported only there. The documents and the tokenizer are arguments, so the test runs the
  same split/tokenize/write/memmap path on a tiny local text with a stub tokenizer (tiktoken needs
  to download its BPE file, which the offline CI cannot).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from lionlib.experiments import common
from lionlib.experiments.common import DataError, data_dir as _default_data_dir

__all__ = ["SHAKESPEARE_LAYOUT", "TokenData", "Tokenizer", "GPT2Tokenizer", "data_root", "shakespeare_path", "load_shakespeare", "load_bins", "load_dataset_by_name", "prepare_openwebtext", "get_batch"]

SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SHAKESPEARE_LAYOUT = "tinyshakespeare/input.txt"
TRAIN_FRACTION = 0.9  # the conventional char-rnn / nanoGPT split


@dataclass
class TokenData:
    """Train and validation token ids (np arrays or memmaps) plus the tokenizer's two maps."""

    train: np.ndarray
    val: np.ndarray
    vocab_size: int
    encode: Callable[[str], list[int]]
    decode: Callable[[Sequence[int]], str]


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder data sets are read from: the argument, else $LIONLIB_DATA_DIR, else `data/`."""
    if data_dir is not None:
        return Path(data_dir).expanduser().resolve()
    return _default_data_dir()  # read now, not at import, so tests can set it


def sha256_file(path: Path) -> str:
    return common.file_digest(path, "sha256")


# -------------------------------------------------------------------------------------------------
# tiny Shakespeare, character level


def shakespeare_path(data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Path of `<data dir>/tinyshakespeare/input.txt`, downloaded if missing, sha256-checked.

    A missing file (and no download), a failed download or a wrong checksum is a one-line DataError.
    """
    path = data_root(data_dir) / SHAKESPEARE_LAYOUT
    fix = "point LIONLIB_DATA_DIR at a folder that holds it"
    looked = f"{SHAKESPEARE_LAYOUT} in {path.parents[1]}"
    if not path.exists() and not download:
        raise common.missing_data("tiny Shakespeare", looked, fix, SHAKESPEARE_URL, path, SHAKESPEARE_SHA256, "sha256")
    return common.fetch(SHAKESPEARE_URL, path, SHAKESPEARE_SHA256, "sha256", name="tiny Shakespeare",
                        looked=looked, fix=fix)


def load_shakespeare(data_dir: str | os.PathLike | None = None) -> TokenData:
    """Character-level tiny Shakespeare: first 90% of characters for training, last 10% for val."""
    text = shakespeare_path(data_dir).read_text(encoding="utf-8")
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}

    def encode(s: str) -> list[int]:
        return [stoi[c] for c in s]

    def decode(ids: Sequence[int]) -> str:
        return "".join(chars[int(i)] for i in ids)

    ids = np.array(encode(text), dtype=np.uint16)
    n = int(TRAIN_FRACTION * len(ids))
    return TokenData(ids[:n], ids[n:], len(chars), encode, decode)


# -------------------------------------------------------------------------------------------------
# OpenWebText, GPT-2 BPE, memory-mapped uint16 bins


class Tokenizer(Protocol):
    """What `prepare_openwebtext` needs from a tokenizer (tiktoken's GPT-2 encoding, or a stub)."""

    name: str
    vocab_size: int
    eot: int  # appended after every document, as GPT-2 does

    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...
    def decode(self, ids: Sequence[int]) -> str: ...


class GPT2Tokenizer:
    """tiktoken's GPT-2 BPE (downloads its merge table on first use)."""

    name = "gpt2"

    def __init__(self, num_threads: int = 8):
        import tiktoken  # optional extra `owt`

        self.enc = tiktoken.get_encoding("gpt2")
        self.vocab_size = self.enc.n_vocab
        self.eot = self.enc.eot_token
        self.num_threads = num_threads

    def encode_batch(self, texts):
        return self.enc.encode_ordinary_batch(texts, num_threads=self.num_threads)

    def decode(self, ids):
        return self.enc.decode([int(i) for i in ids])

    def encode(self, text):
        return self.enc.encode_ordinary(text)


def prepare_openwebtext(
    out_dir: str | os.PathLike | None = None,
    *,
    docs: Sequence[dict] | None = None,
    tokenizer: Tokenizer | None = None,
    val_fraction: float = 0.0005,
    seed: int = 2357,
    chunk: int = 4096,
) -> Path:
    """Tokenize documents into `out_dir/{train,val}.bin` (uint16) and `meta.json`.

    Defaults are nanoGPT's `data/openwebtext/prepare.py`: the Hugging Face `openwebtext` train split
    (8M documents, ~54 GB of downloads), 0.05% of documents held out for validation with seed 2357,
    GPT-2 BPE with the end-of-text token after each document; it gives ~9B train tokens (17 GB).
    `docs` is any sequence of `{"text": str}` records (a `datasets.Dataset` or a list).
    """
    out = Path(out_dir) if out_dir is not None else data_root() / "openwebtext"
    if docs is None:
        from datasets import load_dataset  # optional extra `owt`

        docs = load_dataset("openwebtext", split="train")
    tokenizer = tokenizer if tokenizer is not None else GPT2Tokenizer()
    if tokenizer.vocab_size > 2**16:
        raise ValueError("uint16 bins need a vocabulary of at most 65536 tokens")
    order = np.random.default_rng(seed).permutation(len(docs))
    n_val = max(1, round(val_fraction * len(docs)))
    counts = {}
    for split, idx in (("val", order[:n_val]), ("train", order[n_val:])):
        def write(tmp: Path, idx=idx) -> None:  # appended chunk by chunk: the total length is not known upfront
            with open(tmp, "wb") as f:
                for start in range(0, len(idx), chunk):
                    texts = [docs[int(i)]["text"] for i in idx[start : start + chunk]]
                    for ids in tokenizer.encode_batch(texts):
                        f.write(np.array([*ids, tokenizer.eot], dtype=np.uint16).tobytes())
        counts[split] = common.atomic_write(out / f"{split}.bin", write).stat().st_size // 2
    meta = {"tokenizer": tokenizer.name, "vocab_size": tokenizer.vocab_size, "tokens": counts}
    common.atomic_write_text(out / "meta.json", json.dumps(meta, indent=1) + "\n")  # last: marks the bins complete
    return out


def load_bins(bin_dir: str | os.PathLike, tokenizer: Tokenizer | None = None) -> TokenData:
    """Memory-map `train.bin`/`val.bin` written by `prepare_openwebtext`.

    The tokenizer (for `encode`/`decode` in text generation only) defaults to GPT-2's, built lazily
    on first use so that training never needs tiktoken.
    """
    bin_dir = Path(bin_dir)
    missing = [n for n in ("meta.json", "train.bin", "val.bin") if not (bin_dir / n).is_file()]
    if missing:
        raise DataError(f"OpenWebText bins not found: looked for {', '.join(missing)} in {bin_dir}. Fix: run "
                        f"`python -c \"from lionlib.experiments.gpt_data import prepare_openwebtext; "
                        f"prepare_openwebtext()\"` (extra `owt`; ~54 GB download), or set LIONLIB_DATA_DIR "
                        f"to a folder holding openwebtext/{{train,val}}.bin and meta.json")
    meta = json.loads((bin_dir / "meta.json").read_text())
    train, val = (np.memmap(bin_dir / f"{s}.bin", dtype=np.uint16, mode="r") for s in ("train", "val"))
    cache: list[Tokenizer] = [tokenizer] if tokenizer is not None else []

    def tok() -> Tokenizer:
        if not cache:
            cache.append(GPT2Tokenizer())
        return cache[0]

    return TokenData(
        train, val, meta["vocab_size"], lambda s: tok().encode_batch([s])[0], lambda ids: tok().decode(ids)
    )


def load_dataset_by_name(name: str, data_dir: str | os.PathLike | None = None) -> TokenData:
    """`shakespeare_char` or `openwebtext` (bins already prepared in `<data dir>/openwebtext`)."""
    if name == "shakespeare_char":
        return load_shakespeare(data_dir)
    if name == "openwebtext":
        return load_bins(data_root(data_dir) / "openwebtext")
    raise ValueError(f"unknown dataset {name!r}: choose shakespeare_char or openwebtext")


# -------------------------------------------------------------------------------------------------
# batches


def get_batch(
    data: np.ndarray,
    batch_size: int,
    block_size: int,
    rng: np.random.Generator,
    rows: slice = slice(None),
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows (x, y = x shifted by one) of a token array.

    All `batch_size` offsets are drawn from `rng`, then only `rows` are materialised: data-parallel
    ranks (and gradient-accumulation micro-steps) draw the same global batch and take disjoint
    slices of it, so the global batch is the same whatever the number of processes.
    """
    ix = rng.integers(0, len(data) - block_size, size=batch_size)[rows]
    x = torch.from_numpy(np.stack([data[i : i + block_size] for i in ix]).astype(np.int64))
    y = torch.from_numpy(np.stack([data[i + 1 : i + 1 + block_size] for i in ix]).astype(np.int64))
    if torch.device(device).type == "cuda":  # pinned memory lets the copy overlap compute
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x, y
