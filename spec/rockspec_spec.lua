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

  it("maps every Lua module under lua/ by name", function()
    for _, path in ipairs(lines_of("cd lua && find fetchstream -name '*.lua' | sort")) do
      local name = path:gsub("/init%.lua$", ""):gsub("%.lua$", ""):gsub("/", ".")
      assert.are.equal("lua/" .. path, spec.build.modules[name], name)
    end
  end)

  it("builds and installs with `luarocks make`, and the installed module loads", function()
    local tree = os.tmpname()
    os.remove(tree)
    local log = tree .. ".log"
    local ok = os.execute(("env -u LD_PRELOAD luarocks --lua-version 5.4 --tree %s make --deps-mode=none "
      .. "fetchstream-scm-1.rockspec >%s 2>&1"):format(tree, log))
    assert(ok, read(log))
    local check = ("cd / && env -u LD_PRELOAD LUA_PATH='%s/share/lua/5.4/?.lua;%s/share/lua/5.4/?/init.lua;;' "
      .. "LUA_CPATH='%s/lib/lua/5.4/?.so;;' lua5.4 -e 'local f = require \"fetchstream\" "
      .. "for ev in f.parser():feed(\"data: ok\\n\\n\") do io.write(ev.data) end' 2>&1")
      :format(tree, tree, tree)
    local out = lines_of(check)
    os.execute("rm -rf " .. tree .. " " .. log)
    assert.are.same({ "ok" }, out)
  end)
end)
