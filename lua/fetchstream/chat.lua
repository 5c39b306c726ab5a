--- LLM chat streams: OpenAI Chat Completions (and every server that copies
-- it), OpenAI's Responses API, Anthropic's Messages API and Ollama's native
-- /api/chat, as text deltas.
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
local lines = require "fetchstream.lines"

local error, getmetatable, ipairs, next, pairs, pcall, setmetatable, tonumber, tostring, type =
  error, getmetatable, ipairs, next, pairs, pcall, setmetatable, tonumber, tostring, type
local floor, math_min, math_random, os_time = math.floor, math.min, math.random, os.time
local table_concat = table.concat
local now = core.now
local usage = options.usage

local _M = {}

local Chat = {}
Chat.__index = Chat
Chat.__name = "fetchstream.Chat"

-- The wire formats: the endpoint appended to base_url, how the body reads
-- (SSE events or NDJSON lines), the end marker (for the eof message) and the
-- name the eof message gives the stream.
local FORMATS = {
  openai = { path = "/chat/completions", read = "events", name = "chat completion", marker = "[DONE]" },
  responses = { path = "/responses", read = "events", name = "Responses", marker = "response.completed" },
  anthropic = { path = "/messages", read = "events", name = "Messages", marker = "message_stop" },
  ollama = { path = "/api/chat", read = "lines", name = "Ollama chat", marker = '"done": true' },
}

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
    if not FORMATS[v] then return '"openai", "responses", "anthropic" or "ollama"' end
  end,
  max_retries = options.whole_number,
  ontext = options.callable,
  onreasoning = options.callable,
  ondata = options.callable,
  ondone = options.callable,
  onerror = options.callable,
  onabort = options.callable,
}
local NOT_FOR_CHAT = { json = true, method = true, onmessage = true, on = true,
                       onclose = true, onopen = true, onchunk = true }
-- Request options that belong to SSE, which an NDJSON chat (Ollama) cannot
-- use: reconnecting would start the answer again from its first word.
local SSE_ONLY = { reconnect = true, last_event_id = true, onretry = true, oncomment = true }

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
local DEFAULT_MAX_RETRIES = 2

local function api_error(message, decoded)
  return core.error("api", message, { json = decoded })
end

-- The readable message of an API's error value: { message = } (OpenAI,
-- Responses), { error = { message = } } (Anthropic's event), a string
-- (Ollama), else `fallback`.
local function error_message(e, fallback)
  if type(e) == "table" then
    if type(e.message) == "string" then return e.message end
    if type(e.error) == "table" and type(e.error.message) == "string" then return e.error.message end
  elseif type(e) == "string" then
    return e
  end
  return fallback
end

-- An error value an API put in a payload: a table or a string (never JSON
-- null, which some servers send as "error": null).
local function is_error_value(e)
  return type(e) == "table" or type(e) == "string"
end

local function is_fetch_error(v)
  return getmetatable(v) == core.Error
end

-- Ctrl-C in the standalone interpreter: not a callback's failure.
local function is_interrupt(err)
  return type(err) == "string" and err:find("interrupted!$") ~= nil
end

-- The user's hooks --------------------------------------------------------

-- Call a hook of the chat (ontext, onreasoning, ondata, onreconnect) with
-- the chat as its last argument, protected, in both forms. When it raises,
-- the chat's stream ends with a `callback` error naming the hook (its
-- onerror fires once); Ctrl-C goes on up. Returns whether the chat goes on.
-- chat._tail: the stream has ended and its last line (without LF) is being
-- read: hooks still run, and an error is the chat's (the end callback
-- reports it).
local function hook(chat, name, fn, ...)
  local s = chat.stream
  if s.reason and not chat._tail then return false end
  local ok, err = pcall(fn, ...)
  if not ok then
    if is_interrupt(err) then error(err, 0) end
    err = core.error("callback", ("%s raised: %s"):format(name, tostring(err)), { cause = err })
    if s.reason then chat.error = chat.error or stream.about(s, err) else stream.finish(s, "callback", err) end
    return false
  end
  if chat._tail then return chat.error == nil end
  return not chat.stream.reason
