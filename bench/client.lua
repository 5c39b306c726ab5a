-- bench/client.lua: fetchstream as the client of the loopback benchmarks,
-- one run per process (Lua 5.4 or LuaJIT: the subset both share).
--
--   lua5.4|luajit bench/client.lua MODE FORM URL [args]
--
-- MODE e2e: read one response; per event: count it, add #data.
--   FORM events    for ev in fetch.events(url) do ... end
--   FORM callback  fetch.stream(url, { onmessage = fn }); fetch.run()
--   FORM onchunk   fetch.stream(url, { onchunk = fn }) feeding a parser's
--                  fast path, p:feed(bytes, fn): a stand-in for a values form
--   FORM values    for data in fetch.values(url) do ... end (when it exists)
-- MODE latency FORM URL REQUESTS: REQUESTS requests one after another (the
--   URL is a /tick route); per event the latency is now - the server's send
--   time (both gettimeofday); per request the time from the call to its
--   first event. FORM events or callback.
-- MODE streams FORM URLS_FILE FROM_US: one client, every URL of the file
--   (one per line) at once as a callback stream (FORM callback) or through
--   onchunk and the parser's fast path (FORM onchunk). Events the server
--   sent before FROM_US (gettimeofday µs) are the warm-up: counted, not
--   measured. From the first event sent at FROM_US or later: latency per
--   event, and the CPU time (os.clock) to the last event.
-- Prints "BENCH-REPORT { ... }" (a Lua table literal).

local mode, form, url = arg[1], arg[2], arg[3]
local fetch = require "fetchstream"
local sse = require "fetchstream.sse"
local gettime = require("socket").gettime

local byte, sub, tonumber = string.byte, string.sub, tonumber
local floor = math.floor

-- The server's send time: 16 digits of microseconds at data bytes 7..22
-- ({"t":1732860000123456,...).
local function sent_us(data) return tonumber(sub(data, 6, 21)) end
assert(byte('{"t":') == 123)

local function report(t)
  local out = {}
  for k, v in pairs(t) do
    if type(v) == "table" then
      local parts = {}
      for i = 1, #v do parts[i] = string.format("%d", v[i]) end
      out[#out + 1] = string.format("[%q]={%s}", k, table.concat(parts, ","))
    elseif type(v) == "number" then
      out[#out + 1] = string.format("[%q]=%.17g", k, v)
    else
      out[#out + 1] = string.format("[%q]=%q", k, tostring(v))
    end
  end
  io.write("BENCH-REPORT {", table.concat(out, ","), "}\n")
end

if mode == "e2e" then
  local n, len = 0, 0
  if form == "events" then
    for ev in fetch.events(url) do n = n + 1; len = len + #ev.data end
  elseif form == "callback" then
    local err
    fetch.stream(url, {
      onmessage = function(ev) n = n + 1; len = len + #ev.data end,
      onerror = function(e) err = e end,
    })
    fetch.run()
    if err then error(tostring(err)) end
  elseif form == "onchunk" then
    local p = sse.parser{}
    local function cb(data) n = n + 1; len = len + #data end
    local err
    fetch.stream(url, {
      onchunk = function(bytes) p:feed(bytes, cb) end,
      onerror = function(e) err = e end,
    })
    fetch.run()
    if err then error(tostring(err)) end
  elseif form == "values" then
    for data in fetch.values(url) do n = n + 1; len = len + #data end
  else
    error("unknown form " .. tostring(form))
  end
  report{ events = n, data_bytes = len }

elseif mode == "latency" then
  local requests = tonumber(arg[4]) or 1
  local lat, ttfe, nl = {}, {}, 0
  for r = 1, requests do
    local t0 = gettime()
    local first = true
    local function on_data(data)
      local now = gettime()
      if first then
        first = false
        ttfe[r] = floor((now - t0) * 1e6 + 0.5)
      end
      nl = nl + 1
      lat[nl] = floor(now * 1e6 - sent_us(data) + 0.5)
    end
    if form == "events" then
      for ev in fetch.events(url) do on_data(ev.data) end
    elseif form == "callback" then
      fetch.stream(url, { onmessage = function(ev) on_data(ev.data) end,
                          onerror = function(e) error(tostring(e)) end })
      fetch.run()
    else
      error("unknown form " .. tostring(form))
    end
  end
  report{ lat = lat, ttfe = ttfe }

elseif mode == "streams" then
  local urls = {}
  for line in io.lines(url) do urls[#urls + 1] = line end
  local from = tonumber(arg[4]) or 0
  local lat, nl, all = {}, 0, 0
  local cpu0, wall0, cpu1, wall1
  local failed = 0
  local function on_data(data)
    local now = gettime()
    local sent = sent_us(data)
    all = all + 1
    if sent < from then return end
    if not cpu0 then cpu0, wall0 = os.clock(), now end
    nl = nl + 1
    lat[nl] = floor(now * 1e6 - sent + 0.5)
  end
  local function onerror() failed = failed + 1 end
  for i = 1, #urls do
    if form == "callback" then
      fetch.stream(urls[i], { onmessage = function(ev) on_data(ev.data) end, onerror = onerror })
    elseif form == "onchunk" then
      local p = sse.parser{}
      fetch.stream(urls[i], { onchunk = function(bytes) p:feed(bytes, on_data) end, onerror = onerror })
    else
      error("unknown form " .. tostring(form))
    end
  end
  fetch.run()
  cpu1, wall1 = os.clock(), gettime()
  report{ lat = lat, events = all, cpu = cpu1 - (cpu0 or cpu1), wall = wall1 - (wall0 or wall1),
          failed = failed }
else
  error("usage: client.lua e2e|latency|streams FORM URL [args]")
end
