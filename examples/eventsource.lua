-- A long-lived feed read the way a browser's EventSource reads it: with
-- reconnect set, a dropped connection is opened again after a delay, with
-- the last event ID in a Last-Event-ID header so the server resumes where
-- it left off; an HTTP 204 from the server ends the feed for good.
--
--   lua5.4 examples/eventsource.lua                 -- the bundled stub's /feed, which
--                                                   -- drops the connection every 3 events
--   lua5.4 examples/eventsource.lua https://example.com/events
--
-- Run it from the repo root after `make`; it needs no LUA_PATH (see
-- examples/paths.lua).

dofile((arg[0]:match("^.*/") or "./") .. "paths.lua") -- the checkout's module; drop once installed
local fetch = require "fetchstream"

local url = arg[1]
local server
if not url then -- no feed given: start the stub server that ships in spec/
  server = require("spec.server").start()
  url = server:url("/feed?n=9&drop_after=3&delay=100")
end

-- One line per connection: the request's Last-Event-ID and the response status.
local function connection(s, note)
  if s.reconnects then
    io.write(("reconnect #%d, Last-Event-ID: %s"):format(s.reconnects, s.last_event_id))
  else
    io.write("connect")
  end
  io.write(" -> ", s.status, note or "", "\n")
  io.flush()
end

local feed, failure
feed = fetch.stream(url, {
  -- wait 0.5 s before reconnecting (the server's retry: field wins), more
  -- after failures in a row, and give up after 3 of them
  reconnect = { delay = 0.5, retries = 3 },
  onopen = connection,               -- each (re)connection's response, but a 204
  onmessage = function(ev)
    io.write(("  %s id=%s: %s\n"):format(ev.event, ev.id, ev.data))
    io.flush()
  end,
  onclose = function() connection(feed, ", the feed is over") end, -- the server said 204
  onerror = function(err) failure = err end,  -- e.g. a 404, or reconnect.retries used up
})

local ok, err = pcall(fetch.run)     -- runs until the stream has ended
if server then server:stop() end
if ok then err = failure end
if err then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end
