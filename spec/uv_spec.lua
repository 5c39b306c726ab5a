-- Spec for fetchstream.uv on Debian's lua-luv (`require "luv"`), on both
-- ABIs: a client attached to a libuv loop behaves as under fetch.run() —
-- callbacks, endings, abort, timeouts, reconnection — without blocking the
-- loop, costs nothing while idle, and lets uv.run() return when it has
-- nothing to do; inside spawn()ed coroutines the pull forms suspend.

local fetch = require "fetchstream"
local fuv = require "fetchstream.uv"
local uv = require "luv"
local stub = require "spec.server"
local socket = require "socket"
local h = require "spec.helpers"

local ANSWER = stub.CANNED_ANSWER

local srv
setup(function() srv = stub.start() end)
teardown(function()
  local d = fetch.client() -- the default client is fetch.*'s: leave it as found
  d:close()
  local default = require("fetchstream.client").default()
  if default._loop then default._loop:detach() end
  uv.run("nowait") -- let closed handles go
  srv:stop()
end)

local tag = h.tagger("uv")

-- uv.run() with a guard: a timer that does not keep the loop alive stops it
-- after `limit` seconds. Returns the seconds it ran and whether the guard
-- had to stop it.
local function run(limit)
  local guard, stopped = uv.new_timer(), false
  guard:start(math.floor((limit or 10) * 1000), 0, function()
    stopped = true
    uv.stop()
  end)
  guard:unref()
  local t0 = socket.gettime()
  uv.run()
  local took = socket.gettime() - t0
  guard:stop()
  guard:close()
  uv.run("nowait")
  return took, stopped
end

-- A timer: fn() after `ms`, once.
local function after(ms, fn)
  local t = uv.new_timer()
  t:start(ms, 0, function()
    t:close()
    fn()
  end)
  return t
end

-- A repeating timer counting its ticks; stop with :stop().
local function ticker(interval_ms)
  local t, self = uv.new_timer(), { ticks = 0 }
  t:start(interval_ms, interval_ms, function() self.ticks = self.ticks + 1 end)
  function self.stop()
    if not t:is_closing() then t:close() end
  end
  return self
end

-- A client attached to luv, closed and detached when the test ends.
local function attached(opts)
  local c = fetch.client()
  local handle = fuv.attach(c, uv, opts)
  finally(function()
    handle:detach()
    c:close()
    uv.run("nowait")
  end)
  return c, handle
end

