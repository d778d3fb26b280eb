"""Collaborative item ids (after Hua et al. 2023): recursive spectral clustering of the item
co-occurrence graph built from training histories only. An id is the cluster path plus the index
within the leaf cluster, e.g. "3-1-7". Items absent from training form one extra top-level branch.
"""
import warnings

import numpy as np
import scipy.cluster.vq
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg

from p5_jax.data.hashing import hash_order

CLUSTERS_PER_LEVEL = 8
MAX_LEAF_SIZE = 64
DENSE_EIGEN_LIMIT = 300  # up to this many items a dense eigensolver is quicker than ARPACK


def cooccurrence_graph(*, train_histories: dict, train_items: list) -> scipy.sparse.csr_matrix:
    """Symmetric item x item counts of users whose training histories hold both items."""
    position = {item: k for k, item in enumerate(train_items)}
    rows, cols = [], []
    for row, history in enumerate(train_histories.values()):
        unique = {position[item] for item in history}
        rows.extend([row] * len(unique))
        cols.extend(sorted(unique))
    incidence = scipy.sparse.csr_matrix((np.ones(len(rows)), (rows, cols)),
                                        shape=(len(train_histories), len(train_items)))
    graph = (incidence.T @ incidence).tocsr()
    graph.setdiag(0)
    graph.eliminate_zeros()
    return graph


def _spectral_embedding(graph, *, k, rng) -> np.ndarray:
    """Rows of the top-k eigenvectors of D^-1/2 (A + I) D^-1/2, normalised to unit length.

    The self loops keep isolated items (degree 0) well defined.
    """
    n = graph.shape[0]
    adjacency = graph + scipy.sparse.identity(n, format="csr")
    scale = scipy.sparse.diags(1.0 / np.sqrt(np.asarray(adjacency.sum(axis=1)).ravel()))
    normalised = scale @ adjacency @ scale
    if n <= DENSE_EIGEN_LIMIT:
        _, vectors = scipy.linalg.eigh(normalised.toarray(), subset_by_index=[n - k, n - 1])
    else:
        start = rng.standard_normal(n)
        _, vectors = scipy.sparse.linalg.eigsh(normalised, k=k, which="LA", v0=start)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _cluster_groups(graph, *, k, rng) -> list:
    """Member positions of each non-empty cluster, largest first (ties by smallest member)."""
    embedding = _spectral_embedding(graph, k=k, rng=rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, labels = scipy.cluster.vq.kmeans2(embedding, k, minit="++", seed=rng)
    groups = [np.flatnonzero(labels == c) for c in range(k)]
    groups = [g for g in groups if len(g)]
    return sorted(groups, key=lambda g: (-len(g), g[0]))


def _chunks(members: np.ndarray, parts: int) -> list:
    return [chunk for chunk in np.array_split(members, parts) if len(chunk)]


def _assign(*, members, path, graph, rng, ids, items, clusters_per_level, max_leaf_size):
    if len(members) <= max_leaf_size:
        for leaf_index, member in enumerate(members):
            ids[items[member]] = "-".join(str(p) for p in [*path, leaf_index])
        return
    k = min(clusters_per_level, len(members) - 1)
    groups = []
    if graph is not None:
        subgraph = graph[members][:, members]
        groups = [members[g] for g in _cluster_groups(subgraph, k=k, rng=rng)]
    if len(groups) < 2:  # the graph cannot be split (or there is none): split by position
        groups, graph = _chunks(members, clusters_per_level), None
    for cluster, group in enumerate(groups):
        _assign(members=group, path=[*path, cluster], graph=graph, rng=rng, ids=ids, items=items,
                clusters_per_level=clusters_per_level, max_leaf_size=max_leaf_size)


def collaborative_ids(*, items: list, train_histories: dict, seed: int,
                      clusters_per_level: int = CLUSTERS_PER_LEVEL, max_leaf_size: int = MAX_LEAF_SIZE) -> dict:
    """raw item id -> cluster-path id for every item in `items`."""
    if clusters_per_level < 2 or max_leaf_size < 1:
        raise ValueError("clusters_per_level must be >= 2 and max_leaf_size >= 1")
    train_items = sorted({item for history in train_histories.values() for item in history})
    ids: dict[str, str] = {}
    if train_items:
        graph = cooccurrence_graph(train_histories=train_histories, train_items=train_items)
        _assign(members=np.arange(len(train_items)), path=[], graph=graph, rng=np.random.default_rng(seed),
                ids=ids, items=train_items, clusters_per_level=clusters_per_level, max_leaf_size=max_leaf_size)
    unseen = hash_order([item for item in items if item not in ids], seed=seed)
    if len(train_items) <= max_leaf_size:  # training items are one flat leaf: keep counting
        ids.update({item: str(len(train_items) + k) for k, item in enumerate(unseen)})
    elif unseen:
        branch = 1 + max(int(item_id.split("-")[0]) for item_id in ids.values())
        _assign(members=np.arange(len(unseen)), path=[branch], graph=None, rng=None, ids=ids, items=unseen,
                clusters_per_level=clusters_per_level, max_leaf_size=max_leaf_size)
    return ids
