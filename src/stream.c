/*
** stream.c — one HTTP transfer. See stream.h.
**
** libcurl quirks that shape this file:
** - The header callback sees the headers of every response of a transfer:
**   1xx interim responses and the 3xx responses of followed redirects too.
**   A response is the final one when its blank line arrives and it is
**   neither 1xx nor a redirect that curl is about to follow (3xx with a
**   Location while redirects are on).
** - Returning CURL_WRITEFUNC_PAUSE from the write callback leaves the bytes
**   with curl, which hands them over again after curl_easy_pause(CONT), and
**   may do so from inside that very call: the write callback is plain C, so
**   that is safe anywhere.
** - curl does not copy CURLOPT_POSTFIELDS: the body must outlive the transfer.
** - After CURL_WRITEFUNC_PAUSE, libcurl 7.88 keeps everything its content
**   decoder still produces (64 MiB per pause, then "Out of memory"): with
**   accept_encoding we turn its decoding off (HTTP_CONTENT_DECODING 0, while
**   ACCEPT_ENCODING still sends the header) and decode ourselves.
** - The connection may close inside the response headers: curl 7.88 then
**   returns CURLE_OK, as if an empty response had ended (fs_stream_done).
** - curl writes its error buffer once per transfer: a failure it recovered
**   from (a reused connection reset, then a retry) keeps its message there
**   and the real failure's is dropped. A new response clears ours.
** - curl's request buffer holds 1 MiB and a response header line 100 KiB;
**   past them it says "Out of memory" (fs_stream_done explains).
*/
#define _POSIX_C_SOURCE 200809L
#include "stream.h"
#include "client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SCRATCH (64 * 1024)          /* decoded bytes per step into the queue */
#define CURL_REQUEST_MAX (1024 * 1024) /* curl 7.88's request buffer */

double fs_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* ------------------------------------------------------------- callbacks */

/* Record why we stop the transfer (our reason wins over curl's code, which
** is then CURLE_WRITE_ERROR). Returns 0 for the callback to return. */
static size_t set_failure(fs_stream *s, CURLcode code, const char *msg) {
  if (!s->fail_code) {
    s->fail_code = code;
    snprintf(s->fail_msg, sizeof s->fail_msg, "%s", msg);
  }
  return 0;
}

static int append_header(fs_stream *s, const char *line, size_t n) {
  if (s->header_len + n + 1 > s->header_cap) {
    size_t cap = s->header_cap ? s->header_cap * 2 : 512;
    char *p;
    while (cap < s->header_len + n + 1) cap *= 2;
    p = realloc(s->header_lines, cap);
    if (!p) return 0;
    s->header_lines = p;
    s->header_cap = cap;
  }
  memcpy(s->header_lines + s->header_len, line, n);
  s->header_len += n;
  s->header_lines[s->header_len++] = '\n';
  return 1;
}

static size_t on_header(char *line, size_t size, size_t nitems, void *ud) {
  fs_stream *s = ud;
  size_t n = size * nitems, len = n;
  if (s->headers_done) return n; /* trailers of a chunked body: ignored */
  while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
  if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) { /* a new response */
    s->header_len = 0;
    s->location_seen = 0;
    s->block_complete = 0;
    fs_decode_reset(&s->dec);
    s->errbuf[0] = '\0'; /* an earlier, recovered failure is not this one's */
    return n;
  }
  if (len == 0) { /* end of this response's headers */
    long status = 0;
    s->block_complete = 1;
    curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status / 100 == 1) return n;
    if (status / 100 == 3 && s->location_seen && s->max_redirects > 0) return n;
    s->status = status;
    s->headers_done = 1;
    s->t_headers = fs_now_ms();
    if (s->client) { /* news for the reader; the idle timeout starts */
      fs_client_mark_ready(s->client, s);
      fs_client_schedule(s->client, s);
    }
    return n;
  }
  if (len >= 9 && strncasecmp(line, "location:", 9) == 0) s->location_seen = 1;
  if (s->decoding && len >= 17 && strncasecmp(line, "content-encoding:", 17) == 0)
    fs_decode_header(&s->dec, line + 17, len - 17);
  if (!append_header(s, line, len))
    return set_failure(s, CURLE_OUT_OF_MEMORY, "out of memory keeping the response headers");
  return n;
}

