"""Writing a prepared dataset atomically: build in a hidden sibling folder, rename when complete."""
import contextlib
import hashlib
import json
import os
import pathlib
import shutil
import uuid


def md5(path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_jsonl(path, rows) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_json(path, obj) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(obj, handle, indent=2, ensure_ascii=False)
        handle.write("\n")


@contextlib.contextmanager
def atomic_directory(final: pathlib.Path):
    """Yields a temporary sibling of `final`; on success it replaces `final`, on error it is removed."""
    final = pathlib.Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.parent / f".{final.name}.partial-{uuid.uuid4().hex[:8]}"
    partial.mkdir()
    try:
        yield partial
        previous = None
        if final.exists():
            previous = final.parent / f".{final.name}.previous-{uuid.uuid4().hex[:8]}"
            os.rename(final, previous)
        os.rename(partial, final)
        if previous is not None:
            shutil.rmtree(previous)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
