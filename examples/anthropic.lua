-- Stream an answer from Anthropic's Messages API: fetch.chat with
-- format = "anthropic" reads its named events (message_start,
-- content_block_delta, message_delta, message_stop, ...) as text deltas.
--
--   lua5.4 examples/anthropic.lua                  -- against the bundled stub server
--   ANTHROPIC_API_KEY=sk-ant-... lua5.4 examples/anthropic.lua "Write a haiku about Lua."
--
-- ANTHROPIC_BASE_URL is the API host as Anthropic's SDKs take it (default
-- https://api.anthropic.com); ANTHROPIC_MODEL picks the model. Run it from
-- the repo root after `make`; it needs no LUA_PATH (see examples/paths.lua).

dofile((arg[0]:match("^.*/") or "./") .. "paths.lua") -- the checkout's module; drop once installed
local fetch = require "fetchstream"

local host, key = os.getenv("ANTHROPIC_BASE_URL"), os.getenv("ANTHROPIC_API_KEY")
local server
if not (host or key) then -- no API given: start the stub server that ships in spec/
  server = require("spec.server").start()
  host = server.base
end
host = (host or "https://api.anthropic.com"):gsub("/+$", "")
local prompt = #arg > 0 and table.concat(arg, " ") or "Say hello to a Lua programmer."

io.write("> ", prompt, "\n")
local ok, chat = pcall(function() -- on failure, `chat` is the error
  local chat = fetch.chat(host .. "/v1", {
    format = "anthropic",          -- x-api-key, anthropic-version, max_tokens
    model = os.getenv("ANTHROPIC_MODEL") or "claude-haiku-4-5",
    messages = { { role = "user", content = prompt } },
    max_tokens = 512,              -- any other field goes into the request body
    api_key = key,
    first_byte_timeout = 60,
    idle_timeout = 60,
  })
  for text in chat do
    io.write(text)
    io.flush()
  end
  return chat
end)
io.write("\n")
io.flush()
if server then server:stop() end
if not ok then
  io.stderr:write(tostring(chat), "\n")
  os.exit(1)
end

local out = chat.usage and chat.usage.output_tokens
io.stderr:write(("-- %s (%s): %d deltas%s, first token after %.0f ms\n"):format(
  chat.finish_reason or "no stop reason", chat.model or "?", chat.stats.deltas,
  out and (", %d output tokens"):format(out) or "", (chat.stats.ttft or 0) * 1000))