/* Add a copy of bytes to the queue. Returns 0 when out of memory. */
static int enqueue(fs_stream *s, const char *bytes, size_t n) {
  fs_chunk *c = malloc(sizeof *c + n);
  if (!c) return 0;
  c->next = NULL;
  c->len = n;
  c->off = 0;
  memcpy(c->data, bytes, n);
  if (s->tail) s->tail->next = c;
  else s->head = c;
  s->tail = c;
  s->queued += n;
  return 1;
}

/*
** Decode *in into the queue until the queue is full or the decoder has
** given all it can from *in (which advances). Returns 1 when it has, 0 when
** the queue filled first (input, or output inside the decoder, remains),
** -1 on failure (fail_code and fail_msg say why).
*/
static int decode_into_queue(fs_stream *s, const char **in, size_t *left) {
  if (!s->scratch && !(s->scratch = malloc(SCRATCH))) {
    set_failure(s, CURLE_OUT_OF_MEMORY, "out of memory decoding the response body");
    return -1;
  }
  while (s->queued < s->queue_limit) {
    size_t made = fs_decode_run(&s->dec, in, left, s->scratch, SCRATCH);
    if (made && !enqueue(s, s->scratch, made)) {
      set_failure(s, CURLE_OUT_OF_MEMORY, "out of memory queueing the response body");
      return -1;
    }
    if (s->dec.failed) {
      set_failure(s, CURLE_BAD_CONTENT_ENCODING, s->dec.error);
      return -1;
    }
    if (made < SCRATCH) return 1;
  }
  return 0;
}

/* Keep the undecoded rest of a write for later (at most one write's worth). */
static int hold(fs_stream *s, const char *bytes, size_t n) {
  if (n > s->held_cap) {
    char *p = realloc(s->held, n);
    if (!p) return 0;
    s->held = p;
    s->held_cap = n;
  }
  memcpy(s->held, bytes, n);
  s->held_off = 0;
  s->held_len = n;
  return 1;
}

static size_t on_write(char *bytes, size_t size, size_t nmemb, void *ud) {
  fs_stream *s = ud;
  size_t n = size * nmemb;
  double now;
  if (s->queued >= s->queue_limit || s->backlog) { /* back-pressure: let curl hold it */
    s->paused = 1;
    return CURL_WRITEFUNC_PAUSE;
  }
  now = fs_now_ms();
  if (s->t_first_byte == 0) s->t_first_byte = now;
  s->t_last_byte = now;
  if (!s->headers_done) { /* a body means the headers were final */
    curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &s->status);
    s->headers_done = 1;
    s->t_headers = now;
  }
  if (s->client) fs_client_mark_ready(s->client, s);
  if (s->decoding && fs_decode_active(&s->dec)) {
    const char *in = bytes;
    size_t left = n;
    int r = decode_into_queue(s, &in, &left);
    if (r < 0) return 0; /* fails the transfer with CURLE_WRITE_ERROR */
    if (r == 0) {
      s->backlog = 1;
      if (left && !hold(s, in, left))
        return set_failure(s, CURLE_OUT_OF_MEMORY, "out of memory holding the response body");
    }
    return n;
  }
  if (!enqueue(s, bytes, n))
    return set_failure(s, CURLE_OUT_OF_MEMORY, "out of memory queueing the response body");
  return n;
}

/* ------------------------------------------------------------- lifecycle */

int fs_stream_init(fs_stream *s) {
  memset(s, 0, sizeof *s);
  s->heap_index = -1;
  s->easy = curl_easy_init();
  return s->easy ? 0 : -1;
}

#define SET(opt, value)                                                   \
  do {                                                                    \
    CURLcode rc_ = curl_easy_setopt(e, opt, value);                       \
    if (rc_ != CURLE_OK) {                                                \
      snprintf(s->errbuf, sizeof s->errbuf, "cannot set " #opt ": %s",    \
               curl_easy_strerror(rc_));                                  \
      return rc_;                                                         \
    }                                                                     \
  } while (0)

