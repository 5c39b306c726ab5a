/*
** client.c — the multi handle, driven by its sockets. See client.h.
**
** libcurl quirks that shape this file:
** - CURLMOPT_SOCKETFUNCTION is called from inside curl (socket_action,
**   add_handle, remove_handle, cleanup): it only updates the epoll set.
**   A socket curl closed is gone from the set already (the kernel drops it),
**   and its number may come back at once for a new socket: EPOLL_CTL_ADD
**   then says EEXIST or DEL says ENOENT/EBADF, which are not errors here.
** - CURLMOPT_TIMERFUNCTION gives a delay from now (-1: none, 0: as soon as
**   possible): we keep the moment, and the next step calls
**   socket_action(CURL_SOCKET_TIMEOUT) once it has come. curl_easy_pause()
**   and add_handle set such a timer: resuming a paused transfer needs a step.
** - A transfer's deadline moves later on every write (idle timeout): the heap
**   is not told each time. A deadline found passed is checked again against
**   the stream, and filed anew when it has moved.
*/
#define _POSIX_C_SOURCE 200809L
#include "client.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef FS_EPOLL
#include <sys/epoll.h>
#endif

/* ------------------------------------------------------------ the heap */

static int before(const fs_stream *a, const fs_stream *b) {
  return a->heap_at < b->heap_at;
}

static void heap_put(fs_client *c, int i, fs_stream *s) {
  c->heap[i] = s;
  s->heap_index = i;
}

static void sift_up(fs_client *c, int i) {
  fs_stream *s = c->heap[i];
  while (i > 0) {
    int parent = (i - 1) / 2;
    if (!before(s, c->heap[parent])) break;
    heap_put(c, i, c->heap[parent]);
    i = parent;
  }
  heap_put(c, i, s);
}

static void sift_down(fs_client *c, int i) {
  fs_stream *s = c->heap[i];
  for (;;) {
    int child = 2 * i + 1;
    if (child >= c->heap_len) break;
    if (child + 1 < c->heap_len && before(c->heap[child + 1], c->heap[child])) child++;
    if (!before(c->heap[child], s)) break;
    heap_put(c, i, c->heap[child]);
    i = child;
  }
  heap_put(c, i, s);
}

static void heap_remove(fs_client *c, fs_stream *s) {
  int i = s->heap_index;
  fs_stream *last;
  if (i < 0) return;
  s->heap_index = -1;
  last = c->heap[--c->heap_len];
  if (last == s) return;
  heap_put(c, i, last);
  sift_up(c, i);
  sift_down(c, last->heap_index);
}

/* File s under `at`, or take it out with 0. Returns 0 when out of memory
** (the stream then has no deadline: it keeps running without one). */
static int heap_set(fs_client *c, fs_stream *s, double at) {
  if (at == 0) {
    heap_remove(c, s);
    return 1;
  }
  s->heap_at = at;
  if (s->heap_index >= 0) {
    sift_up(c, s->heap_index);
    sift_down(c, s->heap_index);
    return 1;
  }
  if (c->heap_len == c->heap_cap) {
    int cap = c->heap_cap ? c->heap_cap * 2 : 16;
    fs_stream **h = realloc(c->heap, (size_t)cap * sizeof *h);
    if (!h) return 0;
    c->heap = h;
    c->heap_cap = cap;
  }
  heap_put(c, c->heap_len++, s);
  sift_up(c, s->heap_index);
  return 1;
}

/* ------------------------------------------------------------ deadlines */

/* The moment this stream needs a step, or 0 for never; *which says why: a
** timeout (FS_END_TIMEOUT_*) or FS_RUNNING for a wake-up. first_byte runs
** from the start to the first body byte; idle from the final response's
** headers (a server that sends headers and then nothing is silent too) to
** each body byte. A stream that waits for its reader is not silent: only
** the total timeout runs. A stream off the multi handle only wakes. */
static double deadline(const fs_stream *s, fs_end *which) {
  double at = 0, t;
  fs_end w = FS_RUNNING;
  if (!s->attached) {
    if (which) *which = FS_RUNNING;
    return s->wake_at;
  }
  if (s->total_timeout_ms > 0) {
    at = s->t_start + (double)s->total_timeout_ms;
    w = FS_END_TIMEOUT_TOTAL;
  }
  if (fs_stream_held_back(s)) goto done;
  if (s->t_first_byte == 0 && s->first_byte_timeout_ms > 0) {
    t = s->t_start + (double)s->first_byte_timeout_ms;
    if (at == 0 || t < at) at = t, w = FS_END_TIMEOUT_FIRST_BYTE;
  }
  if (s->headers_done && s->idle_timeout_ms > 0) {
    double last = s->t_last_byte > s->t_headers ? s->t_last_byte : s->t_headers;
    t = last + (double)s->idle_timeout_ms;
    if (at == 0 || t < at) at = t, w = FS_END_TIMEOUT_IDLE;
  }
done:
  if (which) *which = w;
  return at;
}

void fs_client_schedule(fs_client *c, fs_stream *s) {
  heap_set(c, s, deadline(s, NULL));
}

