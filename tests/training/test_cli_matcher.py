"""`train matcher` / `eval matcher` sub-commands wired into a parser like the main CLI's."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from models.lea import LeaCrossEncoder
from models.matcher_io import load_matcher
from training.cli_matcher import add_eval_matcher, add_train_matcher, load_cli_dataset

from .test_eval_matcher import TINY, train_tiny_matcher, write_tiny_deepmatcher


def build_parser() -> argparse.ArgumentParser:
    """The shape of the main CLI: ``train <what>`` and ``eval <what>`` sub-command groups."""
    parser = argparse.ArgumentParser(prog="productmatch")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train")
    add_train_matcher(train.add_subparsers(dest="what", required=True))
    evaluate = sub.add_parser("eval")
    add_eval_matcher(evaluate.add_subparsers(dest="what", required=True))
    return parser


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    assert args.needs_settings is False and callable(args.func)
    return int(args.func(args) or 0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cli-matcher")
    data = write_tiny_deepmatcher(root / "data", seed=1)
    return data, train_tiny_matcher(data, root / "model", arch="vanilla")


def test_eval_prints_one_json_object(tiny: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    data, model = tiny
    argv = ["eval", "matcher", "--data", str(data), "--format", "deepmatcher", "--model", str(model)]
    assert run([*argv, "--noise", "typo", "--noise-seeds", "1,2", "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    result = json.loads(out)
    assert {"f1_clean", "precision", "recall", "f1_noisy", "threshold", "pairs", "model"} <= set(result)
    assert result["pairs"] == 18 and set(result["f1_noisy_per_seed"]) == {"1", "2"}
    assert all(0.0 <= result[k] <= 1.0 for k in ("f1_clean", "precision", "recall", "f1_noisy"))

    # Without noise: f1_noisy is null; the human-readable form is not JSON.
    assert run([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["f1_noisy"] is None
    assert run(argv) == 0
    assert "clean" in capsys.readouterr().out


def test_train_from_a_backbone_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A tiny random HF model saved as a plain folder stands in for a packaged backbone.
    torch.manual_seed(0)
    tiny = LeaCrossEncoder.from_config(TINY, lea=False)
    backbone = tmp_path / "backbone"
    tiny.model.save_pretrained(backbone, safe_serialization=True)
    tiny.tokenizer.save_pretrained(backbone)
    data = write_tiny_deepmatcher(tmp_path / "data", seed=2)
    out = tmp_path / "model"
    argv = ["train", "matcher", "--data", str(data), "--format", "deepmatcher", "--out", str(out)]
    argv += ["--arch", "lea", "--backbone", str(backbone), "--augment", "typo", "--epochs", "1"]
    argv += ["--batch-size", "8", "--calibration", "isotonic", "--max-train-pairs", "24", "--no-progress"]
    assert run(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["out_dir"] == str(out) and summary["train_pairs"] == 24
    _, calibrator, cal, manifest = load_matcher(out)
    assert calibrator.method == "isotonic" and cal["calibrator"]["method"] == "isotonic"
    assert manifest.settings["arch"] == "lea" and manifest.settings["augment"] == "typo"
    assert manifest.backbone == str(backbone)


def test_parser_defaults_and_choices() -> None:
    parser = build_parser()
    args = parser.parse_args(
        ["train", "matcher", "--data", "d", "--format", "ditto", "--out", "o", "--arch", "vanilla"]
    )
    assert (args.backbone, args.fields, args.epochs, args.batch_size, args.lr) == (
        "minilm",
        "title",
        8,
        32,
        5e-5,
    )
    assert args.augment is None and args.calibration == "temperature" and args.threads is None
    args = parser.parse_args(["eval", "matcher", "--data", "d", "--format", "wdc-block", "--model", "m"])
    assert args.split == "test" and args.noise is None and args.json is False
    for bad in (["--format", "csv"], ["--arch", "bert"]):
        base = ["train", "matcher", "--data", "d", "--format", "ditto", "--out", "o", "--arch", "lea"]
        with pytest.raises(SystemExit):
            parser.parse_args(base + bad)


def test_size_picks_the_wdc_lspc_split_files(tmp_path: Path) -> None:
    folder = tmp_path / "computers"
    folder.mkdir()
    line = "COL title VAL {} laptop\tCOL title VAL {} notebook\t{}\n"
    for name, n in (("train.txt.small", 2), ("train.txt.medium", 4), ("valid.txt.small", 1)):
        (folder / name).write_text("".join(line.format(f"a{i}", f"a{i}", i % 2) for i in range(n)))
    (folder / "valid.txt.medium").write_text(line.format("x", "y", 0) * 3)
    (folder / "test.txt").write_text(line.format("t", "t", 1))
    parser = build_parser()
    base = ["train", "matcher", "--data", str(folder), "--format", "ditto", "--out", "o", "--arch", "lea"]
    small = load_cli_dataset(parser.parse_args([*base, "--size", "small"]))
    assert (len(small.splits["train"]), len(small.splits["valid"])) == (2, 1)
    medium = load_cli_dataset(parser.parse_args([*base, "--size", "medium"]))
    assert (len(medium.splits["train"]), len(medium.splits["valid"])) == (4, 3)
