/*
** sse.c — the Server-Sent Events parser. See sse.h for the contract.
**
** Invariants:
** - A line that arrives whole inside one input is parsed where it lies; only a
**   line split across inputs is gathered in p->line.
** - The first data line of an event is only referenced (p->data_ref) while
**   its input is alive; it is copied when a second data line arrives or the
**   input ends. Most events (one `data:` line, then a blank line, in one
**   input) are therefore never copied by the parser.
*/
#include "sse.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char BOM[3] = {'\xEF', '\xBB', '\xBF'};

/* Result of handling one line inside the parser: either an item to return,
** or CONTINUE to go on with the next line. */
#define CONTINUE ((sse_result)-1)

/* ---------------------------------------------------------------- buffers */

static int buf_reserve(sse_buf *b, size_t need) {
  size_t cap;
  char *ptr;
  if (need <= b->cap) return 1;
  cap = b->cap ? b->cap : 64;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  ptr = realloc(b->ptr, cap);
  if (!ptr) return 0;
  b->ptr = ptr;
  b->cap = cap;
  return 1;
}

static int buf_append(sse_buf *b, const char *s, size_t n) {
  if (!buf_reserve(b, b->len + n)) return 0;
  if (n) memcpy(b->ptr + b->len, s, n);
  b->len += n;
  return 1;
}

static int buf_set(sse_buf *b, const char *s, size_t n) {
  b->len = 0;
  return buf_append(b, s, n);
}

static void buf_free(sse_buf *b) {
  free(b->ptr);
  b->ptr = NULL;
  b->len = b->cap = 0;
}

static sse_slice buf_slice(const sse_buf *b) {
  sse_slice s;
  s.ptr = b->len ? b->ptr : "";
  s.len = b->len;
  return s;
}

/* ------------------------------------------------------------- lifecycle */

void sse_init(sse_parser *p, size_t max_size, unsigned flags) {
  memset(p, 0, sizeof *p);
  p->max_size = max_size;
  p->flags = flags;
  p->retry = -1;
}

void sse_reset(sse_parser *p) {
  p->failed = SSE_NEED_MORE;
  p->bom_seen = p->started = p->cr_pending = 0;
  p->has_data = p->id_changed = 0;
  p->data_ref.ptr = NULL;
  p->data_ref.len = 0;
  p->line.len = p->data.len = p->type.len = 0;
  p->id_buf.len = p->last_id.len = 0;
  p->retry = -1;
}

void sse_free(sse_parser *p) {
  buf_free(&p->line);
  buf_free(&p->data);
  buf_free(&p->type);
  buf_free(&p->id_buf);
  buf_free(&p->last_id);
  p->data_ref.ptr = NULL;
  p->has_data = 0;
}

sse_result sse_set_last_id(sse_parser *p, const char *id, size_t len) {
  if (!buf_set(&p->id_buf, id, len) || !buf_set(&p->last_id, id, len))
    return SSE_NOMEM;
  p->id_changed = 0;
  return SSE_NEED_MORE;
}

void sse_input_set(sse_input *in, const char *buf, size_t len) {
  in->pos = buf;
  in->end = buf + len;
  in->lf = in->cr = NULL; /* not searched yet */
}

static sse_result fail(sse_parser *p, sse_result why) {
  p->failed = why;
  return why;
}

sse_result sse_release_input(sse_parser *p) {
  if (p->data_ref.ptr) {
    if (!buf_set(&p->data, p->data_ref.ptr, p->data_ref.len))
      return fail(p, SSE_NOMEM);
    p->data_ref.ptr = NULL;
  }
  return SSE_NEED_MORE;
}

/* ---------------------------------------------------------------- fields */

