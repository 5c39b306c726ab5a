/*
** decode.c — content decoding. See decode.h.
**
** The codings form a pipeline, in decoding order (the last one listed by
** Content-Encoding is undone first). Output is pulled: fs_decode_run()
** asks the last stage for at most cap bytes; a stage whose input buffer is
** empty asks the stage before it to refill it (16 KiB), and the first stage
** reads the caller's bytes. So no stage ever produces more than the room it
** was given, and nothing grows with the compression ratio.
**
** Invariants: a stage's buffer holds output the next stage has not taken
** (off <= len <= STAGE_BUF); a failed decode never runs again.
**
** Library quirks:
** - zlib: "deflate" is meant to be the zlib format, but some servers send
**   raw deflate. Like curl, a zlib header that fails to parse in the first
**   two bytes switches to raw deflate, replaying those two bytes.
** - gzip may be several members end to end (RFC 1952): after one ends, more
**   input starts another.
** - brotli has one stream per body: bytes after its end are an error.
** - zstd: frames follow each other freely. ZSTD_decompressStream() returns
**   0 exactly when a frame is complete and flushed. Windows are capped at
**   8 MiB, the limit of the "zstd" content coding (RFC 9659); libzstd's own
**   default (128 MiB) would break our memory bound.
*/
#define _POSIX_C_SOURCE 200809L /* strncasecmp */
#include "decode.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ZLIB_CONST /* next_in points to const bytes */
#include <brotli/decode.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#define STAGE_BUF (16 * 1024)
#define ZSTD_WINDOW_LOG_MAX 23 /* 8 MiB */

enum { ZLIB_HEADER, ZLIB_RAW }; /* deflate: which format */

typedef struct fs_stage {
  fs_coding coding;
  int ready;          /* the library state below is initialised */
  int began;          /* input arrived */
  int ended;          /* the data ended properly (so far: gzip and zstd may go on) */
  int raw;            /* deflate: ZLIB_HEADER or ZLIB_RAW */
  z_stream z;
  BrotliDecoderState *br;
  ZSTD_DStream *zs;
  unsigned char head[2]; /* deflate: the first two bytes, for the raw replay */
  size_t head_len;
  size_t skipped;     /* raw deflate: trailing bytes ignored (curl allows 4) */
  unsigned char *buf; /* output not yet taken by the next stage */
  size_t len, off;
} fs_stage;

static const char *coding_name(int c) {
  switch (c) {
    case FS_CODING_GZIP: return "gzip";
    case FS_CODING_DEFLATE: return "deflate";
    case FS_CODING_BR: return "br";
    case FS_CODING_ZSTD: return "zstd";
    default: return "?";
  }
}

static int fail(fs_decode *d, const char *fmt, ...) {
  if (!d->failed) {
    va_list ap;
    d->failed = 1;
    va_start(ap, fmt);
    vsnprintf(d->error, sizeof d->error, fmt, ap);
    va_end(ap);
  }
  return -1;
}

static int corrupt(fs_decode *d, const fs_stage *st, const char *detail) {
  return fail(d, "the response body's %s data is corrupt (%s)", coding_name(st->coding),
              detail && *detail ? detail : "no detail");
}

static int out_of_memory(fs_decode *d, const fs_stage *st) {
  return fail(d, "out of memory decoding the response body's %s data", coding_name(st->coding));
}

/* ----------------------------------------------------------- the codings */

void fs_decode_reset(fs_decode *d) {
  fs_decode_free(d);
  memset(d, 0, sizeof *d);
}

int fs_decode_active(const fs_decode *d) {
  return d->count > 0 || d->unknown;
}

