"""Protocols as data, the regime checks, tuning and the analysis, on synthetic run records made to
produce each verdict (`lionlib.companion.protocol*`)."""

import json
import math

import numpy as np
import pytest

from lionlib.companion import stats
from lionlib.companion.protocol import (PROTOCOL_DIR, Arm, Check, Contrast, Hypothesis, Metric, Protocol, ProtocolChanged,
                                        Tuning, check_registered, register, registered, stamp)
from lionlib.companion.protocol_analysis import analyse, sentence
from lionlib.companion.protocol_library import PROTOCOLS, architecture_p, distributed_lion, lambda_tradeoff, muon_spectral
from lionlib.companion.protocol_records import (bytes_to_target, plan, plateau_change, plateau_loss, smooth,
                                                steps_to_plateau, tuned_lrs)

STEPS = 1000
SPEC = dict(task="cifar", scale="tiny", model="resnet8", schedule="constant", warmup=0, steps=STEPS, batch_size=50,
            n_train=2000, n_val=200, split_seed=0, p=None, betas=[0.9, 0.99])


def record(spec, *, plateau=1.0, tau=100.0, start=3.0, final=None, box0=0.5, box_end=-1e-4, noise=0.0, rng=None, evals=None):
    """A run record of the contract's shape: loss plateau + (start - plateau) exp(-t / tau) at 200
    points, the monitor of a constant lr (sum lr lambda = lr lambda t), lambda ||x|| - 1 going from
    box0 to box_end as exp(-sum lr lambda)."""
    t = np.linspace(STEPS / 200, STEPS, 200)
    loss = plateau + (start - plateau) * np.exp(-t / tau)
    if noise:
        loss = loss + (rng or np.random.default_rng(0)).normal(0, noise, size=loss.shape)
    lam = spec.get("weight_decay", 1.0)
    m = np.linspace(0, STEPS, 21)
    s = spec["lr"] * lam * m
    full = {**SPEC, **spec}
    h = f"{abs(hash(json.dumps(full, sort_keys=True))):016x}"[:16]
    return {"schema": "lionlib.run/1", "task": full["task"], "spec": full, "spec_hash": h,
            "train": {"step": t.tolist(), "loss": loss.tolist()},
            "eval": evals or {"step": [STEPS], "test_acc": [(final or {}).get("test_acc", 0.6)]},
            "monitor": {"step": m.tolist(), "sum_lr_lambda": s.tolist(),
                        "max_constraint": (1 + box_end + (box0 - box_end) * np.exp(-s)).tolist()},
            "final": {"test_acc": 0.6, "val_acc": 0.6, **(final or {})}, "wall_seconds": 1.0}


def simple(sesoi=1.0, pilot_sd=None, test="superiority", primary=True, name="simple", checks=()):
    """Two tuned arms A and B; effect = test accuracy (pp) of B - A."""
    arms = [Arm("A", {"task": "cifar", "optimizer": "lion"}, lr=1e-3), Arm("B", {"task": "cifar", "optimizer": "lion_lp"}, lr=1e-3)]
    c = Contrast("B - A", Metric("final", "test_acc", "pp", scale=100.0), (("B", 1.0), ("A", -1.0)), sesoi=sesoi, pilot_sd=pilot_sd)
    return Protocol(name, "cifar", "B beats A", "companion", arms,
                    Tuning((100,), Metric("final", "val_acc"), "max", initial=3, max_points=5), range(5),
                    [Hypothesis("b_beats_a", "B ends more accurate than A", test, (c,), primary=primary, checks=[k.name for k in checks])],
                    checks)


def val_acc(lr, best):
    return 0.6 - 0.01 * math.log2(lr / best) ** 2


def world(protocol, outcome, best=None, mark=True):
    """Run `plan` until nothing is left, making each run's record from outcome(arm, spec) (eval) or
    the validation score of its lr (tune; optimum at `best[arm]`, default 1e-3)."""
    recs, best = [], best or {}
    for _ in range(20):
        todo = plan(protocol, recs)
        if not todo:
            return recs
        for spec in todo:
            arm = next(a for a in protocol.arms if all(spec.get(k) == v for k, v in a.partial.items()))
            if spec["role"] == "tune":
                acc = val_acc(spec["lr"], best.get(arm.name, 1e-3))
                r = record(spec, final={"val_acc": acc, "val_loss": 2.0 - acc})
            else:
                r = record(spec, **outcome(arm.name, spec))
            recs.append(stamp(r, protocol) if mark else r)
    raise AssertionError("plan did not converge")


