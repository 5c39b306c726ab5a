--- Clients: one curl multi handle each, driving any number of streams.
-- `fetch.open`, `fetch.events`, `fetch.stream`, `fetch.run`, ... are the
-- methods of a default client; `fetch.client()` makes another.
--
-- A client is a plain Lua table over a C handle (`_handle`): the handle
-- keeps curl's sockets and every deadline and knows which streams have
-- something new; the loop here visits only those, and runs every user
-- callback through one protected dispatch.
--
-- A host event loop (fetchstream.uv) drives a client through c:step(),
-- c:fileno() and c:timeout(), and sets `c._loop` to an object the engine
-- tells what it cannot see from outside:
--   loop:_changed(s)     stream s started, ended, or has news for the
--                        coroutines waiting on it (s._waiter): step soon,
--                        resume them
--   loop:_can_suspend()  whether the running code is a coroutine that can
--                        suspend instead of blocking
--   loop:_suspend(s, deadline) yields until _changed(s) or the deadline
--   loop:_closing()      the client is about to close its handle
-- @module fetchstream.client

local core = require "fetchstream.core"
local stream = require "fetchstream.stream"
local chat = require "fetchstream.chat"
local json = require "fetchstream.json"
local options = require "fetchstream.options"

local error, getmetatable, ipairs, next, pairs, pcall, setmetatable, tostring, type, warn =
  error, getmetatable, ipairs, next, pairs, pcall, setmetatable, tostring, type, warn -- luacheck: ignore 113
local newproxy = newproxy -- luacheck: ignore 113 (5.1 only)
local now = core.now
local usage = options.usage
local next_event, next_value, next_chunk, next_line =
  stream.next_event, stream.next_value, stream.next_chunk, stream.next_line

local _M = {}

local Client = {}
Client.__index = Client
Client.__name = "fetchstream.Client"
_M.Client = Client

-- Ctrl-C in the standalone interpreter: lua.c raises "interrupted!" wherever
-- the script is. It is the user stopping the script, not a callback failing.
local function is_interrupt(err)
  return type(err) == "string" and err:find("interrupted!$") ~= nil
end

--- The one protected dispatch of every user callback: fn(...) with the
-- client marked as inside a callback (no waiting there). Returns ok, err;
-- Ctrl-C is raised on, up to the caller of run() or of the loop.
function Client:_dispatch(fn, ...)
  local was = self._dispatching
  self._dispatching = true
  local ok, err = pcall(fn, ...)
  self._dispatching = was
  if not ok and is_interrupt(err) then error(err, 0) end
  return ok, err
end

--- A final callback (onclose, onerror, onabort): its error has nowhere to
-- go. Inside the client's loop it is kept for run() to raise; elsewhere (an
-- abort from plain code) it is raised at once.
function Client:_final(fn, ...)
  local ok, err = self:_dispatch(fn, ...)
  if ok then return end
  if self._stepping then
    if self._raise == nil then self._raise = err end
  else
    error(err, 0)
  end
end

--- A new client.
function _M.new()
  local c = setmetatable({
    _handle = core.client(), -- the C side: curl multi handle, sockets, deadlines
    _active = {},            -- callback streams still running (kept alive here)
    _ready = {},             -- the streams one step found ready (reused)
    _dispatching = false,    -- inside a user callback
    _stepping = false,       -- inside a step
    _raise = nil,            -- an error of a final callback, for run() to raise
    _loop = nil,             -- the host loop driving it (fetchstream.uv), or nil
    _closed = false,         -- c:close() was called (the handle may go first in a collection)
    _gc = nil,               -- Lua 5.1: the proxy whose finalizer is the client's
  }, Client)
  if newproxy and _VERSION == "Lua 5.1" then -- tables have no __gc there: a proxy does it
    local proxy = newproxy(true)
    getmetatable(proxy).__gc = function() Client.__gc(c) end
    c._gc = proxy
  end
  return c
end

--- Start a stream: see stream.new.
function Client:_start(fname, url, opts, callbacks, what)
  if self._closed then usage("attempt to use a closed client ('%s')", fname) end
  if not callbacks and self._dispatching then
    usage("'%s' cannot wait for data from inside a callback: use a callback stream", fname)
  end
  local s = stream.new(self, fname, url, opts, callbacks, what)
  local loop = self._loop
  if loop then loop:_changed(s) end -- a host loop that had stopped starts again
  return s
end

-- Visit the streams the handle found ready — only those: a stream with no
-- activity costs nothing. Pull streams are advanced by their readers; one
-- that a suspended coroutine reads wakes it through the host loop.
local function visit_ready(self)
  local list, active, advance = self._ready, self._active, stream.advance
  local n = self._handle:step(list)
  for i = 1, n do
    local s = list[i]
    if active[s] then
      s._visits = s._visits + 1
      while advance(s) do end
    elseif s._waiter then
      s._visits = s._visits + 1
      self._loop:_changed(s)
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
  local ok, err = pcall(visit_ready, self)
  self._stepping = was
  if not ok then
    local list = self._ready -- the streams not visited in full: due again
    for i, s in pairs(list) do
      if not s._transfer:closed() then s._transfer:ready() end
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

