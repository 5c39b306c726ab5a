-- Spec for fetchstream.sse's reader forms: events, lines and NDJSON from any
-- byte source — read() returns the next chunk, nil at the end, or nil, err —
-- the way OpenResty's cosockets, lua-resty-http's body_reader and a Neovim
-- job's output hand bytes over. No HTTP here: the readers are plain
-- functions over strings.

local sse = require "fetchstream.sse"
local fetch = require "fetchstream"
local h = require "spec.helpers"

local raises = h.raises

-- A reader that returns `text` in pieces of the given sizes (cycled), then
-- nil — or nil, `err` when given.
local function reader(text, sizes, err)
  local pos, i = 1, 0
  return function()
    if pos > #text then
      if err ~= nil then return nil, err end
      return nil
    end
    i = i % #sizes + 1
    local piece = text:sub(pos, pos + sizes[i] - 1)
    pos = pos + #piece
    return piece
  end
end

local function collect(iter)
  local out = {}
  for v in iter do out[#out + 1] = v end
  return out
end

local STREAM = "retry: 10\r\n: hi\n\nid: 1\nevent: up\ndata: a\ndata: b\r\rdata: c\n\nid: 2\ndata: {\"n\":1}\n\n"

describe("sse.events(read)", function()
  it("gives the events the parser gives, however the bytes are cut", function()
    local want = collect(sse.parser():feed(STREAM))
    assert.are.equal(3, #want)
    for _, sizes in ipairs { { #STREAM }, { 1 }, { 2, 3 }, { 7, 1, 13 } } do
      local got = collect(sse.events(reader(STREAM, sizes)))
      assert.are.equal(#want, #got)
      for i, ev in ipairs(want) do
        assert.are.same({ ev.event, ev.data, ev.id }, { got[i].event, got[i].data, got[i].id })
      end
      assert.are.same({ n = 1 }, got[3]:json())
    end
  end)

  it("takes the parser's options and hooks", function()
    local retries, comments = {}, {}
    local got = collect(sse.events(reader(STREAM, { 5 }), {
      onretry = function(ms) retries[#retries + 1] = ms end,
      oncomment = function(text) comments[#comments + 1] = text end,
    }))
    assert.are.equal(3, #got)
    assert.are.same({ 10 }, retries)
    assert.are.same({ "hi" }, comments)
    local err = raises("protocol", function()
      for _ in sse.events(reader("data: " .. ("x"):rep(100) .. "\n\n", { 9 }), { max_event_size = 50 }) do end
    end)
    assert.matches("max_event_size", err.message, 1, true)
  end)

  it("ends with a network error whose cause is the reader's error", function()
    local got = {}
    local err = raises("network", function()
      for ev in sse.events(reader("data: one\n\ndata: tw", { 4 }, "closed")) do got[#got + 1] = ev.data end
    end)
    assert.are.same({ "one" }, got)
    assert.are.equal("closed", err.cause)
    assert.matches("closed", tostring(err), 1, true)
  end)

  it("lets an error raised by the reader through as it is", function()
    local ok, err = pcall(function()
      for _ in sse.events(function() error("reader broke", 0) end) do end
    end)
    assert.is_false(ok)
    assert.are.equal("reader broke", err)
  end)

  it("checks its arguments at once", function()
    raises("usage", sse.events, "not a reader")
    raises("usage", sse.events, reader("", { 1 }), { max_event_sise = 1 })
    raises("usage", sse.lines, nil)
    raises("usage", sse.ndjson, reader("", { 1 }), { onretry = print })
  end)

  it("is fetch.parser's parser", function()
    assert.are.equal(sse.parser, fetch.parser)
  end)
end)

describe("sse.lines(read) and sse.ndjson(read)", function()
  it("split LF and CRLF lines across any cut, keeping a last line without LF", function()
    local text = "one\r\ntwo\n\nthree\r\nfour"
    for _, sizes in ipairs { { #text }, { 1 }, { 3, 2 } } do
      assert.are.same({ "one", "two", "", "three", "four" }, collect(sse.lines(reader(text, sizes))))
    end
  end)

  it("bound every line by max_event_size", function()
    local text = ("x"):rep(100) .. "\nshort\n"
    for _, sizes in ipairs { { 1000 }, { 7 } } do
      raises("protocol", function() for _ in sse.lines(reader(text, sizes), { max_event_size = 50 }) do end end)
    end
    local exact = ("y"):rep(50)
    assert.are.same({ exact }, collect(sse.lines(reader(exact .. "\r\n", { 4 }), { max_event_size = 50 })))
  end)

  it("decode one JSON value per line, blank lines skipped, integers kept", function()
    local text = '{"a":1}\n\n  \n[2,3]\r\n"s"'
    local got = collect(sse.ndjson(reader(text, { 3 })))
    assert.are.same({ { a = 1 }, { 2, 3 }, "s" }, got)
    if math.type then assert.are.equal("integer", math.type(got[1].a)) end
  end)

  it("name the line that is not JSON", function()
    local err = raises("protocol", function()
      for _ in sse.ndjson(reader('{"a":1}\nnot json\n', { 5 })) do end
    end)
    assert.are.equal(2, err.line)
  end)

  it("end with a network error when the reader fails", function()
    local err = raises("network", function() for _ in sse.lines(reader("a\nb", { 1 }, "timeout")) do end end)
    assert.are.equal("timeout", err.cause)
  end)
end)
