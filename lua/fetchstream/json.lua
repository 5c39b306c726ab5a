--- JSON for the whole library: one cjson instance of our own (a user's cjson
-- settings stay theirs), and decoding that fails with a `protocol` error
-- quoting the first bytes of what was not JSON.
-- @module fetchstream.json

local core = require "fetchstream.core"
local cjson = require("cjson").new()

local pcall, tostring = pcall, tostring

local _M = { encode = cjson.encode }

local PREVIEW = 60 -- how much of bad JSON an error message quotes

--- `text` cut to `n` bytes (default 60), with "..." when it was longer.
function _M.preview(text, n)
  n = n or PREVIEW
  return #text > n and text:sub(1, n) .. "..." or text
end

--- The value `text` holds, or nil when it is not JSON (never raises).
function _M.try_decode(text)
  local ok, value = pcall(cjson.decode, text)
  if ok then return value end
  return nil
end

--- The value `text` holds, or nil, err (kind `protocol`): "<what> is not
-- JSON (<why>): <first bytes>". `fields` are added to the error.
function _M.decode(text, what, fields)
  local ok, value = pcall(cjson.decode, text)
  if ok then return value end
  local why = tostring(value):gsub("^.-:%d+: ", "")
  return nil, core.error("protocol", ("%s is not JSON (%s): %q"):format(what, why, _M.preview(text)),
    fields)
end

return _M
