--- Streams: reading a response as events, chunks or lines, and how a stream
-- ends. One state machine, `advance`, does all the work that can be done now
-- without blocking; pull readers (s:next, s:events, ...) loop on it and drive
-- the client, callback streams are advanced by the client's loop.
-- @module fetchstream.stream

local core = require "fetchstream.core"
local request = require "fetchstream.request"
local json = require "fetchstream.json"

local error, pcall, tonumber, tostring, type = error, pcall, tonumber, tostring, type
local table_concat = table.concat
local now = core.now

local options = require "fetchstream.options"
local usage = options.usage

local _M = {}

local Stream = core.Stream.methods

local READ_SIZE = 64 * 1024       -- body bytes taken from the C queue at once
local ERROR_BODY_MAX = 64 * 1024  -- what an http error keeps of the body

-- A FIFO queue of values for pull readers.
local function queue() return { first = 1, last = 0 } end

local function push(q, v)
  q.last = q.last + 1
  q[q.last] = v
end

local function pop(q)
  local i = q.first
  if i > q.last then return nil end
  local v = q[i]
  q[i] = nil
  q.first = i + 1
  return v
end


-- Ending ------------------------------------------------------------------

-- Run a final callback (onclose, onerror, onabort) as fn(..., s). Its error
-- has nowhere to go: inside the client's loop it is kept for run() to raise;
-- elsewhere (an abort from plain code) it is raised at once.
local function final_call(s, fn, ...)
  local c = s._client
  local was = c._dispatching
  c._dispatching = true
  local ok, err = pcall(fn, ...)
  c._dispatching = was
  if ok then return end
  if c._stepping then
    if c._raise == nil then c._raise = err end
  else
    error(err, 0)
  end
end

--- `err` with the request of stream s written in: err.method and err.url
-- (credentials removed), which tostring(err) shows. Returns err.
local function about(s, err)
  if err.url == nil then err.method, err.url = s._req.method, s._safe_url end
  return err
end
_M.about = about

--- End the stream, exactly once: set `reason` (and `error`, which learns the
-- request it ended), free the transfer, and in callback mode fire exactly
-- one of onclose / onabort / onerror. `why` is the value given to abort().
local function finish(s, reason, err, why)
  if s.reason then return end
  if err then about(s, err) end
  s.reason, s.error = reason, err
  s._client._active[s] = nil
  if not core.is_closed(s) then s._ttfb, s._elapsed = core.stream_times(s) end
  core.stream_free(s)
  local cb = s._callbacks
  if not cb then return end
  if reason == "done" then
    if cb.onclose then final_call(s, cb.onclose, s) end
  elseif reason == "aborted" then
    if cb.onabort then final_call(s, cb.onabort, why, s) end
  elseif cb.onerror then
    final_call(s, cb.onerror, err, s)
  end
end
_M.finish = finish

-- Ctrl-C in the standalone interpreter: lua.c raises "interrupted!" wherever
-- the script is. It is the user stopping the script, not a callback failing.
local function is_interrupt(err)
  return type(err) == "string" and err:find("interrupted!$") ~= nil
end

--- Call a user callback of this stream, protected. When it raises, the
-- stream gets no further callbacks and ends with a `callback` error; Ctrl-C
-- goes on up to the caller of run() or of the loop, the stream untouched.
local function call(s, name, fn, ...)
  if s.reason then return false end -- an ended stream gets no more callbacks
  local c = s._client
  local was = c._dispatching
  c._dispatching = true
  local ok, err = pcall(fn, ...)
  c._dispatching = was
  if not ok and is_interrupt(err) then error(err, 0) end
  if not ok then
    finish(s, "callback", core.error("callback", ("%s raised: %s"):format(name, tostring(err)),
      { cause = err }))
  end
  return ok and not s.reason
end

--- A parser for the stream's next connection. The last event ID carries
-- over (it is sent as Last-Event-ID); the rest starts afresh, as for a new
-- EventSource connection. Its hooks run inside p:feed, protected like every
-- callback.
function _M.new_parser(s)
  local opts = s._opts
  local onretry, oncomment = opts.onretry, opts.oncomment
  return core.parser(s._max,
    function(ms)
      s.retry = ms
      if onretry then call(s, "onretry", onretry, ms, s) end
    end,
    oncomment and function(text) call(s, "oncomment", oncomment, text, s) end,
    s.last_event_id)
end

local TIMEOUT_OPTION = {
  connect = "connect_timeout", first_byte = "first_byte_timeout",
  idle = "idle_timeout", total = "timeout",
}
local TIMEOUT_TEXT = {
  connect = "no connection within %g s",
  first_byte = "no response body within %g s",
  idle = "no data for %g s",
  total = "the transfer took longer than %g s",
}