local function check_loop(c, fname)
  if c._closed then usage("attempt to use a closed client ('%s')", fname) end
  if c._dispatching then usage("%s() cannot be called from inside a callback", fname) end
end

--- `c:step()`: do all the work that can be done now without blocking —
-- curl, timeouts, reconnect waits, callbacks — and return. For a host event
-- loop, with c:fileno() and c:timeout().
function Client:step()
  check_loop(self, "step")
  self:_step()
  raise_pending(self)
end

--- `c:fileno()` -> a descriptor that is readable whenever one of the
-- client's transfers has network activity; nil where there is none (then a
-- host steps on a timer).
function Client:fileno()
  return self._handle:fileno()
end

--- `c:timeout()` -> seconds until the next step is needed (curl's timer, a
-- stream's deadline, a reconnect wait; a day at most), or nil when the client
-- has nothing to do: no transfer running, no wait (a host loop can stop
-- watching it until a stream starts).
function Client:timeout()
  return self._handle:timeout()
end

--- `c:run([timeout])`: drive every callback stream until all have ended.
-- Returns true, or false when `timeout` seconds passed first. Raises an
-- error thrown by an onclose/onerror/onabort callback, after its stream ended.
function Client:run(timeout)
  check_loop(self, "run")
  options.check_delay_arg("run", 1, timeout)
  local deadline = timeout and now() + timeout
  while true do
    self:_step()
    raise_pending(self)
    if next(self._active) == nil then return true end
    if deadline and now() >= deadline then return false end
    self._handle:wait(deadline and deadline - now() or 60) -- wakes for curl and deadlines too
  end
end

--- `c:stream(url, opts)`: a stream that delivers to callbacks (see README).
function Client:stream(url, opts)
  return self:_start("stream", url, opts, true)
end

local function answered(s) return s.status ~= nil and s._refused == nil end

--- `c:open(url, opts)`: a stream once its response headers are in, or
-- nil, err (http for a non-2xx status, network, timeout).
function Client:open(url, opts)
  if self._dispatching then usage("'open' cannot wait for a response from inside a callback") end
  local s = self:_start("open", url, opts, false, nil)
  stream.wait_for(s, nil, answered)
  if s.reason and s.error then
    local err = s.error
    s:close()
    return nil, err
  end
  return s
end

local function iterate(self, fname, url, opts, what, step)
  local s = self:_start(fname, url, opts, false, what)
  return step, s, nil, s -- the stream is the closing value: break aborts it
end

--- `for ev in c:events(url, opts)`: the events of one SSE response.
function Client:events(url, opts)
  return iterate(self, "events", url, opts, "events", next_event)
end

--- `for data, event, id in c:values(url, opts)`: the same, as three strings
-- (no table per event).
function Client:values(url, opts)
  return iterate(self, "values", url, opts, "events", next_value)
end

--- `for bytes in c:chunks(url, opts)`: the raw body as it arrives.
function Client:chunks(url, opts)
  return iterate(self, "chunks", url, opts, "chunks", next_chunk)
end

--- `for line in c:lines(url, opts)`: the body's lines (LF or CRLF).
function Client:lines(url, opts)
  return iterate(self, "lines", url, opts, "lines", next_line)
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
    for ev in next_event, s do
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
      local line = next_line(st)
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
  if self._closed then return end
  self._closed = true
  local list = {}
  for s in pairs(self._active) do list[#list + 1] = s end
  if self._loop then self._loop:_closing() end -- it stops watching the descriptor first
  self._handle:close()
  local first_err
  for _, s in ipairs(list) do -- every stream ends, even if an onabort raises
    local ok, err = pcall(s.abort, s)
    if not ok and first_err == nil then first_err = err end
  end
  if first_err ~= nil then error(first_err, 0) end
end
Client.__close = Client.close

-- A client collected with streams still running ends them as aborted too,
-- from its finalizer: onabort fires there, and what it raises becomes a
-- warning (Lua's rule for finalizers; 5.1 has no warnings: it is dropped).
function Client.__gc(c)
  if c._closed then return end
  local ok, err = pcall(Client.close, c)
  if not ok and warn then
    warn("fetchstream: error in a callback run by a client's finalizer: ", tostring(err))
  end
end

--- The default client, behind the `fetch.*` functions (made on first use,
-- and again after it was closed).
local default_client

function _M.default()
  if default_client == nil or default_client._closed then
    default_client = _M.new()
  end
  return default_client
end

return _M
