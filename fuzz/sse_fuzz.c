/*
** sse_fuzz.c — libFuzzer harness for the SSE parser (src/sse.c): make fuzz.
**
** An input is a 5-byte header and then the stream:
**   [0]    bit 0 SSE_WANT_COMMENTS, bit 1 SSE_WANT_RETRY, bit 2 start with a
**          last event ID (sse_set_last_id), bits 3-4 the max_size class,
**          bit 5 dirty the parser with part of the stream and sse_reset() it
**          before the split run
**   [1..2] the max_size value (little-endian): class 0 takes byte 1 alone
**          (0..255), class 1 both bytes (0..65535); class 2 is 16 MiB (the
**          module's default), class 3 SIZE_MAX (no limit)
**   [3..4] the seed of the pseudo-random split points
**
** The stream is parsed three times, each run writing a transcript of every
** item (kind, type, data, id, retry value, comment text) and of the end (the
** result that stopped it, the last event ID string, the reconnection time):
**   whole         one input, libFuzzer's own exact-size buffer
**   byte by byte  every byte in an input of its own, freed once used up
**   split         pseudo-random chunks, empty ones included; after an item
**                 the run may go on, call sse_release_input() and go on, or
**                 break off: release, free the input, and feed its unread
**                 rest joined to the next chunk (what the Lua binding does
**                 when a loop breaks and the next feed comes)
** Any difference between the transcripts aborts, and so does a broken
** promise of sse.h: an event has a type (never empty), data and an id
** (slices that may be empty, never NULL); an id never holds NUL; no slice is
** longer than max_size (bar the default type "message" and the caller's own
** initial last event ID); comments and retries only come when asked for; a
** retry is >= 0 and matches p->retry; SSE_NEED_MORE means the input is used
** up; a failure is sticky.
**
** Every input the parser reads lies in a malloc'd block of its exact size
** and is freed as soon as sse.h allows, so AddressSanitizer catches a parser
** that reads past an input or keeps a pointer into one it was told to drop.
*/
#include "sse.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEADER 5
#define INITIAL_ID "last-id-0"

/* ------------------------------------------------------------ transcript */

typedef struct tbuf {
  unsigned char *ptr;
  size_t len, cap;
} tbuf;

static void t_put(tbuf *t, const void *s, size_t n) {
  if (t->len + n > t->cap) {
    size_t cap = t->cap ? t->cap : 256;
    while (cap < t->len + n) cap *= 2;
    t->ptr = realloc(t->ptr, cap);
    if (!t->ptr) abort();
    t->cap = cap;
  }
  if (n) memcpy(t->ptr + t->len, s, n);
  t->len += n;
}

static void t_tag(tbuf *t, char tag) { t_put(t, &tag, 1); }
static void t_num(tbuf *t, long long v) { t_put(t, &v, sizeof v); }

static void t_slice(tbuf *t, const char *s, size_t n) {
  t_num(t, (long long)n);
  t_put(t, s, n); /* reads every byte: ASan checks the slice is alive */
}

/* Readable dump of a transcript, for the report of a failure. */
static void put_escaped(const unsigned char *s, size_t n) {
  size_t i;
  fputc('"', stderr);
  for (i = 0; i < n && i < 200; i++) {
    if (s[i] >= 32 && s[i] < 127 && s[i] != '"' && s[i] != '\\') fputc(s[i], stderr);
    else fprintf(stderr, "\\x%02X", s[i]);
  }
  fprintf(stderr, i < n ? "\"...(%zu bytes)" : "\"", n);
}

static size_t dump_slice(const unsigned char *p, size_t at) {
  long long n;
  memcpy(&n, p + at, sizeof n);
  put_escaped(p + at + sizeof n, (size_t)n);
  return at + sizeof n + (size_t)n;
}

static void dump(const char *name, const tbuf *t) {
  size_t at = 0;
  long long v;
  fprintf(stderr, "-- %s transcript:\n", name);
  while (at < t->len) {
    char tag = (char)t->ptr[at++];
    fprintf(stderr, "  %c ", tag);
    switch (tag) {
      case 'E':
        fputs("type=", stderr), at = dump_slice(t->ptr, at);
        fputs(" data=", stderr), at = dump_slice(t->ptr, at);
        fputs(" id=", stderr), at = dump_slice(t->ptr, at);
        break;
      case 'C': at = dump_slice(t->ptr, at); break;
      case 'R':
      case 'Z':
        memcpy(&v, t->ptr + at, sizeof v);
        at += sizeof v;
        fprintf(stderr, tag == 'R' ? "retry %lld" : "result %lld", v);
        if (tag == 'Z') {
          fputs(" last_id=", stderr), at = dump_slice(t->ptr, at);
          memcpy(&v, t->ptr + at, sizeof v);
          at += sizeof v;
          fprintf(stderr, " p->retry=%lld", v);
        }
        break;
      default: fputs("?", stderr); at = t->len;
    }
    fputc('\n', stderr);
  }
}

