"""A TFRecord file writer that needs no TensorFlow, so `prepare` does not import it (about 3 s).

Each record is framed as TensorFlow writes it: the length (uint64, little-endian), the masked
CRC-32C of those 8 bytes, the data, and the masked CRC-32C of the data.
"""
import os
import struct

import google_crc32c

_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes) -> int:
    """TFRecord's checksum: CRC-32C rotated right by 15 bits plus a constant (mod 2**32)."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
    """`data` as one TFRecord: header, data, footer."""
    length = struct.pack("<Q", len(data))
    return b"".join((length, struct.pack("<I", masked_crc32c(length)), data,
                     struct.pack("<I", masked_crc32c(data))))


class TFRecordFile:
    """Appends records to a new file at `path` (uncompressed, as tf.io.TFRecordWriter's default)."""

    def __init__(self, path: str | os.PathLike):
        self._file = open(path, "wb")

    def write(self, data: bytes) -> None:
        self._file.write(frame(data))

    def close(self) -> None:
        self._file.close()
