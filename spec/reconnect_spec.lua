-- Spec for reconnection (the `reconnect` option): what EventSource does —
-- reconnect after a network error, a connect/first-byte/idle timeout or a
-- normal end, with Last-Event-ID; the reconnection time (retry:, delay),
-- exponential back-off with jitter up to max_delay, Retry-After on 429/503,
-- 204 as "stop", `retries`; and every ending after which it must not
-- reconnect.
--
-- Written from DESIGN.md ("Reconnection") and the README against the stub
-- server's /feed, /flaky, /status, /count, /forever and /stall routes. Delays
-- are kept to tens of milliseconds; timing checks are lower bounds, upper
-- bounds only where back-off would be far larger.
--
-- Cases tagged #lua54 need Lua 5.4's closing value (a break closes the stream
-- at once); the LuaJIT pass skips them (see .busted), and both ABIs run their
-- counterparts with fetch.each, s:close() and a dropped stream.

local fetch = require "fetchstream"
local h = require "spec.helpers"
local stub = require "spec.server"
local socket = require "socket"

local now = socket.gettime

local srv
setup(function() srv = stub.start() end)
teardown(function() srv:stop() end)

---------------------------------------------------------------------------
-- helpers

local tag = h.tagger("rc")

local raises = h.raises

-- A port on which nothing listens.
local free_port = h.free_port

