#!/usr/bin/env bash
# Builds, once per machine, the OCI images that issue 6's tests and bench/pull
# use: a real minimal Debian that no one here wrote, packed as an OCI image
# layout, plus a tiny image for another platform.
#
#   scripts/test-image.sh               build if needed, then describe it
#   scripts/test-image.sh --print-dir   build if needed, print only its folder
#   scripts/test-image.sh --check-tree ROOT
#                                       check a flattened debian:test at ROOT
#   scripts/test-image.sh --print-check print that check as a POSIX sh script
#                                       (dash, coreutils) for / in a guest:
#     supermachine run REF -- sh -c "$(scripts/test-image.sh --print-check)"
#   The check prints "sm-test tree ok" or one "sm-test tree: ..." line per
#   mismatch (exit 1). It checks the user.sm-test xattr only where getfattr
#   exists (not in the image itself).
#
# Needs root (debootstrap) and Debian's archive (SM_DEBIAN_MIRROR, default
# http://deb.debian.org/debian); the first build took 27-105 s here, mostly
# debootstrap's downloads.
#
# Cache: ${XDG_CACHE_HOME:-~/.cache}/supermachine/test-image/KEY, where KEY is
# the first 16 hex digits of this script's sha256: editing the script makes a
# new image, an unchanged script reuses the built one (a read-only cache, as
# inside tools/kvmbox, is fine once built). Concurrent runs wait on a flock;
# the build happens in a temporary folder next to it and is renamed into place
# at the end, so KEY either is complete or does not exist. A build removes
# the other KEYs (images of older versions of this script).
#
# What KEY/ holds: two OCI image layouts (skopeo `oci:KEY/debian:test`,
# umoci `--image KEY/debian:test`):
#
#   layout       tag             what the tag's descriptor points at
#   -----------  --------------  ---------------------------------------------
#   debian       test            OCI manifest, linux/amd64, the two layers below
#   debian       zstd            OCI manifest, debian:test with its layers
#                                recompressed with zstd (tar+zstd media type;
#                                same config, same diff_ids)
#   debian       multi           OCI index: linux/arm64 -> the "other" manifest,
#                                linux/amd64 -> the "test" manifest (a client
#                                must pick amd64 out of it)
#   other        arm64           OCI index with one entry, linux/arm64 (a client
#                                on amd64 must refuse it: no linux/amd64)
#   other        arm64-manifest  OCI manifest whose config says arm64/linux
#                                (a client must refuse it too)
#
# and KEY/debian-test.docker.tar (117 MB): debian:test as `docker save`
# writes it, for `docker-archive:PATH` inputs (skopeo's docker-archive:):
# manifest.json [{"Config":"HEX.json","RepoTags":["docker.io/library/
# debian:test"],"Layers":["HEX.tar","HEX.tar"]}] with the layers as
# uncompressed tars named by their diff_id, the legacy ID/layer.tar entries
# being symlinks to them, and a `repositories` file.
#
# debian:test's layers (gzip, in this order):
#
#   layer 1  `debootstrap --variant=minbase bookworm` (Debian 12, apt, dpkg,
#            bash, coreutils; no python: it would add ~18 MB to ~115 MB), with
#            /var/cache/apt/archives/*.deb, /var/cache/apt/*.bin,
#            /var/lib/apt/lists/*, /etc/resolv.conf and /etc/hostname removed
#            (the runtime provides the last two); debootstrap's /dev nodes are
#            kept (/dev/null: char 1,3 ...). Plus these fixtures (root:root,
#            files 0644, folders 0755 unless said otherwise):
#              /opt/sm-test/a                 "a\n"
#              /opt/sm-test/b                 "b\n"
#              /opt/sm-test/sub/d             "d\n"
#              /opt/sm-keep/owned             "owned\n", uid 1234 gid 5678, 0640
#              /opt/sm-keep/hardlink          hard link to owned (same inode;
#                                             by name order the tar holds
#                                             hardlink as the file and owned
#                                             as the link entry)
#              /opt/sm-keep/link              symlink -> owned
#              /opt/sm-keep/abs-link          symlink -> /etc/debian_version
#              /opt/sm-keep/fifo              named pipe, 0600
#              /opt/sm-keep/replaced          "layer 1\n"
#              /opt/sm-keep/was-dir/x         "x\n" (was-dir is a folder here)
#              /opt/sm-keep/was-file          "was a file\n"
#   layer 2  hand-made tar, members in exactly this order:
#              etc/.wh.motd                   whiteout of a file
#              etc/sm-test-layer              "supermachine test image, layer 2\n"
#              opt/sm-keep/replaced           "layer 2\n" (overwrites)
#              opt/sm-keep/was-dir            "now a file\n" (file over a folder)
#              opt/sm-keep/was-file/          folder over a file, 0755
#              opt/sm-keep/was-file/inside    "inside\n"
#              opt/sm-test/                   folder, 0755
#              opt/sm-test/c                  "c\n"
#              opt/sm-test/.wh..wh..opq       opaque marker, deliberately AFTER c:
#                                             it hides layer 1's content only
#              usr/share/doc/.wh.dpkg         whiteout of a folder and its tree
#              opt/sm-keep/xattr              "xattr\n", pax header
#                                             SCHILY.xattr.user.sm-test=layer2
#
# So the flattened debian:test differs from the debootstrap tree by exactly:
#   absent:  /etc/motd, /usr/share/doc/dpkg (and all below it),
#            /opt/sm-test/a, /opt/sm-test/b, /opt/sm-test/sub (and sub/d),
#            /opt/sm-keep/was-dir/x
#   present: /etc/sm-test-layer, /opt/sm-test/c (the only entry of
#            /opt/sm-test), the whole of /opt/sm-keep as listed above with
#            replaced = "layer 2\n", was-dir a file "now a file\n", was-file a
#            folder holding "inside", and xattr carrying user.sm-test=layer2;
#   and no ".wh." name anywhere in the result. `umoci unpack` of debian:test
#   gives exactly this tree (115 MB apparent size, about 6690 entries).
# Every other Debian file is untouched: e.g. /etc/debian_version (12.x),
# /usr/bin/apt-get (`apt-get --version` prints "apt 2.6..."), /bin -> usr/bin.
#
# debian:test's config: Env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:
# /usr/bin:/sbin:/bin and SM_TEST=debian-test, WorkingDir /opt/sm-keep,
# no Entrypoint, Cmd ["/bin/sh", "-c", "echo \"sm-test $SM_TEST in $(pwd)\""]
# (so `run IMAGE` with no command prints "sm-test debian-test in /opt/sm-keep"),
# User unset (root).
#
# other:arm64's only layer holds /hello "sm-test arm64 image\n".
set -euo pipefail

