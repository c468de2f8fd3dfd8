"""The checkpoint policy (``checkpoints:`` of a space, ``mtlsearch prune``): what it keeps,
what it never touches, and that pruned searches still load, report and retrain.

Hand-written search folders with real checkpoint files (``save_checkpoint``) test the
ranking, the sizes and the safety rules without Ray; one tiny real search (slow) tests
the policy applied when ``mtlsearch search`` ends, then best, retrain and report on it.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from mtlsearch.checkpoint import load_checkpoint, load_trained_model, restore, save_checkpoint
from mtlsearch.cli import main
from mtlsearch.config import load_config
from mtlsearch.errors import UserError
from mtlsearch.models import build_model
from mtlsearch.prune import PRUNED_KEY, plan, prune, weights_only
from mtlsearch.space import load_space
from mtlsearch.space.spec import CheckpointPolicy

WIDTH = 256
"""Linear(256, 256) + BatchNorm: 263 KiB of float32 weights, so data dominates file sizes."""


def small_checkpoint(folder: Path, seed: int) -> Path:
    """A whole checkpoint (weights, Adam state after one step) of a small network."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.BatchNorm1d(WIDTH))
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(4, WIDTH)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return save_checkpoint(folder, model=model, optimizer=opt, scheduler=sched, step=4,
                           config={"name": "x"}, num_classes={"semseg": 12})


def hand_search(root: Path, trials: dict[str, tuple[float, float, str]], scheduler: str | None = None) -> Path:
    """``root/hand/``: ``mtlsearch.json`` (metric semseg_miou, max) and one trial folder per
    ``{trial id: (train.lr, value, state)}``, seed = the trial's position within its lr;
    state ``done`` (finished), ``error`` (error.txt) or ``running`` (no final report, files
    fresh). Each trial holds two whole checkpoints, like Tune leaves them."""
    folder = root / "hand"
    folder.mkdir()
    meta = {"name": "hand", "space": {"name": "hand"}, "ablated_keys": ["train.lr", "train.seed"],
            "search": {"algorithm": "grid", "metric": "semseg_miou", "mode": "max",
                       "scheduler": {"type": scheduler} if scheduler else None},
            "tasks": {"semseg": {"weight": 1.0}}}
    (folder / "mtlsearch.json").write_text(json.dumps(meta))
    seeds: dict[float, int] = {}
    for tid, (lr, value, state) in trials.items():
        trial = folder / tid
        trial.mkdir()
        seed = seeds[lr] = seeds.get(lr, -1) + 1
        (trial / "params.json").write_text(json.dumps({"train.lr": lr, "train.seed": seed}))
        rows = [{"iteration": 2, "semseg_miou": value - 1, "done": False, "training_iteration": 1}]
        if state != "running":
            rows.append({"iteration": 4, "semseg_miou": value, "done": state == "done", "training_iteration": 2})
        (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
        if state == "error":
            (trial / "error.txt").write_text("RuntimeError: worker died\n")
        for n in range(2):
            small_checkpoint(trial / f"checkpoint_{n:06d}", seed=n)
    return folder


def digest(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file below ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def cli(*argv: str) -> int:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    return int(exc.value.code or 0)


# -- the policy in a space file -------------------------------------------------


def space_file(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text("name: x\nspace:\n  train.lr: {grid: [0.1, 0.2]}\n" + extra)
    return path


def test_space_checkpoints_section_and_its_errors(tmp_path: Path) -> None:
    assert load_space(space_file(tmp_path, "")).checkpoints is None
    space = load_space(space_file(tmp_path, "checkpoints: {keep: 2, others: fp32}\n"))
    assert space.checkpoints == CheckpointPolicy(keep=2, others="fp32")
    assert load_space(space_file(tmp_path, "checkpoints: {}\n")).checkpoints == CheckpointPolicy(1, "half")
    profiled = space_file(tmp_path, "checkpoints: {keep: 2}\nprofiles:\n  small: {checkpoints: {others: none}}\n")
    assert load_space(profiled, "small").checkpoints == CheckpointPolicy(keep=2, others="none")
    for text, key, line in [
        ("checkpoints:\n  keep: -1\n", "checkpoints.keep", 5),
        ("checkpoints:\n  keep: '2'\n", "checkpoints.keep", 5),
        ("checkpoints:\n  others: quarter\n", "checkpoints.others", 5),
        ("checkpoints:\n  kep: 1\n", "checkpoints.kep", 5),
        ("checkpoints: 3\n", "checkpoints", 4),
    ]:
        with pytest.raises(UserError) as info:
            load_space(space_file(tmp_path, text))
        message = str(info.value)
        assert f"line {line}" in message and key in message, (text, message)
        assert "\n" not in message


def test_the_readme_quotes_the_demo_policy() -> None:
    root = Path(__file__).resolve().parent.parent
    demo = load_space(root / "search_spaces" / "demo.yaml", "cpu").checkpoints
    assert demo is not None
    readme = " ".join((root / "README.md").read_text().split())
    assert f"sets `checkpoints: {{keep: {demo.keep}, others: {demo.others}}}`" in readme


# -- weights-only checkpoints load where a trained model is loaded ----------------


def test_a_half_precision_checkpoint_loads_as_the_trained_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = load_config(None, {"model.decoder_width": 16, "regularizer.enabled": True,
                             "regularizer.samples_per_ray": 4, "regularizer.triplane_width": 8,
                             "regularizer.hidden": 8})
    model = build_model(cfg)
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 64))  # running statistics move off their defaults
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()  # Adam's moments exist (a zero gradient leaves the weights as they are)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    whole = save_checkpoint(tmp_path / "whole", model=model, optimizer=opt, scheduler=sched, step=7,
                            config=cfg.to_dict())
    state = load_checkpoint(whole)
    half = tmp_path / "half" / "checkpoint.pt"
    half.parent.mkdir()
    torch.save(weights_only(state, "half"), half)

    loaded, loaded_cfg = load_trained_model(half)
    assert loaded_cfg.to_dict() == cfg.to_dict() and not loaded.training
    original = model.eval().state_dict()
    for key, value in loaded.state_dict().items():
        ref = original[key]
        assert value.dtype == ref.dtype, key  # the model computes in float32 again
        if ref.is_floating_point():
            assert torch.equal(value, ref.half().float()), key  # exactly the float16 rounding
        else:
            assert torch.equal(value, ref), key  # num_batches_tracked
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref_out = model.export()(image)["heads"]
        out = loaded.export()(image)["heads"]
    for task, ref in ref_out.items():
        err = (out[task] - ref).abs().max() / ref.abs().max().clamp(min=1.0)
        assert 0 < err < 1e-2, (task, float(err))
    # about 1/6 of the whole checkpoint (float16 weights, no Adam moments)
    ratio = half.stat().st_size / whole.stat().st_size
    assert 1 / 6.5 < ratio < 1 / 5.5, ratio
    with pytest.raises(UserError, match="weights only"):
        restore(load_checkpoint(half), model=loaded, optimizer=opt, scheduler=sched)


