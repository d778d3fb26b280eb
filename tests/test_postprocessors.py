"""Parsers and seqio-style postprocessors on tricky model outputs."""
import pytest

from p5_jax import postprocessors as pp


@pytest.mark.parametrize("text, expected", [
    ("4", 4.0), ("4.0", 4.0), ("4 stars", 4.0), ("rating: 4", 4.0), ("  3.5 ", 3.5),
    ("3.5stars", 3.5), ("I would say five", 5.0), ("5/5", 5.0), ("2.", 2.0), (b"1", 1.0),
    ("7", 7.0),  # read as written; metrics clip to 1..5
])
def test_parse_rating_reads_first_number(text, expected):
    assert pp.parse_rating(text) == expected


@pytest.mark.parametrize("text", ["", "great", "item_4", "n/a", "stars"])
def test_parse_rating_unparseable_is_none(text):
    assert pp.parse_rating(text) is None


@pytest.mark.parametrize("text, expected", [
    ("yes", True), ("Yes.", True), ("no", False), ("NO!", False), ("true", True),
    ("no , not at all", False), ("well yes it will", True), ("maybe", None), ("", None),
    ("not sure", None), ("nothing", None),  # "nothing" is not the word "no"
])
def test_parse_yes_no(text, expected):
    assert pp.parse_yes_no(text) is expected


@pytest.mark.parametrize("text, expected", [
    ("like", True), ("Dislike", False), ("the user will like it", True),
    ("disliked", False), ("don't like", False), ("unlikely", None), ("", None),
])
def test_parse_like(text, expected):
    assert pp.parse_like(text) is expected


@pytest.mark.parametrize("text, expected", [
    ("item_12 , item_7", ["12", "7"]),
    ("item_3-1-7", ["3-1-7"]),
    ("item_5 -> item_9->item_5", ["5", "9"]),
    ("item_12abc item_4", ["4"]),       # glued text is not an id
    ("myitem_3 item_8.", ["8"]),
    ("no items here 12", []),
    ("", []),
])
def test_parse_item_list(text, expected):
    assert pp.parse_item_list(text) == expected


def test_item_list_postprocessor_merges_ranked_beams_best_first():
    beams = ["item_3", "7", "item_3", "3-1-2", "garbage", "item_9 , item_7"]
    assert pp.item_list_postprocessor(beams) == ["3", "7", "3-1-2", "9"]
    assert pp.item_list_postprocessor("item_1 , item_2", is_target=True) == ["1", "2"]
    assert pp.item_list_postprocessor(b"item_5") == ["5"]
    assert pp.item_list_postprocessor([]) == []


def test_scalar_postprocessors_take_the_best_beam():
    assert pp.rating_postprocessor(["3", "5"]) == 3.0
    assert pp.yes_no_postprocessor(("no", "yes"), example={}, is_target=False) is False
    assert pp.like_postprocessor(["dislike"]) is False
    assert pp.text_postprocessor(["  a   good\tfit ", "other"]) == "a good fit"
    assert pp.rating_postprocessor([]) is None


def test_postprocessor_rejects_non_text():
    with pytest.raises(TypeError, match="str or bytes"):
        pp.rating_postprocessor(4)


def test_split_rating_and_text():
    assert pp.split_rating_and_text("4 , the sound is warm , clear") == (
        4.0, "the sound is warm , clear")
    assert pp.split_rating_and_text("great strings") == (None, "great strings")
    assert pp.rating_and_text_postprocessor(["x ,  nice  fit"]) == {"rating": None,
                                                                  "text": "nice fit"}
