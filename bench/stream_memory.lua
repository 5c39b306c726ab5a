-- bench/stream_memory.lua: back-pressure, a fast server, a slow consumer,
-- bounded memory.
--
--   lua5.4 bench/stream_memory.lua [bytes [sleep_every [size]]]
--
-- (from the repo root; `make bench-memory`). A fresh process reads BYTES
-- (default 1 GiB) of SSE, events of SIZE bytes of data (default 1000), from
-- the loopback server's /gen route, which writes as fast as the socket
-- takes it, through `for ev in fetch.events(url)`, sleeping 1 ms every
-- SLEEP_EVERY events (default 128: at most ~128 MB/s, far below what the
-- server sends). It reports the process's peak RSS (VmHWM) before and after
-- the stream; bench/summary.lua holds it to the 16 MiB target.

package.path = "bench/?.lua;" .. package.path

local function vm(field)
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^" .. field .. ":%s+(%d+) kB")
    if kb then return tonumber(kb) / 1024 end
  end
end

-- The child: one stream, one report line.
if arg[1] == "--child" then
  local fetch = require "fetchstream"
  local socket = require "socket"
  local url, sleep_every = arg[2], tonumber(arg[3])
  local before = vm("VmHWM")
  local t0 = socket.gettime()
  local events, data = 0, 0
  for ev in fetch.events(url) do
    events = events + 1
    data = data + #ev.data
    if events % sleep_every == 0 then socket.sleep(0.001) end
  end
  io.write(string.format("BENCH-REPORT {events=%d,data=%d,secs=%.3f,before=%.2f,peak=%.2f}\n",
    events, data, socket.gettime() - t0, before, vm("VmHWM")))
  os.exit(0)
end

local B = require "lib"
local bytes = math.tointeger(tonumber(arg[1])) or 1024 * 1024 * 1024
local sleep_every = math.tointeger(tonumber(arg[2])) or 128
local size = math.tointeger(tonumber(arg[3])) or 1000

B.forget("memory.")
local srv = B.server(600)
local url = srv.url(string.format("/gen?bytes=%d&size=%d", bytes, size))
local r = B.timed(string.format("%s%s bench/stream_memory.lua --child %s %d", B.env(), B.LUA,
  B.q(url), sleep_every))
srv.stop()
local rep = B.report(r.out)
print(string.format("Back-pressure: %.0f MiB of %d-byte events from %s (as fast as the socket takes them)",
  bytes / 2 ^ 20, size, srv.base))
print(string.format("to fetch.events on Lua 5.4 in a fresh process, sleeping 1 ms every %d events", sleep_every))
if not r.ok or not rep then
  B.fail("the slow consumer failed: %s", (r.out or ""):sub(1, 300))
else
  local expected = (bytes - bytes % (size + 8)) // (size + 8)
  print(string.format("slow consumer: %s events, %.0f MiB of data in %.1f s (%.0f MiB/s), CPU %.1f s",
    B.commas(rep.events), rep.data / 2 ^ 20, rep.secs, rep.data / 2 ^ 20 / rep.secs, r.cpu or 0))
  print(string.format("peak RSS: %.1f MiB (%.1f MiB before the stream)", rep.peak, rep.before))
  B.record("memory.slow.rss", rep.peak)
  B.record("memory.slow.before", rep.before)
  if rep.events ~= expected then
    B.fail("the slow consumer got %d events, expected %d", rep.events, expected)
  end
end
if B.failed() then
  print("\nbench-memory: FAILED (see !! lines)")
  os.exit(1)
end
