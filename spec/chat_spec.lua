-- Spec for fetch.chat, the LLM chat helper: OpenAI-compatible chat
-- completions, OpenAI's Responses API, Anthropic's Messages API and Ollama's
-- native /api/chat, in the plain `for` form and the callback form, its
-- result fields (reasoning and tool calls included), its hooks (ondata,
-- onreasoning), its retries before the answer starts, its endings and its
-- errors.
--
-- Written from DESIGN.md ("Chat helper", errors `api` and `eof`) and the
-- README's "LLM chat streams", against the stub server's LLM routes
-- (spec/server/README.md). Every request goes to 127.0.0.1.
--
-- Cases tagged #lua54 need Lua 5.4's closing value (a break or an error in
-- the loop body closes the chat at once); the LuaJIT pass skips them (see
-- .busted). Both ABIs run the cases of what replaces it there: chat:close()
-- and __gc for a dropped chat. The `local chat <close>` cases are in
-- spec/chat_lua54_spec.lua.

local fetch = require "fetchstream"
local h = require "spec.helpers"
local stub = require "spec.server"
local cjson = require "cjson"
local socket = require "socket"

local now = socket.gettime

local srv
setup(function() srv = stub.start() end)
teardown(function() srv:stop() end)

---------------------------------------------------------------------------
-- helpers

local MESSAGES = { { role = "system", content = "be brief" }, { role = "user", content = "say hello to me" } }
local PROMPT_WORDS = 6 -- whitespace-separated words of the contents above

local tag = h.tagger("chat")

-- The API root on the stub, with query parameters for it (delay=1 ms between
-- tokens). The same root serves /chat/completions and /messages.
local function openai(query)
  return srv:url("/v1?" .. (query and query .. "&" or "") .. "delay=1")
end
local anthropic = openai

local function opts(extra)
  local o = { model = "stub-model", messages = MESSAGES }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

local function first_tokens(k)
  return table.concat(stub.CANNED_TOKENS, "", 1, k)
end

-- Call fn, which must raise a fetchstream error of `kind`; return it.
local raises = h.raises

