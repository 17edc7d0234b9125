"""`AtomicFile` is the one temp-file-then-replace writer, for text and for bytes."""

from __future__ import annotations

import gzip

import pytest

from xinstruction_dataset.storage import AtomicFile


def test_bytes_appear_whole_on_commit_and_not_before(tmp_path):
    path = tmp_path / "chart.png"
    picture = bytes(range(256)) * 4
    f = AtomicFile(path, binary=True)
    f.write(picture)
    assert not path.exists()
    f.commit()
    assert path.read_bytes() == picture
    assert [p.name for p in tmp_path.iterdir()] == ["chart.png"]


def test_a_failed_binary_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "chart.png"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with AtomicFile(path, binary=True) as f:
            f.write(b"half")
            raise RuntimeError("killed mid-write")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["chart.png"]


def test_gzip_in_both_modes(tmp_path):
    with AtomicFile(tmp_path / "a.txt.gz") as f:
        f.write("é\n")
    with AtomicFile(tmp_path / "b.bin.gz", binary=True) as f:
        f.write(b"\x00\xff")
    assert gzip.decompress((tmp_path / "a.txt.gz").read_bytes()) == "é\n".encode()
    assert gzip.decompress((tmp_path / "b.bin.gz").read_bytes()) == b"\x00\xff"
