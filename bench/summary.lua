-- bench/summary.lua: the targets, measured against the figures that the
-- sections of this run recorded in build/bench/results.tsv.
--
--   lua5.4 bench/summary.lua       (`make bench` ends with it)
--
-- Targets are reported, not asserted: the exit status is 0 whether they are
-- met or missed. A figure that no section recorded shows as "not measured".

package.path = "bench/?.lua;" .. package.path
local B = require "lib"

local v, timeout = {}, {}
for line in (B.read_file(B.OUT .. "/results.tsv") or ""):gmatch("[^\n]+") do
  local k, x, note = line:match("^([^\t]+)\t([^\t]*)\t?(.*)")
  if k then
    v[k] = tonumber(x)
    timeout[k] = note == "timeout" -- the process was stopped: x is a lower bound
  end
end

local rows = {}
local met, missed, unmeasured = 0, 0, 0

-- One target: the values after `ok` are the measured numbers, nil when not
-- measured (all must meet the goal), shown with `fmt` and joined by " / ";
-- `ok(x)` says whether x meets it. A value may be { x, "≥" }: a bound.
local function target(name, goal, fmt, ok, ...)
  local values = table.pack(...)
  local shown, all, any_missing = {}, true, false
  for i = 1, values.n do
    local x, bound = values[i], ""
    if type(x) == "table" then x, bound = x[1], x[2] .. " " end
    if x == nil then
      any_missing = true
      shown[i] = "?"
    else
      shown[i] = bound .. string.format(fmt, x)
      if not ok(x) then all = false end
    end
  end
  local verdict
  if values.n == 0 or any_missing then
    verdict = "not measured"
    unmeasured = unmeasured + 1
  elseif all then
    verdict = "met"
    met = met + 1
  else
    verdict = "MISSED"
    missed = missed + 1
  end
  rows[#rows + 1] = { name, table.concat(shown, " / "), goal, verdict }
end

-- v[a] / v[b]; a stopped process makes the ratio a bound.
local function ratio(a, b)
  local x = B.ratio(v[a], v[b])
  if x == nil or (timeout[a] and timeout[b]) then return nil end
  if timeout[a] then return { x, "≥" } end
  if timeout[b] then return { x, "≤" } end
  return x
end
local function at_least(x) return function(r) return r >= x end end
local function at_most(x) return function(r) return r <= x end end

-- A: the parser on LuaJIT
for _, c in ipairs{ "chat", "chat116" } do
  local k = "parser." .. c
  target(string.format("parser, LuaJIT: fast path vs plain LuaJIT, %s (memory / stream)", c), "≥ 5×", "%.2f×",
    at_least(5), ratio(k .. ".memory.plainjit.cold", k .. ".memory.fastjit.cold"),
    ratio(k .. ".stream.plainjit.cold", k .. ".stream.fastjit.cold"))
end
-- D: the parser alone, fresh process, against eventsource-parser
for _, c in ipairs{ "chat", "chat116", "tiny" } do
  local k = "parser." .. c
  target(string.format("parser, Lua 5.4: fast path vs eventsource-parser, %s (memory / stream)", c), "≥ 1.3×",
    "%.2f×", at_least(1.3), ratio(k .. ".memory.node.cold", k .. ".memory.fast54.cold"),
    ratio(k .. ".stream.node.cold", k .. ".stream.fast54.cold"))
end
-- D: end to end, fetch.events against node fetch + eventsource-parser (wall)
for _, t in ipairs{ { "chat", 2 }, { "tiny", 1 }, { "big", 3 } } do
  local c, goal = t[1], t[2]
  target(string.format("end to end, wall: fetch.events vs node fetch + eventsource-parser, %s", c),
    string.format("≥ %g×", goal), "%.2f×", at_least(goal),
    ratio("e2e." .. c .. ".node.wall", "e2e." .. c .. ".events.wall"))
end
-- D: many streams
target("2,000 streams: latency p50 (µs)", "≤ 1,000", "%.0f", at_most(1000), v["streams.2000.callback.p50"])
target("2,000 streams: latency p99 (µs)", "≤ 10,000", "%.0f", at_most(10000), v["streams.2000.callback.p99"])
target("CPU per event, 2,000 streams ÷ 10 streams", "≤ 1.5×", "%.2f×", at_most(1.5),
  ratio("streams.2000.callback.cpu_per_event_us", "streams.10.callback.cpu_per_event_us"))
target("CPU per event at 2,000 streams ÷ node's", "≤ 0.5×", "%.2f×", at_most(0.5),
  ratio("streams.2000.callback.cpu_per_event_us", "streams.2000.node.cpu_per_event_us"))
-- D: latency, one stream, events 1 ms apart
for _, f in ipairs{ { "events", "iterator" }, { "callback", "callback" } } do
  local k = "latency." .. f[1]
  target(string.format("latency p50 (µs), one stream, %s", f[2]), "≤ 55", "%.0f", at_most(55), v[k .. ".p50"])
  target(string.format("latency p99 (µs), one stream, %s", f[2]), "≤ 150", "%.0f", at_most(150), v[k .. ".p99"])
end
-- D: memory
target("peak RSS (MiB), fetch.events end to end on big", "≤ 16", "%.1f", at_most(16), v["e2e.big.events.rss"])
target("peak RSS (MiB), 1 GiB to a slow consumer", "≤ 16", "%.1f", at_most(16), v["memory.slow.rss"])

print("\n== Targets (reported, not asserted)")
B.print_table({ { "target", 76, "l" }, { "measured", 15 }, { "goal", 8 }, { "", 12, "l" } }, rows)
print(string.format("%d met, %d missed, %d not measured", met, missed, unmeasured))
