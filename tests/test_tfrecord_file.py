"""The TensorFlow-free TFRecord writer: byte parity with tf.io.TFRecordWriter, and prepare
runs without importing TensorFlow."""
import pathlib
import subprocess
import sys

import google_crc32c
import pytest

from p5_jax.data import tfrecord_file

AMAZON_FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "data" / "amazon"
RECORDS = [b"", b"a", b"\x00\xff" * 3, bytes(range(256)) * 300]


def test_masked_crc_of_known_values():
    # CRC-32C's check value (RFC 3720), then the mask worked by hand: 0xE3069283 >> 15 is
    # 0x0001C60D, its low 15 bits 0x1283 << 17 are 0x25060000, so the rotation is 0x2507C60D;
    # plus 0xA282EAD8 is 0xC78AB0E5.
    assert google_crc32c.value(b"123456789") == 0xE3069283
    assert tfrecord_file.masked_crc32c(b"123456789") == 0xC78AB0E5


def test_frame_layout():
    framed = tfrecord_file.frame(b"abc")
    assert framed[:8] == (3).to_bytes(8, "little")
    assert framed[12:15] == b"abc" and len(framed) == 8 + 4 + 3 + 4


def test_files_equal_tensorflows_and_read_back(tmp_path):
    tf = pytest.importorskip("tensorflow")
    ours, theirs = tmp_path / "ours.tfrecord", tmp_path / "theirs.tfrecord"
    writer = tfrecord_file.TFRecordFile(ours)
    with tf.io.TFRecordWriter(str(theirs)) as reference:
        for record in RECORDS:
            writer.write(record)
            reference.write(record)
    writer.close()
    assert ours.read_bytes() == theirs.read_bytes()
    read = [bytes(x) for x in tf.data.TFRecordDataset(str(ours)).as_numpy_iterator()]
    assert read == RECORDS


def test_prepare_command_does_not_import_tensorflow(tmp_path):
    code = ("import sys\n"
            "from p5_jax.data import prepare\n"
            "code = prepare.main(sys.argv[1:])\n"
            "assert 'tensorflow' not in sys.modules, 'prepare imported TensorFlow'\n"
            "sys.exit(code)\n")
    arguments = ["--dataset", "toy", "--out_dir", str(tmp_path), "--source", str(AMAZON_FIXTURE),
                 "--format", "amazon", "--num_negatives", "1"]
    result = subprocess.run([sys.executable, "-c", code, *arguments], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    written = sorted(path.name for path in (tmp_path / "toy" / "tfds").rglob("*.tfrecord*"))
    assert any(name.startswith("p5_reviews-train") for name in written)
    assert any(name.startswith("p5_sequences-test") for name in written)
