"""Training that starts from a Hugging Face T5 folder or a p5-jax checkpoint (INITIAL_CHECKPOINT).

A tiny random T5 is written with transformers (config.json + model.safetensors) beside a tiny
SentencePiece model saved as spiece.model; a toy task that tokenizes with the shared P5
vocabulary trains from it. The first step's loss is compared with transformers' loss on the same
batch. P5 adds a whole-word embedding to the encoder inputs, which T5 lacks and which starts
fresh; transformers is given exactly that sum as `inputs_embeds` (token rows of the checkpoint's
embedding plus the fresh table's rows for the batch's whole-word ids), so the comparison covers
every checkpoint parameter, the batch (tokens, labels, masks) and the fresh table, under the
same inputs on both sides. It is a fair check because the whole-word term enters nowhere else:
it is added to the token embeddings before the encoder's first dropout and layer, as
`inputs_embeds` enters T5's encoder in transformers. (Whole-word ids of 0 would not switch the
table off, row 0 being a random row; zeroing the table would, but would leave the fresh table the
run really trains with out of the check.) Dropout is off (T5Config.dropout_rate = 0) so that
the training step's loss is deterministic; both sides compute in float32 on the CPU, and the
losses agree within LOSS_RTOL (observed: about 2e-7).
"""
import json
import logging
import shutil

import gin
import jax
import numpy as np
import pytest
import seqio
import tensorflow as tf
from flax import traverse_util

import p5_tasks
from p5_jax import gin_bindings, hf_weights, network, partitioning, run_records, trainer, vocabulary
from p5_jax import train as train_entry
from p5_tasks import rendering

TASK = "p5_test_initial_checkpoint_task"
LENGTHS = {"inputs": 48, "targets": 8}
HF_DIMS = dict(d_model=32, num_heads=4, d_kv=8, d_ff=48, num_encoder_layers=2,
               num_decoder_layers=3)
HF_VOCAB_ROWS = 300  # not 128-aligned: the model must take its rows from the checkpoint
LOSS_RTOL = 1e-5     # float32 on the CPU on both sides
WHOLE_WORDS = ("whole_word_embedder",)


def _texts(split):
    rng = np.random.default_rng({"train": 0, "validation": 1}[split])
    rows = []
    for user in range(16):
        a, b, c = rng.integers(1, 60, 3)
        rows.append((f"user_{user} has bought item_{a} and item_{b} , what is next ?",
                     f"item_{c}"))
    return rows


def _register_task():
    if TASK in seqio.TaskRegistry.names():
        return

    def source(split, shuffle_files, seed=None):
        inputs, targets = zip(*_texts(split))
        return tf.data.Dataset.from_tensor_slices({"inputs": list(inputs),
                                                   "targets": list(targets)})

    seqio.TaskRegistry.add(
        TASK, source=seqio.FunctionDataSource(source, splits=["train", "validation"]),
        preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim,
                       rendering.add_whole_word_ids],
        output_features=p5_tasks.OUTPUT_FEATURES)


def _train_spm(path):
    texts = [" ".join(pair) for split in ("train", "validation") for pair in _texts(split)]
    return vocabulary.train_sentencepiece(texts=texts * 4, model_path=path, vocab_size=120)


def _bindings(*, model_dir, steps, initial_checkpoint=None, dims=HF_DIMS):
    bindings = [
        f"MIXTURE_OR_TASK_NAME = '{TASK}'", f"TASK_FEATURE_LENGTHS = {LENGTHS}",
        "BATCH_SIZE = 8", "train.log_every = 1", "train.eval_every = 0",
        "train.checkpoint_every = 2", "train.show_progress = False",
        "make_schedule.warmup_steps = 1", "T5Config.dropout_rate = 0.0",
        f"MODEL_DIR = '{model_dir}'", f"TRAIN_STEPS = {steps}",
        *[f"T5Config.{name} = {value}" for name, value in dims.items()]]
    if initial_checkpoint is not None:
        bindings.append(f"INITIAL_CHECKPOINT = '{initial_checkpoint}'")
    return bindings


def _parse(bindings, files=("gin/runs/train.gin", "gin/models/tiny.gin")):
    gin.clear_config()
    gin_bindings.parse_config(gin_files=list(files), gin_bindings=bindings)


def _forget_vocabulary():
    vocabulary.use_sentencepiece_file(None)
    vocab = p5_tasks.OUTPUT_FEATURES["targets"].vocabulary
    vocab._sentencepiece_model_file, vocab._model = None, None


