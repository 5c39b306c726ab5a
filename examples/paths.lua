-- Lets an example run straight from a checkout, without installing and
-- without LUA_PATH: the checkout's lua/ (the module), build/ (its C part,
-- after `make`; build-luajit/ under LuaJIT, after `make luajit`) and its root
-- (the stub server in spec/) go first on the search paths. An installed fetchstream needs none of this. Each example
-- starts with
--
--   dofile((arg[0]:match("^.*/") or "./") .. "paths.lua")

local here = arg[0]:match("^(.*/)") or "./"
local root = here .. "../"
package.path = ("%slua/?.lua;%slua/?/init.lua;%s?.lua;%s?/init.lua;"):format(root, root, root, root)
  .. package.path
local build = _VERSION == "Lua 5.1" and "build-luajit" or "build" -- the C part for this ABI
package.cpath = ("%s%s/?.so;"):format(root, build) .. package.cpath
