--- fetchstream.sse: the SSE parser for any transport, without libcurl.
-- Bytes in, events out: from an OpenResty cosocket, lua-resty-http's
-- body_reader, a Neovim job's output, a file. Loading it never loads curl.
--
--   local sse = require "fetchstream.sse"
--   for ev in sse.events(read) do ... end   -- read() -> chunk | nil | nil, err
--   local p = sse.parser{ max_event_size = 1e6 }
--   for ev in p:feed(chunk) do ... end
-- @module fetchstream.sse

local core = require "fetchstream.sse.core" -- errors and the parser: no curl
local options = require "fetchstream.options"
local lines = require "fetchstream.lines"

local error, require, tostring, type = error, require, tostring, type

-- cjson only when JSON is wanted (ev:json(), ndjson): the parser alone needs
-- nothing but this module's C core.
local function json() return require "fetchstream.json" end

local _M = {}

_M.DEFAULT_MAX_EVENT_SIZE = 16 * 1024 * 1024

-- Events -------------------------------------------------------------------

local Event = core.Event
Event.__index = {}
Event.__name = "fetchstream.Event"

--- `ev:json()` decodes `ev.data` with cjson; `nil, err` (kind `protocol`)
-- when it is not JSON. The message quotes the first bytes of the data.
function Event.__index.json(ev)
  return json().decode(ev.data, "event data")
end

-- The parser ---------------------------------------------------------------

local PARSER_OPTIONS = {
  max_event_size = options.positive_integer,
  onretry = options.callable,
  oncomment = options.callable,
}

--- `sse.parser{ max_event_size =, onretry =, oncomment = }`: a parser for
-- bytes from any transport (README, "The parser").
function _M.parser(opts)
  opts = options.check("parser", opts, PARSER_OPTIONS)
  return core.parser(opts.max_event_size or _M.DEFAULT_MAX_EVENT_SIZE, opts.onretry, opts.oncomment)
end

-- Readers ------------------------------------------------------------------
-- A reader is a function: read() returns the next chunk of bytes, nil at the
-- end, or nil, err (lua-resty-http's body_reader, a cosocket's receiveany,
-- io.read with a size, a queue fed by a job's output).

local function check_reader(fname, read)
  if options.callable(read) then
    options.usage("bad argument #1 to '%s' (a reader function expected, got %s)", fname, type(read))
  end
end

-- The next chunk from `read`; nil at the end; raises a `network` error whose
-- cause is what the reader returned as its error.
local function next_chunk(read)
  local chunk, err = read()
  if chunk ~= nil then return chunk end
  if err ~= nil then
    error(core.error("network", "the reader failed: " .. tostring(err), { cause = err }), 0)
  end
  return nil
end

--- `for ev in sse.events(read [, opts]) do ... end`: the events of the bytes
-- that read() returns; opts as sse.parser's. Raises a `network` error when
-- the reader fails, a `protocol` error for an event over max_event_size.
function _M.events(read, opts)
  check_reader("events", read)
  local p = _M.parser(opts)
  local pending, done = nil, false -- the iterator over the current chunk
  return function()
    while true do
      if pending then
        local ev = pending()
        if ev then return ev end
        pending = nil
      end
      if done then return nil end
      local chunk = next_chunk(read)
      if chunk == nil then
        done = true
        return nil
      end
      pending = p:feed(chunk)
    end
  end
end

local LINES_OPTIONS = { max_event_size = options.positive_integer }

--- `for line in sse.lines(read [, opts]) do ... end`: LF or CRLF lines,
-- without the ending; a last line without LF is kept. `max_event_size`
-- bounds a line (default 16 MiB): past it a `protocol` error.
function _M.lines(read, opts)
  check_reader("lines", read)
  opts = options.check("lines", opts, LINES_OPTIONS)
  local splitter = lines.splitter(opts.max_event_size or _M.DEFAULT_MAX_EVENT_SIZE)
  local queue, first, last, done = {}, 1, 0, false
  local function push(line)
    last = last + 1
    queue[last] = line
  end
  return function()
    while first > last do
      if done then return nil end
      local chunk = next_chunk(read)
      local err
      if chunk == nil then
        done = true
        local line
        line, err = splitter:finish()
        if line then push(line) end
      else
        err = splitter:feed(chunk, push)
      end
      if err then error(err, 0) end
    end
    local line = queue[first]
    queue[first] = nil
    first = first + 1
    return line
  end
end

--- `for value in sse.ndjson(read [, opts]) do ... end`: one decoded JSON
-- value per line, blank lines skipped; a line that is not JSON raises a
-- `protocol` error naming its number (`err.line`).
function _M.ndjson(read, opts)
  local next_line = _M.lines(read, opts)
  local lineno = 0
  return function()
    for line in next_line do
      lineno = lineno + 1
      local value, err = json().ndjson_line(line, lineno)
      if err then error(err, 0) end
      if value ~= nil then return value end
    end
    return nil
  end
end

return _M
