-- Spec for the documents a user reads: the README and types/ cite only files
-- that ship in the repository (no pointer to a design note that is not in it).

local h = require "spec.helpers"

-- Every path-like word of `text` that names a file of ours: a word ending in
-- .md, .lua, .c, .h, .txt, .rockspec or a folder of the repository.
local TOP = { "bench", "bin", "doc", "examples", "fuzz", "lua", "scripts", "spec", "src", "types" }

local function cited(text)
  local out = {}
  for word in text:gmatch("[%w_%./%-]+") do
    word = word:gsub("[%.%-]+$", "")
    local top = word:match("^([%w_%-]+)/")
    local is_path = top and (function()
      for _, t in ipairs(TOP) do if t == top then return true end end
    end)()
    if word:find("^[%w_%-]+%.md$") or (is_path and not word:find("[?*]")) then
      out[#out + 1] = word
    end
  end
  return out
end

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() return true end
  return h.execute("test -e '" .. path .. "'") == true
end

describe("the README and types/", function()
  for _, doc in ipairs { "README.md", "types/fetchstream.lua" } do
    it(doc .. " cites only files in the repository", function()
      local words = cited(h.read(doc))
      assert.is_true(#words > 0 or doc ~= "README.md", "no citations found: the pattern is broken")
      for _, path in ipairs(words) do
        assert.is_true(exists(path), ("%s cites %s, which is not in the repository"):format(doc, path))
      end
    end)
  end
end)
