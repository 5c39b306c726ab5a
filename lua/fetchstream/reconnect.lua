--- Reconnection as EventSource does it: when a stream may connect again and
-- how long it waits first. Policy only: the stream (stream.lua) does the
-- waiting and the connecting.
--
-- After a network error, an idle or connect timeout, or a normal end of the
-- response, a stream with `reconnect` set waits at least the reconnection
-- time — the server's last `retry:`, else `delay` — doubling over
-- consecutive failures with up to 20% jitter, up to `max_delay`; 429 and 503
-- wait for Retry-After; a 204 ends it for good; nothing else comes back.
-- @module fetchstream.reconnect

local core = require "fetchstream.core"

local math_floor, math_max, math_min, tonumber, tostring, type =
  math.floor, math.max, math.min, tonumber, tostring, type

local _M = {}

_M.DEFAULT_DELAY = 3
_M.DEFAULT_MAX_DELAY = 30

--- The `reconnect` option as a policy { retries, delay, max_delay, failures },
-- or nil when the stream does not reconnect.
function _M.policy(opt)
  if not opt then return nil end
  local t = type(opt) == "table" and opt or {}
  return {
    retries = t.retries, -- nil: no limit, as EventSource
    delay = t.delay or _M.DEFAULT_DELAY,
    max_delay = t.max_delay or _M.DEFAULT_MAX_DELAY,
    failures = 0, -- consecutive reconnections without an event in between
  }
end

-- The jitter of reconnection delays must differ between processes, or
-- clients that lost the same server come back in step. Lua 5.4 seeds
-- math.random from the time and an address at startup; LuaJIT starts every
-- process on the same sequence unless the host seeds it (Neovim does not).
-- So on 5.1 the jitter comes from a generator of its own, seeded the way 5.4
-- seeds, and math.random and its seed stay the user's.
local random = math.random
if _VERSION == "Lua 5.1" then
  local MOD = 2147483648 -- 2^31: every product below stays exact in a double
  local address = tonumber(tostring({}):match("0x(%x+)") or "0", 16) or 0
  local state = math_floor(core.now() * 1e6 + address % MOD) % MOD
  random = function()
    -- state * 1103515245 + 12345 mod 2^31, the multiplier in two halves
    state = (state * 20077 + (state * 16838 % 32768) * 65536 + 12345) % MOD
    return state / MOD
  end
end

-- Seconds from a Retry-After header (delay-seconds form), or nil.
local function retry_after(headers)
  local v = headers and headers["retry-after"]
  return v and tonumber(v:match("^%s*(%d+)%s*$"))
end

--- How long a stream under `policy` (nil: none) waits before connecting
-- again after ending with (reason, err): seconds, or nil when it must not
-- reconnect. `status` is the last response's, `retry_ms` the server's last
-- `retry:` (nil if none). Counts the failure.
function _M.wait(policy, reason, err, status, retry_ms)
  if not policy then return nil end
  local wait_for_server
  if reason == "http" then
    if err.status ~= 429 and err.status ~= 503 then return nil end
    wait_for_server = retry_after(err.headers)
  elseif reason == "timeout" then
    if err.timeout == "total" then return nil end
  elseif reason ~= "network" and reason ~= "done" then
    return nil -- aborted, protocol, callback, api, eof: for good
  end
  if reason == "done" and status == 204 then return nil end -- 204: stop for good
  policy.failures = policy.failures + 1
  if policy.retries and policy.failures > policy.retries then return nil end
  local base = retry_ms and retry_ms / 1000 or policy.delay -- the reconnection time
  local cap = math_max(policy.max_delay, base) -- max_delay never shortens it
  local wait = math_min(cap, base * 2 ^ (policy.failures - 1) * (1 + 0.2 * random()))
  if wait_for_server then wait = math_max(wait_for_server, base) end
  return wait
end

--- An event arrived: the connection worked, the back-off starts over.
function _M.succeeded(policy)
  if policy then policy.failures = 0 end
end

return _M
