--- fetchstream.uv: a client driven by a libuv loop — luv (`require "luv"`)
-- or Neovim's `vim.uv` / `vim.loop` — and pull loops that suspend a
-- coroutine instead of blocking.
--
--   local h = require("fetchstream.uv").attach(client, uv [, opts])
--   h:detach()
--   require("fetchstream.uv").spawn(function() for ev in fetch.events(url) do ... end end)
--
-- The loop watches the client through one poll handle on c:fileno() and one
-- timer re-armed from c:timeout(); both stop when the client has nothing to
-- do (it then costs no CPU and does not keep the loop alive) and start again
-- when a stream starts. Each wake runs one *pass*: c:step() (every callback
-- of the client runs there, protected, exactly as under fetch.run()), then
-- the coroutines whose streams have news are resumed, then the handles are
-- re-armed. `opts.wrap` wraps the pass (Neovim: vim.schedule_wrap), so every
-- user callback and every resumed coroutine runs where the editor's API may
-- be called.
--
-- The engine's side of the bargain is in client.lua and stream.lua: c._loop
-- is the handle; loop:_changed(s), loop:_can_suspend(), loop:_suspend(s,
-- deadline), loop:_closing().
-- @module fetchstream.uv

local client = require "fetchstream.client"
local options = require "fetchstream.options"
local core = require "fetchstream.core"

local coroutine, error, getmetatable, ipairs, math, pairs, pcall, rawget, select, setmetatable, tostring, type =
  coroutine, error, getmetatable, ipairs, math, pairs, pcall, rawget, select, setmetatable, tostring, type
local co_create, co_resume, co_running, co_status, co_yield =
  coroutine.create, coroutine.resume, coroutine.running, coroutine.status, coroutine.yield
local co_isyieldable = coroutine.isyieldable -- Lua 5.3+, LuaJIT 2.1
local unpack = rawget(table, "unpack") or unpack -- luacheck: ignore 113 (5.1: a global)
local traceback = debug.traceback
local now = core.now
local usage = options.usage

local _M = {}

-- Without a descriptor to watch (no epoll), a busy client is stepped on a
-- timer this often.
local POLL_INTERVAL = 0.01

local Handle = {}
Handle.__index = Handle
Handle.__name = "fetchstream.uv.Handle"

-- Coroutines made by spawn, with their options (onerror); weak keys.
local spawned = setmetatable({}, { __mode = "k" })

-- Handles stopped but left open (see dispose): luv closes them at exit.
local parked = {}

