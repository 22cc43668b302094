# supermachine build. `make` builds everything into build/; `make run` and
# `make test` also set up what they need (packages, guest kernel) first.
#
#   make                 library, CLI, OCI runtime, VMM, guest agent, initramfs
#   make kernel          guest kernel (cached outside build/, once per machine)
#   make run             the main job: boot a microVM to its agent
#   make test            every test (VM tests through tools/kvmbox when needed)
#   make SANITIZE=1 ...  the same with ASan+UBSan, in build/asan
#   make fuzz            libFuzzer targets (clang) in build/fuzz
#   make man             man pages (help2man on --help) in build/man
#   make install         PREFIX, BINDIR, LIBDIR, INCLUDEDIR, MANDIR, DESTDIR...
#   make uninstall       removes what `make install` (same variables) put there
#   make deb             Debian packages in build/deb (slow; not in `make test`)

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

# --- install layout (GNU-style; see "install" below) ---------------------------
# One version, the header's; the shared library's soname carries the major.
VERSION    := $(shell awk '/^\#define SM_VERSION_(MAJOR|MINOR|PATCH)/ { v = v (v == "" ? "" : ".") $$3 } END { print v }' include/supermachine.h)
SOVERSION  := $(firstword $(subst ., ,$(VERSION)))
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DATADIR    ?= $(PREFIX)/share
MANDIR     ?= $(DATADIR)/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
# The VMM, guest kernel and initramfs: programs and data for the library's
# own use, not for $PATH.
PKGLIBDIR  ?= $(LIBDIR)/supermachine
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions
# Where the library looks for PKGLIBDIR, relative to BINDIR (from the running
# executable) and to LIBDIR (from libsupermachine.so): compiled into
# src/lib/assets.c, so that an installed tree moved as a whole still works.
ASSETS_FROM_BIN := $(shell realpath -m --relative-to='$(BINDIR)' '$(PKGLIBDIR)')
ASSETS_FROM_LIB := $(shell realpath -m --relative-to='$(LIBDIR)' '$(PKGLIBDIR)')

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla
CPPFLAGS := -Iinclude -Isrc -D_GNU_SOURCE -MMD -MP
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 $(WARN) -fPIC -fvisibility=hidden $(SAN_FLAGS)
# --as-needed: the VMM, which restores VMs and must start fast, links none of
# the image libraries (curl, archive, json-c, crypto) it does not call.
LDFLAGS  += $(SAN_FLAGS) -Wl,--as-needed
LDLIBS   := -lcurl -larchive -ljson-c -lcrypto -lslirp -lseccomp -lpthread -lz

