-- bench/lib.lua: what the benchmark drivers share (Lua 5.4, run from the
-- repo root): running a command under GNU time, the loopback server,
-- percentiles, tables, and the results file that bench/summary.lua reads.
--
--   local B = require "lib"      -- with bench/?.lua on package.path

local socket = require "socket"

local B = {}

B.gettime = socket.gettime -- gettimeofday, in seconds
B.OUT = os.getenv("BENCH_OUT") or "build/bench" -- results, logs, scratch files
B.TIME = os.getenv("BENCH_TIME") or "/usr/bin/time"
B.LUA = os.getenv("LUA") or "lua5.4"
B.LUAJIT = os.getenv("LUAJIT") or "luajit"
B.NODE = os.getenv("BENCH_NODE") or "node"
B.PYTHON = os.getenv("BENCH_PYTHON") or "/usr/bin/python3" -- Debian's, with python3-httpx
B.BUILD = os.getenv("BENCH_BUILD") or "build" -- the Lua 5.4 modules
B.BUILD_JIT = os.getenv("BENCH_BUILD_LUAJIT") or "build-luajit" -- the LuaJIT modules
B.SERVER = os.getenv("BENCH_SERVER") or (B.BUILD .. "/bench-server")

os.execute("mkdir -p '" .. B.OUT .. "'")

function B.q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

function B.commas(n)
  local s = string.format("%d", math.floor(n + 0.5))
  local out = s:reverse():gsub("(%d%d%d)", "%1,"):reverse()
  return (out:gsub("^,", ""):gsub("^%-,", "-"))
end

function B.have(cmd)
  return os.execute("command -v " .. B.q(cmd) .. " >/dev/null 2>&1") == true
end

function B.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- Environment for a command: the repo's modules for one ABI, "jit" for
-- LuaJIT's build, anything else for Lua 5.4's.
function B.env(abi)
  return string.format("LUA_PATH='lua/?.lua;lua/?/init.lua;bench/?.lua;;' LUA_CPATH='%s/?.so;;' ",
    abi == "jit" and B.BUILD_JIT or B.BUILD)
end

-- Whether a file exists.
function B.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- Run a shell command under GNU time in a fresh process. Returns a table:
-- wall (seconds from the fork to the exit, taken here: GNU time's has 10 ms
-- steps), user, sys, cpu (seconds, GNU time's), rss (peak resident set, MiB:
-- the largest of the processes the command waited for), out (its stdout), ok, and
-- launch (gettimeofday just before the fork, for children that measure from
-- it), code (the exit status: 124 when `timeout` stopped it). `cmd` may
-- contain "%LAUNCH%", replaced by that time in microseconds.
function B.timed(cmd)
  local tf = B.OUT .. "/time.txt"
  local launch = B.gettime()
  local full = string.format("%s -f '%%U %%S %%M' -o %s sh -c %s", B.TIME, B.q(tf),
    B.q((cmd:gsub("%%LAUNCH%%", string.format("%.0f", launch * 1e6)))))
  local p = assert(io.popen(full, "r"))
  local out = p:read("a")
  local ok, _, code = p:close()
  local r = { out = out, ok = ok == true, code = code, launch = launch, wall = B.gettime() - launch }
  local t = B.read_file(tf) or ""
  -- GNU time prints "Command exited with non-zero status N" first on failure.
  local u, s, m = t:match("([%d.]+) ([%d.]+) (%d+)%s*$")
  if u then
    r.user, r.sys, r.rss = tonumber(u), tonumber(s), tonumber(m) / 1024
    r.cpu = r.user + r.sys
  end
  return r
end

-- Load a child's report: a Lua table literal ("return { ... }") or JSON.
function B.report(out)
  local text = out and out:match("BENCH%-REPORT (.-)\n") or nil
  if not text then return nil end
  if text:sub(1, 1) == "{" and text:find('^{"') then
    local ok, cjson = pcall(require, "cjson")
    if ok then
      local ok2, v = pcall(cjson.decode, text)
      if ok2 then return v end
    end
    return nil
  end
  local f = load("return " .. text, "report", "t", {})
  if not f then return nil end
  local ok, v = pcall(f)
  return ok and v or nil
