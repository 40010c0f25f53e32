#!/usr/bin/env bash
# Gateway benchmark (issue 5), in one run against the same small upstream on loopback:
#   1. the upstream alone (nginx returning a fixed 200),
#   2. nginx (Debian's package) as a plain proxy_pass in front of it,
#   3. the Vigil gateway in front of it, with JWT verification (through the auth service's
#      JWKS) and the Redis rate limiter on (a limit high enough that nothing is refused).
# Throughput with wrk at 64 connections, and latency at 1 connection (added p99 = gateway or
# nginx p99 minus the upstream's); for each, the proxy's own CPU time per request (from
# /proc: the gateway's process; nginx's minus what it spends as the upstream alone). Then `vigil bench ratelimit` for the Redis decision p99.
#
# Needs: wrk and nginx (apt-get install wrk nginx), Redis at 127.0.0.1:6379, a release build
# (cargo build --release -p vigil). Usage: scripts/bench_gateway.sh [seconds per run]
# PIN=1 runs wrk on CPU 0 and nginx (proxy and upstream) and both gateways on CPU 1
# (taskset), so that the ratio is not only the load generator and the proxy sharing cores;
# Redis and the auth service stay where the scheduler puts them.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-10}"
LOAD=(); PROXY=()
if [ "${PIN:-0}" = 1 ]; then LOAD=(taskset -c 0); PROXY=(taskset -c 1); fi
VIGIL="${CARGO_TARGET_DIR:-$HOME/.cache/vigil-target}/release/vigil"
[ -x "$VIGIL" ] || { echo "build first: cargo build --release -p vigil" >&2; exit 2; }
command -v wrk >/dev/null && command -v nginx >/dev/null || { echo "needs wrk and nginx (apt-get install wrk nginx)" >&2; exit 2; }

W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; nginx -p "$W" -c "$W/nginx.conf" -s stop 2>/dev/null; rm -rf "$W"' EXIT
UP=18091; NGX=18092; GW=18093; AUTH=18094; GWM=18095; GWS=18096; GWL=18097

cat > "$W/nginx.conf" <<EOF
worker_processes auto;   # Debian's default
error_log $W/error.log;
pid $W/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream up { server 127.0.0.1:$UP; keepalive 256; }
  server { listen 127.0.0.1:$UP; location / { return 200 "ok\n"; } }
  server {
    listen 127.0.0.1:$NGX;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOF
"${PROXY[@]}" nginx -p "$W" -c "$W/nginx.conf"

VIGIL_LOG=warn "$VIGIL" auth serve --listen 127.0.0.1:$AUTH --database-url "sqlite://$W/auth.db" --token-ttl-secs 3600 &
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$AUTH/readyz" >/dev/null && break; sleep 0.1; done
CREDS=$("$VIGIL" auth clients add --database-url "sqlite://$W/auth.db" --tenant acme --name bench --roles service)
ID=$(echo "$CREDS" | sed -n 's/^client_id=//p'); SECRET=$(echo "$CREDS" | sed -n 's/^client_secret=//p')
TOKEN=$(curl -s -u "$ID:$SECRET" -d grant_type=client_credentials "http://127.0.0.1:$AUTH/oauth/token" | sed 's/.*"access_token":"\([^"]*\)".*/\1/')

cat > "$W/gateway.toml" <<EOF
listen = "127.0.0.1:$GW"
[auth]
jwks_url = "http://127.0.0.1:$AUTH/.well-known/jwks.json"
issuer = "http://127.0.0.1:$AUTH"
[rate_limit]
default_rpm = 100000000
redis_url = "redis://127.0.0.1:6379"
key_prefix = "vigil-bench:$$:"
[[routes]]
prefix = "/"
upstreams = ["http://127.0.0.1:$UP"]
EOF
VIGIL_LOG=warn "${PROXY[@]}" "$VIGIL" gateway serve --config "$W/gateway.toml" &
GW_PID=$!
# For reference: the same gateway deciding limits in memory (no Redis round trip).
sed -e "s/^listen = .*/listen = \"127.0.0.1:$GWM\"/" -e '/^redis_url/d' "$W/gateway.toml" > "$W/gateway-memory.toml"
VIGIL_LOG=warn "${PROXY[@]}" "$VIGIL" gateway serve --config "$W/gateway-memory.toml" &
GWM_PID=$!
# And the same gateway serving on one multi-threaded runtime (`serving_threads = 0`, as before
# issue 15) instead of a thread per core with its own listener, upstream pool and Redis
# connection: the before/after of that change, in the same run.
# Every decision a round trip to Redis too (`max_lease = 1`, as before issue 15).
sed -e "s/^listen = .*/listen = \"127.0.0.1:$GWS\"\nserving_threads = 0/" -e "s/^redis_url = .*/&\nmax_lease = 1/" "$W/gateway.toml" > "$W/gateway-shared.toml"
VIGIL_LOG=warn "${PROXY[@]}" "$VIGIL" gateway serve --config "$W/gateway-shared.toml" &
GWS_PID=$!
# Between the two: a thread per core, but every decision a round trip (no leases).
sed -e "s/^listen = .*/listen = \"127.0.0.1:$GWL\"/" -e "s/^redis_url = .*/&\nmax_lease = 1/" "$W/gateway.toml" > "$W/gateway-nolease.toml"
VIGIL_LOG=warn "${PROXY[@]}" "$VIGIL" gateway serve --config "$W/gateway-nolease.toml" &
GWL_PID=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$GWM/gateway/readyz" >/dev/null && break; sleep 0.1; done
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$GWS/gateway/readyz" >/dev/null && break; sleep 0.1; done
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$GWL/gateway/readyz" >/dev/null && break; sleep 0.1; done
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$GW/gateway/readyz" >/dev/null && break; sleep 0.1; done
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$GW/x")" = 200 ] || { echo "the gateway does not pass the bench request" >&2; exit 1; }