# --- sources -------------------------------------------------------------
# The floors, each using only those below it (README "Layout"):
#   base      error, file and clock helpers          (host and agent)
#   protocol  the agent's frames, the VMM's contract  (both sides of each)
#   image     OCI references, registries, layers     (library)
#   lib       the public API, libsupermachine        (embedders, CLI)
#   machine   KVM's system calls, guest memory, the event loop: the ground
#             the devices and the VMM stand on
#   devices   one file a device, each with its own save and restore
#   snapshot  the snapshot file's container and KVM's state in it
#   vmm       KVM, vCPUs, the VM and its persistence: supermachine-vmm
#   cli       the supermachine command, on the public API
#   runtime   supermachine-runtime, the OCI runtime (runc's command line), on
#             the public API and base
#   agent     PID 1 in the guest (static, musl)
BASE_SRCS     := $(wildcard src/base/*.c)
PROTOCOL_SRCS := $(wildcard src/protocol/*.c)
LIB_SRCS   := $(wildcard src/lib/*.c src/image/*.c) $(PROTOCOL_SRCS) $(BASE_SRCS)
VMM_SRCS   := $(filter-out src/vmm/main.c,$(wildcard src/vmm/*.c src/snapshot/*.c src/devices/*.c src/devices/virtio/*.c src/machine/*.c))
CLI_SRCS   := $(wildcard src/cli/*.c)
RUNTIME_SRCS := $(wildcard src/runtime/*.c)
# What the runtime's tests and fuzz target link: all but its main().
RUNTIME_LIB_SRCS := $(filter-out src/runtime/main.c,$(RUNTIME_SRCS))
AGENT_SRCS := $(wildcard src/agent/*.c) src/protocol/wire.c src/base/file.c src/base/clock.c
UNIT_TESTS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(wildcard tests/unit/test_*.c))
EXEC_TESTS := $(patsubst tests/exec/%.c,$(BUILD)/tests/%,$(wildcard tests/exec/test_*.c))
VM_TESTS   := $(patsubst tests/vm/%.c,$(BUILD)/tests/%,$(wildcard tests/vm/test_*.c))
# The soak loops the VM suite also runs (bench/soak/streams.c: streams in and
# out; bench/soak/concurrent.c: rounds of 32 concurrent execs).
SOAK_PROGS := $(BUILD)/bench/streams $(BUILD)/bench/concurrent
FUZZ_SRCS  := $(wildcard fuzz/fuzz_*.c)
GUEST_TEST_INITS := $(patsubst tests/vm/%.c,$(BUILD)/guest/test-%,$(wildcard tests/vm/init_*.c))

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
LIB_OBJS   := $(call obj,$(LIB_SRCS))
VMM_OBJS   := $(call obj,$(VMM_SRCS))
CLI_OBJS   := $(call obj,$(CLI_SRCS))

# libsupermachine exports exactly the functions include/supermachine.h marks
# SM_API (everything is compiled -fvisibility=hidden). The VMM's code goes
# into an internal archive, linked by supermachine-vmm and the tests only.
LIB_A  := $(BUILD)/lib/libsupermachine.a
LIB_SO := $(BUILD)/lib/libsupermachine.so
LIB_PC := $(BUILD)/lib/pkgconfig/supermachine.pc
VMM_A  := $(BUILD)/lib/libsupermachine-vmm.a
CLI    := $(BUILD)/bin/supermachine
RUNTIME := $(BUILD)/bin/supermachine-runtime
VMM    := $(BUILD)/bin/supermachine-vmm
AGENT_HOST  := $(BUILD)/bin/supermachine-agent
AGENT_GUEST := $(BUILD)/guest/supermachine-agent
MKINITRAMFS := $(BUILD)/bin/mkinitramfs
INITRAMFS   := $(BUILD)/guest/initramfs.cpio
KERNEL      := build/guest/bzImage
# What a test links: the VMM's archive first, as it uses base and protocol
# from the library's.
INTERNAL_LIBS := $(VMM_A) $(LIB_A)

.PHONY: all kernel run test check-unit check-exec check-vm fuzz bench install uninstall man deb clean deps
all: $(LIB_A) $(LIB_SO) $(LIB_PC) $(VMM_A) $(CLI) $(RUNTIME) $(VMM) $(AGENT_HOST) $(AGENT_GUEST) $(INITRAMFS) $(GUEST_TEST_INITS)

# --- host objects --------------------------------------------------------
# Every object depends on the flags it was compiled with, so that a change
# of flags (visibility, sanitizers) rebuilds instead of mixing old objects in.
# (Expanded once, here: a target's own additions, as assets.c has, stay out.)
COMPILE_FLAGS := $(BUILD)/compile-flags
COMPILE_LINE  := $(CC) $(CPPFLAGS) $(CFLAGS)
$(COMPILE_FLAGS): FORCE
	@mkdir -p $(dir $@)
	@echo '$(COMPILE_LINE)' | cmp -s - $@ || echo '$(COMPILE_LINE)' >$@
$(BUILD)/obj/%.o: %.c $(COMPILE_FLAGS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(LIB_A): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(VMM_A): $(VMM_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# libsupermachine.so (soname libsupermachine.so.MAJOR, also linked here so
# that programs built against the build tree run with LD_LIBRARY_PATH).
$(LIB_SO): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,-soname,libsupermachine.so.$(SOVERSION) $(LDFLAGS) $^ -o $@ $(LDLIBS)
	ln -sfn libsupermachine.so $(dir $@)libsupermachine.so.$(SOVERSION)

# The install paths the library is compiled with (assets.c), rewritten only
# when they change, so that a different layout recompiles that one file.
INSTALL_PATHS := $(BUILD)/install-paths
$(INSTALL_PATHS): FORCE
	@mkdir -p $(dir $@)
	@echo 'SM_ASSETS_FROM_BIN=$(ASSETS_FROM_BIN) SM_ASSETS_FROM_LIB=$(ASSETS_FROM_LIB)' | cmp -s - $@ \
		|| echo 'SM_ASSETS_FROM_BIN=$(ASSETS_FROM_BIN) SM_ASSETS_FROM_LIB=$(ASSETS_FROM_LIB)' >$@
$(call obj,src/lib/assets.c): $(INSTALL_PATHS)
$(call obj,src/lib/assets.c): CPPFLAGS += -DSM_ASSETS_FROM_BIN='"$(ASSETS_FROM_BIN)"' -DSM_ASSETS_FROM_LIB='"$(ASSETS_FROM_LIB)"'
.PHONY: FORCE
FORCE:

# supermachine.pc for the build tree itself (PKG_CONFIG_PATH=build/lib/pkgconfig);
# `make install` writes the installed one, with the install paths.
PC_SED = sed -e 's|@PREFIX@|$(1)|' -e 's|@LIBDIR@|$(2)|' -e 's|@INCLUDEDIR@|$(3)|' -e 's|@VERSION@|$(VERSION)|'
$(LIB_PC): supermachine.pc.in
	@mkdir -p $(dir $@)
	$(call PC_SED,$(CURDIR)/$(BUILD),$${prefix}/lib,$(CURDIR)/include) $< >$@

$(CLI): $(CLI_OBJS) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(RUNTIME): $(call obj,$(RUNTIME_SRCS)) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(VMM): $(call obj,src/vmm/main.c) $(INTERNAL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# The agent built for this host: the same code as the guest's, runnable with
# --listen unix:PATH, and sanitizable for the exec tests.
$(AGENT_HOST): $(call obj,$(AGENT_SRCS))
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# --- Python binding (bindings/python) -------------------------------------
# `make python`: the extension module supermachine._supermachine, linked
# with the static libsupermachine.a, and the pure-Python package beside it,
# in $(BUILD)/python (PYTHONPATH=$(BUILD)/python). Debian's python3 by
# default: python3-dev and python3-pytest are its packages (scripts/deps.sh).
# `pip install bindings/python` builds the same thing through setuptools.
PYTHON ?= $(firstword $(wildcard /usr/bin/python3) python3)
PY_DIR := $(BUILD)/python/supermachine
PY_SRCS := $(wildcard bindings/python/supermachine/*.py bindings/python/supermachine/*.pyi bindings/python/supermachine/py.typed)
PY_EXT = $(PY_DIR)/_supermachine$(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
PY_INC = $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
.PHONY: python
python: $(PY_EXT) $(patsubst bindings/python/supermachine/%,$(PY_DIR)/%,$(PY_SRCS))
$(PY_DIR)/%: bindings/python/supermachine/%
	@mkdir -p $(dir $@)
	cp $< $@
# Compiled with the project's flags and warnings, none relaxed.
$(PY_EXT): bindings/python/supermachine/_supermachine.c include/supermachine.h $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) -Iinclude -I$(PY_INC) -D_GNU_SOURCE $(CFLAGS) -shared $< $(LIB_A) -o $@ $(LDFLAGS) $(LDLIBS)

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
$(AGENT_GUEST): $(AGENT_SRCS) $(MUSL_INC)/.stamp $(wildcard src/agent/*.h src/protocol/wire.h src/protocol/guest_abi.h src/base/*.h)
	@mkdir -p $(dir $@)
	$(MUSL_CC) $(GUEST_CFLAGS) $(AGENT_SRCS) -o $@

$(BUILD)/guest/test-%: tests/vm/%.c $(MUSL_INC)/.stamp
	@mkdir -p $(dir $@)
	$(MUSL_CC) $(GUEST_CFLAGS) $< -o $@

# libarchive writes the cpio; src/base/file.c replaces the output atomically.
$(MKINITRAMFS): $(call obj,tools/mkinitramfs.c src/base/file.c)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ -larchive

$(INITRAMFS): $(MKINITRAMFS) $(AGENT_GUEST) guest/initramfs/files.list
	$(MKINITRAMFS) -o $@ -C $(BUILD) guest/initramfs/files.list

# --- guest kernel ----------------------------------------------------------
kernel: $(KERNEL)
$(KERNEL): guest/kernel/supermachine.config scripts/build-kernel.sh
	scripts/build-kernel.sh $@

# --- tests -----------------------------------------------------------------
TEST_LDLIBS := -lcmocka $(LDLIBS)
# The fixtures tests share (tests/helpers/*.c: a fake virtio driver, VM
# folders): one archive, linked before the internal libraries it uses.
# Tests include them as "helpers/NAME.h".
TEST_HELPERS_A := $(BUILD)/tests/libtesthelpers.a
TEST_LIBS      := $(TEST_HELPERS_A) $(INTERNAL_LIBS)
$(TEST_HELPERS_A): $(call obj,$(wildcard tests/helpers/*.c))
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^
$(BUILD)/tests/%: tests/unit/%.c $(TEST_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests $(CFLAGS) $< $(TEST_LIBS) -o $@ $(LDFLAGS) $(TEST_LDLIBS)
# The agent's session against a stubbed loop: links session.c itself.
$(BUILD)/tests/test_agent_session: tests/unit/test_agent_session.c $(call obj,src/agent/session.c) $(TEST_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests $(CFLAGS) $< $(call obj,src/agent/session.c) $(TEST_LIBS) -o $@ $(LDFLAGS) $(TEST_LDLIBS)
# The runtime's tests link its code (all but main.c).
$(BUILD)/tests/test_runtime_%: tests/unit/test_runtime_%.c $(call obj,$(RUNTIME_LIB_SRCS)) $(TEST_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests $(CFLAGS) $< $(call obj,$(RUNTIME_LIB_SRCS)) $(TEST_LIBS) -o $@ $(LDFLAGS) $(TEST_LDLIBS)
$(BUILD)/tests/%: tests/exec/%.c $(TEST_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests $(CFLAGS) $< $(TEST_LIBS) -o $@ $(LDFLAGS) $(TEST_LDLIBS)
$(BUILD)/tests/%: tests/vm/%.c $(TEST_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests $(CFLAGS) $< $(TEST_LIBS) -o $@ $(LDFLAGS) $(TEST_LDLIBS)

deps:
	scripts/deps.sh

# make test: set up, then every suite; tests/run prints the summary line.
test: deps
	$(MAKE) all kernel
	$(MAKE) SANITIZE=1 all-tests
	$(MAKE) all-tests fuzz python
	tests/run

.PHONY: all-tests
all-tests: all $(UNIT_TESTS) $(EXEC_TESTS) $(VM_TESTS) $(SOAK_PROGS)

$(BUILD)/bench/%: bench/soak/%.c $(INTERNAL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $< $(INTERNAL_LIBS) -o $@ $(LDFLAGS) $(LDLIBS)

run: deps
	$(MAKE) all kernel
	scripts/run-main-job.sh

# --- fuzzing (clang + libFuzzer) -------------------------------------------
FUZZ_DIR   ?= build/fuzz
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer-no-link,address,undefined
# The unit tests' fake virtio driver (tests/helpers) plays the guest in the virtio targets too.
FUZZ_OBJS  := $(patsubst %.c,$(FUZZ_DIR)/obj/%.o,$(LIB_SRCS) $(VMM_SRCS) $(filter-out src/agent/main.c,$(wildcard src/agent/*.c)) \
                $(RUNTIME_LIB_SRCS) \
                tests/helpers/virtio_driver.c)
$(FUZZ_DIR)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CLANG) $(CPPFLAGS) -std=c11 $(WARN) -Wno-unused-command-line-argument $(FUZZ_FLAGS) -c $< -o $@
$(FUZZ_DIR)/fuzz_%: fuzz/fuzz_%.c $(FUZZ_OBJS)
	$(CLANG) $(CPPFLAGS) -Itests -std=c11 $(WARN) -g -O1 -fsanitize=fuzzer,address,undefined -Wl,--as-needed $^ -o $@ $(LDLIBS)
fuzz: $(patsubst fuzz/%.c,$(FUZZ_DIR)/%,$(FUZZ_SRCS))
# Kept between runs: relinking one target must not recompile the library.
.SECONDARY: $(FUZZ_OBJS)

# --- man pages -----------------------------------------------------------------
# supermachine(1) and supermachine-COMMAND(1), one per command of
# src/cli/main.c, made by help2man from the built CLI's --help (so they say
# what --help says), plus the hand-written libsupermachine(3) and
# supermachine-runtime(8).
MAN_DIR  := $(BUILD)/man
MAN_CMDS := $(shell sed -n 's/^ *{ *"\([a-z][a-z0-9-]*\)", *cmd_[a-z0-9_]*,.*/\1/p' src/cli/main.c)
MAN1     := $(MAN_DIR)/supermachine.1 $(patsubst %,$(MAN_DIR)/supermachine-%.1,$(MAN_CMDS))
MAN3     := $(MAN_DIR)/libsupermachine.3
MAN8     := $(MAN_DIR)/supermachine-runtime.8
man: $(MAN1) $(MAN3) $(MAN8)
$(MAN_DIR)/supermachine.1: $(CLI) man/help2man.sh man/supermachine.h2m
	man/help2man.sh $(CLI) '' $@
$(MAN_DIR)/supermachine-%.1: $(CLI) man/help2man.sh
	man/help2man.sh $(CLI) $* $@
# The hand-written pages, with their version filled in.
$(MAN_DIR)/%.3: man/%.3
	@mkdir -p $(dir $@)
	sed -e 's|@VERSION@|$(VERSION)|' $< >$@
$(MAN_DIR)/%.8: man/%.8
	@mkdir -p $(dir $@)
	sed -e 's|@VERSION@|$(VERSION)|' $< >$@

# --- install -----------------------------------------------------------------
# make install [PREFIX=/usr/local] [BINDIR=] [LIBDIR=] [INCLUDEDIR=] [MANDIR=]
#              [PKGLIBDIR=] [DESTDIR=]
# The tree: BINDIR/supermachine{,-runtime}; LIBDIR/libsupermachine.{a,so*} and
# PKGCONFIGDIR/supermachine.pc (written here, with these paths);
# INCLUDEDIR/supermachine.h; PKGLIBDIR/{supermachine-vmm,bzImage,
# initramfs.cpio}; MANDIR/man1, man3, man8; BASHCOMPDIR/supermachine. DESTDIR
# stages it all without changing a path compiled in or written.
INSTALL ?= install
INSTALLED_BIN := $(DESTDIR)$(BINDIR)/supermachine $(DESTDIR)$(BINDIR)/supermachine-runtime
INSTALLED_LIB := $(addprefix $(DESTDIR)$(LIBDIR)/,libsupermachine.a libsupermachine.so \
                   libsupermachine.so.$(SOVERSION) libsupermachine.so.$(VERSION))
INSTALLED_PC  := $(DESTDIR)$(PKGCONFIGDIR)/supermachine.pc
INSTALLED_H   := $(DESTDIR)$(INCLUDEDIR)/supermachine.h
INSTALLED_PKGLIB := $(addprefix $(DESTDIR)$(PKGLIBDIR)/,supermachine-vmm bzImage initramfs.cpio)
INSTALLED_MAN := $(patsubst $(MAN_DIR)/%,$(DESTDIR)$(MANDIR)/man1/%,$(MAN1)) \
                 $(DESTDIR)$(MANDIR)/man3/libsupermachine.3 \
                 $(DESTDIR)$(MANDIR)/man8/supermachine-runtime.8
INSTALLED_COMPLETION := $(DESTDIR)$(BASHCOMPDIR)/supermachine
# In the .pc, paths under PREFIX are written from ${prefix}, so that
# pkg-config --define-prefix can relocate them.
pc_rel = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))

