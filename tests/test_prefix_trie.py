"""PrefixTrie: masks and transitions against a plain Python walk of the same sequences."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p5_jax.prefix_trie import PrefixTrie

EOS = 1


def _python_allowed(sequences, prefix):
    return sorted({seq[len(prefix)] for seq in sequences
                   if len(seq) > len(prefix) and list(seq[:len(prefix)]) == list(prefix)})


def _walk(trie, prefix):
    state = trie.initial_state(())
    for token in prefix:
        state = trie.next_state(state, jnp.int32(token))
    return state


def test_hand_built_trie_masks_and_transitions():
    sequences = [[5, 3, EOS], [5, 4, EOS], [6, EOS], [5, 3, EOS]]
    trie = PrefixTrie.from_sequences(sequences, vocab_size=8, eos_id=EOS)
    assert trie.num_nodes == 8  # root, 5, 5-3, 5-3-eos, 5-4, 5-4-eos, 6, 6-eos
    root_mask = np.asarray(trie.allowed_next_tokens(trie.initial_state(())))
    assert np.flatnonzero(root_mask).tolist() == [5, 6]
    after_5 = _walk(trie, [5])
    assert np.flatnonzero(trie.allowed_next_tokens(after_5)).tolist() == [3, 4]
    assert np.flatnonzero(trie.allowed_next_tokens(_walk(trie, [5, 4]))).tolist() == [EOS]
    leaf = _walk(trie, [6, EOS])
    assert not np.asarray(trie.allowed_next_tokens(leaf)).any()
    dead = _walk(trie, [7])
    assert int(dead) == trie.dead_state
    assert int(_walk(trie, [7, 5])) == trie.dead_state
    assert not np.asarray(trie.allowed_next_tokens(dead)).any()
    assert trie.max_degree == 2


def test_batched_states_and_jit():
    trie = PrefixTrie.from_sequences([[2, EOS], [3, 2, EOS]], vocab_size=4, eos_id=EOS)
    states = jnp.array([[0, 0], [0, 0]], jnp.int32)
    tokens = jnp.array([[2, 3], [0, 2]], jnp.int32)
    step = jax.jit(lambda t, s, x: t.next_state(s, x))
    moved = step(trie, states, tokens)
    masks = jax.jit(lambda t, s: t.allowed_next_tokens(s))(trie, moved)
    assert masks.shape == (2, 2, 4)
    assert np.flatnonzero(masks[0, 0]).tolist() == [EOS]
    assert np.flatnonzero(masks[0, 1]).tolist() == [2]
    assert int(moved[1, 0]) == trie.dead_state
    assert np.flatnonzero(masks[1, 1]).tolist() == [EOS]


@pytest.mark.parametrize("sequences, message", [
    ([], "at least one"),
    ([[]], "empty"),
    ([[3, 4]], "must end with eos"),
    ([[3, EOS, 4, EOS]], "before its end"),
    ([[9, EOS]], "outside"),
])
def test_bad_sequences_raise(sequences, message):
    with pytest.raises(ValueError, match=message):
        PrefixTrie.from_sequences(sequences, vocab_size=6, eos_id=EOS)


sequence_lists = st.lists(
    st.lists(st.integers(2, 6), min_size=0, max_size=4).map(lambda s: s + [EOS]),
    min_size=1, max_size=8)


@settings(max_examples=40, deadline=None)
@given(sequences=sequence_lists, data=st.data())
def test_masks_match_python_walk(sequences, data):
    trie = PrefixTrie.from_sequences(sequences, vocab_size=7, eos_id=EOS)
    base = data.draw(st.sampled_from(sequences))
    prefix = base[:data.draw(st.integers(0, len(base)))]
    if data.draw(st.booleans()):
        prefix = prefix + [data.draw(st.integers(0, 6))]
    mask = np.asarray(trie.allowed_next_tokens(_walk(trie, prefix)))
    assert np.flatnonzero(mask).tolist() == _python_allowed(sequences, prefix)
