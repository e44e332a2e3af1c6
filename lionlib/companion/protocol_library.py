"""The protocols of the paper's network claims (issue 22), one builder per claim and per scale.

`PROTOCOLS` holds them for the cpu, paper and tiny (the engine's smallest models: the paper path run end
to end on a CPU) scales; `python -m lionlib.companion.protocol_library` registers them (writes `paper_figures/protocols/<name>.json` with its hash; `--replace` for a
deliberate change). Every number below is a choice made before the runs and is part of the hash:

- tuning: each tuned arm on lr_arm x 2^k, k in {-1, 0, 1} first, extended at an edge until the optimum
  is interior (at most 7 points), on tuning seed 1000 and the validation split; the score is the
  final validation accuracy (CIFAR) or validation loss (GPT, Distributed Lion); the evaluation runs are
  scored on the full 10,000-image test set (CIFAR: `n_test` None) or the test stream (GPT), which
  tuning never reads;
- evaluation seeds 0-4 (5 fresh seeds); every arm of a protocol on the same seeds (paired effects);
- SESOI: 1 percentage point of test accuracy; 0.02 nats of loss; 5 % of the run's steps for "faster";
  non-inferiority margins: 1 pp (CIFAR), 0.02 nats (GPT), 0.05 nats (Distributed Lion, its notebook's);
  a factor 2 (log10 2) of bytes; 0.01 of lambda sigma_max - 1 for Newton-Schulz's overshoot.
"""

from __future__ import annotations

import math

from lionlib.companion.protocol import Arm, Check, Contrast, Hypothesis, Metric, Protocol, Tuning, register

__all__ = ["MODELS", "TUNE_SEEDS", "EVAL_SEEDS", "lambda_tradeoff", "architecture_p", "lion_vs_adamw",
           "muon_spectral", "distributed_lion", "PROTOCOLS"]

MODELS = {"cpu": {"resnet": "resnet8", "vit": "vit", "gpt": "gpt_2x64"},
          "paper": {"resnet": "resnet18", "vit": "vit_s", "gpt": "gpt2_124m"}}
MODELS["tiny"] = {"resnet": "resnet_tiny", "vit": "vit_tiny", "gpt": "gpt_tiny"}  # the paper path, end to end on a CPU
FULL_TEST = {"cpu": {"n_test": None}, "paper": {"n_test": None}, "tiny": {}}  # n_test None: all 10,000 test images
LR = {"cpu": {"lion": 1e-3, "adamw": 3e-3, "gpt_lion": 1e-3, "gpt_adamw": 3e-3},
      "paper": {"lion": 3e-4, "adamw": 1e-3, "gpt_lion": 1e-4, "gpt_adamw": 6e-4}}
LR["tiny"] = LR["cpu"]
TUNE_SEEDS = (1000,)
EVAL_SEEDS = (0, 1, 2, 3, 4)
LAMBDAS = (1.0, 10.0, 30.0)
ACC = Metric("final", "test_acc", "pp", scale=100.0)
TUNING = {"cifar": Tuning(TUNE_SEEDS, Metric("final", "val_acc", "pp", scale=100.0), "max", initial=3, max_points=7),
          "gpt": Tuning(TUNE_SEEDS, Metric("final", "val_loss", "nats"), "min", initial=3, max_points=7)}
TUNING["distributed"] = TUNING["gpt"]
TUNING_NOTE = ("lr tuned per arm on lr_arm x 2^k (k = -1, 0, 1, extended at an edge until interior, <= 7 points), "
               f"tuning seed {TUNE_SEEDS} on the validation split; evaluation seeds {EVAL_SEEDS}")


def _plateau(arms, at=0.2):
    return Check("plateau reached (smoothed training loss changes <= 2 % over the last 20 % of steps)", "plateau",
                 arms, 0.02, at=at)


def _interior(arms):
    return Check("tuned lr interior (not at an edge of its grid)", "interior", arms, 1.0)


def _baseline(task, arm):
    if task == "cifar":
        return Check("baseline: Lion reaches >= 50 % on the 10,000 test images", "final_at_least", (arm,), 0.5, key="test_acc")
    return Check("baseline: Lion reaches <= 2.0 nats validation loss", "final_at_most", (arm,), 2.0, key="val_loss")


def _base(task, scale, model, **kw):
    return {"task": task, "scale": scale, "model": model, **(FULL_TEST[scale] if task == "cifar" else {}), **kw}


