-- fetchstream stub HTTP server for the specs.
--
--   lua5.4 spec/server/server.lua [--lifetime SECONDS] [--verbose]
--
--   --watch-parent  also exit when the parent process dies (Linux /proc)
--
-- Binds 127.0.0.1 on a free port, prints "PORT <n>" as its first stdout line,
-- then serves HTTP/1.1 (keep-alive, chunked responses) to many clients at once
-- with one coroutine per connection over non-blocking LuaSocket sockets and
-- socket.select. It exits by itself after --lifetime seconds (default 600) or
-- on GET /__quit. Routes: see spec/server/README.md.

local socket = require "socket"
local cjson = require "cjson"
local cjson_safe = require "cjson.safe"

local now = socket.gettime
local co_yield, co_resume, co_create, co_status =
  coroutine.yield, coroutine.resume, coroutine.create, coroutine.status
local sfmt, srep, ssub, sfind, sbyte, schar =
  string.format, string.rep, string.sub, string.find, string.byte, string.char
local concat = table.concat

---------------------------------------------------------------------------
-- command line
---------------------------------------------------------------------------

local lifetime, verbose, watch_parent = 600, false, false
do
  local i = 1
  while arg and arg[i] do
    local a = arg[i]
    if a == "--lifetime" then
      lifetime = assert(tonumber(arg[i + 1]), "--lifetime needs a number of seconds")
      i = i + 1
    elseif a:match("^%-%-lifetime=") then
      lifetime = assert(tonumber(a:match("=(.*)")), "--lifetime needs a number of seconds")
    elseif a == "--watch-parent" then
      watch_parent = true
    elseif a == "--verbose" or a == "-v" then
      verbose = true
    else
      io.stderr:write("stub server: unknown argument ", a, "\n")
      os.exit(2)
    end
    i = i + 1
  end
end

local function log(...)
  if verbose then
    io.stderr:write(sfmt("[stub %.3f] ", now() % 1000), sfmt(...), "\n")
  end
end

-- The canned chat answer and tool calls live in init.lua (stub.CANNED_TOKENS,
-- stub.TOOL_CALL_PIECES) so that the specs and the server share one copy.
local CANNED_TOKENS, TOOL_CALL_PIECES, CANNED_REASONING
do
  local dir = (arg and arg[0] or ""):match("^(.*[/\\])") or "./"
  local ok, mod = pcall(dofile, dir .. "init.lua")
  if ok and type(mod) == "table" and mod.CANNED_TOKENS then
    CANNED_TOKENS = mod.CANNED_TOKENS
    TOOL_CALL_PIECES = mod.TOOL_CALL_PIECES
    CANNED_REASONING = mod.CANNED_REASONING
  else
    CANNED_TOKENS = { "Hello", "!", " I", " am", " the", " stub", "." }
  end
  CANNED_REASONING = CANNED_REASONING or { "The", " user", " wants", " a", " greeting", "." }
  TOOL_CALL_PIECES = TOOL_CALL_PIECES or {
    { id = "call_1", name = "get_weather", pieces = { '{"city":', '"Paris",', '"unit":', '"c"}' } },
    { id = "call_2", name = "get_time", pieces = { '{"tz":', '"CET"}' } },
  }
end

---------------------------------------------------------------------------
-- scheduler: coroutines waiting on readability, writability and timers
---------------------------------------------------------------------------

local readers, writers = {}, {} -- socket -> task
local heap, heap_n = {}, 0       -- timer min-heap of {at, task, wid}

local function heap_push(e)
  heap_n = heap_n + 1
  local i = heap_n
  heap[i] = e
  while i > 1 do
    local p = i // 2
    if heap[p].at <= e.at then break end
    heap[i] = heap[p]
    i = p
  end
  heap[i] = e
end

local function heap_pop()
  local top = heap[1]
  local last = heap[heap_n]
  heap[heap_n] = nil
  heap_n = heap_n - 1
  if heap_n > 0 then
    local i = 1
    while true do
      local c = i * 2
      if c > heap_n then break end
      if c < heap_n and heap[c + 1].at < heap[c].at then c = c + 1 end
      if last.at <= heap[c].at then break end
      heap[i] = heap[c]
      i = c
    end
    heap[i] = last
  end
  return top
end

local ntasks = 0

-- A task yields a wait request {r = sock, w = sock, t = seconds} (any subset)
-- and is resumed with "read", "write" or "timeout".
local function schedule(task, req)
  task.wid = task.wid + 1
  if req.r then readers[req.r] = task; task.r = req.r end
  if req.w then writers[req.w] = task; task.w = req.w end
  if req.t then heap_push({ at = now() + req.t, task = task, wid = task.wid }) end
end

local function resume(task, why)
  if task.r then readers[task.r] = nil; task.r = nil end
  if task.w then writers[task.w] = nil; task.w = nil end
  task.wid = task.wid + 1
  local ok, req = co_resume(task.co, why)
  if not ok then
    io.stderr:write("stub server: task error: ", tostring(req), "\n")
  end
  if not ok or co_status(task.co) == "dead" then
    ntasks = ntasks - 1
    if task.sock then pcall(task.sock.close, task.sock) end
    return
  end
  schedule(task, req or {})
end

local function spawn(fn, sock)
  local task = { co = co_create(function() return fn(sock) end), wid = 0, sock = sock }
  ntasks = ntasks + 1
  resume(task, "start")
end

---------------------------------------------------------------------------
-- shared state: tags (for /log)
---------------------------------------------------------------------------

local tags = {}
local function tag_entry(t)
  local e = tags[t]
  if not e then e = { closed = false, requests = 0 }; tags[t] = e end
  return e
end

local quitting = false

---------------------------------------------------------------------------
-- a connection: buffered non-blocking reads, complete writes, sleeps
---------------------------------------------------------------------------

local Conn = {}
Conn.__index = Conn

local conn_ids = 0
local function new_conn(sock)
  conn_ids = conn_ids + 1
  return setmetatable({ sock = sock, buf = "", pos = 1, dead = false, id = conn_ids }, Conn)
end

-- The client went away (send failed or the socket read as closed).
function Conn:mark_closed(why)
  if not self.dead then
    self.dead = true
    log("client closed (%s)%s", tostring(why), self.tag and (" tag=" .. self.tag) or "")
  end
  if self.tag then tag_entry(self.tag).closed = true end
end

-- Read whatever is available (no waiting). Returns true if bytes were added,
-- false if nothing was there, nil, err if the peer closed.
function Conn:try_fill()
  local data, err, partial = self.sock:receive(65536)
  local got = data or partial
  if got and #got > 0 then
    if self.pos > #self.buf then
      self.buf, self.pos = got, 1
    else
      self.buf, self.pos = ssub(self.buf, self.pos) .. got, 1
    end
    return true
  end
  if err == "timeout" or err == nil then return false end
  return nil, err
end

-- Wait for at least one more byte. deadline: absolute time or nil.
function Conn:fill(deadline)
  while true do
    local ok, err = self:try_fill()
    if ok then return true end
    if ok == nil then self:mark_closed(err); return nil, "closed" end
    local t
    if deadline then
      t = deadline - now()
      if t <= 0 then return nil, "idle" end
    end
    co_yield({ r = self.sock, t = t })
  end
end

function Conn:readline(maxlen, deadline)
  while true do
    local s, e = sfind(self.buf, "\n", self.pos, true)
    if s then
      local line = ssub(self.buf, self.pos, s - 1)
      self.pos = e + 1
      if sbyte(line, -1) == 13 then line = ssub(line, 1, -2) end
      return line
    end
    if #self.buf - self.pos + 1 > maxlen then return nil, "too long" end
    local ok, err = self:fill(deadline)
    if not ok then return nil, err end
  end
