"""The shipped datasets read with the published figures; the full prepare of beauty is slow."""
import json

import pytest

from p5_jax.data import shipped
from p5_jax.data.errors import BadLinePolicy
from p5_jax.data.prepare import prepare_dataset
from p5_jax.data.splits import default_dedupe, leave_one_out_all, user_sequences

FIGURES = {  # users, items, interactions
    "musical_instruments": (1429, 900, 10261),
    "beauty": (22363, 12101, 198502),
    "toys": (19412, 11924, 167597),
    "ml100k": (943, 1682, 100000),
}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_shipped_dataset_matches_published_figures(name):
    path, fmt = shipped.resolve_source(name=name)
    dataset = shipped.READERS[fmt](path=path, policy=BadLinePolicy())
    assert (len(dataset.users()), len(dataset.items()), len(dataset.interactions)) == FIGURES[name]
    sequences = user_sequences(dataset.interactions, dedupe=default_dedupe(fmt))
    assert sequences.repeats == 0  # so keeping or dropping repeats changes nothing in the shipped data
    assert len(leave_one_out_all(sequences.items_by_user)) == FIGURES[name][0]


def test_musical_instruments_has_text_and_lexicon():
    path, fmt = shipped.resolve_source(name="musical_instruments")
    dataset = shipped.READERS[fmt](path=path, policy=BadLinePolicy())
    assert dataset.fields["review_text"] and len(dataset.lexicon) == 325 and dataset.lexicon[0] == "sound"


@pytest.mark.slow
def test_prepare_beauty_end_to_end(tmp_path):
    manifest = prepare_dataset(name="beauty", out_root=tmp_path, indexing="collaborative", progress=False)
    assert manifest["counts"]["users"] == 22363 and manifest["counts"]["interactions"] == 198502
    assert manifest["splits"]["sequential"]["test"] == 22363
    items = [json.loads(line) for line in (tmp_path / "beauty" / "items.jsonl").read_text().splitlines()]
    assert len({i["item_id"] for i in items}) == 12101
