/*
** bench/server.c: the benchmarks' loopback HTTP/1.1 server.
**
**   build/bench-server [--dir DIR] [--lifetime SECONDS]
**
** One thread, epoll, non-blocking sockets; binds 127.0.0.1 on a free port
** and prints "PORT <n> PID <pid>" as its first line on stdout. It exits by
** itself after --lifetime seconds (default 300), within a second of its
** parent dying, or on GET /quit. Every response is `Connection: close`,
** `Transfer-Encoding: chunked`, `Content-Type: text/event-stream`.
**
** Routes (query values are integers):
**   /file/NAME            DIR/NAME.sse (read into memory on first use),
**                         sent as fast as the client reads, in HTTP chunks
**                         of 64 KiB.
**   /tick?n=&us=&start=&phase=
**                         n events, event k (0-based) due at
**                         start + phase + k*us microseconds (CLOCK_REALTIME;
**                         start=0 or absent: when the request arrived). Each
**                         event is a chat.completion.chunk whose data starts
**                         with {"t":T, T the 16-digit gettimeofday time in
**                         microseconds taken just before the write.
**   /gen?bytes=&size=     about `bytes` of events whose data is `size` bytes
**                         ("x" repeated), as fast as the client reads.
**   /quit                 exit.
**
** The send time is taken from gettimeofday so that a client on the same
** machine compares it with its own gettimeofday (Lua's socket.gettime,
** Node's performance.timeOrigin + performance.now(), Python's time.time()).
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 65536
#define MAX_FILES 16

enum { M_READ, M_FILE, M_TICK, M_GEN, M_DONE };

typedef struct conn {
  int fd;
  int mode;
  int dead;       /* closed while still in the tick heap: freed when popped */
  int in_heap;
  int want_out;   /* EPOLLOUT registered */
  char req[4096];
  size_t reqlen;
  char *out;      /* bytes not written yet: out[off..len) */
  size_t len, off, cap;
  const char *src; /* M_FILE: the file; M_GEN: one block of whole events */
  char *own;       /* M_GEN: that block, this connection's own */
  size_t srclen, srcoff;
  int64_t left;    /* M_GEN: bytes still to send */
  long n, k;       /* M_TICK: events to send, events sent */
  int64_t due, us;
  struct conn *next_free;
} conn;
static conn *graveyard;

static struct { char name[64]; char *data; size_t len; } files[MAX_FILES];
static int nfiles;
static const char *dir = "bench/corpus";
static int epfd, tfd;
static conn **heap;
static size_t heaplen, heapcap;

static int64_t now_us(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void *xrealloc(void *p, size_t n) {
  p = realloc(p, n);
  if (!p) die("realloc");
  return p;
}

/* Append n bytes to c's output. */
static void out_add(conn *c, const char *s, size_t n) {
  if (c->off > 0 && c->off == c->len) c->off = c->len = 0;
  if (c->len + n > c->cap) {
    if (c->off > 0) {
      memmove(c->out, c->out + c->off, c->len - c->off);
      c->len -= c->off;
      c->off = 0;
    }
    if (c->len + n > c->cap) {
      c->cap = (c->len + n) * 2;
      c->out = xrealloc(c->out, c->cap);
    }
  }
  memcpy(c->out + c->len, s, n);
  c->len += n;
}

static void out_chunk(conn *c, const char *s, size_t n) {
  char hdr[24];
  int h = snprintf(hdr, sizeof hdr, "%zx\r\n", n);
  out_add(c, hdr, (size_t)h);
  out_add(c, s, n);
  out_add(c, "\r\n", 2);
}

static void set_out(conn *c, int on) {
  if (c->want_out == on) return;
  struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0), .data.ptr = c };
  if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
  c->want_out = on;
}

static void conn_close(conn *c) {
  if (c->fd >= 0) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
  }
  if (!c->dead && !c->in_heap) {
    c->next_free = graveyard;
    graveyard = c;
  }
  c->dead = 1;
}

