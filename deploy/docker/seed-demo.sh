#!/bin/sh
# Demo data of one cluster for the compose demo: runs `sluice up` just long enough to write its demo blocks (an HA
# pair, replicas A and B), sets the external label cluster=$CLUSTER, and puts replica A's blocks in $BUCKET/a and
# replica B's in $BUCKET/b, one bucket per store. Idempotent: does nothing when the buckets have blocks.
#   CLUSTER (required)  BUCKET=/var/lib/sluice/bucket  SLUICE=sluice  WORK=/tmp/seed  HOURS=6
set -eu
: "${CLUSTER:?set CLUSTER, e.g. eu1}"
BUCKET="${BUCKET:-/var/lib/sluice/bucket}"
SLUICE="${SLUICE:-sluice}"
WORK="${WORK:-/tmp/seed}"
HOURS="${HOURS:-6}"

if ls "$BUCKET"/a/*/meta.json >/dev/null 2>&1; then
  echo "seed: $BUCKET already has blocks"
  exit 0
fi
rm -rf "$WORK"
mkdir -p "$WORK" "$BUCKET/a" "$BUCKET/b"

"$SLUICE" up --data-dir "$WORK" --demo.hours "$HOURS" \
  --http-address 127.0.0.1:0 --grpc-address 127.0.0.1:0 >"$WORK/up.log" 2>&1 &
pid=$!
tries=0
until grep -q 'Sluice is up' "$WORK/up.log"; do
  if ! kill -0 "$pid" 2>/dev/null; then
    cat "$WORK/up.log" >&2
    echo "seed: sluice up exited before writing the demo data" >&2
    exit 1
  fi
  tries=$((tries + 1))
  if [ "$tries" -ge 1200 ]; then
    kill "$pid"
    echo "seed: sluice up did not finish within 120s" >&2
    exit 1
  fi
  sleep 0.1
done
kill "$pid"
wait "$pid" 2>/dev/null || true

n=0
for meta in "$WORK"/bucket/*/meta.json; do
  block=$(dirname "$meta")
  sed -i "s/\"cluster\": \"demo\"/\"cluster\": \"$CLUSTER\"/" "$meta"
  if ! grep -q "\"cluster\": \"$CLUSTER\"" "$meta"; then
    echo "seed: $meta has no cluster label to set" >&2
    exit 1
  fi
  if grep -q '"replica": "A"' "$meta"; then dst=a; else dst=b; fi
  cp -R "$block" "$BUCKET/$dst/"
  n=$((n + 1))
done
rm -rf "$WORK"
echo "seed: $n blocks with cluster=$CLUSTER in $BUCKET/a (replica A) and $BUCKET/b (replica B)"
