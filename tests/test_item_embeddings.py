"""The collaborative start of item rows (p5_jax.item_embeddings, train.item_embedding_rank)."""
import math

import gin
import numpy as np
import pytest
from scipy import sparse

import p5_tasks
from p5_jax import gin_bindings, item_embeddings, vocabulary
from p5_jax import train as train_entry
from p5_tasks import catalog, registration

from test_initial_checkpoint import (
    _bindings,
    _FirstStep,
    _forget_vocabulary,
    _parse,
    _register_task,
    _texts,
)


@pytest.fixture(autouse=True)
def clean_state():
    """No gin binding and no item-token setting of a run here outlives its test."""
    gin.clear_config()
    yield
    gin.clear_config()
    vocabulary.use_item_tokens(False)


def test_cooccurrence_counts_weigh_each_pair_by_its_distance():
    # "z" is not an item and is skipped, so the second history reads b a a; a a is no pair.
    histories = [["a", "b", "c"], ["b", "a", "z", "a"]]
    counts = item_embeddings.cooccurrence_counts(histories, ["a", "b", "c", "d"], window=2)
    want = np.zeros((4, 4))
    want[0, 1] = 1 + 1 + 0.5  # a b, then b a at distance 1 and at distance 2
    want[1, 2] = 1            # b c
    want[0, 2] = 0.5          # a _ c
    want = want + want.T
    np.testing.assert_allclose(counts.toarray(), want)
    assert counts[3].nnz == 0
    with pytest.raises(ValueError, match="window"):
        item_embeddings.cooccurrence_counts(histories, ["a"], window=0)
    with pytest.raises(TypeError, match="list of item ids"):
        item_embeddings.cooccurrence_counts(["abc"], ["a"])


def test_ppmi_by_hand():
    counts = sparse.csr_matrix(np.array([[0, 2, .5], [2, 0, 1], [.5, 1, 0]]))
    total, a, b, c = 7.0, 2.5, 3.0, 1.5  # sum of all entries, and the row sums
    want = np.zeros((3, 3))
    want[0, 1] = want[1, 0] = math.log(2 * total / (a * b))
    want[1, 2] = want[2, 1] = math.log(1 * total / (b * c))
    assert math.log(0.5 * total / (a * c)) < 0  # a, c: fewer than chance, dropped
    np.testing.assert_allclose(item_embeddings.ppmi(counts).toarray(), want)
    assert item_embeddings.ppmi(sparse.csr_matrix((2, 2))).nnz == 0


@pytest.mark.parametrize("dense_limit", [4096, 0])  # full eigendecomposition, and eigsh
def test_spectral_rows_fit_the_positive_part(dense_limit, monkeypatch):
    monkeypatch.setattr(item_embeddings, "DENSE_LIMIT", dense_limit)
    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.normal(size=(8, 3)))
    matrix = basis @ np.diag([5.0, 2.0, -3.0]) @ basis.T
    rows = item_embeddings.spectral_rows(sparse.csr_matrix(matrix), dim=4)
    positive = basis[:, :2] @ np.diag([5.0, 2.0]) @ basis[:, :2].T
    np.testing.assert_allclose(rows @ rows.T, positive, atol=1e-8)
    np.testing.assert_allclose(rows[:, 2:], 0, atol=1e-8)  # the negative part and beyond
    top = item_embeddings.spectral_rows(sparse.csr_matrix(matrix), dim=1)
    np.testing.assert_allclose(top @ top.T, 5.0 * np.outer(basis[:, 0], basis[:, 0]), atol=1e-8)


def test_cooccurrence_rows_put_neighbours_close_and_keep_lonely_items_random():
    items = ["a", "b", "c", "d", "e", "f", "g"]
    histories = [["a", "b", "c"], ["c", "a", "b"], ["d", "e", "f"], ["f", "d", "e"]] * 3
    rows, mask = item_embeddings.cooccurrence_rows(histories, items, dim=6, rank=2)
    assert mask.tolist() == [True] * 6 + [False]  # g has no neighbour
    assert rows.shape == (6, 6) and np.mean(rows ** 2) == pytest.approx(1.0)
    np.testing.assert_array_equal(rows[:, 2:], 0)
    scores = rows @ rows.T
    for group, other in ((range(3), range(3, 6)), (range(3, 6), range(3))):
        for i in group:
            within = min(scores[i, j] for j in group if j != i)
            assert within > max(scores[i, j] for j in other)
    with pytest.raises(ValueError, match="rank"):
        item_embeddings.cooccurrence_rows(histories, items, dim=6, rank=7)


def test_popularity_column_is_standardised_log_frequency():
    column = item_embeddings.popularity_column([["a", "b", "a"], ["b", "c", "a"]],
                                               ["a", "b", "c", "d"])
    logs = np.log([4.0, 3.0, 2.0, 1.0])  # 1 + counts 3, 2, 1, 0
    np.testing.assert_allclose(column, (logs - logs.mean()) / logs.std())
    np.testing.assert_array_equal(item_embeddings.popularity_column([["a", "b"]], ["a", "b"]), 0)