# CPU time (user + system, clock ticks) of these processes and their threads, from /proc.
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
NGINX_PIDS=$(cat "$W/nginx.pid"; pgrep -P "$(cat "$W/nginx.pid")" | tr '\n' ' ')
HZ=$(getconf CLK_TCK)
declare -A UP_CPU   # nginx's CPU per request as the upstream alone, by connections

run() { # name url connections pids [header]
  local out before after
  before=$(ticks $4)
  if [ -n "${5:-}" ]; then out=$("${LOAD[@]}" wrk -t 1 -c "$3" -d "${SECS}s" --latency -H "$5" "$2"); else out=$("${LOAD[@]}" wrk -t 1 -c "$3" -d "${SECS}s" --latency "$2"); fi
  after=$(ticks $4)
  local rps p50 p99 non2xx n cpu
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  n=$(echo "$out" | awk '/requests in/ {print $1}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $5}')
  # The proxy's own CPU per request: the upstream's share is taken out of nginx's (one nginx
  # serves both), and the gateways are processes of their own.
  cpu=$(awk -v d=$((after - before)) -v hz="$HZ" -v n="$n" 'BEGIN { printf "%.1f", d / hz / n * 1e6 }')
  case "$1" in
    upstream*) UP_CPU[$3]=$cpu ;;
    nginx*) cpu=$(awk -v a="$cpu" -v b="${UP_CPU[$3]:-0}" 'BEGIN { printf "%.1f", a - b }') ;;
  esac
  printf '%-34s c=%-3s %10s req/s   p50 %-9s p99 %-9s non-2xx %-4s CPU/request %s µs\n' "$1" "$3" "$rps" "$p50" "$p99" "${non2xx:-0}" "$cpu"
}

echo "== throughput (wrk, 1 thread, 64 connections, ${SECS}s each)"
run "upstream alone" "http://127.0.0.1:$UP/x" 64 "$NGINX_PIDS"
run "nginx proxy_pass" "http://127.0.0.1:$NGX/x" 64 "$NGINX_PIDS"
run "vigil gateway (JWT + Redis)" "http://127.0.0.1:$GW/x" 64 "$GW_PID" "Authorization: Bearer $TOKEN"
run "  for reference: JWT + memory" "http://127.0.0.1:$GWM/x" 64 "$GWM_PID" "Authorization: Bearer $TOKEN"
run "  threads, no leases, JWT + Redis" "http://127.0.0.1:$GWL/x" 64 "$GWL_PID" "Authorization: Bearer $TOKEN"
run "  before: one runtime, no leases" "http://127.0.0.1:$GWS/x" 64 "$GWS_PID" "Authorization: Bearer $TOKEN"
echo "== latency (wrk, 1 connection, ${SECS}s each)"
run "upstream alone" "http://127.0.0.1:$UP/x" 1 "$NGINX_PIDS"
run "nginx proxy_pass" "http://127.0.0.1:$NGX/x" 1 "$NGINX_PIDS"
run "vigil gateway (JWT + Redis)" "http://127.0.0.1:$GW/x" 1 "$GW_PID" "Authorization: Bearer $TOKEN"
run "  for reference: JWT + memory" "http://127.0.0.1:$GWM/x" 1 "$GWM_PID" "Authorization: Bearer $TOKEN"
run "  threads, no leases, JWT + Redis" "http://127.0.0.1:$GWL/x" 1 "$GWL_PID" "Authorization: Bearer $TOKEN"
run "  before: one runtime, no leases" "http://127.0.0.1:$GWS/x" 1 "$GWS_PID" "Authorization: Bearer $TOKEN"
echo "== the gateway's own rate-limit decision histogram during the runs"
curl -s "http://127.0.0.1:$GW/gateway/metrics" | grep -E '^gateway_rate_limiter_decision_seconds_(bucket|count)\{engine="redis"' | grep -E 'le="(0.00025|0.0005|0.001|\+Inf)"|_count'
echo "== Redis decision latency, one caller at a time"
"$VIGIL" bench ratelimit --redis-url redis://127.0.0.1:6379 --decisions 20000
