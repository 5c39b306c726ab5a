-- Spec for the command-line tool, bin/fetchstream: its output formats, the
-- request its options make (seen through the stub server's /echo), curl's
-- flags, --chat (the request seen through the LLM routes' echo=1), its exit
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

-- No API keys or colour settings from the caller's environment.
local ENV = h.child_env({ "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OLLAMA_API_KEY", "NO_COLOR" }) .. " "

-- Run `fetchstream args...`. opts.stdin: bytes for its stdin; opts.pipe: a
-- command its stdout is piped into; opts.sigpipe: "default" or "ignore", how
-- the tool starts with SIGPIPE (LuaSocket ignores it in this process, and
-- children inherit that); opts.stdout: a file to redirect stdout to; opts.prefix: replaces
-- the environment and interpreter part of the command; opts.env: { NAME = value } more
-- variables for the tool.
-- Returns { code =, out =, err =, secs = }.
local function cli(args, opts)
  opts = opts or {}
  local errf, statusf = tmp(), tmp()
  local words = {}
  for i, a in ipairs(args) do words[i] = q(a) end
  local env = ENV
  for k, v in pairs(opts.env or {}) do env = env .. k .. "=" .. q(v) .. " " end
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
    assert.matches("\n< 200\n", r.err)
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

  it("exits 6 when the response is not text/event-stream, showing the body's first bytes", function()
    fails(cli({ url("/status/200") }), 6,
      'fetchstream: protocol from GET ' .. url("/status/200")
        .. ': expected content-type text/event-stream, got "application/json" (the body begins '
        .. '{"error":{"message":"status 200"}}); --raw prints any body as it is, --no-check reads it as events '
        .. 'anyway\n')
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
    fails(cli({ "-H", ": x", u }), 2, "fetchstream: usage: bad header")
    fails(cli({ "-H", ":", u }), 2, "fetchstream: usage: bad header")
    fails(cli({ "-H", "no colon", u }), 2, "fetchstream: usage: bad header")
    fails(cli({ "-H", "bad name: x", u }), 2, "fetchstream: usage: bad header name")
    fails(cli({ "--timeout", "soon", u }), 2, "fetchstream: usage: --timeout needs a positive number")
    fails(cli({ "--timeout=0", u }), 2, "fetchstream: usage: --timeout needs a positive number")
    fails(cli({ "--raw", "--jsonl", u }), 2, "fetchstream: usage: --raw and --jsonl exclude each other")
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

---------------------------------------------------------------------------
-- curl's flags, --data-only, -v's request, --chat (issue 11). No `<close>`,
-- `//` or math.type below: this part parses under LuaJIT too.

local ANSWER = stub.CANNED_ANSWER

-- The JSON body a --chat run sent, from the LLM route's echo=1 answer.
local function sent_body(r)
  assert.are.equal(0, r.code, r.err)
  return cjson.decode((r.out:gsub("\n$", "")))
end

local function count(s, needle)
  local n, i = 0, 1
  while true do
    local j = s:find(needle, i, true)
    if not j then return n end
    n, i = n + 1, j + 1
  end
end

describe("fetchstream (CLI) curl's flags", function()
  it("-N, -s, -S, -L, --compressed and -f are accepted: the default here", function()
    local plain = cli({ url("/count?n=2") })
    for _, args in ipairs({ { "-N" }, { "-s" }, { "-S" }, { "-L" }, { "-f" }, { "--compressed" }, { "-sSNLf" },
                            { "--no-buffer", "--silent", "--show-error", "--location", "--fail" } }) do
      args[#args + 1] = url("/count?n=2")
      local r = cli(args)
      assert.are.equal(0, r.code, r.err)
      assert.are.equal(plain.out, r.out, table.concat(args, " "))
      assert.are.equal("", r.err)
    end
    -- what they stand for holds: redirects are followed, gzip is decoded, a 404 fails
    local r = cli({ "-L", url("/redirect?to=" .. enc("/count?n=1")) })
    assert.are.equal("id: 1\n1\n", r.out)
    r = cli({ "--compressed", url("/gzip?n=2") })
    assert.are.equal("id: 1\n1\nid: 2\n2\n", r.out)
    fails(cli({ "-sf", url("/status/404") }), 3, "fetchstream: http 404")
  end)

  it("--max-time and -m are --timeout", function()
    for _, args in ipairs({ { "--max-time", "0.4" }, { "-m", "0.4" }, { "-m0.4" }, { "--max-time=0.4" } }) do
      args[#args + 1] = url("/stall")
      local r = cli(args)
      assert.are.equal(5, r.code, r.err)
      assert.matches("total timeout: the transfer took longer than 0.4 s", r.err, 1, true)
    end
    fails(cli({ "-m", "soon", url("/stall") }), 2, "fetchstream: usage: -m (--max-time; with --chat, --model)")
  end)

  it("-A / --user-agent sets the User-Agent; -A '' sends none", function()
    assert.are.equal("agent/1", echo({ "-A", "agent/1" }).headers["user-agent"])
    assert.are.equal("agent/2", echo({ "--user-agent=agent/2" }).headers["user-agent"])
    assert.matches("^fetchstream/%d", echo({}).headers["user-agent"])
    assert.is_nil(echo({ "-A", "" }).headers["user-agent"])
  end)

  it("-x / --proxy sends the request through a proxy (the stub takes the absolute form)", function()
    local e = echo({ "-x", srv.base }, nil)
    assert.are.equal("/echo", e.path)
    local r = cli({ "--jsonl", "--proxy", srv.base, "http://fetchstream.invalid/echo?via=proxy" })
    assert.are.equal(0, r.code, r.err)
    local seen = cjson.decode(cjson.decode(r.out).data)
    assert.are.equal("fetchstream.invalid", seen.headers.host)
    assert.are.equal("proxy", seen.query.via)
  end)

  it("--cacert is taken (it matters for https only); --http1.0, --http1.1 choose the version", function()
    local r = cli({ "--cacert", "/nonexistent/ca.pem", url("/count?n=1") })
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("HTTP/1.0", echo({ "--http1.0" }).version)
    assert.are.equal("HTTP/1.1", echo({ "--http1.1" }).version)
    -- --http2 is HTTP/2 over TLS: an http:// URL stays on HTTP/1.1
    assert.are.equal("HTTP/1.1", echo({ "--http2" }).version)
  end)

  it("-u USER:PASSWORD sends basic auth; --oauth2-bearer a Bearer token; -H Authorization wins", function()
    assert.are.equal("Basic dXNlcjpwYXNz", echo({ "-u", "user:pass" }).headers.authorization)
    assert.are.equal("Basic YTo=", echo({ "-u", "a:" }).headers.authorization)
    assert.are.equal("Basic Zm9vYmFyOmJheg==", echo({ "--user=foobar:baz" }).headers.authorization)
    assert.are.equal("Bearer tok", echo({ "--oauth2-bearer", "tok" }).headers.authorization)
    assert.are.equal("Token x", echo({ "-H", "Authorization: Token x", "-u", "a:b" }).headers.authorization)
    fails(cli({ "-u", "user", url("/echo") }), 2, "fetchstream: usage: -u needs USER:PASSWORD")
  end)

  it("-o FILE writes the output there, nothing to stdout; -o - is stdout", function()
    local f = tmp()
    local r = cli({ "-o", f, url("/count?n=2") })
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("", r.out)
    assert.are.equal("id: 1\n1\nid: 2\n2\n", read(f))
    r = cli({ "--raw", "--output=" .. f, sse("data: raw\n\n") })
    assert.are.equal("", r.out)
    assert.are.equal("data: raw\n\n", read(f))
    r = cli({ "-o", "-", url("/count?n=1") })
    assert.are.equal("id: 1\n1\n", r.out)
    r = cli({ "-o", "/nonexistent/dir/out", url("/count?n=1") })
    assert.are.equal(1, r.code)
    assert.matches("^fetchstream: cannot write to /nonexistent/dir/out", r.err)
  end)

  it("-i prints the status line and the headers, a blank line, then the output", function()
    local r = cli({ "-i", url("/count?n=1") })
    assert.are.equal(0, r.code, r.err)
    local head, rest = r.out:match("^(.-)\n\n(.*)$")
    assert.are.equal("id: 1\n1\n", rest)
    local ls = lines(head .. "\n")
    assert.are.equal("HTTP 200", ls[1])
    local names = {}
    for i = 2, #ls do names[#names + 1] = ls[i]:match("^([^:]+): ") end
    assert.is_true(#names >= 3)
    for i = 2, #names do assert.is_true(names[i - 1] < names[i], "sorted") end
    assert.is_truthy(r.out:find("\ncontent-type: text/event-stream\n", 1, true))
    -- with -o, into the file; with --raw, before the bytes
    local f = tmp()
    cli({ "-i", "--raw", "-o", f, sse("data: x\n\n") })
    assert.matches("^HTTP 200\n.-\n\ndata: x\n\n$", read(f))
  end)

  it("-H @FILE reads one header per line (blank lines skipped, CRLF too); -H @- reads stdin", function()
    local f = tmp()
    write(f, "X-One: 1\r\n\r\nX-Two: two words\nAccept: application/x-ndjson\n")
    local e = echo({ "-H", "@" .. f })
    assert.are.equal("1", e.headers["x-one"])
    assert.are.equal("two words", e.headers["x-two"])
    assert.are.equal("application/x-ndjson", e.headers.accept)
    e = echo({ "-H", "@-" }, { stdin = "X-Stdin: yes\n" })
    assert.are.equal("yes", e.headers["x-stdin"])
    fails(cli({ "-H", "@/nonexistent/headers", url("/echo") }), 2, "fetchstream: usage: cannot read -H file")
  end)

  it("-H 'Name:' removes a header, as curl does; 'Name;' sends it empty", function()
    local e = echo({ "-H", "Accept:", "-H", "User-Agent:" })
    assert.is_nil(e.headers.accept)
    assert.is_nil(e.headers["user-agent"])
    e = echo({ "-H", "X-A: 1", "-H", "X-A:", "-H", "X-B: 2" })
    assert.is_nil(e.headers["x-a"])
    assert.are.equal("2", e.headers["x-b"])
    e = echo({ "-d", "a=1", "-H", "Content-Type:" })
    assert.is_nil(e.headers["content-type"])
    assert.are.equal("a=1", e.body)
    e = echo({ "-H", "X-Empty;" })
    assert.are.equal("", e.headers["x-empty"])
    e = echo({ "-H", "X-A:", "-H", "X-A: back" }) -- a later -H sends it again
    assert.are.equal("back", e.headers["x-a"])
  end)

  it("--reconnect follows a feed across drops to its end (a 204); --retry N bounds the attempts", function()
    local r = cli({ "--reconnect", url("/feed?n=5&drop_after=2&retry=10") })
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("id: 1\nevent 1\nid: 2\nevent 2\nid: 3\nevent 3\nid: 4\nevent 4\nid: 5\nevent 5\n", r.out)
    local t = tag("retry")
    r = cli({ "-v", "--retry", "2", "--retry-delay", "0.01", url("/flaky?fail=9&tag=" .. t) })
    assert.are.equal(3, r.code, r.err)
    assert.are.equal(3, srv:log(t).requests)
    assert.are.equal(2, count(r.err, "\n* reconnect "))
    assert.matches("\n%* reconnect 1 in 0%.01%d* s: status 503\n", r.err)
    -- an event resets the count (EventSource's rule): a feed that drops after
    -- every event still arrives whole
    t = tag("retry-ok")
    r = cli({ "--retry", "2", "--retry-delay=0.01", url("/feed?n=4&drop_after=1&tag=" .. t) })
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("id: 1\nevent 1\nid: 2\nevent 2\nid: 3\nevent 3\nid: 4\nevent 4\n", r.out)
    assert.are.equal(5, srv:log(t).requests) -- the 5th gets the 204
    -- connections that bring nothing use the attempts up
    t = tag("retry-drop")
    r = cli({ "--retry", "2", "--retry-delay=0.01", url("/feed?n=4&drop_after=0&tag=" .. t) })
    assert.are.equal(4, r.code, r.err)
    assert.are.equal(3, srv:log(t).requests)
  end)

  it("a flag that is not supported but has a near equivalent says which", function()
    local u = url("/count")
    fails(cli({ "-w", "%{http_code}", u }), 2,
      "fetchstream: usage: -w: not supported; -v prints the status and headers")
    fails(cli({ "--write-out=%{http_code}", u }), 2, "fetchstream: usage: --write-out: not supported; -v prints")
    fails(cli({ "-I", u }), 2, "fetchstream: usage: -I: not supported; -i prints the status and headers")
    fails(cli({ "-O", u }), 2, "fetchstream: usage: -O: not supported; -o FILE")
    fails(cli({ "-F", "a=1", u }), 2, "fetchstream: usage: -F: not supported; -d or --json")
    fails(cli({ "-b", "a=1", u }), 2, "fetchstream: usage: -b: not supported; -H 'Cookie: name=value'")
    fails(cli({ "-sw", "x", u }), 2, "fetchstream: usage: -w: not supported")
    fails(cli({ "--data-urlencode", "a=1", u }), 2, "fetchstream: usage: --data-urlencode: not supported")
  end)

  it("--data-binary is -d", function()
    local f = tmp()
    write(f, "a\nb\n")
    assert.are.equal("a\nb\n", echo({ "--data-binary", "@" .. f }).body)
    assert.are.equal("x", echo({ "--data-binary", "x" }).body)
  end)
end)

describe("fetchstream (CLI) --data-only", function()
  it("prints each event's data and a newline, nothing else: multi-line data whole", function()
    local body = "event: update\nid: 7\ndata: {\"a\":\ndata:  1}\n\n: comment\ndata: plain\n\nretry: 5\ndata:\n\n"
    local r = cli({ "--data-only", sse(body) })
    assert.are.equal(0, r.code, r.err)
    assert.are.equal('{"a":\n 1}\nplain\n\n', r.out)
  end)

  it("excludes --jsonl and --raw", function()
    fails(cli({ "--data-only", "--jsonl", url("/count") }), 2, "fetchstream: usage: --data-only and --jsonl exclude")
    fails(cli({ "--raw", "--data-only", url("/count") }), 2, "fetchstream: usage: --raw and --data-only exclude")
  end)
end)

describe("fetchstream (CLI) -v shows the request", function()
  it("> the method and target, Host, User-Agent, the headers (Authorization masked), then < the response", function()
    local secret = "sk-very-secret-key"
    local r = cli({ "-v", "-H", "Authorization: Bearer " .. secret, "-H", "X-Trace: t1", "--json", "{}",
                    url("/echo?a=1") })
    assert.are.equal(0, r.code, r.err)
    local ls = lines(r.err)
    assert.are.equal("> POST /echo?a=1", ls[1])
    assert.are.equal("> Host: 127.0.0.1:" .. srv.port, ls[2])
    assert.matches("^> User%-Agent: fetchstream/%d", ls[3])
    local rest = table.concat(ls, "\n", 4)
    assert.is_truthy(rest:find("> Authorization: Bearer ***\n", 1, true), r.err)
    assert.is_truthy(rest:find("> X-Trace: t1\n", 1, true))
    assert.is_truthy(rest:find("> Content-Type: application/json\n", 1, true))
    assert.is_truthy(rest:find("> Accept: text/event-stream\n", 1, true))
    assert.is_truthy(rest:find("> Content-Length: 2\n< 200\n", 1, true), r.err)
    assert.is_nil(r.err:find(secret, 1, true), "the key is printed")
    -- the request really had it
    local e = cjson.decode(r.out)
    assert.are.equal("Bearer " .. secret, e.headers.authorization)
  end)

  it("masks -u's credentials and an x-api-key; shows no removed header", function()
    local r = cli({ "-v", "-u", "me:hunter2", "-H", "x-api-key: k-123", "-H", "Accept:", url("/count?n=1") })
    assert.are.equal(0, r.code, r.err)
    assert.is_truthy(r.err:find("\n> Authorization: Basic ***\n", 1, true), r.err)
    assert.is_truthy(r.err:find("\n> x-api-key: ***\n", 1, true), r.err)
    assert.is_nil(r.err:find("hunter2", 1, true))
    assert.is_nil(r.err:find("k-123", 1, true))
    assert.is_nil(r.err:find("> Accept", 1, true))
  end)

  it("a refused content type: < the response headers, then the body's first bytes and what to do", function()
    local u = url("/status/200?ct=text/html&body=" .. enc("<html>\n<body>not events</body></html>"))
    local r = cli({ "-v", u })
    assert.are.equal(6, r.code)
    assert.is_truthy(r.err:find("\n< content-type: text/html\n", 1, true), r.err)
    assert.is_truthy(r.err:find('got "text/html" (the body begins <html>\\n<body>not events</body></html>); '
      .. "--raw prints any body as it is, --no-check reads it as events anyway\n", 1, true), r.err)
  end)
end)

describe("fetchstream (CLI) --chat", function()
  local function base(query) return srv:url("/v1?delay=1" .. (query and "&" .. query or "")) end

  it("prints only the answer text as it arrives, then a newline", function()
    local r = cli({ "--chat", base(), "-m", "stub-model", "Say hello" })
    assert.are.equal(0, r.code, r.err)
    assert.are.equal(ANSWER .. "\n", r.out)
    assert.are.equal("", r.err)
  end)

  it("sends model, the prompt (the arguments, joined) as the user message, stream = true", function()
    local body = sent_body(cli({ "--chat", base("echo=1"), "--model", "m1", "Say", "hello" }))
    assert.are.equal("m1", body.model)
    assert.is_true(body.stream)
    assert.are.same({ { role = "user", content = "Say hello" } }, body.messages)
  end)

  it("reads the prompt from stdin when there is none after the options", function()
    local body = sent_body(cli({ "--chat", base("echo=1"), "-m", "m" }, { stdin = "from\nstdin\n" }))
    assert.are.same({ { role = "user", content = "from\nstdin" } }, body.messages)
    fails(cli({ "--chat", base(), "-m", "m" }, { stdin = " \n" }), 2, "fetchstream: usage: --chat needs a prompt")
  end)

  it("--system goes where each format wants it; --json adds body fields", function()
    local body = sent_body(cli({ "--chat", base("echo=1"), "-m", "m", "--system", "be brief",
                                 "--json", '{"temperature":0,"max_tokens":5}', "hi" }))
    assert.are.same({ { role = "system", content = "be brief" }, { role = "user", content = "hi" } }, body.messages)
    assert.are.equal(0, body.temperature)
    assert.are.equal(5, body.max_tokens)
    body = sent_body(cli({ "--chat", base("echo=1"), "-m", "m", "--format", "anthropic", "--system", "sys", "hi" }))
    assert.are.equal("sys", body.system)
    assert.are.same({ { role = "user", content = "hi" } }, body.messages)
    body = sent_body(cli({ "--chat", base("echo=1"), "-m", "m", "--format", "responses", "--system", "sys", "hi" }))
    assert.are.equal("sys", body.instructions)
    assert.are.same({ { role = "user", content = "hi" } }, body.input)
    body = sent_body(cli({ "--chat", srv:url("/?echo=1&delay=1"), "-m", "m", "--format", "ollama", "--system", "s",
                           "hi" }))
    assert.are.same({ { role = "system", content = "s" }, { role = "user", content = "hi" } }, body.messages)
    fails(cli({ "--chat", base(), "-m", "m", "--json", "[1]", "hi" }), 2, "fetchstream: usage: --json with --chat")
  end)

  it("--format responses, anthropic and ollama stream the same answer", function()
    for format, b in pairs({ responses = base(), anthropic = base(), ollama = srv:url("/?delay=1") }) do
      local r = cli({ "--chat", b, "-m", "m", "--format", format, "hi" })
      assert.are.equal(0, r.code, format .. ": " .. r.err)
      assert.are.equal(ANSWER .. "\n", r.out, format)
    end
    fails(cli({ "--chat", base(), "-m", "m", "--format", "gemini", "hi" }), 2,
      "fetchstream: usage: --format takes openai, responses, anthropic or ollama")
  end)

  it("--api-key, else OPENAI_API_KEY / ANTHROPIC_API_KEY / OLLAMA_API_KEY", function()
    local r = cli({ "--chat", base("key=k1"), "-m", "m", "--api-key", "k1", "hi" })
    assert.are.equal(ANSWER .. "\n", r.out, r.err)
    r = cli({ "--chat", base("key=k2"), "-m", "m", "hi" }, { env = { OPENAI_API_KEY = "k2" } })
    assert.are.equal(ANSWER .. "\n", r.out, r.err)
    r = cli({ "--chat", base("key=k3"), "-m", "m", "--format", "anthropic", "hi" },
      { env = { ANTHROPIC_API_KEY = "k3", OPENAI_API_KEY = "wrong" } })
    assert.are.equal(ANSWER .. "\n", r.out, r.err)
    r = cli({ "--chat", srv:url("/?key=k4&delay=1"), "-m", "m", "--format", "ollama", "hi" },
      { env = { OLLAMA_API_KEY = "k4" } })
    assert.are.equal(ANSWER .. "\n", r.out, r.err)
    r = cli({ "--chat", base("key=k5"), "-m", "m", "--api-key", "k5", "hi" }, { env = { OPENAI_API_KEY = "other" } })
    assert.are.equal(ANSWER .. "\n", r.out, r.err)
    fails(cli({ "--chat", base("key=k6"), "-m", "m", "hi" }, { env = { OPENAI_API_KEY = "" } }), 3,
      "fetchstream: http 401 from POST " .. srv:url("/v1/chat/completions?delay=1&key=k6") .. ": invalid api key\n")
  end)

  it("-v: the request (key masked) and response head, the reasoning as it comes, then a summary, on stderr", function()
    local r = cli({ "--chat", base("reasoning=1"), "-m", "stub-model", "-v", "--api-key", "sk-hidden",
                    "--json", '{"stream_options":{"include_usage":true}}', "hi" })
    assert.are.equal(0, r.code, r.err)
    assert.are.equal(ANSWER .. "\n", r.out)
    assert.is_nil(r.err:find("sk-hidden", 1, true))
    assert.is_truthy(r.err:find("> POST /v1/chat/completions?delay=1&reasoning=1\n", 1, true), r.err)
    assert.is_truthy(r.err:find("\n> authorization: Bearer ***\n", 1, true), r.err)
    assert.is_truthy(r.err:find("\n< 200\n", 1, true), r.err)
    assert.is_truthy(r.err:find("\n" .. stub.CANNED_REASONING_TEXT .. "\n", 1, true), r.err) -- no colours: no tty
    assert.is_nil(r.err:find("\27", 1, true))
    assert.matches("\n%* stop %(stub%-model%): first byte %d+ ms, first text %d+ ms, 22 deltas, "
      .. "10 reasoning deltas, [%d.]+ tokens/s\n", r.err)
    assert.matches("\n%* usage: completion_tokens=32 completion_tokens_details%.reasoning_tokens=10 "
      .. "prompt_tokens=1 total_tokens=33\n$", r.err)
  end)

  it("-v on a terminal dims the reasoning (not with NO_COLOR)", function()
    if not h.execute("command -v script >/dev/null 2>&1") then return pending("no script(1)") end
    local function on_tty(env)
      local f, o = tmp(), tmp()
      local cmd = ENV .. (env or "") .. " " .. h.lua() .. " bin/fetchstream --chat " .. q(base("reasoning=1"))
        .. " -m m -v hi >" .. q(o)
      h.execute("env -u LD_PRELOAD script -qec " .. q(cmd) .. " /dev/null >" .. q(f) .. " 2>&1 </dev/null")
      assert.are.equal(ANSWER .. "\n", read(o))
      return read(f)
    end
    local err = on_tty()
    assert.is_truthy(err:find("\27[2m" .. stub.CANNED_REASONING_TEXT .. "\27[0m", 1, true), err)
    err = on_tty("NO_COLOR=1")
    assert.is_nil(err:find("\27", 1, true))
    assert.is_truthy(err:find(stub.CANNED_REASONING_TEXT, 1, true))
  end)

  it("-v shows the tool calls, and Ollama's durations", function()
    local r = cli({ "--chat", base("tools=1"), "-m", "m", "-v", "hi" })
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("", r.out)
    assert.is_truthy(r.err:find('\n* tool call: get_weather {"city":"Paris","unit":"c"}\n', 1, true), r.err)
    assert.is_truthy(r.err:find('\n* tool call: get_time {"tz":"CET"}\n', 1, true), r.err)
    r = cli({ "--chat", srv:url("/?delay=1"), "--format", "ollama", "-m", "m", "-v", "hi" })
    assert.matches("eval_duration 99 ms, total_duration 123 ms", r.err)
    assert.matches("\n%* usage: eval_count=22 prompt_eval_count=1\n", r.err)
  end)

  it("a truncated answer exits 7, an in-stream API error 8, after the text so far and a newline", function()
    local r = cli({ "--chat", base("truncate=3"), "-m", "m", "hi" })
    assert.are.equal(7, r.code, r.err)
    assert.are.equal(table.concat(stub.CANNED_TOKENS, "", 1, 3) .. "\n", r.out)
    assert.are.equal("fetchstream: eof from POST " .. srv:url("/v1/chat/completions?delay=1&truncate=3")
      .. ": the chat completion stream ended before its end marker ([DONE]): the answer is truncated\n", r.err)
    r = cli({ "--chat", base("error_after=2"), "-m", "m", "hi" })
    assert.are.equal(8, r.code, r.err)
    assert.are.equal(table.concat(stub.CANNED_TOKENS, "", 1, 2) .. "\n", r.out)
    assert.are.equal("fetchstream: api from POST " .. srv:url("/v1/chat/completions?delay=1&error_after=2")
      .. ": stub: overloaded\n", r.err)
    r = cli({ "--chat", srv:url("/?delay=1&truncate=0"), "--format", "ollama", "-m", "m", "hi" })
    assert.are.equal(7, r.code, r.err)
    assert.are.equal("", r.out)
    r = cli({ "--chat", base("error_after=1"), "--format", "responses", "-m", "m", "hi" })
    assert.are.equal(8, r.code, r.err)
  end)

  it("refused requests are retried (default 2); --retry N sets how often; -v shows each", function()
    local t = tag("chat-retry")
    local r = cli({ "--chat", base("status=503&retry_after_ms=1&tag=" .. t), "-m", "m", "-v", "hi" })
    assert.are.equal(3, r.code, r.err)
    assert.are.equal(3, srv:log(t).requests)
    assert.matches("\n%* retry 1 in 0%.001 s: status 503\n", r.err)
    assert.matches("\n%* retry 2 in 0%.001 s: status 503\n", r.err)
    t = tag("chat-retry0")
    r = cli({ "--chat", base("status=503&tag=" .. t), "-m", "m", "--retry", "0", "hi" })
    assert.are.equal(3, r.code, r.err)
    assert.are.equal(1, srv:log(t).requests)
    t = tag("chat-retry-ok")
    r = cli({ "--chat", base("status=429&fail=1&retry_after_ms=1&tag=" .. t), "-m", "m", "hi" })
    assert.are.equal(0, r.code, r.err)
    assert.are.equal(ANSWER .. "\n", r.out)
  end)

  it("-o FILE and -i work with --chat; timeouts and -H apply", function()
    local f = tmp()
    local r = cli({ "--chat", base(), "-m", "m", "-o", f, "hi" })
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("", r.out)
    assert.are.equal(ANSWER .. "\n", read(f))
    r = cli({ "--chat", base(), "-m", "m", "-i", "hi" })
    assert.matches("^HTTP 200\n.-\ncontent%-type: text/event%-stream\n.-\n\n" .. ANSWER:gsub("%p", "%%%0") .. "\n$",
      r.out)
    r = cli({ "--chat", base("delay=300"), "-m", "m", "--max-time", "0.5", "hi" })
    assert.are.equal(5, r.code, r.err)
    r = cli({ "--chat", base("key=hk"), "-m", "m", "-H", "Authorization: Bearer hk", "hi" },
      { env = { OPENAI_API_KEY = "wrong" } })
    assert.are.equal(0, r.code, r.err) -- -H wins over the environment's key
  end)

  it("usage errors: no model, -d, -X, an output mode; chat options without --chat", function()
    local b = base()
    fails(cli({ "--chat", b, "hi" }), 2, "fetchstream: usage: --chat needs a model: -m MODEL")
    fails(cli({ "--chat", b, "-m", "m", "-d", "x", "hi" }), 2, "fetchstream: usage: --chat builds the request body")
    fails(cli({ "--chat", b, "-m", "m", "-X", "PUT", "hi" }), 2, "fetchstream: usage: --chat always POSTs")
    fails(cli({ "--chat", b, "-m", "m", "--jsonl", "hi" }), 2, "fetchstream: usage: --jsonl is for plain requests")
    fails(cli({ "--chat", b, "-m", "m", "--data-only", "hi" }), 2, "fetchstream: usage: --data-only is for plain")
    fails(cli({ "--model", "m", url("/count") }), 2, "fetchstream: usage: --model is for --chat")
    fails(cli({ "--system", "s", url("/count") }), 2, "fetchstream: usage: --system is for --chat")
    fails(cli({ "--api-key", "k", url("/count") }), 2, "fetchstream: usage: --api-key is for --chat")
  end)
end)

describe("fetchstream (CLI) --help", function()
  it("lists the new flags and the exit codes 7 and 8", function()
    local r = cli({ "--help" })
    for _, opt in ipairs({ "--chat", "--model", "--system", "--format", "--api-key", "--data-only", "--include",
                           "--output", "--user", "--user-agent", "--proxy", "--cacert", "--http1.1", "--http2",
                           "--reconnect", "--retry", "--max-time", "--oauth2-bearer", "--no-buffer" }) do
      assert.is_truthy(r.out:find(opt, 1, true), opt)
    end
    assert.matches("\n  7  eof:", r.out)
    assert.matches("\n  8  api:", r.out)
  end)
end)
