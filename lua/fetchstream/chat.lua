--- LLM chat streams: OpenAI-compatible chat completions and Anthropic's
-- Messages API, as text deltas.
--
--   local chat <close> = fetch.chat(base_url, { model =, messages =, api_key = })
--   for text in chat do io.write(text) end
--   print(chat.finish_reason, chat.usage, chat.stats.deltas_per_second)
--
-- fetch.chat returns the chat object four times over, as a generic `for`
-- wants it: it is callable (the iterator), and it is the closing value, so a
-- `break` aborts the transfer; the result stays readable after the loop.
-- @module fetchstream.chat

local core = require "fetchstream.core"
local request = require "fetchstream.request"
local stream = require "fetchstream.stream"
local options = require "fetchstream.options"
local json = require "fetchstream.json"

local error, pairs, pcall, setmetatable, tostring, type = error, pairs, pcall, setmetatable, tostring, type
local now = core.now
local usage = options.usage

local _M = {}

local Chat = {}
Chat.__index = Chat
Chat.__name = "fetchstream.Chat"

-- A table whose keys are all strings: JSON object members.
local function fields_table(v)
  if type(v) ~= "table" then return "a table of request-body fields" end
  for k in pairs(v) do
    if type(k) ~= "string" then
      return ("a table of request-body fields, named by strings (it holds [%s])"):format(tostring(k))
    end
  end
end

-- Options that belong to the helper. The request options of the core are
-- passed to it, those in NOT_FOR_CHAT refused, and any other name is a field
-- of the request body unless check_extra takes it for a mistake.
local CHAT_OPTIONS = {
  model = options.string,
  messages = options.table,
  body = fields_table, -- fields sent verbatim: see build_body
  -- `api_key = os.getenv("KEY") or ""` (or `or false`) means a key was meant
  -- and is missing: say so rather than send no key and get a 401.
  api_key = function(v)
    if type(v) ~= "string" or not v:find("%S") then
      return "a non-empty string (leave it out when the server needs no key)"
    end
  end,
  -- The helper always streams: anything else would be replaced in silence.
  stream = function(v)
    if v ~= true then return "true or left out: fetch.chat always streams" end
  end,
  format = function(v)
    if v ~= "openai" and v ~= "anthropic" then return '"openai" or "anthropic"' end
  end,
  ontext = options.callable,
  ondone = options.callable,
  onerror = options.callable,
  onabort = options.callable,
}
local NOT_FOR_CHAT = { json = true, method = true, onmessage = true, on = true,
                       onclose = true, onopen = true, onchunk = true }

-- What a name that is neither the helper's nor a request option may be a
-- typo of: for a function value, the callbacks a chat takes; for any other
-- value, the options that are not callbacks (so that a body field such as
-- `context` is never taken for `ontext`).
local MEANT_FUNCTION, MEANT_VALUE = {}, {}
for _, spec in pairs({ request.REQUEST_OPTIONS, CHAT_OPTIONS }) do
  for name, check in pairs(spec) do
    if check == options.callable then MEANT_FUNCTION[name] = true else MEANT_VALUE[name] = true end
  end
end

-- The option `name` (holding `value`) may be meant for, or nil. Names under
-- three letters are never guessed (`n` is a body field, not `on`), nor an
-- option that `opts` or its body already gives (`models` beside `model`).
local function meant(name, value, opts)
  if #name < 3 then return nil end
  local fn = options.callable(value) == nil
  local candidates = {}
  local body = type(opts.body) == "table" and opts.body or {}
  for candidate in pairs(fn and MEANT_FUNCTION or MEANT_VALUE) do
    if opts[candidate] == nil and body[candidate] == nil then candidates[candidate] = true end
  end
  return options.suggest(name, candidates)
end

-- An unknown name goes into the request body (APIs add fields all the
-- time), unless it cannot be meant for the body: a function, or a name a
-- small edit away from an option (`idle_timout`, `reconect`, `api_ky`).
local function check_extra(name, value, opts)
  local guess = meant(name, value, opts)
  if options.callable(value) == nil then
    usage("option '%s' to 'chat' is a function, which cannot go into the request body%s", name,
      guess and (" (did you mean '%s'?)"):format(guess) or "")
  end
  if guess then
    usage("unknown option '%s' to 'chat' (did you mean '%s'?); to send a request-body field of that "
      .. "name, give body = { %s = ... }", name, guess, name)
  end