void fs_decode_header(fs_decode *d, const char *value, size_t len) {
  size_t i = 0;
  while (i < len) {
    size_t start, n = 0;
    int c = 0;
    while (i < len && (value[i] == ' ' || value[i] == '\t' || value[i] == ',')) i++;
    start = i;
    while (i < len && value[i] != ',') { /* trailing blanks do not count */
      if (value[i] != ' ' && value[i] != '\t') n = i - start + 1;
      i++;
    }
    if (n == 0) continue;
#define IS(lit) (n == sizeof lit - 1 && strncasecmp(value + start, lit, n) == 0)
    if (IS("identity") || IS("none")) continue;
    if (IS("gzip") || IS("x-gzip")) c = FS_CODING_GZIP;
    else if (IS("deflate")) c = FS_CODING_DEFLATE;
    else if (IS("br")) c = FS_CODING_BR;
    else if (IS("zstd")) c = FS_CODING_ZSTD;
#undef IS
    if (c == 0 || d->count == FS_DECODE_MAX) {
      if (!d->unknown) {
        d->unknown = 1;
        if (c == 0)
          snprintf(d->error, sizeof d->error, "unsupported content-encoding \"%.*s\" "
                   "(fetchstream decodes gzip, deflate, br and zstd)", n > 64 ? 64 : (int)n, value + start);
        else
          snprintf(d->error, sizeof d->error, "more than %d content-encodings", FS_DECODE_MAX);
      }
      continue;
    }
    d->coding[d->count++] = (unsigned char)c;
  }
}

/* ----------------------------------------------------------- the stages */

static int stage_init(fs_decode *d, fs_stage *st) {
  int rc = Z_OK;
  switch (st->coding) {
    case FS_CODING_GZIP: rc = inflateInit2(&st->z, 16 + MAX_WBITS); break;
    case FS_CODING_DEFLATE: rc = inflateInit(&st->z); break;
    case FS_CODING_BR:
      st->br = BrotliDecoderCreateInstance(NULL, NULL, NULL);
      if (!st->br) return out_of_memory(d, st);
      break;
    case FS_CODING_ZSTD:
      st->zs = ZSTD_createDStream();
      if (!st->zs) return out_of_memory(d, st);
      if (ZSTD_isError(ZSTD_DCtx_setParameter(st->zs, ZSTD_d_windowLogMax, ZSTD_WINDOW_LOG_MAX)))
        return fail(d, "cannot set up the %s decoder", coding_name(st->coding));
      break;
  }
  if (rc != Z_OK) return out_of_memory(d, st);
  st->ready = 1;
  return 0;
}

static void stage_free(fs_stage *st) {
  if (st->ready) {
    if (st->coding == FS_CODING_GZIP || st->coding == FS_CODING_DEFLATE) inflateEnd(&st->z);
    if (st->br) BrotliDecoderDestroyInstance(st->br);
    if (st->zs) ZSTD_freeDStream(st->zs);
  }
  st->br = NULL;
  st->zs = NULL;
  st->ready = 0;
  free(st->buf);
  st->buf = NULL;
}

static int start(fs_decode *d) {
  int i;
  if (d->unknown) {
    d->failed = 1; /* d->error names the coding */
    return -1;
  }
  d->stages = calloc((size_t)d->count, sizeof *d->stages);
  if (!d->stages) return fail(d, "out of memory decoding the response body");
  for (i = 0; i < d->count; i++) {
    fs_stage *st = &d->stages[i];
    st->coding = (fs_coding)d->coding[d->count - 1 - i];
    if (i < d->count - 1) {
      st->buf = malloc(STAGE_BUF);
      if (!st->buf) return out_of_memory(d, st);
    }
    if (stage_init(d, st) != 0) return -1;
  }
  return 0;
}