CURLcode fs_stream_prepare(fs_stream *s, fs_request *req) {
  CURL *e = s->easy;
  s->headers = req->headers; /* ours now, freed with the stream */
  req->headers = NULL;
  s->queue_limit = req->queue_limit ? req->queue_limit : 1;
  s->max_redirects = req->max_redirects;
  s->first_byte_timeout_ms = req->first_byte_timeout_ms;
  s->idle_timeout_ms = req->idle_timeout_ms;
  s->total_timeout_ms = req->total_timeout_ms;
  s->decoding = req->accept_encoding;
  s->request_bytes = strlen(req->url);
  {
    const struct curl_slist *h;
    for (h = s->headers; h; h = h->next) s->request_bytes += strlen(h->data) + 2;
  }

  SET(CURLOPT_PRIVATE, s);
  SET(CURLOPT_ERRORBUFFER, s->errbuf);
  SET(CURLOPT_NOSIGNAL, 1L);
  SET(CURLOPT_URL, req->url);
  /* Only http and https, redirects included: no file://, no gopher://. */
  SET(CURLOPT_PROTOCOLS_STR, "http,https");
  SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  SET(CURLOPT_HEADERFUNCTION, on_header);
  SET(CURLOPT_HEADERDATA, s);
  SET(CURLOPT_WRITEFUNCTION, on_write);
  SET(CURLOPT_WRITEDATA, s);
  SET(CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L); /* a proxy's 200 is not ours */
  SET(CURLOPT_BUFFERSIZE, 64L * 1024);

  if (strcmp(req->method, "GET") == 0 && !req->body) {
    SET(CURLOPT_HTTPGET, 1L);
  } else if (strcmp(req->method, "HEAD") == 0) {
    SET(CURLOPT_NOBODY, 1L);
  } else {
    /* POST keeps curl's browser-like redirect handling (303 -> GET); any
    ** other method is sent as given. */
    if (strcmp(req->method, "POST") == 0) SET(CURLOPT_POST, 1L);
    else SET(CURLOPT_CUSTOMREQUEST, req->method);
    if (req->body || strcmp(req->method, "POST") == 0) {
      SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
      SET(CURLOPT_POSTFIELDS, req->body ? req->body : "");
    }
  }
  if (s->headers) SET(CURLOPT_HTTPHEADER, s->headers);
  if (req->user_agent) SET(CURLOPT_USERAGENT, req->user_agent);
  if (req->proxy) SET(CURLOPT_PROXY, req->proxy);
  if (req->ca_file) SET(CURLOPT_CAINFO, req->ca_file);
  if (req->connect_timeout_ms > 0)
    SET(CURLOPT_CONNECTTIMEOUT_MS, req->connect_timeout_ms);
  SET(CURLOPT_FOLLOWLOCATION, req->max_redirects > 0 ? 1L : 0L);
  SET(CURLOPT_MAXREDIRS, req->max_redirects);
  if (req->http_version) SET(CURLOPT_HTTP_VERSION, req->http_version);
  if (req->insecure) {
    SET(CURLOPT_SSL_VERIFYPEER, 0L);
    SET(CURLOPT_SSL_VERIFYHOST, 0L);
  }
  /* We decode what we ask for (decode.c); curl only sends the header. A
  ** user's own Accept-Encoding header replaces it, as for any header. */
  SET(CURLOPT_ACCEPT_ENCODING, req->accept_encoding ? "gzip, deflate, br, zstd" : NULL);
  SET(CURLOPT_HTTP_CONTENT_DECODING, 0L);
  return CURLE_OK;
}

size_t fs_stream_peek(fs_stream *s, const char **bytes) {
  if (!s->head) return 0;
  *bytes = s->head->data + s->head->off;
  return s->head->len - s->head->off;
}

/* The transfer ends here and now with our failure (the reader found it). */
static void end_now(fs_stream *s, CURLcode code) {
  if (s->client) fs_client_remove(s->client, s);
  if (s->end != FS_RUNNING && s->end != FS_END_OK) return; /* keep the first failure */
  s->end = FS_END_CURL;
  s->code = s->fail_code ? s->fail_code : code;
  if (s->fail_code) snprintf(s->errbuf, sizeof s->errbuf, "%s", s->fail_msg);
}

