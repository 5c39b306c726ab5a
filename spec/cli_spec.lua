-- Spec for the command-line tool, bin/fetchstream: its output formats, the
-- request its options make (seen through the stub server's /echo), its exit
-- codes and messages, and how it ends when stdout's reader goes away.
--
-- The tool runs as a subprocess under the interpreter of this pass (lua5.4,
-- or luajit in the LuaJIT pass: h.lua()) with the module from its build
-- directory, build/ or build-luajit/ (never under the ASan preload of `make
-- memcheck`: the shell that runs it is replaced at once by `env -u LD_PRELOAD`).

local stub = require "spec.server"
local h = require "spec.helpers"
local cjson = require "cjson"
local socket = require "socket"

local now = socket.gettime

local srv
setup(function()
  h.build_for_children()
  srv = stub.start()
end)
teardown(function() srv:stop() end)

---------------------------------------------------------------------------
-- helpers

local q = h.shell_quote

local enc = h.enc

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local tmpfiles = {}
local function tmp()
  local name = os.tmpname()
  tmpfiles[#tmpfiles + 1] = name
  return name
end
teardown(function() for _, f in ipairs(tmpfiles) do os.remove(f) end end)

local ENV = h.child_env() .. " "

-- Run `fetchstream args...`. opts.stdin: bytes for its stdin; opts.pipe: a
-- command its stdout is piped into; opts.sigpipe: "default" or "ignore", how
-- the tool starts with SIGPIPE (LuaSocket ignores it in this process, and
-- children inherit that); opts.stdout: a file to redirect stdout to; opts.prefix: replaces
-- the environment and interpreter part of the command.
-- Returns { code =, out =, err =, secs = }.
local function cli(args, opts)
  opts = opts or {}
  local errf, statusf = tmp(), tmp()
  local words = {}
  for i, a in ipairs(args) do words[i] = q(a) end
  local env = ENV
  if opts.sigpipe == "default" then env = "env --default-signal=PIPE " .. env end
  local cmd = (opts.prefix or env .. h.lua() .. " bin/fetchstream") .. " " .. table.concat(words, " ")
  if opts.stdin then
    local inf = tmp()
    write(inf, opts.stdin)
    cmd = cmd .. " <" .. q(inf)
  else
    cmd = cmd .. " </dev/null"
  end
  cmd = cmd .. " 2>" .. q(errf)
  if opts.stdout then cmd = cmd .. " >" .. q(opts.stdout) end
  if opts.sigpipe == "ignore" then cmd = "trap '' PIPE; " .. cmd end
  cmd = "(" .. cmd .. "; echo $? >" .. q(statusf) .. ")"
  if opts.pipe then cmd = cmd .. " | " .. opts.pipe end
  local t0 = now()
  local p = assert(io.popen("exec env -u LD_PRELOAD sh -c " .. q(cmd), "r"))
  local out = p:read("a")
  p:close()
  return {
    code = tonumber(read(statusf)),
    out = out,
    err = read(errf),
    secs = now() - t0,
  }
end

local function url(path) return srv:url(path) end

-- A URL of /sse that sends `body`, with extra query parameters.
local function sse(body, extra) return url(h.sse_path(body, extra)) end

local tag = h.tagger("cli")

-- A port on which nothing listens.
local free_port = h.free_port

local function lines(s)
  local out = {}
  for line in s:gmatch("([^\n]*)\n") do out[#out + 1] = line end
  return out
end

-- What /echo saw of the request the CLI made with `args` (the URL is added).
local function echo(args, opts)
  local a = { "--jsonl" }
  for _, v in ipairs(args) do a[#a + 1] = v end
  a[#a + 1] = url("/echo")
  local r = cli(a, opts)
  assert.are.equal(0, r.code, r.err)
  assert.are.equal("", r.err)
  local ls = lines(r.out)
  assert.are.equal(1, #ls, r.out)
  return cjson.decode(cjson.decode(ls[1]).data)
end

-- The run failed with `code`, nothing on stdout and one line on stderr that
-- starts with `prefix` (plain text).
local function fails(r, code, prefix)
  assert.are.equal(code, r.code, r.err)
  assert.are.equal("", r.out)
  assert.are.equal(1, #lines(r.err), r.err)
  assert.are.equal(prefix, r.err:sub(1, #prefix), r.err)
  assert.are.equal("\n", r.err:sub(-1))
end

---------------------------------------------------------------------------

describe("fetchstream (CLI) output", function()
  it("prints readable events: an id: header line, then the data", function()
    local r = cli({ url("/count?n=3") })
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("", r.err)
    assert.are.equal("id: 1\n1\nid: 2\n2\nid: 3\n3\n", r.out)
  end)

  it("shows event: and id: together, and no header line for a plain message", function()
    local r = cli({ sse("event: update\nid: 7\ndata: a\ndata: b\n\ndata: plain\n\nevent: x\ndata:\n\n") })
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("event: update  id: 7\na\nb\nid: 7\nplain\nevent: x  id: 7\n\n", r.out)
    r = cli({ sse("data: hello\n\n: comment\nevent: message\ndata: world\n\n") })
    assert.are.equal("hello\nworld\n", r.out)
  end)

  it("--jsonl prints one object per event that parses back with cjson", function()
    local r = cli({ "--jsonl", url("/count?n=3&event=tick") })
    assert.are.equal(0, r.code, r.err)
    local ls = lines(r.out)
    assert.are.equal(3, #ls)
    for i, line in ipairs(ls) do
      assert.are.same({ event = "tick", data = tostring(i), id = tostring(i) }, cjson.decode(line))
      assert.matches('^{"event":"tick","data":"%d","id":"%d"}$', line) -- fixed key order
    end
  end)

  it("--jsonl keeps data with newlines, quotes and UTF-8, and an empty id", function()
    local data = 'line "one"\n\tzwei — drei'
    local body = "data: line \"one\"\ndata: \tzwei — drei\n\n"
    local r = cli({ "--jsonl", sse(body) })
    assert.are.equal(0, r.code, r.err)
    local ls = lines(r.out)
    assert.are.equal(1, #ls, r.out)
    assert.are.same({ event = "message", data = data, id = "" }, cjson.decode(ls[1]))
  end)

  it("--raw prints exactly the body bytes, chunk by chunk", function()
    local body = "retry: 10\r\n\r\nid: 1\rdata: x\n\n: c\ndata: no end"
    local r = cli({ "--raw", sse(body, { chunk = 7 }) })
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("", r.err)
    assert.are.equal(body, r.out)
  end)

  it("--raw takes any content type", function()
    local r = cli({ "--raw", url("/status/200?body=" .. enc('{"ok":true}')) })
    assert.are.equal(0, r.code, r.err)
    assert.are.equal('{"ok":true}', r.out)
  end)

  it("--no-check reads events from a body that is not text/event-stream", function()
    local u = sse("data: x\n\n", { ct = "text/plain" })
    fails(cli({ u }), 6,
      'fetchstream: protocol from GET ' .. u .. ': expected content-type text/event-stream, got "text/plain"')
    local r = cli({ "--no-check", u })
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("x\n", r.out)
  end)

  it("-v prints the status, headers and retry: to stderr, not stdout", function()
    local r = cli({ "-v", url("/count?n=1&retry=250") })
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("id: 1\n1\n", r.out)
    assert.matches("^< 200\n", r.err)
    assert.matches("\n< content%-type: text/event%-stream\n", r.err)
    assert.matches("\n< retry: 250\n", r.err)
  end)

  it("streams: each event is flushed, and `| head -1` ends it quietly (by SIGPIPE)", function()
    local t = tag("head")
    local r = cli({ "--timeout", "8", url("/forever?interval=20&tag=" .. t) },
      { pipe = "head -1", sigpipe = "default" })
    assert.are.equal("id: 1\n", r.out)
    assert.are.equal(128 + 13, r.code) -- killed by SIGPIPE, as the shell reports it
    assert.are.equal("", r.err)
    assert.is_true(r.secs < 4, ("took %.1f s: output not flushed per event?"):format(r.secs))
    assert.is_true((srv:wait_closed(t, 3)))
  end)

  it("with SIGPIPE ignored, a closed stdout still ends it quietly, with status 0", function()
    local t = tag("epipe")
    local r = cli({ "--timeout", "8", url("/forever?interval=20&tag=" .. t) },
      { pipe = "head -1", sigpipe = "ignore" })
    assert.are.equal("id: 1\n", r.out)
    assert.are.equal(0, r.code)
    assert.are.equal("", r.err)
    assert.is_true(r.secs < 4, ("took %.1f s"):format(r.secs))
    assert.is_true((srv:wait_closed(t, 3)))
  end)

  it("a failed write to stdout exits 1 with a message", function()
    local r = cli({ url("/count?n=1") }, { stdout = "/dev/full" })
    assert.are.equal(1, r.code)
    assert.are.equal("fetchstream: cannot write to stdout: No space left on device\n", r.err)
  end)
end)

describe("fetchstream (CLI) request", function()
  it("sends GET with no body and Accept: text/event-stream by default", function()
    local e = echo({})
    assert.are.equal("GET", e.method)
    assert.are.equal("", e.body)
    assert.are.equal("text/event-stream", e.headers.accept)
  end)

  it("-X sets the method and -H adds headers (repeated names joined)", function()
    local e = echo({ "-X", "PATCH", "-H", "X-One: 1", "-H", "x-two:  two words  ",
      "-HX-One:again", "-H", "Accept: application/x-ndjson" })
    assert.are.equal("PATCH", e.method)
    assert.are.equal("1, again", e.headers["x-one"])
    assert.are.equal("two words", e.headers["x-two"])
    assert.are.equal("application/x-ndjson", e.headers.accept)
  end)

  it("-d sends the data as a POST body", function()
    local e = echo({ "-d", "a=1&b=two" })
    assert.are.equal("POST", e.method)
    assert.are.equal("a=1&b=two", e.body)
    assert.are.equal("application/x-www-form-urlencoded", e.headers["content-type"])
    e = echo({ "-X", "PUT", "--data=x", "-H", "Content-Type: text/plain" })
    assert.are.equal("PUT", e.method)
    assert.are.equal("x", e.body)
    assert.are.equal("text/plain", e.headers["content-type"])
  end)

  it("--json sends the JSON text unchanged with Content-Type: application/json", function()
    local text = '{"model":"m","stream":true,"messages":[{"role":"user","content":"Hi"}]}'
    local e = echo({ "--json", text })
    assert.are.equal("POST", e.method)
    assert.are.equal(text, e.body)
    assert.are.equal("application/json", e.headers["content-type"])
    e = echo({ "--json", "[1, 2]", "-H", "content-type: application/vnd.x+json" })
    assert.are.equal("[1, 2]", e.body)
    assert.are.equal("application/vnd.x+json", e.headers["content-type"])
  end)

  it("-d @file sends the file's bytes unchanged; --data-raw does not read files", function()
    local f = tmp()
    write(f, "first line\nsecond line\n")
    local e = echo({ "-d", "@" .. f })
    assert.are.equal("first line\nsecond line\n", e.body)
    e = echo({ "--data-raw", "@" .. f })
    assert.are.equal("@" .. f, e.body)
  end)

  it("-d @- and --json @- read stdin", function()
    local e = echo({ "-d", "@-" }, { stdin = "from\nstdin" })
    assert.are.equal("POST", e.method)
    assert.are.equal("from\nstdin", e.body)
    e = echo({ "--json", "@-" }, { stdin = '{"a": 1}\n' })
    assert.are.equal('{"a": 1}\n', e.body)
    assert.are.equal("application/json", e.headers["content-type"])
  end)

  it("--last-event-id sends Last-Event-ID", function()
    local r = cli({ "--last-event-id", "41", url("/count?n=2&resume=1") })
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("id: 42\n42\nid: 43\n43\n", r.out)
  end)
end)

describe("fetchstream (CLI) errors and exit codes", function()
  it("exits 3 with the http error's message for a non-2xx status", function()
    fails(cli({ url("/status/404") }), 3, "fetchstream: http 404 from GET " .. url("/status/404") .. ": status 404\n")
    local body = enc('{"error":{"message":"invalid key"}}')
    local u = url("/status/401?body=" .. body)
    fails(cli({ "--raw", u }), 3, "fetchstream: http 401 from GET " .. u .. ": invalid key\n")
  end)

  it("exits 4 when the connection is refused", function()
    local u = ("http://127.0.0.1:%d/"):format(free_port())
    fails(cli({ u }), 4, "fetchstream: network from GET " .. u .. ": ")
  end)

  it("exits 4 when the connection drops mid-body, after the events before it", function()
    local r = cli({ url("/drop") })
    assert.are.equal(4, r.code, r.err)
    assert.are.equal("one\n", r.out)
    assert.matches("^fetchstream: network from GET http://127%.0%.0%.1:%d+/drop: [^\n]+\n$", r.err)
  end)

  it("exits 5 when --timeout expires, after printing what came", function()
    local t = tag("timeout")
    local u = url("/stall?tag=" .. t)
    local r = cli({ "--timeout", "0.5", u })
    assert.are.equal(5, r.code, r.err)
    assert.are.equal("hello\n", r.out)
    assert.are.equal("fetchstream: timeout from GET " .. u .. ": total timeout: the transfer took longer than 0.5 s\n",
      r.err)
    assert.is_true(r.secs < 4)
    assert.is_true((srv:wait_closed(t, 3)))
  end)

  it("exits 5 when --idle-timeout or --first-byte-timeout expires", function()
    local r = cli({ "--idle-timeout", "0.3", url("/stall") })
    assert.are.equal(5, r.code, r.err)
    assert.are.equal("fetchstream: timeout from GET " .. url("/stall") .. ": idle timeout: no data for 0.3 s\n", r.err)
    fails(cli({ "--first-byte-timeout=0.3", url("/stall?hello=0") }), 5,
      "fetchstream: timeout from GET " .. url("/stall?hello=0") .. ": first byte timeout: ")
  end)

  it("exits 6 when the response is not text/event-stream", function()
    fails(cli({ url("/status/200") }), 6,
      'fetchstream: protocol from GET ' .. url("/status/200")
        .. ': expected content-type text/event-stream, got "application/json"\n')
  end)
end)

describe("fetchstream (CLI) usage", function()
  it("exits 2 on an unknown option", function()
    fails(cli({ "--bogus", url("/count") }), 2, "fetchstream: usage: unknown option '--bogus'")
    fails(cli({ "-Z", url("/count") }), 2, "fetchstream: usage: unknown option '-Z'")
  end)

  it("exits 2 without a URL, or with two", function()
    fails(cli({}), 2, "fetchstream: usage: missing URL")
    fails(cli({ "--jsonl" }), 2, "fetchstream: usage: missing URL")
    fails(cli({ url("/count"), url("/count") }), 2, "fetchstream: usage: one URL only")
  end)

  it("exits 2 on invalid --json, and sends nothing", function()
    local t = tag("badjson")
    local u = url("/echo?tag=" .. t)
    fails(cli({ "--json", "{model: 1}", u }), 2, "fetchstream: usage: --json is not valid JSON")
    fails(cli({ "--json", "NaN", u }), 2, "fetchstream: usage: --json is not valid JSON")
    fails(cli({ "--json", "", u }), 2, "fetchstream: usage: --json is not valid JSON")
    assert.are.equal(0, srv:log(t).requests)
  end)

  it("exits 2 on a missing value, a bad header, a bad timeout, --raw with --jsonl", function()
    local u = url("/count")
    fails(cli({ u, "-H" }), 2, "fetchstream: usage: option -H needs a value")
    fails(cli({ "-H", "no colon", u }), 2, "fetchstream: usage: bad header")
    fails(cli({ "-H", "bad name: x", u }), 2, "fetchstream: usage: bad header name")
    fails(cli({ "--timeout", "soon", u }), 2, "fetchstream: usage: --timeout needs a positive number")
    fails(cli({ "--timeout=0", u }), 2, "fetchstream: usage: --timeout needs a positive number")
    fails(cli({ "--raw", "--jsonl", u }), 2, "fetchstream: usage: --jsonl and --raw exclude each other")
    fails(cli({ "--raw=1", u }), 2, "fetchstream: usage: option --raw takes no value")
    fails(cli({ "-d", "a", "--json", "{}", u }), 2, "fetchstream: usage: one request body only")
  end)

  it("exits 2 on an unreadable -d @file and on a URL that is not http(s)", function()
    fails(cli({ "-d", "@/nonexistent/body", url("/echo") }), 2, "fetchstream: usage: cannot read -d file")
    fails(cli({ "ftp://127.0.0.1/x" }), 2, "fetchstream: usage: ")
  end)

  it("--help prints the usage and the exit codes, and exits 0", function()
    for _, flag in ipairs({ "--help", "-h" }) do
      local r = cli({ flag })
      assert.are.equal(0, r.code, r.err)
      assert.are.equal("", r.err)
      assert.matches("^Usage: fetchstream %[options%] URL\n", r.out)
      for _, opt in ipairs({ "-X", "-H", "-d", "--json", "--jsonl", "--raw", "--timeout", "--no-check" }) do
        assert.is_truthy(r.out:find("  " .. opt, 1, true), opt)
      end
      assert.matches("\n  3  http:", r.out)
      assert.matches("\n  5  timeout:", r.out)
    end
  end)

  it("--version prints the module's version", function()
    local r = cli({ "--version" })
    assert.are.equal(0, r.code, r.err)
    assert.matches("^fetchstream %d+%.%d+%.%d+\n$", r.out)
  end)

  it("finds the module of its checkout without LUA_PATH and LUA_CPATH", function()
    local root = assert(io.popen("pwd")):read("l")
    local r = cli({ url("/count?n=1") }, {
      prefix = ("cd / && env -u LD_PRELOAD -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 "
        .. "%s %s"):format(h.lua(), q(root .. "/bin/fetchstream")),
    })
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("id: 1\n1\n", r.out)
  end)
end)
