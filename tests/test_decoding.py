"""Greedy and beam search against exhaustive search and a plain Python beam search.

The synthetic model's logits depend on the position, the previous token, a per-example bias and a
running hash of the whole prefix kept in the cache, so a beam search that gathers its cache wrongly
produces different sequences.
"""
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p5_jax import decoding
from p5_jax.prefix_trie import ExcludingTrie, PrefixTrie

EOS = 1
MEMORY = 5


def make_tables(seed, *, batch, vocab, length):
    rng = np.random.default_rng(seed)
    position = 2.0 * rng.normal(size=(length, vocab, vocab))
    position[..., 0] = -np.inf  # pad is never emitted
    return {"position": position.astype(np.float32),
            "memory": rng.normal(size=(MEMORY, vocab)).astype(np.float32),
            "bias": rng.normal(size=(batch, vocab)).astype(np.float32)}


def tokens_to_logits(ids_Nx1, cache, *, tables):
    previous = ids_Nx1[:, 0]
    logits = (jnp.asarray(tables["position"])[cache["position"], previous]
              + jnp.asarray(tables["memory"])[cache["memory"]] + cache["bias"])
    new_cache = {"position": cache["position"] + 1,
                 "memory": (cache["memory"] * 3 + previous) % MEMORY,
                 "bias": cache["bias"], "calls": cache["calls"] + 1}
    return logits, new_cache


def initial_cache(tables):
    batch = tables["bias"].shape[0]
    return {"position": jnp.zeros((batch,), jnp.int32), "memory": jnp.zeros((batch,), jnp.int32),
            "bias": jnp.asarray(tables["bias"]), "calls": jnp.array(0, jnp.int32)}


def run_search(search, tables, **kwargs):
    @jax.jit
    def go(tables):
        return search(cache=initial_cache(tables),
                      tokens_to_logits=functools.partial(tokens_to_logits, tables=tables),
                      eos_id=EOS, **kwargs)
    tokens, scores = go(tables)
    return np.asarray(tokens), np.asarray(scores)


# ---- numpy references -------------------------------------------------------------------------

def step_log_probs(tables, row, prefix):
    """Log-probs after `prefix`, replaying the cache updates the model makes."""
    inputs = [0] + list(prefix)  # the token fed at step j is inputs[j]
    position, memory = len(prefix), 0
    for token in inputs[:position]:
        memory = (memory * 3 + token) % MEMORY
    logits = (tables["position"][position, inputs[position]] + tables["memory"][memory]
              + tables["bias"][row]).astype(np.float64)
    return logits - np.logaddexp.reduce(logits)


def sequence_log_prob(tables, row, sequence):
    return sum(step_log_probs(tables, row, sequence[:i])[token]
               for i, token in enumerate(sequence))


def penalty(alpha, length):
    return ((5.0 + length) / 6.0) ** alpha


def exhaustive_top(tables, row, *, length, alpha, k):
    vocab = tables["position"].shape[-1]
    scored = []
    for size in range(1, length + 1):
        for body in itertools.product(range(2, vocab), repeat=size - 1):
            for last in range(1, vocab):
                if size < length and last != EOS:
                    continue
                sequence = list(body) + [last]
                scored.append((sequence_log_prob(tables, row, sequence) / penalty(alpha, size),
                               sequence))
    scored.sort(key=lambda pair: -pair[0])
    return scored[:k]


def reference_beam(tables, row, *, beams, length, alpha):
    """A direct Python rendering of the documented beam semantics."""
    live, finished = [(0.0, [])], []
    for step in range(length):
        candidates = []
        for log_prob, prefix in live:
            step_lp = step_log_probs(tables, row, prefix)
            candidates += [(log_prob + step_lp[t], prefix + [t]) for t in range(1, len(step_lp))]
        candidates.sort(key=lambda pair: -pair[0])
        candidates = candidates[:2 * beams]
        finished += [(lp / penalty(alpha, step + 1), seq) for rank, (lp, seq)
                     in enumerate(candidates) if seq[-1] == EOS and rank < beams]
        finished = sorted(finished, key=lambda pair: -pair[0])[:beams]
        live = [pair for pair in candidates if pair[1][-1] != EOS][:beams]
        best = live[0][0]
        bound = max(best / penalty(alpha, step + 2), best / penalty(alpha, length))
        if step + 1 < length and len(finished) == beams and finished[-1][0] >= bound:
            return finished
    finished += [(lp / penalty(alpha, length), seq) for lp, seq in live]
    return sorted(finished, key=lambda pair: -pair[0])[:beams]


