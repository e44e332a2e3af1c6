"""`pip install lionlib` needs torch alone; the companion's exact versions come from constraints.txt.

A practitioner adds lionlib to a project that already has its torch (maybe a CUDA build): the
install must not replace it nor pull numpy, pandas and the rest. So the library's modules import
torch, the standard library and lionlib at module level only; anything else is imported where it
is used and named in an extra of pyproject.toml. The wheel test builds lionlib, installs it into a
fresh venv that holds torch and nothing else, and steps Lion (the C++ kernel built there from the
wheel's `cpu.cpp`), LionK and Muon in it.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
LIB = REPO / "lionlib"
ROOMS = ("theory", "experiments", "companion")  # the companion's rooms, which may use the extras
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# The torch-only venv is kept between runs (installing torch takes about a minute).
VENV = REPO / "build" / "packaging" / f"torch-{torch.__version__}"


def library_modules() -> list[Path]:
    return sorted(p for p in LIB.rglob("*.py") if p.relative_to(LIB).parts[0] not in ROOMS)


def top_level_imports(tree: ast.Module) -> set[str]:
    """Distributions imported when the module is (module level, `if`/`try` bodies included;
    `if TYPE_CHECKING:` blocks excluded, they never run)."""
    found = set()
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.If) and not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
            todo += node.body + node.orelse
        elif isinstance(node, ast.Try):
            todo += node.body + node.orelse + node.finalbody + [n for h in node.handlers for n in h.body]
    return found


def lazy_imports(tree: ast.Module) -> set[str]:
    """Every third-party name imported anywhere in the module (function-level imports included)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in ("torch", "lionlib", "__future__")}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(req: str) -> str:
    return canonical(re.match(r"[A-Za-z0-9._-]+", req).group())


EXTRAS = {extra: {requirement_name(r) for r in reqs} for extra, reqs in PYPROJECT["project"]["optional-dependencies"].items()}
CONSTRAINTS = {canonical(line.split("==")[0]) for line in (REPO / "constraints.txt").read_text().splitlines()
               if "==" in line and not line.startswith("#")}


@pytest.mark.parametrize("path", library_modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_library_module_imports_torch_alone(path):
    """What a library module imports when it is imported: torch, the standard library, lionlib.
    Anything else is imported lazily and belongs to an extra (triton: `triton`, pandas: `monitor`...)."""
    tree = ast.parse(path.read_text())
    outside = top_level_imports(tree) - set(sys.stdlib_module_names) - {"torch", "lionlib", "__future__"}
    if path.relative_to(LIB).as_posix() == "fused/triton_kernel.py":
        outside -= {"triton"}  # imported only when a Triton kernel runs (lionlib.fused.triton_step)
    assert not outside, f"{path.relative_to(REPO)} imports {sorted(outside)} at import time; import it where it is used"
    in_extras = set().union(*EXTRAS.values())
    undeclared = {m for m in lazy_imports(tree) if canonical(m) not in in_extras}
    assert not undeclared, f"{path.relative_to(REPO)} uses {sorted(undeclared)}, which no extra of pyproject.toml names"


def test_dependencies_are_torch_alone_and_extras_are_pinned():
    deps = PYPROJECT["project"]["dependencies"]
    assert [requirement_name(d) for d in deps] == ["torch"], deps
    assert re.fullmatch(r"torch>=\d+\.\d+", deps[0]), f"{deps[0]}: a lower bound, never an exact pin"
    unpinned = {name for names in EXTRAS.values() for name in names if name != "lionlib"} - CONSTRAINTS
    assert not unpinned, f"constraints.txt pins no version of {sorted(unpinned)}: the companion would not re-run identically"
    assert "torch" in CONSTRAINTS


def _make(*args: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("no make on PATH")
    out = subprocess.run(["make", "--no-print-directory", *args], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_makefile_installs_with_the_constraints_and_shows_progress():
    """Every pip install of the venv (dry run, `make -n`) uses constraints.txt, and none is silenced."""
    installs = [ln for ln in _make("-n", "-B", ".venv/.installed-stamp", ".venv/.docs-stamp").splitlines() if "pip install" in ln]
    editable = [ln for ln in installs if " -e " in ln]
    assert len(editable) >= 2, installs
    assert all("-c constraints.txt" in ln for ln in editable), editable
    assert not [ln for ln in installs if re.search(r"\s-q\b|--quiet", ln)], installs


def test_make_alone_lists_the_targets():
    """A bare `make` prints the targets and installs nothing (it used to start the install)."""
    out = _make("-n")  # what a bare make would run: only the help recipe, no venv
    assert "-m venv" not in out and "pip install" not in out, out
    listed = {ln.split()[0] for ln in _make().splitlines() if ln.startswith("  ")}
    assert {"help", "test", "unit", "reproduce", "verify", "site", "notebooks", "browser", "clean"} <= listed, listed


# The torch-only venv's processes see neither this checkout (PYTHONPATH, the current folder) nor
# lionlib's settings.
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "LIONLIB"))}


