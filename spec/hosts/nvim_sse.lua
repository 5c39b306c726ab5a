-- Run by spec/nvim_spec.lua inside headless Neovim (LuaJIT):
--   nvim --headless -u NONE -i NONE -c 'luafile spec/hosts/nvim_sse.lua'
-- with FETCHSTREAM_ROOT (the checkout), FETCHSTREAM_BUILD (its LuaJIT build),
-- SSE_URL (a stream the curl CLI reads through a Neovim job), EVENTS_URL
-- (a stream read with fetch.events) and OUT (where the results go, one per
-- line). It quits Neovim when done.

local root, build = os.getenv("FETCHSTREAM_ROOT"), os.getenv("FETCHSTREAM_BUILD")
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = build .. "/?.so;" .. package.cpath

local out = assert(io.open(os.getenv("OUT"), "w"))
local function say(...) out:write(table.concat({ ... }, " "), "\n") end

local ok, err = pcall(function()
  -- 1. The parser alone, fed a job's output as it arrives: no curl loaded.
  local sse = require "fetchstream.sse"
  say("sse-without-core", tostring(package.loaded["fetchstream.core"] == nil))
  local p, pieces, done = sse.parser(), 0, false
  local got = {}
  vim.fn.jobstart({ "curl", "-sN", os.getenv("SSE_URL") }, {
    -- Neovim splits a job's output into lines: joined with "\n" they are the
    -- bytes of this piece again, cut wherever the pipe cut them.
    on_stdout = function(_, data)
      pieces = pieces + 1
      for ev in p:feed(table.concat(data, "\n")) do got[#got + 1] = ev.id .. "=" .. ev.data end
    end,
    on_exit = function() done = true end,
  })
  assert(vim.wait(10000, function() return done end, 10), "the curl job did not end")
  say("job-events", table.concat(got, ","))
  say("job-pieces", tostring(pieces > 1))

  -- 2. The whole library: a fetch.events loop to the end (it blocks the editor).
  local fetch = require "fetchstream"
  local datas = {}
  for ev in fetch.events(os.getenv("EVENTS_URL")) do datas[#datas + 1] = ev.data end
  say("fetch-events", table.concat(datas, ","))
  say("jit", tostring(jit ~= nil))
end)
if not ok then say("error", tostring(err)) end
out:close()
vim.cmd("qall!")
