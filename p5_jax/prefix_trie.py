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
        children: list[dict[int, int]] = [{}]  # node -> {token: child node}
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
        offsets = jnp.arange(self.max_degree, dtype=jnp.int32).reshape((1,) * start.ndim + (-1,))
        index = start[..., None] + offsets
        valid = index < end[..., None]
        index = jnp.minimum(index, self.edge_tokens_E.shape[0] - 1)
        return self.edge_tokens_E[index], self.edge_children_E[index], valid

    def allowed_next_tokens(self, state: jax.Array) -> jax.Array:
        """bool [..., vocab_size]: which tokens may follow each state."""
        state = jnp.asarray(state, dtype=jnp.int32)
        tokens, _, valid = self._edge_window(state)
        return self.token_mask(tokens, valid)

    def token_mask(self, tokens: jax.Array, valid: jax.Array) -> jax.Array:
        """bool [..., vocab_size] from edge windows [..., D]: True at each valid edge's token."""
        tokens_MxD = jnp.where(valid, tokens, self.vocab_size).reshape(-1, self.max_degree)
        rows_Mx1 = jnp.arange(tokens_MxD.shape[0])[:, None]
        mask = jnp.zeros((tokens_MxD.shape[0], self.vocab_size), dtype=bool)
        mask = mask.at[rows_Mx1, tokens_MxD].set(True, mode="drop")
        return mask.reshape(tokens.shape[:-1] + (self.vocab_size,))

    def node_after(self, tokens: Sequence[int]) -> int:
        """The node reached from the root by `tokens` (host-side; `dead_state` if none)."""
        starts, edge_tokens, children = (np.asarray(a) for a in (
            self.edge_start_N2, self.edge_tokens_E, self.edge_children_E))
        node = 0
        for token in tokens:
            window = edge_tokens[starts[node]:starts[node + 1]]
            index = int(np.searchsorted(window, int(token)))
            if index == len(window) or window[index] != int(token):
                return self.dead_state
            node = int(children[starts[node] + index])
        return node

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


@flax.struct.dataclass
class ExcludingTrie:
    """A `PrefixTrie` whose sequences are also barred per example (e.g. a user's own items).

    The decoding state is `example * stride + node`, so the beams of each example carry their
    example's row of `barred_BxS` (bool [batch, stride], stride = trie nodes + the dead sink):
    True at the node a barred sequence reaches just before its eos. Such a node may not take
    eos, and the token into it is masked too when eos is all that could follow (a single-token
    id), so no beam is spent on a barred sequence that can only die.
    """
    trie: PrefixTrie
    barred_BxS: jax.Array
    eos_only_S: jax.Array
    eos_id: int = flax.struct.field(pytree_node=False)

    @classmethod
    def build(cls, trie: PrefixTrie, barred: Sequence[Sequence[Sequence[int]]], *,
              eos_id: int) -> "ExcludingTrie":
        """`barred[b]`: the token sequences (each ending with eos) example b may not produce."""
        stride = trie.num_nodes + 1
        barred_BxS = np.zeros((len(barred), stride), dtype=bool)
        for row, sequences in enumerate(barred):
            for sequence in sequences:
                barred_BxS[row, trie.node_after(list(sequence)[:-1])] = True
        barred_BxS[:, trie.dead_state] = False
        return cls(trie=trie, barred_BxS=jnp.asarray(barred_BxS),
                   eos_only_S=jnp.asarray(_eos_only_nodes(trie, eos_id)), eos_id=int(eos_id))

    @property
    def vocab_size(self) -> int:
        return self.trie.vocab_size

    @property
    def stride(self) -> int:
        return self.trie.num_nodes + 1

    def initial_state(self, shape: Sequence[int]) -> jax.Array:
        """Example b's root; `shape` must be (batch,) as the decoders ask."""
        if len(shape) != 1 or shape[0] != self.barred_BxS.shape[0]:
            raise ValueError(f"ExcludingTrie built for {self.barred_BxS.shape[0]} examples, "
                             f"asked for initial states of shape {tuple(shape)}")
        return jnp.arange(shape[0], dtype=jnp.int32) * self.stride

    def allowed_next_tokens(self, state: jax.Array) -> jax.Array:
        example, node = jnp.divmod(jnp.asarray(state, dtype=jnp.int32), self.stride)
        tokens, children, valid = self.trie._edge_window(node)
        closes_barred = (tokens == self.eos_id) & self.barred_BxS[example, node][..., None]
        enters_dead_end = (self.barred_BxS[example[..., None], children]
                           & self.eos_only_S[children])
        return self.trie.token_mask(tokens, valid & ~closes_barred & ~enters_dead_end)

    def next_state(self, state: jax.Array, token: jax.Array) -> jax.Array:
        example, node = jnp.divmod(jnp.asarray(state, dtype=jnp.int32), self.stride)
        return example * self.stride + self.trie.next_state(node, token)


def _eos_only_nodes(trie: PrefixTrie, eos_id: int) -> np.ndarray:
    """bool [num_nodes + 1]: nodes whose one outgoing edge is eos."""
    starts, tokens = np.asarray(trie.edge_start_N2), np.asarray(trie.edge_tokens_E)
    degree = np.diff(starts)[:trie.num_nodes + 1]
    first = tokens[np.minimum(starts[:trie.num_nodes + 1], len(tokens) - 1)]
    return (degree == 1) & (first == eos_id)