def _run(cmd, **kwargs) -> str:
    kwargs.setdefault("env", CLEAN_ENV)
    kwargs.setdefault("cwd", VENV.parent if VENV.parent.exists() else None)
    out = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def _torch_only_venv() -> Path:
    """build/packaging/torch-<version>/: a venv without system site-packages, holding the running
    torch version (pip finds it where this machine's pip configuration points)."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".torch-installed"
    if not stamp.exists():
        shutil.rmtree(VENV, ignore_errors=True)
        VENV.parent.mkdir(parents=True, exist_ok=True)
        _run([sys.executable, "-m", "venv", VENV])
        _run([python, "-m", "pip", "install", "--no-compile", f"torch=={torch.__version__}"])  # no .pyc: compiling them was most of the time
        stamp.touch()
    return python


def _installed(python: Path) -> dict[str, str]:
    listed = json.loads(_run([python, "-m", "pip", "list", "--format=json"]))
    return {canonical(d["name"]): d["version"] for d in listed}


# Run inside the torch-only venv, from a folder without lionlib in it.
SMOKE = r"""
import importlib.util, json, pathlib, sys
import torch, lionlib
from lionlib import Lion, LionK, Muon

def one_step(opt_cls, **kw):
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(16, 8))
    opt = opt_cls([p], lr=1e-2, weight_decay=0.1, **kw)
    p.grad = torch.randn(16, 8)
    before = p.detach().clone()
    opt.step()
    return p.detach(), before

fused, before = one_step(Lion, fused=True)  # the C++ kernel, built from the installed cpu.cpp
loop, _ = one_step(Lion, foreach=False)
l2, l2_before = one_step(LionK, kappa="l2")
muon, muon_before = one_step(Muon)
print(json.dumps(dict(
    file=lionlib.__file__,
    source=str(lionlib.fused.cpu.SOURCE),
    missing=[m for m in ("numpy", "scipy", "pandas", "matplotlib", "seaborn", "tqdm", "PIL") if importlib.util.find_spec(m) is None],
    fused_equals_forloop=torch.equal(fused, loop),
    lion_moved=bool((fused != before).all()),
    lionk_moved=bool((l2 != l2_before).any()),
    muon_moved=bool((muon != muon_before).any()),
)))
"""


def _torch_closure(python: Path) -> set[str]:
    """torch and every distribution it requires, transitively (as installed in the venv)."""
    script = (
        "import importlib.metadata as md, json, re\n"
        "seen, todo = set(), ['torch']\n"
        "while todo:\n"
        "    name = todo.pop()\n"
        "    if name in seen: continue\n"
        "    seen.add(name)\n"
        "    try: reqs = md.requires(name) or []\n"
        "    except md.PackageNotFoundError: continue\n"
        "    todo += [re.match(r'[A-Za-z0-9._-]+', r).group() for r in reqs if 'extra ==' not in r]\n"
        "print(json.dumps(sorted(seen)))\n"
    )
    return {canonical(n) for n in json.loads(_run([python, "-c", script]))}


def test_wheel_installs_beside_torch_alone(tmp_path):
    """Build the wheel, install it into a venv holding only torch, and step there: pip adds
    lionlib and nothing else, and torch is left as it was."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(LIB, src / "lionlib", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist", src])
    (wheel,) = (tmp_path / "dist").glob("lionlib-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "lionlib/fused/cpu.cpp" in names
    required = [ln.split(":", 1)[1].strip() for ln in metadata.splitlines() if ln.startswith("Requires-Dist:")]
    assert [r for r in required if "extra ==" not in r] == [PYPROJECT["project"]["dependencies"][0]], required

    python = _torch_only_venv()
    subprocess.run([python, "-m", "pip", "uninstall", "-y", "lionlib"], capture_output=True, env=CLEAN_ENV, cwd=VENV.parent)
    before = _installed(python)
    extra = set(before) - _torch_closure(python) - {"pip", "setuptools"}
    assert not extra, f"{VENV} holds more than torch and its requirements: {sorted(extra)} (delete it)"
    _run([python, "-m", "pip", "install", wheel])
    after = _installed(python)
    assert {k: v for k, v in after.items() if k != "lionlib"} == before, "installing lionlib changed other packages"
    assert "lionlib" in after
    _run([python, "-m", "pip", "check"])

    env = {**CLEAN_ENV, "LIONLIB_CACHE_DIR": str(tmp_path / "kernel-cache"), "OMP_NUM_THREADS": "1"}
    result = json.loads(_run([python, "-c", SMOKE], cwd=tmp_path, env=env).strip().splitlines()[-1])
    site = str(VENV)
    assert result["file"].startswith(site) and result["source"].startswith(site), result
    assert set(result["missing"]) == {"numpy", "scipy", "pandas", "matplotlib", "seaborn", "tqdm", "PIL"}, result
    assert result["fused_equals_forloop"] and result["lion_moved"] and result["lionk_moved"] and result["muon_moved"], result
    assert list((tmp_path / "kernel-cache").glob("fused_cpu-*.so")), "the C++ kernel was not built from the wheel's source"