def as_list(tokens_row):
    tokens_row = list(tokens_row)
    return tokens_row[:tokens_row.index(EOS) + 1] if EOS in tokens_row else tokens_row


# ---- tests ------------------------------------------------------------------------------------

def test_reference_log_prob_matches_model_steps():
    tables = make_tables(0, batch=1, vocab=5, length=3)
    cache = initial_cache(tables)
    sequence, total, previous = [3, 2, EOS], 0.0, 0
    for token in sequence:
        logits, cache = tokens_to_logits(jnp.array([[previous]]), cache, tables=tables)
        total += float(jax.nn.log_softmax(logits)[0, token])
        previous = token
    assert np.isclose(total, sequence_log_prob(tables, 0, sequence), atol=1e-5)


@pytest.mark.parametrize("vocab, length, beams", [(4, 4, 24), (5, 3, 36)])
@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_beam_search_matches_exhaustive_search(vocab, length, beams, alpha):
    tables = make_tables(1, batch=2, vocab=vocab, length=length)
    tokens, scores = run_search(decoding.beam_search, tables, num_decodes=beams, alpha=alpha,
                                max_decode_len=length)
    assert tokens.shape == (2, beams, length) and scores.shape == (2, beams)
    for row in range(2):
        expected = exhaustive_top(tables, row, length=length, alpha=alpha, k=beams)
        assert [as_list(t) for t in tokens[row]] == [seq for _, seq in expected]
        np.testing.assert_allclose(scores[row], [s for s, _ in expected], rtol=1e-5)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_beam_search_matches_python_beam_search_with_pruning(seed, alpha):
    tables = make_tables(seed, batch=3, vocab=7, length=6)
    tokens, scores = run_search(decoding.beam_search, tables, num_decodes=3, alpha=alpha,
                                max_decode_len=6)
    for row in range(3):
        expected = reference_beam(tables, row, beams=3, length=6, alpha=alpha)
        assert [as_list(t) for t in tokens[row]] == [seq for _, seq in expected]
        np.testing.assert_allclose(scores[row], [s for s, _ in expected], rtol=1e-5)


def test_tokens_after_eos_are_zero_and_scores_sorted():
    tables = make_tables(7, batch=2, vocab=6, length=5)
    tokens, scores = run_search(decoding.beam_search, tables, num_decodes=4, alpha=0.6,
                                max_decode_len=5)
    assert np.all(np.diff(scores, axis=1) <= 0)
    for sequence in tokens.reshape(-1, 5):
        if EOS in sequence:
            assert not sequence[list(sequence).index(EOS) + 1:].any()


@pytest.mark.parametrize("seed", range(3))
def test_greedy_equals_single_beam(seed):
    tables = make_tables(seed, batch=3, vocab=6, length=5)
    greedy = run_search(decoding.greedy_search, tables, num_decodes=1, alpha=0.0,
                        max_decode_len=5)
    beam = run_search(decoding.beam_search, tables, num_decodes=1, alpha=0.0, max_decode_len=5)
    np.testing.assert_array_equal(greedy[0], beam[0])
    np.testing.assert_allclose(greedy[1], beam[1], rtol=1e-6)


def test_greedy_takes_argmax_and_normalises_score():
    tables = make_tables(11, batch=2, vocab=6, length=5)
    tokens, scores = run_search(decoding.greedy_search, tables, alpha=0.6, max_decode_len=5)
    for row in range(2):
        prefix = []
        while len(prefix) < 5 and (not prefix or prefix[-1] != EOS):
            prefix.append(int(np.argmax(step_log_probs(tables, row, prefix))))
        assert as_list(tokens[row, 0]) == prefix
        expected = sequence_log_prob(tables, row, prefix) / penalty(0.6, len(prefix))
        assert np.isclose(scores[row, 0], expected, rtol=1e-5)


