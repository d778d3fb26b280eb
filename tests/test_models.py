"""Loss, scoring and prediction of EncoderDecoderModel."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import traverse_util

from p5_jax import decoding, hf_weights, models, network, partitioning

CONFIG = network.T5Config(vocab_size=24, d_model=16, num_heads=4, d_kv=4, d_ff=32,
                          num_encoder_layers=1, num_decoder_layers=2, dropout_rate=0.1,
                          whole_word_embeddings=8)
BATCH = {
    "encoder_input_tokens": jnp.array([[5, 6, 7, 1], [8, 9, 1, 0]], jnp.int32),
    "encoder_whole_word_ids": jnp.array([[1, 1, 2, 3], [1, 2, 3, 0]], jnp.int32),
    "decoder_input_tokens": jnp.array([[0, 10, 11, 12], [0, 13, 0, 0]], jnp.int32),
    "decoder_target_tokens": jnp.array([[10, 11, 12, 1], [13, 1, 0, 0]], jnp.int32),
    "decoder_loss_weights": jnp.array([[1, 1, 1, 1], [1, 1, 0, 0]], jnp.float32),
}


def random_params(config, seed=0):
    """Numpy-drawn parameters shaped like the network's (fast, no XLA RNG compile)."""
    rng = np.random.default_rng(seed)
    flat = {path: rng.standard_normal(shape) / (1.0 if len(path) == 1 or path[-1] == "scale"
                                                else np.sqrt(shape[0]))
            for path, shape in hf_weights.expected_shapes(config).items()}
    return traverse_util.unflatten_dict({p: jnp.asarray(v, jnp.float32) for p, v in flat.items()})


@pytest.fixture(scope="module")
def model():
    return models.EncoderDecoderModel(module=network.Transformer(CONFIG))


@pytest.fixture(scope="module")
def params():
    return random_params(CONFIG)


def test_cross_entropy_known_values():
    logits = jnp.log(jnp.array([[[1.0, 3.0]]]))  # probabilities 0.25, 0.75
    loss, z = models.cross_entropy_with_logits(logits_BxTxV=logits, targets_BxT=jnp.array([[1]]),
                                               z_loss=0.5)
    np.testing.assert_allclose(loss, [[-np.log(0.75)]], rtol=1e-6)
    np.testing.assert_allclose(z, [[0.5 * np.log(4.0) ** 2]], rtol=1e-6)


def test_label_smoothing_is_zero_at_the_smoothed_target():
    smoothing, vocab = 0.1, 5
    soft = np.full(vocab, smoothing / (vocab - 1))
    soft[2] = 1 - smoothing
    loss, _ = models.cross_entropy_with_logits(
        logits_BxTxV=jnp.log(jnp.asarray(soft))[None, None], targets_BxT=jnp.array([[2]]),
        label_smoothing=smoothing)
    np.testing.assert_allclose(loss, [[0.0]], atol=1e-6)
    uniform, _ = models.cross_entropy_with_logits(
        logits_BxTxV=jnp.zeros((1, 1, vocab)), targets_BxT=jnp.array([[2]]),
        label_smoothing=smoothing)
    assert float(uniform[0, 0]) > 0.1


def test_init_returns_boxed_params(model):
    boxed = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), batch_size=2,
                                              input_length=4, target_length=3))
    leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    assert all(isinstance(leaf, nn.LogicallyPartitioned) for leaf in leaves)
    shapes = {p: tuple(v.shape) for p, v in traverse_util.flatten_dict(nn.unbox(boxed)).items()}
    assert shapes == hf_weights.expected_shapes(CONFIG)


@jax.default_matmul_precision("float32")
def test_loss_ignores_padding_and_counts_tokens(model, params):
    loss, aux = model.loss_fn(params, BATCH)
    assert float(aux["num_tokens"]) == 6.0
    changed = dict(BATCH, decoder_target_tokens=BATCH["decoder_target_tokens"].at[1, 2:].set(7))
    loss2, aux2 = model.loss_fn(params, changed)
    np.testing.assert_allclose(loss, loss2, rtol=1e-6)
    assert float(aux2["num_correct"]) == float(aux["num_correct"])
    np.testing.assert_allclose(loss, aux["loss_sum"] / 6.0, rtol=1e-6)
    # The masked loss equals minus the summed target log-probs from score_batch.
    scores = model.score_batch(params, BATCH)
    np.testing.assert_allclose(-jnp.sum(scores), aux["loss_sum"], rtol=1e-5)


def test_num_correct_counts_argmax_hits_on_real_tokens(model, params):
    logits = model._logits(params, BATCH)
    hits = np.asarray(jnp.argmax(logits, -1) == BATCH["decoder_target_tokens"])
    expected = float((hits * np.asarray(BATCH["decoder_loss_weights"])).sum())
    assert float(model.loss_fn(params, BATCH)[1]["num_correct"]) == expected


def test_z_loss_adds_to_loss(model, params):
    base, _ = model.loss_fn(params, BATCH)
    with_z = models.EncoderDecoderModel(module=model.module, z_loss=1e-2)
    loss_z, aux_z = with_z.loss_fn(params, BATCH)
    np.testing.assert_allclose(loss_z, base + aux_z["z_loss"], rtol=1e-5)
    assert float(aux_z["z_loss"]) > 0


