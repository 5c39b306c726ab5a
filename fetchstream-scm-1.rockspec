rockspec_format = "3.0"
package = "fetchstream"
version = "scm-1"
source = {
  url = "git+file:///dev/null", -- build from a checkout: luarocks make
}
description = {
  summary = "Streaming HTTP fetch and Server-Sent Events for Lua, on libcurl",
  detailed = [[
fetchstream sends any HTTP request (POST with headers and a JSON body
included) and hands the response to Lua as it arrives: Server-Sent Events
parsed exactly as the WHATWG standard says, raw chunks or lines, through a
for loop or callbacks, with abort, timeouts and errors that say what went
wrong.]],
  license = "MIT",
  labels = { "http", "sse", "eventsource", "curl", "streaming", "llm" },
}
dependencies = {
  "lua >= 5.1, < 5.5", -- Lua 5.4, and LuaJIT 2.1 (the Lua 5.1 ABI)
  "lua-cjson",
}
external_dependencies = {
  -- Checked by library: a header check fails on Debian's multiarch layout.
  CURL = { library = "curl" },
  -- The decoders of compressed bodies (src/decode.c): zlib1g-dev,
  -- libbrotli-dev and libzstd-dev on Debian.
  ZLIB = { library = "z" },
  BROTLIDEC = { library = "brotlidec" },
  ZSTD = { library = "zstd" },
}
build = {
  type = "builtin",
  install = { bin = { fetchstream = "bin/fetchstream" } },
  modules = {
    ["fetchstream.core"] = {
      sources = {
        "src/client.c",
        "src/decode.c",
        "src/lclient.c",
        "src/lcore.c",
        "src/lfetchstream.c",
        "src/lsse.c",
        "src/ltransfer.c",
        "src/sse.c",
        "src/stream.c",
      },
      libraries = { "curl", "z", "brotlidec", "zstd" },
      incdirs = { "$(CURL_INCDIR)", "$(ZLIB_INCDIR)", "$(BROTLIDEC_INCDIR)", "$(ZSTD_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)", "$(ZLIB_LIBDIR)", "$(BROTLIDEC_LIBDIR)", "$(ZSTD_LIBDIR)" },
    },
    -- The parser alone, without libcurl (what fetchstream.sse is built on).
    ["fetchstream.sse.core"] = {
      sources = { "src/sse.c", "src/lsse.c", "src/lfetchstream.c" },
    },
    ["fetchstream"] = "lua/fetchstream/init.lua",
    ["fetchstream.chat"] = "lua/fetchstream/chat.lua",
    ["fetchstream.json"] = "lua/fetchstream/json.lua",
    ["fetchstream.lines"] = "lua/fetchstream/lines.lua",
    ["fetchstream.client"] = "lua/fetchstream/client.lua",
    ["fetchstream.options"] = "lua/fetchstream/options.lua",
    ["fetchstream.reconnect"] = "lua/fetchstream/reconnect.lua",
    ["fetchstream.request"] = "lua/fetchstream/request.lua",
    ["fetchstream.sse"] = "lua/fetchstream/sse.lua",
    ["fetchstream.stream"] = "lua/fetchstream/stream.lua",
    ["fetchstream.uv"] = "lua/fetchstream/uv.lua",
  },
}
test = {
  type = "command",
  command = "make test",
}
