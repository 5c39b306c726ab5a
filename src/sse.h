/*
** sse.h — an incremental Server-Sent Events parser.
**
** Byte-exact to the WHATWG HTML standard, "event stream interpretation".
** Plain C99: no Lua, no curl, so it can be tested and fuzzed on its own.
**
** The parser is pull-style. The caller hands it input and takes out one item
** (an event, a comment, a new retry time) per call of sse_next(); the parser
** never calls back into its caller. Any chunking of the same bytes gives the
** same items.
**
**   sse_parser p; sse_input in; sse_item it; sse_result r;
**   sse_init(&p, 16u << 20, 0);
**   sse_input_set(&in, buf, len);
**   while ((r = sse_next(&p, &in, &it)) == SSE_EVENT) use(it.type, it.data, it.id);
**   if (r != SSE_NEED_MORE) fail(r);
**   ... feed the next buffer the same way ...
**   sse_free(&p);
*/
#ifndef FETCHSTREAM_SSE_H
#define FETCHSTREAM_SSE_H

#include <stddef.h>

/* A borrowed run of bytes; not NUL-terminated. */
typedef struct sse_slice {
  const char *ptr;
  size_t len;
} sse_slice;

/* A growable byte buffer owned by the parser. */
typedef struct sse_buf {
  char *ptr;
  size_t len, cap;
} sse_buf;

/*
** The input being parsed. The caller owns the bytes: they must stay alive and
** unchanged until sse_next() returns SSE_NEED_MORE for this input, or until
** sse_release_input() is called, because the parser may point into them.
** lf and cr cache the next line terminators so each byte is scanned once.
*/
typedef struct sse_input {
  const char *pos, *end;
  const char *lf, *cr;
} sse_input;

typedef enum sse_result {
  SSE_NEED_MORE = 0, /* the input is used up: feed more bytes */
  SSE_EVENT,         /* item->type, data, id hold a dispatched event */
  SSE_COMMENT,       /* item->data holds a comment (only with SSE_WANT_COMMENTS) */
  SSE_RETRY,         /* item->retry holds a new reconnection time (SSE_WANT_RETRY) */
  SSE_TOO_LARGE,     /* a line or an event passed max_size: the parser has failed */
  SSE_NOMEM          /* out of memory: the parser has failed */
} sse_result;

/* Ask sse_next() to return comments and retry fields, not only events. */
#define SSE_WANT_COMMENTS 1u
#define SSE_WANT_RETRY 2u

/*
** One item out of the parser. The slices point into the parser or the input
** and are valid until the next call on the parser.
*/
typedef struct sse_item {
  sse_slice type; /* event type, "message" when none was given */
  sse_slice data; /* event data, or a comment's text */
  sse_slice id;   /* the last event ID in force at dispatch ("" if none) */
  long long retry;
} sse_item;

typedef struct sse_parser {
  size_t max_size;   /* the largest line, and the largest data of one event */
  unsigned flags;    /* SSE_WANT_* */
  sse_result failed; /* SSE_NEED_MORE while healthy, else the sticky failure */
  int bom_seen;      /* how many bytes of a leading BOM have been matched */
  int started;       /* past the point where a BOM may appear */
  int cr_pending;    /* the last input ended in CR: skip one LF that follows */
  int has_data;      /* the data buffer is not empty (it may hold "") */
  int id_changed;    /* the id buffer changed since the last blank line */
  sse_slice data_ref; /* the data, still in the input, when not yet copied */
  sse_buf line;      /* a line carried over from an earlier input */
  sse_buf data;      /* data lines joined by LF (without the final LF) */
  sse_buf type;      /* event type buffer */
  sse_buf id_buf;    /* last event ID buffer, set by id fields */
  sse_buf last_id;   /* last event ID string, set from id_buf at a blank line */
  long long retry;   /* last valid retry, or -1 */
} sse_parser;

void sse_init(sse_parser *p, size_t max_size, unsigned flags);
void sse_reset(sse_parser *p); /* a new stream: keeps max_size, flags, memory */
void sse_free(sse_parser *p);  /* frees the buffers; sse_init again to reuse */

/* Set the last event ID (string and buffer), as a reconnecting client
** starts with the ID it sent. Returns SSE_NOMEM on failure. */
sse_result sse_set_last_id(sse_parser *p, const char *id, size_t len);

void sse_input_set(sse_input *in, const char *buf, size_t len);

/*
** Parse from in->pos up to the next item, or to the end of the input.
** Returns what it found (see sse_result); after SSE_TOO_LARGE or SSE_NOMEM
** every call returns the same until sse_reset().
*/
sse_result sse_next(sse_parser *p, sse_input *in, sse_item *item);

/*
** The caller is about to drop the current input before sse_next() used it up:
** copy whatever the parser still points at. Returns SSE_NOMEM on failure.
*/
sse_result sse_release_input(sse_parser *p);

#endif
