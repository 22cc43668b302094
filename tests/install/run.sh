#!/usr/bin/env bash
# tests/install/run.sh: `make install` as a user or a packager would use it,
# into temporary DESTDIR+PREFIX trees, and checked from the outside:
#
#   1. the default layout (PREFIX/lib), installed from ./build as built:
#      exactly the files expected, the shared library's soname and links, a
#      .pc written with the install prefix, a C program built through
#      pkg-config only (PKG_CONFIG_SYSROOT_DIR for the staging, then
#      --define-prefix for a copy of the tree moved elsewhere) and run against
#      the staged libsupermachine.so; the installed `supermachine doctor`; the
#      installed tree finding its VMM, kernel and initramfs with no
#      environment variable, from the CLI and from a program linked with the
#      .so, staged and moved; `man -l` on each page; the bash completion;
#      `make uninstall` leaving no file behind;
#   2. a Debian-like layout (PREFIX=/usr, LIBDIR=/usr/lib/<multiarch>, so
#      BINDIR/../lib/supermachine is not the asset folder), built in a
#      separate build folder: the compiled-in relative path finds the assets.
#
# No VM runs: the installed supermachine-vmm is swapped, after its install is
# checked, for a script that records the arguments the library gave it (the
# kernel and initramfs paths) and exits 1.
#
# Prints "ok   ..." / "FAIL ..." lines and ends with "N passed, N failed".
#   usage: tests/install/run.sh
# Environment: SM_INSTALL_KEEP=1 keeps the temporary folder (its path is printed).
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

passed=0
failed=0
pass() { passed=$((passed + 1)); printf 'ok   %s\n' "$1"; }
fail() { failed=$((failed + 1)); printf 'FAIL %s\n' "$1"; }
show() { sed 's/^/     | /' "$@" | tail -n 25; }
check() { # check NAME COMMAND...: ok when COMMAND succeeds
    local name=$1
    shift
    if "$@" >"$t/check.log" 2>&1; then pass "$name"; else fail "$name"; show "$t/check.log"; fi
}

t=$(mktemp -d "${TMPDIR:-/tmp}/sm-install.XXXXXX")
if [[ ${SM_INSTALL_KEEP:-0} == 1 ]]; then echo "(keeping $t)"; else trap 'rm -rf "$t"' EXIT; fi
multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
version=$(awk '/^#define SM_VERSION_(MAJOR|MINOR|PATCH)/ { v = v (v == "" ? "" : ".") $3 } END { print v }' include/supermachine.h)
soversion=${version%%.*}

# The commands, as the CLI lists them: one man page each.
cli_commands() { build/bin/supermachine --help | awk '/^commands:/ { on = 1; next } on && NF == 0 { exit } on { print $1 }'; }

# A small program against the public API; with "start", it starts a VM with
# every default (so the library looks up its VMM, kernel and initramfs).
cat >"$t/prog.c" <<'EOF'
#include <supermachine.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    sm_host_report report;
    sm_error err;
    printf("version %d.%d.%d\n", SM_VERSION_MAJOR, SM_VERSION_MINOR, SM_VERSION_PATCH);
    printf("strerror %s\n", sm_strerror(SM_E_NOTFOUND));
    sm_host_check(&report, &err);
    printf("host %s\n", sm_host_kind_name(report.kind));
    if (argc > 1 && !strcmp(argv[1], "start")) {
        sm_vm_config *cfg = sm_vm_config_new();
        sm_vm *vm;
        sm_vm_config_boot_timeout_s(cfg, 5);
        sm_code rc = sm_vm_start(cfg, &vm, &err);
        printf("start: %s%s%s\n", sm_strerror(rc), rc ? ": " : "", rc ? err.message : "");
        if (rc == SM_OK) {
            sm_vm_stop(vm, NULL);
            sm_vm_free(vm);
        }
        sm_vm_config_free(cfg);
    }
    return 0;
}
EOF

# A clean environment: no variable may point at assets, and nothing under
# this user's HOME or runtime folder may be found instead of the installed
# tree. PATH keeps the system's tools only.
clean_env=(env -u SUPERMACHINE_KERNEL -u SUPERMACHINE_INITRD -u SUPERMACHINE_ASSETS
           -u SUPERMACHINE_VMM -u SUPERMACHINE_IMAGES -u SUPERMACHINE_RUNTIME_IMAGES -u XDG_DATA_HOME -u LD_LIBRARY_PATH
           HOME="$t/home" XDG_RUNTIME_DIR="$t/rt" PATH=/usr/sbin:/usr/bin:/sbin:/bin)
