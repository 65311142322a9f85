"""Config fuzzing (Hypothesis): any TOML text, and any value of any known key, gives either a
:class:`Config` or a one-line :class:`ConfigError` — never another exception.

Three strategies: arbitrary text (mostly not TOML), byte/line mutations of ``config.example.toml``,
and structured documents over the known tables and keys with values of every TOML type. A sample of
the failures also goes through the real CLI (``mailvault config check FILE``: exit 2, one line).
"""

from __future__ import annotations

import datetime as dt
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailvault.config import Config, load_config
from mailvault.errors import ConfigError
from tests.common import REPO_ROOT, assert_one_line_error, mv

EXAMPLE = (REPO_ROOT / "config.example.toml").read_text("utf-8")
EXAMPLE_LINES = EXAMPLE.splitlines()

VAULT_KEYS = ("path", "password_env", "password_command", "password_file", "password")
ACCOUNT_KEYS = (
    *("url", "password_env", "password_command", "oauth2_token_command", "ca_file", "allow_plaintext"),
    *("folders", "exclude_folders", "delete_after_days", "auth", "oauth2_provider", "token_store"),
)
JOB_KEYS = (
    *("kind", "accounts", "vault", "target", "target_password_env", "target_password_command"),
    *("target_oauth2_token_command", "target_ca_file", "schedule", "prune", "snapshot", "map", "into"),
    *("on_success", "on_failure", "max_upload_mb_per_day", "keep_last", "keep_hourly", "keep_daily"),
    *("keep_weekly", "keep_monthly", "keep_yearly"),
)
PROVIDER_KEYS = (
    *("preset", "client_id", "client_secret_env", "tenant", "grant", "authorize_url", "token_url"),
    *("scopes", "app_scopes", "auth", "auth_params", "imap_host", "imap_port", "imap_security"),
    *("pop3_host", "pop3_port", "pop3_security", "sasl", "max_connections", "upload_mb_per_day"),
    *("device_grant", "device_authorization_url", "client_certificate_file", "hints", "title", "xyz"),
)
NAMES = st.sampled_from(["home", "alice", "a b", "", "x.y", "ünï", "nightly", "m365", "gmail", "corp"])
# Values that look right for some key, so the checker gets past the first key more often.
PLAUSIBLE = st.sampled_from(
    [
        *("imaps://alice@mail.example.org:993", "pop3s://bob@host", "gmail:me@gmail.com", "imap://x@h:0"),
        *("imaps://@:99999", "imap://", "m365:", "backup", "restore", "migrate", "home", "alice"),
        *("oauth2", "password", "vault", "keyring", "daily 03:00", "hourly", "*/5 * * * *", "every 0m"),
        *("latest", "INBOX=Archive", "s3://bucket/prefix", "/srv/mailvault", "MAILVAULT_PASSWORD"),
    ]
)
SCALARS: st.SearchStrategy[Any] = st.one_of(
    PLAUSIBLE,
    st.text(max_size=20),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.floats(allow_nan=True),
    st.datetimes(),
    st.dates(),
    st.times(),
    st.datetimes(timezones=st.just(dt.UTC)),
)
VALUES: st.SearchStrategy[Any] = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["a", "url", "kind"]), inner, max_size=2)
    ),
    max_leaves=6,
)


def _table(keys: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys), VALUES, max_size=len(keys))


def _section(keys: tuple[str, ...]) -> st.SearchStrategy[Any]:
    return st.one_of(st.dictionaries(NAMES, st.one_of(_table(keys), VALUES), max_size=3), VALUES)


DOCS = st.fixed_dictionaries(
    {},
    optional={
        "vaults": _section(VAULT_KEYS),
        "accounts": _section(ACCOUNT_KEYS),
        "jobs": _section(JOB_KEYS),
        "oauth2_providers": _section(PROVIDER_KEYS),
        "extra": VALUES,
    },
)


def _toml_key(k: str) -> str:
    return k if k and all(c.isalnum() or c in "_-" for c in k) and k.isascii() else _toml_str(k)


