-- fuzz/seeds.lua: writes the seed corpus of the libFuzzer harness
-- (fuzz/sse_fuzz.c) from the cases of spec/parser_spec.lua.
--
--   lua5.4 fuzz/seeds.lua [dir]      (from the repo root; dir: fuzz/seeds)
--
-- The spec runs against a stand-in for `require "fetchstream"` whose parser
-- only records the bytes fed to it; every `it` runs, its assertions are
-- inert, and whatever a parser instance was fed (up to a reset) is one
-- stream. A seed is the harness's 5-byte header (comments and retries on,
-- the case's max_event_size or the 16 MiB default, a split seed from the
-- bytes) and the stream. Streams over MAX_STREAM bytes are left out, and at
-- most PER_CASE distinct streams are kept from one `it`, so the corpus stays
-- small. File names are hashes of the content: rerunning changes nothing.

local dir = arg[1] or "fuzz/seeds"
local SPEC = "spec/parser_spec.lua"
local MAX_STREAM = 4096
local PER_CASE = 6

-- the harness header, as fuzz/sse_fuzz.c reads it
local COMMENTS, RETRY = 1, 2
local CLASS_BYTE, CLASS_WORD, CLASS_DEFAULT = 0, 1, 2

local function fnv1a(s)
  local h = 2166136261
  for i = 1, #s do h = ((h ~ s:byte(i)) * 16777619) & 0xffffffff end
  return h
end

local function header(max, stream)
  local class, value = CLASS_DEFAULT, 0
  if max and max <= 255 then
    class, value = CLASS_BYTE, max
  elseif max and max <= 65535 then
    class, value = CLASS_WORD, max
  end
  local seed = fnv1a(stream) & 0xffff
  return string.char(COMMENTS | RETRY | class << 3, value & 0xff, value >> 8,
                     seed & 0xff, seed >> 8)
end

-- the stand-in module --------------------------------------------------------

local streams = {}   -- the current case's streams, in order
local function stream_of(p)
  if #p.chunks > 0 then
    streams[#streams + 1] = { max = p.max, bytes = table.concat(p.chunks) }
  end
  p.chunks = {}
end

local live = {}      -- the current case's parsers
local Parser = {}
Parser.__index = Parser
function Parser:feed(chunk)
  if type(chunk) == "string" then self.chunks[#self.chunks + 1] = chunk end
  return function() return nil end
end
function Parser:reset() stream_of(self) end

local fake = {
  parser = function(opts)
    local max = type(opts) == "table" and math.tointeger(opts.max_event_size) or nil
    local p = setmetatable({ chunks = {}, max = max, last_event_id = "" }, Parser)
    live[#live + 1] = p
    return p
  end,
}

-- inert assertions: any field, any call
local inert
inert = setmetatable({}, {
  __index = function() return inert end,
  __call = function(_, ...) return ... end,
})

-- run the spec -------------------------------------------------------------

local seeds, names, kept, cases = {}, {}, 0, 0
local env = setmetatable({
  require = function(name)
    if name == "fetchstream" then return fake end
    return require(name)
  end,
  assert = inert,
  describe = function(_, body) body() end,
  it = function(_, body)
    cases = cases + 1
    streams, live = {}, {}
    pcall(body)
    for _, p in ipairs(live) do stream_of(p) end
    local n = 0
    for _, s in ipairs(streams) do
      local seed = header(s.max, s.bytes) .. s.bytes
      if #s.bytes <= MAX_STREAM and not seeds[seed] and n < PER_CASE then
        seeds[seed] = true
        names[#names + 1] = seed
        n = n + 1
      end
    end
    kept = kept + n
  end,
}, { __index = _G })

local chunk = assert(loadfile(SPEC, "t", env))
chunk()

assert(os.execute("mkdir -p '" .. dir .. "' && rm -f '" .. dir .. "'/spec-*"))
for _, seed in ipairs(names) do
  local f = assert(io.open(string.format("%s/spec-%08x", dir, fnv1a(seed)), "wb"))
  f:write(seed)
  f:close()
end
print(string.format("%d seeds from %d cases of %s written to %s/", kept, cases, SPEC, dir))
