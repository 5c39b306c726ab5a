/*
** decode.h — content decoding of one response body (gzip, deflate, br,
** zstd, stacked as Content-Encoding lists them), run by the caller a piece
** at a time. Plain C over zlib, libbrotlidec and libzstd: no Lua, no curl.
**
** Why not curl's decoder: after a write callback returns
** CURL_WRITEFUNC_PAUSE, libcurl 7.88 goes on decoding the compressed bytes
** it holds and keeps all of their output (up to 64 MiB per pause, then
** "Out of memory"), so back-pressure stops at the compressed side. Here the
** caller asks for at most `cap` bytes of output at a time and stops asking
** when its queue is full; the compressed input it has not handed over yet is
** small (one network read).
**
** Use: fs_decode_header() for each Content-Encoding value of the response;
** fs_decode_run() with body bytes; fs_decode_complete() once the body has
** ended; fs_decode_free(). A decode that failed stays failed, with
** `error` saying why ("the response body's gzip data is corrupt (...)").
*/
#ifndef FETCHSTREAM_DECODE_H
#define FETCHSTREAM_DECODE_H

#include <stddef.h>

#define FS_DECODE_MAX 5 /* codings per response: curl rejects more */

typedef enum fs_coding {
  FS_CODING_GZIP = 1, /* gzip, x-gzip: one or more gzip members */
  FS_CODING_DEFLATE,  /* deflate: zlib format, or raw deflate as some servers send */
  FS_CODING_BR,       /* brotli, window up to 16 MiB (the format's limit) */
  FS_CODING_ZSTD      /* zstd frames, window up to 8 MiB (RFC 9659) */
} fs_coding;

struct fs_stage;

typedef struct fs_decode {
  int count;                          /* codings to undo; 0: the body is as sent */
  unsigned char coding[FS_DECODE_MAX];/* fs_coding, in the order they were applied */
  int unknown;                        /* a coding we cannot undo was listed */
  struct fs_stage *stages;            /* count stages, in decoding order, once started */
  int failed;                         /* an error stopped the decoding: see error */
  char error[256];
} fs_decode;

/* Forget every coding and state: a new response begins. */
void fs_decode_reset(fs_decode *d);
/* Take one Content-Encoding header value (a comma-separated list, as curl
** parses it). "identity" adds nothing; an unknown name sets d->unknown and
** error (the body then fails at its first byte, as curl does). */
void fs_decode_header(fs_decode *d, const char *value, size_t len);
/* Whether the body needs decoding or refusing (a coding was listed). */
int fs_decode_active(const fs_decode *d);
/*
** Decode body bytes: consume from *in (*in and *in_len advance) and write
** at most cap bytes to out. Returns the bytes written; fewer than cap means
** that all of *in was consumed and the decoders have nothing more to give
** without more input, or that decoding failed (d->failed, d->error).
*/
size_t fs_decode_run(fs_decode *d, const char **in, size_t *in_len, char *out, size_t cap);
/* Once the body has ended and fs_decode_run() gave less than cap: 1 when
** every coding's data ended properly (or there was no body), else 0 with
** d->failed and d->error set. */
int fs_decode_complete(fs_decode *d);
/* Free the decoders' memory. Idempotent; the codings stay listed. */
void fs_decode_free(fs_decode *d);

#endif
