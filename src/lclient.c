/*
** lclient.c — a client handle (fetchstream.ClientHandle): the curl multi
** handle of client.c as an ordinary Lua userdata with C methods. The policy
** (the loop, the streams, callbacks) is lua/fetchstream/client.lua.
**
** User value 1: a weak-valued table from each transfer (a light userdata)
** to the Lua object that owns it, so that a step can hand back the owners of
** the ready transfers. No Lua runs inside curl: a step runs curl first, then
** builds its list.
*/
#include "lfetchstream.h"
#include "lclient.h"

#include <string.h>

#define UV_OWNERS 1

lclient *fs_toclient(lua_State *L, int idx) {
  return (lclient *)luaL_checkudata(L, idx, CLIENT_T);
}

lclient *fs_checkclient(lua_State *L, int idx) {
  lclient *c = fs_toclient(L, idx);
  if (c->closed) fs_usage(L, "attempt to use a closed client");
  return c;
}

void fs_client_set_owner(lua_State *L, int client_idx, fs_stream *s, int owner_idx) {
  if (owner_idx) owner_idx = fs_absindex(L, owner_idx);
  fs_getiuservalue(L, client_idx, UV_OWNERS);
  lua_pushlightuserdata(L, s);
  if (owner_idx) lua_pushvalue(L, owner_idx);
  else lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* core.client() -> a client handle (a curl multi handle) */
static int client_new(lua_State *L) {
  lclient *c = (lclient *)fs_newuserdatauv(L, sizeof *c, 1);
  memset(c, 0, sizeof *c);
  c->closed = 1; /* until the multi handle exists */
  luaL_setmetatable(L, CLIENT_T);
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "v");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  fs_setiuservalue(L, -2, UV_OWNERS);
  if (fs_client_init(&c->c) != 0) return luaL_error(L, "cannot make a curl multi handle");
  c->closed = 0;
  return 1;
}

/*
** h:step(list) -> n: do all that can be done now without blocking (see
** client.h), then put the owners of the transfers that have something new in
** list[1..n] — only those: a stream with no activity is not visited.
*/
static int client_step(lua_State *L) {
  lclient *c = fs_checkclient(L, 1);
  fs_stream *s;
  int n = 0;
  luaL_checktype(L, 2, LUA_TTABLE);
  fs_client_step(&c->c);
  fs_getiuservalue(L, 1, UV_OWNERS); /* 3 */
  while ((s = fs_client_next_ready(&c->c)) != NULL) {
    lua_pushlightuserdata(L, s);
    if (fs_rawget(L, 3) == LUA_TNIL) { /* its owner is gone */
      lua_pop(L, 1);
      continue;
    }
    lua_rawseti(L, 2, ++n);
  }
  lua_pushinteger(L, n);
  return 1;
}

/* h:timeout() -> seconds until a step is needed | nil: nothing pending */
static int client_timeout(lua_State *L) {
  lclient *c = fs_checkclient(L, 1);
  long ms = fs_client_timeout_ms(&c->c);
  if (ms < 0) return 0;
  lua_pushnumber(L, (lua_Number)ms / 1000.0);
  return 1;
}

/* h:fileno() -> the descriptor readable on network activity | nil */
static int client_fileno(lua_State *L) {
  lclient *c = fs_checkclient(L, 1);
  int fd = fs_client_fileno(&c->c);
  if (fd < 0) return 0;
  lua_pushinteger(L, fd);
  return 1;
}

/* h:wait(seconds): sleep until network activity, a deadline, or the time is
** up (a day at most). */
static int client_wait(lua_State *L) {
  lclient *c = fs_checkclient(L, 1);
  lua_Number secs = luaL_checknumber(L, 2);
  long ms = !(secs > 0) ? 0 : secs > 86400 ? 86400000L : (long)(secs * 1000.0 + 0.5);
  fs_client_wait(&c->c, ms);
  return 0;
}

/* h:closed() -> whether the handle has been closed */
static int client_closed(lua_State *L) {
  lua_pushboolean(L, fs_toclient(L, 1)->closed);
  return 1;
}

/* h:close(), __gc, __close: every transfer still on it ends as aborted
** (their owners end them as they see fit); idempotent. */
static int client_close(lua_State *L) {
  lclient *c = fs_toclient(L, 1);
  if (!c->closed) {
    c->closed = 1;
    fs_client_free(&c->c);
  }
  return 0;
}

static int client_tostring(lua_State *L) {
  lua_pushfstring(L, "fetchstream.ClientHandle (%p)", lua_touserdata(L, 1));
  return 1;
}

static const luaL_Reg methods[] = {
  {"step", client_step},
  {"timeout", client_timeout},
  {"fileno", client_fileno},
  {"wait", client_wait},
  {"closed", client_closed},
  {"close", client_close},
  {NULL, NULL}
};

static const luaL_Reg meta[] = {
  {"__gc", client_close},
  {"__close", client_close},
  {"__tostring", client_tostring},
  {NULL, NULL}
};

void fs_client_open(lua_State *L) {
  luaL_newmetatable(L, CLIENT_T);
  luaL_setfuncs(L, meta, 0);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, client_new);
  lua_setfield(L, -2, "client");
}
