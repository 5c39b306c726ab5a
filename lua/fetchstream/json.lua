--- JSON for the whole library: one cjson instance of our own (a user's cjson
-- settings stay theirs), decoding that fails with a `protocol` error quoting
-- the first bytes of what was not JSON, and integers for integral numbers.
-- @module fetchstream.json

local core = require "fetchstream.sse.core" -- errors and the parser: no curl
local cjson = require("cjson").new()

local next, pcall, tostring, type = next, pcall, tostring, type
-- math.tointeger is nil on Lua 5.1 and LuaJIT: there numbers stay as they are.
local tointeger = math.tointeger -- luacheck: ignore 143

local _M = { encode = cjson.encode }

local PREVIEW = 60 -- how much of bad JSON an error message quotes

--- `text` cut to `n` bytes (default 60), with "..." when it was longer.
function _M.preview(text, n)
  n = n or PREVIEW
  return #text > n and text:sub(1, n) .. "..." or text
end

local MAX_EXACT = 2 ^ 53 -- past it a float no longer holds every integer

-- Debian's cjson 2.1 decodes every JSON number as a float (1 -> 1.0). JSON
-- has one number type, and a count or an id reads as an integer in Lua 5.4:
-- an integral float within +-2^53 (where a float is exact) becomes an
-- integer; any other number stays a float.
local function integer_of(v)
  if v >= -MAX_EXACT and v <= MAX_EXACT then return tointeger(v) or v end
  return v
end

local function integers_in(t)
  for k, v in next, t do
    local tv = type(v)
    if tv == "number" then
      if v >= -MAX_EXACT and v <= MAX_EXACT then
        local i = tointeger(v)
        if i then t[k] = i end -- an existing key: allowed while traversing
      end
    elseif tv == "table" then
      integers_in(v)
    end
  end
  return t
end

--- `value` (a decoded JSON value) with its integral numbers as integers, in
-- place; tables are walked only when the value is one. Without
-- math.tointeger (Lua 5.1, LuaJIT) it returns `value` unchanged.
function _M.integers(value)
  local tv = type(value)
  if tv == "table" then return integers_in(value) end
  if tv == "number" then return integer_of(value) end
  return value
end
if not tointeger then
  function _M.integers(value) return value end
end
local integers = _M.integers

--- The value `text` holds, or nil when it is not JSON (never raises).
function _M.try_decode(text)
  local ok, value = pcall(cjson.decode, text)
  if ok then return integers(value) end
  return nil
end

--- The value `text` holds, or nil, err (kind `protocol`): "<what> is not
-- JSON (<why>): <first bytes>". `fields` are added to the error.
function _M.decode(text, what, fields)
  local ok, value = pcall(cjson.decode, text)
  if ok then return integers(value) end
  local why = tostring(value):gsub("^.-:%d+: ", "")
  return nil, core.error("protocol", ("%s is not JSON (%s): %q"):format(what, why, _M.preview(text)),
    fields)
end

--- One NDJSON line, number `lineno`: its value; nil for a blank line; or
-- nil, err (kind `protocol`, err.line = lineno) when it is not JSON.
function _M.ndjson_line(line, lineno)
  if not line:find("%S") then return nil end
  return _M.decode(line, "NDJSON line " .. lineno, { line = lineno })
end

return _M
