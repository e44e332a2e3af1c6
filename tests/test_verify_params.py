"""`make verify` re-runs a notebook with the parameters of its committed run: a committed
`TRAIN_MISSING=False` (07, 08, 10) must not become a training campaign on re-run."""

from pathlib import Path

from lionlib.companion.verify import _as_committed

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_verify_passes_the_committed_flags_that_differ_from_the_defaults():
    py = NOTEBOOKS / "07_cifar10.py"
    assert _as_committed(py, "cpu", {"SCALE": "cpu", "TRAIN_MISSING": False, "MAX_RUNS": None}) == \
        {"SCALE": "cpu", "TRAIN_MISSING": False}
    assert _as_committed(py, "cpu", {"TRAIN_MISSING": True}) == {"SCALE": "cpu"}  # the default: nothing to pass
    assert _as_committed(py, "cpu", {"NOT_DECLARED": 1, "DATA_DIR": "/elsewhere"}) == {"SCALE": "cpu"}
