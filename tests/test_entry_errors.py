"""Every entry point answers an expected user mistake with one `error: ...` line and exit status
2, no traceback; `--debug` lets the error through with its traceback instead.

The entry points run in-process (their `main` behind the same guard `python -m` uses); one
subprocess checks the real process end to end.
"""
import os
import subprocess
import sys

import gin
import pytest
import seqio
from absl import flags

import p5_tasks
from p5_jax import baselines, gin_bindings, list_tasks, paths
from p5_jax import eval as eval_entry
from p5_jax import infer as infer_entry
from p5_jax import train as train_entry
from p5_jax.data import prepare

import eval_data

TASK = f"p5_{eval_data.DATASET}_sequential_2_3"
TRAIN = ["--gin_file=runs/train.gin", "--gin_file=models/tiny.gin", "--gin.TRAIN_STEPS=1",
         f"--gin.MIXTURE_OR_TASK_NAME='{TASK}'"]
EVAL = ["--gin_file=runs/eval.gin", "--gin_file=models/tiny.gin",
        f"--gin.MIXTURE_OR_TASK_NAME='{TASK}'"]
INFER = ["--gin_file=runs/infer.gin", "--gin_file=models/tiny.gin",
         f"--gin.DATASET='{eval_data.DATASET}'"]
SHORT_LENGTHS = "--gin.TASK_FEATURE_LENGTHS={'inputs': 64}"

env = eval_data.module_environment("entry_errors")


