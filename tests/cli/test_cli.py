"""The command line, end to end, on a local directory and on S3 (moto)."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from mailvault.sources.local import iter_local
from mailvault.storage.base import open_backend
from mailvault.vault.format import id_from_name
from mailvault.vault.repository import Repository
from tests.cli.helpers import (
    PASSWORD,
    SUBJECT_MARKER,
    MailTree,
    file_hashes,
    generated_messages,
    message_files,
    mv,
    mv_json,
    sha,
    write_flat_maildir,
)
from tests.vault.helpers import flip_byte, write_snapshot

ACCOUNT = "alice@example.org"
ISO_WITH_OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d$")


def import_tree(vault: str, tree: MailTree, account: str = ACCOUNT) -> dict:  # type: ignore[type-arg]
    result = mv_json("import", vault, tree.root, "--account", account, "--format", "maildir")
    assert result["messages"] == len(tree.messages)
    return result


@pytest.fixture
def vault(vault_location: str, maildir: MailTree) -> str:
    """An encrypted vault (local or S3) holding one snapshot of the ``maildir`` tree."""
    out = mv("init", vault_location)
    assert "encrypted" in out.stdout
    import_tree(vault_location, maildir)
    return vault_location


def reread(dest: Path, fmt: str, *, mboxrd: bool = False) -> dict[str, Counter[str]]:
    out: dict[str, Counter[str]] = {}
    for info, messages in iter_local(dest, fmt, mboxrd=mboxrd):
        for m in messages:
            out.setdefault(info.name, Counter())[sha(m.raw)] += 1
    return out


# -- import, list, export ---------------------------------------------------------------


def test_import_json_summary(vault_location: str, maildir: MailTree) -> None:
    mv("init", vault_location)
    result = import_tree(vault_location, maildir)
    assert result["account"] == ACCOUNT
    assert result["format"] == "maildir"
    assert result["folders"] == 4
    assert result["bytes"] == sum(len(m.raw) for m in maildir.messages)
    assert result["new_messages"] == len(maildir.hashes())  # duplicates stored once
    assert result["new_bytes"] == sum(len(m.raw) for m in {sha(m.raw): m for m in maildir.messages}.values())
    assert 0 < result["stored_bytes"] < result["bytes"]
    assert len(result["snapshot"]) == 64
    again = import_tree(vault_location, maildir)
    assert again["new_messages"] == 0 and again["new_bytes"] == 0
    assert again["snapshot"] != result["snapshot"]


def test_export_maildir_is_byte_identical(vault: str, maildir: MailTree, tmp_path: Path) -> None:
    dest = tmp_path / "restored"
    result = mv_json("export", vault, "latest", dest, "--account", ACCOUNT)
    assert result["messages"] == len(maildir.messages)
    assert result["format"] == "maildir"
    assert file_hashes(message_files(dest)) == Counter(sha(m.raw) for m in maildir.messages)
    assert file_hashes(message_files(dest)) == file_hashes(message_files(maildir.root))
    # Folders keep their names (stored on disk in modified UTF-7 again) ...
    assert (dest / "Entw&APw-rfe" / "cur").is_dir()
    assert (dest / "Projects" / "2002" / "Q1 &- Q2" / "cur").is_dir()
    assert reread(dest, "maildir") == maildir.by_folder()
    # ... and every message its flags and INTERNALDATE.
    got = Counter()
    for info, messages in iter_local(dest, "maildir"):
        for m in messages:
            assert m.internaldate is not None
            got[(info.name, sha(m.raw), frozenset(m.flags), int(m.internaldate.timestamp()))] += 1
    want = Counter((m.folder, sha(m.raw), frozenset(m.flags), m.mtime) for m in maildir.messages)
    assert got == want


def test_export_eml(vault: str, maildir: MailTree, tmp_path: Path) -> None:
    dest = tmp_path / "eml"
    mv("export", vault, "latest", dest, "--account", ACCOUNT, "--format", "eml", "-q")
    files = [p for p in dest.rglob("*.eml")]
    assert len(files) == len(maildir.messages)
    assert file_hashes(files) == maildir.hashes()
    assert (dest / "Entwürfe").is_dir()
    assert (dest / "Projects" / "2002" / "Q1 & Q2").is_dir()
    assert reread(dest, "eml") == maildir.by_folder()


def test_export_mbox(vault: str, maildir: MailTree, tmp_path: Path) -> None:
    dest = tmp_path / "mbox"
    mv("export", vault, "latest", dest, "--account", ACCOUNT, "--format", "mbox", "-q")
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*.mbox")) == [
        "Entwürfe.mbox",
        "INBOX.mbox",
        "Projects/2002/Q1 & Q2.mbox",
        "Sent.mbox",
    ]
    expected: dict[str, Counter[str]] = {}
    for m in maildir.messages:
        # mbox cannot end a message without a newline: the exporter adds one (documented).
        raw = m.raw if m.raw.endswith(b"\n") else m.raw + b"\n"
        expected.setdefault(m.folder, Counter())[sha(raw)] += 1
    assert reread(dest, "mbox", mboxrd=True) == expected
    assert b"\n>>From quoted once\n" in (dest / "INBOX.mbox").read_bytes()


def test_export_one_folder_by_id_prefix(vault: str, maildir: MailTree, tmp_path: Path) -> None:
    (snap,) = mv_json("snapshots", vault)
    dest = tmp_path / "one"
    mv("export", vault, snap["id"][:10], dest, "--folder", "Entwürfe", "-q")
    want = Counter(sha(m.raw) for m in maildir.messages if m.folder == "Entwürfe")
    assert file_hashes(message_files(dest)) == want
    assert [p.name for p in dest.iterdir()] == ["Entw&APw-rfe"]


def test_export_never_overwrites(vault: str, tmp_path: Path) -> None:
    dest = tmp_path / "twice"
    mv("export", vault, "latest", dest, "--format", "eml", "-q")
    before = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    result = mv("export", vault, "latest", dest, "--format", "eml", "-q", code=2)
    assert "already exists" in result.stderr
    assert {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()} == before


def test_snapshots_json(vault: str, maildir: MailTree) -> None:
    import_tree(vault, maildir, account="bob@example.org")
    rows = mv_json("snapshots", vault)
    assert [r["account"] for r in rows] == [ACCOUNT, "bob@example.org"]
    for r in rows:
        assert re.fullmatch(r"[0-9a-f]{64}", r["id"])
        assert ISO_WITH_OFFSET.match(r["time"]), r["time"]
        assert r["messages"] == len(maildir.messages)
        assert r["bytes"] == sum(len(m.raw) for m in maildir.messages)
        assert r["folders"] == 4
        assert r["source"]["kind"] == "maildir"
        assert r["source"]["address"] == str(maildir.root.resolve())
    assert datetime.fromisoformat(rows[0]["time"]) <= datetime.fromisoformat(rows[1]["time"])
    only_bob = mv_json("snapshots", vault, "--account", "bob@example.org")
    assert [r["id"] for r in only_bob] == [rows[1]["id"]]
    text = mv("snapshots", vault).stdout
    assert rows[0]["id"][:12] in text and "bob@example.org" in text


def test_ls_json(vault: str, maildir: MailTree) -> None:
    rows = mv_json("ls", vault, "latest", "--account", ACCOUNT)
    assert len(rows) == len(maildir.messages)
    assert {r["folder"] for r in rows} == {"INBOX", "Entwürfe", "Sent", "Projects/2002/Q1 & Q2"}
    assert {r["folder_raw"] for r in rows} == {".", ".Entw&APw-rfe", ".Sent", "Projects/2002/Q1 & Q2"}
    for r in rows:
        src = maildir.find(r["uid"])
        assert r["folder"] == src.folder
        assert r["blob"] == sha(src.raw)
        assert r["size"] == len(src.raw)
        assert isinstance(r["flags"], list)
        assert set(r["flags"]) == src.flags
        assert ISO_WITH_OFFSET.match(r["internaldate"]), r["internaldate"]
        date = datetime.fromisoformat(r["internaldate"])
        assert date.utcoffset() is not None
        assert date.timestamp() == src.mtime
    big = next(r for r in rows if r["size"] > 1 << 20)
    assert big["folder"] == "INBOX"
    filtered = mv_json("ls", vault, "latest", "--account", ACCOUNT, "--folder", "Projects/2002/Q1 & Q2")
    assert sorted(r["uid"] for r in filtered) == sorted(
        m.uid for m in maildir.messages if m.folder == "Projects/2002/Q1 & Q2"
    )
    text = mv("ls", vault, "latest", "--account", ACCOUNT).stdout
    assert f"{len(maildir.messages)} messages" in text.splitlines()[0]


def test_check_and_stats(vault: str, maildir: MailTree) -> None:
    report = mv_json("check", vault, "--read-data")
    assert report["ok"] is True
    assert report["errors"] == []
    assert report["snapshots"] == 1
    st = mv_json("stats", vault)
    # messages + folder manifests + single-instance attachment parts
    assert report["blobs_checked"] == len(maildir.hashes()) + 4 + st["parts"]
    out = mv("check", vault, "--read-data")
    assert "no errors" in out.stdout
    assert st["snapshots"] == 1 and st["accounts"] == 1
    assert st["messages"] == len(maildir.messages)
    assert st["unique_blobs"] == len(maildir.hashes())
    assert st["raw_bytes"] == sum(len(m.raw) for m in {sha(m.raw): m for m in maildir.messages}.values())
    assert 0 < st["stored_bytes"] < st["raw_bytes"]
    assert st["ratio"] == pytest.approx(st["stored_bytes"] / st["raw_bytes"], abs=1e-4)
    assert "ratio:" in mv("stats", vault).stdout


def test_check_finds_a_flipped_pack_byte(vault: str) -> None:
    backend = open_backend(vault)
    packs = sorted(((size, name) for name, size in backend.list("data/")), reverse=True)
    size, name = packs[0]  # the largest pack: message blocks
    flip_byte(backend, name, size // 3)
    result = mv("check", vault, "--read-data", code=1)
    short = id_from_name(name).hex()[:12]
    assert f"pack {short}" in result.stderr
    assert "error(s)" in result.stdout
    report = json.loads(mv("check", vault, "--read-data", "--json", code=1).stdout)
    assert report["ok"] is False
    # The pack, and the messages that damage costs (named in "lost_messages").
    assert all(short in e or "cannot be read back" in e for e in report["errors"]), report["errors"]
    assert [d["id"][:12] for d in report["damaged"]] == [short]
    assert report["lost_messages"] and all(m["folder"] and m["uid"] for m in report["lost_messages"])
    mv("check", vault)  # without --read-data the structure is still fine


def test_check_finds_a_deleted_pack(vault: str) -> None:
    backend = open_backend(vault)
    name = max(backend.list("data/"), key=lambda x: x[1])[0]
    backend.delete(name)
    result = mv("check", vault, code=1)
    assert "missing from storage" in result.stderr


# -- passwords, encryption --------------------------------------------------------------


def test_wrong_password_is_exit_2_and_one_line(vault: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILVAULT_PASSWORD", "not the password")
    for args in (["snapshots", vault], ["ls", vault, "latest"], ["check", vault], ["stats", vault]):
        result = mv(*args, code=2)
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith("mailvault: ")
        assert "wrong password" in result.stderr
        assert result.stdout == ""
        assert "not the password" not in result.stderr


def test_password_file_and_command(vault: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILVAULT_PASSWORD")
    pw_file = tmp_path / "pw"
    pw_file.write_text(PASSWORD + "\n")
    assert len(mv_json("snapshots", vault, "--password-file", pw_file)) == 1
    assert len(mv_json("snapshots", vault, "--password-command", f"cat {pw_file}")) == 1
    result = mv("snapshots", vault, code=2)  # no password from anywhere and no terminal
    assert "MAILVAULT_PASSWORD" in result.stderr and result.stderr.count("\n") == 1


def test_init_no_encryption(tmp_path: Path, maildir: MailTree, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILVAULT_PASSWORD")
    vault = str(tmp_path / "plainvault")
    info = mv_json("init", vault, "--no-encryption")
    assert info["encrypted"] is False
    assert "NOT encrypted" in mv("init", str(tmp_path / "other"), "--no-encryption").stdout
    assert json.loads((tmp_path / "plainvault" / "config").read_text())["encryption"] == "none"
    assert not (tmp_path / "plainvault" / "keys").exists()
    import_tree(vault, maildir)
    dest = tmp_path / "out"
    mv("export", vault, "latest", dest, "-q")
    assert file_hashes(message_files(dest)) == maildir.hashes()
    assert mv_json("check", vault, "--read-data")["ok"] is True


def test_no_message_text_readable_in_vault(vault: str, maildir: MailTree) -> None:
    assert any(SUBJECT_MARKER.encode() in m.raw for m in maildir.messages)
    backend = open_backend(vault)
    names = [name for name, _ in backend.list("")]
    assert any(n.startswith("data/") for n in names)
    for name in names:
        data = backend.get(name)
        assert SUBJECT_MARKER.encode() not in data, name
        assert b"Entw\xc3\xbcrfe" not in data and b"Entw&APw-rfe" not in data, name
        assert ACCOUNT.encode() not in data, name


def test_init_twice_and_non_empty(vault_location: str) -> None:
    mv("init", vault_location)
    result = mv("init", vault_location, code=2)
    assert "already exists" in result.stderr and result.stderr.count("\n") == 1


def test_init_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "thesis.tex").write_text("\\documentclass{article}")
    result = mv("init", tmp_path / "full", code=2)
    assert "not empty" in result.stderr
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["thesis.tex"]


def test_bad_options(vault: str, tmp_path: Path) -> None:
    assert (
        "unknown --format"
        in mv("import", vault, tmp_path, "--account", "a", "--format", "lotus-notes", code=2).stderr
    )
    assert (
        "unknown --format" in mv("export", vault, "latest", tmp_path / "x", "--format", "pst", code=2).stderr
    )
    assert "pack size" in mv("init", tmp_path / "v2", "--pack-size", "0", code=2).stderr
    assert "no snapshot" in mv("ls", vault, "0123456789abcdef", code=2).stderr
    assert "no vault here" in mv("snapshots", tmp_path / "nothing", code=2).stderr
    assert "no such file" in mv("import", vault, tmp_path / "missing", "--account", "a", code=2).stderr


# -- sources other than Maildir ---------------------------------------------------------


def test_import_mbox_and_eml_sources(vault_location: str, tmp_path: Path) -> None:
    msgs = generated_messages(12, seed=3)
    msgs[2] = b"From: crlf@example.org\r\nSubject: CRLF in mbox\r\n\r\nbody\r\n"
    msgs[3] = b"From: q@example.org\nSubject: quoted\n\n>From the archive, unchanged without --mboxrd\n"
    msgs[4] = b"From: n@example.org\nSubject: nul\n\n\x00\x01\x02\n"
    mbox = tmp_path / "Archive.mbox"
    with open(mbox, "wb") as f:
        for raw in msgs:
            f.write(b"From sender@example.org Mon Mar  4 10:00:00 2002\n" + raw + b"\n")
    eml = tmp_path / "emls"
    (eml / "sub folder").mkdir(parents=True)
    emls = generated_messages(5, seed=4)
    for i, raw in enumerate(emls[:3]):
        (eml / f"{i}.eml").write_bytes(raw)
    for i, raw in enumerate(emls[3:]):
        (eml / "sub folder" / f"{i}.eml").write_bytes(raw)

    mv("init", vault_location)
    r1 = mv_json("import", vault_location, mbox, "--account", "mbox-user", "--format", "mbox")
    assert (r1["format"], r1["folders"], r1["messages"]) == ("mbox", 1, 12)
    r2 = mv_json("import", vault_location, eml, "--account", "eml-user", "--format", "eml")
    assert (r2["format"], r2["folders"], r2["messages"]) == ("eml", 2, 5)

    d1 = tmp_path / "x1"
    mv("export", vault_location, "latest", d1, "--account", "mbox-user", "-q")
    assert file_hashes(message_files(d1)) == Counter(map(sha, msgs))
    rows = mv_json("ls", vault_location, "latest", "--account", "mbox-user")
    assert [r["folder"] for r in rows] == ["Archive"] * 12
    assert rows[0]["internaldate"] == "2002-03-04T10:00:00+00:00"  # from the From line

    d2 = tmp_path / "x2"
    mv("export", vault_location, "latest", d2, "--account", "eml-user", "--format", "eml", "-q")
    assert reread(d2, "eml") == {
        "INBOX": Counter(map(sha, emls[:3])),
        "sub folder": Counter(map(sha, emls[3:])),
    }


# -- S3 specifics -----------------------------------------------------------------------


@pytest.mark.s3
def test_s3_objects_are_packed(s3_vault_url: str, tmp_path: Path) -> None:
    msgs = generated_messages(200, seed=5, size=3000)
    write_flat_maildir(tmp_path / "md", msgs)
    mv("init", s3_vault_url)
    mv("import", s3_vault_url, tmp_path / "md", "--account", "a", "-q")
    import boto3

    bucket, prefix = s3_vault_url[len("s3://") :].split("/", 1)
    client = boto3.client("s3")
    try:
        keys = [
            o["Key"]
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
            for o in page.get("Contents", [])
        ]
    finally:
        client.close()
    data = [k for k in keys if k.startswith(f"{prefix}/data/")]
    assert 1 <= len(data) < 10, data
    assert len(keys) < 20, keys
    assert not any(k.startswith(f"{prefix}/locks/") for k in keys)  # released
    dest = tmp_path / "back"
    mv("export", s3_vault_url, "latest", dest, "-q")
    assert file_hashes(message_files(dest)) == Counter(map(sha, msgs))


# -- export safety ----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["maildir", "mbox", "eml"])
def test_export_stays_inside_dest(tmp_path: Path, fmt: str) -> None:
    vault = str(tmp_path / "v")
    mv("init", vault)
    nasty = {
        "../../evil": [b"Subject: 1\n\nx\n"],
        "/abs/evil": [b"Subject: 2\n\ny\n"],
        "a/../../../evil": [b"3"],
    }
    with Repository.open(vault, PASSWORD.encode) as repo:
        write_snapshot(repo, nasty, account="evil")
        write_snapshot(repo, {"..": [b"Subject: 4\n\nz\n"], ".": [b"5"]}, account="evil", delimiter=".")
    work = tmp_path / "work"
    dest = work / "a" / "b" / "dest"
    dest.mkdir(parents=True)
    (snap1, snap2) = mv_json("snapshots", vault)
    for snap in (snap1, snap2):
        mv("export", vault, snap["id"], dest, "--format", fmt, "-q")
    created = [p for p in work.rglob("*") if p.is_file()]
    assert created
    for p in created:
        assert p.resolve().is_relative_to(dest.resolve()), p
    assert not any(
        "evil" in p.name for p in work.rglob("*") if not p.resolve().is_relative_to(dest.resolve())
    )
    assert not (tmp_path / "evil").exists() and not Path("/abs/evil").exists()
    assert len(created) >= 5 if fmt != "mbox" else len(created) >= 4


# -- locks ------------------------------------------------------------------------------


def test_unlock(vault: str, maildir: MailTree) -> None:
    import subprocess
    import sys

    from tests.vault.test_locks import plant_lock

    with Repository.open(vault, PASSWORD.encode) as repo:
        proc = subprocess.Popen([sys.executable, "-c", "pass"])
        proc.wait()
        plant_lock(repo.backend, repo.sealer, pid=proc.pid, exclusive=True)  # a killed prune
        live = plant_lock(repo.backend, repo.sealer, host="elsewhere.invalid", pid=1, exclusive=True)
    # The live foreign exclusive lock blocks an import ...
    result = mv("import", vault, maildir.root, "--account", ACCOUNT, code=2)
    assert "locked" in result.stderr and "elsewhere.invalid" in result.stderr
    assert result.stderr.count("\n") == 1
    # ... 'unlock' removes only the stale one ...
    out = mv("unlock", vault).stdout
    assert "1 lock(s) removed" in out and f"pid {proc.pid}" in out
    assert {n for n, _ in open_backend(vault).list("locks/")} == {live}
    mv("import", vault, maildir.root, "--account", ACCOUNT, code=2)
    # ... and --remove-all the rest.
    assert "1 lock(s) removed" in mv("unlock", vault, "--remove-all").stdout
    import_tree(vault, maildir)
    assert "0 lock(s) removed" in mv("unlock", vault).stdout
    assert not list(open_backend(vault).list("locks/"))


def test_version() -> None:
    assert mv("--version").stdout.startswith("mailvault ")


def test_no_args_shows_help() -> None:
    result = mv(code=None)
    assert result.exit_code in (0, 2)
    assert "import" in result.output and "export" in result.output


def test_env_cache_dir_is_used(vault: str, tmp_path: Path) -> None:
    assert any((tmp_path / "mv-cache").rglob("index.sqlite"))
    assert os.environ["MAILVAULT_CACHE_DIR"] == str(tmp_path / "mv-cache")
