-- fetchstream.uv in headless Neovim (Debian's 0.7.2: vim.loop, LuaJIT): a
-- chat streamed into a buffer from ontext while an editor timer keeps
-- ticking (no E5560 with the default wrap), abort() from a timer closing the
-- connection at once, the same with the coroutine form, and
-- examples/nvim_chat.lua's :FetchChat end to end; and doc/fetchstream.txt as
-- a help page. Each case runs in its own editor; the script is
-- spec/hosts/nvim_uv.lua.

local stub = require "spec.server"
local h = require "spec.helpers"

local srv
setup(function()
  h.build_luajit()
  srv = stub.start()
end)
teardown(function() srv:stop() end)

-- Run one case of the script in headless Neovim; returns its results.
local function nvim(case)
  return h.nvim("nvim_uv.lua", { CASE = case, BASE = srv.base },
    { "OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL" })
end

-- At least 80% of an editor timer's expected ticks came.
local function ticked(r)
  local ticks, expected = tonumber(r.ticks), tonumber(r.expected)
  assert.is_true(expected >= 30, "the stream took " .. tostring(expected) .. " ticks' time")
  assert.is_true(ticks >= 0.8 * expected, ("%d ticks of %d expected"):format(ticks, expected))
  print(("\n# nvim: editor timer %d of %d expected ticks during the stream"):format(ticks, expected))
end

describe("doc/fetchstream.txt", function()
  it("is a help page: :helptags takes it, :help fetchstream opens it, its links lead somewhere", function()
    local r = nvim("doc")
    assert.is_nil(r.failure, r.failure)
    assert.are.equal("nil", r["helptags-error"])
    assert.are.equal("true", r.help)
    assert.are.equal("", r.broken)
    assert.is_true(tonumber(r.tags) >= 15, r.tags)
  end)
end)

describe("fetchstream.uv in headless Neovim", function()
  it("streams a chat into a buffer from ontext while an editor timer ticks; no E5560", function()
    local r = nvim("ontext")
    assert.is_nil(r.failure, r.failure)
    assert.are.equal("true", r.uv)
    assert.are.equal("nil", r.error)
    assert.are.equal(stub.CANNED_ANSWER, r.text)
    assert.are.equal("false", r.e5560)
    ticked(r)
    -- without the default wrap the same callback meets E5560: the stream
    -- ends with a callback error, as any callback that raises
    assert.are.equal("callback", r["nowrap-kind"])
    assert.are.equal("true", r["nowrap-e5560"])
  end)

  it("abort() from an editor timer closes the connection at once", function()
    local r = nvim("abort")
    assert.is_nil(r.failure, r.failure)
    assert.are.equal("from a timer", r.why)
    assert.are.equal("aborted", r.reason)
    assert.are.equal("true", r.closed)
  end)

  it("the coroutine form: a chat loop writes to a buffer, a loop aborted from a timer ends", function()
    local r = nvim("coroutine")
    assert.is_nil(r.failure, r.failure)
    assert.are.equal("true", r.spawned)
    assert.are.equal("nil", r.error)
    assert.are.equal(stub.CANNED_ANSWER, r.text)
    assert.are.equal("true", r.attached)
    ticked(r)
    assert.are.equal("nil", r["co-abort-error"])
    assert.are.equal("1", r["co-abort-events"])
    assert.are.equal("aborted", r["co-abort-reason"])
    assert.are.equal("true", r["co-abort-closed"])
    assert.are.equal("false", r.e5560)
  end)

  it("examples/nvim_chat.lua: :FetchChat streams into a scratch buffer, <C-c> aborts, errors notify", function()
    local r = nvim("example")
    assert.is_nil(r.failure, r.failure)
    assert.are.equal("true", r.name)
    assert.are.equal("done", r.state)
    assert.are.equal("> Hello there\n\n" .. stub.CANNED_ANSWER, r.text)
    assert.are.equal("aborted", r["abort-state"])
    assert.are.equal("[aborted]", r["abort-last"])
    assert.are.equal("error", r["error-state"])
    assert.are.equal("1", r.notes)
    assert.are.equal("true", r["note-level"])
    assert.is_truthy(r.note:find("http 401", 1, true), r.note)
    assert.are.equal("false", r.e5560)
  end)
end)