def lambda_tradeoff(model: str, scale: str = "cpu") -> Protocol:
    """"A stronger bound converges faster early and ends worse": Lion at lambda 1, 10, 30, each tuned,
    and lambda 1 at the lambda-30 arm's lr (the lr-matched control: same step size, weak bound)."""
    task = "gpt" if model == "gpt" else "cifar"
    lr = LR[scale]["gpt_lion" if task == "gpt" else "lion"]
    name = lambda lam: f"lambda{lam:g}"  # noqa: E731
    arms = [Arm(name(lam), _base(task, scale, MODELS[scale][model], optimizer="lion", weight_decay=lam), lr=lr)
            for lam in LAMBDAS]
    arms.append(Arm("lambda1_at_lr30", _base(task, scale, MODELS[scale][model], optimizer="lion", weight_decay=1.0),
                    tune=False, lr_from="lambda30"))
    faster = Metric("steps_to_plateau", "loss", "% of the steps", scale=100.0, window=0.1, tol=0.1)
    worse = Metric("plateau_loss", "loss", "nats", window=0.1)
    checks = [Check("phase 1 over before the early read-out (sum lr_t lambda >= 5 by 25 % of the steps)", "phase1_by",
                    ("lambda10", "lambda30"), 5.0, at=0.25),
              Check("strong arms start outside their box (lambda ||x_0||_inf > 1)", "starts_outside", ("lambda10", "lambda30"), 1.0,
                    key="max_constraint"),
              _plateau([a.name for a in arms]), _interior([a.name for a in arms if a.tune]), _baseline(task, "lambda1")]
    every = [c.name for c in checks]

    def both(strong, weak, primary, text):
        return Hypothesis(f"{strong}_vs_{weak}", text, "intersection-union", primary=primary, checks=every, contrasts=(
            Contrast("faster", faster, ((weak, 1.0), (strong, -1.0)), sesoi=5.0),
            Contrast("worse", worse, ((strong, 1.0), (weak, -1.0)), sesoi=0.02)))

    secondary = (Contrast("worse on test", ACC, (("lambda1", 1.0), ("lambda30", -1.0)), sesoi=1.0) if task == "cifar" else
                 Contrast("worse on the test stream", Metric("final", "test_loss", "nats"), (("lambda30", 1.0), ("lambda1", -1.0)), sesoi=0.02))
    hyps = [both("lambda30", "lambda1", True, "lambda 30 reaches its plateau in fewer steps than lambda 1 AND plateaus at a higher training loss"),
            both("lambda10", "lambda1", False, "lambda 10 reaches its plateau in fewer steps than lambda 1 AND plateaus higher"),
            both("lambda30", "lambda1_at_lr30", False, "at the same lr, lambda 30 is faster AND worse than lambda 1 (the bound, not the step size)"),
            Hypothesis("lambda30_worse_heldout", f"lambda 30 ends worse than lambda 1 on held-out data ({secondary.label})",
                       "superiority", (secondary,), primary=False, checks=every)]
    return Protocol(f"lambda_tradeoff_{model}_{scale}", task, "a stronger bound (larger lambda) converges faster early and ends worse",
                    "paper [inferred]", arms, TUNING[task], EVAL_SEEDS, hyps, checks,
                    notes=f"{TUNING_NOTE}; every lambda's grid centred on Lion's base lr; decoupled lambda on tensors with >= 2 dims; "
                          "faster = steps until the smoothed training loss stays within 10 % of the arm's own plateau "
                          "(mean over the last 10 % of steps); worse = that plateau loss")


