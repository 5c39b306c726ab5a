-- What several specs need: tags for the stub server's log, error checks,
-- URL pieces. `local h = require "spec.helpers"`.

local fetch = require "fetchstream"
local socket = require "socket"
local assert = require "luassert" -- busted's assert is not global in a module

local h = {}

--- A function giving unique tags ("<prefix>-<name>-<n>") for srv:log(tag).
function h.tagger(prefix)
  local n = 0
  return function(name)
    n = n + 1
    return ("%s-%s-%d"):format(prefix, name, n)
  end
end

--- Call fn(...), which must raise a fetchstream error of `kind`; return it.
function h.raises(kind, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected a " .. kind .. " error, but the call returned")
  assert.is_true(fetch.is_error(err), "expected a fetchstream error, got " .. tostring(err))
  assert.are.equal(kind, err.kind, tostring(err))
  return err
end

--- A port on which nothing listens.
function h.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

--- Percent-encode a query value.
function h.enc(s)
  return (s:gsub("[^%w%-_%.~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

--- The path of the stub's /sse route sending `body`, with extra parameters
-- (chunk =, delay =, ct =, ...).
function h.sse_path(body, extra)
  local q = "/sse?body=" .. h.enc(body)
  for k, v in pairs(extra or {}) do q = q .. "&" .. k .. "=" .. h.enc(tostring(v)) end
  return q
end

--- A whole file's bytes.
function h.read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

return h
