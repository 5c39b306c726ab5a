#!/bin/sh
# make test: lint, specs under Lua 5.4, the specs again under LuaJIT (the
# Lua 5.1 ABI: build-luajit/, less what only 5.4 has, see .busted), then
# under Lua 5.4 with AddressSanitizer and UBSan, then a short libFuzzer run
# of the SSE parser (one test: passed if it found nothing). Ends with
# "total: N passed, N failed" and fails if anything did.
COUNTS_FILE=$(mktemp); export COUNTS_FILE
ok=0
echo "== lint"; make -s lint || ok=1  # the paths are the Makefile's
echo "== specs"; sh scripts/run-specs.sh specs "${BUILD:-build}" || ok=1
echo "== specs under LuaJIT"
LUA="${LUAJIT:-luajit}" sh scripts/run-specs.sh specs-luajit "${LUAJIT_BUILD:-build-luajit}" || ok=1
echo "== memcheck (ASan + UBSan)"
sh scripts/run-specs.sh memcheck "${ASAN_BUILD:-build-asan}" || ok=1
secs=${FUZZ_SMOKE_SECONDS:-30}
echo "== fuzz (libFuzzer on the SSE parser, $secs s)"
if make -s fuzz FUZZ_SECONDS="$secs" FUZZ_QUIET=1; then
  echo "fuzz: 1 passed, 0 failed"; echo "1 0" >>"$COUNTS_FILE"
else
  echo "fuzz: 0 passed, 1 failed"; echo "0 1" >>"$COUNTS_FILE"; ok=1
fi
passed=0; failed=0
while read -r p f; do passed=$((passed + p)); failed=$((failed + f)); done <"$COUNTS_FILE"
rm -f "$COUNTS_FILE"
[ "$ok" -ne 0 ] && [ "$failed" -eq 0 ] && failed=1  # lint failed
echo "total: $passed passed, $failed failed"
exit $ok
