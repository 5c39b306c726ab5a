-- Spec for fetch.chat with Lua 5.4's to-be-closed variables: `local chat
-- <close> = fetch.chat(...)`, the form the README shows. Only Lua 5.4 parses
-- this file; the LuaJIT pass leaves out every *_lua54_spec.lua (see .busted).
-- On LuaJIT a chat is closed by chat:close(), or by the collector when it is
-- dropped (spec/chat_spec.lua).

local fetch = require "fetchstream"
local h = require "spec.helpers"
local stub = require "spec.server"

local srv
setup(function() srv = stub.start() end)
teardown(function() srv:stop() end)

local MESSAGES = { { role = "system", content = "be brief" }, { role = "user", content = "say hello to me" } }

local tag = h.tagger("chat54")

-- The API root on the stub, 1 ms between tokens.
local function openai() return srv:url("/v1?delay=1") end

local function opts() return { model = "stub-model", messages = MESSAGES } end

describe("fetch.chat with <close> (Lua 5.4)", function()
  it("the result is readable after a `local chat <close>` loop", function()
    local chat <close> = fetch.chat(openai(), opts())
    local parts = {}
    for text in chat do parts[#parts + 1] = text end
    assert.are.equal(stub.CANNED_ANSWER, table.concat(parts))
    assert.are.equal(stub.CANNED_ANSWER, chat.text)
    assert.are.equal("stop", chat.finish_reason)
    -- a finished iterator stays finished
    assert.is_nil(chat())
  end)

  it("leaving the scope of `local chat <close>` mid-answer aborts it", function()
    local t = tag("scope")
    local keep
    do
      local chat <close> = fetch.chat(srv:url("/v1?delay=50&tag=" .. t), opts())
      keep = chat
      assert.are.equal("Hello", chat()) -- one step of `for text in chat`
      -- chat is not a loop's closing value here: it runs until the scope ends
      assert.is_nil(chat.stream.reason)
    end
    assert.are.equal("aborted", keep.stream.reason)
    assert.is_true((srv:wait_closed(t, 3)))
  end)
end)
