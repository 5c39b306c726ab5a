-- bench/gen_corpus.lua: write the SSE corpora the parser benchmark reads.
--
--   lua5.4 bench/gen_corpus.lua [outdir] [name ...]
--
-- outdir defaults to bench/corpus next to this script; names default to all
-- four corpora (chat, chat116, tiny, big). Output is deterministic: the same bytes on
-- every machine and every run (a fixed-seed LCG picks tokens and lines).
-- Each file is written to "<name>.sse.tmp" and renamed when complete, so an
-- interrupted run never leaves a truncated corpus behind.
--
--   chat  200,000 OpenAI-style chat.completion.chunk events, then [DONE]
--         (~201 bytes per event, 40 MB); tokens include multi-byte UTF-8 and JSON escapes, so
--         64 KiB chunk boundaries fall inside UTF-8 characters.
--   chat116  the same tokens in 200,000 compact chunks (~116 bytes per event,
--         ~23 MB), as OpenAI-compatible servers send them.
--   tiny  2,000,000 events "data: x\n\n" (18 MB): per-event overhead.
--   big   2,000 events with 65,536 bytes of data each, spread over 656
--         "data:" lines of ~100 bytes, with "event:" and "id:" fields
--         (~139 MB): line scanning and data joining.

local script_dir = (arg and arg[0] or ""):match("^(.*)[/\\]") or "."
local outdir = arg[1] or (script_dir .. "/corpus")

-- 64-bit LCG (Knuth MMIX constants); integer overflow wraps in Lua 5.4,
-- so the sequence is the same everywhere.
local function lcg(seed)
  local x = seed
  return function(n)              -- an integer in [1, n]
    x = x * 6364136223846793005 + 1442695040888963407
    return ((x >> 33) % n) + 1
  end
end

local function write_atomic(name, produce)
  local path = outdir .. "/" .. name .. ".sse"
  local tmp = path .. ".tmp"
  local f = assert(io.open(tmp, "wb"))
  f:setvbuf("full", 1 << 20)
  local n = produce(f)
  assert(f:close())
  assert(os.rename(tmp, path))
  local size = assert(io.open(path, "rb")):seek("end")
  io.stderr:write(string.format("gen_corpus: %-5s %9d events %11d bytes  %s\n",
                                name, n, size, path))
end

local corpora = {}

-- Tokens as they appear inside the JSON string (already JSON-escaped).
local TOKENS = {
  "The", " the", " a", " of", " to", " and", " in", " is", " that", " it",
  " for", " on", " with", " as", " this", " be", " are", " by", " model",
  " stream", " event", " data", " server", " client", " parser", " token",
  " Lua", " curl", " response", " request", ",", ".", ":", ";", "!", "?",
  " (", ")", " -", "\\n", "\\n\\n", " \\\"", "\\\"", "'s", "ing", "ed",
  " caf\xC3\xA9", " na\xC3\xAFve", " \xE2\x80\x94", "\xE2\x80\x99", " \xE2\x82\xAC",
  " \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E", " \xF0\x9F\x99\x82", " \xF0\x9F\x9A\x80",
  " Stra\xC3\x9F" .. "e", " \xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82",
  " 42", " 3.14", " http", "://", "example", ".com", " {", "}", " [", "]",
  " function", " local", " end", " return", " nil", " true", " false",
}

function corpora.chat(f)
  local N = 200000
  local rnd = lcg(20240501)
  local id = "chatcmpl-9xQ2bW7kLmN4pRs8TuV1wYz3AbC"
  local created = 1718000000
  local head = 'data: {"id":"' .. id ..
    '","object":"chat.completion.chunk","created":%d,"model":"gpt-4o-mini",' ..
    '"choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":null}]}\n\n'
  local fmt = string.format
  local buf, nb = {}, 0
  for i = 1, N do
    nb = nb + 1
    buf[nb] = fmt(head, created + i // 50, TOKENS[rnd(#TOKENS)])
    if nb == 4096 then f:write(table.concat(buf, "", 1, nb)); nb = 0 end
  end
  f:write(table.concat(buf, "", 1, nb))
  f:write("data: [DONE]\n\n")
  return N + 1
end

-- The same tokens in a compact chunk as OpenAI-compatible servers send it
-- (no created, no finish_reason, no index): ~116 bytes per event.
function corpora.chat116(f)
  local N = 200000
  local rnd = lcg(20240502)
  local head = 'data: {"id":"chatcmpl-AbC","object":"chat.completion.chunk","model":"o3",' ..
    '"choices":[{"delta":{"content":"%s"}}]}\n\n'
  local fmt = string.format
  local buf, nb = {}, 0
  for _ = 1, N do
    nb = nb + 1
    buf[nb] = fmt(head, TOKENS[rnd(#TOKENS)])
    if nb == 4096 then f:write(table.concat(buf, "", 1, nb)); nb = 0 end
  end
  f:write(table.concat(buf, "", 1, nb))
  f:write("data: [DONE]\n\n")
  return N + 1
end

function corpora.tiny(f)
  local N = 2000000
  local block = string.rep("data: x\n\n", 10000)
  for _ = 1, N // 10000 do f:write(block) end
  return N
end

function corpora.big(f)
  local N, SIZE, LINE = 2000, 65536, 99
  local rnd = lcg(77)
  -- A pool of distinct printable 99-byte lines to draw from.
  local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 +/=,.{}\"'"
  local pool = {}
  for i = 1, 256 do
    local t = {}
    for j = 1, LINE do
      local k = rnd(#alphabet)
      t[j] = alphabet:sub(k, k)
    end
    pool[i] = table.concat(t)
  end
  -- data = full lines joined by "\n", the last line shortened so that the
  -- joined data is exactly SIZE bytes.
  local full = SIZE // (LINE + 1)               -- 655 full lines + "\n" each
  local last = SIZE - full * (LINE + 1)         -- 36 bytes on line 656
  for i = 1, N do
    local t = { "event: chunk\nid: ", tostring(i), "\n" }
    local n = #t
    for _ = 1, full do
      n = n + 1; t[n] = "data: "
      n = n + 1; t[n] = pool[rnd(#pool)]
      n = n + 1; t[n] = "\n"
    end
    n = n + 1; t[n] = "data: "
    n = n + 1; t[n] = pool[rnd(#pool)]:sub(1, last)
    n = n + 1; t[n] = "\n\n"
    f:write(table.concat(t))
  end
  return N
end

local names = { table.unpack(arg, 2) }
if #names == 0 then names = { "chat", "chat116", "tiny", "big" } end
os.execute("mkdir -p '" .. outdir .. "'")
for _, name in ipairs(names) do
  local produce = corpora[name]
  if not produce then
    io.stderr:write("gen_corpus: unknown corpus '" .. name .. "' (chat, tiny, big)\n")
    os.exit(2)
  end
  write_atomic(name, produce)
end
