-- Three chat answers at once: fetch.chat with callbacks (ontext, ondone,
-- onerror) starts each one, and fetch.run drives them all on one connection
-- pool. Every 0.2 s the text that arrived since is printed, one line per
-- stream, so the answers interleave as they really come in.
--
--   lua5.4 examples/many_streams.lua               -- against the bundled stub server
--   OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-... lua5.4 examples/many_streams.lua
--
-- OPENAI_MODEL picks the model. Run it from the repo root after `make`; it
-- needs no LUA_PATH (see examples/paths.lua).

dofile((arg[0]:match("^.*/") or "./") .. "paths.lua") -- the checkout's module; drop once installed
local fetch = require "fetchstream"

local base, key = os.getenv("OPENAI_BASE_URL"), os.getenv("OPENAI_API_KEY")
local server
if not base then -- no API given: start the stub server that ships in spec/
  server = require("spec.server").start()
end

local questions = { "Name a fruit.", "Name a colour.", "Name a planet." }
local answers = {} -- per stream: the text not printed yet, and how it ended

for i, question in ipairs(questions) do
  local a = { tag = ("[%d]"):format(i), new = {} }
  answers[i] = a
  io.write("> ", a.tag, " ", question, "\n")
  -- (from the stub, each answer comes at its own pace: ms between tokens)
  local url = server and server:url(("/v1?delay=%d"):format(10 + 15 * i)) or base
  fetch.chat(url, {
    model = os.getenv("OPENAI_MODEL") or "gpt-4o-mini",
    messages = { { role = "user", content = question } },
    api_key = key,
    idle_timeout = 60,
    ontext = function(text) a.new[#a.new + 1] = text end,
    ondone = function(chat)
      a.ended = ("done: %s, %d deltas, %.0f deltas/s"):format(
        chat.finish_reason or "?", chat.stats.deltas, chat.stats.deltas_per_second or 0)
    end,
    onerror = function(err) a.ended, a.failed = tostring(err), true end,
  })
end

local function print_new()
  for _, a in ipairs(answers) do
    if #a.new > 0 then
      io.write(a.tag, " ", table.concat(a.new), "\n")
      a.new = {}
    end
    if a.ended then
      local out = a.failed and io.stderr or io.stdout
      io.flush()
      out:write("-- ", a.tag, " ", a.ended, "\n")
      a.ended = nil
    end
  end
  io.flush()
end

local ok, err = pcall(function()
  repeat
    local all_ended = fetch.run(0.2) -- false: 0.2 s went by and some are still running
    print_new()
  until all_ended
end)
if server then server:stop() end
if not ok then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end
for _, a in ipairs(answers) do
  if a.failed then os.exit(1) end
end
