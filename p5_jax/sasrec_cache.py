"""The cache of a trained SASRec (`p5_jax.sasrec`) and the prepared data it trains on.

Cache (`save` / `load`): `<prepared_root>/<dataset>/baselines/sasrec/` holds params.msgpack,
items.txt (the item id of each embedding row) and sasrec.json (settings, the md5 and seed of the
dataset's manifest.json, the validation metrics and curve). A cache made from another manifest is
stale and is not loaded.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib

import jax
import numpy as np
from flax import serialization

from p5_jax.sasrec import ItemIndex, Ranker, Settings, TrainResult

CACHE_FORMAT = 1
PARAMS_FILE, ITEMS_FILE, INFO_FILE = "params.msgpack", "items.txt", "sasrec.json"


def cache_dir(root, dataset: str) -> pathlib.Path:
    return pathlib.Path(root) / dataset / "baselines" / "sasrec"


def manifest_fingerprint(root, dataset: str) -> dict:
    """{"manifest_md5", "manifest_seed"} of `<root>/<dataset>/manifest.json`."""
    path = pathlib.Path(root) / dataset / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"{dataset} is not prepared under {root} (no {path})")
    data = path.read_bytes()
    return {"manifest_md5": hashlib.md5(data).hexdigest(),
            "manifest_seed": json.loads(data).get("seed")}


def catalogue(root, dataset: str) -> list[str]:
    """Every item id of the prepared dataset, in items.jsonl order."""
    path = pathlib.Path(root) / dataset / "items.jsonl"
    with open(path, encoding="utf-8") as file:
        return [str(json.loads(line)["item_id"]) for line in file if line.strip()]


def prepared_sequences(root, dataset: str, split: str) -> list[tuple[str, list[str], str]]:
    """(user id, history, target) of each sequence record of a prepared split, in file order."""
    from p5_jax.data import tfds_builders

    records = tfds_builders.load(root=root, dataset=dataset, kind="sequences", split=split)
    return [(r["user_id"].decode(), [i.decode() for i in r["history"]], r["target"].decode())
            for r in records.as_numpy_iterator()]


def save(result: TrainResult, *, root, dataset: str, extra: dict | None = None) -> pathlib.Path:
    """Writes the cache atomically (a temporary sibling folder renamed into place)."""
    from p5_jax.data.output import atomic_directory

    ranker = result.ranker
    info = {"format": CACHE_FORMAT, "model": "SASRec", "dataset": dataset,
            **manifest_fingerprint(root, dataset), "settings": dataclasses.asdict(ranker.settings),
            "num_items": len(ranker.items), "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run, "train_seconds": round(result.seconds, 1),
            "validation": result.validation, "curve": result.curve, **(extra or {})}
    with atomic_directory(cache_dir(root, dataset)) as folder:
        params = jax.tree_util.tree_map(np.asarray, jax.device_get(ranker.params))
        (folder / PARAMS_FILE).write_bytes(serialization.msgpack_serialize(params))
        (folder / ITEMS_FILE).write_text("\n".join(ranker.items.ids) + "\n", encoding="utf-8")
        (folder / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return cache_dir(root, dataset)


@dataclasses.dataclass
class Cached:
    ranker: Ranker
    info: dict


def cache_status(root, dataset: str) -> tuple[Cached | None, str]:
    """(the cached model, "") or (None, why there is none usable: absent or stale)."""
    folder = cache_dir(root, dataset)
    if not (folder / INFO_FILE).exists():
        return None, f"no cached SASRec in {folder}"
    info = json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))
    if info.get("format") != CACHE_FORMAT:
        return None, f"the cached SASRec in {folder} has another format; train it again"
    current = manifest_fingerprint(root, dataset)
    if info.get("manifest_md5") != current["manifest_md5"]:
        return None, (f"the cached SASRec in {folder} was trained on another preparation of "
                      f"{dataset} (its manifest changed); train it again")
    settings = Settings(**info["settings"])
    items = ItemIndex((folder / ITEMS_FILE).read_text(encoding="utf-8").splitlines())
    params = serialization.msgpack_restore((folder / PARAMS_FILE).read_bytes())
    return Cached(ranker=Ranker(settings=settings, items=items, params=params), info=info), ""


def load(root, dataset: str) -> Cached | None:
    """The cached model of `dataset`, or None when there is none or it is stale."""
    return cache_status(root, dataset)[0]
