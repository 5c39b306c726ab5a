/*
** lstream.c — streams and clients as Lua objects.
**
** The objects are userdata with a Lua fields table (see fs_newclass); their
** public methods are written in Lua (lua/fetchstream/). What is here are the
** private core.* functions that Lua policy calls: start a transfer, move the
** client, read queued bytes, read how a transfer ended.
**
** No function here is ever called from inside a curl callback, and none of
** curl's callbacks call Lua: they only copy bytes (stream.c).
**
** User values of a stream: 1 fields, 2 the request body (curl does not copy
** POSTFIELDS), 3 its client (a client outlives the streams it drives).
*/
#include "lfetchstream.h"
#include "client.h"
#include "stream.h"

#include <string.h>

#define UV_BODY 2
#define UV_CLIENT 3
#define UV_BY_TRANSFER 2 /* of a client */

typedef struct lclient {
  fs_client c;
  int closed;
} lclient;

typedef struct lstream {
  fs_stream s;
  int closed;
} lstream;

/* ---------------------------------------------------------------- access */

static lclient *toclient(lua_State *L, int idx) {
  return (lclient *)luaL_checkudata(L, idx, CLIENT_T);
}

static lclient *checkclient(lua_State *L, int idx) {
  lclient *c = toclient(L, idx);
  if (c->closed) fs_usage(L, "attempt to use a closed client");
  return c;
}

static lstream *tostream(lua_State *L, int idx) {
  return (lstream *)luaL_checkudata(L, idx, STREAM_T);
}

static lstream *checkstream(lua_State *L, int idx) {
  lstream *s = tostream(L, idx);
  if (s->closed) fs_usage(L, "attempt to use a closed stream");
  return s;
}

/* ---------------------------------------------------------------- client */

/* core.client() -> a new client (a curl multi handle). User value 2 maps
** each of its transfers (a light userdata) to its stream object, weakly: the
** ready list hands back C transfers, Lua wants their objects. */
static int client_new(lua_State *L) {
  lclient *c = fs_newobject(L, sizeof *c, 2, CLIENT_T);
  c->closed = 1; /* until the multi handle exists */
  lua_newtable(L);
  lua_createtable(L, 0, 1); /* its metatable: weak values */
  lua_pushliteral(L, "v");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  fs_setiuservalue(L, -2, UV_BY_TRANSFER);
  if (fs_client_init(&c->c) != 0) return luaL_error(L, "curl_multi_init failed");
  c->closed = 0;
  return 1;
}

/*
** core.client_step(client, list) -> n: do all that can be done now without
** blocking (client.h), then put the streams that have something new in
** list[1..n] — and only those: a stream with no activity is not visited.
*/
static int client_step(lua_State *L) {
  lclient *c = checkclient(L, 1);
  fs_stream *s;
  lua_Integer n = 0;
  luaL_checktype(L, 2, LUA_TTABLE);
  fs_client_step(&c->c);
  fs_getiuservalue(L, 1, UV_BY_TRANSFER); /* 3 */
  while ((s = fs_client_next_ready(&c->c)) != NULL) {
    lua_pushlightuserdata(L, s);
    if (fs_rawget(L, 3) == LUA_TNIL) { /* collected meanwhile */
      lua_pop(L, 1);
      continue;
    }
    lua_rawseti(L, 2, (int)++n);
  }
  lua_pushinteger(L, n);
  return 1;
}

/* core.client_timeout(client) -> seconds until a step is needed | nil when
** nothing is pending */
static int client_timeout(lua_State *L) {
  lclient *c = checkclient(L, 1);
  long ms = fs_client_timeout_ms(&c->c);
  if (ms < 0) return 0;
  lua_pushnumber(L, (lua_Number)ms / 1000.0);
  return 1;
}

/* core.client_fileno(client) -> the descriptor readable on network activity
** | nil where there is none */
static int client_fileno(lua_State *L) {
  lclient *c = checkclient(L, 1);
  int fd = fs_client_fileno(&c->c);
  if (fd < 0) return 0;
  lua_pushinteger(L, fd);
  return 1;
}

/* core.client_wait(client, seconds): sleep until activity, a deadline or
** the time is up. */
static int client_wait(lua_State *L) {
  lclient *c = checkclient(L, 1);
  lua_Number secs = luaL_checknumber(L, 2);
  long ms = secs <= 0 ? 0 : secs > 86400 ? 86400000L : (long)(secs * 1000.0 + 0.5);
  fs_client_wait(&c->c, ms);
  return 0;
}

