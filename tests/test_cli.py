"""The experiments' command lines and run folders (`python -m lionlib.experiments.cifar` / `.gpt`): every
failure a new user met (issue 12, items 1, 3 and 4) reproduced, and what the user now gets instead.

No network: a download is pointed at a file:// URL that does not exist, which fails as an offline
machine does. The command lines run in-process (`main(argv)`), on tiny settings.
"""

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from lionlib.experiments import checkpoint, cifar, cifar_data, cifar_train, gpt, gpt_data, gpt_train, specs
from lionlib.experiments.checkpoint import CheckpointError, Interrupted
from lionlib.experiments.common import DataError, data_dir
from lionlib.experiments.record import RunRecord

SHARED_DATA = Path(os.environ.get("LIONLIB_DATA_DIR") or cifar_data.OFFLINE)
needs_shakespeare = pytest.mark.skipif(not (SHARED_DATA / "tinyshakespeare" / "input.txt").is_file(),
                                       reason="offline tiny Shakespeare not present")
GPT_TINY = ["--scale", "smoke", "--steps", "12", "--warmup", "2", "--eval-every", "4",
            "--eval-batches", "1", "--final-eval-batches", "2", "--monitor-every", "0", "--threads", "1"]


def run_main(main, argv, capsys):
    """(exit status, stdout, stderr) of a command line run in-process."""
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty LIONLIB_DATA_DIR, no offline copy, and download URLs that fail like a machine without internet."""
    empty = tmp_path / "data"
    empty.mkdir()
    monkeypatch.setenv("LIONLIB_DATA_DIR", str(empty))
    monkeypatch.setattr(cifar_data, "OFFLINE", tmp_path / "no-shared-copy")
    monkeypatch.setattr(cifar_data, "URL", (tmp_path / "offline" / "cifar-10-python.tar.gz").as_uri())
    monkeypatch.setattr(gpt_data, "SHAKESPEARE_URL", (tmp_path / "offline" / "input.txt").as_uri())
    return empty


# ---------------------------------------------------------------------------------------------- 1. data


def test_missing_cifar_is_one_line_that_says_what_to_do(offline, tmp_path, capsys):
    code, out, err = run_main(cifar.main, ["--scale", "smoke", "--out-dir", tmp_path / "run"], capsys)
    line = one_line(err)
    assert code == 1 and out == ""  # the one line is all
    for part in ("CIFAR-10 not found", str(offline), cifar_data.LAYOUT, cifar_data.ARCHIVE, cifar_data.URL,
                 cifar_data.ARCHIVE_MD5, "LIONLIB_DATA_DIR", "by hand"):
        assert part in line, part
    assert list(offline.iterdir()) == [] and not (tmp_path / "run").exists()  # nothing created


def test_missing_shakespeare_is_one_line_that_says_what_to_do(offline, tmp_path, capsys):
    code, out, err = run_main(gpt.main, [*GPT_TINY, "--out-dir", tmp_path / "run"], capsys)
    line = one_line(err)
    assert code == 1 and out == ""
    for part in ("tiny Shakespeare not found", "tinyshakespeare/input.txt", str(offline), gpt_data.SHAKESPEARE_URL,
                 gpt_data.SHAKESPEARE_SHA256, "LIONLIB_DATA_DIR"):
        assert part in line, part
    assert list(offline.iterdir()) == [] and not (tmp_path / "run").exists()


def test_misspelt_data_dir_is_an_error_not_created(tmp_path, monkeypatch, capsys):
    wrong = tmp_path / "dtaa"
    monkeypatch.setenv("LIONLIB_DATA_DIR", str(wrong))
    with pytest.raises(DataError, match="LIONLIB_DATA_DIR=.*dtaa is not a folder"):
        data_dir()
    code, _, err = run_main(gpt.main, [*GPT_TINY, "--out-dir", tmp_path / "run"], capsys)
    assert code == 1 and "dtaa is not a folder" in one_line(err)
    assert not wrong.exists() and not (tmp_path / "run").exists()


def test_empty_data_dir_variable_is_one_line_naming_the_fix(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LIONLIB_DATA_DIR", "")
    for main in (cifar.main, gpt.main):
        argv = ["--scale", "tiny", "--out-dir", tmp_path / "run"] + (["--threads", "1"] if main is gpt.main else [])
        code, _, err = run_main(main, argv, capsys)
        line = one_line(err)
        assert code == 1 and "LIONLIB_DATA_DIR is set but empty" in line and "unset it" in line
        assert not (tmp_path / "run").exists()


def test_partial_copy_is_an_error_or_a_warning(tmp_path, image_folder):
    src = image_folder(tmp_path / "imgs", per_class=2)
    with pytest.raises(DataError, match=r"incomplete: test/airplane/ has 2 images, 3 asked"):
        cifar_data.load_cifar10(src, train_per_class=3, test_per_class=3, cache_dir=tmp_path / "cache")
    with pytest.warns(UserWarning, match="partial copy"):  # "all" of a partial copy: said loudly
        d = cifar_data.load_cifar10(src, cache_dir=tmp_path / "cache")
    assert len(d["train"][0]) == 20 and not d["verified"]


def test_user_archive_is_checksummed_and_kept(tmp_path):
    archive = tmp_path / "mine" / cifar_data.ARCHIVE
    archive.parent.mkdir()
    archive.write_bytes(b"not the CIFAR-10 archive")
    with pytest.raises(DataError, match=f"{archive} has md5 .*expected {cifar_data.ARCHIVE_MD5}"):
        cifar_data.load_cifar10(archive.parent, cache_dir=tmp_path / "cache")
    assert archive.read_bytes() == b"not the CIFAR-10 archive"  # reported, never deleted


def test_corrupt_jpeg_is_named(tmp_path, image_folder):
    src = image_folder(tmp_path / "imgs", per_class=2)
    bad = src / "train" / "cat" / "0001.jpg"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated
    with pytest.raises(DataError, match=f"{bad} is not a readable JPEG"):
        cifar_data.load_cifar10(src, train_per_class=2, test_per_class=2, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # nothing cached from a bad copy


# ---------------------------------------------------------------------------------------------- 4. command lines


def test_help_lists_types_defaults_and_choices(capsys):
    texts = {}
    for name, main in (("cifar", cifar.main), ("gpt", gpt.main)):
        code, out, _ = run_main(main, ["--help"], capsys)
        assert code == 0
        texts[name] = out
    assert "{lion,lion_lp,adamw,muon}" in texts["cifar"] and "{lion,lion_lp,adamw}" in texts["gpt"]
    assert "--steps STEPS" in texts["gpt"] and "(default: 2500)" in texts["gpt"] and "(default: 1000)" in texts["cifar"]
    assert "(default: 0.001)" in texts["gpt"] and "gpt2_124m" in texts["gpt"] and "resnet18" in texts["cifar"]
    # The same flag for the same meaning, in one style (kebab-case), in both.
    shared = ("--scale", "--model", "--optimizer", "--lr", "--weight-decay", "--p", "--seed", "--device", "--data-dir",
              "--out-dir", "--resume", "--force", "--threads", "--stop-at", "--progress", "--compile", "--precision",
              "--n-train", "--n-val", "--split-seed", "--role", "--store")
    for text in texts.values():
        assert all(f" {flag}" in text for flag in shared)
        assert "--out_dir" not in text and "--wd " not in text and "--run-dir" not in text


@pytest.mark.parametrize("main, argv, message", [
    (gpt.main, ["--steps", "abc"], "argument --steps: invalid int value: 'abc'"),
    (gpt.main, ["--eval_every", "abc"], "argument --eval-every: invalid int value: 'abc'"),  # underscore spelling
    (gpt.main, ["--model", "gpt_huge"], "invalid choice: 'gpt_huge'"),
    (gpt.main, ["--resume", "ture"], "unrecognized arguments: ture"),
    (gpt.main, ["--optimizer", "lionk"], "invalid choice: 'lionk'"),
    (gpt.main, ["--lr", "-1"], "lr -1.0 (want a finite number > 0)"),
    (gpt.main, ["--batch-size", "12", "--grad-accum", "5"], "batch_size 12 does not split evenly"),
    (cifar.main, ["--steps", "0"], "steps 0 (want an integer >= 1)"),
    (cifar.main, ["--n-train", "0"], "n_train 0"),
    (cifar.main, ["--p", "0.5", "--optimizer", "lion_lp"], "p 0.5 (Lion-lp wants 1 <= p <= 2)"),
    (cifar.main, ["--warmup", "1.5"], "argument --warmup: invalid int value: '1.5'"),
    (cifar.main, ["--threads", "0"], "--threads 0: give a number of threads >= 1"),
    (gpt.main, ["--threads", "-3"], "--threads -3: give a number of threads >= 1"),
    (cifar.main, ["--stop-at", "0"], "--stop-at 0"),
    pytest.param(cifar.main, ["--device", "cuda"], "--device cuda: this torch has no CUDA device",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")),
    pytest.param(gpt.main, ["--device", "cuda:0"], "use --device cpu",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")),
])
def test_bad_values_are_one_line_errors_before_any_work(main, argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LIONLIB_DATA_DIR", str(tmp_path / "never-read"))  # a data access would fail differently
    code, out, err = run_main(main, [*argv, "--out-dir", tmp_path / "run"], capsys)
    assert code == 2
    assert message in one_line(err)
    assert "run folder" not in out and not (tmp_path / "run").exists()  # no empty run folder


# ---------------------------------------------------------------------------------------------- 3. checkpoints


@needs_shakespeare
def test_finished_run_is_not_overwritten_without_force(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    base = [*GPT_TINY, "--data-dir", SHARED_DATA, "--out-dir", out, "--no-progress"]
    assert run_main(gpt.main, base, capsys)[0] == 0
    step = lambda: torch.load(out / checkpoint.CHECKPOINT, weights_only=True)["step"]  # noqa: E731
    assert step() == 12 and (out / "result.json").is_file()
    for extra in ([], ["--resume"], ["--steps", "4"]):
        code, _, err = run_main(gpt.main, [*base, *extra], capsys)
        assert code == 2 and "holds a finished run" in one_line(err) and "--force" in err
        assert step() == 12
    interrupt_in(monkeypatch, gpt_train, 2)
    code, out_text, _ = run_main(gpt.main, [*base, "--steps", "4", "--force"], capsys)  # Ctrl-C in step 1
    assert code == 130 and "result.json removed" in out_text and step() == 2 and not (out / "result.json").exists()
    monkeypatch.undo()
    code, _, _ = run_main(gpt.main, [*base, "--steps", "4", "--resume"], capsys)
    assert code == 0 and step() == 4  # the forced run, continued


@needs_shakespeare
def test_resume_refuses_another_configuration_and_says_what_it_resumes(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    base = [*GPT_TINY, "--data-dir", SHARED_DATA, "--out-dir", out, "--no-progress"]
    assert run_main(gpt.main, [*base, "--stop-at", "4"], capsys)[0] == 0
    code, _, err = run_main(gpt.main, base, capsys)  # no --resume: an unfinished run is not overwritten either
    assert code == 2 and "unfinished run" in one_line(err) and "--resume" in err
    for extra, said in ((["--lr", "3e-3"], "lr 0.001 -> 0.003"), (["--optimizer", "adamw"], "optimizer 'lion' -> 'adamw'")):
        code, _, err = run_main(gpt.main, [*base, "--resume", *extra], capsys)
        assert code == 1 and said in one_line(err) and "another configuration" in err
    steps = counting(monkeypatch, gpt_train, "lr_factor")
    code, out_text, _ = run_main(gpt.main, [*base, "--resume"], capsys)
    assert code == 0 and f"resuming {out / checkpoint.CHECKPOINT} at step 4 of 12" in out_text
    assert steps[0] == 12 - 4
    code, out_text, err = run_main(gpt.main, [*base, "--resume", "--out-dir", tmp_path / "new"], capsys)
    assert code == 0 and "no checkpoint in" in out_text and "starting the run" in out_text, err


@pytest.mark.parametrize("damage", ["truncate", "garbage", "foreign"])
def test_damaged_checkpoint_is_one_line_naming_the_file(tmp_path, damage):
    path = tmp_path / checkpoint.CHECKPOINT
    checkpoint.save_checkpoint(path, {"step": 3, "model": {"w": torch.ones(1000)}})
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:300])
    elif damage == "garbage":
        path.write_bytes(b"\x80\x02garbage" * 100)
    with pytest.raises(CheckpointError) as e:
        checkpoint.load_checkpoint(path, keys=("step", "model", "optimizer"))
    msg = str(e.value)
    assert str(path) in msg and "\n" not in msg and "weights_only" not in msg


@needs_shakespeare
def test_damaged_checkpoint_on_the_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / checkpoint.CHECKPOINT).write_bytes(b"PK\x03\x04 half a zip file")
    code, _, err = run_main(gpt.main, [*GPT_TINY, "--data-dir", SHARED_DATA, "--out-dir", out, "--resume"], capsys)
    line = one_line(err)
    assert code == 1 and str(out / checkpoint.CHECKPOINT) in line and "unreadable checkpoint" in line
    assert "weights_only" not in line and (out / checkpoint.CHECKPOINT).read_bytes().endswith(b"zip file")


def counting(monkeypatch, module, name):
    """Wrap `module.name` so that calls are counted (the steps a run really trains)."""
    real, count = getattr(module, name), [0]

    def wrapped(*args):
        count[0] += 1
        return real(*args)
    monkeypatch.setattr(module, name, wrapped)
    return count


def interrupt_in(monkeypatch, module, calls: int):
    """Ctrl-C (SIGINT to this process) during the `calls`-th call of the trainer's schedule: in the
    middle of that step, as a user's key press would arrive."""
    real, hit = module.lr_factor, _interrupt_at(calls)
    monkeypatch.setattr(module, "lr_factor", lambda *a: (hit(), real(*a))[1])


