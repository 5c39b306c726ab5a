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
