---@meta fetchstream.uv
-- luacheck: ignore 241 (a definition file: its tables are declared, never used)

-- LuaCATS definitions of the module fetchstream.uv: a client driven by a
-- libuv loop — luv (`require "luv"`) or Neovim's `vim.uv` / `vim.loop` —
-- and coroutines whose pull loops suspend instead of blocking (README,
-- "Event loops"). The Client class is in types/fetchstream.lua.

---@class fetchstream.uv
local uv = {}

--- A libuv binding: luv (`require "luv"`), or Neovim's `vim.uv or vim.loop`.
---@alias fetchstream.Loop table

--- Options of `attach`.
---@class fetchstream.AttachOptions
--- Wraps the adapter's pass, inside which every user callback runs and every
--- suspended coroutine resumes: `wrap(pass)` returns the function the loop
--- calls. In Neovim the default is `vim.schedule_wrap` (callbacks may call
--- any API: no E5560); elsewhere none. `false`: none.
---@field wrap? (fun(pass: fun()): fun())|false
--- Receives an error raised in a coroutine on this client (`co`) or by an
--- `onclose`/`onerror`/`onabort` callback (`co` nil). Without it the error
--- goes to the host's error reporting: raised from the loop's callback.
---@field onerror? fun(err: any, co: thread?)

--- Options of `spawn`.
---@class fetchstream.SpawnOptions
--- Receives an error raised in the spawned function, with its coroutine.
---@field onerror? fun(err: any, co: thread)

--- What `attach` returns: the client's place in the loop.
---@class fetchstream.uv.Handle
---@field client fetchstream.Client The client it drives.
---@field uv fetchstream.Loop The loop.
local Handle = {}

--- Stop driving the client: its poll handle and timer are closed, and the
--- client is as before `attach` (`c:run()` or pull loops that block drive
--- it). A coroutine still waiting on one of its streams is resumed once and
--- goes on blocking. Idempotent; `c:close()` detaches too.
function Handle:detach() end

--- Drive a client from a libuv loop: one poll handle on `c:fileno()` and
--- one timer re-armed from `c:timeout()`, both stopped while the client has
--- nothing to do (it then costs no CPU and does not keep the loop alive),
--- started again when a stream starts. Streams, callbacks, abort, timeouts
--- and reconnection behave as under `fetch.run()`. In a coroutine on an
--- attached client the pull forms suspend instead of blocking. Attaching an
--- attached client to the same loop with no options returns its handle.
---@param client fetchstream.Client|fetchstream The client, or the module itself (its default client).
---@param loop? fetchstream.Loop Default: Neovim's `vim.uv or vim.loop` inside Neovim, else `require "luv"`.
---@param opts? fetchstream.AttachOptions
---@return fetchstream.uv.Handle
function uv.attach(client, loop, opts) end

--- Run `fn(...)` in a coroutine started at the loop's next turn; returns at
--- once. Attaches the default client (behind `fetch.*`) first if it is not
--- attached. Inside, `fetch.events`, `s:next()`, `fetch.open`, a chat loop
--- and the other pull forms suspend the coroutine until their stream has
--- something. An error raised in `fn` goes to `opts.onerror`, else to the
--- attach options' `onerror`, else to the host (raised from the loop's
--- callback, with a traceback): never silently. Also `spawn(opts, fn, ...)`.
---@param fn fun(...)
---@param ... any
---@return thread co
function uv.spawn(fn, ...) end

return uv
