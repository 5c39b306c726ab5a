--- Clients: one curl multi handle each, driving any number of streams.
-- `fetch.open`, `fetch.events`, `fetch.stream`, `fetch.run`, ... are the
-- methods of a default client; `fetch.client()` makes another.
-- @module fetchstream.client

local core = require "fetchstream.core"
local request = require "fetchstream.request"
local stream = require "fetchstream.stream"
local chat = require "fetchstream.chat"
local json = require "fetchstream.json"
local lines = require "fetchstream.lines"

local error, ipairs, next, pairs, pcall, tostring, type, warn =
  error, ipairs, next, pairs, pcall, tostring, type, warn -- luacheck: ignore 113 (5.4 only)
local now = core.now
local options = require "fetchstream.options"
local usage = options.usage

local _M = {}

local Client = core.Client.methods

--- A new client.
function _M.new()
  local c = core.client()
  c._active = {} -- callback streams still running (kept alive here)
  c._ready = {} -- the streams one step found ready (reused)
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
  if not callbacks and self._dispatching then
    usage("'%s' cannot wait for data from inside a callback: use a callback stream", fname)
  end
  local events = callbacks and callback_events(type(opts) == "table" and opts or {}) or want == "events"
  local req, checked = request.build(fname, url, opts, callbacks, events and "text/event-stream" or nil)
  request.set_last_event_id(req, checked.last_event_id)
  local s, err = core.stream_start(self, req)
  if not s then error(err, 0) end
  s._client = self
  s._opts = checked
  s._queue = stream.queue()
  -- "raw": a callback stream that only wants onchunk still reads its body.
  s._want = events and "events" or callbacks and "raw" or want
  s._max = checked.max_event_size or request.DEFAULT_MAX_EVENT_SIZE
  s._lines = lines.splitter(s._max) -- lines readers: the line not ended yet
  local queue = s._queue
  s._push_line = function(line) stream.push(queue, line) end
  s.last_event_id = checked.last_event_id or ""
  s._req = req
  s._safe_url = request.safe_url(url) -- what errors name
  s.reconnects = 0 -- how many times it connected again
  s._t0 = now() -- `timeout` covers every connection of a reconnecting stream
  s._reconnect = request.reconnect_policy(checked.reconnect)
  s._parser = stream.new_parser(s)
  if callbacks then
    s._callbacks = checked
    self._active[s] = true
  end
  return s
end

-- Visit the streams the client found ready — only those: a stream with no
-- activity costs nothing. Pull streams are advanced by their readers.
local function step_streams(self)
  local list, active = self._ready, self._active
  local n = core.client_step(self, list)
  for i = 1, n do
    local s = list[i]
    if active[s] then
      s._visits = (s._visits or 0) + 1
      while stream.advance(s) do end
    end
    list[i] = nil -- visited
  end
end

--- Move every transfer forward without blocking and deliver what arrived to
-- the callback streams. An error that escapes (out of memory, Ctrl-C's
-- "interrupted!") leaves the client as it found it, usable again.
function Client:_step()
  local was = self._stepping
  self._stepping = true
  local ok, err = pcall(step_streams, self)
  self._stepping = was
  if not ok then
    local list = self._ready -- the streams not visited (in full): due again
    for i, s in pairs(list) do
      if not core.is_closed(s) then core.stream_ready(s) end
      list[i] = nil
    end
    error(err, 0)
  end
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
  options.check_delay_arg("run", 1, timeout)
  local deadline = timeout and now() + timeout
  while true do
    self:_step()
    raise_pending(self)
    if next(self._active) == nil then return true end
    if deadline and now() >= deadline then return false end
    core.client_wait(self, deadline and deadline - now() or 60) -- curl's and the streams' deadlines too
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

--- `c:each(url, opts, fn)`: the events of one SSE response, each handed to
-- fn(ev, s) — the loop body as a function. It closes the stream itself, which
-- a `for` loop cannot do on Lua 5.1/LuaJIT (no closing value): fn returning
-- false, or raising, aborts the transfer at once. Returns true when the
-- response ended or fn stopped it, nil, err when the stream failed; an error
-- raised by fn is raised again once the transfer is gone.
function Client:each(url, opts, fn)
  if options.callable(fn) then usage("bad argument #3 to 'each' (function expected, got %s)", type(fn)) end
  local s = self:_start("each", url, opts, false, "events")
  local ok, err = pcall(function()
    for ev in stream.next_event, s do
      if fn(ev, s) == false then return end
    end
  end)
  s:close()
  if ok then return true end
  if err == s.error then return nil, err end -- the stream's own ending
  error(err, 0)
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
      local value, err = json.ndjson_line(line, lineno)
      if err then
        stream.finish(st, "protocol", err)
        error(err, 0)
      end
      if value ~= nil then return value end
    end
  end
  return step, s, nil, s
end

--- `c:chat(base_url, opts)`: see fetch.chat.
function Client:chat(base_url, opts)
  return chat.chat(self, base_url, opts)
end

--- `c:close()`: abort every stream on the client (each callback stream's
-- onabort fires once) and free it. Idempotent.
function Client:close()
  if core.is_closed(self) then return end
  local list = {}
  for s in pairs(self._active) do list[#list + 1] = s end
  core.client_free(self)
  local first_err
  for _, s in ipairs(list) do -- every stream ends, even if an onabort raises
    local ok, err = pcall(s.abort, s)
    if not ok and first_err == nil then first_err = err end
  end
  if first_err ~= nil then error(first_err, 0) end
end

core.Client.__close = function(c) c:close() end
-- A client collected with streams still running ends them as aborted too,
-- from its finalizer: onabort fires there, and what it raises becomes a
-- warning (Lua's rule for finalizers).
core.Client.__gc = function(c)
  if core.is_closed(c) then return end
  local ok, err = pcall(Client.close, c)
  if not ok and warn then -- Lua 5.4's warnings; 5.1 has none
    warn("fetchstream: error in a callback run by a client's finalizer: ", tostring(err))
  end
end

return _M
