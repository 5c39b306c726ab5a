-- bench/streams.lua: many concurrent streams at a constant total event rate.
--
--   lua5.4 bench/streams.lua       (from the repo root; `make bench-streams`)
--
-- For N in BENCH_STREAMS_N (10,100,500,2000), one client process opens N
-- streams at once to the loopback server's /tick route; together they
-- carry BENCH_STREAMS_RATE events per second (10,000) for BENCH_STREAMS_SECS
-- seconds (2), each stream an event every N/RATE seconds, the streams'
-- phases spread evenly so that the total rate stays flat. The events start
-- at a common time a little after the launch, so that connecting is not
-- measured, and the first quarter of the run is a warm-up, counted but not
-- measured. Then, per event: the latency (client's gettimeofday - the
-- server's send time, µs); per run: the client's CPU time from the first
-- measured event to the last, divided by the measured events. See
-- bench/README.md.

package.path = "bench/?.lua;" .. package.path
local B = require "lib"

local NS = {}
for n in (os.getenv("BENCH_STREAMS_N") or "10,100,500,2000"):gmatch("%d+") do NS[#NS + 1] = tonumber(n) end
local RATE = tonumber(os.getenv("BENCH_STREAMS_RATE") or "") or 10000
local SECS = tonumber(os.getenv("BENCH_STREAMS_SECS") or "") or 2

B.forget("streams.")
local srv = B.server(600)

-- Raise the soft limit on open files to the hard one for the clients.
local ULIMIT = "ulimit -Sn $(ulimit -Hn) 2>/dev/null; "
local fd_limit = io.popen("sh -c " .. B.q(ULIMIT .. "ulimit -Sn")):read("l")

local clients = {}
local function add(key, name, cmd) clients[#clients + 1] = { key = key, name = name, cmd = cmd } end
add("callback", "fetchstream fetch.stream onmessage, Lua 5.4",
  ULIMIT .. B.env() .. B.LUA .. " bench/client.lua streams callback %FILE%")
if B.NODE ~= "0" and B.have(B.NODE) and B.exists("bench/node_modules/eventsource-parser/package.json") then
  add("node", "node fetch + eventsource-parser", ULIMIT .. B.q(B.NODE) .. " bench/node_client.mjs streams %FILE%")
end

print(string.format("Many streams: N concurrent streams on one client, %s events/s in total for %s s, over %s",
  B.commas(RATE), SECS, srv.base))
print(string.format("open files allowed per client process: %s", fd_limit or "?"))
print("the first quarter of each run is a warm-up: counted, not measured")
print("CPU/event: the client's CPU time (user+sys) from the first measured event to the last ÷ those events, µs")
print("latency: client's gettimeofday at the event - the server's just before write(), µs")

local rows = {}
local per_event = {}
for _, n in ipairs(NS) do
  local interval = math.floor(n * 1e6 / RATE + 0.5) -- µs between two events of a stream
  local events = math.max(1, math.floor(SECS * 1e6 / interval + 0.5))
  for _, c in ipairs(clients) do
    -- A common start, late enough for every stream to be connected.
    local start = math.floor((B.gettime() + 0.4 + n * 0.0005) * 1e6)
    local file = B.OUT .. "/streams-urls.txt"
    local f = assert(io.open(file, "w"))
    for k = 0, n - 1 do
      f:write(srv.url(string.format("/tick?n=%d&us=%d&start=%d&phase=%d", events, interval, start,
        math.floor(k * interval / n))), "\n")
    end
    f:close()
    local from = start + math.floor(SECS * 1e6 / 4)
    local r = B.timed((c.cmd:gsub("%%FILE%%", B.q(file) .. " " .. from)))
    local rep = B.report(r.out)
    if not r.ok or not rep or type(rep.lat) ~= "table" or #rep.lat == 0 then
      B.fail("%s with %d streams failed: %s", c.name, n, (r.out or ""):sub(1, 300))
      rows[#rows + 1] = { c.name, tostring(n), "failed" }
    else
      local lat = rep.lat
      table.sort(lat)
      local cpu_ev = rep.cpu / #lat * 1e6
      per_event[c.key .. n] = cpu_ev
      local p50, p99 = B.pct(lat, 50), B.pct(lat, 99)
      rows[#rows + 1] = { c.name, B.commas(n), B.commas(#lat), B.f("%.1f", cpu_ev),
        B.f("%.0f", rep.cpu / rep.wall * 100), B.commas(p50), B.commas(p99), B.commas(lat[#lat]), B.f("%.1f", r.rss),
        B.f("%.2f", B.ratio(cpu_ev, per_event[c.key .. NS[1]])) }
      local k = string.format("streams.%d.%s", n, c.key)
      B.record(k .. ".cpu_per_event_us", cpu_ev)
      B.record(k .. ".p50", p50)
      B.record(k .. ".p99", p99)
      B.record(k .. ".rss", r.rss)
      if rep.events ~= n * events or (rep.failed or 0) > 0 then
        B.fail("%s with %d streams: %d events of %d, %d streams failed", c.name, n, rep.events, n * events,
          rep.failed or 0)
      end
    end
  end
end
B.print_table({ { "client", 44, "l" }, { "N", 5 }, { "measured", 8 }, { "CPU/event µs", 12 }, { "CPU %", 5 },
  { "p50 µs", 7 }, { "p99 µs", 7 }, { "max µs", 7 }, { "peak MiB", 8 }, { string.format("÷ N=%d", NS[1]), 7 } }, rows)

srv.stop()
if B.failed() then
  print("\nbench-streams: FAILED (see !! lines)")
  os.exit(1)
end