/* Closed connections are freed after each batch of epoll events, so that a
** later event of the same batch never points to freed memory. */
static void bury(void) {
  while (graveyard) {
    conn *c = graveyard;
    graveyard = c->next_free;
    free(c->out);
    free(c->own);
    free(c);
  }
}

/* The tick heap: a min-heap of connections by due time. */
static void heap_push(conn *c) {
  if (heaplen == heapcap) {
    heapcap = heapcap ? heapcap * 2 : 1024;
    heap = xrealloc(heap, heapcap * sizeof *heap);
  }
  size_t i = heaplen++;
  while (i > 0 && heap[(i - 1) / 2]->due > c->due) {
    heap[i] = heap[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  heap[i] = c;
  c->in_heap = 1;
}

static conn *heap_pop(void) {
  conn *top = heap[0], *last = heap[--heaplen];
  size_t i = 0;
  for (;;) {
    size_t l = 2 * i + 1, m = i;
    if (l >= heaplen) break;
    m = (l + 1 < heaplen && heap[l + 1]->due < heap[l]->due) ? l + 1 : l;
    if (heap[m]->due >= last->due) break;
    heap[i] = heap[m];
    i = m;
  }
  if (heaplen > 0) heap[i] = last;
  top->in_heap = 0;
  return top;
}

static void arm_timer(void) {
  struct itimerspec its = { 0 };
  if (heaplen > 0) {
    int64_t due = heap[0]->due;
    if (due <= 0) due = 1;
    its.it_value.tv_sec = due / 1000000;
    its.it_value.tv_nsec = (due % 1000000) * 1000;
  }
  if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0) die("timerfd_settime");
}

/* Fill c's output from its source when it runs dry (file and gen modes). */
static void refill(conn *c) {
  if (c->off < c->len) return;
  if (c->mode == M_FILE) {
    if (c->srcoff < c->srclen) {
      size_t n = c->srclen - c->srcoff;
      if (n > CHUNK) n = CHUNK;
      out_chunk(c, c->src + c->srcoff, n);
      c->srcoff += n;
    } else {
      out_add(c, "0\r\n\r\n", 5);
      c->mode = M_DONE;
    }
  } else if (c->mode == M_GEN) {
    if (c->left > 0) {
      size_t n = c->srclen;
      if ((int64_t)n > c->left) n = (size_t)c->left;
      out_chunk(c, c->src, n);
      c->left -= (int64_t)n;
    } else {
      out_add(c, "0\r\n\r\n", 5);
      c->mode = M_DONE;
    }
  }
}

/* Write what can be written; refill from the source as it drains. */
static void flush(conn *c) {
  for (;;) {
    refill(c);
    if (c->off == c->len) break;
    ssize_t w = write(c->fd, c->out + c->off, c->len - c->off);
    if (w < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        set_out(c, 1);
        return;
      }
      if (errno == EINTR) continue;
      conn_close(c);
      return;
    }
    c->off += (size_t)w;
  }
  set_out(c, 0);
  if (c->mode == M_DONE) conn_close(c);
}

