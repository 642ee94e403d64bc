#!/usr/bin/env bash
# Used by `make test` (and so by CI): install PostgreSQL's server binaries when they are missing.
set -uo pipefail

# The store suite runs on SQLite and on PostgreSQL. The tests start and stop a throwaway cluster of their own
# (tests/postgres.py: a temp folder, a free port on 127.0.0.1), so all CI needs is the server's binaries:
# Debian's postgresql package when initdb is missing. Its postinst may start a system cluster on 5432; ours
# never uses that port or its socket. If apt cannot install it (no root, no network), the PostgreSQL tests are
# skipped with the reason (pytest -ra prints it) and CI goes on.
if ! command -v initdb >/dev/null && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo -n"; fi
    apt="$sudo env DEBIAN_FRONTEND=noninteractive apt-get"  # env: sudo drops the caller's variables
    if command -v apt-get >/dev/null && $apt update -qq \
        && $apt install -y -qq --no-install-recommends postgresql; then
        echo "installed PostgreSQL: $(compgen -G '/usr/lib/postgresql/*/bin/initdb' | tail -1)"
    else
        echo "warning: could not install PostgreSQL (apt-get); the PostgreSQL store tests will be skipped" >&2
    fi
fi
exit 0