-- A list, and a queue with a count (`n`) emptied in place.
local function push(list, v) list[#list + 1] = v end

local function enqueue(q, v)
  local n = q.n + 1
  q.n = n
  q[n] = v
end

-- Neovim's loop, when running inside Neovim.
local function nvim_loop()
  local vim = rawget(_G, "vim")
  if type(vim) == "table" then return rawget(vim, "uv") or vim.loop end
  return nil
end

-- The loop to use when none is given: Neovim's, else luv's.
local function default_uv()
  return nvim_loop() or require "luv"
end

-- The running coroutine when it can suspend (not the main thread, not
-- across a C boundary that cannot yield); else nil. On 5.1 coroutine.running()
-- is nil on the main thread; on 5.4 it says so with its second value.
local function suspendable()
  local co, main = co_running()
  if co == nil or main then return nil end
  if co_isyieldable and not co_isyieldable() then return nil end
  return co
end

-- Done with a uv handle. Closing is only safe where the loop will run
-- again to finish the close: Debian's luv 1.44 crashes in lua_close when a
-- handle was closed and uv.run() never ran after (a script that ends with
-- c:close() after uv.run() returned). So close it inside a running loop (or
-- in Neovim, whose loop always runs); elsewhere stop it and leave it open —
-- a stopped handle costs nothing, and luv closes it at exit. A poll handle
-- is always stopped before the client closes its descriptor.
local function dispose(self, handle)
  if handle:is_closing() then return end
  local mode = self.uv.loop_mode
  if self._nvim or (mode and mode() ~= nil) then
    handle:close()
  else
    handle:stop()
    push(parked, handle)
  end
end

-- Seconds -> whole milliseconds for a uv timer, rounded up (never early).
local function ms(seconds)
  if seconds <= 0 then return 0 end
  return math.ceil(seconds * 1000)
end

-- The pass ------------------------------------------------------------------

--- The error of coroutine co (nil: of the client's step) goes to spawn's
-- onerror, else attach's, else the host: raised at the end of the pass, so
-- Neovim shows it and luv reports it as an uncaught error — never silently.
function Handle:_failed(co, err)
  local opts = co and spawned[co]
  local handler = type(opts) == "table" and opts.onerror or self._onerror
  if handler then
    local ok, err2 = pcall(handler, err, co)
    if ok then return end
    err = err2
    co = nil
  end
  local text = co and traceback(co, tostring(err)) or tostring(err)
  push(self._errors, "fetchstream.uv: " .. text)
end

-- Resume co with the n values in args (a start) or none (a wake-up).
function Handle:_resume(co, args)
  if co_status(co) ~= "suspended" then return end
  local ok, err
  if args then
    ok, err = co_resume(co, unpack(args, 1, args.n))
  else
    ok, err = co_resume(co)
  end
  if not ok then self:_failed(co, err) end
end

-- Resume what waits: coroutines to start, then those whose streams have
-- news; what they start or wake in turn is resumed in the same pass. The
-- queues are emptied in place (no table per pass).
function Handle:_resume_all()
  local starts, woken, waiting = self._starts, self._woken, self._waiting
  local i, j = 1, 1
  while true do
    if i <= starts.n then
      local start = starts[i]
      starts[i] = nil
      i = i + 1
      self:_resume(start.co, start.args)
    elseif j <= woken.n then
      local s = woken[j]
      woken[j] = nil
      j = j + 1
      local w = waiting[s]
      if w ~= nil then
        waiting[s] = nil
        s._waiter = nil
        if type(w) == "thread" then
          self:_resume(w)
        else
          for k = 1, #w do self:_resume(w[k]) end
        end
      end
    else
      starts.n, woken.n = 0, 0
      return
    end
  end
end

-- Watch the client again as c:timeout() says, or stop when it has nothing
-- to do: then neither handle is active and the loop may return.
function Handle:_rearm()
  local c = self.client
  local t = c:timeout()
  if t == nil then
    if self._polling then
      self._poll:stop()
      self._polling = false
    end
    if self._timing then
      self._timer:stop()
      self._timing = false
    end
    return
  end
  if self._poll then
    if not self._polling then
      self._poll:start("r", self._on_poll)
      self._polling = true
    end
  elseif t > POLL_INTERVAL then
    t = POLL_INTERVAL
  end
  -- The timer is armed already for that moment (give or take a millisecond):
  -- most passes change nothing.
  if self._timing and math.abs(now() + t - self._due) < 0.001 then return end
  self:_arm(t)
end

-- Start the timer: a pass in `seconds`.
function Handle:_arm(seconds)
  self.uv.update_time() -- a pass takes time: the timer counts from now
  self._timer:start(ms(seconds), 0, self._on_timer)
  self._timing, self._due = true, now() + seconds
end

-- One pass: step the client, resume the coroutines, re-arm (see the top).
function Handle:_pass()
  self._scheduled = false
  if self._in_pass then return end -- a loop run from inside a pass
  local c = self.client
  self._in_pass = true
  if not self._detached then
    if c._dispatching or c._stepping then
      -- A callback of this client runs a nested loop: the client cannot step
      -- inside its own callback. Try again shortly.
      self._retry = true
    else
      local ok, err = pcall(c.step, c)
      if not ok then self:_failed(nil, err) end
    end
  end
  self:_resume_all()
  self._in_pass = false
  if self._detached then
    self:_close_handles()
  elseif self._retry then
    self._retry = false
    self:_arm(0.001)
  else
    self:_rearm()
  end
  local errors = self._errors
  if errors[1] ~= nil then
    local err = table.remove(errors, 1)
    if errors[1] ~= nil then self:_kick() end -- one per pass: the next one soon
    error(err, 0)
  end
end

-- Run a pass at the loop's next turn.
function Handle:_kick()
  if self._in_pass or self._scheduled or self._closed then return end
  if self._timing and self._due <= now() then return end -- due already
  self:_arm(0)
end

-- The handles' callbacks (in Neovim, a fast event: no API there; the pass
-- runs through opts.wrap). A poll handle is level-triggered: when the pass
-- is deferred by wrap, it stops until the pass has run.
local function wake(self, from_poll)
  if self._scheduled or self._closed then return end
  self._scheduled = true
  if from_poll and self._wrapped and self._polling then
    self._poll:stop()
    self._polling = false
  end
  self._run()
end

-- The engine's hooks (see client.lua) ---------------------------------------

--- Stream s started, ended, or has news: wake the coroutines waiting on it
-- and make sure a pass comes.
function Handle:_changed(s)
  if s._waiter then enqueue(self._woken, s) end
  if not self._in_pass then self:_kick() end
end

--- Whether the running code can suspend: a coroutine that may yield.
function Handle:_can_suspend()
  return not self._detached and suspendable() ~= nil
end

--- Suspend the running coroutine until s has news (_changed(s)) or the
-- deadline (seconds on core.now()) passes. Returns true.
function Handle:_suspend(s, deadline)
  local co, waiting = suspendable(), self._waiting
  local w = waiting[s] -- the coroutine waiting on s, or a list of them when several do
  if w == nil then
    waiting[s] = co
    s._waiter = true
  elseif type(w) == "thread" then
    waiting[s] = { w, co }
  else
    push(w, co)
  end
  local timer
  if deadline then
    timer = table.remove(self._spare) or self.uv.new_timer()
    timer:start(ms(deadline - now()), 0, function()
      if self._waiting[s] then self:_changed(s) end
    end)
  end
  if not self._in_pass then self:_kick() end -- what the coroutine did (read, resume) may need a step
  co_yield()
  w = waiting[s]
  if w ~= nil then -- resumed by someone else: it no longer waits
    if type(w) == "table" then
      for i = #w, 1, -1 do
        if w[i] == co then table.remove(w, i) end
      end
      if w[1] == nil then w = co end
    end
    if w == co then
      waiting[s] = nil
      s._waiter = nil
    end
  end
  if timer then
    timer:stop()
    if self._closed then dispose(self, timer) else push(self._spare, timer) end
  end
  return true
end

--- The client is about to close its handle (c:close()): stop watching its
-- descriptor first; the coroutines waiting on its streams are resumed (they
-- find them aborted).
function Handle:_closing()
  self:detach()
end

-- Detaching -------------------------------------------------------------------

function Handle:_close_handles()
  if self._closed then return end
  -- Coroutines still waiting go on without the loop: resume them once more.
  for s in pairs(self._waiting) do enqueue(self._woken, s) end
  if self._woken.n > 0 or self._starts.n > 0 then
    if self._in_pass then return end -- the pass resumes them, then comes back here
    self:_arm(0)
    return
  end
  self._closed = true
  if self._poll then
    dispose(self, self._poll)
    self._poll = nil
  end
  dispose(self, self._timer)
  for _, timer in ipairs(self._spare) do dispose(self, timer) end
  self._spare = {}
  self._polling, self._timing = false, false
end

--- `h:detach()`: the loop stops driving the client (its poll handle and
-- timer are closed); the client is as before attach: fetch.run() or pull
-- loops that block drive it. A coroutine still waiting on one of its
-- streams is resumed once and goes on blocking. Idempotent.
function Handle:detach()
  if self._detached then return end
  self._detached = true
  local c = self.client
  if c._loop == self then c._loop = nil end
  if self._poll then -- stop watching the descriptor now: c:close() is about to close it
    self._poll:stop()
    dispose(self, self._poll)
    self._poll = nil
    self._polling = false
  end
  self:_close_handles()
end

function Handle:__tostring()
  return ("fetchstream.uv.Handle (%s)"):format(self._detached and "detached" or "attached")
end

-- attach and spawn ---------------------------------------------------------------

local ATTACH_OPTIONS = {
  wrap = function(v) if v ~= false then return options.callable(v) end end,
  onerror = options.callable,
}

local function is_module(t)
  return t == package.loaded.fetchstream
end

-- The client behind attach's first argument: a client, or the module
-- itself (its default client).
local function client_of(target, fname)
  if getmetatable(target) == client.Client then return target end
  if type(target) == "table" and is_module(target) then return client.default() end
  usage("bad argument #1 to '%s' (a client or the fetchstream module expected, got %s)", fname, type(target))
end

local function check_uv(uv, fname)
  if type(uv) ~= "table" or type(uv.new_poll) ~= "function" or type(uv.new_timer) ~= "function" then
    usage("bad argument #2 to '%s' (luv, vim.uv or vim.loop expected, got %s)", fname, type(uv))
  end
end

--- `attach(client, uv [, opts])` -> handle. `client` is a fetchstream
-- client or the module (its default client); `uv` is luv (`require "luv"`)
-- or Neovim's `vim.uv or vim.loop` (the default: Neovim's inside Neovim,
-- else luv). opts.wrap(fn) -> fn wraps every pass (user callbacks and
-- resumed coroutines run inside it; Neovim's default vim.schedule_wrap,
-- `false` for none); opts.onerror(err, co) receives what a coroutine on
-- this client raised, and what a final callback raised (co nil).
-- Attaching an attached client to the same loop returns its handle.
function _M.attach(target, uv, opts)
  local c = client_of(target, "attach")
  if uv == nil then uv = default_uv() end
  check_uv(uv, "attach")
  if type(opts) == "string" then -- attach(c, require "luv"): 5.4's require returns the loader data too
    usage("bad argument #3 to 'attach' (options table expected, got a string: on Lua 5.4 `require \"luv\"` "
      .. "returns two values; write `(require \"luv\")` or pass a local)")
  end
  options.check("attach", opts, ATTACH_OPTIONS)
  if c._closed then usage("attempt to use a closed client ('attach')") end
  local old = c._loop
  if old then
    if old.uv == uv and opts == nil then return old end
    usage("the client is attached already (h:detach() it first)")
  end
  opts = opts or {}
  local wrap = opts.wrap
  if wrap == nil and uv == nvim_loop() then wrap = rawget(_G, "vim").schedule_wrap end
  if wrap == false then wrap = nil end

  local self = setmetatable({
    client = c,            -- the client it drives
    uv = uv,               -- the loop
    _nvim = uv == nvim_loop(), -- Neovim's loop (it always runs)
    _onerror = opts.onerror,
    _wrapped = wrap ~= nil,
    _poll = nil,           -- the poll handle on c:fileno(), nil without one
    _timer = uv.new_timer(), -- re-armed from c:timeout(); also "a pass now"
    _polling = false, _timing = false, -- whether each is started
    _due = 0,              -- when the timer fires (core.now() seconds), while _timing
    _spare = {},           -- stopped timers for s:next(timeout) deadlines
    _waiting = {},         -- stream -> the coroutine suspended on it, or a list of them
    _woken = { n = 0 },    -- streams whose coroutines resume in the pass
    _starts = { n = 0 },   -- { co =, args = }: spawned coroutines to start
    _errors = {},          -- errors for the host, raised one per pass
    _scheduled = false,    -- a pass is on its way (through wrap)
    _in_pass = false,
    _retry = false,
    _detached = false,     -- h:detach() (or c:close()) was called
    _closed = false,       -- its uv handles are closed
  }, Handle)
  local function pass() self:_pass() end
  self._run = wrap and wrap(pass) or pass
  self._on_timer = function() self._timing = false; wake(self, false) end
  self._on_poll = function() wake(self, true) end
  local fd = c:fileno()
  if fd then self._poll = uv.new_poll(fd) end
  c._loop = self
  self:_kick() -- the client may have work already
  return self