usage() {
    echo "usage: scripts/test-image.sh [--print-dir | --check-tree ROOT | --print-check]" >&2
    exit 2
}

# The expected tree of a flattened debian:test (see the header), as a POSIX sh
# script that runs with the image's own tools; $1 is the root (default /).
# shellcheck disable=SC2016  # expanded by the script it becomes, not here
check_script='r=${1:-}; r=${r%/}; bad=0
no() { echo "sm-test tree: $*"; bad=1; }
absent() { for p; do { [ -e "$r$p" ] || [ -L "$r$p" ]; } && no "$p should not exist"; done; }
content() { [ -f "$r$1" ] && [ ! -L "$r$1" ] && [ "$(cat "$r$1")" = "$2" ] || no "$1 should be a file holding: $2"; }
meta() { [ "$(stat -c "%u:%g %a %h" "$r$1" 2>/dev/null)" = "$2" ] || no "$1: uid:gid mode links should be $2, not $(stat -c "%u:%g %a %h" "$r$1" 2>&1)"; }
points() { [ -L "$r$1" ] && [ "$(readlink "$r$1")" = "$2" ] || no "$1 should be a symlink to $2"; }
absent /etc/motd /usr/share/doc/dpkg /opt/sm-test/a /opt/sm-test/b /opt/sm-test/sub /opt/sm-keep/was-dir/x
content /etc/sm-test-layer "supermachine test image, layer 2"
content /opt/sm-test/c c
[ "$(ls -A "$r/opt/sm-test" 2>&1)" = c ] ||
    no "/opt/sm-test should hold only c, not: $(ls -A "$r/opt/sm-test" 2>&1 | tr "\n" " ")"
content /opt/sm-keep/owned owned
meta /opt/sm-keep/owned "1234:5678 640 2"
[ "$(stat -c %i "$r/opt/sm-keep/owned" 2>&1)" = "$(stat -c %i "$r/opt/sm-keep/hardlink" 2>&1)" ] ||
    no "/opt/sm-keep/hardlink should be the same inode as owned"
