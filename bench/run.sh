#!/bin/sh
# bench/run.sh: the entry point of `make bench` (after `make` built the module).
#
#   sh bench/run.sh            from the repo root, or from anywhere
#
# Generates the corpora if missing (or older than gen_corpus.lua), installs
# the pinned eventsource-parser into bench/node_modules if needed, and runs
# the benchmark under lua5.4. Without node (or without the npm registry) the
# eventsource-parser column is skipped and the rest still runs.
# Environment: LUA (default lua5.4), and the BENCH_* variables of parser.lua.
set -eu
cd "$(dirname "$0")/.."
LUA=${LUA:-lua5.4}

for c in chat tiny big; do
  if [ ! -f "bench/corpus/$c.sse" ] || [ bench/gen_corpus.lua -nt "bench/corpus/$c.sse" ]; then
    "$LUA" bench/gen_corpus.lua bench/corpus "$c"
  fi
done

if [ "${BENCH_NODE:-node}" = 0 ]; then
  :
elif ! command -v "${BENCH_NODE:-node}" >/dev/null 2>&1; then
  echo "bench: node not found: eventsource-parser skipped"
  BENCH_NODE=0 BENCH_NODE_WHY="node not found"; export BENCH_NODE BENCH_NODE_WHY
elif [ ! -f bench/node_modules/eventsource-parser/package.json ] ||
     [ bench/package-lock.json -nt bench/node_modules/.package-lock.json ]; then
  echo "bench: npm ci (eventsource-parser, pinned in bench/package-lock.json)"
  if ! (cd bench && npm ci --no-audit --no-fund --loglevel=error); then
    echo "bench: npm ci failed: eventsource-parser skipped"
    BENCH_NODE=0 BENCH_NODE_WHY="npm ci failed"; export BENCH_NODE BENCH_NODE_WHY
  fi
fi

exec "$LUA" bench/parser.lua
