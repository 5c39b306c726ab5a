---@meta fetchstream.sse
-- luacheck: ignore 241 (a definition file: its tables are declared, never used)

-- LuaCATS definitions of the module fetchstream.sse: the SSE parser and the
-- reader forms, without libcurl (README, "The parser, for any transport").
-- The Parser, Event, Error and ParserOptions classes are in
-- types/fetchstream.lua.

---@class fetchstream.sse
local sse = {}

--- The default bound of an event or a line, in bytes (16 MiB).
sse.DEFAULT_MAX_EVENT_SIZE = 16 * 1024 * 1024

--- A reader: returns the next chunk of bytes, `nil` at the end, or
--- `nil, err` when it failed.
---@alias fetchstream.Reader fun(): string?, any

--- An SSE parser for bytes from any transport (the same as `fetch.parser`).
---@param opts? fetchstream.ParserOptions
---@return fetchstream.Parser
function sse.parser(opts) end

--- `for ev in sse.events(read [, opts]) do ... end`: the events of the bytes
--- `read()` returns. A reader's error raises a `network` error whose `cause`
--- is the reader's value; an event over `max_event_size` a `protocol` error.
---@param read fetchstream.Reader
---@param opts? fetchstream.ParserOptions
---@return fun(): fetchstream.Event? iter
function sse.events(read, opts) end

--- `for line in sse.lines(read [, opts]) do ... end`: LF or CRLF lines,
--- without the ending; a last line without LF is kept.
---@param read fetchstream.Reader
---@param opts? { max_event_size?: integer }
---@return fun(): string? iter
function sse.lines(read, opts) end

--- `for value in sse.ndjson(read [, opts]) do ... end`: one decoded JSON
--- value per line, blank lines skipped; a line that is not JSON raises a
--- `protocol` error with `err.line`.
---@param read fetchstream.Reader
---@param opts? { max_event_size?: integer }
---@return fun(): any iter
function sse.ndjson(read, opts) end

return sse
