-- Spec for the SSE parser: fetch.parser{...}, p:feed(chunk[, fn]), p:reset().
--
-- Written from the WHATWG HTML standard, "Server-sent events", sections
-- "Parsing an event stream" and "Interpreting an event stream", and from
-- DESIGN.md; not from the implementation.
--
-- The central helper, check(), runs one byte string through many chunkings
-- (whole, byte by byte, every two-piece split, ~20 seeded random patterns
-- with empty chunks) and through both API forms (iterator and fast path).
-- It compares what the parser delivers against a small reference model of
-- the standard's algorithm (model() below), which is itself checked against
-- the hand-written expectation of each test. Besides "the same events from
-- every chunking" it checks that every event (and every onretry/oncomment
-- call) is delivered by the feed whose chunk completed it.

local fetch = require "fetchstream"

local BOM = "\239\187\191"

---------------------------------------------------------------------------
-- formatting

local function esc(s)
  if type(s) ~= "string" then
    return "<" .. type(s) .. ":" .. tostring(s) .. ">"
  end
  s = s:gsub('[\\"]', "\\%0")
  s = s:gsub("[^\32-\126]", function(c)
    return string.format("\\x%02X", c:byte())
  end)
  return '"' .. s .. '"'
end

local function evrepr(data, event, id)
  return string.format("event{type=%s data=%s id=%s}", esc(event), esc(data), esc(id))
end

local function retryrepr(ms)
  -- Lua 5.4 tells integers from floats; LuaJIT has one number type
  return string.format("retry(%s %s)", tostring(ms), math.type and math.type(ms) or type(ms))
end

local function commentrepr(text)
  return "comment(" .. esc(text) .. ")"
end

local function E(data, event, id)
  return { data = data, event = event or "message", id = id or "" }
end

---------------------------------------------------------------------------
-- reference model of the standard's algorithm, over the whole byte string.
-- Returns the entries (events, retries, comments) with the 1-based position
-- of the byte that completes them (the first byte of the terminating line
-- end), plus the final last event ID string and reconnection time.