-- The error of timeout `which` ("connect", "first_byte", "idle", "total").
local function timeout_error(s, which)
  local secs = s._opts[TIMEOUT_OPTION[which]] or 300 -- 300 s: curl's own connect limit
  return core.error("timeout", which:gsub("_", " ") .. " timeout: "
    .. TIMEOUT_TEXT[which]:format(secs), { timeout = which })
end

-- How the transfer ended, as a reason and an error object.
local function outcome(s)
  local what, a, b, c = core.stream_end(s)
  if what == "done" or what == "aborted" then return what end
  if what == "timeout" then return "timeout", timeout_error(s, a) end
  return "network", core.error("network", c, { code = a, curl = b })
end

-- Reconnection (EventSource's rules; off unless the reconnect option is set)

-- The jitter of reconnection delays must differ between processes, or
-- clients that lost the same server come back in step. Lua 5.4 seeds
-- math.random from the time and an address at startup; LuaJIT starts every
-- process on the same sequence unless the host seeds it (Neovim does not).
-- So on 5.1 the jitter comes from a generator of its own, seeded the way 5.4
-- seeds, and math.random and its seed stay the user's.
local random = math.random
if _VERSION == "Lua 5.1" then
  local MOD = 2147483648 -- 2^31: every product below stays exact in a double
  local address = tonumber(tostring({}):match("0x(%x+)") or "0", 16) or 0
  local state = math.floor(now() * 1e6 + address % MOD) % MOD
  random = function()
    -- state * 1103515245 + 12345 mod 2^31, the multiplier in two halves
    state = (state * 20077 + (state * 16838 % 32768) * 65536 + 12345) % MOD
    return state / MOD
  end
end

-- Seconds from a Retry-After header (delay-seconds form), or nil.
local function retry_after(headers)
  local v = headers and headers["retry-after"]
  local secs = v and tonumber(v:match("^%s*(%d+)%s*$"))
  return secs
end

--- Instead of ending with (reason, err), wait and connect again, when the
-- stream reconnects and the ending allows it. Returns true if it will.
local function schedule_reconnect(s, reason, err)
  local rc = s._reconnect
  if not rc then return false end
  local wait_for_server
  if reason == "http" then
    if err.status ~= 429 and err.status ~= 503 then return false end
    wait_for_server = retry_after(err.headers)
  elseif reason == "timeout" then
    if err.timeout == "total" then return false end
  elseif reason ~= "network" and reason ~= "done" then
    return false -- aborted, protocol, callback, api, eof: for good
  end
  if reason == "done" and s.status == 204 then return false end -- 204: stop for good
  rc.failures = rc.failures + 1
  if rc.retries and rc.failures > rc.retries then return false end
  local base = s.retry and s.retry / 1000 or rc.delay -- the reconnection time
  local cap = math.max(rc.max_delay, base) -- max_delay never shortens it
  local wait = math.min(cap, base * 2 ^ (rc.failures - 1) * (1 + 0.2 * random()))
  if wait_for_server then wait = math.max(wait_for_server, base) end
  local onreconnect = s._opts.onreconnect
  if onreconnect then
    local info = { attempt = s.reconnects + 1, delay = wait, error = reason ~= "done" and err or nil }
    if not call(s, "onreconnect", onreconnect, info, s) then return true end -- it ended the stream
  end
  s._reconnect_at = now() + wait
  local total = s._opts.timeout
  if total and s._reconnect_at > s._t0 + total then -- wake to end it in time
    s._reconnect_at = s._t0 + total
  end
  core.stream_abort(s) -- the old transfer stops; the stream object stays
  core.stream_wake(s, s._reconnect_at - now()) -- the client steps it then
  return true
end

-- Connect again: same request, the last event ID in Last-Event-ID, and what
-- is left of the whole-transfer timeout.
local function reconnect(s)
  s._reconnect_at = nil
  local total = s._opts.timeout
  if total then
    local left = total - (now() - s._t0)
    if left <= 0 then return finish(s, "timeout", timeout_error(s, "total")) end
    s._req.timeout = math.ceil(left * 1000)
  end
  s._response, s._refused, s._ct_checked = nil, nil, nil
  s._lines:clear() -- a line cut off by the drop is not glued to the next
  s.reconnects = s.reconnects + 1
  request.set_last_event_id(s._req, s.last_event_id)
  s._parser = _M.new_parser(s)
  local ok, err = core.stream_restart(s, s._req)
  if not ok then finish(s, err.kind, err) end
end

-- The readable part of an error body: a JSON API's message, else the text.
local function body_message(body, decoded)
  if type(decoded) == "table" then
    local e = decoded.error
    if type(e) == "table" and type(e.message) == "string" then return e.message end
    if type(e) == "string" then return e end
    if type(decoded.message) == "string" then return decoded.message end
  end
  return json.preview(body:gsub("%s+", " "):match("^ *(.-) *$"), 200)
end

-- Finish a stream whose response was refused (http status or content type),
-- once its body is in (up to ERROR_BODY_MAX bytes).
local function refuse(s)
  local body = table_concat(s._refused.body)
  if #body > ERROR_BODY_MAX then body = body:sub(1, ERROR_BODY_MAX) end
  local fields = { status = s.status, headers = s.headers, body = body,
                   json = json.try_decode(body) }
  local message = body_message(body, fields.json)
  if s._refused.kind == "http" then
    if message == "" then message = "HTTP status " .. s.status end
    local err = core.error("http", message, fields)
    if schedule_reconnect(s, "http", err) then return end
    return finish(s, "http", err)
  end
  finish(s, "protocol", core.error("protocol", s._refused.message, fields))
end

-- Checks when the response arrives ------------------------------------------

local function refuse_later(s, kind, message)
  s._refused = { kind = kind, message = message, body = {}, size = 0 }
end

-- An event reader needs text/event-stream (EventSource's rule: parameters
-- ignored, a missing type fails). A 204 has no body to check.
local function check_event_stream(s)
  if s._ct_checked or not s._response or s._refused or s.reason then return end
  s._ct_checked = true
  if s._opts.content_type_check == false or s.status == 204 then return end
  local ct = s.headers["content-type"]
  if request.media_type(ct) ~= "text/event-stream" then
    refuse_later(s, "protocol", ("expected content-type text/event-stream, got %s")
      :format(ct and ("%q"):format(ct) or "none"))
  end
end

local function on_response(s, status, lines, url)
  s._response = true
  s.status, s.headers, s.url = status, request.parse_headers(lines), url and request.safe_url(url)
  if status < 200 or status > 299 then
    return refuse_later(s, "http")
  end
  if s._want == "events" then check_event_stream(s) end
  if s._refused then return end
  local cb = s._callbacks
  if cb and cb.onopen and status ~= 204 then call(s, "onopen", cb.onopen, s) end -- 204: nothing opens
end

-- Delivering body bytes ---------------------------------------------------

local function emit_event(s, ev)
  local rc = s._reconnect
  if rc then rc.failures = 0 end -- the connection worked: back-off starts over
  local cb = s._callbacks
  if not cb then return push(s._queue, ev) end
  local fn = cb.on and cb.on[ev.event]
  if fn then
    call(s, "on." .. ev.event, fn, ev, s)
  elseif cb.onmessage then
    call(s, "onmessage", cb.onmessage, ev, s)
  end
end

local function parse_events(s, bytes)
  local p = s._parser
  local ok, err = pcall(function()
    for ev in p:feed(bytes) do
      emit_event(s, ev)
      if s.reason then return end
    end
  end)
  s.last_event_id = p.last_event_id
  if not ok then
    if type(err) == "table" and err.kind then return finish(s, err.kind, err) end
    s._unparsed = true -- the parser keeps the rest of `bytes`: advance resumes it
    error(err, 0) -- Ctrl-C, out of memory or a bug: not the stream's fault
  end
end

local function split_lines(s, bytes)
  local err = s._lines:feed(bytes, s._push_line)
  if err then finish(s, "protocol", err) end
end

local function deliver(s, bytes)
  local refused = s._refused
  if refused then
    refused.body[#refused.body + 1] = bytes
    refused.size = refused.size + #bytes
    if refused.size >= ERROR_BODY_MAX then refuse(s) end
    return
  end
  local cb = s._callbacks
  if cb then
    if cb.onchunk and not call(s, "onchunk", cb.onchunk, bytes, s) then return end
    if s._want == "events" then parse_events(s, bytes) end
  elseif s._want == "chunks" then
    push(s._queue, bytes)
  elseif s._want == "lines" then
    split_lines(s, bytes)
  else
    parse_events(s, bytes)
  end
end

--- Do the work that can be done now without blocking: take in the response
-- headers, deliver queued body bytes, notice the end. Returns true when
-- something happened.
function _M.advance(s)
  if s.reason then return false end
  if s._reconnect_at then
    if now() < s._reconnect_at then return false end
    reconnect(s)
    return true
  end
  if not s._response then
    local status, lines, url = core.stream_headers(s)
    if status then
      on_response(s, status, lines, url)
      return true
    end
    local ended = core.stream_ended(s)
    if not ended then return false end
    local reason, err = outcome(s) -- ended before any response: a failure
    if not schedule_reconnect(s, reason, err) then finish(s, reason, err) end
    return true
  end
  -- A stream from fetch.open holds its body until a reader says what it wants.
  if s._want == nil and not s._refused then return false end
  if s._unparsed then -- an error left events in the parser: they come first
    s._unparsed = nil
    parse_events(s, "")
    return true
  end
  local bytes = core.stream_read(s, READ_SIZE)
  if bytes then
    deliver(s, bytes)
    return true
  end
  local ended = core.stream_ended(s)
  if not ended then return false end
  if s._refused then
    refuse(s)
  else
    local reason, err = outcome(s)
    if reason == "done" and s._want == "lines" then -- a last line without LF
      local line, too_large = s._lines:finish()
      if too_large then
        finish(s, "protocol", too_large)
        return true
      end
      if line then push(s._queue, line) end
    end
    if not schedule_reconnect(s, reason, err) then finish(s, reason, err) end
  end
  return true
end

-- Pull readers ------------------------------------------------------------

local function check_open(s, fname)
  if s._closed then usage("attempt to use a closed stream ('%s')", fname) end
  if s._callbacks then
    usage("'%s' on a stream with callbacks: its data goes to the callbacks", fname)
  end
  if s._client._dispatching then
    usage("'%s' cannot wait for data from inside a callback", fname)
  end
end

--- Drive the stream's client until ready(s) holds or the stream ends; gives
-- up at `deadline` (seconds on core.now()) when one is given.
local function wait_for(s, deadline, ready)
  local c, idle = s._client, false
  while not ready(s) and not s.reason do
    if _M.advance(s) then
      idle = false
    elseif idle then -- a step brought nothing: sleep until there is activity
      if deadline and now() >= deadline then return end
      core.client_wait(c, deadline and deadline - now() or 60) -- wakes for curl and deadlines too
      c:_step()
    else
      c:_step()
      idle = true
    end
  end
end
_M.wait_for = wait_for

local function has_item(s) return s._queue.first <= s._queue.last end

--- Wait for the next value of kind `want`; nil when the stream has ended (or
-- the deadline passed with nothing: then s.reason is still nil).
local function pull(s, want, deadline)
  s._want = want
  if want == "events" then check_event_stream(s) end
  local v = pop(s._queue)
  if v ~= nil then return v end
  wait_for(s, deadline, has_item)
  return pop(s._queue)
end

local function ended_with(s)
  if s.error then return nil, s.error end
  return nil
end

--- `s:next([timeout])` -> the next event; nil at the end; nil, err on
-- failure. With a timeout (seconds), nil when none came in time (s.reason is
-- then still nil: the stream goes on).
function Stream:next(timeout)
  check_open(self, "next")
  options.check_delay_arg("next", 1, timeout)
  local ev = pull(self, "events", timeout and now() + timeout)
  if ev then return ev end
  return ended_with(self)
end

local function iterator(want)
  return function(s)
    if s._client._dispatching then usage("a loop over a stream cannot wait from inside a callback") end
    local v = pull(s, want)
    if v ~= nil then return v end
    if s.error then error(s.error, 0) end
    return nil
  end
end
local next_event, next_chunk, next_line = iterator("events"), iterator("chunks"), iterator("lines")
_M.next_event, _M.next_chunk, _M.next_line = next_event, next_chunk, next_line

--- `for ev in s:events() do ... end`: raises the error that ends the stream.
function Stream:events()
  check_open(self, "events")
  return next_event, self
end

--- `for bytes in s:chunks() do ... end`: raw body bytes as they arrive.
function Stream:chunks()
  check_open(self, "chunks")
  return next_chunk, self
end

--- `for line in s:lines() do ... end`: LF or CRLF lines, without the ending.
function Stream:lines()
  check_open(self, "lines")
  return next_line, self
end

--- `s:abort([reason])`: stop now, from anywhere (a callback too). A stream
-- that has already ended keeps its reason.
function Stream:abort(why)
  if self.reason then return end
  finish(self, "aborted", nil, why)
end

--- `s:close()`: abort if still running, free everything. Idempotent; also
-- the stream's `__close`. A stream that had ended keeps its reason.
function Stream:close()
  if self._closed then return end
  self._closed = true
  if not self.reason then finish(self, "aborted") end
  core.stream_free(self)
end

core.Stream.__close = function(s) s:close() end

--- Seconds from the start of the request to the first body byte, and to now.
function Stream:times()
  if self.reason then return self._ttfb, self._elapsed end
  return core.stream_times(self)
end

_M.queue, _M.push, _M.pop = queue, push, pop
return _M