end

-- The handle spawn uses: the default client's, attached on first use.
local function default_handle()
  local c = client.default()
  local h = c._loop
  if h then return h end
  return _M.attach(c, default_uv())
end

local SPAWN_OPTIONS = { onerror = options.callable }

--- `spawn([opts,] fn, ...)` -> the coroutine: run fn(...) in a coroutine
-- started at the loop's next turn; returns at once. It attaches the default
-- client (behind `fetch.*`) if it is not attached yet. Inside, the pull forms
-- suspend the coroutine instead of blocking. An error raised in fn goes to
-- opts.onerror(err, co), else attach's onerror, else the host's error
-- reporting (raised from the loop's callback, with a traceback).
function _M.spawn(...)
  local first = ...
  local opts, fn, args
  if type(first) == "table" and options.callable(first) then -- spawn(opts, fn, ...)
    opts = options.check("spawn", first, SPAWN_OPTIONS)
    fn = select(2, ...)
    args = { n = select("#", ...) - 2, select(3, ...) }
  else
    fn = first
    args = { n = select("#", ...) - 1, select(2, ...) }
  end
  if type(fn) ~= "function" then
    usage("bad argument to 'spawn' (function expected, got %s)", type(fn))
  end
  local h = default_handle()
  local co = co_create(fn)
  spawned[co] = opts or true
  enqueue(h._starts, { co = co, args = args })
  h:_kick()
  return co
end

return _M
