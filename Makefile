# fetchstream — make, make deps, make test, make demo, make bench, make fuzz.
#
# Every variable can be overridden: make LUA=lua5.4 CFLAGS=-O0 ...

# The interpreter. Never plain `lua`: on Debian it may be Lua 5.1.
LUA ?= lua5.4
# busted runs under our interpreter (its --lua flag mangles arguments).
BUSTED ?= $(LUA) /usr/bin/busted
LUACHECK ?= luacheck
PKG_CONFIG ?= pkg-config
# Optimisation and debug flags; warnings are always errors.
CFLAGS ?= -O2 -g
WARNINGS = -std=c99 -Wall -Wextra -Werror
# Lua's headers only: the interpreter provides Lua's symbols at load time.
LUA_CFLAGS ?= $(shell $(PKG_CONFIG) --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4)
# The same sources for LuaJIT 2.1 (the Lua 5.1 ABI of Neovim and OpenResty).
LUAJIT ?= luajit
LUAJIT_CFLAGS ?= $(shell $(PKG_CONFIG) --cflags luajit 2>/dev/null || echo -I/usr/include/luajit-2.1)
CURL_CFLAGS ?= $(shell $(PKG_CONFIG) --cflags libcurl 2>/dev/null)
CURL_LIBS ?= $(shell $(PKG_CONFIG) --libs libcurl 2>/dev/null || echo -lcurl)
# The decoders of compressed bodies (src/decode.c): curl's own cannot stop
# when our queue is full.
DECODE_CFLAGS ?= $(shell $(PKG_CONFIG) --cflags zlib libbrotlidec libzstd 2>/dev/null)
DECODE_LIBS ?= $(shell $(PKG_CONFIG) --libs zlib libbrotlidec libzstd 2>/dev/null || echo -lz -lbrotlidec -lzstd)
# Sanitizers for the memory check build.
SANITIZE ?= -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
# The fuzzer: clang's libFuzzer over src/sse.c alone, with ASan and UBSan.
CLANG ?= clang
FUZZ_SANITIZE ?= -fsanitize=fuzzer,address,undefined -fno-omit-frame-pointer \
                 -fno-sanitize-recover=undefined
# How long `make fuzz` runs, and the short run that is part of `make test`.
FUZZ_SECONDS ?= 600
FUZZ_SMOKE_SECONDS ?= 30
# FUZZ_QUIET=1: libFuzzer's output to $(FUZZ_BUILD)/fuzz.log, a summary line
# only (make test sets it).
FUZZ_QUIET ?=