end

function Conn:read(n)
  local have = #self.buf - self.pos + 1
  if have >= n then
    local s = ssub(self.buf, self.pos, self.pos + n - 1)
    self.pos = self.pos + n
    return s
  end
  local parts, got = { ssub(self.buf, self.pos) }, have
  self.buf, self.pos = "", 1
  while got < n do
    local ok, err = self:fill()
    if not ok then return nil, err end
    local need = n - got
    if #self.buf > need then
      parts[#parts + 1] = ssub(self.buf, 1, need)
      self.pos = need + 1
      got = n
    else
      parts[#parts + 1] = self.buf
      got = got + #self.buf
      self.buf, self.pos = "", 1
    end
  end
  return concat(parts)
end

-- Send all of data (from index i), waiting for writability as needed: the
-- socket's own buffer is the only buffering (back-pressure).
function Conn:send(data, i)
  if self.dead then return nil, "closed" end
  local sock, n = self.sock, #data
  i = i or 1
  while i <= n do
    local last, err, lastpartial = sock:send(data, i)
    if last then return true end
    if err ~= "timeout" then self:mark_closed(err); return nil, "closed" end
    i = lastpartial + 1
    if i <= n then co_yield({ w = sock }) end
  end
  return true
end

-- Sleep, watching the socket meanwhile: returns nil, "closed" as soon as the
-- client goes away. Bytes the client sends meanwhile are kept in the buffer.
function Conn:sleep(ms)
  if self.dead then return nil, "closed" end
  local deadline = now() + (ms or 0) / 1000
  while true do
    local t = deadline - now()
    if t <= 0 then return true end
    local why = co_yield({ r = self.sock, t = t })
    if why == "read" then
      local ok, err = self:try_fill()
      if ok == nil then self:mark_closed(err); return nil, "closed" end
    end
  end
end

-- Wait (without limit) until the client closes the connection.
function Conn:wait_closed()
  while not self.dead do
    co_yield({ r = self.sock })
    local ok, err = self:try_fill()
    if ok == nil then self:mark_closed(err) end
    if ok then self.buf, self.pos = "", 1 end -- discard anything sent
  end
  return true
end

---------------------------------------------------------------------------
-- responses
---------------------------------------------------------------------------

local REASONS = {
  [100] = "Continue", [200] = "OK", [201] = "Created", [202] = "Accepted",
  [204] = "No Content", [206] = "Partial Content",
  [301] = "Moved Permanently", [302] = "Found", [303] = "See Other",
  [304] = "Not Modified", [307] = "Temporary Redirect", [308] = "Permanent Redirect",
  [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden",
  [404] = "Not Found", [405] = "Method Not Allowed", [408] = "Request Timeout",
  [413] = "Payload Too Large", [418] = "I'm a teapot", [422] = "Unprocessable Entity",
  [429] = "Too Many Requests", [431] = "Request Header Fields Too Large",
  [500] = "Internal Server Error", [501] = "Not Implemented", [502] = "Bad Gateway",
  [503] = "Service Unavailable", [504] = "Gateway Timeout", [529] = "Site Overloaded",
}

-- framing: "chunked" | "close" (body ends when the connection closes) |
-- a number (Content-Length) | "none" (no body: 204/304/HEAD-like)
function Conn:head(status, headers, framing)
  if framing == "chunked" and self.http10 then framing = "close" end
  if framing == "close" then self.keep = false end
  self.framing = framing
  local out = { sfmt("HTTP/1.1 %d %s", status, REASONS[status] or "Status") }
  local has = {}
  for _, h in ipairs(headers or {}) do
    out[#out + 1] = h[1] .. ": " .. h[2]
    has[h[1]:lower()] = true
  end
  if not has["server"] then out[#out + 1] = "Server: fetchstream-stub" end
  if framing == "chunked" then
    out[#out + 1] = "Transfer-Encoding: chunked"
  elseif type(framing) == "number" then
    out[#out + 1] = "Content-Length: " .. framing
  end
  out[#out + 1] = self.keep and "Connection: keep-alive" or "Connection: close"
  out[#out + 1] = "\r\n"
  return self:send(concat(out, "\r\n"))
end

function Conn:chunk(data)
  if data == nil or #data == 0 then return true end
  if self.framing == "chunked" then
    return self:send(sfmt("%x\r\n", #data) .. data .. "\r\n")
  end
  return self:send(data)
end

function Conn:finish()
  if self.framing == "chunked" then return self:send("0\r\n\r\n") end
  return not self.dead
end

-- A whole response with Content-Length.
function Conn:respond(status, ctype, body, extra)
  local headers = {}
  local nobody = status == 204 or status == 304 or (status >= 100 and status < 200)
  if ctype and body and not nobody then headers[1] = { "Content-Type", ctype } end
  for _, h in ipairs(extra or {}) do headers[#headers + 1] = h end
  if nobody then return self:head(status, headers, "none") end
  body = body or ""
  if not self:head(status, headers, #body) then return nil end
  return self:send(body)
end

---------------------------------------------------------------------------
-- helpers
---------------------------------------------------------------------------

local function urldecode(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return schar(tonumber(h, 16)) end))
end

local function parse_query(qs)
  local q = {}
  if not qs then return q end
  for pair in qs:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=(.*)$")
    if not k then k, v = pair, "" end
    q[urldecode(k)] = urldecode(v)
  end
  return q
end

local function qnum(q, name, default)
  local v = tonumber(q[name])
  if v == nil then return default end
  return v
end

-- noct=1 on the streaming routes: no Content-Type header at all; ct2=V: a
-- second Content-Type header line with value V.
local function without_ct(q, headers)
  if q.noct == "1" then table.remove(headers, 1) end
  if q.ct2 then headers[#headers + 1] = { "Content-Type", q.ct2 } end
  return headers
end

-- Status and Content-Type overrides common to the streaming routes.
local function stream_head(c, req, default_ct, extra)
  local q = req.query
  local headers = without_ct(q, { { "Content-Type", q.ct or default_ct or "text/event-stream" },
                                  { "Cache-Control", "no-cache" } })
  for _, h in ipairs(extra or {}) do headers[#headers + 1] = h end
  return c:head(math.tointeger(qnum(q, "status", 200)) or 200, headers, "chunked")
end

-- CRC-32 (IEEE) and gzip with deflate stored blocks: valid, uncompressed gzip.
local CRC_TABLE = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do
    if c & 1 == 1 then c = 0xEDB88320 ~ (c >> 1) else c = c >> 1 end
  end
  CRC_TABLE[i] = c
end

local function crc32(s)
  local crc = 0xFFFFFFFF
  for i = 1, #s do
    crc = CRC_TABLE[(crc ~ sbyte(s, i)) & 0xFF] ~ (crc >> 8)
  end
  return crc ~ 0xFFFFFFFF
end

local function gzip_stored(data)
  local out = { "\31\139\8\0\0\0\0\0\0\255" } -- magic, deflate, no flags, mtime 0, xfl 0, OS unknown
  local n, i = #data, 1
  repeat
    local len = math.min(65535, n - i + 1)
    local final = (i + len > n) and 1 or 0
    out[#out + 1] = string.pack("<BI2I2", final, len, (~len) & 0xFFFF)
    out[#out + 1] = ssub(data, i, i + len - 1)
    i = i + len
  until i > n
  out[#out + 1] = string.pack("<I4I4", crc32(data), n & 0xFFFFFFFF)
  return concat(out)
end

local function count_events(q, req)
  local n = math.tointeger(qnum(q, "n", 3)) or 3
  local start = math.tointeger(qnum(q, "start", 1)) or 1
  if q.resume and req.headers["last-event-id"] then
    local last = math.tointeger(tonumber(req.headers["last-event-id"]))
    if last then start = last + 1 end
  end
  return n, start
end

local function event_text(q, id, data)
  local ev = q.event and ("event: " .. q.event .. "\n") or ""
  return ev .. "id: " .. id .. "\ndata: " .. data .. "\n\n"
end

local function jstr(s) return cjson.encode(s) end

---------------------------------------------------------------------------
-- routes: each returns nothing; set c.keep = false to close afterwards
---------------------------------------------------------------------------

-- Send body in pieces of `size` bytes, `delay` ms apart, and end the
-- response (unless the client went away).
local function send_pieces(c, body, size, delay)
  local i = 1
  while i <= #body do
    if i > 1 and delay > 0 and not c:sleep(delay) then return end
    if not c:chunk(ssub(body, i, i + size - 1)) then return end
    i = i + size
  end
  c:finish()
end

local routes = {}

routes["/sse"] = function(c, req)
  local q = req.query
  local body = q.body or ""
  local k = math.tointeger(qnum(q, "chunk", 0)) or 0
  if k <= 0 then k = math.max(#body, 1) end
  local delay = qnum(q, "delay", 0)
  local framing = q.framing or "chunked"
  local headers = without_ct(q, { { "Content-Type", q.ct or "text/event-stream" }, { "Cache-Control", "no-cache" } })
  local status = math.tointeger(qnum(q, "status", 200)) or 200
  if framing == "length" then framing = #body
  elseif framing ~= "close" then framing = "chunked" end
  if not c:head(status, headers, framing) then return end
  send_pieces(c, body, k, delay)
end

-- The body of /count (after the headers): retry:, then n events `delay` ms
-- apart, then the end of the response.
local function send_count(c, req)
  local q = req.query
  local n, start = count_events(q, req)
  local delay = qnum(q, "delay", 0)
  if q.retry and not c:chunk("retry: " .. q.retry .. "\n\n") then return end
  for i = start, start + n - 1 do
    if i > start and delay > 0 and not c:sleep(delay) then return end
    if not c:chunk(event_text(q, i, i)) then return end
  end
  c:finish()
end

routes["/count"] = function(c, req)
  if not stream_head(c, req) then return end
  send_count(c, req)
end

routes["/echo"] = function(c, req)
  local q = req.query
  local obj = {
    method = req.method, path = req.path, query = q, raw_query = req.raw_query or "",
    version = req.version, headers = req.headers, body = req.body or "",
  }
  -- cjson encodes an empty table as {} which is what we want for query/headers
  local json = cjson.encode(obj)
  if not stream_head(c, req) then return end
  if not c:chunk("data: " .. json .. "\n\n") then return end
  c:finish()
end

routes["/stall"] = function(c, req)
  c.keep = false
  if not stream_head(c, req) then return end
  if req.query.hello ~= "0" and not c:chunk("data: hello\n\n") then return end
  c:wait_closed()
end

routes["/drop"] = function(c, req)
  local q = req.query
  c.keep = false
  local delay = qnum(q, "delay", 0)
  local headers = { { "Content-Type", q.ct or "text/event-stream" }, { "Cache-Control", "no-cache" } }
  local status = math.tointeger(qnum(q, "status", 200)) or 200
  if q.mode == "length" then
    if not c:head(status, headers, 1000) then return end
    if not c:send("data: one\n\n") then return end
    if delay > 0 and not c:sleep(delay) then return end
    c:send("data: tw")
  else
    if not c:head(status, headers, "chunked") then return end
    if not c:chunk("data: one\n\n") then return end
    if delay > 0 and not c:sleep(delay) then return end
    c:chunk("data: tw")
  end
  -- returning with keep = false closes the socket: no terminating chunk
end

routes["/forever"] = function(c, req)
  local q = req.query
  c.keep = false
  local interval = qnum(q, "interval", 50)
  local _, i = count_events(q, req)
  if not stream_head(c, req) then return end
  if q.retry and not c:chunk("retry: " .. q.retry .. "\n\n") then return end
  while true do
    if not c:chunk(event_text(q, i, "tick " .. i)) then return end
    i = i + 1
    if not c:sleep(interval) then return end
  end
end

routes["/gzip"] = function(c, req)
  local q = req.query
  local n, start = count_events(q, req)
  local delay = qnum(q, "delay", 0)
  local parts = {}
  for i = start, start + n - 1 do parts[#parts + 1] = event_text(q, i, i) end
  local body = concat(parts)
  local ae = (req.headers["accept-encoding"] or ""):lower()
  local extra = { { "Vary", "Accept-Encoding" } }
  if ae:find("gzip", 1, true) then
    body = gzip_stored(body)
    extra[#extra + 1] = { "Content-Encoding", "gzip" }
  end
  if not stream_head(c, req, nil, extra) then return end
  local pieces = math.max(1, math.min(4, #body))
  send_pieces(c, body, -(-#body // pieces), delay)
end

routes["/redirect"] = function(c, req)
  local q = req.query
  local code = math.tointeger(qnum(q, "code", 302)) or 302
  c:respond(code, "text/plain", "", { { "Location", q.to or "/" } })
end

local big_cache = {}
routes["/big"] = function(c, req)
  local q = req.query
  local total = math.tointeger(qnum(q, "bytes", 1048576)) or 1048576
  local size = math.tointeger(qnum(q, "size", 1000)) or 1000
  if size < 0 then size = 0 end
  local event = "data: " .. srep("x", size) .. "\n\n"
  local per = math.max(1, 65536 // #event)
  if not stream_head(c, req) then return end
  local chunked = c.framing == "chunked"
  local key = size .. (chunked and "c" or "p")
  local frame = big_cache[key]
  local payload_len = per * #event
  if not frame then
    local payload = srep(event, per)
    frame = chunked and (sfmt("%x\r\n", #payload) .. payload .. "\r\n") or payload
    big_cache[key] = frame
  end
  local sent = 0
  while total - sent >= payload_len do
    if not c:send(frame) then return end
    sent = sent + payload_len
  end
  if sent < total then
    local k = -(-(total - sent) // #event)
    if not c:chunk(srep(event, k)) then return end
  end
  c:finish()
end

routes["/log"] = function(c, req)
  local e = tags[req.query.tag or ""] or { closed = false, requests = 0 }
  local feed = ""
  if e.last_event_ids then -- only once a /feed request carried the tag
    local ids = {}
    for i, v in ipairs(e.last_event_ids) do ids[i] = jstr(v) end
    local nconn = 0
    for _ in pairs(e.feed_conns) do nconn = nconn + 1 end
    feed = sfmt(',"last_event_ids":[%s],"connections":%d', concat(ids, ","), nconn)
  end
  c:respond(200, "application/json",
    sfmt('{"closed":%s,"requests":%d%s}', e.closed and "true" or "false", e.requests, feed))
end

-- A feed of events 1..n that drops the connection after drop_after events
-- and honours Last-Event-ID: a client that reconnects gets all n in the end,
-- and a 204 once it has them all (EventSource's "stop reconnecting").
routes["/feed"] = function(c, req)
  local q = req.query
  local n = math.tointeger(qnum(q, "n", 10)) or 10
  local drop_after = math.tointeger(tonumber(q.drop_after)) -- nil: never drop
  local delay = qnum(q, "delay", 0)
  local lei = req.headers["last-event-id"]
  if q.tag then
    local e = tag_entry(q.tag)
    e.last_event_ids = e.last_event_ids or {}
    e.feed_conns = e.feed_conns or {}
    e.last_event_ids[#e.last_event_ids + 1] = lei or ""
    e.feed_conns[c.id] = true
  end
  local start = 1
  local last = lei and math.tointeger(tonumber(lei))
  if last then start = last + 1 end
  if start > n then -- the client has every event: 204 tells EventSource to stop
    c:respond(204, nil, "")
    return
  end
  if not stream_head(c, req) then return end
  if q.retry and not c:chunk("retry: " .. q.retry .. "\n\n") then return end
  local sent = 0
  for i = start, n do
    if drop_after and sent >= drop_after then
      c.keep = false -- the socket is closed without the terminating chunk
      return
    end
    if sent > 0 and delay > 0 and not c:sleep(delay) then return end
    if not c:chunk(event_text(q, i, "event " .. i)) then return end
    sent = sent + 1
  end
  c:finish()
end

local function error_message(code)
  if code == 429 then return "rate limited" end
  return "status " .. code
end

-- The first `fail` requests per tag fail with `status`, later ones stream.
local flaky_counts = {}
routes["/flaky"] = function(c, req)
  local q = req.query
  local key = q.tag or ""
  local count = (flaky_counts[key] or 0) + 1
  flaky_counts[key] = count
  if count <= (math.tointeger(qnum(q, "fail", 1)) or 1) then
    local code = math.tointeger(qnum(q, "status", 503)) or 503
    local extra = {}
    if q.retry_after then extra[1] = { "Retry-After", q.retry_after } end
    c:respond(code, "application/json", sfmt('{"error":{"message":%s}}', jstr(error_message(code))), extra)
    return
  end
  if not c:head(200, { { "Content-Type", q.ct or "text/event-stream" }, { "Cache-Control", "no-cache" } },
    "chunked") then return end
  send_count(c, req)
end

routes["/headers"] = function(c, req)
  if not stream_head(c, req, nil, {
    { "X-Dup", "a" }, { "X-Dup", "b" }, { "X-Mixed-Case", "yes" },
  }) then return end
  if not c:chunk("data: ok\n\n") then return end
  c:finish()
end

routes["/__quit"] = function(c, req)
  c.keep = false
  c:respond(200, "text/plain", "bye\n")
  quitting = true
end

-- The hostile routes (/hostile/...) live in hostile.lua; see README.md.
do
  local dir = (arg and arg[0] or ""):match("^(.*[/\\])") or "./"
  dofile(dir .. "hostile.lua")(routes, { qnum = qnum, stream_head = stream_head,
    gzip_stored = gzip_stored, tag_entry = tag_entry, dir = dir })
end

local function status_route(c, req, code)
  local q = req.query
  local body = q.body or sfmt('{"error":{"message":"status %d"}}', code)
  local ct = q.ct or "application/json"
  local extra = {}
  if q.retry_after then extra[#extra + 1] = { "Retry-After", q.retry_after } end
  c:respond(code, ct, body, extra)
end

-- LLM routes: shared checks ------------------------------------------------

-- key=K: the request must carry "Authorization: Bearer K" (or, where
-- allow_x_api_key is set, Anthropic's "x-api-key: K").
local function auth_ok(req, allow_x_api_key)
  local key = req.query.key
  if not key then return true end
  local h = req.headers
  if h["authorization"] == "Bearer " .. key then return true end
  return allow_x_api_key and h["x-api-key"] == key or false
end

-- Per-tag counts of the LLM routes' hangup= and fail= (requests without a
-- tag share one count).
local llm_counts = {}
local function llm_count(q, what)
  local key = what .. "\0" .. (q.tag or "")
  llm_counts[key] = (llm_counts[key] or 0) + 1
  return llm_counts[key]
end

-- A count parameter (truncate, error_after, ...): nil when absent or < 0.
local function qcount(q, name)
  local v = math.tointeger(tonumber(q[name]))
  if v and v >= 0 then return v end
  return nil
end

-- The checks every LLM route makes before it reads the request body, in
-- this order. Returns true when it has answered (or hung up).
--   hangup=F  the first F requests (per tag) get no response at all: the
--             connection is closed (a client sees a network error)
--   key=K     see auth_ok; a 401 with auth_error
--   status=S  a non-2xx S is answered with error_body(S); with fail=F only
--             the first F requests (per tag) are, later ones stream
--   retry_after=R, retry_after_ms=MS, should_retry=true|false
--             add Retry-After, retry-after-ms, x-should-retry to that error
local function llm_gate(c, req, error_body, auth_error, allow_x_api_key)
  local q = req.query
  local hangup = qcount(q, "hangup")
  if hangup and llm_count(q, "hangup") <= hangup then
    c.keep = false
    return true -- the connection closes without a byte of response
  end
  if not auth_ok(req, allow_x_api_key) then
    c:respond(401, "application/json", auth_error)
    return true
  end
  local code = math.tointeger(qnum(q, "status", 200)) or 200
  if code >= 200 and code < 300 then return false end
  local fail = qcount(q, "fail")
  if fail and llm_count(q, "fail") > fail then return false end
  local extra = {}
  if q.retry_after then extra[#extra + 1] = { "Retry-After", q.retry_after } end
  if q.retry_after_ms then extra[#extra + 1] = { "retry-after-ms", q.retry_after_ms } end
  if q.should_retry then extra[#extra + 1] = { "x-should-retry", q.should_retry } end
  c:respond(code, q.ct or "application/json", error_body(code), extra)
  return true
end

-- The status of a normal answer: status= when it is 2xx (a non-2xx one
-- only gets here with fail=, once the failures are over).
local function ok_status(q)
  local code = math.tointeger(qnum(q, "status", 200)) or 200
  if code < 200 or code > 299 then code = 200 end
  return code
end

local function stream_ok(c, req, default_ct)
  local q = req.query
  local headers = without_ct(q, { { "Content-Type", q.ct or default_ct or "text/event-stream" },
                                  { "Cache-Control", "no-cache" } })
  return c:head(ok_status(q), headers, "chunked")
end

-- The whitespace-separated words of the string contents of `messages`
-- (a list of { content = "..." }), or of a string.
local function count_words(v)
  local n = 0
  if type(v) == "string" then
    for _ in v:gmatch("%S+") do n = n + 1 end
  elseif type(v) == "table" then
    for _, m in ipairs(v) do
      if type(m) == "table" and type(m.content) == "string" then
        for _ in m.content:gmatch("%S+") do n = n + 1 end
      end
    end
  end
  return n
end

local function prompt_tokens(obj)
  return count_words(obj.messages)
end

local function decode_body(c, req)
  local obj = cjson_safe.decode(req.body or "")
  if type(obj) ~= "table" then
    c:respond(400, "application/json",
      '{"error":{"message":"request body is not a JSON object","type":"invalid_request_error"}}')
    return nil
  end
  return obj
end

-- The tool calls' arguments, whole: '{"city":"Paris","unit":"c"}'.
local function call_arguments(call) return concat(call.pieces) end

-- echo=1: the answer is the request body itself, as one token (to see what
-- a client sent).
local function answer_tokens(req)
  if req.query.echo == "1" then return { req.body or "" } end
  return CANNED_TOKENS
end

-- OpenAI-compatible chat completions ---------------------------------------

local function chat_chunk(model, delta, finish)
  return sfmt('data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,'
    .. '"model":%s,"choices":[{"index":0,"delta":%s,"finish_reason":%s}]}\n\n',
    jstr(model), delta, finish and jstr(finish) or "null")
end

local CHAT_ERROR_EVENT =
  'data: {"error":{"message":"stub: overloaded","type":"server_error","code":"overloaded"}}\n\n'

local function openai_error(code)
  return sfmt('{"error":{"message":%s}}', jstr(error_message(code)))
end

-- The stream of a chat answer: the first delta, then items {delta, counts}
-- (counts: the item is a token for truncate/error_after/usage), then the
-- finish reason and how many reasoning tokens came first.
local function chat_plan(q, tokens)
  local items = {}
  local nreason = 0
  if q.reasoning == "1" then
    local field = q.reasoning_field == "reasoning" and "reasoning" or "reasoning_content"
    for _, tok in ipairs(CANNED_REASONING) do
      items[#items + 1] = { sfmt('{"content":null,"%s":%s}', field, jstr(tok)), false }
      nreason = nreason + 1
    end
  end
  if q.tools == "1" then
    local first
    for idx, call in ipairs(TOOL_CALL_PIECES) do
      local head = sfmt('{"index":%d,"id":%s,"type":"function","function":{"name":%s,"arguments":""}}',
        idx - 1, jstr(call.id), jstr(call.name))
      if idx == 1 and nreason == 0 then
        first = '{"role":"assistant","content":null,"tool_calls":[' .. head .. ']}'
      else
        items[#items + 1] = { '{"tool_calls":[' .. head .. ']}', false }
      end
      for _, piece in ipairs(call.pieces) do
        items[#items + 1] = { sfmt('{"tool_calls":[{"index":%d,"function":{"arguments":%s}}]}',
          idx - 1, jstr(piece)), true }
      end
    end
    return first or '{"role":"assistant","content":null}', items, "tool_calls", nreason
  end
  for _, tok in ipairs(tokens) do items[#items + 1] = { '{"content":' .. jstr(tok) .. '}', true } end
  return '{"role":"assistant","content":""}', items, "stop", nreason
end

local function chat_message_json(q, tokens)
  if q.tools ~= "1" then
    return '{"role":"assistant","content":' .. jstr(concat(tokens)) .. '}', #tokens
  end
  local calls, n = {}, 0
  for i, call in ipairs(TOOL_CALL_PIECES) do
    calls[i] = sfmt('{"id":%s,"type":"function","function":{"name":%s,"arguments":%s}}',
      jstr(call.id), jstr(call.name), jstr(call_arguments(call)))
    n = n + #call.pieces
  end
  return '{"role":"assistant","content":null,"tool_calls":[' .. concat(calls, ",") .. ']}', n
end

local function chat_route(c, req)
  local q = req.query
  if llm_gate(c, req, openai_error, '{"error":{"message":"invalid api key"}}') then return end
  local obj = decode_body(c, req)
  if not obj then return end
  local model = type(obj.model) == "string" and obj.model or "stub"
  local delay = qnum(q, "delay", 30)
  local truncate, error_after = qcount(q, "truncate"), qcount(q, "error_after")
  local ptok = prompt_tokens(obj)
  if obj.stream ~= true then
    local message, ntok = chat_message_json(q, answer_tokens(req))
    local body = sfmt('{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,'
      .. '"model":%s,"choices":[{"index":0,"message":%s,'
      .. '"finish_reason":%s}],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}',
      jstr(model), message, jstr(q.tools == "1" and "tool_calls" or "stop"), ptok, ntok, ptok + ntok)
    c:respond(ok_status(q), q.ct or "application/json", body)
    return
  end
  local first, items, finish, nreason = chat_plan(q, answer_tokens(req))
  if not stream_ok(c, req) then return end
  if not c:chunk(chat_chunk(model, first)) then return end
  local ntok = 0
  for _, item in ipairs(items) do
    if item[2] and truncate and ntok >= truncate then return c:finish() end
    if item[2] and error_after and ntok >= error_after then break end
    if delay > 0 and not c:sleep(delay) then return end
    if not c:chunk(chat_chunk(model, item[1])) then return end
    if item[2] then ntok = ntok + 1 end
  end
  if error_after and ntok >= error_after then
    if not c:chunk(CHAT_ERROR_EVENT) then return end
    return c:finish()
  end
  if not c:chunk(chat_chunk(model, "{}", finish)) then return end
  local so = obj.stream_options
  if type(so) == "table" and so.include_usage == true then
    local details = nreason > 0 and sfmt(',"completion_tokens_details":{"reasoning_tokens":%d}', nreason) or ""
    if not c:chunk(sfmt('data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,'
      .. '"model":%s,"choices":[],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d%s}}\n\n',
      jstr(model), ptok, ntok + nreason, ptok + ntok + nreason, details)) then return end
  end
  if not c:chunk("data: [DONE]\n\n") then return end
  c:finish()
end

-- OpenAI Responses API -------------------------------------------------------

local function responses_route(c, req)
  local q = req.query
  if llm_gate(c, req, openai_error, '{"error":{"message":"invalid api key"}}') then return end
  local obj = decode_body(c, req)
  if not obj then return end
  local model = jstr(type(obj.model) == "string" and obj.model or "stub")
  local delay = qnum(q, "delay", 30)
  local truncate, error_after, incomplete = qcount(q, "truncate"), qcount(q, "error_after"), qcount(q, "incomplete")
  local ptok = count_words(obj.input)
  local tokens = answer_tokens(req)
  local seq = -1
  local function ev(data)
    seq = seq + 1
    local name = data:match('^{"type":"([^"]+)"')
    return c:chunk(sfmt("event: %s\ndata: %s,\"sequence_number\":%d}\n\n", name, data:sub(1, -2), seq))
  end
  local function response(status, output, usage, extra)
    return sfmt('{"id":"resp_1","object":"response","created_at":1700000000,"status":"%s","model":%s,'
      .. '"output":[%s],"usage":%s%s}', status, model, concat(output, ","), usage or "null", extra or "")
  end
  local function usage(n, r)
    return sfmt('{"input_tokens":%d,"input_tokens_details":{"cached_tokens":0},"output_tokens":%d,'
      .. '"output_tokens_details":{"reasoning_tokens":%d},"total_tokens":%d}', ptok, n + r, r, ptok + n + r)
  end
  local reasoning_item = sfmt('{"id":"rs_1","type":"reasoning","summary":[{"type":"summary_text","text":%s}]}',
    jstr(concat(CANNED_REASONING)))
  local message_item = sfmt('{"id":"msg_1","type":"message","status":"completed","role":"assistant",'
    .. '"content":[{"type":"output_text","text":%s,"annotations":[]}]}', jstr(concat(tokens)))
  local function call_item(i, call, status, arguments)
    return sfmt('{"id":"fc_%d","type":"function_call","status":"%s","call_id":%s,"name":%s,"arguments":%s}',
      i, status, jstr(call.id), jstr(call.name), jstr(arguments))
  end
  if obj.stream ~= true then
    local output = {}
    if q.reasoning == "1" then output[#output + 1] = reasoning_item end
    local n = 0
    if q.tools == "1" then
      for i, call in ipairs(TOOL_CALL_PIECES) do
        output[#output + 1] = call_item(i, call, "completed", call_arguments(call))
        n = n + #call.pieces
      end
    else
      output[#output + 1] = message_item
      n = #tokens
    end
    local r = q.reasoning == "1" and #CANNED_REASONING or 0
    c:respond(ok_status(q), q.ct or "application/json", response("completed", output, usage(n, r)))
    return
  end
  if not stream_ok(c, req) then return end
  local inprogress = response("in_progress", {})
  if not ev('{"type":"response.created","response":' .. inprogress .. '}') then return end
  if not ev('{"type":"response.in_progress","response":' .. inprogress .. '}') then return end
  local output, index, ntok, nreason = {}, 0, 0, 0
  local function pause() return delay <= 0 or c:sleep(delay) end
  -- nil: go on; "stop": a count was reached (ntok is where)
  local function token_gate()
    if truncate and ntok >= truncate then return "truncate" end
    if error_after and ntok >= error_after then return "error" end
    if incomplete and ntok >= incomplete then return "incomplete" end
  end
  local stop
  if q.reasoning == "1" then
    if not ev(sfmt('{"type":"response.output_item.added","output_index":%d,'
      .. '"item":{"id":"rs_1","type":"reasoning","summary":[]}}', index)) then return end
    if not ev(sfmt('{"type":"response.reasoning_summary_part.added","item_id":"rs_1","output_index":%d,'
      .. '"summary_index":0,"part":{"type":"summary_text","text":""}}', index)) then return end
    for _, tok in ipairs(CANNED_REASONING) do
      if not pause() then return end
      if not ev(sfmt('{"type":"response.reasoning_summary_text.delta","item_id":"rs_1","output_index":%d,'
        .. '"summary_index":0,"delta":%s}', index, jstr(tok))) then return end
      nreason = nreason + 1
    end
    local text = jstr(concat(CANNED_REASONING))
    if not ev(sfmt('{"type":"response.reasoning_summary_text.done","item_id":"rs_1","output_index":%d,'
      .. '"summary_index":0,"text":%s}', index, text)) then return end
    if not ev(sfmt('{"type":"response.reasoning_summary_part.done","item_id":"rs_1","output_index":%d,'
      .. '"summary_index":0,"part":{"type":"summary_text","text":%s}}', index, text)) then return end
    if not ev(sfmt('{"type":"response.output_item.done","output_index":%d,"item":%s}', index, reasoning_item)) then
      return
    end
    output[#output + 1] = reasoning_item
    index = index + 1
  end
  if q.tools == "1" then
    for i, call in ipairs(TOOL_CALL_PIECES) do
      if stop then break end
      local id = "fc_" .. i
      if not ev(sfmt('{"type":"response.output_item.added","output_index":%d,"item":%s}',
        index, call_item(i, call, "in_progress", ""))) then return end
      for _, piece in ipairs(call.pieces) do
        stop = token_gate()
        if stop then break end
        if not pause() then return end
        if not ev(sfmt('{"type":"response.function_call_arguments.delta","item_id":"%s","output_index":%d,'
          .. '"delta":%s}', id, index, jstr(piece))) then return end
        ntok = ntok + 1
      end
      if not stop then
        local args = call_arguments(call)
        if not ev(sfmt('{"type":"response.function_call_arguments.done","item_id":"%s","output_index":%d,'
          .. '"arguments":%s}', id, index, jstr(args))) then return end
        local item = call_item(i, call, "completed", args)
        if not ev(sfmt('{"type":"response.output_item.done","output_index":%d,"item":%s}', index, item)) then
          return
        end
        output[#output + 1] = item
        index = index + 1
      end
    end
  else
    if not ev(sfmt('{"type":"response.output_item.added","output_index":%d,"item":{"id":"msg_1",'
      .. '"type":"message","status":"in_progress","role":"assistant","content":[]}}', index)) then return end
    if not ev(sfmt('{"type":"response.content_part.added","item_id":"msg_1","output_index":%d,'
      .. '"content_index":0,"part":{"type":"output_text","text":"","annotations":[]}}', index)) then return end
    local sent = {}
    for _, tok in ipairs(tokens) do
      stop = token_gate()
      if stop then break end
      if not pause() then return end
      if not ev(sfmt('{"type":"response.output_text.delta","item_id":"msg_1","output_index":%d,'
        .. '"content_index":0,"delta":%s,"logprobs":[]}', index, jstr(tok))) then return end
      ntok = ntok + 1
      sent[#sent + 1] = tok
    end
    if not stop then
      local text = jstr(concat(sent))
      if not ev(sfmt('{"type":"response.output_text.done","item_id":"msg_1","output_index":%d,'
        .. '"content_index":0,"text":%s,"logprobs":[]}', index, text)) then return end
      if not ev(sfmt('{"type":"response.content_part.done","item_id":"msg_1","output_index":%d,'
        .. '"content_index":0,"part":{"type":"output_text","text":%s,"annotations":[]}}', index, text)) then
        return
      end
      if not ev(sfmt('{"type":"response.output_item.done","output_index":%d,"item":%s}',
        index, message_item)) then return end
      output[#output + 1] = message_item
    elseif stop == "incomplete" then -- the message as far as it went
      output[#output + 1] = sfmt('{"id":"msg_1","type":"message","status":"incomplete","role":"assistant",'
        .. '"content":[{"type":"output_text","text":%s,"annotations":[]}]}', jstr(concat(sent)))
    end
  end
  stop = stop or token_gate() -- a count at the very end still applies (as on the other routes)
  if stop == "truncate" then return c:finish() end
  if stop == "error" then
    if q.error_event == "1" then
      if not ev('{"type":"error","code":"server_error","message":"stub: overloaded","param":null}') then return end
    else
      if not ev('{"type":"response.failed","response":' .. response("failed", output, "null",
        ',"error":{"code":"server_error","message":"stub: overloaded"}') .. '}') then return end
    end
    return c:finish()
  end
  if stop == "incomplete" then
    if not ev('{"type":"response.incomplete","response":' .. response("incomplete", output, usage(ntok, nreason),
      ',"incomplete_details":{"reason":"max_output_tokens"}') .. '}') then return end
    return c:finish()
  end
  if not ev('{"type":"response.completed","response":' .. response("completed", output, usage(ntok, nreason))
    .. '}') then return end
  c:finish()
end

-- Anthropic Messages API ------------------------------------------------------

local function anthropic_error(code)
  local kind = (code == 429 and "rate_limit_error") or (code == 529 and "overloaded_error")
    or (code == 401 and "authentication_error") or "api_error"
  return sfmt('{"type":"error","error":{"type":"%s","message":%s}}', kind, jstr(error_message(code)))
end

local function anthropic_route(c, req)
  local q = req.query
  if llm_gate(c, req, anthropic_error,
    '{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}', true) then
    return
  end
  local obj = decode_body(c, req)
  if not obj then return end
  local model = type(obj.model) == "string" and obj.model or "stub"
  local delay = qnum(q, "delay", 30)
  local truncate, error_after = qcount(q, "truncate"), qcount(q, "error_after")
  local ptok = prompt_tokens(obj)
  local tokens = answer_tokens(req)
  if obj.stream ~= true then
    local body = sfmt('{"id":"msg_1","type":"message","role":"assistant","model":%s,'
      .. '"content":[{"type":"text","text":%s}],"stop_reason":"end_turn","stop_sequence":null,'
      .. '"usage":{"input_tokens":%d,"output_tokens":%d}}', jstr(model), jstr(concat(tokens)), ptok,
      #tokens)
    c:respond(ok_status(q), q.ct or "application/json", body)
    return
  end
  local function ev(name, data) return c:chunk("event: " .. name .. "\ndata: " .. data .. "\n\n") end
  local function delta(index, d)
    return ev("content_block_delta", sfmt('{"type":"content_block_delta","index":%d,"delta":%s}', index, d))
  end
  if not stream_ok(c, req) then return end
  if not ev("message_start", sfmt('{"type":"message_start","message":{"id":"msg_1","type":"message",'
    .. '"role":"assistant","content":[],"model":%s,"stop_reason":null,"stop_sequence":null,'
    .. '"usage":{"input_tokens":%d,"output_tokens":1}}}', jstr(model), ptok)) then return end
  local index, nreason = 0, 0
  if q.reasoning == "1" then
    if not ev("content_block_start", '{"type":"content_block_start","index":0,'
      .. '"content_block":{"type":"thinking","thinking":""}}') then return end
    for _, tok in ipairs(CANNED_REASONING) do
      if delay > 0 and not c:sleep(delay) then return end
      if not delta(0, '{"type":"thinking_delta","thinking":' .. jstr(tok) .. '}') then return end
      nreason = nreason + 1
    end
    if not delta(0, '{"type":"signature_delta","signature":"c3R1Yi1zaWduYXR1cmU="}') then return end
    if not ev("content_block_stop", '{"type":"content_block_stop","index":0}') then return end
    index = 1
  end
  -- the answer: text deltas, or tool_use blocks whose input arrives in pieces
  local ntok, stop = 0, nil
  local function gate()
    if truncate and ntok >= truncate then return "truncate" end
    if error_after and ntok >= error_after then return "error" end
  end
  if q.tools == "1" then
    for _, call in ipairs(TOOL_CALL_PIECES) do
      if stop then break end
      if not ev("content_block_start", sfmt('{"type":"content_block_start","index":%d,'
        .. '"content_block":{"type":"tool_use","id":%s,"name":%s,"input":{}}}', index, jstr(call.id),
        jstr(call.name))) then return end
      if not delta(index, '{"type":"input_json_delta","partial_json":""}') then return end
      for _, piece in ipairs(call.pieces) do
        stop = gate()
        if stop then break end
        if delay > 0 and not c:sleep(delay) then return end
        if not delta(index, '{"type":"input_json_delta","partial_json":' .. jstr(piece) .. '}') then return end
        ntok = ntok + 1
      end
      if not stop then
        if not ev("content_block_stop", sfmt('{"type":"content_block_stop","index":%d}', index)) then return end
        index = index + 1
      end
    end
  else
    if not ev("content_block_start", sfmt('{"type":"content_block_start","index":%d,'
      .. '"content_block":{"type":"text","text":""}}', index)) then return end
    if not ev("ping", '{"type":"ping"}') then return end
    for _, tok in ipairs(tokens) do
      stop = gate()
      if stop then break end
      if delay > 0 and not c:sleep(delay) then return end
      if not delta(index, '{"type":"text_delta","text":' .. jstr(tok) .. '}') then return end
      ntok = ntok + 1
    end
    if not stop and not ev("content_block_stop", sfmt('{"type":"content_block_stop","index":%d}', index)) then
      return
    end
  end
  stop = stop or gate()
  if stop == "truncate" then return c:finish() end
  if stop == "error" then
    if not ev("error", '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}') then return end
    return c:finish()
  end
  if not ev("message_delta", sfmt('{"type":"message_delta","delta":{"stop_reason":"%s",'
    .. '"stop_sequence":null},"usage":{"output_tokens":%d}}', q.tools == "1" and "tool_use" or "end_turn",
    ntok + nreason)) then return end
  if not ev("message_stop", '{"type":"message_stop"}') then return end
  c:finish()
end

-- Ollama native chat (NDJSON) ----------------------------------------------------

local OLLAMA_CREATED = "2024-01-01T00:00:00Z"
-- The durations of the final line, in nanoseconds, as Ollama reports them.
local OLLAMA_DURATIONS = { total = 123456789, load = 1234567, prompt_eval = 2345678, eval = 98765432 }

local function ollama_error(code)
  return sfmt('{"error":%s}', jstr(error_message(code)))
end

local function ollama_route(c, req)
  local q = req.query
  if llm_gate(c, req, ollama_error, '{"error":"invalid api key"}') then return end
  local obj = cjson_safe.decode(req.body or "")
  if type(obj) ~= "table" then
    c:respond(400, "application/json", '{"error":"request body is not a JSON object"}')
    return
  end
  local model = jstr(type(obj.model) == "string" and obj.model or "stub")
  local function message_line(fields)
    return sfmt('{"model":%s,"created_at":"%s","message":{"role":"assistant",%s},"done":false}\n',
      model, OLLAMA_CREATED, fields)
  end
  -- lines: { text, counts } where counts marks a token line (truncate, error_after)
  local lines, nreason, ntok = {}, 0, 0
  local tokens = answer_tokens(req)
  if q.reasoning == "1" then
    for _, tok in ipairs(CANNED_REASONING) do
      lines[#lines + 1] = { message_line('"content":"","thinking":' .. jstr(tok)), false }
      nreason = nreason + 1
    end
  end
  if q.tools == "1" then
    for _, call in ipairs(TOOL_CALL_PIECES) do
      lines[#lines + 1] = { message_line(sfmt('"content":"","tool_calls":[{"function":{"name":%s,"arguments":%s}}]',
        jstr(call.name), call_arguments(call))), true }
      ntok = ntok + 1
    end
  else
    for _, tok in ipairs(tokens) do
      lines[#lines + 1] = { message_line('"content":' .. jstr(tok)), true }
      ntok = ntok + 1
    end
  end
  local ptok = prompt_tokens(obj)
  local function final_line(content)
    local d = OLLAMA_DURATIONS
    return sfmt('{"model":%s,"created_at":"%s","message":{"role":"assistant","content":%s},'
      .. '"done":true,"done_reason":"stop","total_duration":%d,"load_duration":%d,"prompt_eval_count":%d,'
      .. '"prompt_eval_duration":%d,"eval_count":%d,"eval_duration":%d}\n', model, OLLAMA_CREATED, jstr(content),
      d.total, d.load, ptok, d.prompt_eval, ntok + nreason, d.eval)
  end
  if obj.stream == false then -- Ollama streams unless told not to
    c:respond(ok_status(q), q.ct or "application/json",
      (final_line(concat(tokens)):gsub("\n$", "")))
    return
  end
  local delay = qnum(q, "delay", 30)
  local split_delay = qnum(q, "split_delay", 10)
  local truncate, error_after = qcount(q, "truncate"), qcount(q, "error_after")
  local bad_line = math.tointeger(tonumber(q.bad_line))
  lines[#lines + 1] = { final_line(""), false }
  if bad_line and lines[bad_line] then lines[bad_line][1] = "this is not json\n" end
  local function send_line(line)
    if q.split ~= "1" or #line < 2 then return c:chunk(line) end
    local half = #line // 2
    if not c:chunk(ssub(line, 1, half)) then return nil end
    if split_delay > 0 and not c:sleep(split_delay) then return nil end
    return c:chunk(ssub(line, half + 1))
  end
  if not stream_ok(c, req, "application/x-ndjson") then return end
  local sent = 0 -- token lines sent
  for i, line in ipairs(lines) do
    local last = i == #lines
    if (line[2] or last) and truncate and sent >= truncate and truncate < ntok then return c:finish() end
    if (line[2] or last) and error_after and sent >= error_after and error_after <= ntok then
      if not send_line('{"error":"stub: overloaded"}\n') then return end
      return c:finish()
    end
    if i > 1 and delay > 0 and not c:sleep(delay) then return end
    if not send_line(line[1]) then return end
    if line[2] then sent = sent + 1 end
  end
  c:finish()
end

local function post_only(c, req)
  if req.method == "POST" then return true end
  c:respond(405, "application/json", '{"error":{"message":"use POST"}}', { { "Allow", "POST" } })
  return false
end

local function dispatch(c, req)
  local path = req.path
  local h = routes[path]
  if h then return h(c, req) end
  local code = path:match("^/status/(%d%d%d)$")
  if code then return status_route(c, req, tonumber(code)) end
  if path:sub(-17) == "/chat/completions" then
    return post_only(c, req) and chat_route(c, req)
  end
  if path:sub(-10) == "/responses" then
    return post_only(c, req) and responses_route(c, req)
  end
  if path:sub(-12) == "/v1/messages" then
    return post_only(c, req) and anthropic_route(c, req)
  end
  if path == "/api/chat" then
    return post_only(c, req) and ollama_route(c, req)
  end
  c:respond(404, "application/json", sfmt('{"error":{"message":"no route for %s"}}', (path:gsub('[%c"\\]', "?"))))
end

---------------------------------------------------------------------------
-- HTTP/1.1 request reading and the connection loop
---------------------------------------------------------------------------

local MAX_HEAD = 65536
local KEEPALIVE_IDLE = 15 -- seconds an idle keep-alive connection is kept

local function read_request(c, first)
  local deadline = now() + (first and 30 or KEEPALIVE_IDLE)
  local line, err
  repeat -- tolerate stray empty lines between requests
    line, err = c:readline(MAX_HEAD, deadline)
    if not line then return nil, err end
  until line ~= ""
  local method, target, version = line:match("^(%u+) (%S+) (HTTP/%d%.%d)$")
  if not method then return nil, "bad request line" end
  local req = { method = method, target = target, version = version, headers = {}, header_list = {} }
  local size = #line
  while true do
    line, err = c:readline(MAX_HEAD, deadline)
    if not line then return nil, err end
    if line == "" then break end
    size = size + #line
    if size > MAX_HEAD then return nil, "headers too large" end
    local name, value = line:match("^([^:%s]+):%s*(.-)%s*$")
    if name then
      name = name:lower()
      req.header_list[#req.header_list + 1] = { name, value }
      local old = req.headers[name]
      req.headers[name] = old and (old .. ", " .. value) or value
    end
  end
  local path, qs = target:match("^([^?]*)%??(.*)$")
  if sfind(target, "^https?://") then -- absolute form (proxies)
    path = path:gsub("^https?://[^/]*", "")
    if path == "" then path = "/" end
  end
  req.path = path
  req.raw_query = (sfind(target, "?", 1, true) and qs) or nil
  req.query = parse_query(req.raw_query)

  -- body
  local h = req.headers
  local te = h["transfer-encoding"]
  local cl = h["content-length"] and tonumber(h["content-length"])
  local expects_body = (te and te:lower():find("chunked", 1, true)) or (cl and cl > 0)
  if expects_body and (h["expect"] or ""):lower() == "100-continue" then
    if not c:send("HTTP/1.1 100 Continue\r\n\r\n") then return nil, "closed" end
  end
  if te and te:lower():find("chunked", 1, true) then
    local parts = {}
    while true do
      line, err = c:readline(1024)
      if not line then return nil, err end
      local n = tonumber(line:match("^%s*(%x+)"), 16)
      if not n then return nil, "bad chunk size" end
      if n == 0 then
        repeat -- trailers
          line, err = c:readline(MAX_HEAD)
          if not line then return nil, err end
        until line == ""
        break
      end
      local data
      data, err = c:read(n)
      if not data then return nil, err end
      parts[#parts + 1] = data
      line, err = c:readline(16) -- CRLF after the chunk data
      if not line then return nil, err end
    end
    req.body = concat(parts)
  elseif cl and cl > 0 then
    local data
    data, err = c:read(cl)
    if not data then return nil, err end
    req.body = data
  else
    req.body = ""
  end
  return req
end

local function connection(sock)
  local c = new_conn(sock)
  local first = true
  while not c.dead and not quitting do
    local req, err = read_request(c, first)
    first = false
    if not req then
      if err ~= "closed" and err ~= "idle" and not c.dead then
        c.keep = false
        c:respond(400, "text/plain", "bad request: " .. tostring(err) .. "\n")
      end
      break
    end
    log("%s %s", req.method, req.target)
    c.http10 = req.version == "HTTP/1.0"
    local conn_hdr = (req.headers["connection"] or ""):lower()
    if c.http10 then
      c.keep = conn_hdr:find("keep-alive", 1, true) ~= nil
    else
      c.keep = not conn_hdr:find("close", 1, true)
    end
    local tag = req.query.tag
    if tag and req.path ~= "/log" then
      tag_entry(tag).requests = tag_entry(tag).requests + 1
      c.tag = tag
    else
      c.tag = nil
    end
    local wait = tonumber(req.query.wait)
    if wait and wait > 0 and req.path ~= "/log" and req.path ~= "/__quit" then
      if not c:sleep(wait) then break end
    end
    c.framing = nil
    dispatch(c, req)
    c.tag = nil
    if not c.keep or c.dead then break end
  end
  -- the scheduler closes the socket when this coroutine ends
end

---------------------------------------------------------------------------
-- main
---------------------------------------------------------------------------

local server = assert(socket.tcp())
server:setoption("reuseaddr", true)
assert(server:bind("127.0.0.1", 0))
assert(server:listen(1024))
server:settimeout(0)
local _, port = server:getsockname()
io.stdout:write("PORT ", port, "\n")
io.stdout:flush()

local deadline = now() + lifetime

-- With --watch-parent, exit once our parent process is gone (we get
-- re-parented), so a crashed test run does not leave the server behind.
local function read_ppid()
  local f = io.open("/proc/self/stat", "r")
  if not f then return nil end
  local stat = f:read("a")
  f:close()
  return tonumber(stat:match("%)%s+%S+%s+(%d+)"))
end
if watch_parent then
  local ppid0 = read_ppid()
  if ppid0 then
    spawn(function()
      while true do
        co_yield({ t = 1 })
        if read_ppid() ~= ppid0 then
          log("parent %d is gone", ppid0)
          quitting = true
          return
        end
      end
    end)
  end
end
log("listening on 127.0.0.1:%s for %ss", port, lifetime)

local function accept_all()
  while true do
    local client = server:accept()
    if not client then return end
    client:settimeout(0)
    client:setoption("tcp-nodelay", true)
    spawn(connection, client)
  end
end

while not quitting do
  local t = now()
  while heap_n > 0 and heap[1].at <= t do
    local e = heap_pop()
    if e.wid == e.task.wid then resume(e.task, "timeout") end
    if quitting then break end
  end
  if quitting or t >= deadline then break end
  local timeout = deadline - t
  if heap_n > 0 and heap[1].at - t < timeout then timeout = heap[1].at - t end
  if timeout < 0 then timeout = 0 end
  local recvt, sendt = { server }, {}
  for s in pairs(readers) do recvt[#recvt + 1] = s end
  for s in pairs(writers) do sendt[#sendt + 1] = s end
  local rr, ww, err = socket.select(recvt, sendt, timeout)
  if err and err ~= "timeout" then
    io.stderr:write("stub server: select: ", tostring(err), "\n")
    socket.sleep(0.01)
  end
  for _, s in ipairs(rr) do
    if s == server then
      accept_all()
    else
      local task = readers[s]
      if task then resume(task, "read") end
    end
    if quitting then break end
  end
  if not quitting then
    for _, s in ipairs(ww) do
      local task = writers[s]
      if task then resume(task, "write") end
      if quitting then break end
    end
  end
end

log("exiting (%s)", quitting and "quit" or "lifetime")
server:close()
for s in pairs(readers) do pcall(s.close, s) end
for s in pairs(writers) do pcall(s.close, s) end
os.exit(0)
