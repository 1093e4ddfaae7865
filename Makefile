# lume — build, test, bench.
#
#   make run     run lume on the simulated board with the default scripts
#   make test    the whole suite (C unit tests, busted specs, integration)
#   make asan    C unit tests under AddressSanitizer + UBSan, invariant checks on
#   make oom     the allocation-failure sweep at every allocation, under ASan
#   make fuzz    libFuzzer targets (FUZZ_SECONDS each, default 60)
#   make bench   benchmarks, figures side by side with a peer or the floor
#   make soak    the integration tests with SOAK=1, then the fault-injection
#                soak (tests/soak/run: SOAK_SECONDS, default 300); not in test
#   make deps    install missing Debian/Ubuntu packages
#   make symbols check what the libraries export (see the rule)
#
# Everything is built into $(BUILD) (default build/).

BUILD   ?= build
CC      ?= cc
PKGS    := lua5.4 libwebsockets libcjson
OPT     ?= -O2
SAN     ?=
CHECKS  ?=
CFLAGS  ?=
WARN    := -std=c11 -D_GNU_SOURCE $(OPT) -g -fPIC -pthread $(SAN) $(if $(CHECKS),-DLUME_CHECKS) \
           -Wall -Wextra -Wshadow -Wundef -Wno-unused-parameter \
           -Wstrict-prototypes -Wmissing-prototypes