static sse_result dispatch(sse_parser *p, sse_item *item) {
  if (p->id_changed) { /* the last event ID string follows its buffer */
    if (!buf_set(&p->last_id, p->id_buf.ptr, p->id_buf.len))
      return fail(p, SSE_NOMEM);
    p->id_changed = 0;
  }
  if (!p->has_data) { /* nothing to dispatch; the event type is reset */
    p->type.len = 0;
    return CONTINUE;
  }
  if (p->data_ref.ptr) {
    item->data = p->data_ref;
    p->data_ref.ptr = NULL;
  } else {
    item->data = buf_slice(&p->data);
  }
  if (p->type.len) {
    item->type = buf_slice(&p->type);
  } else {
    item->type.ptr = "message";
    item->type.len = 7;
  }
  item->id = buf_slice(&p->last_id);
  /* The slices stay valid until the next call: clearing a length frees
  ** nothing, and nothing is written before the caller comes back. */
  p->has_data = 0;
  p->data.len = p->type.len = 0;
  return SSE_EVENT;
}

/* `data`: append the value, joined to earlier lines by LF. `borrowed` says
** the value lies in the caller's input, so it may be referenced, not copied. */
static sse_result field_data(sse_parser *p, const char *v, size_t n,
                             int borrowed) {
  if (!p->has_data) {
    if (n > p->max_size) return fail(p, SSE_TOO_LARGE);
    p->has_data = 1;
    if (borrowed) {
      p->data_ref.ptr = v;
      p->data_ref.len = n;
      return CONTINUE;
    }
    return buf_set(&p->data, v, n) ? CONTINUE : fail(p, SSE_NOMEM);
  }
  if (sse_release_input(p) != SSE_NEED_MORE) return SSE_NOMEM;
  /* data.len <= max_size always holds, so neither side can wrap. */
  if (n > p->max_size || p->data.len + 1 > p->max_size - n)
    return fail(p, SSE_TOO_LARGE);
  if (!buf_reserve(&p->data, p->data.len + 1 + n)) return fail(p, SSE_NOMEM);
  p->data.ptr[p->data.len++] = '\n';
  return buf_append(&p->data, v, n) ? CONTINUE : fail(p, SSE_NOMEM);
}

/* `retry`: only a non-empty run of ASCII digits counts; it saturates. */
static sse_result field_retry(sse_parser *p, const char *v, size_t n,
                              sse_item *item) {
  long long ms = 0;
  size_t i;
  if (n == 0) return CONTINUE;
  for (i = 0; i < n; i++) {
    int d = (unsigned char)v[i] - '0';
    if (d < 0 || d > 9) return CONTINUE;
    ms = ms > (LLONG_MAX - d) / 10 ? LLONG_MAX : ms * 10 + d;
  }
  p->retry = ms;
  if (!(p->flags & SSE_WANT_RETRY)) return CONTINUE;
  item->retry = ms;
  return SSE_RETRY;
}

/* Field names, told apart by length and first byte before any compare:
** this runs once per line. */
enum { F_OTHER, F_DATA, F_EVENT, F_ID, F_RETRY };

static int field_of(const char *name, size_t len) {
  switch (len) {
    case 2: return name[0] == 'i' && name[1] == 'd' ? F_ID : F_OTHER;
    case 4: return memcmp(name, "data", 4) == 0 ? F_DATA : F_OTHER;
    case 5:
      if (name[0] == 'e') return memcmp(name, "event", 5) == 0 ? F_EVENT : F_OTHER;
      if (name[0] == 'r') return memcmp(name, "retry", 5) == 0 ? F_RETRY : F_OTHER;
      return F_OTHER;
    default: return F_OTHER;
  }
}

/* One complete line, without its terminator. */
static sse_result process_line(sse_parser *p, const char *line, size_t len,
                               int borrowed, sse_item *item) {
  const char *name = line, *value, *colon;
  size_t name_len, value_len;
  if (len == 0) return dispatch(p, item);
  colon = memchr(line, ':', len);
  if (colon) {
    name_len = (size_t)(colon - line);
    value = colon + 1;
    value_len = len - name_len - 1;
    if (value_len && *value == ' ') value++, value_len--;
  } else {
    name_len = len;
    value = line + len;
    value_len = 0;
  }
  if (name_len == 0) { /* a comment */
    if (!(p->flags & SSE_WANT_COMMENTS)) return CONTINUE;
    item->data.ptr = value;
    item->data.len = value_len;
    return SSE_COMMENT;
  }
  switch (field_of(name, name_len)) {
    case F_DATA: return field_data(p, value, value_len, borrowed);
    case F_EVENT:
      return buf_set(&p->type, value, value_len) ? CONTINUE : fail(p, SSE_NOMEM);
    case F_ID:
      if (memchr(value, '\0', value_len)) return CONTINUE;
      if (!buf_set(&p->id_buf, value, value_len)) return fail(p, SSE_NOMEM);
      p->id_changed = 1;
      return CONTINUE;
    case F_RETRY: return field_retry(p, value, value_len, item);
    default: return CONTINUE; /* any other field is ignored */
  }
}