def test_weights_float16_cannot_hold_stay_float32() -> None:
    state = {"model": {"big": torch.tensor([1.0, 7e4]), "small": torch.tensor([1.0, 3.0]),
                       "inf": torch.tensor([float("inf"), 2.0]), "count": torch.tensor(5)},
             "config": {}, "optimizer": {"state": {}}, "step": 3}
    out = weights_only(state, "half")
    assert out["model"]["big"].dtype == torch.float32 and out["model"]["big"][1] == 7e4
    assert out["model"]["small"].dtype == torch.float16 and out["model"]["inf"].dtype == torch.float16
    assert out["model"]["count"].dtype == torch.int64
    assert set(out) == {"model", "config", "step", PRUNED_KEY} and out[PRUNED_KEY] == {"precision": "half"}
    assert weights_only(state, "fp32")["model"]["small"].dtype == torch.float32


# -- ranking, sizes, dry run ------------------------------------------------------


def test_the_best_configuration_by_seed_mean_keeps_whole_checkpoints(tmp_path: Path, capsys) -> None:
    # lr 0.1: seeds 9.8 and 8.9 (mean 9.35, the luckiest single seed); lr 0.2: 9.6 and 9.6.
    folder = hand_search(tmp_path, {"a0000_00000": (0.1, 9.8, "done"), "a0000_00001": (0.1, 8.9, "done"),
                                    "a0000_00002": (0.2, 9.6, "done"), "a0000_00003": (0.2, 9.6, "done")})
    files = digest(folder)
    whole = (folder / "a0000_00000" / "checkpoint_000001" / "checkpoint.pt").stat().st_size

    dry = prune(folder, CheckpointPolicy(keep=1, others="half"), dry_run=True)
    assert digest(folder) == files  # a dry run changes nothing
    by_id = {t.trial_id: t for t in dry.trials}
    assert {t: p.rank for t, p in by_id.items()} == {"a0000_00000": 2, "a0000_00001": 2,
                                                     "a0000_00002": 1, "a0000_00003": 1}
    assert [by_id[t].action for t in sorted(by_id)] == ["half", "half", "whole", "whole"]

    assert cli("prune", str(folder), "--keep", "1") == 0
    out = capsys.readouterr().out
    assert "semseg_miou (max)" in out and re.search(r"a0000_00002 +TERMINATED +1 +last checkpoint whole", out)
    done = {t.trial_id: t for t in plan(folder, CheckpointPolicy()).trials}
    for tid, trial in done.items():
        assert len(trial.files) == 1 and trial.files[0].parent.name == "checkpoint_000001", tid
        assert trial.before == by_id[tid].after, tid  # the dry run predicted every size exactly
        assert not (folder / tid / "checkpoint_000000").exists()
        state = load_checkpoint(trial.files[0])
        if tid in ("a0000_00002", "a0000_00003"):
            assert "optimizer" in state and PRUNED_KEY not in state
            assert trial.before == whole
        else:
            assert "optimizer" not in state and state[PRUNED_KEY] == {"precision": "half"}
            assert state["model"]["0.weight"].dtype == torch.float16
            assert state["num_classes"] == {"semseg": 12} and state["step"] == 4
            assert trial.before < whole / 5.5  # weights in float16, no Adam moments
    assert re.search(r"total: \d+\.\d MiB -> \d+\.\d MiB, freed \d+\.\d MiB", out), out

    again = prune(folder, CheckpointPolicy(keep=1, others="half"))
    assert again.before == again.after == dry.after  # idempotent
    with_fp32 = prune(folder, CheckpointPolicy(keep=0, others="fp32"), dry_run=True)
    # half weights are never widened again; whole ones shrink to float32 weights
    assert {t.trial_id: t.action for t in with_fp32.trials}["a0000_00000"] == "fp32"
    assert {t.trial_id: t.after for t in with_fp32.trials}["a0000_00000"] == done["a0000_00000"].before


