-- Spec for Lua 5.4's to-be-closed variables on streams and clients: a
-- `local s <close>` closes the stream when its scope ends, also on error.
-- Only Lua 5.4 parses this file; the LuaJIT pass leaves out every
-- *_lua54_spec.lua (see .busted). What replaces the closing value on LuaJIT
-- (s:close(), fetch.each, and __gc for a dropped stream) is in
-- spec/lifetime_spec.lua and spec/stream_spec.lua, which both ABIs run.

-- A loop that breaks on its first item is the point of one case here:
-- luacheck: ignore 512

local fetch = require "fetchstream"
local h = require "spec.helpers"
local stub = require "spec.server"

local srv
setup(function() srv = stub.start() end)
teardown(function() srv:stop() end)

local tag = h.tagger("life54")

-- A URL that streams until the client goes away, tagged for /log.
local function forever(t)
  return srv:url(("/forever?interval=20&tag=%s"):format(t))
end

local function assert_closed(t, what)
  local ok, log = srv:wait_closed(t, 2)
  assert.is_true(ok, (what or "the connection") .. " was not closed (server log: "
    .. (log and ("requests=" .. tostring(log.requests)) or "none") .. ")")
  assert.are.equal(1, log.requests)
end

describe("leaving a for loop (Lua 5.4)", function()
  it("break out of s:events() on an open stream, then <close>, closes it", function()
    local t = tag("break-open")
    do
      local s <close> = assert(fetch.open(forever(t)))
      for _ in s:events() do break end
      -- s:events() does not own the stream: still running until s is closed
      assert.is_nil(s.reason)
    end
    assert_closed(t)
  end)
end)

describe("close and abort (Lua 5.4)", function()
  it("<close> on fetch.open closes at the end of the scope, also on error", function()
    local t1, t2 = tag("close-scope"), tag("close-error")
    do
      local s <close> = assert(fetch.open(forever(t1)))
      assert.are.equal("tick 1", s:next(2).data)
    end
    assert_closed(t1)
    local ok = pcall(function()
      local s <close> = assert(fetch.open(forever(t2)))
      s:next(2)
      error("leaving")
    end)
    assert.is_false(ok)
    assert_closed(t2)
  end)
end)

describe("closing a client (Lua 5.4)", function()
  it("<close> on a client", function()
    local t = tag("client-tbc")
    do
      local c <close> = fetch.client()
      c:stream(forever(t), { onmessage = function() end })
      c:run(0.1)
    end
    assert_closed(t)
  end)
end)
