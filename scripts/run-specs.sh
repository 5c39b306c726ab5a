#!/bin/sh
# run-specs.sh NAME BUILD_DIR [busted args...]
# Runs the busted specs under $LUA (default lua5.4; LUA=luajit for the LuaJIT
# pass, which .busted trims to what LuaJIT has) against the module in
# BUILD_DIR and prints "NAME: N passed, N failed". Counts go to $COUNTS_FILE
# when it is set. For an ASan build (BUILD_DIR named *asan*) the sanitizer
# runtime is preloaded into the stock interpreter.
name=$1; dir=$2; shift 2
LUA=${LUA:-lua5.4}
out=$(mktemp)
if [ "${dir#*asan}" != "$dir" ]; then
  export LD_PRELOAD="$(gcc -print-file-name=libasan.so)"
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=23"
  export LSAN_OPTIONS="suppressions=$(pwd)/scripts/lsan.supp:print_suppressions=0"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
fi
$LUA /usr/bin/busted --cpath="./$dir/?.so" -o TAP "$@" >"$out" 2>&1
status=$?
unset LD_PRELOAD
cat "$out"
passed=$(grep -c '^ok ' "$out")
failed=$(grep -c '^not ok ' "$out")
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  echo "$name: busted exited with status $status (sanitizer report or crash above)"
  failed=1
fi
rm -f "$out"
echo "$name: $passed passed, $failed failed"
[ -n "$COUNTS_FILE" ] && echo "$passed $failed" >>"$COUNTS_FILE"
[ "$failed" -eq 0 ]
