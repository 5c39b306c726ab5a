--- Streams: one HTTP response read as events, values, chunks or lines, and
-- how it ends. A stream is a plain Lua table built by `new`, which lists
-- every field; its `state` moves connecting -> open -> (waiting ->
-- connecting ...) -> ended, checked in `set_state`. The bytes and the parser
-- live in its C transfer handle (`_transfer`); this file keeps the policy.
--
-- One function, `advance`, does the work that can be done now without
-- blocking: take in the response headers, deliver items to callbacks, notice
-- the end. The client's loop calls it for the streams it finds ready; pull
-- readers call it while they wait.
-- @module fetchstream.stream

local core = require "fetchstream.core"
local request = require "fetchstream.request"
local reconnect = require "fetchstream.reconnect"
local options = require "fetchstream.options"
local json = require "fetchstream.json"

local error, setmetatable, tostring, type = error, setmetatable, tostring, type
local table_concat = table.concat
local now = core.now
local usage = options.usage

local Transfer = core.Transfer
local next_event_of, next_line_of, read_of = Transfer.next_event, Transfer.next_line, Transfer.read

local _M = {}

local READ_SIZE = 64 * 1024       -- body bytes taken from the C queue at once
local ERROR_BODY_MAX = 64 * 1024  -- what an http error keeps of the body

local Stream = {}
Stream.__index = Stream
Stream.__name = "fetchstream.Stream"
_M.Stream = Stream

local Event = core.Event -- fetchstream.sse gives it ev:json()

