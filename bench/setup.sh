#!/bin/sh
# bench/setup.sh: what the benchmarks need besides the builds (`make
# bench-setup` runs it after building the modules and bench/server.c and
# installing BENCH_DEPS).
#
#   - the corpora in bench/corpus/, written if missing or older than
#     bench/gen_corpus.lua (about 220 MB, a few seconds; git ignores them);
#   - node: Debian's nodejs and npm, only when no node is on PATH;
#   - the pinned eventsource-parser in bench/node_modules/ (npm ci), if
#     missing or older than bench/package-lock.json.
# Without node or the npm registry the Node rows are skipped, the rest runs.
set -eu
cd "$(dirname "$0")/.."
LUA=${LUA:-lua5.4}

for c in chat chat116 tiny big; do
  if [ ! -f "bench/corpus/$c.sse" ] || [ bench/gen_corpus.lua -nt "bench/corpus/$c.sse" ]; then
    "$LUA" bench/gen_corpus.lua bench/corpus "$c"
  fi
done

if ! command -v node >/dev/null 2>&1; then
  sh scripts/deps.sh nodejs npm || echo "bench: no node: the Node rows will be skipped"
fi
if command -v npm >/dev/null 2>&1; then
  if [ ! -f bench/node_modules/eventsource-parser/package.json ] ||
     [ bench/package-lock.json -nt bench/node_modules/.package-lock.json ]; then
    echo "bench: npm ci (eventsource-parser, pinned in bench/package-lock.json)"
    (cd bench && npm ci --no-audit --no-fund --loglevel=error) ||
      echo "bench: npm ci failed: the Node rows will be skipped"
  fi
fi
