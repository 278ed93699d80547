#!/bin/sh
# Certificates of the compose demo: one CA per cluster (eu1, us1) signing that cluster's querier server certificate,
# and the observer's CA signing the client certificate the observer's querier presents to both. The CA keys are
# deleted once the leaves are signed. Idempotent: does nothing when the certificates exist.
#   OUT=/certs (default)  UID_GID=10001:10001 (owner of the files; empty: leave as is)
set -eu
OUT="${OUT:-/certs}"
UID_GID="${UID_GID-10001:10001}"
DAYS="${DAYS:-365}"

if [ -s "$OUT/observer-client.crt" ]; then
  echo "gen-certs: $OUT already has the demo certificates"
  exit 0
fi
mkdir -p "$OUT"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# ca NAME: a self-signed CA certificate NAME-ca.crt (key kept in $work).
ca() {
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -keyout "$work/$1-ca.key" -out "$OUT/$1-ca.crt" -days "$DAYS" -subj "/CN=sluice demo $1 CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

# leaf CA NAME EKU [DNS]: NAME.crt and NAME.key signed by CA, with extended key usage EKU and a DNS name.
leaf() {
  ext="$work/$2.ext"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$3"
    if [ -n "${4:-}" ]; then echo "subjectAltName=DNS:$4"; fi
  } > "$ext"
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -keyout "$OUT/$2.key" -out "$work/$2.csr" -subj "/CN=$2" 2>/dev/null
  openssl x509 -req -in "$work/$2.csr" -CA "$OUT/$1-ca.crt" -CAkey "$work/$1-ca.key" -CAcreateserial \
    -out "$OUT/$2.crt" -days "$DAYS" -extfile "$ext" 2>/dev/null
  chmod 0600 "$OUT/$2.key"
}

for c in eu1 us1 observer; do ca "$c"; done
leaf eu1 query-eu1 serverAuth query-eu1
leaf us1 query-us1 serverAuth query-us1
leaf observer observer-client clientAuth
rm -f "$OUT"/*.srl
if [ -n "$UID_GID" ]; then chown -R "$UID_GID" "$OUT"; fi
echo "gen-certs: wrote $(ls "$OUT" | tr '\n' ' ')to $OUT"
