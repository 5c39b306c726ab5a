/*
** client.h — a curl multi handle driven by its sockets. Plain C, no Lua.
**
** curl's sockets live in one epoll set (a poll() array where there is no
** epoll) and its timer beside the transfers' own deadlines in a heap. A step
** does the work that can be done now, without blocking: it hands curl the
** sockets that are ready, runs curl's timer when due, collects finished
** transfers and passed deadlines, and puts every transfer that has something
** new — body bytes, its response headers, its end, a timeout, a wake-up — on
** the ready list. The caller then visits only those: the cost of a step is
** the work that arrived, not the number of transfers.
**
** The client also enforces the timeouts curl has no notion of: the first
** body byte (from the start of the request), the idle gap (once the response
** headers are in, the longest silence), and the whole transfer. A stream
** held back by back-pressure is not idle: the silence is ours, not the
** server's.
*/
#ifndef FETCHSTREAM_CLIENT_H
#define FETCHSTREAM_CLIENT_H

#include "stream.h"

#if defined(__linux__)
#define FS_EPOLL 1
#endif

struct pollfd;

typedef struct fs_client {
  CURLM *multi;
  int epfd;                       /* curl's sockets (epoll), -1 without epoll */
  struct pollfd *fds;             /* curl's sockets (poll fallback) */
  int nfds, capfds;
  double curl_at;                 /* when curl's timer is due (ms), 0: not set */
  fs_stream **heap;               /* transfers by deadline, soonest first */
  int heap_len, heap_cap;
  fs_stream *ready_head, *ready_tail; /* transfers with something new */
  fs_stream *streams;             /* attached transfers, a doubly linked list */
  int count;
} fs_client;

/* Returns 0 on success, -1 when curl (or epoll) cannot be set up. */
int fs_client_init(fs_client *c);
/* Detach and forget every stream (running ones end as aborted); free. */
void fs_client_free(fs_client *c);
/* Start a prepared stream. Returns CURLM_OK or curl's error. */
CURLMcode fs_client_add(fs_client *c, fs_stream *s);
/* Take a stream off the multi handle (it keeps its end state, and stays
** known to the client for wake-ups until fs_client_forget). */
void fs_client_remove(fs_client *c, fs_stream *s);
/* The client forgets the stream altogether (it is being freed). */
void fs_client_forget(fs_client *c, fs_stream *s);

/* Do all that can be done now without blocking; see the top. */
void fs_client_step(fs_client *c);
/* The next transfer on the ready list (taken off it), or NULL. */
fs_stream *fs_client_next_ready(fs_client *c);
/* Milliseconds until a step is needed (curl's timer, a deadline, a wake-up):
** 0 when transfers are ready already; a day when transfers run with no
** deadline (only their sockets can wake them); -1 when nothing is pending at
** all — no transfer, no wait — so that a host loop can stop watching. */
long fs_client_timeout_ms(const fs_client *c);
/* The descriptor that is readable whenever one of curl's sockets is: the
** epoll set, or -1 where there is none (a host then steps on a timer). */
int fs_client_fileno(const fs_client *c);
/* Sleep until there is network activity, a deadline, or timeout_ms passes
** (never longer: an idle client costs no CPU, but nothing oversleeps). */
void fs_client_wait(fs_client *c, long timeout_ms);

/* For stream.c, from inside curl's callbacks too (list work only): the
** stream has something new; its deadline may have changed. */
void fs_client_mark_ready(fs_client *c, fs_stream *s);
void fs_client_schedule(fs_client *c, fs_stream *s);
/* Wake the stream (put it on the ready list) at `at` ms on fs_now_ms's
** clock, or never with 0: what a reconnecting stream waits on. */
void fs_client_wake_at(fs_client *c, fs_stream *s, double at);

#endif