-- A FIFO queue of values (the chat helper's pending texts).
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
_M.queue, _M.push, _M.pop = queue, push, pop

-- State -----------------------------------------------------------------------

-- The states and the moves allowed between them.
local MOVES = {
  connecting = { open = true, waiting = true, ended = true }, -- waiting: a 429/503, a failure
  open = { waiting = true, ended = true },                    -- waiting: reconnection
  waiting = { connecting = true, ended = true },
  ended = {},
}

local function set_state(s, state)
  if not MOVES[s.state][state] then
    error(("fetchstream: a stream cannot go from %s to %s"):format(s.state, state), 2)
  end
  s.state = state
end

-- Ending --------------------------------------------------------------------------

--- `err` with the request of stream s written in: err.method and err.url
-- (credentials removed), which tostring(err) shows. Returns err.
local function about(s, err)
  if err.url == nil then err.method, err.url = s._req.method, s._safe_url end
  return err
end
_M.about = about

local function close_transfer(s)
  local t = s._transfer
  if t:closed() then return end
  if s._mode == "events" then s.last_event_id = t:last_event_id() end
  s._ttfb, s._elapsed = t:times()
  t:close()
  s._mode = nil -- nothing more to read
end

--- End the stream, exactly once: set `reason` (and `error`, which learns the
-- request it ended), free the transfer, and in callback mode fire exactly
-- one of onclose / onabort / onerror. `why` is the value given to abort().
local function finish(s, reason, err, why)
  if s.reason then return end
  if err then about(s, err) end
  s.reason, s.error = reason, err
  set_state(s, "ended")
  local c = s._client
  c._active[s] = nil
  close_transfer(s)
  local loop = c._loop
  if loop then loop:_changed(s) end -- a coroutine reading it goes on; an idle loop stops
  local cb = s._callbacks
  if not cb then return end
  if reason == "done" then
    if cb.onclose then c:_final(cb.onclose, s) end
  elseif reason == "aborted" then
    if cb.onabort then c:_final(cb.onabort, why, s) end
  elseif cb.onerror then
    c:_final(cb.onerror, err, s)
  end
end
_M.finish = finish

--- Call a user callback of stream s, protected (the client's dispatch).
-- When it raises, the stream gets no further callbacks and ends with a
-- `callback` error. Returns whether the stream goes on.
local function call(s, name, fn, ...)
  if s.reason then return false end -- an ended stream gets no more callbacks
  local ok, err = s._client:_dispatch(fn, ...)
  if not ok then
    finish(s, "callback", core.error("callback", ("%s raised: %s"):format(name, tostring(err)),
      { cause = err }))
  end
  return ok and not s.reason
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
  local what, a, b, c = s._transfer:result()
  if what == "done" or what == "aborted" then return what end
  if what == "timeout" then return "timeout", timeout_error(s, a) end
  return "network", core.error("network", c, { code = a, curl = b })
end

-- Reconnection ---------------------------------------------------------------------

--- End with (reason, err), or, when the stream reconnects and the ending
-- allows it, wait and connect again (state `waiting`).
local function settle(s, reason, err)
  local wait = reconnect.wait(s._reconnect, reason, err, s.status, s.retry)
  if not wait then return finish(s, reason, err) end
  local onreconnect = s._opts.onreconnect
  if onreconnect then
    local info = { attempt = s.reconnects + 1, delay = wait, error = reason ~= "done" and err or nil }
    if not call(s, "onreconnect", onreconnect, info, s) then return end -- it ended the stream
  end
  local total, at = s._opts.timeout, now() + wait
  if total and at > s._t0 + total then at = s._t0 + total end -- wake to end it in time
  set_state(s, "waiting")
  local t = s._transfer
  if s._mode == "events" then s.last_event_id = t:last_event_id() end
  t:abort() -- the old transfer stops; the handle stays for the next one
  t:wake(at - now()) -- the client steps it then
  s._reconnect_at = at
end

-- Connect again: same request, the last event ID in Last-Event-ID, and what
-- is left of the whole-transfer timeout.
local function connect_again(s)
  s._reconnect_at = nil
  local total = s._opts.timeout
  if total then
    local left = total - (now() - s._t0)
    if left <= 0 then return finish(s, "timeout", timeout_error(s, "total")) end
    s._req.timeout = math.ceil(left * 1000)
  end
  set_state(s, "connecting")
  s._refused, s._mode = nil, nil
  s.status, s.headers = nil, nil
  if s._held then s._held = nil else s.reconnects = s.reconnects + 1 end
  request.set_last_event_id(s._req, s.last_event_id)
  local ok, err = s._transfer:restart(s._req, s)
  if not ok then finish(s, err.kind, err) end
end

--- Hold a new stream's request back for `delay` seconds (a chat helper's
-- retry): it waits as a reconnecting stream does (curl has sent nothing
-- yet: it acts on the next step), then connects; that is no reconnection.
function _M.start_later(s, delay)
  set_state(s, "waiting")
  s._held = true
  s._transfer:abort()
  s._transfer:wake(delay)
  s._reconnect_at = now() + delay
end

-- The response ---------------------------------------------------------------------

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

-- End a stream whose response was refused (http status or content type),
-- once its body is in (up to ERROR_BODY_MAX bytes).
local function refuse(s)
  local body = table_concat(s._refused.body)
  if #body > ERROR_BODY_MAX then body = body:sub(1, ERROR_BODY_MAX) end
  local fields = { status = s.status, headers = s.headers, body = body,
                   json = json.try_decode(body) }
  local message = body_message(body, fields.json)
  if s._refused.kind == "http" then
    if message == "" then message = "HTTP status " .. s.status end
    return settle(s, "http", core.error("http", message, fields))
  end
  finish(s, "protocol", core.error("protocol", s._refused.message, fields))
end

local function refuse_later(s, kind, message)
  s._refused = { kind = kind, message = message, body = {}, size = 0 }
end

-- The reader in C: events (with the hooks the stream has), lines, or raw.
local function set_mode(s, want)
  local t, opts = s._transfer, s._opts
  if want == "events" then
    local cb = s._callbacks
    t:mode("events", s._max, opts.oncomment ~= nil, cb ~= nil and cb.onchunk ~= nil, s.last_event_id)
  elseif want == "lines" then
    t:mode("lines", s._max)
  end
  s._mode = want
end

-- The reader for what s wants: an event reader needs text/event-stream
-- (EventSource's rule: parameters ignored, a missing type fails; a 204 has
-- no body to check), else the response is refused. Returns whether it took.
local function take_reader(s)
  local want = s._want
  if want == "events" and s._opts.content_type_check ~= false and s.status ~= 204 then
    local ct = s.headers["content-type"]
    if request.media_type(ct) ~= "text/event-stream" then
      refuse_later(s, "protocol", ("expected content-type text/event-stream, got %s")
        :format(ct and ("%q"):format(ct) or "none"))
      return false
    end
  end
  set_mode(s, want)
  return true
end

local function on_response(s, status, lines, url)
  s.status, s.headers, s.url = status, request.parse_headers(lines), url and request.safe_url(url)
  if status < 200 or status > 299 then return refuse_later(s, "http") end
  -- fetch.open's stream takes its reader when a reader says what it wants
  if s._want ~= nil and not take_reader(s) then return end
  set_state(s, "open")
  local cb = s._callbacks
  if cb and cb.onopen and status ~= 204 then call(s, "onopen", cb.onopen, s) end -- 204: nothing opens
end

--- A reader of a stream from fetch.open says what it wants.
local function want(s, what)
  if s._want == nil then
    s._want = what
    if s.state == "open" then take_reader(s) end
  end
end

-- Items ----------------------------------------------------------------------------

-- A non-event item of the events reader: a retry field, a comment, a chunk's
-- bytes (onchunk), or an event or line too large.
local function other_item(s, kind, value)
  if kind == "retry" then
    s.retry = value
    local fn = s._opts.onretry
    if fn then call(s, "onretry", fn, value, s) end
  elseif kind == "comment" then
    call(s, "oncomment", s._opts.oncomment, value, s)
  elseif kind == "bytes" then
    call(s, "onchunk", s._callbacks.onchunk, value, s)
  else -- too_large
    finish(s, "protocol", core.error("protocol", value))
  end
end

local function new_event(data, typ, id)
  return setmetatable({ event = typ, data = data, id = id }, Event)
end

-- Deliver what is queued to the callbacks. Returns whether it delivered.
-- Hand the queued events to their handlers, all of them in one protected
-- call (run by deliver): `s._calling` names the handler running, for the
-- error if it raises. Returns how many items it took.
local function run_handlers(s, t, cb)
  local on, onmessage, n = cb.on, cb.onmessage, 0
  while s.reason == nil do
    local data, typ, id = next_event_of(t)
    if data == nil then break end
    n = n + 1
    if data then
      s.last_event_id = id
      local rc = s._reconnect
      if rc then rc.failures = 0 end
      local fn = on and on[typ]
      if fn then
        s._calling = "on." .. typ
      else
        fn = onmessage
        s._calling = "onmessage"
      end
      if fn then fn(setmetatable({ event = typ, data = data, id = id }, Event), s) end
    else
      other_item(s, typ, id) -- protected on its own
    end
  end
  return n
end

-- Deliver what is queued to the callbacks. Returns whether it delivered.
local function deliver(s)
  local t, cb = s._transfer, s._callbacks
  if s._mode == "events" then
    local ok, n = s._client:_dispatch(run_handlers, s, t, cb)
    if not ok then
      finish(s, "callback", core.error("callback", ("%s raised: %s"):format(s._calling, tostring(n)),
        { cause = n }))
      return true
    end
    return n > 0
  end
  local bytes = read_of(t, READ_SIZE) -- a callback stream with only onchunk
  if not bytes then return false end
  if cb.onchunk then call(s, "onchunk", cb.onchunk, bytes, s) end
  return true
end

--- Do the work that can be done now without blocking. Returns true when
-- something happened.
function _M.advance(s)
  local state = s.state
  if state == "ended" then return false end
  local t = s._transfer
  if state == "waiting" then
    if now() < s._reconnect_at then return false end
    connect_again(s)
    return true
  end
  local refused = s._refused
  if not s.status then
    local status, lines, url = t:headers()
    if status then
      on_response(s, status, lines, url)
      return true
    end
  elseif refused then
    local bytes = read_of(t, READ_SIZE)
    if bytes then
      refused.body[#refused.body + 1] = bytes
      refused.size = refused.size + #bytes
      if refused.size >= ERROR_BODY_MAX then refuse(s) end
      return true
    end
  elseif s._callbacks and state == "open" then
    if deliver(s) then return true end
  elseif s._want == nil then
    return false -- a stream from fetch.open holds its body (and its end) for its reader
  end
  local ended, has_bytes = t:ended()
  if not ended then return false end
  if refused then
    if has_bytes then return false end
    refuse(s)
  elseif not s.status then -- ended before any response: a failure
    settle(s, outcome(s))
  elseif has_bytes and s._mode ~= nil then
    return false -- the reader has not taken them yet
  else
    settle(s, outcome(s))
  end
  return true
end
local advance = _M.advance

-- Pull readers ---------------------------------------------------------------------

local function check_pull(s, fname)
  if s._closed then usage("attempt to use a closed stream ('%s')", fname) end
  if s._callbacks then
    usage("'%s' on a stream with callbacks: its data goes to the callbacks", fname)
  end
  if s._client._dispatching then
    usage("'%s' cannot wait for data from inside a callback", fname)
  end
end

--- Drive the stream's client until ready(s) holds or the stream ends; gives
-- up at `deadline` (seconds on core.now()) when one is given. Returns
-- whether ready(s) holds. Every pull form waits here: it blocks, except in
-- a coroutine on a client that a host loop drives (c._loop, see client.lua),
-- which suspends instead and lets the loop step the client and resume it.
local function wait_for(s, deadline, ready)
  local c, idle = s._client, false
  while true do
    if ready(s) then return true end
    if s.reason then return false end
    if advance(s) then
      idle = false
    elseif c._loop and c._loop:_can_suspend() then
      if deadline and now() >= deadline then return false end
      c._loop:_suspend(s, deadline)
    elseif idle then -- a step brought nothing: sleep until there is activity
      if deadline and now() >= deadline then return false end
      c._handle:wait(deadline and deadline - now() or 60) -- wakes for curl and deadlines too
      c:_step()
    else
      c:_step()
      idle = true
    end
  end
end
_M.wait_for = wait_for

-- Whether an event is there to take (kept in _ev_*); other items go to
-- their hooks on the way.
local function got_event(s)
  if s._mode ~= "events" then return false end
  local t = s._transfer
  while not s.reason do
    local data, typ, id = next_event_of(t)
    if data then
      s._ev_data, s._ev_type, s._ev_id = data, typ, id
      return true
    end
    if data == nil then return false end
    other_item(s, typ, id)
  end
  return false
end

local function check_loop(s)
  if s._client._dispatching then usage("a loop over a stream cannot wait from inside a callback") end
end

-- The next event's data, type and id, waiting for it; nil at the end (or at
-- `deadline`). The iterators below try the queue themselves first: this is
-- their slow way, which is also where waiting inside a callback is refused.
local function pull_event(s, deadline)
  check_loop(s)
  want(s, "events")
  if not wait_for(s, deadline, got_event) then return nil end
  local data, typ, id = s._ev_data, s._ev_type, s._ev_id
  s._ev_data = nil
  s.last_event_id = id
  local rc = s._reconnect
  if rc then rc.failures = 0 end -- the connection worked: the back-off starts over
  return data, typ, id
end

local function has_line(s)
  if s._mode ~= "lines" then return false end
  local line, kind, message = next_line_of(s._transfer)
  if line then
    s._line = line
    return true
  end
  if line == false and kind == "too_large" then finish(s, "protocol", core.error("protocol", message)) end
  return false
end

local function has_chunk(s)
  if s._mode ~= "chunks" then return false end
  local bytes = read_of(s._transfer, READ_SIZE)
  if bytes then
    s._chunk = bytes
    return true
  end
  return false
end

local function raise_ending(s)
  if s.error then error(s.error, 0) end
  return nil
end

--- Iterators of the pull forms (the stream is their state). The event
-- iterators take an event that is queued already themselves — two field
-- reads, one C call, one write — written out in each: a Lua call less per
-- event than a shared helper.
function _M.next_event(s)
  if s._mode == "events" then
    local data, typ, id = next_event_of(s._transfer)
    if data then
      s.last_event_id = id
      local rc = s._reconnect
      if rc then rc.failures = 0 end
      return setmetatable({ event = typ, data = data, id = id }, Event)
    end
    if data == false then other_item(s, typ, id) end -- a retry, a comment
  end
  local data, typ, id = pull_event(s)
  if data then return new_event(data, typ, id) end
  return raise_ending(s)
end

function _M.next_value(s)
  if s._mode == "events" then
    local data, typ, id = next_event_of(s._transfer)
    if data then
      s.last_event_id = id
      local rc = s._reconnect
      if rc then rc.failures = 0 end
      return data, typ, id
    end
    if data == false then other_item(s, typ, id) end -- a retry, a comment
  end
  local data, typ, id = pull_event(s)
  if data then return data, typ, id end
  return raise_ending(s)
end

function _M.next_line(s)
  check_loop(s)
  want(s, "lines")
  if wait_for(s, nil, has_line) then
    local line = s._line
    s._line = nil
    return line
  end
  return raise_ending(s)
end

function _M.next_chunk(s)
  check_loop(s)
  want(s, "chunks")
  if wait_for(s, nil, has_chunk) then
    local bytes = s._chunk
    s._chunk = nil
    return bytes
  end
  return raise_ending(s)
end

--- `s:next([timeout])` -> the next event; nil at the end; nil, err on
-- failure. With a timeout (seconds), nil when none came in time (s.reason is
-- then still nil: the stream goes on).
function Stream:next(timeout)
  check_pull(self, "next")
  options.check_delay_arg("next", 1, timeout)
  local data, typ, id = pull_event(self, timeout and now() + timeout)
  if data then return new_event(data, typ, id) end
  if self.error then return nil, self.error end
  return nil
end

--- `for ev in s:events() do ... end`: raises the error that ends the stream.
function Stream:events()
  check_pull(self, "events")
  return _M.next_event, self
end

--- `for data, event, id in s:values() do ... end`: the same events as three
-- strings, no table per event.
function Stream:values()
  check_pull(self, "values")
  return _M.next_value, self
end

--- `for bytes in s:chunks() do ... end`: raw body bytes as they arrive.
function Stream:chunks()
  check_pull(self, "chunks")
  return _M.next_chunk, self
end

--- `for line in s:lines() do ... end`: LF or CRLF lines, without the ending.
function Stream:lines()
  check_pull(self, "lines")
  return _M.next_line, self
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
  close_transfer(self)
end
Stream.__close = Stream.close

--- Seconds from the start of the request to the first body byte, and to now.
function Stream:times()
  if self._transfer:closed() then return self._ttfb, self._elapsed end
  return self._transfer:times()
end

function Stream:__tostring()
  return ("fetchstream.Stream (%s %s, %s)"):format(self._req.method, self._safe_url, self.state)
end

-- The constructor ------------------------------------------------------------------

-- Does a callback stream read events? With an event handler, a retry or
-- comment hook, or reconnection (which follows the event IDs) it does; with
-- onchunk alone it takes any body.
local function callback_events(opts)
  return opts.onmessage ~= nil or opts.on ~= nil or opts.onretry ~= nil
    or opts.oncomment ~= nil or (opts.reconnect ~= nil and opts.reconnect ~= false)
end

--- A new stream of client c, started: `fname` names the call for errors;
-- `callbacks` makes a callback stream; `what` is what a pull stream reads
-- ("events", "chunks", "lines", or nil until a reader says).
function _M.new(c, fname, url, opts, callbacks, what)
  local events = callbacks and callback_events(type(opts) == "table" and opts or {}) or what == "events"
  local req, checked = request.build(fname, url, opts, callbacks, events and "text/event-stream" or nil)
  request.set_last_event_id(req, checked.last_event_id)
  local s = setmetatable({
    -- What a user reads.
    state = "connecting",  -- connecting -> open -> (waiting -> connecting ...) -> ended
    status = nil,          -- the response status, once its headers are in
    headers = nil,         -- the response headers, lower-case names
    url = nil,             -- the URL after redirects, credentials removed
    reason = nil,          -- once ended: "done", "aborted" or the kind of its error
    error = nil,           -- the error that ended it
    last_event_id = checked.last_event_id or "", -- sent as Last-Event-ID when it reconnects
    retry = nil,           -- the server's last retry: field, in ms
    reconnects = 0,        -- how many times it connected again
    -- Its machinery.
    _client = c,           -- the client whose loop drives it
    _transfer = nil,       -- the C transfer handle: easy handle, byte queue, parser
    _opts = checked,       -- the options, checked
    _req = req,            -- the request for the C core (reused to reconnect)
    _safe_url = request.safe_url(url), -- what errors name
    _callbacks = callbacks and checked or nil, -- the callback options, or nil for a pull stream
    -- "events", "lines", "chunks"; "raw": a callback stream with only onchunk
    _want = events and "events" or callbacks and "raw" or what,
    _mode = nil,           -- the reader the transfer was given (once the response is accepted)
    _max = checked.max_event_size or request.DEFAULT_MAX_EVENT_SIZE,
    _refused = nil,        -- a refused response: { kind, message, body, size }
    _reconnect = reconnect.policy(checked.reconnect), -- nil: it does not reconnect
    _reconnect_at = nil,   -- while waiting: when it connects again
    _held = nil,           -- start_later: the coming connection is the first
    _t0 = now(),           -- `timeout` covers every connection of a reconnecting stream
    _closed = false,       -- s:close() was called
    _ttfb = nil, _elapsed = nil, -- s:times() once the transfer is gone
    _visits = 0,           -- how often the client's loop visited it (only when ready)
    _waiter = nil,         -- true while coroutines wait for it in a host loop (fetchstream.uv)
    _line = nil, _chunk = nil, -- what a pull reader found, on its way out
    _ev_data = nil, _ev_type = nil, _ev_id = nil,
    _calling = nil,        -- the name of the event handler running, for its error
  }, Stream)
  local t, err = core.transfer(c._handle, req, s)
  if not t then error(err, 0) end
  s._transfer = t
  if callbacks then c._active[s] = true end
  return s
end

return _M
