--- Option checking: every public function takes an options table whose names
-- are known. A typo must not be silently ignored, so an unknown name, or a
-- value of the wrong type, raises a `usage` error object at once.
-- @module fetchstream.options

local core = require "fetchstream.core"

local error, getmetatable, math_type, pairs, tostring, type =
  error, getmetatable, math.type, pairs, tostring, type

local _M = {}

local function usage(fmt, ...)
  error(core.error("usage", fmt:format(...)), 0)
end
_M.usage = usage

-- Each checker returns nil when the value is fine, or what was expected.

function _M.callable(v)
  if type(v) == "function" then return nil end
  local mt = getmetatable(v)
  if type(mt) == "table" and type(mt.__call) == "function" then return nil end
  return "a function"
end

function _M.positive_integer(v)
  if math_type(v) == "integer" and v > 0 then return nil end
  if type(v) == "number" and v > 0 and v == math.floor(v) and v < 2^63 then return nil end
  return "a positive integer"
end

function _M.string(v)
  if type(v) ~= "string" then return "a string" end
end

function _M.table(v)
  if type(v) ~= "table" then return "a table" end
end

function _M.boolean(v)
  if type(v) ~= "boolean" then return "a boolean" end
end

function _M.seconds(v)
  if type(v) ~= "number" or v ~= v or v <= 0 then return "a positive number of seconds" end
end

local function shown(value)
  return type(value) == "string" and ("%q"):format(value) or tostring(value)
end

--- The first entry of table `t` that `spec` (name -> checker) refuses, or
-- nil: returns its name, what was expected (nil for an unknown name), and
-- the value as a message shows it.
function _M.problem(t, spec)
  for name, value in pairs(t) do
    local checker = spec[name]
    if not checker then return tostring(name), nil, shown(value) end
    local expected = checker(value)
    if expected then return name, expected, shown(value) end
  end
end

--- Check `opts` (nil or a table) against `spec` (name -> checker) for the
-- function `fname`; returns the table (an empty one for nil).
function _M.check(fname, opts, spec)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    usage("bad argument to '%s' (options table expected, got %s)", fname, type(opts))
  end
  local name, expected, value = _M.problem(opts, spec)
  if name and not expected then usage("unknown option '%s' to '%s'", name, fname) end
  if name then usage("option '%s' to '%s' must be %s, got %s", name, fname, expected, value) end
  return opts
end

return _M
