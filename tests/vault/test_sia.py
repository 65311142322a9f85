"""Single-instance attachments: skeletons rebuild exact bytes; prune, check, stats and old vaults."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from mailvault.errors import IntegrityError
from mailvault.model import message_id
from mailvault.vault import sia
from mailvault.vault.check import check
from mailvault.vault.format import BLOB_MESSAGE, BLOB_PART, BLOB_SKELETON, pack_name, sha256
from mailvault.vault.prune import prune
from mailvault.vault.repair import repair
from mailvault.vault.repository import Repository, VaultParams
from mailvault.vault.skeletons import skeleton_parts
from mailvault.vault.stats import vault_stats
from tests.common import FAST_SCRYPT
from tests.sia_mail import generate
from tests.vault.helpers import PASSWORD, make_message, stored_bytes, write_snapshot

MakeRepo = Callable[..., Repository]
DATA = Path(__file__).parent / "data"
MAIL = generate(70, seed=3, scale=0.25)


# -- the splitter on its own --------------------------------------------------------------------


def test_every_generated_message_splits_and_rebuilds_exactly() -> None:
    split_count = 0
    for raw in MAIL:
        s = sia.split(raw, 4096)
        if s is None:
            continue
        split_count += 1
        parts = {p.part_id: p.data for p in s.parts}
        assert sia.rebuild(s.skeleton, parts.__getitem__) == raw
        assert sia.message_id(s.skeleton) == sha256(raw)
        assert set(sia.part_ids(s.skeleton)) == set(parts)
        assert all(sha256(d) == i for i, d in parts.items())
        assert len(s.skeleton) < len(raw)
    assert split_count > len(MAIL) // 2


def _mime(body: bytes, eol: bytes = b"\r\n") -> bytes:
    return (
        b"Subject: x" + eol + b'Content-Type: multipart/mixed; boundary="b1"' + eol + eol
        + b"--b1" + eol + b"Content-Type: text/plain" + eol + eol + b"hi" + eol
        + b"--b1" + eol + b"Content-Type: image/png" + eol + b"Content-Transfer-Encoding: base64" + eol + eol
        + body + eol + b"--b1--" + eol
    )  # fmt: skip


def test_same_file_in_other_line_widths_is_one_part() -> None:
    data = bytes(range(256)) * 40
    text = base64.b64encode(data)
    ids = set()
    for width, eol in ((76, b"\r\n"), (72, b"\r\n"), (76, b"\n"), (64, b"\n")):
        body = eol.join(text[i : i + width] for i in range(0, len(text), width))
        raw = _mime(body, eol)
        s = sia.split(raw, 4096)
        assert s is not None and len(s.parts) == 1
        assert s.parts[0].data == data  # stored decoded
        assert sia.rebuild(s.skeleton, {s.parts[0].part_id: data}.__getitem__) == raw
        ids.add(s.parts[0].part_id)
    assert ids == {sha256(data)}


def test_irregular_base64_is_kept_as_text() -> None:
    text = base64.b64encode(bytes(range(256)) * 40)
    body = text[:50] + b"\r\n" + b"\r\n".join(text[i : i + 76] for i in range(50, len(text), 76))
    raw = _mime(body)
    s = sia.split(raw, 4096)
    assert s is not None and len(s.parts) == 1
    assert s.parts[0].b64 is None and s.parts[0].data == body
    assert sia.rebuild(s.skeleton, {s.parts[0].part_id: body}.__getitem__) == raw


def test_text_leaves_split_only_when_large() -> None:
    """A leaf that is not base64 becomes a part only from TEXT_MIN_PART (64 KiB) on: a smaller text
    body compresses better beside its message (in Date order) than alone in a part pack."""

    def with_text(n: int) -> bytes:
        line = b"The quarterly report, section by section, as discussed in the meeting.\r\n"
        body = (line * (n // len(line) + 1))[:n]
        return (
            b'Subject: t\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\n'
            b"Content-Type: text/html\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + body + b"\r\n--b1--\r\n"
        )

    assert sia.split(with_text(10_000), 4096) is None
    big = with_text(sia.TEXT_MIN_PART + 100)
    s = sia.split(big, 4096)
    assert s is not None and len(s.parts) == 1 and s.parts[0].b64 is None
    assert sia.rebuild(s.skeleton, {s.parts[0].part_id: s.parts[0].data}.__getitem__) == big


@pytest.mark.parametrize(
    "raw",
    [
        b"no headers at all " * 1000,
        b"Subject: plain\r\n\r\n" + b"x" * 3000,  # below the threshold
        b'Content-Type: multipart/mixed; boundary="zz"\r\n\r\n' + b"--zz\r\n" + b"y" * 9000,  # never closed
        b"Content-Type: multipart/mixed\r\n\r\n" + b"z" * 9000,  # no boundary
    ],
    ids=["no-headers", "small", "unclosed", "no-boundary"],
)
def test_messages_without_usable_parts_stay_whole(raw: bytes) -> None:
    s = sia.split(raw, 4096)
    if s is not None:  # allowed only if it rebuilds (the part found is real)
        parts = {p.part_id: p.data for p in s.parts}
        assert sia.rebuild(s.skeleton, parts.__getitem__) == raw
    assert sia.split(b"Subject: plain\r\n\r\n" + b"x" * 3000, 4096) is None


def test_damaged_skeleton_is_refused() -> None:
    s = sia.split(MAIL[0], 4096) or next(x for x in map(lambda m: sia.split(m, 4096), MAIL) if x)
    parts = {p.part_id: p.data for p in s.parts}
    with pytest.raises(IntegrityError):
        sia.rebuild(s.skeleton, lambda i: parts[i] + b"!")
    with pytest.raises(Exception, match="skeleton"):
        sia.rebuild(s.skeleton[:-3], parts.__getitem__)


# -- through the repository ------------------------------------------------------------------


def test_vault_stores_shared_parts_once_and_reads_exact_bytes(make_repo: MakeRepo) -> None:
    repo = make_repo()
    write_snapshot(repo, {"INBOX": MAIL[:40], "Sent": MAIL[40:]})
    write_snapshot(repo, {"INBOX": MAIL[::2]}, account="bob@example.org")
    for raw in MAIL:
        assert repo.read_blob(sha256(raw)) == raw
    snap = repo.resolve_snapshot("latest", "alice@example.org")
    assert [r for _f, _e, r in repo.iter_messages(snap)] == MAIL
    skel = repo.cache.blob_stats(BLOB_SKELETON)[0]
    parts = repo.cache.blob_stats(BLOB_PART)[0]
    assert skel > 30 and 0 < parts < skel
    st = vault_stats(repo)
    assert st.unique_blobs == len(set(MAIL))
    assert st.raw_bytes == sum(len(m) for m in set(MAIL))
    assert st.skeleton_messages == skel and st.parts == parts
    assert st.sia_saving > 0.3
    assert check(repo, read_data=True).ok


def test_vault_is_smaller_than_whole_message_storage(make_repo: MakeRepo, tmp_path: Path) -> None:
    # This mailbox (2.7 MB) would fit in one 4 MiB block, where zstd itself finds the repeats;
    # real mailboxes are hundreds of blocks long (bench/sia_bench.py: 67 MB at defaults, 0.07x).
    # Blocks of 256 KiB on both sides model that.
    small = 256 << 10
    repo = make_repo(params=VaultParams(block_size=small))
    write_snapshot(repo, {"INBOX": MAIL})
    whole = Repository.init(
        str(tmp_path / "whole"), PASSWORD, VaultParams(block_size=small, sia_min_part=0), scrypt=FAST_SCRYPT
    )
    write_snapshot(whole, {"INBOX": MAIL})
    assert whole.cache.blob_stats(BLOB_SKELETON)[0] == 0
    size, size_whole = stored_bytes(repo.backend, "data/"), stored_bytes(whole.backend, "data/")
    assert size < 0.7 * size_whole, (size, size_whole)
    whole.close()


def test_prune_keeps_parts_that_kept_skeletons_need(make_repo: MakeRepo) -> None:
    repo = make_repo()
    gone = write_snapshot(repo, {"INBOX": MAIL[:35]}, account="gone")
    write_snapshot(repo, {"INBOX": MAIL[30:]}, account="kept")
    parts_before = repo.cache.blob_stats(BLOB_PART)[0]
    repo.backend.delete(f"snapshots/{gone}")
    result = prune(repo)
    assert result.packs_deleted + result.packs_repacked > 0
    repo.resync_index()
    for raw in MAIL[30:]:
        assert repo.read_blob(sha256(raw)) == raw
    for raw in MAIL[:30]:
        assert not repo.cache.has(sha256(raw)) or raw in MAIL[30:]
    assert repo.cache.blob_stats(BLOB_PART)[0] <= parts_before
    # Exactly the parts the kept skeletons name survive.
    kept_msgs = {sha256(m) for m in MAIL[30:]}
    assert {i for i, _ in repo.cache.iter_type(BLOB_PART)} == skeleton_parts(repo, kept_msgs)
    assert check(repo, read_data=True).ok


def test_check_reports_a_missing_part(make_repo: MakeRepo) -> None:
    repo = make_repo()
    write_snapshot(repo, {"INBOX": MAIL})
    part_id, loc = next(iter(repo.cache.iter_type(BLOB_PART)))
    repo.backend.delete(pack_name(loc.pack_id))
    report = check(repo, read_data=True)
    assert not report.ok
    assert any("attachment part" in e or "missing from storage" in e for e in report.errors), report.errors
    users = [sha256(m) for m in MAIL if (s := sia.split(m, 4096)) and part_id in {p.part_id for p in s.parts}]
    assert users
    repo.resync_index()
    repo._blocks.clear()
    with pytest.raises(Exception):
        repo.read_blob(users[0])


def test_threshold_off_stores_messages_whole(make_repo: MakeRepo) -> None:
    repo = make_repo(params=VaultParams(sia_min_part=0))
    write_snapshot(repo, {"INBOX": MAIL[:10]})
    assert repo.cache.blob_stats(BLOB_SKELETON)[0] == 0
    assert repo.cache.blob_stats(BLOB_MESSAGE)[0] == len(set(MAIL[:10]))
    assert repo.config["chunking"]["sia_min_part"] == 0


# -- a vault written by the format-1 code -----------------------------------------------------


@pytest.fixture
def old_vault(tmp_path: Path) -> Path:
    dest = tmp_path / "vault_v1"
    shutil.copytree(DATA / "vault_v1", dest)
    return dest


def test_format_1_vault_reads_checks_grows_and_prunes(old_vault: Path) -> None:
    expected = {
        bytes.fromhex(line.split()[0]) for line in (DATA / "vault_v1.sha256").read_text().splitlines()
    }
    repo = Repository.open(str(old_vault), lambda: PASSWORD)
    assert repo.config["version"] == 1 and repo.params.sia_min_part == 0
    snaps = repo.snapshots()
    assert len(snaps) == 2
    got = {sha256(raw) for _f, _e, raw in repo.iter_messages(snaps[-1])}
    assert got == expected
    assert check(repo, read_data=True).ok
    # New mail into an old vault is stored whole: format-1 readers keep reading it.
    write_snapshot(repo, {"INBOX": MAIL[:8]}, account="old@example.org")
    assert repo.cache.blob_stats(BLOB_SKELETON)[0] == 0
    repo.backend.delete(f"snapshots/{snaps[0].id}")
    prune(repo)
    repo.resync_index()
    assert check(repo, read_data=True).ok
    assert {sha256(r) for _f, _e, r in repo.iter_messages(repo.snapshots()[0])} == expected
    repo.close()


def test_new_vault_is_version_2(make_repo: MakeRepo) -> None:
    repo = make_repo()
    assert repo.config["version"] == 2
    assert repo.config["chunking"]["sia_min_part"] == 4096


def test_small_messages_unaffected(make_repo: MakeRepo) -> None:
    repo = make_repo()
    msgs = [make_message(i, size=6000) for i in range(20)]
    write_snapshot(repo, {"INBOX": msgs})
    assert repo.cache.blob_stats(BLOB_MESSAGE)[0] + repo.cache.blob_stats(BLOB_SKELETON)[0] == 20
    for m in msgs:
        assert repo.read_blob(sha256(m)) == m


def test_lost_part_costs_exactly_the_messages_that_need_it(make_repo: MakeRepo) -> None:
    repo = make_repo()
    write_snapshot(repo, {"INBOX": MAIL})
    _part, loc = next(iter(repo.cache.iter_type(BLOB_PART)))
    in_pack = {i for i, lo in repo.cache.iter_type(BLOB_PART) if lo.pack_id == loc.pack_id}
    needing = {
        sha256(m)
        for m in MAIL
        if (s := sia.split(m, 4096)) is not None and in_pack & {p.part_id for p in s.parts}
    }
    assert needing
    repo.backend.delete(pack_name(loc.pack_id))
    report = check(repo)
    assert {bytes.fromhex(m.blob) for m in report.lost_messages} == needing
    result = repair(repo)
    assert result.changed
    repo.resync_index()
    assert check(repo, read_data=True).ok
    snap = repo.resolve_snapshot("latest", "alice@example.org")
    kept = [raw for _f, _e, raw in repo.iter_messages(snap)]
    assert kept == [m for m in MAIL if sha256(m) not in needing]


def test_a_folded_line_is_not_a_mime_field() -> None:
    """A DKIM signature's folded ``h=`` list may carry "Content-Type:" at a line start: that is
    part of the signature, not the message's Content-Type (the multipart is still found)."""
    part = base64.encodebytes(bytes(range(256)) * 40)
    raw = (
        b"DKIM-Signature: v=1; a=rsa-sha256;\r\n"
        b"\th=Subject:From:To;\r\n"
        b"\tContent-Type:MIME-Version; b=abc\r\n"
        b"Content-Type: multipart/mixed;\r\n"
        b'\tboundary="XX"\r\n'
        b"\r\n--XX\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
        b"--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + part.replace(b"\n", b"\r\n")
        + b"--XX--\r\n"
    )
    headers = sia._headers(raw[: raw.index(b"\r\n\r\n")])
    assert headers[b"content-type"] == b'multipart/mixed; boundary="XX"'
    split = sia.split(raw, 1024)
    assert split is not None and len(split.parts) == 1
    assert split.parts[0].data == bytes(range(256)) * 40
    assert sia.rebuild(split.skeleton, {split.parts[0].part_id: split.parts[0].data}.__getitem__) == raw


def test_fields_are_found_only_at_line_starts_first_one_wins() -> None:
    """The field lookup behind ``_headers`` and ``message_id`` (``field_lines`` plus an anchored
    match): any case, spaces before the colon, folded values unfolded; a name inside another
    field's value, a longer name and a second copy of the field are not taken."""
    block = (
        b"X-Note: content-type: not/this\r\n"
        b"X-Message-ID: <not-this@x>\r\n"
        b"Content-Typex: not/this\r\n"
        b"content-TYPE \t: text/plain;\r\n"
        b'\tcharset="utf-8"\r\n'
        b"Content-Type: second/one\r\n"
        b"Message-Id:\r\n <id@example>\r\n"
        b"CONTENT-TRANSFER-ENCODING: Base64"
    )
    headers = sia._headers(block)
    assert headers == {
        b"content-type": b'text/plain; charset="utf-8"',
        b"content-transfer-encoding": b"Base64",
    }
    assert message_id(block) == "<id@example>"
    assert message_id(b"Message-ID: <first@x>\r\nSubject: s\r\n") == "<first@x>"
    assert message_id(b"Subject: s\r\nX-Message-ID: <x@y>\r\n") == ""
    assert sia._headers(b"Subject: no mime fields\r\n") == {}
