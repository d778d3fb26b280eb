"""Readers on tiny hand-made files, one per source format; expected values worked out by hand."""
import gzip
import pathlib
import shutil

from p5_jax.data.errors import BadLinePolicy
from p5_jax.data.readers_amazon import read_amazon
from p5_jax.data.readers_p5 import read_p5_sequential
from p5_jax.data.readers_recbole import read_recbole
from p5_jax.data.splits import user_sequences
from p5_jax.data.user_desc import amazon_user_desc, demographics_user_desc

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "data"


def _sequences(dataset):
    return user_sequences(dataset.interactions).items_by_user


def test_amazon_reviews_metadata_and_lexicon():
    dataset = read_amazon(path=FIXTURES / "amazon", policy=BadLinePolicy())
    assert len(dataset.interactions) == 11
    assert dataset.users() == ["U1", "U2", "U3"]
    assert dataset.items() == ["I1", "I2", "I3", "I4", "I5", "I6"]
    # U1's I3 and I4 share a timestamp: the earlier line comes first.
    assert _sequences(dataset) == {"U1": ["I1", "I2", "I3", "I4"], "U2": ["I2", "I5", "I1"],
                                   "U3": ["I6", "I1", "I2", "I3"]}
    assert dataset.user_desc == {"U1": "Alice", "U2": "U2", "U3": "Carol"}
    assert dataset.item_meta["I1"].price == "12.50" and dataset.item_meta["I1"].brand == "Acme"
    assert dataset.item_meta["I2"].title == "Guitar strings" and dataset.item_meta["I2"].price == ""
    assert dataset.item_meta["I3"].price == "9.99"
    assert dataset.lexicon == ["sound", "strings", "price", "guitar sound"]
    assert {k for k, v in dataset.fields.items() if v} == {
        "rating", "review_text", "summary", "timestamps", "item_title", "item_brand", "item_price"}
    first = dataset.interactions[0]
    assert (first.rating, first.timestamp, first.summary) == (5, 100, "great")


def test_amazon_reads_a_gzipped_file(tmp_path):
    plain = FIXTURES / "amazon" / "reviews_tiny.json"
    packed = tmp_path / "reviews.json.gz"
    with open(plain, "rb") as src, gzip.open(packed, "wb") as dst:
        shutil.copyfileobj(src, dst)
    from_gzip = read_amazon(path=packed, policy=BadLinePolicy())
    assert from_gzip.interactions == read_amazon(path=plain, policy=BadLinePolicy()).interactions
    assert from_gzip.lexicon == [] and from_gzip.item_meta == {}


def test_p5_sequences_map_to_raw_ids():
    dataset = read_p5_sequential(path=FIXTURES / "p5_sequential", policy=BadLinePolicy())
    assert _sequences(dataset) == {"UA": ["X1", "X2", "X3", "X4"], "UB": ["X3", "X5", "X2"],
                                   "UC": ["X6", "X1", "X2", "X3", "X5"]}
    assert dataset.original_item_ids["X4"] == "4"
    assert dataset.user_desc == {"UA": "UA", "UB": "UB", "UC": "UC"}
    assert not any(dataset.fields.values())


def test_recbole_inter_item_user():
    dataset = read_recbole(path=FIXTURES / "recbole", policy=BadLinePolicy())
    assert _sequences(dataset) == {"7": ["11", "10", "12", "14"], "8": ["13", "10", "12"],
                                   "9": ["11", "13", "14"]}
    assert dataset.user_desc == {"7": "24-year-old male technician", "8": "53-year-old female", "9": "9"}
    assert dataset.item_meta["12"].title == "Fargo"
    assert {k for k, v in dataset.fields.items() if v} == {"rating", "timestamps", "item_title",
                                                           "user_demographics"}
    assert [i.rating for i in dataset.interactions[:3]] == [4, 5, 3]


def test_user_desc_phrases():
    assert amazon_user_desc(reviewer_name="  Jo   Ann ", reviewer_id="A1") == "Jo Ann"
    assert amazon_user_desc(reviewer_name="", reviewer_id="A1") == "A1"
    assert demographics_user_desc(age="31", gender="F", occupation="writer", fallback="u") == \
        "31-year-old female writer"
    assert demographics_user_desc(occupation="none", fallback="u5") == "u5"
