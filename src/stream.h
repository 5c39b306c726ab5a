/*
** stream.h — one HTTP transfer: a curl easy handle, the response headers,
** and a bounded queue of body bytes. Plain C over libcurl, no Lua.
**
** curl's callbacks only copy bytes: headers into header_lines, body into the
** queue. When the queue is over its bound the write callback pauses the
** transfer; fs_stream_consume() resumes it once the reader has drained it.
**
** A compressed body (accept_encoding) is decoded here, not by curl (see
** decode.h): the write callback decodes only while the queue has room and
** keeps the rest of that write's compressed bytes back ("backlog"); reading
** decodes more, and curl is resumed once the backlog is gone.
*/
#ifndef FETCHSTREAM_STREAM_H
#define FETCHSTREAM_STREAM_H

#include <curl/curl.h>
#include <stddef.h>

#include "decode.h"
#include "sse.h"

struct fs_client;

/* A block of body bytes in the queue. */
typedef struct fs_chunk {
  struct fs_chunk *next;
  size_t len, off; /* bytes held, bytes already read */
  char data[];
} fs_chunk;

/* How a transfer ended. */
typedef enum fs_end {
  FS_RUNNING = 0,
  FS_END_OK,                 /* the server ended the response */
  FS_END_CURL,               /* curl failed: see code and errbuf */
  FS_END_TIMEOUT_FIRST_BYTE, /* first_byte_timeout passed */
  FS_END_TIMEOUT_IDLE,       /* idle_timeout passed */
  FS_END_TIMEOUT_TOTAL,      /* timeout passed */
  FS_END_ABORTED             /* fs_stream_abort() */
} fs_end;

/* How the reader takes the body out of the queue. */
typedef enum fs_mode {
  FS_MODE_RAW = 0, /* bytes as they came (fs_stream_peek/consume) */
  FS_MODE_EVENTS,  /* SSE items, parsed where the bytes lie (fs_stream_next_event) */
  FS_MODE_LINES    /* LF or CRLF lines (fs_stream_next_line) */
} fs_mode;

/* What fs_stream_next_event / fs_stream_next_line found. */
typedef enum fs_item {
  FS_ITEM_NONE = 0,  /* nothing more in the queue now */
  FS_ITEM_EVENT,     /* an event: type, data, id */
  FS_ITEM_RETRY,     /* a retry field: retry */
  FS_ITEM_COMMENT,   /* a comment: data (only when asked for) */
  FS_ITEM_BYTES,     /* the bytes of a chunk, before its events (when asked for) */
  FS_ITEM_LINE,      /* a line: data, without its LF or CRLF */
  FS_ITEM_TOO_LARGE, /* an event or a line over max_size: the reader has failed */
  FS_ITEM_NOMEM      /* out of memory */
} fs_item;

/* What to send. Strings must outlive the transfer (the binding keeps them). */
typedef struct fs_request {
  const char *url;
  const char *method;      /* "GET", "POST", ... */
  const char *body;        /* NULL for none */
  size_t body_len;
  struct curl_slist *headers; /* taken over by the stream */
  const char *user_agent, *proxy, *ca_file;
  long connect_timeout_ms, first_byte_timeout_ms, idle_timeout_ms, total_timeout_ms;
  long max_redirects;      /* 0: do not follow */
  long http_version;       /* CURL_HTTP_VERSION_* */
  int insecure;            /* skip TLS verification */
  int accept_encoding;     /* ask for and decode gzip/br/zstd */
  size_t queue_limit;      /* pause the transfer past this many queued bytes */
} fs_request;

