# lume — build, test, bench.
#
#   make run     run lume on the simulated board with the default scripts
#   make test    the whole suite (C unit tests, busted specs, integration),
#                after test-small (the LUME_NO_* build and its unit tests)
#   make asan    C unit tests under AddressSanitizer + UBSan, invariant checks on
#   make oom     the allocation-failure sweep at every allocation, under ASan
#   make fuzz    libFuzzer targets (FUZZ_SECONDS each, default 60)
#   make bench   benchmarks, figures side by side with a peer or the floor
#   make soak    the integration tests with SOAK=1, then the fault-injection
#                soak (tests/soak/run: SOAK_SECONDS, default 300); not in test
#   make deps    install missing Debian/Ubuntu packages
#   make deps-vm the kernel, qemu and busybox of the real-kernel test
#                (test and integration run it first; docs/hardware.md)
#   make deps-node  the npm packages of tests/azure-sdk and tests/console
#                (npm ci against their lock files); test, integration, asan
#                and soak run it first
#   make symbols check what the libraries export (see the rule)
#   make CROSS=aarch64|armhf [target]  a cross build into build-<arch>/,
#                against build/sysroot-<arch>/ (made by make deps-cross);
#                make cross-test runs its unit tests and busted specs under
#                qemu-user (docs/install.md, docs/testing.md)
#   make LUME_NO_WS=1 / LUME_NO_AZURE=1 / LUME_NO_CONSOLE=1  a smaller lume
#                without ws:// and wss://, the azure dialect, the web console
#   make install / uninstall [PREFIX=/usr/local DESTDIR=]; make deb (docs/install.md)
#
# Everything is built into $(BUILD) (default build/).

# ---- cross builds: make CROSS=aarch64 or CROSS=armhf ----------------------
# Debian's cross compiler, with --sysroot pointing at the distribution's
# packages of that architecture unpacked by `make deps-cross` (cross/sysroot:
# nothing of the target architecture is installed), pkg-config reading that
# sysroot's .pc files, and the objects in build-<arch>/.
PKG_CONFIG := pkg-config
ifdef CROSS
CROSS_TRIPLET_aarch64 := aarch64-linux-gnu
CROSS_TRIPLET_armhf   := arm-linux-gnueabihf
CROSS_QEMU_aarch64    := qemu-aarch64
CROSS_QEMU_armhf      := qemu-arm
CROSS_TRIPLET := $(CROSS_TRIPLET_$(CROSS))
ifeq ($(CROSS_TRIPLET),)
$(error CROSS=$(CROSS): lume cross-builds for aarch64 or armhf)
endif
BUILD   ?= build-$(CROSS)
SYSROOT ?= $(abspath build/sysroot-$(CROSS))
CC      := $(CROSS_TRIPLET)-gcc --sysroot=$(SYSROOT)
AR      := $(CROSS_TRIPLET)-ar
QEMU    := $(CROSS_QEMU_$(CROSS)) -L $(SYSROOT)
# make 4.3 does not export variables to $(shell): pkg-config gets them here
PKG_CONFIG := PKG_CONFIG_SYSROOT_DIR=$(SYSROOT) \
  PKG_CONFIG_LIBDIR=$(SYSROOT)/usr/lib/$(CROSS_TRIPLET)/pkgconfig:$(SYSROOT)/usr/share/pkgconfig \
  pkg-config
ifeq ($(filter deps-cross cross-test clean,$(MAKECMDGOALS)),)
ifeq ($(wildcard $(SYSROOT)/.complete),)
$(error no sysroot for CROSS=$(CROSS) in $(SYSROOT): run 'make deps-cross CROSS=$(CROSS)' first)
endif
endif
endif