def test_dropout_rng_switches_dropout_on(model, params):
    plain, _ = model.loss_fn(params, BATCH)
    dropped, _ = model.loss_fn(params, BATCH, jax.random.PRNGKey(3))
    assert not np.isclose(float(plain), float(dropped))


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="label_smoothing"):
        models.EncoderDecoderModel(module=network.Transformer(CONFIG), label_smoothing=1.0)


def _greedy_reference(model, params, batch, length):
    """Greedy decoding by repeated full forward passes (no cache)."""
    tokens = jnp.zeros((2, length + 1), jnp.int32)
    logits_fn = jax.jit(model._logits)
    for t in range(length):
        logits = logits_fn(params, dict(batch, decoder_input_tokens=tokens[:, :-1]))
        tokens = tokens.at[:, t + 1].set(jnp.argmax(logits[:, t], -1))
    return tokens[:, 1:]


@jax.default_matmul_precision("float32")
def test_predict_batch_greedy_matches_uncached_reference(model, params):
    length = 5
    tokens, scores = model.predict_batch(params, BATCH, num_decodes=1, max_decode_length=length)
    assert tokens.shape == (2, 1, length) and scores.shape == (2, 1)
    reference = np.asarray(_greedy_reference(model, params, BATCH, length))
    for b in range(2):  # beam search zeroes tokens after eos
        got = np.asarray(tokens[b, 0])
        eos = np.flatnonzero(reference[b] == models.EOS_ID)
        end = eos[0] + 1 if eos.size else length
        np.testing.assert_array_equal(got[:end], reference[b, :end])


@jax.default_matmul_precision("float32")
def test_predict_batch_beam_scores_match_score_batch(model, params):
    length, beams, alpha = 4, 3, 0.6
    tokens, scores = model.predict_batch(params, BATCH, num_decodes=beams, alpha=alpha,
                                         max_decode_length=length)
    assert tokens.shape == (2, beams, length)
    assert np.all(np.diff(np.asarray(scores), axis=1) <= 1e-6)  # best first
    best = tokens[:, 0]
    weights = jnp.cumsum(best == models.EOS_ID, axis=1) - (best == models.EOS_ID) == 0
    lengths = jnp.sum(weights, axis=1)
    batch = dict(BATCH, decoder_target_tokens=best,
                 decoder_input_tokens=jnp.pad(best[:, :-1], ((0, 0), (1, 0))),
                 decoder_loss_weights=weights.astype(jnp.float32))
    log_probs = model.score_batch(params, batch)
    penalty = decoding.brevity_penalty(alpha=alpha, length=lengths)
    np.testing.assert_allclose(scores[:, 0], log_probs / penalty, rtol=1e-4, atol=1e-5)


def test_predict_batch_respects_prefix_trie(model, params):
    items = [[3, 4, 1], [3, 5, 6, 1], [7, 1]]
    trie = decoding.PrefixTrie.from_sequences(items, vocab_size=CONFIG.vocab_size, eos_id=1)
    tokens, scores = model.predict_batch(params, BATCH, num_decodes=3, max_decode_length=5,
                                         prefix_trie=trie)
    allowed = {tuple(item + [0] * (5 - len(item))) for item in items}
    for b in range(2):
        assert {tuple(np.asarray(row)) for row in tokens[b]} == allowed


def test_predict_batch_projects_encoder_once_per_example(model, params):
    batch_sizes = []

    def interceptor(next_fun, args, kwargs, context):
        if (context.method_name == "_project" and args[0] in ("key", "value")
                and context.module.name == "encoder_decoder_attention"):
            batch_sizes.append(args[1].shape[0])
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):  # the traced loop body would show B*K-row calls
        model.predict_batch(params, BATCH, num_decodes=3, max_decode_length=4)
    assert batch_sizes == [2] * (2 * CONFIG.num_decoder_layers)



def _sharded(model, params, mesh):
    boxed = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), batch_size=2,
                                              input_length=4, target_length=4))
    shardings = partitioning.logical_shardings(boxed, mesh=mesh)
    return jax.device_put(params, nn.unbox(shardings))


@jax.default_matmul_precision("float32")
def test_sharded_loss_matches_single_device(model, params):
    mesh = partitioning.make_mesh(data=2, model=4)
    sharded = _sharded(model, params, mesh)
    with jax.set_mesh(mesh), nn.logical_axis_rules(partitioning.LOGICAL_AXIS_RULES):
        loss, aux = jax.jit(model.loss_fn)(sharded, BATCH)
    expected_loss, expected_aux = model.loss_fn(params, BATCH)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
    assert float(aux["num_correct"]) == float(expected_aux["num_correct"])


@pytest.mark.slow
@jax.default_matmul_precision("float32")
def test_sharded_predictions_match_single_device(model, params):
    mesh = partitioning.make_mesh(data=2, model=4)
    sharded = _sharded(model, params, mesh)
    predict = jax.jit(lambda p, b: model.predict_batch(p, b, num_decodes=2, max_decode_length=3))
    with jax.set_mesh(mesh), nn.logical_axis_rules(partitioning.LOGICAL_AXIS_RULES):
        tokens, scores = predict(sharded, BATCH)
    expected_tokens, expected_scores = model.predict_batch(params, BATCH, num_decodes=2,
                                                           max_decode_length=3)
    np.testing.assert_array_equal(tokens, expected_tokens)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5)
