/*
** ltransfer.c — a transfer handle (fetchstream.Transfer): one transfer of
** stream.c (curl easy handle, byte queue, and the parser or line splitter
** that owns the queue's bytes) as an ordinary Lua userdata with C methods.
** A Lua stream (lua/fetchstream/stream.lua) holds one in its `_transfer`
** field and keeps the policy: states, endings, reconnection, callbacks.
**
** Nothing here is called from inside a curl callback, and curl's callbacks
** never call Lua: they only copy bytes (stream.c).
**
** User values: 1 the request body (curl does not copy POSTFIELDS), 2 the
** client handle (a client outlives its transfers), 3 and 4 the last event
** type and id strings handed out (events repeat them: no new string each
** time).
*/
#include "lfetchstream.h"
#include "lclient.h"
#include "stream.h"

#include <stdio.h>
#include <string.h>

#define UV_BODY 1
#define UV_CLIENT 2
#define UV_TYPE 3
#define UV_ID 4

typedef struct ltransfer {
  fs_stream s;
  int closed;
  const char *type_ptr, *id_ptr; /* the strings in UV_TYPE and UV_ID */
  size_t type_len, id_len;
} ltransfer;

static ltransfer *totransfer(lua_State *L, int idx) {
  return (ltransfer *)luaL_checkudata(L, idx, TRANSFER_T);
}

static ltransfer *checktransfer(lua_State *L, int idx) {
  ltransfer *t = totransfer(L, idx);
  if (t->closed) fs_usage(L, "attempt to use a closed transfer");
  return t;
}

/* checktransfer for the per-event methods: the metatable compared with
** upvalue 1 (the methods are registered with it) costs less than
** luaL_checkudata's look-up by name. */
static ltransfer *fasttransfer(lua_State *L) {
  ltransfer *t = (ltransfer *)lua_touserdata(L, 1);
  if (!t || !lua_getmetatable(L, 1) || !lua_rawequal(L, -1, lua_upvalueindex(1)))
    return checktransfer(L, 1); /* raises the usual error */
  lua_pop(L, 1);
  if (t->closed) fs_usage(L, "attempt to use a closed transfer");
  return t;
}

/* ------------------------------------------------------------ the request */

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

/* The values of option http_version, listed once: core.HTTP_VERSIONS is made
** from this table and the Lua layer checks the option against it. */
static const struct {
  const char *name;
  long value;
} HTTP_VERSIONS[] = {
  {"1.0", CURL_HTTP_VERSION_1_0},
  {"1.1", CURL_HTTP_VERSION_1_1},
  {"2", CURL_HTTP_VERSION_2TLS},
  {"2-prior-knowledge", CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE},
  {NULL, 0}
};