BUILD   ?= build
CC      ?= cc
AR      ?= ar
PKGS    := lua5.4 libwebsockets libcjson libmodbus
OPT     ?= -O2
SAN     ?=
CHECKS  ?=
# CFLAGS/CPPFLAGS/LDFLAGS given on the command line or in the environment
# (a distribution's hardening flags, a cross build's) come after lume's own:
# they add to them and may override -O2, never drop -Wall or -I. Sub-makes
# (asan, deb) get the user's own flags, not the expanded ones.
ifndef LUME_USER_CFLAGS
# (stripped: an empty " " exported to a sub-make run by a test would hide
# the CFLAGS given on that sub-make's own command line)
LUME_USER_CFLAGS := $(strip $(CPPFLAGS) $(CFLAGS))
LUME_USER_LDFLAGS := $(strip $(LDFLAGS))
endif
export LUME_USER_CFLAGS LUME_USER_LDFLAGS
unexport CFLAGS CPPFLAGS LDFLAGS
USER_CFLAGS := $(LUME_USER_CFLAGS)
# LUME_NO_WS, LUME_NO_AZURE, LUME_NO_CONSOLE: see CORE_SRC below
LUME_OPTS := $(if $(LUME_NO_WS),-DLUME_NO_WS) $(if $(LUME_NO_AZURE),-DLUME_NO_AZURE) \
             $(if $(LUME_NO_CONSOLE),-DLUME_NO_CONSOLE)
WARN    := -std=c11 -D_GNU_SOURCE $(OPT) -g -fPIC -pthread $(SAN) $(LUME_OPTS) $(if $(CHECKS),-DLUME_CHECKS) \
           -Wall -Wextra -Wshadow -Wundef -Wno-unused-parameter \
           -Wstrict-prototypes -Wmissing-prototypes
