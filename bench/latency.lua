-- bench/latency.lua: how late events arrive, one stream at a time.
--
--   lua5.4 bench/latency.lua       (from the repo root; `make bench-latency`)
--
-- The loopback server's /tick route sends an event every millisecond and
-- puts its send time (gettimeofday, µs) in the data. Each client is a fresh
-- process that makes BENCH_LATENCY_REQUESTS requests one after another,
-- BENCH_LATENCY_EVENTS events each; per event it notes its own gettimeofday
-- minus the send time, per request the time from the call to the first
-- event. See bench/README.md.

package.path = "bench/?.lua;" .. package.path
local B = require "lib"

local REQUESTS = tonumber(os.getenv("BENCH_LATENCY_REQUESTS") or "") or 5
local EVENTS = tonumber(os.getenv("BENCH_LATENCY_EVENTS") or "") or 400

B.forget("latency.")
local srv = B.server(600)
local url = srv.url(string.format("/tick?n=%d&us=1000", EVENTS))

local clients = {}
local function add(key, name, cmd) clients[#clients + 1] = { key = key, name = name, cmd = cmd } end
local lua54 = B.env() .. B.LUA .. " bench/client.lua latency "
add("events", "fetchstream fetch.events (iterator), Lua 5.4", lua54 .. "events %URL% " .. REQUESTS)
add("callback", "fetchstream fetch.stream onmessage, Lua 5.4", lua54 .. "callback %URL% " .. REQUESTS)
if B.have(B.LUAJIT) and B.exists(B.BUILD_JIT .. "/fetchstream/core.so") then
  add("events_jit", "fetchstream fetch.events (iterator), LuaJIT",
    B.env("jit") .. B.LUAJIT .. " bench/client.lua latency events %URL% " .. REQUESTS)
end
if B.NODE ~= "0" and B.have(B.NODE) and B.exists("bench/node_modules/eventsource-parser/package.json") then
  add("node", "node fetch + eventsource-parser", B.q(B.NODE) .. " bench/node_client.mjs latency %URL% " .. REQUESTS)
end

print(string.format("Latency: %d requests × %d events 1 ms apart per client (a fresh process), over %s",
  REQUESTS, EVENTS, srv.base))
print("latency: client's gettimeofday at the event - the server's just before write(), µs")
print("first event: from the request call to its first event, µs; cold = the process's first request, " ..
  "warm = median of the others")

local rows = {}
for _, c in ipairs(clients) do
  local r = B.timed((c.cmd:gsub("%%URL%%", B.q(url))))
  local rep = B.report(r.out)
  if not r.ok or not rep or type(rep.lat) ~= "table" or #rep.lat == 0 then
    B.fail("%s failed: %s", c.name, (r.out or ""):sub(1, 300))
    rows[#rows + 1] = { c.name, "failed" }
  else
    local lat = rep.lat
    table.sort(lat)
    local warm = {}
    for i = 2, #rep.ttfe do warm[#warm + 1] = rep.ttfe[i] end
    table.sort(warm)
    local p50, p99 = B.pct(lat, 50), B.pct(lat, 99)
    rows[#rows + 1] = { c.name, B.commas(#lat), B.commas(p50), B.commas(B.pct(lat, 90)), B.commas(p99),
      B.commas(lat[#lat]), B.commas(rep.ttfe[1]), warm[1] and B.commas(B.pct(warm, 50)) or "-", B.f("%.2f", r.cpu) }
    local k = "latency." .. c.key
    B.record(k .. ".p50", p50)
    B.record(k .. ".p99", p99)
    B.record(k .. ".ttfe_cold", rep.ttfe[1])
    if warm[1] then B.record(k .. ".ttfe_warm", B.pct(warm, 50)) end
    if #lat ~= REQUESTS * EVENTS then
      B.fail("%s: %d events, expected %d", c.name, #lat, REQUESTS * EVENTS)
    end
  end
end
B.print_table({ { "client", 44, "l" }, { "events", 6 }, { "p50 µs", 7 }, { "p90 µs", 7 }, { "p99 µs", 7 },
  { "max µs", 7 }, { "1st cold µs", 11 }, { "1st warm µs", 11 }, { "CPU s", 5 } }, rows)

srv.stop()
if B.failed() then
  print("\nbench-latency: FAILED (see !! lines)")
  os.exit(1)
end