points /opt/sm-keep/link owned
points /opt/sm-keep/abs-link /etc/debian_version
[ -p "$r/opt/sm-keep/fifo" ] && meta /opt/sm-keep/fifo "0:0 600 1" || no "/opt/sm-keep/fifo should be a named pipe"
content /opt/sm-keep/replaced "layer 2"
content /opt/sm-keep/was-dir "now a file"
[ -d "$r/opt/sm-keep/was-file" ] && [ ! -L "$r/opt/sm-keep/was-file" ] || no "/opt/sm-keep/was-file should be a folder"
content /opt/sm-keep/was-file/inside inside
content /opt/sm-keep/xattr xattr
if command -v getfattr >/dev/null; then
    [ "$(getfattr --only-values -n user.sm-test "$r/opt/sm-keep/xattr" 2>&1)" = layer2 ] ||
        no "/opt/sm-keep/xattr should carry user.sm-test=layer2"
fi
case $(cat "$r/etc/debian_version" 2>&1) in 12.*) ;; *) no "/etc/debian_version should say 12.x" ;; esac
points /bin usr/bin
[ -x "$r/usr/bin/apt-get" ] || no "/usr/bin/apt-get should exist"
wh=$(find "$r/" -xdev -name ".wh.*" 2>/dev/null | head -n 3)
[ -z "$wh" ] || no "whiteout files left: $wh"
[ $bad = 0 ] && echo "sm-test tree ok"
exit $bad'

print_dir=0
case ${1:-} in
    --print-dir) print_dir=1 ;;
    --check-tree)
        [[ -n ${2:-} ]] || usage
        exec sh -c "$check_script" check-tree "$2"
        ;;
    --print-check)
        printf '%s\n' "$check_script"
        exit 0
        ;;
    "") ;;
    *) usage ;;
esac

self=$(readlink -f "$0")
key=$(sha256sum "$self" | cut -c1-16)
base=${XDG_CACHE_HOME:-$HOME/.cache}/supermachine/test-image
dir=$base/$key
mirror=${SM_DEBIAN_MIRROR:-http://deb.debian.org/debian}

log() { echo "test-image: $*" >&2; }
die() { log "$*"; exit 1; }

# Prints "DIGEST SIZE" of the one manifest in the index.json of a layout
# that umoci wrote with a single tag (umoci writes mediaType, digest, size in
# that order on one line); fails if there is not exactly one.
only_descriptor() {
    local index=$1/index.json found
    found=$(grep -o '"digest":"sha256:[0-9a-f]\{64\}","size":[0-9]\+' "$index" |
        sed 's/"digest":"\([^"]*\)","size":\(.*\)/\1 \2/')
    [[ $(printf '%s\n' "$found" | wc -l) == 1 && -n $found ]] ||
        die "expected one manifest in $index, found: $found"
    printf '%s\n' "$found"
}

# Writes a JSON document as a blob of a layout; prints "DIGEST SIZE".
put_blob() {
    local layout=$1 json=$2 hex
    hex=$(printf '%s' "$json" | sha256sum | cut -c1-64)
    printf '%s' "$json" >"$layout/blobs/sha256/$hex"
    printf 'sha256:%s %s\n' "$hex" "${#json}"
}

# A descriptor of an image manifest: DIGEST SIZE [ARCH] [REF_NAME].
manifest_desc() {
    local out='{"mediaType":"application/vnd.oci.image.manifest.v1+json"'
    out+=',"digest":"'$1'","size":'$2
    [[ -n ${3:-} ]] && out+=',"platform":{"architecture":"'$3'","os":"linux"}'
    [[ -n ${4:-} ]] && out+=',"annotations":{"org.opencontainers.image.ref.name":"'$4'"}'
    printf '%s}' "$out"
}

index_desc() {
    printf '{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"%s","size":%s,%s}' \
        "$1" "$2" '"annotations":{"org.opencontainers.image.ref.name":"'"$3"'"}'
}

index_json() {
    local IFS=,
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}' "$*"
}

