"""Numbered text lines from plain or gzipped files, decoded one line at a time so that a byte that
is not UTF-8 is reported at its own line; unreadable, truncated or folder paths are DataErrors."""
import codecs
import gzip
import pathlib
import zlib

from p5_jax.data.errors import DataError


def _check_file(path) -> pathlib.Path:
    path = pathlib.Path(path)
    if path.is_dir():
        raise DataError("is a folder, expected a file", path=path)
    return path


def _open_binary(path):
    path = _check_file(path)
    try:
        with open(path, "rb") as probe:
            gzipped = probe.read(2) == b"\x1f\x8b"
        return gzip.open(path, "rb") if gzipped else open(path, "rb")
    except OSError as err:
        raise DataError(f"cannot be read ({err.strerror or err})", path=path) from None


def _decode(raw: bytes, *, path, line: int) -> str:
    if line == 1 and raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"not UTF-8 text (byte {raw[err.start]:#04x} at byte {err.start + 1} of the line: "
                        f"{err.reason})", path=path, line=line) from None


def numbered_lines(path, policy=None):
    """Yields (1-based line number, line without its newline); blank lines are skipped.

    A line that is not UTF-8 goes to `policy` (skipped or raised); without one it is raised.
    """
    line_number = 0
    try:
        with _open_binary(path) as handle:
            for line_number, raw in enumerate(handle, start=1):
                try:
                    line = _decode(raw, path=path, line=line_number).rstrip("\r\n")
                except DataError as err:
                    if policy is None:
                        raise
                    policy.handle(err)
                    continue
                if line.strip():
                    yield line_number, line
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise DataError(f"truncated or corrupt gzip stream ({err})", path=path,
                        line=line_number + 1) from None


def read_text(path) -> str:
    """A whole plain-text file (e.g. one JSON document); a byte that is not UTF-8 is reported at its line."""
    path = _check_file(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot be read ({err.strerror or err})", path=path) from None
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataError(f"not UTF-8 text (byte {data[err.start]:#04x}: {err.reason})", path=path,
                        line=line) from None
