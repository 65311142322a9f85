"""The storage backends: the same contract on a local directory and on S3 (moto)."""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from mailvault.errors import ConfigError, ObjectExists, ObjectNotFound, StorageError, StorageFull
from mailvault.storage.base import Backend, open_backend
from mailvault.storage.local import LocalBackend
from mailvault.storage.s3 import MULTIPART_THRESHOLD, S3Backend

MIB = 1024 * 1024


# -- the common contract, on both backends ------------------------------------


def test_put_get_roundtrip(backend: Backend) -> None:
    backend.put("config", b"hello")
    backend.put("data/ab/ab12", bytes(range(256)) * 4)
    assert backend.get("config") == b"hello"
    assert backend.get("data/ab/ab12") == bytes(range(256)) * 4


def test_put_overwrites(backend: Backend) -> None:
    backend.put("index/1", b"old contents")
    backend.put("index/1", b"new")
    assert backend.get("index/1") == b"new"
    assert backend.size("index/1") == 3


def test_empty_object(backend: Backend) -> None:
    backend.put("empty", b"")
    assert backend.get("empty") == b""
    assert backend.get("empty", 0, 10) == b""
    assert backend.size("empty") == 0
    assert list(backend.list("empty")) == [("empty", 0)]


def test_ranged_get(backend: Backend) -> None:
    data = bytes(range(100))
    backend.put("data/x", data)
    assert backend.get("data/x", 10, 5) == data[10:15]
    assert backend.get("data/x", 0, 1) == data[:1]
    assert backend.get("data/x", 90) == data[90:]
    assert backend.get("data/x", 95, 100) == data[95:]  # length past the end is clipped
    assert backend.get("data/x", 100) == b""
    assert backend.get("data/x", 150, 10) == b""
    assert backend.get("data/x", 5, 0) == b""


def test_get_missing(backend: Backend) -> None:
    with pytest.raises(ObjectNotFound):
        backend.get("nope")
    with pytest.raises(ObjectNotFound):
        backend.get("data/ab/nope", 3, 4)
    with pytest.raises(ObjectNotFound):
        backend.get("nope", 0, 0)
    backend.put("file", b"x")
    with pytest.raises(ObjectNotFound):
        backend.get("file/below")  # a path through an object is not an object


def test_exclusive_put(backend: Backend) -> None:
    backend.put("locks/a", b"first", exclusive=True)
    with pytest.raises(ObjectExists):
        backend.put("locks/a", b"second", exclusive=True)
    assert backend.get("locks/a") == b"first"
    backend.put("locks/a", b"forced")  # a plain put still overwrites
    assert backend.get("locks/a") == b"forced"


def test_exclusive_put_race_has_one_winner(backend: Backend) -> None:
    winners: list[int] = []
    losers: list[int] = []
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        barrier.wait()
        try:
            backend.put("lock", f"owner {i}".encode(), exclusive=True)
            winners.append(i)
        except ObjectExists:
            losers.append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert len(losers) == 7
    assert backend.get("lock") == f"owner {winners[0]}".encode()


def test_list_prefixes(backend: Backend) -> None:
    objects = {
        "config": b"c",
        "data/ab/ab01": b"1",
        "data/ab/ab02": b"22",
        "data/cd/cd01": b"333",
        "data2/x": b"4444",
        "snapshots/ab12": b"s",
        "snapshots/abcd": b"ss",
        "snapshots/ff00": b"sss",
        "snapshots/abdir/deep/z": b"zz",
    }
    for name, data in objects.items():
        backend.put(name, data)

    def listed(prefix: str) -> dict[str, int]:
        return dict(backend.list(prefix))

    assert listed("") == {n: len(d) for n, d in objects.items()}
    assert listed("data/") == {"data/ab/ab01": 1, "data/ab/ab02": 2, "data/cd/cd01": 3}
    assert listed("data") == {"data/ab/ab01": 1, "data/ab/ab02": 2, "data/cd/cd01": 3, "data2/x": 4}
    assert listed("data/ab/") == {"data/ab/ab01": 1, "data/ab/ab02": 2}
    assert listed("data/ab/ab0") == {"data/ab/ab01": 1, "data/ab/ab02": 2}
    assert listed("snapshots/ab") == {"snapshots/ab12": 1, "snapshots/abcd": 2, "snapshots/abdir/deep/z": 2}
    assert listed("config") == {"config": 1}
    assert listed("nothing/") == {}
    assert listed("data/zz/") == {}
    assert listed("confi") == {"config": 1}


def test_list_on_empty_backend(backend: Backend) -> None:
    assert list(backend.list()) == []
    assert list(backend.list("data/")) == []


