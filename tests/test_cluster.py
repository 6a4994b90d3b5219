import numpy as np
import pytest

from dgprm.tree.cluster import Features, assign_clusters, birch_radius, cluster_new


def pair_at_cosine_distance(distance: float, dim: int = 8) -> np.ndarray:
    """Two unit vectors whose cosine distance is exactly ``distance``."""
    angle = np.arccos(1.0 - distance)
    a = np.zeros(dim)
    a[0] = 1.0
    b = np.zeros(dim)
    b[0], b[1] = np.cos(angle), np.sin(angle)
    return np.stack([a, b]).astype(np.float32)


@pytest.mark.parametrize("xi", [0.1, 0.25, 0.4])
def test_criteria_closer_than_xi_merge_farther_do_not(xi):
    assert cluster_new(pair_at_cosine_distance(xi * 0.95), xi).tolist() == [0, 0]
    assert cluster_new(pair_at_cosine_distance(xi * 1.05), xi).tolist() == [0, 1]


def test_birch_radius_matches_cosine_distance():
    # two unit vectors at cosine distance ξ are sqrt(2ξ) apart; their pair radius is half that
    v = pair_at_cosine_distance(0.25)
    assert np.isclose(np.linalg.norm(v[0] - v[1]) / 2, birch_radius(0.25), atol=1e-6)
    with pytest.raises(ValueError):
        birch_radius(0)


def test_existing_clusters_absorb_close_vectors_and_keep_indices():
    rng = np.random.default_rng(0)
    centers = np.eye(6)[:3]
    first = centers + rng.normal(scale=0.02, size=centers.shape)
    first /= np.linalg.norm(first, axis=1, keepdims=True)
    labels, features = assign_clusters(Features.empty(6), first, 0.25)
    assert labels.tolist() == [0, 1, 2]
    more = np.vstack([centers[[2, 0]], np.eye(6)[[5]]])
    labels2, features2 = assign_clusters(features, more, 0.25)
    assert labels2.tolist() == [2, 0, 3]
    assert features2.n.tolist() == [2, 1, 2, 1]
    assert features.n.tolist() == [1, 1, 1]  # input features untouched


def test_labels_are_numbered_in_first_seen_order():
    v = np.eye(4)[[3, 1, 3, 0]].astype(np.float32)
    assert cluster_new(v, 0.2).tolist() == [0, 1, 0, 2]
