from __future__ import annotations

import pytest

from app.pipeline.scoring import ZeroShotScorer
from models.pair_signals import pair_signals

OFFER = {"title": "sony wh-1000xm5 black"}
COLOURED = {"title": "Sony WH-1000XM5 Headphones - Black"}
COLOURLESS = {"title": "SONY WH-1000XM5"}


def _scores(scorer: ZeroShotScorer, offer: dict, candidates: list[dict], cosine: float = 0.8) -> list[float]:
    return [s.score for s in scorer.score(offer, candidates, [cosine] * len(candidates))]


def test_subset_no_longer_ties_with_the_fuller_match() -> None:
    new = _scores(ZeroShotScorer(), OFFER, [COLOURED, COLOURLESS])
    old = _scores(ZeroShotScorer(lexical="token_set"), OFFER, [COLOURED, COLOURLESS])
    assert old[0] == old[1]  # the flaw: token_set_ratio is 1.0 for both
    assert new[0] > new[1]


def test_lexical_is_the_offer_weighted_coverage_score() -> None:
    scorer = ZeroShotScorer(lexical_weight=0.3, beta=2.0, identifier_bonus=0.0, identifier_penalty=0.0)
    (scored,) = scorer.score(OFFER, [COLOURLESS], [0.5])
    expected = pair_signals(OFFER, COLOURLESS).f_beta(2.0)
    assert scored.lexical == pytest.approx(expected, abs=1e-6)
    assert scored.score == pytest.approx(0.7 * 0.5 + 0.3 * expected, abs=1e-6)


def test_identifier_agreement_moves_the_score() -> None:
    plain = ZeroShotScorer(identifier_bonus=0.0, identifier_penalty=0.0)
    scorer = ZeroShotScorer(identifier_bonus=0.1, identifier_penalty=0.3)
    same, other = {"title": "Sony WH-1000XM5 Black"}, {"title": "Sony WH-1000XM4 Black"}
    assert _scores(scorer, OFFER, [same], 0.6)[0] == pytest.approx(_scores(plain, OFFER, [same], 0.6)[0] + 0.1)
    assert _scores(scorer, OFFER, [other], 0.6)[0] == pytest.approx(_scores(plain, OFFER, [other], 0.6)[0] - 0.3)
    # Without model numbers on both sides nothing is added or taken.
    bare = {"title": "sony headphones black"}
    assert _scores(scorer, bare, [COLOURED], 0.6) == _scores(plain, bare, [COLOURED], 0.6)


def test_scores_stay_in_the_unit_interval() -> None:
    scorer = ZeroShotScorer(identifier_bonus=0.5, identifier_penalty=0.9)
    assert _scores(scorer, OFFER, [{"title": "Sony WH-1000XM5 Black"}], 1.0) == [1.0]
    assert _scores(scorer, OFFER, [{"title": "Bose QC45 1234XY"}], -0.2) == [0.0]


def test_one_word_offer_scores_below_a_full_description() -> None:
    scorer = ZeroShotScorer()
    bare = _scores(scorer, {"title": "sony"}, [COLOURED])[0]
    full = _scores(scorer, OFFER, [COLOURED])[0]
    assert bare < full - 0.1


def test_token_set_option_is_the_old_blend() -> None:
    scorer = ZeroShotScorer(lexical_weight=0.3, lexical="token_set")
    (scored,) = scorer.score(OFFER, [COLOURLESS], [0.5])
    assert scored.lexical == 1.0 and scored.score == pytest.approx(0.65)


def test_unknown_lexical_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="lexical"):
        ZeroShotScorer(lexical="bm25")  # type: ignore[arg-type]


def test_explanations_pair_offer_words_with_product_words() -> None:
    (scored,) = ZeroShotScorer().score(OFFER, [COLOURED], [0.8], explain=True)
    assert scored.explanation is not None
    assert {"offer_word": "black", "product_word": "black", "similarity": 1.0} in scored.explanation
    (silent,) = ZeroShotScorer().score(OFFER, [COLOURED], [0.8])
    assert silent.explanation is None


@pytest.mark.integration
def test_issue_examples_with_the_packaged_minilm() -> None:
    """The reported cases, with the cosines of the encoder the service runs by default."""
    from app.core.config import Settings
    from app.demo import demo_products
    from app.pipeline.scoring import Decider
    from models.bi_encoder import BiEncoder
    from models.product_text import embed_text

    encoder = BiEncoder.from_pretrained("minilm", max_length=64)
    settings = Settings(environment="test")
    decider = Decider(settings.match_threshold, settings.review_threshold)

    def rank(scorer: ZeroShotScorer, offer: dict, products: list[dict]) -> list[tuple[float, str]]:
        vectors = encoder.encode([embed_text(offer)] + [embed_text(p) for p in products])
        cosines = [float(c) for c in vectors[1:] @ vectors[0]]
        scored = scorer.score(offer, products, cosines)
        return sorted(((s.score, p["title"]) for s, p in zip(scored, products)), reverse=True)

    new, old = ZeroShotScorer(settings.lexical_weight), ZeroShotScorer(settings.lexical_weight, lexical="token_set")
    assert rank(old, OFFER, [COLOURED, COLOURLESS])[0][1] == COLOURLESS["title"]  # the reported flaw
    top = rank(new, OFFER, [COLOURED, COLOURLESS])[0]
    assert top[1] == COLOURED["title"] and decider.decide(top[0]) == "match"

    # The brand alone names no product: against the demo catalogue's titles it is no match, and
    # against a bare "SONY WH-1000XM5" it scores well below the old subset score of 1.0.
    bare = {"title": "sony"}
    assert decider.decide(rank(new, bare, demo_products())[0][0]) == "no_match"
    assert rank(new, bare, [COLOURLESS])[0][0] < rank(old, bare, [COLOURLESS])[0][0] - 0.1
