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
CURL_CFLAGS ?= $(shell $(PKG_CONFIG) --cflags libcurl 2>/dev/null)
CURL_LIBS ?= $(shell $(PKG_CONFIG) --libs libcurl 2>/dev/null || echo -lcurl)
# Sanitizers for the memory check build.
SANITIZE ?= -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

BUILD ?= build
ASAN_BUILD ?= build-asan
SOURCES = $(wildcard src/*.c)
HEADERS = $(wildcard src/*.h)
CORE = $(BUILD)/fetchstream/core.so
ASAN_CORE = $(ASAN_BUILD)/fetchstream/core.so

# Debian packages the project needs (`make deps` installs the missing ones).
DEPS = lua5.4 liblua5.4-dev libcurl4-openssl-dev lua-cjson lua-busted \
       lua-socket lua-check pkg-config luarocks gcc make

export LUA_PATH = lua/?.lua;lua/?/init.lua;;
export LUA_CPATH = $(BUILD)/?.so;;

.PHONY: all deps test spec memcheck lint fuzz-seeds demo bench bench-parser bench-memory clean

all: $(CORE)

$(CORE): $(SOURCES) $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(WARNINGS) $(CFLAGS) -fPIC -shared $(LUA_CFLAGS) $(CURL_CFLAGS) \
	  -o $@ $(SOURCES) $(CURL_LIBS)

$(ASAN_CORE): $(SOURCES) $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(WARNINGS) -O1 -g $(SANITIZE) -fPIC -shared $(LUA_CFLAGS) \
	  $(CURL_CFLAGS) -o $@ $(SOURCES) $(CURL_LIBS)

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
	$(LUACHECK) -q lua spec bench examples bin/fetchstream types fuzz

# Rewrite fuzz/seeds from the cases of spec/parser_spec.lua.
fuzz-seeds:
	$(LUA) fuzz/seeds.lua fuzz/seeds

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
	rm -rf $(BUILD) $(ASAN_BUILD)
