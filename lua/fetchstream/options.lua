--- Option checking: every public function takes an options table whose names
-- are known. A typo must not be silently ignored, so an unknown name, or a
-- value of the wrong type, raises a `usage` error object at once.
-- @module fetchstream.options

local core = require "fetchstream.sse.core" -- errors and the parser: no curl

local error, getmetatable, pairs, tostring, type =
  error, getmetatable, pairs, tostring, type

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

-- Integral floats count as integers (on LuaJIT every number is a float).
local function is_whole(v)
  return type(v) == "number" and v == math.floor(v) and v >= 0 and v < 2^53
end

function _M.positive_integer(v)
  if is_whole(v) and v > 0 then return nil end
  return "a positive integer"
end

function _M.whole_number(v)
  if is_whole(v) then return nil end
  return "a whole number >= 0"
end

function _M.string(v)
  if type(v) ~= "string" then return "a string" end
end

--- A string that reaches curl as a C string (a URL, a header value, a file
-- name): CR or LF would start a new header line on the wire, NUL would cut
-- it short. The one check for all of them.
function _M.text(v)
  if type(v) ~= "string" then return "a string" end
  if v:find("[\r\n%z]") then return "a string without CR, LF or NUL" end
end

function _M.table(v)
  if type(v) ~= "table" then return "a table" end
end

function _M.boolean(v)
  if type(v) ~= "boolean" then return "a boolean" end
end

-- The longest wait any option or argument takes: a year. Past it a number
-- is a mistake (and NaN or an infinity must never reach C as a long).
_M.MAX_SECONDS = 366 * 24 * 3600

--- Seconds > 0, finite: the timeouts.
function _M.seconds(v)
  if type(v) ~= "number" or not (v > 0 and v <= _M.MAX_SECONDS) then
    return ("a number of seconds > 0 and <= %d"):format(_M.MAX_SECONDS)
  end
end

--- Seconds >= 0, finite: waits and delays.
function _M.delay(v)
  if type(v) ~= "number" or not (v >= 0 and v <= _M.MAX_SECONDS) then
    return ("a number of seconds >= 0 and <= %d"):format(_M.MAX_SECONDS)
  end
end

--- Check an optional seconds argument of a method: `fname(...)`'s argument
-- number `n`. nil passes.
function _M.check_delay_arg(fname, n, v)
  if v == nil then return end
  if _M.delay(v) then
    usage("bad argument #%d to '%s' (%s expected, got %s)", n, fname, _M.delay(v), tostring(v))
  end
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

-- The edit distance between a and b (insertions, deletions, substitutions
-- and swaps of two neighbours), or limit + 1 as soon as it must exceed limit.
local function distance(a, b, limit)
  local la, lb = #a, #b
  if math.abs(la - lb) > limit then return limit + 1 end
  local prev2, prev, cur = {}, {}, {}
  for j = 0, lb do prev[j] = j end
  for i = 1, la do
    cur[0] = i
    local best = i
    for j = 1, lb do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      local d = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
      if i > 1 and j > 1 and a:byte(i) == b:byte(j - 1) and a:byte(i - 1) == b:byte(j) then
        d = math.min(d, prev2[j - 2] + 1)
      end
      cur[j] = d
      if d < best then best = d end
    end
    if best > limit then return limit + 1 end
    prev2, prev, cur = prev, cur, prev2
  end
  return prev[lb]
end

--- The name among the keys of `spec` (name -> anything) that `name` is most
-- likely a typo of, or nil: within 1 edit for short names, 2 for longer ones.
function _M.suggest(name, spec)
  if type(name) ~= "string" then return nil end
  local limit = #name <= 4 and 1 or 2
  local best, best_d
  for candidate in pairs(spec) do
    local d = distance(name:lower(), candidate, limit)
    if d <= limit and (best_d == nil or d < best_d or d == best_d and candidate < best) then
      best, best_d = candidate, d
    end
  end
  return best
end

--- The usage error for an unknown option `name` of `fname`, with a "did
-- you mean" when `spec` has a close name.
function _M.unknown(fname, name, spec)
  local guess = _M.suggest(name, spec)
  if guess then usage("unknown option '%s' to '%s' (did you mean '%s'?)", name, fname, guess) end
  usage("unknown option '%s' to '%s'", name, fname)
end

--- Check `opts` (nil or a table) against `spec` (name -> checker) for the
-- function `fname`; returns the table (an empty one for nil).
function _M.check(fname, opts, spec)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    usage("bad argument to '%s' (options table expected, got %s)", fname, type(opts))
  end
  local name, expected, value = _M.problem(opts, spec)
  if name and not expected then _M.unknown(fname, name, spec) end
  if name then usage("option '%s' to '%s' must be %s, got %s", name, fname, expected, value) end
  return opts
end

return _M
