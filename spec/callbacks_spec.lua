-- Spec for callback streams: fetch.stream / c:stream with onopen, onmessage,
-- on = {name = fn}, onretry, oncomment, onchunk, onclose, onerror, onabort;
-- fetch.run / c:run; abort from anywhere; many streams on one client; and
-- the rule that every stream ends exactly once, with exactly one of
-- onclose / onerror / onabort.
--
-- Written from DESIGN.md (the contract) against the stub server in
-- spec/server/.

local fetch = require "fetchstream"
local h = require "spec.helpers"
local stub = require "spec.server"
local socket = require "socket"

local now = socket.gettime

local srv
setup(function() srv = stub.start() end)
teardown(function() srv:stop() end)

---------------------------------------------------------------------------
-- helpers

local enc = h.enc

local function sse(body, extra) return srv:url(h.sse_path(body, extra)) end

local tag = h.tagger("cb")

local free_port = h.free_port

local raises = h.raises

-- Options that record everything a stream's callbacks see in `rec`:
-- rec.events (data strings), rec.endings (list of "close" / "error" /
-- "abort"), rec.err, rec.why, rec.opened. `extra` adds or overrides.
local function recorder(extra)
  local rec = { events = {}, endings = {}, chunks = {}, retries = {}, comments = {} }
  local opts = {
    onopen = function(s) rec.opened = (rec.opened or 0) + 1; rec.status = s.status end,
    onmessage = function(ev) rec.events[#rec.events + 1] = ev.data end,
    onclose = function() rec.endings[#rec.endings + 1] = "close" end,
    onerror = function(err) rec.endings[#rec.endings + 1] = "error"; rec.err = err end,
    onabort = function(why) rec.endings[#rec.endings + 1] = "abort"; rec.why = why end,
  }
  for k, v in pairs(extra or {}) do
    if v == false then opts[k] = nil else opts[k] = v end
  end
  return opts, rec
end

-- After a stream has ended: poke it every way that could end it again and
-- check that its one ending stays the only one.
local function ends_once(c, s, rec, ending, reason)
  assert.are.equal(reason, s.reason)
  assert.are.same({ ending }, rec.endings)
  assert.is_true(c:run(2))
  s:abort("again")
  s:close()
  s:close()
  assert.is_true(c:run(2))
  assert.are.same({ ending }, rec.endings)
  assert.are.equal(reason, s.reason)
end

-- A fresh client for a test, closed afterwards whatever happens.
local function with_client(fn)
  local c = fetch.client()
  local ok, err = pcall(fn, c)
  c:close()
  if not ok then error(err, 0) end
end

---------------------------------------------------------------------------

describe("callback streams", function()
  it("onopen, onmessage and onclose, in order, driven by fetch.run", function()
    local log, opened_with = {}, nil
    local s = fetch.stream(srv:url("/count?n=3"), {
      onopen = function(res)
        opened_with = res
        log[#log + 1] = "open " .. res.status .. " " .. res.headers["content-type"]
      end,
      onmessage = function(ev) log[#log + 1] = ("msg %s %s %s"):format(ev.event, ev.id, ev.data) end,
      onclose = function() log[#log + 1] = "close" end,
      onerror = function(err) log[#log + 1] = "error " .. tostring(err) end,
      onabort = function() log[#log + 1] = "abort" end,
    })
    assert.is_nil(s.reason)
    assert.is_true(fetch.run(5))
    assert.are.same({
      "open 200 text/event-stream", "msg message 1 1", "msg message 2 2", "msg message 3 3", "close",
    }, log)
    assert.are.equal("done", s.reason)
    assert.are.equal(s, opened_with) -- onopen gets the stream itself
  end)

  it("on = { name = fn } takes events of that type; onmessage the rest", function()
    with_client(function(c)
      local updates, others = {}, {}
      c:stream(sse("event: update\ndata: a\n\ndata: b\n\nevent: other\ndata: c\n\nevent: update\ndata: d\n\n"), {
        on = { update = function(ev)
          assert.are.equal("update", ev.event)
          updates[#updates + 1] = ev.data
        end },
        onmessage = function(ev) others[#others + 1] = ev.event .. ":" .. ev.data end,
      })
      assert.is_true(c:run(5))
      assert.are.same({ "a", "d" }, updates)
      assert.are.same({ "message:b", "other:c" }, others)
    end)
  end)

  it("on alone, without onmessage, is enough to get events", function()
    with_client(function(c)
      local got = {}
      c:stream(srv:url("/count?n=2&event=tick"), { on = { tick = function(ev) got[#got + 1] = ev.data end } })
      assert.is_true(c:run(5))
      assert.are.same({ "1", "2" }, got)
    end)
  end)

  it("onchunk gets the raw body bytes", function()
    with_client(function(c)
      local body = "data: a\n\n: c\n\ndata: b\n\n"
      local chunks, events = {}, {}
      c:stream(sse(body, { chunk = 5 }), {
        onchunk = function(bytes) chunks[#chunks + 1] = bytes end,
        onmessage = function(ev) events[#events + 1] = ev.data end,
      })
      assert.is_true(c:run(5))
      assert.are.equal(body, table.concat(chunks))
      assert.are.same({ "a", "b" }, events)
    end)
  end)

  it("onchunk alone: the body is delivered, no content-type check", function()
    with_client(function(c)
      local chunks = {}
      local opts, rec = recorder { onmessage = false }
      opts.onchunk = function(b) chunks[#chunks + 1] = b end
      local s = c:stream(sse("plain text", { ct = "text/plain" }), opts)
      local done = c:run(1)
      s:abort()
      assert.is_true(done, "run() timed out")
      assert.are.equal("plain text", table.concat(chunks))
      assert.are.same({ "close" }, rec.endings)
    end)
  end)

  it("a stream with only ending callbacks still ends", function()
    with_client(function(c)
      local opts, rec = recorder { onmessage = false, onopen = false }
      local s = c:stream(srv:url("/count?n=2"), opts)
      local done = c:run(1)
      s:abort()
      assert.is_true(done, "run() timed out")
      assert.are.same({ "close" }, rec.endings)
    end)
  end)

  it("an event handler makes the content type checked: protocol error", function()
    with_client(function(c)
      local opts, rec = recorder()
      c:stream(sse("data: x\n\n", { ct = "text/html" }), opts)
      assert.is_true(c:run(5))
      assert.are.same({}, rec.events)
      assert.are.same({ "error" }, rec.endings)
      assert.are.equal("protocol", rec.err.kind)
      assert.are.equal(200, rec.err.status)
      assert.is_nil(rec.opened) -- the response was refused: no onopen
    end)
  end)

  it("an http error reaches onerror with status and json; no onopen, no onmessage", function()
    with_client(function(c)
      local opts, rec = recorder()
      local s = c:stream(srv:url("/status/429?body=" .. enc('{"error":{"message":"slow down"}}')), opts)
      assert.is_true(c:run(5))
      assert.are.same({ "error" }, rec.endings)
      assert.are.equal("http", rec.err.kind)
      assert.are.equal(429, rec.err.status)
      assert.are.equal("slow down", rec.err.message)
      assert.are.equal("slow down", rec.err.json.error.message)
      assert.is_nil(rec.opened)
      assert.are.equal("http", s.reason)
      assert.are.equal(rec.err, s.error)
    end)
  end)

  it("the truncated final event of /drop is not dispatched; onerror gets PARTIAL_FILE", function()
    with_client(function(c)
      local opts, rec = recorder()
      c:stream(srv:url("/drop?delay=50"), opts)
      assert.is_true(c:run(5))
      assert.are.same({ "one" }, rec.events)
      assert.are.same({ "error" }, rec.endings)
      assert.are.equal("network", rec.err.kind)
      assert.are.equal("PARTIAL_FILE", rec.err.curl)
    end)
  end)

  it("connection refused reaches onerror as COULDNT_CONNECT", function()
    with_client(function(c)
      local opts, rec = recorder()
      c:stream("http://127.0.0.1:" .. free_port() .. "/", opts)
      assert.is_true(c:run(5))
      assert.are.same({ "error" }, rec.endings)
      assert.are.equal("COULDNT_CONNECT", rec.err.curl)
    end)
  end)

  it("timeouts reach onerror", function()
    with_client(function(c)
      local o1, idle = recorder { idle_timeout = 0.2 }
      local o2, total = recorder { timeout = 0.3 }
      local o3, first = recorder { first_byte_timeout = 0.2 }
      c:stream(srv:url("/stall"), o1)
      c:stream(srv:url("/forever?interval=30"), o2)
      c:stream(srv:url("/stall?hello=0"), o3)
      local t0 = now()
      assert.is_true(c:run(5))
      assert.is_true(now() - t0 < 2)
      assert.are.equal("idle", idle.err and idle.err.timeout)
      assert.are.equal("total", total.err and total.err.timeout)
      assert.is_true(#total.events >= 3)
      assert.are.equal("first_byte", first.err and first.err.timeout)
      for _, r in ipairs { idle, total, first } do assert.are.same({ "error" }, r.endings) end
    end)
  end)

  it("fetch.run(timeout) returns false when streams are still running", function()
    with_client(function(c)
      local s = c:stream(srv:url("/forever?interval=20"), { onmessage = function() end })
      local t0 = now()
      assert.is_false(c:run(0.2))
      local took = now() - t0
      assert.is_true(took >= 0.15 and took < 1, "took " .. took)
      assert.is_nil(s.reason)
      s:abort()
      assert.is_true(c:run(1))
    end)
  end)

  it("run() with nothing to do returns true at once", function()
    with_client(function(c)
      local t0 = now()
      assert.is_true(c:run())
      assert.is_true(c:run(1))
      assert.is_true(now() - t0 < 0.2)
    end)
  end)

  it("pull methods on a callback stream are usage errors", function()
    with_client(function(c)
      local s = c:stream(srv:url("/count?n=1"), { onmessage = function() end })
      raises("usage", s.next, s)
      raises("usage", s.events, s)
      raises("usage", s.chunks, s)
      raises("usage", s.lines, s)
      assert.is_true(c:run(5))
    end)
  end)

  it("callback options of the wrong type are usage errors", function()
    raises("usage", fetch.stream, srv:url("/"), { onmessage = 42 })
    raises("usage", fetch.stream, srv:url("/"), { on = { x = "not a function" } })
    raises("usage", fetch.stream, srv:url("/"), { on = function() end })
    raises("usage", fetch.stream, srv:url("/"), { onclose = true })
  end)
end)

describe("onretry and oncomment", function()
  local body = "retry: 1500\n: hello there\ndata: x\n\n:\nretry: bad\nretry: 250\n\n"

  it("with fetch.stream", function()
    with_client(function(c)
      local retries, comments, events = {}, {}, {}
      c:stream(sse(body), {
        onretry = function(ms) retries[#retries + 1] = ms end,
        oncomment = function(text) comments[#comments + 1] = text end,
        onmessage = function(ev) events[#events + 1] = ev.data end,
      })
      assert.is_true(c:run(5))
      assert.are.same({ 1500, 250 }, retries)
      if math.type then assert.are.equal("integer", math.type(retries[1])) end -- 5.4: no 1500.0
      assert.are.equal(2, #comments)
      assert.matches("hello there", comments[1])
      assert.are.same({ "x" }, events)
    end)
  end)

  it("with fetch.events and with fetch.open", function()
    local retries, comments, n = {}, {}, 0
    for _ in fetch.events(sse(body), {
      onretry = function(ms) retries[#retries + 1] = ms end,
      oncomment = function(text) comments[#comments + 1] = text end,
    }) do n = n + 1 end
    assert.are.equal(1, n)
    assert.are.same({ 1500, 250 }, retries)
    assert.are.equal(2, #comments)
    assert.matches("hello there", comments[1])

    local r2 = {}
    local s = assert(fetch.open(srv:url("/count?n=2&retry=700"), {
      onretry = function(ms) r2[#r2 + 1] = ms end,
    }))
    finally(function() s:close() end)
    for _ in s:events() do end
    assert.are.same({ 700 }, r2)
  end)
end)

describe("abort", function()
  it("inside onmessage: no further events, even from the same chunk; onabort once", function()
    with_client(function(c)
      local s
      local seen = {}
      local opts, rec = recorder {
        onmessage = function(ev)
          seen[#seen + 1] = ev.data
          if ev.data == "2" then s:abort("enough") end
        end,
      }
      -- all five events arrive in one chunk
      s = c:stream(sse("data: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\ndata: 5\n\n"), opts)
      assert.is_true(c:run(5))
      assert.are.same({ "1", "2" }, seen)
      assert.are.same({ "abort" }, rec.endings)
      assert.are.equal("enough", rec.why)
      assert.are.equal("aborted", s.reason)
      assert.is_nil(s.error)
      ends_once(c, s, rec, "abort", "aborted")
    end)
  end)

  it("inside onmessage on a live stream: the server sees the close", function()
    with_client(function(c)
      local t = tag("abort-live")
      local s, n = nil, 0
      local opts, rec = recorder {
        onmessage = function()
          n = n + 1
          if n == 3 then s:abort() end
        end,
      }
      s = c:stream(srv:url("/forever?interval=10&tag=" .. t), opts)
      assert.is_true(c:run(5))
      assert.are.equal(3, n)
      assert.are.same({ "abort" }, rec.endings)
      assert.is_nil(rec.why)
      assert.is_true(srv:wait_closed(t, 2), "the server did not see the connection close")
    end)
  end)

  it("from onopen: no events at all", function()
    with_client(function(c)
      local opts, rec = recorder { onopen = function(s) s:abort("no thanks") end }
      c:stream(srv:url("/count?n=3"), opts)
      assert.is_true(c:run(5))
      assert.are.same({}, rec.events)
      assert.are.same({ "abort" }, rec.endings)
      assert.are.equal("no thanks", rec.why)
    end)
  end)

  it("before run(): onabort fires synchronously, once; nothing is delivered", function()
    with_client(function(c)
      local opts, rec = recorder()
      local s = c:stream(srv:url("/count?n=3"), opts)
      s:abort("early")
      assert.are.same({ "abort" }, rec.endings) -- already, before run()
      assert.are.equal("early", rec.why)
      assert.are.equal("aborted", s.reason)
      local t0 = now()
      assert.is_true(c:run(5))
      assert.is_true(now() - t0 < 0.5)
      assert.are.same({}, rec.events)
      assert.is_nil(rec.opened)
      ends_once(c, s, rec, "abort", "aborted")
    end)
  end)

  it("one stream aborting another", function()
    with_client(function(c)
      local o2, r2 = recorder()
      local victim = c:stream(srv:url("/forever?interval=20"), o2)
      local o1, r1 = recorder { onmessage = function() victim:abort("killed") end }
      c:stream(srv:url("/count?n=2&delay=100"), o1)
      assert.is_true(c:run(5))
      assert.are.same({ "close" }, r1.endings)
      assert.are.same({ "abort" }, r2.endings)
      assert.are.equal("killed", r2.why)
    end)
  end)
end)

describe("a callback that raises", function()
  it("ends only its stream with a callback error; the other completes; run() does not raise", function()
    with_client(function(c)
      local cause = { "my cause" }
      local bad_events, n = {}, 0
      local o1, r1 = recorder {
        onmessage = function(ev)
          n = n + 1
          bad_events[#bad_events + 1] = ev.data
          if n == 2 then error(cause) end
        end,
      }
      local o2, r2 = recorder()
      local bad = c:stream(srv:url("/count?n=5&delay=20"), o1)
      local good = c:stream(srv:url("/count?n=5&delay=40"), o2)
      assert.is_true(c:run(5)) -- no raise
      assert.are.same({ "1", "2" }, bad_events)
      assert.are.same({ "error" }, r1.endings)
      assert.are.equal("callback", r1.err.kind)
      assert.are.equal(cause, r1.err.cause)
      assert.are.equal("callback", bad.reason)
      assert.are.same({ "1", "2", "3", "4", "5" }, r2.events)
      assert.are.same({ "close" }, r2.endings)
      assert.are.equal("done", good.reason)
      ends_once(c, bad, r1, "error", "callback")
    end)
  end)

  it("a string error keeps its text in err.cause and the message", function()
    with_client(function(c)
      local o, r = recorder { onmessage = function() error("kaboom", 0) end }
      c:stream(srv:url("/count?n=3"), o)
      assert.is_true(c:run(5))
      assert.are.equal("kaboom", r.err.cause)
      assert.matches("kaboom", r.err.message)
      assert.are.equal("fetchstream: callback from GET " .. srv:url("/count?n=3") .. ": onmessage raised: kaboom",
        tostring(r.err))
    end)
  end)

  it("raising in onopen rejects the response", function()
    with_client(function(c)
      local o, r = recorder { onopen = function() error("rejected", 0) end }
      c:stream(srv:url("/count?n=3"), o)
      assert.is_true(c:run(5))
      assert.are.same({}, r.events)
      assert.are.same({ "error" }, r.endings)
      assert.are.equal("callback", r.err.kind)
    end)
  end)

  local function raising_callbacks(list)
    with_client(function(c)
      local recs = {}
      for i, extra in ipairs(list) do
        local o, r = recorder(extra)
        recs[i] = r
        c:stream(sse(": c\nretry: 10\ndata: 1\n\ndata: 2\n\n"), o)
      end
      local o, good = recorder()
      c:stream(srv:url("/count?n=3"), o)
      local ok, err = pcall(c.run, c, 5)
      assert.is_true(ok, "run() raised: " .. tostring(err))
      assert.is_true(err)
      for i, r in ipairs(recs) do
        assert.are.same({ "error" }, r.endings, "stream " .. i)
        assert.are.equal("callback", r.err.kind, "stream " .. i)
        assert.are.same({}, r.events, "stream " .. i)
      end
      assert.are.same({ "1", "2", "3" }, good.events)
    end)
  end

  it("raising in on[name] and onchunk", function()
    raising_callbacks {
      { on = { message = function() error("on") end } },
      { onchunk = function() error("chunk") end },
    }
  end)

  it("raising in onretry and oncomment", function()
    raising_callbacks {
      { onretry = function() error("retry") end },
      { oncomment = function() error("comment") end },
    }
  end)

  it("errors raised by onclose are raised by run(), after the stream ended", function()
    with_client(function(c)
      local sentinel = { "from onclose" }
      local s = c:stream(srv:url("/count?n=1"), {
        onmessage = function() end,
        onclose = function() error(sentinel) end,
      })
      local o2, r2 = recorder()
      local other = c:stream(srv:url("/count?n=4&delay=100"), o2)
      local ok, err = pcall(c.run, c, 5)
      assert.is_false(ok)
      assert.are.equal(sentinel, err)
      assert.are.equal("done", s.reason)
      -- the other stream carries on with the next run()
      assert.is_nil(other.reason)
      assert.is_true(c:run(5))
      assert.are.same({ "1", "2", "3", "4" }, r2.events)
      assert.are.same({ "close" }, r2.endings)
    end)
  end)

  it("errors raised by onerror and onabort are raised by run()", function()
    with_client(function(c)
      local e1, e2 = { "onerror" }, { "onabort" }
      c:stream(srv:url("/status/500"), { onmessage = function() end, onerror = function() error(e1) end })
      local ok, err = pcall(c.run, c, 5)
      assert.is_false(ok)
      assert.are.equal(e1, err)

      c:stream(srv:url("/count?n=3"), {
        onopen = function(s) s:abort() end,
        onabort = function() error(e2) end,
      })
      ok, err = pcall(c.run, c, 5)
      assert.is_false(ok)
      assert.are.equal(e2, err)
      assert.is_true(c:run(1))
    end)
  end)

  it("an error from onabort, when abort() is called from plain code, is raised by abort()", function()
    with_client(function(c)
      local e = { "onabort" }
      local s = c:stream(srv:url("/count?n=3"), { onmessage = function() end, onabort = function() error(e) end })
      local ok, err = pcall(s.abort, s)
      assert.is_false(ok)
      assert.are.equal(e, err)
      assert.are.equal("aborted", s.reason)
      assert.is_true(c:run(1))
    end)
  end)
end)

describe("run() inside a callback", function()
  it("is a usage error (and the stream carries on)", function()
    with_client(function(c)
      local errs, seen = {}, {}
      local o, r = recorder {
        onmessage = function(ev)
          local ok, err = pcall(c.run, c)
          errs[#errs + 1] = (not ok) and err or "no error"
          seen[#seen + 1] = ev.data
        end,
      }
      c:stream(srv:url("/count?n=2"), o)
      assert.is_true(c:run(5))
      assert.are.equal(2, #errs)
      for _, err in ipairs(errs) do
        assert.is_true(fetch.is_error(err), tostring(err))
        assert.are.equal("usage", err.kind)
      end
      assert.are.same({ "1", "2" }, seen)
      assert.are.same({ "close" }, r.endings)
    end)
  end)

  it("fetch.run() inside a default-client callback, and in onclose, too", function()
    local errs = {}
    fetch.stream(srv:url("/count?n=1"), {
      onmessage = function()
        local ok, err = pcall(fetch.run)
        errs[#errs + 1] = ok and "no error" or err.kind
      end,
      onclose = function()
        local ok, err = pcall(fetch.run, 1)
        errs[#errs + 1] = ok and "no error" or err.kind
      end,
    })
    assert.is_true(fetch.run(5))
    assert.are.same({ "usage", "usage" }, errs)
  end)

  it("waiting pull calls inside a callback are usage errors", function()
    with_client(function(c)
      local kinds = {}
      local pull = assert(c:open(srv:url("/count?n=1")))
      c:stream(srv:url("/count?n=1"), {
        onmessage = function()
          local ok, err = pcall(pull.next, pull)
          kinds[#kinds + 1] = ok and "no error" or err.kind
          ok, err = pcall(c.open, c, srv:url("/count?n=1"))
          kinds[#kinds + 1] = ok and "no error" or err.kind
        end,
      })
      assert.is_true(c:run(5))
      assert.are.same({ "usage", "usage" }, kinds)
      pull:close()
    end)
  end)
end)

describe("streams and the client loop", function()
  it("a stream started from inside a callback runs in the same run()", function()
    with_client(function(c)
      local o2, r2 = recorder()
      local second
      local o1, r1 = recorder {
        onmessage = function(ev)
          if ev.data == "1" then second = c:stream(srv:url("/count?n=3&delay=20"), o2) end
        end,
      }
      c:stream(srv:url("/count?n=2&delay=20"), o1)
      assert.is_true(c:run(5))
      assert.are.same({ "close" }, r1.endings)
      assert.is_not_nil(second)
      assert.are.same({ "1", "2", "3" }, r2.events)
      assert.are.same({ "close" }, r2.endings)
      assert.are.equal("done", second.reason)
    end)
  end)

  it("a stream started from onclose runs too", function()
    with_client(function(c)
      local o2, r2 = recorder()
      c:stream(srv:url("/count?n=1"), {
        onmessage = function() end,
        onclose = function() c:stream(srv:url("/count?n=2"), o2) end,
      })
      assert.is_true(c:run(5))
      assert.are.same({ "1", "2" }, r2.events)
      assert.are.same({ "close" }, r2.endings)
    end)
  end)

  it("iterating a pull stream also advances the callback streams of its client", function()
    with_client(function(c)
      local o, r = recorder()
      c:stream(srv:url("/count?n=3&delay=20"), o)
      local n = 0
      for _ in c:events(srv:url("/count?n=6&delay=60")) do n = n + 1 end
      assert.are.equal(6, n)
      -- no run(): the pull loop moved the callback stream to its end
      assert.are.same({ "1", "2", "3" }, r.events)
      assert.are.same({ "close" }, r.endings)
    end)
  end)

  it("100 concurrent streams on one client each get all their events", function()
    local N, K = 100, 10
    local recs, streams = {}, {}
    local t0 = now()
    for i = 1, N do
      local got, endings = {}, {}
      recs[i] = { got = got, endings = endings }
      streams[i] = fetch.stream(srv:url(("/count?n=%d&start=%d&delay=10"):format(K, i * 100)), {
        onmessage = function(ev) got[#got + 1] = tonumber(ev.id) end,
        onclose = function() endings[#endings + 1] = "close" end,
        onerror = function(err) endings[#endings + 1] = tostring(err) end,
        onabort = function() endings[#endings + 1] = "abort" end,
      })
    end
    assert.is_true(fetch.run(15))
    local elapsed = now() - t0
    print(("\n    100 concurrent streams x %d events: %.3f s"):format(K, elapsed))
    -- one after the other they would take at least N * (K - 1) * 10 ms = 9 s
    assert.is_true(elapsed < 4.5, ("not concurrent: %.3f s"):format(elapsed))
    for i = 1, N do
      local want = {}
      for k = 0, K - 1 do want[#want + 1] = i * 100 + k end
      assert.are.same(want, recs[i].got, "stream " .. i)
      assert.are.same({ "close" }, recs[i].endings, "stream " .. i)
      assert.are.equal("done", streams[i].reason)
    end
  end)
end)

describe("every stream ends exactly once", function()
  local function scenario(name, url, extra, ending, reason, kind, setup_fn)
    it(name, function()
      with_client(function(c)
        local opts, rec = recorder(extra)
        local s = c:stream(url(), opts)
        if setup_fn then setup_fn(s, c) end
        assert.is_true(c:run(5))
        ends_once(c, s, rec, ending, reason)
        if kind then assert.are.equal(kind, rec.err.kind); assert.are.equal(s.error, rec.err) end
      end)
    end)
  end

  scenario("done", function() return srv:url("/count?n=2") end, nil, "close", "done")
  scenario("done: 204", function() return srv:url("/status/204") end, nil, "close", "done")
  scenario("http error", function() return srv:url("/status/404") end, nil, "error", "http", "http")
  scenario("network error", function() return "http://127.0.0.1:" .. free_port() .. "/" end,
    nil, "error", "network", "network")
  scenario("dropped mid-body", function() return srv:url("/drop") end, nil, "error", "network", "network")
  scenario("timeout", function() return srv:url("/stall") end, { idle_timeout = 0.2 }, "error", "timeout", "timeout")
  scenario("protocol error", function() return sse("data: x\n\n", { ct = "text/plain" }) end,
    nil, "error", "protocol", "protocol")
  scenario("callback error", function() return srv:url("/count?n=2") end,
    { onmessage = function() error("x") end }, "error", "callback", "callback")
  it("abort inside a callback", function()
    with_client(function(c)
      local s
      local opts, rec = recorder { onmessage = function() s:abort() end }
      s = c:stream(srv:url("/forever?interval=10"), opts)
      assert.is_true(c:run(5))
      ends_once(c, s, rec, "abort", "aborted")
    end)
  end)
  scenario("abort before run()", function() return srv:url("/count?n=2") end,
    nil, "abort", "aborted", nil, function(s) s:abort() end)
  scenario("close before run()", function() return srv:url("/count?n=2") end,
    nil, "abort", "aborted", nil, function(s) s:close() end)
  scenario("close inside a callback", function() return srv:url("/forever?interval=10") end,
    { onopen = function(s) s:close() end }, "abort", "aborted")

  it("abort after the stream ended keeps its reason and fires nothing", function()
    with_client(function(c)
      local opts, rec = recorder()
      local s = c:stream(srv:url("/count?n=1"), opts)
      assert.is_true(c:run(5))
      s:abort("late")
      assert.are.equal("done", s.reason)
      assert.are.same({ "close" }, rec.endings)
      assert.is_nil(rec.why)
    end)
  end)

  it("c:close() aborts every stream on the client, once each", function()
    local c = fetch.client()
    local t1, t2 = tag("cclose"), tag("cclose")
    local o1, r1 = recorder()
    local o2, r2 = recorder()
    local s1 = c:stream(srv:url("/forever?interval=20&tag=" .. t1), o1)
    local s2 = c:stream(srv:url("/forever?interval=20&tag=" .. t2), o2)
    assert.is_false(c:run(0.2))
    assert.is_true(#r1.events > 0 and #r2.events > 0)
    c:close()
    assert.are.same({ "abort" }, r1.endings)
    assert.are.same({ "abort" }, r2.endings)
    assert.are.equal("aborted", s1.reason)
    assert.are.equal("aborted", s2.reason)
    assert.is_true(srv:wait_closed(t1, 2))
    assert.is_true(srv:wait_closed(t2, 2))
    c:close() -- idempotent
    s1:close()
    assert.are.same({ "abort" }, r1.endings)
    raises("usage", c.run, c)
    raises("usage", c.stream, c, srv:url("/count"), {})
    raises("usage", c.open, c, srv:url("/count"))
    raises("usage", c.events, c, srv:url("/count"))
  end)
end)