def test_delete(backend: Backend) -> None:
    backend.put("data/a", b"a")
    backend.put("data/b", b"b")
    backend.delete("data/a")
    assert not backend.exists("data/a")
    assert dict(backend.list("data/")) == {"data/b": 1}
    with pytest.raises(ObjectNotFound):
        backend.get("data/a")
    backend.delete("data/a")  # missing: not an error
    backend.delete("never/existed")
    backend.put("data/a", b"again", exclusive=True)  # the name is free again
    assert backend.get("data/a") == b"again"


def test_size_and_exists(backend: Backend) -> None:
    assert not backend.exists("data/x")
    with pytest.raises(ObjectNotFound):
        backend.size("data/x")
    backend.put("data/x", b"12345")
    assert backend.exists("data/x")
    assert backend.size("data/x") == 5
    assert not backend.exists("data")  # a "directory" is not an object
    assert not backend.exists("data/x/y")


@pytest.mark.parametrize("name", ["", "/abs", "a//b", "a/../b", "./a", "a/"])
def test_invalid_names_rejected(backend: Backend, name: str) -> None:
    with pytest.raises(StorageError):
        backend.put(name, b"x")
    with pytest.raises(StorageError):
        backend.get(name)


def test_open_backend(vault_location: str) -> None:
    b = open_backend(vault_location)
    try:
        assert b.location == vault_location
        assert isinstance(b, S3Backend if vault_location.startswith("s3://") else LocalBackend)
        b.put("config", b"x", exclusive=True)
        assert open_backend(vault_location).get("config") == b"x"
    finally:
        b.close()


# -- S3 specifics --------------------------------------------------------------


@pytest.mark.s3
def test_s3_multipart_roundtrip(s3_vault_url: str) -> None:
    b = S3Backend.from_url(s3_vault_url)
    data = os.urandom(20 * MIB + 12345)
    assert len(data) > MULTIPART_THRESHOLD
    calls: list[str] = []
    b._client.meta.events.register("before-call.s3.*", lambda model, **kw: calls.append(model.name))
    b.put("packs/big", data)
    assert "CreateMultipartUpload" in calls
    assert calls.count("UploadPart") == 3
    assert "CompleteMultipartUpload" in calls
    assert "PutObject" not in calls
    assert b.size("packs/big") == len(data)
    assert b.get("packs/big") == data
    assert b.get("packs/big", 8 * MIB - 10, 20) == data[8 * MIB - 10 : 8 * MIB + 10]
    head = b._client.head_object(Bucket=b.bucket, Key="vault/packs/big")
    assert head["ETag"].strip('"').endswith("-3")


@pytest.mark.s3
def test_s3_multipart_exclusive_conflict_aborts_upload(s3_vault_url: str) -> None:
    b = S3Backend.from_url(s3_vault_url)
    b.put("packs/big", b"small one", exclusive=True)
    with pytest.raises(ObjectExists):
        b.put("packs/big", os.urandom(MULTIPART_THRESHOLD + 1), exclusive=True)
    assert b.get("packs/big") == b"small one"
    uploads = b._client.list_multipart_uploads(Bucket=b.bucket).get("Uploads", [])
    assert uploads == []
    b.put("packs/new", os.urandom(MULTIPART_THRESHOLD + 1), exclusive=True)
    assert b.size("packs/new") == MULTIPART_THRESHOLD + 1


@pytest.mark.s3
def test_s3_prefix_isolation(s3_vault_url: str) -> None:
    b = S3Backend.from_url(s3_vault_url)  # s3://bucket/vault
    other = S3Backend.from_url(s3_vault_url + "2")  # s3://bucket/vault2
    root = S3Backend.from_url(s3_vault_url.rsplit("/", 1)[0])  # s3://bucket
    b.put("data/a", b"a")
    other.put("data/b", b"b")
    assert dict(b.list()) == {"data/a": 1}
    assert dict(other.list()) == {"data/b": 1}
    assert dict(root.list()) == {"vault/data/a": 1, "vault2/data/b": 1}
    assert root.location == s3_vault_url.rsplit("/", 1)[0]


@pytest.mark.parametrize(
    ("url", "bucket", "prefix", "location"),
    [
        ("s3://bucket/prefix", "bucket", "prefix", "s3://bucket/prefix"),
        ("s3://bucket/a/b/", "bucket", "a/b", "s3://bucket/a/b"),
        ("s3://bucket", "bucket", "", "s3://bucket"),
        ("s3://bucket/", "bucket", "", "s3://bucket"),
        ("s3://my.bucket-1//p/", "my.bucket-1", "p", "s3://my.bucket-1/p"),
    ],
)
def test_s3_from_url(url: str, bucket: str, prefix: str, location: str) -> None:
    b = S3Backend.from_url(url)
    assert (b.bucket, b.prefix, b.location) == (bucket, prefix, location)
    b.close()


