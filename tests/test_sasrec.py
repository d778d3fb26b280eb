"""SASRec baseline: learning, exclusion, metric parity with metrics.ranking_metrics, the cache
and the command line, on small synthetic data (CPU, seconds)."""
import json
import math

import jax
import numpy as np
import pytest

from p5_jax import baselines, metrics, sasrec, sasrec_cache

NUM_ITEMS = 30
ITEMS = [str(i) for i in range(1, NUM_ITEMS + 1)]
# Small and quick; one compiled train step shared by every test that trains (same shape, same lr).
SETTINGS = sasrec.Settings(max_len=10, hidden=32, num_blocks=2, num_heads=1, dropout=0.1,
                           learning_rate=5e-3, batch_size=64, max_epochs=25, patience=3, seed=0)


def _cycle(start: int, length: int) -> list[str]:
    """Items start+1, start+2, ... wrapping after NUM_ITEMS: the next item is always known."""
    return [ITEMS[(start + j) % NUM_ITEMS] for j in range(length)]


def _cycle_split(num_users=200, length=12, seed=0):
    """Leave-one-out split of cycles with random starts: (train, validation histories,
    validation targets, test histories, test targets). length < NUM_ITEMS, so no next item is
    already in its history."""
    rng = np.random.default_rng(seed)
    sequences = [_cycle(int(rng.integers(NUM_ITEMS)), length) for _ in range(num_users)]
    return ([s[:-2] for s in sequences], [s[:-2] for s in sequences], [s[-2] for s in sequences],
            [s[:-1] for s in sequences], [s[-1] for s in sequences])


def _train(settings=SETTINGS, seed=0):
    train, val_h, val_t, _, _ = _cycle_split(seed=seed)
    return sasrec.train(train_histories=train, validation_histories=val_h,
                        validation_targets=val_t, item_ids=ITEMS, settings=settings,
                        progress=False)


@pytest.fixture(scope="module")
def trained():
    return _train()


def test_learns_a_deterministic_cycle_to_hr_at_1(trained):
    _, _, _, test_h, test_t = _cycle_split(num_users=100, seed=1)  # held-out users and items
    result = metrics.ranking_metrics(test_t, trained.ranker.rank(test_h, top_k=5))
    assert result["hr@1"] == 1.0 and result["ndcg@5"] == 1.0
    assert trained.validation["hr@1"] == 1.0
    assert [row["epoch"] for row in trained.curve] == list(range(1, trained.epochs_run + 1))
    # Early stopping: the best epoch's NDCG@10 is the curve's maximum, and it stopped `patience`
    # epochs after the first epoch that reached it.
    best = max(row["ndcg@10"] for row in trained.curve)
    assert trained.validation["ndcg@10"] == best
    assert trained.epochs_run == min(SETTINGS.max_epochs, trained.best_epoch + SETTINGS.patience)


def test_training_is_deterministic_given_the_seed():
    short = sasrec.Settings(**{**SETTINGS.__dict__, "max_epochs": 2})
    first, again = _train(short), _train(short)
    assert first.curve == again.curve
    for a, b in zip(jax.tree_util.tree_leaves(first.ranker.params),
                    jax.tree_util.tree_leaves(again.ranker.params)):
        np.testing.assert_array_equal(a, b)
    other = _train(sasrec.Settings(**{**short.__dict__, "seed": 1}))
    assert other.curve != first.curve


def test_choosing_dropout_keeps_the_best_validation_ndcg_and_the_first_of_ties(monkeypatch):
    validation = {0.2: 0.05, 0.3: 0.07, 0.5: 0.07}
    trained_with = []

    def fake_train(*, settings, **data):
        trained_with.append(settings)
        return sasrec.TrainResult(ranker=None, curve=[], best_epoch=round(settings.dropout * 10),
                                  seconds=0.0, validation={"ndcg@10": validation[settings.dropout]})

    monkeypatch.setattr(sasrec, "train", fake_train)
    result, scores = sasrec.train_choosing_dropout(dropouts=[0.2, 0.3, 0.5], settings=SETTINGS,
                                                   item_ids=ITEMS)
    assert result.best_epoch == 3 and scores == validation   # 0.3: the first of the tie
    assert [s.dropout for s in trained_with] == [0.2, 0.3, 0.5]
    assert all(s == sasrec.Settings(**{**SETTINGS.__dict__, "dropout": s.dropout})
               for s in trained_with)                     # only the dropout differs
    best, _ = sasrec.train_choosing_dropout(dropouts=[0.5, 0.3], settings=SETTINGS)
    assert best.best_epoch == 5
    with pytest.raises(ValueError, match="at least one rate"):
        sasrec.train_choosing_dropout(dropouts=[], settings=SETTINGS)


