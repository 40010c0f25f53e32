#!/usr/bin/env bash
# Ingest as a curve (issue 15, item 5): events/s over concurrent clients × events per batch,
# raw insert and chained ingest (each client its own tenant) and all clients on one tenant,
# on SQLite and Postgres, each point with the machine's CPU use during it, so that what bounds
# it can be named: ~100 % of both cores is CPU; well below is waiting (a commit's fsync, one
# connection's round trips, the single writer).
#
# Needs: a release build (cargo build --release -p vigil); Postgres at $PG (default
# postgres://postgres@127.0.0.1:5432, a fresh database per point).
# Usage: scripts/bench_ingest_curve.sh [sqlite|postgres|both] [events per point]
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINES="${1:-both}"; EVENTS="${2:-24000}"
T="${CARGO_TARGET_DIR:-$HOME/.cache/vigil-target}"
VIGIL="$T/release/vigil"
[ -x "$VIGIL" ] || { echo "build first: cargo build --release -p vigil" >&2; exit 2; }
PG="${PG:-postgres://postgres@127.0.0.1:5432}"
export PGOPTIONS="-c client_min_messages=warning"
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat; }
[ "$ENGINES" = both ] && ENGINES="sqlite postgres"
echo "| store | clients | batch | raw ev/s | chained ev/s | one tenant ev/s | mean group | CPU busy |"
echo "|---|---|---|---|---|---|---|---|"
for engine in $ENGINES; do
  for clients in 1 4 16 64; do
    for batch in 10 100 1000; do
      batches=$(( EVENTS / (clients * batch) )); [ "$batches" -lt 2 ] && batches=2
      if [ "$engine" = sqlite ]; then
        url="sqlite://$W/c$clients-b$batch.db"
      else
        db="curve_${clients}_${batch}_$$"
        psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
        url="$PG/$db"
      fi
      read -r b0 t0 < <(busy)
      out=$("$VIGIL" bench ingest --database-url "$url" --clients "$clients" --batch "$batch" \
        --batches "$batches" --rounds 1 2>&1) || { echo "$out" >&2; exit 1; }
      read -r b1 t1 < <(busy)
      line=$(grep '^mean:' <<<"$out")
      raw=$(sed -E 's/.*raw ([0-9]+) events.*/\1/' <<<"$line")
      chained=$(sed -E 's/.*chained ([0-9]+) events.*/\1/' <<<"$line")
      one=$(sed -E 's/.*one tenant ([0-9]+) events.*/\1/' <<<"$line")
      group=$(sed -E 's/.*mean group commit ([0-9]+) events.*/\1/' <<<"$line")
      cpu=$(awk -v b="$((b1 - b0))" -v t="$((t1 - t0))" 'BEGIN{printf "%.0f %%", 100 * b / t}')
      echo "| $engine | $clients | $batch | $raw | $chained | $one | $group | $cpu |"
      [ "$engine" = postgres ] && psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $db" >/dev/null
      rm -f "$W"/*.db*
    done
  done
done
