--- Turning a user's url and options into the request the C core sends.
-- Everything is checked here, before anything is sent: a bad value is a
-- `usage` error raised by the call itself.
-- @module fetchstream.request

local core = require "fetchstream.core"
local options = require "fetchstream.options"
local json = require "fetchstream.json"

local ipairs, math_ceil, pairs, pcall, tostring, type = ipairs, math.ceil, pairs, pcall, tostring, type

local usage = options.usage

local _M = {}

_M.DEFAULT_MAX_EVENT_SIZE = require("fetchstream.sse").DEFAULT_MAX_EVENT_SIZE
_M.DEFAULT_MAX_REDIRECTS = 10
-- Past this many queued body bytes a transfer pauses until Lua reads them.
_M.QUEUE_LIMIT = 1024 * 1024
_M.USER_AGENT = "fetchstream/" .. core._VERSION

-- The versions the C core knows (listed there once, core.HTTP_VERSIONS).
local HTTP_VERSIONS_TEXT
do
  local names = {}
  for name in pairs(core.HTTP_VERSIONS) do names[#names + 1] = ("%q"):format(name) end
  table.sort(names)
  HTTP_VERSIONS_TEXT = "one of " .. table.concat(names, ", ")
end

local function http_version(v)
  if type(v) == "string" and core.HTTP_VERSIONS[v] then return nil end
  return HTTP_VERSIONS_TEXT
end

local function redirects(v)
  if type(v) == "boolean" or not options.whole_number(v) then return nil end
  return "a boolean or a number of redirects"
end

-- A proxy URL, or false: no proxy at all, not even from the environment
-- (http_proxy, https_proxy, ALL_PROXY, NO_PROXY, which curl reads).
local function proxy(v)
  if v == false then return nil end
  return options.text(v)
end

local function headers_table(v)
  if type(v) ~= "table" then return "a table of name = value" end
end

local function any(_) return nil end

local RECONNECT_FIELDS = {
  retries = options.whole_number,
  delay = options.delay,
  max_delay = options.delay,
}

local function reconnect(v)
  if type(v) == "boolean" then return nil end
  if type(v) ~= "table" then return "a boolean or { retries =, delay =, max_delay = }" end
  local k, expected = options.problem(v, RECONNECT_FIELDS)
  if k and not expected then
    local guess = options.suggest(k, RECONNECT_FIELDS)
    return ("a table of retries, delay, max_delay ('%s' is none of them%s)")
      :format(k, guess and ("; did you mean '%s'?"):format(guess) or "")
  end
  if k then return ("%s in reconnect: %s"):format(k, expected) end
end

local function handlers(v)
  if type(v) ~= "table" then return "a table of event name = function" end
  for name, fn in pairs(v) do
    if type(name) ~= "string" or options.callable(fn) then
      return "a table of event name = function"
    end
  end
end

local function ms(seconds)
  return seconds and math_ceil(seconds * 1000) or nil
end

-- One entry per option of every request: `check` says what it takes (nil
-- or what was expected); `field` is where its value goes in the request the
-- C core reads, through `to_c` (which also gives the default for nil).
-- The rest (method, headers, body, json, last_event_id) shape the request
-- in build(); reconnect, max_event_size, content_type_check and the hooks
-- are the Lua layer's.
local OPTIONS = {
  method = { check = options.text },
  headers = { check = headers_table },
  body = { check = options.string },
  json = { check = any },
  connect_timeout = { check = options.seconds, field = "connect_timeout", to_c = ms },
  first_byte_timeout = { check = options.seconds, field = "first_byte_timeout", to_c = ms },
  idle_timeout = { check = options.seconds, field = "idle_timeout", to_c = ms },
  timeout = { check = options.seconds, field = "timeout", to_c = ms },
  max_event_size = { check = options.positive_integer },
  last_event_id = { check = options.text },
  reconnect = { check = reconnect },
  follow_redirects = { check = redirects, field = "max_redirects", to_c = function(v)
    if v == nil or v == true then return _M.DEFAULT_MAX_REDIRECTS end
    return v == false and 0 or v
  end },
  insecure = { check = options.boolean, field = "insecure", to_c = function(v) return v == true end },
  ca_file = { check = options.text, field = "ca_file" },
  proxy = { check = proxy, field = "proxy", to_c = function(v) -- "": no proxy, not even the environment's
    if v == false then return "" end
    return v
  end },
  http_version = { check = http_version, field = "http_version" },
  user_agent = { check = options.text, field = "user_agent", to_c = function(v) return v or _M.USER_AGENT end },
  accept_encoding = { check = options.boolean, field = "accept_encoding",
                      to_c = function(v) return v ~= false end },
  content_type_check = { check = options.boolean },
  onretry = { check = options.callable },
  oncomment = { check = options.callable },
  onreconnect = { check = options.callable },
}
_M.OPTIONS = OPTIONS

-- Options of every request, name -> check.
local REQUEST_OPTIONS = {}
for name, o in pairs(OPTIONS) do REQUEST_OPTIONS[name] = o.check end

local CALLBACK_OPTIONS = {
  onopen = options.callable,
  onmessage = options.callable,
  on = handlers,
  onchunk = options.callable,
  onclose = options.callable,
  onerror = options.callable,
  onabort = options.callable,
}

local PULL_SPEC, CALLBACK_SPEC = {}, {}
for name, check in pairs(REQUEST_OPTIONS) do
  PULL_SPEC[name], CALLBACK_SPEC[name] = check, check
end
for name, check in pairs(CALLBACK_OPTIONS) do CALLBACK_SPEC[name] = check end

_M.CALLBACK_OPTIONS = CALLBACK_OPTIONS
_M.REQUEST_OPTIONS = REQUEST_OPTIONS

-- A header name is an RFC 9110 token.
local function is_token(s)
  return type(s) == "string" and s:find("^[!#$%%&'*+.^_`|~%w-]+$") ~= nil
end

local function check_header(fname, name, value)
  if not is_token(name) then
    usage("bad header name %q to '%s'", tostring(name), fname)
  end
  if type(value) == "number" then value = tostring(value) end
  if type(value) ~= "string" then
    usage("header '%s' to '%s' must be a string, got %s", name, fname, type(value))
  end
  if options.text(value) then
    usage("header '%s' to '%s' holds CR, LF or NUL; nothing was sent", name, fname)
  end
  -- curl sends "Name;" as an empty header ("Name:" would remove it).
  return value == "" and name .. ";" or name .. ": " .. value
end

--- Check `url` and `opts` for the function `fname`; `callbacks` says whether
-- callback options are allowed. `accept` is the default Accept header, if any.
-- Returns the request table for core.transfer and the checked options.
function _M.build(fname, url, opts, callbacks, accept)
  if type(url) ~= "string" then
    usage("bad argument #1 to '%s' (URL string expected, got %s)", fname, type(url))
  end
  if not url:find("^[hH][tT][tT][pP][sS]?://") then
    usage("'%s' takes http:// and https:// URLs only, got %q", fname, url)
  end
  if options.text(url) or url:find(" ", 1, true) then
    usage("URL to '%s' holds a space, CR, LF or NUL", fname)
  end
  local spec = callbacks and CALLBACK_SPEC or PULL_SPEC
  for name in pairs(type(opts) == "table" and opts or {}) do
    if not callbacks and CALLBACK_OPTIONS[name] then
      usage("option '%s' is for callbacks: use fetch.stream, not '%s'", tostring(name), fname)
    end
  end
  opts = options.check(fname, opts, spec)

  local body = opts.body
  if opts.json ~= nil then
    if body ~= nil then usage("'%s' takes body or json, not both", fname) end
    local ok, encoded = pcall(json.encode, opts.json)
    if not ok then usage("option 'json' to '%s' cannot be encoded: %s", fname, tostring(encoded)) end
    body = encoded
  end
  local method = opts.method or (body and "POST" or "GET")
  if not is_token(method) then usage("bad method %q to '%s'", method, fname) end

  local lines, given = {}, {}
  for name, value in pairs(opts.headers or {}) do
    lines[#lines + 1] = check_header(fname, name, value)
    given[name:lower()] = true
  end
  if opts.json ~= nil and not given["content-type"] then
    lines[#lines + 1] = "Content-Type: application/json"
  end
  if accept and not given["accept"] then lines[#lines + 1] = "Accept: " .. accept end
  if body then lines[#lines + 1] = "Expect:" end -- no 100-continue round trip

  local req = {
    base_headers = lines, -- Last-Event-ID is added per connection
    url = url,
    method = method,
    body = body,
    headers = lines,
    queue_limit = _M.QUEUE_LIMIT,
  }
  for name, o in pairs(OPTIONS) do
    if o.field then
      local v = opts[name]
      if o.to_c then v = o.to_c(v) end
      req[o.field] = v
    end
  end
  return req, opts
end

--- Set req.headers for one connection: the request's own headers and, when
-- there is one, the last event ID.
function _M.set_last_event_id(req, id)
  local lines = req.base_headers
  if id and id ~= "" then
    local copy = {}
    for i = 1, #lines do copy[i] = lines[i] end
    copy[#copy + 1] = "Last-Event-ID: " .. id
    lines = copy
  end
  req.headers = lines
end

--- Parse header lines ("Name: value\n"...) into a table with lower-case
-- names; a repeated header's values are joined with ", ".
function _M.parse_headers(lines)
  local headers = {}
  for name, value in lines:gmatch("([^:\n]+):[ \t]*([^\n]*)") do
    name = name:lower()
    value = value:gsub("[ \t]+$", "")
    local old = headers[name]
    headers[name] = old and old .. ", " .. value or value
  end
  return headers
end

--- `url` without credentials (`user:pass@`): what errors, messages and
-- s.url show.
function _M.safe_url(url)
  return (url:gsub("^(%a[%w+.-]*://)[^/?#]*@", "%1"))
end

-- The comma-separated values of a header, as the Fetch standard splits
-- them: a comma inside a quoted string does not split.
local function header_values(value)
  local out, start, i, n, quoted = {}, 1, 1, #value, false
  while i <= n do
    local c = value:sub(i, i)
    if quoted and c == "\\" then
      i = i + 1 -- the escaped character
    elseif c == '"' then
      quoted = not quoted
    elseif c == "," and not quoted then
      out[#out + 1] = value:sub(start, i - 1)
      start = i + 1
    end
    i = i + 1
  end
  out[#out + 1] = value:sub(start)
  return out
end

local MIME_TYPE = "^[ \t]*([!#$%%&'*+.^_`|~%w-]+/[!#$%%&'*+.^_`|~%w-]+)[ \t]*()"

--- The essence of a Content-Type value (`type/subtype`, lower-cased,
-- parameters dropped) as the Fetch standard's "extract a MIME type" finds
-- it: a repeated header arrives joined with ", "; of its values the last
-- valid one wins, and `*/*` never does. nil when none is valid.
function _M.media_type(content_type)
  if type(content_type) ~= "string" then return nil end
  local essence
  for _, value in ipairs(header_values(content_type)) do
    local mime, rest = value:match(MIME_TYPE)
    local after = mime and value:sub(rest, rest)
    if mime and (after == "" or after == ";") and mime ~= "*/*" then essence = mime:lower() end
  end
  return essence
end

return _M
