/*
** lsse.c — the SSE parser as a Lua object (fetchstream.Parser).
**
** User values of the userdata:
**   1  the input string being parsed (it keeps the parser's pointers alive)
**   2  onretry callback or nil
**   3  oncomment callback or nil
**
** Lua callbacks run between two calls of sse_next(), never inside it, so an
** error raised by one leaves the parser in a consistent state: the unread
** rest of the input stays in user value 1 and the next feed parses it first.
*/
#include "lfetchstream.h"
#include "sse.h"

#include <stdio.h>
#include <string.h>

#define UV_INPUT 1
#define UV_ONRETRY 2
#define UV_ONCOMMENT 3

typedef struct lparser {
  sse_parser p;
  sse_input in;      /* valid while has_input */
  int has_input;     /* user value 1 holds the input */
  int closed;
  lua_Integer gen;   /* bumped when the input is replaced or reset */
} lparser;

static lparser *toparser(lua_State *L) { /* type check only */
  return (lparser *)luaL_checkudata(L, 1, PARSER_T);
}

static lparser *checkparser(lua_State *L) {
  lparser *lp = toparser(L);
  if (lp->closed) fs_usage(L, "attempt to use a closed parser");
  return lp;
}

/* Drop the input: nothing in the parser points into it any more. */
static void drop_input(lua_State *L, lparser *lp) {
  if (!lp->has_input) return;
  if (sse_release_input(&lp->p) != SSE_NEED_MORE) luaL_error(L, "not enough memory");
  lp->has_input = 0;
  lua_pushnil(L);
  fs_setiuservalue(L, 1, UV_INPUT);
}

/* Make the string at idx the input, after any unread rest of the old one.
** An empty chunk just resumes the old input: breaking out after every event
** and resuming with feed("") must not copy the rest each time. */
static void set_input(lua_State *L, lparser *lp, int idx) {
  size_t len;
  const char *s;
  if (lp->has_input && lua_rawlen(L, idx) == 0) {
    lp->gen++;
    return;
  }
  if (lp->has_input && lp->in.pos < lp->in.end) {
    lua_pushlstring(L, lp->in.pos, (size_t)(lp->in.end - lp->in.pos));
    lua_pushvalue(L, idx);
    lua_concat(L, 2);
  } else {
    lua_pushvalue(L, idx);
  }
  drop_input(L, lp);
  s = lua_tolstring(L, -1, &len);
  fs_setiuservalue(L, 1, UV_INPUT); /* anchors s */
  sse_input_set(&lp->in, s, len);
  lp->has_input = 1;
  lp->gen++;
}

static int raise_failure(lua_State *L, lparser *lp) {
  if (lp->p.failed == SSE_NOMEM) return luaL_error(L, "not enough memory");
  char max[32]; /* not %I: LuaJIT's lua_pushfstring stops at it */
  snprintf(max, sizeof max, "%lu", (unsigned long)lp->p.max_size);
  fs_pusherror(L, "protocol", "event or line larger than max_event_size (%s bytes)", max);
  return lua_error(L);
}

static void call_hook(lua_State *L, int uv, int nargs) {
  fs_getiuservalue(L, 1, uv);
  lua_insert(L, -1 - nargs);
  lua_call(L, nargs, 0);
}

/* The last type and id pushed, kept in two slots (stack or upvalues) so
** that the strings, which repeat from event to event, are not interned
** again; ptr/len mirror the slots' strings, which the slots keep alive. */
typedef struct strcache {
  int slot[2];
  const char *ptr[2];
  size_t len[2];
} strcache;

static void cache_init(lua_State *L, strcache *c, int type_slot, int id_slot) {
  int i;
  c->slot[0] = type_slot;
  c->slot[1] = id_slot;
  for (i = 0; i < 2; i++) c->ptr[i] = lua_tolstring(L, c->slot[i], &c->len[i]);
}

/* Push v through cache entry i. */
static void push_cached(lua_State *L, strcache *c, int i, sse_slice v) {
  size_t len = c->len[i];
  if (len == v.len &&
      (len == 0 || (c->ptr[i][0] == v.ptr[0] && memcmp(c->ptr[i], v.ptr, len) == 0))) {
    lua_pushvalue(L, c->slot[i]);
  } else {
    c->ptr[i] = fs_pushlstring(L, v.ptr, v.len);
    c->len[i] = v.len;
    lua_copy(L, -1, c->slot[i]);
  }
}

