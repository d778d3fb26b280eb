"""A collaborative start for item tokens: embedding rows from training co-occurrence.

With one SentencePiece piece per item (`train.item_tokens`), each item has one row of the
token table, which T5 v1.0 ties to the output layer: an item's logit is the decoder state's dot
product with that row. Random rows leave a small model to learn from scratch which items follow
which, and on a CPU budget it does not get as far as a count of the training transitions
(README, "A count of what came next"). `cooccurrence_rows` instead starts the rows at a low-rank
factor of the items' positive pointwise mutual information (PPMI) within a window of the
training sequences, so that rows of items bought close together start with large dot products.

Only training histories may be passed in (no validation or test item): the start must leak
nothing that the model is evaluated on.
"""
from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import sparse
from scipy.sparse import linalg

from p5_jax import baselines, paths, vocabulary

DEFAULT_WINDOW = 1  # next to each other: best on both datasets' validation (README)
DENSE_LIMIT = 4096  # items up to which a full eigendecomposition is cheap


def cooccurrence_counts(histories: Iterable[Sequence[str]], items: Sequence[str], *,
                        window: int = DEFAULT_WINDOW) -> sparse.csr_matrix:
    """Symmetric [items, items] weights: each pair of items at most `window` positions apart in
    a history adds 1/distance both ways. Items outside `items` are skipped."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    index = {item: position for position, item in enumerate(items)}
    rows: list[int] = []
    cols: list[int] = []
    weights: list[float] = []
    for history in histories:
        baselines.check_history(history)
        ids = [index[item] for item in history if item in index]
        for distance in range(1, window + 1):
            for a, b in zip(ids, ids[distance:]):
                if a != b:
                    rows += [a, b]
                    cols += [b, a]
                    weights += [1.0 / distance] * 2
    size = len(items)
    return sparse.csr_matrix((weights, (rows, cols)), shape=(size, size))


def ppmi(counts: sparse.csr_matrix) -> sparse.csr_matrix:
    """max(0, log(p(i, j) / (p(i) p(j)))) over the nonzero entries of a symmetric count matrix."""
    counts = sparse.coo_matrix(counts)
    total = counts.sum()
    if total <= 0:
        return sparse.csr_matrix(counts.shape)
    marginals = np.asarray(counts.sum(axis=1)).ravel()
    pmi = np.log(counts.data * total / (marginals[counts.row] * marginals[counts.col]))
    keep = pmi > 0
    return sparse.csr_matrix((pmi[keep], (counts.row[keep], counts.col[keep])),
                             shape=counts.shape)


def spectral_rows(matrix: sparse.csr_matrix, *, dim: int) -> np.ndarray:
    """[n, dim] rows R with R R^T the best rank-`dim` fit of the symmetric `matrix`'s positive
    part (eigenvectors scaled by sqrt(eigenvalue)); dimensions beyond its rank are zero."""
    n = matrix.shape[0]
    rows = np.zeros((n, dim))
    if matrix.nnz == 0:
        return rows
    if n <= DENSE_LIMIT:
        values, vectors = np.linalg.eigh(matrix.toarray())
    else:  # a few thousand items and more: only the top `dim` eigenpairs
        values, vectors = linalg.eigsh(matrix.astype(np.float64), k=dim, which="LA",
                                       v0=np.ones(n))
    top = np.argsort(values)[::-1][:dim]
    top = top[values[top] > 1e-9]
    rows[:, :len(top)] = vectors[:, top] * np.sqrt(values[top])
    return rows


def popularity_column(histories: Iterable[Sequence[str]], items: Sequence[str]) -> np.ndarray:
    """[len(items)] log(1 + occurrences in `histories`), standardised to mean 0 and variance 1
    (all zeros when every item is equally frequent)."""
    counts = collections.Counter(item for history in histories for item in history)
    column = np.log1p(np.array([counts[item] for item in items], dtype=np.float64))
    spread = column.std()
    return (column - column.mean()) / spread if spread > 0 else np.zeros_like(column)


def cooccurrence_rows(histories: Iterable[Sequence[str]], items: Sequence[str], *, dim: int,
                      rank: int, window: int = DEFAULT_WINDOW,
                      popularity: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(rows [k, dim], mask [len(items)]) for the k items that co-occur with any other within
    `window`: the rank-`rank` factor in the first `rank` dimensions, zeros after, scaled so that
    the entries have mean square 1 (as the table's normal(1.0) initialisation). Items without a
    neighbour keep their random rows (mask False). A low rank keeps the strong pairs and drops
    the noise of rare ones.

    `popularity` also fills dimension `rank` with the items' `popularity_column`, on the scale
    of one factor dimension: PMI divides popularity out of the factor, and this gives the
    decoder one direction along which to add it back (as a bias on every item's logit)."""
    if not 1 <= rank <= dim - int(popularity):
        raise ValueError(f"rank must be in [1, {dim - int(popularity)}]"
                         f"{' with popularity' if popularity else ''}, got {rank}")
    histories = [list(history) for history in histories]
    weights = ppmi(cooccurrence_counts(histories, items, window=window))
    mask = weights.getnnz(axis=1) > 0  # PPMI keeps positive entries only
    rows = np.zeros((len(items), dim))
    rows[:, :rank] = spectral_rows(weights, dim=rank)
    rows = rows[mask]
    if popularity and rows.size:
        factor_scale = np.sqrt(np.mean(rows[:, :rank] ** 2))
        rows[:, rank] = factor_scale * popularity_column(
            histories, [item for item, keep in zip(items, mask) if keep])
    mean_square = float(np.mean(rows ** 2)) if rows.size else 0.0
    if mean_square > 0:
        rows = rows / np.sqrt(mean_square)
    return rows, mask


def training_rows(*, datasets: Sequence[str], piece_id, dim: int, rank: int,
                  popularity: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(token ids [k], rows [k, dim]) of `cooccurrence_rows` over the prepared training
    histories of `datasets` (an item id shared by two datasets is one piece, so one row).
    `piece_id(piece)` is the SentencePiece id of a piece, None for a piece the model lacks."""
    from p5_tasks import catalog  # TFDS only when a run asks for this start

    root = paths.prepared_root()
    histories = [list(history) for name in datasets
                 for history in catalog.full_histories_under(root, name, "train").values()]
    items = sorted({str(item) for name in datasets for item in catalog.item_ids(name)})
    rows, mask = cooccurrence_rows(histories, items, dim=dim, rank=rank,
                                   popularity=popularity)
    kept = [item for item, keep in zip(items, mask) if keep]
    ids = [piece_id(vocabulary.item_piece(item)) for item in kept]
    missing = [item for item, token in zip(kept, ids) if token is None]
    if missing:
        raise ValueError(f"the SentencePiece model has no piece for item {missing[0]!r} "
                         f"({len(missing)} items lack one); an item start needs one piece per "
                         "item (train.item_tokens = True)")
    return np.asarray(ids, dtype=np.int32), rows