def _interrupt_at(calls: int):
    """A function that sends this process SIGINT (Ctrl-C) on its `calls`-th call."""
    count = [0]

    def hit():
        count[0] += 1
        if count[0] == calls:
            os.kill(os.getpid(), signal.SIGINT)
    return hit


@needs_shakespeare
def test_ctrl_c_saves_a_checkpoint_and_the_resume_is_identical(tmp_path, monkeypatch):
    spec = specs.gpt_spec("smoke", steps=12, warmup=2, eval_every=4, eval_batches=1, final_eval_batches=2, monitor_every=3)
    kw = dict(device="cpu", data_dir=str(SHARED_DATA), show_progress=False)
    straight = gpt_train.train(spec, **kw)
    out = tmp_path / "run"
    interrupt_in(monkeypatch, gpt_train, 5)  # Ctrl-C in step 4
    with pytest.raises(Interrupted, match=r"interrupted at step 5 of 12: .*checkpoint.pt saved; continue with --resume"):
        gpt_train.train(spec, out_dir=out, **kw)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C behaves as usual again
    assert torch.load(out / checkpoint.CHECKPOINT, weights_only=True)["step"] == 5
    monkeypatch.undo()
    steps = counting(monkeypatch, gpt_train, "lr_factor")
    resumed = gpt_train.train(spec, out_dir=out, resume=True, **kw)
    assert steps[0] == 12 - 5  # continued, not trained again from the start
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    a, b = straight.numbers(), resumed.numbers()
    assert (a["env"].pop("resumed"), b["env"].pop("resumed")) == (0, 1) and a == b  # monitor rows included