/* The body has ended and the decoders have given everything: was the
** compressed data whole? */
static void finish_decoding(fs_stream *s) {
  if (!s->decoding || !fs_decode_active(&s->dec) || fs_decode_complete(&s->dec)) return;
  set_failure(s, CURLE_BAD_CONTENT_ENCODING, s->dec.error);
  end_now(s, CURLE_BAD_CONTENT_ENCODING);
}

/* Decode more of the backlog into the queue. */
static void drain_backlog(fs_stream *s) {
  const char *in = s->held_len ? s->held + s->held_off : "";
  size_t left = s->held_len;
  int r = decode_into_queue(s, &in, &left);
  s->held_off = left ? (size_t)(in - s->held) : 0;
  s->held_len = left;
  if (r < 0) {
    end_now(s, CURLE_BAD_CONTENT_ENCODING);
  } else if (r == 1) {
    s->backlog = 0;
    s->t_last_byte = fs_now_ms(); /* our backlog is not the server's silence */
    if (s->end == FS_END_OK) finish_decoding(s);
  }
}

void fs_stream_consume(fs_stream *s, size_t n) {
  fs_chunk *c = s->head;
  int was_held = fs_stream_held_back(s);
  if (!c) return;
  c->off += n;
  s->queued -= n;
  if (c->off >= c->len) {
    s->head = c->next;
    if (!s->head) s->tail = NULL;
    free(c);
  }
  if (s->backlog && s->queued <= s->queue_limit / 2) drain_backlog(s);
  if (s->paused && !s->backlog && s->queued <= s->queue_limit / 2 && s->end == FS_RUNNING) {
    CURLcode rc;
    s->paused = 0;
    s->t_last_byte = fs_now_ms(); /* our pause is not the server's silence */
    rc = curl_easy_pause(s->easy, CURLPAUSE_CONT); /* may call on_write now */
    if (rc != CURLE_OK) end_now(s, rc); /* on_write failed on the bytes curl held */
  }
  if (was_held && !fs_stream_held_back(s) && s->client)
    fs_client_schedule(s->client, s); /* our silence is over: the timeouts run again */
}

/* ------------------------------------------------------------- readers */

int fs_stream_set_mode(fs_stream *s, fs_mode mode, size_t max_size, unsigned flags,
                       int want_bytes, const char *last_id, size_t last_id_len) {
  s->mode = mode;
  s->max_size = max_size;
  s->want_bytes = want_bytes;
  if (mode != FS_MODE_EVENTS) return 1;
  sse_free(&s->parser);
  sse_init(&s->parser, max_size, flags);
  return sse_set_last_id(&s->parser, last_id ? last_id : "", last_id_len) != SSE_NOMEM;
}

/* A line the splitter holds still to be given: not a given one (it keeps its
** LF until the next call), and only after a normal end (a line cut off by a
** failure is dropped, not glued to what a reconnection brings). */
static int line_left(const fs_stream *s) {
  return s->line.len > 0 && s->line.ptr[s->line.len - 1] != '\n' && s->end == FS_END_OK;
}

int fs_stream_has_bytes(const fs_stream *s) {
  return s->head != NULL || line_left(s);
}

fs_item fs_stream_next_event(fs_stream *s, sse_item *it) {
  for (;;) {
    sse_result r;
    if (!s->in_active) { /* the next chunk of the queue */
      const char *bytes;
      size_t n = fs_stream_peek(s, &bytes);
      if (n == 0) return FS_ITEM_NONE;
      sse_input_set(&s->in, bytes, n);
      s->in_len = n;
      s->in_active = 1;
      s->bytes_given = 0;
    }
    if (s->want_bytes && !s->bytes_given) { /* the chunk itself first */
      s->bytes_given = 1;
      it->data.ptr = s->in.pos;
      it->data.len = s->in_len;
      return FS_ITEM_BYTES;
    }
    r = sse_next(&s->parser, &s->in, it);
    switch (r) {
      case SSE_NEED_MORE: /* the parser is done with this chunk */
        s->in_active = 0;
        fs_stream_consume(s, s->in_len);
        continue;
      case SSE_EVENT: return FS_ITEM_EVENT;
      case SSE_COMMENT: return FS_ITEM_COMMENT;
      case SSE_RETRY: return FS_ITEM_RETRY;
      case SSE_TOO_LARGE: return FS_ITEM_TOO_LARGE;
      case SSE_NOMEM: return FS_ITEM_NOMEM;
    }
  }
}

