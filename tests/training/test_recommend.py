"""Recommender benchmark, metrics, losses, PRIME training and the CLI on a tiny WDC-format folder."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from models.prime import LabelPrototypeNetwork, PairHead, balanced_kmeans
from models.recommender import RecommenderModel
from tests.conftest import tiny_bi_encoder
from training.recommend import losses
from training.recommend.batching import cluster_batches, cluster_size
from training.recommend.benchmark import load_benchmark, representative_title
from training.recommend.evaluate import evaluate_recommender
from training.recommend.metrics import choose_threshold, coverage_at, precision_recall_at, top_k
from training.recommend.train import train_recommender

BRANDS = ["acme", "zenit", "orbit", "nova", "pico", "terra", "lumo", "vexa"]


def _offer(oid: int, cluster: int, title: str) -> dict:
    return {"id": oid, "brand": None, "title": title, "description": None, "price": None, "priceCurrency": None,
            "cluster_id": cluster}  # fmt: skip


def _pair(a: dict, b: dict) -> dict:
    row = {f"{k}_left": v for k, v in a.items()} | {f"{k}_right": v for k, v in b.items()}
    row.update(pair_id=f"{a['id']}#{b['id']}", label=int(a["cluster_id"] == b["cluster_id"]), is_hard_negative=False)
    return row


def _write(path: Path, pairs: list[dict]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for row in pairs:
            fh.write(json.dumps(row) + "\n")


def _pairs_of(offers: list[dict]) -> list[dict]:
    # Chain the offers: consecutive pairs, positives within a product and negatives across.
    return [_pair(offers[i], offers[i + 1]) for i in range(len(offers) - 1)]


def make_wdc_folder(root: Path, n_products: int = 8) -> Path:
    """Products 0..n-1 are seen (3 train, 2 valid, 2 test offers); n..2n-1 are unseen (2 test offers)."""
    root.mkdir(parents=True, exist_ok=True)
    oid = 1000
    train, valid, test_seen, test_unseen = [], [], [], []
    for c in range(2 * n_products):
        brand = BRANDS[c % len(BRANDS)]
        for split, count in ((train, 3), (valid, 2), (test_seen, 2)) if c < n_products else ((test_unseen, 2),):
            for j in range(count):
                split.append(_offer(oid, c, f"{brand} model {c} {'pro' if j % 2 else 'plus'} {j}"))
                oid += 1
    prefix = "tinyprod"
    _write(root / f"{prefix}000un_train_medium.json.gz", _pairs_of(train))
    _write(root / f"{prefix}000un_valid_medium.json.gz", _pairs_of(valid))
    _write(root / f"{prefix}000un_gs.json.gz", _pairs_of(test_seen))
    _write(root / f"{prefix}100un_gs.json.gz", _pairs_of(test_unseen))
    return root


@pytest.fixture(scope="module")
def wdc_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_wdc_folder(tmp_path_factory.mktemp("wdc"))


# ------------------------------------------------------------------------------ benchmark


def test_benchmark_seen_and_unseen(wdc_folder: Path) -> None:
    seen = load_benchmark(wdc_folder)  # default: 000un
    assert seen.test_name == "000un"
    assert seen.n_labels == 8 and seen.label_seen.all()
    assert len(seen.train) == 24 and len(seen.valid) == 16 and len(seen.test) == 16
    assert seen.test.seen.all()
    # Label texts come from training offers only.
    train_titles = set(seen.train.texts)
    assert all(t in train_titles for t in seen.label_texts)

    unseen = load_benchmark(wdc_folder, "100un")
    assert unseen.n_labels == 16 and int(unseen.label_seen.sum()) == 8
    # One offer per unseen product is held out as its catalogue record, the other is the query.
    assert len(unseen.test) == 8 and not unseen.test.seen.any()
    held = {t for t, s in zip(unseen.label_texts, unseen.label_seen) if not s}
    assert not held & set(unseen.test.texts)


def test_benchmark_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_benchmark(tmp_path / "missing")
    make_wdc_folder(tmp_path / "x", 2)
    with pytest.raises(FileNotFoundError):
        load_benchmark(tmp_path / "x", "050un")


def test_representative_title_is_medoid() -> None:
    titles = ["sony wh-1000xm4 black", "sony wh-1000xm4 headphones black", "SONY WH1000XM4 - best price!!"]
    assert representative_title(titles) == "sony wh-1000xm4 black"


# ------------------------------------------------------------------------------ metrics


def test_top_k_and_precision_recall() -> None:
    scores = np.array([[0.1, 0.9, 0.5], [0.7, 0.7, 0.2]])
    idx, vals = top_k(scores, 2)
    assert idx.tolist() == [[1, 2], [0, 1]]  # ties by lower index
    m = precision_recall_at(idx, [[1], [1]], (1, 2))
    assert m["p@1"] == 0.5 and m["r@2"] == 1.0 and m["p@2"] == 0.5


def test_coverage_threshold_on_valid() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    correct = np.array([1, 1, 1, 0, 1], dtype=bool)
    choice = choose_threshold(scores, correct, 0.95)
    assert choice.threshold == 0.7 and choice.valid_coverage == 0.6
    assert choose_threshold(scores, correct, 0.8).threshold == 0.5  # 4/5 = 0.8
    assert math.isinf(choose_threshold(np.array([0.9]), np.array([False]), 0.95).threshold)
    # ties are never split: both 0.8s are in or out together
    tied = choose_threshold(np.array([0.9, 0.8, 0.8]), np.array([1, 1, 0], dtype=bool), 0.95)
    assert tied.threshold == 0.9
    cov, prec = coverage_at(np.array([0.95, 0.75, 0.1]), np.array([1, 0, 1], dtype=bool), 0.7)
    assert cov == pytest.approx(2 / 3) and prec == 0.5
    assert coverage_at(np.array([0.1]), np.array([True]), math.inf) == (0.0, None)


# ------------------------------------------------------------------------------ losses


def test_dynamic_margin_triplet() -> None:
    s = torch.tensor([[0.9, 0.2, 0.85], [0.1, 0.8, 0.3]], requires_grad=True)
    y = torch.tensor([[True, False, False], [False, True, False]])
    pos = torch.tensor([0, 1])
    loss = losses.dynamic_margin_triplet(s, y, pos, k=2)
    # row 0: s_n = 0.85 violates (gap 0.05 < 0.1 -> margin 0.1, hinge 0.05); 0.2 does not. row 1: 0.3 -> gap 0.5: none.
    assert loss.item() == pytest.approx(0.05 / 2, abs=1e-6)
    loss.backward()
    assert s.grad is not None and s.grad[0, 2] > 0 and s.grad[0, 0] < 0
    # no violators anywhere -> zero, no NaN
    easy = losses.dynamic_margin_triplet(torch.tensor([[0.9, 0.1]]), torch.tensor([[True, False]]), torch.tensor([0]))
    assert easy.item() == 0.0
    # fixed margin (NGAME): m_min == m_max
    fixed = losses.dynamic_margin_triplet(s.detach(), y, pos, k=2, m_min=0.3, m_max=0.3)
    assert fixed.item() > loss.item()


def test_regulariser_tcm_alc_terms() -> None:
    torch.manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    lab = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    s = q @ lab.T
    y = torch.eye(4, dtype=torch.bool)
    pos = torch.arange(4)
    assert losses.prototype_regulariser(s, s, y, pos).item() == pytest.approx(0.1)  # equal spaces: both margins
    tcm = losses.threshold_consistent_margin(s, y, pos)
    assert tcm.item() > 0
    assert losses.hard_set_softmax(s, y, pos).item() > 0
    head = PairHead(8)
    assert losses.pair_classifier_loss(head, q, lab, s, y, pos).item() > 0
    assert losses.sample_positive(y).tolist() == [0, 1, 2, 3]


def test_balanced_kmeans_and_batches() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(37, 5)).astype(np.float32)
    ids = balanced_kmeans(x, leaf_size=4)
    sizes = np.bincount(ids)
    assert sizes.max() <= 4 and sizes.min() >= 2 and sizes.sum() == 37
    batches = cluster_batches(x, 4, 10, seed=1)
    assert sorted(i for b in batches for i in b) == list(range(37))
    assert [cluster_size(p) for p in (0.0, 0.2, 0.4, 0.9)] == [4, 8, 16, 16]


def test_lpn_starts_as_mean_of_inputs() -> None:
    torch.manual_seed(0)
    lpn = LabelPrototypeNetwork(16, 3, nhead=2, dim_feedforward=32).eval()
    u = torch.nn.functional.normalize(torch.randn(5, 16), dim=-1)
    assign = torch.tensor([0, 0, 1, 1, 2])
    lpn.init_free_from(u, assign)
    out = lpn(u, assign, u)
    assert out.shape == (5, 16)
    assert torch.allclose(out.norm(dim=-1), torch.ones(5), atol=1e-5)
    assert (out * u).sum(-1).min() > 0.5  # close to its inputs before any training


# ------------------------------------------------------------------------------ training + eval


@pytest.mark.parametrize("method,extra", [("prime", {"tcm": True}), ("ngame", {})])
def test_train_save_load_evaluate(wdc_folder: Path, tmp_path: Path, method: str, extra: dict) -> None:
    bench = load_benchmark(wdc_folder, "100un")
    out = tmp_path / method
    model, metrics = train_recommender(
        bench, out, tiny_bi_encoder(), method=method, epochs=2, batch_size=8, seed=3, progress=False, **extra
    )
    assert len(metrics["history"]) == 2 and all(np.isfinite(h["loss"]) for h in metrics["history"])
    assert (out / "manifest.json").exists() and (out / "prime.safetensors").exists()
    assert not list(out.rglob("*.bin"))
    loaded = RecommenderModel.load(out)
    assert loaded.method == method
    # The defaults are the best measured setting: the margin automation score for every model,
    # ALC (the pair head) for PRIME only (docs/training.md, "Defaults").
    assert loaded.automation == "margin"
    assert (loaded.pair_head is not None) == (method == "prime")
    if method == "prime":
        assert len(loaded.seen_keys) == 8
        key = loaded.seen_keys[0]
        vec = loaded.label_vectors([key, "unknown"], ["ignored", "some text"])
        np.testing.assert_allclose(vec[0], loaded.seen_vectors[0], atol=1e-6)
    else:
        assert loaded.seen_keys == []
    a, b = evaluate_recommender(model, bench), evaluate_recommender(loaded, bench)
    for key in ("p@1", "p@5", "r@10", "r@100", "coverage@0.95", "precision@0.95", "coverage@0.98", "queries"):
        assert key in a
        assert a[key] == pytest.approx(b[key], abs=1e-4) if a[key] is not None else b[key] is None
    assert a["queries"] == 8 and a["labels"] == 16 and "unseen" in a and "seen" not in a


def test_train_rejects_unknown_method(wdc_folder: Path) -> None:
    with pytest.raises(ValueError, match="method"):
        train_recommender(load_benchmark(wdc_folder), None, tiny_bi_encoder(), method="dexa", progress=False)


# ------------------------------------------------------------------------------ CLI


def test_cli_train_and_eval(wdc_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    import models.bi_encoder as bi
    from app.cli import main

    # The CLI loads "minilm" by name; unit tests never load the real weights.
    monkeypatch.setattr(bi.BiEncoder, "from_pretrained", classmethod(_tiny_from_pretrained))
    out = tmp_path / "model"
    rc = main(["train", "recommender", "--data", str(wdc_folder), "--out", str(out), "--method", "prime",
               "--epochs", "1", "--batch-size", "8", "--no-progress"])  # fmt: skip
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == "prime" and summary["history"]
    settings = json.loads((out / "manifest.json").read_text())["settings"]
    assert (settings["alc"], settings["automation"], settings["tcm"]) == (True, "margin", False)  # the defaults
    rc = main(["train", "recommender", "--data", str(wdc_folder), "--out", str(tmp_path / "plain"), "--method",
               "prime", "--no-alc", "--automation", "cosine", "--epochs", "1", "--batch-size", "8",
               "--no-progress"])  # fmt: skip
    assert rc == 0
    capsys.readouterr()
    settings = json.loads((tmp_path / "plain" / "manifest.json").read_text())["settings"]
    assert (settings["alc"], settings["automation"]) == (False, "cosine")
    for model_args in ([], ["--model", str(out)]):
        rc = main(["eval", "recommender", "--data", str(wdc_folder), "--json", *model_args])
        assert rc == 0
        result = json.loads(capsys.readouterr().out)
        expected = {"p@1", "p@5", "r@10", "r@100", "coverage@0.95", "precision@0.95", "coverage@0.98",
                    "precision@0.98", "queries", "labels"}  # fmt: skip
        assert expected <= set(result)
        assert result["queries"] == 16 and result["labels"] == 8
    rc = main(["eval", "recommender", "--data", str(tmp_path / "nope"), "--json"])
    assert rc == 2
    rc = main(["eval", "recommender", "--data", str(wdc_folder), "--model", str(tmp_path), "--json"])
    assert rc == 2  # not a model folder: clear error, no traceback


_TINY_FOLDERS: dict[str, object] = {}


def _tiny_from_pretrained(cls, name_or_path, max_length: int = 64, attn_implementation=None):  # type: ignore[no-untyped-def]
    if str(name_or_path) == "minilm":
        model = tiny_bi_encoder()
        model.max_length = max_length
        return model
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(name_or_path)
    backbone = AutoModel.from_pretrained(name_or_path, use_safetensors=True)
    return cls(backbone, tok, max_length=max_length, name=str(name_or_path)).eval()


def test_automation_scores_and_coverage_by_score(wdc_folder: Path) -> None:
    from models.recommender import automation_score

    q = np.array([[1.0, 0.0], [0.6, 0.8]])
    lab = np.array([[0.8, 0.6], [0.6, 0.8]])
    top = np.array([[0.8, 0.7], [1.0, 0.2]])
    np.testing.assert_allclose(automation_score("cosine", q, lab, top), [0.8, 1.0])
    np.testing.assert_allclose(automation_score("margin", q, lab, top), [0.1, 0.8])
    with pytest.raises(ValueError):
        automation_score("pair", q, lab, top)  # no pair head given
    bench = load_benchmark(wdc_folder)
    zero = RecommenderModel(tiny_bi_encoder(), "zero-shot")
    result = evaluate_recommender(zero, bench)
    assert set(result["coverage_by_score"]) == {"cosine", "margin"} and result["automation"] == "cosine"
    zero.automation = "margin"
    margin = evaluate_recommender(zero, bench)
    assert margin["coverage@0.95"] == margin["coverage_by_score"]["margin"]["coverage@0.95"]
