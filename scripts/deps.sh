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
    # the guest kernel (scripts/build-kernel.sh)
    linux-source-6.1 bc flex bison libelf-dev libssl-dev cpio xz-utils
    # tools/kvmbox, the emulated KVM host (flock comes from util-linux and
    # perl from perl-base: both essential, always present)
    qemu-system-x86 busybox-static
    # later issues: images, registries, seccomp
    zlib1g-dev libcurl4-openssl-dev libarchive-dev libzstd-dev libjson-c-dev libseccomp-dev
    # OCI images (issue 6): tar2sqfs turns a flattened root into the
    # read-only squashfs the product bakes
    squashfs-tools-ng
    # ... and its tests and bench/pull: the Debian test image
    # (scripts/test-image.sh: debootstrap, umoci), the local registries
    # (tests/image/registry.sh: docker-registry, htpasswd from apache2-utils,
    # a self-signed CA with openssl) and skopeo to push to and copy from them
    debootstrap docker-registry skopeo umoci apache2-utils openssl ca-certificates
)

installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

missing=()
for p in "${packages[@]}"; do
    installed "$p" || missing+=("$p")
done
((${#missing[@]} == 0)) && exit 0

cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if ((EUID != 0)); then
    echo "deps: missing packages: ${missing[*]}" >&2
    echo "deps: run as root: apt-get update && $cmd" >&2
    exit 1
fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get update -qq || ! $cmd; then
    echo "deps: apt failed; to retry by hand: apt-get update && $cmd" >&2
    exit 1
fi
