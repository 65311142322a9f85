#!/usr/bin/env bash
# Install mailvault into .venv and run the demo: a throwaway local Dovecot seeded with
# sample mail, backed up into a local vault, listed and checked. Needs root on Debian
# (it apt-get installs Dovecot when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v dovecot >/dev/null 2>&1 || ! command -v doveadm >/dev/null 2>&1; then
    echo "== installing Dovecot (dovecot-imapd, dovecot-pop3d)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q dovecot-imapd dovecot-pop3d >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && apt-get install -y -q dovecot-imapd dovecot-pop3d >/dev/null; }
fi
if [ ! -x .venv/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
exec .venv/bin/python scripts/demo.py "$@"