/* client:close(), __gc: every stream still on it ends as aborted. */
static int client_gc(lua_State *L) {
  lclient *c = toclient(L, 1);
  if (!c->closed) {
    c->closed = 1;
    fs_client_free(&c->c);
  }
  return 0;
}

/* ---------------------------------------------------------------- stream */

static const char *opt_string(lua_State *L, int t, const char *key) {
  const char *v;
  lua_getfield(L, t, key);
  v = lua_tostring(L, -1); /* the request table keeps it alive */
  lua_pop(L, 1);
  return v;
}

static long opt_long(lua_State *L, int t, const char *key) {
  long v;
  lua_getfield(L, t, key);
  v = (long)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return v;
}

static int opt_bool(lua_State *L, int t, const char *key) {
  int v;
  lua_getfield(L, t, key);
  v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

static long http_version(const char *v) {
  if (!v) return 0;
  if (strcmp(v, "1.0") == 0) return CURL_HTTP_VERSION_1_0;
  if (strcmp(v, "1.1") == 0) return CURL_HTTP_VERSION_1_1;
  if (strcmp(v, "2") == 0) return CURL_HTTP_VERSION_2TLS;
  if (strcmp(v, "2-prior-knowledge") == 0) return CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE;
  return 0;
}

/* The header lines of req.headers (an array of "Name: value") as a list;
** the Lua layer has checked them. */
static struct curl_slist *header_list(lua_State *L, int t, int *ok) {
  struct curl_slist *list = NULL, *next;
  lua_Integer i, n;
  *ok = 1;
  lua_getfield(L, t, "headers");
  n = lua_istable(L, -1) ? (lua_Integer)lua_rawlen(L, -1) : 0;
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    next = curl_slist_append(list, lua_tostring(L, -1));
    lua_pop(L, 1);
    if (!next) {
      *ok = 0;
      break;
    }
    list = next;
  }
  lua_pop(L, 1);
  return list;
}

/* Set up s's easy handle from the request table at req_idx and start it on
** the client at client_idx. Returns 1, or pushes nil, err and returns 2. */
static int start_transfer(lua_State *L, lstream *s, int sidx, int client_idx,
                          int req_idx) {
  lclient *c = checkclient(L, client_idx);
  fs_request req;
  CURLcode rc;
  CURLMcode mrc;
  int ok;
  s->closed = 1; /* until the easy handle exists */
  if (fs_stream_init(&s->s) != 0) return luaL_error(L, "curl_easy_init failed");
  s->closed = 0;

  memset(&req, 0, sizeof req);
  req.url = opt_string(L, req_idx, "url");
  req.method = opt_string(L, req_idx, "method");
  if (!req.url || !req.method) fs_usage(L, "a request needs url and method");
  lua_getfield(L, req_idx, "body");
  if (lua_isstring(L, -1)) req.body = lua_tolstring(L, -1, &req.body_len);
  fs_setiuservalue(L, sidx, UV_BODY); /* pins the body for curl */
  req.user_agent = opt_string(L, req_idx, "user_agent");
  req.proxy = opt_string(L, req_idx, "proxy");
  req.ca_file = opt_string(L, req_idx, "ca_file");
  req.connect_timeout_ms = opt_long(L, req_idx, "connect_timeout");
  req.first_byte_timeout_ms = opt_long(L, req_idx, "first_byte_timeout");
  req.idle_timeout_ms = opt_long(L, req_idx, "idle_timeout");
  req.total_timeout_ms = opt_long(L, req_idx, "timeout");
  req.max_redirects = opt_long(L, req_idx, "max_redirects");
  req.http_version = http_version(opt_string(L, req_idx, "http_version"));
  req.insecure = opt_bool(L, req_idx, "insecure");
  req.accept_encoding = opt_bool(L, req_idx, "accept_encoding");
  req.queue_limit = (size_t)opt_long(L, req_idx, "queue_limit");
  req.headers = header_list(L, req_idx, &ok);
  if (!ok) {
    curl_slist_free_all(req.headers);
    return luaL_error(L, "not enough memory");
  }

  rc = fs_stream_prepare(&s->s, &req);
  curl_slist_free_all(req.headers); /* NULL unless prepare failed early */
  if (rc != CURLE_OK)
    fs_usage(L, "%s", s->s.errbuf[0] ? s->s.errbuf : curl_easy_strerror(rc));
  mrc = fs_client_add(&c->c, &s->s);
  if (mrc != CURLM_OK) {
    luaL_pushfail(L);
    fs_pusherror(L, "network", "cannot start the transfer: %s",
                 curl_multi_strerror(mrc));
    return 2;
  }
  fs_getiuservalue(L, client_idx, UV_BY_TRANSFER); /* by_transfer[s] = the stream */
  lua_pushlightuserdata(L, &s->s);
  lua_pushvalue(L, sidx);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  return 1;
}

