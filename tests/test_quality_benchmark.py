"""benchmarks/quality.py: the side-by-side table and the per-user NDCG@10 it builds the ratio on."""
import json
import math

import benchmark_module
import pytest

quality = benchmark_module.load("quality")


def test_per_user_ndcg10_by_hand(tmp_path):
    rows = [{"user_id": "a", "target": ["7"], "prediction": ["7", "1"]},            # rank 1
            {"user_id": "b", "target": ["7"], "prediction": ["1", "2", "7"]},       # rank 3
            {"user_id": "c", "target": ["7"], "prediction": [str(i) for i in range(10, 30)]}]
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    users, values = quality._per_user_ndcg10(path)
    assert users == ["a", "b", "c"]
    assert values.tolist() == pytest.approx([1.0, 1.0 / math.log2(4), 0.0])


def _metrics(value):
    return {name: value for name in quality.COLUMNS}


def test_table_puts_each_family_beside_its_baselines():
    interval = {name: [0.1, 0.3] for name in quality.COLUMNS}
    results = {
        "tasks": [{"task": "p5_x_sequential_2_3", "family": "sequential", "prompt": "2-3",
                   "unseen": False, "metrics": _metrics(0.2), "intervals": interval},
                  {"task": "p5_x_direct_5_8", "family": "direct", "prompt": "5-8",
                   "unseen": True, "metrics": _metrics(0.5), "intervals": interval}],
        "baselines": {"sequential": {"SASRec (train)": {**_metrics(0.25), "intervals": interval}},
                      "direct": {"most popular (train)": {**_metrics(0.4), "intervals": interval}}}}
    lines = quality.table(results)
    assert [line.split(" | ")[0] for line in lines[2:]] == [
        "| P5 2-3", "| SASRec (train)", "| P5 5-8 (unseen)", "| most popular (train)"]
    assert lines[2].endswith("| 0.2000 [0.1000, 0.3000] |")
    assert lines[2].count("[0.1000, 0.3000]") == len(quality.COLUMNS)


def test_headline_tasks_take_the_first_registered_choice():
    registered = {"p5_x_direct_5_1", "p5_x_sequential_2_3"}
    assert quality.headline_tasks("x", registered) == [
        "p5_x_sequential_2_3", "p5_x_sequential_2_13", "p5_x_direct_5_1", "p5_x_direct_5_8"]
    assert quality.headline_tasks("x", registered | {"p5_x_direct_5_4"})[2] == "p5_x_direct_5_4"
