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


def test_best_step_is_the_highest_validation_ndcg_and_the_earliest_of_ties():
    assert quality.best_step([(500, 0.02), (1000, 0.05), (1500, 0.04)]) == 1000
    assert quality.best_step([(500, 0.03), (1000, 0.05), (1500, 0.05), (2000, 0.01)]) == 1000
    assert quality.best_step([(4500, 0.07)]) == 4500
    with pytest.raises(ValueError, match="no finished checkpoint"):
        quality.best_step([])


def _results(folder, *, split, ndcg10, checkpoint=None):
    """A results.json; with `checkpoint` (a step folder), the record of having evaluated it."""
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"settings": {"split": split}, "tasks": [{"metrics": {"ndcg@10": ndcg10}}]}
    (folder / "results.json").write_text(json.dumps(payload))
    if checkpoint is not None:
        record = json.dumps(quality.checkpoint_identity(checkpoint))
        (folder / quality.CHECKPOINT_RECORD).write_text(record)


def test_validation_curve_reads_back_finished_steps_and_refuses_a_test_evaluation(
        tmp_path, monkeypatch):
    monkeypatch.setattr(quality, "checkpoint_steps", lambda model_dir: [500, 1000])
    ran = []
    monkeypatch.setattr(quality, "_run", lambda stage, args, env: ran.append(stage))
    for step, value in ((500, 0.031), (1000, 0.047)):
        _results(tmp_path / "validation" / str(step), split="validation", ndcg10=value,
                 checkpoint=tmp_path / "model" / "checkpoints" / str(step))
    curve = quality.validation_curve("x", tmp_path / "model", tmp_path / "validation", env={})
    assert curve == [(500, 0.031), (1000, 0.047)] and not ran
    assert quality._curve_line(curve) == "validation NDCG@10 by step: 500:0.0310 1000:0.0470"
    _results(tmp_path / "test", split="test", ndcg10=0.9)
    with pytest.raises(ValueError, match="not a validation evaluation"):
        quality.validation_ndcg10(tmp_path / "test")


def test_validation_curve_evaluates_a_missing_step_on_the_validation_split(tmp_path, monkeypatch):
    monkeypatch.setattr(quality, "checkpoint_steps", lambda model_dir: [1000])
    commands = []

    def fake_run(stage, args, env):
        commands.append(args)
        _results(tmp_path / "validation" / "1000", split="validation", ndcg10=0.05)

    monkeypatch.setattr(quality, "_run", fake_run)
    curve = quality.validation_curve("x", tmp_path / "model", tmp_path / "validation", env={})
    assert curve == [(1000, 0.05)]
    (args,) = commands
    assert f"--gin.CHECKPOINT_PATH='{tmp_path / 'model' / 'checkpoints' / '1000'}'" in args
    assert "--gin.MIXTURE_OR_TASK_NAME='p5_x_sequential_2_3'" in args
    assert "--gin.evaluate.split='validation'" in args


def test_validation_curve_evaluates_again_a_folder_of_another_checkpoint(tmp_path, monkeypatch):
    """A folder with no record, or the record of another saved state (a run trained again in
    the same MODEL_DIR), is evaluated again and then records the checkpoint it evaluated."""
    step_folder = tmp_path / "model" / "checkpoints" / "500"
    monkeypatch.setattr(quality, "checkpoint_steps", lambda model_dir: [500])
    step_folder.mkdir(parents=True)
    digest = {"value": "aaaa"}
    monkeypatch.setattr("p5_jax.checkpoints.saved_state_digest", lambda folder: digest["value"])
    ran = []

    def fake_run(stage, args, env):
        ran.append(stage)
        _results(tmp_path / "validation" / "500", split="validation", ndcg10=0.06)

    monkeypatch.setattr(quality, "_run", fake_run)
    _results(tmp_path / "validation" / "500", split="validation", ndcg10=0.02)
    assert quality.validation_curve("x", tmp_path / "model", tmp_path / "validation",
                                    env={}) == [(500, 0.06)]
    assert quality.validation_curve("x", tmp_path / "model", tmp_path / "validation",
                                    env={}) == [(500, 0.06)]
    assert ran == ["validate step 500"]
    record = json.loads((tmp_path / "validation" / "500" / quality.CHECKPOINT_RECORD).read_text())
    assert record == {"checkpoint": str(step_folder), "state_digest": "aaaa"}
    digest["value"] = "bbbb"
    quality.validation_curve("x", tmp_path / "model", tmp_path / "validation", env={})
    assert ran == ["validate step 500"] * 2


def test_validation_curve_evaluates_again_a_folder_whose_record_was_cut_short(
        tmp_path, monkeypatch):
    """A record cut short (a crash while writing it) counts as no record: the step is evaluated
    again and the record rewritten whole, with no temporary file left beside it."""
    step_folder = tmp_path / "model" / "checkpoints" / "500"
    step_folder.mkdir(parents=True)
    monkeypatch.setattr(quality, "checkpoint_steps", lambda model_dir: [500])
    monkeypatch.setattr("p5_jax.checkpoints.saved_state_digest", lambda folder: "cccc")
    folder = tmp_path / "validation" / "500"
    ran = []

    def fake_run(stage, args, env):
        ran.append(stage)
        _results(folder, split="validation", ndcg10=0.04)

    monkeypatch.setattr(quality, "_run", fake_run)
    _results(folder, split="validation", ndcg10=0.01)
    whole = json.dumps(quality.checkpoint_identity(step_folder))
    (folder / quality.CHECKPOINT_RECORD).write_text(whole[:len(whole) // 2])
    assert quality.validation_curve("x", tmp_path / "model", tmp_path / "validation",
                                    env={}) == [(500, 0.04)]
    assert ran == ["validate step 500"]
    assert json.loads((folder / quality.CHECKPOINT_RECORD).read_text())["state_digest"] == "cccc"
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint.json", "results.json"]
