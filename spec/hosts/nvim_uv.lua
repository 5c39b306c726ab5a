-- Run by spec/nvim_uv_spec.lua inside headless Neovim (0.7.2, vim.loop):
--   nvim --headless -u NONE -i NONE -n -c 'luafile spec/hosts/nvim_uv.lua'
-- with FETCHSTREAM_ROOT, FETCHSTREAM_BUILD, BASE (the stub server's URL),
-- CASE (which case to run) and OUT (where the results go, one `key value`
-- per line, newlines in a value written as \n). Each case drives fetchstream.uv on the editor's own loop; the
-- script waits with vim.wait, which runs that loop (timers, scheduled
-- callbacks), and quits Neovim when done.

local root, build = os.getenv("FETCHSTREAM_ROOT"), os.getenv("FETCHSTREAM_BUILD")
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = build .. "/?.so;" .. package.cpath

local BASE = os.getenv("BASE")
local out = assert(io.open(os.getenv("OUT"), "w"))
local function say(key, value) -- one line each: a newline in a value is written \n
  out:write(key, " ", (tostring(value):gsub("\\", "\\\\"):gsub("\n", "\\n")), "\n")
end

local api = vim.api
local uv = vim.uv or vim.loop

-- The stub server's /log for a tag, through the curl command line.
local function closed(tag)
  local log = vim.fn.system({ "curl", "-s", BASE .. "/log?tag=" .. tag })
  return log:find('"closed":true', 1, true) ~= nil
end

-- Whether the stub server sees the connection of `tag` closed within `secs`.
local function closed_within(tag, secs)
  local t0 = uv.hrtime()
  while (uv.hrtime() - t0) / 1e9 < secs do
    if closed(tag) then return true end
    uv.sleep(10)
  end
  return false
end

-- An editor timer (timer_start: it runs in the editor's main loop) that
-- counts its ticks every 10 ms.
local function ticker()
  local self = { ticks = 0, t0 = uv.hrtime() }
  self.id = vim.fn.timer_start(10, function() self.ticks = self.ticks + 1 end, { ["repeat"] = -1 })
  function self.stop()
    vim.fn.timer_stop(self.id)
    self.secs = (uv.hrtime() - self.t0) / 1e9
    return self.ticks, self.secs
  end
  return self
end

local CHAT = { model = "m", messages = { { role = "user", content = "hi" } } }
local function chat_opts(extra)
  local o = {}
  for k, v in pairs(CHAT) do o[k] = v end
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- E5560 shows up as an error message or in a callback error.
local function errmsg() return vim.v.errmsg or "" end

local cases = {}

-- A chat streamed into a buffer from ontext, with the default wrap, while an
-- editor timer ticks; then the same without wrap, to show what it prevents.
function cases.ontext()
  local fetch = require "fetchstream"
  local fuv = require "fetchstream.uv"
  local h = fuv.attach(fetch) -- the default client, on vim.loop
  say("uv", h.uv == uv)
  local buf = api.nvim_create_buf(false, true)
  local result, err
  local tick = ticker()
  fetch.chat(BASE .. "/v1?delay=30", chat_opts({
    ontext = function(text)
      local last = api.nvim_buf_line_count(buf)
      local line = api.nvim_buf_get_lines(buf, last - 1, last, false)[1]
      api.nvim_buf_set_lines(buf, last - 1, last, false, { line .. text })
    end,
    ondone = function(c) result = c end,
    onerror = function(e) err = e end,
  }))
  vim.wait(10000, function() return result or err end, 5)
  local ticks, secs = tick.stop()
  say("error", err)
  say("text", table.concat(api.nvim_buf_get_lines(buf, 0, -1, false), "\n"))
  say("ticks", ticks)
  say("expected", math.floor(secs / 0.010))
  say("e5560", errmsg():find("E5560", 1, true) ~= nil)

  -- wrap = false: callbacks run in the loop's fast event, where the API is off limits
  local c = fetch.client()
  fuv.attach(c, uv, { wrap = false })
  local nowrap
  c:stream(BASE .. "/count?n=1", {
    onmessage = function() api.nvim_buf_set_lines(buf, 0, -1, false, { "x" }) end,
    onerror = function(e) nowrap = e end,
    onclose = function() nowrap = "closed" end,
  })
  vim.wait(5000, function() return nowrap end, 5)
  say("nowrap-kind", type(nowrap) == "table" and nowrap.kind or nowrap)
  say("nowrap-e5560", tostring(type(nowrap) == "table" and nowrap.cause):find("E5560", 1, true) ~= nil)
end

-- abort() from an editor timer closes the connection at once.
function cases.abort()
  local fetch = require "fetchstream"
  local fuv = require "fetchstream.uv"
  fuv.attach(fetch)
  local tag = "nvim-abort-" .. uv.getpid()
  local why
  local s = fetch.stream(BASE .. "/stall?tag=" .. tag, { onmessage = function() end,
                                                         onabort = function(reason) why = reason end })
  local is_closed
  vim.fn.timer_start(200, function()
    s:abort("from a timer")
    is_closed = closed_within(tag, 0.5)
  end)
  vim.wait(5000, function() return is_closed ~= nil end, 5)
  say("why", why)
  say("reason", s.reason)
  say("closed", is_closed)
end

-- The coroutine form: `for text in fetch.chat(...)` inside spawn, writing to
-- a buffer, while an editor timer ticks; then a loop aborted from a timer.
function cases.coroutine()
  local fetch = require "fetchstream"
  local fuv = require "fetchstream.uv"
  local buf = api.nvim_create_buf(false, true)
  local done, failure
  local tick = ticker()
  local co = fuv.spawn({ onerror = function(e) failure = tostring(e) end }, function()
    local parts = {}
    for text in fetch.chat(BASE .. "/v1?delay=30", chat_opts()) do
      parts[#parts + 1] = text
      api.nvim_buf_set_lines(buf, 0, -1, false, { table.concat(parts) })
    end
    done = true
  end)
  say("spawned", type(co) == "thread" and done == nil)
  vim.wait(10000, function() return done or failure end, 5)
  local ticks, secs = tick.stop()
  say("error", failure)
  say("text", table.concat(api.nvim_buf_get_lines(buf, 0, -1, false), "\n"))
  say("ticks", ticks)
  say("expected", math.floor(secs / 0.010))
  say("attached", require("fetchstream.client").default()._loop ~= nil)

  local tag = "nvim-co-abort-" .. uv.getpid()
  local s, n, ended
  fuv.spawn({ onerror = function(e) failure = tostring(e) end }, function()
    s = assert(fetch.open(BASE .. "/stall?tag=" .. tag))
    n = 0
    for _ in s:events() do n = n + 1 end
    ended = s.reason
  end)
  local is_closed
  vim.fn.timer_start(300, function()
    s:abort()
    is_closed = closed_within(tag, 0.5)
  end)
  vim.wait(5000, function() return is_closed ~= nil and ended end, 5)
  say("co-abort-error", failure)
  say("co-abort-events", n)
  say("co-abort-reason", ended)
  say("co-abort-closed", is_closed)
  say("e5560", errmsg():find("E5560", 1, true) ~= nil)
end

-- examples/nvim_chat.lua: :FetchChat streams into a scratch buffer; <C-c>
-- there aborts; an error goes to vim.notify.
function cases.example()
  local notes = {}
  vim.notify = function(msg, level) notes[#notes + 1] = { msg = msg, level = level } end -- luacheck: ignore 122
  dofile(root .. "/examples/nvim_chat.lua")

  vim.cmd("FetchChat Hello there")
  local buf = api.nvim_get_current_buf()
  say("name", api.nvim_buf_get_name(buf):match("fetchchat://%d+") ~= nil)
  vim.wait(10000, function() return vim.b[buf].fetchchat ~= "streaming" end, 5)
  say("state", vim.b[buf].fetchchat)
  say("text", table.concat(api.nvim_buf_get_lines(buf, 0, -1, false), "\n"))

  -- a slow answer, aborted with <C-c> in its buffer
  vim.env.OPENAI_BASE_URL = BASE .. "/v1?delay=200" -- luacheck: ignore 122
  vim.cmd("FetchChat Take your time")
  buf = api.nvim_get_current_buf()
  vim.wait(10000, function()
    local lines = api.nvim_buf_get_lines(buf, 0, -1, false)
    return lines[#lines] ~= ""
  end, 5) -- the first words are in
  api.nvim_feedkeys(api.nvim_replace_termcodes("<C-c>", true, false, true), "x", false)
  vim.wait(5000, function() return vim.b[buf].fetchchat ~= "streaming" end, 5)
  say("abort-state", vim.b[buf].fetchchat)
  local lines = api.nvim_buf_get_lines(buf, 0, -1, false)
  say("abort-last", lines[#lines])

  -- an error: a 401 goes to vim.notify
  vim.env.OPENAI_BASE_URL = BASE .. "/v1?key=secret" -- luacheck: ignore 122
  vim.cmd("FetchChat Who am I")
  buf = api.nvim_get_current_buf()
  vim.wait(10000, function() return vim.b[buf].fetchchat ~= "streaming" end, 5)
  say("error-state", vim.b[buf].fetchchat)
  say("notes", #notes)
  say("note-level", notes[1] and notes[1].level == vim.log.levels.ERROR)
  say("note", notes[1] and notes[1].msg)
  say("e5560", errmsg():find("E5560", 1, true) ~= nil)
end

-- doc/fetchstream.txt: :helptags takes it (no duplicate tag, E154), :help
-- fetchstream opens it, and every |link| in it leads somewhere.
function cases.doc()
  local dir = vim.fn.tempname()
  vim.fn.mkdir(dir .. "/doc", "p")
  local f = assert(io.open(root .. "/doc/fetchstream.txt"))
  local text = f:read("*a")
  f:close()
  f = assert(io.open(dir .. "/doc/fetchstream.txt", "w"))
  f:write(text)
  f:close()
  vim.v.errmsg = "" -- luacheck: ignore 122
  vim.cmd("helptags " .. dir .. "/doc")
  say("helptags-error", vim.v.errmsg ~= "" and vim.v.errmsg or nil)
  vim.opt.runtimepath:prepend(dir)
  vim.cmd("help fetchstream")
  say("help", api.nvim_buf_get_name(0):match("fetchstream%.txt$") ~= nil)
  local broken = {}
  for link in text:gmatch("|([^|%s]+)|") do
    if not pcall(vim.cmd, "help " .. link) then broken[#broken + 1] = link end
  end
  say("broken", table.concat(broken, ","))
  local tags = 0
  for _ in text:gmatch("%*[%w_.():%-]+%*") do tags = tags + 1 end
  say("tags", tags)
  vim.fn.delete(dir, "rf")
end

local ok, err = pcall(cases[os.getenv("CASE")])
if not ok then say("failure", err) end
out:close()
vim.cmd("qall!")
