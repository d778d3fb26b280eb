"""Rows spilled to disk after each task: read back as JSON gives them, and an evaluation's
baselines and files are the same as with the rows held in memory."""
import math

from p5_jax import eval_baselines, eval_results, evaluation
from p5_jax.spilled_rows import SpilledRows

from test_evaluation import _output

ROWS = [{"user_id": "1", "history": ("a", "b"), "candidates": ["c", "d"], "target": ["c"],
         "output": ["item_c"], "prediction": math.nan},
        {"user_id": "2", "history": ("c",), "candidates": ["c", "d"], "target": ["a"],
         "output": ["item_d"], "prediction": 0.5}]


def test_rows_read_back_as_json_gives_them(tmp_path):
    spilled = SpilledRows.spill(ROWS, tmp_path / "rows.jsonl")
    assert len(spilled) == 2 and bool(spilled)
    assert list(spilled) == list(spilled)   # every pass reads the file again
    first = spilled[0]
    assert first["history"] == ["a", "b"] and first["prediction"] is None
    assert spilled[-1]["prediction"] == 0.5
    assert not SpilledRows.spill([], tmp_path / "none.jsonl")


def test_spilled_rows_give_the_same_baselines_and_files(tmp_path):
    loaders = dict(train_histories=lambda: [["a", "a", "c"], ["c", "b"]],
                   train_ratings=lambda: [], all_items=lambda: ["a", "b", "c", "d"],
                   split_histories=lambda: {"1": ["a", "b"], "2": ["c"]})
    written = {}
    for kind in ("memory", "spilled"):
        rows = ROWS if kind == "memory" else SpilledRows.spill(ROWS, tmp_path / "rows.jsonl")
        outputs = [_output("p5_x_sequential_2_7", rows)]
        assert isinstance(outputs[0], evaluation.TaskOutput)
        eval_results.write_results(
            out_dir=tmp_path / kind, outputs=outputs, settings={"seed": 0},
            baselines_fn=lambda dataset, outs: eval_baselines.family_baselines(outputs=outs, **loaders))
        written[kind] = {path.relative_to(tmp_path / kind): path.read_bytes()
                         for path in (tmp_path / kind).rglob("*") if path.suffix in (".json", ".jsonl", ".md")}
    assert written["memory"] == written["spilled"]
    assert b"most popular" in written["spilled"][next(p for p in written["spilled"] if p.name == "results.md")]
