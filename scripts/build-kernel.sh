#!/usr/bin/env bash
# Builds the guest kernel from Debian's linux-source-6.1 with our config
# fragment, caching the bzImage outside the build folder, keyed by the hash of
# the fragment and this script, so a machine builds it once.
#   usage: scripts/build-kernel.sh OUT_BZIMAGE
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: build-kernel.sh OUT_BZIMAGE}
fragment=$here/guest/kernel/supermachine.config
src_tar=/usr/src/linux-source-6.1.tar.xz
cache=${SUPERMACHINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/supermachine}
key=$(cat "$fragment" "$0" | sha256sum | cut -c1-16)
cached=$cache/kernel/bzImage-$key

mkdir -p "$cache/kernel"
# One build at a time per machine: a second caller waits, then finds the cache.
exec 9>"$cache/kernel/.lock"
flock 9
if [ ! -f "$cached" ]; then
    [ -f "$src_tar" ] || { echo "build-kernel: $src_tar is missing; run scripts/deps.sh" >&2; exit 1; }
    work=$cache/kernel/work-$key
    rm -rf "$work"; mkdir -p "$work"
    echo "build-kernel: building the guest kernel (several minutes, once per machine) in $work" >&2
    tar -xf "$src_tar" -C "$work"
    ksrc=$work/linux-source-6.1
    (
        cd "$ksrc"
        make -s tinyconfig
        scripts/kconfig/merge_config.sh -m .config "$fragment" >/dev/null
        make -s olddefconfig
        # Every line of the fragment must survive olddefconfig; a silently
        # dropped option is a guest that boots without a device.
        missing=0
        while IFS= read -r line; do
            case "$line" in CONFIG_*=y) grep -qx "$line" .config || { echo "build-kernel: $line did not stick" >&2; missing=1; } ;; esac
        done < "$fragment"
        [ $missing = 0 ] || exit 1
        make -s -j"$(nproc)" bzImage
    ) >"$work/build.log" 2>&1 || { tail -30 "$work/build.log" >&2; echo "build-kernel: failed, log in $work/build.log" >&2; exit 1; }
    cp "$ksrc/arch/x86/boot/bzImage" "$cached.tmp"
    cp "$ksrc/.config" "$cache/kernel/config-$key"
    mv "$cached.tmp" "$cached"
    rm -rf "$work"
fi
mkdir -p "$(dirname "$out")"
cp "$cached" "$out"