/* zlib: gzip and deflate. */
static int step_zlib(fs_decode *d, fs_stage *st, const unsigned char *src, size_t n,
                     size_t *used, unsigned char *dst, size_t cap, size_t *made) {
  int rc;
  if (st->ended) {
    if (n == 0) return 0;
    if (st->coding == FS_CODING_GZIP) { /* another member */
      if (inflateReset(&st->z) != Z_OK) return corrupt(d, st, "cannot restart");
      st->ended = 0;
    } else if (st->raw && st->skipped + n <= 4) { /* stray trailer bytes, as curl allows */
      st->skipped += n;
      *used = n;
      return 0;
    } else {
      return corrupt(d, st, "data after its end");
    }
  }
  while (st->head_len < 2 && st->head_len < n) { /* remembered, not consumed */
    st->head[st->head_len] = src[st->head_len];
    st->head_len++;
  }
  if (n > (1u << 30)) n = 1u << 30;
  st->z.next_in = src;
  st->z.avail_in = (uInt)n;
  st->z.next_out = dst;
  st->z.avail_out = (uInt)cap;
  rc = inflate(&st->z, Z_NO_FLUSH);
  *used = n - st->z.avail_in;
  *made = cap - st->z.avail_out;
  if (rc == Z_DATA_ERROR && st->coding == FS_CODING_DEFLATE && !st->raw &&
      st->z.total_out == 0 && st->z.total_in <= st->head_len) {
    /* no zlib header: raw deflate. Replay what the header parse ate. */
    uLong ate = st->z.total_in;
    inflateEnd(&st->z);
    st->ready = 0;
    memset(&st->z, 0, sizeof st->z);
    if (inflateInit2(&st->z, -MAX_WBITS) != Z_OK) return out_of_memory(d, st);
    st->ready = 1;
    st->raw = ZLIB_RAW;
    st->z.next_in = st->head;
    st->z.avail_in = (uInt)ate;
    st->z.next_out = dst;
    st->z.avail_out = (uInt)cap;
    rc = inflate(&st->z, Z_NO_FLUSH);
    *made = cap - st->z.avail_out;
    if (st->z.avail_in != 0 && rc == Z_OK) rc = Z_DATA_ERROR;
  }
  switch (rc) {
    case Z_OK: case Z_BUF_ERROR: return 0;
    case Z_STREAM_END: st->ended = 1; return 0;
    case Z_MEM_ERROR: return out_of_memory(d, st);
    case Z_NEED_DICT: return corrupt(d, st, "it needs a preset dictionary");
    default: return corrupt(d, st, st->z.msg);
  }
}

static int step_br(fs_decode *d, fs_stage *st, const unsigned char *src, size_t n,
                   size_t *used, unsigned char *dst, size_t cap, size_t *made) {
  size_t avail_in = n, avail_out = cap;
  const uint8_t *next_in = src;
  uint8_t *next_out = dst;
  BrotliDecoderResult r;
  if (st->ended) return n == 0 ? 0 : corrupt(d, st, "data after its end");
  r = BrotliDecoderDecompressStream(st->br, &avail_in, &next_in, &avail_out, &next_out, NULL);
  *used = n - avail_in;
  *made = cap - avail_out;
  if (r == BROTLI_DECODER_RESULT_ERROR) {
    BrotliDecoderErrorCode e = BrotliDecoderGetErrorCode(st->br);
    const char *what = BrotliDecoderErrorString(e);
    if (e <= BROTLI_DECODER_ERROR_ALLOC_CONTEXT_MODES && e >= BROTLI_DECODER_ERROR_ALLOC_BLOCK_TYPE_TREES)
      return out_of_memory(d, st);
    char detail[64];
    if (strncmp(what, "_ERROR_", 7) == 0) what += 7; /* "_ERROR_FORMAT_PADDING_1" */
    snprintf(detail, sizeof detail, "brotli: %s", what);
    return corrupt(d, st, detail);
  }
  if (r == BROTLI_DECODER_RESULT_SUCCESS) {
    st->ended = 1;
    if (avail_in) return corrupt(d, st, "data after its end");
  }
  return 0;
}