install: all $(KERNEL) man
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR) \
		$(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGLIBDIR) $(DESTDIR)$(MANDIR)/man1 \
		$(DESTDIR)$(MANDIR)/man3 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(BASHCOMPDIR)
	$(INSTALL) -m 755 $(CLI) $(RUNTIME) $(DESTDIR)$(BINDIR)/
	$(INSTALL) -m 755 $(VMM) $(DESTDIR)$(PKGLIBDIR)/
	$(INSTALL) -m 644 $(INITRAMFS) $(KERNEL) $(DESTDIR)$(PKGLIBDIR)/
	$(INSTALL) -m 644 $(LIB_A) $(DESTDIR)$(LIBDIR)/
	$(INSTALL) -m 644 $(LIB_SO) $(DESTDIR)$(LIBDIR)/libsupermachine.so.$(VERSION)
	ln -sfn libsupermachine.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libsupermachine.so.$(SOVERSION)
	ln -sfn libsupermachine.so.$(SOVERSION) $(DESTDIR)$(LIBDIR)/libsupermachine.so
	$(call PC_SED,$(PREFIX),$(call pc_rel,$(LIBDIR)),$(call pc_rel,$(INCLUDEDIR))) supermachine.pc.in \
		>$(INSTALLED_PC).tmp && chmod 644 $(INSTALLED_PC).tmp && mv $(INSTALLED_PC).tmp $(INSTALLED_PC)
	$(INSTALL) -m 644 include/supermachine.h $(DESTDIR)$(INCLUDEDIR)/
	$(INSTALL) -m 644 $(MAN1) $(DESTDIR)$(MANDIR)/man1/
	$(INSTALL) -m 644 $(MAN3) $(DESTDIR)$(MANDIR)/man3/
	$(INSTALL) -m 644 $(MAN8) $(DESTDIR)$(MANDIR)/man8/
	$(INSTALL) -m 644 completion/supermachine.bash $(INSTALLED_COMPLETION)

