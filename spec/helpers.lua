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

--- Quote a word for sh.
function h.shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- The interpreter this spec process runs under, for the children it starts
-- (the CLI, the examples, scripts): "luajit" in the LuaJIT pass (`luajit
-- /usr/bin/busted`), else "lua5.4". Never plain `lua`: it may be Lua 5.1.
function h.lua()
  return rawget(_G, "jit") and "luajit" or "lua5.4"
end

--- The build directory holding the modules for h.lua()'s ABI: build-luajit/
-- (the Lua 5.1 ABI) or build/. Children never load the ASan build.
function h.build_dir()
  return h.lua() == "luajit" and "build-luajit" or "build"
end

--- The `env ...` prefix a child h.lua() (the CLI, an example) runs under:
-- the module from the checkout (`no_paths`: no LUA_PATH or LUA_CPATH at
-- all), no sanitizer runtime (the ASan pass preloads it here), and the
-- variables named in `unset` removed.
function h.child_env(unset, no_paths)
  local words = { "env -u LD_PRELOAD -u LUA_PATH_5_4 -u LUA_CPATH_5_4" }
  for _, name in ipairs(unset or {}) do words[#words + 1] = "-u " .. name end
  if no_paths then
    words[#words + 1] = "-u LUA_PATH -u LUA_CPATH"
  else
    words[#words + 1] = ("LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='%s/?.so;;'"):format(h.build_dir())
  end
  return table.concat(words, " ")
end

--- os.execute(cmd) as Lua 5.4 reports it, on both ABIs: true when the
-- command exited with status 0 (else nil), "exit" or "signal", and the exit
-- status or signal number. LuaJIT returns wait()'s raw status instead.
function h.execute(cmd)
  local ok, how, code = os.execute(cmd)
  if type(ok) == "number" then
    if ok % 256 == 0 then
      how, code = "exit", math.floor(ok / 256)
    else
      how, code = "signal", ok % 128
    end
    ok = how == "exit" and code == 0 or nil
  end
  return ok, how, code
end

--- Children load the modules in h.build_dir(): make sure they are there and
-- current (a no-op after `make` / `make luajit`; `make memcheck` alone builds
-- only build-asan).
function h.build_for_children()
  local target = h.lua() == "luajit" and "luajit" or "all"
  local ok = h.execute("env -u LD_PRELOAD make -s " .. target .. " >/dev/null 2>&1")
  assert(ok, "cannot build the modules in " .. h.build_dir() .. "/")
end

--- The checkout's root, absolute (specs run from it).
h.ROOT = os.getenv("PWD") or "."

--- Hosts that embed LuaJIT (Neovim, nginx) load build-luajit/: build it.
function h.build_luajit()
  local ok = h.execute("env -u LD_PRELOAD make -s luajit >/dev/null 2>&1")
  assert(ok, "cannot build the modules in build-luajit/ (make luajit)")
end

--- Run spec/hosts/<script> in headless Neovim (on the LuaJIT build) with the
-- environment `env` ({ NAME = value }) and the variables in `unset` removed;
-- the script writes `key value` lines to $OUT (a newline in a value written
-- as \n). Returns them as a table.
function h.nvim(script, env, unset)
  local out = os.tmpname()
  local words = { "env -u LD_PRELOAD -u LUA_PATH -u LUA_CPATH", "OUT=" .. h.shell_quote(out),
                  "FETCHSTREAM_ROOT=" .. h.shell_quote(h.ROOT),
                  "FETCHSTREAM_BUILD=" .. h.shell_quote(h.ROOT .. "/build-luajit") }
  for _, name in ipairs(unset or {}) do table.insert(words, 2, "-u " .. name) end
  for k, v in pairs(env or {}) do words[#words + 1] = k .. "=" .. h.shell_quote(v) end
  words[#words + 1] = "timeout 60 nvim --headless -u NONE -i NONE -n"
  words[#words + 1] = ("-c 'luafile spec/hosts/%s' </dev/null >/dev/null 2>&1"):format(script)
  os.execute(table.concat(words, " "))
  local results = {}
  for line in io.lines(out) do
    local key, value = line:match("^(%S+) ?(.*)$")
    results[key] = value:gsub("\\(.)", { n = "\n", ["\\"] = "\\" })
  end
  os.remove(out)
  return results
end

--- A whole file's bytes.
function h.read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

return h
