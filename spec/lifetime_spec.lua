-- Spec for the lifetime of streams and clients: break and errors in a for
-- loop abort the transfer, <close>, s:close() / s:abort(), garbage
-- collection of a live stream, use after close, c:close().
--
-- "The server sees the close" is checked with the stub server's /log: the
-- routes /stall and /forever record when the client closes a connection
-- whose request carried ?tag=T (spec/server/). Written from DESIGN.md.
--
-- Cases tagged #lua54 need Lua 5.4's closing value (a break, return or error
-- in a for loop closes the stream at once); the LuaJIT pass skips them (see
-- .busted). Both ABIs run the cases of what replaces it there: s:close(),
-- fetch.each, and __gc aborting a stream that is dropped. The `local s
-- <close>` cases are in spec/lifetime_lua54_spec.lua.

-- Loops that break on their first item are the point here:
-- luacheck: ignore 512

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

local tag = h.tagger("life")

-- A URL that streams until the client goes away, tagged for /log.
local function forever(t, interval)
  return srv:url(("/forever?interval=%d&tag=%s"):format(interval or 20, t))
end

local function assert_closed(t, what)
  local ok, log = srv:wait_closed(t, 2)
  assert.is_true(ok, (what or "the connection") .. " was not closed (server log: "
    .. (log and ("requests=" .. tostring(log.requests)) or "none") .. ")")
  assert.are.equal(1, log.requests)
end

-- The server must NOT have seen a close (give it a moment to notice one).
local function assert_open(t)
  socket.sleep(0.1)
  local log = srv:log(t)
  assert.are.equal(1, log.requests)
  assert.is_false(log.closed)
end

local raises = h.raises

local function full_gc()
  collectgarbage()
  collectgarbage()
end

---------------------------------------------------------------------------

describe("leaving a for loop", function()
  it("break closes the connection at once; the stream (4th value) is aborted #lua54", function()
    local t = tag("break")
    local f, st, ctl, closing = fetch.events(forever(t))
    assert.is_not_nil(closing)
    local n = 0
    for _ in f, st, ctl, closing do
      n = n + 1
      if n == 3 then break end
    end
    assert.are.equal(3, n)
    assert.are.equal("aborted", closing.reason)
    assert.is_nil(closing.error)
    assert_closed(t)
  end)

  it("break closes chunks and lines loops too #lua54", function()
    local t1, t2 = tag("break-chunks"), tag("break-lines")
    for _ in fetch.chunks(forever(t1)) do break end
    for _ in fetch.lines(forever(t2)) do break end
    assert_closed(t1, "the chunks loop")
    assert_closed(t2, "the lines loop")
  end)

  it("return from inside the loop closes it #lua54", function()
    local t = tag("return")
    local function first()
      for ev in fetch.events(forever(t)) do return ev.data end
    end
    assert.are.equal("tick 1", first())
    assert_closed(t)
  end)

  it("an error in the loop body aborts and propagates unchanged #lua54", function()
    local t = tag("error")
    local boom = { "boom" }
    local ok, err = pcall(function()
      for _ in fetch.events(forever(t)) do error(boom) end
    end)
    assert.is_false(ok)
    assert.are.equal(boom, err)
    assert_closed(t)
  end)

  -- Without a closing value (LuaJIT) a loop left early leaves its stream
  -- running until it is closed or collected.
  it("a loop left by break, then s:close(): aborted at once, its iterator then a usage error", function()
    local t = tag("break-close")
    local f, st, ctl, closing = fetch.events(forever(t))
    local n = 0
    for _ in f, st, ctl, closing do
      n = n + 1
      if n == 3 then break end
    end
    closing:close()
    assert.are.equal(3, n)
    assert.are.equal("aborted", closing.reason)
    assert.is_nil(closing.error)
    assert_closed(t)
    raises("usage", closing.next, closing)
  end)

  it("a loop left by break, return or an error, its stream dropped: collected, the connection closed", function()
    local ts = { tag("drop-events"), tag("drop-chunks"), tag("drop-lines"), tag("drop-return"), tag("drop-error") }
    local weak = setmetatable({}, { __mode = "k" })
    -- each in a function of its own: nothing of it stays on this stack
    local function left_by_break(iterate, t)
      local f, st, ctl, s = iterate(forever(t))
      weak[s] = true
      for _ in f, st, ctl, s do break end
    end
    left_by_break(fetch.events, ts[1])
    left_by_break(fetch.chunks, ts[2])
    left_by_break(fetch.lines, ts[3])
    local function first()
      local f, st, ctl, s = fetch.events(forever(ts[4]))
      weak[s] = true
      for ev in f, st, ctl, s do return ev.data end
    end
    assert.are.equal("tick 1", first())
    local boom = { "boom" }
    local ok, err = pcall(function()
      local f, st, ctl, s = fetch.events(forever(ts[5]))
      weak[s] = true
      for _ in f, st, ctl, s do error(boom) end
    end)
    assert.is_false(ok)
    assert.are.equal(boom, err)
    full_gc()
    assert.is_nil(next(weak), "a stream was not collected")
    for _, t in ipairs(ts) do assert_closed(t) end
  end)

  it("a loop that runs to the end leaves the stream done", function()
    local f, st, ctl, closing = fetch.events(srv:url("/count?n=2"))
    local n = 0
    for _ in f, st, ctl, closing do n = n + 1 end
    assert.are.equal(2, n)
    assert.are.equal("done", closing.reason)
  end)
end)