end

local ANTHROPIC_VERSION = "2023-06-01"
local ANTHROPIC_MAX_TOKENS = 1024

local function api_error(message, decoded)
  return core.error("api", message, { json = decoded })
end

local function error_message(e, fallback)
  if type(e) == "table" then
    if type(e.message) == "string" then return e.message end
    if type(e.error) == "table" and type(e.error.message) == "string" then return e.error.message end
  elseif type(e) == "string" then
    return e
  end
  return fallback
end

-- Result bookkeeping ------------------------------------------------------

local function add_text(chat, text)
  if chat._first_token == nil then
    chat._first_token = now()
    chat.stats.ttft = chat._first_token - chat._started
  end
  chat._deltas = chat._deltas + 1
  chat._parts[#chat._parts + 1] = text
  stream.push(chat._pending, text)
end

-- How many tokens the answer took, as the server counted them: OpenAI's
-- usage.completion_tokens, Anthropic's (and OpenAI Responses') output_tokens.
local function output_tokens(u)
  if type(u) ~= "table" then return nil end
  local n = u.completion_tokens
  if type(n) ~= "number" then n = u.output_tokens end
  if type(n) == "number" then return n end
end

-- `count` things over `span` seconds that start with the first one: the
-- first came at the start of the span, so count - 1 came within it (the
-- usual "output throughput after the first token"). nil below two.
local function rate(count, span)
  if count and count >= 2 and span > 0 then return (count - 1) / span end
end

-- The result once the stream has ended (every caller comes after the end;
-- a second call, e.g. chat:close() after the loop, changes nothing). The
-- rates share one time base: from the first text delta to the end of the
-- stream (its end marker, error or abort).
local function settle_stats(chat)
  local st = chat.stats
  local s = chat.stream
  if s then st.ttfb = s:times() end
  chat._ended = chat._ended or now()
  if chat._first_token then
    local span = chat._ended - chat._first_token
    st.deltas_per_second = rate(chat._deltas, span)
    st.tokens_per_second = rate(output_tokens(chat.usage), span)
  end
  st.deltas = chat._deltas
  chat.text = table.concat(chat._parts)
end

-- OpenAI: assemble tool calls from their deltas, by index.
local function merge_tool_calls(chat, deltas)
  for _, d in pairs(deltas) do
    local i = (type(d.index) == "number" and d.index or 0) + 1
    local call = chat.tool_calls[i]
    if not call then
      call = { type = "function", ["function"] = { name = "", arguments = "" } }
      chat.tool_calls[i] = call
    end
    if type(d.id) == "string" then call.id = d.id end
    if type(d.type) == "string" then call.type = d.type end
    local fn = d["function"]
    if type(fn) == "table" then
      if type(fn.name) == "string" then call["function"].name = call["function"].name .. fn.name end
      if type(fn.arguments) == "string" then
        call["function"].arguments = call["function"].arguments .. fn.arguments
      end
    end
  end
end

-- Each handler takes one event and returns "done" at the end marker, or
-- nil, err for an error reported inside the stream.

local function openai_event(chat, ev)
  if ev.data == "[DONE]" then return "done" end
  if ev.event == "error" then
    local decoded = ev:json()
    return nil, api_error(error_message(decoded and decoded.error or decoded, ev.data), decoded)
  end
  local obj, err = ev:json()
  if obj == nil then return nil, err end
  if type(obj) ~= "table" then return end
  if obj.error ~= nil then
    return nil, api_error(error_message(obj.error, "the API reported an error"), obj)
  end
  if type(obj.model) == "string" then chat.model = obj.model end
  if type(obj.usage) == "table" then chat.usage = obj.usage end
  local choice = type(obj.choices) == "table" and obj.choices[1]
  if type(choice) ~= "table" then return end
  local delta = choice.delta
  if type(delta) == "table" then
    if type(delta.content) == "string" and delta.content ~= "" then add_text(chat, delta.content) end
    if type(delta.tool_calls) == "table" then merge_tool_calls(chat, delta.tool_calls) end
  end
  if type(choice.finish_reason) == "string" then chat.finish_reason = choice.finish_reason end
end