def tiny_run(model_dir, *, pieces: int):
    """`model_dir` holding one step of the model gin/models/tiny.gin gives for `pieces`."""
    gin.clear_config()
    try:
        gin_bindings.parse_config(gin_files=["models/tiny.gin"], gin_bindings=[])
        model = gin_bindings.build_model(seqio.PassThroughVocabulary(size=pieces))
        eval_data.save_checkpoint(model=model, directory=model_dir / "checkpoints")
    finally:
        gin.clear_config()
    return model_dir


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A MODEL_DIR of gin/models/tiny.gin with 128 pieces (not the tasks' vocabulary)."""
    return tiny_run(tmp_path_factory.mktemp("tiny_run"), pieces=100)


@pytest.fixture(scope="module")
def fitting_checkpoint(env, tmp_path_factory):
    """A MODEL_DIR of gin/models/tiny.gin that fits the tasks' vocabulary."""
    vocab = p5_tasks.OUTPUT_FEATURES["targets"].vocabulary
    return tiny_run(tmp_path_factory.mktemp("tiny_fit"), pieces=vocab.vocab_size)


@pytest.fixture
def user(env):
    from p5_jax import recommend
    return sorted(recommend.read_users(env / eval_data.DATASET))[0]


def _exit_status(code: str | int | None) -> int:
    """The process exit status of `SystemExit(code)`: None is 0, a message is 1."""
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def run_absl(main, *args: str) -> int:
    """The exit status of an absl entry point's `main` run on `args` as `python -m` runs it."""
    flags.FLAGS.unparse_flags()
    gin.clear_config()
    try:
        gin_bindings.report_job_errors(main)(gin_bindings.parse_flags(["prog", *args]))
    except SystemExit as exited:
        return _exit_status(exited.code)
    finally:
        gin.clear_config()
        flags.FLAGS.unparse_flags()
    return 0


def run_argparse(main, *args: str) -> int:
    """The exit status of an argparse entry point's `main` on `args`."""
    try:
        return main(list(args))
    except SystemExit as exited:
        return _exit_status(exited.code)


def error_line(capsys, status: int, *, last: bool = True) -> str:
    """The one `error:` line on stderr, after checking the status and that no traceback shows."""
    err = capsys.readouterr().err
    assert status == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, err
    if last:
        assert lines[-1] == errors[0], err
    return errors[0]


# -- gin mistakes ----------------------------------------------------------------------------------
def test_a_macro_typo_names_the_typo_and_the_macro(capsys):
    status = run_absl(eval_entry.main, *EVAL, "--gin.CHECKPONT_PATH='/tmp/x'")
    assert error_line(capsys, status) == (
        "error: unknown gin macro CHECKPONT_PATH (did you mean CHECKPOINT_PATH?)")


def test_an_unset_required_macro_says_how_to_set_it(capsys):
    status = run_absl(eval_entry.main, *EVAL)
    assert error_line(capsys, status).startswith(
        "error: gin macro CHECKPOINT_PATH is required (%gin.REQUIRED) but not set: add "
        "--gin.CHECKPOINT_PATH=")


def test_a_parameter_typo_names_the_nearest_parameter(capsys):
    status = run_absl(train_entry.main, *TRAIN, "--gin.MODEL_DIR='/tmp/x'",
                      "--gin.train.trian_steps=3")
    assert error_line(capsys, status) == ("error: unknown gin parameter train.trian_steps (did "
                                          "you mean train.train_steps?) in the --gin bindings")


def test_a_typo_in_a_gin_file_names_the_file_and_line(tmp_path, capsys):
    gin_file = tmp_path / "mine.gin"
    gin_file.write_text("train.seed = 1\nT5Config.d_modle = 8\n")
    status = run_absl(train_entry.main, *TRAIN, f"--gin_file={gin_file}", "--gin.MODEL_DIR='/x'")
    assert error_line(capsys, status) == (
        f"error: unknown gin parameter T5Config.d_modle (did you mean T5Config.d_model?) at "
        f"{gin_file}:2")


def test_a_configurable_typo_and_a_missing_gin_file(capsys):
    status = run_absl(train_entry.main, *TRAIN, "--gin.MODEL_DIR='/x'", "--gin.trian.seed=1")
    assert "unknown gin configurable trian (did you mean train?)" in error_line(capsys, status)
    status = run_absl(train_entry.main, "--gin_file=runs/trian.gin")
    assert error_line(capsys, status).startswith("error: gin file 'runs/trian.gin' not found")


def test_a_malformed_gin_flag(capsys):
    status = run_absl(train_entry.main, *TRAIN, "--gin.MODEL_DIR")
    assert "Expected --gin.NAME=VALUE, got '--gin.MODEL_DIR'" in error_line(capsys, status)


def test_a_gin_value_that_does_not_parse_names_its_binding(capsys):
    status = run_absl(train_entry.main, *TRAIN, "--gin.MODEL_DIR=/x")
    assert error_line(capsys, status) == (
        "error: bad gin value in --gin.MODEL_DIR = /x (strings need quotes: --gin.NAME=\"'text'\")")
    status = run_absl(train_entry.main, *TRAIN, "--gin.MODEL_DIR='/x'",
                      "--gin.TASK_FEATURE_LENGTHS={'inputs': 8")
    assert error_line(capsys, status).endswith("in --gin.TASK_FEATURE_LENGTHS = {'inputs': 8")


def test_debug_shows_the_gin_error_with_its_cause():
    with pytest.raises(gin_bindings.GinConfigError, match="trian_steps") as raised:
        run_absl(train_entry.main, *TRAIN, "--gin.MODEL_DIR='/x'", "--gin.train.trian_steps=3",
                 "--debug")
    assert "doesn't have a parameter named 'trian_steps'" in str(raised.value.__cause__)


# -- train ------------------------------------------------------------------------------------
def test_train_unknown_task_short_lengths_missing_initial_checkpoint_bad_mesh(tmp_path, capsys):
    common = [*TRAIN, f"--gin.MODEL_DIR='{tmp_path / 'run'}'"]
    status = run_absl(train_entry.main, *common, "--gin.MIXTURE_OR_TASK_NAME='p5_nosuch_all'")
    assert error_line(capsys, status).startswith("error: unknown task or mixture 'p5_nosuch_all'")
    status = run_absl(train_entry.main, *common, SHORT_LENGTHS)
    assert error_line(capsys, status).startswith(
        "error: TASK_FEATURE_LENGTHS {'inputs': 64} needs a positive length for 'targets'")
    status = run_absl(train_entry.main, *common, f"--gin.INITIAL_CHECKPOINT='{tmp_path}/nope'")
    assert f"INITIAL_CHECKPOINT {tmp_path}/nope" in error_line(capsys, status)
    status = run_absl(train_entry.main, *common, "--gin.train.model_parallel=3")
    assert "does not divide" in error_line(capsys, status)


# -- eval -------------------------------------------------------------------------------------
def test_eval_missing_path_empty_folder_and_unknown_task(tmp_path, capsys):
    status = run_absl(eval_entry.main, *EVAL, f"--gin.CHECKPOINT_PATH='{tmp_path}/nope'")
    assert error_line(capsys, status) == (
        f"error: CHECKPOINT_PATH: checkpoint path {tmp_path}/nope is not a directory")
    status = run_absl(eval_entry.main, *EVAL, f"--gin.CHECKPOINT_PATH='{tmp_path}'")
    assert error_line(capsys, status).startswith(
        f"error: CHECKPOINT_PATH: no complete checkpoint under {tmp_path}")
    status = run_absl(eval_entry.main, *EVAL, f"--gin.CHECKPOINT_PATH='{tmp_path}'",
                      "--gin.MIXTURE_OR_TASK_NAME='p5_nosuch_all'")
    assert error_line(capsys, status).startswith("error: unknown task or mixture 'p5_nosuch_all'")
    status = run_absl(eval_entry.main, *EVAL, f"--gin.CHECKPOINT_PATH='{tmp_path}'",
                      SHORT_LENGTHS)
    assert "needs a positive length for 'targets'" in error_line(capsys, status)


@pytest.mark.parametrize("entry", ["eval", "infer"])
def test_a_model_file_that_does_not_fit_the_checkpoint_names_the_one_that_does(
        entry, checkpoint, request, capsys):
    main, args = (eval_entry.main, EVAL) if entry == "eval" else (
        infer_entry.main, [*INFER, f"--user={request.getfixturevalue('user')}"])
    status = run_absl(main, *args, "--gin_file=models/small.gin",
                      f"--gin.CHECKPOINT_PATH='{checkpoint}'")
    line = error_line(capsys, status)
    assert line.startswith("error: CHECKPOINT_PATH is a p5-jax tiny (d_model 64, 2+2 layers) "
                           "but the gin model has d_model 512"), line
    assert line.endswith("; use --gin_file=gin/models/tiny.gin"), line


# -- infer ------------------------------------------------------------------------------------
def test_infer_unknown_or_unprepared_dataset_and_unknown_user(env, user, tmp_path, capsys):
    args = [*INFER, f"--gin.CHECKPOINT_PATH='{tmp_path}'"]
    status = run_absl(infer_entry.main, *args, "--user=1", "--gin.DATASET='nosuch'")
    assert error_line(capsys, status).startswith("error: unknown dataset 'nosuch'")
    status = run_absl(infer_entry.main, *args, "--user=1", "--gin.DATASET='toys'")
    assert error_line(capsys, status) == (
        f"error: toys is not prepared (no {env}/toys/manifest.json); run python -m "
        f"p5_jax.data.prepare --dataset toys")
    status = run_absl(infer_entry.main, *args, "--user=nobody")
    assert error_line(capsys, status).startswith(
        f"error: unknown user 'nobody' in {eval_data.DATASET}")
    status = run_absl(infer_entry.main, *args, f"--user={user}", "--item=nothing")
    assert error_line(capsys, status).startswith("error: unknown item 'nothing'")
    status = run_absl(infer_entry.main, *args, f"--user={user}", SHORT_LENGTHS)
    assert "needs a positive length for 'targets'" in error_line(capsys, status)
    status = run_absl(infer_entry.main, *args, f"--user={user}")
    assert error_line(capsys, status).startswith("error: CHECKPOINT_PATH: no complete checkpoint")


def test_infer_missing_user_unknown_flag_bad_value_stray_argument(capsys):
    args = [*INFER, "--gin.CHECKPOINT_PATH='/x'"]
    status = run_absl(infer_entry.main, *args)
    assert error_line(capsys, status) == (
        "error: --user=ID is required (a user id of the prepared DATASET)")
    status = run_absl(infer_entry.main, *args, "--usr=1")
    assert error_line(capsys, status).startswith("error: Unknown command line flag 'usr'")
    status = run_absl(infer_entry.main, *args, "--user=1", "--top_k=many")
    assert error_line(capsys, status).startswith("error: flag --top_k=many: ")
    status = run_absl(infer_entry.main, *args, "--user=1", "17")
    assert error_line(capsys, status) == (
        "error: unexpected arguments ['17']: flags are --NAME=VALUE, gin bindings "
        "--gin.NAME=VALUE")


def test_debug_shows_the_infer_error():
    with pytest.raises(gin_bindings.JobError, match="unknown dataset 'nosuch'"):
        run_absl(infer_entry.main, *INFER, "--user=1", "--gin.CHECKPOINT_PATH='/x'",
                 "--gin.DATASET='nosuch'", "--debug")


# -- an input length that drops history or candidates ------------------------------------------
def test_infer_refuses_an_input_length_that_drops_history(fitting_checkpoint, user, capsys):
    status = run_absl(infer_entry.main, *INFER, f"--user={user}",
                      f"--gin.CHECKPOINT_PATH='{fitting_checkpoint}'",
                      "--gin.TASK_FEATURE_LENGTHS={'inputs': 16, 'targets': 16}")
    line = error_line(capsys, status)
    assert line.startswith(f"error: user {user}: input length 16 drops "), line
    assert "history items of prompt 2-3; an input length of " in line
    assert line.endswith("or answer with --gin.infer.on_truncation=\"'warn'\""), line


def test_eval_refuses_an_input_length_that_drops_candidates(fitting_checkpoint, tmp_path,
                                                            capsys):
    """Inputs of 8 tokens leave one candidate of 6 shown: refused, nothing written."""
    task = f"p5_{eval_data.DATASET}_direct_5_5"
    status = run_absl(eval_entry.main, *EVAL, f"--gin.MIXTURE_OR_TASK_NAME='{task}'",
                      f"--gin.CHECKPOINT_PATH='{fitting_checkpoint}'",
                      f"--gin.EVAL_OUTPUT_DIR='{tmp_path}'", "--gin.evaluate.fit_candidates=False",
                      "--gin.evaluate.include_unseen=False",
                      "--gin.TASK_FEATURE_LENGTHS={'inputs': 8, 'targets': 16}")
    line = error_line(capsys, status)
    assert line.startswith(f"error: {task}: input length 8 drops ids from "), line
    assert "(candidates from " in line and not any(tmp_path.iterdir())


# -- list_tasks, prepare and baselines (argparse) ---------------------------------------------
def test_argparse_flag_mistakes_are_one_line(tmp_path, capsys):
    status = run_argparse(prepare.main)
    assert error_line(capsys, status) == ("error: the following arguments are required: "
                                          "--dataset (see python -m p5_jax.data.prepare --help)")
    status = run_argparse(list_tasks.main, "--num", "three")
    assert error_line(capsys, status).startswith("error: argument --num: invalid int value")
    status = run_argparse(baselines.main, "--dataset", "x", "--windows", "first")
    assert error_line(capsys, status).startswith("error: argument --windows: invalid choice")


def test_baselines_unknown_dataset_and_debug(tmp_path, capsys):
    args = ["--dataset", "nosuch", "--data_dir", str(tmp_path)]
    status = run_argparse(baselines.main, *args)
    assert error_line(capsys, status).startswith(
        f"error: unknown dataset 'nosuch': not prepared under {tmp_path}")
    with pytest.raises(ValueError, match="unknown dataset 'nosuch'"):
        baselines.main([*args, "--debug"])


# -- list_tasks and prepare (argparse) --------------------------------------------------------
def test_list_tasks_unknown_name(capsys):
    status = list_tasks.main(["--show", "p5_nosuch_all"])
    assert error_line(capsys, status).startswith("error: unknown task or mixture 'p5_nosuch_all'")
    with pytest.raises(ValueError, match="p5_nosuch_all"):
        list_tasks.main(["--show", "p5_nosuch_all", "--debug"])


def test_prepare_unknown_dataset_and_missing_source(tmp_path, capsys):
    status = prepare.main(["--dataset", "nosuch", "--out_dir", str(tmp_path)])
    line = error_line(capsys, status)
    assert line.startswith("error: unknown dataset 'nosuch'") and line.endswith(
        " (nothing was written)")
    status = prepare.main(["--dataset", "mine", "--source", str(tmp_path / "nope"), "--format",
                           "amazon", "--out_dir", str(tmp_path)])
    assert error_line(capsys, status) == (
        f"error: {tmp_path / 'nope'}: no such file or directory (nothing was written)")
    with pytest.raises(ValueError, match="unknown dataset 'nosuch'"):
        prepare.main(["--dataset", "nosuch", "--out_dir", str(tmp_path), "--debug"])


# -- the real process -------------------------------------------------------------------------
def _run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(paths.REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          env=environ, cwd=paths.REPO_ROOT, timeout=900)


def test_the_process_prints_one_error_line_and_exits_2():
    done = _run_module("p5_jax.eval", *EVAL, "--gin.CHECKPONT_PATH='/tmp/x'")
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert lines[-1] == "error: unknown gin macro CHECKPONT_PATH (did you mean CHECKPOINT_PATH?)"


def test_a_missing_flag_is_one_line_from_the_process():
    done = _run_module("p5_jax.baselines")
    assert done.returncode == 2 and done.stdout == "", done
    assert done.stderr == ("error: the following arguments are required: --dataset (see "
                           "python -m p5_jax.baselines --help)\n")


@pytest.mark.slow
def test_the_process_shows_the_traceback_with_debug():
    done = _run_module("p5_jax.eval", *EVAL, "--gin.CHECKPONT_PATH='/tmp/x'", "--debug")
    assert done.returncode != 0 and "Traceback" in done.stderr, done.stderr
    assert "GinConfigError: unknown gin macro CHECKPONT_PATH" in done.stderr
