-- Ollama's native chat API streams NDJSON, one JSON object per line, not SSE:
-- fetch.ndjson decodes each line as it arrives. Prints message.content as it
-- comes, then the final object's eval_count.
--
--   lua5.4 examples/ollama_ndjson.lua               -- against the bundled stub server
--   OLLAMA_HOST=http://127.0.0.1:11434 OLLAMA_MODEL=llama3.2 lua5.4 examples/ollama_ndjson.lua Hi!
--
-- Run it from the repo root after `make`; it needs no LUA_PATH (see
-- examples/paths.lua).

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
local ok, err = pcall(function()
  local final
  for obj in fetch.ndjson(host:gsub("/+$", "") .. "/api/chat", {
    json = {                          -- a json body: POST, content-type: application/json
      model = os.getenv("OLLAMA_MODEL") or "llama3.2",
      messages = { { role = "user", content = prompt } },
    },
    first_byte_timeout = 120,         -- Ollama may load the model first
    idle_timeout = 60,
  }) do
    if obj.error then error(fetch.error("api", obj.error), 0) end -- Ollama's errors mid-stream
    io.write(obj.message and obj.message.content or "")
    io.flush()
    if obj.done then final = obj end
  end
  if not final then error(fetch.error("eof", "the stream ended before its done line"), 0) end
  io.write(("\n-- %s, eval_count %d\n"):format(final.done_reason or "done", final.eval_count or 0))
end)
if server then server:stop() end
if not ok then
  io.write("\n")
  io.flush()
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end
