# echochat: one flat GNU Makefile. Everything it builds lands in $(BUILD).
#
#   make                 build/echochatd and build/echochat-bench
#   make check           unit + integration tests (cmocka)
#   make check SAN=1     the same under ASan+UBSan, in build/san
#   make deps            install the test dependencies (Debian) if missing
#   make format | format-check
#   make install | uninstall   PREFIX=/usr/local DESTDIR=
#   make fuzz FUZZ_SECONDS=N   libFuzzer targets (clang)

VERSION := 0.1.0

PREFIX         ?= /usr/local
SBINDIR        ?= $(PREFIX)/sbin
BINDIR         ?= $(PREFIX)/bin
MANDIR         ?= $(PREFIX)/share/man
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR     ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
DESTDIR        ?=

CC      ?= cc
SAN     ?= 0
BUILD   ?= $(if $(filter 1,$(SAN)),build/san,build)
OPT     ?= -O2 -g
FUZZ_SECONDS ?= 30

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wpointer-arith -Wcast-qual -Wformat=2 -Wundef -Wvla -Wwrite-strings
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -MMD -MP $(WARN) -Iinclude \
               -DECHOCHAT_VERSION='"$(VERSION)"'
ifeq ($(SAN),1)
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
OPT      := -O1 -g
endif
ALL_CFLAGS  = $(BASE_CFLAGS) $(OPT) $(SANFLAGS) $(CFLAGS)
ALL_LDFLAGS = $(SANFLAGS) $(LDFLAGS)

CMOCKA_CFLAGS := $(shell pkg-config --cflags cmocka 2>/dev/null)
CMOCKA_LIBS   := $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)