def test_start_token_and_rank0_cache_leaf_pass_through():
    tables = make_tables(3, batch=2, vocab=5, length=3)

    def check_calls(ids, cache):
        assert cache["calls"].ndim == 0
        return tokens_to_logits(ids, cache, tables=tables)

    tokens, _ = jax.jit(lambda: decoding.beam_search(
        inputs=jnp.zeros((2, 7), jnp.int32), cache=initial_cache(tables),
        tokens_to_logits=check_calls, eos_id=EOS, num_decodes=2, max_decode_len=3))()
    assert tokens.shape == (2, 2, 3)


def test_bad_arguments_raise():
    tables = make_tables(0, batch=1, vocab=5, length=3)
    step = functools.partial(tokens_to_logits, tables=tables)
    with pytest.raises(ValueError, match="num_decodes"):
        decoding.greedy_search(cache=initial_cache(tables), tokens_to_logits=step, eos_id=EOS,
                               num_decodes=2, max_decode_len=3)
    with pytest.raises(ValueError, match="max_decode_len"):
        decoding.beam_search(cache=initial_cache(tables), tokens_to_logits=step, eos_id=EOS,
                             num_decodes=2, max_decode_len=0)
    trie = PrefixTrie.from_sequences([[2, EOS]], vocab_size=9, eos_id=EOS)
    with pytest.raises(ValueError, match="vocab_size"):
        decoding.beam_search(cache=initial_cache(tables), tokens_to_logits=step, eos_id=EOS,
                             num_decodes=2, max_decode_len=3, constraint=trie)


# ---- constrained decoding ---------------------------------------------------------------------

CONSTRAINED_VOCAB, CONSTRAINED_LEN = 6, 5
item_lists = st.lists(
    st.lists(st.integers(2, CONSTRAINED_VOCAB - 1), min_size=0, max_size=CONSTRAINED_LEN - 1)
    .map(lambda s: tuple(s) + (EOS,)),
    min_size=1, max_size=12, unique=True)


@settings(max_examples=12, deadline=None)
@given(items=item_lists, seed=st.integers(0, 2**16), beams=st.sampled_from([1, 3, 8]),
       alpha=st.sampled_from([0.0, 0.6]))
def test_constrained_beams_are_distinct_valid_items(items, seed, beams, alpha):
    tables = make_tables(seed, batch=2, vocab=CONSTRAINED_VOCAB, length=CONSTRAINED_LEN)
    trie = PrefixTrie.from_sequences(items, vocab_size=CONSTRAINED_VOCAB, eos_id=EOS)
    tokens, scores = run_search(decoding.beam_search, tables, num_decodes=beams, alpha=alpha,
                                max_decode_len=CONSTRAINED_LEN, constraint=trie)
    valid = set(items)
    for row in range(2):
        found = [tuple(as_list(t)) for t, s in zip(tokens[row], scores[row]) if np.isfinite(s)]
        assert len(found) == min(beams, len(valid))
        assert len(set(found)) == len(found) and set(found) <= valid
        assert not tokens[row][~np.isfinite(scores[row])].any()
        for sequence, score in zip(found, scores[row]):
            expected = sequence_log_prob(tables, row, list(sequence)) / penalty(alpha,
                                                                                len(sequence))
            assert np.isclose(score, expected, rtol=1e-4)
    greedy, _ = run_search(decoding.greedy_search, tables, alpha=alpha,
                           max_decode_len=CONSTRAINED_LEN, constraint=trie)
    assert all(tuple(as_list(t)) in valid for t in greedy[:, 0])