-- Spawn fn; its error is kept in errs (fn's coroutine fails the test).
local function spawn(errs, fn, ...)
  return fuv.spawn({ onerror = function(err) errs[#errs + 1] = tostring(err) end }, fn, ...)
end

describe("fetchstream.uv: an attached client", function()
  it("drives callback streams while a luv timer keeps firing", function()
    local c = attached()
    local got, ends, tick, left = {}, {}, nil, 3
    local function ended() -- the ticker keeps the loop alive: stop it with the last stream
      left = left - 1
      if left == 0 then tick.stop() end
    end
    for i = 1, 3 do
      got[i] = {}
      c:stream(srv:url("/count?n=10&delay=20"), {
        onmessage = function(ev) got[i][#got[i] + 1] = ev.data end,
        onclose = function() ends[i] = (ends[i] or 0) + 1; ended() end,
        onerror = function(err) ends[i] = tostring(err); ended() end,
      })
    end
    tick = ticker(10)
    local took, stopped = run(10)
    assert.is_false(stopped, "uv.run() returned by itself")
    for i = 1, 3 do
      assert.are.same({ "1", "2", "3", "4", "5", "6", "7", "8", "9", "10" }, got[i])
      assert.are.equal(1, ends[i])
    end
    -- the loop never blocked: the timer got most of its ticks (the last one
    -- may not have come before the loop ended)
    local expected = took / 0.010
    assert.is_true(tick.ticks >= 0.8 * expected - 1,
      ("%d ticks in %.3f s, %.0f expected"):format(tick.ticks, took, expected))
  end)

  it("ends 20 concurrent streams once each, with the right reason", function()
    local c = attached()
    local endings, streams = {}, {}
    local function track(i)
      endings[i] = {}
      local function record(what) return function() endings[i][#endings[i] + 1] = what end end
      return { onmessage = function(_, s) if i % 5 == 3 and s.state ~= "ended" then s:abort("enough") end end,
               onclose = record("done"), onerror = record("error"), onabort = record("aborted") }
    end
    for i = 1, 20 do
      local kind = i % 5
      local url = kind == 1 and srv:url("/status/404")
        or kind == 2 and srv:url("/stall?hello=0")
        or srv:url("/count?n=5&delay=10")
      local opts = track(i)
      if kind == 2 then opts.idle_timeout = 0.3 end
      streams[i] = c:stream(url, opts)
    end
    local _, stopped = run(10)
    assert.is_false(stopped)
    for i = 1, 20 do
      local kind = i % 5
      local want = kind == 1 and "error" or kind == 2 and "error" or kind == 3 and "aborted" or "done"
      assert.are.same({ want }, endings[i], "stream " .. i)
      local reason = kind == 1 and "http" or kind == 2 and "timeout" or kind == 3 and "aborted" or "done"
      assert.are.equal(reason, streams[i].reason, "stream " .. i)
    end
  end)

  it("aborts from a luv timer: the connection closes at once and uv.run() returns", function()
    local c = attached()
    local t = tag("abort")
    local aborted_at, why
    local s = c:stream(srv:url("/stall?tag=" .. t), { onmessage = function() end,
                                                      onabort = function(reason) why = reason end })
    after(200, function()
      aborted_at = socket.gettime()
      s:abort("from a timer")
    end)
    local _, stopped = run(10)
    local returned = socket.gettime() - aborted_at
    assert.is_false(stopped)
    assert.are.equal("from a timer", why)
    assert.are.equal("aborted", s.reason)
    assert.is_true(returned < 0.1, ("uv.run() returned %.3f s after the abort"):format(returned))
    assert.is_true(srv:wait_closed(t, 1), "the stub server saw the connection close")
  end)

  it("fires idle_timeout on time, with no busy polling", function()
    local passes = 0
    local c = attached({ wrap = function(pass) return function() passes = passes + 1; pass() end end })
    local err, t0, took
    c:stream(srv:url("/stall?hello=0"), { idle_timeout = 0.5, onchunk = function() end,
                                          onerror = function(e) err, took = e, socket.gettime() - t0 end })
    t0 = socket.gettime()
    local _, stopped = run(10)
    assert.is_false(stopped)
    assert.are.equal("idle", err and err.timeout)
    assert.is_true(took >= 0.49 and took < 0.8, ("took %.3f s"):format(took))
    -- connect, headers, curl's timers, the deadline: a handful, never a spin
    assert.is_true(passes <= 12, passes .. " passes")
  end)

  it("with nothing to do lets uv.run() return, and wakes again when a stream starts", function()
    local c = attached()
    local took, stopped = run(5)
    assert.is_false(stopped)
    assert.is_true(took < 0.05, ("an idle client kept uv.run() for %.3f s"):format(took))
    local n = 0
    c:stream(srv:url("/count?n=2"), { onmessage = function() n = n + 1 end })
    took, stopped = run(5)
    assert.is_false(stopped, took)
    assert.are.equal(2, n)
    -- and once more, a stream started from a luv callback of another handle
    after(10, function() c:stream(srv:url("/count?n=3"), { onmessage = function() n = n + 1 end }) end)
    took, stopped = run(5)
    assert.is_false(stopped, took)
    assert.are.equal(5, n)
    assert.is_nil(c:timeout())
  end)

  it("costs no CPU while a stream waits 2 s in silence", function()
    local c = attached()
    local t = tag("silence")
    local s = c:stream(srv:url("/stall?hello=0&tag=" .. t), { onchunk = function() end })
    after(2000, function() s:abort() end)
    local cpu0 = os.clock()
    local took, stopped = run(10)
    local cpu = os.clock() - cpu0
    assert.is_false(stopped)
    assert.is_true(took >= 1.99, ("%.3f s"):format(took))
    assert.is_true(cpu <= 0.02, ("CPU %.4f s over %.2f s of silence"):format(cpu, took))
    print(("\n# uv: CPU while one stream waits %.2f s in silence: %.4f s"):format(took, cpu))
    assert.is_true(srv:wait_closed(t, 1))
  end)

  it("reconnects as under run()", function()
    local c = attached()
    local datas, infos = {}, {}
    local t = tag("feed")
    local s = c:stream(srv:url("/feed?n=5&drop_after=2&tag=" .. t), {
      reconnect = { delay = 0.05 },
      onmessage = function(ev) datas[#datas + 1] = ev.data end,
      onreconnect = function(info) infos[#infos + 1] = info end,
    })
    local _, stopped = run(10)
    assert.is_false(stopped)
    assert.are.same({ "event 1", "event 2", "event 3", "event 4", "event 5" }, datas)
    -- drops after 2 and 4; event 5 ends normally; the next request gets 204
    assert.are.equal(3, #infos)
    assert.are.equal(3, s.reconnects)
    assert.are.equal("done", s.reason)
    assert.are.same({ "", "2", "4", "5" }, srv:log(t).last_event_ids)
  end)

  it("ends a stream whose callback raised with a callback error; the others carry on", function()
    local c = attached()
    local err, other = nil, 0
    c:stream(srv:url("/count?n=3"), { onmessage = function() error("from onmessage") end,
                                      onerror = function(e) err = e end })
    c:stream(srv:url("/count?n=3&delay=10"), { onmessage = function() other = other + 1 end })
    local _, stopped = run(5)
    assert.is_false(stopped)
    assert.are.equal("callback", err and err.kind)
    assert.is_truthy(tostring(err.cause):find("from onmessage", 1, true))
    assert.are.equal(3, other)
  end)

  it("reports what a final callback raised through attach's onerror", function()
    local seen = {}
    local c = attached({ onerror = function(err, co) seen[#seen + 1] = { tostring(err), co } end })
    c:stream(srv:url("/count?n=1"), { onmessage = function() end, onclose = function() error("from onclose") end })
    local _, stopped = run(5)
    assert.is_false(stopped)
    assert.are.equal(1, #seen)
    assert.is_truthy(seen[1][1]:find("from onclose", 1, true))
    assert.is_nil(seen[1][2])
  end)

  it("runs every pass through opts.wrap: callbacks are called inside it", function()
    local inside, outside_calls, wrapped = false, 0, 0
    local c = attached({ wrap = function(pass)
      wrapped = wrapped + 1
      return function()
        inside = true
        pass()
        inside = false
      end
    end })
    c:stream(srv:url("/count?n=3"), {
      onmessage = function() if not inside then outside_calls = outside_calls + 1 end end,
      onclose = function() assert(inside) end,
    })
    run(5)
    assert.are.equal(1, wrapped) -- wrap is called once, at attach
    assert.are.equal(0, outside_calls)
  end)

  it("steps on a timer when the client has no descriptor to watch", function()
    local c = fetch.client()
    c.fileno = function() return nil end -- as on a system without epoll
    local handle = fuv.attach(c, uv)
    finally(function() handle:detach(); c:close() end)
    local n = 0
    c:stream(srv:url("/count?n=4&delay=20"), { onmessage = function() n = n + 1 end })
    local _, stopped = run(5)
    assert.is_false(stopped)
    assert.are.equal(4, n)
  end)

  it("detach: uv.run() returns; the client goes on under run()", function()
    local c, handle = attached()
    local n = 0
    local s = c:stream(srv:url("/count?n=6&delay=50"), { onmessage = function() n = n + 1 end })
    after(120, function() handle:detach() end)
    local _, stopped = run(5)
    assert.is_false(stopped)
    assert.is_nil(s.reason)
    assert.is_true(n >= 1 and n < 6, tostring(n))
    assert.is_true(c:run(5))
    assert.are.equal(6, n)
    assert.are.equal("done", s.reason)
    handle:detach() -- idempotent
  end)

  it("a script that ends with c:close() or h:detach() after uv.run() exits cleanly", function()
    -- (luv 1.44 crashes in lua_close when a handle was closed and the loop
    -- never ran after: the adapter leaves such handles stopped, not closed)
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([[
      local uv = require "luv"
      local fetch = require "fetchstream"
      local fuv = require "fetchstream.uv"
      local a, b = fetch.client(), fetch.client()
      local ha = fuv.attach(a, uv)
      fuv.attach(b, uv)
      local n = 0
      a:stream(arg[1], { onmessage = function() n = n + 1 end })
      b:stream(arg[1], { onmessage = function() n = n + 1 end })
      uv.run()
      ha:detach()
      a:close()
      b:close() -- attached: closing detaches it
      print("events " .. n)
    ]])
    f:close()
    finally(function() os.remove(script) end)
    local out = os.tmpname()
    local ok, how, code = h.execute(("%s %s %s %s >%s 2>&1"):format(h.child_env(), h.lua(), script,
      h.shell_quote(srv:url("/count?n=2")), out))
    local text = h.read(out)
    os.remove(out)
    assert.is_true(ok, ("%s %s: %s"):format(tostring(how), tostring(code), text))
    assert.are.equal("events 4\n", text)
  end)

  it("checks its arguments", function()
    h.raises("usage", fuv.attach, {}, uv)
    h.raises("usage", fuv.attach, fetch.client(), {})
    h.raises("usage", fuv.attach, fetch.client(), uv, { wrapp = true })
    h.raises("usage", fuv.attach, fetch.client(), uv, { onerror = 1 })
    local err = h.raises("usage", fuv.attach, fetch.client(), uv, "/usr/lib/x86_64-linux-gnu/lua/5.4/luv.so")
    assert.is_truthy(tostring(err):find('(require "luv")', 1, true), tostring(err))
    local closed = fetch.client()
    closed:close()
    h.raises("usage", fuv.attach, closed, uv)
    local c, handle = attached()
    assert.are.equal(handle, fuv.attach(c, uv)) -- attached already: the same handle
    h.raises("usage", fuv.attach, c, uv, { onerror = print }) -- not with other options
    h.raises("usage", fuv.spawn, 42)
    h.raises("usage", fuv.spawn, { oneror = print }, function() end)
  end)

  it("attach(fetch, uv) attaches the default client; spawn uses it", function()
    local handle = fuv.attach(fetch, uv)
    assert.are.equal(require("fetchstream.client").default(), handle.client)
    local errs, got = {}, nil
    local co = spawn(errs, function(a, b)
      local datas = {}
      for ev in fetch.events(srv:url("/count?n=3")) do datas[#datas + 1] = ev.data end
      got = a .. b .. table.concat(datas)
    end, "x", "y")
    assert.are.equal("thread", type(co))
    assert.is_nil(got) -- spawn returns at once; fn starts at the loop's next turn
    local _, stopped = run(5)
    assert.is_false(stopped)
    assert.are.same({}, errs)
    assert.are.equal("xy123", got)
    assert.are.equal(handle, fuv.attach(fetch, uv))
  end)
end)

describe("fetchstream.uv: coroutines", function()
  it("read events, values, lines, chunks, ndjson, s:next() and fetch.open without blocking the loop", function()
    local errs, r = {}, {}
    local tick = ticker(10)
    spawn(errs, function()
      local t0 = socket.gettime()
      local datas = {}
      for ev in fetch.events(srv:url("/count?n=5&delay=40")) do datas[#datas + 1] = ev.data end
      r.events = table.concat(datas, ",")
      r.events_took = socket.gettime() - t0

      local values = {}
      for data, event, id in fetch.values(srv:url("/count?n=2&event=e")) do
        values[#values + 1] = data .. event .. id
      end
      r.values = table.concat(values, ",")

      local lines = {}
      for line in fetch.lines(srv:url("/count?n=2&delay=20")) do lines[#lines + 1] = line end
      r.lines = table.concat(lines, "|")

      local bytes = {}
      for chunk in fetch.chunks(srv:url("/sse?body=abcdef&chunk=2&delay=20")) do bytes[#bytes + 1] = chunk end
      r.chunks = table.concat(bytes)

      local objs = {}
      for obj in fetch.ndjson(srv:url("/sse?body=" .. h.enc('{"a":1}\n{"a":2}\n') .. "&chunk=8&delay=10")) do
        objs[#objs + 1] = obj.a
      end
      r.ndjson = table.concat(objs, ",")

      local s = assert(fetch.open(srv:url("/count?n=3&delay=30")))
      r.status = s.status
      local a, b = s:next(), s:next(2)
      r.next = a.data .. b.data
      s:close()

      local n = 0
      assert(fetch.each(srv:url("/count?n=4&delay=10"), nil, function() n = n + 1 end))
      r.each = n
      tick.stop()
    end)
    local took, stopped = run(10)
    assert.is_false(stopped)
    assert.are.same({}, errs)
    assert.are.equal("1,2,3,4,5", r.events)
    assert.is_true(r.events_took >= 0.15)
    assert.are.equal("1e1,2e2", r.values)
    assert.are.equal("id: 1|data: 1||id: 2|data: 2|", r.lines)
    assert.are.equal("abcdef", r.chunks)
    assert.are.equal("1,2", r.ndjson)
    assert.are.equal(200, r.status)
    assert.are.equal("12", r.next)
    assert.are.equal(4, r.each)
    assert.is_true(tick.ticks >= 0.8 * took / 0.010 - 2, ("%d ticks in %.3f s"):format(tick.ticks, took))
  end)

  it("read a chat answer with `for text in fetch.chat(...)`", function()
    local errs, texts, chat_obj = {}, {}, nil
    spawn(errs, function()
      local chat = fetch.chat(srv:url("/v1"), { model = "m", messages = { { role = "user", content = "hi" } },
                                                stream_options = { include_usage = true } })
      for text in chat do texts[#texts + 1] = text end
      chat_obj = chat
    end)
    local _, stopped = run(10)
    assert.is_false(stopped)
    assert.are.same({}, errs)
    assert.are.equal(ANSWER, table.concat(texts))
    assert.are.equal(#stub.CANNED_TOKENS, #texts)
    assert.are.equal("stop", chat_obj.finish_reason)
    assert.is_true(chat_obj.done)
  end)

  it("a chat retried after a 429 waits without blocking, then streams the answer", function()
    local errs, texts, chat_obj = {}, {}, nil
    local t = tag("retry")
    local tick = ticker(10)
    spawn(errs, function()
      local chat = fetch.chat(srv:url("/v1?status=429&fail=1&retry_after_ms=300&tag=" .. t),
                              { model = "m", messages = { { role = "user", content = "hi" } } })
      for text in chat do texts[#texts + 1] = text end
      chat_obj = chat
      tick.stop()
    end)
    local took, stopped = run(10)
    assert.is_false(stopped)
    assert.are.same({}, errs)
    assert.are.equal(ANSWER, table.concat(texts))
    assert.are.equal(1, chat_obj.retries)
    assert.are.equal(2, srv:log(t).requests)
    assert.is_true(took >= 0.3, ("%.3f s"):format(took))
    assert.is_true(tick.ticks >= 0.8 * took / 0.010 - 2, ("%d ticks in %.3f s"):format(tick.ticks, took))
  end)

  it("run side by side: 5 coroutines take the time of one", function()
    local errs, order, done = {}, {}, 0
    for i = 1, 5 do
      spawn(errs, function()
        for ev in fetch.events(srv:url("/count?n=5&delay=60")) do order[#order + 1] = i .. ":" .. ev.data end
        done = done + 1
      end)
    end
    local took, stopped = run(10)
    assert.is_false(stopped)
    assert.are.same({}, errs)
    assert.are.equal(5, done)
    assert.are.equal(25, #order)
    assert.is_true(took < 0.9, ("took %.3f s (one stream: 0.3 s; in turn: 1.5 s)"):format(took))
    -- interleaved: the first five events are from five different coroutines... or at least two
    local firsts = {}
    for k = 1, 5 do firsts[order[k]:match("^(%d+):")] = true end
    local distinct = 0
    for _ in pairs(firsts) do distinct = distinct + 1 end
    assert.is_true(distinct >= 2, table.concat(order, " "))
  end)

  it("s:next(timeout) gives nil at the deadline; the stream goes on", function()
    local errs, r = {}, {}
    local c = attached()
    spawn(errs, function()
      local s = assert(c:open(srv:url("/stall?hello=0")))
      local t0 = socket.gettime()
      local ev, err = s:next(0.25)
      r.took, r.ev, r.err, r.reason = socket.gettime() - t0, ev, err, s.reason
      s:close()
    end)
    local _, stopped = run(5)
    assert.is_false(stopped)
    assert.are.same({}, errs)
    assert.is_nil(r.ev)
    assert.is_nil(r.err)
    assert.is_nil(r.reason)
    assert.is_true(r.took >= 0.24 and r.took < 0.5, ("%.3f s"):format(r.took))
  end)

  it("a coroutine of one's own (not spawned) suspends too, on an attached client", function()
    local c = attached()
    local datas = {}
    local co = coroutine.wrap(function()
      for ev in c:events(srv:url("/count?n=3&delay=20")) do datas[#datas + 1] = ev.data end
    end)
    co() -- runs until its loop suspends, then returns here
    assert.are.same({}, datas)
    local _, stopped = run(5)
    assert.is_false(stopped)
    assert.are.same({ "1", "2", "3" }, datas)
  end)

  it("an error raised in fn goes to spawn's onerror, with the coroutine", function()
    local got = {}
    local co = fuv.spawn({ onerror = function(err, co) got[#got + 1] = { err, co } end }, function()
      for _ in fetch.events(srv:url("/status/500")) do end
    end)
    local _, stopped = run(5)
    assert.is_false(stopped)
    assert.are.equal(1, #got)
    assert.are.equal("http", got[1][1].kind)
    assert.are.equal(co, got[1][2])
  end)

  it("an error raised in fn with no onerror goes to the host: luv reports it (never silently)", function()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([[
      local fuv = require "fetchstream.uv"
      local fetch = require "fetchstream"
      fuv.spawn(function()
        for _ in fetch.events(arg[1]) do end
      end)
      require("luv").run()
      print("not reached")
    ]])
    f:close()
    finally(function() os.remove(script) end)
    local out = os.tmpname()
    local ok = h.execute(("%s %s %s %s >%s 2>&1"):format(h.child_env(), h.lua(), script,
      h.shell_quote(srv:url("/status/404")), out))
    local text = h.read(out)
    os.remove(out)
    assert.is_nil(ok)
    assert.is_truthy(text:find("fetchstream: http 404", 1, true), text)
    assert.is_truthy(text:find("stack traceback", 1, true), text)
    assert.is_nil(text:find("not reached", 1, true))
  end)

  it("c:close() while a coroutine waits: its loop ends, the stream aborted", function()
    local errs, r = {}, {}
    local c = fetch.client()
    local handle = fuv.attach(c, uv)
    local t = tag("close")
    spawn(errs, function()
      local s = c:_start("events", srv:url("/stall?tag=" .. t), nil, false, "events")
      local n = 0
      for _ in s:events() do n = n + 1 end
      r.n, r.reason = n, s.reason
    end)
    after(200, function() c:close() end)
    local _, stopped = run(5)
    assert.is_false(stopped)
    assert.are.same({}, errs)
    assert.are.equal(1, r.n)
    assert.are.equal("aborted", r.reason)
    assert.is_nil(c._loop)
    handle:detach()
    assert.is_true(srv:wait_closed(t, 1))
  end)

  it("fetch.each returning false closes the stream at once (both ABIs)", function()
    local errs, closed_in_time = {}, nil
    local t = tag("each")
    spawn(errs, function()
      assert(fetch.each(srv:url("/forever?interval=20&tag=" .. t), nil, function() return false end))
      closed_in_time = srv:wait_closed(t, 0.5)
    end)
    local _, stopped = run(5)
    assert.is_false(stopped)
    assert.are.same({}, errs)
    assert.is_true(closed_in_time)
  end)

  it("break closes the stream at once #lua54", function()
    local errs, closed_in_time = {}, nil
    local t = tag("break")
    spawn(errs, function()
      for _ in fetch.events(srv:url("/forever?interval=20&tag=" .. t)) do break end -- luacheck: ignore 512
      closed_in_time = srv:wait_closed(t, 0.5)
    end)
    local _, stopped = run(5)
    assert.is_false(stopped)
    assert.are.same({}, errs)
    assert.is_true(closed_in_time)
  end)
end)
