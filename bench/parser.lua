-- bench/parser.lua: the SSE parser alone, fetchstream beside its peers.
--
--   lua5.4 bench/parser.lua        (from the repo root; `make bench-parser`)
--
-- Every cell is a fresh process (bench/parser_one.lua under lua5.4 or
-- luajit, bench/node_parser.js under node) that parses one corpus once:
-- that first pass, timed inside the process from the first byte fed to the
-- last event, is the figure a script gets. Each corpus is fed two ways:
-- "memory" (read and cut into 64 KiB pieces before timing) and "stream"
-- (read 64 KiB at a time inside the timed loop). In memory mode the process
-- then makes BENCH_WARM more passes: their best is the secondary "warm"
-- column. See bench/README.md.
--
-- Environment: BENCH_CORPORA (chat,chat116,tiny,big), BENCH_WARM (1),
-- BENCH_REPEAT (3: fresh processes per cell, round-robin; the median is
-- shown),
-- BENCH_CHUNK (65536), BENCH_CELL_TIMEOUT (10 s: a process that takes longer
-- is stopped and its cell shows "> 10 s"; its other repeats are skipped),
-- BENCH_NODE (node; 0 skips), LUA, LUAJIT.

package.path = "bench/?.lua;" .. package.path
local B = require "lib"
B.forget("parser.")