def test_training_windows_cover_every_transition_once():
    sequence = list(range(1, 13))                      # 11 transitions, windows of 4 + 1 items
    inputs, targets = sasrec.training_windows([sequence, [5], [7, 8]], max_len=4)
    pairs = [(i, t) for row_i, row_t in zip(inputs, targets) for i, t in zip(row_i, row_t) if t]
    assert sorted(pairs) == sorted([(a, a + 1) for a in range(1, 12)] + [(7, 8)])
    assert inputs[0].tolist() == [8, 9, 10, 11] and targets[0].tolist() == [9, 10, 11, 12]
    assert inputs[2].tolist() == [0, 1, 2, 3] and targets[2].tolist() == [0, 2, 3, 4]
    last, _ = sasrec.training_windows([sequence], max_len=4, windows="last")
    assert last.tolist() == [[8, 9, 10, 11]]


def test_batches_cover_each_window_once_cut_to_a_length_that_fits():
    assert sasrec.length_buckets(50) == (8, 16, 32, 50)
    assert sasrec.length_buckets(10) == (8, 10) and sasrec.length_buckets(8) == (8,)
    rng = np.random.default_rng(0)
    sequences = [list(range(1, int(rng.integers(2, 30)))) for _ in range(300)]
    inputs, _ = sasrec.training_windows(sequences, max_len=20)
    settings = sasrec.Settings(max_len=20, batch_size=16)
    batches = sasrec.epoch_batches(inputs, settings=settings, epoch=1)
    rows = np.concatenate([r for r, _ in batches])
    assert sorted(rows.tolist()) == list(range(len(inputs)))
    for batch, length in batches:
        assert len(batch) <= 16 and length in (8, 16, 20)
        assert not inputs[batch, :20 - length].any()          # only padding is cut
    assert {length for _, length in batches} == {8, 16, 20}
    again = sasrec.epoch_batches(inputs, settings=settings, epoch=1)
    assert all((a == b).all() and m == n for (a, m), (b, n) in zip(batches, again))


def test_a_window_cut_to_its_items_gives_the_same_logits(trained):
    model = sasrec.make_model(SETTINGS, NUM_ITEMS)
    full = np.array([[0, 0, 0, 0, 0, 0, 4, 5, 6, 7]], np.int32)
    logits = model.apply({"params": trained.ranker.params}, full)
    cut = model.apply({"params": trained.ranker.params}, full[:, 2:])
    np.testing.assert_allclose(cut, logits[:, 2:], rtol=1e-5, atol=1e-5)


def test_top_k_rows_orders_by_score_then_index_and_skips_excluded():
    scores = np.array([[-np.inf, 0.5, 0.9, 0.5, -np.inf]])
    assert sasrec.top_k_rows(scores, 4).tolist() == [[2, 1, 3, -1]]
    assert sasrec.top_k_rows(scores, 2).tolist() == [[2, 1]]


def test_ranking_excludes_the_history_items(trained):
    histories = [_cycle(3, 8), ["5", "9", "5", "30"], []]
    ranked = trained.ranker.rank(histories, top_k=NUM_ITEMS)
    for history, items in zip(histories, ranked):
        assert len(items) == len(set(items)) == NUM_ITEMS - len(set(history))
        assert set(items) == set(ITEMS) - set(history)
    kept = trained.ranker.rank(histories[:1], top_k=NUM_ITEMS, exclude_history=False)[0]
    assert sorted(kept) == sorted(ITEMS)
    assert trained.ranker.rank(histories[:1], top_k=1) == [[ITEMS[11]]]  # the cycle's next
    with pytest.raises(ValueError, match="not in the item catalogue"):
        trained.ranker.rank([["nope"]])


def test_ranked_lists_give_the_same_metrics_as_the_target_rank_from_the_logits(trained):
    rng = np.random.default_rng(3)       # random histories: targets land at many ranks
    histories = [list(rng.choice(ITEMS, size=int(rng.integers(1, 9)), replace=False))
                 for _ in range(300)]
    targets = [str(rng.choice(ITEMS)) for _ in histories]  # some are in their history: misses
    scores = trained.ranker.masked_scores(histories)
    ranks = []
    for row, target in zip(scores, targets):
        own = row[trained.ranker.items.encode([target])[0]]
        ranks.append(math.inf if own == -np.inf else 1 + int((row > own).sum()))
    assert len(set(ranks)) > 8
    got = metrics.ranking_metrics(targets, trained.ranker.rank(histories, top_k=20))
    for k in metrics.RANKING_KS:
        assert got[f"hr@{k}"] == pytest.approx(np.mean([r <= k for r in ranks]))
        assert got[f"ndcg@{k}"] == pytest.approx(
            np.mean([1 / math.log2(r + 1) if r <= k else 0.0 for r in ranks]))


