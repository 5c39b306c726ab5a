-- Spec for the engine under the API: a socket-driven client that visits only
-- the streams with something new (its ready list), deadlines from a heap,
-- and the host-loop surface (step, fileno, timeout) the event-loop adapters
-- build on.

local fetch = require "fetchstream"
local stub = require "spec.server"
local socket = require "socket"

local srv
setup(function() srv = stub.start() end)
teardown(function() srv:stop() end)

describe("the ready list", function()
  it("visits a stream only when it has something new", function()
    local c = fetch.client()
    finally(function() c:close() end)
    local quiet = {}
    for i = 1, 20 do -- each sends its headers and one event, then nothing
      quiet[i] = c:stream(srv:url("/stall"), { onmessage = function() end })
    end
    local ticks = 0
    local busy = c:stream(srv:url("/forever?interval=10"), { onmessage = function() ticks = ticks + 1 end })
    c:run(0.6)
    assert.is_true(ticks >= 20, "the busy stream got " .. ticks .. " events")
    assert.is_true(busy._visits >= 20, "the busy stream was visited " .. tostring(busy._visits) .. " times")
    for i, s in ipairs(quiet) do
      -- its response headers, its event (perhaps together), nothing after
      assert.is_true(s._visits >= 1 and s._visits <= 3,
        ("quiet stream %d was visited %s times"):format(i, tostring(s._visits)))
    end
  end)

  it("sleeps until a deadline with nothing else to do (a timeout fires on time)", function()
    local c = fetch.client()
    finally(function() c:close() end)
    local err
    local t0 = socket.gettime()
    c:stream(srv:url("/stall"), { idle_timeout = 0.3, onmessage = function() end,
                                  onerror = function(e) err = e end })
    assert.is_true(c:run(5))
    local took = socket.gettime() - t0
    assert.are.equal("idle", err and err.timeout)
    assert.is_true(took >= 0.29 and took < 1, ("took %.3f s"):format(took))
  end)
end)

describe("the table-free forms", function()
  local function datas_of(iter, ...)
    local out = {}
    for a, b, c in iter(...) do
      if type(a) == "table" then a, b, c = a.data, a.event, a.id end
      out[#out + 1] = table.concat({ a, b, c }, "|")
    end
    return out
  end

  it("fetch.values, c:values and s:values give the events' data, type and id", function()
    local url = srv:url("/count?n=4&event=tick")
    local want = datas_of(fetch.events, url)
    assert.are.same({ "1|tick|1", "2|tick|2", "3|tick|3", "4|tick|4" }, want)
    assert.are.same(want, datas_of(fetch.values, url))
    local c = fetch.client()
    finally(function() c:close() end)
    assert.are.same(want, datas_of(function(u) return c:values(u) end, url))
    local s = assert(fetch.open(url))
    assert.are.same(want, datas_of(function() return s:values() end))
    assert.are.equal("done", s.reason)
  end)

  it("p:values(chunk) gives what p:feed(chunk) gives, in any chunking", function()
    local body = "retry: 5\n: c\nid: 1\nevent: e\ndata: a\ndata: b\n\ndata: x\r\n\r\nid\ndata: y\n\n"
    local want = datas_of(function() return require("fetchstream.sse").parser():feed(body) end)
    assert.are.equal(3, #want)
    for size = 1, #body do
      local p, got = require("fetchstream.sse").parser(), {}
      for i = 1, #body, size do
        for d, e, id in p:values(body:sub(i, i + size - 1)) do got[#got + 1] = d .. "|" .. e .. "|" .. id end
      end
      assert.are.same(want, got, "pieces of " .. size)
    end
  end)

  it("raise the error that ends the stream", function()
    local ok, err = pcall(function() for _ in fetch.values(srv:url("/drop")) do end end)
    assert.is_false(ok)
    assert.are.equal("network", err.kind)
  end)
end)

describe("a stream's state", function()
  it("moves connecting -> open -> ended, and through waiting when it reconnects", function()
    local seen = {}
    local function note(where) return function(...) local s = select(select("#", ...), ...)
      seen[#seen + 1] = where .. ":" .. s.state end end
    local s = fetch.stream(srv:url("/feed?n=2&drop_after=1"), {
      reconnect = { delay = 0.01 },
      onopen = note("open"), onmessage = note("message"),
      onreconnect = note("reconnect"), onclose = note("close"),
    })
    assert.are.equal("connecting", s.state)
    assert.is_true(fetch.run(5))
    -- a drop after event 1, a reconnection, event 2, a normal end, another
    -- reconnection, and the feed's 204: the end
    assert.are.same({ "open:open", "message:open", "reconnect:open", "open:open", "message:open",
                      "reconnect:open", "close:ended" }, seen)
    assert.are.equal("ended", s.state)
    assert.are.equal("done", s.reason)
  end)

  it("waits in state waiting between connections", function()
    local s = assert(fetch.open(srv:url("/feed?n=3&drop_after=1"), { reconnect = { delay = 0.3 } }))
    finally(function() s:close() end)
    assert.are.equal("open", s.state)
    assert.are.equal("event 1", s:next().data)
    local ev = s:next(0.1) -- the drop comes, then the wait: nothing within 0.1 s
    assert.is_nil(ev)
    assert.are.equal("waiting", s.state)
    assert.are.equal("event 2", s:next().data)
    assert.are.equal("open", s.state)
  end)

  it("ends from connecting when the response is refused", function()
    local s = fetch.stream(srv:url("/status/404"), { onerror = function() end })
    assert.are.equal("connecting", s.state)
    fetch.run(5)
    assert.are.equal("ended", s.state)
    assert.are.equal("http", s.reason)
  end)
end)

describe("a stream from fetch.open", function()
  it("keeps its body and its end for its reader while the client drives others", function()
    local s = assert(fetch.open(srv:url("/count?n=3")))
    finally(function() s:close() end)
    for _ in fetch.events(srv:url("/count?n=2&delay=100")) do end -- the response above ends meanwhile
    assert.is_nil(s.reason)
    local got = {}
    for ev in s:events() do got[#got + 1] = ev.data end
    assert.are.same({ "1", "2", "3" }, got)
    assert.are.equal("done", s.reason)
  end)
end)