def accs(effects):
    """outcome giving B - A = effects[seed] percentage points."""
    return lambda arm, spec: dict(final={"test_acc": 0.5 + (effects[spec["seed"]] / 100 if arm == "B" else 0.0)})


def one(protocol, recs, **kw):
    out = analyse(protocol, recs, folder=None, **kw)
    assert len(out["findings"]) == 1
    return out["findings"][0], out


# ---------------------------------------------------------------- verdicts end to end

@pytest.mark.parametrize("effects,sesoi,pilot,verdict", [
    ([2.0, 2.5, 1.8, 2.2, 2.4], 1.0, None, stats.REPRODUCED),
    ([0.1, -0.1, 0.05, -0.05, 0.0], 1.0, None, stats.NOT_REPRODUCED),  # an effect of interest is excluded
    ([1.2, -0.2, 0.9, 0.1, 0.0], 1.0, 0.3, stats.INCONCLUSIVE),  # powered (MDE < SESOI), interval holds 0 and SESOI
    ([3.0, -2.0, 4.0, -1.0, 1.0], 1.0, None, stats.NOT_TESTABLE),  # MDE (from the SD) > SESOI
    ([2.0, 2.5, 1.8, 2.2, 2.4], 1.0, 5.0, stats.NOT_TESTABLE),  # the pilot said the design cannot detect 1 pp
])
def test_each_verdict_happens(effects, sesoi, pilot, verdict):
    p = simple(sesoi, pilot)
    f, out = one(p, world(p, accs(effects)))
    assert f["verdict"] == verdict == f["verdict_holm"]  # a family of one: Holm changes nothing
    assert f["effect"] == pytest.approx(np.mean(effects)) and f["n"] == 5 and f["units"] == "pp"
    ci = stats.t_interval(f["effects"])
    assert (f["ci_low"], f["ci_high"]) == pytest.approx((ci.low, ci.high))
    assert f["mde"] == pytest.approx(stats.mde(pilot if pilot is not None else np.std(effects, ddof=1), 5))
    for key in ("primary", "mde", "sesoi", "verdict", "verdict_holm", "effect", "ci_low", "ci_high", "units"):
        assert key in f
    line = sentence(f)
    assert f["verdict"] in line and f"{f['effect']:.3g}" in line and f"{f['mde']:.3g}" in line
    if verdict == stats.NOT_TESTABLE:
        assert f"MDE = {f['mde']:.3g}" in line


def test_non_inferiority_verdicts():
    for effects, verdict in (([-0.3, -0.2, -0.4, -0.25, -0.35], stats.REPRODUCED),
                             ([-2.0, -2.2, -1.8, -2.1, -1.9], stats.NOT_REPRODUCED)):
        p = simple(1.0, test="non-inferiority")
        f, _ = one(p, world(p, accs(effects)))
        assert f["verdict"] == verdict and f["margin"] == 1.0


def test_holm_across_the_primary_family():
    """Two primaries each significant alone (p < 0.025) whose Holm-adjusted p-values are not: raw
    reproduced, Holm-adjusted inconclusive; an exploratory finding gets no adjusted verdict."""
    effects = [1.0, 0.3, 1.9, 1.1, 0.5]  # p = 0.013 one-sided
    assert 0.0125 < stats.p_greater(effects) < stats.ALPHA
    protos = [simple(1.5, pilot_sd=0.5, name=n) for n in ("one", "two")] + [simple(1.5, 0.5, primary=False, name="three")]
    recs = [r for p in protos for r in world(p, accs(effects))]
    out = analyse(protos, recs, folder=None)
    f1, f2, f3 = out["findings"]
    assert f1["verdict"] == f2["verdict"] == stats.REPRODUCED
    assert f1["verdict_holm"] == f2["verdict_holm"] == stats.INCONCLUSIVE
    assert f1["p_holm"] == pytest.approx(2 * f1["p"])
    assert f3["verdict"] == stats.REPRODUCED and f3["verdict_holm"] is None and "Holm" not in sentence(f3)