end

-- Result bookkeeping ------------------------------------------------------

-- The first output (text or reasoning) starts the time base of the rates.
local function output_started(chat)
  if chat._first_output == nil then chat._first_output = now() end
end

local function add_text(chat, text)
  output_started(chat)
  if chat._first_text == nil then
    chat._first_text = now()
    chat.stats.ttft = chat._first_text - chat._started
  end
  chat._deltas = chat._deltas + 1
  chat._parts[#chat._parts + 1] = text
  local ontext = chat._ontext
  if ontext then return hook(chat, "ontext", ontext, text, chat) end
  stream.push(chat._pending, text)
  return true
end

local function add_reasoning(chat, text)
  output_started(chat)
  chat._reasoning_deltas = chat._reasoning_deltas + 1
  chat._reasoning_parts[#chat._reasoning_parts + 1] = text
  local fn = chat._onreasoning
  if fn then return hook(chat, "onreasoning", fn, text, chat) end
  return true
end

-- Every decoded payload goes to ondata first. Returns whether the chat goes on.
local function add_data(chat, obj)
  chat._payloads = chat._payloads + 1
  local fn = chat._ondata
  if fn then return hook(chat, "ondata", fn, obj, chat) end
  return true
end

-- How many tokens the answer took, as the server counted them: OpenAI's
-- usage.completion_tokens, Anthropic's (and OpenAI Responses') output_tokens,
-- Ollama's eval_count. Reasoning tokens are part of them everywhere.
local function output_tokens(u)
  if type(u) ~= "table" then return nil end
  for _, name in ipairs({ "completion_tokens", "output_tokens", "eval_count" }) do
    local n = u[name]
    if type(n) == "number" then return n end
  end
end

-- `count` things over `span` seconds that start with the first one: the
-- first came at the start of the span, so count - 1 came within it (the
-- usual "output throughput after the first token"). nil below two.
local function rate(count, span)
  if count and count >= 2 and span > 0 then return (count - 1) / span end
end

-- The result once the stream has ended (every caller comes after the end;
-- a second call, e.g. chat:close() after the loop, changes nothing). The
-- rates share one time base: from the first output delta (text or
-- reasoning) to the end of the stream (its end marker, error or abort).
local function settle_stats(chat)
  local st = chat.stats
  local s = chat.stream
  if s then st.ttfb = s:times() end
  chat._ended = chat._ended or now()
  if chat._first_output then
    local span = chat._ended - chat._first_output
    st.deltas_per_second = rate(chat._deltas + chat._reasoning_deltas, span)
    st.tokens_per_second = rate(output_tokens(chat.usage), span)
  end
  st.deltas = chat._deltas
  st.reasoning_deltas = chat._reasoning_deltas
  chat.text = table_concat(chat._parts)
  chat.reasoning = table_concat(chat._reasoning_parts)
end

-- Chat Completions' reasoning: `reasoning_content` (DeepSeek, vLLM,
-- llama.cpp) or `reasoning` (OpenRouter, Ollama's /v1); one of them, never
-- both (a server that sends both sends the same text twice).
local function delta_reasoning(delta)
  local r = delta.reasoning_content
  if type(r) == "string" and r ~= "" then return r end
  r = delta.reasoning
  if type(r) == "string" and r ~= "" then return r end
end

-- OpenAI: assemble tool calls from their deltas, by index.
local function merge_tool_calls(chat, deltas)
  for _, d in ipairs(deltas) do
    if type(d) == "table" then
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
end

-- The handlers: each takes one payload and returns "done" at the end
-- marker, nil, err for an error reported inside the stream, or nothing.
-- They stop as soon as a hook has ended the chat.

local function openai_event(chat, ev)
  if ev.data == "[DONE]" then return "done" end
  local obj, err = ev:json()
  if ev.event == "error" then
    if obj ~= nil and not add_data(chat, obj) then return end
    return nil, api_error(error_message(type(obj) == "table" and obj.error or obj, ev.data), obj)
  end
  if obj == nil then return nil, err end
  if not add_data(chat, obj) then return end
  if type(obj) ~= "table" then return end
  if is_error_value(obj.error) then
    return nil, api_error(error_message(obj.error, "the API reported an error"), obj)
  end
  if type(obj.model) == "string" then chat.model = obj.model end
  if type(obj.usage) == "table" then chat.usage = obj.usage end
  local choice = type(obj.choices) == "table" and obj.choices[1]
  if type(choice) ~= "table" then return end
  local delta = choice.delta
  if type(delta) == "table" then
    local r = delta_reasoning(delta)
    if r and not add_reasoning(chat, r) then return end
    if type(delta.content) == "string" and delta.content ~= "" and not add_text(chat, delta.content) then
      return
    end
    if type(delta.tool_calls) == "table" then merge_tool_calls(chat, delta.tool_calls) end
  end
  if type(choice.finish_reason) == "string" then chat.finish_reason = choice.finish_reason end
end

local function anthropic_event(chat, ev)
  local name = ev.event
  local obj, err = ev:json()
  if name == "ping" then -- a keep-alive: its payload, if any, goes to ondata
    if type(obj) == "table" then add_data(chat, obj) end
    return
  end
  if obj == nil then return nil, err end
  if not add_data(chat, obj) then return end
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
      chat.tool_calls[#chat.tool_calls + 1] = { id = block.id, type = "tool_use", name = block.name, input = "" }
      chat._calls[obj.index or #chat.tool_calls] = chat.tool_calls[#chat.tool_calls]
    end
  elseif name == "content_block_delta" and type(obj.delta) == "table" then
    local d = obj.delta
    if d.type == "text_delta" and type(d.text) == "string" and d.text ~= "" then
      add_text(chat, d.text)
    elseif d.type == "thinking_delta" and type(d.thinking) == "string" and d.thinking ~= "" then
      add_reasoning(chat, d.thinking)
    elseif d.type == "input_json_delta" and type(d.partial_json) == "string" then
      local call = chat._calls[obj.index]
      if call then call.input = call.input .. d.partial_json end
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

-- The Responses API: its events are typed (`type` in the payload, also the
-- SSE event name). A function call is an output item whose arguments come
-- in deltas, found by item_id (or output_index).
local function responses_call(chat, obj)
  return chat._calls[obj.item_id] or chat._calls[obj.output_index]
end

local function responses_result(chat, r)
  if type(r) ~= "table" then return end
  if type(r.model) == "string" then chat.model = r.model end
  if type(r.usage) == "table" then chat.usage = r.usage end
end

local function responses_event(chat, ev)
  local obj, err = ev:json()
  if obj == nil then return nil, err end
  if not add_data(chat, obj) then return end
  if type(obj) ~= "table" then return end
  local t = type(obj.type) == "string" and obj.type or ev.event
  if t == "response.output_text.delta" then
    if type(obj.delta) == "string" and obj.delta ~= "" then add_text(chat, obj.delta) end
  elseif t == "response.reasoning_summary_text.delta" or t == "response.reasoning_text.delta" then
    local text = obj.delta
    if type(text) ~= "string" or text == "" then return end
    -- each summary part (or reasoning item) is a paragraph of its own
    local part = tostring(obj.item_id) .. ":" .. tostring(obj.summary_index or obj.content_index)
    if chat._reasoning_part ~= part then
      if chat._reasoning_part ~= nil then text = "\n\n" .. text end
      chat._reasoning_part = part
    end
    add_reasoning(chat, text)
  elseif t == "response.output_item.added" or t == "response.output_item.done" then
    local item = obj.item
    if type(item) ~= "table" or item.type ~= "function_call" then return end
    local call = chat._calls[item.id] or chat._calls[obj.output_index]
    if not call then
      call = { type = "function_call", arguments = "" }
      chat.tool_calls[#chat.tool_calls + 1] = call
      if item.id ~= nil then chat._calls[item.id] = call end
      if obj.output_index ~= nil then chat._calls[obj.output_index] = call end
    end
    for _, k in ipairs({ "id", "call_id", "name" }) do
      if type(item[k]) == "string" then call[k] = item[k] end
    end
    if t == "response.output_item.done" and type(item.arguments) == "string" then call.arguments = item.arguments end
  elseif t == "response.function_call_arguments.delta" then
    local call = responses_call(chat, obj)
    if call and type(obj.delta) == "string" then call.arguments = call.arguments .. obj.delta end
  elseif t == "response.function_call_arguments.done" then
    local call = responses_call(chat, obj)
    if call and type(obj.arguments) == "string" then call.arguments = obj.arguments end
  elseif t == "response.created" or t == "response.in_progress" then
    responses_result(chat, obj.response)
  elseif t == "response.completed" then
    local r = obj.response
    responses_result(chat, r)
    chat.finish_reason = type(r) == "table" and type(r.status) == "string" and r.status or "completed"
    return "done"
  elseif t == "response.incomplete" then -- an answer cut short, as finish_reason "length" is
    local r = obj.response
    responses_result(chat, r)
    local details = type(r) == "table" and r.incomplete_details
    chat.finish_reason = type(details) == "table" and type(details.reason) == "string" and details.reason
      or "incomplete"
    return "done"
  elseif t == "response.failed" then
    local r = obj.response
    return nil, api_error(error_message(type(r) == "table" and r.error, "the response failed"), obj)
  elseif t == "error" then
    return nil, api_error(error_message(obj, ev.data), obj)
  end
end

-- Ollama's native /api/chat: one JSON object per line; the last has
-- done = true with the counts and durations (nanoseconds).
local OLLAMA_DURATIONS = { "total_duration", "load_duration", "prompt_eval_duration", "eval_duration" }

local function ollama_line(chat, obj)
  if not add_data(chat, obj) then return end
  if type(obj) ~= "table" then return end
  if is_error_value(obj.error) then
    return nil, api_error(error_message(obj.error, "the API reported an error"), obj)
  end
  if type(obj.model) == "string" then chat.model = obj.model end
  local m = obj.message
  if type(m) == "table" then
    if type(m.thinking) == "string" and m.thinking ~= "" and not add_reasoning(chat, m.thinking) then return end
    if type(m.content) == "string" and m.content ~= "" and not add_text(chat, m.content) then return end
    if type(m.tool_calls) == "table" then
      for _, call in ipairs(m.tool_calls) do chat.tool_calls[#chat.tool_calls + 1] = call end
    end
  end
  if obj.done == true then
    if type(obj.done_reason) == "string" then chat.finish_reason = obj.done_reason end
    local u = {}
    for _, k in ipairs({ "prompt_eval_count", "eval_count" }) do
      if type(obj[k]) == "number" then u[k] = obj[k] end
    end
    if next(u) then chat.usage = u end
    for _, k in ipairs(OLLAMA_DURATIONS) do
      if type(obj[k]) == "number" then chat.stats[k] = obj[k] / 1e9 end
    end
    return "done"
  end
end

local HANDLERS = { openai = openai_event, responses = responses_event, anthropic = anthropic_event }

-- Retries before the answer starts ------------------------------------------

-- Days since 1970-01-01 of a civil date (proleptic Gregorian).
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor((y >= 0 and y or y - 399) / 400)
  local yoe = y - era * 400
  local doy = floor((153 * (m + (m > 2 and -3 or 9)) + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end
local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8, Sep = 9, Oct = 10,
                 Nov = 11, Dec = 12 }

-- Seconds the server asks to wait: retry-after-ms (OpenAI), Retry-After in
-- seconds or as an HTTP date. Like the official SDKs, only a wait of more
-- than 0 and at most 60 s is taken; else nil (back-off decides).
local function server_delay(headers)
  if type(headers) ~= "table" then return nil end
  local secs = tonumber(headers["retry-after-ms"])
  if secs then secs = secs / 1000 end
  local ra = headers["retry-after"]
  if not secs and ra then
    secs = tonumber(ra)
    if not secs then
      local d, mon, y, hh, mm, ss = ra:match("^%a+, (%d+) (%a+) (%d+) (%d+):(%d+):(%d+) GMT$")
      if d and MONTHS[mon] then
        local at = days_from_civil(tonumber(y), MONTHS[mon], tonumber(d)) * 86400
          + tonumber(hh) * 3600 + tonumber(mm) * 60 + tonumber(ss)
        secs = at - os_time()
      end
    end
  end
  if secs and secs > 0 and secs <= 60 then return secs end
end

-- Whether a chat whose stream ended with err may be sent again: its request
-- was refused before any answer came (what the official SDKs retry).
local function retryable(chat, s, err)
  if chat._payloads > 0 or s.reconnects > 0 then return false end
  local kind = err.kind
  if kind == "http" then
    local should = type(err.headers) == "table" and err.headers["x-should-retry"]
    if should == "true" then return true end
    if should == "false" then return false end
    local st = err.status
    return st == 408 or st == 409 or st == 429 or (type(st) == "number" and st >= 500)
  elseif kind == "network" then
    return s.status == nil -- no response at all: refused, reset, DNS
  elseif kind == "timeout" then
    return err.timeout == "connect"
  end
  return false
end

-- Seconds before retry number n: the server's word, else exponential
-- back-off from 0.5 s up to 8 s, less up to 25% jitter (the SDKs' rule).
local function retry_delay(n, err)
  local secs = server_delay(err.headers)
  if secs then return secs end
  return math_min(0.5 * 2 ^ (n - 1), 8) * (1 - 0.25 * math_random())
end

local start_stream -- below

-- After the chat's stream ended with err: start the retry when the rules
-- allow one. The retry is a new stream (chat.stream) whose request goes out
-- after the delay; onreconnect(info, s) sees it first. Returns true if so.
local function retry(chat, s, err)
  if chat.retries >= chat._max_retries or not retryable(chat, s, err) then return false end
  chat.retries = chat.retries + 1
  local delay = retry_delay(chat.retries, err)
  local new = start_stream(chat, delay)
  local onreconnect = chat._onreconnect
  if onreconnect then
    hook(chat, "onreconnect", onreconnect, { attempt = chat.retries, error = err, delay = delay }, new)
  end
  return true
end

-- The iterator ------------------------------------------------------------

local function eof_error(chat)
  local f = FORMATS[chat.format]
  return stream.about(chat.stream, core.error("eof",
    ("the %s stream ended before its end marker (%s): the answer is truncated"):format(f.name, f.marker)))
end

-- Ends the underlying stream as `done` (the end marker) or with err; never
-- reconnects after the end marker. A stream a hook has ended stays as it is.
local function settle(chat, err)
  local s = chat.stream
  if not s.reason then
    if err then
      chat.error = err
      stream.finish(s, err.kind, err)
    else
      chat.done = true
      stream.finish(s, "done")
    end
  end
  settle_stats(chat)
end

-- Handle one payload: an SSE event, or an NDJSON line (number lineno).
local function handle(chat, item, lineno)
  if chat._read == "events" then return chat._handle(chat, item) end
  local obj, err = json.ndjson_line(item, lineno)
  if err then return nil, err end
  if obj == nil then return end -- a blank line
  return ollama_line(chat, obj)
end

-- The next event or line of the pull form's stream; nil at the end, nil,
-- err when it failed.
local function next_item(chat)
  local s = chat.stream
  if chat._read == "events" then return s:next() end
  local ok, line = pcall(stream.next_line, s)
  if ok then return line end
  if is_fetch_error(line) then return nil, line end
  error(line, 0) -- Ctrl-C, out of memory: not the stream's fault
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
    local item, err = next_item(self)
    if item then
      self._lineno = self._lineno + 1
      local mark, e = handle(self, item, self._lineno)
      if mark == "done" or e then settle(self, e) end
    elseif not (err and retry(self, s, err)) then
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

-- The format a base URL names by its end: `.../messages`, `.../responses`,
-- `.../api/chat`; else Chat Completions.
local function detect_format(base)
  local root = split_base(base)
  if root:find("/messages$") then return "anthropic" end
  if root:find("/responses$") then return "responses" end
  if root:find("/api/chat$") then return "ollama" end
  return "openai"
end

-- The API root plus the endpoint's path, unless the root already ends with
-- it (`.../v1/chat/completions`, `.../v1/messages`); a query string
-- (Azure's ?api-version=...) stays at the end. Ollama's root is the host
-- (`http://127.0.0.1:11434`); one ending in /api gets /chat.
local function endpoint(base, format)
  local root, query = split_base(base)
  local path = FORMATS[format].path
  if format == "ollama" and root:sub(-4) == "/api" then path = "/chat" end
  if root:sub(-#path) ~= path then root = root .. path end
  return root .. query
end

-- The request body: the fields of `body` (copied, never changed), then the
-- other top-level fields over them, then model and messages when given at
-- the top level, and stream = true. model and messages may come from either.
-- The Responses API takes the conversation as `input`: messages go there.
local function build_body(format, chat_opts, extra)
  local body = {}
  for k, v in pairs(chat_opts.body or {}) do body[k] = v end
  for k, v in pairs(extra) do body[k] = v end
  if chat_opts.model ~= nil then body.model = chat_opts.model end
  if chat_opts.messages ~= nil then body.messages = chat_opts.messages end
  if body.model == nil then usage("'chat' needs a model (model = or body = { model = })") end
  if format == "responses" then
    if body.messages ~= nil and (chat_opts.messages ~= nil or body.input == nil) then
      body.input = body.messages
    end
    body.messages = nil
    if body.input == nil then
      usage("'chat' with format 'responses' needs input (input =, or messages =, which is sent as input)")
    end
  elseif body.messages == nil then
    usage("'chat' needs messages (messages = or body = { messages = })")
  end
  if body.stream ~= nil and body.stream ~= true then
    usage("field 'stream' of the body to 'chat' must be true or left out: fetch.chat always streams, got %s",
      tostring(body.stream))
  end
  body.stream = true
  if format == "anthropic" and body.max_tokens == nil then body.max_tokens = ANTHROPIC_MAX_TOKENS end
  return body
end

-- The request headers: the user's, then what the helper adds unless the
-- user gave a header of that name (in any case).
local function build_headers(format, given, api_key)
  if given ~= nil and type(given) ~= "table" then
    usage("option 'headers' to 'chat' must be a table of name = value, got %s", type(given))
  end
  local headers, have = {}, {}
  for k, v in pairs(given or {}) do
    headers[k] = v
    if type(k) == "string" then have[k:lower()] = true end
  end
  local function add(name, value)
    if not have[name] then headers[name] = value end
  end
  add("content-type", "application/json")
  add("accept", FORMATS[format].read == "events" and "text/event-stream" or "application/x-ndjson")
  if format == "anthropic" then
    if api_key then add("x-api-key", api_key) end
    add("anthropic-version", ANTHROPIC_VERSION)
  elseif api_key then
    add("authorization", "Bearer " .. api_key)
  end
  return headers
end

-- Start a transfer for the chat (the first, or a retry that waits `delay`
-- seconds before its request goes out) and make it chat.stream.
function start_stream(chat, delay)
  local client, url, opts = chat._client, chat.request.url, chat._req_opts
  local s
  if chat._callbacks then
    s = client:stream(url, opts)
  else
    s = client:_start("chat", url, opts, false, chat._read)
  end
  if delay then stream.start_later(s, delay) end
  chat.stream = s
  return s
end

--- `fetch.chat(client, base_url, opts)` -> chat, nil, nil, chat
function _M.chat(client, base_url, opts)
  if type(base_url) ~= "string" then
    usage("bad argument #1 to 'chat' (base URL string expected, got %s)", type(base_url))
  end
  if type(opts) ~= "table" then usage("bad argument #2 to 'chat' (options table expected)") end
  local format = opts.format
  if format == nil then format = detect_format(base_url) end
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
      if format == "ollama" and SSE_ONLY[name] then
        usage("option '%s' is for SSE streams: format 'ollama' reads NDJSON (reconnecting would start "
          .. "the answer again)", name)
      end
      req_opts[name] = value
    else
      check_extra(name, value, opts)
      extra[name] = value
    end
  end
  options.check("chat", chat_opts, CHAT_OPTIONS)
  local body = build_body(format, chat_opts, extra)
  local ok, encoded = pcall(json.encode, body)
  if not ok then usage("the request body of 'chat' cannot be encoded as JSON: %s", tostring(encoded)) end
  local headers = build_headers(format, req_opts.headers, chat_opts.api_key)
  req_opts.headers, req_opts.body, req_opts.method = headers, encoded, "POST"
  local url = endpoint(base_url, format)
  local read = FORMATS[format].read

  local chat = setmetatable({
    format = format,
    text = "", reasoning = "", tool_calls = {}, stats = {}, retries = 0,
    request = { method = "POST", url = url, headers = headers, body = encoded },
    _parts = {}, _reasoning_parts = {}, _pending = stream.queue(), -- _pending: texts not yet handed out
    _deltas = 0, _reasoning_deltas = 0, _payloads = 0, _lineno = 0,
    _calls = {}, -- tool calls being assembled, by the index or id their deltas name
    _handle = HANDLERS[format], _read = read,
    _max_retries = chat_opts.max_retries or DEFAULT_MAX_RETRIES,
    _ontext = chat_opts.ontext, _onreasoning = chat_opts.onreasoning, _ondata = chat_opts.ondata,
    _onreconnect = req_opts.onreconnect,
    _client = client, _req_opts = req_opts,
    _started = now(),
  }, Chat)

  local ondone, onerror, onabort = chat_opts.ondone, chat_opts.onerror, chat_opts.onabort
  if not (chat_opts.ontext or ondone or onerror or onabort) then
    start_stream(chat)
    return chat, nil, nil, chat
  end

  -- Callback form: driven by run(), like any fetch.stream. The callbacks
  -- are shared by every retry's stream; one that is no longer chat.stream
  -- has nothing more to say.
  chat._callbacks = true
  local function step(item)
    chat._lineno = chat._lineno + 1
    local mark, err = handle(chat, item, chat._lineno)
    if mark == "done" or err then settle(chat, err) end
  end
  if read == "events" then
    req_opts.onmessage = function(ev, s)
      if s == chat.stream then step(ev) end
    end
  else
    local splitter = lines.splitter(req_opts.max_event_size or request.DEFAULT_MAX_EVENT_SIZE)
    local function push(line)
      if not chat.stream.reason then step(line) end
    end
    req_opts.onchunk = function(bytes, s)
      if s ~= chat.stream then return end
      local too_large = splitter:feed(bytes, push)
      if too_large and not s.reason then settle(chat, too_large) end
    end
    chat._last_line = function(s) -- a last line without LF, at the end of the body
      local line, too_large = splitter:finish()
      splitter:clear()
      if too_large then
        chat.error = stream.about(s, too_large)
      elseif line then
        chat._lineno = chat._lineno + 1
        chat._tail = true
        local mark, err = handle(chat, line, chat._lineno)
        chat._tail = nil
        if err then chat.error = chat.error or stream.about(s, err)
        elseif mark == "done" and not chat.error then chat.done = true end
      end
    end
  end
  req_opts.onclose = function(s)
    if s ~= chat.stream then return end
    if chat._last_line and not chat.done then chat._last_line(s) end
    settle_stats(chat)
    if chat.done then
      if ondone then ondone(chat) end
    else -- the server ended the response before the end marker
      chat.error = chat.error or eof_error(chat)
      if onerror then onerror(chat.error, chat) end
    end
  end
  req_opts.onerror = function(err, s)
    if s ~= chat.stream then return end
    if retry(chat, s, err) then return end
    chat.error = chat.error or err
    settle_stats(chat)
    if onerror then onerror(err, chat) end
  end
  req_opts.onabort = function(why, s)
    if s ~= chat.stream then return end
    settle_stats(chat)
    if onabort then onabort(why, chat) end
  end
  start_stream(chat)
  return chat
end

return _M
