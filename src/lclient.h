/*
** lclient.h — what the transfer binding needs of the client binding.
*/
#ifndef FETCHSTREAM_LCLIENT_H
#define FETCHSTREAM_LCLIENT_H

#include "lfetchstream.h"
#include "client.h"

typedef struct lclient {
  fs_client c;
  int closed;
} lclient;

/* The client handle at idx (any state) / an open one (else a usage error). */
lclient *fs_toclient(lua_State *L, int idx);
lclient *fs_checkclient(lua_State *L, int idx);
/* Record the Lua object at owner_idx (0: none) as the owner of transfer s,
** which the client at client_idx hands back when s is ready. */
void fs_client_set_owner(lua_State *L, int client_idx, fs_stream *s, int owner_idx);

#endif
