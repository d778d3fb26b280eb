"""Two real JAX processes, one stream: what launch_tpu.sh and docs/TRAINING.md run.

Two local processes (jax.distributed, CPU collectives over gloo, 4 host devices each) train the
tiny model on a real mixture for 3 steps, checkpoint and stop; one process with 8 devices resumes
and trains to step 5. At step 3 and at step 5 the data position equals that of a single-process
8-device run of the same job exactly (the same batches), and so do the parameters, within
|a - b| <= 1e-5 * max|leaf| + 1e-7: gloo's cross-process all-reduce sums the 8 devices'
gradients in another order than XLA's in-process one, so 3-6% of the values differ in their
last bits (seen: at most 2.4e-7, 1.5e-7 of the leaf's largest value); nothing else differs.
Then the two processes split an evaluation (each decodes its share of the batches on its own
devices) and write the results.json of a single-process evaluation. Slow (minutes): run with
--runslow.
Also the round-robin sharing of evaluation batches (fast).
"""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from p5_jax import checkpoints, multihost

TRAIN = ["-m", "p5_jax.train", "--gin_file=gin/runs/train.gin", "--gin_file=gin/models/tiny.gin",
         "--gin.MIXTURE_OR_TASK_NAME='p5_musical_instruments_sequential'",
         "--gin.TASK_FEATURE_LENGTHS={'inputs': 128, 'targets': 16}", "--gin.BATCH_SIZE=16",
         "--gin.train.checkpoint_every=3", "--gin.train.log_every=1",
         "--gin.train.eval_every=0", "--gin.train.show_progress=False",
         # Constant after warmup: a run stopped at TRAIN_STEPS=3 trains as the 5-step run.
         "--gin.make_schedule.name='constant'", "--gin.make_schedule.warmup_steps=1"]
EVAL_TASKS = ",".join(f"p5_musical_instruments_{name}" for name in (
    "sequential_2_1", "sequential_2_7", "direct_5_1", "rating_1_1"))
EVAL = ["-m", "p5_jax.eval", "--gin_file=gin/runs/eval.gin", "--gin_file=gin/models/tiny.gin",
        f"--gin.MIXTURE_OR_TASK_NAME='{EVAL_TASKS}'", "--gin.MAX_USERS_PER_TASK=4",
        "--gin.EVAL_BATCH_SIZE=8", "--gin.evaluate.include_unseen=False",
        "--gin.evaluate.bootstrap_resamples=50"]
TIMEOUT_S = 1800
PARAM_RTOL = 1e-5   # of the leaf's largest value (see the module docstring)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def run_job(args, *, processes: int, devices: int) -> None:
    """`python <args>` as `processes` JAX processes of `devices` CPU devices each (the
    variables docs/TRAINING.md gives a multi-host job)."""
    base = {**os.environ, "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    if processes > 1:
        base.update(JAX_COORDINATOR_ADDRESS=f"localhost:{_free_port()}",
                    JAX_NUM_PROCESSES=str(processes))
    jobs = [subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True,
                             env={**base, "JAX_PROCESS_ID": str(index)} if processes > 1
                             else base) for index in range(processes)]
    outputs = [job.communicate(timeout=TIMEOUT_S)[0] for job in jobs]
    for index, (job, output) in enumerate(zip(jobs, outputs)):
        assert job.returncode == 0, f"process {index} of {processes} failed:\n{output[-5000:]}"


def _assert_same_training(got_dir, want_dir, step):
    """The same data position, and parameters equal up to the all-reduce's summation order."""
    position = [json.loads((d / "checkpoints" / str(step) / checkpoints.DATA_ITEM /
                            "metadata").read_text()) for d in (got_dir, want_dir)]
    assert position[0] == position[1]
    got, want = (checkpoints.read_params(directory=d / "checkpoints", step=step)
                 for d in (got_dir, want_dir))
    assert got.keys() == want.keys()
    for path in want:
        scale = float(np.max(np.abs(want[path])))
        np.testing.assert_allclose(got[path], want[path], rtol=0, atol=PARAM_RTOL * scale + 1e-7,
                                   err_msg="/".join(path))


@pytest.mark.slow
def test_two_processes_train_resume_on_one_and_evaluate_as_one(tmp_path):
    single, split = tmp_path / "single", tmp_path / "split"
    run_job([*TRAIN, f"--gin.MODEL_DIR='{single}'", "--gin.TRAIN_STEPS=5"],
            processes=1, devices=8)
    run_job([*TRAIN, f"--gin.MODEL_DIR='{split}'", "--gin.TRAIN_STEPS=3"],
            processes=2, devices=4)
    _assert_same_training(split, single, 3)
    run_job([*TRAIN, f"--gin.MODEL_DIR='{split}'", "--gin.TRAIN_STEPS=5"],
            processes=1, devices=8)
    _assert_same_training(split, single, 5)

    results = {}
    for name, processes, devices in (("one", 1, 8), ("two", 2, 4)):
        out = tmp_path / f"eval_{name}"
        run_job([*EVAL, f"--gin.CHECKPOINT_PATH='{single}'", f"--gin.EVAL_OUTPUT_DIR='{out}'"],
                processes=processes, devices=devices)
        results[name] = json.loads((out / "results.json").read_text())
    assert results["two"] == results["one"]


def test_batches_go_round_robin_and_come_back_in_order(monkeypatch):
    monkeypatch.setattr(multihost.jax, "process_count", lambda: 2)
    monkeypatch.setattr(multihost.jax, "process_index", lambda: 1)
    assert [i for i in range(5) if multihost.is_mine(i)] == [1, 3]
    shares = [["b0", "b2", "b4"], ["b1", "b3"]]
    monkeypatch.setattr(multihost, "allgather", lambda mine: shares)
    assert multihost.gather_shares(shares[1]) == ["b0", "b1", "b2", "b3", "b4"]