mkdir -p "$t/home" "$t/rt"
chmod 700 "$t/rt"

# Swaps the VMM in PKGLIB for a recorder of its arguments (see above).
fake_vmm() {
    local pkglib=$1 log=$2
    [[ -e $pkglib/supermachine-vmm.real ]] || mv "$pkglib/supermachine-vmm" "$pkglib/supermachine-vmm.real"
    rm -f "$pkglib/supermachine-vmm"
    printf '#!/bin/sh\nprintf "%%s\\n" "$0" "$@" >"%s"\nexit 1\n' "$log" >"$pkglib/supermachine-vmm"
    chmod 755 "$pkglib/supermachine-vmm"
}

# Puts back the VMM that fake_vmm set aside.
real_vmm() {
    mv -f "$1/supermachine-vmm.real" "$1/supermachine-vmm"
}

# NAME PKGLIB LOG OUTPUT: the fake VMM in PKGLIB was started with the kernel
# and initramfs of PKGLIB (paths compared canonical).
check_assets_used() {
    local name=$1 pkglib=$2 log=$3 out=$4 vmm="" kernel="" initrd="" want
    if [[ -s $log ]]; then
        vmm=$(sed -n 1p "$log")
        kernel=$(sed -n '/^--kernel$/{n;p;q}' "$log")
        initrd=$(sed -n '/^--initrd$/{n;p;q}' "$log")
    fi
    want=$(realpath -m "$pkglib")
    if [[ -n $vmm && $(realpath -m "$vmm") == "$want/supermachine-vmm" && -n $kernel
          && $(realpath -m "$kernel") == "$want/bzImage" && -n $initrd
          && $(realpath -m "$initrd") == "$want/initramfs.cpio" ]]; then
        pass "$name ($vmm)"
    else
        fail "$name: the VMM, bzImage and initramfs.cpio of $pkglib were not the ones used"
        [[ -f $log ]] && show "$log"
        show "$out"
    fi
}

# The relative paths of every file and link under DIR, sorted.
tree_files() { (cd "$1" && find . \( -type f -o -type l \) -printf '%P\n' | LC_ALL=C sort); }

