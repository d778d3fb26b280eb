"""The prompt collection: counts, held-out prompts, fields read from templates, validation."""
import collections

import pytest

from p5_tasks import prompts


def test_collection_sizes_per_family():
    counts = collections.Counter(p.family for p in prompts.PROMPTS)
    assert counts == {"rating": 10, "sequential": 13, "explanation": 12, "review": 4,
                      "direct": 8, "zeroshot": 9}


def test_last_prompt_of_each_amazon_family_is_the_only_unseen_one():
    for family in ("rating", "sequential", "explanation", "review", "direct"):
        family_prompts = [p for p in prompts.PROMPTS if p.family == family]
        assert [p.id for p in family_prompts if not p.seen] == [family_prompts[-1].id]
    assert not any(p.seen for p in prompts.PROMPTS if p.family == "zeroshot")


def test_ids_are_unique_and_task_suffixes_follow_them():
    ids = [p.id for p in prompts.PROMPTS]
    assert len(ids) == len(set(ids))
    assert prompts.get_prompt("2-3").task_suffix == "2_3"
    assert prompts.get_prompt("Z-1").task_suffix == "z_1"


@pytest.mark.parametrize("prompt_id, slots, fields, output", [
    ("1-1", ("user_id", "item_id"), {"rating"}, "rating"),
    ("1-3", ("user_id", "item_id", "star"), {"rating"}, "yes_no"),
    ("1-8", ("user_desc", "item_title", "star"), {"rating", "item_title"}, "yes_no"),
    ("2-7", ("user_id", "history", "candidates"), {"sequences"}, "item"),
    ("2-11", ("user_id", "history", "item_id"), {"sequences"}, "yes_no"),
    ("3-7", ("feature", "item_id", "user_id"), {"explanation", "rating"}, "rating_explanation"),
    ("4-1", ("user_id", "review_text"), {"review_text", "summary"}, "summary"),
    ("5-4", ("item_title", "user_id"), {"sequences", "item_title"}, "yes_no"),
    ("Z-3", ("user_id", "item_title", "item_price", "item_brand"),
     {"rating", "item_title", "item_price", "item_brand"}, "rating"),
    ("Z-9", ("item_title", "user_desc"), {"rating", "item_title"}, "rating"),
])
def test_inputs_and_fields_come_from_the_templates(prompt_id, slots, fields, output):
    prompt = prompts.get_prompt(prompt_id)
    assert prompt.slots == slots
    assert prompt.required_fields == frozenset(fields)
    assert prompt.output == output


def test_prompts_for_fields_excludes_prompts_needing_missing_fields():
    without_titles = prompts.prompts_for(
        fields=frozenset({"rating", "review_text", "summary", "explanation", "sequences"}))
    ids = {p.id for p in without_titles}
    assert {"1-1", "1-3", "1-4", "1-6", "3-2", "3-6", "3-7", "3-8", "3-11", "3-12"} <= ids
    assert not ids & {"1-2", "1-5", "1-7", "1-8", "1-9", "1-10", "3-1", "5-3", "5-4", "Z-1"}
    assert len(without_titles) == 33
    sequences_only = prompts.prompts_for(fields=frozenset({"sequences"}))
    assert {p.family for p in sequences_only} == {"sequential", "direct"}
    assert len(sequences_only) == 19


def test_rendering_a_template_by_hand():
    prompt = prompts.get_prompt("1-1")
    text = prompt.input_template.format(user_id="user_5", item_id="item_9")
    assert text == "What star rating from 1 to 5 would user_5 give to item_9 ?"


def test_bad_prompts_are_refused():
    with pytest.raises(ValueError, match="unknown placeholders"):
        prompts.Prompt(id="x", family="rating", output="rating", seen=True,
                       input_template="{user_name}", target_template="{rating}")
    with pytest.raises(ValueError, match="between spaces"):
        prompts.Prompt(id="x", family="sequential", output="item", seen=True,
                       input_template="seen:{history} .", target_template="{target_item}")
    with pytest.raises(ValueError, match="unknown family"):
        prompts.Prompt(id="x", family="ratings", output="rating", seen=True,
                       input_template="{user_id}", target_template="{rating}")
    with pytest.raises(KeyError):
        prompts.get_prompt("9-9")


def test_vocabulary_texts_are_fixed():
    assert prompts.vocabulary_texts() == prompts.vocabulary_texts()
    assert any("item_42" in text for text in prompts.vocabulary_texts())
