"""A prefix trie over token-id sequences, stored as flat arrays usable inside jit.

Used to constrain decoding to valid item ids: the trie is built from the tokenised ids of every
item (each ending with eos), and a decoding state is a node index. The edges are stored in
compressed-sparse-row form (node -> contiguous, token-sorted run of edges), so memory grows with
the number of edges rather than nodes x vocabulary; a lookup reads a fixed window of
`max_degree` edges, which keeps every shape static.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np


@flax.struct.dataclass
class PrefixTrie:
    """Trie over token sequences; node 0 is the root, node `num_nodes` is a dead sink.

    edge_start_N2: int32 [num_nodes + 2]; node n's edges are edge_start[n]:edge_start[n + 1].
    edge_tokens_E, edge_children_E: int32 [num_edges], the token and child node of each edge.
    """
    edge_start_N2: jax.Array
    edge_tokens_E: jax.Array
    edge_children_E: jax.Array
    vocab_size: int = flax.struct.field(pytree_node=False)
    max_degree: int = flax.struct.field(pytree_node=False)

    @classmethod
    def from_sequences(cls, sequences: Iterable[Sequence[int]], *, vocab_size: int,
                       eos_id: int) -> "PrefixTrie":
        """Builds the trie; every sequence must end with `eos_id` and hold it nowhere else."""
        children = [{}]  # node -> {token: child node}
        count = 0
        for sequence in sequences:
            _check_sequence(sequence, vocab_size=vocab_size, eos_id=eos_id, index=count)
            node = 0
            for token in sequence:
                token = int(token)
                if token not in children[node]:
                    children[node][token] = len(children)
                    children.append({})
                node = children[node][token]
            count += 1
        if count == 0:
            raise ValueError("PrefixTrie needs at least one sequence")
        return cls._from_children(children, vocab_size=vocab_size)

    @classmethod
    def _from_children(cls, children: list[dict[int, int]], *, vocab_size: int) -> "PrefixTrie":
        degrees = np.array([len(edges) for edges in children] + [0], dtype=np.int64)
        edge_start = np.concatenate([[0], np.cumsum(degrees)]).astype(np.int32)
        tokens, targets = [], []
        for edges in children:
            for token in sorted(edges):
                tokens.append(token)
                targets.append(edges[token])
        return cls(edge_start_N2=jnp.asarray(edge_start),
                   edge_tokens_E=jnp.asarray(np.array(tokens, dtype=np.int32)),
                   edge_children_E=jnp.asarray(np.array(targets, dtype=np.int32)),
                   vocab_size=int(vocab_size), max_degree=int(degrees.max()))

    @property
    def num_nodes(self) -> int:
        return self.edge_start_N2.shape[0] - 2

    @property
    def dead_state(self) -> int:
        """The sink reached by any token the trie does not allow; nothing follows it."""
        return self.num_nodes

    def initial_state(self, shape: Sequence[int]) -> jax.Array:
        return jnp.zeros(tuple(shape), dtype=jnp.int32)

    def _edge_window(self, state):
        """Tokens, children and validity of up to `max_degree` edges per state: [..., D]."""
        start = self.edge_start_N2[state]
        end = self.edge_start_N2[state + 1]
        index = start[..., None] + jnp.arange(self.max_degree, dtype=jnp.int32)
        valid = index < end[..., None]
        index = jnp.minimum(index, self.edge_tokens_E.shape[0] - 1)
        return self.edge_tokens_E[index], self.edge_children_E[index], valid

    def allowed_next_tokens(self, state: jax.Array) -> jax.Array:
        """bool [..., vocab_size]: which tokens may follow each state."""
        state = jnp.asarray(state, dtype=jnp.int32)
        tokens, _, valid = self._edge_window(state)
        tokens_MxD = jnp.where(valid, tokens, self.vocab_size).reshape(-1, self.max_degree)
        rows_Mx1 = jnp.arange(tokens_MxD.shape[0])[:, None]
        mask = jnp.zeros((tokens_MxD.shape[0], self.vocab_size), dtype=bool)
        mask = mask.at[rows_Mx1, tokens_MxD].set(True, mode="drop")
        return mask.reshape(state.shape + (self.vocab_size,))

    def next_state(self, state: jax.Array, token: jax.Array) -> jax.Array:
        """The node reached from `state` by `token` (same shapes), or `dead_state`."""
        state = jnp.asarray(state, dtype=jnp.int32)
        tokens, children, valid = self._edge_window(state)
        match = valid & (tokens == jnp.asarray(token)[..., None])
        child = jnp.sum(jnp.where(match, children, 0), axis=-1)
        return jnp.where(jnp.any(match, axis=-1), child, self.dead_state).astype(jnp.int32)


def _check_sequence(sequence, *, vocab_size: int, eos_id: int, index: int) -> None:
    tokens = [int(token) for token in sequence]
    if not tokens:
        raise ValueError(f"sequence {index} is empty")
    if tokens[-1] != eos_id:
        raise ValueError(f"sequence {index} {tokens} must end with eos_id={eos_id}")
    if eos_id in tokens[:-1]:
        raise ValueError(f"sequence {index} {tokens} holds eos_id={eos_id} before its end")
    bad = [token for token in tokens if not 0 <= token < vocab_size]
    if bad:
        raise ValueError(f"sequence {index} has tokens {bad} outside [0, {vocab_size})")