local WARM = tonumber(os.getenv("BENCH_WARM") or "") or 1
local REPEAT = tonumber(os.getenv("BENCH_REPEAT") or "") or 3
local CHUNK = tonumber(os.getenv("BENCH_CHUNK") or "") or 65536
local TIMEOUT = tonumber(os.getenv("BENCH_CELL_TIMEOUT") or "") or 10
local CORPORA = {}
for c in (os.getenv("BENCH_CORPORA") or "chat,chat116,tiny,big"):gmatch("[^,%s]+") do CORPORA[#CORPORA + 1] = c end

-- The implementations: each a command prefix taking CORPUS MODE WARM CHUNK LAUNCH.
local impls, skipped = {}, {}
local STOP = "timeout " .. TIMEOUT .. " "
local function lua_impl(key, name, interp, build, form)
  impls[#impls + 1] = { key = key, name = name,
    cmd = B.env(build) .. STOP .. interp .. " bench/parser_one.lua " .. form }
end
local have_jit = B.have(B.LUAJIT)
-- Does this build's parser have p:values (the iterator without a table)?
local function has_values(abi, interp)
  return os.execute(B.env(abi) .. interp .. " -e 'os.exit(require(\"fetchstream.sse\").parser{}.values " ..
    "and 0 or 1)' 2>/dev/null") == true
end
if B.exists(B.BUILD .. "/fetchstream/sse/core.so") then
  lua_impl("iter54", "fetchstream iterator, Lua 5.4", B.LUA, nil, "iter")
  if has_values(nil, B.LUA) then lua_impl("values54", "fetchstream p:values, Lua 5.4", B.LUA, nil, "values") end
  lua_impl("fast54", "fetchstream fast path, Lua 5.4", B.LUA, nil, "fast")
else
  skipped[#skipped + 1] = "fetchstream on Lua 5.4: build/fetchstream/sse/core.so missing (make)"
end
lua_impl("plain54", "plain Lua parser, Lua 5.4", B.LUA, nil, "plain")
if have_jit and B.exists(B.BUILD_JIT .. "/fetchstream/sse/core.so") then
  lua_impl("iterjit", "fetchstream iterator, LuaJIT", B.LUAJIT, "jit", "iter")
  if has_values("jit", B.LUAJIT) then
    lua_impl("valuesjit", "fetchstream p:values, LuaJIT", B.LUAJIT, "jit", "values")
  end
  lua_impl("fastjit", "fetchstream fast path, LuaJIT", B.LUAJIT, "jit", "fast")
else
  skipped[#skipped + 1] = "fetchstream on LuaJIT: " ..
    (have_jit and "build-luajit missing (make luajit)" or "no luajit")
end
if have_jit then
  lua_impl("plainjit", "plain Lua parser, LuaJIT", B.LUAJIT, "jit", "plain")
end
local node_version
if B.NODE ~= "0" and B.have(B.NODE) and B.exists("bench/node_modules/eventsource-parser/package.json") then
  local pkg = B.read_file("bench/node_modules/eventsource-parser/package.json")
  node_version = pkg:match('"version"%s*:%s*"([^"]+)"')
  local nv = io.popen(B.q(B.NODE) .. " --version"):read("l")
  impls[#impls + 1] = { key = "node", name = "eventsource-parser " .. node_version .. ", node " .. nv,
    cmd = STOP .. B.q(B.NODE) .. " --expose-gc bench/node_parser.js" }
else
  skipped[#skipped + 1] = "eventsource-parser: node or bench/node_modules missing (make bench-setup)"
end

local function describe(s)
  if type(s) ~= "string" then return tostring(s) end
  if #s > 40 then return string.format("%q… (%d bytes)", s:sub(1, 40), #s) end
  return string.format("%q", s)
end

local function same_event(a, b)
  return type(a) == "table" and type(b) == "table" and a.data == b.data and a.event == b.event and a.id == b.id
end

local function run_cell(impl, path, mode)
  local cmd = string.format("%s %s %s %d %d %%LAUNCH%%", impl.cmd, B.q(path), mode,
    mode == "memory" and WARM or 0, CHUNK)
  local r = B.timed(cmd)
  if r.code == 124 then return { timeout = true } end
  local rep = B.report(r.out)
  if not r.ok or not rep then
    B.fail("%s on %s (%s) failed: %s", impl.name, path, mode, (r.out or ""):sub(1, 300))
    return nil
  end
  rep.wall = r.wall
  return rep
end

print(string.format("Parser: fresh process per cell, one pass, %d-byte chunks; median of %d process(es) per cell",
  CHUNK, REPEAT))
print("1 pass: time inside the process from the first byte fed to the last event (cold: no warm-up)")
print("÷5.4 fast / ÷JIT fast: this row's 1-pass time ÷ fetchstream's fast path's on Lua 5.4 / LuaJIT")
print("  (above 1: fetchstream's fast path is that many times faster)")
print("from exec: from the fork to the end of the pass (startup, module load, reading the corpus, the pass)")
print(string.format("warm best: the best of %d further pass(es) in each process, the best of the processes " ..
  "(secondary; memory mode only)", WARM))
print("per event: count it, add the length of its data")
print(string.format("a process that takes over %d s is stopped: its cell shows \"> %d\" and counts as %d s " ..
  "(a lower bound)", TIMEOUT, TIMEOUT, TIMEOUT))
for _, s in ipairs(skipped) do print("skipped: " .. s) end

for _, corpus in ipairs(CORPORA) do
  local path = "bench/corpus/" .. corpus .. ".sse"
  local size = B.exists(path) and io.open(path, "rb"):seek("end")
  if not size then
    B.fail("corpus %s missing (make bench-setup)", path)
  else
    for _, mode in ipairs{ "memory", "stream" } do
      local reps, timed_out = {}, {}
      for _ = 1, REPEAT do
        for _, impl in ipairs(impls) do
          local rep = not timed_out[impl.key] and run_cell(impl, path, mode)
          if rep and rep.timeout then
            timed_out[impl.key] = true
          elseif rep then
            reps[impl.key] = reps[impl.key] or {}
            table.insert(reps[impl.key], rep)
          end
        end
      end
      -- One result per implementation: medians of the processes. A cell
      -- that timed out counts as TIMEOUT seconds, a lower bound.
      local res = {}
      for _, impl in ipairs(impls) do
        local list = reps[impl.key]
        if timed_out[impl.key] then
          res[impl.key] = { cold = TIMEOUT, timeout = true }
        elseif list then
          local cold, launch, warm, rss = {}, {}, nil, 0
          for i, r in ipairs(list) do
            cold[i] = r.cold
            launch[#launch + 1] = type(r.from_launch) == "number" and r.from_launch or nil
            if type(r.warm) == "number" and (not warm or r.warm < warm) then warm = r.warm end
            if type(r.rss) == "number" and r.rss > rss then rss = r.rss end
          end
          res[impl.key] = { cold = B.median(cold), from_launch = B.median(launch), warm = warm, rss = rss,
            report = list[1] }
        end
      end
      -- Agreement with the plain Lua 5.4 parser.
      local ref = res.plain54 and res.plain54.report
      local agree = true
      if ref then
        for _, impl in ipairs(impls) do
          local r = res[impl.key] and res[impl.key].report
          if r and impl.key ~= "plain54" then
            local bad
            if r.events ~= ref.events then
              bad = string.format("%s events, plain Lua %s", B.commas(r.events), B.commas(ref.events))
            elseif impl.key ~= "node" and r.data_bytes ~= ref.data_bytes then
              bad = string.format("%s data bytes, plain Lua %s", B.commas(r.data_bytes), B.commas(ref.data_bytes))
            elseif not (same_event(r.first, ref.first) and same_event(r.last, ref.last)) then
              bad = string.format("first/last event differ: %s / %s, plain Lua %s / %s",
                describe(r.first and r.first.data), describe(r.last and r.last.data),
                describe(ref.first and ref.first.data), describe(ref.last and ref.last.data))
            end
            if bad then
              agree = false
              B.fail("MISMATCH %s on %s (%s): %s", impl.name, corpus, mode, bad)
            end
          end
        end
      end
      local nev = ref and ref.events or 0
      print(string.format("\n== %s, %s: %.1f MB, %s events (%.0f bytes/event)%s", corpus,
        mode == "memory" and "fed from memory" or "fed as a stream (64 KiB reads)",
        size / 1e6, B.commas(nev), nev > 0 and size / nev or 0,
        ref and (agree and "; all agree" or "; MISMATCH") or ""))
      local rows = {}
      local f54 = res.fast54 and res.fast54.cold
      local fjit = res.fastjit and res.fastjit.cold
      for _, impl in ipairs(impls) do
        local r = res[impl.key]
        if r and r.timeout then
          rows[#rows + 1] = { impl.name, "> " .. TIMEOUT, "", "", "", "", "", "", "" }
          B.record(string.format("parser.%s.%s.%s.cold", corpus, mode, impl.key), TIMEOUT, "timeout")
        elseif r then
          rows[#rows + 1] = { impl.name, B.f("%.4f", r.cold), B.commas(nev / r.cold), B.f("%.1f", size / r.cold / 1e6),
            B.f("%.2f", B.ratio(r.cold, f54)), B.f("%.2f", B.ratio(r.cold, fjit)),
            B.f("%.3f", r.from_launch), mode == "memory" and B.f("%.4f", r.warm) or "", B.f("%.1f", r.rss) }
          local k = string.format("parser.%s.%s.%s", corpus, mode, impl.key)
          B.record(k .. ".cold", r.cold)
          if r.warm then B.record(k .. ".warm", r.warm) end
          B.record(k .. ".rss", r.rss)
        else
          rows[#rows + 1] = { impl.name, "failed" }
        end
      end
      B.print_table({ { "implementation", 40, "l" }, { "1 pass s", 8 }, { "events/s", 11 }, { "MB/s", 7 },
        { "÷5.4 fast", 9 }, { "÷JIT fast", 9 }, { "from exec s", 11 }, { "warm best s", 11 }, { "peak MiB", 8 } },
        rows)
    end
  end
end

if B.failed() then
  print("\nbench-parser: FAILED (see !! lines)")
  os.exit(1)
end