def test_constrained_search_with_enough_beams_ranks_all_items_exactly():
    items = [(2, 3, EOS), (2, 4, EOS), (5, EOS), (3, 3, 3, EOS), (4, EOS)]
    tables = make_tables(5, batch=2, vocab=CONSTRAINED_VOCAB, length=CONSTRAINED_LEN)
    trie = PrefixTrie.from_sequences(items, vocab_size=CONSTRAINED_VOCAB, eos_id=EOS)
    tokens, scores = run_search(decoding.beam_search, tables, num_decodes=len(items), alpha=0.6,
                                max_decode_len=CONSTRAINED_LEN, constraint=trie)
    for row in range(2):
        expected = sorted(items, key=lambda seq: -sequence_log_prob(tables, row, list(seq))
                          / penalty(0.6, len(seq)))
        assert [tuple(as_list(t)) for t in tokens[row]] == expected


def test_excluded_items_leave_the_exact_ranking_and_nothing_else_moves():
    # (2, 3) is a prefix of (2, 3, 3): barring (2, 3) must keep (2, 3, 3) reachable.
    items = [(2, 3, EOS), (2, 3, 3, EOS), (2, 4, EOS), (5, EOS), (4, EOS), (3, EOS)]
    tables = make_tables(7, batch=3, vocab=CONSTRAINED_VOCAB, length=CONSTRAINED_LEN)
    trie = PrefixTrie.from_sequences(items, vocab_size=CONSTRAINED_VOCAB, eos_id=EOS)
    barred = [[(5, EOS), (2, 3, EOS)], [], [(4, EOS), (3, EOS), (2, 4, EOS)]]
    excluding = ExcludingTrie.build(trie, barred, eos_id=EOS)
    beams = len(items) - 2
    tokens, scores = run_search(decoding.beam_search, tables, num_decodes=beams, alpha=0.6,
                                max_decode_len=CONSTRAINED_LEN, constraint=excluding)
    for row in range(3):
        allowed = [seq for seq in items if seq not in barred[row]]
        expected = sorted(allowed, key=lambda seq: -sequence_log_prob(tables, row, list(seq))
                          / penalty(0.6, len(seq)))[:beams]
        found = [tuple(as_list(t)) for t, s in zip(tokens[row], scores[row]) if np.isfinite(s)]
        assert found == expected


def test_excluding_trie_masks_by_hand():
    items = [(5, EOS), (6, 7, EOS), (6, 7, 8, EOS), (6, 9, EOS)]
    trie = PrefixTrie.from_sequences(items, vocab_size=10, eos_id=EOS)
    excluding = ExcludingTrie.build(trie, [[(5, EOS)], [(6, 7, EOS)], []], eos_id=EOS)

    def allowed(row, prefix):
        state = excluding.initial_state((3,))[row]
        for token in prefix:
            state = excluding.next_state(state, jnp.int32(token))
        return np.flatnonzero(excluding.allowed_next_tokens(state)).tolist()

    assert allowed(0, []) == [6]             # a single-token barred id is masked at its token
    assert allowed(1, []) == [5, 6] and allowed(1, [6]) == [7, 9]
    assert allowed(1, [6, 7]) == [8]         # barred (6, 7) may not end; (6, 7, 8) may
    assert allowed(2, [6, 7]) == [EOS, 8] and allowed(0, [6, 7, 8]) == [EOS]
    with pytest.raises(ValueError, match="3 examples"):
        excluding.initial_state((4,))


# ---- the real network: cached decoding equals full forward passes -----------------------------

def _tiny_t5():
    from flax import linen as nn

    from p5_jax import models, network
    config = network.tiny_config(vocab_size=40, d_model=32, num_heads=2, d_kv=8, d_ff=64,
                                 num_encoder_layers=1,
                                 dropout_rate=0.0, whole_word_embeddings=0,
                                 tie_embeddings=False)
    module = network.Transformer(config)
    model = models.EncoderDecoderModel(module=module)
    params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), batch_size=2, input_length=7,
                                      target_length=6))
    params = params.get("params", params)
    return network, module, model, params


@pytest.mark.parametrize("search, beams", [(decoding.beam_search, 3),
                                           (decoding.greedy_search, 1)])
