# shellcheck shell=bash
# Sourced by scripts/test and scripts/demo: brings a checkout (fresh clone, CI or laptop) to a
# runnable state, doing only the work whose inputs changed since the last time.
#   - .venv with the package installed editable plus its dev extras (redone when pyproject.toml
#     changes: its hash is kept in .venv/.payouts-pyproject.sha256)
#   - node_modules from package-lock.json (solc, anvil; redone when the lock file changes)
#   - PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 when this machine has them
#     installed but not running; where it has not, the tests fall back to embedded servers.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT" || exit 1

say() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The first Python >= 3.11 found ($PYTHON first), as the project requires.
find_python() {
    local candidate
    for candidate in ${PYTHON:-} python3 python3.13 python3.12 python3.11; do
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

# sha256 of a file, via Python so that it works the same on Linux and macOS.
file_hash() {
    "$1" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$2"
}

ensure_venv() {
    local python stamp want
    if [[ ! -x .venv/bin/python ]]; then
        python="$(find_python)" || die "Python >= 3.11 not found (set PYTHON=/path/to/python3.11)"
        say "creating .venv with $python"
        "$python" -m venv .venv || die "could not create .venv (on Debian/Ubuntu: apt-get install python3-venv)"
    fi
    stamp=.venv/.payouts-pyproject.sha256
    want="$(file_hash .venv/bin/python pyproject.toml)"
    if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]]; then
        say "installing payouts and its dev tools into .venv (pyproject.toml changed)"
        .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' \
            || die "pip install -e '.[dev]' failed (see above)"
        printf '%s\n' "$want" >"$stamp"
    fi
}

ensure_node_modules() {
    local stamp want err
    stamp=node_modules/.payouts-package-lock.sha256
    want="$(file_hash .venv/bin/python package-lock.json)"
    if [[ ! -d node_modules || "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]]; then
        command -v npm >/dev/null 2>&1 \
            || die "npm not found: install Node.js >= 18 (it brings the pinned solc and anvil)"
        say "installing solc and anvil from package-lock.json (npm ci)"
        err="$(mktemp)"
        if ! npm ci --no-audit --no-fund --loglevel=error 2>"$err"; then
            # npm ci refuses a lock file that lacks the optional anvil binaries of other
            # platforms (a lock written where the registry serves only this platform's);
            # npm install still honours the pinned versions and, with --no-save, keeps the lock.
            if grep -q 'Missing: @foundry-rs/anvil-' "$err"; then
                warn "package-lock.json lacks other platforms' anvil packages; using npm install --no-save"
                npm install --no-save --no-audit --no-fund --loglevel=error \
                    || { rm -f "$err"; die "npm install failed (see above)"; }
            else
                cat "$err" >&2
                rm -f "$err"
                die "npm ci failed (see above)"
            fi
        fi
        rm -f "$err"
        printf '%s\n' "$want" >"$stamp"
    fi
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

wait_for_port() {
    local port="$1" tries=50
    while ((tries-- > 0)); do
        port_open "$port" && return 0
        sleep 0.2
    done
    return 1
}

ensure_postgres() {
    local version
    port_open 5432 && return 0
    if command -v pg_ctlcluster >/dev/null 2>&1 && [[ -d /etc/postgresql ]]; then
        version="$(find /etc/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -V | tail -n 1)"
        if [[ -n "$version" ]]; then
            say "starting PostgreSQL $version (cluster main)"
            if pg_ctlcluster --skip-systemctl-redirect "$version" main start && wait_for_port 5432; then
                return 0
            fi
            warn "could not start PostgreSQL $version; tests will use an embedded server"
            return 0
        fi
    fi
    say "no PostgreSQL on 127.0.0.1:5432; tests will use an embedded server"
}

ensure_redis() {
    port_open 6379 && return 0
    if command -v redis-server >/dev/null 2>&1; then
        say "starting redis-server on 127.0.0.1:6379"
        if redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
            >/dev/null && wait_for_port 6379; then
            return 0
        fi
        warn "could not start redis-server; tests will use an embedded server"
        return 0
    fi
    say "no Redis on 127.0.0.1:6379; tests will use an embedded server"
}

# Debian's chromium for the browser tests (tests/browser: Playwright drives it; Playwright's own
# browser download is not used). Only for scripts/test, and only as root: apt needs it.
ensure_chromium() {
    [[ "$(basename "${BASH_SOURCE[2]:-}")" == test ]] || return 0
    command -v chromium >/dev/null 2>&1 && return 0
    if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        warn "chromium not found: the browser tests will fail (apt-get install chromium)"
        return 0
    fi
    say "installing chromium for the browser tests (apt-get)"
    apt-get update -qq >/dev/null \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null \
        || die "apt-get install chromium failed"
}

# Debian's prometheus package for its promtool, which checks and unit-tests the alert rules
# (tests/unit/test_alert_rules.py; without it the test parses them instead). Only for
# scripts/test, only as root. Its service must not start: a policy-rc.d refuses it while the
# package installs (no systemd here either).
ensure_promtool() {
    local policy=/usr/sbin/policy-rc.d made_policy=""
    [[ "$(basename "${BASH_SOURCE[2]:-}")" == test ]] || return 0
    command -v promtool >/dev/null 2>&1 && return 0
    if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        warn "promtool not found: the alert rules are checked by parsing only (apt-get install prometheus)"
        return 0
    fi
    say "installing promtool for the alert rule tests (apt-get install prometheus)"
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
    fi
    # apt-get update only when the package lists do not have it (an earlier step may have
    # updated them already).
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus \
        >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                prometheus >/dev/null; } \
        || warn "apt-get install prometheus failed: alert rules checked by parsing only"
    [[ -n "$made_policy" ]] && rm -f "$policy"
    return 0
}

ensure_venv
ensure_node_modules
ensure_postgres
ensure_redis
ensure_chromium
ensure_promtool
