-- Ollama's native chat API streams NDJSON, one JSON object per line, not SSE.
-- fetch.chat with format = "ollama" reads it: message.content as text,
-- message.thinking as reasoning, the final done line's counts and durations
-- as chat.usage and chat.stats. Prints the answer as it comes, then the
-- final line's done_reason and eval_count (and, on stderr, the server's own
-- generation speed).
--
--   lua5.4 examples/ollama_ndjson.lua               -- against the bundled stub server
--   OLLAMA_HOST=http://127.0.0.1:11434 OLLAMA_MODEL=llama3.2 lua5.4 examples/ollama_ndjson.lua Hi!
--
-- (fetch.ndjson(url, opts) gives the decoded lines themselves, for any other
-- JSON-lines stream.) Run it from the repo root after `make`; it needs no
-- LUA_PATH (see examples/paths.lua).

dofile((arg[0]:match("^.*/") or "./") .. "paths.lua") -- the checkout's module; drop once installed
local fetch = require "fetchstream"

local host = os.getenv("OLLAMA_HOST")
local server
if not host then -- no Ollama given: start the stub server that ships in spec/
  server = require("spec.server").start()
  host = server.base
end
if not host:find("^https?://") then host = "http://" .. host end -- OLLAMA_HOST=127.0.0.1:11434
local prompt = #arg > 0 and table.concat(arg, " ") or "Say hello to a Lua programmer."

io.write("> ", prompt, "\n")
local ok, chat = pcall(function() -- on failure, `chat` is the error
  local chat = fetch.chat(host, {   -- the host: /api/chat is appended
    format = "ollama",
    model = os.getenv("OLLAMA_MODEL") or "llama3.2",
    messages = { { role = "user", content = prompt } },
    first_byte_timeout = 120,       -- Ollama may load the model first
    idle_timeout = 60,
  })
  for text in chat do               -- a line without done = true at the end is an eof error,
    io.write(text)                  -- an {"error": ...} line an api error: the loop raises them
    io.flush()
  end
  return chat
end)
if server then server:stop() end
if not ok then
  io.write("\n")
  io.flush()
  io.stderr:write(tostring(chat), "\n")
  os.exit(1)
end

local eval_count = chat.usage and chat.usage.eval_count or 0
io.write(("\n-- %s, eval_count %d\n"):format(chat.finish_reason or "done", eval_count))
local secs = chat.stats.eval_duration
if secs and secs > 0 then
  io.stderr:write(("-- %.0f tokens/s as the server measured it\n"):format(eval_count / secs))
end
