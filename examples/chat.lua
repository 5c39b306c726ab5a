-- Stream a chat answer token by token with fetch.chat, then print a one-line
-- summary from the chat object (finish reason, deltas, time to first token,
-- speed) on stderr.
--
--   make demo                                        -- against the bundled stub server
--   lua5.4 examples/chat.lua "Why is the sky blue?"  -- the prompt is the command line
--   OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-... lua5.4 examples/chat.lua
--
-- OPENAI_MODEL picks the model. Run it from the repo root after `make`; it
-- needs no LUA_PATH (see examples/paths.lua).

dofile((arg[0]:match("^.*/") or "./") .. "paths.lua") -- the checkout's module; drop once installed
local fetch = require "fetchstream"

local base, key = os.getenv("OPENAI_BASE_URL"), os.getenv("OPENAI_API_KEY")
local server
if not base then -- no API given: start the stub server that ships in spec/
  server = require("spec.server").start()
  base = server:url("/v1")
end
local prompt = #arg > 0 and table.concat(arg, " ") or "Say hello to a Lua programmer."

io.write("> ", prompt, "\n")
local ok, chat = pcall(function() -- on failure, `chat` is the error
  local chat = fetch.chat(base, {
    model = os.getenv("OPENAI_MODEL") or "gpt-4o-mini",
    messages = { { role = "user", content = prompt } },
    api_key = key,
    stream_options = { include_usage = true }, -- usage: the token count for tokens/s
    first_byte_timeout = 60,
    idle_timeout = 60,
  })
  for text in chat do -- the chat object is the iterator...
    io.write(text)
    io.flush()
  end
  return chat         -- ...and the result, once the loop is over
end)
io.write("\n")
io.flush()
if server then server:stop() end
if not ok then
  io.stderr:write(tostring(chat), "\n")
  os.exit(1)
end

local st = chat.stats
io.stderr:write(("-- %s: %d deltas, first token after %.0f ms%s\n"):format(
  chat.finish_reason or "no finish reason", st.deltas, (st.ttft or 0) * 1000,
  st.tokens_per_second and (", %.0f tokens/s"):format(st.tokens_per_second)
    or st.deltas_per_second and (", %.0f deltas/s"):format(st.deltas_per_second) or ""))
