-- Spec for fetch.ndjson: one decoded JSON value per line, blank lines
-- skipped, a bad line a `protocol` error naming its line number.
--
-- Written from DESIGN.md and the README ("NDJSON, lines, chunks") against
-- the stub server's POST /api/chat (Ollama's NDJSON chat stream) and /sse.

local fetch = require "fetchstream"
local h = require "spec.helpers"
local stub = require "spec.server"
local cjson = require "cjson"

local srv
setup(function() srv = stub.start() end)
teardown(function() srv:stop() end)

---------------------------------------------------------------------------
-- helpers

local REQ = { model = "llama-stub", messages = { { role = "user", content = "hi" } } }
local NTOK = #stub.CANNED_TOKENS

local tag = h.tagger("ndjson")

local enc = h.enc

-- /sse sending `body` as application/x-ndjson (or ct), in `chunk`-byte pieces.
local function raw(body, chunk, ct)
  return srv:url("/sse?body=" .. enc(body) .. "&ct=" .. enc(ct or "application/x-ndjson")
    .. (chunk and "&chunk=" .. chunk .. "&delay=2" or ""))
end

local function chat_url(query)
  return srv:url("/api/chat?delay=1" .. (query and "&" .. query or ""))
end

-- All values of fetch.ndjson(url, opts), the stream, and the error raised.
local function values_of(url, opts, limit)
  local it, st, ctl, s = fetch.ndjson(url, opts)
  local out = {}
  local ok, err = pcall(function()
    for v in it, st, ctl, s do
      out[#out + 1] = v
      if limit and #out >= limit then break end
    end
  end)
  return out, s, (not ok) and err or nil
end

local function check_token_lines(values, n)
  for i = 1, n do
    local v = values[i]
    assert.are.equal("table", type(v), "value " .. i)
    assert.are.equal(stub.CANNED_TOKENS[i], v.message.content, "value " .. i)
    assert.are.equal("assistant", v.message.role)
    assert.is_false(v.done)
    assert.are.equal("llama-stub", v.model)
  end
end

---------------------------------------------------------------------------

describe("fetch.ndjson", function()
  it("POST /api/chat: the values in order, then the final done line", function()
    local values, s, err = values_of(chat_url(), { json = REQ })
    assert.is_nil(err)
    assert.are.equal(NTOK + 1, #values)
    check_token_lines(values, NTOK)
    local last = values[NTOK + 1]
    assert.is_true(last.done)
    assert.are.equal("stop", last.done_reason)
    assert.are.equal(22, last.eval_count)
    assert.are.equal("", last.message.content)
    local text = {}
    for i = 1, NTOK do text[i] = values[i].message.content end
    assert.are.equal(stub.CANNED_ANSWER, table.concat(text))
    assert.are.equal("done", s.reason)
    assert.are.equal(200, s.status)
    assert.are.equal("application/x-ndjson", s.headers["content-type"])
  end)

  it("returns four values: the 4th is the stream (the closing value)", function()
    local a, b, c, d = fetch.ndjson(chat_url(), { json = REQ })
    assert.are.equal("function", type(a))
    assert.is_nil(c)
    assert.is_truthy(d)
    assert.are.equal(b, d)
    local n = 0
    for _ in a, b, c, d do n = n + 1 end
    assert.are.equal(NTOK + 1, n)
    assert.are.equal("done", d.reason)
  end)

  it("split=1: lines cut across HTTP chunks still decode whole", function()
    -- the same route really arrives in pieces that end mid-line
    local pieces, cut = 0, 0
    for bytes in fetch.chunks(chat_url("split=1&split_delay=2"), { json = REQ }) do
      pieces = pieces + 1
      if bytes:sub(-1) ~= "\n" then cut = cut + 1 end
    end
    assert.is_true(pieces >= NTOK + 1)
    assert.is_true(cut > 0, "no chunk ended mid-line")
    local values, _, err = values_of(chat_url("split=1&split_delay=2"), { json = REQ })
    assert.is_nil(err)
    assert.are.equal(NTOK + 1, #values)
    check_token_lines(values, NTOK)
    assert.is_true(values[NTOK + 1].done)
  end)

  it("any chunking of the same bytes gives the same values (1-byte chunks)", function()
    local body = '{"a":1}\n{"b":"x\\ny"}\r\n[1,2,3]\n"str"\n42\ntrue\n'
    local expect = { { a = 1 }, { b = "x\ny" }, { 1, 2, 3 }, "str", 42, true }
    assert.are.same(expect, (values_of(raw(body))))
    assert.are.same(expect, (values_of(raw(body, 1))))
    assert.are.same(expect, (values_of(raw(body, 5))))
  end)

  it("bad_line=K: K-1 values, then a protocol error naming line K (err.line)", function()
    local values, s, err = values_of(chat_url("bad_line=5"), { json = REQ })
    assert.are.equal(4, #values)
    check_token_lines(values, 4)
    assert.is_truthy(err)
    assert.is_true(fetch.is_error(err))
    assert.are.equal("protocol", err.kind)
    assert.are.equal(5, err.line)
    assert.matches("line 5", err.message, 1, true)
    assert.matches("this is not json", err.message, 1, true)
    assert.are.equal("protocol", s.reason)
    assert.are.equal(err, s.error)
  end)

  it("bad_line=1 and bad_line=23 (the final line)", function()
    local v1, _, e1 = values_of(chat_url("bad_line=1"), { json = REQ })
    assert.are.same({}, v1)
    assert.are.equal("protocol", e1 and e1.kind)
    assert.are.equal(1, e1.line)
    local v23, _, e23 = values_of(chat_url("bad_line=23"), { json = REQ })
    assert.are.equal(NTOK, #v23)
    assert.are.equal("protocol", e23 and e23.kind)
    assert.are.equal(23, e23.line)
  end)

  it("a bad line with split=1 is found the same", function()
    local values, _, err = values_of(chat_url("bad_line=3&split=1&split_delay=1"), { json = REQ })
    assert.are.equal(2, #values)
    assert.are.equal(3, err and err.line)
  end)

  it("a bad line aborts the transfer", function()
    local t = tag("bad")
    local _, s, err = values_of(srv:url("/api/chat?delay=50&bad_line=2&tag=" .. t), { json = REQ })
    assert.are.equal("protocol", err and err.kind)
    assert.are.equal("protocol", s.reason)
    assert.is_true((srv:wait_closed(t, 3)), "the server did not see the client go")
  end)

  it("blank lines are skipped but counted in line numbers", function()
    local body = '\n{"a":1}\n\n   \n\t\r\n{"a":2}\r\n\r\nnot json\n{"a":3}\n'
    local values, _, err = values_of(raw(body))
    assert.are.same({ { a = 1 }, { a = 2 } }, values)
    assert.are.equal("protocol", err and err.kind)
    assert.are.equal(8, err.line)
    assert.matches("line 8", err.message, 1, true)
  end)

  it("only blank lines: no values, no error", function()
    local values, s, err = values_of(raw("\n\n \r\n\n"))
    assert.is_nil(err)
    assert.are.same({}, values)
    assert.are.equal("done", s.reason)
  end)

  it("a last line without a newline is decoded", function()
    assert.are.same({ { a = 1 }, { b = 2 } }, (values_of(raw('{"a":1}\n{"b":2}'))))
    -- Ollama with "stream": false: the final object alone, no newline
    local values, _, err = values_of(chat_url(), { json = { model = "m", messages = {}, stream = false } })
    assert.is_nil(err)
    assert.are.equal(1, #values)
    assert.is_true(values[1].done)
    assert.are.equal(stub.CANNED_ANSWER, values[1].message.content)
  end)

  it("a truncated last line is a protocol error", function()
    local _, _, err = values_of(raw('{"a":1}\n{"b":'))
    assert.are.equal("protocol", err and err.kind)
    assert.are.equal(2, err.line)
  end)

  it("JSON null decodes to cjson.null and does not end the loop", function()
    local values, _, err = values_of(raw('null\n{"a":null}\n1\n'))
    assert.is_nil(err)
    assert.are.equal(3, #values)
    assert.are.equal(cjson.null, values[1])
    assert.are.equal(1, values[3])
  end)

  it("a long bad line is quoted shortened in the message", function()
    local long = ("x"):rep(500)
    local _, _, err = values_of(raw(long .. "\n"))
    assert.are.equal("protocol", err and err.kind)
    assert.are.equal(1, err.line)
    assert.is_true(#err.message < 200, err.message)
  end)

  it("no content type is required", function()
    local values, _, err = values_of(raw('{"a":1}\n', nil, "text/plain"))
    assert.is_nil(err)
    assert.are.same({ { a = 1 } }, values)
    local v2, _, e2 = values_of(chat_url("noct=1"), { json = REQ })
    assert.is_nil(e2)
    assert.are.equal(NTOK + 1, #v2)
  end)

  it("error_after: Ollama's {\"error\":...} line is just a value", function()
    local values, s, err = values_of(chat_url("error_after=2"), { json = REQ })
    assert.is_nil(err)
    assert.are.equal(3, #values)
    assert.are.equal("stub: overloaded", values[3].error)
    assert.are.equal("done", s.reason)
  end)

  it("truncate: ends after K token lines, no done line", function()
    local values, _, err = values_of(chat_url("truncate=4"), { json = REQ })
    assert.is_nil(err)
    assert.are.equal(4, #values)
    check_token_lines(values, 4)
  end)

  it("a non-2xx status is an http error with the message of {\"error\":\"...\"}", function()
    local values, s, err = values_of(chat_url("status=429&retry_after=2"), { json = REQ })
    assert.are.same({}, values)
    assert.are.equal("http", err and err.kind)
    assert.are.equal(429, err.status)
    assert.are.equal("rate limited", err.message)
    assert.are.equal("2", err.headers["retry-after"])
    assert.are.equal("http", s.reason)
  end)

  it("request options apply: headers (key=), method", function()
    local _, _, err = values_of(chat_url("key=ok"), { json = REQ })
    assert.are.equal("http", err and err.kind)
    assert.are.equal(401, err.status)
    assert.are.equal("invalid api key", err.message)
    local values, _, err2 = values_of(chat_url("key=ok"), { json = REQ, headers = { authorization = "Bearer ok" } })
    assert.is_nil(err2)
    assert.are.equal(NTOK + 1, #values)
    local _, _, err3 = values_of(chat_url(), { json = REQ, method = "GET" })
    assert.are.equal(405, err3 and err3.status)
  end)

  it("break aborts the transfer #lua54", function()
    local t = tag("break")
    local values, s = values_of(srv:url("/api/chat?delay=50&tag=" .. t), { json = REQ }, 2)
    assert.are.equal(2, #values)
    assert.are.equal("aborted", s.reason)
    assert.is_true((srv:wait_closed(t, 3)), "the server did not see the client go")
  end)

  -- Without a closing value (LuaJIT) a loop left by break leaves its stream
  -- running until it is closed or collected.
  it("a loop left by break: s:close() aborts the transfer, and so does dropping the stream", function()
    local t1, t2 = tag("break-close"), tag("break-drop")
    local values, s = values_of(srv:url("/api/chat?delay=50&tag=" .. t1), { json = REQ }, 2)
    assert.are.equal(2, #values)
    s:close()
    assert.are.equal("aborted", s.reason)
    assert.is_true((srv:wait_closed(t1, 3)), "the server did not see the client go")
    local weak = setmetatable({}, { __mode = "k" })
    local function dropped() -- a function of its own: nothing stays on this stack
      local _, st = values_of(srv:url("/api/chat?delay=50&tag=" .. t2), { json = REQ }, 2)
      weak[st] = true
    end
    dropped()
    collectgarbage()
    collectgarbage()
    assert.is_nil(next(weak), "the stream was not collected")
    assert.is_true((srv:wait_closed(t2, 3)), "the server did not see the client go")
  end)

  it("a line larger than max_event_size is a protocol error", function()
    local body = '{"a":"' .. ("y"):rep(3000) .. '"}\n'
    local _, _, err = values_of(raw(body, 500), { max_event_size = 1000 })
    assert.are.equal("protocol", err and err.kind)
  end)

  it("bad options are usage errors, raised at once", function()
    local ok, err = pcall(fetch.ndjson, chat_url(), { jsn = REQ })
    assert.is_false(ok)
    assert.are.equal("usage", err.kind)
    ok, err = pcall(fetch.ndjson, "ftp://x/y")
    assert.is_false(ok)
    assert.are.equal("usage", err.kind)
    ok, err = pcall(fetch.ndjson, chat_url(), { onmessage = function() end })
    assert.is_false(ok)
    assert.are.equal("usage", err.kind)
  end)
end)

---------------------------------------------------------------------------
-- JSON numbers. Debian's cjson 2.1 decodes every JSON number as a float
-- (1 -> 1.0); the library hands out integers for integral values that fit a
-- float exactly (|v| <= 2^53), whatever reads the JSON: ev:json(),
-- fetch.ndjson and an http error's err.json.

describe("JSON numbers", function()
  local json = require "fetchstream.json"

  -- Every number in v, with its path, for precise failure messages.
  local function numbers(v, path, out)
    out = out or {}
    path = path or "$"
    if type(v) == "number" then
      out[#out + 1] = { path = path, value = v }
    elseif type(v) == "table" then
      for k, x in pairs(v) do numbers(x, path .. "." .. tostring(k), out) end
    end
    return out
  end

  -- The number subtype Lua 5.4 gives v must be `kind`. LuaJIT has one
  -- number type: there the values alone are checked.
  local function is(kind, v, what)
    if math.type then assert.are.equal(kind, math.type(v), what) end
  end

  local DOC = '{"n":1,"neg":-3,"zero":0,"big":9007199254740992,"bigger":9007199254740994,'
    .. '"huge":1e300,"half":2.5,"exp":1e3,"float_text":4.0,'
    .. '"list":[1,2,3.5,[4,{"deep":5}]],"s":"7","t":true}'

  local function check_doc(v)
    is("integer", v.n)
    assert.are.equal(1, v.n)
    is("integer", v.neg)
    is("integer", v.zero)
    is("integer", v.big)         -- 2^53 is still exact
    assert.are.equal(2 ^ 53, v.big)
    is("float", v.bigger)        -- past 2^53: stays a float
    is("float", v.huge)
    is("float", v.half)
    assert.are.equal(2.5, v.half)
    is("integer", v.exp)         -- 1e3 is the integer 1000
    assert.are.equal(1000, v.exp)
    assert.are.same({ -3, 0, 2 ^ 53 + 2, 1e300, 4 }, { v.neg, v.zero, v.bigger, v.huge, v.float_text })
    assert.are.same({ 1, 2, 3.5, { 4, { deep = 5 } } }, v.list)
    is("integer", v.float_text)  -- JSON has one number type
    is("integer", v.list[1])
    is("float", v.list[3])
    is("integer", v.list[4][1])
    is("integer", v.list[4][2].deep)
    assert.are.equal("7", v.s)
    assert.is_true(v.t)
  end

  it("json.decode and json.try_decode: integral values as integers, at any depth", function()
    check_doc(assert(json.decode(DOC, "doc")))
    check_doc(assert(json.try_decode(DOC)))
    is("integer", json.decode("42", "doc"))
    is("integer", json.try_decode("-0"))
    is("float", json.decode("0.5", "doc"))
    assert.are.same({ 42, 0, 0.5 }, { json.decode("42", "doc"), json.try_decode("-0"), json.decode("0.5", "doc") })
    assert.are.equal("x", json.decode('"x"', "doc"))
    assert.are.equal(cjson.null, json.decode("null", "doc"))
  end)

  it("ev:json() gives integers", function()
    local body = "data: " .. DOC .. "\n\n"
    local n = 0
    for ev in fetch.events(srv:url(h.sse_path(body))) do
      check_doc(assert(ev:json()))
      n = n + 1
    end
    assert.are.equal(1, n)
  end)

  it("fetch.ndjson gives integers: Ollama's eval_count is 22, not 22.0", function()
    local values, _, err = values_of(chat_url(), { json = REQ })
    assert.is_nil(err)
    local last = values[#values]
    is("integer", last.eval_count)
    assert.are.equal(22, last.eval_count)
    local lines = values_of(raw(DOC .. "\n[1,2.0,3.25]\n7\n"))
    check_doc(lines[1])
    is("integer", lines[2][2])
    is("float", lines[2][3])
    is("integer", lines[3])
    assert.are.same({ { 1, 2, 3.25 }, 7 }, { lines[2], lines[3] })
  end)

  it("an http error's err.json gives integers", function()
    local body = '{"error":{"message":"slow down","code":429,"retry":{"after":2,"factor":1.5}}}'
    local _, _, err = values_of(srv:url("/status/429?body=" .. enc(body)))
    assert.are.equal("http", err and err.kind)
    assert.are.equal("slow down", err.message)
    is("integer", err.json.error.code)
    is("integer", err.json.error.retry.after)
    is("float", err.json.error.retry.factor)
    assert.are.same({ message = "slow down", code = 429, retry = { after = 2, factor = 1.5 } }, err.json.error)
    for _, x in ipairs(numbers(err.json)) do
      if x.value == math.floor(x.value) then is("integer", x.value, x.path) end
    end
  end)

  it("without math.tointeger (Lua 5.1, LuaJIT) numbers are left as they are", function()
    local saved = math.tointeger
    math.tointeger = nil -- luacheck: ignore 122
    local ok, old_json = pcall(dofile, package.searchpath("fetchstream.json", package.path))
    math.tointeger = saved -- luacheck: ignore 122
    assert.is_true(ok, tostring(old_json))
    local v = assert(old_json.decode('{"a":[1,2.5],"b":3}', "doc"))
    assert.are.equal(1, v.a[1])
    assert.are.equal(2.5, v.a[2])
    assert.are.equal(3, v.b)
    assert.are.equal(7, old_json.try_decode("7"))
  end)
end)
