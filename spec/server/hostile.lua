-- Hostile routes for the stub server: servers that misbehave on purpose.
--
-- server.lua loads this file once and calls the function it returns with its
-- route table and a few of its helpers; every route added here lives under
-- /hostile/. See spec/server/README.md, "Hostile routes".
--
-- Each route stops by itself: it sends a bounded number of bytes and gives up
-- after a bounded number of seconds (`secs=`, capped), whatever the client
-- does. Compression bombs are generated on the fly, a few KiB at a time:
--
--   gzip  one member whose single dynamic-Huffman deflate block codes a zero
--         byte, then matches of 258 bytes at distance 1 in 2 bits each
--         (1032:1, deflate's limit); the CRC-32 of n zeros is computed with
--         GF(2) matrix powers, as zlib's crc32_combine does.
--   zstd  one frame of RLE blocks, 4 bytes for every 128 KiB (32768:1),
--         declaring an 8 MiB window (RFC 9659's limit for HTTP).
--   br    a 16 MiB window (the format's largest), a 4-byte uncompressed
--         meta-block of zeros, then compressed meta-blocks of 16 MiB each:
--         one command "copy 16 MiB from the last distance (4)" under
--         single-symbol prefix codes, 101 bits; 8 of them make a 101-byte
--         unit that repeats byte for byte (1.3M:1).
--
-- Small bodies compressed by the real tools come from fixtures/ (see
-- fixtures/make.sh): /hostile/encoded serves them.

local socket = require "socket"

local sfmt, srep, ssub, schar, sbyte = string.format, string.rep, string.sub, string.char, string.byte
local concat = table.concat
local now = socket.gettime

local MAX_SECS = 600             -- no route runs longer than this
local MAX_BYTES = 16 << 30        -- nor decodes to more than this (16 GiB)
local ZEROS = srep("\0", 65536)  -- the body of the bombs' bulk

return function(routes, env)
  local qnum, stream_head, gzip_stored, tag_entry =
    env.qnum, env.stream_head, env.gzip_stored, env.tag_entry

  -- secs= (default `default`), capped: the route's deadline.
  local function deadline_of(q, default)
    local secs = qnum(q, "secs", default)
    if secs > MAX_SECS then secs = MAX_SECS end
    return now() + secs
  end

  local function qint(q, name, default, max)
    local v = math.tointeger(qnum(q, name, default)) or default
    if v < 0 then v = 0 end
    if max and v > max then v = max end
    return v
  end

  -------------------------------------------------------------------------
  -- bit writing (deflate and brotli both pack bits from the low end)

  local function bitwriter()
    local out, acc, nacc = {}, 0, 0
    local w = {}
    function w.bits(v, n) -- n <= 32 bits of v, low bit first
      acc = acc | (v << nacc)
      nacc = nacc + n
      while nacc >= 8 do
        out[#out + 1] = schar(acc & 0xFF)
        acc, nacc = acc >> 8, nacc - 8
      end
    end
    function w.code(code, len) -- a Huffman code: its high bit first
      for i = len - 1, 0, -1 do w.bits((code >> i) & 1, 1) end
    end
    function w.count() return #out * 8 + nacc end
    function w.bytes() -- the whole bytes so far, and the bits left over
      local s = concat(out)
      out = {}
      return s, acc, nacc
    end
    return w
  end

  -------------------------------------------------------------------------
  -- CRC-32 of n zero bytes: the register update for a zero byte is linear,
  -- so the CRC is that operator raised to the n-th power (as a 32x32 matrix
  -- over GF(2), one column per int), applied to the initial register.

  local function gf2_times(mat, vec)
    local sum, i = 0, 1
    while vec ~= 0 do
      if vec & 1 == 1 then sum = sum ~ mat[i] end
      vec, i = vec >> 1, i + 1
    end
    return sum
  end

  local function gf2_square(mat)
    local sq = {}
    for i = 1, 32 do sq[i] = gf2_times(mat, mat[i]) end
    return sq
  end

  local function crc32_zeros(n)
    local op = {} -- one zero bit: shift right, xor the polynomial on carry
    op[1] = 0xEDB88320
    for i = 2, 32 do op[i] = 1 << (i - 2) end
    op = gf2_square(gf2_square(gf2_square(op))) -- one zero byte
    local reg = 0xFFFFFFFF
    while n > 0 do
      if n & 1 == 1 then reg = gf2_times(op, reg) end
      n = n >> 1
      if n > 0 then op = gf2_square(op) end
    end
    return reg ~ 0xFFFFFFFF
  end

  -------------------------------------------------------------------------
  -- bombs: each returns a function giving the next piece (nil at the end)
  -- and the number of bytes it decodes to.

  -- gzip: a dynamic block with three literal/length codes (0: "10",
  -- 256: "11", 285 = length 258: "0") and one distance code (1: "0").
  local function gzip_bomb(want, corrupt_at)
    local w = bitwriter()
    w.bits(1, 1); w.bits(2, 2)            -- BFINAL, BTYPE = dynamic
    w.bits(29, 5); w.bits(0, 5)           -- HLIT = 286 codes, HDIST = 1 code
    w.bits(14, 4)                         -- HCLEN: 18 code length code lengths
    -- in the order 16 17 18 0 8 7 9 6 10 5 11 4 12 3 13 2 14 1: 18 -> 1, 2 -> 2, 1 -> 2
    local cl = { 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2 }
    for i = 1, #cl do w.bits(cl[i], 3) end
    -- code length codes: 18 = "0", 1 = "10", 2 = "11"
    local function len2() w.code(3, 2) end
    local function len1() w.code(2, 2) end
    local function zeros(n) w.code(0, 1); w.bits(n - 11, 7) end -- 11..138 zeros
    len2()                       -- literal 0: 2 bits
    zeros(138); zeros(117)       -- literals 1..255
    len2()                       -- 256 (end of block): 2 bits
    zeros(28)                    -- 257..284
    len1()                       -- 285 (length 258): 1 bit
    len1()                       -- distance code 0 (distance 1): 1 bit
    w.code(2, 2)                 -- the data: a literal zero byte
    local head, acc, nacc = w.bytes()
    head = "\31\139\8\0\0\0\0\0\0\255" .. head .. schar(acc)
    local r = (8 - nacc) % 8     -- zero bits (match codes) left in head's last byte
    local t = r % 2              -- zero bits before the end code, to make matches whole
    local matches = math.max(2, -(-(want - 1) // 258))
    local k = math.max(0, -(-(2 * matches - r - t) // 8)) -- whole zero bytes
    matches = (r + 8 * k + t) // 2
    local size = 1 + 258 * matches
    local tail = schar(3 << t) .. string.pack("<I4I4", crc32_zeros(size), size & 0xFFFFFFFF)
    local state, left = 0, k
    local bad = corrupt_at and math.min(k, corrupt_at // 1032) or nil
    return function()
      if state == 0 then state = 1; return head end
      if left > 0 then
        local n = math.min(left, #ZEROS)
        if bad and bad >= k - left and bad < k - left + n then -- an end code mid-stream
          local at = bad - (k - left)
          left = left - n
          return ssub(ZEROS, 1, at) .. "\255" .. ssub(ZEROS, at + 2, n)
        end
        left = left - n
        return n == #ZEROS and ZEROS or ssub(ZEROS, 1, n)
      end
      if state == 1 then state = 2; return tail end
      return nil
    end, size
  end

  -- zstd: a frame (no checksum, no content size, an 8 MiB window: the most
  -- an HTTP client must allow) of RLE blocks of 128 KiB of zeros.
  local function zstd_bomb(want, corrupt_at)
    local BLOCK, PER = 131072, 16384 -- PER blocks: 64 KiB of frame, 2 GiB of zeros
    local function rle(n, last) return string.pack("<I3", (last and 1 or 0) | 2 | (n << 3)) .. "\0" end
    local full = srep(rle(BLOCK, false), PER)
    local blocks, rest = want // BLOCK, want % BLOCK
    local before_last = rest > 0 and blocks or math.max(blocks - 1, 0)
    local state, sent = 0, 0
    local bad = corrupt_at and math.min(corrupt_at // BLOCK, before_last) or nil
    return function()
      if state == 0 then state = 1; return "\40\181\47\253\0\104" end -- window: 2^(10 + 13)
      if bad and sent == bad then -- a block of the reserved type
        bad = nil
        return "\6\0\0"
      end
      if sent < before_last then
        local n = math.min(before_last - sent, PER)
        if bad and sent + n > bad then n = bad - sent end
        sent = sent + n
        return n == PER and full or ssub(full, 1, 4 * n)
      end
      if state == 1 then
        state = 2
        if rest > 0 then return rle(rest, true) end
        if blocks > 0 then return rle(BLOCK, true) end
        return "\1\0\0" -- nothing to send: an empty raw block ends the frame
      end
      return nil
    end, want
  end

  -- br: see the top of this file.
  local function br_unit()
    local w = bitwriter()
    for _ = 1, 8 do
      w.bits(0, 1)              -- ISLAST = 0
      w.bits(2, 2)              -- MNIBBLES = 6
      w.bits((1 << 24) - 1, 24) -- MLEN - 1: 16 MiB
      w.bits(0, 1)              -- ISUNCOMPRESSED = 0
      w.bits(0, 1); w.bits(0, 1); w.bits(0, 1) -- NBLTYPESL, I, D = 1
      w.bits(0, 2); w.bits(0, 4) -- NPOSTFIX = 0, NDIRECT = 0
      w.bits(0, 2)              -- context mode of the literal block type
      w.bits(0, 1); w.bits(0, 1) -- NTREESL = 1, NTREESD = 1
      -- simple prefix codes of one symbol each (HSKIP = 1, NSYM - 1 = 0):
      w.bits(1, 2); w.bits(0, 2); w.bits(0, 8)    -- literals: 0
      w.bits(1, 2); w.bits(0, 2); w.bits(391, 10) -- insert 0, copy code 23, explicit distance
      w.bits(1, 2); w.bits(0, 2); w.bits(0, 6)    -- distances: code 0, the last distance
      w.bits((1 << 24) - 2118, 24) -- copy length 2118 + extra = 16 MiB
    end
    assert(w.count() == 808)
    return (w.bytes())
  end
  local BR_UNIT -- built on first use
  local BR_UNIT_SIZE = 8 << 24

  local function br_bomb(want, corrupt_at)
    BR_UNIT = BR_UNIT or br_unit()
    -- WBITS = 24 ("1", then 7 in 3 bits: the largest window, 16 MiB, as a
    -- decoder must allow), then ISLAST = 0, MNIBBLES = 4, MLEN - 1 = 3,
    -- ISUNCOMPRESSED = 1: 3 bytes; then the 4 bytes of data.
    local w = bitwriter()
    w.bits(1, 1); w.bits(7, 3); w.bits(0, 1); w.bits(0, 2); w.bits(3, 16); w.bits(1, 1)
    local head = w.bytes() .. "\0\0\0\0"
    local units = math.max(0, -(-(want - 4) // BR_UNIT_SIZE))
    local size = 4 + units * BR_UNIT_SIZE
    local state, left = 0, units
    local per = 64 -- units per piece: 6.5 KiB, 8 GiB decoded
    local piece = srep(BR_UNIT, per)
    local bad = corrupt_at and corrupt_at // BR_UNIT_SIZE or nil
    return function()
      if state == 0 then state = 1; return head end
      if bad and units - left >= bad then -- ISLAST, ISLASTEMPTY, then padding that is not zero
        bad = nil
        return "\255"
      end
      if left > 0 then
        local n = math.min(left, per)
        if bad and units - left + n > bad then n = bad - (units - left) end
        left = left - n
        return n == per and piece or srep(BR_UNIT, n)
      end
      if state == 1 then state = 2; return "\3" end -- ISLAST, ISLASTEMPTY
      return nil
    end, size
  end

  local function identity_bomb(want)
    local left = want
    return function()
      if left <= 0 then return nil end
      local n = math.min(left, #ZEROS)
      left = left - n
      return n == #ZEROS and ZEROS or ssub(ZEROS, 1, n)
    end, want
  end

  local BOMBS = { gzip = gzip_bomb, zstd = zstd_bomb, br = br_bomb, identity = identity_bomb }

  -- /hostile/bomb?enc=gzip|br|zstd|identity&bytes=N&secs=S&corrupt_at=B
  routes["/hostile/bomb"] = function(c, req)
    local q = req.query
    local make = BOMBS[q.enc or "gzip"]
    if not make then
      c:respond(400, "text/plain", "enc: gzip, br, zstd or identity\n")
      return
    end
    local deadline = deadline_of(q, 60)
    local corrupt_at = q.corrupt_at and qint(q, "corrupt_at", 0, MAX_BYTES) or nil
    local next_piece, size = make(qint(q, "bytes", 1 << 30, MAX_BYTES), corrupt_at)
    local extra = { { "X-Decoded-Size", tostring(size) } }
    if q.enc ~= "identity" then extra[2] = { "Content-Encoding", q.enc or "gzip" } end
    if not stream_head(c, req, "application/octet-stream", extra) then return end
    while true do
      local piece = next_piece()
      if not piece then break end
      if now() > deadline then c.keep = false; return end -- cut off: no last chunk
      if not c:chunk(piece) then return end
    end
    c:finish()
  end

  -------------------------------------------------------------------------
  -- small bodies from the real encoders (fixtures/events.sse.*)

  local FIXTURE_FILES = {
    identity = "events.sse", gzip = "events.sse.gz", deflate = "events.sse.zlib",
    rawdeflate = "events.sse.deflate", br = "events.sse.br", zstd = "events.sse.zst",
  }
  local fixtures = {}
  local function fixture(name)
    if not fixtures[name] then
      local f = assert(io.open(env.dir .. "fixtures/" .. FIXTURE_FILES[name], "rb"))
      fixtures[name] = f:read("a")
      f:close()
    end
    return fixtures[name]
  end

  -- /hostile/encoded?enc=E&repeat=N&corrupt=1&at=I&truncate=1&chunk=K&delay=MS
  -- E: gzip, deflate (zlib), rawdeflate (sent as deflate), br, zstd,
  -- identity, "br,gzip" (br, then gzip around it) or any other name (the
  -- plain body labelled with it).
  routes["/hostile/encoded"] = function(c, req)
    local q = req.query
    local enc = q.enc or "gzip"
    local body, label
    if enc == "br,gzip" then
      body, label = gzip_stored(fixture("br")), "br, gzip"
    elseif FIXTURE_FILES[enc] then
      body, label = fixture(enc), enc == "rawdeflate" and "deflate" or enc
    else
      body, label = fixture("identity"), enc
    end
    body = srep(body, qint(q, "repeat", 1, 4)) -- gzip members, zstd frames end to end
    if q.corrupt == "1" then -- 16 bytes a quarter in (or from at=), flipped
      local at = math.max(1, math.min(qint(q, "at", #body // 4), #body - 16))
      local bad = {}
      for i = 0, 15 do bad[#bad + 1] = schar(sbyte(body, at + i) ~ 0x55) end
      body = ssub(body, 1, at - 1) .. concat(bad) .. ssub(body, at + 16)
    end
    if q.truncate == "1" then body = ssub(body, 1, #body // 2) end
    local extra = {}
    if label ~= "identity" then extra[1] = { "Content-Encoding", label } end
    if not stream_head(c, req, nil, extra) then return end
    local k = qint(q, "chunk", 0)
    if k <= 0 then k = math.max(#body, 1) end
    local delay = qnum(q, "delay", 0)
    local i = 1
    while i <= #body do
      if i > 1 and delay > 0 and not c:sleep(delay) then return end
      if not c:chunk(ssub(body, i, i + k - 1)) then return end
      i = i + k
    end
    c:finish()
  end

  -------------------------------------------------------------------------
  -- broken framing

  -- /hostile/cut_headers?at=status|header|blank: the connection closes
  -- inside the response headers.
  routes["/hostile/cut_headers"] = function(c, req)
    local at = req.query.at or "header"
    c.keep = false
    local head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Cut: half"
    if at == "status" then head = "HTTP/1.1 20"
    elseif at == "blank" then head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n" end
    c:send(head)
  end

  -- /hostile/bad_chunked?mode=size|crlf: one good chunk, then a chunk size
  -- that is not hex (size) or chunk data not followed by CRLF (crlf).
  routes["/hostile/bad_chunked"] = function(c, req)
    c.keep = false
    if not stream_head(c, req) then return end
    if not c:chunk("data: one\n\n") then return end
    if req.query.mode == "crlf" then
      c:send("b\r\ndata: two\n\nXX5\r\nhello\r\n0\r\n\r\n")
    else
      c:send("zz\r\ndata: two\n\n\r\n0\r\n\r\n")
    end
  end

  -- /hostile/endless_headers?line=L&max=M&secs=S: a status line, then
  -- header lines of L bytes (default 100) and never the blank line, until M
  -- bytes (default 16 MiB) or S seconds (default 10); then it closes.
  routes["/hostile/endless_headers"] = function(c, req)
    local q = req.query
    c.keep = false
    local deadline = deadline_of(q, 10)
    local len = math.max(qint(q, "line", 100, 16 << 20), 16)
    local max = qint(q, "max", 16 << 20, 256 << 20)
    if not c:send("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n") then return end
    local sent, i = 0, 0
    local pad = srep("x", len)
    while sent < max and now() < deadline do
      i = i + 1
      local name = sfmt("X-Endless-%d: ", i)
      local line = name .. ssub(pad, 1, len - #name - 2) .. "\r\n"
      if not c:send(line) then return end
      sent = sent + #line
    end
  end

  -- /hostile/loop?tag=T&max=N: 302 to itself, at most N times per tag
  -- (default 100), then 508.
  routes["/hostile/loop"] = function(c, req)
    local q = req.query
    local e = tag_entry(q.tag or "")
    e.hops = (e.hops or 0) + 1
    if e.hops > qint(q, "max", 100, 10000) then
      c:respond(508, "text/plain", "loop detected\n")
      return
    end
    c:respond(302, "text/plain", "", { { "Location", req.target } })
  end

  -------------------------------------------------------------------------
  -- slow and silent servers

  -- /hostile/slowloris?phase=headers|body&interval=MS&secs=S: one byte every
  -- MS ms (default 100): of the response headers (phase=headers), then a
  -- short body; or of an endless SSE body after prompt headers (phase=body,
  -- the default). Gives up after S seconds (default 10), closing the
  -- connection without ending the response.
  routes["/hostile/slowloris"] = function(c, req)
    local q = req.query
    c.keep = false
    local deadline = deadline_of(q, 10)
    local interval = qnum(q, "interval", 100)
    local function trickle(s)
      for i = 1, #s do
        if now() > deadline then return nil end
        if not c:send(ssub(s, i, i)) then return nil end
        if not c:sleep(interval) then return nil end
      end
      return true
    end
    if q.phase == "headers" then
      local head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        .. "Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
      if not trickle(head) then return end
      c:send("data: done\n\n")
      return
    end
    if not c:head(200, { { "Content-Type", "text/event-stream" } }, "close") then return end
    while trickle("data: x\n\n") do end
  end

  -- /hostile/silence?hello=1&secs=S&tag=T: the headers (and with hello=1 one
  -- event), then nothing until the client closes or S seconds pass
  -- (default 20); then it closes without ending the response.
  routes["/hostile/silence"] = function(c, req)
    local q = req.query
    c.keep = false
    local deadline = deadline_of(q, 20)
    if not stream_head(c, req) then return end
    if q.hello == "1" and not c:chunk("data: hello\n\n") then return end
    c:sleep(math.max(0, deadline - now()) * 1000)
  end

  -- /hostile/rst?step=prime|hit: step=prime answers one event and keeps the
  -- connection; step=hit resets (RST) a connection that a prime request
  -- used, and redirects to itself on any other (a loop: curl gives up).
  local primed = setmetatable({}, { __mode = "k" })
  routes["/hostile/rst"] = function(c, req)
    local q = req.query
    if q.step == "prime" then
      primed[c] = true
      if not stream_head(c, req) then return end
      if c:chunk("data: primed\n\n") then c:finish() end
      return
    end
    if primed[c] then
      c.sock:setoption("linger", { on = true, timeout = 0 }) -- close sends RST
      c.keep = false
      return
    end
    c:respond(302, "text/plain", "", { { "Location", req.target } })
  end
end