@pytest.mark.parametrize(
    "url",
    [
        "s3://",
        "s3:///prefix",
        "http://bucket/p",
        "s3://bu cket/p",
        "s3://b/p",
        "s3://bucket:99/p",
        "s3://user@bucket/p",
        "s3://bucket/a/../b",
        "s3://bucket/p?x=1",
        "bucket/p",
    ],
)
def test_s3_bad_url(url: str) -> None:
    with pytest.raises(ConfigError):
        S3Backend.from_url(url)


@pytest.mark.s3
def test_s3_missing_bucket(moto_server: str) -> None:
    b = S3Backend.from_url("s3://mv-no-such-bucket-4242/vault")
    with pytest.raises(StorageError, match="does not exist") as info:
        b.get("config")
    assert not isinstance(info.value, ObjectNotFound)
    with pytest.raises(StorageError, match="does not exist"):
        b.put("config", b"x")
    with pytest.raises(StorageError, match="does not exist"):
        list(b.list())


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_s3_unreachable_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    b = S3Backend.from_url("s3://bucket/vault")
    start = time.monotonic()
    for op in (lambda: b.get("config"), lambda: b.put("config", b"x"), lambda: list(b.list())):
        with pytest.raises(StorageError, match="cannot reach S3 endpoint") as info:
            op()
        message = str(info.value)
        assert "\n" not in message
        assert message.startswith("s3://bucket/vault: ")
        assert "not-a-real-secret" not in message
    assert time.monotonic() - start < 10


def test_s3_no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    b = S3Backend.from_url("s3://bucket/vault")
    with pytest.raises(StorageError, match="credentials"):
        b.get("config")


# -- LocalBackend specifics ----------------------------------------------------


def test_local_layout_and_no_temp_left(tmp_path: Path) -> None:
    b = LocalBackend(tmp_path / "v")
    b.put("data/ab/ab12", b"x")
    b.put("data/ab/ab12", b"y")
    b.put("lock", b"l", exclusive=True)
    assert (tmp_path / "v" / "data" / "ab" / "ab12").read_bytes() == b"y"
    assert sorted(p.name for p in (tmp_path / "v").rglob("*") if p.is_file()) == ["ab12", "lock"]
    assert b.location == str(tmp_path / "v")


def test_local_temp_files_invisible(tmp_path: Path) -> None:
    b = LocalBackend(tmp_path)
    b.put("data/ab/ab12", b"real")
    (tmp_path / "data" / "ab" / ".tmp-123-dead").write_bytes(b"partial")
    (tmp_path / ".tmp-999-root").write_bytes(b"partial")
    assert dict(b.list()) == {"data/ab/ab12": 4}
    assert dict(b.list("data/ab/")) == {"data/ab/ab12": 4}
    assert dict(b.list("data/ab/.tmp")) == {}
    with pytest.raises(StorageError):
        b.get("data/ab/.tmp-123-dead")
    assert not b.exists("data/ab/ab12x")
    with pytest.raises(StorageError):
        b.exists("data/ab/.tmp-123-dead")


def test_local_cleanup_temp(tmp_path: Path) -> None:
    b = LocalBackend(tmp_path)
    b.put("data/ab/ab12", b"real")
    old = tmp_path / "data" / "ab" / ".tmp-1-old"
    new = tmp_path / "data" / ".tmp-2-new"
    old.write_bytes(b"o")
    new.write_bytes(b"n")
    past = time.time() - 7200
    os.utime(old, (past, past))
    assert b.cleanup_temp(3600) == 1
    assert not old.exists()
    assert new.exists()
    assert b.cleanup_temp(0) == 1
    assert not new.exists()
    assert dict(b.list()) == {"data/ab/ab12": 4}


def test_local_missing_root_is_empty(tmp_path: Path) -> None:
    b = LocalBackend(tmp_path / "does" / "not" / "exist")
    assert list(b.list()) == []
    assert not b.exists("config")
    with pytest.raises(ObjectNotFound):
        b.get("config")
    b.delete("config")
    assert b.cleanup_temp(0) == 0
    b.put("config", b"c")  # creates the root
    assert b.get("config") == b"c"


@pytest.mark.parametrize(("err", "text"), [(errno.ENOSPC, "no space left"), (errno.EDQUOT, "quota")])
def test_local_disk_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: int, text: str) -> None:
    b = LocalBackend(tmp_path)
    b.put("data/old", b"before")

    def full(fd: int, data: object) -> int:
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(StorageFull, match=text) as info:
        b.put("data/new", b"x" * 1000)
    with pytest.raises(StorageFull):
        b.put("data/old", b"after", exclusive=False)
    monkeypatch.undo()
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "data" / "new") in message
    assert not b.exists("data/new")
    assert b.get("data/old") == b"before"
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["old"]  # no temp file left


def test_local_other_os_error_mapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    b = LocalBackend(tmp_path)

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(StorageError, match="Input/output error") as info:
        b.put("data/a", b"a")
    monkeypatch.undo()
    assert not isinstance(info.value, StorageFull)
    assert "writing" in str(info.value)
    assert list(b.list()) == []