/*
** Run the parser to its next event and push [fn,] data, type, id (returns
** 1), or use up the input (returns 0). Comments and retry fields go to their
** hooks on the way. The type and id go through `cache`; fn_slot, when not
** 0, is pushed first. Expects the parser at stack index 1.
*/
static int next_event(lua_State *L, lparser *lp, lua_Integer gen, int fn_slot,
                      strcache *cache) {
  sse_item it;
  while (!lp->closed && lp->has_input && lp->gen == gen) {
    switch (sse_next(&lp->p, &lp->in, &it)) {
      case SSE_EVENT:
        if (fn_slot) lua_pushvalue(L, fn_slot);
        lua_pushlstring(L, it.data.ptr, it.data.len);
        push_cached(L, cache, 0, it.type);
        push_cached(L, cache, 1, it.id);
        return 1;
      case SSE_COMMENT:
        lua_pushlstring(L, it.data.ptr, it.data.len);
        call_hook(L, UV_ONCOMMENT, 1);
        cache_init(L, cache, cache->slot[0], cache->slot[1]); /* Lua ran */
        break;
      case SSE_RETRY:
        lua_pushinteger(L, (lua_Integer)it.retry);
        call_hook(L, UV_ONRETRY, 1);
        cache_init(L, cache, cache->slot[0], cache->slot[1]); /* Lua ran */
        break;
      case SSE_NEED_MORE:
        drop_input(L, lp);
        return 0;
      default:
        drop_input(L, lp);
        return raise_failure(L, lp);
    }
  }
  return 0;
}

/* One step of the iterators below: the next event's data, type and id
** pushed at 2..4 (returns 1), or nothing (0). Upvalues: parser, generation,
** the Event metatable, and the type and id caches. A newer feed or a reset
** ends the iteration. */
static int iter_step(lua_State *L) {
  lparser *lp;
  strcache cache;
  lua_settop(L, 0);
  lua_pushvalue(L, lua_upvalueindex(1));
  lp = (lparser *)lua_touserdata(L, 1); /* our own upvalue: always a parser */
  cache_init(L, &cache, lua_upvalueindex(4), lua_upvalueindex(5));
  return next_event(L, lp, lua_tointeger(L, lua_upvalueindex(2)), 0, &cache);
}

/* The iterator p:feed(chunk) returns: an event table per event. */
static int feed_iter(lua_State *L) {
  if (!iter_step(L)) return 0;
  lua_createtable(L, 0, 3);
  lua_insert(L, 2);               /* parser, ev, data, type, id */
  lua_setfield(L, 2, "id");
  lua_setfield(L, 2, "event");
  lua_setfield(L, 2, "data");
  lua_pushvalue(L, lua_upvalueindex(3));
  lua_setmetatable(L, 2);
  return 1;
}

/* The iterator p:values(chunk) returns: data, type, id, no table. */
static int values_iter(lua_State *L) {
  return iter_step(L) ? 3 : 0;
}

/* The iterator of parser_feed (events) or parser_values (three values). */
static int push_iterator(lua_State *L, lua_Integer gen, lua_CFunction iter) {
  lua_pushvalue(L, 1);
  lua_pushinteger(L, gen);
  luaL_getmetatable(L, EVENT_T);
  lua_pushliteral(L, "message");
  lua_pushliteral(L, "");
  lua_pushcclosure(L, iter, 5);
  return 1;
}

/*
** p:values(chunk) -> iterator over the events the chunk completes, each as
** data, type, id: `for data, event, id in p:values(chunk) do ... end`.
*/
static int parser_values(lua_State *L) {
  lparser *lp = checkparser(L);
  fs_checklstring(L, 2, "values", NULL);
  if (lp->p.failed) return raise_failure(L, lp);
  set_input(L, lp, 2);
  return push_iterator(L, lp->gen, values_iter);
}

/*
** p:feed(chunk) -> iterator over the events the chunk completes
** p:feed(chunk, fn) -> nothing; calls fn(data, event, id) per event
** Raises a `protocol` error object when an event or a line is too large;
** the parser then stays failed until p:reset().
*/
static int parser_feed(lua_State *L) {
  lparser *lp = checkparser(L);
  lua_Integer gen;
  strcache cache;
  fs_checklstring(L, 2, "feed", NULL);
  if (!lua_isnoneornil(L, 3) && !fs_iscallable(L, 3))
    fs_usage(L, "bad argument #2 to 'feed' (function expected, got %s)",
             luaL_typename(L, 3));
  if (lp->p.failed) return raise_failure(L, lp);
  set_input(L, lp, 2);
  gen = lp->gen;
  if (lua_isnoneornil(L, 3)) return push_iterator(L, gen, feed_iter);
  lua_settop(L, 3);
  lua_pushliteral(L, "message"); /* 4: type cache */
  lua_pushliteral(L, "");        /* 5: id cache */
  cache_init(L, &cache, 4, 5);
  while (next_event(L, lp, gen, 3, &cache)) lua_call(L, 3, 0);
  return 0;
}