/*
** core.stream_start(client, req) -> stream | nil, err
** req: { url, method, body, headers = { "Name: value", ... }, user_agent,
** proxy, ca_file, connect_timeout, first_byte_timeout, idle_timeout,
** timeout (all in ms), max_redirects, http_version, insecure,
** accept_encoding, queue_limit }, already checked by the Lua layer.
*/
static int stream_start(lua_State *L) {
  lstream *s;
  checkclient(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  s = fs_newobject(L, sizeof *s, 3, STREAM_T); /* 3: the stream */
  s->closed = 1; /* closed until start_transfer has an easy handle */
  lua_pushvalue(L, 1);
  fs_setiuservalue(L, 3, UV_CLIENT);
  if (start_transfer(L, s, 3, 1, 2) == 2) return 2;
  lua_settop(L, 3);
  return 1;
}

/*
** core.stream_restart(s, req) -> s | nil, err
** A new transfer for the same stream object (a reconnection): the old one
** is freed first, whatever state it was in.
*/
static int stream_restart(lua_State *L) {
  lstream *s = tostream(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  if (!s->closed) fs_stream_free(&s->s);
  s->closed = 1;
  fs_getiuservalue(L, 1, UV_CLIENT); /* 3 */
  if (start_transfer(L, s, 1, 3, 2) == 2) return 2;
  lua_settop(L, 1);
  return 1;
}

/* core.stream_headers(s) -> status, header_lines, url | nil while the
** final response's headers are not in yet. */
static int stream_headers(lua_State *L) {
  lstream *s = checkstream(L, 1);
  char *url = NULL;
  if (!s->s.headers_done) return 0;
  lua_pushinteger(L, s->s.status);
  lua_pushlstring(L, s->s.header_lines ? s->s.header_lines : "", s->s.header_len);
  curl_easy_getinfo(s->s.easy, CURLINFO_EFFECTIVE_URL, &url);
  if (url) lua_pushstring(L, url);
  else lua_pushnil(L);
  return 3;
}

/* core.stream_read(s [, max]) -> the queued body bytes (at most about max,
** default 256 KiB) as one string | nil when none are queued. Reading may
** resume a transfer paused by back-pressure. */
static int stream_read(lua_State *L) {
  lstream *s = checkstream(L, 1);
  size_t max = (size_t)luaL_optinteger(L, 2, 256 * 1024), got = 0, n;
  const char *bytes;
  luaL_Buffer b;
  if (!fs_stream_peek(&s->s, &bytes)) return 0;
  luaL_buffinit(L, &b);
  while (got < max && (n = fs_stream_peek(&s->s, &bytes)) > 0) {
    if (n > max - got) n = max - got;
    luaL_addlstring(&b, bytes, n);
    got += n;
    fs_stream_consume(&s->s, n);
  }
  luaL_pushresult(&b);
  return 1;
}

/* core.stream_ended(s) -> whether the transfer has ended (queued bytes
** may still wait to be read) */
static int stream_ended(lua_State *L) {
  lstream *s = checkstream(L, 1);
  lua_pushboolean(L, s->s.end != FS_RUNNING);
  return 1;
}

static int push_timeout(lua_State *L, const char *which) {
  lua_pushliteral(L, "timeout");
  lua_pushstring(L, which);
  return 2;
}

/*
** core.stream_end(s) -> nothing while running, else one of
**   "done"
**   "aborted"
**   "timeout", which ("connect", "first_byte", "idle", "total")
**   "network", curl_code, curl_name, message
*/
static int stream_end(lua_State *L) {
  lstream *s = checkstream(L, 1);
  switch (s->s.end) {
    case FS_RUNNING: return 0;
    case FS_END_OK: lua_pushliteral(L, "done"); return 1;
    case FS_END_ABORTED: lua_pushliteral(L, "aborted"); return 1;
    case FS_END_TIMEOUT_FIRST_BYTE: return push_timeout(L, "first_byte");
    case FS_END_TIMEOUT_IDLE: return push_timeout(L, "idle");
    case FS_END_TIMEOUT_TOTAL: return push_timeout(L, "total");
    case FS_END_CURL: break;
  }
  /* the only timeout left to curl is the connect timeout */
  if (s->s.code == CURLE_OPERATION_TIMEDOUT) return push_timeout(L, "connect");
  lua_pushliteral(L, "network");
  lua_pushinteger(L, s->s.code);
  lua_pushstring(L, fs_curl_code_name(s->s.code));
  lua_pushstring(L, s->s.errbuf[0] ? s->s.errbuf : curl_easy_strerror(s->s.code));
  return 4;
}

/* core.stream_times(s) -> seconds from the start of the request to the
** first body byte (nil if none yet), and to now */
static int stream_times(lua_State *L) {
  lstream *s = checkstream(L, 1);
  if (s->s.t_first_byte > 0) lua_pushnumber(L, (s->s.t_first_byte - s->s.t_start) / 1000.0);
  else lua_pushnil(L);
  lua_pushnumber(L, (fs_now_ms() - s->s.t_start) / 1000.0);
  return 2;
}

/* core.stream_wake(s, seconds | nil): put the stream on its client's ready
** list after that many seconds (what a reconnecting stream waits on), or
** cancel the wake-up. */
static int stream_wake(lua_State *L) {
  lstream *s = checkstream(L, 1);
  double at = 0;
  if (!lua_isnoneornil(L, 2)) {
    lua_Number secs = luaL_checknumber(L, 2);
    at = fs_now_ms() + (secs > 0 ? (double)secs * 1000.0 : 0.0);
    if (at == 0) at = 1;
  }
  if (s->s.client) fs_client_wake_at(s->s.client, &s->s, at);
  return 0;
}

/* core.stream_ready(s): back on the client's ready list (a visit that an
** error cut short). */
static int stream_ready(lua_State *L) {
  lstream *s = checkstream(L, 1);
  if (s->s.client) fs_client_mark_ready(s->s.client, &s->s);
  return 0;
}

/* core.stream_abort(s): stop the transfer now; queued bytes stay readable. */
static int stream_abort(lua_State *L) {
  lstream *s = checkstream(L, 1);
  fs_stream_abort(&s->s);
  return 0;
}

/* core.stream_free(s), and __gc: free everything; idempotent, no callbacks. */
static int stream_free(lua_State *L) {
  lstream *s = tostream(L, 1);
  if (!s->closed) {
    s->closed = 1;
    fs_stream_free(&s->s);
    lua_pushnil(L);
    fs_setiuservalue(L, 1, UV_BODY);
  }
  return 0;
}

/* core.is_closed(obj) -> whether a stream or client has been freed */
static int is_closed(lua_State *L) {
  lstream *s = luaL_testudata(L, 1, STREAM_T);
  lclient *c = s ? NULL : luaL_testudata(L, 1, CLIENT_T);
  lua_pushboolean(L, s ? s->closed : c ? c->closed : 1);
  return 1;
}

/* core.now() -> seconds on the monotonic clock */
static int now(lua_State *L) {
  lua_pushnumber(L, fs_now_ms() / 1000.0);
  return 1;
}

static int object_tostring(lua_State *L) {
  lua_pushfstring(L, "%s (%p)", luaL_typename(L, 1), lua_touserdata(L, 1));
  return 1;
}

static const luaL_Reg stream_meta[] = {
  {"__gc", stream_free},
  {"__tostring", object_tostring},
  {NULL, NULL}
};

static const luaL_Reg client_meta[] = {
  {"__gc", client_gc},
  {"__tostring", object_tostring},
  {NULL, NULL}
};

static const luaL_Reg functions[] = {
  {"client", client_new},
  {"client_step", client_step},
  {"client_timeout", client_timeout},
  {"client_fileno", client_fileno},
  {"client_wait", client_wait},
  {"client_free", client_gc},
  {"stream_start", stream_start},
  {"stream_restart", stream_restart},
  {"stream_headers", stream_headers},
  {"stream_read", stream_read},
  {"stream_ended", stream_ended},
  {"stream_end", stream_end},
  {"stream_times", stream_times},
  {"stream_abort", stream_abort},
  {"stream_wake", stream_wake},
  {"stream_ready", stream_ready},
  {"stream_free", stream_free},
  {"is_closed", is_closed},
  {"now", now},
  {NULL, NULL}
};

void fs_stream_open(lua_State *L) {
  curl_global_init(CURL_GLOBAL_DEFAULT); /* thread-safe since 7.84 */
  fs_newclass(L, STREAM_T, "Stream", stream_meta);
  fs_newclass(L, CLIENT_T, "Client", client_meta);
  luaL_setfuncs(L, functions, 0);
}
