-- The rockspec builds and installs the module with Debian's luarocks, offline,
-- and lists every C source and Lua module of the tree (so it cannot drift).
local h = require "spec.helpers"

local read = h.read

local function lines_of(cmd)
  local out = {}
  local p = assert(io.popen(cmd))
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  return out
end

describe("fetchstream-scm-1.rockspec", function()
  local spec = {}
  setup(function()
    assert(load(read("fetchstream-scm-1.rockspec"), "rockspec", "t", spec))()
  end)

  it("compiles every C file in src/ into fetchstream.core", function()
    local listed = {}
    for _, src in ipairs(spec.build.modules["fetchstream.core"].sources) do listed[src] = true end
    for _, src in ipairs(lines_of("ls src/*.c")) do
      assert.is_true(listed[src], src .. " is missing from the rockspec")
    end
  end)

  it("builds fetchstream.sse.core from the Makefile's curl-free sources, without curl", function()
    local mod = spec.build.modules["fetchstream.sse.core"]
    local makefile = read("Makefile")
    local listed = assert(makefile:match("\nSSE_SOURCES = ([^\n]+)"), "no SSE_SOURCES in the Makefile")
    local want = {}
    for src in listed:gmatch("%S+") do want[#want + 1] = src end
    table.sort(want)
    local got = { table.unpack(mod.sources) }
    table.sort(got)
    assert.are.same(want, got)
    assert.is_nil(mod.libraries)
  end)

  it("maps every Lua module under lua/ by name", function()
    for _, path in ipairs(lines_of("cd lua && find fetchstream -name '*.lua' | sort")) do
      local name = path:gsub("/init%.lua$", ""):gsub("%.lua$", ""):gsub("/", ".")
      assert.are.equal("lua/" .. path, spec.build.modules[name], name)
    end
  end)

  -- Each ABI: luarocks' Lua version, the interpreter, and for LuaJIT the
  -- configuration that points luarocks' 5.1 at it (Debian's says lua5.1).
  local ABIS = {
    { version = "5.4", lua = "lua5.4" },
    { version = "5.1", lua = "luajit", config = [[
      lua_interpreter = "luajit"
      variables = { LUA_DIR = "/usr", LUA_BINDIR = "/usr/bin", LUA_INCDIR = "/usr/include/luajit-2.1" }
    ]] },
  }
  for _, abi in ipairs(ABIS) do
    it(("builds and installs both modules and the CLI with `luarocks --lua-version %s make`")
      :format(abi.version), function()
      local tree = os.tmpname()
      os.remove(tree)
      local log, config = tree .. ".log", tree .. ".config.lua"
      local f = assert(io.open(config, "w"))
      f:write(abi.config or "")
      f:close()
      local ok = h.execute(("env -u LD_PRELOAD %s luarocks --lua-version %s --tree %s make --deps-mode=none "
        .. "fetchstream-scm-1.rockspec >%s 2>&1"):format(abi.config and "LUAROCKS_CONFIG=" .. config or "",
          abi.version, tree, log))
      assert(ok, read(log))
      local v = abi.version
      local env = ("cd / && env -u LD_PRELOAD LUA_PATH='%s/share/lua/%s/?.lua;%s/share/lua/%s/?/init.lua;;' "
        .. "LUA_CPATH='%s/lib/lua/%s/?.so;;' "):format(tree, v, tree, v, tree, v)
      local out = lines_of(env .. abi.lua .. [[ -e '
        local sse = require "fetchstream.sse"
        for ev in sse.parser():feed("data: ok\n\n") do io.write(ev.data, " ") end
        io.write(tostring(package.loaded["fetchstream.core"] == nil), " ")
        local f = require "fetchstream"
        io.write(type(f.events), " ", tostring(package.loaded["fetchstream.core"] ~= nil), "\n")' 2>&1]])
      local cli = lines_of(env .. tree .. "/bin/fetchstream --version 2>&1")
      -- luarocks' builtin build leaves its objects in the checkout: ./fetchstream/*.so
      -- would shadow build/ on the default package.cpath
      os.execute("rm -rf " .. tree .. " " .. log .. " " .. config .. " fetchstream src/*.o")
      assert.are.same({ "ok true function true" }, out) -- the parser came without curl
      assert.matches("^fetchstream %d", cli[1] or "")
    end)
  end
end)