/* ------------------------------------------------------------- scanning */

/* The next CR or LF at or after in->pos, or NULL; each search is cached. */
static const char *next_eol(sse_input *in) {
  size_t left = (size_t)(in->end - in->pos);
  /* A blank line right here (the end of most events) needs no search. */
  if (left && *in->pos == '\n' && (!in->cr || in->cr >= in->pos)) {
    if (!in->cr) in->cr = memchr(in->pos, '\r', left);
    if (!in->cr) in->cr = in->end;
    if (in->cr > in->pos) return in->pos;
  }
  if (in->lf != in->end && (!in->lf || in->lf < in->pos)) {
    in->lf = memchr(in->pos, '\n', left);
    if (!in->lf) in->lf = in->end;
  }
  if (in->cr != in->end && (!in->cr || in->cr < in->pos)) {
    in->cr = memchr(in->pos, '\r', left);
    if (!in->cr) in->cr = in->end;
  }
  if (in->lf == in->end && in->cr == in->end) return NULL;
  return in->lf < in->cr ? in->lf : in->cr;
}

/* Match a leading BOM, byte by byte across inputs. Returns 0 when the input
** ran out before it could be decided. */
static int skip_bom(sse_parser *p, sse_input *in) {
  while (p->bom_seen < 3) {
    if (in->pos == in->end) return 0;
    if (*in->pos != BOM[p->bom_seen]) {
      /* Not a BOM: the bytes matched so far begin the first line. */
      if (!buf_set(&p->line, BOM, (size_t)p->bom_seen)) {
        fail(p, SSE_NOMEM);
        return 0;
      }
      break;
    }
    p->bom_seen++;
    in->pos++;
  }
  p->started = 1;
  return 1;
}

sse_result sse_next(sse_parser *p, sse_input *in, sse_item *item) {
  const size_t max_line = p->max_size;
  if (p->failed) return p->failed;
  if (!p->started && !skip_bom(p, in)) return p->failed;
  if (p->cr_pending && in->pos < in->end) {
    p->cr_pending = 0;
    if (*in->pos == '\n') in->pos++;
  }
  while (in->pos < in->end) {
    const char *eol = next_eol(in), *line = in->pos;
    size_t len;
    int borrowed = 1;
    sse_result r;
    if (!eol) { /* a partial line: keep it for the next input */
      len = (size_t)(in->end - in->pos);
      if (p->line.len + len > max_line) return fail(p, SSE_TOO_LARGE);
      if (!buf_append(&p->line, in->pos, len)) return fail(p, SSE_NOMEM);
      in->pos = in->end;
      break;
    }
    len = (size_t)(eol - line);
    if (p->line.len) { /* finish the line begun in an earlier input */
      if (p->line.len + len > max_line) return fail(p, SSE_TOO_LARGE);
      if (!buf_append(&p->line, line, len)) return fail(p, SSE_NOMEM);
      line = p->line.ptr;
      len = p->line.len;
      borrowed = 0;
      p->line.len = 0; /* its bytes stay readable until the next append */
    } else if (len > max_line) {
      return fail(p, SSE_TOO_LARGE);
    }
    in->pos = eol + 1;
    if (*eol == '\r') {
      if (in->pos == in->end) p->cr_pending = 1;
      else if (*in->pos == '\n') in->pos++;
    }
    r = process_line(p, line, len, borrowed, item);
    if (r != CONTINUE) return r;
  }
  return sse_release_input(p);
}