# ---------------------------------------------------------------- the lambda trade-off, from curves

def lam_world(faster=True, worse=True, lr_best=1e-3, box0=0.5):
    p = lambda_tradeoff("resnet", "tiny")
    rng = np.random.default_rng(0)

    def outcome(arm, spec):
        strong = arm in ("lambda10", "lambda30")
        tau = (60.0 if faster else 100.0) * (1 + 0.03 * rng.standard_normal()) if strong else 100.0 * (1 + 0.03 * rng.standard_normal())
        plateau = (1.1 if worse else 1.0) + 0.005 * rng.standard_normal() if strong else 1.0 + 0.005 * rng.standard_normal()
        return dict(tau=tau, plateau=plateau, final={"test_acc": 0.55}, box0=box0)

    return p, world(p, outcome, best={"lambda1": 1e-3, "lambda10": 4 * lr_best, "lambda30": 4 * lr_best})


def test_lambda_tradeoff_reproduced_from_curves():
    p, recs = lam_world()
    out = analyse(p, recs, folder=None)
    assert all(c["passed"] for c in out["checks"]), [c for c in out["checks"] if not c["passed"]]
    f = {x["name"]: x for x in out["findings"]}
    main = f["lambda30_vs_lambda1"]
    assert main["primary"] and main["test"] == "intersection-union" and main["verdict"] == stats.REPRODUCED
    faster, worse = main["components"]
    assert faster["units"] == "% of the steps" and faster["effect"] > 5 and worse["effect"] == pytest.approx(0.1, abs=0.02)
    assert main["p"] == max(faster["p"], worse["p"])
    # tuning grew the grid at its top edge until the optimum (4 x centre) was interior
    t = out["tuning"][p.name]["lambda30"]
    assert t["lr"] == pytest.approx(4e-3) and t["interior"] and t["ks"] == [-1, 0, 1, 2, 3]
    assert out["tuning"][p.name]["lambda1_at_lr30"]["lr"] == pytest.approx(4e-3)


def test_lambda_tradeoff_not_reproduced_when_not_faster():
    p, recs = lam_world(faster=False)
    f = analyse(p, recs, folder=None)["findings"][0]
    assert f["verdict"] == stats.NOT_REPRODUCED and f["label"] == "faster"


def test_phase1_check_failing_makes_it_not_testable():
    """At a small tuned lr the strong arms' sum lr_t lambda stays below 5 by the early read-out."""
    p, recs = lam_world(lr_best=1e-4)
    out = analyse(p, recs, folder=None)
    bad = {c["check"] for c in out["checks"] if not c["passed"]}
    assert any("phase 1" in c for c in bad)
    f = out["findings"][0]
    assert f["verdict"] == stats.NOT_TESTABLE and "phase 1" in f["reason"] and "phase 1" in sentence(f)


def test_starting_inside_the_box_fails_its_check():
    p, recs = lam_world(box0=-0.2)
    bad = {c["check"] for c in analyse(p, recs, folder=None)["checks"] if not c["passed"]}
    assert bad == {"strong arms start outside their box (lambda ||x_0||_inf > 1)"}


# ---------------------------------------------------------------- hashing, registration, refusal

def test_committed_protocols_are_the_library_ones():
    """Every protocol of the library is registered under paper_figures/protocols with its current
    hash: changing one in code without registering the change fails here."""
    for name, p in PROTOCOLS.items():
        check_registered(p)
        assert registered(name) == p
    assert {f.stem for f in PROTOCOL_DIR.glob("*.json")} == set(PROTOCOLS)


def test_hash_is_canonical_and_changes_with_any_field():
    p = simple()
    assert Protocol.from_dict(json.loads(json.dumps(p.to_dict()))).hash == p.hash
    assert len(p.hash) == 16 and p.canonical() == simple().canonical()
    assert simple(sesoi=1.5).hash != p.hash and simple(name="other").hash != p.hash
    lam = PROTOCOLS["lambda_tradeoff_resnet_cpu"]
    assert lambda_tradeoff("resnet", "cpu").hash == lam.hash != lambda_tradeoff("gpt", "cpu").hash