def test_unfinished_errored_and_foreign_files_are_left_alone(tmp_path: Path) -> None:
    folder = hand_search(tmp_path, {"a0000_00000": (0.1, 9.0, "done"), "a0000_00001": (0.1, 9.0, "error"),
                                    "a0000_00002": (0.2, 8.0, "running"), "a0000_00003": (0.2, 8.0, "done"),
                                    "a0000_00004": (0.3, 7.0, "done")})
    (folder / "a0000_00003" / "checkpoint_000000" / "notes.txt").write_text("mine")
    (folder / "a0000_00003" / "model.pt").write_bytes(b"user file")
    (folder / "a0000_00004" / "checkpoint_000000" / "checkpoint.pt").write_bytes(b"not a torch file")
    untouched = ["a0000_00001", "a0000_00002", "a0000_00004"]
    before = {t: digest(folder / t) for t in untouched}
    result = prune(folder, CheckpointPolicy(keep=1, others="none"))
    actions = {t.trial_id: (t.status, t.action) for t in result.trials}
    assert actions == {"a0000_00000": ("TERMINATED", "whole"), "a0000_00001": ("ERROR", "left"),
                       "a0000_00002": ("RUNNING", "left"), "a0000_00003": ("TERMINATED", "none"),
                       "a0000_00004": ("TERMINATED", "left")}
    assert {t: digest(folder / t) for t in untouched} == before
    assert "not an mtlsearch checkpoint" in next(t.why for t in result.trials if t.trial_id == "a0000_00004")
    other = folder / "a0000_00003"
    assert not (other / "checkpoint_000001").exists()
    assert (other / "checkpoint_000000" / "notes.txt").read_text() == "mine"  # folder kept for it
    assert not (other / "checkpoint_000000" / "checkpoint.pt").exists()
    assert (other / "model.pt").read_bytes() == b"user file"
    assert (folder / "mtlsearch.json").is_file() and (other / "result.json").is_file()


def test_a_file_in_the_way_of_the_rewrite_is_left_and_named(tmp_path: Path, capsys) -> None:
    """The atomic rewrite goes through a file it creates; a file already of that name is
    not overwritten or deleted: the prune stops with one error line naming it."""
    from mtlsearch.layout import CHECKPOINT_TMP_FILE

    folder = hand_search(tmp_path, {"a0000_00000": (0.1, 9.0, "done"), "a0000_00001": (0.2, 8.0, "done")})
    blocker = folder / "a0000_00001" / "checkpoint_000001" / CHECKPOINT_TMP_FILE
    blocker.write_bytes(b"someone else's")
    assert cli("prune", str(folder), "--keep", "1") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(blocker) in err and "Traceback" not in err, err
    assert blocker.read_bytes() == b"someone else's"
    assert "optimizer" in load_checkpoint(blocker.with_name("checkpoint.pt"))  # not rewritten


