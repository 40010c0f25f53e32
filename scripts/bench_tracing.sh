#!/usr/bin/env bash
# Tracing overhead (issue 12), in one run: the gateway's and the audit service's throughput with
# spans exported over OTLP/HTTP to a sink (scripts/otlp_sink.py) against the same service with
# tracing off. Runs alternate off/on twice and the best of each is kept (loopback on shared
# cores is noisy). Target: on/off >= 0.9.
#
#   gateway: JWT verification through the auth service's JWKS, in-memory limiter, a small
#            nginx upstream; wrk, 1 thread, 64 connections, GET.
#   ingest:  POST /v1/events, 10 new events per request (unique ids from a wrk Lua script),
#            SQLite, trusted headers; wrk, 1 thread, 32 connections.
#
# Needs: wrk and nginx (apt-get install wrk nginx), python3, a release build
# (cargo build --release -p vigil). Usage: scripts/bench_tracing.sh [seconds per run]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-10}"
VIGIL="${CARGO_TARGET_DIR:-$HOME/.cache/vigil-target}/release/vigil"
[ -x "$VIGIL" ] || { echo "build first: cargo build --release -p vigil" >&2; exit 2; }
command -v wrk >/dev/null && command -v nginx >/dev/null || { echo "needs wrk and nginx (apt-get install wrk nginx)" >&2; exit 2; }

W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; nginx -p "$W" -c "$W/nginx.conf" -s stop 2>/dev/null; rm -rf "$W"' EXIT
UP=18191; AUTH=18192; GW_OFF=18193; GW_ON=18194; AU_OFF=18195; AU_ON=18196; SINK=18197
OTEL="OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$SINK"

cat > "$W/nginx.conf" <<NGX
worker_processes 1;
error_log $W/error.log;
pid $W/nginx.pid;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { return 200 "ok\n"; } } }
NGX
nginx -p "$W" -c "$W/nginx.conf"
python3 scripts/otlp_sink.py $SINK &

VIGIL_LOG=warn "$VIGIL" auth serve --listen 127.0.0.1:$AUTH --database-url "sqlite://$W/auth.db" --token-ttl-secs 3600 &
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$AUTH/readyz" >/dev/null && break; sleep 0.1; done
CREDS=$("$VIGIL" auth clients add --database-url "sqlite://$W/auth.db" --tenant acme --name bench --roles service)
ID=$(echo "$CREDS" | sed -n 's/^client_id=//p'); SECRET=$(echo "$CREDS" | sed -n 's/^client_secret=//p')
TOKEN=$(curl -s -u "$ID:$SECRET" -d grant_type=client_credentials "http://127.0.0.1:$AUTH/oauth/token" | sed 's/.*"access_token":"\([^"]*\)".*/\1/')

gateway() { # port, then env assignments
  local port=$1; shift
  sed "s/@PORT@/$port/" > "$W/gw-$port.toml" <<TOML
listen = "127.0.0.1:@PORT@"
[auth]
jwks_url = "http://127.0.0.1:$AUTH/.well-known/jwks.json"
issuer = "http://127.0.0.1:$AUTH"
[rate_limit]
default_rpm = 100000000
[[routes]]
prefix = "/"
upstreams = ["http://127.0.0.1:$UP"]
TOML
  env VIGIL_LOG=warn "$@" "$VIGIL" gateway serve --config "$W/gw-$port.toml" &
}
gateway $GW_OFF OTEL_SDK_DISABLED=false
gateway $GW_ON "$OTEL" OTEL_SERVICE_NAME=bench-gateway
env VIGIL_LOG=warn "$VIGIL" audit serve --listen 127.0.0.1:$AU_OFF --data-dir "$W/a-off" --trust-headers --verify-every 0 &
env VIGIL_LOG=warn "$OTEL" "$VIGIL" audit serve --listen 127.0.0.1:$AU_ON --data-dir "$W/a-on" --trust-headers --verify-every 0 &
for p in $GW_OFF $GW_ON; do for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$p/gateway/readyz" >/dev/null && break; sleep 0.1; done; done
for p in $AU_OFF $AU_ON; do for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$p/readyz" >/dev/null && break; sleep 0.1; done; done

cat > "$W/ingest.lua" <<'LUA'
local n = 0
local hex = "0123456789abcdef"
local function id()
  local t = {}
  for i = 1, 32 do local r = math.random(1, 16); t[i] = hex:sub(r, r) end
  local s = table.concat(t)
  return s:sub(1,8).."-"..s:sub(9,12).."-4"..s:sub(14,16).."-8"..s:sub(18,20).."-"..s:sub(21,32)
end
request = function()
  local ev = {}
  for i = 1, 10 do
    n = n + 1
    ev[i] = string.format('{"event_id":"%s","occurred_at":"2026-11-30T10:00:00Z","actor":{"type":"user","id":"u-%d"},"action":"order.create","resource":{"type":"order","id":"o-%d"},"outcome":"success","severity":"info","source":{"service":"bench"},"payload":{"n":%d}}', id(), n % 7, n, n)
  end
  return wrk.format("POST", "/v1/events", {["Content-Type"]="application/json", ["X-Tenant-ID"]="t"..(n % 8), ["X-User-ID"]="bench", ["X-Roles"]="service"}, "["..table.concat(ev, ",").."]")
end
LUA

rps() { awk '/Requests\/sec/ {print $2}'; }
best() { printf '%s\n' "$@" | sort -g | tail -1; }
run_gw() { wrk -t 1 -c 64 -d "${SECS}s" -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$1/x" | rps; }
run_in() { wrk -t 1 -c 32 -d "${SECS}s" -s "$W/ingest.lua" "http://127.0.0.1:$1" | rps; }

echo "== gateway, req/s (off, on, off, on)"
g1=$(run_gw $GW_OFF); g2=$(run_gw $GW_ON); g3=$(run_gw $GW_OFF); g4=$(run_gw $GW_ON)
echo "$g1 $g2 $g3 $g4"
echo "== ingest, requests of 10 events/s (off, on, off, on)"
i1=$(run_in $AU_OFF); i2=$(run_in $AU_ON); i3=$(run_in $AU_OFF); i4=$(run_in $AU_ON)
echo "$i1 $i2 $i3 $i4"
GOFF=$(best "$g1" "$g3"); GON=$(best "$g2" "$g4"); IOFF=$(best "$i1" "$i3"); ION=$(best "$i2" "$i4")
echo "== spans exported to the sink: $(curl -s http://127.0.0.1:$SINK/)"
awk -v a="$GON" -v b="$GOFF" 'BEGIN { printf "gateway: tracing on %.0f req/s, off %.0f req/s, ratio %.2f (target >= 0.9)\n", a, b, a / b }'
awk -v a="$ION" -v b="$IOFF" 'BEGIN { printf "ingest:  tracing on %.0f events/s, off %.0f events/s, ratio %.2f (target >= 0.9)\n", a * 10, b * 10, a / b }'
