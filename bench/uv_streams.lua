-- fetchstream.uv against fetch.run(): 200 concurrent SSE streams, the same
-- work, driven by a luv loop (`require("fetchstream.uv").attach`) or by the
-- client's own loop (`c:run()`). Reports the client process's CPU per event
-- and the delivery latency of the events (the server writes its send time
-- into each event; the callback subtracts it from its own clock), p50 and
-- p99. Run from the repo root after `make`:
--
--   lua5.4 bench/uv_streams.lua            -- or luajit, after `make luajit`
--
-- Environment: BENCH_STREAMS (200), BENCH_EVENTS per stream (100),
-- BENCH_INTERVAL ms between a stream's events (20), BENCH_RUNS per mode (3;
-- the run with the least CPU per event is shown). Each run is a fresh
-- client process; the server is a luv process of its own, so neither
-- measures the other.

local here = arg[0]:match("^(.*/)") or "./"
local root = here .. "../"
local build = _VERSION == "Lua 5.1" and "build-luajit" or "build"
package.path = ("%slua/?.lua;%slua/?/init.lua;"):format(root, root) .. package.path
package.cpath = ("%s%s/?.so;"):format(root, build) .. package.cpath

local uv = require "luv"

local STREAMS = tonumber(os.getenv("BENCH_STREAMS")) or 200
local EVENTS = tonumber(os.getenv("BENCH_EVENTS")) or 100
local INTERVAL = tonumber(os.getenv("BENCH_INTERVAL")) or 20
local RUNS = tonumber(os.getenv("BENCH_RUNS")) or 3
local LUA = rawget(_G, "jit") and "luajit" or "lua5.4"

-- The server: every request gets a close-delimited text/event-stream of
-- `n` events `data: <send time, s>`, `interval` ms apart, the first after a
-- random part of an interval (the streams do not tick in step).
local function serve()
  local server = uv.new_tcp()
  assert(server:bind("127.0.0.1", 0))
  assert(server:listen(1024, function(err)
    assert(not err, err)
    local conn = uv.new_tcp()
    server:accept(conn)
    local buf = ""
    conn:read_start(function(rerr, data)
      if rerr or not data then
        conn:close()
        return
      end
      buf = buf .. data
      if not buf:find("\r\n\r\n", 1, true) then return end
      conn:read_stop()
      local n = tonumber(buf:match("[?&]n=(%d+)")) or EVENTS
      local interval = tonumber(buf:match("[?&]interval=(%d+)")) or INTERVAL
      conn:write("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        .. "Connection: close\r\n\r\n")
      local timer, sent = uv.new_timer(), 0
      timer:start(math.random(0, interval), interval, function()
        sent = sent + 1
        local s, us = uv.gettimeofday()
        conn:write(("data: %d.%06d\n\n"):format(s, us))
        if sent >= n then
          timer:close()
          conn:shutdown(function() conn:close() end)
        end
      end)
    end)
  end))
  io.write("PORT ", server:getsockname().port, " PID ", uv.os_getpid(), "\n")
  io.flush()
  -- gone with its parent
  local parent, watch = uv.os_getppid(), uv.new_timer()
  watch:start(500, 500, function() if uv.os_getppid() ~= parent then os.exit(0) end end)
  watch:unref()
  uv.run()
end

-- One client run in mode "uv" (callback streams on an attached client,
-- uv.run()), "co" (coroutines on an attached client, one `for ev in
-- c:events(url)` loop each) or "run" (callback streams, c:run()). Prints
-- `events cpu p50 p99`.
local function client(mode, port)
  local fetch = require "fetchstream"
  local socket = require "socket"
  local c = fetch.client()
  local url = ("http://127.0.0.1:%s/events?n=%d&interval=%d"):format(port, EVENTS, INTERVAL)
  local lat, n, ended, failures = {}, 0, 0, 0
  local function got(data)
    n = n + 1
    lat[n] = socket.gettime() - tonumber(data)
  end
  local opts = {
    onmessage = function(ev) got(ev.data) end,
    onclose = function() ended = ended + 1 end,
    onerror = function(err)
      failures = failures + 1
      if failures == 1 then io.stderr:write(tostring(err), "\n") end
    end,
  }
  collectgarbage("collect")
  local cpu0 = os.clock()
  if mode == "run" then
    for _ = 1, STREAMS do c:stream(url, opts) end
    c:run()
  else
    local fuv = require "fetchstream.uv"
    local h = fuv.attach(c, uv, { onerror = opts.onerror })
    if mode == "uv" then
      for _ = 1, STREAMS do c:stream(url, opts) end
    else
      for _ = 1, STREAMS do
        local co = coroutine.create(function()
          for data in c:values(url) do got(data) end
          ended = ended + 1
        end)
        coroutine.resume(co) -- its loop suspends at once: the loop resumes it
      end
    end
    uv.run()
    h:detach()
  end
  local cpu = os.clock() - cpu0
  table.sort(lat)
  local function pct(p) return lat[math.max(1, math.ceil(#lat * p))] or 0 end
  if failures > 0 or ended ~= STREAMS or n ~= STREAMS * EVENTS then
    io.stderr:write(("%s: %d of %d streams ended, %d events of %d, %d failures\n")
      :format(mode, ended, STREAMS, n, STREAMS * EVENTS, failures))
    os.exit(1)
  end
  io.write(("%d %.6f %.6f %.6f\n"):format(n, cpu, pct(0.50), pct(0.99)))
  c:close()
end

local function main()
  local server = assert(io.popen(("exec %s %sbench/uv_streams.lua --serve"):format(LUA, root), "r"))
  local port, pid = (server:read("*l") or ""):match("^PORT (%d+) PID (%d+)")
  assert(port, "the bench server did not start")
  local function stop() os.execute("kill " .. pid); server:close() end
  local results = {}
  for run = 1, RUNS do
    for _, mode in ipairs({ "run", "uv", "co" }) do
      local p = assert(io.popen(("%s %sbench/uv_streams.lua --client %s %s"):format(LUA, root, mode, port)))
      local line = p:read("*a")
      local ok = p:close()
      local events, cpu, p50, p99 = line:match("^(%d+) (%S+) (%S+) (%S+)")
      if not (ok and events) then
        stop()
        error(("%s run %d failed"):format(mode, run))
      end
      local r = { cpu_per_event = tonumber(cpu) / tonumber(events), p50 = tonumber(p50), p99 = tonumber(p99) }
      local best = results[mode]
      if not best or r.cpu_per_event < best.cpu_per_event then results[mode] = r end
    end
  end
  stop()
  local base = results.run
  print(("%d streams x %d events, %d ms apart (%s, best of %d runs by CPU):"):format(
    STREAMS, EVENTS, INTERVAL, LUA, RUNS))
  print("| driver | CPU per event | p50 latency | p99 latency | CPU vs fetch.run() |")
  print("|---|---|---|---|---|")
  local names = { run = "fetch.run() (c:run())", uv = "fetchstream.uv on luv, callbacks",
                  co = "fetchstream.uv on luv, coroutines" }
  for _, mode in ipairs({ "run", "uv", "co" }) do
    local r = results[mode]
    print(("| %s | %.1f µs | %.2f ms | %.2f ms | %.2f× |"):format(names[mode], r.cpu_per_event * 1e6,
      r.p50 * 1e3, r.p99 * 1e3, r.cpu_per_event / base.cpu_per_event))
  end
end

if arg[1] == "--serve" then
  serve()
elseif arg[1] == "--client" then
  client(arg[2], arg[3])
else
  main()
end
