from __future__ import annotations

import numpy as np
import pytest

from models.hybrid_blocking import fuse, hybrid_order


def test_fuse_scales_by_the_pool_maximum() -> None:
    cos = np.array([0.9, 0.8, 0.7])
    lex = np.array([0.0, 10.0, 5.0])
    np.testing.assert_allclose(fuse(cos, lex, 0.3), [0.9, 1.1, 0.85])
    # Per row for a matrix of pools; a pool without lexical overlap keeps its cosines.
    both = fuse(np.stack([cos, cos]), np.stack([lex, np.zeros(3)]), 0.3)
    np.testing.assert_allclose(both[1], cos)


def test_weight_zero_is_dense_order_and_ties_keep_dense_order() -> None:
    cos = np.array([0.9, 0.8, 0.8, 0.1])
    lex = np.array([1.0, 3.0, 3.0, 9.0])
    assert hybrid_order(cos, lex, 0.0).tolist() == [0, 1, 2, 3]
    assert hybrid_order(cos, lex, 1.0).tolist() == [1, 2, 3, 0]  # 1.011, 1.133, 1.133, 1.1


def test_fuse_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="shape"):
        fuse(np.zeros(3), np.zeros(2), 0.3)
    with pytest.raises(ValueError, match="weight"):
        fuse(np.zeros(3), np.zeros(3), -0.1)
