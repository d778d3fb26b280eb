"""Sharing work between the processes of a multi-process job, and gathering what each did.

Work items (evaluation batches) go round-robin: item i is process i mod P's. Results travel as
pickled bytes through `multihost_utils.process_allgather`, so any Python value can be gathered,
and `gather_shares` puts the items back in their original order on every process.
"""
from __future__ import annotations

import pickle
from collections.abc import Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils


def is_mine(index: int) -> bool:
    """Whether work item `index` is this process's (round-robin over the processes)."""
    return index % jax.process_count() == jax.process_index()


def allgather(value) -> list:
    """Every process's `value`, in process order (all processes must call it)."""
    if jax.process_count() == 1:
        return [value]
    payload = np.frombuffer(pickle.dumps(value), np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.array([payload.size], np.int32)))
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[:payload.size] = payload
    gathered = np.asarray(multihost_utils.process_allgather(padded))
    return [pickle.loads(gathered[p, :int(sizes[p, 0])].tobytes())
            for p in range(jax.process_count())]


def gather_shares(mine: Sequence) -> list:
    """Every item's result in item order, from each process's results of its own items (in
    order: items p, p + P, p + 2P, ... of process p)."""
    shares = allgather(list(mine))
    count = len(shares)
    return [shares[i % count][i // count] for i in range(sum(map(len, shares)))]