# Exactly the files install writes (same variables), then PKGLIBDIR, which is
# ours; shared folders (bin, lib, man1...) stay.
uninstall:
	rm -f $(INSTALLED_BIN) $(INSTALLED_LIB) $(INSTALLED_PC) $(INSTALLED_H) \
		$(INSTALLED_PKGLIB) $(INSTALLED_MAN) $(INSTALLED_COMPLETION)
	rmdir $(DESTDIR)$(PKGLIBDIR) 2>/dev/null || true

# --- Debian packages -----------------------------------------------------------
# Builds supermachine, libsupermachine0 and libsupermachine-dev with
# dpkg-buildpackage in a copy of this tree (build/deb/supermachine-VERSION: the
# packaging's build and clean never touch ./build), so the .deb, .changes
# and .buildinfo files land in build/deb/; then lintian on them. Slow the
# first time on a machine (the guest kernel; cached after, see make kernel).
DEB_DIR := build/deb
deb:
	rm -rf $(DEB_DIR) && mkdir -p $(DEB_DIR)/supermachine-$(VERSION)
	git ls-files -z --cached --others --exclude-standard \
		| tar --null --ignore-failed-read -T - -cf - | tar -xf - -C $(DEB_DIR)/supermachine-$(VERSION)
	cd $(DEB_DIR)/supermachine-$(VERSION) && dpkg-buildpackage -us -uc -b
	lintian --display-info $(DEB_DIR)/*.changes
	@ls -l $(DEB_DIR)/*.deb

clean:
	rm -rf build

# Header dependencies of objects, test programs and benchmarks alike.
-include $(shell find $(BUILD)/obj $(BUILD)/tests $(BUILD)/bench -name '*.d' 2>/dev/null)
