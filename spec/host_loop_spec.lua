-- Spec for the surface any event loop drives a client with: c:step() (all
-- the work that can be done now, never blocking), c:fileno() (readable on
-- network activity) and c:timeout() (seconds to the next needed step; nil
-- when the client has nothing to do). Here the "host" is LuaSocket's
-- select() over the descriptor — a loop that knows nothing of fetchstream.

local fetch = require "fetchstream"
local stub = require "spec.server"
local socket = require "socket"
local h = require "spec.helpers"

local srv
setup(function() srv = stub.start() end)
teardown(function() srv:stop() end)

local tag = h.tagger("hostloop")

-- A host loop: select() on c:fileno() for at most c:timeout() seconds, then
-- c:step(), until `done()` or the client has nothing to do. Returns the
-- number of wakes and whether it stopped because the client was idle.
local function host_loop(c, done, limit)
  local fd = c:fileno()
  local watched = { getfd = function() return fd end, dirty = function() return false end }
  local wakes, deadline = 0, socket.gettime() + (limit or 10)
  while not (done and done()) do
    local t = c:timeout()
    if t == nil then return wakes, true end
    assert(socket.gettime() < deadline, "the host loop ran too long")
    socket.select({ watched }, nil, math.min(t, 1))
    wakes = wakes + 1
    c:step()
  end
  return wakes, false
end

describe("c:step(), c:fileno(), c:timeout()", function()
  it("let a select() loop drive callback streams to their ends", function()
    local c = fetch.client()
    finally(function() c:close() end)
    local got, ends = {}, {}
    for i = 1, 5 do
      got[i] = {}
      c:stream(srv:url("/count?n=4&delay=20"), {
        onmessage = function(ev) got[i][#got[i] + 1] = ev.data end,
        onclose = function() ends[i] = (ends[i] or 0) + 1 end,
        onerror = function(err) error(err) end,
      })
    end
    local wakes, idle = host_loop(c)
    assert.is_true(idle, "the loop ended because the client had nothing to do")
    for i = 1, 5 do
      assert.are.same({ "1", "2", "3", "4" }, got[i])
      assert.are.equal(1, ends[i])
    end
    -- 5 streams × (connect, headers, 4 events, end) at most, plus curl's own wakes
    assert.is_true(wakes < 200, "woke " .. wakes .. " times")
  end)

  it("fileno is a descriptor; timeout is nil on an idle client, a number while a stream runs", function()
    local c = fetch.client()
    finally(function() c:close() end)
    assert.are.equal("number", type(c:fileno()))
    assert.is_nil(c:timeout())
    c:step() -- nothing to do: returns at once
    assert.is_nil(c:timeout())
    local s = c:stream(srv:url("/stall?hello=0&tag=" .. tag("t")), { onchunk = function() end })
    local t = c:timeout()
    assert.are.equal("number", type(t))
    assert.is_true(t <= 0.01, "a new stream wants a step at once, got " .. tostring(t))
    -- Once it waits in silence with no deadline, only its socket can wake it:
    -- still a number (the client is not idle), at most a day.
    -- (curl's own timers come first: a connection's are gone within ~200 ms)
    host_loop(c, function() t = c:timeout(); return s.status ~= nil and t ~= nil and t > 1 end, 5)
    assert.are.equal(86400, t)
    s:abort()
    assert.is_nil(c:timeout(), "nothing to do after the abort")
  end)

  it("timeout counts down to a stream's deadline (idle_timeout), which the step then enforces", function()
    local c = fetch.client()
    finally(function() c:close() end)
    local err, t0 = nil, socket.gettime()
    local s = c:stream(srv:url("/stall?hello=0"), { idle_timeout = 0.3, onchunk = function() end,
                                                    onerror = function(e) err = e end })
    host_loop(c, function() return s.status ~= nil end, 5)
    local t = c:timeout()
    assert.is_true(t > 0.1 and t <= 0.31, "timeout " .. tostring(t))
    local wakes = host_loop(c, nil, 5)
    local took = socket.gettime() - t0
    assert.are.equal("idle", err and err.timeout)
    assert.is_true(took >= 0.29 and took < 1, ("took %.3f s"):format(took))
    assert.is_true(wakes <= 5, "no busy polling: " .. wakes .. " wakes") -- the deadline, perhaps curl's
  end)

  it("timeout covers a reconnect wait", function()
    local c = fetch.client()
    finally(function() c:close() end)
    local datas, reconnects = {}, 0
    c:stream(srv:url("/feed?n=4&drop_after=2&tag=" .. tag("feed")), {
      reconnect = { delay = 0.2 },
      onmessage = function(ev) datas[#datas + 1] = ev.data end,
      onreconnect = function(info) reconnects = reconnects + 1; assert.is_true(info.delay >= 0.2) end,
    })
    host_loop(c, nil, 10)
    assert.are.same({ "event 1", "event 2", "event 3", "event 4" }, datas)
    assert.is_true(reconnects >= 1)
  end)

  it("step from inside a callback is a usage error, like run()", function()
    local c = fetch.client()
    finally(function() c:close() end)
    local err
    c:stream(srv:url("/count?n=1"), {
      onmessage = function() local ok, e = pcall(c.step, c); assert(not ok); err = e end,
    })
    assert.is_true(c:run(5))
    assert.are.equal("usage", err and err.kind)
    assert.is_truthy(tostring(err):find("inside a callback", 1, true), tostring(err))
  end)

  it("step raises what an onclose raised, after its stream has ended, as run() does", function()
    local c = fetch.client()
    finally(function() c:close() end)
    local s = c:stream(srv:url("/count?n=1"), { onmessage = function() end,
                                               onclose = function() error("from onclose") end })
    local ok, err
    for _ = 1, 500 do
      ok, err = pcall(c.step, c)
      if not ok then break end
      socket.sleep(0.005)
    end
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("from onclose", 1, true))
    assert.are.equal("done", s.reason)
    assert.is_nil(c:timeout())
  end)

  it("a closed client refuses step, fileno and timeout", function()
    local c = fetch.client()
    c:close()
    h.raises("usage", c.step, c)
    h.raises("usage", c.fileno, c)
    h.raises("usage", c.timeout, c)
  end)

  it("fetch.run() still drives the default client to the end", function()
    local n = 0
    fetch.stream(srv:url("/count?n=3"), { onmessage = function() n = n + 1 end })
    assert.is_true(fetch.run(5))
    assert.are.equal(3, n)
  end)
end)
