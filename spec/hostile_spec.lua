-- Spec for hostile servers (issue 7): what the transport does when a server
-- misbehaves. Compression bombs and corrupt compressed data, responses cut
-- inside their headers, malformed chunked framing, endless headers, redirect
-- loops, slowloris, silence after the headers, a reset keep-alive connection.
--
-- The misbehaving comes from the stub server's /hostile/ routes
-- (spec/server/hostile.lua, documented in spec/server/README.md); each stops
-- by itself, in bytes and in seconds.

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

local tag = h.tagger("hostile")
local raises = h.raises
local MiB = 1024 * 1024

local function url(path) return srv:url(path) end

-- The whole body of a URL, through fetch.chunks.
local function body_of(u, opts)
  local parts = {}
  for bytes in fetch.chunks(u, opts) do parts[#parts + 1] = bytes end
  return table.concat(parts)
end

-- A field of /proc/self/status, in bytes.
local function vm(field)
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^" .. field .. ":%s+(%d+) kB")
    if kb then return tonumber(kb) * 1024 end
  end
end

-- Under the ASan pass, freed memory waits in ASan's quarantine (256 MiB by
-- default): the process's RSS says nothing about our bound there.
local ASAN = (os.getenv("LD_PRELOAD") or ""):find("asan", 1, true) ~= nil

-- Read url's body slowly (1 ms of sleep per MiB), watching RSS. Returns the
-- bytes read, the X-Decoded-Size the server announced, and the largest RSS
-- growth seen (bytes).
local function slow_read(u)
  collectgarbage()
  collectgarbage()
  local base = vm("VmRSS")
  local peak, got, n = base, 0, 0
  local s = assert(fetch.open(u))
  local expected = tonumber(s.headers["x-decoded-size"])
  local ok, err = pcall(function()
    for bytes in s:chunks() do
      got = got + #bytes
      n = n + 1
      if n % 16 == 0 then
        socket.sleep(0.001)
        local rss = vm("VmRSS")
        if rss > peak then peak = rss end
      end
    end
  end)
  s:close()
  if not ok then error(err, 0) end
  return got, expected, peak - base
end

local FIXTURE = h.read("spec/server/fixtures/events.sse")

---------------------------------------------------------------------------

describe("compressed responses", function()
  for _, enc in ipairs({ "gzip", "deflate", "rawdeflate", "br", "zstd", "br,gzip" }) do
    it(("decode %s to the exact bytes, whole and in 7-byte pieces"):format(enc), function()
      assert.is_true(FIXTURE == body_of(url("/hostile/encoded?enc=" .. enc)))
      assert.is_true(FIXTURE == body_of(url("/hostile/encoded?chunk=7&enc=" .. enc)))
    end)
  end

  it("decode gzip members and zstd frames end to end; br data after its end is corrupt", function()
    assert.is_true(FIXTURE:rep(3) == body_of(url("/hostile/encoded?repeat=3&chunk=1000&enc=gzip")))
    assert.is_true(FIXTURE:rep(3) == body_of(url("/hostile/encoded?repeat=3&chunk=1000&enc=zstd")))
    local err = raises("network", body_of, url("/hostile/encoded?repeat=2&enc=br"))
    assert.matches("the response body's br data is corrupt (data after its end)", err.message, 1, true)
  end)

  it("events read from a br body are the events of the plain one", function()
    local n, last = 0, nil
    for ev in fetch.events(url("/hostile/encoded?enc=br&chunk=100")) do
      n = n + 1
      last = ev
    end
    assert.are.equal(400, n)
    assert.are.equal("400", last.id)
    assert.matches('^{"n":400,', last.data)
  end)

  it("accept_encoding = false hands over the body as sent", function()
    local gz = h.read("spec/server/fixtures/events.sse.gz")
    assert.is_true(gz == body_of(url("/hostile/encoded?enc=gzip"), { accept_encoding = false }))
  end)

  it("an unknown content-encoding is a network error BAD_CONTENT_ENCODING, as with curl's decoder", function()
    local err = raises("network", body_of, url("/hostile/encoded?enc=compress"))
    assert.are.equal("BAD_CONTENT_ENCODING", err.curl)
    assert.matches('content-encoding "compress"', err.message, 1, true)
  end)

  for _, enc in ipairs({ "gzip", "deflate", "br", "zstd" }) do
    it(("corrupt %s data is a network error that says so"):format(enc), function()
      local err = raises("network", body_of, url("/hostile/encoded?corrupt=1&enc=" .. enc))
      assert.are.equal("BAD_CONTENT_ENCODING", err.curl)
      assert.matches(("the response body's %s data is corrupt"):format(enc), err.message, 1, true)
    end)

    it(("%s data cut in the middle of a normal end is a network error (truncated)"):format(enc), function()
      local err = raises("network", body_of, url("/hostile/encoded?truncate=1&enc=" .. enc))
      assert.are.equal("BAD_CONTENT_ENCODING", err.curl)
      assert.matches(("the response body's %s data is truncated"):format(enc), err.message, 1, true)
    end)
  end

  for _, enc in ipairs({ "gzip", "br", "zstd" }) do
    it(("a %s bomb (512 MiB of zeros) streams to a slow consumer in bounded memory"):format(enc), function()
      local got, expected, grew = slow_read(url(("/hostile/bomb?enc=%s&bytes=%d"):format(enc, 512 * MiB)))
      assert.are.equal(expected, got)
      if not ASAN then
        assert.is_true(grew < 64 * MiB, ("RSS grew by %.1f MiB"):format(grew / MiB))
      end
    end)

    it(("a %s bomb corrupt after 128 MiB fails when the reader reaches it"):format(enc), function()
      local got = 0
      local err = raises("network", function()
        local s = assert(fetch.open(url(("/hostile/bomb?enc=%s&bytes=%d&corrupt_at=%d")
          :format(enc, 512 * MiB, 128 * MiB))))
        socket.sleep(0.2) -- the queue fills: the rest is decoded as it is read
        for bytes in s:chunks() do got = got + #bytes end
      end)
      assert.are.equal("BAD_CONTENT_ENCODING", err.curl)
      assert.matches(("the response body's %s data is corrupt"):format(enc), err.message, 1, true)
      assert.is_true(got >= 96 * MiB and got <= 160 * MiB, tostring(got))
    end)
  end
end)

