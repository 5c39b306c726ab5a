-- bench/parser_one.lua: one cell of the parser benchmark, in a fresh process.
--
--   lua5.4|luajit bench/parser_one.lua IMPL CORPUS MODE [WARM [CHUNK [LAUNCH_US]]]
--
-- IMPL: iter (fetchstream, `for ev in p:feed(chunk)`), values (fetchstream,
-- `for data, event, id in p:values(chunk)`), fast (fetchstream,
-- `p:feed(chunk, fn)`), plain (bench/plain_parser.lua). MODE: memory (the
-- corpus is read and cut into CHUNK-byte pieces before timing starts) or
-- stream (the timed loop reads the file CHUNK bytes at a time and feeds each
-- piece as it comes, as a script reading a pipe or a socket does).
--
-- The first pass is the figure: a fresh process, a fresh parser, one pass.
-- In memory mode WARM more passes follow (their best is the "warm" figure).
-- The work per event: count it, add #data, keep its fields (the first and
-- last events go into the report, for the driver's agreement check).
-- Prints one line,
-- "BENCH-REPORT { ... }" (a Lua table literal). Written in the subset of Lua
-- that LuaJIT shares; the module comes from LUA_CPATH (build/ or
-- build-luajit/).

local impl, corpus, mode = arg[1], arg[2], arg[3]
local WARM = tonumber(arg[4]) or 0
local CHUNK = tonumber(arg[5]) or 65536
local LAUNCH = tonumber(arg[6]) -- gettimeofday (µs) just before the driver forked

local gettime = require("socket").gettime
local t_start = gettime()

local new
if impl == "plain" then
  local Plain = require "plain_parser"
  new = Plain.new
else
  local sse = require "fetchstream.sse"
  new = function() return sse.parser{} end
end

local function hwm()
  local f = io.open("/proc/self/status", "r")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  local kb = s:match("VmHWM:%s+(%d+) kB")
  return kb and tonumber(kb) / 1024 or nil
end

-- One timed pass over `chunks` (memory) or the file (stream). The first
-- and last events are kept for the driver's agreement check: the only work
-- per event besides counting it and adding #data is keeping its fields.
local first, last_data, last_event, last_id
local function pass(chunks)
  local p = new()
  local n, len = 0, 0
  local ld, le, li
  local t0
  if impl == "iter" then
    local function each(ev)
      n = n + 1; len = len + #ev.data
      ld, le, li = ev.data, ev.event, ev.id
      if n == 1 then first = { data = ld, event = le, id = li } end
    end
    if chunks then
      t0 = gettime()
      for i = 1, #chunks do
        for ev in p:feed(chunks[i]) do each(ev) end
      end
    else
      t0 = gettime()
      local f = assert(io.open(corpus, "rb"))
      while true do
        local chunk = f:read(CHUNK)
        if not chunk then break end
        for ev in p:feed(chunk) do each(ev) end
      end
      f:close()
    end
  elseif impl == "values" then
    local function each(data, event, id)
      n = n + 1; len = len + #data
      ld, le, li = data, event, id
      if n == 1 then first = { data = data, event = event, id = id } end
    end
    if chunks then
      t0 = gettime()
      for i = 1, #chunks do
        for data, event, id in p:values(chunks[i]) do each(data, event, id) end
      end
    else
      t0 = gettime()
      local f = assert(io.open(corpus, "rb"))
      while true do
        local chunk = f:read(CHUNK)
        if not chunk then break end
        for data, event, id in p:values(chunk) do each(data, event, id) end
      end
      f:close()
    end
  else
    local function cb(data, event, id)
      n = n + 1; len = len + #data
      ld, le, li = data, event, id
      if n == 1 then first = { data = data, event = event, id = id } end
    end
    if chunks then
      t0 = gettime()
      for i = 1, #chunks do p:feed(chunks[i], cb) end
    else
      t0 = gettime()
      local f = assert(io.open(corpus, "rb"))
      while true do
        local chunk = f:read(CHUNK)
        if not chunk then break end
        p:feed(chunk, cb)
      end
      f:close()
    end
  end
  local t = gettime() - t0
  last_data, last_event, last_id = ld, le, li
  return t, n, len
end

local chunks
if mode == "memory" then
  local f = assert(io.open(corpus, "rb"))
  local bytes = f:read("*a")
  f:close()
  chunks = {}
  for i = 1, #bytes, CHUNK do chunks[#chunks + 1] = bytes:sub(i, i + CHUNK - 1) end
  bytes = nil -- luacheck: ignore 311 (dropped before timing)
  collectgarbage("collect")
elseif mode ~= "stream" then
  error("mode must be memory or stream, got " .. tostring(mode))
end

local cold, n, len = pass(chunks)
local t_done = gettime()
local rss = hwm()
local warm
for _ = 1, (chunks and WARM or 0) do
  collectgarbage("collect")
  local t = pass(chunks)
  if not warm or t < warm then warm = t end
end

local function lit(v)
  if type(v) == "table" then
    local out = {}
    for k, x in pairs(v) do out[#out + 1] = string.format("[%q]=%s", k, lit(x)) end
    table.sort(out)
    return "{" .. table.concat(out, ",") .. "}"
  elseif type(v) == "string" then
    return (string.format("%q", v):gsub("\\\n", "\\n"))
  elseif type(v) == "number" then
    return string.format("%.17g", v)
  end
  return tostring(v)
end

io.write("BENCH-REPORT ", lit{
  cold = cold, warm = warm, events = n, data_bytes = len, rss = rss,
  -- from exec (the driver's fork) to the end of the first pass: startup,
  -- loading the module, reading the corpus, the pass
  from_launch = LAUNCH and (t_done - LAUNCH / 1e6) or nil,
  setup = t_done - t_start - cold,
  first = first, last = last_data and { data = last_data, event = last_event, id = last_id },
  interp = rawget(_G, "jit") and _G.jit.version or _VERSION,
}, "\n")
-- Exit without closing the state: freeing a heap of hundreds of MB would
-- only slow the benchmark down (the figures are taken already).
io.stdout:flush()
os.exit(0)
