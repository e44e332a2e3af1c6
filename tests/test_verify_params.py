"""`make verify` re-runs a notebook with the parameters of its committed run: a committed
`TRAIN_MISSING=False` (07, 08, 10) must not become a training campaign on re-run."""

from pathlib import Path

from lionlib.companion.verify import _as_committed

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_verify_passes_the_committed_flags_that_differ_from_the_defaults():
    py = NOTEBOOKS / "07_cifar10.py"
    assert _as_committed(py, "cpu", {"SCALE": "cpu", "TRAIN_MISSING": False, "MAX_RUNS": None}) == \
        {"SCALE": "cpu", "TRAIN_MISSING": False}
    # TRAIN_MISSING's default is read from $LIONLIB_TRAIN_MISSING at run time: the committed value is passed
    assert _as_committed(py, "cpu", {"TRAIN_MISSING": True}) == {"SCALE": "cpu", "TRAIN_MISSING": True}
    one = NOTEBOOKS / "01_box_constraint.py"
    assert _as_committed(one, "cpu", {"LR": 0.01, "SEED": 0}) == {"SCALE": "cpu"}  # literal defaults: nothing to pass
    assert _as_committed(py, "cpu", {"NOT_DECLARED": 1, "DATA_DIR": "/elsewhere"}) == {"SCALE": "cpu"}