/* p:reset(): back to the start of a stream; an unread input is dropped. */
static int parser_reset(lua_State *L) {
  lparser *lp = checkparser(L);
  drop_input(L, lp);
  sse_reset(&lp->p);
  lp->gen++;
  return 0;
}

/* p:close(), __gc, __close: free the buffers; idempotent, never raises. */
static int parser_close(lua_State *L) {
  lparser *lp = toparser(L);
  if (!lp->closed) {
    lp->closed = 1;
    lp->has_input = 0;
    sse_free(&lp->p);
    lua_pushnil(L);
    fs_setiuservalue(L, 1, UV_INPUT);
  }
  return 0;
}

/* __index: the fields last_event_id and retry, then the methods. */
static int parser_index(lua_State *L) {
  lparser *lp = toparser(L);
  const char *key = lua_tostring(L, 2);
  if (key && strcmp(key, "last_event_id") == 0) {
    lua_pushlstring(L, lp->p.last_id.len ? lp->p.last_id.ptr : "",
                    lp->p.last_id.len);
    return 1;
  }
  if (key && strcmp(key, "retry") == 0) {
    if (lp->p.retry < 0) return 0;
    lua_pushinteger(L, (lua_Integer)lp->p.retry);
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

static int parser_tostring(lua_State *L) {
  lparser *lp = toparser(L);
  lua_pushfstring(L, "fetchstream.Parser (%s%p)", lp->closed ? "closed " : "",
                  (void *)lp);
  return 1;
}

/* core.parser(max_size [, onretry [, oncomment [, last_event_id]]]) -> parser */
static int parser_new(lua_State *L) {
  lua_Integer max = luaL_checkinteger(L, 1);
  unsigned flags = 0;
  lparser *lp;
  if (max <= 0) fs_usage(L, "max_event_size must be a positive integer");
  lua_settop(L, 4);
  if (!lua_isnil(L, 2)) flags |= SSE_WANT_RETRY;
  if (!lua_isnil(L, 3)) flags |= SSE_WANT_COMMENTS;
  lp = (lparser *)fs_newuserdatauv(L, sizeof *lp, 3);
  memset(lp, 0, sizeof *lp);
  sse_init(&lp->p, (size_t)max, flags);
  luaL_setmetatable(L, PARSER_T);
  if (lua_isstring(L, 4)) {
    size_t len;
    const char *id = lua_tolstring(L, 4, &len);
    if (sse_set_last_id(&lp->p, id, len) != SSE_NEED_MORE) return luaL_error(L, "not enough memory");
  }
  lua_pushvalue(L, 2);
  fs_setiuservalue(L, -2, UV_ONRETRY);
  lua_pushvalue(L, 3);
  fs_setiuservalue(L, -2, UV_ONCOMMENT);
  return 1;
}

static const luaL_Reg parser_methods[] = {
  {"feed", parser_feed},
  {"values", parser_values},
  {"reset", parser_reset},
  {"close", parser_close},
  {NULL, NULL}
};

static const luaL_Reg parser_meta[] = {
  {"__gc", parser_close},
  {"__close", parser_close},
  {"__tostring", parser_tostring},
  {NULL, NULL}
};

void fs_parser_open(lua_State *L) {
  luaL_newmetatable(L, EVENT_T); /* its methods are added by the Lua layer */
  lua_setfield(L, -2, "Event");
  luaL_newmetatable(L, PARSER_T);
  luaL_setfuncs(L, parser_meta, 0);
  luaL_newlib(L, parser_methods);
  lua_pushcclosure(L, parser_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, parser_new);
  lua_setfield(L, -2, "parser");
}

/* require "fetchstream.sse.core" -> errors and the parser, without curl:
** what fetchstream.sse (lua/fetchstream/sse.lua) is built on. */
LUAMOD_API int luaopen_fetchstream_sse_core(lua_State *L) {
  lua_newtable(L);
  lua_pushliteral(L, FETCHSTREAM_VERSION);
  lua_setfield(L, -2, "_VERSION");
  fs_error_open(L);
  fs_parser_open(L);
  return 1;
}