local function anthropic_event(chat, ev)
  local name = ev.event
  if name == "ping" then return end
  local obj, err = ev:json()
  if obj == nil then return nil, err end
  if type(obj) ~= "table" then return end
  if name == "error" or obj.type == "error" then
    return nil, api_error(error_message(obj.error, ev.data), obj)
  end
  if name == "message_start" and type(obj.message) == "table" then
    chat.model = obj.message.model
    if type(obj.message.usage) == "table" then chat.usage = obj.message.usage end
  elseif name == "content_block_start" and type(obj.content_block) == "table" then
    local block = obj.content_block
    if block.type == "tool_use" then
      chat.tool_calls[#chat.tool_calls + 1] = { id = block.id, type = "tool_use", name = block.name,
                                                input = "", _index = obj.index }
    end
  elseif name == "content_block_delta" and type(obj.delta) == "table" then
    local d = obj.delta
    if d.type == "text_delta" and type(d.text) == "string" and d.text ~= "" then
      add_text(chat, d.text)
    elseif d.type == "input_json_delta" and type(d.partial_json) == "string" then
      for _, call in pairs(chat.tool_calls) do
        if call._index == obj.index then call.input = call.input .. d.partial_json end
      end
    end
  elseif name == "message_delta" then
    if type(obj.delta) == "table" and type(obj.delta.stop_reason) == "string" then
      chat.finish_reason = obj.delta.stop_reason
    end
    if type(obj.usage) == "table" then
      chat.usage = chat.usage or {}
      for k, v in pairs(obj.usage) do chat.usage[k] = v end
    end
  elseif name == "message_stop" then
    return "done"
  end
end

-- The iterator ------------------------------------------------------------

local function eof_error(chat)
  return stream.about(chat.stream, core.error("eof",
    ("the %s stream ended before its end marker: the answer is truncated")
      :format(chat.format == "anthropic" and "Messages" or "chat completion")))
end

-- Ends the underlying stream as `done` (the end marker) or with err; never
-- reconnects after the end marker.
local function settle(chat, err)
  local s = chat.stream
  if err then
    chat.error = err
    stream.finish(s, err.kind, err)
  else
    chat.done = true
    stream.finish(s, "done")
  end
  settle_stats(chat)
end

--- One step of the `for` loop: the next text delta, or nil at the end.
-- Raises the error that ended the chat.
function Chat:__call()
  while true do
    local text = stream.pop(self._pending)
    if text then return text end
    if self.error then error(self.error, 0) end
    if self.done or self.stream.reason == "aborted" then return nil end
    local s = self.stream
    local ev, err = s:next()
    if ev then
      local mark, e = self._handle(self, ev)
      if mark == "done" or e then settle(self, e) end
    else
      if not err and s.reason == "done" then err = eof_error(self) end
      self.error = err
      settle_stats(self)
      if err then error(err, 0) end
      return nil
    end
  end
end

--- `chat:close()`: abort the transfer if it still runs; also `__close`.
-- What arrived so far stays readable (chat.text, chat.stats).
function Chat:close()
  if self.stream then self.stream:close() end
  settle_stats(self)
end
Chat.__close = Chat.close

--- `chat:abort([reason])`: stop the chat now (callbacks: onabort fires).
function Chat:abort(why)
  if self.stream then self.stream:abort(why) end
  settle_stats(self)
end

-- Building the request ------------------------------------------------------

-- The API root without trailing slashes, and its query string ("" if none).
local function split_base(base)
  local root, query = base:match("^([^?]*)(.*)$")
  return (root:gsub("/+$", "")), query
end

