-- bench/e2e.lua: end to end over loopback, fetchstream beside its peers.
--
--   lua5.4 bench/e2e.lua           (from the repo root; `make bench-e2e`)
--
-- The loopback server (bench/server.c) serves each corpus of bench/corpus/
-- at /file/NAME as fast as the client reads. Every client is a fresh
-- process that reads the whole response once and, per event, counts it and
-- adds the length of its data; GNU time measures the process: wall, CPU
-- (user + system) and peak RSS. See bench/README.md.
--
-- Each client runs BENCH_E2E_REPEAT times (3; httpx once: it takes 30 s),
-- round-robin, and the table shows the median wall and CPU and the largest
-- peak RSS of its processes.
--
-- Environment: BENCH_E2E_CORPORA (chat,tiny,big), BENCH_E2E_REPEAT (3),
-- BENCH_NODE (node; 0 skips), BENCH_PYTHON (/usr/bin/python3; 0 skips),
-- LUA, LUAJIT.

package.path = "bench/?.lua;" .. package.path
local B = require "lib"

local REPEAT = tonumber(os.getenv("BENCH_E2E_REPEAT") or "") or 3

local CORPORA = {}
for c in (os.getenv("BENCH_E2E_CORPORA") or "chat,tiny,big"):gmatch("[^,%s]+") do CORPORA[#CORPORA + 1] = c end

B.forget("e2e.")
local srv = B.server(600)

-- Does this build have fetch.values (a form the engine may grow)?
local has_values = os.execute(B.env() .. B.LUA ..
  " -e 'os.exit(type(require(\"fetchstream\").values) == \"function\" and 0 or 1)' 2>/dev/null") == true

local clients, skipped = {}, {}
local function add(key, name, cmd, lua, once)
  clients[#clients + 1] = { key = key, name = name, cmd = cmd, lua = lua, once = once }
end
add("curl", "curl > /dev/null (no parsing)", "curl -sS --fail -o /dev/null %URL%")
add("curl_plain", "curl | lua5.4 plain Lua parser",
  "curl -sS --fail %URL% | " .. B.env() .. B.LUA .. " bench/parser_one.lua plain /dev/stdin stream", true)
if B.NODE ~= "0" and B.have(B.NODE) and B.exists("bench/node_modules/eventsource-parser/package.json") then
  add("node", "node fetch + eventsource-parser", B.q(B.NODE) .. " bench/node_client.mjs e2e %URL%")
else
  skipped[#skipped + 1] = "node fetch + eventsource-parser (no node or bench/node_modules)"
end
if B.PYTHON ~= "0" and os.execute(B.q(B.PYTHON) .. " -c 'import httpx' 2>/dev/null") == true then
  add("httpx", "python3 httpx iter_lines + line parse (1 run)", B.q(B.PYTHON) .. " bench/httpx_client.py %URL%",
    false, true)
else
  skipped[#skipped + 1] = "python3 httpx (no python3-httpx: make bench-setup installs it)"
end
local lua54 = B.env() .. B.LUA .. " bench/client.lua e2e "
add("events", "fetchstream fetch.events, Lua 5.4", lua54 .. "events %URL%", true)
add("callback", "fetchstream fetch.stream onmessage, Lua 5.4", lua54 .. "callback %URL%", true)
add("onchunk", "fetchstream onchunk + p:feed(s, fn), Lua 5.4 *", lua54 .. "onchunk %URL%", true)
if has_values then
  add("values", "fetchstream fetch.values, Lua 5.4", lua54 .. "values %URL%", true)
end
if B.have(B.LUAJIT) and B.exists(B.BUILD_JIT .. "/fetchstream/core.so") then
  local jit = B.env("jit") .. B.LUAJIT .. " bench/client.lua e2e "
  add("events_jit", "fetchstream fetch.events, LuaJIT", jit .. "events %URL%", true)
  add("onchunk_jit", "fetchstream onchunk + p:feed(s, fn), LuaJIT *", jit .. "onchunk %URL%", true)
else
  skipped[#skipped + 1] = "fetchstream on LuaJIT (make luajit)"
end

print(string.format("End to end over loopback: %s, each client a fresh process reading the whole response once",
  srv.base))
print(string.format("wall (fork to exit), CPU (user+sys of all processes of the row, GNU time): median of %d runs;",
  REPEAT))
print("peak RSS: the largest process of the row (GNU time), the largest of its runs")
print("÷events: this row's wall (CPU) ÷ fetch.events' on Lua 5.4 (above 1: fetch.events is faster)")
print("* a stand-in for a values/fast form: a callback stream's raw chunks fed to the parser's fast path")
if not has_values then print("fetch.values: not in this build (row skipped)") end
for _, s in ipairs(skipped) do print("skipped: " .. s) end

for _, corpus in ipairs(CORPORA) do
  local path = "bench/corpus/" .. corpus .. ".sse"
  local size = B.exists(path) and io.open(path, "rb"):seek("end")
  if not size then
    B.fail("corpus %s missing (make bench-setup)", path)
  else
    local url = srv.url("/file/" .. corpus)
    local runs = {}
    for i = 1, REPEAT do
      for _, c in ipairs(clients) do
        if i == 1 or not c.once then
          local r = B.timed((c.cmd:gsub("%%URL%%", B.q(url))))
          r.report = B.report(r.out)
          if not r.ok or (c.key ~= "curl" and not r.report) or not r.cpu then
            B.fail("%s on %s failed: %s", c.name, corpus, (r.out or ""):sub(1, 300))
          else
            runs[c.key] = runs[c.key] or {}
            table.insert(runs[c.key], r)
          end
        end
      end
    end
    -- Per client: the median wall and CPU, the largest peak RSS, the first report.
    local res = {}
    for key, list in pairs(runs) do
      local walls, cpus, rss = {}, {}, 0
      for i, r in ipairs(list) do
        walls[i], cpus[i], rss = r.wall, r.cpu, math.max(rss, r.rss)
      end
      res[key] = { wall = B.median(walls), cpu = B.median(cpus), rss = rss, report = list[1].report }
    end
    -- Agreement: every parser saw the plain parser's events; Lua rows its bytes.
    local ref = res.curl_plain and res.curl_plain.report
    local agree = ref ~= nil
    for _, c in ipairs(clients) do
      local r = res[c.key]
      if ref and r and r.report and c.key ~= "curl_plain" then
        if r.report.events ~= ref.events or (c.lua and r.report.data_bytes ~= ref.data_bytes) then
          agree = false
          B.fail("MISMATCH %s on %s: %s events, %s data bytes; plain Lua %s, %s", c.name, corpus,
            tostring(r.report.events), tostring(r.report.data_bytes), tostring(ref.events), tostring(ref.data_bytes))
        end
      end
    end
    local nev = ref and ref.events or 0
    print(string.format("\n== %s: %.1f MB, %s events%s", corpus, size / 1e6, B.commas(nev),
      ref and (agree and "; all parsers agree" or "; MISMATCH") or ""))
    local ev = res.events
    local rows = {}
    for _, c in ipairs(clients) do
      local r = res[c.key]
      if r and r.wall then
        rows[#rows + 1] = { c.name, B.f("%.2f", r.wall), B.f("%.2f", r.cpu), B.f("%.1f", r.rss),
          c.key == "curl" and "" or B.commas(nev / r.wall), B.f("%.0f", size / r.wall / 1e6),
          B.f("%.2f", B.ratio(r.wall, ev and ev.wall)), B.f("%.2f", B.ratio(r.cpu, ev and ev.cpu)) }
        local k = string.format("e2e.%s.%s", corpus, c.key)
        B.record(k .. ".wall", r.wall)
        B.record(k .. ".cpu", r.cpu)
        B.record(k .. ".rss", r.rss)
      else
        rows[#rows + 1] = { c.name, "failed" }
      end
    end
    B.print_table({ { "client", 46, "l" }, { "wall s", 6 }, { "CPU s", 6 }, { "peak MiB", 8 }, { "events/s", 10 },
      { "MB/s", 5 }, { "÷events", 7 }, { "CPU ÷ev", 7 } }, rows)
  end
end

srv.stop()
if B.failed() then
  print("\nbench-e2e: FAILED (see !! lines)")
  os.exit(1)
end
