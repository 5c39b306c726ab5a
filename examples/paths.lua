-- Lets an example run straight from a checkout, without installing and
-- without LUA_PATH: the checkout's lua/ (the module), build/ (its C part,
-- after `make`) and its root (the stub server in spec/) go first on the
-- search paths. An installed fetchstream needs none of this. Each example
-- starts with
--
--   dofile((arg[0]:match("^.*/") or "./") .. "paths.lua")

local here = arg[0]:match("^(.*/)") or "./"
local root = here .. "../"
package.path = ("%slua/?.lua;%slua/?/init.lua;%s?.lua;%s?/init.lua;"):format(root, root, root, root)
  .. package.path
package.cpath = ("%sbuild/?.so;"):format(root) .. package.cpath