def _toml_str(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\' or ord(ch) < 0x20 or ord(ch) == 0x7F or 0xD800 <= ord(ch) <= 0xDFFF:
            out.append(f"\\u{ord(ch):04x}" if not 0xD800 <= ord(ch) <= 0xDFFF else "\\ufffd")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return (
            "nan" if v != v else ("inf" if v == float("inf") else "-inf" if v == float("-inf") else repr(v))
        )
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def to_toml(doc: dict[str, Any]) -> str:
    """A small TOML writer (tables of tables as [a.b] headers, everything else inline)."""
    lines: list[str] = []
    for section, body in doc.items():
        if isinstance(body, dict) and all(isinstance(t, dict) for t in body.values()) and body:
            for name, table in body.items():
                lines.append(f"[{_toml_key(section)}.{_toml_key(name)}]")
                lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items())
        else:
            lines.insert(0, f"{_toml_key(section)} = {_toml_value(body)}")
    return "\n".join(lines) + "\n"


def check_loader(path: Path, text: str | bytes) -> Config | ConfigError:
    if isinstance(text, str):
        path.write_text(text, "utf-8", errors="surrogatepass")
    else:
        path.write_bytes(text)
    try:
        return load_config(path)
    except ConfigError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg, repr(msg)
        assert "Traceback" not in msg
        return exc


FUZZ = settings(
    max_examples=int(os.environ.get("MAILVAULT_FUZZ_EXAMPLES", "120")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@FUZZ
@given(doc=DOCS)
def test_structured_configs_never_crash(tmp_path: Path, doc: dict[str, Any]) -> None:
    text = to_toml(doc)
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:  # the writer's output is meant to be valid TOML
        pytest.fail(f"test writer produced invalid TOML:\n{text}")
    check_loader(tmp_path / "c.toml", text)


@st.composite
def mutated_example(draw: st.DrawFn) -> bytes:
    lines = list(EXAMPLE_LINES)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["drop", "dup", "value", "key", "chars"]))
        line = lines[i]
        if op == "drop":
            del lines[i]
        elif op == "dup":
            lines.insert(i, line)
        elif op == "value" and "=" in line and not line.lstrip().startswith("#"):
            key = line.split("=", 1)[0]
            lines[i] = f"{key}= {_toml_value(draw(VALUES))}"
        elif op == "key" and "=" in line:
            lines[i] = (
                draw(st.sampled_from([*ACCOUNT_KEYS, *JOB_KEYS, "bogus"])) + " =" + line.split("=", 1)[1]
            )
        else:
            junk = draw(st.text(alphabet=st.sampled_from("[]{}\"=.,#\\\x00\t\r\n'ü"), max_size=5))
            pos = draw(st.integers(0, len(line)))
            lines[i] = line[:pos] + junk + line[pos:]
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        pos = draw(st.integers(0, len(data)))
        data = data[:pos] + draw(st.binary(max_size=4)) + data[pos:]
    return data


@FUZZ
@given(data=mutated_example())
def test_mutated_example_never_crashes(tmp_path: Path, data: bytes) -> None:
    check_loader(tmp_path / "c.toml", data)


@FUZZ
@given(text=st.text(max_size=200))
def test_arbitrary_text_never_crashes(tmp_path: Path, text: str) -> None:
    check_loader(tmp_path / "c.toml", text)


def test_example_is_valid(tmp_path: Path) -> None:
    assert isinstance(check_loader(tmp_path / "c.toml", EXAMPLE), Config)


@pytest.mark.parametrize(
    "text",
    [
        "[jobs.j]\nkind = 3\n",
        "vaults = 1\n",
        '[accounts.a]\nurl = "imaps://@:99999"\n',
        '[accounts.a]\nurl = "imaps://a@h"\nfolders = [1, 2]\n',
        '[oauth2_providers.x]\nport = "no"\n',
        "\x00\xff\xfe",
        '[vaults.v]\npath = "/x"\n[accounts.a]\nurl = "imaps://a@h"\n[jobs.j]\nkind = "backup"\n'
        'accounts = ["a"]\nvault = "v"\nschedule = "every 0m"\n',
    ],
)
def test_config_check_cli_one_line(tmp_path: Path, text: str) -> None:
    """Through the real CLI: exit 2 and one ``mailvault: ...`` line, never a traceback."""
    f = tmp_path / "c.toml"
    f.write_bytes(text.encode("latin-1"))
    assert_one_line_error(mv("config", "check", f, code=None), 2, str(f))
