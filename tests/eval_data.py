"""Tiny prepared data, vocabulary and checkpoint shared by the evaluation and inference tests.

The dataset is written in the Amazon format under the shipped name `musical_instruments` (so the
registered `p5_musical_instruments_*` tasks read it), into a temporary prepared root selected with
$P5_DATA_DIR; $P5_SPM_MODEL points the tasks at a small SentencePiece model trained here.
"""
from __future__ import annotations

import contextlib
import json
import pathlib
import random

import pytest

DATASET = "musical_instruments"
TASK_PREFIX = f"p5_{DATASET}"   # the tiny dataset's task names start with it
NUM_NEGATIVES = 5
_OPINIONS = ("The sound is great and warm.", "The strings feel cheap.",
             "Good price for what you get.", "The sound is thin but fine.",
             "Strings stay in tune for weeks.", "Price was too high.")


def write_amazon_source(folder: pathlib.Path, *, num_users: int = 12, num_items: int = 16,
                        per_user: int = 8, seed: int = 0) -> pathlib.Path:
    """reviews_tiny.json (+ lexicon features.txt) with `per_user` reviews per user."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for user in range(num_users):
        items = rng.sample(range(num_items), per_user)
        for step, item in enumerate(items):
            rating = rng.randint(1, 5)
            lines.append(json.dumps({
                "reviewerID": f"U{user}", "asin": f"I{item}", "reviewerName": f"player {user}",
                "reviewText": f"{rng.choice(_OPINIONS)} {rng.choice(_OPINIONS)}",
                "overall": float(rating), "summary": rng.choice(("great", "bad", "ok")),
                "unixReviewTime": 1000 + 10 * step + user}))
    (folder / "reviews_tiny.json").write_text("\n".join(lines) + "\n")
    (folder / "features.txt").write_text("sound\nstrings\nprice\n")
    return folder


def prepare(root: pathlib.Path) -> pathlib.Path:
    """Prepares the tiny dataset into `root/musical_instruments`."""
    from p5_jax.data import prepare as prepare_lib

    source = write_amazon_source(root.parent / "raw_tiny")
    prepare_lib.prepare_dataset(name=DATASET, out_root=root, source=source, fmt="amazon",
                                num_negatives=NUM_NEGATIVES, progress=False)
    return root / DATASET


def train_vocabulary(path: pathlib.Path) -> pathlib.Path:
    from p5_jax import vocabulary
    from p5_tasks import prompts

    texts = list(prompts.vocabulary_texts()) + list(_OPINIONS) + [
        " ".join(f"item_{i} user_{i}" for i in range(20)), "player great bad ok"]
    return vocabulary.train_sentencepiece(texts=texts * 3, model_path=path, vocab_size=200)


def tiny_model(vocab_size: int):
    from p5_jax import models, network

    config = network.tiny_config(vocab_size=vocab_size, d_model=32, num_heads=2, d_kv=16,
                                 d_ff=64, num_encoder_layers=1, num_decoder_layers=1,
                                 dropout_rate=0.0)
    return models.EncoderDecoderModel(module=network.Transformer(config))


def save_checkpoint(*, model, directory: pathlib.Path, seed: int = 0, step: int = 1):
    """Initial parameters saved through the project's checkpoint code; returns the state."""
    from p5_jax import checkpoints, partitioning, trainer

    mesh = partitioning.make_mesh(data=-1, model=1)
    train = trainer.Trainer(model=model, optimizer=trainer.make_adamw(learning_rate=1e-3),
                            mesh=mesh, batch_size=8, input_length=16, target_length=8)
    state = train.create_state(seed=seed)
    with checkpoints.Checkpointer(directory=directory, save_every=1, async_save=False) as ckpt:
        ckpt.save(step=step, state=state, data_position={"batches_consumed": 0}, force=True)
        ckpt.wait()
    return state


def module_environment(name: str):
    """A module-scoped fixture: the tiny prepared dataset and vocabulary under a fresh folder."""
    @pytest.fixture(scope="module")
    def env(tmp_path_factory):
        with pytest.MonkeyPatch.context() as monkeypatch:
            yield environment(tmp_path_factory.mktemp(name), monkeypatch)
        forget_vocabulary_file()
    return env


def module_vocabulary():
    """A module-scoped fixture (after `env`): the registered tasks' shared vocabulary."""
    @pytest.fixture(scope="module")
    def vocab(env):
        return task_vocabulary()
    return vocab


def task_vocabulary():
    import p5_tasks

    return p5_tasks.OUTPUT_FEATURES["targets"].vocabulary


def forget_vocabulary_file() -> None:
    """Lets the shared task vocabulary resolve its file again after $P5_SPM_MODEL is unset.

    (LazySentencePieceVocabulary keeps the last file it resolved once no override is set.)
    """
    vocab = task_vocabulary()
    vocab._sentencepiece_model_file, vocab._model = None, None


def environment(tmp_root: pathlib.Path, monkeypatch) -> pathlib.Path:
    """Prepares data and vocabulary under `tmp_root` and points the tasks at them."""
    root = tmp_root / "prepared"
    monkeypatch.setenv("P5_DATA_DIR", str(root))
    prepare(root)
    monkeypatch.setenv("P5_SPM_MODEL", str(train_vocabulary(tmp_root / "spm.model")))
    return root


@contextlib.contextmanager
def tasks_read(root: pathlib.Path, model_file: pathlib.Path):
    """The registered tasks read the prepared root `root` and the SentencePiece `model_file`
    until the block ends (catalogue and mixture-rate caches cleared on both sides)."""
    from p5_jax import vocabulary
    from p5_tasks import catalog, rates

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("P5_DATA_DIR", str(root))
        catalog.clear_cache()
        rates._counts.cache_clear()
        vocabulary.use_sentencepiece_file(model_file)
        try:
            yield root
        finally:
            vocabulary.use_sentencepiece_file(None)
    catalog.clear_cache()
    rates._counts.cache_clear()