# core/ has one folder per family; each is on the include path, so a file
# includes "outbox.h", not a path
CORE_DIRS := $(sort $(dir $(wildcard core/*/*.h core/*.h)))
CORE_INC  := $(addprefix -I,$(CORE_DIRS:%/=%))
# -fms-extensions: struct lume_runtime (bindings/runtime.h) embeds the part
# its services see (runtime/services.h) as an anonymous member
override CFLAGS := $(WARN) -fms-extensions $(CORE_INC) -Iruntime -Ibindings -Icli \
           $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null) $(USER_CFLAGS)
# core/ never sees Lua: compiled without its include path (and `make
# symbols` checks that no core object refers to a Lua symbol)
CORE_CFLAGS := $(WARN) $(CORE_INC) $(shell $(PKG_CONFIG) --cflags libwebsockets libcjson libgpiod libmodbus 2>/dev/null) \
           $(USER_CFLAGS)
# runtime/ (the Lua-free services of a runtime) neither: it sees core/, its
# own headers and the Lua-free prototypes of bindings/ (a bindings header
# that pulls in lua.h fails its build; `make symbols` checks its objects)
RUNTIME_CFLAGS := $(CORE_CFLAGS) -Iruntime -Ibindings
LDLIBS  := $(shell $(PKG_CONFIG) --libs $(PKGS) libgpiod 2>/dev/null) -lsqlite3 \
           -lmbedtls -lmbedx509 -lmbedcrypto -lpthread -lm
override LDFLAGS := $(SAN) -pthread $(LUME_USER_LDFLAGS)

CORE_SRC := $(sort $(wildcard core/*.c core/*/*.c))
# Build options that leave parts out (sizes in docs/BENCHMARKS.md, footprint):
#   LUME_NO_WS=1       no ws:// or wss:// broker urls (core/net/net.c); a
#                      config that names one is refused, saying why
#   LUME_NO_AZURE=1    no azure dialect and no DPS: hub_azure.c and dps.c
#                      left out, core/hub/no_azure.c answers for them
#   LUME_NO_CONSOLE=1  no web console: runtime/console.c left out,
#                      runtime/no_console.c answers for it; console.listen
#                      and `--console` are refused, saying why
# Changing them rebuilds everything ($(BUILD)/options.stamp).
ifdef LUME_NO_AZURE
CORE_SRC := $(filter-out core/hub/hub_azure.c core/hub/dps.c,$(CORE_SRC))
endif
CONSOLE_SRC := runtime/console.c
RT_SRC   := $(sort $(wildcard runtime/*.c))
ifdef LUME_NO_CONSOLE
RT_SRC   := $(filter-out $(CONSOLE_SRC),$(RT_SRC))
endif
RT_OBJ   := $(RT_SRC:%.c=$(BUILD)/%.o)
BIND_SRC := $(sort $(filter-out bindings/luamod.c,$(wildcard bindings/*.c)))
CLI_SRC  := $(sort $(wildcard cli/*.c))
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/%.o)
BIND_OBJ := $(BIND_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
ifdef LUME_NO_AZURE
UNIT_SRC := $(filter-out tests/unit/test_hub_azure.c tests/unit/test_dps.c,$(UNIT_SRC))
endif
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
BENCH_SRC := $(sort $(wildcard bench/*.c))
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

# Debian packages the build, the tests and the benchmarks need.
DEB_BUILD := build-essential pkg-config liblua5.4-dev lua5.4 libwebsockets-dev \
             libmbedtls-dev libcjson-dev libsqlite3-dev sqlite3 libcmocka-dev \
             lua-busted openssl mosquitto mosquitto-clients procps \
             python3 python3-paho-mqtt libgpiod-dev libmodbus-dev python3-pymodbus \
             python3-serial python3-serial-asyncio socat libedit-dev tmux chromium
DEB_BENCH := lua5.3 lua-posix lua-dkjson libmosquitto-dev
DEB_FUZZ  := clang libclang-rt-14-dev
DEB_SOAK  := python3
# Other MQTT brokers the tests run lume against (docs/brokers.md): RabbitMQ's
# MQTT plugin (tests/integration/brokers.sh runs it as the test's own process)
DEB_BUILD += rabbitmq-server
# The real-kernel test (tests/integration/test_hw_vm.sh): the distribution's
# kernel and its modules, qemu, a static busybox for the initramfs, and the
# kernel's source and headers to build gpio-sim where the kernel lacks it.
DEB_VM    := qemu-system-x86 linux-image-amd64 busybox-static linux-source \
             linux-headers-amd64 cpio xz-utils gzip

.PHONY: all run test unit busted integration asan oom fuzz bench deps deps-bench \
        deps-fuzz deps-soak deps-vm deps-node deps-npm deps-cross cross-test test-small clean symbols \
        soak ldlibs install uninstall deb FORCE
IT_SRC  := $(sort $(wildcard tests/integration/*.c))
IT_BIN  := $(IT_SRC:tests/integration/%.c=$(BUILD)/tests/it/%)

all: $(BUILD)/lume $(BUILD)/lume_host.so $(BUILD)/liblume.so $(UNIT_BIN) $(BUILD)/examples/embed \
     $(IT_BIN)

$(BUILD)/options.stamp: FORCE
	@mkdir -p $(dir $@); echo '$(LUME_OPTS)' | cmp -s - $@ || echo '$(LUME_OPTS)' >$@
$(CORE_OBJ) $(RT_OBJ) $(BIND_OBJ) $(CLI_OBJ): $(BUILD)/options.stamp

$(BUILD)/core/%.o: core/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CORE_CFLAGS) -MMD -MP -c $< -o $@

# The data directory an installed lume finds boards/, stdlib/ and scripts/
# in, compiled into core/base/datadir.o alone; the stamp holds its value, so
# a new PREFIX rebuilds that object and relinks, nothing else.
PREFIX  ?= /usr/local
DATADIR ?= $(PREFIX)/share/lume
$(BUILD)/core/base/datadir.o: CORE_CFLAGS += -DLUME_DATADIR='"$(DATADIR)"'
$(BUILD)/core/base/datadir.o: $(BUILD)/datadir.stamp
$(BUILD)/datadir.stamp: FORCE
	@mkdir -p $(dir $@); echo '$(DATADIR)' | cmp -s - $@ || echo '$(DATADIR)' >$@
FORCE:

$(BUILD)/runtime/%.o: runtime/%.c
	@mkdir -p $(dir $@)
	$(CC) $(RUNTIME_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/liblume.a: $(CORE_OBJ) $(RT_OBJ) $(BIND_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

# the lume command: cli/ on top of the library
$(BUILD)/lume: $(CLI_OBJ) $(BUILD)/liblume.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -ledit

# The library for embedders: the objects of liblume.a, exporting only what
# bindings/lume.h declares (bindings/lume.map). liblume.a stays for lume's
# own users (the lume binary, lume_host.so, the tests, the benchmarks).
# --no-undefined is left out under sanitizers (their runtime resolves late).
LUME_SONAME := liblume.so.0
$(BUILD)/$(LUME_SONAME): $(CORE_OBJ) $(RT_OBJ) $(BIND_OBJ) bindings/lume.map
	$(CC) $(LDFLAGS) -shared -Wl,-soname,$(LUME_SONAME) \
	  -Wl,--version-script=bindings/lume.map $(if $(SAN),,-Wl,--no-undefined) \
	  -o $@ $(CORE_OBJ) $(RT_OBJ) $(BIND_OBJ) $(LDLIBS)
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

# hwprobe calls lume's drivers directly (the real-kernel test runs it in its VM)
$(BUILD)/tests/it/hwprobe: tests/integration/hwprobe.c $(BUILD)/liblume.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/liblume.a $(LDFLAGS) $(LDLIBS)

# Helpers the integration tests run (test code: no liblume, no lume_ prefix).
$(BUILD)/tests/it/%: tests/integration/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS)

$(BUILD)/bench/%: bench/%.c $(BUILD)/liblume.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/liblume.a $(LDFLAGS) $(LDLIBS) -lmosquitto

-include $(shell find $(BUILD) -path '$(BUILD)/sysroot-*' -prune -o -type f -name '*.d' -print 2>/dev/null)

run: deps $(BUILD)/lume
	$(BUILD)/lume run $(RUNFLAGS)

# The whole suite. tests/run prints one closing line: 'N passed, N failed'.
test: deps deps-node deps-vm
	$(MAKE) all symbols
	$(MAKE) test-small
	BUILD=$(BUILD) tests/run

# The smallest lume (every LUME_NO_* option) builds and passes the unit tests
# (test_hub checks what it refuses); part of `make test`.
SMALL_OPTS := LUME_NO_WS=1 LUME_NO_AZURE=1 LUME_NO_CONSOLE=1
test-small:
	$(MAKE) BUILD=build-small $(SMALL_OPTS) all
	BUILD=build-small tests/run unit

unit: all
	BUILD=$(BUILD) tests/run unit
busted: all
	BUILD=$(BUILD) tests/run busted
integration: all deps-node deps-vm
	BUILD=$(BUILD) tests/run integration

# 1. Every global symbol of liblume.a carries the lume_ prefix (luaopen_ is
#    Lua's own convention for C modules and is allowed in the module object
#    only).
# 2. No object of core/ or runtime/ refers to a Lua symbol (both are also
#    compiled without Lua's include path).
# 3. liblume.so exports exactly the functions lume.h declares (the header
#    preprocessed, so comments do not count, against nm -D), and lume.map
#    lists exactly them too.
symbols: $(BUILD)/liblume.a $(BUILD)/$(LUME_SONAME)
	@bad=$$(nm -g --defined-only $(BUILD)/liblume.a | awk 'NF==3 {print $$3}' \
	  | grep -v '^lume_' || true); \
	if [ -n "$$bad" ]; then echo "exported symbols without lume_ prefix:"; \
	  echo "$$bad"; exit 1; fi; echo "symbols: every exported symbol starts with lume_"
	@lua=$$(nm -u $(CORE_OBJ) $(RT_OBJ) 2>/dev/null | grep -E ' U (lua|luaL|luaopen)_' || true); \
	if [ -n "$$lua" ]; then echo "core/ or runtime/ uses Lua:"; echo "$$lua"; exit 1; fi; \
	echo "symbols: core/ and runtime/ use no Lua symbol"
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
asan: deps deps-node deps-vm
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
	@# the footprint benchmark measures the cross builds whose sysroot is there
	@for a in aarch64 armhf; do [ ! -e build/sysroot-$$a/.complete ] || \
	  $(MAKE) --no-print-directory CROSS=$$a all || exit 1; done
	BUILD=$(BUILD) bench/run

# The MQTT, twin and remote-log specs against the brokers we did not write
# (docs/brokers.md); `make test` has a short smoke per broker
# (test_interop_*.sh). `make fleet` runs this too.
INTEROP_BROKERS ?= aedes rabbitmq
INTEROP_TESTS   ?= mqtt twin logs
.PHONY: interop
interop: all deps-node
	@rc=0; for b in $(INTEROP_BROKERS); do for t in $(INTEROP_TESTS); do \
	  echo "== interop: $$b test_$$t"; \
	  LUME_TEST_BROKER=$$b BUILD=$(BUILD) tests/run integration test_$$t.sh || rc=1; \
	done; done; exit $$rc

SOAK_SECONDS ?= 300
soak: deps deps-soak deps-node
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

# Microsoft's Azure IoT device SDK for Node.js, which checks that the hub and
# DPS emulators speak the hub's protocol (tests/integration/test_azure_sdk.sh).
# node and npm from the distribution; `npm ci` installs exactly what
# package-lock.json pins, and runs again only when the lock file changes
# (after `deps`: two apt-get runs at once would fight over dpkg's lock).
# playwright-core drives Debian's chromium (no browser of its own) in the web
# console's browser test (tests/console, test_console_browser.sh).
NODE_DIRS := tests/azure-sdk tests/console
NODE_DIRS += tests/brokers/aedes   # aedes, an MQTT broker for interop (docs/brokers.md)
deps-node: $(NODE_DIRS:%=%/node_modules/.package-lock.json)
%/node_modules/.package-lock.json: %/package.json %/package-lock.json | deps
	@if ! command -v npm >/dev/null; then $(MAKE) --no-print-directory deps-npm; fi
	cd $* && npm ci --no-audit --no-fund --loglevel=error
	@touch $@
deps-npm:
	$(call apt_install,nodejs npm)
deps-bench:
	$(call apt_install,$(DEB_BENCH))
deps-fuzz:
	$(call apt_install,$(DEB_FUZZ))
deps-soak:
	$(call apt_install,$(DEB_SOAK))
deps-vm: | deps
	$(call apt_install,$(DEB_VM))

# Cross builds (docs/install.md): Debian's cross compilers and qemu-user,
# then build/sysroot-<arch>/ from the distribution's packages of that
# architecture (cross/sysroot), for CROSS or, without it, aarch64 and armhf.
DEB_CROSS := gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf binutils-aarch64-linux-gnu \
             binutils-arm-linux-gnueabihf qemu-user
deps-cross:
	$(call apt_install,$(DEB_CROSS))
	@for a in $(or $(CROSS),aarch64 armhf); do \
	  [ -e build/sysroot-$$a/.complete ] && [ build/sysroot-$$a/.complete -nt cross/sysroot ] \
	    && { echo "deps-cross: build/sysroot-$$a is there"; continue; }; \
	  cross/sysroot $$a build/sysroot-$$a || exit 1; done

# make cross-test CROSS=aarch64|armhf (default aarch64): the cross build,
# then its C unit tests and the busted specs under qemu-user with the
# target's lua5.4 from the sysroot (docs/testing.md); not in `make test`.
ifdef CROSS
cross-test: deps-cross
	$(MAKE) all
	RUNNER="$(QEMU)" BUILD=$(BUILD) tests/run unit
	LUA="$(QEMU) $(SYSROOT)/usr/bin/lua5.4" BUSTED_FLAGS=--exclude-tags=native \
	  BUILD=$(BUILD) tests/run busted
else
cross-test:
	$(MAKE) CROSS=aarch64 deps-cross
	$(MAKE) CROSS=aarch64 cross-test
endif

# ---- install, uninstall, .deb (docs/install.md) ---------------------------
# make install [PREFIX=/usr/local] [DESTDIR=...]: the binary, the libraries
# (liblume.so.VERSION with its soname link liblume.so.0 and liblume.so),
# lume.h, lume.pc, DATADIR/{boards,stdlib,scripts,console}, the systemd unit, and
# SYSCONFDIR/lume/lume.conf.lua when there is none. Every file and every
# folder it created is listed in DATADIR/install.manifest, which
# `make uninstall` reads: it removes exactly those (the config only when it
# is still the one installed), then the folders it made, if empty.
BINDIR     ?= $(PREFIX)/bin
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DOCDIR     ?= $(PREFIX)/share/doc/lume
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
LUME_VER   := $(shell sed -n 's/^\#define LUME_VERSION  *"\(.*\)"/\1/p' bindings/lume.h)
MANIFEST   := $(DATADIR)/install.manifest
pcdir       = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))

$(BUILD)/lume.pc: bindings/lume.pc.in bindings/lume.h $(BUILD)/datadir.stamp
	sed -e 's|@PREFIX@|$(PREFIX)|; s|@LIBDIR@|$(call pcdir,$(LIBDIR))|' \
	  -e 's|@INCLUDEDIR@|$(call pcdir,$(INCLUDEDIR))|; s|@DATADIR@|$(call pcdir,$(DATADIR))|' \
	  -e 's|@VERSION@|$(LUME_VER)|; s|@LUA_CFLAGS@|$(shell pkg-config --cflags lua5.4)|' \
	  -e 's|@LUA_LIBS@|$(shell pkg-config --libs lua5.4)|; s|@LIBS_PRIVATE@|$(LDLIBS)|' $< >$@
$(BUILD)/lume.service: examples/systemd/lume.service $(BUILD)/datadir.stamp
	sed -e 's|/usr/local/bin|$(BINDIR)|g; s|/usr/local/share/doc/lume|$(DOCDIR)|g' \
	  -e 's|/etc/lume|$(SYSCONFDIR)/lume|g; s|^\# examples/systemd/lume.service|\# lume.service|' $< >$@

install: $(BUILD)/lume $(BUILD)/liblume.a $(BUILD)/$(LUME_SONAME) $(BUILD)/lume.pc $(BUILD)/lume.service \
  $(BUILD)/lume_host.so
	@set -e; D='$(DESTDIR)'; new=$$(mktemp); trap 'rm -f "$$new"' EXIT; \
	[ ! -f "$$D$(MANIFEST)" ] || cat "$$D$(MANIFEST)" >"$$new"; \
	[ -z "$$D" ] || mkdir -p "$$D"; \
	mk() { [ -d "$$D$$1" ] && return 0; mk "$$(dirname "$$1")"; mkdir "$$D$$1"; echo "d $$1" >>"$$new"; }; \
	put() { mk "$$(dirname "$$3")"; install -m "$$1" "$$2" "$$D$$3"; echo "f $$3" >>"$$new"; }; \
	lnk() { mk "$$(dirname "$$2")"; ln -sfn "$$1" "$$D$$2"; echo "f $$2" >>"$$new"; }; \
	put 0755 $(BUILD)/lume '$(BINDIR)/lume'; \
	put 0644 $(BUILD)/liblume.a '$(LIBDIR)/liblume.a'; \
	put 0755 $(BUILD)/$(LUME_SONAME) '$(LIBDIR)/liblume.so.$(LUME_VER)'; \
	lnk liblume.so.$(LUME_VER) '$(LIBDIR)/$(LUME_SONAME)'; \
	lnk $(LUME_SONAME) '$(LIBDIR)/liblume.so'; \
	put 0644 bindings/lume.h '$(INCLUDEDIR)/lume.h'; \
	put 0755 $(BUILD)/lume_host.so '$(PREFIX)/lib/lume/lume_host.so'; \
	put 0644 $(BUILD)/lume.pc '$(LIBDIR)/pkgconfig/lume.pc'; \
	for f in $$(find boards stdlib scripts -type f -name '*.lua' | sort); do \
	  put 0644 "$$f" "$(DATADIR)/$$f"; done; \
	for f in console/index.html console/console.js console/console.css; do \
	  put 0644 "$$f" "$(DATADIR)/$$f"; done; \
	put 0644 examples/systemd/lume.conf.lua '$(DATADIR)/lume.conf.lua'; \
	put 0644 README.md '$(DOCDIR)/README.md'; \
	put 0644 docs/install.md '$(DOCDIR)/install.md'; \
	put 0644 $(BUILD)/lume.service '$(UNITDIR)/lume.service'; \
	if [ -e "$$D$(SYSCONFDIR)/lume/lume.conf.lua" ]; then \
	  echo "install: $$D$(SYSCONFDIR)/lume/lume.conf.lua exists: left as it is"; \
	else put 0644 examples/systemd/lume.conf.lua '$(SYSCONFDIR)/lume/lume.conf.lua'; fi; \
	sort -u "$$new" | install -m 0644 /dev/stdin "$$D$(MANIFEST)"; \
	echo "f $(MANIFEST)" | cat - "$$D$(MANIFEST)" | sort -u >"$$new"; install -m 0644 "$$new" "$$D$(MANIFEST)"; \
	echo "installed lume $(LUME_VER) under $$D$(PREFIX) ($$(grep -c '^f' "$$D$(MANIFEST)") files," \
	  "list in $$D$(MANIFEST))"; \
	[ -n "$$D" ] || getent passwd lume >/dev/null || echo "install: lume.service runs as user" \
	  "lume: useradd --system --home-dir /var/lib/lume --shell /usr/sbin/nologin lume"

uninstall:
	@set -e; D='$(DESTDIR)'; M="$$D$(MANIFEST)"; \
	if [ ! -f "$$M" ]; then echo "uninstall: no $$M: nothing installed there"; exit 0; fi; \
	list=$$(cat "$$M"); \
	conf='$(SYSCONFDIR)/lume/lume.conf.lua'; \
	if grep -qx "f $$conf" "$$M" && ! cmp -s "$$D$$conf" "$$D$(DATADIR)/lume.conf.lua"; then \
	  echo "uninstall: $$D$$conf was changed since it was installed: kept"; keep="$$conf"; fi; \
	echo "$$list" | sed -n 's/^f //p' | while read -r f; do \
	  [ "$$f" = "$${keep:-}" ] || rm -f "$$D$$f"; done; \
	echo "$$list" | sed -n 's/^d //p' | sort -r | while read -r d; do rmdir "$$D$$d" 2>/dev/null || true; done; \
	echo "uninstalled lume from $$D$(PREFIX)"

# make deb: a .deb of PREFIX=/usr, built in $(BUILD)/deb (its own objects:
# the data directory is compiled in) and packed with dpkg-deb.
DEB_ARCH  := $(shell dpkg --print-architecture 2>/dev/null)
DEB_MULTI := $(shell dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null)
DEB_ROOT   = $(BUILD)/deb/root
DEB_FILE   = $(BUILD)/lume_$(LUME_VER)_$(DEB_ARCH).deb
deb:
	rm -rf $(DEB_ROOT)
	$(MAKE) BUILD=$(BUILD)/deb/build PREFIX=/usr LIBDIR=/usr/lib/$(DEB_MULTI) \
	  UNITDIR=/lib/systemd/system DESTDIR=$(abspath $(DEB_ROOT)) install
	rm -f $(DEB_ROOT)/usr/share/lume/install.manifest  # dpkg keeps its own list
	mkdir -p $(DEB_ROOT)/DEBIAN $(BUILD)/deb/shlibs/debian  # dpkg-shlibdeps wants a debian/control
	printf 'Source: lume\n\nPackage: lume\nArchitecture: any\n' >$(BUILD)/deb/shlibs/debian/control
	sed -e 's/@VERSION@/$(LUME_VER)/; s/@ARCH@/$(DEB_ARCH)/' \
	  -e "s/@SIZE@/$$(du -sk --exclude=DEBIAN $(DEB_ROOT) | cut -f1)/" \
	  -e "s/@DEPENDS@/$$(cd $(BUILD)/deb/shlibs && dpkg-shlibdeps -O \
	       $(abspath $(DEB_ROOT))/usr/bin/lume $(abspath $(DEB_ROOT))/usr/lib/$(DEB_MULTI)/liblume.so.$(LUME_VER) \
	       2>/dev/null | sed -n 's/^shlibs:Depends=//p')/" \
	  examples/debian/control >$(DEB_ROOT)/DEBIAN/control
	echo /etc/lume/lume.conf.lua >$(DEB_ROOT)/DEBIAN/conffiles
	install -m 0755 examples/debian/postinst examples/debian/prerm examples/debian/postrm \
	  $(DEB_ROOT)/DEBIAN/
	dpkg-deb --root-owner-group -Zxz --build $(DEB_ROOT) $(DEB_FILE)
	@echo "built $(DEB_FILE)"

clean:
	rm -rf build build-asan build-fuzz build-small build-aarch64 build-armhf

# The fleet run (`make fleet`): bench/fleet/devices, FLEET_N lume processes
# (default 1000) against one mosquitto (idle cost per device, group push to
# active, fleet status); bench/fleet/run, `lume fleet status` over 1,000
# retained documents beside mosquitto_sub; then `make interop` (the MQTT,
# twin and remote-log specs on RabbitMQ and aedes). Not part of `make test`
# or `make bench` (several minutes).
FLEET_N ?= 1000
.PHONY: fleet
fleet: deps
	$(MAKE) all
	BUILD=$(BUILD) bench/fleet/devices $(FLEET_N)
	BUILD=$(BUILD) bench/fleet/run
	$(MAKE) interop
