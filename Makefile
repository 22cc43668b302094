# supermachine build. `make` builds everything into build/; `make run` and
# `make test` also set up what they need (packages, guest kernel) first.
#
#   make                 library, CLI, VMM, guest agent, initramfs
#   make kernel          guest kernel (cached outside build/, once per machine)
#   make run             the main job: boot a microVM to its agent
#   make test            every test (VM tests through tools/kvmbox when needed)
#   make SANITIZE=1 ...  the same with ASan+UBSan, in build/asan
#   make fuzz            libFuzzer targets (clang) in build/fuzz

SANITIZE ?= 0
ifeq ($(SANITIZE),1)
BUILD ?= build/asan
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
else
BUILD ?= build
SAN_FLAGS :=
endif

CC      ?= cc
MUSL_CC ?= musl-gcc
CLANG   ?= clang
PREFIX  ?= /usr/local

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla
CPPFLAGS := -Iinclude -Isrc -D_GNU_SOURCE -MMD -MP
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 $(WARN) -fPIC $(SAN_FLAGS)
# --as-needed: the VMM, which restores VMs and must start fast, links none of
# the image libraries (curl, archive, json-c, crypto) it does not call.
LDFLAGS  += $(SAN_FLAGS) -Wl,--as-needed
LDLIBS   := -lcurl -larchive -ljson-c -lcrypto -lpthread -lz

