/*
** lcompat.h — the Lua C API as the binding uses it, on Lua 5.4 and on the
** Lua 5.1 ABI of LuaJIT 2.1 (Neovim, OpenResty). Only the binding files
** (l*.c) include it, through lfetchstream.h.
**
** On 5.4 every name below is the real API. On 5.1 (LuaJIT):
** - user values live in the userdata's environment table, one slot each
**   (LPeg keeps its ktable the same way);
** - functions that return the pushed value's type in 5.4 (lua_rawget) or the
**   pushed string (lua_pushlstring) are wrapped to do the same;
** - lua_pushfstring knows no %I (LuaJIT prints "(?" and stops there): the
**   binding formats a lua_Integer with snprintf first, never with %I.
** LuaJIT 2.1 already has luaL_setfuncs, luaL_setmetatable, luaL_testudata,
** lua_copy and luaL_newlib; PUC Lua 5.1 does not, and is not a target.
*/
#ifndef FETCHSTREAM_LCOMPAT_H
#define FETCHSTREAM_LCOMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM >= 504

#define fs_newuserdatauv(L, size, nuv) lua_newuserdatauv(L, size, nuv)
#define fs_getiuservalue(L, idx, n) lua_getiuservalue(L, idx, n)
#define fs_setiuservalue(L, idx, n) lua_setiuservalue(L, idx, n)
#define fs_rawget(L, idx) lua_rawget(L, idx)
#define fs_pushlstring(L, s, len) lua_pushlstring(L, s, len)
#define fs_absindex(L, idx) lua_absindex(L, idx)

#elif LUA_VERSION_NUM == 501

#define LUAMOD_API LUALIB_API
#define lua_rawlen(L, idx) lua_objlen(L, idx)
#define luaL_pushfail(L) lua_pushnil(L)

/* An index that stays valid when the stack grows (5.1 has no lua_absindex). */
static inline int fs_absindex(lua_State *L, int idx) {
  return (idx > 0 || idx <= LUA_REGISTRYINDEX) ? idx : lua_gettop(L) + idx + 1;
}

/* A new userdata whose environment table holds `nuv` user values. */
static inline void *fs_newuserdatauv(lua_State *L, size_t size, int nuv) {
  void *p = lua_newuserdata(L, size);
  lua_createtable(L, nuv, 0);
  lua_setfenv(L, -2);
  return p;
}

/* Push user value n of the userdata at idx; returns its type. */
static inline int fs_getiuservalue(lua_State *L, int idx, int n) {
  lua_getfenv(L, idx);
  lua_rawgeti(L, -1, n);
  lua_remove(L, -2);
  return lua_type(L, -1);
}

/* Pop a value into user value n of the userdata at idx. */
static inline int fs_setiuservalue(lua_State *L, int idx, int n) {
  idx = fs_absindex(L, idx);
  lua_getfenv(L, idx);   /* value, env */
  lua_insert(L, -2);     /* env, value */
  lua_rawseti(L, -2, n);
  lua_pop(L, 1);
  return 1;
}

static inline int fs_rawget(lua_State *L, int idx) {
  lua_rawget(L, idx);
  return lua_type(L, -1);
}

static inline const char *fs_pushlstring(lua_State *L, const char *s, size_t len) {
  lua_pushlstring(L, s, len);
  return lua_tostring(L, -1);
}

#else
#error "fetchstream builds for Lua 5.4 or LuaJIT 2.1 (the Lua 5.1 ABI)"
#endif

#endif