def test_register_refuses_a_changed_protocol(tmp_path):
    register(simple(), tmp_path)
    check_registered(simple(), tmp_path)
    with pytest.raises(ProtocolChanged, match="replace=True"):
        register(simple(sesoi=2.0), tmp_path)
    with pytest.raises(ProtocolChanged, match="committed one"):
        check_registered(simple(sesoi=2.0), tmp_path)
    register(simple(sesoi=2.0), tmp_path, replace=True)
    assert registered("simple", tmp_path).hash == simple(sesoi=2.0).hash
    with pytest.raises(ProtocolChanged, match="not registered"):
        check_registered(simple(name="nobody"), tmp_path)
    path = tmp_path / "simple.json"  # a hand edit of the file is caught by its own hash
    path.write_text(path.read_text().replace('"sesoi": 2.0', '"sesoi": 3.0'))
    with pytest.raises(ProtocolChanged, match="edited by hand"):
        registered("simple", tmp_path)
    with pytest.raises(ProtocolChanged):
        analyse(simple(), [], folder=tmp_path)


def test_analysis_refuses_records_of_another_hash_and_ignores_unstamped_ones():
    old, new = simple(sesoi=2.0), simple()
    recs = world(old, accs([1.0] * 5))
    with pytest.raises(ProtocolChanged, match="protocol changed"):
        analyse(new, recs, folder=None)
    unstamped = world(new, accs([1.0] * 5), mark=False)
    with pytest.raises(ValueError, match=r"runs missing.*records match its arms without its stamp"):
        analyse(new, unstamped, folder=None)
    assert analyse(new, unstamped, folder=None, require_stamp=False)["findings"][0]["n"] == 5

    class Record:  # a record object (the engine's RunRecord) is read through its to_json()
        def __init__(self, d):
            self.d = d

        def to_json(self):
            return self.d

    assert analyse(new, [Record(r) for r in world(new, accs([1.0] * 5))], folder=None)["findings"][0]["n"] == 5


def test_missing_spec_keys_and_off_grid_lrs_are_errors():
    p = simple()
    recs = world(p, accs([1.0] * 5))
    broken = json.loads(json.dumps(recs))
    del broken[0]["spec"]["optimizer"]
    with pytest.raises(KeyError, match="no spec key"):
        analyse(p, broken, folder=None)
    off = json.loads(json.dumps(recs))
    off[0]["spec"]["lr"] *= 3
    with pytest.raises(ValueError, match="not on the grid"):
        plan(p, off)


@pytest.mark.parametrize("change,match", [
    (lambda: dict(eval_seeds=range(4)), ">= 5 distinct evaluation seeds"),
    (lambda: dict(eval_seeds=range(100, 105)), "must differ from tuning seeds"),
    (lambda: dict(checks=[Check("the lr is fine", "interior", ("A",), 1.0)]), "named with the words 'interior'"),
    (lambda: dict(checks=[Check("plateau reached", "plateau", ("C",), 0.02)]), "unknown arms"),
    (lambda: dict(arms=[*simple().arms, Arm("C", {"optimizer": "adamw"}, tune=False, lr_from="A")],
                  checks=[Check("tuned lr interior", "interior", ("C",), 1.0)]), "only tuned arms have a grid"),
])
def test_protocol_validation(change, match):
    base = simple()
    kw = {f: getattr(base, f) for f in ("name", "task", "claim", "source", "arms", "tuning", "eval_seeds", "hypotheses", "checks")}
    with pytest.raises(ValueError, match=match):
        Protocol(**{**kw, **change()})


def test_arm_validation():
    with pytest.raises(ValueError, match="grid centre"):
        Arm("a", {"optimizer": "lion"})
    with pytest.raises(ValueError, match="seed and role"):
        Arm("a", {"seed": 0}, lr=1e-3)
    with pytest.raises(ValueError, match="one contrast"):
        Hypothesis("h", "t", "superiority", (), primary=True)


# ---------------------------------------------------------------- metrics and checks from records

