-- Start and stop the stub HTTP server (spec/server/server.lua) from specs.
--
--   local stub = require "spec.server"
--   local srv = stub.start()            -- or stub.start{ lifetime = 120 }
--   local url = srv:url("/count?n=3")   -- "http://127.0.0.1:<port>/count?n=3"
--   ...
--   srv:stop()                           -- idempotent; also on __close / __gc
--
-- The server is a separate lua5.4 process; see spec/server/README.md for the
-- routes. This file has no side effects when loaded (server.lua itself loads
-- it with dofile to share the canned chat answer).

local stub = {}

-- The canned chat answer, token by token (leading spaces kept, as OpenAI
-- does). /v1/chat/completions and /v1/messages stream these tokens.
stub.CANNED_TOKENS = {
  "Hello", "!", " I", " am", " the", " fetch", "stream", " stub", " server", ".",
  " Every", " word", " you", " see", " arrived", " as", " its", " own",
  " server", "-sent", " event", ".",
}
stub.CANNED_ANSWER = table.concat(stub.CANNED_TOKENS)

-- The reasoning that the LLM routes stream before the answer with
-- reasoning=1 (OpenAI-compatible reasoning_content, Anthropic thinking,
-- Responses reasoning summary, Ollama message.thinking), token by token.
stub.CANNED_REASONING = { "The", " user", " wants", " a", " greeting", ";", " keep", " it", " short", "." }
stub.CANNED_REASONING_TEXT = table.concat(stub.CANNED_REASONING)

-- The tool calls that /v1/chat/completions?tools=1 streams. Each call's
-- arguments arrive in these pieces, one delta each (OpenAI style).
stub.TOOL_CALL_PIECES = {
  { id = "call_1", name = "get_weather", pieces = { '{"city":', '"Paris",', '"unit":', '"c"}' } },
  { id = "call_2", name = "get_time", pieces = { '{"tz":', '"CET"}' } },
}

-- The same calls in OpenAI's final (non-streamed) shape, as a chat helper
-- should rebuild them: { {id=, type="function", ["function"]={name=, arguments=}}, ... }.
stub.TOOL_CALLS = {}
for i, call in ipairs(stub.TOOL_CALL_PIECES) do
  stub.TOOL_CALLS[i] = {
    id = call.id, type = "function",
    ["function"] = { name = call.name, arguments = table.concat(call.pieces) },
  }
end

local here = debug.getinfo(1, "S").source
here = here:sub(1, 1) == "@" and here:sub(2) or here
stub.DIR = here:match("^(.*)[/\\]") or "."
stub.SERVER = stub.DIR .. "/server.lua"

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local Server = {}
Server.__index = Server

function Server:url(path)
  return self.base .. (path or "")
end

-- One raw HTTP/1.1 GET on a fresh connection; returns status, body or
-- nil, err. Good enough for the server's own small responses.
function Server:get(path, timeout)
  local socket = require "socket"
  local s = socket.tcp()
  s:settimeout(timeout or 5)
  local ok, err = s:connect("127.0.0.1", self.port)
  if not ok then s:close(); return nil, err end
  ok, err = s:send("GET " .. path .. " HTTP/1.1\r\nHost: 127.0.0.1:" .. self.port
    .. "\r\nConnection: close\r\n\r\n")
  if not ok then s:close(); return nil, err end
  local data, rerr, partial = s:receive("*a")
  s:close()
  data = data or partial
  if not data or data == "" then return nil, rerr or "empty response" end
  local status = tonumber(data:match("^HTTP/%d%.%d (%d%d%d)"))
  local head, body = data:match("^(.-)\r\n\r\n(.*)$")
  if head and head:lower():find("\ntransfer%-encoding:%s*chunked") then
    local out, i = {}, 1
    while true do
      local size, nexti = body:match("^(%x+)[^\r\n]*\r\n()", i)
      size = size and tonumber(size, 16)
      if not size or size == 0 then break end
      out[#out + 1] = body:sub(nexti, nexti + size - 1)
      i = nexti + size + 2
    end
    body = table.concat(out)
  end
  return status, body
end

-- What the server saw for requests carrying tag=T: { closed =, requests = },
-- plus last_event_ids = { ... } and connections = n once a /feed request
-- carried the tag.
function Server:log(tag)
  local status, body = self:get("/log?tag=" .. tostring(tag):gsub("[^%w%-_%.~]", function(c)
    return string.format("%%%02X", c:byte())
  end))
  if status ~= 200 then return nil, body end
  local cjson = require "cjson"
  return cjson.decode(body)
end

-- Poll /log until the server has seen the client close the tagged request.
function Server:wait_closed(tag, timeout)
  local socket = require "socket"
  local deadline = socket.gettime() + (timeout or 5)
  repeat
    local log = self:log(tag)
    if log and log.closed then return true, log end
    socket.sleep(0.02)
  until socket.gettime() > deadline
  return false, self:log(tag)
end

function Server:stop()
  if self.stopped then return true end
  self.stopped = true
  local status = self:get("/__quit", 3)
  if status ~= 200 and self.pid then
    os.execute("kill " .. self.pid .. " 2>/dev/null")
  end
  if self.proc then
    self.proc:close() -- waits for the server process to exit
    self.proc = nil
  end
  return true
end

local function safe_stop(self) pcall(Server.stop, self) end
Server.__close = safe_stop
Server.__gc = safe_stop

-- stub.start([opts]) -> server object
--   opts.lifetime  seconds before the server exits by itself (default 600)
--   opts.verbose   log requests to stderr
--   opts.lua       interpreter (default "lua5.4")
--   opts.watch_parent  false: do not exit when this process dies (default:
--                      the server exits within ~1 s after its parent dies)
function stub.start(opts)
  opts = opts or {}
  -- env -u LD_PRELOAD: under the ASan pass the sanitizer runtime is preloaded
  -- into busted; the server is plain Lua and must not inherit it.
  local cmd = "echo $$; exec env -u LD_PRELOAD " .. (opts.lua or "lua5.4") .. " " .. shell_quote(stub.SERVER)
    .. " --lifetime " .. tostring(tonumber(opts.lifetime) or 600)
    .. (opts.verbose and " --verbose" or "")
    .. (opts.watch_parent == false and "" or " --watch-parent")
  local proc = assert(io.popen(cmd, "r"))
  local pid = tonumber(proc:read("l"))
  local line = proc:read("l")
  local port = line and tonumber(line:match("^PORT (%d+)$"))
  if not port then
    if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
    proc:close()
    error("spec.server: the stub server did not start (got " .. tostring(line) .. ")", 2)
  end
  local srv = setmetatable({
    port = port,
    base = "http://127.0.0.1:" .. port,
    pid = pid,
    proc = proc,
    stopped = false,
  }, Server)
  return srv
end

return stub