@needs_shakespeare
def test_ctrl_c_on_the_command_line_is_one_line_and_status_130(tmp_path, capsys, monkeypatch):
    interrupt_in(monkeypatch, gpt_train, 3)
    code, _, err = run_main(gpt.main, [*GPT_TINY, "--data-dir", SHARED_DATA, "--out-dir", tmp_path, "--no-progress"],
                            capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 130 and "Traceback" not in err
    assert lines[-1].endswith("saved; continue with --resume (resume=True)") and "step 3 of 12" in lines[-1]


def test_cifar_ctrl_c_writes_the_checkpoint_mid_epoch_and_the_resume_is_identical(tmp_path, image_folder, capsys,
                                                                                   monkeypatch):
    """The CIFAR command line: Ctrl-C in the middle of an epoch writes the checkpoint it announces;
    --resume says what it resumes and ends with the record of an uninterrupted run (wall time and the
    `resumed` count excepted)."""
    src = image_folder(tmp_path / "imgs", per_class=4)
    base = ["--scale", "tiny", "--data-dir", src, "--n-train", 30, "--n-val", 10, "--n-test", 20, "--steps", 9,
            "--batch-size", 10, "--eval-every", 3, "--threads", 1, "--no-progress"]
    assert run_main(cifar.main, [*base, "--out-dir", tmp_path / "a"], capsys)[0] == 0
    interrupt_in(monkeypatch, cifar_train, 5)  # 3 steps an epoch: step 5 is in the middle of epoch 2
    code, _, err = run_main(cifar.main, [*base, "--out-dir", tmp_path / "b"], capsys)
    assert code == 130 and "interrupted at step 5 of 9" in err and "checkpoint.pt saved; continue with --resume" in err
    assert torch.load(tmp_path / "b" / checkpoint.CHECKPOINT, weights_only=True)["step"] == 5
    monkeypatch.undo()
    steps = counting(monkeypatch, cifar_train, "lr_factor")
    code, out, _ = run_main(cifar.main, [*base, "--out-dir", tmp_path / "b", "--resume"], capsys)
    assert code == 0 and "checkpoint.pt: 5 of 9 steps done" in out and "resuming" in out
    assert steps[0] == 9 - 5
    a, b = (RunRecord.loads((tmp_path / d / "result.json").read_text()).numbers() for d in "ab")
    assert (a["env"].pop("resumed"), b["env"].pop("resumed")) == (0, 1)
    assert a == b and a["monitor"]["step"] and a["eval"]["step"] == [3, 6, 9]


def test_notebooks_show_a_data_error_as_one_line(capsys):
    """In IPython (Jupyter, papermill) the error is its one line, not a traceback (`_render_traceback_`)."""
    globalipapp = pytest.importorskip("IPython.testing.globalipapp")
    shell = globalipapp.start_ipython()
    result = shell.run_cell("from lionlib.experiments.common import DataError\nraise DataError('CIFAR-10 not found: x')")
    assert isinstance(result.error_in_exec, DataError)
    out = capsys.readouterr().out
    assert one_line(out) == "DataError: CIFAR-10 not found: x"


def test_ctrl_c_before_training_is_one_line_too(tmp_path, capsys, monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(gpt, "load_data", interrupted)  # Ctrl-C while the data load
    code, _, err = run_main(gpt.main, [*GPT_TINY, "--out-dir", tmp_path / "run"], capsys)
    assert code == 130 and "interrupted" in one_line(err) and not (tmp_path / "run").exists()
