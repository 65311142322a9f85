"""Secrets stay secret (real Dovecot, real processes): the server passwords and the vault password
appear in no argv of a child process, no hook environment, no output (text, ``--json``, stderr with
MAILVAULT_DEBUG=1), and no file of the vault or of the local cache."""

from __future__ import annotations

import json
import random
import secrets
import sys
from pathlib import Path

from tests.common import mv
from tests.runner.helpers import VAULT_PASSWORD, VAULT_PW_ENV, ConfigBuilder, make_vault, seed_set
from tests.servers.dovecot import Dovecot

#: Writes its argv (and, as a hook, its whole environment) to the file named by its first argument;
#: with a second argument, prints that file's content (a password command).
CHILD = """
import json, os, sys
with open(sys.argv[1], "a") as log:
    log.write(json.dumps({"argv": sys.argv, "env": dict(os.environ) if len(sys.argv) < 3 else {}}) + "\\n")
if len(sys.argv) > 2:
    sys.stdout.write(open(sys.argv[2]).read())
"""


def _files(*roots: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for root in roots for p in root.rglob("*") if p.is_file()}


def test_no_secret_in_argv_hook_env_output_or_files(dovecot: Dovecot, tmp_path: Path, cli_env: Path) -> None:
    server_pw = f"srv-{secrets.token_hex(8)}"
    target_pw = f"tgt-{secrets.token_hex(8)}"
    wrong_pw = f"wrong-{secrets.token_hex(8)}"
    user, target = f"sec-{secrets.token_hex(3)}", f"sect-{secrets.token_hex(3)}"
    dovecot.add_user(user, server_pw)
    dovecot.add_user(target, target_pw)
    dovecot.seed(user, "INBOX", seed_set(random.Random(3), "sec", 6))
    vault = Path(make_vault(tmp_path / "vault"))
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    pwfile = tmp_path / "server-pw"
    pwfile.write_text(server_pw)
    children = tmp_path / "children.jsonl"
    hooks = tmp_path / "hooks.jsonl"
    url = f"imaps://{user}@{dovecot.host}:{dovecot.imaps_port}"
    cfg = ConfigBuilder(
        vaults={"local": {"path": vault, "password_env": VAULT_PW_ENV}},
        accounts={
            "mail": {
                "url": url,
                "password_command": f"{sys.executable} {child} {children} {pwfile}",
                "ca_file": str(dovecot.ca_file),
            }
        },
        jobs={
            "nightly": {
                "kind": "backup",
                "accounts": ["mail"],
                "vault": "local",
                "schedule": "daily",
                "on_success": f"{sys.executable} {child} {hooks}",
                "on_failure": f"{sys.executable} {child} {hooks}",
            }
        },
    ).write(tmp_path / "mailvault.toml")
    debug = {"MAILVAULT_DEBUG": "1"}
    outputs = [
        mv("run", "--config", cfg, env=debug),
        mv("run", "--config", cfg, "--json", env=debug),
        mv("status", "--config", cfg, "--json", env=debug),
        mv(
            "backup", vault, url, "--password-command", f"{sys.executable} {child} {children} {pwfile}",
            "--ca-file", dovecot.ca_file, "--json", env=debug,
        ),
        mv(
            "restore", vault, f"imaps://{target}@{dovecot.host}:{dovecot.imaps_port}", "--account", "mail",
            "--password-env", "MV_SEC_TARGET_PW", "--ca-file", dovecot.ca_file, "--json",
            env={**debug, "MV_SEC_TARGET_PW": target_pw},
        ),
        mv("check", vault, "--read-data", "--json", env=debug),
        mv("snapshots", vault, "--json", env=debug),
        mv("key", "list", vault, "--json", env=debug),
        mv(
            "backup", vault, url, "--password-env", "MV_SEC_WRONG", "--ca-file", dovecot.ca_file,
            env={**debug, "MV_SEC_WRONG": wrong_pw}, code=2,
        ),
        mv("snapshots", vault, env={**debug, "MAILVAULT_PASSWORD": wrong_pw}, code=2),
    ]  # fmt: skip
    secret_values = [server_pw, target_pw, wrong_pw, VAULT_PASSWORD]
    for proc in outputs:
        for s in secret_values:
            assert s not in proc.stdout and s not in proc.stderr, (proc.args, s)
    # The password command and the hooks did run, and saw no secret in their argv; the hooks'
    # environment holds none either (the variables that carry passwords are left out).
    kids = [json.loads(line) for line in children.read_text().splitlines()]
    hook_calls = [json.loads(line) for line in hooks.read_text().splitlines()]
    assert len(kids) >= 2 and len(hook_calls) >= 2
    for call in kids + hook_calls:
        dump = json.dumps(call)
        for s in secret_values:
            assert s not in dump, (call["argv"], s)
    assert all(c["env"].get("MAILVAULT_STATUS") == "ok" for c in hook_calls)
    # No file of the vault or of the cache (index, snapshots, restore journal) holds a secret.
    stored = _files(vault, cli_env)
    assert any(p.name == "restore.sqlite" for p in stored) and any("data" in p.parts for p in stored)
    for path, data in stored.items():
        for s in secret_values:
            assert s.encode() not in data, (path, s)
