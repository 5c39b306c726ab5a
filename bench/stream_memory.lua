-- Back-pressure: a fast server, a slow consumer, bounded memory.
-- Streams BYTES (default 1 GiB) of SSE from the stub server's /big route
-- while the consumer sleeps 1 ms every SLEEP_EVERY events, and reports the
-- process's peak RSS (VmHWM). Run from the repo root:
--   lua5.4 bench/stream_memory.lua [bytes]
local fetch = require "fetchstream"
local socket = require "socket"
local stub = require "spec.server"

local function vm(field)
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^" .. field .. ":%s+(%d+) kB")
    if kb then return tonumber(kb) / 1024 end
  end
end

local bytes = tonumber(arg[1]) or 1024 * 1024 * 1024
local SLEEP_EVERY = tonumber(arg[2]) or 32
local srv = stub.start()
local before = vm("VmHWM")
local t0 = socket.gettime()
local events, data = 0, 0
for ev in fetch.events(srv:url("/big?bytes=" .. bytes .. "&size=1000")) do
  events = events + 1
  data = data + #ev.data
  if events % SLEEP_EVERY == 0 then socket.sleep(0.001) end
end
local secs = socket.gettime() - t0
srv:stop()
print(("slow consumer: %d events, %.0f MiB of data in %.1f s (%.0f MiB/s), sleeping 1 ms every %d events")
  :format(events, data / 2^20, secs, data / 2^20 / secs, SLEEP_EVERY))
print(("peak RSS: %.1f MiB (%.1f MiB before the stream)"):format(vm("VmHWM"), before))