void fs_client_wake_at(fs_client *c, fs_stream *s, double at) {
  s->wake_at = at;
  fs_client_schedule(c, s);
}

/* ------------------------------------------------------------ ready list */

void fs_client_mark_ready(fs_client *c, fs_stream *s) {
  if (s->ready) return;
  s->ready = 1;
  s->ready_next = NULL;
  s->ready_prev = c->ready_tail;
  if (c->ready_tail) c->ready_tail->ready_next = s;
  else c->ready_head = s;
  c->ready_tail = s;
}

static void unready(fs_client *c, fs_stream *s) {
  if (!s->ready) return;
  s->ready = 0;
  if (s->ready_prev) s->ready_prev->ready_next = s->ready_next;
  else c->ready_head = s->ready_next;
  if (s->ready_next) s->ready_next->ready_prev = s->ready_prev;
  else c->ready_tail = s->ready_prev;
  s->ready_prev = s->ready_next = NULL;
}

fs_stream *fs_client_next_ready(fs_client *c) {
  fs_stream *s = c->ready_head;
  if (s) unready(c, s);
  return s;
}

/* ------------------------------------------------------------ sockets */

#ifdef FS_EPOLL
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *ud, void *sockp) {
  fs_client *c = ud;
  struct epoll_event ev;
  (void)easy;
  (void)sockp;
  if (what == CURL_POLL_REMOVE) {
    epoll_ctl(c->epfd, EPOLL_CTL_DEL, fd, NULL); /* ENOENT, EBADF: gone already */
    return 0;
  }
  memset(&ev, 0, sizeof ev);
  ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u);
  ev.data.fd = fd;
  if (epoll_ctl(c->epfd, EPOLL_CTL_MOD, fd, &ev) != 0 && errno == ENOENT)
    epoll_ctl(c->epfd, EPOLL_CTL_ADD, fd, &ev);
  return 0;
}
#else
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *ud, void *sockp) {
  fs_client *c = ud;
  int i;
  short events = (short)(((what & CURL_POLL_IN) ? POLLIN : 0) | ((what & CURL_POLL_OUT) ? POLLOUT : 0));
  (void)easy;
  (void)sockp;
  for (i = 0; i < c->nfds && c->fds[i].fd != fd; i++) {}
  if (what == CURL_POLL_REMOVE) {
    if (i < c->nfds) c->fds[i] = c->fds[--c->nfds];
    return 0;
  }
  if (i == c->nfds) {
    if (c->nfds == c->capfds) {
      int cap = c->capfds ? c->capfds * 2 : 16;
      struct pollfd *p = realloc(c->fds, (size_t)cap * sizeof *p);
      if (!p) return -1;
      c->fds = p;
      c->capfds = cap;
    }
    c->nfds++;
  }
  c->fds[i].fd = fd;
  c->fds[i].events = events;
  c->fds[i].revents = 0;
  return 0;
}
#endif

static int on_timer(CURLM *multi, long timeout_ms, void *ud) {
  fs_client *c = ud;
  (void)multi;
  c->curl_at = timeout_ms < 0 ? 0 : fs_now_ms() + (double)timeout_ms;
  return 0;
}

/* ------------------------------------------------------------ lifecycle */

int fs_client_init(fs_client *c) {
  memset(c, 0, sizeof *c);
  c->epfd = -1;
#ifdef FS_EPOLL
  c->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (c->epfd < 0) return -1;
#endif
  c->multi = curl_multi_init();
  if (!c->multi) {
    if (c->epfd >= 0) close(c->epfd);
    c->epfd = -1;
    return -1;
  }
  curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
  curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer);
  curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
  return 0;
}

void fs_client_free(fs_client *c) {
  while (c->streams) fs_stream_abort(c->streams); /* each one detaches itself */
  while (c->heap_len > 0) fs_client_forget(c, c->heap[0]);
  while (c->ready_head) fs_client_forget(c, c->ready_head);
  if (c->multi) curl_multi_cleanup(c->multi);
  c->multi = NULL;
  if (c->epfd >= 0) close(c->epfd);
  c->epfd = -1;
  free(c->heap);
  c->heap = NULL;
  c->heap_len = c->heap_cap = 0;
  free(c->fds);
  c->fds = NULL;
  c->nfds = c->capfds = 0;
}

CURLMcode fs_client_add(fs_client *c, fs_stream *s) {
  CURLMcode rc;
  s->client = c;
  s->heap_index = -1;
  s->wake_at = 0;
  s->t_start = fs_now_ms();
  rc = curl_multi_add_handle(c->multi, s->easy);
  if (rc != CURLM_OK) {
    s->client = NULL;
    return rc;
  }
  s->attached = 1;
  s->prev = NULL;
  s->next = c->streams;
  if (c->streams) c->streams->prev = s;
  c->streams = s;
  c->count++;
  fs_client_schedule(c, s);
  return CURLM_OK;
}

void fs_client_remove(fs_client *c, fs_stream *s) {
  if (s->client != c || !s->attached) return;
  curl_multi_remove_handle(c->multi, s->easy);
  if (s->prev) s->prev->next = s->next;
  else c->streams = s->next;
  if (s->next) s->next->prev = s->prev;
  s->prev = s->next = NULL;
  s->attached = 0;
  c->count--;
  fs_client_schedule(c, s); /* off the multi handle: only a wake-up is left */
}