# --- sources -------------------------------------------------------------
LIB_SRCS   := $(wildcard src/lib/*.c src/protocol/*.c src/vmm/*.c src/snapshot/*.c src/devices/*.c src/devices/virtio/*.c src/image/*.c)
LIB_SRCS   := $(filter-out src/vmm/main.c,$(LIB_SRCS))
CLI_SRCS   := $(wildcard src/cli/*.c)
AGENT_SRCS := $(wildcard src/agent/*.c) $(wildcard src/protocol/*.c)
UNIT_TESTS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(wildcard tests/unit/test_*.c))
EXEC_TESTS := $(patsubst tests/exec/%.c,$(BUILD)/tests/%,$(wildcard tests/exec/test_*.c))
VM_TESTS   := $(patsubst tests/vm/%.c,$(BUILD)/tests/%,$(wildcard tests/vm/test_*.c))
FUZZ_SRCS  := $(wildcard fuzz/fuzz_*.c)
GUEST_TEST_INITS := $(patsubst tests/vm/%.c,$(BUILD)/guest/test-%,$(wildcard tests/vm/init_*.c))

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
LIB_OBJS   := $(call obj,$(LIB_SRCS))
CLI_OBJS   := $(call obj,$(CLI_SRCS))

LIB_A  := $(BUILD)/lib/libsupermachine.a
LIB_SO := $(BUILD)/lib/libsupermachine.so
LIB_PC := $(BUILD)/lib/pkgconfig/supermachine.pc
CLI    := $(BUILD)/bin/supermachine
VMM    := $(BUILD)/bin/supermachine-vmm
AGENT_HOST  := $(BUILD)/bin/supermachine-agent
AGENT_GUEST := $(BUILD)/guest/supermachine-agent
MKINITRAMFS := $(BUILD)/bin/mkinitramfs
INITRAMFS   := $(BUILD)/guest/initramfs.cpio
KERNEL      := build/guest/bzImage

.PHONY: all kernel run test check-unit check-exec check-vm fuzz bench install clean deps
all: $(LIB_A) $(LIB_SO) $(LIB_PC) $(CLI) $(VMM) $(AGENT_HOST) $(AGENT_GUEST) $(INITRAMFS) $(GUEST_TEST_INITS)

# --- host objects --------------------------------------------------------
$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(LIB_A): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(LIB_SO): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,-soname,libsupermachine.so.0 $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(LIB_PC): supermachine.pc.in
	@mkdir -p $(dir $@)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|0.1.0|' $< > $@

$(CLI): $(CLI_OBJS) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# The VMM process boots with the same code as `supermachine boot`.
$(VMM): $(call obj,src/vmm/main.c src/cli/vm_options.c src/cli/options.c) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# The agent built for this host: the same code as the guest's, runnable with
# --listen unix:PATH, and sanitizable for the exec tests.
$(AGENT_HOST): $(call obj,$(AGENT_SRCS))
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# --- guest: static musl binaries and the initramfs ----------------------
# musl's include path has no Linux UAPI headers; point it at the system's.
MUSL_INC := $(BUILD)/musl-include
$(MUSL_INC)/.stamp:
	@mkdir -p $(MUSL_INC)
	ln -sfn /usr/include/linux $(MUSL_INC)/linux
	ln -sfn /usr/include/asm-generic $(MUSL_INC)/asm-generic
	ln -sfn /usr/include/x86_64-linux-gnu/asm $(MUSL_INC)/asm
	@touch $@

GUEST_CFLAGS := -std=c11 $(WARN) -O2 -static -Iinclude -Isrc -D_GNU_SOURCE -isystem $(MUSL_INC)
$(AGENT_GUEST): $(AGENT_SRCS) $(MUSL_INC)/.stamp $(wildcard src/agent/*.h src/protocol/*.h)
	@mkdir -p $(dir $@)
	$(MUSL_CC) $(GUEST_CFLAGS) $(AGENT_SRCS) -o $@

$(BUILD)/guest/test-%: tests/vm/%.c $(MUSL_INC)/.stamp
	@mkdir -p $(dir $@)
	$(MUSL_CC) $(GUEST_CFLAGS) $< -o $@

$(MKINITRAMFS): $(call obj,tools/mkinitramfs.c)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@

$(INITRAMFS): $(MKINITRAMFS) $(AGENT_GUEST) guest/initramfs/files.list
	$(MKINITRAMFS) -o $@ -C $(BUILD) guest/initramfs/files.list

# --- guest kernel ----------------------------------------------------------
kernel: $(KERNEL)
$(KERNEL): guest/kernel/supermachine.config scripts/build-kernel.sh
	scripts/build-kernel.sh $@

# --- tests -----------------------------------------------------------------
TEST_LDLIBS := -lcmocka $(LDLIBS)
$(BUILD)/tests/%: tests/unit/%.c $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $< $(LIB_A) -o $@ $(LDFLAGS) $(TEST_LDLIBS)
$(BUILD)/tests/%: tests/exec/%.c $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $< $(LIB_A) -o $@ $(LDFLAGS) $(TEST_LDLIBS)
$(BUILD)/tests/%: tests/vm/%.c $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $< $(LIB_A) -o $@ $(LDFLAGS) $(TEST_LDLIBS)

deps:
	scripts/deps.sh

# make test: set up, then every suite; tests/run prints the summary line.
test: deps
	$(MAKE) all kernel
	$(MAKE) SANITIZE=1 all-tests
	$(MAKE) all-tests fuzz
	tests/run

.PHONY: all-tests
all-tests: all $(UNIT_TESTS) $(EXEC_TESTS) $(VM_TESTS)

run: deps
	$(MAKE) all kernel
	scripts/run-main-job.sh

# --- fuzzing (clang + libFuzzer) -------------------------------------------
FUZZ_DIR   ?= build/fuzz
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer-no-link,address,undefined
FUZZ_OBJS  := $(patsubst %.c,$(FUZZ_DIR)/obj/%.o,$(LIB_SRCS) $(filter-out src/agent/main.c,$(wildcard src/agent/*.c)))
$(FUZZ_DIR)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CLANG) $(CPPFLAGS) -std=c11 $(WARN) -Wno-unused-command-line-argument $(FUZZ_FLAGS) -c $< -o $@
$(FUZZ_DIR)/fuzz_%: fuzz/fuzz_%.c $(FUZZ_OBJS)
	$(CLANG) $(CPPFLAGS) -std=c11 $(WARN) -g -O1 -fsanitize=fuzzer,address,undefined -Wl,--as-needed $^ -o $@ $(LDLIBS)
fuzz: $(patsubst fuzz/%.c,$(FUZZ_DIR)/%,$(FUZZ_SRCS))
# Kept between runs: relinking one target must not recompile the library.
.SECONDARY: $(FUZZ_OBJS)

# --- install -----------------------------------------------------------------
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/supermachine
	install -m 755 $(CLI) $(VMM) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(LIB_A) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(LIB_SO) $(DESTDIR)$(PREFIX)/lib/libsupermachine.so.0
	ln -sf libsupermachine.so.0 $(DESTDIR)$(PREFIX)/lib/libsupermachine.so
	install -m 644 $(LIB_PC) $(DESTDIR)$(PREFIX)/lib/pkgconfig/
	install -m 644 include/supermachine.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(INITRAMFS) $(KERNEL) $(DESTDIR)$(PREFIX)/lib/supermachine/

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