static int line_append(fs_stream *s, const char *bytes, size_t n) {
  if (s->line.len + n > s->line.cap) {
    size_t cap = s->line.cap ? s->line.cap : 256;
    char *p;
    while (cap < s->line.len + n) cap *= 2;
    p = realloc(s->line.ptr, cap);
    if (!p) return 0;
    s->line.ptr = p;
    s->line.cap = cap;
  }
  memcpy(s->line.ptr + s->line.len, bytes, n);
  s->line.len += n;
  return 1;
}

/* A whole line found: without its CR, bounded by max_size. */
static fs_item give_line(fs_stream *s, const char *ptr, size_t len, sse_slice *line) {
  if (len > 0 && ptr[len - 1] == '\r') len--;
  if (len > s->max_size) return FS_ITEM_TOO_LARGE;
  line->ptr = len ? ptr : "";
  line->len = len;
  return FS_ITEM_LINE;
}

fs_item fs_stream_next_line(fs_stream *s, sse_slice *line) {
  if (s->line_consume) { /* the line given last time lay in the head chunk */
    size_t n = s->line_consume;
    s->line_consume = 0;
    fs_stream_consume(s, n);
  }
  if (s->line.len && s->line.ptr[s->line.len - 1] == '\n') s->line.len = 0; /* given already */
  for (;;) {
    const char *bytes, *nl;
    size_t n = fs_stream_peek(s, &bytes);
    if (n == 0) {
      if (line_left(s)) { /* a last line without LF, as it is */
        size_t len = s->line.len;
        s->line.len = 0;
        if (len > s->max_size) return FS_ITEM_TOO_LARGE;
        line->ptr = s->line.ptr;
        line->len = len;
        return FS_ITEM_LINE;
      }
      return FS_ITEM_NONE;
    }
    nl = memchr(bytes, '\n', n);
    if (!nl) { /* the line goes on in a later chunk */
      if (!line_append(s, bytes, n)) return FS_ITEM_NOMEM;
      fs_stream_consume(s, n);
      if (s->line.len > s->max_size + 1) return FS_ITEM_TOO_LARGE; /* +1: a CR may go */
      continue;
    }
    if (s->line.len == 0) { /* the whole line lies here: no copy */
      s->line_consume = (size_t)(nl - bytes) + 1;
      return give_line(s, bytes, (size_t)(nl - bytes), line);
    }
    if (!line_append(s, bytes, (size_t)(nl - bytes) + 1)) return FS_ITEM_NOMEM;
    fs_stream_consume(s, (size_t)(nl - bytes) + 1);
    return give_line(s, s->line.ptr, s->line.len - 1, line); /* its LF stays: cleared next call */
  }
}

int fs_stream_held_back(const fs_stream *s) {
  return s->paused || s->backlog;
}

/* curl's "Out of memory" for one of its own limits, said as what it is. */
static void explain_out_of_memory(fs_stream *s) {
  long sent = 0;
  curl_easy_getinfo(s->easy, CURLINFO_REQUEST_SIZE, &sent);
  if (sent == 0 && s->request_bytes > CURL_REQUEST_MAX - 64 * 1024)
    snprintf(s->errbuf, sizeof s->errbuf, "the request is larger than curl's limit of 1 MiB "
             "for a request line and headers (URL and headers: %zu bytes)", s->request_bytes);
  else if (sent > 0 && !s->headers_done)
    snprintf(s->errbuf, sizeof s->errbuf, "a line of the response headers is longer than "
             "curl's limit of %d bytes", CURL_MAX_HTTP_HEADER);
}

void fs_stream_done(fs_stream *s, CURLcode code) {
  if (s->fail_code) { /* we stopped it: our reason */
    code = s->fail_code;
    snprintf(s->errbuf, sizeof s->errbuf, "%s", s->fail_msg);
  } else if (code == CURLE_OK && !s->headers_done) {
    if (!s->block_complete) { /* curl 7.88 returns OK for this */
      code = CURLE_PARTIAL_FILE;
      snprintf(s->errbuf, sizeof s->errbuf,
               "the connection closed before the end of the response headers");
    } else { /* a 1xx or 3xx curl did not go past: the final response */
      curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &s->status);
      s->headers_done = 1;
    }
  } else if (code == CURLE_OUT_OF_MEMORY) {
    explain_out_of_memory(s);
  }
  s->code = code;
  s->end = code == CURLE_OK ? FS_END_OK : FS_END_CURL;
  if (s->end == FS_END_OK && !s->backlog) finish_decoding(s);
}