static int step_zstd(fs_decode *d, fs_stage *st, const unsigned char *src, size_t n,
                     size_t *used, unsigned char *dst, size_t cap, size_t *made) {
  ZSTD_inBuffer in;
  ZSTD_outBuffer out;
  size_t r;
  if (st->ended && n == 0) return 0; /* a finished frame has nothing to flush */
  in.src = src;
  in.size = n;
  in.pos = 0;
  out.dst = dst;
  out.size = cap;
  out.pos = 0;
  r = ZSTD_decompressStream(st->zs, &out, &in);
  *used = in.pos;
  *made = out.pos;
  if (ZSTD_isError(r)) {
    switch (ZSTD_getErrorCode(r)) {
      case ZSTD_error_memory_allocation: return out_of_memory(d, st);
      case ZSTD_error_frameParameter_windowTooLarge:
        return fail(d, "the response body's zstd data needs a window over 8 MiB, the limit of "
                       "the zstd content coding (RFC 9659)");
      default: return corrupt(d, st, ZSTD_getErrorName(r));
    }
  }
  st->ended = r == 0;
  return 0;
}

static int step(fs_decode *d, fs_stage *st, const unsigned char *src, size_t n,
                size_t *used, unsigned char *dst, size_t cap, size_t *made) {
  *used = *made = 0;
  if (n) st->began = 1;
  switch (st->coding) {
    case FS_CODING_GZIP: case FS_CODING_DEFLATE:
      return step_zlib(d, st, src, n, used, dst, cap, made);
    case FS_CODING_BR: return step_br(d, st, src, n, used, dst, cap, made);
    case FS_CODING_ZSTD: return step_zstd(d, st, src, n, used, dst, cap, made);
  }
  return -1;
}

/* Stage k's output, at most cap bytes into out, pulling its input from
** stage k - 1 (or the caller's bytes for k = 0). Stops when out is full,
** when no input is left and nothing more comes out, or on failure. */
static size_t run(fs_decode *d, int k, const unsigned char **in, size_t *in_len,
                  unsigned char *out, size_t cap) {
  fs_stage *st = &d->stages[k];
  size_t produced = 0;
  while (produced < cap && !d->failed) {
    const unsigned char *src;
    size_t n, used, made;
    if (k == 0) {
      src = *in;
      n = *in_len;
    } else {
      fs_stage *prev = &d->stages[k - 1];
      if (prev->off == prev->len) {
        prev->off = 0;
        prev->len = run(d, k - 1, in, in_len, prev->buf, STAGE_BUF);
        if (d->failed) break;
      }
      src = prev->buf + prev->off;
      n = prev->len - prev->off;
    }
    if (step(d, st, src, n, &used, out + produced, cap - produced, &made) != 0) break;
    if (k == 0) {
      *in += used;
      *in_len -= used;
    } else {
      d->stages[k - 1].off += used;
    }
    produced += made;
    if (used == 0 && made == 0) {
      /* A decoder that takes nothing from the input it has would hold the
      ** transfer back for ever. */
      if (n > 0) corrupt(d, st, "the decoder stopped");
      break;
    }
  }
  return produced;
}

size_t fs_decode_run(fs_decode *d, const char **in, size_t *in_len, char *out, size_t cap) {
  const unsigned char *p = (const unsigned char *)*in;
  size_t made;
  if (d->failed) return 0;
  if (!d->stages && start(d) != 0) return 0;
  made = run(d, d->count - 1, &p, in_len, (unsigned char *)out, cap);
  *in = (const char *)p;
  return made;
}

int fs_decode_complete(fs_decode *d) {
  int i;
  if (d->failed) return 0;
  if (!d->stages) return 1; /* no body at all */
  for (i = 0; i < d->count; i++) {
    const fs_stage *st = &d->stages[i];
    if (st->began && !st->ended) {
      fail(d, "the response body's %s data is truncated: the body ended before the end "
              "of the compressed data", coding_name(st->coding));
      return 0;
    }
  }
  return 1;
}

void fs_decode_free(fs_decode *d) {
  int i;
  if (!d->stages) return;
  for (i = 0; i < d->count; i++) stage_free(&d->stages[i]);
  free(d->stages);
  d->stages = NULL;
}