typedef struct fs_stream {
  CURL *easy;
  struct curl_slist *headers;
  /* the client: set from fs_client_add until the stream is freed */
  struct fs_client *client;
  int attached;                       /* on the client's multi handle (running) */
  struct fs_stream *prev, *next;      /* the client's list of attached streams */
  int heap_index;                     /* place in the client's deadline heap, -1: none */
  double heap_at;                     /* the deadline it is filed under */
  int ready;                          /* on the client's ready list */
  struct fs_stream *ready_prev, *ready_next;
  double wake_at;                     /* a wake-up the owner asked for (reconnect), 0: none */
  /* response */
  long status;                        /* final status, once headers_done */
  int headers_done;                   /* the final response's headers are in */
  int location_seen;                  /* this response carries a Location */
  int block_complete;                 /* the last header block seen ended with its blank line */
  long max_redirects;
  char *header_lines;                 /* "Name: value\n"... of the last response */
  size_t header_len, header_cap;
  /* body queue */
  fs_chunk *head, *tail;
  size_t queued, queue_limit;
  int paused;                         /* the write callback paused the transfer */
  /* content decoding: set when accept_encoding, curl then hands over the body as sent */
  int decoding;
  fs_decode dec;                      /* the codings of the final response */
  char *scratch;                      /* decoded bytes on their way to the queue */
  int backlog;                        /* the queue filled before the decoder gave all it could */
  char *held;                         /* undecoded body bytes of the backlog */
  size_t held_off, held_len, held_cap;
  /* the reader: the parser or line splitter that owns the queue's bytes */
  fs_mode mode;
  int want_bytes;                     /* events mode: each chunk's bytes first (onchunk) */
  sse_parser parser;                  /* events mode */
  sse_input in;                       /* events mode: the head chunk being parsed */
  size_t in_len;                      /* its length, consumed once used up */
  int in_active, bytes_given;
  sse_buf line;                       /* lines mode: a line cut across chunks */
  size_t line_consume;                /* lines mode: head bytes to consume at the next call */
  size_t max_size;                    /* the largest event or line */
  /* timing: milliseconds on the monotonic clock */
  double t_start, t_first_byte, t_last_byte, t_headers;
  long first_byte_timeout_ms, idle_timeout_ms, total_timeout_ms;
  /* outcome */
  fs_end end;
  CURLcode code;
  char errbuf[CURL_ERROR_SIZE];       /* curl's message, or ours (see fs_stream_done) */
  CURLcode fail_code;                 /* set when we stopped the transfer: our reason */
  char fail_msg[CURL_ERROR_SIZE];
  size_t request_bytes;               /* URL and header lines, to explain curl's request limit */
} fs_stream;

/* Create the easy handle. Returns 0 on success, -1 when curl cannot. */
int fs_stream_init(fs_stream *s);
/* Set every option from req. Returns CURLE_OK or the failing option's code;
** errbuf then says which. */
CURLcode fs_stream_prepare(fs_stream *s, fs_request *req);
/* The unread bytes at the head of the queue; 0 when it is empty. */
size_t fs_stream_peek(fs_stream *s, const char **bytes);
/* Mark n bytes of the head read (n <= what peek gave); resumes a paused
** transfer once the queue has drained to half its bound. */
void fs_stream_consume(fs_stream *s, size_t n);
/* curl has finished the transfer with code: set end, code and errbuf to
** what really happened (called by the client, outside curl's callbacks). */
void fs_stream_done(fs_stream *s, CURLcode code);
/* Read the body as `mode` from now on (before the first read): events with
** the parser's flags (SSE_WANT_*) and the last event ID it starts with, or
** lines; both bounded by max_size. Returns 0 when out of memory. */
int fs_stream_set_mode(fs_stream *s, fs_mode mode, size_t max_size, unsigned flags,
                       int want_bytes, const char *last_id, size_t last_id_len);
/* The next item of the queue in events mode; it->... point into the queue
** or the parser and stay valid until the next call on the stream. */
fs_item fs_stream_next_event(fs_stream *s, sse_item *it);
/* The next line in lines mode (*line valid until the next call). A last
** line without LF comes once the transfer has ended, as it is. */
fs_item fs_stream_next_line(fs_stream *s, sse_slice *line);
/* Whether the reader has bytes it has not handed out yet. */
int fs_stream_has_bytes(const fs_stream *s);
/* Whether the transfer waits for the reader (paused or with a backlog): its
** silence is then ours, not the server's. */
int fs_stream_held_back(const fs_stream *s);
/* Stop the transfer now (detach it from its client); end = FS_END_ABORTED
** unless it had already ended. */
void fs_stream_abort(fs_stream *s);
/* Detach, clean up the easy handle, free everything. Idempotent. */
void fs_stream_free(fs_stream *s);
/* The monotonic clock, in milliseconds. */
double fs_now_ms(void);
/* curl's symbolic name for a code, e.g. "COULDNT_CONNECT". */
const char *fs_curl_code_name(CURLcode code);

#endif
