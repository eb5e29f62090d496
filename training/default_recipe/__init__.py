"""The default matcher recipe (``productmatch train default``): a matcher built to transfer to
catalogues it never saw. Modules: config (sources, budget), sources (benchmarks as service
products), mixture (balanced sampling, pooled validation), dropout (attribute dropout), mining
(bi-encoder hard negatives), lengths (max_length), train (the resumable run), head (the
calibrated head), artefact + model_card (the folder), loo (leave-one-dataset-out), cli."""

from __future__ import annotations
