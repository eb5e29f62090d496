"""Recommender: extreme multi-label retrieval of catalogue products for a query offer.

Modules: :mod:`~training.recommend.benchmark` (WDC Products -> queries / labels),
:mod:`~training.recommend.metrics` (P@k, R@k, coverage at a target precision),
:mod:`~training.recommend.losses` (PRIME / NGAME triplet, regulariser, TCM, ALC objectives),
:mod:`~training.recommend.batching` (NGAME cluster batches), :mod:`~training.recommend.train`
(PRIME and NGAME training) and :mod:`~training.recommend.evaluate` (one JSON object of metrics).
The model itself and its saved folders (shared with serving) are :mod:`models.recommender`.
"""

from __future__ import annotations
