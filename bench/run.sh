#!/bin/sh
# bench/run.sh: every section of `make bench` (after `make bench-setup`),
# then the targets. Each section is a Lua script of its own (bench/README.md);
# they record their figures in build/bench/results.tsv, which
# bench/summary.lua reads. The exit status is 1 if a section failed (a
# client or parser that raised or disagreed), whatever the targets say.
set -u
cd "$(dirname "$0")/.."
LUA=${LUA:-lua5.4}
OUT=${BENCH_OUT:-build/bench}
mkdir -p "$OUT"
: >"$OUT/results.tsv"

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }'; }
t_all=$(now)
echo "fetchstream benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$("$LUA" -v 2>&1 | cut -d' ' -f1-2); $("${LUAJIT:-luajit}" -v 2>/dev/null | cut -d' ' -f1-2 || echo 'no luajit'); node $(node --version 2>/dev/null || echo 'none'); eventsource-parser $(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' bench/node_modules/eventsource-parser/package.json 2>/dev/null | head -n 1)"
echo "$(curl --version | head -n 1 | cut -d' ' -f1-2); Python $(/usr/bin/python3 -c 'import sys, httpx; print(sys.version.split()[0] + ", httpx " + httpx.__version__)' 2>/dev/null || echo '(no httpx)')"

status=0
# compression: bench/compression_memory.lua at BENCH_COMPRESSION_BYTES per
# encoding (1 GiB here; 4 GiB in `make bench-compression`).
for section in parser e2e latency streams uv memory compression; do
  args=
  case $section in
    parser) script=bench/parser.lua ;;
    e2e) script=bench/e2e.lua ;;
    latency) script=bench/latency.lua ;;
    streams) script=bench/streams.lua ;;
    uv) script=bench/uv_streams.lua ;;
    memory) script=bench/stream_memory.lua ;;
    compression) script=bench/compression_memory.lua args=${BENCH_COMPRESSION_BYTES:-1073741824} ;;
  esac
  echo
  echo "######## $section ($script${args:+ $args})"
  t0=$(now)
  # shellcheck disable=SC2086 # args: one word or none
  if ! "$LUA" "$script" $args; then
    status=1
    echo "bench: section $section FAILED"
  fi
  echo "($section: $(since "$t0") s)"
done

"$LUA" bench/summary.lua
echo
echo "make bench: $(since "$t_all") s in all, load average now $(cut -d' ' -f1-3 /proc/loadavg)"
exit $status
