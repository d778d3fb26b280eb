"""Orbax checkpoints: keep-last-K, save at the end, resume equivalence, unfinished saves."""
import jax
import numpy as np
import pytest
import tensorflow as tf

from p5_jax import checkpoints, input_pipeline, trainer

from test_trainer import make_batch, make_trainer

BATCH = 8


def synthetic_dataset_fn(*, size=40, seed=0):
    """A deterministic, endlessly repeating, shuffled stream of tiny examples."""
    examples = make_batch(batch_size=size, seed=seed)

    def build():
        return tf.data.Dataset.from_tensor_slices(examples).repeat().shuffle(16, seed=seed)

    return build


def batches(position=0):
    return input_pipeline.BatchIterator(dataset_fn=synthetic_dataset_fn(), batch_size=BATCH,
                                        position=position)


def dropout_trainer():
    return make_trainer(learning_rate=3e-3, dropout_rate=0.1)


def test_batch_iterator_resumes_the_same_stream():
    straight = batches()
    expected = [next(straight) for _ in range(8)][5:]
    resumed = batches()
    resumed.restore({input_pipeline.POSITION_KEY: 5})
    assert resumed.position == {"batches_consumed": 5}
    for want in expected:
        got = next(resumed)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])
    assert resumed.position == {"batches_consumed": 8}


def test_resume_gives_identical_parameters(tmp_path):
    n = 3
    straight = trainer.fit(trainer=dropout_trainer(), batches=batches(), total_steps=2 * n)
    with checkpoints.Checkpointer(directory=tmp_path, save_every=n) as ckpt:
        first = trainer.fit(trainer=dropout_trainer(), batches=batches(), total_steps=n,
                            checkpointer=ckpt)
        assert int(first.step) == n
    with checkpoints.Checkpointer(directory=tmp_path, save_every=n) as ckpt:
        assert ckpt.latest_step() == n
        resumed = trainer.fit(trainer=dropout_trainer(), batches=batches(), total_steps=2 * n,
                              checkpointer=ckpt)
        assert ckpt.all_steps() == [n, 2 * n]
    assert int(resumed.step) == 2 * n
    for got, want in zip(jax.tree.leaves(resumed), jax.tree.leaves(straight)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_keeps_last_k_and_saves_at_the_end(tmp_path):
    with checkpoints.Checkpointer(directory=tmp_path, save_every=2, keep=2) as ckpt:
        trainer.fit(trainer=make_trainer(), batches=batches(), total_steps=7, checkpointer=ckpt)
        assert ckpt.all_steps() == [6, 7]
        saved = ckpt.restore(abstract_state=make_trainer().abstract_state())[0]
        # Restoring onto another mesh reshards: saved from 8x1, restored onto 4x2.
        state, position = ckpt.restore(
            abstract_state=make_trainer(data=4, model=2).abstract_state())
    assert int(state.step) == 7
    assert position == {"batches_consumed": 7}
    embedding = state.params["token_embedder"]
    assert embedding.addressable_shards[0].data.shape == (embedding.shape[0] // 2, 32)
    np.testing.assert_array_equal(np.asarray(embedding),
                                  np.asarray(saved.params["token_embedder"]))


def test_unfinished_save_is_never_latest(tmp_path):
    with checkpoints.Checkpointer(directory=tmp_path, save_every=2) as ckpt:
        trainer.fit(trainer=make_trainer(), batches=batches(), total_steps=2, checkpointer=ckpt)
    # What an interrupted orbax save leaves behind: a temporary directory with partial files.
    unfinished = tmp_path / "4.orbax-checkpoint-tmp-1234567"
    (unfinished / "state").mkdir(parents=True)
    (unfinished / "state" / "partial").write_bytes(b"\0" * 10)
    with checkpoints.Checkpointer(directory=tmp_path, save_every=2) as ckpt:
        assert ckpt.latest_step() == 2
        state, position = ckpt.restore(abstract_state=make_trainer().abstract_state())
    assert int(state.step) == 2 and position == {"batches_consumed": 2}


def test_restore_without_checkpoint_and_bad_options(tmp_path):
    with checkpoints.Checkpointer(directory=tmp_path, save_every=1) as ckpt:
        assert ckpt.latest_step() is None
        with pytest.raises(FileNotFoundError, match="No complete checkpoint"):
            ckpt.restore(abstract_state={})
    with pytest.raises(ValueError, match="save_every"):
        checkpoints.Checkpointer(directory=tmp_path, save_every=0)