# The daemon: every src/*.c except the benchmark tool's own files.
DAEMON_SRC := $(filter-out src/bench%.c,$(wildcard src/*.c))
DAEMON_OBJ := $(DAEMON_SRC:src/%.c=$(BUILD)/obj/%.o)
BENCH_SRC  := $(wildcard src/bench*.c)
BENCH_OBJ  := $(BENCH_SRC:src/%.c=$(BUILD)/obj/%.o)
# echochat-bench links these daemon modules (STYLE.md: net/buf/loop/log).
BENCH_DEPS := net buf loop log util

# Unit tests: tests/unit/test_<module>.c links exactly the modules listed in
# UNIT_DEPS_<module> (default: the module alone). Listing them by hand keeps
# the layering honest: a leaf test that needed log.o would fail to link.
UNIT_DEPS_buf    := buf
UNIT_DEPS_cfg    := cfg
UNIT_DEPS_line   := line telnet buf
UNIT_DEPS_telnet := telnet
UNIT_DEPS_text   := text
UNIT_DEPS_room   := room
UNIT_DEPS_rate   := rate
UNIT_DEPS_pacer  := pacer
UNIT_DEPS_log    := log
UNIT_DEPS_util   := util log
UNIT_DEPS_net    := net
UNIT_DEPS_sysd   := sysd
UNIT_DEPS_loop   := loop util log
UNIT_DEPS_client := client pacer loop net buf util log
UNIT_DEPS_echo   := echo client pacer loop net buf util log
UNIT_DEPS_chat   := chat client pacer loop net buf util log line telnet text room rate
UNIT_DEPS_bench  := benchlib net buf loop util log
# Libc calls a unit test scripts through -Wl,--wrap (cmocka will_return).
UNIT_WRAP_client := accept4 send recv
UNIT_WRAP_net    := accept4

UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNIT_BIN  := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit/%)
ITEST_SRC := $(wildcard tests/integration/test_*.c)
ITEST_BIN := $(ITEST_SRC:tests/integration/%.c=$(BUILD)/tests/integration/%)
ITEST_LIB := tests/integration/harness.c

FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)

MAN    := man/echochatd.8
UNITS  := systemd/echochatd.service systemd/echochatd.socket systemd/echochatd-echo.socket
C_FILES := $(wildcard src/*.c include/*.h tests/unit/*.c tests/integration/*.c \
                      tests/integration/*.h tests/fuzz/*.c bench/*.c)

.PHONY: all check unit integration deps format format-check install uninstall clean fuzz \
        distclean
.SUFFIXES:

all: $(BUILD)/echochatd $(BUILD)/echochat-bench $(BUILD)/bench-ref-echo $(BUILD)/bench-ref-relay

$(BUILD)/echochatd: $(DAEMON_OBJ)
	$(CC) $(ALL_LDFLAGS) -o $@ $^

$(BUILD)/echochat-bench: $(BENCH_OBJ) $(BENCH_DEPS:%=$(BUILD)/obj/%.o)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ -lm

$(BUILD)/bench-ref-%: bench/ref_%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $<

$(BUILD)/obj/%.o: src/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/tests/obj/%.o: tests/unit/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(CMOCKA_CFLAGS) -c -o $@ $<

$(BUILD)/tests/iobj/%.o: tests/integration/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(CMOCKA_CFLAGS) -Itests/integration -c -o $@ $<

.SECONDEXPANSION:
$(BUILD)/tests/unit/test_%: $(BUILD)/tests/obj/test_%.o \
		$$(addprefix $(BUILD)/obj/,$$(addsuffix .o,$$(or $$(UNIT_DEPS_$$*),$$*)))
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) $(patsubst %,-Wl$(comma)--wrap=%,$(UNIT_WRAP_$*)) -o $@ $^ $(CMOCKA_LIBS) -lm

$(BUILD)/tests/integration/test_%: $(BUILD)/tests/iobj/test_%.o $(BUILD)/tests/iobj/harness.o
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(CMOCKA_LIBS) -lm

comma := ,

# make check: every unit test, then every integration test against the
# freshly built daemon. tests/run.sh prints one "N passed, N failed" line.
check: unit integration

unit: $(UNIT_BIN)
	@tests/run.sh unit $(UNIT_BIN)

integration: $(ITEST_BIN) $(BUILD)/echochatd $(BUILD)/echochat-bench
	@ECHOCHATD=$(abspath $(BUILD)/echochatd) ECHOCHAT_BENCH=$(abspath $(BUILD)/echochat-bench) \
		tests/run.sh integration $(ITEST_BIN)

# Installs what the tests need when it is missing (Debian): cmocka, pkg-config
# and the OpenBSD nc that the half-close tests drive.
deps:
	@tests/deps.sh

format:
	clang-format -i $(C_FILES)

format-check:
	clang-format --dry-run --Werror $(C_FILES)

# libFuzzer wants clang. Each target links exactly the modules listed in
# FUZZ_DEPS_<target> (default: the module of the same name), built apart
# with the fuzzer's instrumentation in $(FUZZ_BUILD)/obj; fuzz_chat brings
# its own fake client layer instead of client.c. make fuzz runs every
# target for FUZZ_SECONDS over its hand-written seeds in
# tests/fuzz/corpus/<target> (with tests/fuzz/<target>.dict if there is
# one), keeps what it finds in $(FUZZ_BUILD)/corpus/fuzz_<target> and a
# failing input in $(FUZZ_BUILD)/crash/, and stops at the first failure.
FUZZ_BUILD  := $(BUILD)/fuzz
FUZZ_CC     ?= clang
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -MMD -MP -Iinclude -Itests/fuzz -g -O1 $(WARN) \
               -fno-sanitize-recover=all -DECHOCHAT_VERSION='"$(VERSION)"'
FUZZ_SAN    := address,undefined
FUZZ_DEPS_line   := line telnet buf
FUZZ_DEPS_telnet := telnet
FUZZ_DEPS_text   := text
FUZZ_DEPS_cfg    := cfg
FUZZ_DEPS_listen := cfg
FUZZ_DEPS_chat   := chat line telnet buf text room rate log util
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(FUZZ_BUILD)/%)

fuzz: $(FUZZ_BIN)
	@for t in $^; do n=$$(basename $$t); d=tests/fuzz/$${n#fuzz_}.dict; \
		mkdir -p $(FUZZ_BUILD)/corpus/$$n $(FUZZ_BUILD)/crash; \
		echo "fuzz: $$n for $(FUZZ_SECONDS)s"; \
		$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			-artifact_prefix=$(FUZZ_BUILD)/crash/$$n- $$([ -f $$d ] && echo -dict=$$d) \
			$(FUZZ_BUILD)/corpus/$$n tests/fuzz/corpus/$${n#fuzz_} || exit 1; done

# keep the instrumented objects between targets and runs
.PRECIOUS: $(FUZZ_BUILD)/obj/%.o
$(FUZZ_BUILD)/obj/%.o: src/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,$(FUZZ_SAN) -c -o $@ $<

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h \
		$$(addprefix $(FUZZ_BUILD)/obj/,$$(addsuffix .o,$$(or $$(FUZZ_DEPS_$$*),$$*)))
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer,$(FUZZ_SAN) -o $@ $< $(filter %.o,$^)

install: $(BUILD)/echochatd $(BUILD)/echochat-bench
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(SYSTEMDUNITDIR)
	install -m 755 $(BUILD)/echochatd $(DESTDIR)$(SBINDIR)/echochatd
	install -m 755 $(BUILD)/echochat-bench $(DESTDIR)$(BINDIR)/echochat-bench
	install -m 644 $(MAN) $(DESTDIR)$(MANDIR)/man8/echochatd.8
	for u in $(UNITS); do \
		sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' $$u \
			> $(DESTDIR)$(SYSTEMDUNITDIR)/$$(basename $$u) && \
		chmod 644 $(DESTDIR)$(SYSTEMDUNITDIR)/$$(basename $$u) || exit 1; done

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/echochatd $(DESTDIR)$(BINDIR)/echochat-bench \
		$(DESTDIR)$(MANDIR)/man8/echochatd.8
	for u in $(UNITS); do rm -f $(DESTDIR)$(SYSTEMDUNITDIR)/$$(basename $$u); done

clean:
	rm -rf $(BUILD) build

-include $(shell find $(BUILD) -name "*.d" 2>/dev/null)
