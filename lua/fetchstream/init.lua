--- fetchstream: fetch() + ReadableStream + Server-Sent Events for Lua.
-- The C core (fetchstream.core) moves the bytes; this module holds the policy:
-- options, errors, iterators and callbacks.
-- @module fetchstream

local core = require "fetchstream.core"
local client = require "fetchstream.client"

local getmetatable = getmetatable

local _M = { _VERSION = core._VERSION }

--- The metatable of every error object (`kind`, `message`, `tostring`).
_M.Error = core.Error

--- Make an error object: `fetch.error("http", "invalid key", { status = 401 })`.
_M.error = core.error

--- Whether `v` is a fetchstream error object.
function _M.is_error(v)
  return getmetatable(v) == core.Error
end

-- The parser, events and readers live in fetchstream.sse (no curl needed).

local sse = require "fetchstream.sse"

--- `fetch.parser{ max_event_size =, onretry =, oncomment = }`: an SSE parser
-- for bytes from any transport; the same as `require("fetchstream.sse").parser`.
_M.parser = sse.parser

_M.DEFAULT_MAX_EVENT_SIZE = sse.DEFAULT_MAX_EVENT_SIZE

-- Streaming -----------------------------------------------------------------
-- Every function below is a method of the default client, made on first use.

local default = client.default

--- `fetch.client()`: a separate client, with the methods below.
_M.client = client.new

--- `fetch.open(url, opts)` -> stream once the response headers are in | nil, err
function _M.open(url, opts) return default():open(url, opts) end

--- `for ev in fetch.events(url, opts) do ... end` (break aborts the transfer)
function _M.events(url, opts) return default():events(url, opts) end

--- `fetch.each(url, opts, function(ev, s) ... end)` -> true | nil, err: the
-- events of one SSE response; returning false or raising aborts at once.
-- The form to prefer on LuaJIT, where `break` cannot close a stream.
function _M.each(url, opts, fn) return default():each(url, opts, fn) end

--- `for data, event, id in fetch.values(url, opts) do ... end`: the events as
-- three strings, no table per event (break aborts the transfer)
function _M.values(url, opts) return default():values(url, opts) end

--- `for bytes in fetch.chunks(url, opts) do ... end`
function _M.chunks(url, opts) return default():chunks(url, opts) end

--- `for line in fetch.lines(url, opts) do ... end`
function _M.lines(url, opts) return default():lines(url, opts) end

--- `for value in fetch.ndjson(url, opts) do ... end`: one JSON value per line
function _M.ndjson(url, opts) return default():ndjson(url, opts) end

--- `for text in fetch.chat(base_url, opts) do ... end`: an LLM chat answer,
-- delta by delta (see README, "LLM chat streams")
function _M.chat(base_url, opts) return default():chat(base_url, opts) end

--- `fetch.stream(url, opts)` -> a stream that delivers to its callbacks
function _M.stream(url, opts) return default():stream(url, opts) end

--- `fetch.run([timeout])`: drive every callback stream until all have ended
function _M.run(timeout) return default():run(timeout) end

return _M
