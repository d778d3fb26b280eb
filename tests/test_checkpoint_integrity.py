"""Damaged checkpoints: each kind of damage to the newest step falls back to the previous step
with one warning line naming the step and the reason, or stops with one error line."""
import gc
import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from p5_jax import checkpoints, trainer

from test_checkpoints import batches, dropout_trainer
from test_trainer import make_trainer

STEPS = (70, 75, 80)
ZSTD_MAGIC = bytes.fromhex("28b52ffd")


def state_at(step):
    """A real train state whose every leaf differs from one step to the next. Random mantissas
    and exponents make every byte count (zstd stores the chunks as raw blocks)."""
    state = make_trainer().create_state(seed=step)
    rng = np.random.default_rng(step)

    def fill(x):
        if not jnp.issubdtype(x.dtype, jnp.floating):
            return x + jnp.asarray(step, x.dtype)
        values = rng.standard_normal(x.shape) * 2.0 ** rng.integers(-60, 60, x.shape)
        return jax.device_put(values.astype(x.dtype), x.sharding)

    return jax.tree.map(fill, state)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pristine")
    with checkpoints.Checkpointer(directory=directory, save_every=5) as ckpt:
        for step in STEPS:
            ckpt.save(step=step, state=state_at(step), data_position={"batches_consumed": step})
        ckpt.wait()
    return directory


@pytest.fixture
def run_dir(saved, tmp_path):
    directory = tmp_path / "checkpoints"
    shutil.copytree(saved, directory)
    return directory


# -- damage ------------------------------------------------------------------------------------
def array_file(step_dir):
    """The largest OCDBT data file of array chunks: zstd frames, then a B-tree node."""
    files = [path for path in (step_dir / "state").glob("ocdbt.process_*/d/*")
             if path.read_bytes()[:4] == ZSTD_MAGIC]
    return max(files, key=lambda path: path.stat().st_size)


