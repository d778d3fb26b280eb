"""A finished task's scored rows kept on disk instead of in memory.

An evaluation keeps every task's rows until it writes its reports (baselines score the same
users, and every row is written to `predictions/<task>.jsonl`). Held in memory they grew with
the number of examples (about 7 KB each); spilled after each task, memory stays flat and only
the task being decoded is held. The file is in the predictions files' format (one JSON row per
line), so writing the predictions is a copy.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
from collections.abc import Iterable, Iterator, Sequence

from p5_jax.report import json_safe


def write_rows(file, rows: Iterable[dict]) -> None:
    """`rows` as JSON lines (NaN and infinities as null, tuples as lists)."""
    for row in rows:
        file.write(json.dumps(json_safe(row)) + "\n")


class SpilledRows(Sequence):
    """Rows read back from their JSON-lines file on each pass (values as JSON gives them)."""

    def __init__(self, path: str | os.PathLike, count: int):
        self.path, self._count = pathlib.Path(path), count

    @classmethod
    def spill(cls, rows: Sequence[dict], path: str | os.PathLike) -> SpilledRows:
        with open(path, "w", encoding="utf-8") as file:
            write_rows(file, rows)
        return cls(path, len(rows))

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[dict]:
        with open(self.path, encoding="utf-8") as file:
            for line in file:
                yield json.loads(line)

    def __getitem__(self, index):
        return list(self)[index]

    def copy_to(self, path: str | os.PathLike) -> None:
        shutil.copyfile(self.path, path)