static long http_version(const char *v) {
  int i;
  for (i = 0; v && HTTP_VERSIONS[i].name; i++)
    if (strcmp(v, HTTP_VERSIONS[i].name) == 0) return HTTP_VERSIONS[i].value;
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
    lua_rawgeti(L, -1, (int)i);
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

/* Set up t's easy handle from the request table at req_idx and start it on
** its client (user value). Returns 1, or pushes nil, err and returns 2. */
static int start(lua_State *L, ltransfer *t, int tidx, int req_idx, int owner_idx) {
  lclient *c;
  fs_request req;
  CURLcode rc;
  CURLMcode mrc;
  int ok;
  fs_getiuservalue(L, tidx, UV_CLIENT);
  c = fs_checkclient(L, -1);
  lua_pop(L, 1); /* the transfer's user value keeps it */
  t->closed = 1; /* until the easy handle exists */
  if (fs_stream_init(&t->s) != 0) return luaL_error(L, "curl_easy_init failed");
  t->closed = 0;

  memset(&req, 0, sizeof req);
  req.url = opt_string(L, req_idx, "url");
  req.method = opt_string(L, req_idx, "method");
  if (!req.url || !req.method) fs_usage(L, "a request needs url and method");
  lua_getfield(L, req_idx, "body");
  if (lua_isstring(L, -1)) req.body = lua_tolstring(L, -1, &req.body_len);
  fs_setiuservalue(L, tidx, UV_BODY); /* pins the body for curl */
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

  rc = fs_stream_prepare(&t->s, &req);
  curl_slist_free_all(req.headers); /* NULL unless prepare failed early */
  if (rc != CURLE_OK)
    fs_usage(L, "%s", t->s.errbuf[0] ? t->s.errbuf : curl_easy_strerror(rc));
  mrc = fs_client_add(&c->c, &t->s);
  if (mrc != CURLM_OK) {
    luaL_pushfail(L);
    fs_pusherror(L, "network", "cannot start the transfer: %s", curl_multi_strerror(mrc));
    return 2;
  }
  fs_getiuservalue(L, tidx, UV_CLIENT);
  fs_client_set_owner(L, lua_gettop(L), &t->s, owner_idx);
  lua_pop(L, 1);
  return 1;
}

/*
** core.transfer(client_handle, req, owner) -> t | nil, err
** req: { url, method, body, headers = { "Name: value", ... }, user_agent,
** proxy, ca_file, connect_timeout, first_byte_timeout, idle_timeout,
** timeout (all in ms), max_redirects, http_version, insecure,
** accept_encoding, queue_limit }, already checked by the Lua layer. `owner`
** is what the client's step hands back when the transfer is ready.
*/
static int transfer_new(lua_State *L) {
  ltransfer *t;
  fs_checkclient(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 3);
  t = (ltransfer *)fs_newuserdatauv(L, sizeof *t, 4); /* 4 */
  memset(t, 0, sizeof *t);
  t->closed = 1; /* closed until start has an easy handle */
  luaL_setmetatable(L, TRANSFER_T);
  lua_pushvalue(L, 1);
  fs_setiuservalue(L, 4, UV_CLIENT);
  if (start(L, t, 4, 2, lua_isnil(L, 3) ? 0 : 3) == 2) return 2;
  lua_settop(L, 4);
  return 1;
}

/* t:restart(req, owner) -> t | nil, err: a new transfer in the same handle
** (a reconnection); the old one is freed first, whatever its state. */
static int transfer_restart(lua_State *L) {
  ltransfer *t = totransfer(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 3);
  if (!t->closed) fs_stream_free(&t->s);
  t->closed = 1;
  if (start(L, t, 1, 2, lua_isnil(L, 3) ? 0 : 3) == 2) return 2;
  lua_settop(L, 1);
  return 1;
}

/* ------------------------------------------------------------ reading */

/* t:headers() -> status, header_lines, url | nothing while the final
** response's headers are not in yet */
static int transfer_headers(lua_State *L) {
  ltransfer *t = checktransfer(L, 1);
  char *url = NULL;
  if (!t->s.headers_done) return 0;
  lua_pushinteger(L, t->s.status);
  lua_pushlstring(L, t->s.header_lines ? t->s.header_lines : "", t->s.header_len);
  curl_easy_getinfo(t->s.easy, CURLINFO_EFFECTIVE_URL, &url);
  if (url) lua_pushstring(L, url);
  else lua_pushnil(L);
  return 3;
}

/*
** t:mode("events", max_size, comments, bytes [, last_event_id])
** t:mode("lines", max_size)
** How the reader takes the body from now on: SSE items (retry fields
** always; comments and each chunk's bytes when asked for; the parser starts
** with last_event_id), or lines. Without a mode, t:read() takes raw bytes.
*/
static int transfer_mode(lua_State *L) {
  static const char *const modes[] = {"raw", "events", "lines", NULL};
  ltransfer *t = checktransfer(L, 1);
  int mode = luaL_checkoption(L, 2, NULL, modes);
  lua_Integer max = luaL_checkinteger(L, 3);
  unsigned flags = SSE_WANT_RETRY;
  size_t id_len = 0;
  const char *id = luaL_optlstring(L, 6, "", &id_len);
  if (lua_toboolean(L, 4)) flags |= SSE_WANT_COMMENTS;
  if (max <= 0) fs_usage(L, "max_event_size must be a positive integer");
  if (!fs_stream_set_mode(&t->s, (fs_mode)mode, (size_t)max, flags, lua_toboolean(L, 5), id, id_len))
    return luaL_error(L, "not enough memory");
  return 0;
}

/* Push v through the cached string in user value uv (*ptr, *len mirror it). */
static void push_cached(lua_State *L, int uv, const char **ptr, size_t *len, sse_slice v) {
  if (*ptr && *len == v.len && (v.len == 0 || memcmp(*ptr, v.ptr, v.len) == 0)) {
    fs_getiuservalue(L, 1, uv);
    return;
  }
  *ptr = fs_pushlstring(L, v.ptr, v.len);
  *len = v.len;
  lua_pushvalue(L, -1);
  fs_setiuservalue(L, 1, uv);
}

static int too_large(lua_State *L, ltransfer *t) {
  char max[32]; /* not %I: LuaJIT's lua_pushfstring stops at it */
  snprintf(max, sizeof max, "%lu", (unsigned long)t->s.max_size);
  lua_pushboolean(L, 0);
  lua_pushliteral(L, "too_large");
  lua_pushfstring(L, "%s larger than max_event_size (%s bytes)",
                  t->s.mode == FS_MODE_LINES ? "line" : "event or line", max);
  return 3;
}

/*
** t:next_event() -> data, type, id     an event
**                 | false, "retry", ms | false, "comment", text
**                 | false, "bytes", chunk | false, "too_large", message
**                 | nothing            nothing queued now
** Parses where the bytes lie in the queue: the data string is the only copy.
** Reading may resume a transfer paused by back-pressure.
*/
static int transfer_next_event(lua_State *L) {
  ltransfer *t = fasttransfer(L);
  sse_item it;
  switch (fs_stream_next_event(&t->s, &it)) {
    case FS_ITEM_NONE: return 0;
    case FS_ITEM_EVENT:
      lua_pushlstring(L, it.data.ptr, it.data.len);
      push_cached(L, UV_TYPE, &t->type_ptr, &t->type_len, it.type);
      push_cached(L, UV_ID, &t->id_ptr, &t->id_len, it.id);
      return 3;
    case FS_ITEM_RETRY:
      lua_pushboolean(L, 0);
      lua_pushliteral(L, "retry");
      lua_pushinteger(L, (lua_Integer)it.retry);
      return 3;
    case FS_ITEM_COMMENT:
      lua_pushboolean(L, 0);
      lua_pushliteral(L, "comment");
      lua_pushlstring(L, it.data.ptr, it.data.len);
      return 3;
    case FS_ITEM_BYTES:
      lua_pushboolean(L, 0);
      lua_pushliteral(L, "bytes");
      lua_pushlstring(L, it.data.ptr, it.data.len);
      return 3;
    case FS_ITEM_TOO_LARGE: return too_large(L, t);
    default: return luaL_error(L, "not enough memory");
  }
}

/*
** t:next_line() -> line | false, "too_large", message | nothing: the next
** line (LF or CRLF cut off; a last line without LF comes once the transfer
** has ended, as it is).
*/
static int transfer_next_line(lua_State *L) {
  ltransfer *t = fasttransfer(L);
  sse_slice line;
  switch (fs_stream_next_line(&t->s, &line)) {
    case FS_ITEM_NONE: return 0;
    case FS_ITEM_LINE:
      lua_pushlstring(L, line.ptr, line.len);
      return 1;
    case FS_ITEM_TOO_LARGE: return too_large(L, t);
    default: return luaL_error(L, "not enough memory");
  }
}

/* t:read([max]) -> the queued body bytes (at most about max, default
** 256 KiB) as one string | nil when none are queued. */
static int transfer_read(lua_State *L) {
  ltransfer *t = checktransfer(L, 1);
  size_t max = (size_t)luaL_optinteger(L, 2, 256 * 1024), got = 0, n;
  const char *bytes;
  luaL_Buffer b;
  if (!fs_stream_peek(&t->s, &bytes)) return 0;
  luaL_buffinit(L, &b);
  while (got < max && (n = fs_stream_peek(&t->s, &bytes)) > 0) {
    if (n > max - got) n = max - got;
    luaL_addlstring(&b, bytes, n);
    got += n;
    fs_stream_consume(&t->s, n);
  }
  luaL_pushresult(&b);
  return 1;
}

/* t:last_event_id() -> the parser's last event ID ("" before events mode) */
static int transfer_last_event_id(lua_State *L) {
  ltransfer *t = checktransfer(L, 1);
  const sse_buf *id = &t->s.parser.last_id;
  lua_pushlstring(L, id->len ? id->ptr : "", id->len);
  return 1;
}

/* ------------------------------------------------------------ the end */

/* t:ended() -> whether the transfer is over (bytes may still be queued),
** and whether the reader still has bytes to hand out */
static int transfer_ended(lua_State *L) {
  ltransfer *t = checktransfer(L, 1);
  lua_pushboolean(L, t->s.end != FS_RUNNING);
  lua_pushboolean(L, fs_stream_has_bytes(&t->s));
  return 2;
}

static int push_timeout(lua_State *L, const char *which) {
  lua_pushliteral(L, "timeout");
  lua_pushstring(L, which);
  return 2;
}

/*
** t:result() -> nothing while running, else one of
**   "done"
**   "aborted"
**   "timeout", which ("connect", "first_byte", "idle", "total")
**   "network", curl_code, curl_name, message
*/
static int transfer_result(lua_State *L) {
  ltransfer *t = checktransfer(L, 1);
  switch (t->s.end) {
    case FS_RUNNING: return 0;
    case FS_END_OK: lua_pushliteral(L, "done"); return 1;
    case FS_END_ABORTED: lua_pushliteral(L, "aborted"); return 1;
    case FS_END_TIMEOUT_FIRST_BYTE: return push_timeout(L, "first_byte");
    case FS_END_TIMEOUT_IDLE: return push_timeout(L, "idle");
    case FS_END_TIMEOUT_TOTAL: return push_timeout(L, "total");
    case FS_END_CURL: break;
  }
  /* the only timeout left to curl is the connect timeout */
  if (t->s.code == CURLE_OPERATION_TIMEDOUT) return push_timeout(L, "connect");
  lua_pushliteral(L, "network");
  lua_pushinteger(L, t->s.code);
  lua_pushstring(L, fs_curl_code_name(t->s.code));
  lua_pushstring(L, t->s.errbuf[0] ? t->s.errbuf : curl_easy_strerror(t->s.code));
  return 4;
}

/* t:times() -> seconds from the start of the request to the first body
** byte (nil before it), and to now */
static int transfer_times(lua_State *L) {
  ltransfer *t = checktransfer(L, 1);
  if (t->s.t_first_byte > 0) lua_pushnumber(L, (t->s.t_first_byte - t->s.t_start) / 1000.0);
  else lua_pushnil(L);
  lua_pushnumber(L, (fs_now_ms() - t->s.t_start) / 1000.0);
  return 2;
}

/* t:wake(seconds | nil): on the client's ready list after that many seconds
** (what a reconnecting stream waits on), or no wake-up. */
static int transfer_wake(lua_State *L) {
  ltransfer *t = checktransfer(L, 1);
  double at = 0;
  if (!lua_isnoneornil(L, 2)) {
    lua_Number secs = luaL_checknumber(L, 2);
    at = fs_now_ms() + (secs > 0 ? (double)secs * 1000.0 : 0.0);
  }
  if (t->s.client) fs_client_wake_at(t->s.client, &t->s, at);
  return 0;
}

/* t:ready(): back on the client's ready list (a visit an error cut short) */
static int transfer_ready(lua_State *L) {
  ltransfer *t = checktransfer(L, 1);
  if (t->s.client) fs_client_mark_ready(t->s.client, &t->s);
  return 0;
}

/* t:abort(): stop the transfer now; what is queued stays readable */
static int transfer_abort(lua_State *L) {
  ltransfer *t = checktransfer(L, 1);
  fs_stream_abort(&t->s);
  return 0;
}

/* t:closed() -> whether the handle has been closed */
static int transfer_closed(lua_State *L) {
  lua_pushboolean(L, totransfer(L, 1)->closed);
  return 1;
}

/* t:close(), __gc, __close: free everything; idempotent, no callbacks */
static int transfer_close(lua_State *L) {
  ltransfer *t = totransfer(L, 1);
  if (!t->closed) {
    t->closed = 1;
    fs_stream_free(&t->s);
    lua_pushnil(L);
    fs_setiuservalue(L, 1, UV_BODY);
  }
  return 0;
}

static int transfer_tostring(lua_State *L) {
  lua_pushfstring(L, "fetchstream.Transfer (%p)", lua_touserdata(L, 1));
  return 1;
}

/* core.now() -> seconds on the monotonic clock */
static int now(lua_State *L) {
  lua_pushnumber(L, fs_now_ms() / 1000.0);
  return 1;
}

static const luaL_Reg methods[] = {
  {"restart", transfer_restart},
  {"headers", transfer_headers},
  {"mode", transfer_mode},
  {"next_event", transfer_next_event},
  {"next_line", transfer_next_line},
  {"read", transfer_read},
  {"last_event_id", transfer_last_event_id},
  {"ended", transfer_ended},
  {"result", transfer_result},
  {"times", transfer_times},
  {"wake", transfer_wake},
  {"ready", transfer_ready},
  {"abort", transfer_abort},
  {"closed", transfer_closed},
  {"close", transfer_close},
  {NULL, NULL}
};

static const luaL_Reg meta[] = {
  {"__gc", transfer_close},
  {"__close", transfer_close},
  {"__tostring", transfer_tostring},
  {NULL, NULL}
};

void fs_transfer_open(lua_State *L) {
  int i;
  curl_global_init(CURL_GLOBAL_DEFAULT); /* thread-safe since 7.84 */
  luaL_newmetatable(L, TRANSFER_T);
  luaL_setfuncs(L, meta, 0);
  luaL_newlibtable(L, methods);
  lua_pushvalue(L, -2); /* every method's upvalue: the metatable (fasttransfer) */
  luaL_setfuncs(L, methods, 1);
  lua_pushvalue(L, -1);
  lua_setfield(L, -4, "Transfer"); /* core.Transfer = the methods */
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, transfer_new);
  lua_setfield(L, -2, "transfer");
  lua_pushcfunction(L, now);
  lua_setfield(L, -2, "now");
  lua_newtable(L); /* core.HTTP_VERSIONS = { ["1.1"] = true, ... } */
  for (i = 0; HTTP_VERSIONS[i].name; i++) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, HTTP_VERSIONS[i].name);
  }
  lua_setfield(L, -2, "HTTP_VERSIONS");
}
