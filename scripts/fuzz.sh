#!/bin/sh
# fuzz.sh FUZZER SECONDS [QUIET]
# Runs the libFuzzer binary FUZZER (fuzz/sse_fuzz.c) for SECONDS, one
# process, with fuzz/sse.dict, over a scratch corpus beside the binary
# (DIR/corpus: the committed seeds of fuzz/seeds/ copied in, and whatever
# earlier runs found; fuzz/seeds/ itself is never written). A failing input
# is saved as DIR/crash-* (or leak-*, timeout-*, oom-*); rerun it with
# `FUZZER FILE`. The last line is a summary:
#   fuzz: N execs in S s (E exec/s), cov: C ft: F, corpus: K inputs (B)
# With QUIET (any non-empty word), libFuzzer's output goes to DIR/fuzz.log
# and only the summary is printed (the log's tail too when the run fails).
bin=$1; secs=$2; quiet=${3:-}
dir=$(dirname "$bin")
corpus=$dir/corpus
log=$dir/fuzz.log
mkdir -p "$corpus"
cp fuzz/seeds/* "$corpus"/ || exit 1  # content-named: copying again is harmless
rm -f "$dir"/crash-* "$dir"/leak-* "$dir"/timeout-* "$dir"/oom-*
# -timeout: a parse that takes seconds is a hang, a bug.
set -- "$bin" -max_total_time="$secs" -timeout=10 -dict=fuzz/sse.dict \
  -print_final_stats=1 -artifact_prefix="$dir/" "$corpus"
if [ -n "$quiet" ]; then
  "$@" >"$log" 2>&1
  status=$?
else
  { "$@" 2>&1; echo $? >"$log.status"; } | tee "$log"
  status=$(cat "$log.status"); rm -f "$log.status"
fi
if [ "$status" -ne 0 ]; then
  [ -n "$quiet" ] && tail -n 60 "$log"
  echo "fuzz: FAILED (libFuzzer exit status $status); the input:" \
    "$(ls "$dir"/crash-* "$dir"/leak-* "$dir"/timeout-* "$dir"/oom-* 2>/dev/null | tr '\n' ' ')"
  exit 1
fi
# "#N  DONE  cov: C ft: F corp: K/B lim: ..." and the final stats
done_line=$(grep -a 'DONE ' "$log" | tail -n 1)
field() { echo "$done_line" | sed -n "s/.* $1 \([^ ]*\).*/\1/p"; }
final() { sed -n "s/^stat::$1: *//p" "$log" | tail -n 1; }
corp=$(field corp:)
echo "fuzz: $(final number_of_executed_units) execs in $secs s" \
  "($(final average_exec_per_sec) exec/s), cov: $(field cov:) ft: $(field ft:)," \
  "corpus: ${corp%%/*} inputs (${corp#*/}; $(ls "$corpus" | wc -l) files in $corpus)"
