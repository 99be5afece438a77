"""pela's cache: one decompressed copy per version of a file, written atomically, or a warning."""

import gzip
import os

import pytest

from pela.data.cache import cached_copy, data_format, gunzip, gunzipped_copy
from pela.errors import PelaError, PelaWarning


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PELA_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_gzipped_file_is_read_through_its_inner_format(tmp_path):
    assert data_format(tmp_path / "train.jsonl.gz") == ".jsonl" and data_format(tmp_path / "a.CSV") == ".csv"
    (tmp_path / "t.txt.gz").write_bytes(gzip.compress(b"a\nb\n"))
    assert gunzip(tmp_path / "t.txt.gz") == b"a\nb\n"
    (tmp_path / "cut.gz").write_bytes(gzip.compress(b"x" * 1000)[:20])
    with pytest.raises(PelaError, match="not a readable gzip file"):
        gunzip(tmp_path / "cut.gz")


def test_one_copy_per_version_and_a_new_version_replaces_the_old(tmp_path, cache):
    src = tmp_path / "t.txt.gz"
    src.write_bytes(gzip.compress(b"one\n"))
    first = gunzipped_copy(src, progress=False)
    assert first.read_bytes() == b"one\n" and gunzipped_copy(src, progress=False) == first
    src.write_bytes(gzip.compress(b"two\n"))
    os.utime(src, ns=(1, 10**18))  # a new version: another size or time
    second = gunzipped_copy(src, progress=False)
    assert second != first and second.read_bytes() == b"two\n" and not first.exists()
    assert [p.name for p in (cache / "gunzip").iterdir()] == [second.name]  # no temporary left


def test_an_unwritable_cache_warns_and_falls_back(tmp_path, monkeypatch):
    monkeypatch.setenv("PELA_CACHE", str(tmp_path / "file"))
    (tmp_path / "file").write_text("a file, not a folder")
    (tmp_path / "t.txt").write_text("x")
    with pytest.warns(PelaWarning, match="set PELA_CACHE to a writable folder"):
        assert cached_copy(tmp_path / "t.txt", "kind", "", lambda out: out.write_text("y")) is None
