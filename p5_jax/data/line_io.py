"""Numbered text lines from plain or gzipped files, with truncation reported as a DataError."""
import gzip
import zlib

from p5_jax.data.errors import DataError


def _open_text(path):
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    if gzipped:
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, "r", encoding="utf-8")


def numbered_lines(path):
    """Yields (1-based line number, line without its newline); blank lines are skipped."""
    line_number = 0
    try:
        with _open_text(path) as handle:
            for line_number, line in enumerate(handle, start=1):
                line = line.rstrip("\r\n")
                if line.strip():
                    yield line_number, line
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise DataError(f"truncated or corrupt gzip stream ({err})", path=path,
                        line=line_number + 1) from None
    except UnicodeDecodeError as err:
        raise DataError(f"not UTF-8 text ({err.reason})", path=path, line=line_number + 1) from None