def _fake_prepared(root, dataset="toy", seed=0):
    folder = root / dataset
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps({"name": dataset, "seed": seed}))
    (folder / "items.jsonl").write_text("".join(json.dumps({"item_id": i}) + "\n" for i in ITEMS))
    return root


def test_cache_round_trip_and_invalidation_when_the_manifest_changes(trained, tmp_path):
    root = _fake_prepared(tmp_path)
    assert sasrec_cache.cache_status(root, "toy")[1].startswith("no cached SASRec")
    folder = sasrec_cache.save(trained, root=root, dataset="toy")
    assert sorted(p.name for p in folder.parent.iterdir()) == ["sasrec"]  # no temporary left
    info = json.loads((folder / sasrec_cache.INFO_FILE).read_text())
    assert info["manifest_seed"] == 0 and len(info["manifest_md5"]) == 32
    assert info["validation"]["hr@1"] == 1.0 and info["settings"]["max_len"] == 10
    assert len(info["curve"]) == trained.epochs_run
    cached = sasrec_cache.load(root, "toy")
    histories = [_cycle(s, 6) for s in range(20)]
    np.testing.assert_array_equal(cached.ranker.logits(histories),
                                  trained.ranker.logits(histories))
    assert cached.ranker.rank(histories) == trained.ranker.rank(histories)
    assert sasrec_cache.catalogue(root, "toy") == ITEMS

    _fake_prepared(tmp_path, seed=1)                     # prepared again, another seed
    cached, reason = sasrec_cache.cache_status(root, "toy")
    assert cached is None and "manifest changed" in reason
    assert sasrec_cache.load(root, "toy") is None


def test_settings_reject_bad_values():
    with pytest.raises(ValueError, match="max_epochs must be positive"):
        sasrec.Settings(max_epochs=0)
    with pytest.raises(ValueError, match="windows must be one of"):
        sasrec.Settings(windows="some")


def test_cli_unknown_dataset_is_one_error_line(tmp_path, capsys):
    assert baselines.main(["--dataset", "no_such_data", "--data_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown dataset 'no_such_data'")
    assert "python -m p5_jax.data.prepare" in err[0]
    assert not any(tmp_path.iterdir())


def test_cli_bad_settings_are_one_error_line(tmp_path, capsys):
    _fake_prepared(tmp_path)
    assert baselines.main(["--dataset", "toy", "--data_dir", str(tmp_path), "--epochs", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: max_epochs must be positive, got 0"]
    assert baselines.main(["--dataset", "toy", "--data_dir", str(tmp_path), "--dropout", "0.2",
                           "1.5"]) == 2
    assert capsys.readouterr().err.strip() == "error: dropout must be in [0, 1), got 1.5"


@pytest.mark.slow
def test_cli_trains_caches_and_reuses_on_a_tiny_prepared_dataset(tmp_path, capsys):
    from p5_jax.data import prepare

    import eval_data

    source = eval_data.write_amazon_source(tmp_path / "raw")
    prepare.prepare_dataset(name="tiny_shop", out_root=tmp_path / "prepared", source=source,
                            fmt="amazon", num_negatives=5, progress=False)
    argv = ["--dataset", "tiny_shop", "--data_dir", str(tmp_path / "prepared"), "--epochs", "2",
            "--no_progress"]
    assert baselines.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("SASRec on tiny_shop: trained; 2 epochs (reached --epochs")
    scores = [float(word.split(":")[1].rstrip(";")) for word in out[1].split()[4:6]]
    assert out[1].startswith("dropout by validation NDCG@10: 0.2:")
    assert out[1].endswith(f"; kept {sasrec.DROPOUT_CHOICES[scores.index(max(scores))]}")
    assert out[2].startswith("validation NDCG@10 by epoch: 1:")
    assert out[3].startswith("SASRec validation (12 users): HR@5 ")
    assert out[4].startswith("SASRec test (12 users): HR@5 ") and "NDCG@10" in out[4]
    assert out[5].startswith("most popular test (12 users)")
    assert sasrec_cache.load(tmp_path / "prepared", "tiny_shop") is not None
    assert baselines.main(argv) == 0                                  # same settings: reused
    again = capsys.readouterr().out.splitlines()
    assert "cached" in again[0] and again[4] == out[4]
    assert baselines.main([*argv, "--dropout", "0.3"]) == 0           # other choices: trained
    other = capsys.readouterr().out.splitlines()
    assert "trained" in other[0] and other[1].startswith("dropout by validation NDCG@10: 0.3:")
    assert other[1].endswith("; kept 0.3")
    assert baselines.main([*argv, "--dropout", "0.3", "0.3"]) == 0    # a repeated rate: once
    assert "cached" in capsys.readouterr().out.splitlines()[0]
