"""A trained model on a device mesh: parameters from a checkpoint, jitted data-parallel decoding.

`Predictor` runs beam search, greedy decoding and candidate scoring with the batch split over the
mesh's `data` axis and the parameters laid out by the logical-axis rules (so a `model` axis > 1
shards them too). Every process passes the same global batch; results come back replicated as
numpy arrays, so every host can compute metrics.
"""
from __future__ import annotations

import os
import pathlib
from collections.abc import Iterable, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import linen as nn

from p5_jax import checkpoints, id_text, partitioning, scoring
from p5_jax.prefix_trie import PrefixTrie
from p5_jax.token_ids import EOS_ID

ITEM_PREFIX = id_text.ITEM_PREFIX


# -- parameters -----------------------------------------------------------------------------------
def padded_vocab_size(size: int, *, multiple: int = 128) -> int:
    """The model's vocabulary rows for a tokenizer of `size` pieces, as training sizes them."""
    return -(-size // multiple) * multiple


def checkpoint_dir(path) -> pathlib.Path:
    """A training MODEL_DIR means its checkpoints/ folder; anything else is used as given."""
    path = pathlib.Path(path)
    return path / "checkpoints" if (path / "checkpoints").is_dir() else path


def abstract_params(*, model, mesh, rules=partitioning.LOGICAL_AXIS_RULES):
    """Parameter shapes and dtypes with their mesh shardings (a restore or placement target)."""
    boxed = jax.eval_shape(lambda rng: model.init(rng, batch_size=1, input_length=8,
                                                  target_length=8), jax.random.PRNGKey(0))
    shardings = partitioning.logical_shardings(boxed, mesh=mesh, rules=rules)
    return jax.tree.map(lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype,
                                                                    sharding=sharding),
                        nn.unbox(boxed), shardings)


def resolve_checkpoint(path) -> tuple[pathlib.Path, int]:
    """(checkpoint directory, step) from a model directory (latest step) or one step's folder."""
    path = pathlib.Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint path {path} is not a directory")
    if path.name.isdigit() and (path / checkpoints.STATE_ITEM).is_dir():
        return path.parent, int(path.name)
    step = checkpoints.Checkpointer(directory=path, save_every=1, async_save=False).latest_step()
    if step is None:
        raise FileNotFoundError(f"no complete checkpoint under {path} (expected step folders "
                                f"holding '{checkpoints.STATE_ITEM}/')")
    return path, step


def restore_params(*, path, abstract):
    """Only the parameters of a train-state checkpoint (the optimizer state is not read).

    `path` is a model directory (its latest step is used) or a step folder; `abstract` the tree
    `abstract_params` returns. Returns (params, step).
    """
    directory, step = resolve_checkpoint(path)
    target = {"params": abstract}
    manager = ocp.CheckpointManager(os.path.abspath(directory),
                                    item_names=(checkpoints.STATE_ITEM, checkpoints.DATA_ITEM))
    args = ocp.args.Composite(**{checkpoints.STATE_ITEM: ocp.args.PyTreeRestore(
        item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
        partial_restore=True)})
    try:
        restored = manager.restore(step, args=args)
    finally:
        manager.close()
    return restored[checkpoints.STATE_ITEM]["params"], step


# -- item ids -------------------------------------------------------------------------------------
def tokenize_item_ids(*, vocabulary, item_ids: Iterable[str]) -> dict[str, tuple[int, ...]]:
    """item id -> token ids of its target text `item_<id>` followed by eos."""
    return {item: tuple(int(t) for t in vocabulary.encode(ITEM_PREFIX + item)) + (EOS_ID,)
            for item in item_ids}


def item_trie(*, item_tokens: Mapping[str, tuple[int, ...]], vocab_size: int) -> PrefixTrie:
    """The trie of every valid item target, for constrained decoding."""
    return PrefixTrie.from_sequences(item_tokens.values(), vocab_size=vocab_size, eos_id=EOS_ID)


# -- decoding on the mesh -------------------------------------------------------------------------
class Predictor:
    """Jitted beam search, greedy decoding and candidate scoring, data-parallel over `mesh`."""

    def __init__(self, *, model, params, mesh, rules=partitioning.LOGICAL_AXIS_RULES):
        self.model, self.mesh, self.rules = model, mesh, rules
        self.params = params
        self._replicated = partitioning.replicated(mesh)
        self._batch_sharding = partitioning.batch_sharding(mesh)
        self._beam = jax.jit(self._beam_fn, out_shardings=self._replicated,
                             static_argnames=("num_decodes", "max_decode_length", "alpha"))
        self._score = jax.jit(self._score_fn, out_shardings=self._replicated,
                              static_argnames=("chunk_size",))

    @property
    def vocab_size(self) -> int:
        return self.model.module.config.vocab_size

    @property
    def data_size(self) -> int:
        return partitioning.data_parallel_size(self.mesh)

    def _put(self, array: np.ndarray):
        """A global array split over the data axis from the same host value on every process."""
        array = np.asarray(array)
        if array.shape[0] % self.data_size:
            raise ValueError(f"batch of {array.shape[0]} rows does not split over the data axis "
                             f"of size {self.data_size}")
        return partitioning.global_array(array, self._batch_sharding)

    def _put_batch(self, batch: Mapping[str, np.ndarray]) -> dict:
        keys = ("encoder_input_tokens", "encoder_whole_word_ids")
        return {key: self._put(batch[key]) for key in keys if key in batch}

    def _beam_fn(self, params, batch, trie, *, num_decodes, max_decode_length, alpha):
        return self.model.predict_batch(params, batch, num_decodes=num_decodes, alpha=alpha,
                                        max_decode_length=max_decode_length, prefix_trie=trie)

    def _score_fn(self, params, batch, candidates, *, chunk_size):
        return scoring.candidate_log_likelihoods(module=self.model.module, params=params,
                                                 batch=batch, candidates_BxCxT=candidates,
                                                 chunk_size=chunk_size)

    def beam_search(self, batch, *, num_decodes: int, max_decode_length: int,
                    alpha: float = 0.6, trie: PrefixTrie | None = None):
        """(tokens int32 [B, K, T], scores float32 [B, K]) as numpy, best first."""
        with partitioning.sharding_context(self.mesh, self.rules):
            tokens, scores = self._beam(self.params, self._put_batch(batch), trie,
                                        num_decodes=num_decodes, alpha=alpha,
                                        max_decode_length=max_decode_length)
        return np.asarray(tokens), np.asarray(scores)

    def greedy(self, batch, *, max_decode_length: int) -> np.ndarray:
        """Tokens int32 [B, T] of the single best decode (one beam, i.e. greedy)."""
        tokens, _ = self.beam_search(batch, num_decodes=1, max_decode_length=max_decode_length,
                                     alpha=0.0)
        return tokens[:, 0, :]

    def score_candidates(self, batch, candidates_BxCxT: np.ndarray, *,
                         chunk_size: int = 0) -> np.ndarray:
        """log p(candidate | input), float32 [B, C] (see `p5_jax.scoring`)."""
        with partitioning.sharding_context(self.mesh, self.rules):
            scores = self._score(self.params, self._put_batch(batch),
                                 self._put(candidates_BxCxT), chunk_size=chunk_size)
        return np.asarray(scores)


def decode_tokens(*, vocabulary, tokens: np.ndarray) -> str:
    """Text of one decoded row: tokens up to the first eos, padding dropped."""
    ids = [int(t) for t in np.asarray(tokens).reshape(-1)]
    if EOS_ID in ids:
        ids = ids[:ids.index(EOS_ID)]
    return vocabulary.decode([t for t in ids if t != 0])
