/*
** client.c — the multi handle and the deadlines. See client.h.
*/
#include "client.h"

#include <string.h>

int fs_client_init(fs_client *c) {
  memset(c, 0, sizeof *c);
  c->multi = curl_multi_init();
  return c->multi ? 0 : -1;
}

void fs_client_free(fs_client *c) {
  while (c->streams) fs_stream_abort(c->streams); /* each one unlinks itself */
  if (c->multi) curl_multi_cleanup(c->multi);
  c->multi = NULL;
}

CURLMcode fs_client_add(fs_client *c, fs_stream *s) {
  CURLMcode rc = curl_multi_add_handle(c->multi, s->easy);
  if (rc != CURLM_OK) return rc;
  s->client = c;
  s->prev = NULL;
  s->next = c->streams;
  if (c->streams) c->streams->prev = s;
  c->streams = s;
  c->count++;
  s->t_start = fs_now_ms();
  return CURLM_OK;
}

void fs_client_remove(fs_client *c, fs_stream *s) {
  if (s->client != c) return;
  curl_multi_remove_handle(c->multi, s->easy);
  if (s->prev) s->prev->next = s->next;
  else c->streams = s->next;
  if (s->next) s->next->prev = s->prev;
  s->prev = s->next = NULL;
  s->client = NULL;
  c->count--;
}

/* The moment this stream times out, or 0 for never; *which says which
** timeout that is. first_byte runs from the start to the first body byte;
** idle from the final response's headers (a server that sends headers and
** then nothing is silent too) to each body byte. A stream that waits for
** its reader is not silent: only the total timeout runs. */
static double deadline(const fs_stream *s, fs_end *which) {
  double at = 0, t;
  fs_end w = FS_RUNNING;
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

int fs_client_perform(fs_client *c) {
  int running, left;
  CURLMsg *msg;
  fs_stream *s, *next;
  double now;
  curl_multi_perform(c->multi, &running);
  while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
    char *priv;
    if (msg->msg != CURLMSG_DONE) continue;
    priv = NULL;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
    if (!priv) continue;
    s = (fs_stream *)(void *)priv;
    fs_stream_done(s, msg->data.result);
    fs_client_remove(c, s); /* msg is not used after this */
  }
  now = fs_now_ms();
  for (s = c->streams; s; s = next) {
    fs_end which;
    double at = deadline(s, &which);
    next = s->next;
    if (at != 0 && now >= at) {
      s->end = which;
      fs_client_remove(c, s);
    }
  }
  return c->count;
}

void fs_client_wait(fs_client *c, long timeout_ms) {
  double now = fs_now_ms(), soonest = 0;
  const fs_stream *s;
  for (s = c->streams; s; s = s->next) {
    double at = deadline(s, NULL);
    if (at != 0 && (soonest == 0 || at < soonest)) soonest = at;
  }
  if (soonest != 0) {
    double left = soonest - now;
    if (left < 0) left = 0;
    if (left < (double)timeout_ms) timeout_ms = (long)left + 1;
  }
  if (timeout_ms < 0) timeout_ms = 0;
  curl_multi_poll(c->multi, NULL, 0, (int)timeout_ms, NULL);
}