def test_plateau_metrics_on_a_known_curve():
    r = record({"lr": 1e-3}, plateau=1.0, tau=100.0, start=3.0)
    assert plateau_loss(r) == pytest.approx(1.0, abs=1e-3)
    # within 10 % of the plateau once 2 exp(-t / 100) <= 0.1: t = 100 ln 20 = 300 of 1,000 steps
    assert steps_to_plateau(r) == pytest.approx(0.3, abs=0.02)
    assert plateau_change(r) < 0.02
    young = record({"lr": 1e-3}, tau=600.0)  # still falling over its last 20 %
    assert plateau_change(young) > 0.02
    assert smooth([0.0, 0.0, 3.0, 0.0, 0.0], share=0.6) == pytest.approx([0.0, 1.0, 1.0, 1.0, 0.0])


def test_bytes_to_target_interpolates_between_evaluations():
    r = {"spec_hash": "x", "eval": {"step": [0, 10, 20], "val_loss": [4.0, 2.0, 1.0], "bytes": [0.0, 100.0, 200.0]}}
    assert bytes_to_target(r, "val_loss", 1.5) == pytest.approx(150.0)
    assert bytes_to_target(r, "val_loss", 4.0) == 0.0 and math.isinf(bytes_to_target(r, "val_loss", 0.5))


def test_interior_fails_when_the_grid_stops_at_its_edge():
    """The optimum beyond max_points: the grid stops growing and the check says so."""
    p = simple(checks=[Check("tuned lr interior", "interior", ("A", "B"), 1.0)])
    out = analyse(p, world(p, accs([1.0] * 5), best={"A": 1e-3, "B": 1e-3 * 2 ** 6}), folder=None)
    res = {c["arm"]: c for c in out["checks"]}
    assert res["A"]["passed"] and not res["B"]["passed"]
    assert out["tuning"]["simple"]["B"]["ks"] == [-1, 0, 1, 2, 3] and not out["tuning"]["simple"]["B"]["interior"]
    assert out["findings"][0]["verdict"] == stats.NOT_TESTABLE and "interior" in out["findings"][0]["reason"]


def test_tuning_uses_tuning_seeds_only():
    p = simple()
    recs = world(p, accs([1.0] * 5))
    lrs = tuned_lrs(p, recs)
    assert lrs["A"]["lr"] == pytest.approx(1e-3) and lrs["A"]["interior"]
    assert {r["spec"]["seed"] for r in recs if r["spec"]["role"] == "tune"} == set(p.tuning.seeds)
    assert {r["spec"]["seed"] for r in recs if r["spec"]["role"] == "eval"} == set(p.eval_seeds)


# ---------------------------------------------------------------- the other protocols of the library, end to end

def test_architecture_p_not_testable_at_this_scale():
    """Seed noise of 3 pp: the interaction's MDE is far above its 1 pp SESOI, and the sentence says so."""
    p = architecture_p("tiny")
    rng = np.random.default_rng(3)
    f = analyse(p, world(p, lambda arm, spec: dict(final={"test_acc": 0.6 + 0.03 * rng.standard_normal()})),
                folder=None)["findings"]
    main = next(x for x in f if x["primary"])
    assert main["name"] == "interaction" and main["verdict"] == main["verdict_holm"] == stats.NOT_TESTABLE
    assert main["mde"] > main["sesoi"] == 1.0 and main["units"] == "pp"
    assert main["checks_pass"] and sentence(main).startswith(
        f"{main['hypothesis']} [primary, superiority]: not testable at this scale (MDE = {main['mde']:.3g} pp > SESOI = 1 pp")
    assert sum(x["primary"] for x in f) == 1