# Runs bash completion for a command line (its last word is completed) with
# the installed script and CLI; prints the candidates, one a line.
complete_line() {
    local script=$1 bindir=$2 line=$3
    "${clean_env[@]}" PATH="$bindir:/usr/bin:/bin" SUPERMACHINE_IMAGES="$t/images" \
        bash --norc --noprofile -c '
        source "$1" || exit 1
        COMP_LINE=$2; COMP_POINT=${#COMP_LINE}
        read -ra COMP_WORDS <<<"$COMP_LINE"
        [[ $COMP_LINE == *" " ]] && COMP_WORDS+=("")
        COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
        _supermachine && printf "%s\n" "${COMPREPLY[@]}"' _ "$script" "$line"
}

# --- 1. the default layout -------------------------------------------------------
echo "--- make install DESTDIR=... PREFIX=/opt/supermachine-test (from ./build)"
prefix=/opt/supermachine-test
stage=$t/stage
inst=$stage$prefix
if ! make -s -j1 install DESTDIR="$stage" PREFIX="$prefix" >"$t/install.log" 2>&1; then
    fail "make install DESTDIR=$stage PREFIX=$prefix"
    show "$t/install.log"
    echo "$passed passed, $failed failed"
    exit 1
fi
pass "make install DESTDIR=... PREFIX=$prefix"

{
    echo bin/supermachine
    echo bin/supermachine-runtime
    echo include/supermachine.h
    printf 'lib/%s\n' libsupermachine.a libsupermachine.so "libsupermachine.so.$soversion" "libsupermachine.so.$version"
    echo lib/pkgconfig/supermachine.pc
    printf 'lib/supermachine/%s\n' bzImage initramfs.cpio supermachine-vmm
    echo share/bash-completion/completions/supermachine
    echo share/man/man1/supermachine.1
    cli_commands | sed 's|^|share/man/man1/supermachine-|; s|$|.1|'
    echo share/man/man3/libsupermachine.3
    echo share/man/man8/supermachine-runtime.8
} | LC_ALL=C sort >"$t/want.list"
tree_files "$stage" >"$t/got.list"
if [[ $(sed "s|^|${prefix#/}/|" "$t/want.list") == "$(cat "$t/got.list")" ]]; then
    pass "installed exactly the $(wc -l <"$t/want.list") expected files under PREFIX"
else
    fail "installed files differ from the expected ones (-want +got)"
    diff <(sed "s|^|${prefix#/}/|" "$t/want.list") "$t/got.list" | grep '^[<>]' | show
fi

check "the installed programs are the built ones" \
    bash -c 'cmp "$1/supermachine" "$2/supermachine" && cmp "$1/supermachine-runtime" "$2/supermachine-runtime"' \
    _ build/bin "$inst/bin"
cmp -s build/bin/supermachine-vmm "$inst/lib/supermachine/supermachine-vmm" \
    && cmp -s build/guest/bzImage "$inst/lib/supermachine/bzImage" \
    && cmp -s build/guest/initramfs.cpio "$inst/lib/supermachine/initramfs.cpio" \
    && pass "PKGLIBDIR holds the built VMM, kernel and initramfs" \
    || fail "PKGLIBDIR does not hold the built VMM, kernel and initramfs"

soname=$(readelf -d "$inst/lib/libsupermachine.so.$version" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
if [[ $soname == "libsupermachine.so.$soversion" && ! -L $inst/lib/libsupermachine.so.$version \
      && $(readlink "$inst/lib/libsupermachine.so.$soversion") == "libsupermachine.so.$version" \
      && $(readlink "$inst/lib/libsupermachine.so") == "libsupermachine.so.$soversion" ]]; then
    pass "libsupermachine.so -> .so.$soversion -> .so.$version, soname libsupermachine.so.$soversion"
else
    fail "shared library: soname '$soname', links: $(cd "$inst/lib" && ls -l libsupermachine.so* 2>&1 | awk '{print $9 $10 $11}' | paste -sd' ')"
fi

if grep -qx "prefix=$prefix" "$inst/lib/pkgconfig/supermachine.pc" \
    && grep -qx 'libdir=${prefix}/lib' "$inst/lib/pkgconfig/supermachine.pc" \
    && grep -qx 'includedir=${prefix}/include' "$inst/lib/pkgconfig/supermachine.pc" \
    && grep -qx "Version: $version" "$inst/lib/pkgconfig/supermachine.pc"; then
    pass "supermachine.pc has the install prefix ($prefix), libdir and includedir"
else
    fail "supermachine.pc is not written for the install"
    show "$inst/lib/pkgconfig/supermachine.pc"
fi

# A program through pkg-config only: the staged .pc, read through the sysroot
# (what DESTDIR staging is), then a copy of the tree moved elsewhere.
build_prog() { # NAME OUT "PKG-CONFIG OPTIONS" ENV...: cc with the flags pkg-config gives
    local name=$1 out=$2 opts=$3 flags
    shift 3
    # shellcheck disable=SC2086 # the options are words
    if ! flags=$(env "$@" pkg-config $opts --cflags --libs supermachine 2>"$t/pc.err"); then
        fail "$name: pkg-config fails"
        show "$t/pc.err"
        return 1
    fi
    echo "$flags" >"$out.flags"
    # shellcheck disable=SC2086 # the flags are words
    if cc -std=c11 -Wall -Wextra -Werror "$t/prog.c" $flags -o "$out" >"$t/cc.log" 2>&1; then
        pass "$name: cc prog.c \$(pkg-config${opts:+ $opts} --cflags --libs supermachine) = $flags"
    else
        fail "$name: the program does not build with: $flags"
        show "$t/cc.log"
        return 1
    fi
}
mkdir -p "$t/elsewhere"
if build_prog "staged tree (PKG_CONFIG_SYSROOT_DIR)" "$t/elsewhere/prog" "" \
    PKG_CONFIG_PATH="$inst/lib/pkgconfig" PKG_CONFIG_LIBDIR=/nonexistent PKG_CONFIG_SYSROOT_DIR="$stage"; then
    "${clean_env[@]}" LD_LIBRARY_PATH="$inst/lib" ldd "$t/elsewhere/prog" >"$t/ldd.log" 2>&1
    if grep -q "libsupermachine.so.$soversion => $inst/lib/libsupermachine.so.$soversion" "$t/ldd.log"; then
        pass "the program loads the staged libsupermachine.so.$soversion"
    else
        fail "the program does not load the staged library"
        show "$t/ldd.log"
    fi
    if "${clean_env[@]}" LD_LIBRARY_PATH="$inst/lib" "$t/elsewhere/prog" >"$t/prog.out" 2>&1 \
        && grep -qx "version $version" "$t/prog.out" && grep -qx "strerror .*" "$t/prog.out" \
        && grep -q '^host ' "$t/prog.out"; then
        pass "the program runs: $(paste -sd';' "$t/prog.out")"
    else
        fail "the program does not run"
        show "$t/prog.out"
    fi
fi

# The installed doctor: it examines the host (non-zero here when /dev/kvm is
# PVM or missing) and must print its report.
"${clean_env[@]}" "$inst/bin/supermachine" doctor >"$t/doctor.out" 2>&1
status=$?
if ((status <= 1)) && grep -q 'verdict' "$t/doctor.out"; then
    pass "installed supermachine doctor prints its report (exit $status: $(sed -n 's/^ *verdict *//p' "$t/doctor.out" | cut -c1-60))"
else
    fail "installed supermachine doctor: exit $status"
    show "$t/doctor.out"
fi
check "installed supermachine --version says $version" \
    grep -qx "supermachine $version" <("${clean_env[@]}" "$inst/bin/supermachine" --version)

# Assets with no environment variable: from the CLI (BINDIR/../lib/supermachine)
# and from a program elsewhere through the .so (LIBDIR/supermachine).
fake_vmm "$inst/lib/supermachine" "$t/vmm-args"
"${clean_env[@]}" "$inst/bin/supermachine" start --timeout 5 >"$t/start.out" 2>&1
check_assets_used "installed CLI: supermachine start finds the VMM, kernel and initramfs in PKGLIBDIR" \
    "$inst/lib/supermachine" "$t/vmm-args" "$t/start.out"
rm -f "$t/vmm-args"
# The installed OCI runtime too: a container's VM is baked from its bundle
# by the VMM, kernel and initramfs of PKGLIBDIR (its images kept under $t:
# as root it would use /var/lib).
mkdir -p "$t/bundle/rootfs/bin" && cp /usr/bin/busybox "$t/bundle/rootfs/bin/sh"
printf '%s\n' '{"ociVersion":"1.0.2","process":{"user":{"uid":0,"gid":0},"args":["sh"],"cwd":"/"},' \
    '"root":{"path":"rootfs"}}' >"$t/bundle/config.json"
"${clean_env[@]}" SUPERMACHINE_RUNTIME_IMAGES="$t/rt-images" "$inst/bin/supermachine-runtime" --root "$t/rt/runtime" create --bundle "$t/bundle" c1 \
    </dev/null >"$t/runtime.out" 2>&1
check_assets_used "installed runtime: create bakes with the VMM, kernel and initramfs in PKGLIBDIR" \
    "$inst/lib/supermachine" "$t/vmm-args" "$t/runtime.out"
rm -f "$t/vmm-args"
"${clean_env[@]}" LD_LIBRARY_PATH="$inst/lib" "$t/elsewhere/prog" start >"$t/prog-start.out" 2>&1
check_assets_used "a program linked with the staged .so finds them from the library's folder" \
    "$inst/lib/supermachine" "$t/vmm-args" "$t/prog-start.out"
rm -f "$t/vmm-args"

# The whole tree moved: pkg-config --define-prefix, and the same lookups.
moved=$t/moved/somewhere
mkdir -p "$moved"
cp -a "$inst/." "$moved/"
fake_vmm "$moved/lib/supermachine" "$t/vmm-args"
build_prog "moved tree (pkg-config --define-prefix)" "$t/elsewhere/prog-moved" --define-prefix \
    PKG_CONFIG_PATH="$moved/lib/pkgconfig" PKG_CONFIG_LIBDIR=/nonexistent
"${clean_env[@]}" "$moved/bin/supermachine" start --timeout 5 >"$t/start.out" 2>&1
check_assets_used "moved tree: its CLI finds its own VMM, kernel and initramfs" \
    "$moved/lib/supermachine" "$t/vmm-args" "$t/start.out"
rm -f "$t/vmm-args"
if [[ -x $t/elsewhere/prog-moved ]]; then
    "${clean_env[@]}" LD_LIBRARY_PATH="$moved/lib" "$t/elsewhere/prog-moved" start >"$t/prog-start.out" 2>&1
    check_assets_used "moved tree: a program linked with its .so finds them too" \
        "$moved/lib/supermachine" "$t/vmm-args" "$t/prog-start.out"
    rm -f "$t/vmm-args"
fi

# `supermachine boot` is the VMM's (--probe): the installed CLI finds it.
real_vmm "$inst/lib/supermachine"
"${clean_env[@]}" "$inst/bin/supermachine" boot --help >"$t/boot-help.out" 2>&1
grep -q '^usage: supermachine boot ' "$t/boot-help.out" \
    && pass "the installed CLI's boot runs the installed VMM (boot --help)" \
    || { fail "the installed CLI's boot --help"; show "$t/boot-help.out"; }

# Man pages: each renders with man -l, without a warning, and man finds them
# by name under MANDIR.
for page in "$inst"/share/man/man1/*.1 "$inst"/share/man/man3/*.3 "$inst"/share/man/man8/*.8; do
    name=$(basename "$page")
    title=$(basename "$name" | sed 's/\.[0-9]$//')
    MANWIDTH=80 man -l "$page" >"$t/man.out" 2>"$t/man.err"
    MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null | grep -v '^$' >>"$t/man.err"
    if [[ -s $t/man.err ]] || ! grep -q '^NAME' "$t/man.out" || ! grep -qi "^ *$title " "$t/man.out"; then
        fail "man -l $name"
        show "$t/man.err" "$t/man.out"
    else
        pass "man -l $name renders ($(wc -l <"$t/man.out") lines, no warning)"
    fi
done
check "man -M MANDIR finds supermachine-run(1) and libsupermachine(3) by name" \
    bash -c 'man -M "$1" -w supermachine-run && man -M "$1" -w 3 libsupermachine' _ "$inst/share/man"
# Each command's page says what its --help says: its usage line is the SYNOPSIS.
drift=""
for c in $(cli_commands); do
    usage=$(build/bin/supermachine "$c" --help 2>&1 | sed -n '1s/^usage: //p' | awk '{ print $1, $2 }')
    MANWIDTH=200 man -l "$inst/share/man/man1/supermachine-$c.1" 2>/dev/null | sed -n '/^SYNOPSIS/{n;p}' \
        | grep -q "^ *$usage" || drift+=" $c"
done
[[ -z $drift ]] && pass "each command's page has its --help usage as SYNOPSIS" \
    || fail "pages whose SYNOPSIS is not their --help usage:$drift"

# Bash completion: loads in a bare bash, completes commands, flags (from
# --help), image names and VM ids, all through the installed CLI.
comp=$inst/share/bash-completion/completions/supermachine
mkdir -p "$t/images/myimage" "$t/rt/supermachine/vms/0123abcd"
: >"$t/images/myimage/state"
check "completion script loads in bash --norc" \
    bash --norc --noprofile -c 'source "$1" && complete -p supermachine' _ "$comp"
got=$(complete_line "$comp" "$inst/bin" "supermachine " | grep -v '^--' | paste -sd' ')
want=$(cli_commands | paste -sd' ')
[[ -n $got && $got == "$want" ]] && pass "completes the commands: $got" \
    || fail "command completion: got '$got', want '$want'"
got=$(complete_line "$comp" "$inst/bin" "supermachine st" | paste -sd' ')
[[ $got == "start stop" ]] && pass "completes 'st' to: $got" || fail "'supermachine st' completes to '$got'"
got=$(complete_line "$comp" "$inst/bin" "supermachine boot --k" | paste -sd' ')
[[ $got == "--kernel" ]] && pass "completes boot's flags: --k -> $got" || fail "'boot --k' completes to '$got'"
got=$(complete_line "$comp" "$inst/bin" "supermachine run -" | paste -sd' ')
[[ " $got " == *" --plain-http "* && " $got " == *" -e "* && " $got " == *" --stage "* ]] \
    && pass "completes run's flags and its exec flags: $got" || fail "'run -' completes to '$got'"
got=$(complete_line "$comp" "$inst/bin" "supermachine boot --kernel $inst/lib/supermachine/bz" | paste -sd' ')
[[ $got == "$inst/lib/supermachine/bzImage" ]] && pass "completes a file for --kernel" \
    || fail "'boot --kernel .../bz' completes to '$got'"
got=$(complete_line "$comp" "$inst/bin" "supermachine rmi my" | paste -sd' ')
[[ $got == "myimage" ]] && pass "completes image names (supermachine images): $got" \
    || fail "'rmi my' completes to '$got' (want myimage)"
got=$(complete_line "$comp" "$inst/bin" "supermachine start -p 8080:80 my" | paste -sd' ')
[[ $got == "myimage" ]] && pass "start completes its IMAGE after a flag and its value: $got" \
    || fail "'start -p 8080:80 my' completes to '$got' (want myimage)"
got=$(complete_line "$comp" "$inst/bin" "supermachine exec 01" | paste -sd' ')
[[ $got == "0123abcd" ]] && pass "completes VM ids (supermachine ps -q): $got" \
    || fail "'exec 01' completes to '$got' (want 0123abcd)"
got=$(complete_line "$comp" "$inst/bin" "supermachine cp 0123" | paste -sd' ')
[[ $got == "0123abcd:" ]] && pass "cp completes ID: $got" || fail "'cp 0123' completes to '$got'"
got=$(complete_line "$comp" "$inst/bin" "supermachine exec 0123abcd -- ca" | paste -sd' ')
[[ -z $got ]] && pass "nothing offered for the guest's ARGV after --" || fail "'exec ID -- ca' completes to '$got'"

# Uninstall: every file install wrote is gone (the staged folders may stay,
# as shared folders like bin/ do).
if make -s uninstall DESTDIR="$stage" PREFIX="$prefix" >"$t/uninstall.log" 2>&1 \
    && [[ -z $(tree_files "$stage") ]] && [[ ! -e $inst/lib/supermachine ]]; then
    pass "make uninstall removes every installed file (and PKGLIBDIR)"
else
    fail "make uninstall left files behind"
    show "$t/uninstall.log" <(tree_files "$stage")
fi

# --- 2. a Debian-like layout, where LIBDIR is not PREFIX/lib -------------------------------
echo "--- make install BUILD=(temporary) PREFIX=/usr LIBDIR=/usr/lib/$multiarch DESTDIR=..."
stage=$t/stage2
vars=(BUILD="$t/build" PREFIX=/usr LIBDIR="/usr/lib/$multiarch" DESTDIR="$stage")
if make -s -j1 install "${vars[@]}" >"$t/install2.log" 2>&1; then
    pass "make install with LIBDIR=/usr/lib/$multiarch (a build of its own)"
    pkglib=$stage/usr/lib/$multiarch/supermachine
    pc=$stage/usr/lib/$multiarch/pkgconfig/supermachine.pc
    if [[ -f $pc ]] && grep -qx "prefix=/usr" "$pc" && grep -qx "libdir=\${prefix}/lib/$multiarch" "$pc"; then
        pass "its supermachine.pc: prefix=/usr, libdir=\${prefix}/lib/$multiarch"
    else
        fail "its supermachine.pc is wrong"
        [[ -f $pc ]] && show "$pc"
    fi
    [[ -x $stage/usr/bin/supermachine && -x $pkglib/supermachine-vmm && -f $pkglib/bzImage \
       && -f $stage/usr/share/man/man1/supermachine.1 ]] \
        && pass "its tree: /usr/bin/supermachine, /usr/lib/$multiarch/supermachine/, /usr/share/man" \
        || fail "its tree: $(tree_files "$stage" | paste -sd' ')"
    fake_vmm "$pkglib" "$t/vmm-args"
    "${clean_env[@]}" "$stage/usr/bin/supermachine" start --timeout 5 >"$t/start.out" 2>&1
    check_assets_used "its CLI finds PKGLIBDIR through the compiled-in ../lib/$multiarch/supermachine" \
        "$pkglib" "$t/vmm-args" "$t/start.out"
    rm -f "$t/vmm-args"
    if build_prog "its tree through pkg-config" "$t/elsewhere/prog2" "" \
        PKG_CONFIG_PATH="$stage/usr/lib/$multiarch/pkgconfig" PKG_CONFIG_LIBDIR=/nonexistent \
        PKG_CONFIG_SYSROOT_DIR="$stage"; then
        "${clean_env[@]}" LD_LIBRARY_PATH="$stage/usr/lib/$multiarch" "$t/elsewhere/prog2" start \
            >"$t/prog-start.out" 2>&1
        check_assets_used "a program linked with its .so finds them from /usr/lib/$multiarch" \
            "$pkglib" "$t/vmm-args" "$t/prog-start.out"
    fi
    real_vmm "$pkglib"
    if make -s uninstall "${vars[@]}" >"$t/uninstall.log" 2>&1 && [[ -z $(tree_files "$stage") ]]; then
        pass "make uninstall (same variables) removes every installed file"
    else
        fail "make uninstall left files behind"
        show "$t/uninstall.log" <(tree_files "$stage")
    fi
else
    fail "make install with LIBDIR=/usr/lib/$multiarch"
    show "$t/install2.log"
fi

echo
echo "$passed passed, $failed failed"
((failed == 0))