-- Iterate fetch.events(url, opts) to its end (or `limit` events, then break).
-- Returns the events, the stream, the error raised (or nil), and the times
-- at which each event arrived.
local function read_events(url, opts, limit)
  local it, st, ctl, s = fetch.events(url, opts)
  local evs, times = {}, {}
  local ok, err = pcall(function()
    for ev in it, st, ctl, s do
      evs[#evs + 1] = ev
      times[#times + 1] = now()
      if limit and #evs >= limit then break end
    end
  end)
  return evs, s, (not ok) and err or nil, times
end

local function ids(evs)
  local out = {}
  for i, ev in ipairs(evs) do out[i] = ev.id end
  return out
end

local function range(a, b)
  local out = {}
  for i = a, b do out[#out + 1] = tostring(i) end
  return out
end

-- Drive the default client in small steps until the callback stream `s`
-- ends (or `limit` seconds pass), noting when each reconnection starts.
-- Returns those times and the start time.
local function reconnect_times(s, limit)
  local times, seen, t0 = {}, 0, now()
  while not s.reason and now() - t0 < (limit or 5) do
    fetch.run(0.002)
    local r = s.reconnects or 0
    while seen < r do
      seen = seen + 1
      times[seen] = now()
    end
  end
  return times, t0
end

-- The gaps between the start and the reconnections.
local function gaps(times, t0)
  local out, prev = {}, t0
  for i, t in ipairs(times) do
    out[i] = t - prev
    prev = t
  end
  return out
end

local function fmt_gaps(g)
  local out = {}
  for i, v in ipairs(g) do out[i] = ("%.3f"):format(v) end
  return table.concat(out, " ")
end

-- Let the default client run for a while with a stream of its own, so that
-- a stream that wrongly waits to reconnect would get the chance.
local function idle(seconds)
  local s = fetch.stream(srv:url("/stall?hello=0"), { onclose = function() end, onerror = function() end,
                                                     onabort = function() end })
  fetch.run(seconds)
  s:abort()
end

---------------------------------------------------------------------------

describe("reconnect: a dropping /feed", function()
  it("every event exactly once, in order; Last-Event-ID sent in order; 204 ends it as done", function()
    local t = tag("feed")
    local t0 = now()
    local evs, s, err = read_events(srv:url("/feed?n=10&drop_after=3&tag=" .. t),
      { reconnect = { delay = 0.02 } })
    assert.is_nil(err)
    assert.are.same(range(1, 10), ids(evs))
    for i, ev in ipairs(evs) do
      assert.are.equal("event " .. i, ev.data)
      assert.are.equal("message", ev.event)
    end
    assert.are.equal("done", s.reason)
    assert.is_nil(s.error)
    -- drops after 3, 6, 9; event 10 ends normally; the next request gets 204
    assert.are.equal(4, s.reconnects)
    assert.are.equal("10", s.last_event_id)
    local log = srv:log(t)
    assert.are.same({ "", "3", "6", "9", "10" }, log.last_event_ids)
    assert.are.equal(5, log.requests)
    assert.is_true(log.connections >= 4, "connections " .. tostring(log.connections))
    assert.is_true(now() - t0 >= 4 * 0.02)
  end)

  it("the last_event_id option is sent on the first request", function()
    local t = tag("lei")
    local evs, s, err = read_events(srv:url("/feed?n=5&tag=" .. t),
      { reconnect = { delay = 0.02 }, last_event_id = "3" })
    assert.is_nil(err)
    assert.are.same({ "4", "5" }, ids(evs))
    assert.are.same({ "3", "5" }, srv:log(t).last_event_ids)
    assert.are.equal(1, s.reconnects)
    assert.are.equal("done", s.reason)
  end)

  it("with fetch.open and s:next", function()
    local t = tag("open")
    local s = assert(fetch.open(srv:url("/feed?n=5&drop_after=2&tag=" .. t),
      { reconnect = { delay = 0.02 } }))
    finally(function() s:close() end)
    assert.are.equal(200, s.status)
    local got = {}
    while true do
      local ev, err = s:next(5)
      assert.is_nil(err)
      if not ev then break end
      got[#got + 1] = ev.id
    end
    assert.are.same(range(1, 5), got)
    assert.are.equal("done", s.reason)
    assert.are.same({ "", "2", "4", "5" }, srv:log(t).last_event_ids)
    assert.are.equal(3, s.reconnects)
  end)

  it("with callbacks: every event once, onclose once after the 204, no onerror", function()
    local t = tag("cb")
    local got, closes, errors = {}, 0, {}
    local s = fetch.stream(srv:url("/feed?n=10&drop_after=3&tag=" .. t), {
      reconnect = { delay = 0.02 },
      onmessage = function(ev) got[#got + 1] = ev.id end,
      onclose = function() closes = closes + 1 end,
      onerror = function(e) errors[#errors + 1] = e end,
    })
    assert.is_true(fetch.run(10))
    assert.are.same(range(1, 10), got)
    assert.are.equal(1, closes)
    assert.are.same({}, errors)
    assert.are.equal(4, s.reconnects)
    assert.are.equal("done", s.reason)
    assert.are.same({ "", "3", "6", "9", "10" }, srv:log(t).last_event_ids)
  end)

  it("a normal end reconnects too (resume=1 on /count continues from Last-Event-ID) #lua54", function()
    local t = tag("count")
    local evs, s, err = read_events(srv:url("/count?n=2&resume=1&tag=" .. t),
      { reconnect = { delay = 0.02 } }, 6)
    assert.is_nil(err)
    assert.are.same(range(1, 6), ids(evs))
    assert.are.equal(2, s.reconnects)
    assert.are.equal("aborted", s.reason) -- the break
    assert.are.equal(3, srv:log(t).requests)
  end)

  it("a normal end reconnects too, in fetch.each stopped after 6 events", function()
    local t = tag("count-each")
    local evs, stream = {}, nil
    assert.is_true(fetch.each(srv:url("/count?n=2&resume=1&tag=" .. t), { reconnect = { delay = 0.02 } },
      function(ev, s)
        evs[#evs + 1], stream = ev, s
        if #evs == 6 then return false end
      end))
    assert.are.same(range(1, 6), ids(evs))
    assert.are.equal(2, stream.reconnects)
    assert.are.equal("aborted", stream.reason) -- returning false
    assert.are.equal(3, srv:log(t).requests)
  end)
end)

describe("reconnect: the reconnection time", function()
  it("a retry: field sets it (lower bound), and onretry(ms) reports it", function()
    local t = tag("retry")
    local retries = {}
    local evs, s, err, times = read_events(srv:url("/feed?n=4&drop_after=2&retry=300&tag=" .. t), {
      reconnect = { delay = 0.01 },
      onretry = function(ms) retries[#retries + 1] = ms end,
    })
    local t_end = now()
    assert.is_nil(err)
    assert.are.same(range(1, 4), ids(evs))
    assert.are.equal(300, s.retry)
    assert.are.same({ 300, 300 }, retries) -- one per connection that sent it (the 204 sends none)
    local gap = times[3] - times[2]
    assert.is_true(gap >= 0.3 - 0.005, ("event 3 came %.3f s after event 2"):format(gap))
    assert.is_true(t_end - times[4] >= 0.3 - 0.005, "the 204 request did not wait for retry:")
    assert.are.equal("done", s.reason)
  end)

  it("retry: wins over delay, and backs off from it", function()
    local t = tag("retry-bo")
    local retries = {}
    local s = fetch.stream(srv:url("/feed?drop_after=0&retry=100&tag=" .. t), {
      reconnect = { delay = 0.005, retries = 2 },
      onretry = function(ms) retries[#retries + 1] = ms end,
      onmessage = function() end,
      onerror = function() end,
    })
    local times, t0 = reconnect_times(s, 5)
    local g = gaps(times, t0)
    assert.are.equal(2, #g)
    assert.is_true(g[1] >= 0.1 - 0.005, fmt_gaps(g))
    assert.is_true(g[2] >= 0.2 - 0.005, fmt_gaps(g))
    assert.are.same({ 100, 100, 100 }, retries)
    assert.are.equal("network", s.reason)
  end)

  it("a callback stream without an event handler still honours retry: and onretry", function()
    local t = tag("retry-noev")
    local retries = {}
    local s = fetch.stream(srv:url("/feed?drop_after=0&retry=100&tag=" .. t), {
      reconnect = { delay = 0.005, retries = 1 },
      onretry = function(ms) retries[#retries + 1] = ms end,
      onerror = function() end,
    })
    local times, t0 = reconnect_times(s, 5)
    local g = gaps(times, t0)
    assert.are.same({ 100, 100 }, retries)
    assert.are.equal(1, #g)
    assert.is_true(g[1] >= 0.1 - 0.005, fmt_gaps(g))
  end)

  it("the back-off grows over consecutive failures (x2 with <= 20% jitter)", function()
    local t = tag("backoff")
    local s = fetch.stream(srv:url("/feed?drop_after=0&tag=" .. t), {
      reconnect = { delay = 0.04, max_delay = 10, retries = 4 },
      onerror = function() end,
    })
    local times, t0 = reconnect_times(s, 5)
    local g = gaps(times, t0)
    assert.are.equal(4, #g, fmt_gaps(g))
    for i = 1, 4 do
      local nominal = 0.04 * 2 ^ (i - 1)
      assert.is_true(g[i] >= nominal - 0.005, ("gap %d below %.3f: %s"):format(i, nominal, fmt_gaps(g)))
      assert.is_true(g[i] <= nominal * 1.2 + 0.1, ("gap %d far above %.3f: %s"):format(i, nominal, fmt_gaps(g)))
      if i > 1 then assert.is_true(g[i] > g[i - 1], "gaps do not grow: " .. fmt_gaps(g)) end
    end
    assert.are.equal("network", s.reason)
    assert.are.equal(5, srv:log(t).requests)
  end)

  it("the jitter differs between processes (LuaJIT's math.random starts the same in each)", function()
    h.build_for_children()
    -- A child that reconnects once to a refused port: the delay it would wait.
    local script = ([[
      local fetch = require "fetchstream"
      fetch.stream(%q, {
        reconnect = { delay = 1, retries = 1 },
        onreconnect = function(info, s) io.write(("%%.17g"):format(info.delay)); s:abort() end,
        onmessage = function() end, onabort = function() end, onerror = function() end,
      })
      fetch.run(5)
    ]]):format("http://127.0.0.1:" .. free_port() .. "/")
    local delays = {}
    for i = 1, 3 do
      local p = io.popen(("%s %s -e %s 2>&1"):format(h.child_env(), h.lua(), h.shell_quote(script)))
      delays[i] = p:read("a")
      p:close()
      local d = tonumber(delays[i])
      assert.is_truthy(d, delays[i])
      assert.is_true(d >= 1 and d <= 1.2, delays[i]) -- 1 s with up to 20% jitter
    end
    assert.is_false(delays[1] == delays[2] and delays[2] == delays[3],
      "three processes waited exactly " .. delays[1] .. " s: no jitter between them")
  end)

  it("the back-off is capped at max_delay", function()
    local t = tag("cap")
    local s = fetch.stream(srv:url("/feed?drop_after=0&tag=" .. t), {
      reconnect = { delay = 0.04, max_delay = 0.08, retries = 5 },
      onerror = function() end,
    })
    local times, t0 = reconnect_times(s, 5)
    local g = gaps(times, t0)
    assert.are.equal(5, #g, fmt_gaps(g))
    for i = 3, 5 do
      -- uncapped it would be 0.16, 0.32, 0.64
      assert.is_true(g[i] >= 0.08 - 0.005, fmt_gaps(g))
      assert.is_true(g[i] < 0.15, "not capped: " .. fmt_gaps(g))
    end
  end)

  it("never below the reconnection time, even with max_delay under it", function()
    local t = tag("floor")
    local s = fetch.stream(srv:url("/feed?drop_after=0&tag=" .. t), {
      reconnect = { delay = 0.08, max_delay = 0.01, retries = 2 },
      onerror = function() end,
    })
    local times, t0 = reconnect_times(s, 5)
    local g = gaps(times, t0)
    assert.are.equal(2, #g)
    for i = 1, 2 do assert.is_true(g[i] >= 0.08 - 0.005, fmt_gaps(g)) end
  end)

  it("an event resets the back-off: one event per connection keeps the gaps at delay", function()
    local t = tag("reset")
    local got = {}
    local s = fetch.stream(srv:url("/feed?n=6&drop_after=1&tag=" .. t), {
      reconnect = { delay = 0.08, max_delay = 10 },
      onmessage = function(ev) got[#got + 1] = ev.id end,
    })
    local times, t0 = reconnect_times(s, 5)
    local g = gaps(times, t0)
    assert.are.same(range(1, 6), got)
    assert.are.equal(6, #g, fmt_gaps(g)) -- 5 drops, then the normal end before the 204
    for i = 1, #g do
      assert.is_true(g[i] >= 0.08 - 0.005, fmt_gaps(g))
      assert.is_true(g[i] < 0.16, "the back-off was not reset: " .. fmt_gaps(g)) -- doubling: >= 0.16
    end
    assert.are.equal("done", s.reason)
  end)
end)

describe("reconnect: HTTP statuses", function()
  it("429 and 503 wait Retry-After (elapsed >= retry_after)", function()
    local results = {}
    local t0 = now()
    for _, code in ipairs({ 429, 503 }) do
      local t = tag("ra" .. code)
      local r = { got = {}, tag = t, code = code }
      results[#results + 1] = r
      r.s = fetch.stream(srv:url(("/flaky?fail=1&status=%d&retry_after=1&tag=%s"):format(code, t)), {
        reconnect = { delay = 0.01 },
        onmessage = function(ev)
          r.got[#r.got + 1] = ev.id
          r.at = r.at or now()
          if #r.got == 3 then r.s:abort() end -- /flaky streams again after each end
        end,
        onerror = function(e) r.err = e end,
      })
    end
    assert.is_true(fetch.run(10))
    for _, r in ipairs(results) do
      assert.is_nil(r.err)
      assert.are.same({ "1", "2", "3" }, r.got)
      assert.are.equal("aborted", r.s.reason)
      assert.are.equal(1, r.s.reconnects)
      assert.are.equal(2, srv:log(r.tag).requests)
      assert.is_true(r.at - t0 >= 1.0, ("%d: the first event came after %.3f s"):format(r.code, r.at - t0))
    end
  end)

  it("429 without Retry-After waits the reconnection time", function()
    local t = tag("429")
    local t0 = now()
    local evs, s, err = read_events(srv:url("/flaky?fail=2&status=429&tag=" .. t),
      { reconnect = { delay = 0.05 } }, 3)
    assert.is_nil(err)
    assert.are.same({ "1", "2", "3" }, ids(evs))
    assert.are.equal(2, s.reconnects)
    local elapsed = now() - t0
    assert.is_true(elapsed >= 0.05 + 0.1 - 0.005, "elapsed " .. elapsed) -- 0.05, then 0.1 (back-off)
    assert.is_true(elapsed < 0.9, "elapsed " .. elapsed)
  end)

  it("retries exhausted: it ends with the last http error", function()
    local t = tag("exhaust")
    local evs, s, err = read_events(srv:url("/flaky?fail=100&status=503&tag=" .. t),
      { reconnect = { retries = 2, delay = 0.01 } })
    assert.are.same({}, evs)
    assert.are.equal("http", err and err.kind)
    assert.are.equal(503, err.status)
    assert.are.equal("status 503", err.message)
    assert.are.equal(2, s.reconnects)
    assert.are.equal("http", s.reason)
    assert.are.equal(3, srv:log(t).requests)
  end)

  it("retries exhausted: connection refused ends with the network error", function()
    local port = free_port()
    local evs, s, err = read_events(("http://127.0.0.1:%d/x"):format(port),
      { reconnect = { retries = 3, delay = 0.01 } })
    assert.are.same({}, evs)
    assert.are.equal("network", err and err.kind)
    assert.are.equal("COULDNT_CONNECT", err.curl)
    assert.are.equal(3, s.reconnects)
  end)

  it("retries exhausted: a feed that always drops ends with the network error", function()
    local t = tag("drops")
    local _, s, err = read_events(srv:url("/feed?drop_after=0&tag=" .. t),
      { reconnect = { retries = 3, delay = 0.01 } })
    assert.are.equal("network", err and err.kind)
    assert.are.equal(3, s.reconnects)
    assert.are.same({ "", "", "", "" }, srv:log(t).last_event_ids)
  end)

  it("retries = 0: a failure is not retried, a normal end not reconnected", function()
    local t = tag("r0")
    local _, s, err = read_events(srv:url("/flaky?fail=1&tag=" .. t), { reconnect = { retries = 0, delay = 0.01 } })
    assert.are.equal("http", err and err.kind)
    assert.are.equal(1, srv:log(t).requests)
    assert.are.equal(0, s.reconnects)
    local t2 = tag("r0-done")
    local evs, s2, err2 = read_events(srv:url("/count?n=2&tag=" .. t2), { reconnect = { retries = 0, delay = 0.01 } })
    assert.is_nil(err2)
    assert.are.equal(2, #evs)
    assert.are.equal("done", s2.reason)
    assert.are.equal(1, srv:log(t2).requests)
  end)

  it("a 204 ends it for good with reason done (reconnect = true)", function()
    local t = tag("204")
    local evs, s, err = read_events(srv:url("/status/204?tag=" .. t), { reconnect = true })
    assert.is_nil(err)
    assert.are.same({}, evs)
    assert.are.equal("done", s.reason)
    assert.are.equal(204, s.status)
    idle(0.1)
    assert.are.equal(1, srv:log(t).requests)
    assert.are.equal(0, s.reconnects)
  end)

  it("a 204 in callback form: onclose once", function()
    local t = tag("204cb")
    local closes, errors = 0, 0
    fetch.stream(srv:url("/status/204?tag=" .. t), {
      reconnect = { delay = 0.01 },
      onmessage = function() end,
      onclose = function() closes = closes + 1 end,
      onerror = function() errors = errors + 1 end,
    })
    fetch.run(5)
    assert.are.equal(1, closes)
    assert.are.equal(0, errors)
    assert.are.equal(1, srv:log(t).requests)
  end)

  for _, code in ipairs({ 404, 401, 500 }) do
    it(("no reconnection after a %d: an http error"):format(code), function()
      local t = tag("s" .. code)
      local _, s, err = read_events(srv:url(("/status/%d?tag=%s"):format(code, t)),
        { reconnect = { delay = 0.01 } })
      assert.are.equal("http", err and err.kind)
      assert.are.equal(code, err.status)
      assert.are.equal("http", s.reason)
      idle(0.08)
      assert.are.equal(1, srv:log(t).requests)
    end)
  end
end)

describe("reconnect: timeouts", function()
  it("a first-byte timeout reconnects; retries exhausted ends with it", function()
    local t = tag("fbt")
    local _, s, err = read_events(srv:url("/stall?hello=0&tag=" .. t),
      { first_byte_timeout = 0.1, reconnect = { retries = 2, delay = 0.01 } })
    assert.are.equal("timeout", err and err.kind)
    assert.are.equal("first_byte", err.timeout)
    assert.are.equal(2, s.reconnects)
    assert.are.equal(3, srv:log(t).requests)
  end)

  it("an idle timeout reconnects", function()
    local t = tag("idle")
    local t0 = now()
    local evs, s, err = read_events(srv:url("/stall?tag=" .. t),
      { idle_timeout = 0.1, reconnect = { delay = 0.01 } }, 3)
    assert.is_nil(err)
    assert.are.same({ "hello", "hello", "hello" }, { evs[1].data, evs[2].data, evs[3].data })
    assert.are.equal(2, s.reconnects)
    assert.is_true(now() - t0 >= 2 * 0.1)
    assert.are.equal(3, srv:log(t).requests)
  end)

  it("the total timeout ends it for good", function()
    local t = tag("total")
    local evs, s, err = read_events(srv:url("/forever?interval=30&tag=" .. t),
      { timeout = 0.3, reconnect = { delay = 0.01 } })
    assert.are.equal("timeout", err and err.kind)
    assert.are.equal("total", err.timeout)
    assert.is_true(#evs >= 2)
    assert.are.equal("timeout", s.reason)
    assert.are.equal(0, s.reconnects)
    idle(0.08)
    assert.are.equal(1, srv:log(t).requests)
  end)
end)

describe("reconnect: never after", function()
  it("a break #lua54", function()
    local t = tag("break")
    local evs, s = read_events(srv:url("/forever?interval=20&tag=" .. t), { reconnect = { delay = 0.01 } }, 2)
    assert.are.equal(2, #evs)
    assert.are.equal("aborted", s.reason)
    assert.is_true((srv:wait_closed(t, 3)))
    idle(0.08)
    assert.are.equal(1, srv:log(t).requests)
  end)

  it("fetch.each's function returning false, a break then s:close(), a break then a drop", function()
    local ts = { tag("each-false"), tag("break-close"), tag("break-drop") }
    local opts = { reconnect = { delay = 0.01 } }
    local n = 0
    assert.is_true(fetch.each(srv:url("/forever?interval=20&tag=" .. ts[1]), opts, function()
      n = n + 1
      if n == 2 then return false end
    end))
    local evs, s = read_events(srv:url("/forever?interval=20&tag=" .. ts[2]), opts, 2)
    s:close()
    assert.are.equal(2, #evs)
    assert.are.equal("aborted", s.reason)
    local weak = setmetatable({}, { __mode = "k" })
    local function dropped() -- a function of its own: nothing stays on this stack
      local _, st = read_events(srv:url("/forever?interval=20&tag=" .. ts[3]), opts, 2)
      weak[st] = true
    end
    dropped()
    collectgarbage()
    collectgarbage()
    assert.is_nil(next(weak), "the stream was not collected")
    for _, t in ipairs(ts) do assert.is_true((srv:wait_closed(t, 3)), t) end
    idle(0.08)
    for _, t in ipairs(ts) do assert.are.equal(1, srv:log(t).requests, t) end
  end)

  it("abort() from a callback: onabort once, no reconnection", function()
    local t = tag("abort")
    local n, aborts, closes, errors = 0, 0, 0, 0
    local s
    s = fetch.stream(srv:url("/forever?interval=20&tag=" .. t), {
      reconnect = { delay = 0.01 },
      onmessage = function()
        n = n + 1
        if n == 2 then s:abort("bye") end
      end,
      onabort = function() aborts = aborts + 1 end,
      onclose = function() closes = closes + 1 end,
      onerror = function() errors = errors + 1 end,
    })
    fetch.run(5)
    assert.are.equal(2, n)
    assert.are.same({ 1, 0, 0 }, { aborts, closes, errors })
    idle(0.08)
    assert.are.equal(1, srv:log(t).requests)
    assert.are.equal(0, s.reconnects)
  end)

  it("abort() while it waits to reconnect: it stays aborted", function()
    local t = tag("abort-wait")
    local aborts = 0
    local s = fetch.stream(srv:url("/feed?drop_after=0&tag=" .. t), {
      reconnect = { delay = 0.2 },
      onabort = function() aborts = aborts + 1 end,
      onerror = function() end,
    })
    fetch.run(0.08) -- the first request has failed; the stream now waits
    assert.is_nil(s.reason)
    s:abort()
    assert.are.equal("aborted", s.reason)
    fetch.run(0.3)
    assert.are.equal(1, aborts)
    assert.are.equal(1, srv:log(t).requests)
  end)

  it("close() of a pulled stream", function()
    local t = tag("close")
    local s = assert(fetch.open(srv:url("/forever?interval=20&tag=" .. t), { reconnect = { delay = 0.01 } }))
    assert.is_truthy(s:next(2))
    s:close()
    assert.are.equal("aborted", s.reason)
    idle(0.08)
    assert.are.equal(1, srv:log(t).requests)
  end)

  it("a protocol error (wrong content type)", function()
    local t = tag("proto")
    local _, s, err = read_events(srv:url("/count?ct=text/plain&tag=" .. t), { reconnect = { delay = 0.01 } })
    assert.are.equal("protocol", err and err.kind)
    assert.are.equal("protocol", s.reason)
    idle(0.08)
    assert.are.equal(1, srv:log(t).requests)
  end)

  it("a protocol error (event larger than max_event_size)", function()
    local t = tag("big")
    local _, _, err = read_events(srv:url("/big?bytes=5000&size=2000&tag=" .. t),
      { reconnect = { delay = 0.01 }, max_event_size = 1000 })
    assert.are.equal("protocol", err and err.kind)
    idle(0.08)
    assert.are.equal(1, srv:log(t).requests)
  end)

  it("a callback error", function()
    local t = tag("cberr")
    local errors = {}
    local s = fetch.stream(srv:url("/count?tag=" .. t), {
      reconnect = { delay = 0.01 },
      onmessage = function() error("no thanks", 0) end,
      onerror = function(e) errors[#errors + 1] = e end,
    })
    fetch.run(5)
    assert.are.equal(1, #errors)
    assert.are.equal("callback", errors[1].kind)
    assert.are.equal("callback", s.reason)
    idle(0.08)
    assert.are.equal(1, srv:log(t).requests)
  end)
end)

describe("reconnect: other readers", function()
  it("fetch.chunks reconnects after a normal end", function()
    local t = tag("chunks")
    local it, st, ctl, s = fetch.chunks(srv:url("/count?n=1&tag=" .. t), { reconnect = { delay = 0.01 } })
    local body = {}
    for bytes in it, st, ctl, s do
      body[#body + 1] = bytes
      if #table.concat(body) >= 3 * #"id: 1\ndata: 1\n\n" then break end
    end
    assert.are.equal(("id: 1\ndata: 1\n\n"):rep(3), table.concat(body))
    assert.are.equal(2, s.reconnects)
    assert.are.equal(3, srv:log(t).requests)
  end)

  it("fetch.lines reconnects after a normal end", function()
    local t = tag("lines")
    local it, st, ctl, s = fetch.lines(srv:url("/count?n=1&tag=" .. t), { reconnect = { delay = 0.01 } })
    local got = {}
    for line in it, st, ctl, s do
      got[#got + 1] = line
      if #got == 6 then break end
    end
    assert.are.same({ "id: 1", "data: 1", "", "id: 1", "data: 1", "" }, got)
    assert.are.equal(1, s.reconnects)
  end)

  it("fetch.lines: a partial line of a dropped connection is not glued to the next one", function()
    local it, st, ctl, s = fetch.lines(srv:url("/drop"), { reconnect = { delay = 0.01 } })
    local got = {}
    for line in it, st, ctl, s do
      got[#got + 1] = line
      if #got == 4 then break end
    end
    assert.are.same({ "data: one", "", "data: one", "" }, got)
  end)
end)

describe("reconnect: the option", function()
  it("bad values are usage errors, raised at once", function()
    local url = srv:url("/count")
    for _, bad in ipairs({ "yes", 1, { retries = -1 }, { retries = 1.5 }, { delay = -1 }, { delay = "1" },
                           { max_delay = -2 }, { tries = 3 } }) do
      raises("usage", fetch.events, url, { reconnect = bad })
    end
    raises("usage", fetch.stream, url, { reconnect = { foo = 1 } })
    raises("usage", fetch.open, url, { reconnect = "always" })
  end)

  it("off by default: a drop is a network error, a normal end is the end", function()
    local t = tag("off")
    local evs, s, err = read_events(srv:url("/feed?n=5&drop_after=2&tag=" .. t))
    assert.are.equal("network", err and err.kind)
    assert.are.equal(2, #evs)
    assert.are.equal(0, s.reconnects)
    local evs2, s2, err2 = read_events(srv:url("/count?n=2"), { reconnect = false })
    assert.is_nil(err2)
    assert.are.equal(2, #evs2)
    assert.are.equal("done", s2.reason)
    assert.are.equal(1, srv:log(t).requests)
  end)
end)

describe("reconnect: the whole-transfer timeout spans every connection", function()
  it("a feed that keeps ending normally stops at `timeout`, with a total timeout", function()
    local t0 = now()
    local _, s, err = read_events(srv:url("/count?n=1"),
      { timeout = 0.3, reconnect = { delay = 0.02 } })
    local took = now() - t0
    assert.is_truthy(err, "the stream should end with an error")
    assert.are.equal("timeout", err.kind)
    assert.are.equal("total", err.timeout)
    assert.are.equal("timeout", s.reason)
    assert.is_true((s.reconnects or 0) >= 1, "it should have reconnected before the deadline")
    assert.is_true(took >= 0.28 and took < 1.5, ("ended after %.2f s"):format(took))
  end)

  it("a wait longer than what is left of `timeout` ends the stream on time", function()
    local t0 = now()
    local _, s, err = read_events(srv:url("/count?n=1"),
      { timeout = 0.3, reconnect = { delay = 5 } })
    assert.are.equal("total", err and err.timeout)
    assert.are.equal("timeout", s.reason)
    assert.is_true(now() - t0 < 1.5, "it waited for the 5 s reconnection time")
  end)
end)

describe("reconnect: a 204 at the end", function()
  it("does not fire onopen: nothing opens", function()
    local t = tag("204-open")
    local statuses, endings = {}, {}
    fetch.stream(srv:url("/feed?n=2&drop_after=1&tag=" .. t), {
      reconnect = { delay = 0.01 },
      onopen = function(s) statuses[#statuses + 1] = s.status end,
      onmessage = function() end,
      onclose = function() endings[#endings + 1] = "close" end,
      onerror = function(e) endings[#endings + 1] = tostring(e) end,
    })
    assert.is_true(fetch.run(5))
    assert.are.same({ 200, 200 }, statuses)
    assert.are.same({ "close" }, endings)
    assert.are.equal(3, srv:log(t).requests)
  end)
end)
