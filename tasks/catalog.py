"""Per-dataset item catalogue (`<prepared_root>/<name>/items.jsonl`), read on first use."""
from __future__ import annotations

import functools
import json

import numpy as np

from p5_jax import paths


@functools.lru_cache(maxsize=16)
def _read(root: str, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    path = f"{root}/{dataset}/items.jsonl"
    try:
        with open(path, encoding="utf-8") as file:
            records = [json.loads(line) for line in file if line.strip()]
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"{dataset} is not prepared under {root} (no items.jsonl); run "
            f"python -m p5_jax.data.prepare --dataset {dataset}") from error
    if not records:
        raise ValueError(f"{path} lists no items")
    ids = np.array([r["item_id"] for r in records], dtype=object)
    titles = np.array([r.get("title", "") for r in records], dtype=object)
    return ids, titles


def item_ids(dataset: str) -> np.ndarray:
    """Every item id of the prepared dataset, in file order."""
    return _read(str(paths.prepared_root()), dataset)[0]


def item_titles(dataset: str) -> np.ndarray:
    """Titles aligned with `item_ids` ("" where the dataset has none)."""
    return _read(str(paths.prepared_root()), dataset)[1]


def clear_cache() -> None:
    _read.cache_clear()
