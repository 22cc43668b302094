#!/bin/sh
# bench/pull: the time to pull and bake the test image (scripts/test-image.sh's
# debian:test, two gzip layers, 51 MB compressed, 115 MB unpacked) from a local
# registry, against `skopeo copy` + `umoci unpack` of the same image from the
# same registry, and the baked image's size on disk against the image's
# compressed size.
#
#   bench/pull/run.sh [--no-pull] [RUNS]      (RUNS default 3: medians)
#
#   (a) skopeo copy docker://REG/debian:test oci:FRESH/x:test
#       + umoci unpack --image FRESH/x:test FRESH/bundle        per run, timed
#   (b) supermachine pull --plain-http REG/debian:test with SUPERMACHINE_IMAGES,
#       XDG_CACHE_HOME, XDG_DATA_HOME and XDG_RUNTIME_DIR in a fresh folder,
#       so nothing is cached                                    per run, timed
#   (c) sizes: the layers' compressed sizes (from the registry's manifest),
#       the unpacked tree (umoci's), a zstd squashfs of that tree made with
#       tar2sqfs as src/image/rootfs.c does (a reference), and what (b) left
#       on disk; each as a ratio to the compressed size.
#
# The registry: $SM_TEST_REGISTRY if it answers, else tests/image/registry.sh
# starts one in the temporary folder and stops it at the end. That folder is
# under $SM_BENCH_TMP (default /tmp, a tmpfs inside kvmbox): on this machine's
# ext4 /tmp, unpacking is dominated by the disk (plain `tar xzf` of the layer
# took 6.6 s wall for 0.6 s user + 5.7 s sys under load).
#
# (b) bakes a snapshot, so it needs a /dev/kvm that runs standard guests: where
# there is none (PVM, see `supermachine doctor`), the script runs itself
# inside tools/kvmbox, registry included (`tools/kvmbox -- bench/pull/run.sh`
# works too), where everything is emulated: compare (a) and (b) only side by
# side from the same run. When `supermachine pull` does not exist (yet), or
# with --no-pull, it skips (b) and runs (a) and (c) where it is.
set -eu
self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$0")/../.."
pull=1
if [ "${1:-}" = "--no-pull" ]; then
    pull=0
    shift
fi
runs=${1:-3}
case $runs in
    '' | *[!0-9]* | 0) echo "usage: bench/pull/run.sh [--no-pull] [RUNS]" >&2; exit 2 ;;
esac
sm=build/bin/supermachine

if [ -z "${KVMBOX:-}" ]; then   # inside the box the tree and the cache are read-only
    scripts/test-image.sh --print-dir >/dev/null
    [ $pull = 1 ] && [ -z "${SM_BENCH_NO_BUILD:-}" ] &&
        make -s build/bin/supermachine build/bin/supermachine-vmm build/guest/initramfs.cpio
fi
for cmd in skopeo umoci tar2sqfs docker-registry curl; do
    command -v $cmd >/dev/null || { echo "bench/pull: $cmd is missing (scripts/deps.sh)" >&2; exit 1; }
done
if [ $pull = 1 ] && ! "$sm" pull --help >/dev/null 2>&1; then
    echo "bench/pull: supermachine pull not available ($sm pull --help failed): skipping (b)"
    pull=0
fi
if [ $pull = 1 ] && ! "$sm" doctor --quiet; then
    if [ -n "${KVMBOX:-}" ]; then
        echo "bench/pull: no usable KVM even inside kvmbox:" >&2
        "$sm" doctor >&2 || true
        exit 1
    fi
    echo "bench/pull: this host cannot run guests directly; running inside tools/kvmbox" >&2
    exec tools/kvmbox --mem 4096 -- "$self" "$@"
fi

