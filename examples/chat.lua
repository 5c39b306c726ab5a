-- Stream a chat answer token by token, as it arrives.
--
--   make demo                      -- against the bundled stub server
--   OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-... \
--     LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;' lua5.4 examples/chat.lua
--
-- OPENAI_MODEL picks the model; the prompt is the command line, if any.

local fetch = require "fetchstream"

local base, key = os.getenv("OPENAI_BASE_URL"), os.getenv("OPENAI_API_KEY")
local server
if not base then -- no API given: start the stub server that ships in spec/
  server = require("spec.server").start()
  base = server:url("/v1")
end
local prompt = #arg > 0 and table.concat(arg, " ") or "Say hello to a Lua programmer."

io.write("> ", prompt, "\n")
local ok, err = pcall(function()
  for ev in fetch.events(base .. "/chat/completions", {
    headers = key and { authorization = "Bearer " .. key } or nil,
    json = {
      model = os.getenv("OPENAI_MODEL") or "gpt-4o-mini",
      stream = true,
      messages = { { role = "user", content = prompt } },
    },
    first_byte_timeout = 60,
    idle_timeout = 60,
  }) do
    if ev.data == "[DONE]" then break end
    local chunk = assert(ev:json())
    local choice = chunk.choices and chunk.choices[1]
    local text = choice and choice.delta and choice.delta.content
    if type(text) == "string" then
      io.write(text)
      io.flush()
    end
  end
end)
io.write("\n")
if server then server:stop() end
if not ok then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end
