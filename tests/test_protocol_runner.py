"""The resumable protocol runner: run names, skip-when-done, locks, tables from result files."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import protocol


def test_every_cell_of_the_protocols_has_its_own_result_file() -> None:
    lea = protocol.lea_runs(list(protocol.DATASETS), list(protocol.LEA_VARIANTS), [1, 2])
    noise = protocol.noise_runs([0.2, 0.4], list(protocol.NOISE_VARIANTS), [1, 2, 3])
    assert len(lea) == 3 * 3 * 2 and len(noise) == 3 * (1 + 2 * 2)
    names = [r.name for r in lea + noise]
    assert len(set(names)) == len(names)
    assert "abt-buy__lea-typo__seed2" in names and "abt-buy__signals__seed3__flip40" in names


def test_length_grouped_runs_are_an_ablation_beside_the_random_batch_runs() -> None:
    random_run = protocol.lea_runs(["abt-buy"], ["vanilla+typo"], [1])[0]
    grouped_run = protocol.lea_runs(["abt-buy"], ["vanilla+typo"], [1], grouped=True)[0]
    assert random_run.name == "abt-buy__vanilla-typo__seed1"
    assert grouped_run.name == "abt-buy__vanilla-typo__seed1__grouped"
    assert protocol.noise_runs([0.2], ["naive"], [1], grouped=True)[0].name == "abt-buy__naive__seed1__flip20__grouped"

    def row(grouped: bool, f1: float) -> dict:
        return {"dataset": "abt-buy", "variant": "vanilla+typo", "seed": 1, "setting": "", "grouped": grouped,
                "valid_f1": f1, "test_f1": f1, "test_f1_noisy": f1 - 0.1, "train_seconds": 60.0}  # fmt: skip

    results = [row(False, 0.78), row(True, 0.75)]
    main = protocol.lea_table(results)
    assert "78.00" in main and "75.00" not in main  # the main table holds the random-batch run only
    ablation = protocol.grouping_table(results)
    assert "length-grouped | 75.00" in ablation and "random | 78.00" in ablation


def test_an_unknown_variant_or_dataset_is_refused_before_any_run() -> None:
    # Run files are named "vanilla-typo"; the variant is "vanilla+typo": the mix-up must not
    # start a protocol that fails inside its first training run.
    for argv in (["run", "lea", "--variants", "vanilla-typo"], ["run", "lea", "--datasets", "abt_buy"],
                 ["run", "noise", "--variants", "relabel"]):  # fmt: skip
        with pytest.raises(SystemExit, match="unknown"):
            protocol.protocol_runs(protocol.parse_args(argv))
    runs = protocol.protocol_runs(protocol.parse_args(["run", "lea", "--variants", "vanilla+typo", "--seeds", "1"]))
    assert [r.name for r in runs] == [f"{d}__vanilla-typo__seed1" for d in protocol.DATASETS]


def test_finished_runs_are_skipped(tmp_path: Path) -> None:
    runs = protocol.lea_runs(["abt-buy"], ["vanilla", "lea+typo"], [1])
    protocol.write_result(runs[0], {"run": runs[0].name}, tmp_path)
    assert [r.name for r in protocol.pending(runs, tmp_path)] == [runs[1].name]
    assert protocol.read_results("lea", tmp_path) == [{"run": runs[0].name, "grouped": False}]


def test_a_live_lock_is_respected_and_a_dead_one_taken_over(tmp_path: Path) -> None:
    lock = tmp_path / "run.lock"
    assert protocol.try_lock(lock)
    assert not protocol.try_lock(lock)  # held by this (live) process
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(dead.stdout.strip())  # a pid that has exited
    assert protocol.try_lock(lock)
    assert lock.read_text() == str(os.getpid())


def test_run_protocol_only_runs_what_is_pending(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = protocol.lea_runs(["abt-buy"], ["vanilla", "vanilla+typo"], [1])
    protocol.write_result(runs[0], {"run": runs[0].name}, tmp_path / "results")
    ran: list[str] = []

    def fake_run_one(run: protocol.Run, args: argparse.Namespace) -> dict:
        ran.append(run.name)
        return {"run": run.name, "valid_f1": 0.5, "test_f1": 0.4, "test_f1_noisy": 0.3, "train_seconds": 1.0}

    monkeypatch.setattr(protocol, "run_one", fake_run_one)
    args = argparse.Namespace(results=tmp_path / "results", work=tmp_path / "work")
    assert protocol.run_protocol(runs, args) == 1
    assert ran == [runs[1].name]
    assert protocol.run_protocol(runs, args) == 0  # everything done now
    assert not list((tmp_path / "work").rglob("*.lock"))


def test_noise_table_reports_the_recovered_share() -> None:
    rows = [
        {"run": "c", "variant": "clean", "setting": "", "seed": 1, "test_f1": 0.80},
        {"run": "n", "variant": "naive", "setting": "flip20", "seed": 1, "test_f1": 0.60},
        {"run": "d", "variant": "detect", "setting": "flip20", "seed": 1, "test_f1": 0.70,
         "detector": {"precision": 0.9, "recall": 0.8}},
    ]  # fmt: skip
    table = protocol.noise_table(rows)
    assert "| 20 % | detect | 1 | 70.00 | 70.00 | 0.50 | 90.0 / 80.0 |" in table


def test_update_markdown_replaces_only_its_block(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("intro\n<!-- protocol:lea -->\nold\n<!-- /protocol:lea -->\noutro\n")
    protocol.update_markdown(page, "lea", "new table")
    assert page.read_text() == "intro\n<!-- protocol:lea -->\nnew table\n<!-- /protocol:lea -->\noutro\n"
    with pytest.raises(SystemExit):
        protocol.update_markdown(page, "noise", "x")