void fs_client_forget(fs_client *c, fs_stream *s) {
  if (s->client != c) return;
  fs_client_remove(c, s);
  heap_remove(c, s);
  unready(c, s);
  s->wake_at = 0;
  s->client = NULL;
}

/* ------------------------------------------------------------ stepping */

/* Collect the transfers curl has finished. */
static void collect_done(fs_client *c) {
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
    char *priv = NULL;
    fs_stream *s;
    if (msg->msg != CURLMSG_DONE) continue;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
    if (!priv) continue;
    s = (fs_stream *)(void *)priv;
    fs_stream_done(s, msg->data.result);
    fs_client_remove(c, s); /* msg is not used after this */
    fs_client_mark_ready(c, s);
  }
}

/* Hand curl the sockets that are ready now. */
static void run_sockets(fs_client *c) {
  int running;
#ifdef FS_EPOLL
  struct epoll_event evs[64];
  int n, i;
  do {
    n = epoll_wait(c->epfd, evs, 64, 0);
    for (i = 0; i < n; i++) {
      int mask = ((evs[i].events & EPOLLIN) ? CURL_CSELECT_IN : 0) |
                 ((evs[i].events & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
                 ((evs[i].events & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR : 0);
      curl_multi_socket_action(c->multi, evs[i].data.fd, mask, &running);
    }
  } while (n == 64);
#else
  struct pollfd *ready;
  int n, i;
  if (c->nfds == 0) return;
  /* a copy: curl changes c->fds while it works */
  ready = malloc((size_t)c->nfds * sizeof *ready);
  if (!ready) return;
  n = c->nfds;
  memcpy(ready, c->fds, (size_t)n * sizeof *ready);
  if (poll(ready, (nfds_t)n, 0) > 0) {
    for (i = 0; i < n; i++) {
      int mask;
      if (!ready[i].revents) continue;
      mask = ((ready[i].revents & POLLIN) ? CURL_CSELECT_IN : 0) |
             ((ready[i].revents & POLLOUT) ? CURL_CSELECT_OUT : 0) |
             ((ready[i].revents & (POLLERR | POLLHUP)) ? CURL_CSELECT_ERR : 0);
      curl_multi_socket_action(c->multi, ready[i].fd, mask, &running);
    }
  }
  free(ready);
#endif
}

/* The deadlines that have passed: a timeout ends its transfer, a wake-up
** makes its stream ready; a deadline that moved is filed anew. */
static void run_deadlines(fs_client *c) {
  double now = fs_now_ms();
  while (c->heap_len > 0 && c->heap[0]->heap_at <= now) {
    fs_stream *s = c->heap[0];
    fs_end which;
    double at = deadline(s, &which);
    if (at != 0 && at > now) { /* it moved (a write, a resume): not yet */
      heap_set(c, s, at);
      continue;
    }
    heap_remove(c, s);
    if (s->attached && which != FS_RUNNING) {
      s->end = which;
      fs_client_remove(c, s);
    } else {
      s->wake_at = 0;
    }
    fs_client_mark_ready(c, s);
  }
}

void fs_client_step(fs_client *c) {
  int running;
  run_sockets(c);
  if (c->curl_at != 0 && fs_now_ms() >= c->curl_at) {
    c->curl_at = 0;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  }
  collect_done(c);
  run_deadlines(c);
}

long fs_client_timeout_ms(const fs_client *c) {
  double soonest = c->curl_at, left;
  if (c->ready_head) return 0;
  if (c->heap_len > 0 && (soonest == 0 || c->heap[0]->heap_at < soonest))
    soonest = c->heap[0]->heap_at;
  if (soonest == 0) return c->count > 0 ? 86400000L : -1; /* transfers wait on sockets only */
  left = soonest - fs_now_ms();
  if (left <= 0) return 0;
  return left > 86400000.0 ? 86400000L : (long)left + 1; /* never wake early */
}

int fs_client_fileno(const fs_client *c) {
  return c->epfd;
}

void fs_client_wait(fs_client *c, long timeout_ms) {
  long need = fs_client_timeout_ms(c);
  if (need >= 0 && need < timeout_ms) timeout_ms = need;
  if (timeout_ms < 0) timeout_ms = 0;
  if (timeout_ms > 86400000L) timeout_ms = 86400000L;
#ifdef FS_EPOLL
  {
    struct pollfd p;
    p.fd = c->epfd;
    p.events = POLLIN;
    p.revents = 0;
    poll(&p, 1, (int)timeout_ms); /* readable: one of curl's sockets is */
  }
#else
  if (c->nfds > 0) {
    struct pollfd *copy = malloc((size_t)c->nfds * sizeof *copy);
    if (copy) {
      memcpy(copy, c->fds, (size_t)c->nfds * sizeof *copy);
      poll(copy, (nfds_t)c->nfds, (int)timeout_ms);
      free(copy);
      return;
    }
  }
  poll(NULL, 0, (int)timeout_ms);
#endif
}
