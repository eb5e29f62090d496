"""`productmatch eval blocker` / `train blocker` through app.cli.main on a tiny DeepMatcher folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from app.cli import main
from models.artefacts import Manifest, write_manifest
from models.bi_encoder import BiEncoder

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
KS = [1, 5, 10, 20, 50]


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture
def dm_folder(tmp_path: Path) -> Path:
    """16 products: tableA/tableB titles, splits 8/4/4 positives plus labelled negatives."""
    folder = tmp_path / "tiny-dm"
    folder.mkdir()
    brands = ["acme", "globex", "initech", "hooli"]
    nouns = ["camera", "laptop", "router", "monitor"]
    left = [[i, f"{brands[i % 4]} {nouns[i // 4]} model {100 + 7 * i}", "maker"] for i in range(16)]
    right = [[i, f"{nouns[i // 4]} {100 + 7 * i} by {brands[i % 4]}", ""] for i in range(16)]
    _write_csv(folder / "tableA.csv", ["id", "title", "manufacturer"], left)
    _write_csv(folder / "tableB.csv", ["id", "title", "manufacturer"], right)
    for name, ids in {"train": range(0, 8), "valid": range(8, 12), "test": range(12, 16)}.items():
        rows = [[i, i, 1] for i in ids] + [[i, (i + 1) % 16, 0] for i in ids]
        _write_csv(folder / f"{name}.csv", ["ltable_id", "rtable_id", "label"], rows)
    return folder


@pytest.fixture
def tiny_model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny-blocker"
    torch.manual_seed(0)
    BiEncoder.from_config(TINY, max_length=32).save(folder)
    write_manifest(folder, Manifest(kind="bi-encoder", backbone="tiny", settings={"max_length": 32}))
    return folder


def _single_json(text: str) -> dict:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one JSON line on stdout, got: {text!r}"
    return json.loads(lines[0])


def test_eval_blocker_json(dm_folder: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "eval",
        "blocker",
        "--data",
        str(dm_folder),
        "--format",
        "deepmatcher",
        "--model",
        str(tiny_model_dir),
        "--k",
        "1,5,10,20,50",
        "--json",
    ]
    assert main(argv) == 0
    result = _single_json(capsys.readouterr().out)
    for k in KS:
        assert 0.0 <= result[f"recall@{k}"] <= 1.0
    assert result["recall@50"] == 1.0  # corpus of 16: everything is in the top 50
    assert result["queries"] == 4 and result["corpus_size"] == 16
    assert result["model"] == str(tiny_model_dir)
    assert result["fields"] == ["title"] and result["max_length"] == 32
    assert not any(key.startswith("recall_noisy") for key in result)


def test_eval_blocker_with_noise(dm_folder: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "eval",
        "blocker",
        "--data",
        str(dm_folder),
        "--format",
        "deepmatcher",
        "--model",
        str(tiny_model_dir),
        "--k",
        "1,5",
        "--noise",
        "typo",
        "--noise-seeds",
        "1,2,3",
        "--fields",
        "title,manufacturer",
        "--json",
    ]
    assert main(argv) == 0
    result = _single_json(capsys.readouterr().out)
    assert result["fields"] == ["title", "manufacturer"]
    assert set(result["recall_noisy_per_seed"]) == {"1", "2", "3"}
    for k in (1, 5):
        per_seed = [result["recall_noisy_per_seed"][s][f"recall@{k}"] for s in ("1", "2", "3")]
        assert result[f"recall_noisy@{k}"] == pytest.approx(sum(per_seed) / 3)
    assert result["noise_seeds"] == [1, 2, 3]


def test_eval_blocker_lexical(dm_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "eval",
                "blocker",
                "--data",
                str(dm_folder),
                "--format",
                "deepmatcher",
                "--lexical",
                "--k",
                "1,5",
                "--json",
            ]
        )
        == 0
    )
    result = _single_json(capsys.readouterr().out)
    assert result["model"] == "token_set_ratio" and result["recall@5"] >= result["recall@1"]


def test_eval_blocker_refuses_pickles(
    dm_folder: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tiny_model_dir / "pytorch_model.bin").write_bytes(b"not really a pickle")
    argv = [
        "eval",
        "blocker",
        "--data",
        str(dm_folder),
        "--format",
        "deepmatcher",
        "--model",
        str(tiny_model_dir),
        "--json",
    ]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "pickled" in captured.err


def test_eval_blocker_needs_manifest(dm_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "bare"
    BiEncoder.from_config(TINY, max_length=32).save(folder)
    assert (
        main(
            [
                "eval",
                "blocker",
                "--data",
                str(dm_folder),
                "--format",
                "deepmatcher",
                "--model",
                str(folder),
                "--json",
            ]
        )
        == 2
    )
    assert "manifest" in capsys.readouterr().err


def test_train_blocker_cli(
    dm_folder: Path, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "trained"
    argv = [
        "train",
        "blocker",
        "--data",
        str(dm_folder),
        "--format",
        "deepmatcher",
        "--out",
        str(out),
        "--backbone",
        str(tiny_model_dir),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--anchors-per-batch",
        "4",
        "--hard-negatives",
        "1",
        "--neighbour-k",
        "4",
        "--max-length",
        "32",
        "--seed",
        "3",
        "--no-progress",
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["best_epoch"] == 1 and summary["seed"] == 3
    assert 0.0 <= summary["valid"]["recall@1"] <= 1.0
    assert '"epoch": 1' in captured.err  # the per-epoch validation line
    assert (out / "manifest.json").is_file() and (out / "model.safetensors").is_file()
    # The trained folder evaluates through the same CLI.
    assert (
        main(
            [
                "eval",
                "blocker",
                "--data",
                str(dm_folder),
                "--format",
                "deepmatcher",
                "--model",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    assert _single_json(capsys.readouterr().out)["queries"] == 4


@pytest.mark.integration
def test_zero_shot_reproduces_methods_anchor(capsys: pytest.CaptureFixture[str]) -> None:
    """METHODS §9.5: zero-shot MiniLM on Abt-Buy test, name + description, whole Buy table."""
    from training.data.readers import data_root

    if not (data_root() / "abt-buy").is_dir():
        pytest.skip("benchmark data not available")
    assert main(["eval", "blocker", "--data", "abt-buy", "--format", "deepmatcher", "--k", "1,5,20", "--json"]) == 0
    result = _single_json(capsys.readouterr().out)
    assert result["model"] == "minilm-zero-shot" and result["queries"] == 206 and result["corpus_size"] == 1092
    assert result["recall@1"] == pytest.approx(0.641, abs=0.003)
    assert result["recall@5"] == pytest.approx(0.893, abs=0.003)
    assert result["recall@20"] == pytest.approx(0.995, abs=0.003)


def test_eval_blocker_bm25_and_hybrid(
    dm_folder: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["eval", "blocker", "--data", str(dm_folder), "--format", "deepmatcher", "--k", "1,5", "--json"]
    assert main([*base, "--bm25"]) == 0
    bm25 = _single_json(capsys.readouterr().out)
    # Every right title repeats its left title's model number: BM25 finds all four.
    assert bm25["model"] == "bm25" and bm25["recall@1"] == 1.0
    assert main([*base, "--model", str(tiny_model_dir)]) == 0
    dense = _single_json(capsys.readouterr().out)
    assert main([*base, "--model", str(tiny_model_dir), "--hybrid", "--pool", "16", "--lexical-weight", "5"]) == 0
    hybrid = _single_json(capsys.readouterr().out)
    assert hybrid["hybrid"] == {"pool": 16, "lexical_weight": 5.0, "lexical_candidates": 50}
    assert hybrid["recall@1"] == 1.0 and hybrid["recall@1"] >= dense["recall@1"]
    assert main([*base, "--hybrid", "--bm25"]) == 2
    assert "does not combine" in capsys.readouterr().err
    assert main([*base, "--hybrid", "--pool", "0"]) == 2