local function model(input)
  local entries = {}
  local databuf, etype, idbuf, lid, retry = "", "", "", "", nil
  local function add(pos, kind, repr, value)
    entries[#entries + 1] = { pos = pos, kind = kind, repr = repr, value = value }
  end
  local function line(l, pos)
    if l == "" then
      -- dispatch the event
      lid = idbuf
      if databuf == "" then
        etype = ""
        return
      end
      local d = databuf
      if d:sub(-1) == "\n" then d = d:sub(1, -2) end
      local t = etype ~= "" and etype or "message"
      add(pos, "event", evrepr(d, t, lid), E(d, t, lid))
      databuf, etype = "", ""
      return
    end
    if l:sub(1, 1) == ":" then
      local text = l:sub(2)
      if text:sub(1, 1) == " " then text = text:sub(2) end
      add(pos, "comment", commentrepr(text), text)
      return
    end
    local field, value
    local c = l:find(":", 1, true)
    if c then
      field, value = l:sub(1, c - 1), l:sub(c + 1)
      if value:sub(1, 1) == " " then value = value:sub(2) end
    else
      field, value = l, ""
    end
    if field == "event" then
      etype = value
    elseif field == "data" then
      databuf = databuf .. value .. "\n"
    elseif field == "id" then
      if not value:find("\0", 1, true) then idbuf = value end
    elseif field == "retry" then
      if value:find("^[0-9]+$") then
        retry = tonumber(value)
        if math.tointeger then retry = math.tointeger(retry) end -- nil past 2^63 (5.4)
        add(pos, "retry", retryrepr(retry), retry)
      end
    end
  end
  local i, n = 1, #input
  if input:sub(1, 3) == BOM then i = 4 end
  while i <= n do
    local s = input:find("[\r\n]", i)
    if not s then break end
    line(input:sub(i, s - 1), s)
    if input:byte(s) == 13 and input:byte(s + 1) == 10 then i = s + 2 else i = s + 1 end
  end
  return { entries = entries, last_event_id = lid, retry = retry }
end

---------------------------------------------------------------------------
-- chunkings

local function rng(seed)
  local state = seed
  return function(lo, hi)
    -- state * 1103515245 mod 2^31 in two halves of the multiplier, so that
    -- every product stays below 2^53: exact on 5.4 and on LuaJIT's doubles.
    state = (state * 20077 + (state * 16838 % 32768) * 65536 + 12345) % 2147483648
    return lo + math.floor(state / 65536) % (hi - lo + 1)
  end
end

local function chunkings(input, opt)
  opt = opt or {}
  local n = #input
  local list = { { name = "whole", chunks = { input } } }
  list[#list + 1] = { name = "padded with empty chunks", chunks = { "", input, "" } }
  if n > 1 then
    local b = {}
    for i = 1, n do b[i] = input:sub(i, i) end
    list[#list + 1] = { name = "byte by byte", chunks = b }
  end
  if opt.pairs ~= false and n <= (opt.max_pairs or 600) then
    for k = 1, n - 1 do
      list[#list + 1] = { name = "split at " .. k, chunks = { input:sub(1, k), input:sub(k + 1) } }
    end
  end
  local rand = rng(opt.seed or 20240521)
  local sizes = { 1, 2, 3, 4, 5, 7, 11, 16, 32, 64 }
  for j = 1, (opt.random or 20) do
    local maxlen = math.max(1, math.min(sizes[(j - 1) % #sizes + 1], n))
    if j > #sizes then maxlen = math.max(1, rand(1, math.max(1, n))) end
    local chunks, pos = {}, 1
    while pos <= n do
      if rand(1, 8) == 1 then chunks[#chunks + 1] = "" end
      local len = rand(1, maxlen)
      chunks[#chunks + 1] = input:sub(pos, pos + len - 1)
      pos = pos + len
    end
    local cuts = {}
    local at = 0
    for _, c in ipairs(chunks) do at = at + #c; cuts[#cuts + 1] = at end
    list[#list + 1] = { name = "random #" .. j .. " (chunk ends " .. table.concat(cuts, ",") .. ")",
                        chunks = chunks }
  end
  return list
end

---------------------------------------------------------------------------
-- running the parser

local function stable_partition(list)
  -- events first, then the callback entries; each kind keeps its order
  local out = {}
  for _, e in ipairs(list) do if e.kind == "event" then out[#out + 1] = e end end
  for _, e in ipairs(list) do if e.kind ~= "event" then out[#out + 1] = e end end
  return out
end

-- Feeds the chunks to a fresh parser in the given mode ("iter" or "fast").
-- Returns a per-chunk list of delivered entries and the parser.
local function run(chunks, mode, popts)
  local sink = {}
  local o = {}
  for k, v in pairs(popts or {}) do o[k] = v end
  o.onretry = function(ms) sink.cur[#sink.cur + 1] = { kind = "retry", repr = retryrepr(ms) } end
  o.oncomment = function(text) sink.cur[#sink.cur + 1] = { kind = "comment", repr = commentrepr(text) } end
  local p = fetch.parser(o)
  local per_chunk = {}
  local refs = {}
  for i, c in ipairs(chunks) do
    sink.cur = {}
    per_chunk[i] = sink.cur
    if mode == "fast" then
      p:feed(c, function(data, event, id)
        sink.cur[#sink.cur + 1] = { kind = "event", repr = evrepr(data, event, id) }
      end)
    else
      for ev in p:feed(c) do
        -- keep the table itself; read it at the end (catches table reuse)
        local e = { kind = "event", ref = ev }
        sink.cur[#sink.cur + 1] = e
        refs[#refs + 1] = e
      end
    end
  end
  for _, e in ipairs(refs) do
    local ev = e.ref
    if type(ev) ~= "table" then
      e.repr = "<non-table event: " .. tostring(ev) .. ">"
    else
      e.repr = evrepr(ev.data, ev.event, ev.id)
    end
  end
  if mode == "iter" then
    -- the iterator form does not order onretry/oncomment calls relative to
    -- the loop body; only each kind's own order is compared
    for i, list in ipairs(per_chunk) do per_chunk[i] = stable_partition(list) end
  end
  return per_chunk, p
end

local function render_chunks(per_chunk)
  local out = {}
  for i, list in ipairs(per_chunk) do
    if #list > 0 then
      local r = {}
      for j, e in ipairs(list) do r[j] = e.repr end
      out[#out + 1] = "chunk " .. i .. ": " .. table.concat(r, " ")
    end
  end
  return table.concat(out, "\n")
end

local function render_flat(per_chunk, kinds)
  local out = {}
  for _, list in ipairs(per_chunk) do
    for _, e in ipairs(list) do
      if kinds[e.kind] then out[#out + 1] = e.repr end
    end
  end
  return table.concat(out, "\n")
end

local ALL = { event = true, retry = true, comment = true }
local EVENTS = { event = true }
local CALLBACKS = { retry = true, comment = true }

-- Distribute the model's entries over the chunks that complete them.
local function expected_per_chunk(m, chunks, mode)
  local per_chunk = {}
  local start = 1
  local k = 1
  for i, c in ipairs(chunks) do
    local stop = start + #c - 1
    local list = {}
    while m.entries[k] and m.entries[k].pos >= start and m.entries[k].pos <= stop do
      list[#list + 1] = m.entries[k]
      k = k + 1
    end
    per_chunk[i] = mode == "iter" and stable_partition(list) or list
    start = stop + 1
  end
  assert(m.entries[k] == nil, "internal: model entry past the input")
  return per_chunk
end

local function list_repr(list, f)
  local out = {}
  for i, v in ipairs(list) do out[i] = f(v) end
  return table.concat(out, "\n")
end

-- check(input, expect, opts)
--   expect: { events = {E(...), ...}, retries = {...}, comments = {...},
--             last_event_id = "...", retry = n }   (each optional)
--   opts:   chunking options (pairs, random, seed) and parser options (parser = {...})
local function check(input, expect, opts)
  opts = opts or {}
  local m = model(input)

  -- 1. the hand-written expectation and the model must agree (spec self-check)
  if expect then
    local ctx = "SPEC SELF-CHECK (model vs expectation) for input " .. esc(input)
    if expect.events then
      local got = {}
      for _, e in ipairs(m.entries) do if e.kind == "event" then got[#got + 1] = e.value end end
      assert.are.equal(list_repr(expect.events, function(e) return evrepr(e.data, e.event, e.id) end),
                       list_repr(got, function(e) return evrepr(e.data, e.event, e.id) end), ctx)
    end
    if expect.retries then
      local got = {}
      for _, e in ipairs(m.entries) do if e.kind == "retry" then got[#got + 1] = e.value end end
      assert.are.equal(list_repr(expect.retries, retryrepr), list_repr(got, retryrepr), ctx)
    end
    if expect.comments then
      local got = {}
      for _, e in ipairs(m.entries) do if e.kind == "comment" then got[#got + 1] = e.value end end
      assert.are.equal(list_repr(expect.comments, commentrepr), list_repr(got, commentrepr), ctx)
    end
    if expect.last_event_id then assert.are.equal(expect.last_event_id, m.last_event_id, ctx) end
    if expect.retry ~= nil then assert.are.equal(expect.retry, m.retry, ctx) end
    if expect.no_retry then assert.is_nil(m.retry, ctx) end
  end

  -- 2. run every chunking in both forms
  local runs = {}
  for _, ch in ipairs(chunkings(input, opts)) do
    for _, mode in ipairs({ "iter", "fast" }) do
      local ok, per_chunk, p = pcall(run, ch.chunks, mode, opts.parser)
      if not ok then
        error(string.format("parser raised %s\n  mode: %s\n  chunking: %s\n  input: %s",
          tostring(per_chunk), mode, ch.name, esc(input)), 0)
      end
      runs[#runs + 1] = { ch = ch, mode = mode, per_chunk = per_chunk, p = p }
    end
  end

  -- 3. same events (and callbacks) from every chunking and both forms
  local want_events = render_flat({ m.entries }, EVENTS)
  local want_callbacks = render_flat({ m.entries }, CALLBACKS)
  local want_all = render_flat({ m.entries }, ALL)
  for _, r in ipairs(runs) do
    local ctx = string.format("mode %s, chunking %s, input %s", r.mode, r.ch.name, esc(input))
    assert.are.equal(want_events, render_flat(r.per_chunk, EVENTS), "events differ: " .. ctx)
    assert.are.equal(want_callbacks, render_flat(r.per_chunk, CALLBACKS),
                     "onretry/oncomment calls differ: " .. ctx)
    if r.mode == "fast" then
      assert.are.equal(want_all, render_flat(r.per_chunk, ALL),
                       "order of events and onretry/oncomment calls differs: " .. ctx)
    end
  end

  -- 4. every entry is delivered by the feed whose chunk completed it
  for _, r in ipairs(runs) do
    local ctx = string.format("mode %s, chunking %s, input %s", r.mode, r.ch.name, esc(input))
    assert.are.equal(render_chunks(expected_per_chunk(m, r.ch.chunks, r.mode)),
                     render_chunks(r.per_chunk),
                     "delivered by the wrong feed call (event not delivered by the chunk that completed it): "
                     .. ctx)
  end

  -- 5. final state
  for _, r in ipairs(runs) do
    local ctx = string.format("mode %s, chunking %s, input %s", r.mode, r.ch.name, esc(input))
    assert.are.equal(esc(m.last_event_id), esc(r.p.last_event_id), "p.last_event_id: " .. ctx)
    assert.are.equal(m.retry == nil and "nil" or retryrepr(m.retry),
                     r.p.retry == nil and "nil" or retryrepr(r.p.retry), "p.retry: " .. ctx)
  end
end

---------------------------------------------------------------------------
-- small direct helpers

local function iter_events(p, chunk)
  local out = {}
  for ev in p:feed(chunk) do out[#out + 1] = { data = ev.data, event = ev.event, id = ev.id } end
  return out
end

local function fast_events(p, chunk)
  local out = {}
  p:feed(chunk, function(data, event, id) out[#out + 1] = { data = data, event = event, id = id } end)
  return out
end

-- reads the first event of a chunk and breaks out of the loop
local function first_then_break(p, chunk)
  for ev in p:feed(chunk) do -- luacheck: ignore 512 (the break is the point)
    return ev
  end
end

local FORMS = { iter = iter_events, fast = fast_events }

local function assert_error_object(err, kind)
  assert.are.equal("table", type(err), "error must be an error object, got " .. type(err) .. ": " .. tostring(err))
  assert.are.equal(kind, err.kind, "err.kind (message: " .. tostring(err.message) .. ")")
  assert.are.equal("string", type(err.message))
  local s = tostring(err)
  assert.is_truthy(s:find("^fetchstream: "), "tostring(err) must start with 'fetchstream: ', got " .. esc(s))
  assert.is_falsy(s:find("[\r\n]"), "tostring(err) must be one line, got " .. esc(s))
end

-- feed all chunks in one form; returns ok, err
local function feed_all(p, chunks, mode)
  return pcall(function()
    for _, c in ipairs(chunks) do
      if mode == "fast" then
        p:feed(c, function() end)
      else
        for _ in p:feed(c) do end
      end
    end
  end)
end

local function raises_usage(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected a usage error, but the call succeeded")
  assert_error_object(err, "usage")
  return err
end

---------------------------------------------------------------------------

describe("fetch.parser", function()

  describe("surface", function()
    it("creates a parser with no options and with an empty table", function()
      for _, p in ipairs({ fetch.parser(), fetch.parser{} }) do
        assert.are.equal("", p.last_event_id)
        assert.is_nil(p.retry)
        assert.are.same({}, iter_events(p, ""))
        assert.are.same({}, fast_events(p, ""))
      end
    end)

    it("delivers event tables with string fields and a json method", function()
      local p = fetch.parser()
      local got = {}
      for ev in p:feed('data: {"a":[1,2],"b":"\195\188"}\n\n') do got[#got + 1] = ev end
      assert.are.equal(1, #got)
      local ev = got[1]
      assert.are.equal("message", ev.event)
      assert.are.equal('{"a":[1,2],"b":"\195\188"}', ev.data)
      assert.are.equal("", ev.id)
      local obj = ev:json()
      assert.are.equal(2, obj.a[2])
      assert.are.equal("\195\188", obj.b)
    end)

    it("gives the fast-path function data, event type and id, in that order", function()
      local p = fetch.parser()
      local args
      p:feed("id: 7\nevent: upd\ndata: x\n\n", function(...) args = table.pack(...) end)
      assert.are.equal("x", args[1])
      assert.are.equal("upd", args[2])
      assert.are.equal("7", args[3])
    end)

    it("delivers a distinct table for every event", function()
      local p = fetch.parser()
      local got = {}
      for ev in p:feed("data: 1\n\ndata: 2\n\n") do got[#got + 1] = ev end
      for ev in p:feed("data: 3\n\n") do got[#got + 1] = ev end
      assert.are.equal(3, #got)
      assert.are.equal("1", got[1].data)
      assert.are.equal("2", got[2].data)
      assert.are.equal("3", got[3].data)
    end)

    it("ev:json() on data that is not JSON is a protocol error", function()
      local p = fetch.parser()
      local ev
      for e in p:feed("data: [DONE]\n\n") do ev = e end
      local ok, res, err = pcall(ev.json, ev)
      if ok then
        -- returned nil, err
        assert.is_nil(res, "ev:json() on '[DONE]' must not succeed")
        assert_error_object(err, "protocol")
      else
        assert_error_object(res, "protocol")
      end
    end)
  end)

  describe("line endings", function()
    it("LF", function()
      check("data: a\ndata: b\n\ndata: c\n\n", { events = { E"a\nb", E"c" } })
    end)

    it("CR", function()
      check("data: a\rdata: b\r\rdata: c\r\r", { events = { E"a\nb", E"c" } })
    end)

    it("CRLF", function()
      check("data: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n", { events = { E"a\nb", E"c" } })
    end)

    it("mixed in one stream", function()
      check("data: a\rdata: b\r\ndata: c\n\r\ndata: d\r\r:x\r\nevent: e\ndata: f\r\n\n",
        { events = { E"a\nb\nc", E"d", E("f", "e") }, comments = { "x" } })
    end)

    it("CR CR is two line ends", function()
      check("data: a\r\rdata: b\r\r", { events = { E"a", E"b" } })
    end)

    it("LF CR is two line ends", function()
      check("data: a\n\rdata: b\n\n", { events = { E"a", E"b" } })
    end)

    it("CR CR LF is two line ends (a CR, then a CRLF)", function()
      check("data: a\r\r\ndata: b\n\n", { events = { E"a", E"b" } })
    end)

    it("CR LF LF is two line ends (a CRLF, then an LF)", function()
      check("data: a\r\n\ndata: b\r\n\r\n", { events = { E"a", E"b" } })
    end)

    it("a CR ending one chunk and an LF starting the next are one line end", function()
      for name, f in pairs(FORMS) do
        local p = fetch.parser()
        assert.are.same({}, f(p, "data: a\r"), name)
        assert.are.same({ E"a\nb" }, f(p, "\ndata: b\r\n\r\n"), name)
      end
    end)

    it("an empty chunk between the CR and the LF does not break the pair", function()
      for name, f in pairs(FORMS) do
        local p = fetch.parser()
        assert.are.same({}, f(p, "data: a\r"), name)
        assert.are.same({}, f(p, ""), name)
        assert.are.same({}, f(p, "\n"), name)
        assert.are.same({ E"a\nb" }, f(p, "data: b\n\n"), name)
      end
    end)

    it("a CR ending a chunk dispatches at once (no waiting for the next byte)", function()
      for name, f in pairs(FORMS) do
        local p = fetch.parser()
        assert.are.same({ E"x" }, f(p, "data: x\r\r"), name)
        assert.are.same({ E"y" }, f(p, "\ndata: y\r\r"), name)
        assert.are.same({}, f(p, "\n"), name .. " (an LF after a CR is part of the CRLF, not a blank line)")
        assert.are.same({}, f(p, "data: z\r"), name)
        assert.are.same({ E"z" }, f(p, "\r"), name)
      end
    end)

    it("a CR-terminated blank line right after a CRLF chunk boundary", function()
      for name, f in pairs(FORMS) do
        local p = fetch.parser()
        assert.are.same({}, f(p, "data: a\r\n"), name)
        assert.are.same({ E"a" }, f(p, "\r"), name)
        assert.are.same({}, f(p, "\n"), name)
        assert.are.same({}, f(p, "data: b\r\n"), name)
        assert.are.same({ E"b" }, f(p, "\n"), name)
      end
    end)

    it("blank lines alone dispatch nothing", function()
      check("\n\n\r\n\r\r\n\r\r\n", { events = {}, last_event_id = "" })
    end)

    it("empty input", function()
      check("", { events = {} })
    end)
  end)

  describe("byte order mark", function()
    it("one leading BOM is stripped", function()
      check(BOM .. "data: x\n\n", { events = { E"x" } })
    end)

    it("the stripped BOM does not hide the first line from being a comment", function()
      check(BOM .. ":hi\ndata: x\n\n", { events = { E"x" }, comments = { "hi" } })
    end)

    it("a BOM followed by a CRLF", function()
      check(BOM .. "\r\ndata: x\r\n\r\n", { events = { E"x" } })
    end)

    it("a BOM split across chunks byte by byte", function()
      for name, f in pairs(FORMS) do
        local p = fetch.parser()
        assert.are.same({}, f(p, "\239"), name)
        assert.are.same({}, f(p, "\187"), name)
        assert.are.same({}, f(p, "\191"), name)
        assert.are.same({ E"x" }, f(p, "data: x\n\n"), name)
      end
    end)

    it("an empty first chunk does not use up the stream start", function()
      for name, f in pairs(FORMS) do
        local p = fetch.parser()
        assert.are.same({}, f(p, ""), name)
        assert.are.same({ E"x" }, f(p, BOM .. "data: x\n\n"), name)
      end
    end)

    it("a second BOM is part of the field name", function()
      check(BOM .. BOM .. "data: 1\n\ndata: 2\n\n", { events = { E"2" } })
    end)

    it("a BOM at the start of a later line is part of the field name", function()
      check(BOM .. "data: 1\n\n" .. BOM .. "data: 2\n\ndata: 3\n\n", { events = { E"1", E"3" } })
    end)

    it("a BOM not at stream start is not stripped", function()
      check("data: 1\n\n" .. BOM .. "data: 2\n\n", { events = { E"1" } })
      check("\n" .. BOM .. "data: x\n\n", { events = {} })
    end)

    it("a BOM inside a value is data", function()
      check("data: " .. BOM .. "x\n\n", { events = { E(BOM .. "x") } })
      check(BOM .. "data:" .. BOM .. "\n\n", { events = { E(BOM) } })
    end)

    it("a partial BOM at stream start is part of the first line", function()
      check("\239\187data: x\n\ndata: y\n\n", { events = { E"y" } })
      check("\239data: x\n\ndata: y\n\n", { events = { E"y" } })
      check("\239\ndata: y\n\n", { events = { E"y" } })
      check("\239\187\ndata: y\n\n", { events = { E"y" } })
      check("\239\187\rdata: y\r\r", { events = { E"y" } })
    end)

    it("a partial BOM then a blank line is a field line, not a blank line", function()
      -- "data: a" then the line "\239" (an unknown field) then a blank line
      check("data: a\n\239\n\n", { events = { E"a" } })
    end)

    it("a BOM then the id field", function()
      check(BOM .. "id: 1\n\n", { events = {}, last_event_id = "1" })
    end)
  end)

  describe("comments", function()
    it("gives the text after the colon, with one leading space removed", function()
      check(":hello\n: hello\n:  hello\n:\n: \n:a:b\n",
        { events = {}, comments = { "hello", "hello", " hello", "", "", "a:b" } })
    end)

    it("with every line end", function()
      check(": a\r: b\r\n: c\n", { comments = { "a", "b", "c" } })
    end)

    it("do not dispatch and do not disturb the event being built", function()
      check("event: e\n: c1\ndata: a\n:c2\ndata: b\n\n:c3\n\n",
        { events = { E("a\nb", "e") }, comments = { "c1", "c2", "c3" } })
    end)

    it("are reported in order with the events (fast path)", function()
      local log = {}
      local p = fetch.parser{ oncomment = function(t) log[#log + 1] = "comment " .. t end }
      p:feed("data: a\n\n: c\ndata: b\n\n: d\n", function(d) log[#log + 1] = "event " .. d end)
      assert.are.same({ "event a", "comment c", "event b", "comment d" }, log)
    end)

    it("pass bytes through unchanged", function()
      check(": \0\255\254 \195\169\n", { comments = { "\0\255\254 \195\169" } })
    end)

    it("a comment-only stream dispatches nothing", function()
      check(": keep-alive\n\n: keep-alive\n\n", { events = {}, comments = { "keep-alive", "keep-alive" } })
    end)

    it("work without an oncomment callback", function()
      local p = fetch.parser()
      assert.are.same({ E"x" }, iter_events(p, ": hi\ndata: x\n\n"))
    end)
  end)

  describe("fields", function()
    it("exactly one space after the colon is removed", function()
      check("data:a\n\ndata: a\n\ndata:  a\n\ndata:   a\n\n",
        { events = { E"a", E"a", E" a", E"  a" } })
    end)

    it("a tab after the colon is kept", function()
      check("data:\ta\n\n", { events = { E"\ta" } })
    end)

    it("trailing spaces are kept", function()
      check("data: a  \n\n", { events = { E"a  " } })
    end)

    it("splits at the first colon only", function()
      check("data: a:b: c\n\ndata::\n\ndata:: x\n\n", { events = { E"a:b: c", E":", E": x" } })
    end)

    it("a line with no colon is a field name with an empty value", function()
      check("data\n\n", { events = { E"" } })
      check("data\ndata\n\n", { events = { E"\n" } })
      check("event\ndata: x\n\n", { events = { E"x" } })
    end)

    it("field names are case-sensitive", function()
      check("Data: x\n\nDATA: x\n\nEvent: e\nEVENT: e\nID: 1\nId: 1\nRetry: 5\ndata: y\n\n",
        { events = { E"y" }, last_event_id = "", no_retry = true })
    end)

    it("unknown fields are ignored", function()
      check("foo: bar\ndata: x\nbaz\nx-data: y\ndatax: z\ndat: w\n\n", { events = { E"x" } })
    end)

    it("a space before the colon or at line start makes a different field name", function()
      check("data : x\n\n data: x\n\n", { events = {} })
      check("data: a\n data: b\ndata : c\ndata: d\n\n", { events = { E"a\nd" } })
    end)

    it("a line of spaces is not a blank line", function()
      check("data: a\n \ndata: b\n\n", { events = { E"a\nb" } })
    end)

    it("a mixed field-parsing stress line set", function()
      -- lines: data:NUL | data:  two | DATA:no | data NUL :no | data:3 | NUL data:no | d-ata:no
      --        | data_no | data: | " data:no" | data:end | blank
      check("data:\0\ndata:  two\rDATA:no\ndata\0:no\ndata:3\r\0data:no\nd-ata:no\rdata_no\n"
            .. "data:\r\n data:no\ndata:end\n\n",
        { events = { E"\0\n two\n3\n\nend" } })
    end)
  end)

  describe("data", function()
    it("lines are joined with LF", function()
      check("data: a\ndata: b\ndata: c\n\n", { events = { E"a\nb\nc" } })
    end)

    it("only the final LF is removed", function()
      check("data: a\ndata:\n\n", { events = { E"a\n" } })
      check("data:\ndata: a\n\n", { events = { E"\na" } })
      check("data:\ndata:\ndata:\n\n", { events = { E"\n\n" } })
    end)

    it("empty data gives an event with data ''", function()
      check("data:\n\n", { events = { E"" } })
      check("data: \n\n", { events = { E"" } })
      check("data:  \n\n", { events = { E" " } })
    end)

    it("extra blank lines dispatch nothing more", function()
      check("data: a\n\n\n\n\ndata: b\n\n\n", { events = { E"a", E"b" } })
    end)

    it("the data buffer is emptied by every dispatch", function()
      check("data: a\n\ndata: b\n\ndata: c\n\n", { events = { E"a", E"b", E"c" } })
    end)
  end)

  describe("event type", function()
    it("defaults to message", function()
      check("data: x\n\n", { events = { E("x", "message") } })
    end)

    it("is set by the event field", function()
      check("event: add\ndata: 1\n\n", { events = { E("1", "add") } })
    end)

    it("resets after each dispatch", function()
      check("event: add\ndata: 1\n\ndata: 2\n\n", { events = { E("1", "add"), E"2" } })
    end)

    it("resets after a blank line that dispatched nothing", function()
      check("event: add\n\ndata: 2\n\n", { events = { E"2" } })
    end)

    it("empty event field means message", function()
      check("event:\ndata: x\n\nevent: \ndata: y\n\n", { events = { E"x", E"y" } })
    end)

    it("the last event field of a block wins, even an empty one", function()
      check("event: a\nevent: b\ndata: x\n\nevent: a\nevent:\ndata: y\n\n",
        { events = { E("x", "b"), E"y" } })
    end)

    it("keeps extra spaces and odd bytes", function()
      check("event:  sp\ndata: x\n\nevent: t\0y\255\ndata: z\n\n",
        { events = { E("x", " sp"), E("z", "t\0y\255") } })
    end)

    it("the event field may come after the data", function()
      check("data: x\nevent: late\n\n", { events = { E("x", "late") } })
    end)
  end)

  describe("id", function()
    it("persists across events", function()
      check("id: 1\ndata: a\n\ndata: b\n\n", { events = { E("a", nil, "1"), E("b", nil, "1") },
        last_event_id = "1" })
    end)

    it("an id after the data in the same block applies to that event", function()
      check("data: a\nid: 1\n\n", { events = { E("a", nil, "1") }, last_event_id = "1" })
    end)

    it("the last id field of a block wins", function()
      check("id: 1\nid: 2\ndata: a\n\n", { events = { E("a", nil, "2") } })
    end)

    it("an empty id field resets it to ''", function()
      check("id: 1\ndata: a\n\nid:\ndata: b\n\n",
        { events = { E("a", nil, "1"), E("b", nil, "") }, last_event_id = "" })
      check("id: 1\ndata: a\n\nid\ndata: b\n\n",
        { events = { E("a", nil, "1"), E("b", nil, "") }, last_event_id = "" })
    end)

    it("an id containing NUL is ignored", function()
      check("id: 1\ndata: a\n\nid: 2\0\ndata: b\n\nid: \0\ndata: c\n\n",
        { events = { E("a", nil, "1"), E("b", nil, "1"), E("c", nil, "1") }, last_event_id = "1" })
    end)

    it("an id in a block with no data still updates last_event_id", function()
      check("id: 7\n\ndata: y\n\n", { events = { E("y", nil, "7") }, last_event_id = "7" })
      check("id: 7\n\n", { events = {}, last_event_id = "7" })
      check("id: 7\n\n\n\ndata: z\n\n", { events = { E("z", nil, "7") } })
    end)

    it("p.last_event_id changes when a blank line dispatches, not at the id field", function()
      for name, f in pairs(FORMS) do
        local p = fetch.parser()
        f(p, "id: 7\n\n")
        assert.are.equal("7", p.last_event_id, name)
        f(p, "id: 8\n")
        assert.are.equal("7", p.last_event_id, name .. ": id field seen, block not yet dispatched")
        f(p, "\n")
        assert.are.equal("8", p.last_event_id, name)
        f(p, "id:\ndata: x\n")
        assert.are.equal("8", p.last_event_id, name)
        f(p, "\n")
        assert.are.equal("", p.last_event_id, name)
      end
    end)

    it("the id of an unterminated final block never takes effect", function()
      check("id: 1\ndata: a\n\nid: 9\ndata: b\n", { events = { E("a", nil, "1") }, last_event_id = "1" })
    end)

    it("keeps spaces and bytes", function()
      check("id:  x\ndata: a\n\nid: a b\xff\ndata: b\n\n",
        { events = { E("a", nil, " x"), E("b", nil, "a b\xff") } })
    end)
  end)

  describe("retry", function()
    it("a valid retry sets p.retry (an integer) and calls onretry, without waiting for a blank line", function()
      for name, f in pairs(FORMS) do
        local calls = {}
        local p = fetch.parser{ onretry = function(ms) calls[#calls + 1] = ms end }
        assert.is_nil(p.retry)
        f(p, "retry: 1500\n")
        assert.are.equal(1500, p.retry, name)
        assert.are.same({ 1500 }, calls, name)
        if math.type then -- Lua 5.4's subtype; LuaJIT has one number type
          assert.are.equal("integer", math.type(p.retry), name)
          assert.are.equal("integer", math.type(calls[1]), name)
        end
      end
    end)

    it("is not processed before its line ends", function()
      check("retry: 100", { retries = {}, no_retry = true })
    end)

    it("accepts all-digit values, leading zeros included", function()
      check("retry:1500\n", { retries = { 1500 }, retry = 1500 })
      check("retry: 0\n", { retries = { 0 }, retry = 0 })
      check("retry: 007\n", { retries = { 7 }, retry = 7 })
    end)

    local bogus = {
      ["1.5"] = "retry: 1.5\n",
      ["-1"] = "retry: -1\n",
      ["10a"] = "retry: 10a\n",
      ["' 100' (second space)"] = "retry:  100\n",
      ["empty after colon"] = "retry:\n",
      ["' ' only"] = "retry: \n",
      ["no colon"] = "retry\n",
      ["+5"] = "retry: +5\n",
      ["0x10"] = "retry: 0x10\n",
      ["1 000"] = "retry: 1 000\n",
      ["trailing space"] = "retry: 5 \n",
      ["1e3"] = "retry: 1e3\n",
      ["fullwidth digit"] = "retry: \239\188\149\n",
      ["NUL after digits"] = "retry: 5\0\n",
    }
    for label, input in pairs(bogus) do
      it("ignores " .. label, function()
        check(input, { retries = {}, no_retry = true, events = {} })
      end)
    end

    it("an invalid retry keeps the earlier valid value", function()
      check("retry: 100\nretry: x\nretry: 2.5\n", { retries = { 100 }, retry = 100 })
    end)

    it("every valid retry is reported", function()
      check("retry: 100\nretry: 200\n", { retries = { 100, 200 }, retry = 200 })
    end)

    it("does not disturb the event being built", function()
      check("data: a\nretry: 5\ndata: b\n\n", { events = { E"a\nb" }, retries = { 5 } })
    end)

    it("onretry is called in order with the events (fast path)", function()
      local log = {}
      local p = fetch.parser{ onretry = function(ms) log[#log + 1] = "retry " .. ms end }
      p:feed("data: a\n\nretry: 10\ndata: b\n\nretry: 20\n", function(d) log[#log + 1] = "event " .. d end)
      assert.are.same({ "event a", "retry 10", "event b", "retry 20" }, log)
    end)

    it("a large (but representable) value", function()
      check("retry: 3600000000\n", { retries = { 3600000000 }, retry = 3600000000 })
    end)

    it("an absurdly long digit string does not crash the parser", function()
      local p = fetch.parser()
      local ok = pcall(function() for _ in p:feed("retry: " .. ("9"):rep(400) .. "\ndata: x\n\n") do end end)
      -- whatever it decides about the value, the parser must survive and keep parsing
      assert.is_true(ok)
      assert.are.same({ E"y" }, iter_events(p, "data: y\n\n"))
      if math.type then
        assert.is_true(p.retry == nil or math.type(p.retry) == "integer")
      else -- LuaJIT has one number type: a whole number
        assert.is_true(p.retry == nil or p.retry == math.floor(p.retry))
      end
    end)
  end)

  describe("dispatch", function()
    it("a blank line with an empty data buffer dispatches nothing", function()
      check("event: e\n\nid: 1\n\nretry: 5\n\n: c\n\nfoo: bar\n\n", { events = {}, last_event_id = "1" })
    end)

    it("an unterminated final event is never dispatched", function()
      check("data: a", { events = {} })
      check("data: a\n", { events = {} })
      check("data: a\r", { events = {} })
      check("data: a\r\n", { events = {} })
      check("data: a\n\ndata: b\n", { events = { E"a" } })
      check("data: a\n\nevent: x\ndata: b\ndata: c", { events = { E"a" } })
    end)

    it("many events in one chunk", function()
      local parts, want = {}, {}
      for i = 1, 200 do
        parts[#parts + 1] = "id: " .. i .. "\ndata: " .. i .. "\n\n"
        want[#want + 1] = E(tostring(i), nil, tostring(i))
      end
      check(table.concat(parts), { events = want, last_event_id = "200" }, { pairs = false })
    end)
  end)

  describe("bytes pass through", function()
    it("NUL bytes in data", function()
      check("data: a\0b\0\n\ndata:\0\n\n", { events = { E"a\0b\0", E"\0" } })
    end)

    it("invalid UTF-8 in data", function()
      check("data: \255\254\192\128\237\160\128\128\n\ndata: \230\151\n\n",
        { events = { E"\255\254\192\128\237\160\128\128", E"\230\151" } })
    end)

    it("every byte value other than CR and LF", function()
      local b = {}
      for i = 0, 255 do if i ~= 10 and i ~= 13 then b[#b + 1] = string.char(i) end end
      local all = table.concat(b)
      check("data:" .. all .. "\n\n", { events = { E(all) } }, { pairs = true, max_pairs = 1000 })
    end)

    it("multi-byte UTF-8 characters split across chunks come through intact", function()
      local s = "\230\151\165\230\156\172\232\170\158 \195\188n\195\175c\195\182d\195\169 \240\159\152\128 \226\130\172"
      check("event: \240\159\152\128\nid: \195\169\ndata: " .. s .. "\ndata: " .. s .. "\n\n",
        { events = { E(s .. "\n" .. s, "\240\159\152\128", "\195\169") } })
    end)

    it("a large event with the default limit", function()
      local big = ("0123456789abcdef"):rep(65536) -- 1 MiB
      for name, f in pairs(FORMS) do
        local p = fetch.parser()
        local input = "data: " .. big .. "\n\n"
        local got = {}
        for i = 1, #input, 4096 do
          for _, e in ipairs(f(p, input:sub(i, i + 4095))) do got[#got + 1] = e end
        end
        assert.are.equal(1, #got, name)
        assert.is_true(got[1].data == big, name .. ": 1 MiB data must come through intact")
      end
    end)
  end)

  describe("examples from the standard", function()
    it("multi-line data", function()
      check("data: YHOO\ndata: +2\ndata: 10\n\n", { events = { E"YHOO\n+2\n10" } })
    end)

    it("comments, ids and a leading space", function()
      check(": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n",
        { events = { E("first event", nil, "1"), E("second event", nil, ""), E(" third event", nil, "") },
          comments = { "test stream" }, last_event_id = "" })
    end)

    it("the end of the stream is not enough to dispatch", function()
      check("data\n\ndata\ndata\n\ndata:", { events = { E"", E"\n" } })
    end)

    it("one optional space", function()
      check("data:test\n\ndata: test\n\n", { events = { E"test", E"test" } })
    end)

    it("event types", function()
      check("event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\nevent: add\ndata: 113411\n\n",
        { events = { E("73857293", "add"), E("2153", "remove"), E("113411", "add") } })
    end)
  end)

  describe("size limit", function()
    local forms = { "iter", "fast" }

    local function expect_protocol(p, chunks, mode, limit, what)
      local ok, err = feed_all(p, chunks, mode)
      assert.is_false(ok, what .. " (" .. mode .. "): expected a protocol error")
      assert_error_object(err, "protocol")
      assert.is_truthy(err.message:find(tostring(limit), 1, true),
        "the message must name the limit " .. limit .. ", got " .. esc(err.message))
      return err
    end

    it("a line larger than max_event_size is a protocol error naming the limit", function()
      local input = "data: " .. ("x"):rep(3000) .. "\n\n"
      for _, ch in ipairs(chunkings(input, { pairs = false, random = 5 })) do
        for _, mode in ipairs(forms) do
          expect_protocol(fetch.parser{ max_event_size = 1234 }, ch.chunks, mode, 1234, ch.name)
        end
      end
    end)

    it("a line with no terminator fails as soon as it passes the limit (memory stays bounded)", function()
      for _, mode in ipairs(forms) do
        local p = fetch.parser{ max_event_size = 1000 }
        local fed = 0
        local ok, err = pcall(function()
          for _ = 1, 10000 do
            if mode == "fast" then p:feed("x", function() end) else for _ in p:feed("x") do end end
            fed = fed + 1
          end
        end)
        assert.is_false(ok, mode .. ": 10000 bytes in one line with max_event_size 1000 must fail")
        assert_error_object(err, "protocol")
        assert.is_true(fed <= 2000, mode .. ": failed only after " .. fed .. " bytes")
      end
    end)

    it("an unknown-field line and a comment line are lines too", function()
      for _, mode in ipairs(forms) do
        expect_protocol(fetch.parser{ max_event_size = 500 }, { ("y"):rep(2000) .. "\n" }, mode, 500, "field name")
        expect_protocol(fetch.parser{ max_event_size = 500 }, { ":" .. ("y"):rep(2000) .. "\n" }, mode, 500,
          "comment")
      end
    end)

    it("many short data lines summing over the limit are a protocol error", function()
      local input = ("data: " .. ("x"):rep(30) .. "\n"):rep(10) .. "\n"
      for _, ch in ipairs(chunkings(input, { pairs = false, random = 5 })) do
        for _, mode in ipairs(forms) do
          expect_protocol(fetch.parser{ max_event_size = 100 }, ch.chunks, mode, 100, ch.name)
        end
      end
    end)

    it("many short data lines summing over the limit fail before the blank line", function()
      local input = ("data: " .. ("x"):rep(30) .. "\n"):rep(100)
      for _, mode in ipairs(forms) do
        expect_protocol(fetch.parser{ max_event_size = 100 }, { input }, mode, 100, "unterminated event")
      end
    end)

    it("events under the limit pass, and the limit is per event, not per stream", function()
      local one = "data: " .. ("x"):rep(30) .. "\ndata: " .. ("y"):rep(30) .. "\n\n"
      local want = {}
      for i = 1, 50 do want[i] = E(("x"):rep(30) .. "\n" .. ("y"):rep(30)) end
      check(one:rep(50), { events = want }, { pairs = false, parser = { max_event_size = 100 } })
    end)

    it("comment, id, event and retry lines do not add up against the limit", function()
      local input = (": " .. ("c"):rep(40) .. "\nid: " .. ("i"):rep(40) .. "\nevent: e\nretry: 10\n"):rep(30)
                    .. "data: ok\n\n"
      check(input, { events = { E("ok", "e", ("i"):rep(40)) } }, { pairs = false, parser = { max_event_size = 100 } })
    end)

    it("the default limit is 16 MiB", function()
      local n = 16 * 1024 * 1024
      for _, mode in ipairs(forms) do
        -- a line of 17 MiB with no terminator, fed in 1 MiB pieces, must fail by the last piece
        local p = fetch.parser()
        local piece = ("z"):rep(1024 * 1024)
        local chunks = { "data: " }
        for i = 1, 17 do chunks[i + 1] = piece end
        expect_protocol(p, chunks, mode, n, "17 MiB line")
      end
    end)

    it("a line of exactly max_event_size bytes passes (the line end is not part of the line)", function()
      -- a 32-byte comment line and a 32-byte data line, CRLF-terminated, every chunking
      check(":" .. ("c"):rep(31) .. "\r\ndata:" .. ("d"):rep(27) .. "\r\n\r\n",
        { events = { E(("d"):rep(27)) }, comments = { ("c"):rep(31) } },
        { parser = { max_event_size = 32 } })
    end)

    it("an event whose data is exactly max_event_size bytes passes", function()
      -- data "aaaaaaaaaa\nbbbbbbbbbb\ncccccccccc" is 32 bytes; lines are 15 bytes
      check("data:" .. ("a"):rep(10) .. "\r\ndata:" .. ("b"):rep(10) .. "\r\ndata:" .. ("c"):rep(10) .. "\r\n\r\n",
        { events = { E(("a"):rep(10) .. "\n" .. ("b"):rep(10) .. "\n" .. ("c"):rep(10)) } },
        { parser = { max_event_size = 32 } })
    end)

    it("one byte more fails: a line of max_event_size + 1 bytes", function()
      for _, mode in ipairs(forms) do
        expect_protocol(fetch.parser{ max_event_size = 32 }, { ":" .. ("c"):rep(32) .. "\n" }, mode, 32, "33-byte line")
      end
    end)

    it("one byte more fails: data of max_event_size + 1 bytes", function()
      local input = "data:" .. ("a"):rep(10) .. "\ndata:" .. ("b"):rep(10) .. "\ndata:" .. ("c"):rep(11) .. "\n\n"
      for _, mode in ipairs(forms) do
        expect_protocol(fetch.parser{ max_event_size = 32 }, { input }, mode, 32, "33-byte data")
      end
    end)

    it("an unterminated line of exactly max_event_size bytes waits; one more byte fails", function()
      for name, f in pairs(FORMS) do
        local p = fetch.parser{ max_event_size = 32 }
        assert.are.same({}, f(p, ("x"):rep(32)), name)
        assert.are.same({}, f(p, "\r"), name)
        assert.are.same({}, f(p, ("y"):rep(32)), name)
        local ok, err = pcall(f, p, "y")
        assert.is_false(ok, name .. ": a 33-byte line must fail")
        assert_error_object(err, "protocol")
      end
    end)

    it("the failure is sticky until reset", function()
      for _, mode in ipairs(forms) do
        local p = fetch.parser{ max_event_size = 64 }
        expect_protocol(p, { "data: " .. ("x"):rep(200) .. "\n\n" }, mode, 64, "first")
        for _, m2 in ipairs(forms) do
          local ok, err = feed_all(p, { "data: ok\n\n" }, m2)
          assert.is_false(ok, mode .. "/" .. m2 .. ": a failed parser must raise again")
          assert_error_object(err, "protocol")
          ok, err = feed_all(p, { "" }, m2)
          assert.is_false(ok, mode .. "/" .. m2 .. ": even an empty chunk must raise again")
          assert_error_object(err, "protocol")
        end
        p:reset()
        assert.are.same({ E"ok" }, FORMS[mode](p, BOM .. "data: ok\n\n"))
        assert.are.equal("", p.last_event_id)
        assert.is_nil(p.retry)
      end
    end)
  end)

  describe("usage errors", function()
    it("unknown option name", function()
      raises_usage(fetch.parser, { bogus = true })
      raises_usage(fetch.parser, { max_event_size = 10, onRetry = function() end })
    end)

    it("options that are not a table", function()
      raises_usage(fetch.parser, 42)
      raises_usage(fetch.parser, "max_event_size=10")
    end)

    it("negative or non-integer max_event_size", function()
      raises_usage(fetch.parser, { max_event_size = -1 })
      raises_usage(fetch.parser, { max_event_size = 1.5 })
      raises_usage(fetch.parser, { max_event_size = "lots" })
      raises_usage(fetch.parser, { max_event_size = true })
    end)

    it("non-function onretry", function()
      raises_usage(fetch.parser, { onretry = 42 })
      raises_usage(fetch.parser, { onretry = "print" })
    end)

    it("non-function oncomment", function()
      raises_usage(fetch.parser, { oncomment = 42 })
    end)

    it("non-string chunk, raised by the feed call itself", function()
      local p = fetch.parser()
      raises_usage(p.feed, p, nil)
      raises_usage(p.feed, p, {})
      raises_usage(p.feed, p, true)
      raises_usage(p.feed, p, nil, function() end)
    end)

    it("a number is not a string chunk", function()
      local p = fetch.parser()
      raises_usage(p.feed, p, 12)
    end)

    it("non-function fn", function()
      local p = fetch.parser()
      raises_usage(p.feed, p, "data: x\n\n", 42)
      raises_usage(p.feed, p, "data: x\n\n", {})
      raises_usage(p.feed, p, "data: x\n\n", "print")
    end)

    it("a usage error leaves the parser working and loses nothing", function()
      local p = fetch.parser()
      assert.are.same({}, iter_events(p, "data: a\n"))
      pcall(p.feed, p, nil)
      pcall(p.feed, p, "data: junk\n\n", 42)
      assert.are.same({ E"a\nb" }, iter_events(p, "data: b\n\n"))
    end)
  end)

  describe("reset", function()
    it("returns to the initial state", function()
      for name, f in pairs(FORMS) do
        local p = fetch.parser()
        f(p, BOM .. "id: 5\nretry: 300\nevent: e\ndata: a\n\n")
        assert.are.equal("5", p.last_event_id, name)
        assert.are.equal(300, p.retry, name)
        f(p, "event: pending\ndata: pending\npartial line")
        p:reset()
        assert.are.equal("", p.last_event_id, name)
        assert.is_nil(p.retry, name)
        -- BOM expected again; no leftover line, data, type or id
        assert.are.same({ E"b" }, f(p, BOM .. "data: b\n\n"), name)
      end
    end)

    it("discards a partial line", function()
      for name, f in pairs(FORMS) do
        local p = fetch.parser()
        f(p, "data: par")
        p:reset()
        assert.are.same({ E"x" }, f(p, "data: x\n\n"), name)
      end
    end)

    it("discards the data buffer and event type", function()
      for name, f in pairs(FORMS) do
        local p = fetch.parser()
        f(p, "event: old\ndata: a\n")
        p:reset()
        assert.are.same({}, f(p, "\n"), name)
        assert.are.same({ E"x" }, f(p, "data: x\n\n"), name)
      end
    end)

    it("discards a partial BOM", function()
      for name, f in pairs(FORMS) do
        local p = fetch.parser()
        f(p, "\239\187")
        p:reset()
        -- the stream restarts: "\191data" is a field name, not the end of a BOM
        assert.are.same({}, f(p, "\191data: x\n\n"), name)
        assert.are.same({ E"y" }, f(p, "data: y\n\n"), name)
      end
    end)

    it("after a full BOM and data, a new BOM is stripped again", function()
      for name, f in pairs(FORMS) do
        local p = fetch.parser()
        assert.are.same({ E"1" }, f(p, BOM .. "data: 1\n\n"), name)
        p:reset()
        assert.are.same({ E"2" }, f(p, BOM .. "data: 2\n\n"), name)
        assert.are.same({}, f(p, BOM .. "data: 3\n\n"), name)
      end
    end)

    it("discards events left unread by a break", function()
      local p = fetch.parser()
      first_then_break(p, "data: 1\n\ndata: 2\n\ndata: 3\n\n")
      p:reset()
      assert.are.same({}, iter_events(p, ""))
      assert.are.same({ E"4" }, iter_events(p, "data: 4\n\n"))
    end)

    it("discards the rest kept after a fast-path error", function()
      local p = fetch.parser()
      pcall(p.feed, p, "data: 1\n\ndata: 2\n\n", function() error("stop") end)
      p:reset()
      assert.are.same({}, fast_events(p, ""))
    end)

    it("keeps the options (callbacks and limit)", function()
      local calls = {}
      local p = fetch.parser{ max_event_size = 50, onretry = function(ms) calls[#calls + 1] = ms end }
      p:reset()
      p:feed("retry: 9\n", function() end)
      assert.are.same({ 9 }, calls)
      local ok, err = feed_all(p, { "data: " .. ("x"):rep(200) .. "\n\n" }, "iter")
      assert.is_false(ok)
      assert_error_object(err, "protocol")
    end)
  end)

  describe("break and resume", function()
    it("the unread events come out first on the next feed (iterator)", function()
      local p = fetch.parser()
      local first
      first = first_then_break(p, "data: 1\n\ndata: 2\n\ndata: 3\n\n").data
      assert.are.equal("1", first)
      assert.are.same({ E"2", E"3", E"4" }, iter_events(p, "data: 4\n\n"))
    end)

    it("an empty next feed gives the unread events", function()
      local p = fetch.parser()
      first_then_break(p, "data: 1\n\ndata: 2\n\ndata: 3\n\n")
      assert.are.same({ E"2", E"3" }, iter_events(p, ""))
      assert.are.same({}, iter_events(p, ""))
    end)

    it("the next feed may use the fast path", function()
      local p = fetch.parser()
      first_then_break(p, "data: 1\n\ndata: 2\n\ndata: 3\n\n")
      assert.are.same({ E"2", E"3", E"4" }, fast_events(p, "data: 4\n\n"))
    end)

    it("an iterator never called loses nothing", function()
      local p = fetch.parser()
      p:feed("data: 1\n\ndata: 2\n\n")
      assert.are.same({ E"1", E"2", E"3" }, iter_events(p, "data: 3\n\n"))
    end)

    it("a partial line after the break is kept", function()
      local p = fetch.parser()
      first_then_break(p, "data: 1\n\ndata: 2\n\ndata: 3")
      assert.are.same({ E"2", E"3x" }, iter_events(p, "x\n\n"))
    end)

    it("ids, types, retries and comments stay right across a break", function()
      local retries, comments = {}, {}
      local p = fetch.parser{ onretry = function(ms) retries[#retries + 1] = ms end,
                              oncomment = function(t) comments[#comments + 1] = t end }
      first_then_break(p, "id: a\ndata: 1\n\n: c\nretry: 5\nevent: t\nid: b\ndata: 2\n\nid: c\n")
      assert.are.same({ E("2", "t", "b"), E("3", nil, "c") }, iter_events(p, "data: 3\n\n"))
      assert.are.equal("c", p.last_event_id)
      assert.are.equal(5, p.retry)
      assert.are.same({ 5 }, retries)
      assert.are.same({ "c" }, comments)
    end)

    it("a CR at the end of the broken-off chunk still pairs with the next LF", function()
      local p = fetch.parser()
      first_then_break(p, "data: 1\n\ndata: 2\r")
      assert.are.same({ E"2\n3" }, iter_events(p, "\ndata: 3\n\n"))
    end)
  end)

  describe("fast-path error and resume", function()
    local function chunk4() return "data: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n" end

    it("the error propagates out of feed unchanged", function()
      local p = fetch.parser()
      local sentinel = setmetatable({}, { __tostring = function() return "sentinel" end })
      local seen = {}
      local ok, err = pcall(p.feed, p, chunk4(), function(d)
        seen[#seen + 1] = d
        if d == "2" then error(sentinel) end
      end)
      assert.is_false(ok)
      assert.is_true(rawequal(err, sentinel), "feed must re-raise the fn's error value, got " .. tostring(err))
      assert.are.same({ "1", "2" }, seen)
    end)

    it("a string error keeps its message", function()
      local p = fetch.parser()
      local ok, err = pcall(p.feed, p, chunk4(), function() error("boom", 0) end)
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find("boom", 1, true), tostring(err))
    end)

    it("the rest of the chunk is parsed on the next feed", function()
      local p = fetch.parser()
      pcall(p.feed, p, chunk4(), function(d) if d == "2" then error("stop") end end)
      assert.are.same({ E"3", E"4" }, fast_events(p, ""))
      assert.are.same({ E"5" }, fast_events(p, "data: 5\n\n"))
    end)

    it("the next feed may use the iterator", function()
      local p = fetch.parser()
      pcall(p.feed, p, chunk4(), function(d) if d == "1" then error("stop") end end)
      assert.are.same({ E"2", E"3", E"4", E"5" }, iter_events(p, "data: 5\n\n"))
    end)

    it("a partial line in the chunk is kept too", function()
      local p = fetch.parser()
      pcall(p.feed, p, "data: 1\n\nid: q\ndata: 2\n\nevent: t\ndata: 3", function(d)
        if d == "1" then error("stop") end
      end)
      assert.are.same({ E("2", nil, "q"), E("3x", "t", "q") }, fast_events(p, "x\n\n"))
      assert.are.equal("q", p.last_event_id)
    end)

    it("an error on every event still delivers each event exactly once", function()
      local p = fetch.parser()
      local seen = {}
      local function fn(d) seen[#seen + 1] = d; error("again") end
      local ok = pcall(p.feed, p, chunk4(), fn)
      assert.is_false(ok)
      for _ = 1, 3 do pcall(p.feed, p, "", fn) end
      assert.are.same({ "1", "2", "3", "4" }, seen)
      assert.are.same({}, fast_events(p, ""))
    end)

    it("the parser is not left failed", function()
      local p = fetch.parser()
      pcall(p.feed, p, "data: 1\n\n", function() error("x") end)
      local ok = feed_all(p, { "data: 2\n\n" }, "iter")
      assert.is_true(ok)
    end)
  end)

  describe("robustness", function()
    local function no_dups(list)
      local seen = {}
      for _, v in ipairs(list) do
        assert.is_nil(seen[v], "event " .. v .. " delivered twice: " .. table.concat(list, ","))
        seen[v] = true
      end
      return seen
    end

    it("the iterator keeps its parser alive through garbage collection", function()
      local parts = {}
      for i = 1, 50 do parts[i] = "data: " .. i .. "\n\n" end
      local got = {}
      for ev in fetch.parser():feed(table.concat(parts)) do
        collectgarbage(); collectgarbage()
        got[#got + 1] = ev.data
      end
      assert.are.equal(50, #got)
      assert.are.equal("50", got[50])
    end)

    it("parsers collected with unread events and partial lines", function()
      for _ = 1, 20 do
        local p = fetch.parser{ onretry = function() end, oncomment = function() end }
        first_then_break(p, "data: 1\n\ndata: 2\n\nretry: 5\n: c\ndata: part")
      end
      collectgarbage(); collectgarbage()
      assert.are.same({ E"ok" }, iter_events(fetch.parser(), "data: ok\n\n"))
    end)

    it("feeding the same parser from inside the fast-path function", function()
      local p = fetch.parser()
      local got, inner_ok = {}, nil
      pcall(p.feed, p, "data: 1\n\ndata: 2\n\n", function(d)
        got[#got + 1] = d
        if d == "1" then
          inner_ok = pcall(p.feed, p, "data: 3\n\n", function(d2) got[#got + 1] = d2 end)
        end
      end)
      for _, e in ipairs(fast_events(p, "")) do got[#got + 1] = e.data end
      local seen = no_dups(got)
      assert.is_true(seen["1"] and seen["2"], "lost events: " .. table.concat(got, ","))
      if inner_ok then assert.is_true(seen["3"], "the accepted inner chunk was lost") end
      p:reset()
      assert.are.same({ E"ok" }, fast_events(p, "data: ok\n\n"))
    end)

    it("feeding the same parser from inside the loop body", function()
      local p = fetch.parser()
      local got, inner_ok = {}, nil
      pcall(function()
        for ev in p:feed("data: 1\n\ndata: 2\n\n") do
          got[#got + 1] = ev.data
          if ev.data == "1" then
            inner_ok = pcall(function()
              for e in p:feed("data: 3\n\n") do got[#got + 1] = e.data end
            end)
          end
        end
      end)
      for _, e in ipairs(iter_events(p, "")) do got[#got + 1] = e.data end
      local seen = no_dups(got)
      assert.is_true(seen["1"] and seen["2"], "lost events: " .. table.concat(got, ","))
      if inner_ok then assert.is_true(seen["3"], "the accepted inner chunk was lost") end
      p:reset()
      assert.are.same({ E"ok" }, iter_events(p, "data: ok\n\n"))
    end)

    it("parsers are independent of each other", function()
      local a, b = "id: A\nevent: ea\ndata: a1\r", "\ndata: a2\n\n"
      local c = BOM .. "data: b1\r\r: hi\nretry: 42\nid: B\ndata: b2\r\n\r\n"
      local sa, sb = a .. b, c
      local pa, pb = fetch.parser(), fetch.parser()
      local got_a, got_b = {}, {}
      for i = 1, math.max(#sa, #sb) do
        if i <= #sa then for _, e in ipairs(fast_events(pa, sa:sub(i, i))) do got_a[#got_a + 1] = e end end
        if i <= #sb then for _, e in ipairs(iter_events(pb, sb:sub(i, i))) do got_b[#got_b + 1] = e end end
      end
      assert.are.same({ E("a1\na2", "ea", "A") }, got_a)
      assert.are.same({ E"b1", E("b2", nil, "B") }, got_b)
      assert.are.equal("A", pa.last_event_id)
      assert.are.equal("B", pb.last_event_id)
      assert.is_nil(pa.retry)
      assert.are.equal(42, pb.retry)
    end)

    it("the loop body may yield a coroutine between events", function()
      local p = fetch.parser()
      local co = coroutine.wrap(function()
        for ev in p:feed("data: 1\n\ndata: 2\n\ndata: 3\n\n") do coroutine.yield(ev.data) end
        return "end"
      end)
      assert.are.equal("1", co())
      assert.are.equal("2", co())
      assert.are.equal("3", co())
      assert.are.equal("end", co())
    end)

    it("an event of many data lines", function()
      local lines, want = {}, {}
      for i = 1, 5000 do lines[i] = "data: " .. i; want[i] = tostring(i) end
      check(table.concat(lines, "\n") .. "\n\n", { events = { E(table.concat(want, "\n")) } },
        { pairs = false, random = 4 })
    end)

    it("an error raised in onretry or oncomment propagates out of feed", function()
      for _, opt in ipairs({ "onretry", "oncomment" }) do
        for name, f in pairs(FORMS) do
          local sentinel = {}
          local p = fetch.parser{ [opt] = function() error(sentinel) end }
          local ok, err = pcall(f, p, "data: a\n\nretry: 5\n: c\ndata: b\n\n")
          assert.is_false(ok, opt .. "/" .. name .. ": the callback's error was swallowed")
          assert.is_true(rawequal(err, sentinel), opt .. "/" .. name .. ": got " .. tostring(err))
          p:reset()
          assert.are.same({ E"ok" }, f(p, "data: ok\n\n"), opt .. "/" .. name)
        end
      end
    end)

    it("reset from inside the fast-path function and the loop body", function()
      local p = fetch.parser()
      local got = {}
      pcall(p.feed, p, "data: 1\n\ndata: 2\n\ndata: x", function(d) got[#got + 1] = d; p:reset() end)
      no_dups(got)
      assert.are.same({ E"ok" }, fast_events(p, "data: ok\n\n"))
      got = {}
      pcall(function()
        for ev in p:feed("data: 1\n\ndata: 2\n\ndata: x") do got[#got + 1] = ev.data; p:reset() end
      end)
      no_dups(got)
      assert.are.same({ E"ok" }, iter_events(p, "data: ok\n\n"))
    end)
  end)

  describe("a realistic OpenAI chat stream", function()
    local function chunk(delta, finish)
      return '{"id":"chatcmpl-AbC123","object":"chat.completion.chunk","created":1718000000,'
        .. '"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,'
        .. '"delta":' .. delta .. ',"logprobs":null,"finish_reason":' .. (finish or "null") .. '}]}'
    end
    local deltas = {
      '{"role":"assistant","content":"","refusal":null}',
      '{"content":"Hel"}',
      '{"content":"lo, w\195\182"}',
      '{"content":"rld! \240\159\145\139"}',
      '{"content":"\\n\230\151\165\230\156\172\\"q\\""}',
      '{}',
    }
    local finishes = { nil, nil, nil, nil, nil, '"stop"' }
    local text = "Hello, w\195\182rld! \240\159\145\139\n\230\151\165\230\156\172\"q\""

    local function stream(eol)
      local parts = { ": OPENROUTER PROCESSING" .. eol .. eol }
      for i = 1, #deltas do
        parts[#parts + 1] = "data: " .. chunk(deltas[i], finishes[i]) .. eol .. eol
      end
      parts[#parts + 1] = "data: [DONE]" .. eol .. eol
      return table.concat(parts)
    end

    local function want()
      local w = {}
      for i = 1, #deltas do w[i] = E(chunk(deltas[i], finishes[i])) end
      w[#w + 1] = E"[DONE]"
      return w
    end

    it("LF line ends, every chunking", function()
      check(stream("\n"), { events = want(), comments = { "OPENROUTER PROCESSING" } }, { max_pairs = 4000 })
    end)

    it("CRLF line ends, every chunking", function()
      check(stream("\r\n"), { events = want() }, { max_pairs = 4000 })
    end)

    it("ev:json() decodes the deltas", function()
      for _, size in ipairs({ 1, 7, 100000 }) do
        local p = fetch.parser()
        local s, acc, finish, done = stream("\n"), {}, nil, false
        for i = 1, #s, size do
          for ev in p:feed(s:sub(i, i + size - 1)) do
            if ev.data == "[DONE]" then
              done = true
            else
              local obj = ev:json()
              assert.are.equal("chat.completion.chunk", obj.object)
              local c = obj.choices[1]
              if type(c.delta.content) == "string" then acc[#acc + 1] = c.delta.content end
              if c.finish_reason ~= nil and c.finish_reason ~= require("cjson").null then
                finish = c.finish_reason
              end
            end
          end
        end
        assert.is_true(done, "chunk size " .. size)
        assert.are.equal(text, table.concat(acc), "chunk size " .. size)
        assert.are.equal("stop", finish)
      end
    end)
  end)

  describe("random streams against the reference model", function()
    local tokens = {
      "data", "data:", "data: ", "event:", "event: ", "id:", "id: ", "retry:", "retry: ",
      ":", ": ", " ", "x", "yz", "Data:", "foo:", "7", "42", "-", ".",
      "\195\169", "\240\159\152\128", "\0", "\255", "\239", "\187", "\191", BOM, "\t",
      "\r", "\n", "\r\n", "\n\n", "\r\r", "\r\n\r\n", "\n", "\n", "\r",
    }
    for block = 1, 8 do
      it("block " .. block, function()
        local rand = rng(7919 * block)
        for _ = 1, 30 do
          local parts = {}
          if rand(1, 3) == 1 then parts[1] = BOM end
          for _ = 1, rand(0, 60) do parts[#parts + 1] = tokens[rand(1, #tokens)] end
          if rand(1, 2) == 1 then parts[#parts + 1] = "\n\n" end
          check(table.concat(parts), nil, { pairs = false, random = 6, seed = rand(1, 1e9) })
        end
      end)
    end
  end)
end)
