"""The experiments' command lines, one style for both: every field of the run's configuration is a
typed `--kebab-case` flag with its help (the field's comment in the source), its default (the cpu
scale's) and its choices; `--resume` and `--force` are plain switches; errors are one line.

`python -m lionlib.experiments.cifar --help` and `python -m lionlib.experiments.gpt --help` list them.
Flags written with underscores (`--out_dir`, as in earlier commands) are read as their kebab-case
spelling. A bad value stops the command before any work with one line and exit status 2; a data,
checkpoint or configuration error during the run with one line and exit status 1; Ctrl-C with the
line that says how to resume and exit status 130.
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

import torch

from lionlib.experiments.checkpoint import RESULT, Interrupted
from lionlib.experiments.common import ExperimentError

__all__ = ["Parser", "kebab", "field_help", "add_fields", "add_run_flags", "overrides", "one_line_errors",
           "set_threads", "start_over", "run_command"]


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the usage of some forty flags would bury the message)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def kebab(argv: list[str]) -> list[str]:
    """`--out_dir x` -> `--out-dir x` (options only, values untouched)."""
    out = []
    for a in argv:
        if a.startswith("--"):
            name, eq, value = a.partition("=")
            a = name.replace("_", "-") + eq + value
        out.append(a)
    return out


def field_help(cls) -> dict[str, str]:
    """{field: its trailing `# comment`} read from the dataclass's source: the comments beside the
    fields are their documentation, written once."""
    try:
        src = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    return {m[1]: m[2].strip() for m in re.finditer(r"^\s+(\w+)\s*:[^#\n]*#\s*(.+)$", src, re.M)}


def _typed(base: type, optional: bool):
    """An argparse type: `base` (int, float, str), and `none` -> None for optional fields."""
    def convert(text: str):
        return None if optional and text.lower() == "none" else base(text)
    convert.__name__ = base.__name__  # argparse says "invalid int value: 'abc'"
    return convert


def add_fields(parser: argparse.ArgumentParser, cls, defaults, *, skip=(), choices: dict | None = None,
               title: str | None = None) -> None:
    """One flag per field of the dataclass `cls`, typed from its annotation (with `from __future__
    import annotations` these are strings such as "int | None" or "tuple[int, int, int]").

    Every flag defaults to None (= keep the preset's value, see `overrides`); the help shows the
    value in `defaults` (an instance, the cpu scale's preset)."""
    helps, choices = field_help(cls), choices or {}
    group = parser.add_argument_group(title) if title else parser
    for f in fields(cls):
        if f.name in skip:
            continue
        ann = str(f.type).replace(" ", "")
        optional = ann.endswith("|None")
        base = ann.removesuffix("|None")
        text = (helps.get(f.name, "") + f" (default: {_show(getattr(defaults, f.name))})").replace("%", "%%").strip()
        kw: dict = dict(dest=f.name, default=None, help=text)
        if base == "bool":
            kw["action"] = argparse.BooleanOptionalAction
        elif base.startswith("tuple["):
            elems = base[len("tuple["):-1].split(",")
            kw.update(nargs=len(elems), type=_typed({"int": int, "float": float}[elems[0]], False),
                      metavar=f.name.upper())
        else:
            kw["type"] = _typed({"int": int, "float": float, "str": str}[base], optional)
            if f.name in choices:
                kw["choices"] = choices[f.name]
        group.add_argument("--" + f.name.replace("_", "-"), **kw)


def _show(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return " ".join(_show(v) for v in value)
    return str(value)


def add_run_flags(parser: argparse.ArgumentParser, scales) -> None:
    """The flags that say how to run, not what (they are not part of the run's spec): the same for
    every experiment."""
    parser.add_argument("--scale", default="cpu", choices=scales, help="preset sizes and settings (default: cpu)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the unfinished run in --out-dir from its checkpoint (same settings)")
    parser.add_argument("--force", action="store_true",
                        help="train even if --out-dir holds a finished or unfinished run (it is replaced)")
    parser.add_argument("--threads", type=int, help="torch threads (1 is faster on a shared, busy CPU)")
    parser.add_argument("--device", default="auto", help="auto (cuda, mps, cpu) or a torch device such as cuda:1")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the model (default: on CUDA only)")
    parser.add_argument("--out-dir", help="the run folder (checkpoint.pt, result.json); default runs/<task>/<spec hash>")
    parser.add_argument("--data-dir", help="where the data set is (default: $LIONLIB_DATA_DIR, else data/)")
    parser.add_argument("--stop-at", type=int, help="stop with a checkpoint after this many steps (split a long run)")
    parser.add_argument("--ckpt-every", type=int, default=0, help="also checkpoint every this many steps (0: at the "
                        "end and on Ctrl-C only)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="a tqdm bar")
    parser.add_argument("--store", action=argparse.BooleanOptionalAction, default=True, help="also keep the record "
                        "in the run store (paper_figures/runs/<task>/<spec hash>.json; smoke and tiny: build/runs/)")


def overrides(args: argparse.Namespace, cls) -> dict:
    """The fields of `cls` given on the command line (flags left out keep the preset's value)."""
    return {f.name: tuple(v) if isinstance(v, list) else v
            for f in fields(cls) if (v := getattr(args, f.name, None)) is not None}


def set_threads(n: int | None) -> None:
    if n is not None:
        if n < 1:
            raise ExperimentError(f"--threads {n}: give a number of threads >= 1")
        torch.set_num_threads(n)


def run_command(prog: str, argv: list[str] | None, spec_cls, make_spec, train, scales, preload, doc: str = "",
                choices: dict | None = None):
    """The command line of one experiment: every spec field is a flag (defaults: the cpu scale's),
    plus the run flags (`add_run_flags`). Bad values, an unusable device and missing data stop it
    before any work, each with one line; the finished run's record is `<out-dir>/result.json`."""
    from lionlib.experiments.checkpoint import claim_out_dir
    from lionlib.experiments.common import run_folders_dir
    from lionlib.experiments.engine import check_device
    from lionlib.experiments.specs import spec_hash

    ap = Parser(prog=prog, description=doc)
    add_run_flags(ap, scales)
    add_fields(ap, spec_cls, make_spec("cpu"), skip=("task", "scale"), choices=choices,
               title="the run's spec (the defaults shown are the cpu scale's)")
    args = ap.parse_args(kebab(sys.argv[1:] if argv is None else argv))
    master = int(os.environ.get("RANK", "0")) == 0
    with one_line_errors(prog, setup=True):  # bad values stop here, before any work
        set_threads(args.threads)
        if args.stop_at is not None and args.stop_at < 1 or args.ckpt_every < 0:
            raise ExperimentError(f"--stop-at {args.stop_at} / --ckpt-every {args.ckpt_every}: want >= 1 / >= 0")
        check_device(args.device)
        spec = make_spec(args.scale, **{k: v for k, v in overrides(args, spec_cls).items() if k not in ("task", "scale")})
        out_dir = Path(args.out_dir) if args.out_dir else run_folders_dir() / spec.task / spec_hash(spec)
        if master:  # the other processes find rank 0's files appearing
            claim_out_dir(out_dir, args.resume, args.force)
    with one_line_errors(prog):
        preload(spec, args.data_dir)  # missing data: one line here
        if master:
            print(f"run folder: {out_dir}", flush=True)
            start_over(out_dir, args.force)
        rec = train(spec, device=args.device, compile=args.compile, out_dir=out_dir, resume=args.resume,
                    stop_at=args.stop_at, ckpt_every=args.ckpt_every, show_progress=args.progress, data_dir=args.data_dir)
        if rec is not None and master:
            from lionlib.experiments.common import atomic_write_text

            atomic_write_text(out_dir / RESULT, rec.dumps())
            if args.store:
                from lionlib.experiments.store import RunStore

                print(f"stored {RunStore().put(rec)}")
    if master:
        if rec is None:
            print(f"stopped at step {args.stop_at} of {spec.steps}: continue with --resume")
        else:
            print(f"{spec.task} {spec.model} {spec.optimizer}: " + ", ".join(f"{k} {v:.4f}" for k, v in rec.final.items()
                  if isinstance(v, float)) + f" in {rec.wall_seconds:.1f}s ({rec.env['device']})")
    return rec


def start_over(out_dir: str | Path, force: bool) -> None:
    """With --force, the finished run's result.json goes first: otherwise an interrupted new run
    would sit beside the old result, and `--resume` would refuse it as finished."""
    old = Path(out_dir) / RESULT
    if force and old.is_file():
        old.unlink()
        print(f"--force: {old} removed; training the run again", flush=True)


@contextmanager
def one_line_errors(prog: str, setup: bool = False) -> Iterator[None]:
    """Errors a user can fix as one line on stderr and an exit status, instead of a traceback.

    `setup`: the block only reads and checks settings (no work done yet), so a ValueError there
    (the optimizer's own checks, say `--lr -1`) is a bad value too. Set LIONLIB_TRACEBACK=1 to see
    the traceback instead.
    """
    caught = (ExperimentError, ValueError) if setup else (ExperimentError,)
    if os.environ.get("LIONLIB_TRACEBACK"):
        caught = ()
    try:
        yield
    except Interrupted as e:
        print(f"{prog}: {e}", file=sys.stderr)
        raise SystemExit(130) from None
    except KeyboardInterrupt:  # before the training loop, or a second Ctrl-C inside it
        print(f"{prog}: interrupted; the last checkpoint (if any) is kept", file=sys.stderr)
        raise SystemExit(130) from None
    except caught as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        raise SystemExit(2 if setup else 1) from None