make_rootfs() {
    local root=$1
    log "debootstrap --variant=minbase bookworm from $mirror (log: $tmp/debootstrap.log)"
    if ! debootstrap --variant=minbase bookworm "$root" "$mirror" >"$tmp/debootstrap.log" 2>&1; then
        tail -n 20 "$tmp/debootstrap.log" >&2
        die "debootstrap failed"
    fi
    rm -f "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin
    rm -f "$root"/etc/resolv.conf "$root"/etc/hostname
    find "$root/var/lib/apt/lists" -mindepth 1 -delete
    [[ -f $root/etc/motd && -d $root/usr/share/doc/dpkg ]] ||
        die "debootstrap's tree lacks /etc/motd or /usr/share/doc/dpkg, which layer 2 deletes"

    mkdir -p "$root/opt/sm-test/sub" "$root/opt/sm-keep/was-dir"
    printf 'a\n' >"$root/opt/sm-test/a"
    printf 'b\n' >"$root/opt/sm-test/b"
    printf 'd\n' >"$root/opt/sm-test/sub/d"
    local keep=$root/opt/sm-keep
    printf 'owned\n' >"$keep/owned"
    chown 1234:5678 "$keep/owned"
    chmod 0640 "$keep/owned"
    ln "$keep/owned" "$keep/hardlink"
    ln -s owned "$keep/link"
    ln -s /etc/debian_version "$keep/abs-link"
    mkfifo -m 0600 "$keep/fifo"
    printf 'layer 1\n' >"$keep/replaced"
    printf 'x\n' >"$keep/was-dir/x"
    printf 'was a file\n' >"$keep/was-file"
    chmod -R go-w,a+rX "$root/opt/sm-test" "$keep/was-dir"
}

# GNU tar in pax format without atime/ctime records, numeric owners.
tar_layer() {
    tar --format=posix --pax-option=delete=atime,delete=ctime --numeric-owner "$@"
}

make_layer1() {
    local root=$1 out=$2
    # Names without a leading "./", as docker and umoci write them.
    (cd "$root" && ls -A) >"$tmp/top-level"
    tar_layer -cf "$out" -C "$root" --sort=name --files-from="$tmp/top-level"
}

make_layer2() {
    local stage=$tmp/layer2 out=$1
    mkdir -p "$stage/etc" "$stage/opt/sm-keep/was-file" "$stage/opt/sm-test" "$stage/usr/share/doc"
    : >"$stage/etc/.wh.motd"
    printf 'supermachine test image, layer 2\n' >"$stage/etc/sm-test-layer"
    printf 'layer 2\n' >"$stage/opt/sm-keep/replaced"
    printf 'now a file\n' >"$stage/opt/sm-keep/was-dir"
    printf 'inside\n' >"$stage/opt/sm-keep/was-file/inside"
    printf 'c\n' >"$stage/opt/sm-test/c"
    : >"$stage/opt/sm-test/.wh..wh..opq"
    : >"$stage/usr/share/doc/.wh.dpkg"
    printf 'xattr\n' >"$stage/opt/sm-keep/xattr"
    chmod -R go-w,a+rX "$stage"
    tar_layer -cf "$out" -C "$stage" --owner=0 --group=0 --no-recursion \
        etc/.wh.motd etc/sm-test-layer \
        opt/sm-keep/replaced opt/sm-keep/was-dir opt/sm-keep/was-file opt/sm-keep/was-file/inside \
        opt/sm-test opt/sm-test/c opt/sm-test/.wh..wh..opq \
        usr/share/doc/.wh.dpkg
    tar_layer -rf "$out" -C "$stage" --owner=0 --group=0 \
        --pax-option='SCHILY.xattr.user.sm-test:=layer2' opt/sm-keep/xattr
}

make_debian() {
    local layout=$1
    make_rootfs "$tmp/rootfs"
    make_layer1 "$tmp/rootfs" "$tmp/layer1.tar"
    make_layer2 "$tmp/layer2.tar"
    log "packing debian:test with umoci"
    umoci init --layout "$layout"
    umoci new --image "$layout:test"
    # shellcheck disable=SC2016  # $SM_TEST and $(pwd) are for the guest's shell
    umoci config --image "$layout:test" --no-history --architecture amd64 --os linux \
        --author "supermachine scripts/test-image.sh" \
        --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --config.env SM_TEST=debian-test --config.workingdir /opt/sm-keep \
        --config.cmd /bin/sh --config.cmd -c --config.cmd 'echo "sm-test $SM_TEST in $(pwd)"'
    umoci raw add-layer --image "$layout:test" \
        --history.created_by "debootstrap --variant=minbase bookworm + /opt fixtures" "$tmp/layer1.tar"
    umoci raw add-layer --image "$layout:test" \
        --history.created_by "whiteouts, an opaque folder, replacements, an xattr" "$tmp/layer2.tar"
    umoci gc --layout "$layout"
}

