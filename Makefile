# fetchstream — make, make deps, make test, make demo, make bench.
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
# Sanitizers for the memory check build.
SANITIZE ?= -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

# Three builds of the same sources, each with both modules:
# fetchstream/core.so (on libcurl) and fetchstream/sse/core.so (the parser
# alone, no curl).
BUILD ?= build
ASAN_BUILD ?= build-asan
LUAJIT_BUILD ?= build-luajit
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

# Debian packages the project needs (`make deps` installs the missing ones).
DEPS = lua5.4 liblua5.4-dev libcurl4-openssl-dev lua-cjson lua-busted \
       lua-socket lua-check pkg-config luarocks gcc make \
       luajit2 libluajit2-5.1-dev

export LUA_PATH = lua/?.lua;lua/?/init.lua;;
export LUA_CPATH = $(BUILD)/?.so;;

.PHONY: all luajit deps test spec memcheck lint demo bench bench-parser bench-memory clean

all: $(CORE)

luajit: $(LUAJIT_CORE)

%/fetchstream/core.so: $(SOURCES) $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(WARNINGS) $(call build_flags,$*) -fPIC -shared $(call lua_headers,$*) \
	  $(CURL_CFLAGS) -o $@ $(SOURCES) $(CURL_LIBS)

%/fetchstream/sse/core.so: $(SSE_SOURCES) $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(WARNINGS) $(call build_flags,$*) -fPIC -shared $(call lua_headers,$*) \
	  -o $@ $(SSE_SOURCES)

deps:
	@sh scripts/deps.sh $(DEPS)

# Lint, the specs, then the specs again under ASan+UBSan. The last line
# printed is the total, "total: N passed, N failed".
test: deps $(CORE) $(ASAN_CORE)
	@sh scripts/test.sh

spec: $(CORE)
	@sh scripts/run-specs.sh specs $(BUILD)

memcheck: $(ASAN_CORE)
	@sh scripts/run-specs.sh memcheck $(ASAN_BUILD)

lint:
	$(LUACHECK) -q lua spec bench examples bin/fetchstream types
	$(LUACHECK) -q --std luajit lua bin/fetchstream examples  # the subset LuaJIT shares

demo: deps $(CORE)
	$(LUA) examples/chat.lua

bench: bench-parser bench-memory

# Parser throughput beside plain Lua and eventsource-parser (Node).
bench-parser: deps $(CORE)
	sh bench/run.sh

# 1 GiB through a slow consumer: peak RSS stays bounded by back-pressure.
bench-memory: deps $(CORE)
	$(LUA) bench/stream_memory.lua

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(LUAJIT_BUILD)