def chunk_blocks(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of the zstd blocks of the chunk frames at the start of a data file."""
    blocks, pos = [], 0
    while data[pos:pos + 4] == ZSTD_MAGIC:
        descriptor, pos = data[pos + 4], pos + 5
        single = descriptor >> 5 & 1
        pos += (1 - single) + (0, 1, 2, 4)[descriptor & 3] + (single, 2, 4, 8)[descriptor >> 6]
        last = 0
        while not last:
            header = int.from_bytes(data[pos:pos + 3], "little")
            last, kind, size = header & 1, header >> 1 & 3, header >> 3
            assert kind == 0, "expected raw blocks (incompressible test arrays)"
            blocks.append((pos + 3, size))
            pos += 3 + size
        pos += 4 if descriptor & 4 else 0
    assert blocks, "no array chunks found"
    return blocks


def xor_middle(step_dir):
    """256 bytes XOR-ed in the middle of the data file's chunks, inside one raw zstd block:
    the file still decodes, with wrong values."""
    path = array_file(step_dir)
    data = bytearray(path.read_bytes())
    blocks = chunk_blocks(data)
    offset, size = blocks[len(blocks) // 2]
    start = offset + size // 2 - 128
    data[start:start + 256] = bytes(b ^ 0xFF for b in data[start:start + 256])
    path.write_bytes(bytes(data))


def truncate(step_dir):
    """The array data file cut to half of its chunks."""
    path = array_file(step_dir)
    data = path.read_bytes()
    blocks = chunk_blocks(data)
    path.write_bytes(data[:blocks[len(blocks) // 2][0]])


def truncate_root(step_dir):
    """The top-level B-tree node (with the small arrays' values) cut to half."""
    (path,) = (step_dir / "state" / "d").iterdir()
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def empty(step_dir):
    shutil.rmtree(step_dir)
    step_dir.mkdir()


def write_position(value):
    def damage(step_dir):
        (step_dir / "data_position" / "metadata").write_text(json.dumps(value))
    return damage


DAMAGES = {
    "array data file cut in half": (truncate, "unreadable: "),
    "root node file cut in half": (truncate_root, "unreadable: "),
    "deleted manifest.ocdbt": (lambda d: (d / "state" / "manifest.ocdbt").unlink(),
                               "missing state/manifest.ocdbt"),
    "empty step folder": (empty, "empty folder"),
    "no commit marker": (lambda d: (d / "commit_success.txt").unlink(),
                         "missing commit_success.txt"),
    "deleted checksums": (lambda d: shutil.rmtree(d / "checksums"), "missing checksums/metadata"),
    "truncated state/_METADATA": (lambda d: (d / "state" / "_METADATA").write_text('{"tree": '),
                                  "unreadable state/_METADATA: JSONDecodeError: "),
    "256 XOR-ed bytes": (xor_middle, "checksum mismatch in "),
    "garbage data position": (write_position({"batches_consumed": "lots"}),
                              "bad data position batches_consumed='lots'"),
    "negative data position": (write_position({"batches_consumed": -3}),
                               "bad data position batches_consumed=-3"),
    "plausible wrong data position": (write_position({"batches_consumed": 79}),
                                      "checksum mismatch in the data position"),
}


def restore(directory, **options):
    with checkpoints.Checkpointer(directory=directory, save_every=5, **options) as ckpt:
        return ckpt.restore(abstract_state=make_trainer().abstract_state())


def assert_state_of(state, position, step):
    assert position == {"batches_consumed": step}
    for got, want in zip(jax.tree.leaves(state), jax.tree.leaves(state_at(step)), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def output(capfd):
    gc.collect()
    time.sleep(0.2)  # reads orbax abandoned may still report back
    captured = capfd.readouterr()
    return captured.out + captured.err


def test_intact_steps_restore_silently(run_dir, capfd):
    assert_state_of(*restore(run_dir), 80)
    assert output(capfd) == ""


@pytest.mark.parametrize("kind", DAMAGES)
def test_damaged_latest_step_falls_back(run_dir, capfd, caplog, kind):
    damage, reason = DAMAGES[kind]
    damage(run_dir / "80")
    assert_state_of(*restore(run_dir), 75)
    assert not [record for record in caplog.records if "80" in record.getMessage()]
    text = output(capfd)
    assert text.startswith(f"warning: checkpoint step 80 under {run_dir} is damaged ({reason}")
    assert text.rstrip("\n").endswith("; using step 75")
    assert text.count("\n") == 1, text
    assert "Event loop is closed" not in text


RESTORE_IN_A_FRESH_PROCESS = """
import gc, pathlib, sys, time
sys.path.insert(0, {tests!r})
from test_checkpoint_integrity import assert_state_of, restore
for directory in sys.argv[1:]:
    assert_state_of(*restore(pathlib.Path(directory)), 75)
gc.collect()
time.sleep(0.5)
"""


def test_fallback_prints_one_line_outside_pytest(run_dir, tmp_path):
    """Outside pytest's own hooks, the reads orbax abandons after a truncated file (unraisable
    exceptions, asyncio's "exception was never retrieved") print nothing to stderr."""
    second = tmp_path / "second"
    shutil.copytree(run_dir, second)
    for directory in (run_dir, second):
        truncate(directory / "80")
    code = RESTORE_IN_A_FRESH_PROCESS.format(tests=str(pathlib.Path(__file__).parent))
    result = subprocess.run([sys.executable, "-c", code, str(run_dir), str(second)],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    ours = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert [line.split(" under ")[0] for line in ours] == ["warning: checkpoint step 80"] * 2
    for noise in ("Traceback", "Exception", "never retrieved", "Event loop is closed"):
        assert noise not in result.stderr, result.stderr[-3000:]


ABANDONED_READ_ERRORS = [
    RuntimeError("Event loop is closed"),
    ValueError('OUT_OF_RANGE: Error reading "opt_state.1.0.nu.encoder.layers_0.mlp.wo/7.0" in '
               'OCDBT database at local file "/tmp/run/80/state/": Requested byte range '
               '[80492, 81526) is not valid for value of size 69128'),
    ValueError("DATA_LOSS: Error reading local file [tensorstore_spec='{\\\"driver\\\": 1}']"),
]


def never_retrieved(error: BaseException) -> logging.LogRecord:
    """The record asyncio logs for a future whose exception nobody read."""
    return logging.LogRecord("asyncio", logging.ERROR, __file__, 0,
                             "Future exception was never retrieved\nfuture: <Future>", None,
                             (type(error), error, None))


@pytest.mark.parametrize("error", ABANDONED_READ_ERRORS, ids=["loop closed", "bare OCDBT range",
                                                               "with spec"])
def test_abandoned_read_errors_are_filtered_from_asyncio(error):
    assert not checkpoints._keep_asyncio_record(never_retrieved(error))


def test_other_asyncio_errors_are_kept():
    assert checkpoints._keep_asyncio_record(never_retrieved(ValueError("disk quota exceeded")))
    other = logging.LogRecord("asyncio", logging.ERROR, __file__, 0, "Task was destroyed",
                              None, (RuntimeError, RuntimeError("Event loop is closed"), None))
    assert checkpoints._keep_asyncio_record(other)


@pytest.mark.parametrize("kind", ["array data file cut in half", "256 XOR-ed bytes",
                                  "empty step folder"])
def test_stop_setting_raises_one_line(run_dir, capfd, kind):
    damage, reason = DAMAGES[kind]
    damage(run_dir / "80")
    with pytest.raises(checkpoints.DamagedCheckpointError) as raised:
        restore(run_dir, on_bad_checkpoint="stop")
    message = raised.value.message
    assert message.startswith(f"checkpoint step 80 under {run_dir} is damaged ({reason}")
    assert "on_bad_checkpoint='stop'" in message and "\n" not in message
    assert "Event loop is closed" not in output(capfd)


def test_every_step_damaged_is_an_error_not_a_fresh_start(run_dir, capfd):
    empty(run_dir / "70")
    truncate(run_dir / "75")
    xor_middle(run_dir / "80")
    with checkpoints.Checkpointer(directory=run_dir, save_every=5) as ckpt:
        assert ckpt.latest_step() == 80
        with pytest.raises(checkpoints.DamagedCheckpointError) as raised:
            trainer.initial_state(trainer=make_trainer(), seed=0, checkpointer=ckpt)
    message = raised.value.message
    assert message.startswith(f"every checkpoint under {run_dir} is damaged: step 80 (checksum")
    assert "step 75 (unreadable: " in message and "step 70 (empty folder)" in message
    assert "\n" not in message
    assert "Event loop is closed" not in output(capfd)


def test_incomplete_folders_are_never_complete(run_dir):
    empty(run_dir / "80")
    (run_dir / "75" / "commit_success.txt").unlink()
    assert checkpoints.latest_step(run_dir) == 70
    (run_dir / "70" / "state" / "_METADATA").write_text("{")  # what shapes are read from
    assert checkpoints.latest_step(run_dir) is None
    with checkpoints.Checkpointer(directory=run_dir, save_every=5) as ckpt:
        assert ckpt.all_steps() == []
        assert ckpt.step_folders() == [70, 75, 80]


def test_an_explicit_damaged_step_raises(run_dir):
    xor_middle(run_dir / "80")
    with checkpoints.Checkpointer(directory=run_dir, save_every=5) as ckpt:
        with pytest.raises(checkpoints.DamagedCheckpointError,
                           match=r"step 80 .* damaged \(checksum mismatch in "):
            ckpt.restore(abstract_state=make_trainer().abstract_state(), step=80)


def test_a_step_saved_without_checksums_restores_unverified(tmp_path, capfd):
    manager = ocp.CheckpointManager(
        tmp_path, item_names=(checkpoints.STATE_ITEM, checkpoints.DATA_ITEM),
        options=ocp.CheckpointManagerOptions(enable_async_checkpointing=False))
    manager.save(70, args=ocp.args.Composite(**{
        checkpoints.STATE_ITEM: ocp.args.StandardSave(state_at(70)),
        checkpoints.DATA_ITEM: ocp.args.JsonSave({"batches_consumed": 70})}))
    manager.close()
    assert_state_of(*restore(tmp_path), 70)
    assert output(capfd) == (f"warning: checkpoint step 70 under {tmp_path} records no "
                             f"checksums (saved by an earlier version): restored unverified\n")
    assert checkpoints.saved_state_digest(tmp_path / "70") is None


def test_saved_state_digest_names_the_state_not_the_folder(run_dir, saved):
    digests = [checkpoints.saved_state_digest(run_dir / str(step)) for step in STEPS]
    assert len(set(digests)) == len(STEPS) and all(len(d) == 64 for d in digests)
    assert digests == [checkpoints.saved_state_digest(saved / str(step)) for step in STEPS]


def test_save_rejects_a_bad_data_position(tmp_path):
    with checkpoints.Checkpointer(directory=tmp_path, save_every=1) as ckpt:
        with pytest.raises(ValueError, match="bad data position"):
            ckpt.save(step=3, state=state_at(3), data_position={"batches_consumed": 4})


def test_fingerprints_do_not_depend_on_the_mesh():
    state = state_at(75)
    resharded = jax.device_put(state, make_trainer(data=4, model=2).state_shardings)
    assert checkpoints.fingerprints(resharded) == checkpoints.fingerprints(state)
    bumped = state.replace(step=state.step + 1)
    changed = checkpoints.fingerprints(bumped)
    assert [path for path, value in checkpoints.fingerprints(state).items()
            if changed[path] != value] == ["step"]


def test_training_resumes_past_a_damaged_step_and_replaces_it(tmp_path, capfd):
    n = 3
    straight = trainer.fit(trainer=dropout_trainer(), batches=batches(), total_steps=2 * n)
    with checkpoints.Checkpointer(directory=tmp_path, save_every=n) as ckpt:
        trainer.fit(trainer=dropout_trainer(), batches=batches(), total_steps=2 * n,
                    checkpointer=ckpt)
    empty(tmp_path / str(2 * n))  # orbax still lists it: the new save must replace it
    with checkpoints.Checkpointer(directory=tmp_path, save_every=n) as ckpt:
        resumed = trainer.fit(trainer=dropout_trainer(), batches=batches(), total_steps=2 * n,
                              checkpointer=ckpt)
        assert ckpt.all_steps() == [n, 2 * n]
    assert output(capfd).startswith(f"warning: checkpoint step {2 * n} under {tmp_path} is "
                                    f"damaged (empty folder); using step {n}\n")
    for got, want in zip(jax.tree.leaves(resumed), jax.tree.leaves(straight), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    state, position = restore(tmp_path)  # the replaced step now reads back intact
    assert int(state.step) == 2 * n and position == {"batches_consumed": 2 * n}
    assert output(capfd) == ""


def test_failed_reads_leave_no_event_loop_noise(run_dir, capfd, monkeypatch):
    # Without the folder check, the missing manifest fails every array read inside orbax, whose
    # abandoned TensorStore reads then call back into a closed event loop.
    monkeypatch.setattr(checkpoints, "step_folder_problem", lambda folder: None)
    (run_dir / "80" / "state" / "manifest.ocdbt").unlink()
    for _ in range(3):
        assert_state_of(*restore(run_dir), 75)
    text = output(capfd)
    assert text.count("warning: checkpoint step 80") == 3 and text.count("\n") == 3, text


def test_the_train_entry_point_prints_one_error_line(monkeypatch, capsys):
    from p5_jax import gin_bindings
    from p5_jax import train as train_entry

    def damaged():
        raise checkpoints.DamagedCheckpointError("every checkpoint under /x is damaged: ...")

    monkeypatch.setattr(gin_bindings, "start_job", lambda argv: None)
    monkeypatch.setattr(train_entry, "train", damaged)
    with pytest.raises(SystemExit) as exited:
        gin_bindings.report_job_errors(train_entry.main)(["train"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == "error: every checkpoint under /x is damaged: ...\n"
