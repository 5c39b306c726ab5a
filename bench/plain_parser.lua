-- bench/plain_parser.lua: the benchmark's plain-Lua peer.
--
-- An SSE parser written the way Neovim plugins usually write one for LLM
-- streams: keep a string buffer, append each chunk, find "\n" with a plain
-- string.find, split off lines, handle the data/event/id/retry fields and
-- dispatch on a blank line. It is written with care (a moving position
-- instead of re-slicing the buffer for every line; data lines collected in a
-- table and joined once per event) but without C and without tricks.
--
-- Deliberate limits, shared with most plugin code: line ends are LF or CRLF
-- (a lone CR is not a line end), and a BOM is not stripped.
--
--   local P = require "plain_parser"
--   local p = P.new()
--   p:feed(chunk, function(data, event, id) ... end)

local find, sub, byte, concat = string.find, string.sub, string.byte, table.concat
local tonumber = tonumber

local M = {}
M.__index = M

function M.new()
  return setmetatable({
    buf = "",           -- bytes after the last complete line
    data = {},          -- data lines of the event being built
    ndata = 0,
    event = "",         -- event type of the event being built
    last_event_id = "",
    retry = nil,
  }, M)
end

-- Feed one chunk; call cb(data, event, id) for each complete event.
function M:feed(chunk, cb)
  local buf = self.buf
  if buf ~= "" then buf = buf .. chunk else buf = chunk end
  local data, ndata, event = self.data, self.ndata, self.event
  local pos = 1
  while true do
    local nl = find(buf, "\n", pos, true)
    if not nl then break end
    local stop = nl - 1
    if stop >= pos and byte(buf, stop) == 13 then stop = stop - 1 end  -- CRLF
    if stop < pos then
      -- blank line: dispatch
      if ndata > 0 then
        local d = ndata == 1 and data[1] or concat(data, "\n", 1, ndata)
        cb(d, event ~= "" and event or "message", self.last_event_id)
      end
      ndata, event = 0, ""
    else
      local line = sub(buf, pos, stop)
      local colon = find(line, ":", 1, true)
      local field, value
      if colon == 1 then
        field = nil                                   -- comment
      elseif colon then
        field = sub(line, 1, colon - 1)
        if byte(line, colon + 1) == 32 then value = sub(line, colon + 2)
        else value = sub(line, colon + 1) end
      else
        field, value = line, ""
      end
      if field == "data" then
        ndata = ndata + 1
        data[ndata] = value
      elseif field == "event" then
        event = value
      elseif field == "id" then
        if not find(value, "\0", 1, true) then self.last_event_id = value end
      elseif field == "retry" then
        if find(value, "^%d+$") then self.retry = tonumber(value) end
      end
    end
    pos = nl + 1
  end
  self.buf = sub(buf, pos)
  self.ndata, self.event = ndata, event
end

return M
