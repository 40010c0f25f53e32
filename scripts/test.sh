#!/usr/bin/env bash
# Runs every test of the workspace against real services, on a fresh machine or CI.
#
# It makes what the tests need available itself, and fails loudly when it cannot:
#   - Postgres: uses a running server (VIGIL_TEST_POSTGRES_URL, default
#     postgres://postgres@127.0.0.1:5432/test), starts an installed one that is stopped, or
#     installs one with apt-get when running as root. Postgres tests are never skipped.
#   - Redis: the gateway tests need redis-server (they start and stop one of their own for the
#     outage test) and a shared server at VIGIL_TEST_REDIS_URL (default
#     redis://127.0.0.1:6379): a running one is used, else one is started, else installed with
#     apt-get when running as root. Redis tests are never skipped.
#   - A Kafka-protocol broker for the pipeline tests: tansu (crates.io), built once into
#     ~/.cache/vigil-tools (VIGIL_TOOLS_DIR) when it is not there (about 9 minutes, cold); the
#     tests start their own brokers from it on free loopback ports. Never skipped.
#   - Prometheus with promtool and Alertmanager (Debian's prometheus and prometheus-alertmanager
#     packages), for the rule and dashboard checks and the real-Prometheus alert test:
#     installed with apt-get when running as root. Never skipped.
#   - Python with the rfc8785, cryptography, PyJWT, schemathesis, standardwebhooks and
#     moto[server] packages (PyPI), for the independent verification, JWT interoperability, API
#     fuzzing and webhook receiver tests, and moto's S3-compatible server for the backup tests,
#     in a virtualenv under the cargo target directory.
# The cargo target directory lives outside the clone (reused between CI runs when present):
# ./target is made a link to ~/.cache/vigil-target when missing, so `cargo run -p vigil -- dev`
# and this script share one build instead of compiling everything twice.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${CARGO_TARGET_DIR:-}" ]; then
  cache="${VIGIL_TARGET_CACHE:-$HOME/.cache/vigil-target}"
  if [ ! -e target ] && [ ! -L target ]; then
    ln -s "$cache" target
  fi
  # A link whose directory is gone (a wiped cache) is made whole again.
  [ -L target ] && mkdir -p "$(readlink -m target)"
  export CARGO_TARGET_DIR="$PWD/target"
fi
export VIGIL_TEST_POSTGRES_URL="${VIGIL_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
mkdir -p "$CARGO_TARGET_DIR"

say() { printf '\n== %s\n' "$*"; }
die() { printf '\nERROR: %s\n' "$*" >&2; exit 1; }

pg_up() { command -v psql >/dev/null && psql "$VIGIL_TEST_POSTGRES_URL" -Atqc 'select 1' >/dev/null 2>&1; }

start_installed_postgres() {
  local v
  for v in $(ls /etc/postgresql 2>/dev/null | sort -rn); do
    say "starting the installed PostgreSQL $v"
    pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
    for _ in $(seq 1 30); do pg_up && return 0; sleep 1; done
  done
  return 1
}

install_postgres() {
  [ "$(id -u)" = 0 ] || return 1
  command -v apt-get >/dev/null || return 1
  say "installing PostgreSQL with apt-get"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-client >/dev/null
  local v; v=$(ls /etc/postgresql | sort -rn | head -n1)
  # Tests connect as postgres over TCP without a password, as on CI: trust loopback only.
  sed -ri 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "/etc/postgresql/$v/main/pg_hba.conf"
  pg_ctlcluster --skip-systemctl-redirect "$v" main start || pg_ctlcluster --skip-systemctl-redirect "$v" main reload
  for _ in $(seq 1 30); do
    su postgres -c "psql -Atqc 'select 1'" >/dev/null 2>&1 && break; sleep 1
  done
  su postgres -c "psql -Atqc \"select 1 from pg_database where datname='test'\"" | grep -q 1 \
    || su postgres -c "createdb test"
}

