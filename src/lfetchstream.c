/*
** lfetchstream.c — what both modules' bindings share: the error type and
** the helpers for objects. Linked into fetchstream.core and
** fetchstream.sse.core alike; it knows nothing of curl.
**
** An error is a table { kind =, message =, ... } whose metatable is
** "fetchstream.Error"; tostring(err) gives one line such as
** "fetchstream: http 401: invalid key".
*/
#include "lfetchstream.h"

#include <stdarg.h>
#include <string.h>

static void push_error_v(lua_State *L, const char *kind, const char *fmt,
                         va_list ap) {
  lua_createtable(L, 0, 4);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  lua_pushvfstring(L, fmt, ap);
  lua_setfield(L, -2, "message");
  luaL_setmetatable(L, ERROR_T);
}

void fs_pusherror(lua_State *L, const char *kind, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  push_error_v(L, kind, fmt, ap);
  va_end(ap);
}

int fs_usage(lua_State *L, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  push_error_v(L, "usage", fmt, ap);
  va_end(ap);
  return lua_error(L);
}

const char *fs_checklstring(lua_State *L, int arg, const char *fname,
                            size_t *len) {
  if (lua_type(L, arg) != LUA_TSTRING)
    fs_usage(L, "bad argument #%d to '%s' (string expected, got %s)", arg,
             fname, luaL_typename(L, arg));
  return lua_tolstring(L, arg, len);
}

int fs_iscallable(lua_State *L, int idx) {
  int callable;
  if (lua_isfunction(L, idx)) return 1;
  if (!luaL_getmetafield(L, idx, "__call")) return 0;
  callable = lua_isfunction(L, -1);
  lua_pop(L, 1);
  return callable;
}

/* __tostring: "fetchstream: <kind>[ <status>][ from <method> <url>]: <message>",
** e.g. "fetchstream: http 401 from POST https://api.example.com/v1: invalid key" */
static int error_tostring(lua_State *L) {
  int top = lua_gettop(L), is_http;
  lua_pushliteral(L, "fetchstream: ");
  lua_getfield(L, 1, "kind");
  is_http = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "http") == 0;
  if (lua_type(L, -1) != LUA_TSTRING) {
    lua_pop(L, 1);
    lua_pushliteral(L, "error");
  }
  lua_getfield(L, 1, "status");
  if (is_http && lua_type(L, -1) == LUA_TNUMBER) {
    lua_pushfstring(L, " %d", (int)lua_tonumber(L, -1));
    lua_replace(L, -2);
  } else {
    lua_pop(L, 1);
  }
  lua_getfield(L, 1, "method");
  lua_getfield(L, 1, "url");
  if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) {
    lua_pushfstring(L, " from %s %s", lua_tostring(L, -2), lua_tostring(L, -1));
    lua_replace(L, -3);
    lua_pop(L, 1);
  } else {
    lua_pop(L, 2);
  }
  lua_getfield(L, 1, "message");
  if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) {
    lua_pushliteral(L, ": ");
    lua_insert(L, -2);
  } else {
    lua_pop(L, 1);
  }
  lua_concat(L, lua_gettop(L) - top);
  return 1;
}

/* core.error(kind, message [, fields]) -> err: a new error object. */
static int error_new(lua_State *L) {
  const char *kind = fs_checklstring(L, 1, "error", NULL);
  const char *message = fs_checklstring(L, 2, "error", NULL);
  fs_pusherror(L, kind, "%s", message);
  if (lua_istable(L, 3)) { /* copy the extra fields */
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      lua_pushvalue(L, -2);  /* key, value, key */
      lua_insert(L, -2);     /* key, key, value */
      lua_settable(L, -4);   /* err[key] = value */
    }
  }
  return 1;
}

void fs_error_open(lua_State *L) {
  luaL_newmetatable(L, ERROR_T);
  lua_pushcfunction(L, error_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_setfield(L, -2, "Error"); /* core.Error = the metatable */
  lua_pushcfunction(L, error_new);
  lua_setfield(L, -2, "error");
}
