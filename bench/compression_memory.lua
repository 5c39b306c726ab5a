-- Back-pressure through content decoding: a slow consumer of a compressed
-- stream that decodes to BYTES (default 4 GiB) of zeros, for identity
-- (the uncompressed figure), gzip, br and zstd. The bodies are compression
-- bombs from the stub server's /hostile/bomb route (about 4 MB of gzip,
-- 3 KB of br, 128 KB of zstd for 4 GiB). Each encoding runs in a process of
-- its own, so that each peak RSS (VmHWM) is its own. Run from the repo root
-- (make bench-compression sets the paths):
--   lua5.4 bench/compression_memory.lua [bytes [encodings]]
--   e.g. lua5.4 bench/compression_memory.lua 1073741824 gzip,zstd
local socket = require "socket"

local function vm(field)
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^" .. field .. ":%s+(%d+) kB")
    if kb then return tonumber(kb) / 1024 end
  end
end

local SLEEP_EVERY = 8 -- chunks of at most 64 KiB: 1 ms per 512 KiB at most

-- The child: read one stream, print one line "ok|error <fields>".
if arg[1] == "--child" then
  local fetch = require "fetchstream"
  local url = arg[2]
  local before = vm("VmHWM")
  local t0 = socket.gettime()
  local got, chunks, expected = 0, 0, nil
  local ok, err = pcall(function()
    local s = assert(fetch.open(url))
    expected = tonumber(s.headers["x-decoded-size"])
    for bytes in s:chunks() do
      got = got + #bytes
      chunks = chunks + 1
      if chunks % SLEEP_EVERY == 0 then socket.sleep(0.001) end
    end
    s:close()
  end)
  local secs = socket.gettime() - t0
  local status = ok and (got == expected and "ok" or ("short: expected " .. tostring(expected)))
    or tostring(err)
  io.write(("%.1f %.1f %.0f %.2f %s\n"):format(before, vm("VmHWM"), got, secs, status))
  os.exit(0)
end

local stub = require "spec.server"
local bytes = math.tointeger(tonumber(arg[1])) or 4 * 1024 * 1024 * 1024
local encodings = {}
for e in (arg[2] or "identity,gzip,br,zstd"):gmatch("[^,]+") do encodings[#encodings + 1] = e end

local srv = stub.start()
local self_path = arg[0]
print(("slow consumer (1 ms sleep every %d chunks of <= 64 KiB) of %.0f MiB of decoded zeros per stream")
  :format(SLEEP_EVERY, bytes / 2^20))
print(("%-9s %10s %9s %14s %14s %12s  %s"):format("encoding", "MiB read", "seconds",
  "RSS before", "peak RSS", "peak - id.", "outcome"))
local identity_peak
for _, enc in ipairs(encodings) do
  local url = srv:url(("/hostile/bomb?enc=%s&bytes=%d&secs=600"):format(enc, bytes))
  local p = assert(io.popen(("lua5.4 %q --child %q"):format(self_path, url)))
  local line = p:read("l") or ""
  p:close()
  local before, peak, got, secs, status = line:match("^(%S+) (%S+) (%S+) (%S+) (.*)$")
  if not before then
    print(("%-9s child failed: %s"):format(enc, line))
  else
    before, peak, got, secs = tonumber(before), tonumber(peak), tonumber(got), tonumber(secs)
    if enc == "identity" then identity_peak = peak end
    print(("%-9s %10.0f %9.1f %10.1f MiB %10.1f MiB %8s MiB  %s"):format(enc, got / 2^20, secs, before, peak,
      identity_peak and ("%+.1f"):format(peak - identity_peak) or "-", status))
  end
end
srv:stop()
