-- Lifetime soak: 10,000 streams opened and ended in every way users end
-- them — a break out of the loop, s:close(), abort() in a callback, an error
-- in a callback, dropped to the garbage collector, their client closed — and
-- memory stays flat while every callback stream ends exactly once.
--
-- Against the stub server in spec/server/. It takes about 5 s (more under
-- ASan, where LeakSanitizer checks what the RSS bound checks here); `make
-- test` runs it in both passes.

local fetch = require "fetchstream"
local stub = require "spec.server"

local srv
setup(function() srv = stub.start() end)
teardown(function() srv:stop() end)

local TOTAL = tonumber(os.getenv("FETCHSTREAM_SOAK") or "") or 10000

-- Resident set size in KiB (Linux).
local function rss_kib()
  for line in io.lines("/proc/self/status") do
    local kib = line:match("^VmRSS:%s*(%d+)")
    if kib then return tonumber(kib) end
  end
end

describe("10,000 stream lifetimes", function()
  it("keep RSS flat and end every callback stream once", function()
    local url, stall = srv:url("/count?n=2"), srv:url("/stall")
    local endings = setmetatable({}, { __mode = "k" }) -- stream -> how many final callbacks
    local callback_streams, ended_streams = 0, 0
    local function ended(_, s)
      if endings[s] == nil then ended_streams = ended_streams + 1 end
      endings[s] = (endings[s] or 0) + 1
      assert(endings[s] == 1, "a stream ended twice")
    end
    local function with_endings(opts)
      callback_streams = callback_streams + 1
      opts.onclose = function(s) ended(nil, s) end
      opts.onerror, opts.onabort = ended, ended
      return opts
    end

    local ways = {
      function() for _ in fetch.events(url) do break end end, -- luacheck: ignore 512 (break)
      function() local s = assert(fetch.open(url)); s:next(); s:close() end,  -- close
      function()                                                              -- abort in a callback
        fetch.stream(url, with_endings { onmessage = function(_, s) s:abort("enough") end })
      end,
      function()                                                              -- error in a callback
        fetch.stream(url, with_endings { onmessage = function() error("boom") end })
      end,
      function() assert(fetch.open(stall)) end,                               -- dropped to the GC
      function()                                                              -- client closed
        local c = fetch.client()
        c:stream(stall, with_endings { onmessage = function() end })
        c:stream(url, with_endings { onmessage = function() end })
        c:run(0.001)
        c:close()
      end,
    }

    local BATCH = 60 -- streams per round, then fetch.run() and a collection
    local baseline
    for i = 1, TOTAL do
      ways[i % #ways + 1]()
      if i % BATCH == 0 then
        assert(fetch.run(10))
        collectgarbage()
        if i == 1200 or (baseline == nil and i == TOTAL) then -- warmed up: caches and pools filled
          collectgarbage()
          baseline = rss_kib()
        end
      end
    end
    assert(fetch.run(10))
    collectgarbage()
    collectgarbage()
    local grown = rss_kib() - baseline
    assert.are.equal(callback_streams, ended_streams)
    -- Under AddressSanitizer freed memory waits in its quarantine, so RSS
    -- grows by design; that pass checks leaks (LeakSanitizer) instead.
    if not (os.getenv("LD_PRELOAD") or ""):find("asan", 1, true) then
      assert.is_true(grown < 8 * 1024, ("RSS grew by %d KiB over %d lifetimes"):format(grown, TOTAL))
    end
    print(("\n# soak: %d lifetimes, %d callback streams ended once each, RSS %d KiB -> %d KiB")
      :format(TOTAL, callback_streams, baseline, baseline + grown))
  end)
end)
