"""Shipped datasets (name -> format and folder) and the reader for each source format."""
import pathlib

from p5_jax import paths
from p5_jax.data.readers_amazon import read_amazon
from p5_jax.data.readers_p5 import read_p5_sequential
from p5_jax.data.readers_recbole import read_recbole

READERS = {"amazon": read_amazon, "p5_sequential": read_p5_sequential, "recbole": read_recbole}

SHIPPED = {
    "musical_instruments": "amazon",
    "beauty": "p5_sequential",
    "toys": "p5_sequential",
    "ml100k": "recbole",
}
DEFAULT_DATASET = "musical_instruments"


def resolve_source(*, name: str, source=None, fmt: str | None = None) -> tuple:
    """(source path, format) for a shipped name, or for `source` in format `fmt`."""
    if source is None:
        if fmt is not None:
            raise ValueError("--format needs --source")
        if name not in SHIPPED:
            raise ValueError(f"unknown dataset {name!r}: shipped ones are {sorted(SHIPPED)}; "
                             "give --source PATH --format FORMAT for another")
        return paths.SHIPPED_RAW_DIR / name, SHIPPED[name]
    if fmt not in READERS:
        raise ValueError(f"--source needs --format, one of {sorted(READERS)}; got {fmt!r}")
    return pathlib.Path(source), fmt
