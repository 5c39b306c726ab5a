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
#define TRANSFER_T "fetchstream.Transfer"
#define CLIENT_T "fetchstream.ClientHandle"

/* Push a new error object { kind =, message = } with the Error metatable. */
void fs_pusherror(lua_State *L, const char *kind, const char *fmt, ...);
/* Raise a `usage` error object. Never returns. */
int fs_usage(lua_State *L, const char *fmt, ...);
/* luaL_checklstring, raising a `usage` error object instead of a string. */
const char *fs_checklstring(lua_State *L, int arg, const char *fname,
                            size_t *len);
/* Whether the value at idx can be called (a function or has __call). */
int fs_iscallable(lua_State *L, int idx);

/* Each area registers its functions into the module table on the stack. */
void fs_error_open(lua_State *L);
void fs_parser_open(lua_State *L);
void fs_client_open(lua_State *L);   /* lclient.c */
void fs_transfer_open(lua_State *L); /* ltransfer.c */

LUAMOD_API int luaopen_fetchstream_core(lua_State *L);     /* lcore.c */
LUAMOD_API int luaopen_fetchstream_sse_core(lua_State *L); /* lsse.c, no curl */

#endif