void fs_stream_abort(fs_stream *s) {
  if (s->client) fs_client_remove(s->client, s);
  if (s->end == FS_RUNNING) s->end = FS_END_ABORTED;
}

void fs_stream_free(fs_stream *s) {
  fs_chunk *c, *next;
  fs_stream_abort(s);
  if (s->client) fs_client_forget(s->client, s);
  sse_free(&s->parser);
  free(s->line.ptr);
  s->line.ptr = NULL;
  s->line.len = s->line.cap = 0;
  s->in_active = 0;
  s->line_consume = 0;
  if (s->easy) curl_easy_cleanup(s->easy);
  s->easy = NULL;
  curl_slist_free_all(s->headers);
  s->headers = NULL;
  for (c = s->head; c; c = next) {
    next = c->next;
    free(c);
  }
  s->head = s->tail = NULL;
  s->queued = 0;
  free(s->header_lines);
  s->header_lines = NULL;
  s->header_len = s->header_cap = 0;
  fs_decode_free(&s->dec);
  free(s->scratch);
  s->scratch = NULL;
  free(s->held);
  s->held = NULL;
  s->held_off = s->held_len = s->held_cap = 0;
  s->backlog = 0;
}

#define NAME(code) \
  case CURLE_##code: return #code

const char *fs_curl_code_name(CURLcode code) {
  switch (code) {
    NAME(OK); NAME(UNSUPPORTED_PROTOCOL); NAME(FAILED_INIT); NAME(URL_MALFORMAT);
    NAME(NOT_BUILT_IN); NAME(COULDNT_RESOLVE_PROXY); NAME(COULDNT_RESOLVE_HOST);
    NAME(COULDNT_CONNECT); NAME(WEIRD_SERVER_REPLY); NAME(HTTP2);
    NAME(PARTIAL_FILE); NAME(HTTP_RETURNED_ERROR); NAME(WRITE_ERROR);
    NAME(UPLOAD_FAILED); NAME(READ_ERROR); NAME(OUT_OF_MEMORY);
    NAME(OPERATION_TIMEDOUT); NAME(RANGE_ERROR); NAME(HTTP_POST_ERROR);
    NAME(SSL_CONNECT_ERROR); NAME(ABORTED_BY_CALLBACK);
    NAME(BAD_FUNCTION_ARGUMENT); NAME(INTERFACE_FAILED);
    NAME(TOO_MANY_REDIRECTS); NAME(UNKNOWN_OPTION); NAME(GOT_NOTHING);
    NAME(SSL_ENGINE_NOTFOUND); NAME(SSL_ENGINE_SETFAILED); NAME(SEND_ERROR);
    NAME(RECV_ERROR); NAME(SSL_CERTPROBLEM); NAME(SSL_CIPHER);
    NAME(PEER_FAILED_VERIFICATION); NAME(BAD_CONTENT_ENCODING);
    NAME(FILESIZE_EXCEEDED); NAME(USE_SSL_FAILED); NAME(SEND_FAIL_REWIND);
    NAME(SSL_ENGINE_INITFAILED); NAME(LOGIN_DENIED); NAME(SSL_CACERT_BADFILE);
    NAME(SSL_SHUTDOWN_FAILED); NAME(AGAIN); NAME(SSL_CRL_BADFILE);
    NAME(SSL_ISSUER_ERROR); NAME(CHUNK_FAILED); NAME(NO_CONNECTION_AVAILABLE);
    NAME(SSL_PINNEDPUBKEYNOTMATCH); NAME(SSL_INVALIDCERTSTATUS);
    NAME(HTTP2_STREAM); NAME(RECURSIVE_API_CALL); NAME(AUTH_ERROR);
    NAME(HTTP3); NAME(QUIC_CONNECT_ERROR); NAME(PROXY); NAME(SSL_CLIENTCERT);
    NAME(UNRECOVERABLE_POLL);
    default: return "UNKNOWN";
  }
}