describe("a response cut off inside its headers", function()
  for _, at in ipairs({ "header", "blank", "status" }) do
    it(("is a network error (cut %s)"):format(at), function()
      local s, err = fetch.open(url("/hostile/cut_headers?at=" .. at))
      assert.is_nil(s)
      assert.are.equal("network", err.kind, tostring(err))
    end)
  end

  it("says so, as curl's PARTIAL_FILE", function()
    local _, err = fetch.open(url("/hostile/cut_headers"))
    assert.are.equal("PARTIAL_FILE", err.curl)
    assert.matches("closed before the end of the response headers", err.message, 1, true)
  end)

  it("with reconnect, is a failure: the retries run out and the error remains", function()
    local t = tag("cut")
    local err = raises("network", function()
      for _ in fetch.events(url("/hostile/cut_headers?tag=" .. t),
        { reconnect = { retries = 2, delay = 0.01 } }) do end
    end)
    assert.are.equal("PARTIAL_FILE", err.curl)
    assert.are.equal(3, srv:log(t).requests)
  end)
end)

describe("broken framing and limits", function()
  for _, mode in ipairs({ "size", "crlf" }) do
    it(("malformed chunked encoding (%s) is a network error after the good chunk"):format(mode), function()
      local got = {}
      local err = raises("network", function()
        for ev in fetch.events(url("/hostile/bad_chunked?mode=" .. mode)) do got[#got + 1] = ev.data end
      end)
      assert.are.equal("RECV_ERROR", err.curl)
      assert.matches("chunked", err.message, 1, true)
      assert.are.equal("one", got[1]) -- curl checks the CRLF after a chunk's data has gone out
    end)
  end

  it("endless headers end at curl's limit, at once, with a clear error", function()
    local t0 = now()
    local s, err = fetch.open(url("/hostile/endless_headers?secs=20"))
    assert.is_nil(s)
    assert.are.equal("network", err.kind)
    assert.matches("Too large response headers", err.message, 1, true)
    assert.is_true(now() - t0 < 5)
  end)

  it("a 1 MiB header line is reported as over curl's limit, not as out of memory", function()
    local s, err = fetch.open(url("/hostile/endless_headers?line=1048576&max=1048576"))
    assert.is_nil(s)
    assert.are.equal("network", err.kind)
    assert.matches("a line of the response headers is longer than curl's limit", err.message, 1, true)
  end)

  it("a 1 MiB URL is reported as a request over curl's limit, not as out of memory", function()
    local s, err = fetch.open(url("/echo?x=" .. ("a"):rep(MiB)))
    assert.is_nil(s)
    assert.are.equal("network", err.kind)
    assert.matches("the request is larger than curl's limit of 1 MiB", err.message, 1, true)
  end)

  it("a redirect loop is a network error TOO_MANY_REDIRECTS after follow_redirects hops", function()
    local err = raises("network", body_of, url("/hostile/loop?tag=" .. tag("loop")))
    assert.are.equal("TOO_MANY_REDIRECTS", err.curl)
    assert.matches("Maximum (10) redirects followed", err.message, 1, true)
    local t = tag("loop3")
    err = raises("network", body_of, url("/hostile/loop?tag=" .. t), { follow_redirects = 3 })
    assert.are.equal("TOO_MANY_REDIRECTS", err.curl)
    assert.are.equal(4, srv:log(t).requests)
  end)

  it("err.message is the failure that ended the transfer, not one curl recovered from", function()
    local c = fetch.client()
    assert.are.equal("data: primed\n\n", table.concat((function()
      local t = {}
      for bytes in c:chunks(url("/hostile/rst?step=prime")) do t[#t + 1] = bytes end
      return t
    end)()))
    -- The kept connection is reset under the next request: curl retries on a
    -- new one (its error buffer keeps "Recv failure"), which then loops.
    local err = raises("network", function() for _ in c:chunks(url("/hostile/rst?step=hit")) do end end)
    c:close()
    assert.are.equal("TOO_MANY_REDIRECTS", err.curl)
    assert.is_nil(err.message:find("Recv failure", 1, true), err.message)
    assert.is_nil(err.message:lower():find("reset", 1, true), err.message)
  end)
end)

describe("slow and silent servers", function()
  it("idle_timeout fires on a server that sends its headers and then nothing", function()
    local t0 = now()
    local s = assert(fetch.open(url("/hostile/silence?secs=5"), { idle_timeout = 0.3 }))
    local ev, err = s:next()
    s:close()
    assert.is_nil(ev)
    assert.are.equal("timeout", err.kind, tostring(err))
    assert.are.equal("idle", err.timeout)
    assert.is_true(now() - t0 < 2, tostring(now() - t0))
  end)

  it("idle_timeout fires there for a callback stream too", function()
    local got
    fetch.stream(url("/hostile/silence?secs=5"), {
      idle_timeout = 0.3,
      onchunk = function() end,
      onerror = function(err) got = err end,
    })
    local t0 = now()
    assert.is_true(fetch.run(4))
    assert.are.equal("idle", got and got.timeout, tostring(got))
    assert.is_true(now() - t0 < 2)
  end)

  it("first_byte_timeout still runs to the first body byte, headers or not", function()
    local s = assert(fetch.open(url("/hostile/silence?secs=5"), { first_byte_timeout = 0.3 }))
    local _, err = s:next()
    s:close()
    assert.are.equal("first_byte", err.timeout)
  end)

  it("a trickling body keeps idle_timeout quiet; timeout ends it", function()
    local t0 = now()
    local got = 0
    local err = raises("timeout", function()
      for bytes in fetch.chunks(url("/hostile/slowloris?interval=50"), { idle_timeout = 0.5, timeout = 1.2 }) do
        got = got + #bytes
      end
    end)
    assert.are.equal("total", err.timeout)
    assert.is_true(got >= 5, tostring(got))
    assert.is_true(now() - t0 >= 1.1 and now() - t0 < 3, tostring(now() - t0))
  end)

  it("a body trickling slower than idle_timeout ends with an idle timeout", function()
    local err = raises("timeout", body_of, url("/hostile/slowloris?interval=400"), { idle_timeout = 0.2 })
    assert.are.equal("idle", err.timeout)
  end)

  it("trickling headers: idle_timeout waits for them, first_byte_timeout does not", function()
    local t0 = now()
    local body = body_of(url("/hostile/slowloris?phase=headers&interval=15"), { idle_timeout = 0.1 })
    assert.are.equal("data: done\n\n", body)
    assert.is_true(now() - t0 > 1, tostring(now() - t0))
    local err = raises("timeout", body_of, url("/hostile/slowloris?phase=headers&interval=15"),
      { first_byte_timeout = 0.3 })
    assert.are.equal("first_byte", err.timeout)
  end)
end)

describe("the command-line tool against hostile servers", function()
  setup(function() h.build_for_children() end)

  -- Exit status and seconds of `fetchstream args...`, run by h.lua().
  local function cli(args)
    local words = {}
    for i, a in ipairs(args) do words[i] = h.shell_quote(a) end
    local t0 = now()
    local _, _, code = h.execute(("%s %s bin/fetchstream %s </dev/null >/dev/null 2>&1")
      :format(h.child_env(), h.lua(), table.concat(words, " ")))
    return code, now() - t0
  end

  it("exits 4 (network) when the response is cut inside its headers", function()
    assert.are.equal(4, (cli({ url("/hostile/cut_headers") })))
  end)

  it("exits 5 (timeout) with --idle-timeout when the server goes silent after its headers", function()
    local code, secs = cli({ "--idle-timeout", "0.3", url("/hostile/silence?secs=5") })
    assert.are.equal(5, code)
    assert.is_true(secs < 3, tostring(secs))
  end)
end)
