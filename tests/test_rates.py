"""Mixing rates: P5's family totals per epoch, shared by the family's seen prompts (hand-worked)."""
import json

import pytest

from p5_tasks import prompts, rates

USERS, REVIEWS, EXPLANATIONS = 100, 900, 550
ALL_FIELDS = frozenset({"rating", "review_text", "summary", "explanation", "item_title",
                        "item_brand", "item_price", "sequences"})


@pytest.fixture(autouse=True)
def manifest(tmp_path, monkeypatch):
    (tmp_path / "toyset").mkdir()
    (tmp_path / "toyset" / "manifest.json").write_text(json.dumps(
        {"name": "toyset",
         "counts": {"users": USERS, "reviews": REVIEWS, "explanations": EXPLANATIONS}}))
    monkeypatch.setenv("P5_DATA_DIR", str(tmp_path))
    rates._counts.cache_clear()
    yield tmp_path
    rates._counts.cache_clear()


def _rates(fields) -> dict:
    """prompt id -> rate of every seen prompt a dataset with `fields` registers."""
    seen = [p for p in prompts.prompts_for(fields=frozenset(fields)) if p.seen]
    return {p.id: rates.rate_fn(dataset="toyset", prompt=p, seen_prompts=seen)(None)
            for p in seen}


def test_every_seen_prompt_gets_its_familys_total_over_the_familys_seen_prompts():
    rate = _rates(ALL_FIELDS)
    expected = {}
    expected.update({f"1-{i}": 900 / 9 for i in range(1, 10)})        # 1 per review, 9 prompts
    expected.update({f"2-{i}": 2000 / 12 for i in range(1, 13)})      # 20 per user, 12 prompts
    expected.update({f"3-{i}": 550 / 11 for i in range(1, 12)})       # 1 per explanation, 11
    expected.update({f"4-{i}": 900 / 3 for i in range(1, 4)})         # 1 per review, 3
    expected.update({f"5-{i}": 1500 / 7 for i in range(1, 8)})        # 15 per user, 7
    assert rate == pytest.approx(expected)


def test_datasets_without_titles_share_among_fewer_prompts():
    rate = _rates({"sequences"})        # beauty, toys: 12 sequential, 5 direct (no 5-3, 5-4)
    assert set(rate) == {f"2-{i}" for i in range(1, 13)} | {"5-1", "5-2", "5-5", "5-6", "5-7"}
    assert all(rate[f"2-{i}"] == pytest.approx(2000 / 12) for i in range(1, 13))
    assert all(rate[p] == pytest.approx(1500 / 5) for p in ("5-1", "5-2", "5-5", "5-6", "5-7"))


def test_family_totals_are_p5s_per_epoch_counts():
    totals = {family: rates.family_examples_per_epoch(dataset="toyset", family=family)
              for family in ("rating", "sequential", "explanation", "review", "direct")}
    assert totals == {"rating": 900, "sequential": 2000, "explanation": 550, "review": 900,
                      "direct": 1500}


def test_rates_read_the_manifest_when_called(manifest):
    seen = [p for p in prompts.prompts_for(fields=frozenset({"sequences"})) if p.seen]
    rate = rates.rate_fn(dataset="toyset", prompt=prompts.get_prompt("2-1"), seen_prompts=seen)
    (manifest / "toyset" / "manifest.json").write_text(json.dumps({"counts": {"users": 12}}))
    assert rate(None) == pytest.approx(20)


def test_prompt_kinds_by_hand():
    kinds = {p: rates.prompt_kind(prompts.get_prompt(p)) for p in ("2-1", "2-7", "2-11", "2-14",
                                                                   "5-1", "5-5", "1-1", "3-1")}
    assert kinds == {"2-1": "next_item", "2-7": "candidates", "2-11": "yes_no",
                     "2-14": "continuation", "5-1": "yes_no", "5-5": "candidates",
                     "1-1": "other", "3-1": "other"}


def test_kind_weights_scale_rates_when_mixing():
    seen = [p for p in prompts.prompts_for(fields=frozenset({"sequences"})) if p.seen]
    next_item = rates.rate_fn(dataset="toyset", prompt=prompts.get_prompt("2-1"), seen_prompts=seen)
    yes_no = rates.rate_fn(dataset="toyset", prompt=prompts.get_prompt("5-1"), seen_prompts=seen)
    rates.set_kind_weights({"next_item": 4, "yes_no": 0.5})
    try:
        assert next_item(None) == pytest.approx(4 * 2000 / 12)
        assert yes_no(None) == pytest.approx(0.5 * 1500 / 5)
    finally:
        rates.set_kind_weights(None)
    assert next_item(None) == pytest.approx(2000 / 12)
    with pytest.raises(ValueError, match="unknown prompt kinds \\['next'\\]"):
        rates.set_kind_weights({"next": 2})
    with pytest.raises(ValueError, match=">= 0"):
        rates.set_kind_weights({"yes_no": -1})
