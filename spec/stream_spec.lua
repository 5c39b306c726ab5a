-- Spec for the pull side of streaming HTTP: fetch.open, s:events(),
-- s:chunks(), s:lines(), s:next([timeout]), fetch.events/chunks/lines, the
-- request a user's options produce, responses (status, headers, redirects,
-- content types, compression) and the errors of each kind.
--
-- Written from DESIGN.md (the contract) against the stub server in
-- spec/server/. Every request goes to 127.0.0.1; nothing leaves the machine.

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

local enc = h.enc

-- A URL of /sse that sends `body` with content type `ct` (or the default),
-- in pieces of `chunk` bytes when given.
local function sse(body, extra) return srv:url(h.sse_path(body, extra)) end

local tag = h.tagger("stream")

-- A port on which nothing listens.
local free_port = h.free_port

-- Call fn(...), which must raise a fetchstream error of `kind`; return it.
local raises = h.raises

-- All events of a URL, through fetch.events.
local function events_of(url, opts)
  local out = {}
  for ev in fetch.events(url, opts) do out[#out + 1] = ev end
  return out
end

local function datas(evs)
  local out = {}
  for i, ev in ipairs(evs) do out[i] = ev.data end
  return out
end

-- What /echo saw of the request made with `opts`.
local function echo(opts, query)
  local evs = events_of(srv:url("/echo" .. (query or "")), opts)
  assert.are.equal(1, #evs)
  return cjson.decode(evs[1].data)
end

-- Read the events of `fn`'s iteration, returning them and the error it raised.
local function collect_until_error(iter, ...)
  local got = {}
  local ok, err = pcall(function(...)
    for ev in iter(...) do got[#got + 1] = ev end
  end, ...)
  return got, (not ok) and err or nil
end

---------------------------------------------------------------------------

describe("the request", function()
  it("POST with headers and a json body arrives as sent (/echo)", function()
    local body = { model = "m", stream = true, messages = { { role = "user", content = "hi there" } } }
    local e = echo({
      method = "POST",
      headers = { authorization = "Bearer k-123", ["X-Custom"] = "v 1" },
      json = body,
    }, "?a=1")
    assert.are.equal("POST", e.method)
    assert.are.equal("/echo", e.path)
    assert.are.equal("1", e.query.a)
    assert.are.equal("Bearer k-123", e.headers.authorization)
    assert.are.equal("v 1", e.headers["x-custom"])
    assert.are.equal("application/json", e.headers["content-type"])
    assert.are.same(body, cjson.decode(e.body))
    assert.is_nil(e.headers.expect) -- no 100-continue round trip
  end)

  it("json alone makes a POST; no body makes a GET", function()
    assert.are.equal("POST", echo({ json = { a = 1 } }).method)
    assert.are.equal("GET", echo({}).method)
    assert.are.equal("GET", echo(nil).method)
  end)

  it("body is sent byte for byte, with any method", function()
    local bytes = "line1\r\nline2\0zero \255 end"
    local e = echo({ method = "PUT", body = bytes, headers = { ["content-type"] = "application/octet-stream" } })
    assert.are.equal("PUT", e.method)
    assert.are.equal(bytes, e.body)
    assert.are.equal("application/octet-stream", e.headers["content-type"])
    assert.are.equal(tostring(#bytes), e.headers["content-length"])
  end)

  it("a large body (over 1 MiB) is sent whole, without an Expect: 100-continue round trip", function()
    local bytes = ("0123456789abcdef"):rep(70000) -- 1.1 MB
    local e = echo({ body = bytes })
    assert.are.equal("POST", e.method)
    assert.is_nil(e.headers.expect)
    assert.are.equal(#bytes, #e.body)
    assert.is_true(e.body == bytes)
  end)

  it("a content-type header given by the user wins over json's", function()
    local e = echo({ json = { a = 1 }, headers = { ["Content-Type"] = "application/vnd.x+json" } })
    assert.are.equal("application/vnd.x+json", e.headers["content-type"])
    assert.are.same({ a = 1 }, cjson.decode(e.body))
  end)

  it("an event reader asks for text/event-stream", function()
    assert.are.equal("text/event-stream", echo({}).headers.accept)
  end)

  it("sends last_event_id as Last-Event-ID, user_agent as User-Agent", function()
    local e = echo({ last_event_id = "42", user_agent = "my-agent/1.0" })
    assert.are.equal("42", e.headers["last-event-id"])
    assert.are.equal("my-agent/1.0", e.headers["user-agent"])
    assert.is_nil(echo({}).headers["last-event-id"])
  end)

  it("http_version = '1.0' / '1.1' picks the protocol", function()
    assert.are.equal("HTTP/1.0", echo({ http_version = "1.0" }).version)
    assert.are.equal("HTTP/1.1", echo({ http_version = "1.1" }).version)
  end)

  it("accepts compressed responses by default; accept_encoding = false asks for none", function()
    assert.matches("gzip", echo({}).headers["accept-encoding"] or "")
    assert.is_nil(echo({ accept_encoding = false }).headers["accept-encoding"])
  end)
end)

describe("usage errors, raised at once and before anything is sent", function()
  it("a header value with CR/LF is refused and no request is made", function()
    local t = tag("crlf")
    local err = raises("usage", fetch.open, srv:url("/echo?tag=" .. t),
      { headers = { ["x-a"] = "a\r\nX-Injected: 1" } })
    assert.matches("x%-a", err.message)
    raises("usage", fetch.events, srv:url("/echo?tag=" .. t), { headers = { ["x-a"] = "a\nb" } })
    raises("usage", fetch.chunks, srv:url("/echo?tag=" .. t), { headers = { ["x-a"] = "a\0b" } })
    raises("usage", fetch.lines, srv:url("/echo?tag=" .. t), { headers = { ["x-a\r\n"] = "b" } })
    raises("usage", fetch.stream, srv:url("/echo?tag=" .. t), { headers = { ["x:a"] = "b" } })
    raises("usage", fetch.open, srv:url("/echo?tag=" .. t), { last_event_id = "1\r\nX: y" })
    socket.sleep(0.1)
    assert.are.equal(0, srv:log(t).requests)
  end)

  it("an unknown option names itself", function()
    local t = tag("unknown")
    local url = srv:url("/echo?tag=" .. t)
    local err = raises("usage", fetch.open, url, { metod = "POST" })
    assert.matches("metod", err.message)
    raises("usage", fetch.events, url, { idle = 1 })
    raises("usage", fetch.chunks, url, { timout = 1 })
    raises("usage", fetch.lines, url, { header = {} })
    raises("usage", fetch.stream, url, { onmesage = function() end })
    socket.sleep(0.1)
    assert.are.equal(0, srv:log(t).requests)
  end)

  it("options of the wrong type", function()
    local url = srv:url("/echo")
    raises("usage", fetch.open, url, { timeout = "5" })
    raises("usage", fetch.open, url, { idle_timeout = -1 })
    raises("usage", fetch.open, url, { headers = "x: y" })
    raises("usage", fetch.open, url, { body = 42 })
    raises("usage", fetch.open, url, { http_version = "3" })
    raises("usage", fetch.open, url, { follow_redirects = "yes" })
    raises("usage", fetch.open, url, { body = "x", json = { a = 1 } })
    raises("usage", fetch.open, url, "not a table")
  end)

  it("callbacks other than onretry/oncomment belong to fetch.stream only", function()
    local url = srv:url("/echo")
    for _, name in ipairs { "onopen", "onmessage", "onchunk", "onclose", "onerror", "onabort" } do
      raises("usage", fetch.open, url, { [name] = function() end })
      raises("usage", fetch.events, url, { [name] = function() end })
    end
    raises("usage", fetch.events, url, { on = { x = function() end } })
  end)

  it("only http and https URLs", function()
    for _, url in ipairs {
      "file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1/", "127.0.0.1:80/x",
      "", "dict://127.0.0.1:1/", "http//127.0.0.1/",
    } do
      raises("usage", fetch.open, url)
      raises("usage", fetch.events, url)
      raises("usage", fetch.stream, url, {})
    end
    raises("usage", fetch.open, nil)
    raises("usage", fetch.open, 42)
  end)

  it("bad arguments to s:next and fetch.run", function()
    local s = assert(fetch.open(srv:url("/count?n=1")))
    finally(function() s:close() end)
    raises("usage", s.next, s, -1)
    raises("usage", s.next, s, "1")
    raises("usage", fetch.run, -1)
    raises("usage", fetch.run, "soon")
    assert.are.equal("1", s:next(2).data) -- the stream is unharmed
  end)

  it("a usage error reads as one line", function()
    local err = raises("usage", fetch.open, srv:url("/"), { nope = 1 })
    local text = tostring(err)
    assert.matches("^fetchstream: usage: ", text)
    assert.is_nil(text:find("\n"))
    assert.are.equal("string", type(err.message))
  end)
end)

describe("fetch.open", function()
  it("gives the stream once the headers are in: status, headers, url", function()
    local s = assert(fetch.open(srv:url("/count?n=2")))
    finally(function() s:close() end)
    assert.are.equal(200, s.status)
    assert.are.equal("text/event-stream", s.headers["content-type"])
    assert.are.equal(srv:url("/count?n=2"), s.url)
    assert.is_nil(s.reason)
    local got = {}
    for ev in s:events() do got[#got + 1] = ev end
    assert.are.same({ "1", "2" }, datas(got))
    assert.are.equal("done", s.reason)
    assert.is_nil(s.error)
  end)

  it("header names are lower case; a repeated header is joined with ', '", function()
    local s = assert(fetch.open(srv:url("/headers")))
    finally(function() s:close() end)
    assert.are.equal("a, b", s.headers["x-dup"])
    assert.are.equal("yes", s.headers["x-mixed-case"])
    assert.are.equal("no-cache", s.headers["cache-control"])
    for name in pairs(s.headers) do
      assert.are.equal(name:lower(), name)
    end
  end)

  it("events carry event, data and the last event id; ev:json() decodes data", function()
    local body = 'event: update\nid: 7\ndata: {"a":[1,2]}\n\ndata: plain\n\n'
    local evs = events_of(sse(body))
    assert.are.equal(2, #evs)
    assert.are.equal("update", evs[1].event)
    assert.are.equal("7", evs[1].id)
    assert.are.same({ a = { 1, 2 } }, evs[1]:json())
    assert.are.equal("message", evs[2].event)
    assert.are.equal("7", evs[2].id)
    assert.are.equal("plain", evs[2].data)
    local v, err = evs[2]:json()
    assert.is_nil(v)
    assert.are.equal("protocol", err.kind)
  end)
end)

describe("readers", function()
  it("s:next() one event at a time, then nil at the end", function()
    local s = assert(fetch.open(srv:url("/count?n=2")))
    finally(function() s:close() end)
    assert.are.equal("1", s:next().data)
    assert.are.equal("2", s:next().data)
    local ev, err = s:next()
    assert.is_nil(ev)
    assert.is_nil(err)
    assert.are.equal("done", s.reason)
    assert.is_nil(s:next()) -- and stays ended
  end)

  it("s:next(timeout) on a slow stream: nil while nothing came, the stream goes on", function()
    local s = assert(fetch.open(srv:url("/count?n=2&delay=600")))
    finally(function() s:close() end)
    assert.are.equal("1", s:next(2).data)
    local t0 = now()
    local ev, err = s:next(0.15)
    local waited = now() - t0
    assert.is_nil(ev)
    assert.is_nil(err)
    assert.is_nil(s.reason)
    assert.is_true(waited >= 0.12, "returned too early: " .. waited)
    assert.is_true(waited < 0.5, "returned too late: " .. waited)
    ev = s:next(3)
    assert.are.equal("2", ev and ev.data)
    assert.is_nil(s:next(3))
    assert.are.equal("done", s.reason)
  end)

  it("s:next(0) polls without blocking", function()
    local s = assert(fetch.open(srv:url("/stall")))
    finally(function() s:close() end)
    local t0 = now()
    local ev = s:next(0)
    while not ev and now() - t0 < 2 do ev = s:next(0) end
    assert.are.equal("hello", ev and ev.data)
    t0 = now()
    assert.is_nil(s:next(0))
    assert.is_true(now() - t0 < 0.1)
    assert.is_nil(s.reason)
  end)

  it("s:next returns nil, err on failure", function()
    local s = assert(fetch.open(srv:url("/drop")))
    finally(function() s:close() end)
    assert.are.equal("one", s:next(2).data)
    local ev, err = s:next(2)
    assert.is_nil(ev)
    assert.are.equal("network", err.kind)
    assert.are.equal(err, s.error)
  end)

  it("chunks: the raw body, byte exact", function()
    local body = "data: a\n\n: comment\r\ndata: b\r\n\r\nnot sse at all \0\255"
    local got = {}
    for bytes in fetch.chunks(sse(body, { chunk = 7, ct = "application/octet-stream" })) do
      assert.are.equal("string", type(bytes))
      assert.is_true(#bytes > 0)
      got[#got + 1] = bytes
    end
    assert.are.equal(body, table.concat(got))
  end)

  it("s:chunks() after open", function()
    local s = assert(fetch.open(srv:url("/count?n=2")))
    finally(function() s:close() end)
    local got = {}
    for bytes in s:chunks() do got[#got + 1] = bytes end
    assert.are.equal("id: 1\ndata: 1\n\nid: 2\ndata: 2\n\n", table.concat(got))
    assert.are.equal("done", s.reason)
  end)

  it("lines: LF and CRLF endings removed, split across chunks, last line without LF kept", function()
    local body = "alpha\r\nbeta\n\ngamma\r\n\r\ndelta"
    for _, chunk in ipairs { 0, 1, 3 } do
      local got = {}
      for line in fetch.lines(sse(body, { chunk = chunk, ct = "text/plain" })) do got[#got + 1] = line end
      assert.are.same({ "alpha", "beta", "", "gamma", "", "delta" }, got)
    end
  end)

  it("s:lines() after open", function()
    local s = assert(fetch.open(sse("x\ny\n", { ct = "text/plain" })))
    finally(function() s:close() end)
    local got = {}
    for line in s:lines() do got[#got + 1] = line end
    assert.are.same({ "x", "y" }, got)
  end)

  it("the iterators raise the error that ended the stream", function()
    local evs, err = collect_until_error(fetch.events, srv:url("/status/500"))
    assert.are.same({}, evs)
    assert.are.equal("http", err.kind)
    local _, err2 = collect_until_error(fetch.chunks, srv:url("/drop"))
    assert.are.equal("network", err2.kind)
    local _, err3 = collect_until_error(fetch.lines, srv:url("/drop"))
    assert.are.equal("network", err3.kind)
  end)

  it("an event larger than max_event_size is a protocol error", function()
    local evs, err = collect_until_error(fetch.events, srv:url("/big?size=5000&bytes=20000"),
      { max_event_size = 1024 })
    assert.are.same({}, evs)
    assert.are.equal("protocol", err and err.kind)
  end)
end)

describe("fetch.each: the loop body as a function (what LuaJIT prefers)", function()
  it("hands every event and its stream to the function, then returns true", function()
    local got, streams = {}, {}
    assert.is_true(fetch.each(srv:url("/count?n=3"), nil, function(ev, s)
      got[#got + 1] = ev.data
      streams[s] = true
    end))
    assert.are.same({ "1", "2", "3" }, got)
    local s = next(streams)
    assert.are.equal("done", s.reason)
  end)

  it("aborts the transfer at once when the function returns false", function()
    local t = tag("each-false")
    local n, stream
    assert.is_true(fetch.each(srv:url("/forever?interval=20&tag=" .. t), nil, function(_, s)
      n, stream = (n or 0) + 1, s
      if n == 2 then return false end
    end))
    assert.are.equal(2, n)
    assert.are.equal("aborted", stream.reason)
    assert.is_true((srv:wait_closed(t, 3)))
  end)

  it("aborts at once and raises again what the function raised", function()
    local t = tag("each-raise")
    local ok, err = pcall(fetch.each, srv:url("/forever?interval=20&tag=" .. t), nil, function()
      error("stop here", 0)
    end)
    assert.is_false(ok)
    assert.are.equal("stop here", err)
    assert.is_true((srv:wait_closed(t, 3)))
  end)

  it("returns nil, err when the stream fails", function()
    local ok, err = fetch.each(srv:url("/status/503"), nil, function() end)
    assert.is_nil(ok)
    assert.are.equal("http", err.kind)
    local got
    ok, err = fetch.each(srv:url("/drop"), nil, function(ev) got = ev.data end)
    assert.is_nil(ok)
    assert.are.equal("network", err.kind)
    assert.are.equal("one", got)
  end)

  it("checks its arguments at once", function()
    raises("usage", fetch.each, srv:url("/count"), nil, "not a function")
    raises("usage", fetch.each, srv:url("/count"), { idle_timout = 1 }, print)
  end)
end)

describe("responses", function()
  it("redirects are followed and s.url is where they led", function()
    local target = srv:url("/count?n=2")
    local s
    finally(function() if s then s:close() end end)
    for _, code in ipairs { 301, 302, 303, 307, 308 } do
      s = assert(fetch.open(srv:url("/redirect?code=" .. code .. "&to=" .. enc("/count?n=2"))))
      assert.are.equal(200, s.status)
      assert.are.equal(target, s.url)
      local n = 0
      for _ in s:events() do n = n + 1 end
      assert.are.equal(2, n)
      s:close()
    end
  end)

  it("307 keeps the method and body; 303 turns into GET", function()
    local url307 = srv:url("/redirect?code=307&to=" .. enc("/echo"))
    local e = cjson.decode(events_of(url307, { json = { q = 1 } })[1].data)
    assert.are.equal("POST", e.method)
    assert.are.same({ q = 1 }, cjson.decode(e.body))
    local url303 = srv:url("/redirect?code=303&to=" .. enc("/echo"))
    e = cjson.decode(events_of(url303, { json = { q = 1 } })[1].data)
    assert.are.equal("GET", e.method)
  end)

  it("follow_redirects = false hands back the 3xx as an http error", function()
    local s, err = fetch.open(srv:url("/redirect?to=" .. enc("/count")), { follow_redirects = false })
    assert.is_nil(s)
    assert.are.equal("http", err.kind)
    assert.are.equal(302, err.status)
    assert.are.equal("/count", err.headers.location)
  end)

  it("at most 10 redirects by default; a number sets the limit", function()
    local function chain(n)
      local path = "/count?n=1"
      for _ = 1, n do path = "/redirect?to=" .. enc(path) end
      return srv:url(path)
    end
    assert.are.equal(1, #events_of(chain(10)))
    local _, err = fetch.open(chain(11))
    assert.are.equal("network", err and err.kind)
    assert.are.equal("TOO_MANY_REDIRECTS", err.curl)
    assert.are.equal(1, #events_of(chain(2), { follow_redirects = 2 }))
    _, err = fetch.open(chain(3), { follow_redirects = 2 })
    assert.are.equal("network", err and err.kind)
  end)

  it("a redirect to file:// is refused as a network error", function()
    local s, err = fetch.open(srv:url("/redirect?to=" .. enc("file:///etc/passwd")))
    assert.is_nil(s)
    assert.are.equal("network", err.kind)
    assert.are.equal("UNSUPPORTED_PROTOCOL", err.curl)
    local _, err2 = collect_until_error(fetch.chunks, srv:url("/redirect?to=" .. enc("file:///etc/hostname")))
    assert.are.equal("network", err2.kind)
  end)

  it("Authorization is not sent to another host on a redirect (other headers are)", function()
    local headers = { authorization = "Bearer secret", ["x-other"] = "kept" }
    -- same host: kept
    local same = cjson.decode(events_of(srv:url("/redirect?to=" .. enc("/echo")), { headers = headers })[1].data)
    assert.are.equal("Bearer secret", same.headers.authorization)
    -- another host (localhost vs 127.0.0.1): dropped
    local other = "http://localhost:" .. srv.port .. "/echo"
    local s = assert(fetch.open(srv:url("/redirect?to=" .. enc(other)), { headers = headers }))
    finally(function() s:close() end)
    assert.are.equal(other, s.url)
    local e = cjson.decode(s:next(5).data)
    assert.are.equal("localhost:" .. srv.port, e.headers.host)
    assert.are.equal("kept", e.headers["x-other"])
    assert.is_nil(e.headers.authorization)
  end)

  it("204: a stream that ends at once with reason done", function()
    local s = assert(fetch.open(srv:url("/status/204")))
    finally(function() s:close() end)
    assert.are.equal(204, s.status)
    assert.is_nil(s:next())
    assert.are.equal("done", s.reason)
    assert.are.same({}, events_of(srv:url("/status/204")))
  end)

  it("gzip is decoded", function()
    local s = assert(fetch.open(srv:url("/gzip?n=4")))
    local p
    finally(function() s:close() if p then p:close() end end)
    assert.are.equal("gzip", s.headers["content-encoding"])
    local got = {}
    for ev in s:events() do got[#got + 1] = ev end
    assert.are.same({ "1", "2", "3", "4" }, datas(got))
    -- and without it the server sends plain text
    p = assert(fetch.open(srv:url("/gzip?n=2"), { accept_encoding = false }))
    assert.is_nil(p.headers["content-encoding"])
    local raw = {}
    for bytes in p:chunks() do raw[#raw + 1] = bytes end
    assert.are.equal("id: 1\ndata: 1\n\nid: 2\ndata: 2\n\n", table.concat(raw))
  end)
end)

describe("content-type check for event readers", function()
  it("a wrong type is a protocol error with status, headers and body", function()
    local body = "data: x\n\n"
    local evs, err = collect_until_error(fetch.events, sse(body, { ct = "text/plain" }))
    assert.are.same({}, evs)
    assert.is_true(fetch.is_error(err))
    assert.are.equal("protocol", err.kind)
    assert.are.equal(200, err.status)
    assert.are.equal("text/plain", err.headers["content-type"])
    assert.are.equal(body, err.body)
    assert.matches("text/plain", err.message)
    -- s:events() and s:next() after open check too
    local s = assert(fetch.open(sse(body, { ct = "application/json" })))
    finally(function() s:close() end)
    local ev, e2 = s:next()
    assert.is_nil(ev)
    assert.are.equal("protocol", e2.kind)
  end)

  it("parameters are ignored and the type is case-insensitive", function()
    for _, ct in ipairs { "text/event-stream; charset=utf-8", "text/event-stream;charset=UTF-8",
                          "Text/Event-Stream" } do
      assert.are.same({ "x" }, datas(events_of(sse("data: x\n\n", { ct = ct }))))
    end
  end)

  it("an empty type fails", function()
    local _, err = collect_until_error(fetch.events, sse("data: x\n\n", { ct = "" }))
    assert.are.equal("protocol", err and err.kind)
  end)

  it("a missing type fails", function()
    local body = "data: x\n\n"
    local evs, err = collect_until_error(fetch.events, sse(body, { noct = 1 }))
    assert.are.same({}, evs)
    assert.are.equal("protocol", err and err.kind)
    assert.are.equal(200, err.status)
    assert.is_nil(err.headers["content-type"])
    assert.are.equal(body, err.body)
    -- and content_type_check = false reads it
    assert.are.same({ "x" }, datas(events_of(sse(body, { noct = 1 }), { content_type_check = false })))
  end)

  it("content_type_check = false reads the events anyway", function()
    assert.are.same({ "x", "y" }, datas(events_of(sse("data: x\n\ndata: y\n\n", { ct = "text/plain" }),
      { content_type_check = false })))
  end)

  it("chunks and lines do not check the type", function()
    local got = {}
    for line in fetch.lines(sse("a\nb\n", { ct = "application/x-ndjson" })) do got[#got + 1] = line end
    assert.are.same({ "a", "b" }, got)
  end)
end)

describe("errors", function()
  it("http error with a JSON body: status, message, body, json, headers", function()
    local url = srv:url("/status/401?body=" .. enc('{"error":{"message":"invalid key","code":7}}'))
    local s, err = fetch.open(url)
    assert.is_nil(s)
    assert.is_true(fetch.is_error(err))
    assert.are.equal("http", err.kind)
    assert.are.equal(401, err.status)
    assert.are.equal("invalid key", err.message)
    assert.are.equal("fetchstream: http 401 from GET " .. url .. ": invalid key", tostring(err))
    assert.are.same({ error = { message = "invalid key", code = 7 } }, err.json)
    assert.are.equal('{"error":{"message":"invalid key","code":7}}', err.body)
    assert.are.equal("application/json", err.headers["content-type"])
  end)

  it("http error with a text body: no json, the text is the message", function()
    local _, err = fetch.open(srv:url("/status/503?ct=text/plain&body=" .. enc("upstream busy")))
    assert.are.equal("http", err.kind)
    assert.are.equal(503, err.status)
    assert.is_nil(err.json)
    assert.are.equal("upstream busy", err.body)
    assert.matches("upstream busy", err.message)
    assert.matches("^fetchstream: http 503 from GET http://127%.0%.0%.1:%d+/status/503%?[^ ]*: ", tostring(err))
  end)

  it("http error body is cut at 64 KiB", function()
    local _, err = fetch.open(srv:url("/big?status=500&bytes=300000&size=100"))
    assert.are.equal("http", err and err.kind)
    assert.are.equal(500, err.status)
    assert.are.equal(64 * 1024, #err.body)
  end)

  it("connection refused: network COULDNT_CONNECT", function()
    local url = "http://127.0.0.1:" .. free_port() .. "/x"
    local s, err = fetch.open(url)
    assert.is_nil(s)
    assert.are.equal("network", err.kind)
    assert.are.equal("COULDNT_CONNECT", err.curl)
    assert.are.equal(7, err.code)
    assert.are.equal("fetchstream: network from GET " .. url .. ": " .. err.message, tostring(err))
    local _, err2 = collect_until_error(fetch.events, url)
    assert.are.equal("COULDNT_CONNECT", err2.curl)
  end)

  it("a dropped connection: the truncated last event is not dispatched, PARTIAL_FILE", function()
    for _, mode in ipairs { "chunked", "length" } do
      local evs, err = collect_until_error(fetch.events, srv:url("/drop?mode=" .. mode))
      assert.are.same({ "one" }, datas(evs))
      assert.are.equal("network", err and err.kind)
      assert.are.equal("PARTIAL_FILE", err.curl)
      assert.are.equal(18, err.code)
    end
  end)

  it("idle_timeout: silence after the first byte", function()
    local t0 = now()
    local evs, err = collect_until_error(fetch.events, srv:url("/stall"), { idle_timeout = 0.3 })
    local took = now() - t0
    assert.are.same({ "hello" }, datas(evs))
    assert.are.equal("timeout", err and err.kind)
    assert.are.equal("idle", err.timeout)
    assert.is_true(took >= 0.25 and took < 2, "took " .. took)
  end)

  it("idle_timeout does not fire while data keeps coming", function()
    local n = 0
    for _ in fetch.events(srv:url("/count?n=6&delay=100"), { idle_timeout = 0.4 }) do n = n + 1 end
    assert.are.equal(6, n)
  end)

  it("first_byte_timeout: headers but no body", function()
    local s = assert(fetch.open(srv:url("/stall?hello=0"), { first_byte_timeout = 0.3 }))
    finally(function() s:close() end)
    local t0 = now()
    local ev, err = s:next()
    assert.is_nil(ev)
    assert.are.equal("timeout", err and err.kind)
    assert.are.equal("first_byte", err.timeout)
    assert.are.equal("timeout", s.reason)
    assert.is_true(now() - t0 < 2)
  end)

  it("first_byte_timeout: no response at all", function()
    local t0 = now()
    local s, err = fetch.open(srv:url("/count?wait=5000"), { first_byte_timeout = 0.3 })
    assert.is_nil(s)
    assert.are.equal("timeout", err and err.kind)
    assert.are.equal("first_byte", err.timeout)
    assert.is_true(now() - t0 < 2)
  end)

  it("timeout: the whole transfer, even while events flow", function()
    local t0 = now()
    local evs, err = collect_until_error(fetch.events, srv:url("/forever?interval=50"),
      { timeout = 0.5, idle_timeout = 0.3 })
    local took = now() - t0
    assert.is_true(#evs >= 3, "only " .. #evs .. " events")
    assert.are.equal("timeout", err and err.kind)
    assert.are.equal("total", err.timeout)
    assert.matches("^fetchstream: timeout from GET http://127%.0%.0%.1:%d+/forever%?interval=50: total timeout",
      tostring(err))
    assert.is_true(took >= 0.45 and took < 2, "took " .. took)
  end)
end)