describe("close and abort", function()
  it("s:close() mid-transfer: reason aborted, the server sees the close", function()
    local t = tag("close")
    local s = assert(fetch.open(forever(t)))
    assert.is_not_nil(s:next(2))
    assert_open(t)
    s:close()
    assert.are.equal("aborted", s.reason)
    assert.is_nil(s.error)
    assert_closed(t)
  end)

  it("double close is harmless and keeps the reason", function()
    local s = assert(fetch.open(forever(tag("double"))))
    s:close()
    s:close()
    assert.are.equal("aborted", s.reason)
    local d = assert(fetch.open(srv:url("/count?n=1")))
    for _ in d:events() do end
    d:close()
    d:close()
    assert.are.equal("done", d.reason) -- closing a finished stream keeps its reason
  end)

  it("closing a failed stream keeps its reason and error", function()
    local s = assert(fetch.open(srv:url("/drop")))
    local ok, err = pcall(function() for _ in s:events() do end end)
    assert.is_false(ok)
    s:close()
    assert.are.equal("network", s.reason)
    assert.are.equal(err, s.error)
  end)

  it("s:abort() on a pull stream: reason aborted, next() gives nil without error", function()
    local t = tag("abort-pull")
    local s = assert(fetch.open(forever(t)))
    finally(function() s:close() end)
    assert.is_not_nil(s:next(2))
    s:abort("stop")
    assert.are.equal("aborted", s.reason)
    local ev, err = s:next()
    assert.is_nil(ev)
    assert.is_nil(err)
    assert_closed(t)
  end)

  it("use after close is a usage error, never a crash", function()
    local s = assert(fetch.open(srv:url("/count?n=3")))
    local status, headers = s.status, s.headers
    s:close()
    for _, method in ipairs { "next", "events", "chunks", "lines" } do
      local err = raises("usage", s[method], s)
      assert.matches("attempt to use a closed stream", err.message)
    end
    raises("usage", s.next, s, 0.1)
    -- what was read stays readable
    assert.are.equal(200, status)
    assert.are.equal(status, s.status)
    assert.are.equal(headers, s.headers)
    assert.are.equal("aborted", s.reason)
  end)

  it("the iterator of a loop broken out of is closed: calling it again is a usage error #lua54", function()
    local f, st, ctl, closing = fetch.events(srv:url("/count?n=3"))
    for _ in f, st, ctl, closing do break end
    raises("usage", closing.next, closing)
  end)
end)