-- The API root plus the endpoint's path, unless the root already ends with
-- it (`.../v1/chat/completions`, `.../v1/messages`); a query string
-- (Azure's ?api-version=...) stays at the end.
local function endpoint(base, anthropic)
  local root, query = split_base(base)
  local path = anthropic and "/messages" or "/chat/completions"
  if root:sub(-#path) ~= path then root = root .. path end
  return root .. query
end

-- The request body: the fields of `body` (copied, never changed), then the
-- other top-level fields over them, then model and messages when given at
-- the top level, and stream = true. model and messages may come from either.
local function build_body(chat_opts, extra)
  local body = {}
  for k, v in pairs(chat_opts.body or {}) do body[k] = v end
  for k, v in pairs(extra) do body[k] = v end
  if chat_opts.model ~= nil then body.model = chat_opts.model end
  if chat_opts.messages ~= nil then body.messages = chat_opts.messages end
  if body.model == nil then usage("'chat' needs a model (model = or body = { model = })") end
  if body.messages == nil then usage("'chat' needs messages (messages = or body = { messages = })") end
  if body.stream ~= nil and body.stream ~= true then
    usage("field 'stream' of the body to 'chat' must be true or left out: fetch.chat always streams, got %s",
      tostring(body.stream))
  end
  body.stream = true
  return body
end

--- `fetch.chat(client, base_url, opts)` -> chat, nil, nil, chat
function _M.chat(client, base_url, opts)
  if type(base_url) ~= "string" then
    usage("bad argument #1 to 'chat' (base URL string expected, got %s)", type(base_url))
  end
  if type(opts) ~= "table" then usage("bad argument #2 to 'chat' (options table expected)") end
  local anthropic = opts.format == "anthropic"
    or (opts.format == nil and split_base(base_url):find("/messages$") ~= nil)
  local req_opts, extra, chat_opts = {}, {}, {}
  local request_names = request.REQUEST_OPTIONS
  for name, value in pairs(opts) do
    if type(name) ~= "string" then
      usage("option names to 'chat' are strings, got [%s] (messages go in messages = { ... })", tostring(name))
    elseif NOT_FOR_CHAT[name] then
      usage("option '%s' is not for 'chat' (the helper builds the request)", name)
    elseif CHAT_OPTIONS[name] then
      chat_opts[name] = value
    elseif request_names[name] then
      req_opts[name] = value
    else
      check_extra(name, value, opts)
      extra[name] = value
    end
  end
  options.check("chat", chat_opts, CHAT_OPTIONS)
  local body = build_body(chat_opts, extra)
  if anthropic and body.max_tokens == nil then body.max_tokens = ANTHROPIC_MAX_TOKENS end
  local ok, encoded = pcall(json.encode, body)
  if not ok then usage("the request body of 'chat' cannot be encoded as JSON: %s", tostring(encoded)) end

  local given = req_opts.headers
  if given ~= nil and type(given) ~= "table" then
    usage("option 'headers' to 'chat' must be a table of name = value, got %s", type(given))
  end
  local headers, content_type = {}, false
  for k, v in pairs(given or {}) do
    headers[k] = v
    if type(k) == "string" and k:lower() == "content-type" then content_type = true end
  end
  if not content_type then headers["content-type"] = "application/json" end
  if anthropic then
    if chat_opts.api_key then headers["x-api-key"] = chat_opts.api_key end
    headers["anthropic-version"] = headers["anthropic-version"] or ANTHROPIC_VERSION
  elseif chat_opts.api_key then
    headers.authorization = "Bearer " .. chat_opts.api_key
  end
  req_opts.headers, req_opts.body, req_opts.method = headers, encoded, "POST"

  local chat = setmetatable({
    format = anthropic and "anthropic" or "openai",
    text = "", tool_calls = {}, stats = {},
    _parts = {}, _pending = stream.queue(), _deltas = 0, -- _pending: texts not yet handed out
    _handle = anthropic and anthropic_event or openai_event,
    _started = now(),
  }, Chat)
  local url = endpoint(base_url, anthropic)

  local ontext, ondone, onerror = chat_opts.ontext, chat_opts.ondone, chat_opts.onerror
  if ontext or ondone or onerror or chat_opts.onabort then
    -- Callback form: driven by run(), like any fetch.stream.
    req_opts.onmessage = function(ev)
      local mark, err = chat._handle(chat, ev)
      for text in stream.pop, chat._pending do
        if ontext then ontext(text) end
        if chat.stream.reason then return end
      end
      if mark == "done" or err then settle(chat, err) end
    end
    req_opts.onclose = function()
      settle_stats(chat)
      if chat.done then
        if ondone then ondone(chat) end
      else -- the server ended the response before the end marker
        chat.error = eof_error(chat)
        if onerror then onerror(chat.error) end
      end
    end
    req_opts.onerror = function(err)
      chat.error = chat.error or err
      settle_stats(chat)
      if onerror then onerror(err) end
    end
    local onabort = chat_opts.onabort
    req_opts.onabort = function(why)
      settle_stats(chat)
      if onabort then onabort(why) end
    end
    chat.stream = client:stream(url, req_opts)
    return chat
  end
  chat.stream = client:_start("chat", url, req_opts, false, "events")
  return chat, nil, nil, chat
end

return _M
