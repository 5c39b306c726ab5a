/*
** client.h — a curl multi handle that drives many streams. Plain C, no Lua.
**
** The client also enforces the timeouts curl has no notion of: the first
** body byte (from the start of the request), the idle gap (once the response
** headers are in, the longest silence), and the whole transfer. A stream
** paused by back-pressure is not idle: the silence is ours, not the server's.
*/
#ifndef FETCHSTREAM_CLIENT_H
#define FETCHSTREAM_CLIENT_H

#include "stream.h"

typedef struct fs_client {
  CURLM *multi;
  fs_stream *streams; /* attached streams, a doubly linked list */
  int count;
} fs_client;

/* Returns 0 on success, -1 when curl cannot make a multi handle. */
int fs_client_init(fs_client *c);
/* Detach every stream (they end as aborted) and free the multi handle. */
void fs_client_free(fs_client *c);
/* Start a prepared stream. Returns CURLM_OK or curl's error. */
CURLMcode fs_client_add(fs_client *c, fs_stream *s);
/* Take a stream off the client (it keeps its end state). */
void fs_client_remove(fs_client *c, fs_stream *s);
/* Move every transfer forward without blocking; streams that finished or
** timed out get their `end` and leave the client. Returns how many remain. */
int fs_client_perform(fs_client *c);
/* Sleep until there is network activity, a deadline, or timeout_ms passes
** (never longer: an idle stream costs no CPU, but nothing oversleeps). */
void fs_client_wait(fs_client *c, long timeout_ms);

#endif
