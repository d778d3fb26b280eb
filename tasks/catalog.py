"""Per-dataset tables of a prepared dataset, read on first use: the item catalogue
(`<prepared_root>/<name>/items.jsonl`), the users (`users.jsonl`), the manifest and the users'
full histories (the prepared sequences)."""
from __future__ import annotations

import functools
import json
import pathlib
import warnings

import numpy as np

from p5_jax import paths


def _records(root: str, dataset: str, table: str) -> list[dict]:
    """The rows of `<root>/<dataset>/<table>`, a JSON object a line."""
    path = f"{root}/{dataset}/{table}"
    try:
        with open(path, encoding="utf-8") as file:
            return [json.loads(line) for line in file if line.strip()]
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"{dataset} is not prepared under {root} (no {table}); run "
            f"python -m p5_jax.data.prepare --dataset {dataset}") from error


@functools.lru_cache(maxsize=16)
def _read(root: str, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    records = _records(root, dataset, "items.jsonl")
    if not records:
        raise ValueError(f"{root}/{dataset}/items.jsonl lists no items")
    ids = np.array([r["item_id"] for r in records], dtype=object)
    titles = np.array([r.get("title", "") for r in records], dtype=object)
    return ids, titles


def item_ids(dataset: str) -> np.ndarray:
    """Every item id of the prepared dataset, in file order."""
    return _read(str(paths.prepared_root()), dataset)[0]


def item_titles(dataset: str) -> np.ndarray:
    """Titles aligned with `item_ids` ("" where the dataset has none)."""
    return _read(str(paths.prepared_root()), dataset)[1]


@functools.lru_cache(maxsize=16)
def _read_users(root: str, dataset: str) -> dict[str, str]:
    return {str(r["user_id"]): r.get("user_desc", "") for r in _records(root, dataset,
                                                                         "users.jsonl")}


def users(dataset: str) -> dict[str, str]:
    """user id -> user description of the prepared dataset, in file order."""
    return users_under(str(paths.prepared_root()), dataset)


def users_under(root: str, dataset: str) -> dict[str, str]:
    """`users` of a dataset prepared under `root`."""
    return _read_users(str(root), dataset)


@functools.lru_cache(maxsize=8)
def _read_histories(root: str, dataset: str, split: str) -> dict[str, tuple[str, ...]]:
    from p5_jax.data import tfds_builders  # TFDS only when histories are asked for

    records = tfds_builders.load(root=root, dataset=dataset, kind="sequences", split=split)
    return {r["user_id"].decode(): tuple(i.decode() for i in r["history"])
            for r in records.as_numpy_iterator()}


def full_histories_under(root, dataset: str, split: str) -> dict[str, tuple[str, ...]]:
    """user id -> every item before the user's `split` item, oldest first (at test: the
    training items and the validation item), of a dataset prepared under `root`."""
    return _read_histories(str(root), dataset, split)


def full_histories(dataset: str, split: str = "test") -> dict[str, tuple[str, ...]]:
    """`full_histories_under` the prepared root."""
    return full_histories_under(paths.prepared_root(), dataset, split)


def manifest(dataset: str) -> dict:
    """The prepared dataset's manifest.json."""
    path = paths.prepared_root() / dataset / "manifest.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{dataset} is not prepared (no {path}); run "
                                f"python -m p5_jax.data.prepare --dataset {dataset}") from error


def prepared_manifests(root=None) -> dict[str, dict]:
    """{name: manifest} of every dataset prepared under `root` (default: the prepared root).

    Reads only the manifests. Folders without one (`vocab/`, an unfinished preparation) are
    skipped, and so, with a warning, is a manifest that is unreadable or names another dataset
    (a renamed folder: its TFDS builds still carry the old name)."""
    root = pathlib.Path(root) if root is not None else paths.prepared_root()
    found = {}
    for path in sorted(root.glob("*/manifest.json")):
        name = path.parent.name
        if name.startswith("."):   # prepare's temporary folders
            continue
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            warnings.warn(f"skipping {path}: {error}", stacklevel=2)
            continue
        if not isinstance(manifest, dict) or manifest.get("name", name) != name:
            warnings.warn(f"skipping {path}: not the manifest of a dataset named {name!r}",
                          stacklevel=2)
            continue
        found[name] = manifest
    return found


def clear_cache() -> None:
    _read.cache_clear()
    _read_users.cache_clear()
    _read_histories.cache_clear()
