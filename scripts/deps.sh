#!/usr/bin/env bash
# Installs the Debian packages supermachine needs, idempotently: when every one
# is already installed it does nothing (no apt at all); otherwise it runs
# `apt-get update` once and installs only the missing ones. When it cannot
# (not root, or apt fails) it prints the exact command to run and exits 1.
#
# What tools/kvmbox needs beyond packages (the outer kernel, fetched with
# `apt-get download` from Debian's archive) it fetches and caches itself.
set -euo pipefail

packages=(
    # build and test
    build-essential clang libclang-rt-14-dev musl-tools libcmocka-dev
    # man pages from --help (make man, make install); the install tests
    # (tests/install/run.sh) read them with man and build through pkg-config
    help2man man-db pkgconf
    # the guest kernel (scripts/build-kernel.sh)
    linux-source-6.1 bc flex bison libelf-dev libssl-dev cpio xz-utils
    # tools/kvmbox, the emulated KVM host (flock comes from util-linux and
    # perl from perl-base: both essential, always present); QEMU itself comes
    # from bookworm-backports, below
    busybox-static
    # later issues: images, registries, seccomp
    zlib1g-dev libcurl4-openssl-dev libarchive-dev libzstd-dev libjson-c-dev libseccomp-dev libslirp-dev
    # OCI images (issue 6): tar2sqfs turns a flattened root into the
    # read-only squashfs the product bakes
    squashfs-tools-ng
    # ... and its tests and bench/pull: the Debian test image
    # (scripts/test-image.sh: debootstrap, umoci), the local registries
    # (tests/image/registry.sh: docker-registry, htpasswd from apache2-utils,
    # a self-signed CA with openssl) and skopeo to push to and copy from them
    debootstrap docker-registry skopeo umoci apache2-utils openssl ca-certificates
    # bench/soak/qemu-streams.sh: a relay from a Unix socket to a guest's vsock port
    socat
    # volumes: mkfs.ext4 makes a named volume's file system (sm_volume_create)
    e2fsprogs
    # the Python binding (make python, bindings/python): its headers,
    # `pip install bindings/python` (setuptools) and its tests (pytest)
    python3-dev python3-setuptools python3-pytest
    # the Debian packages (make deb: dpkg-buildpackage, dh, lintian)
    dpkg-dev debhelper lintian
    # the OCI runtime's engine tests and bench/runtime (tests/vm/test_engines.sh):
    # podman (pulls conmon and containers-common), containerd (pulls runc; ctr
    # comes with it) and crun, the runtime we compare with, which needs no VM.
    # Nothing for podman's networks: the tests run as root with --network none,
    # on vfs storage, so neither slirp4netns, fuse-overlayfs, uidmap nor
    # netavark is needed (they are podman's recommends, left out).
    podman containerd crun
)

installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

# tools/kvmbox's QEMU: 10.x from bookworm-backports. Measured on these
# machines (2026-12-03), bookworm's 7.2 stalled the box under restores in 2 of
# 2 runs of bench/restore, where 10.0.2 finished every run.
backports_list=/etc/apt/sources.list.d/supermachine-bookworm-backports.sources
qemu_min=1:10.0

qemu_ok() {
    local v
    v=$(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null) || return 1
    installed qemu-system-x86 && dpkg --compare-versions "$v" ge "$qemu_min"
}

# Adds bookworm-backports beside the machine's own Debian source (same mirror
# and keyring); backports are never preferred over bookworm unless asked for.
add_backports() {
    [[ -f $backports_list ]] && return 0
    local uri
    uri=$(grep -hoE '^URIs: *[^ ]+/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | awk '{print $2}')
    [[ -n $uri ]] || uri=$(grep -hoE '^deb +[^ ]+/debian/? +bookworm ' /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $2}')
    [[ -n $uri ]] || uri=http://deb.debian.org/debian
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$uri" >"$backports_list"
}

missing=()
for p in "${packages[@]}"; do
    installed "$p" || missing+=("$p")
done
need_qemu=0
qemu_ok || need_qemu=1
((${#missing[@]} == 0 && need_qemu == 0)) && exit 0

cmd="apt-get install -y --no-install-recommends ${missing[*]}"
qemu_cmd="apt-get install -y --no-install-recommends -t bookworm-backports qemu-system-x86"
if ((EUID != 0)); then
    ((${#missing[@]})) && echo "deps: missing packages: ${missing[*]}" >&2
    ((need_qemu)) && echo "deps: kvmbox needs qemu-system-x86 >= ${qemu_min#1:} from bookworm-backports" >&2
    echo "deps: run as root: scripts/deps.sh" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
((need_qemu)) && add_backports
if ! apt-get update -qq; then
    echo "deps: apt-get update failed" >&2
    exit 1
fi
if ((${#missing[@]})); then
    echo "deps: installing ${missing[*]}" >&2
    $cmd || { echo "deps: apt failed; to retry by hand: apt-get update && $cmd" >&2; exit 1; }
fi
if ((need_qemu)); then
    echo "deps: installing qemu-system-x86 from bookworm-backports" >&2
    $qemu_cmd || { echo "deps: apt failed; to retry by hand: apt-get update && $qemu_cmd" >&2; exit 1; }
fi
