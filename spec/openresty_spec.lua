-- OpenResty: nginx with its Lua module (Debian's libnginx-mod-http-lua, on
-- LuaJIT) reads a stream from the stub server through an ngx.socket.tcp
-- cosocket and parses it with fetchstream.sse.events — the events come back
-- byte for byte, another location of the same worker answers while a slow
-- stream is read, and fetchstream.core (curl) is never loaded in the worker.
-- The configuration is spec/hosts/nginx.conf.

local stub = require "spec.server"
local h = require "spec.helpers"
local sse = require "fetchstream.sse"
local socket = require "socket"

local srv, nginx_pid, port, prefix

-- One raw GET to nginx: the whole body (nginx closes: HTTP/1.0).
local function get(path, timeout)
  local c = assert(socket.connect("127.0.0.1", port))
  c:settimeout(timeout or 10)
  c:send("GET " .. path .. " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
  local data, err, partial = c:receive("*a")
  c:close()
  data = data or partial
  assert(data and data ~= "", err)
  return assert(data:match("^HTTP/1%.%d 200.-\r\n\r\n(.*)$"), data)
end

setup(function()
  h.build_luajit()
  srv = stub.start()
  port = h.free_port()
  prefix = os.tmpname()
  os.remove(prefix)
  assert(h.execute("mkdir -p " .. prefix .. "/tmp"))
  local conf = h.read("spec/hosts/nginx.conf"):gsub("@(%u+)@", {
    PREFIX = prefix, ROOT = h.ROOT, BUILD = h.ROOT .. "/build-luajit",
    PORT = tostring(port), UPSTREAM = tostring(srv.port),
  })
  local f = assert(io.open(prefix .. "/nginx.conf", "w"))
  f:write(conf)
  f:close()
  local p = assert(io.popen(("env -u LD_PRELOAD timeout 120 nginx -p %s -c %s/nginx.conf -e %s/error.log "
    .. ">/dev/null 2>&1 & echo $!"):format(prefix, prefix, prefix)))
  nginx_pid = assert(tonumber(p:read("l")))
  p:close()
  for _ = 1, 200 do -- up to 2 s for it to listen
    local c = socket.connect("127.0.0.1", port)
    if c then c:close() return end
    socket.sleep(0.01)
  end
  error("nginx did not start: " .. (io.open(prefix .. "/error.log") or { read = function() return "" end }):read("a"))
end)

teardown(function()
  if nginx_pid then os.execute("kill " .. nginx_pid .. " 2>/dev/null") end
  if srv then srv:stop() end
  if prefix then os.execute("rm -rf " .. prefix) end
end)

-- What /events writes for `body`, computed here with the same parser.
local function expected(body)
  local out = {}
  for ev in sse.parser():feed(body) do
    out[#out + 1] = ("%d:%s%d:%s%d:%s\n"):format(#ev.event, ev.event, #ev.id, ev.id, #ev.data, ev.data)
  end
  return table.concat(out)
end

describe("OpenResty (nginx + its Lua module, LuaJIT)", function()
  it("parses a cosocket's bytes with fetchstream.sse.events, byte for byte", function()
    local body = "retry: 5\r\n: c\n\nid: 1\r\nevent: up\r\ndata: a\r\ndata:  b \r\r"
      .. "data: caf\195\169\n\nid\ndata: x\0y\n\ndata: unterminated"
    for _, chunk in ipairs { 1, 3, 1000 } do
      local path = h.sse_path(body, { chunk = chunk, delay = chunk == 3 and 2 or 0 })
      local got = get("/events?path=" .. h.enc(path))
      assert.are.equal(expected(body) .. "core-loaded:false\n", got)
    end
    assert.are.equal("7:message1:11:a\n", expected("id: 1\ndata: a\n\n")) -- the format itself
  end)

  it("keeps the worker answering while a slow stream is read", function()
    local t = h.tagger("openresty")("slow")
    local slow = assert(socket.connect("127.0.0.1", port))
    slow:settimeout(5)
    slow:send("GET /events?path=" .. h.enc("/forever?interval=200&tag=" .. t) .. " HTTP/1.0\r\n\r\n")
    assert(slow:receive("*l")) -- the status line: the slow stream is being read
    local t0 = socket.gettime()
    assert.are.equal("pong\n", get("/ping", 2))
    assert.is_true(socket.gettime() - t0 < 0.5, "the worker was blocked")
    slow:close()
    assert.is_true((srv:wait_closed(t, 5)), "nginx did not close its upstream connection")
  end)
end)