-- Run a whole chat in the plain form: the texts yielded, the chat, and the
-- error the loop raised (or nil).
local function run_chat(base, o)
  local chat = fetch.chat(base, o)
  local texts = {}
  local ok, err = pcall(function()
    for text in chat do texts[#texts + 1] = text end
  end)
  chat:close()
  return texts, chat, (not ok) and err or nil
end

-- A one-request HTTP server in this process, to see exactly what the chat
-- helper sends. `start(base)` must start a callback-form chat on `base`; the
-- request is answered with `reply` (an SSE body) and the chat run to its
-- end. Returns the request { method, target, headers, body, json } and
-- whatever start returned.
local function capture(start, reply, path)
  local server = assert(socket.bind("127.0.0.1", 0))
  server:settimeout(0)
  local _, port = server:getsockname()
  local started = start("http://127.0.0.1:" .. port .. (path or "/v1"))
  local deadline = now() + 5
  local conn
  while not conn and now() < deadline do
    fetch.run(0.01)
    conn = server:accept()
  end
  assert.is_truthy(conn, "the chat never connected")
  conn:settimeout(0)
  local buf, head, body_start, length = "", nil, nil, nil
  while now() < deadline do
    local data, err, partial = conn:receive(65536)
    buf = buf .. (data or partial or "")
    if not head then
      local e = buf:find("\r\n\r\n", 1, true)
      if e then
        head, body_start = buf:sub(1, e - 1), e + 4
        length = tonumber(head:lower():match("\ncontent%-length:%s*(%d+)")) or 0
      end
    end
    if head and #buf - body_start + 1 >= length then break end
    if err == "closed" then break end
    fetch.run(0.01)
  end
  assert.is_truthy(head, "no complete request head arrived")
  local req = { headers = {} }
  local lines = {}
  for line in (head .. "\r\n"):gmatch("(.-)\r\n") do lines[#lines + 1] = line end
  req.method, req.target = lines[1]:match("^(%S+) (%S+) HTTP/1%.1$")
  for i = 2, #lines do
    local name, value = lines[i]:match("^([^:]+):%s*(.-)%s*$")
    if name then req.headers[name:lower()] = value end
  end
  req.body = buf:sub(body_start, body_start + length - 1)
  req.json = cjson.decode(req.body)
  conn:settimeout(2)
  conn:send("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n" .. reply)
  conn:close()
  server:close()
  assert.is_true(fetch.run(5))
  return req, started
end

local OPENAI_REPLY = 'data: {"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":null}]}\n\n'
  .. 'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
local ANTHROPIC_REPLY = 'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
  .. '"delta":{"type":"text_delta","text":"ok"}}\n\nevent: message_stop\ndata: {"type":"message_stop"}\n\n'

-- A callback chat that records what happened.
local function recorder(base, extra)
  local rec = { texts = {}, done = 0, errors = {}, aborts = 0 }
  local o = opts(extra)
  o.ontext = o.ontext or function(t) rec.texts[#rec.texts + 1] = t end
  o.ondone = function(c) rec.done = rec.done + 1; rec.done_with = c end
  o.onerror = function(e) rec.errors[#rec.errors + 1] = e end
  o.onabort = function(why) rec.aborts = rec.aborts + 1; rec.abort_why = why end
  rec.chat = fetch.chat(base, o)
  return rec
end

---------------------------------------------------------------------------

describe("fetch.chat (OpenAI-compatible)", function()
  it("yields the canned answer delta by delta, only non-empty strings", function()
    local texts, chat, err = run_chat(openai(), opts())
    assert.is_nil(err)
    assert.are.same(stub.CANNED_TOKENS, texts) -- the role chunk's "" is not yielded
    assert.is_true(#texts > 1)
    for _, t in ipairs(texts) do
      assert.are.equal("string", type(t))
      assert.is_true(#t > 0)
    end
    assert.are.equal(stub.CANNED_ANSWER, table.concat(texts))
    assert.are.equal(stub.CANNED_ANSWER, chat.text)
    assert.are.equal("stop", chat.finish_reason)
    assert.is_true(chat.done)
    assert.is_nil(chat.error)
    assert.are.equal("done", chat.stream.reason)
    assert.is_nil(chat.usage) -- not asked for
    assert.are.same({}, chat.tool_calls)
  end)

  it("returns the chat object as iterator and closing value, like io.lines", function()
    local a, b, c, d = fetch.chat(openai(), opts())
    assert.are.equal(a, d)
    assert.is_nil(b)
    assert.is_nil(c)
    assert.are.equal("table", type(a))
    -- the plain generic for works with the four values directly
    local n = 0
    for text in a, b, c, d do n = n + #text end
    assert.are.equal(#stub.CANNED_ANSWER, n)
    assert.are.equal(stub.CANNED_ANSWER, a.text)
  end)

  it("stats are present and sane: ttft >= ttfb >= 0, deltas_per_second > 0, deltas", function()
    local _, chat, err = run_chat(openai(), opts())
    assert.is_nil(err)
    local st = chat.stats
    assert.are.equal("number", type(st.ttfb))
    assert.are.equal("number", type(st.ttft))
    assert.is_true(st.ttfb >= 0, "ttfb " .. st.ttfb)
    assert.is_true(st.ttft >= st.ttfb, ("ttft %g < ttfb %g"):format(st.ttft, st.ttfb))
    assert.is_true(st.ttft < 5)
    assert.are.equal("number", type(st.deltas_per_second))
    assert.is_true(st.deltas_per_second > 0)
    assert.is_true(st.deltas_per_second < math.huge)
    assert.are.equal(#stub.CANNED_TOKENS, st.deltas)
    -- no usage was asked for: no token count, so no tokens_per_second
    assert.is_nil(chat.usage)
    assert.is_nil(st.tokens_per_second)
  end)

  it("deltas_per_second reflects the server's pace (delay=20 ms: at most ~50/s)", function()
    local t0 = now()
    local _, chat, err = run_chat(srv:url("/v1?delay=20"), opts())
    local elapsed = now() - t0
    assert.is_nil(err)
    assert.is_true(elapsed >= 21 * 0.02, "elapsed " .. elapsed)
    local dps = chat.stats.deltas_per_second
    -- 21 gaps of at least 20 ms after the first token
    assert.is_true(dps <= 1 / 0.02 + 1, "deltas_per_second " .. dps)
    assert.is_true(dps > 5, "deltas_per_second " .. dps)
    assert.is_true(chat.stats.ttft >= 0.02, "ttft " .. chat.stats.ttft) -- the first token waits a delay
  end)

  it("tokens_per_second counts usage.completion_tokens, from the first text to the end", function()
    -- the stub sends one token per delta: both rates are the same figure
    local _, chat, err = run_chat(srv:url("/v1?delay=20"), opts({ stream_options = { include_usage = true } }))
    assert.is_nil(err)
    local st = chat.stats
    assert.are.equal(22, chat.usage.completion_tokens)
    assert.are.equal("number", type(st.tokens_per_second))
    assert.are.equal(st.deltas_per_second, st.tokens_per_second)
    assert.is_true(st.tokens_per_second <= 1 / 0.02 + 1, "tokens_per_second " .. st.tokens_per_second)
    assert.is_true(st.tokens_per_second > 5, "tokens_per_second " .. st.tokens_per_second)
  end)

  it("tokens_per_second and deltas_per_second differ when a delta holds several tokens", function()
    -- 3 deltas, 31 tokens: (31 - 1) / span against (3 - 1) / span
    local reply = 'data: {"choices":[{"index":0,"delta":{"content":"one "},"finish_reason":null}]}\n\n'
      .. 'data: {"choices":[{"index":0,"delta":{"content":"two "},"finish_reason":null}]}\n\n'
      .. 'data: {"choices":[{"index":0,"delta":{"content":"three"},"finish_reason":"stop"}]}\n\n'
      .. 'data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":31,"total_tokens":35}}\n\n'
      .. 'data: [DONE]\n\n'
    local _, rec = capture(function(base) return recorder(base) end, reply)
    local st = rec.chat.stats
    assert.are.equal(1, rec.done)
    assert.are.equal(3, st.deltas)
    assert.are.equal(31, rec.chat.usage.completion_tokens)
    assert.are.equal("number", type(st.deltas_per_second))
    assert.are.equal("number", type(st.tokens_per_second))
    assert.is_true(math.abs(st.tokens_per_second / st.deltas_per_second - 15) < 1e-9,
      ("%g vs %g"):format(st.tokens_per_second, st.deltas_per_second))
  end)

  it("stats are fixed when the stream ends: a later close changes nothing", function()
    local chat = fetch.chat(openai(), opts({ stream_options = { include_usage = true } }))
    for _ in chat do end
    local before = {}
    for k, v in pairs(chat.stats) do before[k] = v end
    assert.is_truthy(before.deltas_per_second)
    assert.is_truthy(before.tokens_per_second)
    socket.sleep(0.05)
    chat:close()
    assert.are.same(before, chat.stats)
  end)

  it("usage via stream_options.include_usage (an extra body field), as integers", function()
    local _, chat, err = run_chat(openai(), opts({ stream_options = { include_usage = true } }))
    assert.is_nil(err)
    assert.are.same({ prompt_tokens = PROMPT_WORDS, completion_tokens = 22, total_tokens = PROMPT_WORDS + 22 },
      chat.usage)
    if math.type then -- Lua 5.4's subtype; LuaJIT has one number type
      for _, v in pairs(chat.usage) do assert.are.equal("integer", math.type(v)) end
    end
    assert.are.equal("stop", chat.finish_reason)
    assert.are.equal(stub.CANNED_ANSWER, chat.text)
  end)

  it("tool calls are assembled from their deltas (tools=1), finish_reason tool_calls, no text", function()
    local texts, chat, err = run_chat(openai("tools=1"), opts({ stream_options = { include_usage = true } }))
    assert.is_nil(err)
    assert.are.same({}, texts)
    assert.are.equal("", chat.text)
    assert.are.same(stub.TOOL_CALLS, chat.tool_calls)
    assert.are.equal("tool_calls", chat.finish_reason)
    assert.are.equal(6, chat.usage.completion_tokens)
    assert.is_true(chat.done)
    assert.is_nil(chat.stats.ttft) -- no text came
    assert.is_nil(chat.stats.tokens_per_second) -- its time base starts at the first text
  end)

  it("a stream without [DONE] (truncate=K) raises eof; chat.text holds the K tokens", function()
    local texts, chat, err = run_chat(openai("truncate=5"), opts())
    assert.is_truthy(err)
    assert.is_true(fetch.is_error(err))
    assert.are.equal("eof", err.kind)
    assert.matches("truncated", err.message)
    assert.are.same({ table.unpack(stub.CANNED_TOKENS, 1, 5) }, texts)
    assert.are.equal(first_tokens(5), chat.text)
    assert.are.equal(err, chat.error)
    assert.is_falsy(chat.done)
    assert.is_nil(chat.finish_reason)
  end)

  it("truncate=0: eof with no text at all", function()
    local texts, chat, err = run_chat(openai("truncate=0"), opts())
    assert.are.equal("eof", err and err.kind)
    assert.are.same({}, texts)
    assert.are.equal("", chat.text)
  end)

  it("an in-stream {\"error\":...} (error_after=K) is an api error with err.json and the message", function()
    local texts, chat, err = run_chat(openai("error_after=3"), opts())
    assert.is_truthy(err)
    assert.are.equal("api", err.kind)
    assert.are.equal("stub: overloaded", err.message)
    assert.matches("stub: overloaded", tostring(err), 1, true)
    assert.are.equal("table", type(err.json))
    assert.are.same({ message = "stub: overloaded", type = "server_error", code = "overloaded" }, err.json.error)
    assert.are.same({ table.unpack(stub.CANNED_TOKENS, 1, 3) }, texts)
    assert.are.equal(first_tokens(3), chat.text)
    assert.are.equal(err, chat.error)
    assert.are.equal("api", chat.stream.reason)
    assert.is_falsy(chat.done)
  end)

  it("error_after=0: the api error comes before any text", function()
    local texts, chat, err = run_chat(openai("error_after=0"), opts())
    assert.are.equal("api", err and err.kind)
    assert.are.same({}, texts)
    assert.are.equal("", chat.text)
  end)

  it("error_after=22: the error replaces the normal end, after the whole answer", function()
    local texts, chat, err = run_chat(openai("error_after=22"), opts())
    assert.are.equal("api", err and err.kind)
    assert.are.equal(stub.CANNED_ANSWER, table.concat(texts))
    assert.is_nil(chat.finish_reason)
  end)

  it("an `event: error` is an api error too", function()
    local body = 'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
      .. 'event: error\ndata: {"error":{"message":"model crashed"}}\n\n'
    local req, r = capture(function(base) return recorder(base) end, body)
    assert.are.equal("POST", req.method)
    assert.are.same({ "Hi" }, r.texts)
    assert.are.equal(0, r.done)
    assert.are.equal(1, #r.errors)
    assert.are.equal("api", r.errors[1].kind)
    assert.are.equal("model crashed", r.errors[1].message)
    assert.are.same({ error = { message = "model crashed" } }, r.errors[1].json)
  end)

  it("a wrong api_key gets 401: an http error with the server's message", function()
    local _, chat, err = run_chat(openai("key=sk-right"), opts({ api_key = "sk-wrong" }))
    assert.is_truthy(err)
    assert.are.equal("http", err.kind)
    assert.are.equal(401, err.status)
    assert.are.equal("invalid api key", err.message)
    assert.are.equal("invalid api key", err.json.error.message)
    assert.are.equal("http", chat.stream.reason)
    assert.are.equal("", chat.text)
  end)

  it("no api_key at all, where one is needed: 401", function()
    local _, _, err = run_chat(openai("key=sk-right"), opts())
    assert.are.equal("http", err and err.kind)
    assert.are.equal(401, err.status)
  end)

  it("the right api_key is really sent as a Bearer token", function()
    local _, chat, err = run_chat(openai("key=sk-right"), opts({ api_key = "sk-right" }))
    assert.is_nil(err)
    assert.are.equal(stub.CANNED_ANSWER, chat.text)
  end)

  it("a non-2xx status: http error with status, message and headers (max_retries = 0: one request)", function()
    local t = tag("429")
    local _, _, err = run_chat(openai("status=429&retry_after=7&tag=" .. t), opts({ max_retries = 0 }))
    assert.are.equal("http", err and err.kind)
    assert.are.equal(429, err.status)
    assert.are.equal("rate limited", err.message)
    assert.are.equal("7", err.headers["retry-after"])
    assert.are.equal(1, srv:log(t).requests)
  end)

  it("break in `for text in fetch.chat(...)` aborts the transfer (reason aborted) #lua54", function()
    local t = tag("break")
    local it, st, ctl, closing = fetch.chat(srv:url("/v1?delay=50&tag=" .. t), opts())
    local n = 0
    for _ in it, st, ctl, closing do
      n = n + 1
      if n == 3 then break end
    end
    assert.are.equal(3, n)
    assert.are.equal("aborted", closing.stream.reason)
    assert.is_nil(closing.error)
    assert.is_falsy(closing.done)
    assert.is_true((srv:wait_closed(t, 3)), "the server did not see the client go")
  end)

  it("after a break, chat.text holds the text yielded so far #lua54", function()
    local it, st, ctl, closing = fetch.chat(srv:url("/v1?delay=20"), opts())
    local got = {}
    for text in it, st, ctl, closing do
      got[#got + 1] = text
      if #got == 3 then break end
    end
    assert.are.equal("aborted", closing.stream.reason)
    assert.are.equal(table.concat(got), closing.text)
    assert.are.equal(3, closing.stats.deltas)
  end)

  it("a loop left by break, then chat:close(): aborted, chat.text holds the text yielded so far", function()
    local t = tag("break-close")
    local chat = fetch.chat(srv:url("/v1?delay=20&tag=" .. t), opts())
    local got = {}
    for text in chat do
      got[#got + 1] = text
      if #got == 3 then break end
    end
    chat:close()
    assert.are.equal("aborted", chat.stream.reason)
    assert.is_nil(chat.error)
    assert.is_falsy(chat.done)
    assert.are.equal(table.concat(got), chat.text)
    assert.are.equal(3, chat.stats.deltas)
    assert.is_true((srv:wait_closed(t, 3)), "the server did not see the client go")
  end)

  it("a chat left by break or an error and dropped: collected, its connection closed", function()
    local t1, t2 = tag("drop-break"), tag("drop-error")
    local weak = setmetatable({}, { __mode = "k" })
    local function left_by_break() -- a function of its own: nothing stays on this stack
      local chat = fetch.chat(srv:url("/v1?delay=50&tag=" .. t1), opts())
      weak[chat] = true
      for _ in chat do break end -- luacheck: ignore 512 (the break is the point)
    end
    left_by_break()
    local ok, err = pcall(function()
      local chat = fetch.chat(srv:url("/v1?delay=50&tag=" .. t2), opts())
      weak[chat] = true
      for _ in chat do error("boom", 0) end
    end)
    assert.is_false(ok)
    assert.are.equal("boom", err)
    collectgarbage()
    collectgarbage()
    assert.is_nil(next(weak), "a chat was not collected")
    assert.is_true((srv:wait_closed(t1, 3)), "the server did not see the client go")
    assert.is_true((srv:wait_closed(t2, 3)), "the server did not see the client go")
  end)

  it("chat:abort() and chat:close() stop it; the loop then ends quietly", function()
    local chat = fetch.chat(srv:url("/v1?delay=30"), opts())
    local n = 0
    for _ in chat do
      n = n + 1
      if n == 2 then chat:abort("enough") end
    end
    assert.are.equal(2, n)
    assert.are.equal("aborted", chat.stream.reason)
    assert.is_nil(chat.error)
    chat:close()
    chat:close() -- idempotent
    assert.are.equal("aborted", chat.stream.reason)
  end)

  it("closing a finished chat keeps its reason", function()
    local _, chat = run_chat(openai(), opts())
    chat:close()
    assert.are.equal("done", chat.stream.reason)
    assert.are.equal(stub.CANNED_ANSWER, chat.text)
  end)

  it("an error in the loop body aborts the transfer #lua54", function()
    local t = tag("raise")
    local ok, err = pcall(function()
      for _ in fetch.chat(srv:url("/v1?delay=50&tag=" .. t), opts()) do error("boom", 0) end
    end)
    assert.is_false(ok)
    assert.are.equal("boom", err)
    assert.is_true((srv:wait_closed(t, 3)))
  end)

  it("never reconnects after [DONE], even with reconnect set", function()
    local t = tag("done-rc")
    local _, chat, err = run_chat(openai("tag=" .. t), opts({ reconnect = { delay = 0.02 } }))
    assert.is_nil(err)
    assert.are.equal("done", chat.stream.reason)
    socket.sleep(0.15)
    assert.are.equal(1, srv:log(t).requests)
    assert.are.equal(0, chat.stream.reconnects)
  end)

  it("never reconnects after an api error, even with reconnect set", function()
    local t = tag("api-rc")
    local _, chat, err = run_chat(openai("error_after=2&tag=" .. t), opts({ reconnect = { delay = 0.02 } }))
    assert.are.equal("api", err and err.kind)
    socket.sleep(0.15)
    assert.are.equal(1, srv:log(t).requests)
    assert.are.equal("api", chat.stream.reason)
  end)

  it("a 2xx response that is not text/event-stream is a protocol error", function()
    local _, chat, err = run_chat(openai("ct=application/json"), opts())
    assert.are.equal("protocol", err and err.kind)
    assert.matches("text/event-stream", err.message, 1, true)
    assert.are.equal("protocol", chat.stream.reason)
  end)

  it("request options apply: a total timeout ends it with a timeout error", function()
    local _, chat, err = run_chat(srv:url("/v1?delay=200"), opts({ timeout = 0.3 }))
    assert.are.equal("timeout", err and err.kind)
    assert.are.equal("total", err.timeout)
    assert.are.equal(err, chat.error)
    assert.is_true(#chat.text > 0 and #chat.text < #stub.CANNED_ANSWER)
  end)
end)

describe("fetch.chat: the request it sends", function()
  it("POST <base>/chat/completions, JSON body with stream=true, model, messages, extras as is", function()
    local req = capture(function(base)
      return recorder(base, { api_key = "sk-123", temperature = 0.5, max_tokens = 77,
                              stream_options = { include_usage = true }, user = "u-1",
                              headers = { ["X-Trace"] = "t1" } })
    end, OPENAI_REPLY)
    assert.are.equal("POST", req.method)
    assert.are.equal("/v1/chat/completions", req.target)
    assert.are.equal("Bearer sk-123", req.headers.authorization)
    assert.are.equal("t1", req.headers["x-trace"])
    assert.are.equal("application/json", req.headers["content-type"])
    assert.are.equal("text/event-stream", req.headers.accept)
    assert.is_nil(req.headers["x-api-key"])
    assert.is_nil(req.headers["anthropic-version"])
    local body = req.json
    assert.is_true(body.stream)
    assert.are.equal("stub-model", body.model)
    assert.are.same(MESSAGES, body.messages)
    assert.are.equal(0.5, body.temperature)
    assert.are.equal(77, body.max_tokens)
    assert.are.same({ include_usage = true }, body.stream_options)
    assert.are.equal("u-1", body.user)
    -- helper and request options stay out of the body
    for _, name in ipairs({ "api_key", "headers", "ontext", "ondone", "onerror", "onabort", "format" }) do
      assert.is_nil(body[name], name .. " leaked into the body")
    end
  end)

  it("stream = true may be given; the body always has stream=true", function()
    local req = capture(function(base) return recorder(base, { stream = true }) end, OPENAI_REPLY)
    assert.is_true(req.json.stream)
  end)

  it("a query string in base_url stays at the end; a trailing slash is dropped", function()
    local req = capture(function(base) return recorder(base .. "/?api-version=2024-06-01&x=1") end, OPENAI_REPLY)
    assert.are.equal("/v1/chat/completions?api-version=2024-06-01&x=1", req.target)
  end)

  it("a base_url already ending in /chat/completions is used as is", function()
    local req = capture(function(base) return recorder(base .. "/chat/completions") end, OPENAI_REPLY)
    assert.are.equal("/v1/chat/completions", req.target)
  end)

  it("every form of the OpenAI base_url reaches <root>/chat/completions", function()
    for _, form in ipairs({ "", "/", "//", "/chat/completions", "/chat/completions/",
                            "/?api-version=1", "/chat/completions?api-version=1",
                            "/chat/completions/?api-version=1" }) do
      local req = capture(function(base) return recorder(base .. form) end, OPENAI_REPLY)
      local query = form:match("%?.*$") or ""
      assert.are.equal("/v1/chat/completions" .. query, req.target, "base_url <root>" .. form)
    end
  end)

  it("every form of the Anthropic base_url reaches <root>/messages", function()
    for _, form in ipairs({ "", "/", "/messages", "/messages/", "/messages?beta=true" }) do
      local req = capture(function(base) return recorder(base .. form, { format = "anthropic" }) end,
        ANTHROPIC_REPLY)
      local query = form:match("%?.*$") or ""
      assert.are.equal("/v1/messages" .. query, req.target, "base_url <root>" .. form)
    end
    -- the host alone, as Anthropic's SDKs take it, with /v1/messages: detected and used as is
    local req = capture(function(base) return recorder(base .. "/v1/messages") end, ANTHROPIC_REPLY, "")
    assert.are.equal("/v1/messages", req.target)
    assert.are.equal("2023-06-01", req.headers["anthropic-version"])
  end)

  it("no api_key: no Authorization header", function()
    local req = capture(function(base) return recorder(base) end, OPENAI_REPLY)
    assert.is_nil(req.headers.authorization)
  end)

  it("the stub sees the query (key= in base_url, after the appended path)", function()
    local _, chat, err = run_chat(srv:url("/v1?key=k%26q&delay=1"), opts({ api_key = "k&q" }))
    assert.is_nil(err)
    assert.are.equal(stub.CANNED_ANSWER, chat.text)
  end)
end)

describe("fetch.chat: usage errors, raised at once", function()
  it("bad arguments and options", function()
    local base = openai()
    raises("usage", fetch.chat, nil, opts())
    raises("usage", fetch.chat, 42, opts())
    raises("usage", fetch.chat, base)
    raises("usage", fetch.chat, base, "opts")
    raises("usage", fetch.chat, base, { messages = MESSAGES }) -- no model
    raises("usage", fetch.chat, base, { model = "m" }) -- no messages
    raises("usage", fetch.chat, base, opts({ model = 1 }))
    raises("usage", fetch.chat, base, opts({ messages = "hi" }))
    raises("usage", fetch.chat, base, opts({ api_key = 123 }))
    raises("usage", fetch.chat, base, opts({ format = "gemini" }))
    raises("usage", fetch.chat, base, opts({ ontext = "not a function" }))
    raises("usage", fetch.chat, base, opts({ timeout = -1 }))
    raises("usage", fetch.chat, "ftp://example.com/v1", opts())
    raises("usage", fetch.chat, base, opts({ headers = "x-trace: 1" })) -- not a table
  end)

  it("stream = false (or anything but true) is a usage error, not silently replaced", function()
    local t = tag("stream-false")
    for _, v in ipairs({ false, "false", 0, {} }) do
      local err = raises("usage", fetch.chat, openai("tag=" .. t), opts({ stream = v }))
      assert.matches("'stream'", err.message, 1, true)
      assert.matches("always streams", err.message, 1, true)
    end
    assert.are.equal(0, srv:log(t).requests)
  end)

  it("api_key = false or an empty key is a usage error (the caller meant to pass one)", function()
    local t = tag("no-key")
    for _, v in ipairs({ false, "", "  ", true, 123 }) do
      local err = raises("usage", fetch.chat, openai("tag=" .. t), opts({ api_key = v }))
      assert.matches("'api_key'", err.message, 1, true)
      assert.matches("non-empty string", err.message, 1, true)
      assert.matches("leave it out", err.message, 1, true)
    end
    -- Anthropic likewise
    raises("usage", fetch.chat, openai("tag=" .. t), opts({ api_key = "", format = "anthropic" }))
    assert.are.equal(0, srv:log(t).requests)
  end)

  it("body, json, method and the stream's own callbacks are the helper's: usage errors", function()
    local base = openai()
    for _, name in ipairs({ "body", "json", "method", "onmessage", "onclose", "onopen", "onchunk" }) do
      local o = opts()
      o[name] = name == "body" and "x" or name == "method" and "GET" or name == "json" and {}
        or function() end
      local err = raises("usage", fetch.chat, base, o)
      assert.matches(name, err.message, 1, true)
    end
  end)

  it("nothing is sent for a usage error", function()
    local t = tag("usage")
    raises("usage", fetch.chat, openai("tag=" .. t), { model = "m" })
    assert.are.equal(0, srv:log(t).requests)
  end)
end)

describe("fetch.chat: typos, body fields and body = { ... }", function()
  -- Typos of request options and of the helper's own options (the value is
  -- not a function): each must be a usage error with "did you mean".
  local TYPOS = {
    idle_timout = { 5, "idle_timeout" }, reconect = { true, "reconnect" }, timout = { 3, "timeout" },
    conect_timeout = { 2, "connect_timeout" }, first_byte_timout = { 9, "first_byte_timeout" },
    max_event_sz = { 1000, "max_event_size" }, insecur = { true, "insecure" }, proxi = { "http://p", "proxy" },
    header = { { a = "b" }, "headers" }, follow_redirect = { false, "follow_redirects" },
    user_agnt = { "x", "user_agent" }, api_ky = { "sk-1", "api_key" }, frmat = { "anthropic", "format" },
    streem = { true, "stream" }, last_event_ids = { "7", "last_event_id" },
    Idle_Timeout = { 5, "idle_timeout" },
  }

  it("a misspelt option is a usage error with 'did you mean', and nothing is sent", function()
    local t = tag("typo")
    for name, case in pairs(TYPOS) do
      local err = raises("usage", fetch.chat, openai("tag=" .. t), opts({ [name] = case[1] }))
      assert.matches("'" .. name .. "'", err.message, 1, true)
      assert.matches("did you mean '" .. case[2] .. "'?", err.message, 1, true)
      assert.matches("body = {", err.message, 1, true) -- how to send such a field on purpose
    end
    -- the helper's own required options, when they are missing
    local err = raises("usage", fetch.chat, openai("tag=" .. t), { modle = "m", messages = MESSAGES })
    assert.matches("did you mean 'model'?", err.message, 1, true)
    err = raises("usage", fetch.chat, openai("tag=" .. t), { model = "m", mesages = MESSAGES })
    assert.matches("did you mean 'messages'?", err.message, 1, true)
    assert.are.equal(0, srv:log(t).requests)
  end)

  it("a function under an unknown name is a usage error naming the key", function()
    local t = tag("fn")
    local err = raises("usage", fetch.chat, openai("tag=" .. t), opts({ ontxt = function() end }))
    assert.matches("'ontxt'", err.message, 1, true)
    assert.matches("function", err.message, 1, true)
    assert.matches("did you mean 'ontext'?", err.message, 1, true)
    assert.not_matches("json", err.message, 1, true) -- not "option 'json' ... cannot be encoded"
    for name, meant in pairs({ on_done = "ondone", onerr = "onerror", onabrt = "onabort", on_retry = "onretry",
                               oncoment = "oncomment" }) do
      err = raises("usage", fetch.chat, openai("tag=" .. t), opts({ [name] = function() end }))
      assert.matches("did you mean '" .. meant .. "'?", err.message, 1, true)
    end
    -- far from every callback: still refused, named, no guess
    err = raises("usage", fetch.chat, openai("tag=" .. t), opts({ when_finished = function() end }))
    assert.matches("'when_finished'", err.message, 1, true)
    assert.not_matches("did you mean", err.message, 1, true)
    -- a callable table is not data either
    err = raises("usage", fetch.chat, openai("tag=" .. t),
      opts({ ontexts = setmetatable({}, { __call = function() end }) }))
    assert.matches("'ontexts'", err.message, 1, true)
    assert.are.equal(0, srv:log(t).requests)
  end)

  it("an option name that is not a string is a usage error", function()
    local o = opts()
    o[1] = { role = "user", content = "hi" }
    local err = raises("usage", fetch.chat, openai(), o)
    assert.matches("name", err.message, 1, true)
  end)

  -- Fields of the OpenAI, Anthropic, Ollama (OpenAI-compatible), OpenRouter,
  -- vLLM and llama.cpp request bodies: none may be taken for a typo.
  local BODY_FIELDS = {
    temperature = 0.7, top_p = 0.9, top_k = 40, min_p = 0.05, n = 2, stop = { "\n\n" },
    stop_sequences = { "END" }, max_tokens = 100, max_completion_tokens = 200, seed = 42,
    tools = { { type = "function", ["function"] = { name = "f", parameters = { type = "object" } } } },
    tool_choice = "auto", parallel_tool_calls = false, stream_options = { include_usage = true },
    response_format = { type = "json_object" }, user = "u-1", system = "be brief",
    metadata = { user_id = "u-1" }, presence_penalty = 0.1, frequency_penalty = 0.2,
    logit_bias = { ["50256"] = -100 }, logprobs = true, top_logprobs = 3, service_tier = "auto",
    store = false, modalities = { "text" }, reasoning_effort = "low", prediction = { type = "content" },
    thinking = { type = "enabled", budget_tokens = 1024 }, keep_alive = "5m", options = { num_ctx = 4096 },
    think = true, raw = false, context = { 1, 2 }, images = { "aGk=" }, template = "t", suffix = "s",
    models = { "a/b", "c/d" }, provider = { order = { "x" } }, route = "fallback", transforms = { "x" },
    usage = { include = true }, best_of = 2, repetition_penalty = 1.1, guided_json = { type = "object" },
    ignore_eos = false, min_tokens = 1, skip_special_tokens = true, chat_template_kwargs = { x = 1 },
    n_predict = 64, grammar = "root ::= x", json_schema = { type = "object" }, cache_prompt = true,
    typical_p = 1, mirostat = 0, text = { verbosity = "low" }, reasoning = { effort = "low" },
    instructions = "be brief", input = "hi", include = { "x" }, max_output_tokens = 50, truncation = "auto",
    previous_response_id = "r1", verbosity = "low", safe_prompt = false, random_seed = 1, echo = false,
    prompt_cache_key = "k", safety_identifier = "s", web_search_options = {}, audio = { voice = "x" },
  }

  it("common request-body fields of the chat APIs all go to the body, unchanged", function()
    local req = capture(function(base) return recorder(base, BODY_FIELDS) end, OPENAI_REPLY)
    for name, value in pairs(BODY_FIELDS) do
      assert.are.same(value, req.json[name], name)
    end
    assert.are.equal("stub-model", req.json.model)
    assert.are.same(MESSAGES, req.json.messages)
    assert.is_true(req.json.stream)
  end)

  it("a name close to a helper option passes when that option is given too (models beside model)", function()
    local req = capture(function(base)
      return recorder(base, { models = { "x" }, message = "m" })
    end, OPENAI_REPLY)
    assert.are.same({ "x" }, req.json.models)
    assert.are.equal("m", req.json.message)
  end)

  it("body = { ... } sends its fields verbatim, also names of options and near-typos", function()
    local given = { timeout = 30, format = "json", headers = "h", idle_timout = 1, temperature = 0.2,
                    options = { num_ctx = 2048 } }
    local req = capture(function(base) return recorder(base, { body = given, api_key = "k" }) end,
      OPENAI_REPLY)
    for name, value in pairs(given) do assert.are.same(value, req.json[name], name) end
    assert.are.equal("stub-model", req.json.model)
    assert.are.same(MESSAGES, req.json.messages)
    assert.is_true(req.json.stream)
    assert.are.equal("Bearer k", req.headers.authorization)
    assert.are.equal("application/json", req.headers["content-type"])
    -- the caller's table is left as it was
    assert.are.same({ timeout = 30, format = "json", headers = "h", idle_timout = 1, temperature = 0.2,
                      options = { num_ctx = 2048 } }, given)
  end)

  it("precedence: body is the base; model, messages and top-level fields are laid over it", function()
    local req = capture(function(base)
      return recorder(base, { model = "top", temperature = 0.9,
        body = { model = "under", messages = { { role = "user", content = "under" } }, temperature = 0.1,
                 top_p = 0.5 } })
    end, OPENAI_REPLY)
    assert.are.equal("top", req.json.model)
    assert.are.same(MESSAGES, req.json.messages)
    assert.are.equal(0.9, req.json.temperature)
    assert.are.equal(0.5, req.json.top_p)
  end)

  it("model and messages may come from body alone", function()
    local body = { model = "from-body", messages = { { role = "user", content = "hi" } } }
    local done = 0
    local req = capture(function(base)
      return fetch.chat(base, { body = body, ondone = function() done = done + 1 end })
    end, OPENAI_REPLY)
    assert.are.equal(1, done)
    assert.are.equal("from-body", req.json.model)
    assert.are.same(body.messages, req.json.messages)
    assert.is_true(req.json.stream)
    raises("usage", fetch.chat, openai(), { body = { model = "m" } })          -- no messages anywhere
    raises("usage", fetch.chat, openai(), { body = { messages = MESSAGES } })  -- no model anywhere
  end)

  it("Anthropic: max_tokens from body counts; the default fills in only when neither gives it", function()
    local req = capture(function(base)
      return recorder(base, { format = "anthropic", body = { max_tokens = 7, system = "s" } })
    end, ANTHROPIC_REPLY)
    assert.are.equal(7, req.json.max_tokens)
    assert.are.equal("s", req.json.system)
  end)

  it("body: not a table, stream = false in it, a function in it, a non-string key: usage errors", function()
    local t = tag("body")
    local base = openai("tag=" .. t)
    local err = raises("usage", fetch.chat, base, opts({ body = '{"a":1}' }))
    assert.matches("'body'", err.message, 1, true)
    err = raises("usage", fetch.chat, base, opts({ body = { stream = false } }))
    assert.matches("always streams", err.message, 1, true)
    err = raises("usage", fetch.chat, base, opts({ body = { f = function() end } }))
    assert.matches("cannot be encoded", err.message, 1, true)
    assert.not_matches("'json'", err.message, 1, true)
    raises("usage", fetch.chat, base, opts({ body = { "positional" } }))
    assert.are.equal(0, srv:log(t).requests)
    -- stream = true in body is fine
    local req = capture(function(b) return recorder(b, { body = { stream = true } }) end, OPENAI_REPLY)
    assert.is_true(req.json.stream)
  end)

  it("types: ChatOptions lists body and no longer ends with [string] any", function()
    local text = h.read("types/fetchstream.lua")
    local block = text:match("\n(%-%-%-@class fetchstream%.ChatOptions.-)\n\n")
    assert.is_truthy(block)
    assert.not_matches("@field%s+%[string%]", block)
    assert.matches("\n%-%-%-@field body%? ", block)
  end)
end)

describe("fetch.chat (Anthropic)", function()
  local function anth(extra) return opts(extra) end

  it("format = anthropic: text, finish_reason end_turn, usage merged", function()
    local texts, chat, err = run_chat(anthropic(), anth({ format = "anthropic" }))
    assert.is_nil(err)
    assert.are.equal("anthropic", chat.format)
    assert.are.same(stub.CANNED_TOKENS, texts)
    assert.are.equal(stub.CANNED_ANSWER, chat.text)
    assert.are.equal("end_turn", chat.finish_reason)
    -- message_start's input_tokens with message_delta's output_tokens
    assert.are.same({ input_tokens = PROMPT_WORDS, output_tokens = 22 }, chat.usage)
    if math.type then -- Lua 5.4's subtype; LuaJIT has one number type
      for _, v in pairs(chat.usage) do assert.are.equal("integer", math.type(v)) end
    end
    assert.is_true(chat.done)
    assert.are.equal("done", chat.stream.reason)
    assert.are.equal(#stub.CANNED_TOKENS, chat.stats.deltas)
    assert.is_true(chat.stats.ttft >= chat.stats.ttfb)
    assert.is_true(chat.stats.tokens_per_second > 0)
    -- usage.output_tokens (22), one token per delta: the same figure as deltas_per_second
    assert.are.equal(chat.stats.deltas_per_second, chat.stats.tokens_per_second)
  end)

  it("a base URL ending in /messages selects the format by itself", function()
    local texts, chat, err = run_chat(srv:url("/v1/messages?delay=1"), anth())
    assert.is_nil(err)
    assert.are.equal("anthropic", chat.format)
    assert.are.equal(stub.CANNED_ANSWER, table.concat(texts))
    assert.are.equal("end_turn", chat.finish_reason)
  end)

  it("a base URL ending in /messages/ (slash) or with a query is detected too", function()
    local _, chat, err = run_chat(srv:url("/v1/messages/?delay=1"), anth())
    assert.is_nil(err)
    assert.are.equal("anthropic", chat.format)
    assert.are.equal("end_turn", chat.finish_reason)
  end)

  it("format = openai wins over a /messages base", function()
    local req = capture(function(base) return recorder(base, { format = "openai" }) end, OPENAI_REPLY,
      "/v1/messages")
    assert.are.equal("/v1/messages/chat/completions", req.target)
  end)

  it("error_after=K: event: error is an api error with the server's message and json", function()
    local texts, chat, err = run_chat(anthropic("error_after=4"), anth({ format = "anthropic" }))
    assert.is_truthy(err)
    assert.are.equal("api", err.kind)
    assert.are.equal("Overloaded", err.message)
    assert.are.same({ type = "error", error = { type = "overloaded_error", message = "Overloaded" } }, err.json)
    assert.are.same({ table.unpack(stub.CANNED_TOKENS, 1, 4) }, texts)
    assert.are.equal(first_tokens(4), chat.text)
    assert.are.equal("api", chat.stream.reason)
  end)

  it("truncate=K: no message_stop is an eof error; chat.text holds the K tokens", function()
    local texts, chat, err = run_chat(anthropic("truncate=6"), anth({ format = "anthropic" }))
    assert.are.equal("eof", err and err.kind)
    assert.matches("truncated", err.message)
    assert.are.equal(6, #texts)
    assert.are.equal(first_tokens(6), chat.text)
    assert.is_nil(chat.finish_reason)
    assert.is_falsy(chat.done)
  end)

  it("x-api-key: the right key passes key=, a wrong one is a 401 http error", function()
    local _, chat, err = run_chat(anthropic("key=ak-1"), anth({ format = "anthropic", api_key = "ak-1" }))
    assert.is_nil(err)
    assert.are.equal(stub.CANNED_ANSWER, chat.text)
    local _, _, err2 = run_chat(anthropic("key=ak-1"), anth({ format = "anthropic", api_key = "nope" }))
    assert.are.equal("http", err2 and err2.kind)
    assert.are.equal(401, err2.status)
    assert.are.equal("invalid x-api-key", err2.message)
    assert.are.equal("authentication_error", err2.json.error.type)
  end)

  it("a 529 is an http error with Anthropic's message", function()
    local _, _, err = run_chat(anthropic("status=529"), anth({ format = "anthropic", max_retries = 0 }))
    assert.are.equal("http", err and err.kind)
    assert.are.equal(529, err.status)
    assert.are.equal("status 529", err.message)
    assert.are.equal("overloaded_error", err.json.error.type)
  end)

  it("sends POST <base>/messages with x-api-key, anthropic-version and max_tokens 1024", function()
    local req = capture(function(base)
      return recorder(base, { format = "anthropic", api_key = "ak-9", system = "be brief" })
    end, ANTHROPIC_REPLY)
    assert.are.equal("POST", req.method)
    assert.are.equal("/v1/messages", req.target)
    assert.are.equal("ak-9", req.headers["x-api-key"])
    assert.are.equal("2023-06-01", req.headers["anthropic-version"])
    assert.is_nil(req.headers.authorization)
    assert.is_true(req.json.stream)
    assert.are.equal(1024, req.json.max_tokens)
    assert.are.equal("be brief", req.json.system)
    assert.are.same(MESSAGES, req.json.messages)
    assert.are.equal("stub-model", req.json.model)
  end)

  it("a given max_tokens and anthropic-version header win", function()
    local req = capture(function(base)
      return recorder(base, { format = "anthropic", max_tokens = 5,
                              headers = { ["anthropic-version"] = "2099-01-01" } })
    end, ANTHROPIC_REPLY)
    assert.are.equal(5, req.json.max_tokens)
    assert.are.equal("2099-01-01", req.headers["anthropic-version"])
  end)

  it("tool_use blocks are assembled: { id, type = tool_use, name, input }", function()
    local body = table.concat({
      'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        .. '"content_block":{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}}\n\n',
      'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        .. '"delta":{"type":"input_json_delta","partial_json":"{\\"city\\":"}}\n\n',
      'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        .. '"delta":{"type":"input_json_delta","partial_json":"\\"Paris\\"}"}}\n\n',
      'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"tool_use"},'
        .. '"usage":{"output_tokens":9}}\n\n',
      'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    })
    local _, rec = capture(function(base) return recorder(base, { format = "anthropic" }) end, body)
    assert.are.equal(1, rec.done)
    local chat = rec.chat
    assert.are.equal(1, #chat.tool_calls)
    local call = chat.tool_calls[1]
    assert.are.equal("toolu_1", call.id)
    assert.are.equal("tool_use", call.type)
    assert.are.equal("get_weather", call.name)
    assert.are.equal('{"city":"Paris"}', call.input)
    assert.are.equal("tool_use", chat.finish_reason)
  end)
end)

describe("fetch.chat with callbacks", function()
  it("returns the chat alone; ontext per delta, ondone once with the chat", function()
    local n = select("#", fetch.chat(openai("truncate=0"), opts({ ondone = function() end,
                                                                     onerror = function() end })))
    assert.are.equal(1, n)
    fetch.run()
    local rec = recorder(openai(), { stream_options = { include_usage = true } })
    assert.is_true(fetch.run(10))
    assert.are.same(stub.CANNED_TOKENS, rec.texts)
    assert.are.equal(1, rec.done)
    assert.are.equal(rec.chat, rec.done_with)
    assert.are.same({}, rec.errors)
    assert.are.equal(0, rec.aborts)
    local chat = rec.chat
    assert.are.equal(stub.CANNED_ANSWER, chat.text)
    assert.are.equal("stop", chat.finish_reason)
    assert.are.equal(22, chat.usage.completion_tokens)
    assert.is_true(chat.done)
    assert.is_true(chat.stats.ttft >= chat.stats.ttfb)
    assert.is_true(chat.stats.tokens_per_second > 0)
    assert.are.equal("done", chat.stream.reason)
  end)

  it("the result is complete when ondone runs", function()
    local seen
    fetch.chat(openai(), opts({ ondone = function(c)
      seen = { text = c.text, finish = c.finish_reason, done = c.done, deltas = c.stats.deltas }
    end }))
    fetch.run()
    assert.are.same({ text = stub.CANNED_ANSWER, finish = "stop", done = true, deltas = 22 }, seen)
  end)

  it("a truncated answer: onerror once with eof, never ondone", function()
    local rec = recorder(openai("truncate=3"))
    fetch.run()
    assert.are.equal(0, rec.done)
    assert.are.equal(1, #rec.errors)
    assert.are.equal("eof", rec.errors[1].kind)
    assert.are.equal(rec.errors[1], rec.chat.error)
    assert.are.equal(first_tokens(3), table.concat(rec.texts))
    assert.are.equal(first_tokens(3), rec.chat.text)
    assert.are.equal(0, rec.aborts)
  end)

  it("an api error: onerror once with api, never ondone", function()
    local rec = recorder(openai("error_after=2"))
    fetch.run()
    assert.are.equal(0, rec.done)
    assert.are.equal(1, #rec.errors)
    assert.are.equal("api", rec.errors[1].kind)
    assert.are.equal("stub: overloaded", rec.errors[1].message)
    assert.are.equal(2, #rec.texts)
  end)

  it("an http error: onerror once with http, no text", function()
    local rec = recorder(openai("key=right"), { api_key = "wrong" })
    fetch.run()
    assert.are.equal(0, rec.done)
    assert.are.equal(1, #rec.errors)
    assert.are.equal("http", rec.errors[1].kind)
    assert.are.equal(401, rec.errors[1].status)
    assert.are.equal("invalid api key", rec.errors[1].message)
    assert.are.same({}, rec.texts)
  end)

  it("Anthropic in callback form: ondone once; error_after: onerror once", function()
    local ok = recorder(anthropic(), { format = "anthropic" })
    local bad = recorder(anthropic("error_after=1"), { format = "anthropic" })
    local cut = recorder(anthropic("truncate=2"), { format = "anthropic" })
    fetch.run()
    assert.are.equal(1, ok.done)
    assert.are.same({}, ok.errors)
    assert.are.equal(stub.CANNED_ANSWER, ok.chat.text)
    assert.are.equal("end_turn", ok.chat.finish_reason)
    assert.are.equal(0, bad.done)
    assert.are.equal(1, #bad.errors)
    assert.are.equal("api", bad.errors[1].kind)
    assert.are.equal("Overloaded", bad.errors[1].message)
    assert.are.equal(0, cut.done)
    assert.are.equal(1, #cut.errors)
    assert.are.equal("eof", cut.errors[1].kind)
  end)

  it("chat:abort() from ontext: onabort once with the reason; no more text; no ondone/onerror", function()
    local rec
    rec = recorder(srv:url("/v1?delay=20"), { ontext = function(t)
      rec.texts[#rec.texts + 1] = t
      if #rec.texts == 2 then rec.chat:abort("stop now") end
    end })
    fetch.run()
    assert.are.equal(2, #rec.texts)
    assert.are.equal(1, rec.aborts)
    assert.are.equal("stop now", rec.abort_why)
    assert.are.equal(0, rec.done)
    assert.are.same({}, rec.errors)
    assert.are.equal("aborted", rec.chat.stream.reason)
  end)

  it("the result is settled when onabort runs", function()
    local seen, chat, n = nil, nil, 0
    chat = fetch.chat(srv:url("/v1?delay=20"), opts({
      ontext = function() n = n + 1; if n == 3 then chat:abort("enough") end end,
      onabort = function(why) seen = { why = why, text = chat.text, deltas = chat.stats.deltas } end,
    }))
    fetch.run()
    assert.are.same({ why = "enough", text = first_tokens(3), deltas = 3 }, seen)
  end)

  it("many chats at once, driven by one fetch.run", function()
    local recs = {}
    for i = 1, 5 do recs[i] = recorder(i % 2 == 0 and anthropic() or openai(),
                                       i % 2 == 0 and { format = "anthropic" } or nil) end
    local t0 = now()
    assert.is_true(fetch.run(10))
    local elapsed = now() - t0
    for _, rec in ipairs(recs) do
      assert.are.equal(1, rec.done)
      assert.are.equal(stub.CANNED_ANSWER, rec.chat.text)
    end
    assert.is_true(elapsed < 5)
  end)

  it("an error raised in ontext ends that chat with a callback error", function()
    local rec = recorder(openai(), { ontext = function() error("ontext failed", 0) end })
    fetch.run()
    assert.are.equal(0, rec.done)
    assert.are.equal(1, #rec.errors)
    assert.are.equal("callback", rec.errors[1].kind)
    assert.are.equal("ontext failed", rec.errors[1].cause)
  end)
end)

---------------------------------------------------------------------------
-- The other wire formats, reasoning, ondata and retries (issue 11). No
-- `<close>`, `//` or math.type below: this part parses under LuaJIT too.

-- Base URLs on the stub for the Responses API (`<base>/responses`) and
-- Ollama (the host: `<base>/api/chat`), with query parameters.
local function responses(query)
  return srv:url("/v1?" .. (query and query .. "&" or "") .. "delay=1")
end
local function ollama(query)
  return srv:url("/?" .. (query and query .. "&" or "") .. "delay=1")
end

-- The stub's tool calls as each format's result holds them.
local function responses_calls()
  local out = {}
  for i, call in ipairs(stub.TOOL_CALL_PIECES) do
    out[i] = { type = "function_call", id = "fc_" .. i, call_id = call.id, name = call.name,
               arguments = table.concat(call.pieces) }
  end
  return out
end
local function anthropic_calls()
  local out = {}
  for i, call in ipairs(stub.TOOL_CALL_PIECES) do
    out[i] = { id = call.id, type = "tool_use", name = call.name, input = table.concat(call.pieces) }
  end
  return out
end
local function ollama_calls()
  local out = {}
  for i, call in ipairs(stub.TOOL_CALL_PIECES) do
    out[i] = { ["function"] = { name = call.name, arguments = cjson.decode(table.concat(call.pieces)) } }
  end
  return out
end

local ALL_FORMATS = {
  { name = "openai", base = function(q) return openai(q) end },
  { name = "responses", base = function(q) return responses(q) end },
  { name = "anthropic", base = function(q) return anthropic(q) end },
  { name = "ollama", base = function(q) return ollama(q) end },
}

local RESPONSES_REPLY = 'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
  .. '"item_id":"msg_1","output_index":0,"content_index":0,"delta":"ok"}\n\n'
  .. 'event: response.completed\ndata: {"type":"response.completed","response":{"status":"completed"}}\n\n'
local OLLAMA_REPLY = '{"message":{"role":"assistant","content":"ok"},"done":false}\n'
  .. '{"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop"}\n'

describe("fetch.chat (OpenAI Responses API)", function()
  local function resp(extra)
    local o = opts(extra)
    o.format = o.format or "responses"
    return o
  end

  it("streams response.output_text.delta; response.completed ends it with usage and the status", function()
    local texts, chat, err = run_chat(responses(), resp())
    assert.is_nil(err)
    assert.are.equal("responses", chat.format)
    assert.are.same(stub.CANNED_TOKENS, texts)
    assert.are.equal(stub.CANNED_ANSWER, chat.text)
    assert.are.equal("completed", chat.finish_reason)
    assert.is_true(chat.done)
    assert.are.equal("done", chat.stream.reason)
    assert.are.equal("stub-model", chat.model)
    assert.are.same({ input_tokens = PROMPT_WORDS, input_tokens_details = { cached_tokens = 0 },
                      output_tokens = 22, output_tokens_details = { reasoning_tokens = 0 },
                      total_tokens = PROMPT_WORDS + 22 }, chat.usage)
    assert.are.same({}, chat.tool_calls)
    assert.are.equal("", chat.reasoning)
    assert.are.equal(22, chat.stats.deltas)
    -- output_tokens counts one token per delta here: the two rates agree
    assert.are.equal(chat.stats.deltas_per_second, chat.stats.tokens_per_second)
  end)

  it("sends POST <base>/responses: messages become input, the API's own fields go as they are", function()
    local req = capture(function(base)
      return recorder(base, { format = "responses", api_key = "sk-r", instructions = "be brief",
                              max_output_tokens = 50, reasoning = { effort = "low", summary = "auto" },
                              tools = { { type = "function", name = "f", parameters = { type = "object" } } } })
    end, RESPONSES_REPLY)
    assert.are.equal("POST", req.method)
    assert.are.equal("/v1/responses", req.target)
    assert.are.equal("Bearer sk-r", req.headers.authorization)
    assert.are.equal("text/event-stream", req.headers.accept)
    local body = req.json
    assert.is_true(body.stream)
    assert.are.equal("stub-model", body.model)
    assert.are.same(MESSAGES, body.input)
    assert.is_nil(body.messages)
    assert.are.equal("be brief", body.instructions)
    assert.are.equal(50, body.max_output_tokens)
    assert.are.same({ effort = "low", summary = "auto" }, body.reasoning)
    assert.are.equal("f", body.tools[1].name)
  end)

  it("input may be given instead of messages (a string too); body.input counts", function()
    local req = capture(function(base)
      return fetch.chat(base, { format = "responses", model = "m", input = "hello there",
                                ondone = function() end })
    end, RESPONSES_REPLY)
    assert.are.equal("hello there", req.json.input)
    assert.is_nil(req.json.messages)
    req = capture(function(base)
      return fetch.chat(base, { format = "responses", body = { model = "m", input = { { role = "user",
        content = "x" } } }, ondone = function() end })
    end, RESPONSES_REPLY)
    assert.are.same({ { role = "user", content = "x" } }, req.json.input)
    local err = raises("usage", fetch.chat, responses(), { format = "responses", model = "m" })
    assert.matches("input", err.message, 1, true)
  end)

  it("a base URL ending in /responses selects the format and is used as is", function()
    local texts, chat, err = run_chat(srv:url("/v1/responses?delay=1"), opts())
    assert.is_nil(err)
    assert.are.equal("responses", chat.format)
    assert.are.equal(stub.CANNED_ANSWER, table.concat(texts))
    for _, form in ipairs({ "", "/", "/responses", "/responses/?x=1" }) do
      local req = capture(function(base) return recorder(base .. form, { format = "responses" }) end,
        RESPONSES_REPLY)
      assert.are.equal("/v1/responses" .. (form:match("%?.*$") or ""), req.target, "base_url <root>" .. form)
    end
  end)

  it("function calls are assembled from their argument deltas: the API's function_call items", function()
    local texts, chat, err = run_chat(responses("tools=1"), resp())
    assert.is_nil(err)
    assert.are.same({}, texts)
    assert.are.same(responses_calls(), chat.tool_calls)
    assert.are.equal("completed", chat.finish_reason)
    assert.are.equal(6, chat.usage.output_tokens)
  end)

  it("the argument deltas alone rebuild the arguments (no .done event needed)", function()
    local body = table.concat({
      'data: {"type":"response.output_item.added","output_index":0,"item":{"id":"fc_9","type":"function_call",'
        .. '"call_id":"call_9","name":"f","arguments":""}}\n\n',
      'data: {"type":"response.function_call_arguments.delta","item_id":"fc_9","output_index":0,'
        .. '"delta":"{\\"a\\""}\n\n',
      'data: {"type":"response.function_call_arguments.delta","item_id":"fc_9","output_index":0,"delta":":1}"}\n\n',
      'data: {"type":"response.completed","response":{"status":"completed"}}\n\n',
    })
    local _, rec = capture(function(base) return recorder(base, { format = "responses" }) end, body)
    assert.are.equal(1, rec.done)
    assert.are.same({ { type = "function_call", id = "fc_9", call_id = "call_9", name = "f", arguments = '{"a":1}' } },
      rec.chat.tool_calls)
  end)

  it("a stream without response.completed (truncate=K) is eof; the K tokens are kept", function()
    local texts, chat, err = run_chat(responses("truncate=5"), resp())
    assert.are.equal("eof", err and err.kind)
    assert.matches("response.completed", err.message, 1, true)
    assert.matches("truncated", err.message, 1, true)
    assert.are.equal(5, #texts)
    assert.are.equal(first_tokens(5), chat.text)
    assert.is_falsy(chat.done)
  end)

  it("response.failed is an api error with response.error's message", function()
    local texts, chat, err = run_chat(responses("error_after=3"), resp())
    assert.are.equal("api", err and err.kind)
    assert.are.equal("stub: overloaded", err.message)
    assert.are.equal("response.failed", err.json.type)
    assert.are.equal("server_error", err.json.response.error.code)
    assert.are.equal(first_tokens(3), table.concat(texts))
    assert.are.equal("api", chat.stream.reason)
  end)

  it("an `error` event is an api error with its message", function()
    local _, chat, err = run_chat(responses("error_after=2&error_event=1"), resp())
    assert.are.equal("api", err and err.kind)
    assert.are.equal("stub: overloaded", err.message)
    assert.are.same("error", err.json.type)
    assert.are.equal(first_tokens(2), chat.text)
  end)

  it("response.incomplete ends the answer: done, finish_reason from incomplete_details, usage", function()
    local texts, chat, err = run_chat(responses("incomplete=4"), resp())
    assert.is_nil(err)
    assert.are.equal(4, #texts)
    assert.is_true(chat.done)
    assert.are.equal("done", chat.stream.reason)
    assert.are.equal("max_output_tokens", chat.finish_reason)
    assert.are.equal(4, chat.usage.output_tokens)
  end)

  it("what it does not need (created, in_progress, content_part, output_text.done, ...) is ignored", function()
    local seen = {}
    local _, chat, err = run_chat(responses(), resp({ ondata = function(obj) seen[obj.type] = true end }))
    assert.is_nil(err)
    for _, t in ipairs({ "response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added", "response.output_text.done", "response.content_part.done",
                         "response.output_item.done", "response.completed" }) do
      assert.is_true(seen[t], t)
    end
    assert.are.equal(stub.CANNED_ANSWER, chat.text) -- output_text.done's whole text is not added again
  end)

  it("callback form: ondone once; an error: onerror once; never reconnects after response.completed", function()
    local t = tag("resp-cb")
    local ok = recorder(responses("tag=" .. t), { format = "responses", reconnect = { delay = 0.02 } })
    local bad = recorder(responses("error_after=1"), { format = "responses" })
    assert.is_true(fetch.run(10))
    assert.are.equal(1, ok.done)
    assert.are.same(stub.CANNED_TOKENS, ok.texts)
    assert.are.equal("completed", ok.chat.finish_reason)
    assert.are.equal(0, bad.done)
    assert.are.equal(1, #bad.errors)
    assert.are.equal("api", bad.errors[1].kind)
    socket.sleep(0.1)
    assert.are.equal(1, srv:log(t).requests)
  end)
end)

describe("fetch.chat (Ollama's native /api/chat)", function()
  local function oll(extra)
    local o = opts(extra)
    o.format = o.format or "ollama"
    return o
  end

  it("streams message.content; the done line ends it with done_reason, counts and durations", function()
    local texts, chat, err = run_chat(ollama(), oll())
    assert.is_nil(err)
    assert.are.equal("ollama", chat.format)
    assert.are.same(stub.CANNED_TOKENS, texts)
    assert.are.equal(stub.CANNED_ANSWER, chat.text)
    assert.are.equal("stop", chat.finish_reason)
    assert.is_true(chat.done)
    assert.are.equal("done", chat.stream.reason)
    assert.are.equal("stub-model", chat.model)
    assert.are.same({ prompt_eval_count = PROMPT_WORDS, eval_count = 22 }, chat.usage)
    local st = chat.stats
    assert.are.equal(0.123456789, st.total_duration)
    assert.are.equal(0.001234567, st.load_duration)
    assert.are.equal(0.002345678, st.prompt_eval_duration)
    assert.are.equal(0.098765432, st.eval_duration)
    assert.are.equal(22, st.deltas)
    assert.are.equal(st.deltas_per_second, st.tokens_per_second) -- eval_count: one token per line
  end)

  it("sends POST <host>/api/chat with stream = true, model, messages and Ollama's own fields", function()
    local req = capture(function(base)
      return recorder(base, { format = "ollama", options = { num_ctx = 4096 }, think = true, keep_alive = "5m",
                              body = { format = "json" } })
    end, OLLAMA_REPLY, "")
    assert.are.equal("POST", req.method)
    assert.are.equal("/api/chat", req.target)
    assert.are.equal("application/json", req.headers["content-type"])
    assert.are.equal("application/x-ndjson", req.headers.accept)
    assert.is_nil(req.headers.authorization)
    local body = req.json
    assert.is_true(body.stream)
    assert.are.equal("stub-model", body.model)
    assert.are.same(MESSAGES, body.messages)
    assert.are.same({ num_ctx = 4096 }, body.options)
    assert.is_true(body.think)
    assert.are.equal("5m", body.keep_alive)
    assert.are.equal("json", body.format) -- Ollama's `format` goes through body = { }
  end)

  it("every form of the host reaches <host>/api/chat; a base ending in /api/chat selects the format", function()
    for _, form in ipairs({ "", "/", "/api", "/api/", "/api/chat", "/api/chat/?x=1" }) do
      local req = capture(function(base) return recorder(base .. form, { format = "ollama" }) end, OLLAMA_REPLY, "")
      assert.are.equal("/api/chat" .. (form:match("%?.*$") or ""), req.target, "base_url <host>" .. form)
    end
    local texts, chat, err = run_chat(srv:url("/api/chat?delay=1"), opts())
    assert.is_nil(err)
    assert.are.equal("ollama", chat.format)
    assert.are.equal(stub.CANNED_ANSWER, table.concat(texts))
  end)

  it("message.tool_calls are collected as Ollama sends them (arguments an object)", function()
    local texts, chat, err = run_chat(ollama("tools=1"), oll())
    assert.is_nil(err)
    assert.are.same({}, texts)
    assert.are.same(ollama_calls(), chat.tool_calls)
    assert.are.equal(2, chat.usage.eval_count)
  end)

  it("a stream without its done line (truncate=K) is eof", function()
    local texts, chat, err = run_chat(ollama("truncate=4"), oll())
    assert.are.equal("eof", err and err.kind)
    assert.matches('"done": true', err.message, 1, true)
    assert.are.equal(4, #texts)
    assert.are.equal(first_tokens(4), chat.text)
    assert.is_falsy(chat.done)
  end)

  it('an {"error": ...} line is an api error with its message', function()
    local texts, chat, err = run_chat(ollama("error_after=3"), oll())
    assert.are.equal("api", err and err.kind)
    assert.are.equal("stub: overloaded", err.message)
    assert.are.same({ error = "stub: overloaded" }, err.json)
    assert.are.equal(3, #texts)
    assert.are.equal("api", chat.stream.reason)
  end)

  it("a line that is not JSON is a protocol error naming it; lines cut across chunks decode whole", function()
    local _, _, err = run_chat(ollama("bad_line=3"), oll())
    assert.are.equal("protocol", err and err.kind)
    assert.are.equal(3, err.line)
    local texts, chat, err2 = run_chat(ollama("split=1&split_delay=1"), oll())
    assert.is_nil(err2)
    assert.are.same(stub.CANNED_TOKENS, texts)
    assert.is_true(chat.done)
  end)

  it("non-2xx: an http error with Ollama's message; key= checks the Bearer token", function()
    local _, _, err = run_chat(ollama("status=404"), oll({ max_retries = 0 }))
    assert.are.equal("http", err and err.kind)
    assert.are.equal(404, err.status)
    assert.are.equal("status 404", err.message)
    local _, chat, err2 = run_chat(ollama("key=ok"), oll({ api_key = "ok" }))
    assert.is_nil(err2)
    assert.are.equal(stub.CANNED_ANSWER, chat.text)
  end)

  it("callback form: ondone once; truncated: onerror eof once; an error line: onerror api once", function()
    local ok = recorder(ollama(), { format = "ollama" })
    local cut = recorder(ollama("truncate=2"), { format = "ollama" })
    local bad = recorder(ollama("error_after=1&split=1&split_delay=1"), { format = "ollama" })
    assert.is_true(fetch.run(10))
    assert.are.equal(1, ok.done)
    assert.are.same({}, ok.errors)
    assert.are.same(stub.CANNED_TOKENS, ok.texts)
    assert.are.equal(22, ok.chat.usage.eval_count)
    assert.are.equal(0, cut.done)
    assert.are.equal(1, #cut.errors)
    assert.are.equal("eof", cut.errors[1].kind)
    assert.are.equal(first_tokens(2), cut.chat.text)
    assert.are.equal(0, bad.done)
    assert.are.equal(1, #bad.errors)
    assert.are.equal("api", bad.errors[1].kind)
  end)

  it("callback form: a last line without a newline is read", function()
    local reply = '{"message":{"content":"a"},"done":false}\n{"message":{"content":"b"},"done":true}'
    local _, rec = capture(function(base) return recorder(base, { format = "ollama" }) end, reply, "")
    assert.are.equal(1, rec.done)
    assert.are.same({ "a", "b" }, rec.texts)
  end)

  it("SSE-only options (reconnect, last_event_id, onretry, oncomment) are usage errors", function()
    local t = tag("oll-sse")
    for name, v in pairs({ reconnect = true, last_event_id = "1", onretry = function() end,
                           oncomment = function() end }) do
      local err = raises("usage", fetch.chat, ollama("tag=" .. t), oll({ [name] = v }))
      assert.matches("'" .. name .. "'", err.message, 1, true)
      assert.matches("NDJSON", err.message, 1, true)
    end
    assert.are.equal(0, srv:log(t).requests)
  end)
end)

describe("fetch.chat: reasoning", function()
  it("OpenAI-compatible delta.reasoning_content and delta.reasoning: chat.reasoning, onreasoning; "
    .. "the loop yields only the answer", function()
    for _, field in ipairs({ "reasoning_content", "reasoning" }) do
      local pieces = {}
      local texts, chat, err = run_chat(openai("reasoning=1&reasoning_field=" .. field), opts({
        stream_options = { include_usage = true },
        onreasoning = function(r) pieces[#pieces + 1] = r end,
      }))
      assert.is_nil(err)
      assert.are.same(stub.CANNED_TOKENS, texts, field)
      assert.are.same(stub.CANNED_REASONING, pieces, field)
      assert.are.equal(stub.CANNED_REASONING_TEXT, chat.reasoning)
      assert.are.equal(stub.CANNED_ANSWER, chat.text)
      assert.are.equal(#stub.CANNED_REASONING, chat.stats.reasoning_deltas)
      assert.are.equal(22, chat.stats.deltas)
      -- completion_tokens counts the reasoning too, and so does the time base of the rates
      assert.are.equal(22 + #stub.CANNED_REASONING, chat.usage.completion_tokens)
      assert.are.equal(chat.stats.deltas_per_second, chat.stats.tokens_per_second)
    end
  end)

  it("a delta with both fields gives its reasoning once", function()
    local reply = 'data: {"choices":[{"index":0,"delta":{"reasoning_content":"think","reasoning":"think"}}]}\n\n'
      .. OPENAI_REPLY
    local _, rec = capture(function(base) return recorder(base) end, reply)
    assert.are.equal("think", rec.chat.reasoning)
    assert.are.same({ "ok" }, rec.texts)
  end)

  it("Anthropic thinking_delta, the Responses reasoning summary and Ollama's message.thinking", function()
    for _, f in ipairs(ALL_FORMATS) do
      if f.name ~= "openai" then
        local pieces = {}
        local texts, chat, err = run_chat(f.base("reasoning=1"), opts({ format = f.name,
          onreasoning = function(r, c)
            assert.are.equal("table", type(c), "the chat is the last argument")
            pieces[#pieces + 1] = r
          end }))
        assert.is_nil(err, f.name)
        assert.are.same(stub.CANNED_TOKENS, texts, f.name)
        assert.are.same(stub.CANNED_REASONING, pieces, f.name)
        assert.are.equal(stub.CANNED_REASONING_TEXT, chat.reasoning, f.name)
        assert.are.equal(#stub.CANNED_REASONING, chat.stats.reasoning_deltas, f.name)
      end
    end
  end)

  it("Responses: each reasoning summary part is a paragraph", function()
    local function delta(part, text)
      return ('data: {"type":"response.reasoning_summary_text.delta","item_id":"rs_1","output_index":0,'
        .. '"summary_index":%d,"delta":"%s"}\n\n'):format(part, text)
    end
    local reply = delta(0, "one") .. delta(0, " more") .. delta(1, "two") .. RESPONSES_REPLY
    local pieces = {}
    local _, rec = capture(function(base)
      return recorder(base, { format = "responses", onreasoning = function(r) pieces[#pieces + 1] = r end })
    end, reply)
    assert.are.equal("one more\n\ntwo", rec.chat.reasoning)
    assert.are.same({ "one", " more", "\n\ntwo" }, pieces)
  end)

  it("in the callback form too; ttft is the first answer text, after the reasoning", function()
    local pieces = {}
    local rec = recorder(srv:url("/v1?reasoning=1&delay=10"), { onreasoning = function(r) pieces[#pieces + 1] = r end })
    assert.is_true(fetch.run(10))
    assert.are.equal(1, rec.done)
    assert.are.same(stub.CANNED_REASONING, pieces)
    assert.are.same(stub.CANNED_TOKENS, rec.texts)
    assert.is_true(rec.chat.stats.ttft >= 0.1, "ttft " .. rec.chat.stats.ttft) -- 10 reasoning deltas 10 ms apart
  end)

  it("an error raised in onreasoning ends the chat with a callback error naming it", function()
    local _, chat, err = run_chat(openai("reasoning=1"), opts({ onreasoning = function() error("no thanks", 0) end }))
    assert.are.equal("callback", err and err.kind)
    assert.matches("onreasoning", err.message, 1, true)
    assert.are.equal("no thanks", err.cause)
    assert.are.equal("callback", chat.stream.reason)
  end)
end)

describe("fetch.chat: ondata, every decoded payload", function()
  it("gets each payload in order, in every format, before its text", function()
    local counts = { openai = 24, responses = 2 + 2 + 22 + 3 + 1, anthropic = 3 + 22 + 3, ollama = 23 }
    for _, f in ipairs(ALL_FORMATS) do
      local log = {}
      local texts = {}
      local chat = fetch.chat(f.base(), opts({ format = f.name, ondata = function(obj, c)
        assert.are.equal("table", type(obj))
        assert.are.equal("table", type(c), "the chat is the last argument")
        log[#log + 1] = { obj = obj, texts = #texts }
      end }))
      for text in chat do texts[#texts + 1] = text end
      chat:close()
      assert.are.equal(counts[f.name], #log, f.name)
      assert.are.same(stub.CANNED_TOKENS, texts, f.name)
      -- a text is yielded after the payload that carried it has been seen
      for _, entry in ipairs(log) do assert.is_true(entry.texts <= #texts) end
    end
  end)

  it("sees what the helper does not read: logprobs, the other choices of n > 1", function()
    local reply = 'data: {"choices":[{"index":0,"delta":{"content":"a"},"logprobs":{"content":[{"token":"a",'
      .. '"logprob":-0.5}]}},{"index":1,"delta":{"content":"b"}}]}\n\n' .. OPENAI_REPLY
    local seconds, logprobs = {}, {}
    local _, rec = capture(function(base)
      return recorder(base, { n = 2, logprobs = true, ondata = function(obj)
        for _, choice in ipairs(obj.choices or {}) do
          if choice.index == 1 then seconds[#seconds + 1] = choice.delta.content end
          if type(choice.logprobs) == "table" then logprobs[#logprobs + 1] = choice.logprobs.content[1].logprob end
        end
      end })
    end, reply)
    assert.are.same({ "a", "ok" }, rec.texts) -- the loop reads the first choice
    assert.are.same({ "b" }, seconds)
    assert.are.same({ -0.5 }, logprobs)
  end)

  it("an error payload reaches ondata before the api error ends the chat", function()
    local seen
    local _, _, err = run_chat(openai("error_after=1"), opts({ ondata = function(obj) seen = obj end }))
    assert.are.equal("api", err and err.kind)
    assert.are.equal("stub: overloaded", seen.error.message)
  end)

  it("an error raised in ondata ends the chat (both forms) with a callback error naming it", function()
    local _, chat, err = run_chat(openai(), opts({ ondata = function() error("bad hook", 0) end }))
    assert.are.equal("callback", err and err.kind)
    assert.matches("ondata raised", err.message, 1, true)
    assert.are.equal("", chat.text)
    local rec = recorder(ollama(), { format = "ollama", ondata = function() error("bad hook", 0) end })
    fetch.run(10)
    assert.are.equal(1, #rec.errors)
    assert.are.equal("callback", rec.errors[1].kind)
    assert.are.equal("bad hook", rec.errors[1].cause)
  end)

  it("chat:abort() from ondata stops it: no more payloads, no more text", function()
    local n = 0
    local chat
    chat = fetch.chat(srv:url("/v1?delay=5"), opts({ ondata = function()
      n = n + 1
      if n == 3 then chat:abort("seen enough") end
    end }))
    local texts = {}
    for text in chat do texts[#texts + 1] = text end
    assert.are.equal(3, n)
    assert.are.same({ "Hello" }, texts) -- payload 1 is the role chunk, 2 "Hello", 3 stops before its text
    assert.are.equal("aborted", chat.stream.reason)
  end)
end)

describe("fetch.chat: tool calls in every format", function()
  it("Anthropic tool_use blocks (tools=1): input from its partial_json pieces, stop_reason tool_use", function()
    local texts, chat, err = run_chat(anthropic("tools=1"), opts({ format = "anthropic" }))
    assert.is_nil(err)
    assert.are.same({}, texts)
    assert.are.same(anthropic_calls(), chat.tool_calls)
    assert.are.equal("tool_use", chat.finish_reason)
    assert.are.equal(6, chat.usage.output_tokens)
  end)

  it("with reasoning first, in every format", function()
    local expect = { openai = stub.TOOL_CALLS, responses = responses_calls(), anthropic = anthropic_calls(),
                     ollama = ollama_calls() }
    for _, f in ipairs(ALL_FORMATS) do
      local texts, chat, err = run_chat(f.base("tools=1&reasoning=1"), opts({ format = f.name }))
      assert.is_nil(err, f.name)
      assert.are.same({}, texts, f.name)
      assert.are.same(expect[f.name], chat.tool_calls, f.name)
      assert.are.equal(stub.CANNED_REASONING_TEXT, chat.reasoning, f.name)
    end
  end)
end)

describe("fetch.chat: retries before the answer starts", function()
  -- What the server saw and what onreconnect reported.
  local function attempts(t) return srv:log(t).requests end

  it("a refused request (503, twice) is sent again: the third answers; onreconnect sees each wait", function()
    local t = tag("retry")
    local infos, streams = {}, {}
    local texts, chat, err = run_chat(openai("status=503&fail=2&retry_after_ms=20&tag=" .. t), opts({
      onreconnect = function(info, s) infos[#infos + 1] = info; streams[#streams + 1] = s end,
    }))
    assert.is_nil(err)
    assert.are.same(stub.CANNED_TOKENS, texts)
    assert.is_true(chat.done)
    assert.are.equal(3, attempts(t))
    assert.are.equal(2, chat.retries)
    assert.are.equal(2, #infos)
    for i, info in ipairs(infos) do
      assert.are.equal(i, info.attempt)
      assert.are.equal("http", info.error.kind)
      assert.are.equal(503, info.error.status)
      assert.are.equal(0.02, info.delay) -- retry-after-ms
    end
    assert.are.equal(chat.stream, streams[2]) -- the stream that answered
    assert.are.equal(0, chat.stream.reconnects)
    assert.are.equal(200, chat.stream.status)
    assert.is_true(chat.stats.ttft >= 0.04, "ttft counts from the first attempt")
  end)

  it("408, 409, 429 and 5xx are retried; 400, 401, 403, 404 and 422 are not", function()
    for _, code in ipairs({ 408, 409, 429, 500, 502, 503, 504, 529 }) do
      local t = tag("code" .. code)
      local _, chat, err = run_chat(openai(("status=%d&fail=1&retry_after_ms=1&tag=%s"):format(code, t)), opts())
      assert.is_nil(err, code)
      assert.are.equal(2, attempts(t), code)
      assert.are.equal(1, chat.retries)
    end
    for _, code in ipairs({ 400, 401, 403, 404, 422 }) do
      local t = tag("code" .. code)
      local _, chat, err = run_chat(openai(("status=%d&fail=1&retry_after_ms=1&tag=%s"):format(code, t)), opts())
      assert.are.equal("http", err and err.kind, code)
      assert.are.equal(code, err.status)
      assert.are.equal(1, attempts(t), code)
      assert.are.equal(0, chat.retries)
    end
  end)

  it("max_retries bounds them (default 2): then the last error", function()
    local t = tag("max")
    local _, chat, err = run_chat(openai("status=500&retry_after_ms=1&tag=" .. t), opts())
    assert.are.equal("http", err and err.kind)
    assert.are.equal(500, err.status)
    assert.are.equal(3, attempts(t))
    assert.are.equal(2, chat.retries)
    t = tag("max5")
    _, chat, err = run_chat(openai("status=500&retry_after_ms=1&tag=" .. t), opts({ max_retries = 5 }))
    assert.are.equal(500, err and err.status)
    assert.are.equal(6, attempts(t))
    assert.are.equal(5, chat.retries)
    t = tag("max0")
    _, _, err = run_chat(openai("status=500&tag=" .. t), opts({ max_retries = 0 }))
    assert.are.equal(500, err and err.status)
    assert.are.equal(1, attempts(t))
  end)

  it("x-should-retry from the server decides, as the official SDKs let it", function()
    local t = tag("should-not")
    local _, _, err = run_chat(openai("status=503&should_retry=false&tag=" .. t), opts())
    assert.are.equal(503, err and err.status)
    assert.are.equal(1, attempts(t))
    t = tag("should")
    local _, chat, err2 = run_chat(openai("status=400&fail=1&should_retry=true&retry_after_ms=1&tag=" .. t), opts())
    assert.is_nil(err2)
    assert.are.equal(2, attempts(t))
    assert.are.equal(stub.CANNED_ANSWER, chat.text)
  end)

  it("a connection closed before any response is retried, in every format", function()
    for _, f in ipairs(ALL_FORMATS) do
      local t = tag("hangup-" .. f.name)
      local infos = {}
      -- a client of its own: a fresh connection (curl itself sends a request
      -- again when a reused keep-alive connection turns out dead)
      local c = fetch.client()
      local chat = c:chat(f.base("hangup=1&tag=" .. t), opts({ format = f.name,
        onreconnect = function(info) infos[#infos + 1] = info end }))
      local texts = {}
      local ok, err = pcall(function() for text in chat do texts[#texts + 1] = text end end)
      c:close()
      assert.is_true(ok, f.name)
      assert.is_nil(err, f.name)
      assert.are.same(stub.CANNED_TOKENS, texts, f.name)
      assert.are.equal(2, attempts(t), f.name)
      assert.are.equal(1, #infos)
      assert.are.equal("network", infos[1].error.kind)
      assert.is_true(infos[1].delay >= 0.375 and infos[1].delay <= 0.5, "back-off " .. infos[1].delay)
    end
  end)

  it("connection refused: retried with exponential back-off and jitter, then a network error", function()
    local infos = {}
    local t0 = now()
    local base = ("http://127.0.0.1:%d/v1"):format(h.free_port())
    local _, chat, err = run_chat(base, opts({ onreconnect = function(info) infos[#infos + 1] = info end }))
    local elapsed = now() - t0
    assert.are.equal("network", err and err.kind)
    assert.are.equal(2, #infos)
    assert.is_true(infos[1].delay >= 0.375 and infos[1].delay <= 0.5, "first wait " .. infos[1].delay)
    assert.is_true(infos[2].delay >= 0.75 and infos[2].delay <= 1, "second wait " .. infos[2].delay)
    assert.is_true(elapsed >= infos[1].delay + infos[2].delay, "elapsed " .. elapsed)
    assert.are.equal(2, chat.retries)
  end)

  it("Retry-After is honoured in seconds and as an HTTP date, up to 60 s; more falls back to back-off", function()
    local function first_delay(query)
      local info
      local chat
      chat = fetch.chat(openai(query), opts({ onreconnect = function(i) info = i; chat:abort("seen") end }))
      for _ in chat do end
      assert.are.equal("aborted", chat.stream.reason)
      return info.delay
    end
    assert.are.equal(7, first_delay("status=429&retry_after=7"))
    assert.are.equal(60, first_delay("status=429&retry_after=60"))
    local d = first_delay("status=429&retry_after=3600")
    assert.is_true(d >= 0.375 and d <= 0.5, "back-off instead of an hour: " .. d)
    local date = os.date("!%a, %d %b %Y %H:%M:%S GMT", os.time() + 30)
    d = first_delay("status=503&retry_after=" .. h.enc(date))
    assert.is_true(d > 27 and d <= 31, "from the date: " .. d)
    assert.are.equal(0.25, first_delay("status=503&retry_after=9&retry_after_ms=250")) -- ms first, as OpenAI's SDK
  end)

  it("never once the answer has begun: an api error, eof or a dropped stream is not retried", function()
    for _, q in ipairs({ "error_after=3", "truncate=3" }) do
      local t = tag("begun")
      local _, chat, err = run_chat(openai(q .. "&tag=" .. t), opts({ max_retries = 5 }))
      assert.is_truthy(err, q)
      assert.are.equal(1, attempts(t), q)
      assert.are.equal(0, chat.retries)
    end
    -- the answer's first byte came, then the connection dropped
    local server = assert(socket.bind("127.0.0.1", 0))
    local _, port = server:getsockname()
    local chat = fetch.chat(("http://127.0.0.1:%d/v1"):format(port), opts({ first_byte_timeout = 5 }))
    local conn
    local deadline = now() + 5
    while not conn and now() < deadline do
      chat.stream._client:_step()
      server:settimeout(0.01)
      conn = server:accept()
    end
    conn:settimeout(1)
    conn:receive("*l")
    conn:send("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 500\r\n\r\n"
      .. 'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n')
    local texts = {}
    local ok, err = pcall(function()
      for text in chat do
        texts[#texts + 1] = text
        conn:close()
      end
    end)
    server:close()
    assert.is_false(ok)
    assert.are.equal("network", err.kind)
    assert.are.same({ "Hi" }, texts)
    assert.are.equal(0, chat.retries)
  end)

  it("callback form: ondone once after the retries; onerror once when they run out", function()
    local t1, t2 = tag("cb-ok"), tag("cb-fail")
    local reconnects = 0
    local ok = recorder(openai("status=502&fail=2&retry_after_ms=5&tag=" .. t1),
      { onreconnect = function() reconnects = reconnects + 1 end })
    local bad = recorder(openai("status=502&retry_after_ms=5&tag=" .. t2), { format = "openai" })
    assert.is_true(fetch.run(10))
    assert.are.equal(1, ok.done)
    assert.are.same({}, ok.errors)
    assert.are.same(stub.CANNED_TOKENS, ok.texts)
    assert.are.equal(2, reconnects)
    assert.are.equal(3, attempts(t1))
    assert.are.equal(0, bad.done)
    assert.are.equal(1, #bad.errors)
    assert.are.equal(502, bad.errors[1].status)
    assert.are.equal(3, attempts(t2))
    assert.are.equal(0, bad.aborts)
  end)

  it("chat:abort() while it waits: onabort once, and no further request", function()
    local t = tag("cb-abort")
    local rec
    rec = recorder(openai("status=503&retry_after=2&tag=" .. t), {
      onreconnect = function() rec.chat:abort("not now") end,
    })
    local t0 = now()
    assert.is_true(fetch.run(10))
    assert.is_true(now() - t0 < 1.5, "it waited for Retry-After")
    assert.are.equal(1, rec.aborts)
    assert.are.equal("not now", rec.abort_why)
    assert.are.equal(0, rec.done)
    assert.are.same({}, rec.errors)
    socket.sleep(0.1)
    assert.are.equal(1, attempts(t))
  end)

  it("an error raised in onreconnect ends the chat with a callback error", function()
    local _, chat, err = run_chat(openai("status=503&retry_after_ms=1"), opts({
      onreconnect = function() error("stop", 0) end }))
    assert.are.equal("callback", err and err.kind)
    assert.matches("onreconnect", err.message, 1, true)
    assert.are.equal(1, chat.retries)
  end)

  it("max_retries must be a whole number", function()
    for _, v in ipairs({ -1, 1.5, "2", true }) do
      local err = raises("usage", fetch.chat, openai(), opts({ max_retries = v }))
      assert.matches("max_retries", err.message, 1, true)
    end
  end)
end)

describe("fetch.chat: hooks, headers and the request", function()
  it("every hook gets the chat as its last argument", function()
    local got = {}
    fetch.chat(openai("truncate=1"), opts({
      ontext = function(text, c) got.ontext = c end,
      onerror = function(err, c) got.onerror = c end,
    }))
    local chat = fetch.chat(openai(), opts({ ondone = function(c) got.ondone = c end }))
    local aborted = fetch.chat(srv:url("/v1?delay=50"), opts({ onabort = function(why, c) got.onabort = c end }))
    aborted:abort()
    assert.is_true(fetch.run(10))
    assert.are.equal(chat, got.ondone)
    assert.are.equal(aborted, got.onabort)
    assert.are.equal("table", type(got.ontext))
    assert.are.equal(got.ontext, got.onerror)
  end)

  it("a header the caller gives (in any case) wins over what the helper adds", function()
    local req = capture(function(base)
      return recorder(base, { api_key = "sk-key", headers = { Authorization = "Bearer other", ACCEPT = "*/*",
                                                               ["Content-Type"] = "application/json; charset=utf-8" } })
    end, OPENAI_REPLY)
    assert.are.equal("Bearer other", req.headers.authorization)
    assert.are.equal("*/*", req.headers.accept)
    assert.are.equal("application/json; charset=utf-8", req.headers["content-type"])
    req = capture(function(base)
      return recorder(base, { format = "anthropic", api_key = "k", headers = { ["Anthropic-Version"] = "2099-01-01" } })
    end, ANTHROPIC_REPLY)
    assert.are.equal("2099-01-01", req.headers["anthropic-version"])
  end)

  it("chat.request is what was sent: method, url, headers, body", function()
    local chat = fetch.chat(openai("truncate=0"), opts({ api_key = "sk-1", temperature = 0 }))
    assert.are.equal("POST", chat.request.method)
    assert.are.equal(srv:url("/v1/chat/completions?truncate=0&delay=1"), chat.request.url)
    assert.are.equal("Bearer sk-1", chat.request.headers.authorization)
    assert.are.equal("text/event-stream", chat.request.headers.accept)
    local body = cjson.decode(chat.request.body)
    assert.are.equal(0, body.temperature)
    assert.is_true(body.stream)
    chat:close()
  end)

  it("typos of the new options are caught", function()
    local err = raises("usage", fetch.chat, openai(), opts({ max_retris = 3 }))
    assert.matches("did you mean 'max_retries'?", err.message, 1, true)
    err = raises("usage", fetch.chat, openai(), opts({ ondat = function() end }))
    assert.matches("did you mean 'ondata'?", err.message, 1, true)
    err = raises("usage", fetch.chat, openai(), opts({ onreasonig = function() end }))
    assert.matches("did you mean 'onreasoning'?", err.message, 1, true)
    err = raises("usage", fetch.chat, openai(), opts({ format = "gemini" }))
    assert.matches('"responses"', err.message, 1, true)
    assert.matches('"ollama"', err.message, 1, true)
  end)
end)
