"""Group beam search: token-for-token parity with transformers 4.2.1 (P5's version), its logits
processors by hand, and P5's protocol choosing it for explanations.

Recent transformers no longer ship group beam search (transformers 5 loads it from the Hub as
remote code), so the expected outputs come from `fixtures/group_beam_hf421.json`, written by
`make_group_beam_fixture.py` with transformers 4.2.1 on the same tiny T5 (numpy-seeded weights,
`group_beam_cases`).
"""
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import p5_tasks  # noqa: F401  (registers the tasks)
from p5_jax import evaluation, group_beam, group_beam_predict, inference, models, network, partitioning, protocols

import group_beam_cases as cases

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "group_beam_hf421.json"
FAST_CASES = ("p5", "p5_mild", "diverse", "early_stopping")


@pytest.fixture(scope="module")
def tiny():
    model = models.EncoderDecoderModel(module=network.Transformer(cases.our_config()))
    return model, cases.our_params()


def _search(model, params, inputs, config):
    batch = {"encoder_input_tokens": jnp.asarray(inputs, jnp.int32)}
    with jax.default_matmul_precision("float32"):
        fn = jax.jit(lambda p, b: group_beam_predict.model_search(model, p, b, config=config))
        tokens, scores = fn(params, batch)
    return np.asarray(tokens), np.asarray(scores)


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=() if n in FAST_CASES else pytest.mark.slow) for n in cases.CASES])
def test_same_sequences_as_transformers_4_2_1(tiny, name):
    expected = json.loads(FIXTURE.read_text())
    assert expected["transformers"] == "4.2.1"
    config = group_beam.GroupBeamConfig(**cases.CASES[name])
    sequences = np.array(expected["cases"][name]["sequences"])
    sequences = np.pad(sequences, ((0, 0), (0, config.max_decode_len - sequences.shape[1])))
    tokens, scores = _search(*tiny, cases.INPUTS, config)
    np.testing.assert_array_equal(tokens, sequences)
    np.testing.assert_allclose(scores, expected["cases"][name]["scores"], atol=1e-4)


def test_fixture_covers_eos_at_min_length_and_cut_hypotheses():
    """The cases reach the paths that matter: eos as the 9th token under min_length 9, eos at
    other lengths, and hypotheses cut at max_length."""
    fixture = json.loads(FIXTURE.read_text())["cases"]
    ends = {name: [row.index(cases.EOS_ID) + 1 if cases.EOS_ID in row else None
                   for row in case["sequences"]] for name, case in fixture.items()}
    assert 9 in ends["p5_mild"] and None in ends["p5"]
    assert len({e for lengths in ends.values() for e in lengths}) >= 6


# -- logits processors, by hand -------------------------------------------------------------------
def test_repetition_penalty_multiplies_negative_and_divides_positive_scores():
    scores = jnp.array([[-2.0, -1.0, 0.0, 0.7]])
    present = jnp.array([[True, False, True, True]])
    np.testing.assert_allclose(group_beam.repetition_penalty(scores, present, penalty=0.7),
                               [[-1.4, -1.0, 0.0, 1.0]], rtol=1e-6)
    np.testing.assert_allclose(group_beam.repetition_penalty(scores, present, penalty=2.0),
                               [[-4.0, -1.0, 0.0, 0.35]], rtol=1e-6)


def test_token_presence_counts_the_start_token_and_only_filled_steps():
    tokens = jnp.array([[4, 7, 9, 0], [4, 0, 0, 0]])
    present = group_beam.token_presence(tokens, step=2, start_N=jnp.array([0, 2]), vocab_size=10)
    assert [set(np.flatnonzero(row)) for row in np.asarray(present)] == [{0, 4, 7}, {0, 2, 4}]


def test_min_length_counts_the_start_token():
    scores = jnp.zeros((2, 4))
    for cur_len, blocked in ((8, True), (9, False)):  # cur_len: start token + generated
        out = group_beam.min_length_mask(scores, cur_len=cur_len, min_length=9, eos_id=1)
        assert bool(jnp.all(jnp.isneginf(out[:, 1]))) == blocked
        assert not jnp.any(jnp.isneginf(out[:, [0, 2, 3]]))


def test_diversity_penalty_counts_each_earlier_pick():
    scores = jnp.zeros((1, 2, 6))
    out = group_beam.diversity_penalty(scores, jnp.array([[3, 3, 5]]), penalty=0.5)
    np.testing.assert_allclose(out[0, 0], [0, 0, 0, -1.0, 0, -0.5])
    np.testing.assert_allclose(out[0, 1], out[0, 0])