make_arm64() {
    local layout=$1
    mkdir -p "$tmp/arm64"
    printf 'sm-test arm64 image\n' >"$tmp/arm64/hello"
    tar_layer -cf "$tmp/arm64.tar" -C "$tmp/arm64" --owner=0 --group=0 hello
    umoci init --layout "$layout"
    umoci new --image "$layout:arm64-manifest"
    umoci config --image "$layout:arm64-manifest" --no-history --architecture arm64 --os linux \
        --config.cmd /hello
    umoci raw add-layer --image "$layout:arm64-manifest" --history.created_by "/hello" "$tmp/arm64.tar"
    umoci gc --layout "$layout"
}

# debian:test with zstd layers, in a layout of its own (skopeo recompresses
# only uncompressed layers: hence the detour through an uncompressed copy).
make_zstd() {
    local debian=$1 layout=$2
    log "recompressing debian:test's layers with zstd"
    skopeo copy --quiet --dest-decompress "oci:$debian:test" "dir:$tmp/uncompressed"
    skopeo copy --quiet --dest-compress-format zstd "dir:$tmp/uncompressed" "oci:$layout:zstd"
    rm -rf "$tmp/uncompressed"
}

# Adds the hand-written indexes: debian:multi, other:arm64 (see the header),
# and merges the zstd layout into debian's.
write_indexes() {
    local debian=$1 other=$2 zstd=$3 amd arm zst multi only
    amd=$(only_descriptor "$debian")
    arm=$(only_descriptor "$other")
    zst=$(only_descriptor "$zstd")
    cp -n "$other"/blobs/sha256/* "$zstd"/blobs/sha256/* "$debian/blobs/sha256/"
    rm -rf "$zstd"
    # shellcheck disable=SC2086  # "DIGEST SIZE" split on purpose
    multi=$(put_blob "$debian" "$(index_json "$(manifest_desc $arm arm64)" "$(manifest_desc $amd amd64)")")
    # shellcheck disable=SC2086
    only=$(put_blob "$other" "$(index_json "$(manifest_desc $arm arm64)")")
    # shellcheck disable=SC2086
    index_json "$(manifest_desc $amd "" test)" "$(manifest_desc $zst "" zstd)" \
        "$(index_desc $multi multi)" >"$debian/index.json"
    # shellcheck disable=SC2086
    index_json "$(manifest_desc $arm "" arm64-manifest)" "$(index_desc $only arm64)" >"$other/index.json"
}

build() {
    ((EUID == 0)) || die "building the test image needs root (debootstrap); run as root once, later runs reuse $base"
    local cmd
    for cmd in debootstrap umoci skopeo tar sha256sum flock; do
        command -v "$cmd" >/dev/null || die "$cmd is missing: run scripts/deps.sh"
    done
    local start=$SECONDS
    tmp=$(mktemp -d "$base/tmp.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    mkdir "$tmp/out"
    make_debian "$tmp/out/debian"
    make_arm64 "$tmp/out/other"
    make_zstd "$tmp/out/debian" "$tmp/out/zstd"
    write_indexes "$tmp/out/debian" "$tmp/out/other" "$tmp/out/zstd"
    log "writing debian:test as a docker-archive"
    skopeo copy --quiet "oci:$tmp/out/debian:test" \
        "docker-archive:$tmp/out/debian-test.docker.tar:debian:test"
    chmod -R a+rX "$tmp/out"
    mv "$tmp/out" "$dir"
    rm -rf "$tmp"
    trap - EXIT
    # Older versions of this script's images, and builds killed midway: we
    # hold the lock, so no build is running and nothing else should use them.
    find "$base" -mindepth 1 -maxdepth 1 -type d ! -name "$key" -exec rm -rf {} +
    log "built $dir in $((SECONDS - start)) s"
}

if [[ ! -d $dir ]]; then
    if [[ -n ${KVMBOX:-} ]]; then   # its root, and so the cache, is read-only
        die "the test image is not built: run scripts/test-image.sh outside tools/kvmbox first"
    fi
    mkdir -p "$base"
    exec 9>"$base/.lock"
    flock 9
    [[ -d $dir ]] || build
    exec 9>&-
fi

if ((print_dir)); then
    printf '%s\n' "$dir"
    exit 0
fi
echo "test image: $dir"
echo "  oci:$dir/debian:test          linux/amd64, 2 layers"
echo "  oci:$dir/debian:zstd          the same with zstd layers"
echo "  oci:$dir/debian:multi         index: linux/arm64 + linux/amd64"
echo "  oci:$dir/other:arm64          index: linux/arm64 only"
echo "  oci:$dir/other:arm64-manifest manifest, config says arm64"
echo "  docker-archive:$dir/debian-test.docker.tar  debian:test as docker save writes it"
echo "  size on disk: $(du -sh "$dir" | cut -f1)"
