#!/usr/bin/env bash
# The console's time to its first verified page (issue 14): headless Chromium (Debian's,
# driven by playwright-core) opens /console signed in with the development identity and a
# pinned key, and times navigation → 100 records shown and verified in the browser
# (canonical form, leaf hash, commitments, chain links, 100 inclusion proofs computed from
# the few tiles they name and checked against the signed root, the
# checkpoint's Ed25519 signature). The tenant holds EVENTS events (default 100,000) with a
# checkpoint over all of them. Target: < 1 s.
#
# Needs: a release build (cargo build --release -p vigil), /usr/bin/chromium, node, and
# playwright-core (scripts/test.sh installs both into the target cache).
# Usage: scripts/bench_console.sh [events] [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS="${1:-100000}"; RUNS="${2:-20}"
T="${CARGO_TARGET_DIR:-$HOME/.cache/vigil-target}"
VIGIL="$T/release/vigil"
[ -x "$VIGIL" ] || { echo "build first: cargo build --release -p vigil" >&2; exit 2; }
PW="${VIGIL_PLAYWRIGHT:-$T/vigil-node/node_modules/playwright-core}"
[ -d "$PW" ] || { echo "no playwright-core at $PW: run scripts/test.sh once" >&2; exit 2; }
W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$W"' EXIT
PORT=18291
VIGIL_LOG=warn "$VIGIL" audit serve --listen 127.0.0.1:$PORT --data-dir "$W" --trust-headers \
  --checkpoint-every 1000 &
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
python3 - "$PORT" "$EVENTS" <<'PY'
import json, sys, urllib.request, uuid
port, n = int(sys.argv[1]), int(sys.argv[2])
for start in range(0, n, 1000):
    batch = [{"event_id": str(uuid.uuid4()), "occurred_at": "2026-11-30T10:00:00Z",
              "actor": {"type": "user", "id": f"u-{i % 50}"},
              "action": "payment.void" if i % 2 else "user.login",
              "resource": {"type": "payment", "id": f"p-{i}"}, "outcome": "success",
              "source": {"service": "payments"},
              "payload": {"amount": i, "card": "4111-xxxx", "nested": {"k": [1, 2, {"z": None}]}}}
             for i in range(start, min(n, start + 1000))]
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/events", json.dumps(batch).encode(),
                                 {"Content-Type": "application/json", "X-Tenant-ID": "acme", "X-Roles": "admin"})
    urllib.request.urlopen(req).read()
PY
# Wait for the checkpoint over the last event.
for _ in $(seq 1 100); do
  size=$(curl -s "http://127.0.0.1:$PORT/v1/checkpoints/latest" -H 'X-Tenant-ID: acme' -H 'X-Roles: admin' | sed -n 's/.*"size":\([0-9]*\).*/\1/p')
  [ "$size" = "$EVENTS" ] && break; sleep 0.1
done
KEY=$(curl -s "http://127.0.0.1:$PORT/v1/keys" | sed -n 's/.*"verifier_key":"\([^"]*\)".*/\1/p')
VIGIL_URL="http://127.0.0.1:$PORT" VIGIL_KEY="$KEY" VIGIL_PLAYWRIGHT="$PW" \
  VIGIL_CHROMIUM="${VIGIL_CHROMIUM:-/usr/bin/chromium}" VIGIL_TENANT=acme VIGIL_RUNS="$RUNS" \
  VIGIL_SHOTS="$W" node crates/vigil/tests/console/console.mjs bench