/* ------------------------------------------------------------- the runs */

typedef struct ctx {
  size_t max_size;
  unsigned flags;
  int initial_id;
  const char *mode; /* the run, for reports */
} ctx;

static void fail(const ctx *c, const char *what) {
  fprintf(stderr, "sse_fuzz: %s run: %s (max_size %zu, flags %u, initial id %d)\n",
          c->mode, what, c->max_size, c->flags, c->initial_id);
  abort();
}

static int longer(const ctx *c, sse_slice s) { return s.len > c->max_size; }

static int is(sse_slice s, const char *lit) {
  return s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0;
}

static void start(const ctx *c, sse_parser *p) {
  if (c->initial_id && sse_set_last_id(p, INITIAL_ID, strlen(INITIAL_ID)) != SSE_NEED_MORE)
    fail(c, "sse_set_last_id failed");
}

/* Check sse_next's answer against sse.h and write the item down. Returns
** 0 when the run must stop (the input is used up, or the parser failed). */
static int take(const ctx *c, sse_parser *p, const sse_input *in,
                const char *buf, sse_result r, const sse_item *it, tbuf *t) {
  if (in->pos < buf || in->pos > in->end) fail(c, "input position out of the input");
  switch (r) {
    case SSE_NEED_MORE:
      if (in->pos != in->end) fail(c, "SSE_NEED_MORE before the input was used up");
      return 0;
    case SSE_EVENT:
      if (!it->type.ptr || !it->data.ptr || !it->id.ptr) fail(c, "an event slice is NULL");
      if (it->type.len == 0) fail(c, "an event with an empty type");
      if (memchr(it->id.ptr, '\0', it->id.len)) fail(c, "an event id holds NUL");
      if (longer(c, it->data)) fail(c, "event data longer than max_size");
      if (longer(c, it->type) && !is(it->type, "message"))
        fail(c, "event type longer than max_size");
      if (longer(c, it->id) && !(c->initial_id && is(it->id, INITIAL_ID)))
        fail(c, "event id longer than max_size");
      t_tag(t, 'E');
      t_slice(t, it->type.ptr, it->type.len);
      t_slice(t, it->data.ptr, it->data.len);
      t_slice(t, it->id.ptr, it->id.len);
      return 1;
    case SSE_COMMENT:
      if (!(c->flags & SSE_WANT_COMMENTS)) fail(c, "a comment nobody asked for");
      if (!it->data.ptr) fail(c, "a comment slice is NULL");
      if (longer(c, it->data)) fail(c, "comment longer than max_size");
      t_tag(t, 'C');
      t_slice(t, it->data.ptr, it->data.len);
      return 1;
    case SSE_RETRY:
      if (!(c->flags & SSE_WANT_RETRY)) fail(c, "a retry nobody asked for");
      if (it->retry < 0) fail(c, "a negative retry");
      if (it->retry != p->retry) fail(c, "item retry differs from p->retry");
      t_tag(t, 'R');
      t_num(t, it->retry);
      return 1;
    case SSE_TOO_LARGE:
    case SSE_NOMEM:
      if (p->failed != r) fail(c, "a failure not recorded in p->failed");
      return 0;
    default: fail(c, "sse_next returned an unknown result");
  }
  return 0;
}

/* The end of a run: the result that stopped it and the parser's state. */
static void finish(const ctx *c, sse_parser *p, sse_result r, tbuf *t) {
  sse_input in;
  sse_item it;
  if (r != SSE_NEED_MORE) { /* sticky: any further call fails the same way */
    sse_input_set(&in, "data: x\n\n", 9);
    if (sse_next(p, &in, &it) != r) fail(c, "a failure that did not stick");
  }
  if (memchr(p->last_id.ptr ? p->last_id.ptr : "", '\0', p->last_id.len))
    fail(c, "the last event ID string holds NUL");
  t_tag(t, 'Z');
  t_num(t, (long long)r);
  t_slice(t, p->last_id.len ? p->last_id.ptr : "", p->last_id.len);
  t_num(t, p->retry);
}

/* Parse one input to its end; returns SSE_NEED_MORE or the failure. */
static sse_result run_input(const ctx *c, sse_parser *p, const char *buf,
                            size_t len, tbuf *t) {
  sse_input in;
  sse_item it;
  sse_result r;
  sse_input_set(&in, buf, len);
  do r = sse_next(p, &in, &it);
  while (take(c, p, &in, buf, r, &it, t));
  return r;
}

static char *copy(const char *s, size_t n) {
  char *b = malloc(n ? n : 1);
  if (!b) abort();
  if (n) memcpy(b, s, n);
  return b;
}

static void run_whole(ctx *c, const char *s, size_t n, tbuf *t) {
  sse_parser p;
  c->mode = "whole";
  sse_init(&p, c->max_size, c->flags);
  start(c, &p);
  finish(c, &p, run_input(c, &p, s, n, t), t);
  sse_free(&p);
}

