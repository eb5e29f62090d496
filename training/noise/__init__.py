"""Label-noise detection and handling for pair matchers (METHODS §7).

Public names live here; the parts are in :mod:`training.noise.bmm` (beta mixture on losses,
§7.1), :mod:`training.noise.knn` (kNN label disagreement, §7.2), :mod:`training.noise.signals`
(EM label-noise model on pretrained, label-free pair signals) and :mod:`training.noise.detect`
(the combined report, the model pass and the loss handling).
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
from training.noise.signals import SIGNAL_NAMES, LabelNoiseFit, fit_label_noise, signal_features

__all__ = [
    "KNN_FEATURES",
    "NOISE_ACTIONS",
    "NOISE_METHODS",
    "SIGNAL_NAMES",
    "BetaMixture",
    "LabelNoiseFit",
    "NoiseConfig",
    "NoiseReport",
    "bce_losses",
    "bi_encoder_features",
    "bmm_noise_probability",
    "corrected_targets",
    "flip_rates",
    "forward_corrected_bce",
    "detect_noisy_pairs",
    "fit_label_noise",
    "flip_labels",
    "knn_indices",
    "knn_noise_probability",
    "noisy_batch_targets",
    "normalise_losses",
    "pair_features",
    "pos_weight_for_targets",
    "prior_penalty",
    "score_training_pairs",
    "signal_features",
]
