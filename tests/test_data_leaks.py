"""No held-out (user, item) pair in any training record, by default; P5's review split leaks them.

A held-out pair is a user's validation or test target in the sequence records. Training records:
review training records (the rating, explanation and review families) and the sequence training
histories (the sequential and direct families draw their training targets from them).
"""
import pathlib

import pytest

from p5_jax.data import prepare, shipped, tfds_builders
from p5_jax.data.assemble import assemble
from p5_jax.data.errors import BadLinePolicy
from p5_jax.data.records import SPLITS

from test_data_prepare import _decode

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "data"
MI_USERS = 1429


def held_out_pairs(sequences: dict) -> set:
    return {(r["user_id"], r["target"]) for split in ("validation", "test") for r in sequences[split]}


def training_pairs(reviews: dict | None, sequences: dict) -> set:
    pairs = {(r["user_id"], item) for r in sequences["train"] for item in r["history"]}
    return pairs | {(r["user_id"], r["item_id"]) for r in (reviews or {}).get("train", [])}


def _written(root, kind) -> dict | None:
    """split -> records read back from the TFDS build, or None when the kind was not written."""
    try:
        return {split: [{k: _decode(v) for k, v in row.items()} for row in
                        tfds_builders.load(root=root, dataset="tiny", kind=kind, split=split).as_numpy_iterator()]
                for split in SPLITS}
    except FileNotFoundError:
        return None


@pytest.fixture(scope="module")
def musical_instruments():
    path, fmt = shipped.resolve_source(name="musical_instruments")
    return shipped.READERS[fmt](path=path, policy=BadLinePolicy())


def test_musical_instruments_trains_on_no_held_out_pair_by_default(musical_instruments):
    data = assemble(source=musical_instruments, indexing="random", seed=0, progress=False)
    held_out = held_out_pairs(data.sequences)
    assert len(held_out) == 2 * MI_USERS  # every user has a distinct validation and test item
    assert not held_out & training_pairs(data.reviews, data.sequences)
    # Their reviews are held out with them, in the same split.
    for split in ("validation", "test"):
        assert {(r["user_id"], r["target"]) for r in data.sequences[split]} <= {
            (r["user_id"], r["item_id"]) for r in data.reviews[split]}
    assert (data.stats["leaks_held_out_items"], data.stats["held_out_pairs_in_review_training"]) == (False, 0)


def test_musical_instruments_p5_review_split_leaks_most_held_out_pairs(musical_instruments):
    data = assemble(source=musical_instruments, indexing="random", seed=0, progress=False, review_split="p5")
    held_out = held_out_pairs(data.sequences)
    leaked = held_out & training_pairs(data.reviews, data.sequences)
    assert len(leaked) > 0.7 * len(held_out)  # each pair's review lands in training with probability 0.8
    assert not held_out & training_pairs(None, data.sequences)  # the leak is in the reviews alone
    assert data.stats["leaks_held_out_items"] and data.stats["held_out_pairs_in_review_training"] == len(leaked)


@pytest.mark.parametrize("fmt", ["amazon", "recbole", "p5_sequential"])
def test_written_fixture_records_train_on_no_held_out_pair(tmp_path, fmt):
    manifest = prepare.prepare_dataset(name="tiny", out_root=tmp_path, source=FIXTURES / fmt, fmt=fmt,
                                       num_negatives=1, progress=False)
    reviews, sequences = _written(tmp_path, "reviews"), _written(tmp_path, "sequences")
    held_out = held_out_pairs(sequences)
    assert len(held_out) == 6  # three users, each with a distinct validation and test item
    assert not held_out & training_pairs(reviews, sequences)
    assert not manifest["leaks_held_out_items"] and manifest["review_split"] == "aligned"


@pytest.mark.parametrize("fmt", ["amazon", "recbole"])
def test_written_fixture_records_leak_under_the_p5_split(tmp_path, fmt):
    manifest = prepare.prepare_dataset(name="tiny", out_root=tmp_path, source=FIXTURES / fmt, fmt=fmt,
                                       num_negatives=1, progress=False, review_split="p5")
    reviews, sequences = _written(tmp_path, "reviews"), _written(tmp_path, "sequences")
    leaked = held_out_pairs(sequences) & training_pairs(reviews, sequences)
    # 10 or 11 reviews: 1 validation and 1 test review, so at least 4 of the 6 held-out pairs train.
    assert len(leaked) >= 4 and manifest["held_out_pairs_in_review_training"] == len(leaked)
    assert manifest["leaks_held_out_items"] and manifest["review_split"] == "p5"


@pytest.mark.slow
def test_prepared_musical_instruments_records_train_on_no_held_out_pair(tmp_path):
    manifest = prepare.prepare_dataset(name="tiny", out_root=tmp_path, source=shipped.resolve_source(
        name="musical_instruments")[0], fmt="amazon", progress=False)
    reviews, sequences = _written(tmp_path, "reviews"), _written(tmp_path, "sequences")
    assert len(held_out_pairs(sequences)) == 2 * MI_USERS
    assert not held_out_pairs(sequences) & training_pairs(reviews, sequences)
    assert not manifest["leaks_held_out_items"]
