"""Label-noise detection and handling for pair matchers (METHODS §7).

Public names live here; the parts are in :mod:`training.noise.bmm` (beta mixture on losses,
§7.1), :mod:`training.noise.knn` (kNN label disagreement, §7.2) and
:mod:`training.noise.detect` (the combined report, the model pass and the loss handling).
"""

from __future__ import annotations

from training.noise.bmm import BetaMixture, bmm_noise_probability, normalise_losses
from training.noise.detect import (
    KNN_FEATURES,
    NOISE_ACTIONS,
    NOISE_METHODS,
    NoiseConfig,
    NoiseReport,
    bce_losses,
    bi_encoder_features,
    corrected_targets,
    detect_noisy_pairs,
    flip_labels,
    flip_rates,
    forward_corrected_bce,
    noisy_batch_targets,
    pos_weight_for_targets,
    prior_penalty,
    score_training_pairs,
)
from training.noise.knn import knn_indices, knn_noise_probability, pair_features

__all__ = [
    "KNN_FEATURES",
    "NOISE_ACTIONS",
    "NOISE_METHODS",
    "BetaMixture",
    "NoiseConfig",
    "NoiseReport",
    "bce_losses",
    "bi_encoder_features",
    "bmm_noise_probability",
    "corrected_targets",
    "flip_rates",
    "forward_corrected_bce",
    "detect_noisy_pairs",
    "flip_labels",
    "knn_indices",
    "knn_noise_probability",
    "noisy_batch_targets",
    "normalise_losses",
    "pair_features",
    "pos_weight_for_targets",
    "prior_penalty",
    "score_training_pairs",
]
