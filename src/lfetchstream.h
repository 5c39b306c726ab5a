/*
** lfetchstream.h — what the binding files share. Only the binding files
** (l*.c) include lua.h; sse.c, stream.c and client.c never do.
*/
#ifndef FETCHSTREAM_LFETCHSTREAM_H
#define FETCHSTREAM_LFETCHSTREAM_H

#include "lcompat.h"

#define FETCHSTREAM_VERSION "0.1.0"

/* Metatable names (registry keys). */
#define ERROR_T "fetchstream.Error"
#define EVENT_T "fetchstream.Event"
#define PARSER_T "fetchstream.Parser"
#define STREAM_T "fetchstream.Stream"
#define CLIENT_T "fetchstream.Client"

/* User value 1 of every object made by fs_newclass: its Lua fields table. */
#define UV_FIELDS 1

/* Push a new error object { kind =, message = } with the Error metatable. */
void fs_pusherror(lua_State *L, const char *kind, const char *fmt, ...);
/* Raise a `usage` error object. Never returns. */
int fs_usage(lua_State *L, const char *fmt, ...);
/* luaL_checklstring, raising a `usage` error object instead of a string. */
const char *fs_checklstring(lua_State *L, int arg, const char *fname,
                            size_t *len);
/* Whether the value at idx can be called (a function or has __call). */
int fs_iscallable(lua_State *L, int idx);

/*
** Make metatable tname for userdata whose fields live in a Lua table (user
** value 1) and whose methods are written in Lua: `meta` gives the C
** metamethods; core[name] = the metatable, and its `methods` table is filled
** by the Lua layer. Leaves nothing on the stack (the module stays on top).
*/
void fs_newclass(lua_State *L, const char *tname, const char *name,
                 const luaL_Reg *meta);
/* Push a new userdata of `size` bytes with `nuv` user values, a fresh fields
** table in user value 1, and the metatable tname. */
void *fs_newobject(lua_State *L, size_t size, int nuv, const char *tname);

/* Each area registers its functions into the module table on the stack. */
void fs_error_open(lua_State *L);
void fs_parser_open(lua_State *L);
void fs_stream_open(lua_State *L);

LUAMOD_API int luaopen_fetchstream_core(lua_State *L);     /* lcore.c */
LUAMOD_API int luaopen_fetchstream_sse_core(lua_State *L); /* lsse.c, no curl */

#endif
