# drsupervisor build. `make` builds build/drsupervisord and build/drctl; `make check` runs the unit
# and integration tests; `make check SANITIZE=1` does the same under ASan + UBSan (in build/san/);
# `make lint` checks the include direction (run by `make check`); `make demo` runs the
# corruption-recovery demo on a throwaway sandbox; `make bench` runs benchmarks;
# `make install PREFIX=/usr DESTDIR=...` installs. Targets that need system packages call
# tools/setup-deps first, which installs whatever Debian 12 packages are missing.

VERSION  := 0.1.0
PREFIX   ?= /usr/local
DESTDIR  ?=
CC       ?= cc
SANITIZE ?= 0
PYTHON   ?= /usr/bin/python3
PYTEST_ARGS ?=
# The slowest integration tests are listed at the end of every run (the suite's time budget).
PYTEST_DURATIONS ?= --durations=15
TESTS    ?=
V        ?= 0
ifeq ($(V),1)
Q :=
else
Q := @
endif

ifeq ($(SANITIZE),1)
BUILD    ?= build/san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
OPTFLAGS := -O1 -g
else
BUILD    ?= build
SANFLAGS :=
OPTFLAGS := -O2 -g
endif

PKGS      := libuv libpq libcurl openssl jansson yaml-0.1 libsystemd libzstd zlib
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CMOCKA_CFLAGS = $(shell pkg-config --cflags cmocka 2>/dev/null)
CMOCKA_LIBS   = $(shell pkg-config --libs cmocka 2>/dev/null)

WARNINGS := -Wall -Wextra -Werror -Wconversion -Wsign-conversion -Wmissing-prototypes \
            -Wstrict-prototypes -Wvla -Wwrite-strings -Wcast-qual -Wformat=2 -Wformat-signedness \
            -Wshadow -Wpointer-arith -Wundef -Wimplicit-fallthrough -Wnull-dereference \
            -Wold-style-definition -Wmissing-declarations -Wredundant-decls
CFLAGS_ALL := -std=c17 -D_GNU_SOURCE -DDRSUP_VERSION='"$(VERSION)"' $(OPTFLAGS) $(WARNINGS) \
              $(SANFLAGS) -MMD -MP -Ilib -Idaemon $(PKG_CFLAGS) $(CFLAGS)
LDFLAGS_ALL := $(SANFLAGS) $(LDFLAGS)