def test_popularity_fills_the_dimension_after_the_factor():
    items = ["a", "b", "c", "d", "e", "f", "g"]
    histories = [["a", "b", "c"], ["c", "a", "b"], ["d", "e", "f"], ["f", "d", "a"]] * 3
    plain, mask = item_embeddings.cooccurrence_rows(histories, items, dim=6, rank=2)
    rows, same_mask = item_embeddings.cooccurrence_rows(histories, items, dim=6, rank=2,
                                                        popularity=True)
    np.testing.assert_array_equal(mask, same_mask)
    assert np.mean(rows ** 2) == pytest.approx(1.0)
    np.testing.assert_array_equal(rows[:, 3:], 0)
    # The factor keeps its direction; the new dimension has one factor dimension's size.
    scale = rows[0, 0] / plain[0, 0]
    np.testing.assert_allclose(rows[:, :2], scale * plain[:, :2])
    kept = [item for item, keep in zip(items, mask) if keep]
    popularity = item_embeddings.popularity_column(histories, kept)
    np.testing.assert_allclose(rows[:, 2], np.sqrt(np.mean(rows[:, :2] ** 2)) * popularity)
    assert rows[0, 2] > rows[4, 2]  # a (9 occurrences) above e (3)
    with pytest.raises(ValueError, match="with popularity"):
        item_embeddings.cooccurrence_rows(histories, items, dim=6, rank=6, popularity=True)


ITEMS = [str(i) for i in range(1, 60)]
HISTORIES = {"train": {"u1": ("3", "4", "5"), "u2": ("4", "5", "9"), "u3": ("7", "8")},
             "test": {"u1": ("3", "4", "5", "50", "51")}}  # held-out items: never read


@pytest.fixture
def toy_catalog(monkeypatch):
    read = []

    def histories(root, dataset, split):
        read.append((dataset, split))
        return HISTORIES[split]

    monkeypatch.setattr(catalog, "full_histories_under", histories)
    monkeypatch.setattr(catalog, "item_ids", lambda dataset: np.array(ITEMS, dtype=object))
    monkeypatch.setattr(registration, "datasets_of", lambda name: ["ml100k"])  # a registered spec; its data mocked
    return read


def test_training_rows_read_only_training_histories(toy_catalog):
    pieces = {vocabulary.item_piece(item): 100 + int(item) for item in ITEMS}
    ids, rows = item_embeddings.training_rows(datasets=["ml100k"], piece_id=pieces.get,
                                              dim=4, rank=2)
    assert toy_catalog == [("ml100k", "train")]
    assert sorted(ids.tolist()) == [103, 104, 105, 107, 108, 109]
    want, mask = item_embeddings.cooccurrence_rows(
        HISTORIES["train"].values(), sorted(ITEMS), dim=4, rank=2)
    np.testing.assert_array_equal(rows, want)
    with pytest.raises(ValueError, match="no piece for item '3'"):
        item_embeddings.training_rows(datasets=["ml100k"], piece_id=lambda piece: None,
                                      dim=4, rank=2)


@pytest.fixture
def item_spm(tmp_path):
    texts = [" ".join(pair) for split in ("train", "validation") for pair in _texts(split)]
    path = vocabulary.train_sentencepiece(
        texts=texts * 4, model_path=tmp_path / "items.model", vocab_size=180,
        symbols=[vocabulary.item_piece(item) for item in ITEMS])
    yield path
    _forget_vocabulary()


def _first_params(monkeypatch, tmp_path, name, extra):
    _register_task()
    bindings = _bindings(model_dir=tmp_path / name, steps=1, dims=dict(d_model=32)) + [
        "train.item_tokens = True", *extra]
    spy = _FirstStep(monkeypatch)
    _parse(bindings)
    train_entry.train()
    return np.asarray(spy.record["params"]["token_embedder"])


def test_a_run_starts_item_rows_at_the_factor_and_leaves_the_rest(
        toy_catalog, item_spm, monkeypatch, tmp_path):
    spm = [f"train.sentencepiece_model_file = '{item_spm}'"]
    plain = _first_params(monkeypatch, tmp_path, "plain", spm)
    started = _first_params(monkeypatch, tmp_path, "started", spm + [
        "train.item_embedding_rank = 2", "train.item_embedding_popularity = True"])
    vocab = p5_tasks.OUTPUT_FEATURES["targets"].vocabulary
    ids, rows = item_embeddings.training_rows(
        datasets=["ml100k"], piece_id=vocab.tokenizer.piece_to_id, dim=32, rank=2,
        popularity=True)
    np.testing.assert_allclose(started[ids], rows, rtol=1e-6)
    assert np.abs(rows[:, 2]).max() > 0.1  # the popularity dimension is there
    others = np.setdiff1d(np.arange(len(plain)), ids)
    np.testing.assert_array_equal(started[others], plain[others])
    assert not np.allclose(plain[ids], rows)
    # A run that starts from a checkpoint takes its rows from there: the two are refused.
    _parse(_bindings(model_dir=tmp_path / "from_plain", steps=1, dims=dict(d_model=32),
                     initial_checkpoint=tmp_path / "plain")
           + ["train.item_tokens = True", "train.item_embedding_rank = 2", *spm])
    with pytest.raises(gin_bindings.JobError, match="cannot be used with INITIAL_CHECKPOINT"):
        train_entry.train()


def test_item_rank_needs_item_tokens(toy_catalog, monkeypatch, tmp_path):
    _register_task()
    _parse(_bindings(model_dir=tmp_path, steps=1) + ["train.item_embedding_rank = 2"])
    with pytest.raises(gin_bindings.JobError, match="train.item_tokens = True"):
        train_entry.train()
    _parse(_bindings(model_dir=tmp_path, steps=1) + ["train.item_tokens = True",
                                                      "train.item_embedding_popularity = True"])
    with pytest.raises(gin_bindings.JobError, match="set train.item_embedding_rank too"):
        train_entry.train()