def test_muon_overshoot_and_the_exact_msign_check():
    p = muon_spectral("tiny")
    rng = np.random.default_rng(4)
    out = analyse(p, world(p, lambda arm, spec: dict(box0=1.0, box_end=-1e-4 if arm == "muon_exact" else 0.05 + 0.002 * rng.standard_normal())),
                  folder=None)
    assert all(c["passed"] for c in out["checks"]), out["checks"]
    f = out["findings"][0]
    assert f["verdict"] == stats.REPRODUCED and f["effect"] == pytest.approx(0.05, abs=0.01)
    # an exact msign that ends past 1/lambda fails its check, and the finding is then not testable
    out = analyse(p, world(p, lambda arm, spec: dict(box0=1.0, box_end=0.01)), folder=None)
    bad = [c for c in out["checks"] if not c["passed"]]
    assert [c["check"] for c in bad] == ["exact msign inside 1/lambda after phase 1 (lambda sigma_max <= 1.001)"]
    assert out["findings"][0]["verdict"] == stats.NOT_TESTABLE


def test_distributed_lion_equal_steps_and_bytes():
    p = distributed_lion("tiny")
    rng = np.random.default_rng(5)
    n = 100_000
    per_step = {"global": 2 * 3 / 4 * 4 * n, "mavo": 3 * n / 8, "avg": 3 * n / 8}
    steps = np.linspace(0, STEPS, 21)

    def outcome(arm, spec):
        tau = 150.0 * (1 + 0.05 * rng.standard_normal())
        val = 1.5 + 2.5 * np.exp(-steps / tau)
        return dict(tau=tau, final={"val_loss": float(val[-1]), "test_loss": float(val[-1]) + 0.01},
                    evals={"step": steps.tolist(), "val_loss": val.tolist(), "bytes": (steps * per_step[arm]).tolist()})

    out = analyse(p, world(p, outcome), folder=None)
    assert all(c["passed"] for c in out["checks"]), [c for c in out["checks"] if not c["passed"]]
    f = {x["name"]: x for x in out["findings"]}
    assert f["mavo_equal_steps"]["verdict"] == stats.REPRODUCED and f["mavo_equal_steps"]["test"] == "non-inferiority"
    b = f["mavo_bytes"]
    assert b["verdict"] == stats.REPRODUCED and b["units"] == "log10 bytes"
    assert b["effect"] == pytest.approx(math.log10(per_step["global"] / per_step["mavo"]), abs=0.2)


def test_plan_runs_an_lr_matched_control_once_when_it_is_another_arms_run():
    """lambda 30 tuned to lambda 1's lr: the control (lambda 1 at lambda 30's lr) is lambda 1's run."""
    p = lambda_tradeoff("resnet", "tiny")
    recs = [r for r in world(p, lambda arm, spec: {}) if r["spec"]["role"] == "tune"]
    todo = plan(p, recs)
    assert len(todo) == 3 * len(p.eval_seeds)  # lambda 1, 10, 30; the control adds no run
    assert len({json.dumps(t, sort_keys=True) for t in todo}) == len(todo)


def test_tuning_ties_go_to_the_centre():
    """A flat score: every grid point ties, and the centre (k = 0) is chosen, for min and max goals."""
    for goal in ("min", "max"):
        p = simple()
        p = Protocol.from_dict({**p.to_dict(), "tuning": {**p.to_dict()["tuning"], "goal": goal}})
        recs = [stamp(record({**a.partial, "lr": a.lr * 2.0 ** k, "seed": 100, "role": "tune"},
                             final={"val_acc": 0.5}), p) for a in p.arms for k in (-1, 0, 1)]
        assert tuned_lrs(p, recs)["A"]["k"] == 0


def test_the_decision_rule_is_part_of_the_protocol():
    """alpha, power and the rule's text are hashed; a looser alpha decides what the default does not."""
    effects = [1.0, 0.3, 1.9, 1.1, 0.5]  # one-sided p = 0.013
    strict = simple(1.5, pilot_sd=0.5)
    loose = Protocol.from_dict({**strict.to_dict(), "alpha": 0.005})
    assert loose.hash != strict.hash and strict.rule == stats.RULE
    assert one(strict, world(strict, accs(effects)))[0]["verdict"] == stats.REPRODUCED
    f = one(loose, world(loose, accs(effects)))[0]
    assert f["verdict"] == stats.INCONCLUSIVE and f["mde"] == pytest.approx(stats.mde(0.5, 5, alpha=0.005))
    with pytest.raises(ValueError, match="one alpha"):
        analyse([strict, Protocol.from_dict({**loose.to_dict(), "name": "other"})], [], folder=None)