export TMPDIR="${TMPDIR:-/tmp}"   # skopeo's default, /var/tmp, is read-only in the box
tmp=$(mktemp -d "${SM_BENCH_TMP:-/tmp}/sm-bench-pull.XXXXXX")
registry_dir=
cleanup() {
    [ -n "$registry_dir" ] && tests/image/registry.sh stop "$registry_dir"
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

reg=${SM_TEST_REGISTRY:-}
if [ -z "$reg" ] || [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$reg/v2/")" != 200 ]; then
    [ -n "$reg" ] && echo "bench/pull: SM_TEST_REGISTRY=$reg does not answer; starting a registry here"
    registry_dir=$tmp/registry
    tests/image/registry.sh start "$registry_dir"
    reg=$(tests/image/registry.sh env "$registry_dir" | sed -n 's/^SM_TEST_REGISTRY=//p')
fi
image=$reg/debian:test
echo "bench/pull: $image, $runs runs each${KVMBOX:+; inside kvmbox (emulated): compare side by side only}"

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

median() {   # of the arguments
    n=$#
    printf '%s\n' "$@" | sort -n | sed -n "$(( (n + 1) / 2 ))p"
}

# Runs a timed command with its output in a log; on failure shows the log.
timed() {   # LOG CMD...: prints the milliseconds it took
    log=$1
    shift
    t0=$(now_ms)
    if ! "$@" >"$log" 2>&1; then
        echo "bench/pull: failed: $*" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
    echo $(( $(now_ms) - t0 ))
}

rootless=
[ "$(id -u)" = 0 ] || rootless=--rootless

# (a) skopeo + umoci, each run into a fresh folder (the last one is kept for (c)).
copy_ms=
unpack_ms=
total_a=
i=0
while [ $i -lt "$runs" ]; do
    i=$((i + 1))
    rm -rf "$tmp/a"
    mkdir "$tmp/a"
    c=$(timed "$tmp/a.log" skopeo copy --quiet --src-tls-verify=false "docker://$image" "oci:$tmp/a/x:test")
    u=$(timed "$tmp/a.log" umoci unpack $rootless --image "$tmp/a/x:test" "$tmp/a/bundle")
    copy_ms="$copy_ms $c"
    unpack_ms="$unpack_ms $u"
    total_a="$total_a $((c + u))"
done
# shellcheck disable=SC2086
a_ms=$(median $total_a)
# shellcheck disable=SC2086
echo "(a) skopeo copy + umoci unpack: median $a_ms ms (copy $(median $copy_ms) ms," \
    "unpack $(median $unpack_ms) ms; totals:$total_a)"

# (b) supermachine pull, each run with nothing cached.
b_ms=
if [ $pull = 1 ]; then
    total_b=
    i=0
    while [ $i -lt "$runs" ]; do
        i=$((i + 1))
        rm -rf "$tmp/b"
        mkdir -p "$tmp/b/images" "$tmp/b/cache" "$tmp/b/data"
        mkdir -m 700 "$tmp/b/rt"
        t=$(timed "$tmp/b.log" env SUPERMACHINE_IMAGES="$tmp/b/images" XDG_CACHE_HOME="$tmp/b/cache" \
            XDG_DATA_HOME="$tmp/b/data" XDG_RUNTIME_DIR="$tmp/b/rt" \
            "$sm" pull --plain-http "$image")
        total_b="$total_b $t"
    done
    # shellcheck disable=SC2086
    b_ms=$(median $total_b)
    echo "(b) supermachine pull (pull + bake): median $b_ms ms (totals:$total_b)"
    echo "    ratio (b)/(a): $(awk -v b="$b_ms" -v a="$a_ms" 'BEGIN { printf "%.2f", b / a }')"
fi

# (c) sizes.
bytes() { du -s -B1 "$@" | cut -f1; }
apparent() { du -s -B1 --apparent-size "$@" | cut -f1; }
mib() { awk -v n="$1" 'BEGIN { printf "%.1f MiB", n / 1048576 }'; }
ratio() { awk -v n="$1" -v d="$2" 'BEGIN { printf "%.2f", n / d }'; }

manifest=$(skopeo inspect --raw --tls-verify=false "docker://$image")
compressed=$(printf '%s' "$manifest" | sed 's/.*"layers":\[//' | grep -o '"size":[0-9]*' |
    cut -d: -f2 | awk '{ s += $1 } END { print s + 0 }')
[ "$compressed" -gt 0 ] || { echo "bench/pull: no layer sizes in the manifest: $manifest" >&2; exit 1; }
tar --numeric-owner --xattrs -C "$tmp/a/bundle/rootfs" -cf - . |
    tar2sqfs --quiet --no-skip --force --compressor zstd \
        --defaults uid=0,gid=0,mode=0755,mtime=0 "$tmp/reference.sqfs"
unpacked=$(apparent "$tmp/a/bundle/rootfs")
sqfs=$(stat -c %s "$tmp/reference.sqfs")
echo "(c) compressed layers (manifest):   $(mib "$compressed")"
echo "    unpacked tree (umoci, apparent): $(mib "$unpacked")  x$(ratio "$unpacked" "$compressed")"
echo "    zstd squashfs of it (tar2sqfs):  $(mib "$sqfs")  x$(ratio "$sqfs" "$compressed")"
if [ $pull = 1 ]; then
    for d in images cache data; do
        [ -n "$(ls -A "$tmp/b/$d")" ] || continue
        used=$(bytes "$tmp/b/$d")
        echo "    supermachine's $d dir (allocated):   $(mib "$used")  x$(ratio "$used" "$compressed")" \
            "(apparent $(mib "$(apparent "$tmp/b/$d")"))"
    done
fi
