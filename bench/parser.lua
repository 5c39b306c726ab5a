-- bench/parser.lua: SSE parser benchmark, fetchstream against its peers.
--
--   lua5.4 bench/parser.lua          (from the repo root; bench/run.sh does this)
--
-- For each corpus in bench/corpus/ (written by bench/gen_corpus.lua) the file
-- is read and cut into 64 KiB chunks (not timed), then fed, chunk by chunk, to
--   (a) fetchstream's parser, iterator form:  for ev in p:feed(chunk) do ... end
--   (b) fetchstream's parser, fast path:      p:feed(chunk, function(data, event, id) ... end)
--   (c) bench/plain_parser.lua, a plain-Lua parser written as plugins write one
--   (d) eventsource-parser under Node (bench/node_parser.js, a child process)
-- Each implementation gets one untimed check pass, then RUNS timed passes
-- whose per-event work is: count the event, add the length of its data.
-- The best (shortest) wall-clock time is reported.
--
-- The check pass verifies that every implementation saw the same events:
-- (a) and (b) are compared event by event with (c) (data, event type, id);
-- (d) is compared on the event count, the total data bytes and the first and
-- last event. Any disagreement is printed as MISMATCH and the exit status
-- is 1 (after all tables are printed).
--
-- Environment:
--   BENCH_RUNS=3               timed passes per implementation
--   BENCH_CHUNK=65536          chunk size in bytes
--   BENCH_CORPORA=chat,tiny,big
--   BENCH_NODE=node            the node binary; BENCH_NODE=0 skips (d)

local script_dir = (arg and arg[0] or ""):match("^(.*)[/\\]") or "."
local root = script_dir .. "/.."
package.path = script_dir .. "/?.lua;" .. root .. "/lua/?.lua;" .. root ..
               "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/?.so;" .. package.cpath

