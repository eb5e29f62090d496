"""The lexical half of hybrid blocking in the service (method: :mod:`models.hybrid_blocking`).

Per query the candidates are the dense top ``pool`` from the vector index plus the BM25 top
``lexical_candidates`` from the catalogue lexicon (:mod:`app.search.lexicon`, caught up to the
vector index's version first). Every candidate's BM25 score comes from the lexicon itself, at
that version and under its statistics (the text it indexed is the embedded text: title and
brand), so no product text is read. Lexical-only candidates get their cosine from their stored
vector, read from the database after the lexicon is released, and must pass the query's
brand/category filter; the best k by the fused score go on to the matcher.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from app.db import products as repo
from app.search.lexicon import CatalogueLexicon
from models.hybrid_blocking import hybrid_order

Hits = tuple[list[int], list[float]]
Filter = tuple[str | None, str | None]


class LexicalRescorer:
    def __init__(
        self,
        factory: sessionmaker[Session],
        lexicon: CatalogueLexicon,
        pool: int,
        weight: float,
        lexical_candidates: int,
    ) -> None:
        if pool < 1 or weight < 0 or lexical_candidates < 0:
            raise ValueError(
                f"need pool >= 1, weight >= 0, lexical_candidates >= 0; got {pool}, {weight}, {lexical_candidates}"
            )
        self.factory = factory
        self.lexicon = lexicon
        self.pool = pool
        self.weight = weight
        self.lexical_candidates = lexical_candidates

    def describe(self) -> str:
        return f"hybrid-bm25(pool={self.pool},lexical={self.lexical_candidates},weight={self.weight:g})"

    def depth(self, k: int) -> int:
        """How deep the dense search must go for a query that wants k candidates."""
        return max(k, self.pool)

    def narrow(
        self,
        texts: Sequence[str],
        vectors: np.ndarray,
        filters: Sequence[Filter],
        hits: Sequence[Hits],
        ks: Sequence[int],
        version: int,
        model_id: str,
    ) -> list[Hits]:
        """Each query's dense pool plus lexical candidates, ranked by the fused score, cut to k."""
        # One lexicon state for proposals and scores, held only for this in-memory work.
        with self.lexicon.at(version) as live:
            proposed = [live.top(text, self.lexical_candidates) for text in texts]
            dense_lexical = [live.scores_for(text, ids) for text, (ids, _) in zip(texts, hits)]
        extra = [_new_ids(ids, dense) for (ids, _), (dense, _) in zip(proposed, hits)]
        stored = self._vectors(sorted({pid for e in extra for pid in e}), model_id)
        out: list[Hits] = []
        for vector, flt, dense, lexical, (proposed_ids, proposed_scores), more, k in zip(
            vectors, filters, hits, dense_lexical, proposed, extra, ks
        ):
            score_of = dict(zip(proposed_ids, proposed_scores))
            ids, cosines = _with_lexical(vector, flt, dense, more, stored)
            # A dense candidate the lexicon does not list (NaN) is gone from the catalogue.
            scores = [*lexical.tolist(), *(score_of[pid] for pid in ids[len(dense[0]) :])]
            present = [i for i, s in enumerate(scores) if s == s]
            if not present:
                out.append(([], []))
                continue
            order = hybrid_order(
                np.array([cosines[i] for i in present]),
                np.array([scores[i] for i in present], dtype=np.float32),
                self.weight,
            )[:k]
            out.append(([ids[present[i]] for i in order], [cosines[present[i]] for i in order]))
        return out

    def _vectors(self, ids: list[int], model_id: str) -> dict[int, tuple[np.ndarray, str | None, str | None]]:
        if not ids:
            return {}
        with self.factory() as session:
            return repo.vectors_for(session, ids, model_id)


def _with_lexical(
    vector: np.ndarray,
    flt: Filter,
    dense: Hits,
    more: list[int],
    stored: dict[int, tuple[np.ndarray, str | None, str | None]],
) -> Hits:
    """The dense pool plus the lexical candidates that have a vector and pass the filters."""
    brand, category = flt
    ids, cosines = list(dense[0]), list(dense[1])
    for pid in more:
        found = stored.get(pid)
        if (
            found is None
            or (brand is not None and found[1] != brand)
            or (category is not None and found[2] != category)
        ):
            continue
        ids.append(pid)
        cosines.append(float(np.dot(found[0], vector)))
    return ids, cosines


def _new_ids(proposed: list[int], dense: list[int]) -> list[int]:
    seen = set(dense)
    return [pid for pid in proposed if pid not in seen]