ensure_postgres() {
  pg_up && return 0
  start_installed_postgres && return 0
  install_postgres && pg_up && return 0
  die "no Postgres at $VIGIL_TEST_POSTGRES_URL, none installed to start, and cannot install one
(need root and apt-get). Start one, or point VIGIL_TEST_POSTGRES_URL at one. The Postgres
tests are part of the suite and are not skipped."
}

redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && head -c 5 <&3 | grep -q PONG) 2>/dev/null; }

ensure_redis() {
  if ! command -v redis-server >/dev/null; then
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
      || die "redis-server is not installed and cannot be installed here (need root and apt-get).
The gateway's Redis tests are part of the suite and are not skipped."
    say "installing Redis with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
  if [ -z "${VIGIL_TEST_REDIS_URL:-}" ] && ! redis_up; then
    say "starting redis-server on 127.0.0.1:6379"
    redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no --daemonize yes >/dev/null
    for _ in $(seq 1 50); do redis_up && break; sleep 0.1; done
    redis_up || die "redis-server did not answer on 127.0.0.1:6379"
  fi
  export VIGIL_TEST_REDIS_URL="${VIGIL_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
}

ensure_prometheus() {
  if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null \
    || ! command -v prometheus-alertmanager >/dev/null; then
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
      || die "Prometheus, promtool and Alertmanager are not installed and cannot be installed here
(need root and apt-get). The alert-rule, dashboard and real-Prometheus tests are part of the
suite and are not skipped."
    say "installing Prometheus (with promtool) and Alertmanager with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      prometheus prometheus-alertmanager >/dev/null
    for b in promtool prometheus prometheus-alertmanager; do
      command -v "$b" >/dev/null || die "apt-get ran but there is no $b"
    done
  fi
}