local RUNS = tonumber(os.getenv("BENCH_RUNS") or "") or 3
local CHUNK = tonumber(os.getenv("BENCH_CHUNK") or "") or 65536
local CORPORA = {}
for name in (os.getenv("BENCH_CORPORA") or "chat,tiny,big"):gmatch("[^,%s]+") do
  CORPORA[#CORPORA + 1] = name
end
local NODE = os.getenv("BENCH_NODE") or "node"

local gettime = os.clock
local clock_name = "os.clock (CPU time)"
do
  local ok, socket = pcall(require, "socket")
  if ok and socket.gettime then
    gettime, clock_name = socket.gettime, "socket.gettime (wall clock)"
  end
end

local failed = false
local function loud(fmt, ...)
  failed = true
  io.stdout:write("!! ", string.format(fmt, ...), "\n")
  io.stdout:flush()
end

local function commas(n)
  local s = string.format("%d", math.floor(n + 0.5))
  local out = s:reverse():gsub("(%d%d%d)", "%1,"):reverse()
  return (out:gsub("^,", ""))
end

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

------------------------------------------------------------------------------
-- Implementations under test

local fetch, fetch_status
do
  local so = io.open(root .. "/build/fetchstream/core.so", "rb")
  if not so then
    fetch_status = "skipped: build/fetchstream/core.so not found (run `make`)"
  else
    so:close()
    local ok, mod = pcall(require, "fetchstream")
    if ok and type(mod) == "table" and type(mod.parser) == "function" then
      fetch = mod
    else
      fetch_status = "FAILED to load: " .. tostring(ok and "fetchstream.parser is missing" or mod)
      failed = true
    end
  end
end

local Plain = require "plain_parser"

-- Every implementation is a function (chunks, on_event) that parses all
-- chunks with a fresh parser and calls on_event(data, event, id) per event.
-- The timed loops below are written out per implementation instead, so that
-- no extra call layer sits in the measured path.
local impls = {}

if fetch then
  impls[#impls + 1] = {
    key = "iter", name = "fetchstream, iterator form",
    check = function(chunks, on_event)
      local p = fetch.parser{}
      for i = 1, #chunks do
        for ev in p:feed(chunks[i]) do on_event(ev.data, ev.event, ev.id) end
      end
    end,
    timed = function(chunks)
      local p = fetch.parser{}
      local n, len = 0, 0
      local t0 = gettime()
      for i = 1, #chunks do
        for ev in p:feed(chunks[i]) do n = n + 1; len = len + #ev.data end
      end
      return gettime() - t0, n, len
    end,
  }
  impls[#impls + 1] = {
    key = "fast", name = "fetchstream, fast path",
    check = function(chunks, on_event)
      local p = fetch.parser{}
      for i = 1, #chunks do p:feed(chunks[i], on_event) end
    end,
    timed = function(chunks)
      local p = fetch.parser{}
      local n, len = 0, 0
      local function cb(data) n = n + 1; len = len + #data end
      local t0 = gettime()
      for i = 1, #chunks do p:feed(chunks[i], cb) end
      return gettime() - t0, n, len
    end,
  }
end

impls[#impls + 1] = {
  key = "plain", name = "plain Lua (plain_parser.lua)",
  check = function(chunks, on_event)
    local p = Plain.new()
    for i = 1, #chunks do p:feed(chunks[i], on_event) end
  end,
  timed = function(chunks)
    local p = Plain.new()
    local n, len = 0, 0
    local function cb(data) n = n + 1; len = len + #data end
    local t0 = gettime()
    for i = 1, #chunks do p:feed(chunks[i], cb) end
    return gettime() - t0, n, len
  end,
}

local node_status
if NODE == "0" or NODE == "" then
  node_status = "skipped: " .. (os.getenv("BENCH_NODE_WHY") or "BENCH_NODE=0")
elseif not os.execute("command -v " .. shell_quote(NODE) .. " >/dev/null 2>&1") then
  node_status = "skipped: node not found"
elseif not io.open(script_dir .. "/node_modules/eventsource-parser/package.json", "rb") then
  node_status = "skipped: bench/node_modules missing (run bench/run.sh, or npm ci in bench/)"
else
  local ok, cjson = pcall(require, "cjson")
  if not ok then
    node_status = "skipped: lua-cjson is needed to read node's JSON"
  else
    node_status = true
    impls[#impls + 1] = { key = "node", name = "eventsource-parser (node)", cjson = cjson }
  end
end

------------------------------------------------------------------------------
-- Running one corpus

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function describe(s)
  if s == nil then return "nil" end
  if type(s) ~= "string" then return type(s) .. " " .. tostring(s) end
  if #s <= 48 then return (string.format("%q (%d bytes)", s, #s):gsub("\\\n", "\\n")) end
  return (string.format("%q… (%d bytes)", s:sub(1, 40), #s):gsub("\\\n", "\\n"))
end

-- Where two strings first differ, shown with a little context.
local function first_diff(a, b)
  if type(a) ~= "string" or type(b) ~= "string" then return "" end
  local i = 1
  while i <= #a and i <= #b and a:byte(i) == b:byte(i) do i = i + 1 end
  if i > #a and i > #b then return "" end
  local from = math.max(1, i - 16)
  return string.format("\n     data first differs at byte %d: got %s, plain %s", i,
    describe(a:sub(from, i + 16)), describe(b:sub(from, i + 16)))
end

-- Reference events from the plain parser: parallel arrays, and the index
-- of the chunk whose feed dispatched each event.
local function reference(chunks)
  local D, E, I, C, n, bytes = {}, {}, {}, {}, 0, 0
  local p, c = Plain.new(), 0
  local function on_event(data, event, id)
    n = n + 1
    D[n], E[n], I[n], C[n] = data, event, id, c
    bytes = bytes + #data
  end
  for i = 1, #chunks do c = i; p:feed(chunks[i], on_event) end
  return { data = D, event = E, id = I, chunk = C, n = n, bytes = bytes }
end

local function check_lua(impl, chunks, ref)
  local n, bytes, first_bad = 0, 0, nil
  local D, E, I = ref.data, ref.event, ref.id
  local ok, err = pcall(impl.check, chunks, function(data, event, id)
    n = n + 1
    bytes = bytes + (type(data) == "string" and #data or 0)
    if not first_bad and (data ~= D[n] or event ~= E[n] or id ~= I[n]) then
      first_bad = { n = n, data = data, event = event, id = id }
    end
  end)
  if not ok then
    loud("%s raised during the check pass after %d events: %s", impl.name, n, tostring(err))
    return false
  end
  local good = true
  if n ~= ref.n then
    loud("MISMATCH %s: %s events, plain Lua %s", impl.name, commas(n), commas(ref.n))
    good = false
  end
  if bytes ~= ref.bytes then
    loud("MISMATCH %s: %s data bytes, plain Lua %s", impl.name, commas(bytes), commas(ref.bytes))
    good = false
  end
  if first_bad then
    local k = first_bad.n
    local c = ref.chunk[k]
    loud("MISMATCH %s: first differing event is #%d (the plain parser dispatched it " ..
         "feeding chunk #%s, bytes %s..%s of the corpus):\n" ..
         "     got   data=%s event=%s id=%s\n     plain data=%s event=%s id=%s%s",
         impl.name, k, tostring(c), c and commas((c - 1) * CHUNK) or "?", c and commas(c * CHUNK - 1) or "?",
         describe(first_bad.data), describe(first_bad.event), describe(first_bad.id),
         describe(D[k]), describe(E[k]), describe(I[k]), first_diff(first_bad.data, D[k]))
    good = false
  end
  return good
end

-- One timed pass; returns the time, or nil after reporting a failure.
local function time_lua(impl, chunks, ref, r, result)
  collectgarbage("collect")
  local ok, t, n = pcall(impl.timed, chunks)
  if not ok then
    loud("%s raised in timed run %d: %s", impl.name, r, tostring(t))
    result.ok = false
    return nil
  end
  if n ~= ref.n then
    loud("MISMATCH %s: timed run %d counted %s events, expected %s", impl.name, r, commas(n), commas(ref.n))
    result.ok = false
  end
  return t
end

local function run_node(impl, path, ref)
  local result = { name = impl.name, key = impl.key }
  local cmd = string.format("%s --expose-gc %s %s %d %d", shell_quote(NODE),
    shell_quote(script_dir .. "/node_parser.js"), shell_quote(path), RUNS, CHUNK)
  local pipe = io.popen(cmd, "r")
  local out = pipe:read("a")
  local ok_exit, _, code = pipe:close()
  local ok, j = pcall(impl.cjson.decode, out)
  if not ok_exit or not ok or type(j) ~= "table" then
    loud("eventsource-parser run failed (exit %s): %s", tostring(code), out:sub(1, 300))
    result.ok = false
    return result
  end
  result.name = j.impl .. " (node " .. j.node .. ")"
  result.best, result.times = j.best, j.times
  result.ok = true
  local function mismatch(what, got, want)
    loud("MISMATCH %s: %s %s, plain Lua %s", result.name, what, got, want)
    result.ok = false
  end
  if j.events ~= ref.n then mismatch("events", commas(j.events), commas(ref.n)) end
  if j.data_bytes ~= ref.bytes then mismatch("data bytes", commas(j.data_bytes), commas(ref.bytes)) end
  for _, which in ipairs{ "first", "last" } do
    local e = j[which]
    local k = which == "first" and 1 or ref.n
    if type(e) ~= "table" then
      mismatch(which .. " event", "none", describe(ref.data[k]))
    else
      if e.data ~= ref.data[k] then mismatch(which .. " event data", describe(e.data), describe(ref.data[k])) end
      if e.event ~= ref.event[k] then mismatch(which .. " event type", describe(e.event), describe(ref.event[k])) end
      if e.id ~= ref.id[k] then mismatch(which .. " event id", describe(e.id), describe(ref.id[k])) end
    end
  end
  return result
end

local function print_table(name, size, nchunks, ref, results)
  local by = {}
  for _, r in ipairs(results) do by[r.key] = r end
  print(string.format("\n== %s: %.1f MB, %s events, %d chunks of %d bytes; best of %d",
    name, size / 1e6, commas(ref.n), nchunks, CHUNK, RUNS))
  local head = string.format("%-44s %9s %12s %9s %9s %9s", "implementation", "best s",
    "events/s", "MB/s", "iter ×", "fast ×")
  print(head)
  print((head:gsub("[^\n]", "-")))
  for _, r in ipairs(results) do
    if r.best then
      local function ratio(key)
        local f = by[key]
        if not (f and f.best and f.best > 0) then return "-" end
        return string.format("%.2f", r.best / f.best)
      end
      print(string.format("%-44s %9.4f %12s %9.1f %9s %9s%s", r.name, r.best,
        commas(ref.n / r.best), size / r.best / 1e6, ratio("iter"), ratio("fast"),
        r.ok and "" or "  (MISMATCH)"))
    else
      print(string.format("%-44s %9s  (failed)", r.name, "-"))
    end
  end
end

------------------------------------------------------------------------------

print(string.format("fetchstream SSE parser benchmark — %s, chunk %d bytes, best of %d, timer %s",
  _VERSION, CHUNK, RUNS, clock_name))
print("fetchstream: " .. (fetch and "build/fetchstream/core.so" or fetch_status))
print("eventsource-parser: " .. (node_status == true and "run with " .. NODE or node_status))
print("iter × / fast ×: this row's time ÷ fetchstream's time (above 1: fetchstream is faster)")
print("MB/s: input bytes (10^6) per second; per event the work is: count it, add #data")

-- The corpus in chunks; nil if it is missing.
local function load_chunks(path)
  local bytes = read_file(path)
  if not bytes then return nil end
  local chunks = {}
  for i = 1, #bytes, CHUNK do chunks[#chunks + 1] = bytes:sub(i, i + CHUNK - 1) end
  return chunks, #bytes
end

-- Check passes of the Lua implementations against the plain parser's events.
-- Returns a summary of the reference (count, bytes, first and last event):
-- the full reference is dropped here, so that the timed runs see a heap
-- holding only the chunks (a big live table makes every GC cycle dearer).
local function check_all(chunks, results)
  local ref = reference(chunks)
  for i, impl in ipairs(impls) do
    if impl.key ~= "node" then results[i].ok = check_lua(impl, chunks, ref) end
  end
  local last = ref.n
  return { n = ref.n, bytes = ref.bytes,
           data = { [1] = ref.data[1], [last] = ref.data[last] },
           event = { [1] = ref.event[1], [last] = ref.event[last] },
           id = { [1] = ref.id[1], [last] = ref.id[last] } }
end

local function run_corpus(name)
  local path = script_dir .. "/corpus/" .. name .. ".sse"
  local chunks, size = load_chunks(path)
  if not chunks then
    loud("corpus %s missing (run lua5.4 bench/gen_corpus.lua)", path)
    return
  end
  local results = {}
  for i, impl in ipairs(impls) do
    results[i] = { name = impl.name, key = impl.key, times = {} }
  end
  local ref = check_all(chunks, results)
  collectgarbage("collect")

  -- Timed runs, round-robin over the Lua implementations so that a noisy
  -- neighbour on the machine spreads over all of them.
  for r = 1, RUNS do
    for i, impl in ipairs(impls) do
      local res = results[i]
      if impl.key ~= "node" and res.times then
        local t = time_lua(impl, chunks, ref, r, res)
        if t then res.times[#res.times + 1] = t else res.times = nil end
      end
    end
  end
  for i, impl in ipairs(impls) do
    local res = results[i]
    if impl.key == "node" then
      results[i] = run_node(impl, path, ref)
    elseif res.times then
      table.sort(res.times)
      res.best = res.times[1]
    end
  end

  local all_ok = true
  for _, r in ipairs(results) do all_ok = all_ok and r.ok end
  print_table(name, size, #chunks, ref, results)
  print(string.format("agreement: %s (%s events, %s data bytes)",
    all_ok and ("all " .. #results .. " implementations agree") or "MISMATCH, see !! lines above",
    commas(ref.n), commas(ref.bytes)))
  io.stdout:flush()
end

for _, name in ipairs(CORPORA) do
  run_corpus(name)
  collectgarbage("collect")
end

if failed then
  print("\nbench: FAILED (see !! lines)")
  os.exit(1)
end