def test_cached_decoding_equals_uncached_forward_passes(search, beams):
    network, module, model, params = _tiny_t5()
    encoder_tokens = jnp.array([[5, 9, 33, 7, 1, 0, 0], [12, 3, 30, 2, 8, 11, 1]], jnp.int32)
    length = 6
    encoded = module.apply({"params": params}, encoder_tokens, method=network.Transformer.encode)

    def cached_step(ids_Nx1, cache):  # 2 rows first, then 2 * beams rows (cache expanded)
        per_example = ids_Nx1.shape[0] // encoded.shape[0]
        logits, variables = module.apply(
            {"params": params, "cache": cache}, encoded,
            decoding.expand_to_beams(encoder_tokens, num_beams=per_example), ids_Nx1,
            decode=True, max_decode_length=length, mutable=["cache"],
            method=network.Transformer.decode)
        return logits[:, -1], variables["cache"]

    def full_step(ids_Nx1, cache):
        rows = jnp.arange(ids_Nx1.shape[0])
        per_example = ids_Nx1.shape[0] // encoded.shape[0]
        prefix = cache["prefix"].at[rows, cache["step"]].set(ids_Nx1[:, 0])
        logits = module.apply({"params": params},
                              decoding.expand_to_beams(encoded, num_beams=per_example),
                              decoding.expand_to_beams(encoder_tokens, num_beams=per_example),
                              prefix, method=network.Transformer.decode)
        return logits[rows, cache["step"]], {"prefix": prefix, "step": cache["step"] + 1}

    cache = model.init_cache(params, encoded=encoded, encoder_input_tokens=encoder_tokens,
                             max_decode_length=length)
    full_cache = {"prefix": jnp.zeros((2, length), jnp.int32),
                  "step": jnp.zeros((2,), jnp.int32)}
    run = functools.partial(search, eos_id=EOS, num_decodes=beams, alpha=0.6,
                            max_decode_len=length)
    cached = jax.jit(lambda c: run(cache=c, tokens_to_logits=cached_step))(cache)
    full = jax.jit(lambda c: run(cache=c, tokens_to_logits=full_step))(full_cache)
    np.testing.assert_array_equal(np.asarray(cached[0]), np.asarray(full[0]))
    np.testing.assert_allclose(np.asarray(cached[1]), np.asarray(full[1]), rtol=1e-5)
    for row_tokens in np.asarray(cached[0]):
        assert len({tuple(t) for t in row_tokens}) == beams
    assert len({tuple(t) for t in np.asarray(cached[0]).reshape(-1, length)}) >= 2
    if search is decoding.beam_search:  # the model's own search: beams share the encoder K/V
        predicted = model.predict_batch(params, {"encoder_input_tokens": encoder_tokens},
                                        num_decodes=beams, alpha=0.6, max_decode_length=length)
        np.testing.assert_array_equal(np.asarray(predicted[0]), np.asarray(full[0]))
        np.testing.assert_allclose(np.asarray(predicted[1]), np.asarray(full[1]), rtol=1e-5)


# ---- top_k_rows: the chunked top-k equals lax.top_k -------------------------------------------

@pytest.mark.parametrize("width, k", [(1000, 7), (32128, 40), (333, 3), (20, 5)])
def test_top_k_rows_matches_lax_top_k(width, k):
    rng = np.random.default_rng(width)
    x = rng.standard_normal((6, width)).astype(np.float32)
    x[1, :] = -np.inf  # a fully masked row
    x[2, rng.permutation(width)[:width - 3]] = -np.inf  # fewer allowed entries than k
    x[3, :] = np.round(x[3, :], 1)  # many equal values
    expected_values, expected_index = jax.lax.top_k(jnp.asarray(x), k)
    values, index = jax.jit(decoding.top_k_rows, static_argnums=1)(jnp.asarray(x), k)
    np.testing.assert_array_equal(np.asarray(values), np.asarray(expected_values))
    np.testing.assert_array_equal(np.take_along_axis(x, np.asarray(index), axis=1),
                                  np.asarray(values))  # the indices point at those values
    for row in (0, 4, 5):  # distinct values: the same indices in the same order
        np.testing.assert_array_equal(np.asarray(index)[row], np.asarray(expected_index)[row])
    assert all(len(set(row)) == k for row in np.asarray(index))  # no entry picked twice
