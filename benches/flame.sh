#!/usr/bin/env bash
# Flame graphs of the two hot paths, the `orders` page and `placeOrder`, as
# committed under docs/flame/. Reproduce them with:
#
#   cargo build --release --bin twofold
#   benches/flame.sh postgres docs/flame after      # or: sqlite
#
# Arguments: the store (postgres|sqlite), the output directory, a label for
# the file names, and optionally the binary (default target/release/twofold)
# and extra `serve` flags after it (e.g. --response-cache-entries 0).
#
# What it does: starts the binary on a fresh database (PostgreSQL: database
# twofold_flame on 127.0.0.1:5432; SQLite: a file under a temporary
# directory), registers 50 customers and 50 products through the API, then
#   1. runs `placeOrder` from 32 keep-alive connections (wrk, each request a
#      random customer and two random products) and records the server with
#      `perf record --call-graph dwarf` for 10 s in the middle of the run;
#   2. runs the bench's page (`orders(status: PLACED, first: 50)` with
#      customer name and line titles) from 16 connections and records it the
#      same way.
# FLAME_ONLY=page skips step 1's profile (the orders are still placed, for
# the page to show). Each profile is drawn with inferno into <out>/<store>-<page|place-order>-<label>.svg.
#
# Needs: perf (linux-perf), wrk, inferno (cargo install inferno), curl, psql
# for PostgreSQL. The figures wrk prints are under perf's sampling and are not
# benchmark results: those come from `cargo bench --bench twofold_bench`.
set -euo pipefail

store=${1:?usage: benches/flame.sh postgres|sqlite OUT_DIR LABEL [BINARY [SERVE_FLAGS...]]}
out=${2:?output directory}
label=${3:?label, e.g. before or after}
bin=${4:-target/release/twofold}
shift $(($# < 4 ? $# : 4))
extra=("$@")

for tool in perf wrk curl inferno-collapse-perf inferno-flamegraph; do
  command -v "$tool" >/dev/null || { echo "flame.sh needs $tool" >&2; exit 1; }
done
mkdir -p "$out"
work=$(mktemp -d)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

case "$store" in
  postgres)
    psql -h 127.0.0.1 -U postgres -d postgres -qc "drop database if exists twofold_flame with (force)"
    psql -h 127.0.0.1 -U postgres -d postgres -qc "create database twofold_flame"
    url="postgres://postgres@127.0.0.1:5432/twofold_flame"
    ;;
  sqlite) url="sqlite://$work/flame.db?mode=rwc" ;;
  *) echo "store must be postgres or sqlite" >&2; exit 1 ;;
esac

port=$((20000 + RANDOM % 20000))
base="http://127.0.0.1:$port"
RUST_LOG=warn "$bin" serve --bind "127.0.0.1:$port" --database-url "$url" --max-connections 32 "${extra[@]}" \
  >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 600); do
  curl -sf "$base/readyz" >/dev/null && break
  sleep 0.1
done
curl -sf "$base/readyz" >/dev/null || { cat "$work/server.log" >&2; exit 1; }

gql() { curl -sf "$base/graphql" -H 'content-type: application/json' --data "$1"; }
id_of() { sed -n 's/.*"id":"\([^"]*\)".*/\1/p'; }
customers=() products=()
for i in $(seq 1 50); do
  customers+=("$(gql "{\"query\":\"mutation { registerCustomer(input: {name: \\\"Customer $i\\\", email: \\\"c$i@flame.example\\\"}) { id } }\"}" | id_of)")
  products+=("$(gql "{\"query\":\"mutation { addProduct(input: {sku: \\\"FLAME-$i\\\", title: \\\"Product $i\\\", priceCents: $((100 * i))}) { id } }\"}" | id_of)")
done

lua_list() { local IFS=,; printf '{"%s"}' "$(echo "$*" | sed 's/,/","/g')"; }
cat >"$work/place.lua" <<LUA
local customers = $(lua_list "${customers[@]}")
local products = $(lua_list "${products[@]}")
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
request = function()
  local c = customers[math.random(#customers)]
  local p1, p2 = products[math.random(#products)], products[math.random(#products)]
  local body = '{"query":"mutation(\$i: PlaceOrderInput!) { placeOrder(input: \$i) { id token } }",'
    .. '"variables":{"i":{"customerId":"' .. c .. '","lines":[{"productId":"' .. p1
    .. '","quantity":1},{"productId":"' .. p2 .. '","quantity":2}]}}}'
  return wrk.format(nil, nil, nil, body)
end
LUA
cat >"$work/page.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = '{"query":"query { orders(status: PLACED, first: 50) { edges { node { id customerName lines { title quantity } } } } }"}'
LUA

profile() {
  local name=$1 connections=$2 script=$3
  wrk -t2 -c"$connections" -d16s -s "$script" "$base/graphql" >"$work/$name.wrk" &
  local wrk_pid=$!
  sleep 3 # the load's ramp-up, not a wait for a state: the profile should see the steady part
  perf record -q -F 499 --call-graph dwarf,16384 -p "$server_pid" -o "$work/$name.data" -- sleep 10 2>/dev/null
  wait "$wrk_pid"
  echo "== $store $name ($label): wrk under perf"
  sed -n '/Latency/p;/Requests\/sec/p;/Non-2xx/p' "$work/$name.wrk"
  perf script -i "$work/$name.data" 2>/dev/null | inferno-collapse-perf >"$work/$name.folded"
  inferno-flamegraph --title "$store: $name ($label)" --width 1600 <"$work/$name.folded" >"$out/$store-$name-$label.svg"
  echo "   wrote $out/$store-$name-$label.svg"
  # The folded stacks too, when asked (FLAME_FOLDED=1): for self-time tables
  # (the leaf frame of each line) that an SVG does not give.
  if [ "${FLAME_FOLDED:-}" = 1 ]; then cp "$work/$name.folded" "$out/$store-$name-$label.folded"; fi
}

if [ "${FLAME_ONLY:-}" = page ]; then
  wrk -t2 -c32 -d8s -s "$work/place.lua" "$base/graphql" >/dev/null
else
  profile place-order 32 "$work/place.lua"
fi
# The page needs placed orders to show: the run above left thousands.
profile page 16 "$work/page.lua"