# -- the search on a scripted model ---------------------------------------------------------------
def _fixed_model(log_probs):
    """tokens_to_logits of a model whose next-token log-probabilities never change."""
    table = jnp.asarray(log_probs, jnp.float32)

    def tokens_to_logits(ids_Nx1, cache):
        return jnp.broadcast_to(table, (ids_Nx1.shape[0], table.shape[0])), cache
    return tokens_to_logits


def _scripted_search(log_probs, **config):
    search = jax.jit(lambda inputs, cache: group_beam.group_beam_search(
        inputs=inputs, cache=cache, tokens_to_logits=_fixed_model(log_probs), eos_id=1,
        config=group_beam.GroupBeamConfig(**config)))
    return search(jnp.zeros((2, 1), jnp.int32), {"rows": jnp.zeros((2,))})


def test_eos_comes_first_at_the_min_length_step():
    """eos is the likeliest token: with min_length 9 it ends the hypothesis as the 9th token."""
    log_probs = np.log([0.05, 0.5, 0.2, 0.15, 0.1])
    tokens, scores = _scripted_search(log_probs, num_beams=4, num_beam_groups=2, min_length=9,
                                      max_length=20)
    tokens = np.asarray(tokens)
    assert (tokens[:, 8] == 1).all() and (tokens[:, :8] != 1).all() and (tokens[:, 9:] == 0).all()
    # Eight times token 2 (the best after eos), then eos; the score is divided by 9.
    assert (tokens[:, :8] == 2).all()
    np.testing.assert_allclose(scores, (8 * np.log(0.2) + np.log(0.5)) / 9, rtol=1e-5)


def test_a_penalty_below_one_favours_tokens_already_there_even_the_start_token():
    """One token: 0.7 x log 0.3 (pad, present as the start token) beats log 0.4; without the
    penalty the likeliest token wins. From then on a repeated token gains the same way."""
    log_probs = np.log([0.3, 0.01, 0.4, 0.29])
    tokens, scores = _scripted_search(log_probs, num_beams=2, repetition_penalty=0.7,
                                      max_length=2)
    assert (np.asarray(tokens) == 0).all()
    np.testing.assert_allclose(scores, 0.7 * np.log(0.3) / 2, rtol=1e-6)  # cut: divided by 2
    tokens, _ = _scripted_search(log_probs, num_beams=2, max_length=2)
    assert (np.asarray(tokens) == 2).all()
    tokens, _ = _scripted_search(log_probs, num_beams=2, repetition_penalty=0.7, max_length=4)
    assert (np.asarray(tokens) == 2).all()  # 2, then 2 at 0.7 x log 0.4 each step


def test_config_is_checked():
    with pytest.raises(ValueError, match="divisible"):
        group_beam.GroupBeamConfig(num_beams=12, num_beam_groups=5)
    with pytest.raises(ValueError, match="max_length"):
        group_beam.GroupBeamConfig(num_beams=4, max_length=1)


# -- on a Predictor, and in P5's protocol ---------------------------------------------------------
def test_predictor_on_eight_devices_matches_the_model_search(tiny):
    model, params = tiny
    config = group_beam.GroupBeamConfig(num_beams=4, num_beam_groups=2, min_length=3,
                                        repetition_penalty=0.7, max_length=8)
    inputs = np.zeros((8, 8), np.int32)
    inputs[:5] = cases.INPUTS
    expected, _ = _search(model, params, inputs, config)
    mesh = partitioning.make_mesh(data=-1, model=1, devices=jax.devices())
    predictor = inference.Predictor(model=model, params=params, mesh=mesh)
    with jax.default_matmul_precision("float32"):
        tokens = group_beam_predict.decode(predictor, {"encoder_input_tokens": inputs},
                                           config=config)
    np.testing.assert_array_equal(tokens, expected)


@pytest.mark.parametrize("prompt_id", ["3_1", "3_7", "3_9", "3_12"])
def test_p5_protocol_decodes_explanations_as_p5_did(prompt_id):
    name = f"p5_musical_instruments_explanation_{prompt_id}"
    assert evaluation.plan_task(name, protocol="p5").decoding == protocols.GROUP_BEAM
    assert evaluation.plan_task(name, protocol="exact").decoding == protocols.GREEDY
    assert evaluation.plan_task("p5_musical_instruments_review_4_1",
                                protocol="p5").decoding == protocols.GREEDY
    search = protocols.P5_EXPLANATION_SEARCH
    assert (search.num_beams, search.num_beam_groups, search.min_length,
            search.repetition_penalty, search.max_length) == (12, 3, 9, 0.7, 20)
    assert (search.diversity_penalty, search.length_penalty, search.early_stopping) == (
        0.0, 1.0, False)
