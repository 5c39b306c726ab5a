/*
** lcore.c — module fetchstream.core: errors, the parser, and streaming on
** libcurl (the policy on top is lua/fetchstream/).
*/
#include "lfetchstream.h"

/* require "fetchstream.core" -> the module table */
LUAMOD_API int luaopen_fetchstream_core(lua_State *L) {
  lua_newtable(L);
  lua_pushliteral(L, FETCHSTREAM_VERSION);
  lua_setfield(L, -2, "_VERSION");
  fs_error_open(L);
  fs_parser_open(L);
  fs_client_open(L);
  fs_transfer_open(L);
  return 1;
}
