-- :FetchChat {prompt} — stream a chat answer into a scratch buffer as it
-- arrives, inside Neovim (≥ 0.7), without blocking the editor. <C-c> in that
-- buffer aborts the answer (so does wiping the buffer); an error goes to
-- vim.notify.
--
--   make luajit
--   nvim -c 'luafile examples/nvim_chat.lua'        -- from the repo root
--   :FetchChat Why is the sky blue?
--
-- OPENAI_BASE_URL, OPENAI_API_KEY and OPENAI_MODEL pick the API (any
-- OpenAI-compatible server: OpenAI, Ollama's /v1, llama.cpp, vLLM, ...).
-- Without OPENAI_BASE_URL it starts the stub server that ships in spec/ as a
-- job (it needs lua5.4 and lua-socket) and asks it.
--
-- The answer is read by a plain `for text in fetch.chat(...)` loop inside
-- require("fetchstream.uv").spawn: the loop suspends while it waits and the
-- editor goes on; spawn attaches fetch's default client to vim.loop
-- (vim.uv on newer Neovim), and every pass runs through vim.schedule_wrap,
-- so the loop may call any API (no E5560).

-- The checkout's module (drop once fetchstream is installed): lua/ and the
-- LuaJIT build, next to this file.
local here = debug.getinfo(1, "S").source:match("^@(.*)[/\\]") or "."
local root = vim.fn.fnamemodify(here .. "/..", ":p")
package.path = root .. "lua/?.lua;" .. root .. "lua/?/init.lua;" .. package.path
package.cpath = root .. "build-luajit/?.so;" .. package.cpath

local fetch = require "fetchstream"
local fuv = require "fetchstream.uv"

local api = vim.api
local ERROR = vim.log.levels.ERROR

-- The API root: $OPENAI_BASE_URL, else the stub server, started once.
local stub_base, stub_waiting
local function with_base_url(fn)
  local base = os.getenv("OPENAI_BASE_URL")
  if base and base ~= "" then return fn(base) end
  if stub_base then return fn(stub_base) end
  if stub_waiting then
    stub_waiting[#stub_waiting + 1] = fn
    return
  end
  stub_waiting = { fn }
  local job = vim.fn.jobstart({ "lua5.4", root .. "spec/server/server.lua", "--watch-parent" }, {
    cwd = root,
    on_stdout = function(_, lines)
      for _, line in ipairs(lines) do
        local port = line:match("^PORT (%d+)")
        if port and not stub_base then
          stub_base = ("http://127.0.0.1:%s/v1"):format(port)
          local waiting = stub_waiting
          stub_waiting = nil
          for _, f in ipairs(waiting) do f(stub_base) end
        end
      end
    end,
  })
  if job <= 0 then
    stub_waiting = nil
    vim.notify("FetchChat: cannot start the stub server (set OPENAI_BASE_URL)", ERROR)
    return
  end
  api.nvim_create_autocmd("VimLeavePre", { callback = function() vim.fn.jobstop(job) end })
end

-- Append text to the end of buf, splitting it at newlines.
local function append(buf, text)
  local last = api.nvim_buf_line_count(buf)
  local line = api.nvim_buf_get_lines(buf, last - 1, last, false)[1] or ""
  api.nvim_buf_set_lines(buf, last - 1, last, false, vim.split(line .. text, "\n", { plain = true }))
end

-- A scratch buffer in a new window at the bottom, showing the prompt.
local count = 0
local function answer_buffer(prompt)
  count = count + 1
  vim.cmd("botright new")
  local buf = api.nvim_get_current_buf()
  vim.bo[buf].buftype = "nofile"
  vim.bo[buf].bufhidden = "wipe"
  vim.bo[buf].swapfile = false
  vim.bo[buf].filetype = "markdown"
  api.nvim_buf_set_name(buf, ("fetchchat://%d"):format(count))
  api.nvim_buf_set_lines(buf, 0, -1, false, { "> " .. prompt, "", "" })
  return buf
end

-- The state of an answer, for statuslines and scripts: b:fetchchat is
-- "streaming", then "done", "aborted" or "error".
local function set_state(buf, state)
  if api.nvim_buf_is_valid(buf) then api.nvim_buf_set_var(buf, "fetchchat", state) end
end

local function chat(prompt)
  local buf = answer_buffer(prompt)
  set_state(buf, "streaming")
  with_base_url(function(base)
    fuv.spawn(function()
      local c = fetch.chat(base, {
        model = os.getenv("OPENAI_MODEL") or "gpt-4o-mini",
        api_key = os.getenv("OPENAI_API_KEY"),
        messages = { { role = "user", content = prompt } },
        first_byte_timeout = 60,
        idle_timeout = 60,
      })
      if api.nvim_buf_is_valid(buf) then
        vim.keymap.set("n", "<C-c>", function() c:abort("cancelled") end,
                       { buffer = buf, desc = "abort the answer" })
        api.nvim_create_autocmd("BufWipeout", { buffer = buf, once = true,
                                                callback = function() c:abort("buffer wiped") end })
      end
      local ok, err = pcall(function()
        for text in c do -- suspends while the answer is on its way
          if api.nvim_buf_is_valid(buf) then append(buf, text) end
        end
      end)
      if not ok then
        set_state(buf, "error")
        vim.notify("FetchChat: " .. tostring(err), ERROR)
      elseif c.stream.reason == "aborted" then
        set_state(buf, "aborted")
        if api.nvim_buf_is_valid(buf) then append(buf, "\n[aborted]") end
      else
        set_state(buf, "done")
      end
    end)
  end)
  return buf
end

api.nvim_create_user_command("FetchChat", function(cmd) chat(cmd.args) end,
                             { nargs = "+", desc = "stream a chat answer into a scratch buffer" })

return { chat = chat }
