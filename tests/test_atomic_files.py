"""write_atomically: the whole new file or the old one, and nothing left beside it."""
import os
import stat

import pytest

from p5_jax import atomic_files


def test_writes_text_and_bytes_readable_by_all_with_no_temporary_file(tmp_path):
    path = tmp_path / "record.json"
    assert atomic_files.write_atomically(path, '{"a": 1}\n') == path
    assert path.read_text() == '{"a": 1}\n'
    atomic_files.write_atomically(path, b"\x00\x01binary")
    assert path.read_bytes() == b"\x00\x01binary"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_a_failed_rename_keeps_the_old_file_and_removes_the_partial_one(tmp_path, monkeypatch):
    path = tmp_path / "record.json"
    path.write_text("old")

    def no_rename(source, target):
        assert os.path.dirname(source) == str(tmp_path)   # same folder: a rename, not a copy
        raise OSError("disk gone")

    monkeypatch.setattr(atomic_files.os, "replace", no_rename)
    with pytest.raises(OSError, match="disk gone"):
        atomic_files.write_atomically(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_a_failed_write_leaves_no_file(tmp_path):
    path = tmp_path / "record.json"
    with pytest.raises(TypeError):
        atomic_files.write_atomically(path, 42)   # neither text nor bytes
    assert list(tmp_path.iterdir()) == []