# core/ has one folder per family; each is on the include path, so a file
# includes "outbox.h", not a path
CORE_DIRS := $(sort $(dir $(wildcard core/*/*.h core/*.h)))
CORE_INC  := $(addprefix -I,$(CORE_DIRS:%/=%))
CFLAGS  += $(WARN) $(CORE_INC) -Ibindings -Icli $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# core/ never sees Lua: compiled without its include path (and `make
# symbols` checks that no core object refers to a Lua symbol)
CORE_CFLAGS := $(WARN) $(CORE_INC) $(shell pkg-config --cflags libwebsockets libcjson 2>/dev/null)
LDLIBS  := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lsqlite3 \
           -lmbedtls -lmbedx509 -lmbedcrypto -lpthread -lm
LDFLAGS += $(SAN) -pthread

CORE_SRC := $(sort $(wildcard core/*.c core/*/*.c))
BIND_SRC := $(sort $(filter-out bindings/luamod.c,$(wildcard bindings/*.c)))
CLI_SRC  := $(sort $(wildcard cli/*.c))
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/%.o)
BIND_OBJ := $(BIND_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
BENCH_SRC := $(sort $(wildcard bench/*.c))
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

# Debian packages the build, the tests and the benchmarks need.
DEB_BUILD := build-essential pkg-config liblua5.4-dev lua5.4 libwebsockets-dev \
             libmbedtls-dev libcjson-dev libsqlite3-dev sqlite3 libcmocka-dev \
             lua-busted openssl mosquitto mosquitto-clients procps \
             python3 python3-paho-mqtt
DEB_BENCH := lua5.3 lua-posix lua-dkjson libmosquitto-dev
DEB_FUZZ  := clang libclang-rt-14-dev
DEB_SOAK  := python3

.PHONY: all run test unit busted integration asan oom fuzz bench deps deps-bench \
        deps-fuzz deps-soak clean symbols soak ldlibs
IT_SRC  := $(sort $(wildcard tests/integration/*.c))
IT_BIN  := $(IT_SRC:tests/integration/%.c=$(BUILD)/tests/it/%)

all: $(BUILD)/lume $(BUILD)/lume_host.so $(BUILD)/liblume.so $(UNIT_BIN) $(BUILD)/examples/embed \
     $(IT_BIN)

$(BUILD)/core/%.o: core/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CORE_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/liblume.a: $(CORE_OBJ) $(BIND_OBJ)
	@rm -f $@
	ar rcs $@ $^

# the lume command: cli/ on top of the library
$(BUILD)/lume: $(CLI_OBJ) $(BUILD)/liblume.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The library for embedders: the objects of liblume.a, exporting only what
# bindings/lume.h declares (bindings/lume.map). liblume.a stays for lume's
# own users (the lume binary, lume_host.so, the tests, the benchmarks).
# --no-undefined is left out under sanitizers (their runtime resolves late).
LUME_SONAME := liblume.so.0
$(BUILD)/$(LUME_SONAME): $(CORE_OBJ) $(BIND_OBJ) bindings/lume.map
	$(CC) $(LDFLAGS) -shared -Wl,-soname,$(LUME_SONAME) \
	  -Wl,--version-script=bindings/lume.map $(if $(SAN),,-Wl,--no-undefined) \
	  -o $@ $(CORE_OBJ) $(BIND_OBJ) $(LDLIBS)
$(BUILD)/liblume.so: $(BUILD)/$(LUME_SONAME)
	ln -sf $(LUME_SONAME) $@

# The embedding example: an OEM's own main, built as an OEM would build it:
# lume.h alone on the include path (no core/, no Lua, lws or cJSON headers,
# not even _GNU_SOURCE), linked against liblume.so.
EMBED_CFLAGS := -std=c11 $(OPT) -g $(SAN) -Wall -Wextra -Wshadow -Wundef -Wpedantic \
                -Wstrict-prototypes -Wmissing-prototypes -Ibindings
$(BUILD)/examples/embed: examples/embed.c bindings/lume.h $(BUILD)/liblume.so
	@mkdir -p $(dir $@)
	$(CC) $(EMBED_CFLAGS) -o $@ $< -L$(BUILD) -llume -Wl,-rpath,'$$ORIGIN/..' $(LDFLAGS)

# The bindings as a Lua C module, so busted (on lua5.4) reaches them.
$(BUILD)/lume_host.so: $(BUILD)/bindings/luamod.o $(BUILD)/liblume.a
	$(CC) $(LDFLAGS) -shared -o $@ $^ $(LDLIBS)

# Each unit test links the helpers they share (tests/unit/testutil.[ch]).
$(BUILD)/tests/testutil.o: tests/unit/testutil.c tests/unit/testutil.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit -c $< -o $@

$(BUILD)/tests/%: tests/unit/%.c tests/unit/testutil.h $(BUILD)/tests/testutil.o $(BUILD)/liblume.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(BUILD)/tests/testutil.o $(BUILD)/liblume.a $(LDFLAGS) $(LDLIBS) -lcmocka

# The allocation-failure sweep (tests/unit/test_oom.c) links the injector
# (tests/unit/fault.c) and sends liblume.a's allocation calls through it with
# ld --wrap: only this binary; tests/unit/fault.h says what is counted.
FAULT_WRAP := $(foreach f,malloc calloc realloc strdup strndup aligned_alloc vasprintf scandir,\
                -Wl,--wrap=$(f))
$(BUILD)/tests/test_oom: tests/unit/test_oom.c tests/unit/fault.c tests/unit/fault.h \
                         tests/unit/testutil.h $(BUILD)/tests/testutil.o $(BUILD)/liblume.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit -o $@ $< tests/unit/fault.c $(BUILD)/tests/testutil.o \
	  $(BUILD)/liblume.a $(LDFLAGS) $(FAULT_WRAP) $(LDLIBS) -lcmocka

# Helpers the integration tests run (test code: no liblume, no lume_ prefix).
$(BUILD)/tests/it/%: tests/integration/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS)

$(BUILD)/bench/%: bench/%.c $(BUILD)/liblume.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/liblume.a $(LDFLAGS) $(LDLIBS) -lmosquitto

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

run: deps $(BUILD)/lume
	$(BUILD)/lume run $(RUNFLAGS)

# The whole suite. tests/run prints one closing line: 'N passed, N failed'.
test: deps
	$(MAKE) all symbols
	BUILD=$(BUILD) tests/run

unit: all
	BUILD=$(BUILD) tests/run unit
busted: all
	BUILD=$(BUILD) tests/run busted
integration: all
	BUILD=$(BUILD) tests/run integration

# 1. Every global symbol of liblume.a carries the lume_ prefix (luaopen_ is
#    Lua's own convention for C modules and is allowed in the module object
#    only).
# 2. liblume.so exports exactly the functions lume.h declares (the header
#    preprocessed, so comments do not count, against nm -D), and lume.map
#    lists exactly them too.
symbols: $(BUILD)/liblume.a $(BUILD)/$(LUME_SONAME)
	@bad=$$(nm -g --defined-only $(BUILD)/liblume.a | awk 'NF==3 {print $$3}' \
	  | grep -v '^lume_' || true); \
	if [ -n "$$bad" ]; then echo "exported symbols without lume_ prefix:"; \
	  echo "$$bad"; exit 1; fi; echo "symbols: every exported symbol starts with lume_"
	@lua=$$(nm -u $(CORE_OBJ) 2>/dev/null | grep -E ' U (lua|luaL|luaopen)_' || true); \
	if [ -n "$$lua" ]; then echo "core/ uses Lua:"; echo "$$lua"; exit 1; fi; \
	echo "symbols: core/ uses no Lua symbol"
	@$(CC) -E -P bindings/lume.h | grep -o 'lume_[a-z0-9_]*[[:space:]]*(' \
	  | tr -d ' \t(' | sort -u >$(BUILD)/symbols.header; \
	nm -D --defined-only $(BUILD)/$(LUME_SONAME) | awk 'NF==3 && $$2 != "A" {print $$3}' \
	  | sed 's/@.*//' | sort -u >$(BUILD)/symbols.so; \
	sed -n 's/^[[:space:]]*\(lume_[a-z0-9_]*\);.*/\1/p' bindings/lume.map \
	  | sort -u >$(BUILD)/symbols.map; \
	if ! cmp -s $(BUILD)/symbols.header $(BUILD)/symbols.so; then \
	  echo "liblume.so exports (>) other than lume.h declares (<):"; \
	  diff $(BUILD)/symbols.header $(BUILD)/symbols.so | grep '^[<>]'; exit 1; fi; \
	if ! cmp -s $(BUILD)/symbols.header $(BUILD)/symbols.map; then \
	  echo "bindings/lume.map lists (>) other than lume.h declares (<):"; \
	  diff $(BUILD)/symbols.header $(BUILD)/symbols.map | grep '^[<>]'; exit 1; fi; \
	echo "symbols: liblume.so exports exactly the $$(wc -l <$(BUILD)/symbols.header)" \
	  "functions lume.h declares"

# C unit tests under ASan+UBSan (leaks too) with the invariant checks compiled
# in (core/base/check.h: LUME_CHECKS), then the busted specs that drive
# the bindings, with the sanitizer runtimes preloaded into lua5.4 (leak
# checks off there: the interpreter and busted keep their own memory), then
# the integration tests with the instrumented lume binary (a sanitizer report
# in any lume's stderr fails them).
ASAN_RT = $(shell $(CC) -print-file-name=libasan.so):$(shell $(CC) -print-file-name=libubsan.so)
asan: deps
	$(MAKE) BUILD=build-asan OPT=-O1 CHECKS=1 \
	  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" all
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  BUILD=build-asan tests/run unit
	LD_PRELOAD=$(ASAN_RT) ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1 BUILD=build-asan tests/run busted
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  BUILD=build-asan tests/run integration

# The allocation-failure sweep of tests/unit/test_oom.c at every allocation
# (make test sweeps a seeded sample of lume_runtime_new's), under ASan with
# leak and invariant checks: 25-36 minutes on 2 CPUs.
oom: deps
	$(MAKE) BUILD=build-asan OPT=-O1 CHECKS=1 \
	  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  build-asan/tests/test_oom
	LUME_OOM_STEP=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1 BUILD=build-asan tests/run unit test_oom

FUZZ_SECONDS ?= 60
fuzz: deps deps-fuzz
	BUILD=build-fuzz FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run

# The libraries lume links, for tests/fuzz/run.
ldlibs:
	@echo $(LDLIBS)

bench: deps deps-bench
	$(MAKE) all $(BENCH_BIN)
	BUILD=$(BUILD) bench/run

SOAK_SECONDS ?= 300
soak: deps deps-soak
	$(MAKE) all
	BUILD=$(BUILD) SOAK=1 tests/run integration
	BUILD=$(BUILD) SOAK_SECONDS=$(SOAK_SECONDS) tests/soak/run

# Install what is missing, and only that. apt-get through sudo when not root.
define apt_install
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' \
	    || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if ! command -v apt-get >/dev/null; then \
	    echo "lume needs these packages:$$missing"; \
	    echo "this is not a Debian/Ubuntu system: install their equivalents by hand"; exit 2; fi; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  echo "installing:$$missing"; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef
deps:
	$(call apt_install,$(DEB_BUILD))
deps-bench:
	$(call apt_install,$(DEB_BENCH))
deps-fuzz:
	$(call apt_install,$(DEB_FUZZ))
deps-soak:
	$(call apt_install,$(DEB_SOAK))

clean:
	rm -rf build build-asan build-fuzz
