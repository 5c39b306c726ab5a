-- Neovim (Debian's 0.7.2, on LuaJIT): both modules load from the LuaJIT build
-- inside a headless editor; fetchstream.sse parses a stream that a Neovim job
-- (the curl command line) reads from the stub server in arbitrary pieces, and
-- a fetch.events loop runs to the end. The script is spec/hosts/nvim_sse.lua.

local stub = require "spec.server"
local h = require "spec.helpers"

local srv
setup(function()
  h.build_luajit()
  srv = stub.start()
end)
teardown(function() srv:stop() end)

-- Run the script in headless Neovim; returns its result lines as a table.
local function nvim(env) return h.nvim("nvim_sse.lua", env) end

describe("headless Neovim", function()
  it("parses a job's output with fetchstream.sse and runs a fetch.events loop", function()
    local r = nvim {
      SSE_URL = srv:url("/count?n=6&delay=30"),
      EVENTS_URL = srv:url("/count?n=3&start=7"),
    }
    assert.is_nil(r.error, r.error)
    assert.are.equal("true", r.jit)
    assert.are.equal("true", r["sse-without-core"])
    assert.are.equal("1=1,2=2,3=3,4=4,5=5,6=6", r["job-events"])
    assert.are.equal("true", r["job-pieces"])
    assert.are.equal("7,8,9", r["fetch-events"])
  end)
end)