static void run_bytes(ctx *c, const char *s, size_t n, tbuf *t) {
  sse_parser p;
  sse_result r = SSE_NEED_MORE;
  size_t i;
  c->mode = "byte by byte";
  sse_init(&p, c->max_size, c->flags);
  start(c, &p);
  for (i = 0; i < n && r == SSE_NEED_MORE; i++) {
    char *b = copy(s + i, 1);
    r = run_input(c, &p, b, 1, t);
    free(b);
  }
  finish(c, &p, r, t);
  sse_free(&p);
}

/* xorshift64*: the split points, from the header's seed and the length. */
static uint64_t next_rand(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 2685821657736338717ull;
}

static void run_split(ctx *c, const char *s, size_t n, unsigned seed, int dirty,
                      tbuf *t) {
  static const size_t sizes[8] = {1, 2, 3, 5, 8, 16, 64, 4096};
  uint64_t rs = 0x9E3779B97F4A7C15ull * (seed + 1) ^ n;
  sse_parser p;
  sse_result r = SSE_NEED_MORE;
  size_t off = 0, rest_len = 0, maxchunk;
  char *rest = NULL;
  c->mode = "split";
  sse_init(&p, c->max_size, c->flags);
  if (dirty) { /* a stream cut short: sse_reset must forget all of it */
    size_t k = n ? (size_t)(next_rand(&rs) % (n + 1)) : 0;
    tbuf junk = {NULL, 0, 0};
    char *b = copy(s, k);
    start(c, &p);
    run_input(c, &p, b, k, &junk);
    free(b);
    free(junk.ptr);
    sse_reset(&p);
  }
  start(c, &p);
  maxchunk = sizes[next_rand(&rs) % 8];
  while (r == SSE_NEED_MORE && (off < n || rest_len)) {
    size_t clen = (size_t)(next_rand(&rs) % (maxchunk + 1)), len;
    sse_input in;
    sse_item it;
    char *b;
    int broke = 0;
    if (clen > n - off) clen = n - off;
    /* the next input: the unread rest of the last one, then a new chunk */
    len = rest_len + clen;
    b = malloc(len ? len : 1);
    if (!b) abort();
    if (rest_len) memcpy(b, rest, rest_len);
    if (clen) memcpy(b + rest_len, s + off, clen);
    free(rest);
    rest = NULL;
    rest_len = 0;
    off += clen;
    sse_input_set(&in, b, len);
    for (;;) {
      unsigned what;
      r = sse_next(&p, &in, &it);
      if (!take(c, &p, &in, b, r, &it, t)) break;
      what = (unsigned)(next_rand(&rs) % 8);
      if (what == 0) { /* copy what the parser borrows, and go on */
        if (sse_release_input(&p) != SSE_NEED_MORE) fail(c, "sse_release_input failed");
      } else if (what == 1) { /* break off: drop this input */
        if (sse_release_input(&p) != SSE_NEED_MORE) fail(c, "sse_release_input failed");
        rest_len = (size_t)(in.end - in.pos);
        rest = copy(in.pos, rest_len);
        broke = 1;
        break;
      }
    }
    free(b);
    if (broke) r = SSE_NEED_MORE;
  }
  free(rest);
  finish(c, &p, r, t);
  sse_free(&p);
}

/* ------------------------------------------------------------- the entry */

static void compare(const ctx *c, const char *name, const tbuf *a, const tbuf *b) {
  if (a->len == b->len && (a->len == 0 || memcmp(a->ptr, b->ptr, a->len) == 0)) return;
  dump("whole", a);
  dump(name, b);
  fprintf(stderr, "sse_fuzz: the %s run differs from the whole run\n", name);
  fail(c, "transcripts differ");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static tbuf whole, bytes, split; /* kept between inputs: fewer reallocs */
  ctx c;
  const char *s;
  size_t n;
  unsigned value, seed;
  if (size < HEADER) return -1; /* not worth adding to the corpus */
  c.flags = data[0] & (SSE_WANT_COMMENTS | SSE_WANT_RETRY);
  c.initial_id = (data[0] >> 2) & 1;
  value = data[1] | (unsigned)data[2] << 8;
  switch ((data[0] >> 3) & 3) {
    case 0: c.max_size = data[1]; break;
    case 1: c.max_size = value; break;
    case 2: c.max_size = (size_t)16 << 20; break;
    default: c.max_size = SIZE_MAX; break;
  }
  seed = data[3] | (unsigned)data[4] << 8;
  s = (const char *)data + HEADER;
  n = size - HEADER;
  whole.len = bytes.len = split.len = 0;
  run_whole(&c, s, n, &whole);
  run_bytes(&c, s, n, &bytes);
  compare(&c, "byte by byte", &whole, &bytes);
  run_split(&c, s, n, seed, (data[0] >> 5) & 1, &split);
  compare(&c, "split", &whole, &split);
  return 0;
}