LIB_SRC    := $(sort $(wildcard lib/*.c))
DAEMON_SRC := $(filter-out daemon/main.c,$(sort $(shell find daemon -name "*.c")))
UNIT_SRC   := $(sort $(wildcard tests/unit/test_*.c))
BENCH_SRC  := $(sort $(wildcard tools/bench/*.c))

LIB_OBJ    := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
DAEMON_OBJ := $(DAEMON_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
BENCH_BIN  := $(BENCH_SRC:tools/bench/%.c=$(BUILD)/bench-bin/%)

LIBDRSUP   := $(BUILD)/libdrsup.a
LIBDAEMON  := $(BUILD)/libdrsupd.a
BINS       := $(BUILD)/drsupervisord $(BUILD)/drctl

.PHONY: all deps deps-check check lint unit integration demo bench install clean man s3rver-check
all: $(BINS)

deps:
	@tools/setup-deps build
deps-check:
	@tools/setup-deps check

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS_ALL) -c $< -o $@

# Archives are made anew: members of sources that were moved or removed must not linger.
$(LIBDRSUP): $(LIB_OBJ)
	@mkdir -p $(@D)
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(LIBDAEMON): $(DAEMON_OBJ)
	@mkdir -p $(@D)
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(BUILD)/drsupervisord: $(BUILD)/obj/daemon/main.o $(LIBDAEMON) $(LIBDRSUP)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS) -lm

DRCTL_SRC  := $(sort $(wildcard tools/drctl/*.c))

$(BUILD)/drctl: $(DRCTL_SRC:%.c=$(BUILD)/obj/%.o) $(LIBDRSUP)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS) -lm

# Unit tests: one cmocka binary per module. A test may wrap symbols with a line
# `// WRAP: sym1 sym2` in its source; those become -Wl,--wrap=sym flags.
$(BUILD)/tests/%: tests/unit/%.c $(LIBDAEMON) $(LIBDRSUP)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  TEST    $@")
	$(Q)$(CC) $(CFLAGS_ALL) $(CMOCKA_CFLAGS) -o $@ $< \
	  $(patsubst %,-Wl$(comma)--wrap=%,$(shell sed -n 's,^// WRAP:,,p' $<)) \
	  $(LDFLAGS_ALL) $(LIBDAEMON) $(LIBDRSUP) $(CMOCKA_LIBS) $(PKG_LIBS) -lm

$(BUILD)/bench-bin/%: tools/bench/%.c $(LIBDAEMON) $(LIBDRSUP)
	@mkdir -p $(@D)
	@$(if $(Q),echo "  BENCH   $@")
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $< $(LDFLAGS_ALL) $(LIBDAEMON) $(LIBDRSUP) $(PKG_LIBS) -lm

comma := ,

check: deps-check lint
	@$(MAKE) --no-print-directory -j2 all $(UNIT_BIN) $(BENCH_BIN)
	@$(MAKE) --no-print-directory unit integration
	$(if $(filter 1,$(SANITIZE)),@$(MAKE) --no-print-directory fuzz)

# The dependency rule (docs/architecture.md): every #include against tools/include-rules.
lint:
	@$(PYTHON) tools/lint-includes

unit: $(UNIT_BIN)
	@tools/run-unit-tests $(UNIT_BIN)

# TESTS: the test files or directories to run (default all), e.g. TESTS=tests/integration/test_wal.py
integration: $(BINS)
	DRSUP_BUILD=$(CURDIR)/$(BUILD) SANITIZE=$(SANITIZE) $(PYTHON) -m pytest -q -p no:cacheprovider $(or $(TESTS),tests/integration) $(PYTEST_DURATIONS) $(PYTEST_ARGS)

# The second, independent S3 check (docs/offsite.md): the off-site upload/download tests against
# @20minutes/s3rver instead of the strict test server. Not part of `check`: it needs Node.js and the
# npm registry, which CI cannot count on. The package is pinned and installed into build/npm/.
S3RVER_VERSION := 5.0.0
S3RVER_DIR     := build/npm
S3RVER_TESTS   := tests/integration/test_s3rver.py tests/integration/test_offsite.py \
                  tests/integration/test_complete_disaster.py
s3rver-check: $(BINS)
	@tools/setup-deps s3rver
	@grep -qs '"version": "$(S3RVER_VERSION)"' $(S3RVER_DIR)/node_modules/@20minutes/s3rver/package.json || \
	  { mkdir -p $(S3RVER_DIR) && npm install --prefix $(S3RVER_DIR) --no-save --no-audit --no-fund \
	    --loglevel=error @20minutes/s3rver@$(S3RVER_VERSION); }
	DRSUP_BUILD=$(CURDIR)/$(BUILD) SANITIZE=$(SANITIZE) DRSUP_S3_BACKEND=s3rver \
	  DRSUP_S3RVER_MODULES=$(CURDIR)/$(S3RVER_DIR)/node_modules \
	  $(PYTHON) -m pytest -q -p no:cacheprovider -rs $(S3RVER_TESTS) $(PYTEST_ARGS)

demo: deps-check
	@$(MAKE) --no-print-directory all
	DRSUP_BUILD=$(CURDIR)/$(BUILD) $(PYTHON) tools/demo.py

bench: deps-check
	@$(MAKE) --no-print-directory all $(BENCH_BIN)
	@mkdir -p build/bench
	DRSUP_BUILD=$(CURDIR)/$(BUILD) $(PYTHON) tools/bench/run.py
	DRSUP_BUILD=$(CURDIR)/$(BUILD) $(PYTHON) tools/bench/scenario.py
	DRSUP_BUILD=$(CURDIR)/$(BUILD) $(PYTHON) tools/bench/control.py
	DRSUP_BUILD=$(CURDIR)/$(BUILD) $(PYTHON) tools/bench/pitr.py
	DRSUP_BUILD=$(CURDIR)/$(BUILD) $(PYTHON) tools/bench/walsync.py
	DRSUP_BUILD=$(CURDIR)/$(BUILD) $(PYTHON) tools/bench/failover.py
	DRSUP_BUILD=$(CURDIR)/$(BUILD) $(PYTHON) tools/bench/takeover.py
	DRSUP_BUILD=$(CURDIR)/$(BUILD) $(PYTHON) tools/bench/offsite.py

install: all
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/bin \
	  $(DESTDIR)$(PREFIX)/lib/systemd/system $(DESTDIR)$(PREFIX)/share/man/man1 \
	  $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/man/man8 \
	  $(DESTDIR)$(PREFIX)/share/doc/drsupervisor $(DESTDIR)/etc/drsupervisor
	install -m 0755 $(BUILD)/drsupervisord $(DESTDIR)$(PREFIX)/sbin/drsupervisord
	install -m 0755 $(BUILD)/drctl $(DESTDIR)$(PREFIX)/bin/drctl
	sed 's,@PREFIX@,$(PREFIX),g' systemd/drsupervisor.service \
	  > $(DESTDIR)$(PREFIX)/lib/systemd/system/drsupervisor.service
	install -m 0644 docs/man/drctl.1 $(DESTDIR)$(PREFIX)/share/man/man1/drctl.1
	install -m 0644 docs/man/drsupervisor.yaml.5 $(DESTDIR)$(PREFIX)/share/man/man5/drsupervisor.yaml.5
	install -m 0644 docs/man/drsupervisord.8 $(DESTDIR)$(PREFIX)/share/man/man8/drsupervisord.8
	install -m 0644 conf/drsupervisor.yaml $(DESTDIR)$(PREFIX)/share/doc/drsupervisor/drsupervisor.yaml.example
	install -D -m 0644 systemd/drsupervisor.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/drsupervisor.conf
	test -e $(DESTDIR)/etc/drsupervisor/drsupervisor.yaml || \
	  install -m 0640 conf/drsupervisor.yaml $(DESTDIR)/etc/drsupervisor/drsupervisor.yaml
	@# On the live system (no DESTDIR): create the user and group now, and let the daemon read its
	@# configuration (root-owned, group drsupervisor, 0640).
	if [ -z "$(DESTDIR)" ] && command -v systemd-sysusers >/dev/null; then \
	  systemd-sysusers $(PREFIX)/lib/sysusers.d/drsupervisor.conf && \
	  chgrp drsupervisor /etc/drsupervisor/drsupervisor.yaml; fi

# ---- fuzzing (docs/fuzzing.md) ----
# `make fuzz` builds one libFuzzer harness per parser (tests/fuzz/fuzz_NAME.c) with clang into
# build/fuzz/, over its own clang-built objects (coverage + ASan + UBSan), and runs each for
# FUZZ_SECONDS on a scratch copy of its seeds (tests/fuzz/corpus/NAME/) in build/fuzz/run/. A crash,
# leak or UB report fails the target and prints the crashing input's path. It first runs the unit
# tests whose bugs only clang's UBSan shows (gcc 12 does not instrument them), built the same way.
# clang 14 lacks -Wformat-signedness and, unlike gcc, flags vsnprintf in our own printf-style helpers.
# `make check SANITIZE=1` runs it; `FUZZ_SECONDS=600 make fuzz` for a long run.
FUZZ_CC       ?= clang
FUZZ_SECONDS  ?= 30
FUZZ_DIR      := build/fuzz
FUZZ_SAN      := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_WARNINGS := $(filter-out -Wformat-signedness,$(WARNINGS)) -Wno-format-nonliteral -Wno-string-plus-int
FUZZ_CFLAGS   := -std=c17 -D_GNU_SOURCE -DDRSUP_VERSION='"$(VERSION)"' -O1 -g $(FUZZ_WARNINGS) $(FUZZ_SAN) \
                 -MMD -MP -Ilib -Idaemon $(PKG_CFLAGS)
FUZZ_SRC      := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN      := $(FUZZ_SRC:tests/fuzz/%.c=$(FUZZ_DIR)/%)
FUZZ_UNIT     := $(FUZZ_DIR)/test_codec
FUZZ_LIBS     := $(FUZZ_DIR)/libdrsupd.a $(FUZZ_DIR)/libdrsup.a

.PHONY: fuzz fuzz-build
fuzz:
	@tools/setup-deps fuzz
	@$(MAKE) --no-print-directory -j2 fuzz-build
	@tools/run-unit-tests $(FUZZ_UNIT)
	@FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run $(FUZZ_DIR)/run $(FUZZ_BIN)

fuzz-build: $(FUZZ_BIN) $(FUZZ_UNIT)

$(FUZZ_DIR)/obj/%.o: %.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CLANG   $<")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_DIR)/libdrsup.a: $(LIB_SRC:%.c=$(FUZZ_DIR)/obj/%.o)
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(FUZZ_DIR)/libdrsupd.a: $(DAEMON_SRC:%.c=$(FUZZ_DIR)/obj/%.o)
	$(Q)rm -f $@ && $(AR) rcs $@ $^

# Harnesses may wrap symbols with `// WRAP: sym...`, as unit tests do.
$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_LIBS)
	@$(if $(Q),echo "  FUZZER  $@")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< \
	  $(patsubst %,-Wl$(comma)--wrap=%,$(shell sed -n 's,^// WRAP:,,p' $<)) $(FUZZ_LIBS) $(PKG_LIBS) -lm

$(FUZZ_DIR)/test_%: tests/unit/test_%.c $(FUZZ_LIBS)
	@$(if $(Q),echo "  TEST    $@")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(CMOCKA_CFLAGS) -o $@ $< \
	  $(patsubst %,-Wl$(comma)--wrap=%,$(shell sed -n 's,^// WRAP:,,p' $<)) $(FUZZ_LIBS) $(CMOCKA_LIBS) $(PKG_LIBS) -lm

-include $(shell find $(FUZZ_DIR) -name '*.d' 2>/dev/null)

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