static const char *file_get(const char *name, size_t *len) {
  for (int i = 0; i < nfiles; i++)
    if (strcmp(files[i].name, name) == 0) { *len = files[i].len; return files[i].data; }
  if (nfiles == MAX_FILES || strlen(name) >= sizeof files[0].name || strchr(name, '/')) return NULL;
  char path[4096];
  snprintf(path, sizeof path, "%s/%s.sse", dir, name);
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  struct stat st;
  if (fstat(fileno(f), &st) < 0) { fclose(f); return NULL; }
  char *data = malloc((size_t)st.st_size + 1);
  if (!data || fread(data, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
    free(data);
    fclose(f);
    return NULL;
  }
  fclose(f);
  snprintf(files[nfiles].name, sizeof files[0].name, "%s", name);
  files[nfiles].data = data;
  files[nfiles].len = (size_t)st.st_size;
  *len = files[nfiles].len;
  return files[nfiles++].data;
}

static int64_t query_int(const char *q, const char *key, int64_t dflt) {
  size_t kl = strlen(key);
  while (q && *q) {
    if (strncmp(q, key, kl) == 0 && q[kl] == '=') return strtoll(q + kl + 1, NULL, 10);
    q = strchr(q, '&');
    if (q) q++;
  }
  return dflt;
}

static void respond(conn *c, const char *status) {
  char h[256];
  int n = snprintf(h, sizeof h,
                   "HTTP/1.1 %s\r\nContent-Type: %s\r\nCache-Control: no-cache\r\n"
                   "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                   status, status[0] == '2' ? "text/event-stream" : "text/plain");
  out_add(c, h, (size_t)n);
}

static void tick_send(conn *c) {
  char ev[512];
  int64_t t = now_us();
  int n = snprintf(ev, sizeof ev,
                   "data: {\"t\":%016lld,\"k\":%ld,\"id\":\"chatcmpl-9xQ2bW7kLmN4pRs8TuV1wYz3AbC\","
                   "\"object\":\"chat.completion.chunk\",\"created\":1718000000,\"model\":\"gpt-4o-mini\","
                   "\"choices\":[{\"index\":0,\"delta\":{\"content\":\" token\"},\"finish_reason\":null}]}\n\n",
                   (long long)t, c->k);
  out_chunk(c, ev, (size_t)n);
  if (++c->k >= c->n) {
    out_add(c, "0\r\n\r\n", 5);
    c->mode = M_DONE;
  }
}

static void handle_request(conn *c) {
  char *sp = strchr(c->req, ' ');
  char *path = sp ? sp + 1 : c->req;
  char *end = strchr(path, ' ');
  if (end) *end = 0;
  char *q = strchr(path, '?');
  if (q) *q++ = 0;
  if (strncmp(path, "/file/", 6) == 0) {
    c->src = file_get(path + 6, &c->srclen);
    if (!c->src) {
      respond(c, "404 Not Found");
      out_chunk(c, "no such corpus\n", 15);
      out_add(c, "0\r\n\r\n", 5);
      c->mode = M_DONE;
    } else {
      respond(c, "200 OK");
      c->mode = M_FILE;
    }
  } else if (strcmp(path, "/tick") == 0) {
    c->n = (long)query_int(q, "n", 100);
    c->us = query_int(q, "us", 1000);
    int64_t start = query_int(q, "start", 0);
    if (start <= 0) start = now_us();
    c->due = start + query_int(q, "phase", 0);
    respond(c, "200 OK");
    if (c->n <= 0) {
      out_add(c, "0\r\n\r\n", 5);
      c->mode = M_DONE;
    } else {
      c->mode = M_TICK;
      heap_push(c);
      arm_timer();
    }
  } else if (strcmp(path, "/gen") == 0) {
    int64_t size = query_int(q, "size", 1000);
    if (size < 1) size = 1;
    if (size > CHUNK - 8) size = CHUNK - 8;
    size_t ev = (size_t)size + 8, per = CHUNK / ev, i;
    c->own = malloc(per * ev);
    if (!c->own) die("malloc");
    for (i = 0; i < per; i++) {
      char *e = c->own + i * ev;
      memcpy(e, "data: ", 6);
      memset(e + 6, 'x', (size_t)size);
      memcpy(e + 6 + size, "\n\n", 2);
    }
    c->src = c->own;
    c->srclen = per * ev;
    c->left = query_int(q, "bytes", 1 << 20);
    c->left -= c->left % (int64_t)ev;
    respond(c, "200 OK");
    c->mode = M_GEN;
  } else if (strcmp(path, "/quit") == 0) {
    exit(0);
  } else {
    respond(c, "404 Not Found");
    out_chunk(c, "no such route\n", 14);
    out_add(c, "0\r\n\r\n", 5);
    c->mode = M_DONE;
  }
  flush(c);
}

/* Returns 1 when c was closed (and may be freed). */
static int on_readable(conn *c) {
  for (;;) {
    char tmp[4096];
    char *buf = c->mode == M_READ ? c->req + c->reqlen : tmp;
    size_t room = c->mode == M_READ ? sizeof c->req - 1 - c->reqlen : sizeof tmp;
    if (room == 0) { conn_close(c); return 1; }
    ssize_t r = read(c->fd, buf, room);
    if (r == 0) { conn_close(c); return 1; }
    if (r < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      if (errno == EINTR) continue;
      conn_close(c);
      return 1;
    }
    if (c->mode == M_READ) {
      c->reqlen += (size_t)r;
      c->req[c->reqlen] = 0;
      if (strstr(c->req, "\r\n\r\n")) {
        handle_request(c);
        return 1; /* flush may have closed it: wait for the next event */
      }
    }
  }
}

static void on_timer(void) {
  uint64_t x;
  if (read(tfd, &x, sizeof x) < 0 && errno != EAGAIN) die("read timerfd");
  int64_t now = now_us();
  while (heaplen > 0 && heap[0]->due <= now + 20) {
    conn *c = heap_pop();
    if (c->dead) {
      c->next_free = graveyard;
      graveyard = c;
      continue;
    }
    tick_send(c);
    if (c->mode == M_TICK) {
      c->due += c->us;
      heap_push(c);
    }
    flush(c);
  }
  arm_timer();
}

int main(int argc, char **argv) {
  double lifetime = 300;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) dir = argv[++i];
    else if (strcmp(argv[i], "--lifetime") == 0 && i + 1 < argc) lifetime = atof(argv[++i]);
    else { fprintf(stderr, "usage: %s [--dir DIR] [--lifetime SECONDS]\n", argv[0]); return 2; }
  }
  signal(SIGPIPE, SIG_IGN);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  pid_t parent = getppid();
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (ls < 0) die("socket");
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
  socklen_t alen = sizeof a;
  if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
  if (listen(ls, 4096) < 0) die("listen");
  if (getsockname(ls, (struct sockaddr *)&a, &alen) < 0) die("getsockname");
  printf("PORT %d PID %d\n", ntohs(a.sin_port), (int)getpid());
  fflush(stdout);

  epfd = epoll_create1(EPOLL_CLOEXEC);
  tfd = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC);
  if (epfd < 0 || tfd < 0) die("epoll/timerfd");
  struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, ls, &ev) < 0) die("epoll_ctl");
  ev.data.ptr = &tfd;
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &ev) < 0) die("epoll_ctl");

  int64_t deadline = now_us() + (int64_t)(lifetime * 1e6), next_check = 0;
  struct epoll_event evs[256];
  for (;;) {
    int n = epoll_wait(epfd, evs, 256, 1000);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int i = 0; i < n; i++) {
      void *p = evs[i].data.ptr;
      if (p == NULL) {
        for (;;) {
          int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) break;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          conn *c = calloc(1, sizeof *c);
          if (!c) die("calloc");
          c->fd = fd;
          struct epoll_event cev = { .events = EPOLLIN | EPOLLRDHUP, .data.ptr = c };
          if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &cev) < 0) die("epoll_ctl");
        }
      } else if (p == &tfd) {
        on_timer();
      } else {
        conn *c = p;
        if (c->dead) continue;
        if ((evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && on_readable(c)) continue;
        if (evs[i].events & EPOLLOUT) flush(c);
      }
    }
    bury();
    int64_t now = now_us();
    if (now >= next_check) {
      next_check = now + 1000000;
      if (now >= deadline || getppid() != parent) return 0;
    }
  }
}
