"""The gin entry point of evaluation: required settings, experiment files, a tiny run end to end."""
import json

import gin
import pytest

import p5_tasks  # noqa: F401
from p5_jax import eval as eval_entry
from p5_jax import gin_bindings

import eval_data

TASK = "p5_musical_instruments_sequential_2_3"


@pytest.fixture
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def _parse(files, bindings):
    gin_bindings.parse_config(gin_files=files, gin_bindings=bindings)


def test_missing_checkpoint_path_is_a_clear_error_before_any_work(clean_gin):
    with pytest.raises(ValueError, match="CHECKPOINT_PATH.*gin.REQUIRED"):
        _parse(["runs/eval.gin", "models/tiny.gin"], [f"MIXTURE_OR_TASK_NAME = '{TASK}'"])


def test_misspelled_binding_fails_at_parse_time(clean_gin):
    with pytest.raises(ValueError, match="max_examples"):
        _parse(["runs/eval.gin", "models/tiny.gin"], ["evaluate.max_examples = 3"])


def test_beauty_to_toys_is_zero_shot_on_toys(clean_gin):
    _parse(["experiments/beauty_to_toys.gin", "models/small.gin"],
           ["CHECKPOINT_PATH = '/tmp/beauty'"])
    # Only toys' Z (metadata) prompts: ids do not transfer between datasets.
    assert gin.query_parameter("%MIXTURE_OR_TASK_NAME") == "p5_toys_zeroshot"
    assert gin.query_parameter("evaluate.include_unseen") is False
    assert gin.query_parameter("evaluate.zero_shot_domain") is True


@pytest.mark.slow
def test_eval_writes_both_protocols_with_user_cap_and_unseen_tables(tmp_path, clean_gin):
    with pytest.MonkeyPatch.context() as monkeypatch:
        eval_data.environment(tmp_path, monkeypatch)
        try:
            _parse(["runs/eval.gin", "models/tiny.gin"], [
                f"CHECKPOINT_PATH = '{tmp_path / 'run'}'", f"MIXTURE_OR_TASK_NAME = '{TASK}'",
                f"EVAL_OUTPUT_DIR = '{tmp_path / 'eval'}'", "MAX_USERS_PER_TASK = 3",
                "PROTOCOLS = ['exact', 'p5']", "EVAL_BATCH_SIZE = 8",
                "TASK_FEATURE_LENGTHS = {'inputs': 96, 'targets': 16}"])
            eval_data.save_checkpoint(model=eval_entry.build_model(TASK),
                                      directory=tmp_path / "run" / "checkpoints", step=5)
            eval_entry.evaluate(show_progress=False)
        finally:
            eval_data.forget_vocabulary_file()
    for protocol, candidates in (("exact", "candidates"), ("p5", "free_beam")):
        folder = tmp_path / "eval" / protocol
        payload = json.loads((folder / "results.json").read_text())
        assert payload["protocol"]["name"] == protocol
        assert payload["settings"]["max_users_per_task"] == 3 and payload["settings"]["step"] == 5
        assert payload["data"]["review_split"] == "aligned" and not payload["data"]["warnings"]
        tasks = {t["task"]: t for t in payload["tasks"]}
        assert not tasks[TASK]["unseen"] and tasks[TASK]["metrics"]["count"] == 3
        assert set(tasks[TASK]["intervals"]) >= {"hr@5", "ndcg@10"}
        direct = tasks["p5_musical_instruments_direct_5_8"]
        assert direct["unseen"] and direct["metrics"]["candidates_shown_min"] == 6
        assert payload["decoding"]["p5_musical_instruments_direct_5_8"] == candidates
        assert "most popular (train)" in payload["baselines"]["sequential"]
        markdown = (folder / "results.md").read_text()
        assert "at most 3, sampled at random" in markdown
        assert "Unseen prompts (zero-shot)" in markdown and f"protocol: **{protocol}**" in markdown
        assert (folder / "predictions" / f"{TASK}.jsonl").is_file()


def test_an_unknown_split_is_a_job_error_before_any_work(tmp_path, clean_gin):
    with pytest.raises(gin_bindings.JobError, match="evaluate.split: 'train' is not one of"):
        eval_entry.evaluate(checkpoint_path=str(tmp_path / "absent"), mixture_or_task_name=TASK,
                            task_feature_lengths={"inputs": 64, "targets": 8}, split="train")