def test_refused_folders_are_one_error_line(tmp_path: Path, capsys) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    small_checkpoint(plain / "a0000_00000" / "checkpoint_000000", seed=0)
    (plain / "a0000_00000" / "result.json").write_text('{"done": true}\n')
    assert cli("prune", str(plain)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(plain) in err[0] and "mtlsearch.json" in err[0]
    assert (plain / "a0000_00000" / "checkpoint_000000" / "checkpoint.pt").is_file()

    assert cli("prune", str(tmp_path / "nosuch")) == 2
    assert "search folder not found" in capsys.readouterr().err

    pbt = hand_search(tmp_path, {"a0000_00000": (0.1, 9.0, "done"), "a0000_00001": (0.2, 8.0, "running")},
                      scheduler="pbt")
    files = digest(pbt)
    assert cli("prune", str(pbt)) == 2
    assert "PBT" in capsys.readouterr().err
    assert digest(pbt) == files

    assert cli("prune", str(pbt), "--keep", "-1") == 2
    assert "--keep" in capsys.readouterr().err


# -- a real search ----------------------------------------------------------------


@pytest.mark.slow
def test_a_search_prunes_when_it_ends_and_stays_usable(
    ray_session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from mtlsearch.best import best_trials
    from tests.tiny import search, tiny_base, write_space

    monkeypatch.chdir(tmp_path)
    space = write_space(tmp_path, {
        "name": "pruned", "base": tiny_base(ray_session),
        "space": {"train.lr": {"grid": [0.001, 0.01]}}, "seeds": [0, 1],
        "search": {"algorithm": "grid", "metric": "depth_rmse"},
        "checkpoints": {"keep": 1, "others": "half"},
        "max_concurrent_trials": 2,
    })
    assert search(str(space), "--storage", "trials") == 0
    out = capsys.readouterr().out
    exp = tmp_path / "trials" / "pruned"
    assert json.loads((exp / "mtlsearch.json").read_text())["checkpoints"] == {"keep": 1, "others": "half"}
    freed = re.search(r"checkpoints: the best 1 configuration\(s\) .*: 4 finished trial\(s\), "
                      r"(\d+\.\d) (MiB|GiB) -> (\d+\.\d) MiB", out)
    assert freed, out
    before = float(freed[1]) * (1024 if freed[2] == "GiB" else 1)
    assert float(freed[3]) < before / 3, out  # 2 of 4 trials keep one whole checkpoint of 8

    (best,), _, _ = best_trials(exp)
    kept = set(best.trial_ids)
    assert len(kept) == 2
    trials = sorted(p.parent for p in exp.glob("*/params.json"))
    assert len(trials) == 4
    for trial in trials:
        (ckpt,) = trial.glob("checkpoint_*/checkpoint.pt")  # one checkpoint left per trial
        state = load_checkpoint(ckpt)
        assert ("optimizer" in state) == (trial.name in kept), trial.name
        assert (state.get(PRUNED_KEY) is None) == (trial.name in kept), trial.name

    # every trial now weights only: about 1/12 of what Tune left (two whole checkpoints)
    assert cli("prune", str(exp), "--keep", "0", "--dry-run") == 0
    dry = capsys.readouterr().out
    assert "dry run: nothing changed" in dry
    assert cli("prune", str(exp), "--keep", "0") == 0
    for trial in trials:
        (ckpt,) = trial.glob("checkpoint_*/checkpoint.pt")
        assert load_checkpoint(ckpt)[PRUNED_KEY] == {"precision": "half"}
        half = load_checkpoint(ckpt)["model"]
        weights = sum(t.numel() for t in half.values() if t.is_floating_point())
        assert all(t.dtype == torch.float16 for t in half.values() if t.is_floating_point())
        assert ckpt.stat().st_size < 2 * weights + 2**20  # 2 bytes a weight, plus names
    assert cli("status", str(exp)) == 0
    assert "4 terminated" in capsys.readouterr().out

    # best --out, the retrain from it and the report still work on the pruned search
    assert cli("best", str(exp), "--out", "best.yaml") == 0
    text = (tmp_path / "best.yaml").read_text()
    final = dict(re.findall(r"(\w+)=([-\d.e+]+)", text.split("# final metrics: ")[1].splitlines()[0]))
    capsys.readouterr()
    assert cli("train", "best.yaml", "--storage", str(tmp_path / "runs")) == 0
    printed = dict(re.findall(r"^  (\w+): (\S+)$", capsys.readouterr().out, re.M))
    for key in ("depth_rmse", "semseg_miou", "loss"):
        assert printed[key] == final[key], key
    assert cli("report", str(exp), "--out", str(tmp_path / "report"), "--format", "md") == 0
    table = (tmp_path / "report" / "table.md").read_text()
    assert "sample predictions of" in table, table
    assert (tmp_path / "report" / "plots" / "samples_best_trial.png").stat().st_size > 0