ensure_python() {
  local py=python3
  if ! "$py" -c 'import rfc8785, cryptography, jwt, schemathesis, standardwebhooks, moto.server, yaml' 2>/dev/null; then
    local venv="$CARGO_TARGET_DIR/vigil-venv"
    if ! [ -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import rfc8785, cryptography, jwt, schemathesis, standardwebhooks, moto.server, yaml' 2>/dev/null; then
      say "installing rfc8785, cryptography, PyJWT, schemathesis, standardwebhooks and moto[server] from PyPI into $venv"
      [ -x "$venv/bin/python" ] || python3 -m venv "$venv" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
      "$venv/bin/pip" install -q rfc8785 cryptography PyJWT schemathesis standardwebhooks 'moto[server]' pyyaml \
        || die "pip could not install rfc8785, cryptography, PyJWT, schemathesis, standardwebhooks and moto[server]"
    fi
    py="$venv/bin/python"
  fi
  export VIGIL_PYTHON="$py"
}

# The console's browser tests: Debian's Chromium driven by npm's playwright-core (browsers
# cannot be downloaded here, so Playwright gets the Debian binary's path), installed once into
# the cargo target cache outside the clone.
ensure_browser() {
  if ! [ -x /usr/bin/chromium ]; then
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
      || die "Chromium is not installed and cannot be installed here (need root and apt-get).
The console's browser tests are part of the suite and are not skipped."
    say "installing Chromium with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
    [ -x /usr/bin/chromium ] || die "apt-get ran but there is no /usr/bin/chromium"
  fi
  command -v node >/dev/null && command -v npm >/dev/null \
    || die "node and npm are needed for the console's browser tests (Playwright)"
  local dir="$CARGO_TARGET_DIR/vigil-node"
  if ! [ -f "$dir/node_modules/playwright-core/package.json" ]; then
    say "installing playwright-core from npm into $dir"
    mkdir -p "$dir"
    { [ -f "$dir/package.json" ] || (cd "$dir" && npm init -y >/dev/null); } \
      && (cd "$dir" && npm install --no-audit --no-fund -q playwright-core@1.64.1 >/dev/null) \
      || die "npm could not install playwright-core"
  fi
  export VIGIL_PLAYWRIGHT="$dir/node_modules/playwright-core"
  export VIGIL_CHROMIUM=/usr/bin/chromium
}

# The chaos tests put the audit service in cgroups (v1 cpu and memory controllers) to throttle
# its CPU and cap its memory: that needs root and a writable hierarchy.
ensure_cgroups() {
  local c d
  for c in cpu memory; do
    d="/sys/fs/cgroup/$c/vigil-check-$$"
    mkdir "$d" 2>/dev/null && rmdir "$d" || die "cannot create a $c cgroup under /sys/fs/cgroup/$c
(need root and a writable cgroup v1 hierarchy). The chaos tests are part of the suite and are
not skipped."
  done
}

ensure_kafka_broker() {
  local tools="${VIGIL_TOOLS_DIR:-$HOME/.cache/vigil-tools}"
  local bin="$tools/bin/tansu"
  if ! [ -x "$bin" ]; then
    say "installing the tansu Kafka broker into $tools (once; about 9 minutes on 2 cores)"
    mkdir -p "$tools"
    CARGO_TARGET_DIR="$tools/target" cargo install tansu --version 0.6.0 --locked \
      --features dynostore,libsql --root "$tools" >"$tools/install.log" 2>&1 \
      || { tail -n 30 "$tools/install.log" >&2; die "could not build tansu (log: $tools/install.log).
The Kafka pipeline tests need a real broker and are not skipped."; }
  fi
  "$bin" --help >/dev/null 2>&1 || die "$bin does not run"
  export VIGIL_TEST_TANSU="$bin"
}

say "checking services"
ensure_postgres
echo "Postgres: $VIGIL_TEST_POSTGRES_URL"
ensure_redis
echo "Redis: $VIGIL_TEST_REDIS_URL (and redis-server for the outage test)"
ensure_prometheus
echo "Prometheus, promtool, Alertmanager: $(command -v prometheus) $(command -v promtool) $(command -v prometheus-alertmanager)"
ensure_python
ensure_browser
echo "Python for independent verification and JWT interop: $VIGIL_PYTHON"
ensure_cgroups
echo "cgroups (cpu, memory) for the chaos tests: writable"
ensure_kafka_broker
echo "Kafka broker for the pipeline tests: $VIGIL_TEST_TANSU"

say "formatting"
cargo fmt --all -- --check || die "cargo fmt would change files: run cargo fmt --all"

say "doc tests"
cargo test --workspace --doc --quiet

say "tests"
if command -v cargo-nextest >/dev/null; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi

say "audit-coverage gate (vigil coverage): mutating routes of Vigil's own services that emit no audit event"
# The binary the tests just ran (a `cargo run -p vigil` would resolve features for one
# package and rebuild half the tree).
vigil_bin="$CARGO_TARGET_DIR/debug/vigil"
[ -x "$vigil_bin" ] || cargo build --quiet --workspace --all-targets
"$vigil_bin" coverage . --prom "$CARGO_TARGET_DIR/audit-coverage.prom" \
  || die "audit coverage is below its minimum (vigil-coverage.toml), or an audit:ignore has no reason"

say "performance regression check (vigil bench regress, short profile): tracked figures vs bench/baselines"
# Each figure is measured beside an in-run reference (raw insert, SHA-256, /healthz) over
# seven rounds and compared with the checked-in baseline of this machine kind, build and
# profile: worse by more than 10 % and by more than the rounds' spread fails. The full
# profile (release) is in BENCHMARKS.md.
set +e
"$vigil_bin" bench regress --profile short --rounds 7 --baseline bench/baselines \
  --out "$CARGO_TARGET_DIR/bench-regress.json"
rc=$?
set -e
case $rc in
  0) ;;
  3) echo "NOTE: no baseline for this machine kind in bench/baselines (see above): figures in $CARGO_TARGET_DIR/bench-regress.json, nothing compared" ;;
  *) die "performance regression (see the table above), or the benchmark failed (exit $rc)" ;;
esac