describe("garbage collection", function()
  it("a live pull stream that is dropped is collected and its connection closed", function()
    local t = tag("gc")
    local weak = setmetatable({}, { __mode = "k" })
    do
      local s = assert(fetch.open(forever(t)))
      assert.is_not_nil(s:next(2))
      weak[s] = true
    end
    assert_open(t)
    full_gc()
    assert.is_nil(next(weak), "the stream was not collected")
    assert_closed(t, "the collected stream's connection")
  end)

  it("a stream dropped before its headers came is collected", function()
    local weak = setmetatable({}, { __mode = "k" })
    do
      local f, st = fetch.events(srv:url("/count?n=3&wait=300"))
      weak[st] = true
      assert.is_function(f)
    end
    full_gc()
    assert.is_nil(next(weak))
  end)

  it("a dropped client and its live stream are collected together", function()
    local t = tag("gc-client")
    local weak = setmetatable({}, { __mode = "k" })
    do
      local c = fetch.client()
      local s = assert(c:open(forever(t)))
      assert.is_not_nil(s:next(2))
      weak[c], weak[s] = true, true
    end
    full_gc()
    assert.is_nil(next(weak), "client or stream not collected")
    assert_closed(t)
  end)

  it("a callback stream is kept alive by its client while it runs", function()
    local c = fetch.client()
    local got, endings = {}, 0
    c:stream(srv:url("/count?n=4&delay=20"), {
      onmessage = function(ev) got[#got + 1] = ev.data end,
      onclose = function() endings = endings + 1 end,
    }) -- the stream object is not kept
    full_gc()
    assert.is_true(c:run(5))
    assert.are.same({ "1", "2", "3", "4" }, got)
    assert.are.equal(1, endings)
    c:close()
  end)

  it("collecting a stream that has ended fires nothing again", function()
    local c = fetch.client()
    local endings = 0
    local weak = setmetatable({}, { __mode = "k" })
    do
      local s = c:stream(srv:url("/count?n=1"), {
        onmessage = function() end,
        onclose = function() endings = endings + 1 end,
        onabort = function() endings = endings + 1 end,
        onerror = function() endings = endings + 1 end,
      })
      weak[s] = true
    end
    assert.is_true(c:run(5))
    full_gc()
    assert.is_nil(next(weak))
    assert.are.equal(1, endings)
    c:close()
  end)

  it("many streams opened and dropped: all collected, all connections closed", function()
    local tags, weak = {}, setmetatable({}, { __mode = "k" })
    for i = 1, 20 do
      tags[i] = tag("gc-many")
      local s = assert(fetch.open(forever(tags[i], 50)))
      weak[s] = true
    end
    full_gc()
    assert.is_nil(next(weak))
    for i = 1, 20 do assert_closed(tags[i]) end
  end)
end)

describe("closing a client", function()
  it("aborts its callback streams (onabort once each) and closes their connections", function()
    local c = fetch.client()
    local t = tag("client-close")
    local aborts, others = 0, 0
    local s = c:stream(forever(t), {
      onmessage = function() end,
      onabort = function() aborts = aborts + 1 end,
      onclose = function() others = others + 1 end,
      onerror = function() others = others + 1 end,
    })
    assert.is_false(c:run(0.1))
    c:close()
    assert.are.equal("aborted", s.reason)
    assert.are.equal(1, aborts)
    assert.are.equal(0, others)
    assert_closed(t)
    c:close()
    assert.are.equal(1, aborts)
  end)

  it("ends its pull streams too: no crash, the stream reads as aborted", function()
    local c = fetch.client()
    local t = tag("client-close-pull")
    local s = assert(c:open(forever(t)))
    assert.is_not_nil(s:next(2))
    c:close()
    assert_closed(t)
    local ok, ev, err = pcall(s.next, s, 0.5)
    assert.is_true(ok, "s:next() raised: " .. tostring(ev))
    assert.is_nil(ev)
    assert.is_nil(err)
    assert.are.equal("aborted", s.reason)
    s:close()
  end)

  it("a closed client refuses new work with usage errors", function()
    local c = fetch.client()
    c:close()
    for _, m in ipairs { "stream", "open", "events", "chunks", "lines" } do
      raises("usage", c[m], c, srv:url("/count"), nil)
    end
    raises("usage", c.run, c)
  end)

  it("the default client keeps working after other clients close", function()
    local c = fetch.client()
    c:close()
    local n = 0
    for _ in fetch.events(srv:url("/count?n=2")) do n = n + 1 end
    assert.are.equal(2, n)
  end)
end)

describe("a slow consumer (back-pressure)", function()
  it("is not an idle timeout: the server was not silent, the reader was slow", function()
    local n = 0
    for _ in fetch.events(srv:url("/forever?interval=30"), { idle_timeout = 0.2 }) do
      n = n + 1
      socket.sleep(0.3)
      if n == 3 then break end
    end
    assert.are.equal(3, n)
  end)

  it("a paused transfer (queue full) is not idle either, and break closes it #lua54", function()
    local t = tag("bp-break")
    local n = 0
    for _ in fetch.events(srv:url("/big?bytes=200000000&size=1000&tag=" .. t), { idle_timeout = 0.2 }) do
      n = n + 1
      if n == 1 then socket.sleep(0.4) end -- the queue fills and curl pauses meanwhile
      if n == 3000 then break end
    end
    assert.are.equal(3000, n)
    assert_closed(t)
  end)

  it("a paused transfer (queue full) is not idle either, and fetch.each stops it", function()
    local t = tag("bp-each")
    local n = 0
    assert.is_true(fetch.each(srv:url("/big?bytes=200000000&size=1000&tag=" .. t), { idle_timeout = 0.2 },
      function()
        n = n + 1
        if n == 1 then socket.sleep(0.4) end -- the queue fills and curl pauses meanwhile
        if n == 3000 then return false end
      end))
    assert.are.equal(3000, n)
    assert_closed(t)
  end)

  it("a paused transfer that is dropped is collected and closed", function()
    local t = tag("bp-gc")
    local weak = setmetatable({}, { __mode = "k" })
    do
      local s = assert(fetch.open(srv:url("/big?bytes=200000000&tag=" .. t)))
      assert.is_not_nil(s:next(2))
      socket.sleep(0.2)
      assert.is_not_nil(s:next(2))
      weak[s] = true
    end
    full_gc()
    assert.is_nil(next(weak))
    assert_closed(t)
  end)
end)

describe("timing", function()
  it("an idle stream costs no busy loop: next(0.3) sleeps", function()
    local s = assert(fetch.open(srv:url("/stall")))
    finally(function() s:close() end)
    assert.is_not_nil(s:next(2))
    local c0, t0 = os.clock(), now()
    assert.is_nil(s:next(0.3))
    local cpu, wall = os.clock() - c0, now() - t0
    assert.is_true(wall >= 0.25, "wall " .. wall)
    assert.is_true(cpu < 0.1, ("busy waiting: %.3f s of CPU in %.3f s"):format(cpu, wall))
  end)
end)