def architecture_p(scale: str = "cpu") -> Protocol:
    """"The best K depends on the architecture": Lion-lp, p in {1, 2} (primary) and 1.5, ResNet vs ViT."""
    lr, arms = LR[scale]["lion"], []
    for arch in ("resnet", "vit"):
        for p in (1.0, 1.5, 2.0):
            kw = dict(optimizer="lion") if p == 1 else dict(optimizer="lion_lp", p=p)
            arms.append(Arm(f"{arch}_p{p:g}", _base("cifar", scale, MODELS[scale][arch], weight_decay=1.0, **kw), lr=lr))
    names = [a.name for a in arms]
    checks = [_plateau(names), _interior(names), _baseline("cifar", "resnet_p1")]
    every = [c.name for c in checks]

    def diff(label, plus, minus):
        return Contrast(label, ACC, ((plus, 1.0), (minus, -1.0)), sesoi=1.0)

    hyps = [Hypothesis("interaction", "p = 2 gains more over p = 1 on the ResNet than on the ViT", "superiority",
                       (Contrast("interaction", ACC, (("resnet_p2", 1.0), ("resnet_p1", -1.0), ("vit_p2", -1.0), ("vit_p1", 1.0)),
                                 sesoi=1.0),), primary=True, checks=every),
            Hypothesis("resnet_p2_over_p1", "on the ResNet p = 2 ends more accurate than p = 1", "superiority",
                       (diff("p2 - p1, ResNet", "resnet_p2", "resnet_p1"),), primary=False, checks=every),
            Hypothesis("vit_p1_over_p2", "on the ViT p = 1 ends more accurate than p = 2", "superiority",
                       (diff("p1 - p2, ViT", "vit_p1", "vit_p2"),), primary=False, checks=every),
            Hypothesis("resnet_p1.5_over_p1", "on the ResNet p = 1.5 ends more accurate than p = 1", "superiority",
                       (diff("p1.5 - p1, ResNet", "resnet_p1.5", "resnet_p1"),), primary=False, checks=every),
            Hypothesis("vit_p1_over_p1.5", "on the ViT p = 1 ends more accurate than p = 1.5", "superiority",
                       (diff("p1 - p1.5, ViT", "vit_p1", "vit_p1.5"),), primary=False, checks=every)]
    return Protocol(f"architecture_p_{scale}", "cifar", "the best p of Lion-lp depends on the architecture (conv net vs transformer)",
                    "paper [inferred]", arms, TUNING["cifar"], EVAL_SEEDS, hyps, checks,
                    notes=f"{TUNING_NOTE}; test accuracy on the full 10,000-image test set, in percentage points; "
                          "Lion-lp step scale n^(1-1/p) per tensor (lr x s, lambda / s); lambda 1 on tensors with >= 2 dims")


def lion_vs_adamw(model: str, scale: str = "cpu") -> Protocol:
    """"Lion is at least as good as AdamW" on one model, a non-inferiority test with a stated margin."""
    task = "gpt" if model == "gpt" else "cifar"
    pre = "gpt_" if task == "gpt" else ""
    arms = [Arm("lion", _base(task, scale, MODELS[scale][model], optimizer="lion", weight_decay=1.0), lr=LR[scale][pre + "lion"]),
            Arm("adamw", _base(task, scale, MODELS[scale][model], optimizer="adamw", weight_decay=0.1), lr=LR[scale][pre + "adamw"])]
    checks = [_plateau(["lion", "adamw"]), _interior(["lion", "adamw"])] + ([_baseline(task, "lion")] if model != "vit" else [])
    if task == "cifar":
        c = Contrast("Lion - AdamW", ACC, (("lion", 1.0), ("adamw", -1.0)), sesoi=1.0)
    else:
        c = Contrast("AdamW - Lion", Metric("final", "test_loss", "nats"), (("adamw", 1.0), ("lion", -1.0)), sesoi=0.02)
    h = Hypothesis("non_inferior", f"Lion (tuned) is at least as good as AdamW (tuned) on the {model}, within {c.sesoi:g} {c.metric.units}",
                   "non-inferiority", (c,), primary=True, checks=[x.name for x in checks])
    return Protocol(f"lion_vs_adamw_{model}_{scale}", task, "Lion matches or beats AdamW", "Lion paper (Chen et al. 2023)",
                    arms, TUNING[task], EVAL_SEEDS, [h], checks,
                    notes=f"{TUNING_NOTE}; Lion lambda 1, AdamW lambda 0.1, decoupled, tensors with >= 2 dims; margin {c.sesoi:g} {c.metric.units}")


