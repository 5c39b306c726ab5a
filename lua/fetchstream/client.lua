--- Clients: one curl multi handle each, driving any number of streams.
-- `fetch.open`, `fetch.events`, `fetch.stream`, `fetch.run`, ... are the
-- methods of a default client; `fetch.client()` makes another.
-- @module fetchstream.client

local core = require "fetchstream.core"
local request = require "fetchstream.request"
local stream = require "fetchstream.stream"
local chat = require "fetchstream.chat"
local json = require "fetchstream.json"

local error, next, pairs, tostring, type = error, next, pairs, tostring, type
local now = core.now
local usage = require("fetchstream.options").usage

local _M = {}

local Client = core.Client.methods

--- A new client.
function _M.new()
  local c = core.client()
  c._active = {} -- callback streams still running (kept alive here)
  c._dispatching = false -- inside a user callback
  c._stepping = false -- inside _step
  return c
end

-- Does a callback stream read events? With an event handler, a retry or
-- comment hook, or reconnection (which follows the event IDs) it does; with
-- onchunk alone it takes any body.
local function callback_events(opts)
  return opts.onmessage ~= nil or opts.on ~= nil or opts.onretry ~= nil
    or opts.oncomment ~= nil or (opts.reconnect ~= nil and opts.reconnect ~= false)
end

--- Start a transfer. `want` is what a pull stream reads ("events", "chunks",
-- "lines" or nil until a reader says); `callbacks` makes a callback stream.
function Client:_start(fname, url, opts, callbacks, want)
  if core.is_closed(self) then usage("attempt to use a closed client ('%s')", fname) end
  local events = callbacks and callback_events(type(opts) == "table" and opts or {}) or want == "events"
  local req, checked = request.build(fname, url, opts, callbacks, events and "text/event-stream" or nil)
  request.set_last_event_id(req, checked.last_event_id)
  local s, err = core.stream_start(self, req)
  if not s then error(err, 0) end
  s._client = self
  s._opts = checked
  s._queue = stream.queue()
  s._partial = { size = 0 } -- a line not ended yet, in pieces (lines readers)
  -- "raw": a callback stream that only wants onchunk still reads its body.
  s._want = events and "events" or callbacks and "raw" or want
  s._max = checked.max_event_size or request.DEFAULT_MAX_EVENT_SIZE
  s.last_event_id = checked.last_event_id or ""
  s._req = req
  s._t0 = now() -- `timeout` covers every connection of a reconnecting stream
  s._reconnect = request.reconnect_policy(checked.reconnect)
  s._parser = stream.new_parser(s)
  if callbacks then
    s._callbacks = checked
    self._active[s] = true
  end
  return s
end

--- Move every transfer forward without blocking and deliver what arrived to
-- the callback streams.
function Client:_step()
  local was = self._stepping
  self._stepping = true
  core.client_perform(self)
  local list, n = {}, 0
  for s in pairs(self._active) do -- a snapshot: callbacks may start streams
    n = n + 1
    list[n] = s
  end
  for i = 1, n do
    local s = list[i]
    while stream.advance(s) do end
  end
  self._stepping = was
end

local function raise_pending(c)
  local err = c._raise
  if err ~= nil then
    c._raise = nil
    error(err, 0)
  end
end

--- `c:run([timeout])`: drive every callback stream until all have ended.
-- Returns true, or false when `timeout` seconds passed first. Raises an
-- error thrown by an onclose/onerror/onabort callback, after its stream ended.
function Client:run(timeout)
  if core.is_closed(self) then usage("attempt to use a closed client ('run')") end
  if self._dispatching then usage("run() cannot be called from inside a callback") end
  if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0) then
    usage("bad argument #1 to 'run' (seconds expected, got %s)", tostring(timeout))
  end
  local deadline = timeout and now() + timeout
  while true do
    self:_step()
    raise_pending(self)
    if next(self._active) == nil then return true end
    if deadline and now() >= deadline then return false end
    local wake = deadline
    for s in pairs(self._active) do wake = stream.wake_time(s, wake) end
    core.client_wait(self, wake and wake - now() or 60)
  end
end

--- `c:stream(url, opts)`: a stream that delivers to callbacks (see README).
function Client:stream(url, opts)
  return self:_start("stream", url, opts, true)
end

local function accepted(s) return s._response and not s._refused end

--- `c:open(url, opts)`: a stream once its response headers are in, or
-- nil, err (http for a non-2xx status, network, timeout).
function Client:open(url, opts)
  if self._dispatching then usage("'open' cannot wait for a response from inside a callback") end
  local s = self:_start("open", url, opts, false, nil)
  stream.wait_for(s, nil, accepted)
  if s.reason and s.error then
    local err = s.error
    s:close()
    return nil, err
  end
  return s
end

local function iterate(self, fname, url, opts, want, step)
  local s = self:_start(fname, url, opts, false, want)
  return step, s, nil, s -- the stream is the closing value: break aborts it
end

--- `for ev in c:events(url, opts)`: the events of one SSE response.
function Client:events(url, opts)
  return iterate(self, "events", url, opts, "events", stream.next_event)
end

--- `for bytes in c:chunks(url, opts)`: the raw body as it arrives.
function Client:chunks(url, opts)
  return iterate(self, "chunks", url, opts, "chunks", stream.next_chunk)
end

--- `for line in c:lines(url, opts)`: the body's lines (LF or CRLF).
function Client:lines(url, opts)
  return iterate(self, "lines", url, opts, "lines", stream.next_line)
end

--- `for value in c:ndjson(url, opts)`: one decoded JSON value per line
-- (blank lines skipped). A line that is not JSON ends the stream with a
-- `protocol` error naming the line number.
function Client:ndjson(url, opts)
  local s = self:_start("ndjson", url, opts, false, "lines")
  local lineno = 0
  local function step(st)
    while true do
      local line = stream.next_line(st)
      if line == nil then return nil end
      lineno = lineno + 1
      if line:find("%S") then
        local value, err = json.decode(line, "NDJSON line " .. lineno, { line = lineno })
        if err == nil then return value end
        stream.finish(st, "protocol", err)
        error(err, 0)
      end
    end
  end
  return step, s, nil, s
end

--- `c:chat(base_url, opts)`: see fetch.chat.
function Client:chat(base_url, opts)
  return chat.chat(self, base_url, opts)
end

--- `c:close()`: abort every stream on the client and free it. Idempotent.
function Client:close()
  if core.is_closed(self) then return end
  for s in pairs(self._active) do s:abort() end
  core.client_free(self)
end

core.Client.__close = function(c) c:close() end

return _M