end

-- The loopback server (bench/server.c). Returns { port, pid, url(path),
-- stop() }; it also exits by itself after `lifetime` seconds or when this
-- process dies.
function B.server(lifetime)
  -- exec: the server is this process's child, so that it sees this process die.
  local cmd = string.format("exec %s --dir bench/corpus --lifetime %d", B.q(B.SERVER), lifetime or 300)
  local p = assert(io.popen(cmd, "r"))
  local line = p:read("l") or ""
  local port, pid = line:match("^PORT (%d+) PID (%d+)")
  if not port then error("bench server did not start: " .. line) end
  local srv = { port = tonumber(port), pid = tonumber(pid), pipe = p }
  srv.base = "http://127.0.0.1:" .. port
  function srv.url(path) return srv.base .. path end
  function srv.stop()
    if srv.pipe then
      os.execute("kill " .. srv.pid .. " 2>/dev/null")
      srv.pipe:close()
      srv.pipe = nil
    end
  end
  return srv
end

-- Percentile of a sorted array (nearest rank).
function B.pct(sorted, p)
  local n = #sorted
  if n == 0 then return nil end
  local k = math.ceil(p / 100 * n)
  if k < 1 then k = 1 end
  return sorted[k]
end

-- The median of an array of numbers (the lower middle for an even count).
function B.median(t)
  if #t == 0 then return nil end
  local s = { table.unpack(t) }
  table.sort(s)
  return s[(#s + 1) // 2]
end

-- Numbers from text: one per line (or whitespace separated).
function B.numbers(text)
  local t, n = {}, 0
  for v in (text or ""):gmatch("%-?[%d.]+") do
    n = n + 1
    t[n] = tonumber(v)
  end
  return t
end

-- A table: columns = { { "name", width, "l"|"r" }, ... }; rows of strings.
function B.print_table(columns, rows)
  local function fmt(cells)
    local out = {}
    for i, c in ipairs(columns) do
      local v = tostring(cells[i] == nil and "-" or cells[i])
      local w = c[2]
      local pad = w - utf8.len(v)
      if pad < 0 then pad = 0 end
      out[i] = c[3] == "l" and v .. string.rep(" ", pad) or string.rep(" ", pad) .. v
    end
    return (table.concat(out, "  "):gsub("%s+$", ""))
  end
  local head = {}
  for i, c in ipairs(columns) do head[i] = c[1] end
  local h = fmt(head)
  print(h)
  print((string.rep("-", utf8.len(h))))
  for _, r in ipairs(rows) do print(fmt(r)) end
  io.stdout:flush()
end

-- Results for the summary: one line per figure, "key<TAB>value<TAB>note".
function B.record(key, value, note)
  local f = assert(io.open(B.OUT .. "/results.tsv", "a"))
  f:write(key, "\t", tostring(value), "\t", note or "", "\n")
  f:close()
end

-- Forget the figures of the sections about to run again (keys by prefix).
function B.forget(prefix)
  local text = B.read_file(B.OUT .. "/results.tsv")
  if not text then return end
  local keep = {}
  for line in text:gmatch("[^\n]+") do
    if line:sub(1, #prefix) ~= prefix then keep[#keep + 1] = line end
  end
  local f = assert(io.open(B.OUT .. "/results.tsv", "w"))
  if #keep > 0 then f:write(table.concat(keep, "\n"), "\n") end
  f:close()
end

local failed = false
function B.fail(fmt, ...)
  failed = true
  io.stdout:write("!! ", string.format(fmt, ...), "\n")
  io.stdout:flush()
end
function B.failed() return failed end

function B.f(fmt, v)
  if v == nil then return "-" end
  return string.format(fmt, v)
end

function B.ratio(a, b)
  if not a or not b or b == 0 then return nil end
  return a / b
end

return B