# Three builds of the same sources, each with both modules:
# fetchstream/core.so (on libcurl) and fetchstream/sse/core.so (the parser
# alone, no curl).
BUILD ?= build
ASAN_BUILD ?= build-asan
LUAJIT_BUILD ?= build-luajit
FUZZ_BUILD ?= build-fuzz
SOURCES = $(wildcard src/*.c)
SSE_SOURCES = src/sse.c src/lsse.c src/lfetchstream.c
HEADERS = $(wildcard src/*.h)
MODULES = fetchstream/core.so fetchstream/sse/core.so
CORE = $(addprefix $(BUILD)/,$(MODULES))
ASAN_CORE = $(addprefix $(ASAN_BUILD)/,$(MODULES))
LUAJIT_CORE = $(addprefix $(LUAJIT_BUILD)/,$(MODULES))

# A build directory's compiler flags and Lua headers follow from its name.
build_flags = $(if $(findstring asan,$1),-O1 -g $(SANITIZE),$(CFLAGS))
lua_headers = $(if $(findstring luajit,$1),$(LUAJIT_CFLAGS),$(LUA_CFLAGS))
FUZZER = $(FUZZ_BUILD)/sse_fuzz

# Debian packages the project needs (`make deps` installs the missing ones).
# libclang-rt-14-dev holds libFuzzer; clang only recommends it. zlib1g-dev,
# libbrotli-dev and libzstd-dev: the decoders of compressed bodies. lua-luv:
# the libuv loop fetchstream.uv drives a client on outside Neovim.
DEPS = lua5.4 liblua5.4-dev libcurl4-openssl-dev zlib1g-dev libbrotli-dev libzstd-dev \
       lua-cjson lua-busted lua-socket lua-check pkg-config luarocks gcc make clang \
       libclang-rt-14-dev luajit2 libluajit2-5.1-dev neovim lua-luv libnginx-mod-http-lua nginx-core curl

# Debian packages only the benchmarks need: `make bench` installs them, `make
# test` does not. GNU time (each process's CPU and peak RSS), httpx (the
# Python peer). Node and npm come from Debian's nodejs and npm only when no
# node is on PATH (bench/setup.sh).
BENCH_DEPS = time python3-httpx
# The benchmarks' loopback server (bench/server.c).
BENCH_SERVER = $(BUILD)/bench-server

export LUA_PATH = lua/?.lua;lua/?/init.lua;;
export LUA_CPATH = $(BUILD)/?.so;;

.PHONY: all luajit deps test spec spec-luajit memcheck lint fuzz fuzz-seeds demo clean \
        bench bench-setup bench-parser bench-e2e bench-latency bench-streams bench-uv bench-memory \
        bench-compression bench-summary

all: $(CORE)

luajit: $(LUAJIT_CORE)

%/fetchstream/core.so: $(SOURCES) $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(WARNINGS) $(call build_flags,$*) -fPIC -shared $(call lua_headers,$*) \
	  $(CURL_CFLAGS) $(DECODE_CFLAGS) -o $@ $(SOURCES) $(CURL_LIBS) $(DECODE_LIBS)

%/fetchstream/sse/core.so: $(SSE_SOURCES) $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(WARNINGS) $(call build_flags,$*) -fPIC -shared $(call lua_headers,$*) \
	  -o $@ $(SSE_SOURCES)

$(FUZZER): fuzz/sse_fuzz.c src/sse.c src/sse.h
	@mkdir -p $(@D)
	$(CLANG) $(WARNINGS) -O1 -g $(FUZZ_SANITIZE) -Isrc -o $@ fuzz/sse_fuzz.c src/sse.c

deps:
	@sh scripts/deps.sh $(DEPS)

# Lint, the specs, the specs under LuaJIT, the specs again under ASan+UBSan,
# then a short fuzz run. The last line printed is the total,
# "total: N passed, N failed".
test: deps $(CORE) $(LUAJIT_CORE) $(ASAN_CORE)
	@FUZZ_SMOKE_SECONDS=$(FUZZ_SMOKE_SECONDS) BUILD=$(BUILD) LUAJIT=$(LUAJIT) \
	  LUAJIT_BUILD=$(LUAJIT_BUILD) ASAN_BUILD=$(ASAN_BUILD) sh scripts/test.sh

spec: $(CORE)
	@sh scripts/run-specs.sh specs $(BUILD)

# The specs under LuaJIT against build-luajit/ (.busted leaves out what only
# Lua 5.4 has: *_lua54_spec.lua and the cases tagged #lua54).
spec-luajit: $(LUAJIT_CORE)
	@LUA=$(LUAJIT) sh scripts/run-specs.sh specs-luajit $(LUAJIT_BUILD)

memcheck: $(ASAN_CORE)
	@sh scripts/run-specs.sh memcheck $(ASAN_BUILD)

lint:
	$(LUACHECK) -q lua spec bench examples bin/fetchstream types fuzz
	$(LUACHECK) -q --std luajit lua bin/fetchstream examples  # the subset LuaJIT shares

# libFuzzer on the SSE parser for FUZZ_SECONDS (fuzz/sse_fuzz.c says what it
# checks), from the seeds in fuzz/seeds; the corpus it grows stays in
# $(FUZZ_BUILD)/corpus, a failing input in $(FUZZ_BUILD)/crash-*.
fuzz: deps $(FUZZER)
	@sh scripts/fuzz.sh $(FUZZER) $(FUZZ_SECONDS) $(FUZZ_QUIET)

# Rewrite fuzz/seeds from the cases of spec/parser_spec.lua.
fuzz-seeds:
	$(LUA) fuzz/seeds.lua fuzz/seeds

demo: deps $(CORE)
	$(LUA) examples/chat.lua

# The benchmarks (bench/README.md): every section, then the targets, in a
# few minutes (bench-compression at 1 GiB per encoding there). Each section
# also runs alone; bench-summary prints the targets from the figures the
# sections last recorded.
BENCH_ENV = LUA=$(LUA) LUAJIT=$(LUAJIT) BENCH_BUILD=$(BUILD) BENCH_BUILD_LUAJIT=$(LUAJIT_BUILD) \
            BENCH_SERVER=$(BENCH_SERVER)

bench: bench-setup
	@$(BENCH_ENV) sh bench/run.sh

# Builds both ABIs and the server, installs BENCH_DEPS, writes the corpora
# and installs the pinned eventsource-parser.
bench-setup: deps $(CORE) $(LUAJIT_CORE) $(BENCH_SERVER)
	@sh scripts/deps.sh $(BENCH_DEPS)
	@LUA=$(LUA) sh bench/setup.sh

# The parser alone, fresh processes, beside plain Lua and eventsource-parser.
bench-parser: bench-setup
	@$(BENCH_ENV) $(LUA) bench/parser.lua

# End to end over loopback beside curl, Node and httpx: wall, CPU, peak RSS.
bench-e2e: bench-setup
	@$(BENCH_ENV) $(LUA) bench/e2e.lua

# Events 1 ms apart: send-to-receive latency and time to the first event.
bench-latency: bench-setup
	@$(BENCH_ENV) $(LUA) bench/latency.lua

# 10 to 2,000 concurrent streams at a constant total rate, beside Node.
bench-streams: bench-setup
	@$(BENCH_ENV) $(LUA) bench/streams.lua

# 200 SSE streams driven by fetchstream.uv on luv beside fetch.run(): CPU
# per event, p50/p99 latency.
bench-uv: bench-setup
	@$(BENCH_ENV) $(LUA) bench/uv_streams.lua

# 1 GiB through a slow consumer: peak RSS stays bounded by back-pressure.
bench-memory: bench-setup
	@$(BENCH_ENV) $(LUA) bench/stream_memory.lua

bench-summary:
	@$(BENCH_ENV) $(LUA) bench/summary.lua

$(BENCH_SERVER): bench/server.c
	@mkdir -p $(@D)
	$(CC) $(WARNINGS) $(CFLAGS) -o $@ bench/server.c

# 4 GiB of zeros as identity, gzip, br and zstd to a slow consumer: peak RSS
# per encoding (each in its own process), beside the uncompressed figure.
bench-compression: deps $(CORE)
	$(LUA) bench/compression_memory.lua

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(LUAJIT_BUILD) $(FUZZ_BUILD)
