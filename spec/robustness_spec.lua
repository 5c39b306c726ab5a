-- Spec for what hostile input and a new user's first hour found: strings
-- that could inject a header, numbers that are not numbers, pull loops
-- inside callbacks, lines over the size limit, repeated content types,
-- streams whose client goes away, errors that name their request, the
-- reconnection hook, callbacks that get their stream, and Ctrl-C.
--
-- Against the stub server in spec/server/; nothing leaves the machine.

local fetch = require "fetchstream"
local h = require "spec.helpers"
local stub = require "spec.server"

local srv
setup(function() srv = stub.start() end)
teardown(function() srv:stop() end)

local raises, tag = h.raises, h.tagger("robust")

local function sse(body, extra) return srv:url(h.sse_path(body, extra)) end

-- Drain a pull iterator; returns the values and the error it raised.
local function drain(iter, ...)
  local got = {}
  local ok, err = pcall(function(...)
    for v in iter(...) do got[#got + 1] = v end
  end, ...)
  return got, (not ok) and err or nil
end

---------------------------------------------------------------------------

describe("strings that reach curl as C strings", function()
  local bad = { ["CR LF"] = "a\r\nX-Injected: 1", ["LF"] = "a\nb", ["CR"] = "a\rb", ["NUL"] = "a\0b" }

  for _, name in ipairs { "user_agent", "proxy", "ca_file", "method", "last_event_id" } do
    it(("refuse CR, LF and NUL in %s with a usage error, sending nothing"):format(name), function()
      for what, value in pairs(bad) do
        local t = tag(name)
        local err = raises("usage", fetch.open, srv:url("/echo?tag=" .. t), { [name] = value })
        assert.matches(name, err.message, 1, true)
        err = raises("usage", fetch.stream, srv:url("/echo?tag=" .. t), { [name] = value, onclose = print })
        assert.is_truthy(err.message, what)
        assert.are.equal(0, srv:log(t).requests, name .. " with " .. what .. " was sent")
      end
    end)
  end

  it("refuse CR, LF and NUL in the URL", function()
    for what, value in pairs(bad) do
      raises("usage", fetch.open, srv:url("/echo?x=" .. value))
      raises("usage", fetch.events, srv:url("/echo?" .. what:gsub(" ", "") .. "=" .. value))
    end
  end)

  it("put no injected header on the wire through user_agent (it never gets there)", function()
    local ok = pcall(fetch.open, srv:url("/echo"), { user_agent = "ua\r\nX-Injected: 1" })
    assert.is_false(ok)
    local s = assert(fetch.open(srv:url("/echo"), { user_agent = "ua 1.0" }))
    local seen = require("cjson").decode(s:next().data)
    s:close()
    assert.are.equal("ua 1.0", seen.headers["user-agent"])
    assert.is_nil(seen.headers["x-injected"])
  end)
end)

describe("a typo in an option's name", function()
  it("is a usage error with 'did you mean' when a known name is close", function()
    local err = raises("usage", fetch.open, srv:url("/count"), { idle_timout = 5 })
    assert.matches("unknown option 'idle_timout' to 'open' (did you mean 'idle_timeout'?)", err.message, 1, true)
    err = raises("usage", fetch.stream, srv:url("/count"), { onmesage = print })
    assert.matches("(did you mean 'onmessage'?)", err.message, 1, true)
    err = raises("usage", fetch.events, srv:url("/count"), { reconnect = { retires = 3 } })
    assert.matches("did you mean 'retries'?", err.message, 1, true)
    err = raises("usage", fetch.parser, { max_event_sise = 5 })
    assert.matches("did you mean 'max_event_size'?", err.message, 1, true)
    err = raises("usage", fetch.open, srv:url("/count"), { zzzz = 1 })
    assert.is_nil(err.message:find("did you mean", 1, true))
  end)
end)

describe("numbers of seconds", function()
  local NAN, INF = 0 / 0, math.huge

  it("must be finite and in range in every timeout option", function()
    for _, name in ipairs { "connect_timeout", "first_byte_timeout", "idle_timeout", "timeout" } do
      for _, v in ipairs { NAN, INF, -INF, 0, -1, 1e12 } do
        local err = raises("usage", fetch.open, srv:url("/count"), { [name] = v })
        assert.matches(name, err.message, 1, true)
      end
    end
  end)

  it("must be finite and in range in reconnect", function()
    for _, field in ipairs { "delay", "max_delay" } do
      for _, v in ipairs { NAN, INF, -INF, -1 } do
        raises("usage", fetch.events, srv:url("/count"), { reconnect = { [field] = v } })
      end
    end
    for _, v in ipairs { NAN, INF, -1, 1.5 } do
      raises("usage", fetch.events, srv:url("/count"), { reconnect = { retries = v } })
    end
    -- an integral float is a whole number (LuaJIT has no other kind)
    local t = tag("retries")
    local evs = drain(fetch.events, srv:url("/status/503?tag=" .. t), { reconnect = { retries = 2.0, delay = 0 } })
    assert.are.equal(0, #evs)
    assert.are.equal(3, srv:log(t).requests)
  end)

  it("must be finite for s:next and run (NaN spun at 100% CPU)", function()
    local s = assert(fetch.open(srv:url("/count?n=1")))
    local c
    finally(function() s:close() if c then c:close() end end)
    for _, v in ipairs { NAN, INF, -INF, -1, "1" } do
      raises("usage", s.next, s, v)
    end
    assert.are.equal("1", s:next(0.0 + 5).data)
    c = fetch.client()
    for _, v in ipairs { NAN, INF, -1 } do
      raises("usage", c.run, c, v)
      raises("usage", fetch.run, v)
    end
    assert.is_true(c:run(0))
  end)
end)

describe("a pull loop inside a callback", function()
  it("is a usage error, and the outer stream's callbacks are never re-entered", function()
    local depth, max_depth, closed_inside = 0, 0, false
    local errs, endings = {}, {}
    local inner = srv:url("/count?n=2")
    local pulls = {
      events = function() for _ in fetch.events(inner) do end end,
      chunks = function() for _ in fetch.chunks(inner) do end end,
      lines = function() for _ in fetch.lines(inner) do end end,
      ndjson = function() for _ in fetch.ndjson(inner) do end end,
      open = function() fetch.open(inner) end,
      chat = function() for _ in fetch.chat(srv:url("/v1"), { model = "m", messages = {} }) do end end,
    }
    for name, pull in pairs(pulls) do
      fetch.stream(srv:url("/count?n=3"), {
        onmessage = function(_, s)
          depth = depth + 1
          max_depth = math.max(max_depth, depth)
          local ok, err = pcall(pull)
          depth = depth - 1
          errs[name] = ok and "returned" or err
          s:close()
        end,
        onclose = function() if depth > 0 then closed_inside = true end end,
        onabort = function() endings[#endings + 1] = name end,
      })
    end
    assert.is_true(fetch.run(10))
    for name in pairs(pulls) do
      assert.is_true(fetch.is_error(errs[name]), name .. ": " .. tostring(errs[name]))
      assert.are.equal("usage", errs[name].kind, name)
      assert.matches("inside a callback", errs[name].message, 1, true)
    end
    assert.are.equal(1, max_depth)
    assert.is_false(closed_inside)
    assert.are.equal(6, #endings)
  end)

  it("over a stream opened earlier is a usage error too", function()
    local outer_err
    local s = assert(fetch.open(srv:url("/count?n=2")))
    finally(function() s:close() end)
    fetch.stream(srv:url("/count?n=1"), {
      onmessage = function()
        outer_err = select(2, pcall(function() for _ in s:events() do end end))
      end,
    })
    assert.is_true(fetch.run(5))
    assert.are.equal("usage", outer_err and outer_err.kind)
    assert.are.equal("1", s:next().data) -- and it is still readable afterwards
  end)
end)

describe("max_event_size on lines", function()
  local body = ("x"):rep(100) .. "\n" .. ("y"):rep(10) .. "\n"

  it("ends fetch.lines at the first line over the limit, however it arrives", function()
    for _, chunk in ipairs { 1000, 7, 1 } do
      local got, err = drain(fetch.lines, sse(body, { chunk = chunk }), { max_event_size = 50 })
      assert.are.same({}, got)
      assert.are.equal("protocol", err and err.kind)
      assert.matches("max_event_size", err.message, 1, true)
    end
  end)

  it("ends fetch.ndjson the same way", function()
    local lines = ('{"a":"%s"}\n'):format(("z"):rep(80)) .. '{"b":1}\n'
    local got, err = drain(fetch.ndjson, sse(lines), { max_event_size = 50 })
    assert.are.same({}, got)
    assert.are.equal("protocol", err and err.kind)
  end)

  it("lets a line of exactly max_event_size bytes through, with LF or CRLF", function()
    local exact = ("x"):rep(50)
    local got, err = drain(fetch.lines, sse(exact .. "\r\n" .. exact .. "\n" .. exact, { chunk = 3 }),
      { max_event_size = 50 })
    assert.is_nil(err)
    assert.are.same({ exact, exact, exact }, got)
    local _, err2 = drain(fetch.lines, sse(exact .. "x"), { max_event_size = 50 }) -- last line, no LF
    assert.are.equal("protocol", err2 and err2.kind)
  end)
end)

describe("a repeated Content-Type", function()
  it("is read as the Fetch standard does: the last valid value wins", function()
    local evs = drain(fetch.events, sse("data: ok\n\n", { ct2 = "text/event-stream" }))
    assert.are.equal("ok", evs[1] and evs[1].data)
    evs = drain(fetch.events, sse("data: ok\n\n", { ct = "text/html", ct2 = "text/event-stream;charset=utf-8" }))
    assert.are.equal("ok", evs[1] and evs[1].data)
    local _, err = drain(fetch.events, sse("data: ok\n\n", { ct2 = "text/html" }))
    assert.are.equal("protocol", err and err.kind)
  end)
end)

describe("proxy = false", function()
  -- curl reads http_proxy & co. from the environment: a child process with
  -- http_proxy pointing nowhere fails unless the option turns proxies off.
  local function child(opt)
    h.build_for_children()
    local script = ([[
      local fetch = require "fetchstream"
      local s, err = fetch.open(%q, { proxy = %s })
      io.write(s and "ok" or err.kind)
    ]]):format(srv:url("/count?n=1"), opt)
    local cmd = ("%s http_proxy=http://127.0.0.1:%d %s -e %s 2>&1"):format(
      h.child_env(), h.free_port(), h.lua(), h.shell_quote(script))
    local p = io.popen(cmd)
    local out = p:read("a")
    p:close()
    return out
  end

  it("ignores the proxy environment variables", function()
    assert.are.equal("network", child("nil"))
    assert.are.equal("ok", child("false"))
  end)
end)

describe("errors name their request", function()
  local function check(err, method, url)
    assert.is_true(fetch.is_error(err), tostring(err))
    assert.are.equal(method, err.method)
    assert.are.equal(url, err.url)
    assert.are.equal(("fetchstream: %s%s from %s %s: %s"):format(err.kind,
      err.kind == "http" and " " .. err.status or "", method, url, err.message), tostring(err))
  end

  it("every kind but usage carries err.url and err.method", function()
    local u = srv:url("/status/404")
    check(select(2, fetch.open(u)), "GET", u)
    u = "http://127.0.0.1:" .. h.free_port() .. "/x"
    check(select(2, fetch.open(u, { method = "PUT", body = "b" })), "PUT", u)
    u = srv:url("/stall?wait=2000")
    check(select(2, fetch.open(u, { first_byte_timeout = 0.2 })), "GET", u)
    u = sse("data: x\n\n", { ct = "text/plain" })
    check(select(2, drain(fetch.events, u)), "GET", u)
    u = sse(("x"):rep(100) .. "\n")
    check(select(2, drain(fetch.lines, u, { max_event_size = 10 })), "GET", u)
    u = srv:url("/count?n=2")
    local cb_err
    fetch.stream(u, { method = "POST", body = "x", onmessage = function() error("boom") end,
                      onerror = function(e) cb_err = e end })
    fetch.run(5)
    check(cb_err, "POST", u)
    u = srv:url("/v1?truncate=2&delay=1")
    check(select(2, drain(fetch.chat, u, { model = "m", messages = {} })), "POST",
      srv:url("/v1/chat/completions?truncate=2&delay=1"))
  end)

  it("never show credentials from the URL", function()
    local port = srv.port
    local with = ("http://alice:s3cret@127.0.0.1:%d"):format(port)
    local without = ("http://127.0.0.1:%d"):format(port)
    local _, err = fetch.open(with .. "/status/401")
    assert.are.equal(without .. "/status/401", err.url)
    assert.is_nil(tostring(err):find("s3cret", 1, true))
    local s = assert(fetch.open(with .. "/redirect?to=" .. h.enc("/count?n=1")))
    finally(function() s:close() end)
    assert.are.equal(without .. "/count?n=1", s.url)
    _, err = fetch.open("http://bob:pw@127.0.0.1:" .. h.free_port() .. "/")
    assert.is_nil(err.url:find("pw", 1, true))
    assert.is_nil(tostring(err):find("bob", 1, true))
  end)
end)

describe("onreconnect", function()
  it("fires before each wait with attempt, error and delay; s.reconnects starts at 0", function()
    local infos, seen_s = {}, {}
    local s = assert(fetch.open(srv:url("/feed?n=3&drop_after=1&tag=" .. tag("rc")), {
      reconnect = { delay = 0.01 },
      onreconnect = function(info, st) infos[#infos + 1] = info; seen_s[#seen_s + 1] = st end,
    }))
    finally(function() s:close() end)
    assert.are.equal(0, s.reconnects)
    local got = {}
    for ev in s:events() do got[#got + 1] = ev.data end
    assert.are.same({ "event 1", "event 2", "event 3" }, got)
    -- two drops, then a normal end (the feed then answers 204: the end)
    assert.are.equal(3, #infos)
    for i, info in ipairs(infos) do
      assert.are.equal(i, info.attempt)
      if i < 3 then
        assert.are.equal("network", info.error and info.error.kind)
      else
        assert.is_nil(info.error)
      end
      assert.is_true(info.delay >= 0.01 and info.delay < 1, tostring(info.delay))
      assert.are.equal(s, seen_s[i])
    end
    assert.are.equal(3, s.reconnects)
  end)

  it("shows a 429 that fetch.open waits out", function()
    local infos = {}
    local s = assert(fetch.open(srv:url("/flaky?status=429&retry_after=0&tag=" .. tag("429")), {
      reconnect = { delay = 0.01 },
      onreconnect = function(info) infos[#infos + 1] = info end,
    }))
    finally(function() s:close() end)
    assert.are.equal(200, s.status)
    assert.are.equal(1, #infos)
    assert.are.equal(429, infos[1].error.status)
  end)

  it("ends the stream with a callback error when it raises", function()
    local _, err = drain(fetch.events, srv:url("/feed?n=3&drop_after=1"), {
      reconnect = { delay = 0.01 }, onreconnect = function() error("no more") end,
    })
    assert.are.equal("callback", err and err.kind)
  end)
end)

describe("callbacks get their stream as the last argument", function()
  it("every one of them, the final ones too", function()
    local seen = {}
    local function rec(name) return function(...) seen[name] = select(select("#", ...), ...) end end
    local s1 = fetch.stream(sse("retry: 5\n: hi\ndata: a\n\nevent: x\ndata: b\n\n"), {
      onopen = rec("onopen"), onmessage = rec("onmessage"), on = { x = rec("on.x") },
      onretry = rec("onretry"), oncomment = rec("oncomment"), onchunk = rec("onchunk"),
      onclose = rec("onclose"),
    })
    local s2 = fetch.stream(srv:url("/status/500"), { onerror = rec("onerror") })
    local s3 = fetch.stream(srv:url("/stall"), { onopen = function(s) s:abort("bye") end, onabort = rec("onabort") })
    assert.is_true(fetch.run(5))
    for _, name in ipairs { "onopen", "onmessage", "on.x", "onretry", "oncomment", "onchunk", "onclose" } do
      assert.are.equal(s1, seen[name], name)
    end
    assert.are.equal(s2, seen.onerror)
    assert.are.equal(s3, seen.onabort)
  end)
end)

describe("a client that goes away", function()
  -- ends[i] counts the final callbacks of stream i, keyed by number, not by
  -- the stream: a table holding the streams would hold their client too.
  local function streams_on(c, n, ends)
    for i = 1, n do
      c:stream(srv:url("/stall"), {
        onmessage = function() end,
        onabort = function() ends[i] = (ends[i] or 0) + 1 end,
        onclose = function() ends[i] = (ends[i] or 0) + 100 end,
        onerror = function() ends[i] = (ends[i] or 0) + 100 end,
      })
    end
  end

  local function each_once(ends, n)
    local count = 0
    for _, v in pairs(ends) do
      assert.are.equal(1, v)
      count = count + 1
    end
    assert.are.equal(n, count)
  end

  it("ends every callback stream as aborted on c:close(), onabort once each", function()
    local ends, c = {}, fetch.client()
    streams_on(c, 5, ends)
    c:run(0.1)
    c:close()
    each_once(ends, 5)
    c:close()
    each_once(ends, 5)
  end)

  it("ends them from its finalizer when it is collected without run()", function()
    local ends = {}
    local weak = setmetatable({}, { __mode = "v" })
    do
      local c = fetch.client()
      streams_on(c, 5, ends)
      weak[1] = c
    end
    -- (Lua 5.1 keeps what a finalizer sees for one more cycle)
    for _ = 1, 4 do
      if weak[1] == nil then break end
      collectgarbage()
    end
    assert.is_nil(weak[1])
    each_once(ends, 5)
  end)
end)

describe("Ctrl-C", function()
  -- A child h.lua() sends itself SIGINT while `code` waits: lua.c (and
  -- luajit.c) turns it into an "interrupted!" error (once per chunk: a
  -- second SIGINT would kill the process, as lua.c wants). `code` catches it
  -- and carries on.
  local function interrupted(code, ...)
    h.build_for_children()
    local script = ([[
      local fetch = require "fetchstream"
      local pid = io.open("/proc/self/stat"):read("l"):match("^%%d+")
      os.execute("(sleep 0.3; kill -INT " .. pid .. ") &")
      local function said(ok, err)
        io.write(tostring(ok), " ", tostring(err):match("interrupted!") or tostring(err), "\n")
      end
    ]] .. code):format(...)
    local p = io.popen(("%s %s -e %s 2>&1"):format(h.child_env(), h.lua(), h.shell_quote(script)))
    local out = p:read("a")
    p:close()
    return out
  end

  it("while fetch.run waits leaves the client and its streams usable", function()
    local out = interrupted([[
      local n = 0
      local s = fetch.stream(%q, { onmessage = function() n = n + 1 end })
      said(pcall(fetch.run))
      assert(fetch.run(10))
      io.write("run again: ", s.reason, " ", n, "\n")
    ]], srv:url("/count?n=8&delay=100"))
    assert.are.equal("false interrupted!\nrun again: done 8\n", out)
  end)

  it("inside a callback stops run() too, not only that callback", function()
    local out = interrupted([[
      local n = 0
      local s = fetch.stream(%q, { onmessage = function()
        n = n + 1
        local t = os.clock() + 3
        if n == 1 then while os.clock() < t do end end -- busy until interrupted
      end })
      said(pcall(fetch.run))
      io.write("reason: ", tostring(s.reason), "\n")
      assert(fetch.run(10))
      io.write("run again: ", s.reason, " ", n, "\n")
    ]], srv:url("/count?n=3"))
    assert.are.equal("false interrupted!\nreason: nil\nrun again: done 3\n", out)
  end)

  it("while a pull loop waits leaves the stream closable and the client usable", function()
    local t = tag("ctrl-c")
    local out = interrupted([[
      local s = assert(fetch.open(%q))
      said(pcall(function() for _ in s:events() do end end))
      s:close()
      io.write("closed: ", s.reason, "\n")
      for ev in fetch.events(%q) do io.write("again: ", ev.data, "\n") end
    ]], srv:url("/forever?interval=50&tag=" .. t), srv:url("/count?n=1"))
    assert.are.equal("false interrupted!\nclosed: aborted\nagain: 1\n", out)
    assert.is_true((srv:wait_closed(t, 3)))
  end)
end)
