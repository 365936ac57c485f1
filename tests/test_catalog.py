"""The catalog of runs and studies (cnnscope.runs.catalog) and `cnnscope runs DIR`, on copies of a tiny trained run."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

import pytest
import tomli_w
import tomllib

from cnnscope.runs import catalog
from cnnscope.runs.catalog import Catalog, differing_keys, filter_entries, flatten, sort_entries
from conftest import one_line_error, run_cli


def copy_run(src: Path, dst: Path, train: dict | None = None, metrics: dict | None = None,
             drop_metrics: bool = False, history=None) -> Path:
    """A copy of a trained run with edited [train] settings, metrics.json entries or history.json."""
    # files written now, as a run being written has them (copy2 would keep the trained run's times, minutes old on a
    # slow machine: a "live" copy would then read as failed)
    shutil.copytree(src, dst, copy_function=shutil.copy)
    if train:
        config = tomllib.loads((dst / "config.toml").read_text())
        config["train"].update(train)
        (dst / "config.toml").write_text(tomli_w.dumps(config))
    if metrics:
        data = json.loads((dst / "metrics.json").read_text())
        (dst / "metrics.json").write_text(json.dumps({**data, **metrics}))
    if history is not None:
        data = json.loads((dst / "history.json").read_text())
        (dst / "history.json").write_text(json.dumps(history(data)))
    if drop_metrics:
        (dst / "metrics.json").unlink()
    return dst


def by_name(listing) -> dict:
    return {e["name"]: e for e in listing.entries}


@pytest.fixture
def folder(tmp_path, trained_run) -> Path:
    root = tmp_path / "runs"
    copy_run(trained_run, root / "adam-3e-3")
    copy_run(trained_run, root / "lr-1e-2", train={"lr": 0.01})
    copy_run(trained_run, root / "group" / "sgd", train={"optimizer": "sgd", "lr": 0.1})
    return root


def test_runs_are_listed_with_what_differs(folder, trained_run):
    listing = Catalog(folder).scan()
    entries = by_name(listing)
    assert sorted(entries) == ["adam-3e-3", "group/sgd", "lr-1e-2"]
    assert listing.differing == ["train.lr", "train.optimizer"]
    run = entries["lr-1e-2"]
    original = json.loads((trained_run / "metrics.json").read_text())
    assert run["status"] == "completed" and run["dataset"] == "mnist"
    assert run["model"] == "conv 6-12-16 · dense 24"
    assert run["settings"] == {"train.lr": 0.01, "train.optimizer": "adam"}
    assert run["test_accuracy"] == original["test_accuracy"] and run["epochs"] == 4 == run["epochs_planned"]
    assert run["seconds"] == pytest.approx(original["train_seconds"])


def test_sort_and_filter(folder):
    listing = Catalog(folder).scan()
    ordered = sort_entries(listing.entries, "train.lr", listing.differing)
    assert [e["name"] for e in ordered] == ["adam-3e-3", "lr-1e-2", "group/sgd"]
    assert [e["name"] for e in sort_entries(listing.entries, "name", reverse=True)][0] == "lr-1e-2"
    assert [e["name"] for e in filter_entries(listing.entries, "SGD")] == ["group/sgd"]
    assert filter_entries(listing.entries, "adam lr-1e") == [by_name(listing)["lr-1e-2"]]
    with pytest.raises(catalog.RunError, match="unknown sort key 'lr'; valid: name, .*train.lr"):
        sort_entries(listing.entries, "lr", listing.differing)


def test_flatten_and_differing_keys():
    flat = flatten({"model": {"conv": [{"filters": 8, "kernel": [3, 3]}]}, "train": {"lr": 0.1}})
    assert flat == {"model.conv[0].filters": 8, "model.conv[0].kernel": [3, 3], "train.lr": 0.1}
    assert differing_keys([{"a": 1, "b": 2}, {"a": 1, "b": 3}, {"a": 1}]) == ["b"]
    assert differing_keys([{"a": 1}, {"a": 1, "c": None}]) == ["c"]  # a missing key differs from any value


def test_status_of_each_kind_of_run(tmp_path, trained_run):
    root = tmp_path / "runs"
    copy_run(trained_run, root / "done")
    copy_run(trained_run, root / "stopped", metrics={"status": "interrupted"})
    copy_run(trained_run, root / "live", drop_metrics=True)
    copy_run(trained_run, root / "diverged", history=lambda h: {**h, "loss": h["loss"][:-1] + [math.nan]})
    copy_run(trained_run, root / "resumed", history=lambda h: {
        **{k: v + v[-1:] for k, v in h.items() if isinstance(v, list) and k != "epoch"},
        "epoch": h["epoch"] + [len(h["epoch"]) + 1], "val_source": h.get("val_source", "test")})
    now = by_name(Catalog(root).scan())
    assert {k: e["status"] for k, e in now.items()} == {
        "done": "completed", "stopped": "interrupted", "live": "running", "diverged": "failed", "resumed": "running"}
    assert "diverged" in now["diverged"]["reason"]
    later = by_name(Catalog(root, clock=lambda: time.time() + 3600).scan())  # an hour later, nothing changed
    assert later["live"]["status"] == later["resumed"]["status"] == "failed"
    assert "stopped without writing metrics.json" in later["live"]["reason"]
    assert later["done"]["status"] == "completed"


def test_a_fresh_run_without_history_is_running_then_failed(tmp_path, trained_run):
    run = copy_run(trained_run, tmp_path / "r" / "new", drop_metrics=True)
    (run / "history.json").unlink()
    assert by_name(Catalog(tmp_path / "r").scan())["new"]["status"] == "running"
    stale = Catalog(tmp_path / "r", live_seconds=5, clock=lambda: time.time() + 60).scan()
    assert by_name(stale)["new"]["status"] == "failed"


def test_the_live_window_grows_with_slow_epochs():
    facts = {"final_epochs": 0, "epochs": 3, "diverged": False, "final_status": None, "longest_epoch": 100.0}
    key = (int(time.time() * 1e9) - int(250e9), 10)  # written 250 s ago; 3 epochs of 100 s: still running
    keys = {"config": key, "metrics": None, "history": key}
    assert catalog.run_status(Path("/nonexistent"), facts, keys, time.time(), 120)[0] == "running"
    facts["longest_epoch"] = 10.0
    assert catalog.run_status(Path("/nonexistent"), facts, keys, time.time(), 120)[0] == "failed"


def test_unchanged_files_are_not_read_twice(folder):
    cat = Catalog(folder)
    cat.scan()
    first = cat.files.reads
    assert first == 9  # 3 runs × config.toml, metrics.json, history.json
    cat.scan()
    assert cat.files.reads == first
    history = folder / "lr-1e-2" / "history.json"
    history.write_text(history.read_text() + " ")  # size changes: read again, only that one
    cat.scan()
    assert cat.files.reads == first + 1


def test_links_are_not_followed_and_depth_is_bounded(tmp_path, trained_run):
    outside = copy_run(trained_run, tmp_path / "outside" / "secret")
    root = tmp_path / "root"
    copy_run(trained_run, root / "a" / "b" / "c" / "deep")
    (root / "link").symlink_to(outside.parent, target_is_directory=True)
    (root / "linked-run").symlink_to(outside, target_is_directory=True)
    (root / "hidden" / ".git").mkdir(parents=True)
    assert [e["name"] for e in Catalog(root).scan().entries] == ["a/b/c/deep"]
    assert Catalog(root, max_depth=2).scan().entries == []
    bait = copy_run(trained_run, root / "bait")
    (bait / "history.json").unlink()
    (bait / "history.json").symlink_to(outside / "history.json")  # a linked file is not read
    assert by_name(Catalog(root).scan())["bait"]["epochs"] == 0


def test_unreadable_folders_and_files_are_noted(tmp_path, trained_run, monkeypatch):
    root = tmp_path / "root"
    copy_run(trained_run, root / "ok")
    broken = copy_run(trained_run, root / "broken")
    (broken / "metrics.json").write_text("{not json")
    (root / "locked").mkdir()
    real = os.scandir

    def scandir(path):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(catalog.os, "scandir", scandir)
    listing = Catalog(root).scan()
    entries = by_name(listing)
    assert entries["ok"]["status"] == "completed"
    assert entries["broken"]["status"] == "unreadable" and "not valid JSON" in entries["broken"]["reason"]
    assert listing.notes == [f"skipped {root / 'locked'}: Permission denied"]


def make_study(root: Path, trained_run: Path) -> Path:
    """A study directory as the sweep writes it: study.toml, results.json rows, trials/NNNN run directories."""
    study = root / "studies" / "lr"
    study.mkdir(parents=True)
    (study / "study.toml").write_text('metric = "val_accuracy"\ndirection = "maximize"\n')
    (study / "study.db").write_bytes(b"SQLite format 3\x00")
    rows = []
    for number, (lr, val) in enumerate([(0.001, 0.8), (0.003, 0.95), (0.1, None)]):
        run = copy_run(trained_run, study / "trials" / f"{number:04d}", train={"lr": lr},
                       metrics={"best_val_accuracy": val} if val else None, drop_metrics=val is None)
        rows.append({"number": number, "params": {"train.lr": lr}, "status": "completed" if val else "failed",
                     "test_accuracy": val, "best_val_accuracy": val, "epochs": 4, "seconds": 1.0,
                     "run_dir": str(run), "reason": "" if val else "loss became NaN at epoch 1"})
    (study / "results.json").write_text(json.dumps(rows))
    return study


def test_a_study_is_one_line_and_its_trials_are_runs(tmp_path, trained_run):
    make_study(tmp_path / "root", trained_run)
    listing = Catalog(tmp_path / "root", clock=lambda: time.time() + 3600).scan()
    entries = by_name(listing)
    study = entries["studies/lr"]
    assert study["kind"] == "study" and study["trials"] == 3 and study["completed"] == 2
    assert study["best"] == {"name": "studies/lr/trials/0001", "value": 0.95, "metric": "val_accuracy"}
    failed = entries["studies/lr/trials/0002"]
    assert failed["status"] == "failed" and failed["reason"] == "loss became NaN at epoch 1"
    assert failed["study"] == "studies/lr" and failed["number"] == 2
    assert listing.differing == ["train.lr"]
    assert study["selected_on"] == "test" and "chosen on the TEST set" in study["warning"]  # no split: an old study


def test_a_study_chosen_on_validation_shows_validation_beside_test(tmp_path, trained_run, capsys):
    study = make_study(tmp_path / "root", trained_run)
    (study / "study.toml").write_text('metric = "val_accuracy"\ndirection = "maximize"\nselected_on = "validation"\n'
                                      '[config.data]\nval_fraction = 0.1\n[params]\n"train.lr" = '
                                      '"loguniform:0.001:0.1"\n')
    rows = json.loads((study / "results.json").read_text())
    for row, value in zip(rows, (0.9, 0.85, None), strict=True):  # the sweep's value, not the runs' best epoch
        row.update(value=value, val_accuracy=value)
    (study / "results.json").write_text(json.dumps({"trials": rows}))
    entry = by_name(Catalog(tmp_path / "root", clock=lambda: time.time() + 3600).scan())["studies/lr"]
    assert entry["best"] == {"name": "studies/lr/trials/0000", "value": 0.9, "metric": "val_accuracy"}
    assert entry["selected_on"] == "validation" and "warning" not in entry and entry["log_params"] == ["train.lr"]
    code, out, _ = run_cli(capsys, "runs", tmp_path / "root")
    header, line = out.splitlines()[0], next(x for x in out.splitlines() if x.startswith("studies/lr "))
    assert header.split()[-5:] == ["val_acc", "test_acc", "epochs", "time", "note"]
    assert "chosen on validation" in line and "WARNING" not in line


def test_runs_command_table_json_and_errors(folder, capsys, tmp_path):
    code, out, _ = run_cli(capsys, "runs", folder, "--sort", "train.lr", "--reverse")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:6] == ["name", "status", "dataset", "model", "train.lr", "train.optimizer"]
    assert [line.split()[0] for line in lines[1:]] == ["group/sgd", "lr-1e-2", "adam-3e-3"]
    assert "completed" in lines[1] and "0.1" in lines[1] and "4/4" in lines[1]
    code, out, _ = run_cli(capsys, "runs", folder, "--json", "--filter", "sgd")
    data = json.loads(out)
    assert code == 0 and [e["name"] for e in data["runs"]] == ["group/sgd"]
    assert data["differing"] == ["train.lr", "train.optimizer"] and data["notes"] == []
    code, _, err = run_cli(capsys, "runs", folder, "--sort", "bogus")
    assert code == 2 and one_line_error(err).startswith("error: unknown sort key 'bogus'; valid: name, kind")
    code, _, err = run_cli(capsys, "runs", tmp_path / "missing")
    assert code == 2 and one_line_error(err) == f"error: folder not found: {tmp_path / 'missing'}; pass a folder " \
                                                "that holds run directories or studies"
    code, _, err = run_cli(capsys, "runs", folder, "--depth", "-1")
    assert code == 2 and "--depth must be 0 or more" in one_line_error(err)
    code, out, err = run_cli(capsys, "runs", folder, "--filter", "nothing-like-this")
    assert code == 0 and out == "" and "no runs or studies matching 'nothing-like-this'" in err


def make_wide_runs(root: Path, runs: int, keys: int) -> int:
    """`runs` run folders whose config.toml each holds `keys` settings of its own; their total size in bytes."""
    total = 0
    for r in range(runs):
        folder = root / f"run{r:03d}"
        folder.mkdir(parents=True)
        extra = {f"k{r}_{i}": i for i in range(keys)}
        text = tomli_w.dumps({"model": {"preset": "tiny"}, "train": {"lr": 0.001 * (r + 1)}, "extra": extra})
        (folder / "config.toml").write_text(text)
        total += len(text)
    return total


def test_settings_of_wide_configs_stay_linear(tmp_path, capsys):
    """Issue 21, item 4: 60 runs × 40 settings of their own gave 2,400 columns × 60 runs of mostly nulls."""
    from cnnscope.runs.catalog import MAX_SETTING_COLUMNS
    from conftest import run_cli

    on_disk = make_wide_runs(tmp_path / "root", 60, 40)
    listing = Catalog(tmp_path / "root").scan()
    assert len(listing.differing) == MAX_SETTING_COLUMNS and "train.lr" in listing.differing
    assert listing.notes == [f"2,401 settings differ between runs; the table shows the {MAX_SETTING_COLUMNS} that "
                             f"most runs have, and each run's entry lists its own (runs --json)"]
    run = by_name(listing)["run007"]
    assert set(run["settings"]) == {"train.lr", *(f"extra.k7_{i}" for i in range(40))}  # its own, no nulls
    code, out, _ = run_cli(capsys, "runs", tmp_path / "root", "--json")
    assert code == 0 and len(out) < 10 * on_disk, (len(out), on_disk)  # was ~70× the files at 200 × 100
    assert json.loads(out)["differing"] == listing.differing
