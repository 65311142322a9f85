#!/usr/bin/env bash
# Install mailvault with its test extras into .venv, make sure the servers the tests
# need are present, then run ruff, mypy and the whole pytest suite.
#   MAILVAULT_CORPUS=/path/to/shared/corpus  selects the corpus tier (../shared/corpus is used if present)
#   extra arguments are passed to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests use (Debian names). Missing ones are installed with apt when we are root;
# otherwise the tests that need them skip with the reason.
PACKAGES=(dovecot-imapd dovecot-pop3d chromium faketime cyrus-common sasl2-bin)
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && apt-get install -y -q -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null; }
    else
        echo "== not installed: ${missing[*]}; the tests that need them will be skipped"
    fi
fi

# Cyrus imapd (tests/interop): the cyrus-imapd package conflicts with dovecot-imapd (both provide
# imap-server; installing it REMOVES Dovecot), so it is unpacked into .cache/cyrus-imapd instead
# (cyrus-common, installed above, has the master, the libraries and the tools).
if [ ! -x .cache/cyrus-imapd/usr/lib/cyrus/bin/imapd ] && [ ! -x /usr/lib/cyrus/bin/imapd ] \
        && command -v apt-get >/dev/null 2>&1 && [ -x /usr/lib/cyrus/bin/master ]; then
    echo "== unpacking cyrus-imapd into .cache/cyrus-imapd"
    mkdir -p .cache/debs
    if (cd .cache/debs && apt-get download -q cyrus-imapd >/dev/null 2>&1); then
        dpkg-deb -x .cache/debs/cyrus-imapd_*.deb .cache/cyrus-imapd
    else
        echo "== could not download cyrus-imapd; the Cyrus interop tests will be skipped"
    fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv"
    "$PY" -m venv .venv
fi
echo "== installing mailvault[test]"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

if [ -z "${MAILVAULT_CORPUS:-}" ]; then
    for candidate in ../shared/corpus; do
        if [ -d "$candidate/spamassassin" ]; then
            MAILVAULT_CORPUS=$(cd "$candidate" && pwd)
            export MAILVAULT_CORPUS
            break
        fi
    done
fi
echo "== corpus tier: ${MAILVAULT_CORPUS:-off (set MAILVAULT_CORPUS to enable)}"

echo "== ruff"
.venv/bin/ruff check mailvault tests bench scripts
.venv/bin/ruff format --check mailvault tests bench scripts
echo "== mypy (strict)"
.venv/bin/mypy
echo "== pytest"
# Most tests wait on servers and child processes, not the CPU: 4 workers on 2 cores halve the wall time.
# MAILVAULT_TEST_WORKERS=0 runs them in this process, one after another.
.venv/bin/python -m pytest -q -n "${MAILVAULT_TEST_WORKERS:-4}" "$@"