@pytest.fixture(autouse=True)
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


class _FirstStep:
    """Records the state and batch the first train step receives, and its metrics."""

    def __init__(self, monkeypatch):
        self.record = None
        original = trainer.Trainer.train_step

        def spy(trainer_self, state, batch):
            first = self.record is None
            if first:  # the state is donated to the step: copy it to the host first
                self.record = {"step": int(state.step), "params": jax.device_get(state.params),
                               "opt_state": jax.device_get(state.opt_state),
                               "batch": jax.device_get(batch)}
            new_state, metrics = original(trainer_self, state, batch)
            if first:
                self.record["metrics"] = jax.device_get(metrics)
            return new_state, metrics

        monkeypatch.setattr(trainer.Trainer, "train_step", spy)


def _run(monkeypatch, bindings):
    spy = _FirstStep(monkeypatch)
    _parse(bindings)
    state = train_entry.train()
    return state, spy.record


def _logged_loss(logdir, step):
    for path in sorted(logdir.glob("events.out.tfevents*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if event.step == step and value.tag == "train/loss":
                    return float(tf.make_ndarray(value.tensor))
    raise AssertionError(f"no train/loss at step {step} under {logdir}")


def _write_hf_t5(folder, *, seed=0):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    config = transformers.T5Config(
        vocab_size=HF_VOCAB_ROWS, d_model=32, d_kv=8, d_ff=48, num_layers=2,
        num_decoder_layers=3, num_heads=4, dropout_rate=0.0, decoder_start_token_id=0,
        feed_forward_proj="relu", tie_word_embeddings=True)
    from test_hf_parity import save_hf_t5
    model = save_hf_t5(folder, config)
    _train_spm(folder / hf_weights.SENTENCEPIECE_FILE)
    return model


@pytest.fixture(scope="module")
def hf_run(tmp_path_factory):
    """A tiny HF T5 folder, and a 2-step run started from it (with its first step recorded)."""
    _register_task()
    root = tmp_path_factory.mktemp("initial_checkpoint")
    hf_model = _write_hf_t5(root / "hf")
    gin.clear_config()
    with pytest.MonkeyPatch.context() as monkeypatch:
        state, first = _run(monkeypatch, _bindings(model_dir=root / "run", steps=2,
                                                   initial_checkpoint=root / "hf"))
    gin.clear_config()
    _forget_vocabulary()
    yield {"root": root, "hf": root / "hf", "run": root / "run", "hf_model": hf_model,
           "state": jax.device_get(state), "first": first}
    _forget_vocabulary()


def _hf_loss(hf_model, batch, whole_word_table=None):
    import torch

    tokens = torch.from_numpy(np.asarray(batch["encoder_input_tokens"], np.int64))
    embeds = hf_model.shared(tokens)
    if whole_word_table is not None:
        ids = torch.from_numpy(np.asarray(batch["encoder_whole_word_ids"], np.int64))
        embeds = embeds + torch.from_numpy(np.array(whole_word_table))[ids]
    targets = np.asarray(batch["decoder_target_tokens"], np.int64)
    labels = np.where(np.asarray(batch["decoder_loss_weights"]) > 0, targets, -100)
    with torch.no_grad():
        out = hf_model(inputs_embeds=embeds, attention_mask=(tokens != 0).long(),
                       decoder_input_ids=torch.from_numpy(
                           np.asarray(batch["decoder_input_tokens"], np.int64)),
                       labels=torch.from_numpy(labels))
    return float(out.loss)


def test_first_step_loss_equals_transformers(hf_run):
    first = hf_run["first"]
    batch, params = first["batch"], first["params"]
    table = params["whole_word_embedder"]
    want = _hf_loss(hf_run["hf_model"], batch, whole_word_table=table)
    got = float(first["metrics"]["loss"])
    assert got == pytest.approx(want, rel=LOSS_RTOL)
    assert _logged_loss(hf_run["run"] / "train", step=1) == pytest.approx(got, rel=1e-6)
    # The whole-word term is really there: without it transformers' loss is another number.
    assert abs(_hf_loss(hf_run["hf_model"], batch) - want) > 1e-3
    # The batch was tokenized with the checkpoint's spiece.model.
    processor = vocabulary.spm.SentencePieceProcessor(
        model_file=str(hf_run["hf"] / hf_weights.SENTENCEPIECE_FILE))
    row = [int(t) for t in batch["encoder_input_tokens"][0] if t > 1]
    assert processor.decode(row) in {text for text, _ in _texts("train")}


def test_start_takes_every_parameter_but_the_whole_word_table(hf_run):
    first = hf_run["first"]
    _, hf_params = hf_weights.load_hf_t5(folder=str(hf_run["hf"]))
    got = traverse_util.flatten_dict(first["params"])
    want = traverse_util.flatten_dict(hf_params)
    assert set(got) == set(want) | {WHOLE_WORDS}
    for path, value in want.items():
        np.testing.assert_array_equal(got[path], value, err_msg="/".join(path))
    assert got[("token_embedder",)].shape == (HF_VOCAB_ROWS, 32)
    table = got[WHOLE_WORDS]
    assert table.shape == (512, 32) and 0.8 < table.std() < 1.2  # normal(1.0), as from scratch
    assert first["step"] == 0
    assert all(np.all(np.asarray(leaf) == 0) for leaf in jax.tree.leaves(first["opt_state"]))
    assert int(hf_run["state"].step) == 2
    # The run keeps the checkpoint's SentencePiece model for runs that start from it.
    assert (hf_run["run"] / run_records.SENTENCEPIECE_FILE).read_bytes() == \
        (hf_run["hf"] / hf_weights.SENTENCEPIECE_FILE).read_bytes()
    assert "train.initial_checkpoint" in (hf_run["run"] / "config.gin").read_text()


def test_start_from_a_p5_jax_checkpoint(hf_run, tmp_path):
    """The start state from a p5-jax MODEL_DIR: its latest parameters but a fresh whole-word
    table, new optimizer state, step 0, and the SentencePiece model the source run recorded."""
    source = hf_run["run"]
    _parse(_bindings(model_dir=tmp_path / "run", steps=1, initial_checkpoint=source))
    start = train_entry._start_point(initial_checkpoint=str(source),
                                     model_dir=str(tmp_path / "run"), sentencepiece_model_file=None)
    assert start.sentencepiece_file == str(source / run_records.SENTENCEPIECE_FILE)
    model = train_entry._model_of_checkpoint(start, seqio.PassThroughVocabulary(size=120))
    warm = train_entry._InitialCheckpointTrainer(
        start=start, model=model, optimizer=trainer.make_adamw(learning_rate=1e-3),
        mesh=partitioning.make_mesh(), batch_size=8, input_length=LENGTHS["inputs"],
        target_length=LENGTHS["targets"])
    state = jax.device_get(warm.create_state(seed=0))
    _check_p5_jax_start(state.params, state.opt_state, int(state.step), hf_run)
    assert not (tmp_path / "run").exists()


def _check_p5_jax_start(params, opt_state, step, hf_run):
    got = traverse_util.flatten_dict(params)
    want = traverse_util.flatten_dict(hf_run["state"].params)  # the source's step 2
    assert set(got) == set(want)
    for path, value in want.items():
        if path != WHOLE_WORDS:
            np.testing.assert_array_equal(got[path], value, err_msg="/".join(path))
    # A fresh table, as the source's own first step had (same seed and shape), not its trained one.
    np.testing.assert_array_equal(got[WHOLE_WORDS], hf_run["first"]["params"][WHOLE_WORDS[0]])
    assert not np.allclose(got[WHOLE_WORDS], want[WHOLE_WORDS])
    assert step == 0
    assert all(np.all(np.asarray(leaf) == 0) for leaf in jax.tree.leaves(opt_state))


@pytest.mark.slow
def test_training_run_from_a_p5_jax_checkpoint(hf_run, monkeypatch, tmp_path):
    source = hf_run["run"]
    state, first = _run(monkeypatch, _bindings(model_dir=tmp_path / "run", steps=1,
                                               initial_checkpoint=source))
    try:
        assert p5_tasks.OUTPUT_FEATURES["targets"].vocabulary.sentencepiece_model_file == \
            str(source / run_records.SENTENCEPIECE_FILE)
    finally:
        _forget_vocabulary()
    _check_p5_jax_start(first["params"], first["opt_state"], first["step"], hf_run)
    assert int(state.step) == 1
    assert (tmp_path / "run" / run_records.SENTENCEPIECE_FILE).read_bytes() == \
        (source / run_records.SENTENCEPIECE_FILE).read_bytes()


def test_step_folder_start_reads_that_step(hf_run, tmp_path):
    step_folder = hf_run["run"] / "checkpoints" / "2"
    start = train_entry._start_point(initial_checkpoint=str(step_folder),
                                     model_dir=str(tmp_path / "new"), sentencepiece_model_file=None)
    assert start.subject == "INITIAL_CHECKPOINT" and start.load_params is not None
    assert start.sentencepiece_file == str(hf_run["run"] / run_records.SENTENCEPIECE_FILE)
    assert (start.config.vocab_size, start.config.num_decoder_layers) == (HF_VOCAB_ROWS, 3)
    loaded = start.load_params()
    want = traverse_util.flatten_dict(hf_run["state"].params)
    assert set(loaded) == set(want) - {WHOLE_WORDS}
    for path, value in loaded.items():
        np.testing.assert_array_equal(value, want[path])
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_model_dir_with_checkpoints_resumes_and_ignores_initial_checkpoint(
        hf_run, monkeypatch, tmp_path, caplog):
    run = tmp_path / "run"
    shutil.copytree(hf_run["run"], run)
    with caplog.at_level(logging.WARNING):
        state, first = _run(monkeypatch, _bindings(model_dir=run, steps=3,
                                                   initial_checkpoint=tmp_path / "gone"))
    _forget_vocabulary()
    assert first["step"] == 2 and int(state.step) == 3
    want = traverse_util.flatten_dict(hf_run["state"].params)
    for path, value in traverse_util.flatten_dict(first["params"]).items():
        np.testing.assert_array_equal(value, want[path])  # the run's own table included
    assert any("resuming from them" in r.getMessage() and "is ignored" in r.getMessage()
               for r in caplog.records)


# -- errors (no transformers needed) ---------------------------------------------------------------
def _write_our_hf_folder(folder, config, *, spm_from=None):
    rng = np.random.default_rng(0)
    params = {path: rng.normal(size=shape).astype(np.float32)
              for path, shape in hf_weights.expected_shapes(config).items()}
    hf_weights.save_hf_t5(folder=str(folder), config=config,
                          params=traverse_util.unflatten_dict(params))
    if spm_from is not None:
        shutil.copy(spm_from, folder / hf_weights.SENTENCEPIECE_FILE)


@pytest.fixture(scope="module")
def spm_file(tmp_path_factory):
    return _train_spm(tmp_path_factory.mktemp("spm") / "spiece.model")


def test_size_mismatch_is_one_line_naming_the_gin_file(tmp_path, spm_file, capsys):
    _register_task()
    folder = tmp_path / "t5-small"
    folder.mkdir()
    config = hf_weights.hf_config_from(network.t5_small_config())
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"")  # never read: the size is checked first
    shutil.copy(spm_file, folder / "spiece.model")
    _parse(_bindings(model_dir=tmp_path / "run", steps=1, initial_checkpoint=folder, dims={}))
    with pytest.raises(SystemExit) as exit_info:
        gin_bindings.report_job_errors(train_entry.train)()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: INITIAL_CHECKPOINT is a t5-small (d_model 512, 6+6 layers)")
    assert err.rstrip().endswith("; use --gin_file=gin/models/small.gin")
    assert not (tmp_path / "run").exists()


def test_unnamed_size_mismatch_lists_the_bindings(tmp_path, spm_file):
    _register_task()
    config = network.tiny_config(vocab_size=HF_VOCAB_ROWS, whole_word_embeddings=0, **HF_DIMS)
    _write_our_hf_folder(tmp_path / "hf", config, spm_from=spm_file)
    _parse(_bindings(model_dir=tmp_path / "run", steps=1, initial_checkpoint=tmp_path / "hf",
                     dims={}))
    with pytest.raises(gin_bindings.JobError) as error:
        train_entry.train()
    message = error.value.message
    assert message.startswith("INITIAL_CHECKPOINT is a T5 (d_model 32, 2+3 layers, 4 heads of 8")
    assert message.endswith(
        "use --gin_file=gin/models/tiny.gin --gin.T5Config.d_model=32 --gin.T5Config.d_kv=8 "
        "--gin.T5Config.d_ff=48 --gin.T5Config.num_decoder_layers=3")
    assert not (tmp_path / "run").exists()


def test_checkpoint_errors_are_job_errors(tmp_path, spm_file):
    not_a_checkpoint = tmp_path / "empty"
    not_a_checkpoint.mkdir()
    with pytest.raises(gin_bindings.JobError, match="neither a Hugging Face T5 folder"):
        train_entry._start_point(initial_checkpoint=str(not_a_checkpoint),
                                 model_dir=str(tmp_path / "run"), sentencepiece_model_file=None)
    config = network.tiny_config(vocab_size=128, **HF_DIMS)
    _write_our_hf_folder(tmp_path / "hf", config)  # no spiece.model
    with pytest.raises(gin_bindings.JobError, match="does not record its SentencePiece model"):
        train_entry._start_point(initial_checkpoint=str(tmp_path / "hf"),
                                 model_dir=str(tmp_path / "run"), sentencepiece_model_file=None)
    start = train_entry._start_point(initial_checkpoint=str(tmp_path / "hf"),
                                     model_dir=str(tmp_path / "run"),
                                     sentencepiece_model_file=str(spm_file))
    assert start.sentencepiece_file == str(spm_file)
    shutil.copy(spm_file, tmp_path / "hf" / "spiece.model")
    other = vocabulary.train_sentencepiece(texts=["another corpus entirely"] * 5,
                                           model_path=tmp_path / "other.model", vocab_size=30)
    with pytest.raises(gin_bindings.JobError, match="is not the SentencePiece model of"):
        train_entry._start_point(initial_checkpoint=str(tmp_path / "hf"),
                                 model_dir=str(tmp_path / "run"),
                                 sentencepiece_model_file=str(other))
    assert not (tmp_path / "run").exists()


def test_hf_export_with_a_whole_word_table_starts_with_a_fresh_one(tmp_path, spm_file):
    config = network.tiny_config(vocab_size=128, whole_word_embeddings=6, **HF_DIMS)
    _write_our_hf_folder(tmp_path / "hf", config, spm_from=spm_file)
    assert hf_weights.WHOLE_WORD_TENSOR in hf_weights.read_checkpoint_tensors(
        folder=str(tmp_path / "hf"))
    start = train_entry._start_point(initial_checkpoint=str(tmp_path / "hf"),
                                     model_dir=str(tmp_path / "run"), sentencepiece_model_file=None)
    assert start.config.whole_word_embeddings == 0
    loaded = start.load_params()
    _, want = hf_weights.load_hf_t5(folder=str(tmp_path / "hf"), whole_word_embeddings=6)
    want = traverse_util.flatten_dict(want)
    assert set(loaded) == set(want) - {WHOLE_WORDS}
    for path, value in loaded.items():
        np.testing.assert_array_equal(value, want[path])


# -- architecture from shapes, and the size table against the gin files ----------------------------
@pytest.mark.parametrize("make", [network.tiny_config, network.t5_v1_1_small_config])
def test_config_from_param_shapes_round_trips(make):
    config = make(vocab_size=300, whole_word_embeddings=7, relative_buckets=16)
    shapes = hf_weights.expected_shapes(config)
    assert hf_weights.config_from_param_shapes(shapes) == config


@pytest.mark.parametrize("size_file,make", gin_bindings.SIZE_FILES)
@pytest.mark.parametrize("layers", [False, True])
def test_size_table_matches_the_gin_model_files(size_file, make, layers):
    files = [size_file] + ([gin_bindings.T5_1_1_FILE] if layers else [])
    _parse([], files=files)
    from_gin = gin_bindings.T5Config(vocab_size=128)
    want = make(vocab_size=128, **(gin_bindings.T5_1_1_LAYERS if layers else {}))
    for name in gin_bindings.HF_FIELDS:
        assert getattr(from_gin, name) == getattr(want, name), name
    assert gin_bindings.gin_model_flags(want) == " ".join(f"--gin_file={f}" for f in files)


@pytest.mark.slow
def test_command_line_prints_the_size_error_without_traceback(tmp_path, spm_file):
    import subprocess
    import sys

    from p5_jax import paths

    folder = tmp_path / "t5-small"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps(hf_weights.hf_config_from(network.t5_small_config())))
    (folder / "model.safetensors").write_bytes(b"")
    shutil.copy(spm_file, folder / "spiece.model")
    result = subprocess.run(
        [sys.executable, "-m", "p5_jax.train", "--gin_file=gin/runs/train.gin",
         "--gin_file=gin/models/tiny.gin",
         "--gin.MIXTURE_OR_TASK_NAME='p5_musical_instruments_all'",
         f"--gin.MODEL_DIR='{tmp_path / 'run'}'", "--gin.TRAIN_STEPS=1",
         f"--gin.INITIAL_CHECKPOINT='{folder}'"],
        cwd=paths.REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert lines == [line for line in lines if "t5-small" in line] and len(lines) == 1
    assert lines[0].endswith("use --gin_file=gin/models/small.gin")
