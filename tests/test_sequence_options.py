"""The history length a run trains with travels with its checkpoints to evaluation."""
import json

import pytest

from p5_jax import eval as eval_job
from p5_jax import gin_bindings, sequence_options
from p5_tasks import preprocessors, registration

DEFAULT = preprocessors.MAX_HISTORY


@pytest.fixture
def restored_history():
    yield
    registration.set_sequence_options(max_history=DEFAULT)


def test_recorded_history_is_read_from_the_checkpoints_folder(tmp_path, restored_history):
    registration.set_sequence_options(max_history=7)
    sequence_options.record(str(tmp_path), "p5_ml100k_recommend")
    assert json.loads((tmp_path / sequence_options.FILE).read_text()) == {"max_history": 7}
    assert sequence_options.recorded_max_history(tmp_path / "checkpoints") == 7
    assert sequence_options.recorded_max_history(tmp_path / "elsewhere") is None


def test_evaluation_follows_the_recorded_history_unless_told(tmp_path, restored_history):
    (tmp_path / sequence_options.FILE).write_text(json.dumps({"max_history": 9}))
    assert eval_job._use_max_history(None, tmp_path / "checkpoints") == 9
    assert registration.registered_spec("ml100k").max_history == 9
    assert eval_job._use_max_history(5, tmp_path / "checkpoints") == 5
    assert registration.registered_spec("ml100k").max_history == 5
    with pytest.raises(gin_bindings.JobError, match="max_history"):
        eval_job._use_max_history(0, tmp_path)


def test_without_a_record_evaluation_keeps_the_default(tmp_path):
    assert eval_job._use_max_history(None, tmp_path) == DEFAULT
    assert registration.registered_spec("ml100k").max_history == DEFAULT


def test_a_step_folder_finds_what_its_run_recorded(tmp_path, restored_history):
    (tmp_path / sequence_options.FILE).write_text(json.dumps({"max_history": 6}))
    step_folder = tmp_path / "checkpoints" / "1500"
    step_folder.mkdir(parents=True)
    assert sequence_options.recorded_max_history(step_folder) == 6
    assert sequence_options.recorded_max_history(tmp_path / "other" / "1500") is None
