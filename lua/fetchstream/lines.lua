--- Splitting a byte stream into lines (LF or CRLF), bounded by a maximum
-- line size: what fetch.lines, fetch.ndjson and the reader forms of
-- fetchstream.sse share.
--
--   local sp = lines.splitter(max)
--   local err = sp:feed(bytes, push)   -- push(line) per whole line
--   local last, err = sp:finish()      -- a last line without LF, or nil
-- @module fetchstream.lines

local core = require "fetchstream.sse.core" -- errors and the parser: no curl

local setmetatable, table_concat = setmetatable, table.concat

local _M = {}

local Splitter = {}
Splitter.__index = Splitter

--- A splitter for lines of at most `max` bytes (the line ending not counted).
function _M.splitter(max)
  return setmetatable({
    parts = {}, -- the pieces of a line not ended yet
    size = 0,   -- their bytes
    max = max,
  }, Splitter)
end

local function too_large(max)
  return core.error("protocol", ("line larger than max_event_size (%d bytes)"):format(max))
end

--- Forget a line not ended yet (a connection dropped mid-line).
function Splitter:clear()
  local parts = self.parts
  for i = #parts, 1, -1 do parts[i] = nil end
  self.size = 0
end

--- Take `bytes`; push(line) for each line they end, without its LF or CRLF.
-- Returns nil, or a `protocol` error when a line is over max (then nothing
-- more is pushed).
function Splitter:feed(bytes, push)
  local parts, pos, max = self.parts, 1, self.max
  while true do
    local nl = bytes:find("\n", pos, true)
    if not nl then break end
    parts[#parts + 1] = bytes:sub(pos, nl - 1)
    local line = table_concat(parts)
    self:clear()
    if line:byte(-1) == 13 then line = line:sub(1, -2) end
    if #line > max then return too_large(max) end
    push(line)
    pos = nl + 1
  end
  if pos <= #bytes then -- the start of a line that ends in a later chunk
    parts[#parts + 1] = bytes:sub(pos)
    self.size = self.size + #bytes - pos + 1
    if self.size > max + 1 then return too_large(max) end -- +1: a CR may still go
  end
end

--- At the end of the input: the last line when it had no LF (as it is, a
-- CR kept), nil when there is none, or nil, err when it is over max.
function Splitter:finish()
  if #self.parts == 0 then return nil end
  local line = table_concat(self.parts)
  self:clear()
  if #line > self.max then return nil, too_large(self.max) end
  return line
end

return _M