def muon_spectral(scale: str = "cpu") -> Protocol:
    """Muon on the ResNet's matrices at lambda = 2: exact msign ends inside 1/lambda (a check), and how
    far the 5-step quintic Newton-Schulz iteration overshoots it (the finding)."""
    spec = lambda exact: _base("cifar", scale, MODELS[scale]["resnet"], optimizer="muon", weight_decay=2.0, lr=0.1, muon_exact=exact)  # noqa: E731
    arms = [Arm("muon_exact", spec(True), tune=False), Arm("muon_ns", spec(False), tune=False)]
    checks = [Check("phase 1 over by half-way (sum lr_t lambda >= 5 by 50 % of the steps)", "phase1_by", ("muon_exact", "muon_ns"), 5.0, at=0.5),
              Check("Muon starts outside its box (lambda sigma_max(X_0) > 1)", "starts_outside", ("muon_exact", "muon_ns"), 1.0,
                    key="max_constraint"),
              Check("exact msign inside 1/lambda after phase 1 (lambda sigma_max <= 1.001)", "inside_after_phase1", ("muon_exact",),
                    1.001, key="max_constraint")]
    h = Hypothesis("ns_overshoot", "Newton-Schulz Muon ends with lambda sigma_max above 1 (it overshoots the spectral box)",
                   "superiority", (Contrast("overshoot", Metric("monitor_end", "max_constraint", "lambda sigma_max - 1", offset=-1.0),
                                            (("muon_ns", 1.0),), sesoi=0.01),), primary=True, checks=[c.name for c in checks])
    return Protocol(f"muon_spectral_{scale}", "cifar", "Muon with decoupled lambda keeps every matrix inside ||X||_op <= 1/lambda",
                    "Muon follow-up (arXiv 2506.15054) + companion", arms, TUNING["cifar"], EVAL_SEEDS, [h], checks,
                    notes="Muon lr 0.1 (the follow-up's CIFAR setting, not tuned: the claim is about the bound, not a "
                          "comparison), lambda 2 on the conv kernels as (out, in k k) matrices and the head; 1-D tensors by "
                          "AdamW (aux_lr); max_constraint = the largest lambda sigma_max over the matrices")


def distributed_lion(scale: str = "cpu") -> Protocol:
    """Distributed Lion (majority vote, average) against global Lion: loss at equal steps, bytes to a target."""
    b = dict(task="distributed", scale=scale, model=MODELS[scale]["gpt"], workers=4, weight_decay=1.0)
    lr = LR[scale]["gpt_lion"]
    arms = [Arm("global", {**b, "optimizer": "lion", "vote": None}, lr=lr), Arm("mavo", {**b, "optimizer": "distributed_lion", "vote": "majority"}, lr=lr),
            Arm("avg", {**b, "optimizer": "distributed_lion", "vote": "average"}, lr=lr)]
    names = [a.name for a in arms]
    checks = [Check("at least 1,000 steps", "min_steps", names, 1000.0), _plateau(names), _interior(names)]
    every = [c.name for c in checks]
    loss = Metric("final", "test_loss", "nats")
    ni = lambda arm: Contrast(f"global - {arm}", loss, (("global", 1.0), (arm, -1.0)), sesoi=0.05)  # noqa: E731
    bytes_ = Metric("bytes_to_target", "val_loss", "log10 bytes", log10=True)
    hyps = [Hypothesis("mavo_equal_steps", "majority-vote Distributed Lion ends within 0.05 nats of global Lion at equal steps",
                       "non-inferiority", (ni("mavo"),), primary=True, checks=every),
            Hypothesis("avg_equal_steps", "averaging Distributed Lion ends within 0.05 nats of global Lion at equal steps",
                       "non-inferiority", (ni("avg"),), primary=False, checks=every),
            Hypothesis("mavo_bytes", "majority-vote Distributed Lion reaches the target loss with fewer bytes per worker than global Lion",
                       "superiority", (Contrast("log10 bytes global / mavo", bytes_, (("global", 1.0), ("mavo", -1.0)),
                                                sesoi=math.log10(2)),), primary=False, checks=every)]
    return Protocol(f"distributed_lion_{scale}", "distributed", "Distributed Lion trains as well as global Lion with 1/32 of the bytes",
                    "Distributed Lion (arXiv 2404.00438)", arms, TUNING["distributed"], EVAL_SEEDS, hyps, checks,
                    notes=f"{TUNING_NOTE}; 4 workers; bytes per worker: ring all-reduce of fp32 gradients vs all-gather of packed "
                          "signs (record eval.bytes); target = the largest final validation loss of the two arms' runs")


PROTOCOLS = {p.name: p for scale in ("cpu", "paper", "tiny") for p in (
    lambda_tradeoff("resnet", scale), lambda_tradeoff("gpt", scale), architecture_p(scale), lion_vs_adamw("resnet", scale),
    lion_vs_adamw("vit", scale), lion_vs_adamw("gpt", scale), muon_spectral(scale), distributed_lion(scale))}

if __name__ == "__main__":
    import sys

    for p in PROTOCOLS.values():
        print(p.hash, register(p, replace="--replace" in sys.argv))
