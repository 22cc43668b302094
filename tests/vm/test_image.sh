# tests/vm/test_image.sh: OCI images end to end (issue 6), sourced by
# run-all.sh. A Debian image made by debootstrap (scripts/test-image.sh, built
# on the host before the box starts: tests/run does it), served by Debian's
# docker-registry on 127.0.0.1 (tests/image/registry.sh), pulled, baked and
# run (and started: start REF) by the CLI; a VM of it snapshotted into an
# image, and the store pruned.

img_reg=$SM_VM_WORK/registry
img_store=$SM_VM_WORK/oci-images
img_rt=$SM_VM_WORK/oci-rt
img_layouts=$("$SM_ROOT/scripts/test-image.sh" --print-dir 2>/dev/null | tail -n 1)
mkdir -p "$img_store" "$img_rt"

# The CLI with the test's images dir and runtime dir.
sm() {
    SUPERMACHINE_IMAGES=$img_store XDG_RUNTIME_DIR=$img_rt "$SM_BIN" "$@"
}

t_img_registry_up() {
    [[ -n $img_layouts && -d $img_layouts/debian ]] ||
        { echo "no test image: run scripts/test-image.sh on the host first (tests/run does)"; return 1; }
    "$SM_ROOT/tests/image/registry.sh" start "$img_reg" || return 1
    "$SM_ROOT/tests/image/registry.sh" env "$img_reg" >"$img_reg.env" || return 1
}

img_env() {
    # shellcheck disable=SC1090
    source "$img_reg.env"
}

t_img_first_run() {
    img_env
    local t0 ms out
    t0=$(now_ms)
    # The issue's own command: no --plain-http (a registry on 127.0.0.1 that
    # does not speak TLS is reached over HTTP, as Docker does).
    out=$(sm run "$SM_TEST_REGISTRY/debian:test" -- sh -c 'cat /etc/debian_version' 2>"$T/err")
    local rc=$?
    ms=$(($(now_ms) - t0))
    echo "info: pull + build + bake + run: $ms ms"
    [[ $rc == 0 && $out =~ ^12\.[0-9]+$ ]] ||
        { echo "status $rc, stdout '$out', stderr: $(tail -5 "$T/err")"; return 1; }
    grep -q 'baking' "$T/err" || { echo "no bake was reported: $(cat "$T/err")"; return 1; }
}

t_img_second_run_offline() {
    img_env
    # The registry is stopped: the second run must not need it.
    "$SM_ROOT/tests/image/registry.sh" stop "$img_reg" >/dev/null 2>&1
    local t0 ms out rc
    t0=$(now_ms)
    out=$(sm run "$SM_TEST_REGISTRY/debian:test" -- cat /etc/debian_version 2>"$T/err")
    rc=$?
    ms=$(($(now_ms) - t0))
    "$SM_ROOT/tests/image/registry.sh" start "$img_reg" >/dev/null 2>&1 &&
        "$SM_ROOT/tests/image/registry.sh" env "$img_reg" >"$img_reg.env"
    echo "info: second run with the registry down: $ms ms"
    [[ $rc == 0 && $out =~ ^12\.[0-9]+$ ]] || { echo "status $rc, stdout '$out', stderr: $(cat "$T/err")"; return 1; }
    [[ ! -s $T/err ]] || { echo "the second run said: $(cat "$T/err")"; return 1; }
}

t_img_tree() {
    img_env
    local out
    out=$(sm run --plain-http "$SM_TEST_REGISTRY/debian:test" -- sh -c "$("$SM_ROOT/scripts/test-image.sh" --print-check)" 2>&1)
    [[ $out == *"sm-test tree ok"* ]] || { echo "the layers' tree is wrong in the guest: $out"; return 1; }
}

t_img_config() {
    img_env
    local out env
    out=$(sm run --plain-http "$SM_TEST_REGISTRY/debian:test" 2>&1)
    [[ $out == "sm-test debian-test in /opt/sm-keep" ]] ||
        { echo "the image's Cmd/Env/WorkingDir: got '$out'"; return 1; }
    env=$(sm run --plain-http "$SM_TEST_REGISTRY/debian:test" -e SM_TEST=override -- \
        sh -c 'echo "$SM_TEST $(hostname) $(pwd)"; grep -c supermachine /etc/hosts; ls -a / | grep -c supermachine' 2>&1)
    [[ $env == $'override supermachine /opt/sm-keep\n1\n0' ]] ||
        { echo "env override, hostname, /etc/hosts, hidden settings: got '$env'"; return 1; }
}

# start REF: a detached VM of the OCI image (pulled and baked by the first
# run above, so no registry is asked, whatever side of REF its options
# stand), with the image's Env and WorkingDir for exec; stop ends it.
t_img_start() {
    img_env
    local id out
    id=$(sm start "$SM_TEST_REGISTRY/debian:test" --plain-http 2>"$T/err") ||
        { echo "start: $(cat "$T/err")"; return 1; }
    [[ ! -s $T/err ]] || { sm stop "$id"; echo "start of a baked image said: $(cat "$T/err")"; return 1; }
    out=$(sm exec "$id" -- sh -c 'cat /etc/debian_version; echo "$SM_TEST $(pwd)"' 2>&1)
    echo "info: start REF, then exec: $(echo $out)"
    sm stop "$id" || { echo "stop failed"; return 1; }
    [[ $out =~ ^12\.[0-9]+$'\n'"debian-test /opt/sm-keep"$ ]] ||
        { echo "exec in the VM of the image: got '$out'"; return 1; }
    [[ -z $(sm ps -q) ]] || { echo "ps still lists: $(sm ps -q)"; return 1; }
}

t_img_writes_stay_in_vm() {
    img_env
    local a b
    a=$(sm run --plain-http "$SM_TEST_REGISTRY/debian:test" -- sh -c 'echo x > /etc/debian_version && rm /bin/ls && cat /etc/debian_version' 2>&1)
    b=$(sm run --plain-http "$SM_TEST_REGISTRY/debian:test" -- sh -c 'cat /etc/debian_version; test -x /bin/ls && echo ls-ok' 2>&1)
    [[ $a == x && $b =~ ^12\.[0-9]+$'\n'ls-ok$ ]] ||
        { echo "writes leaked between VMs of one image: first '$a', then '$b'"; return 1; }
}

t_img_https_auth() {
    img_env
    local name out
    name=$(echo "$SM_TEST_PASSWORD" | sm pull --ca-file "$SM_TEST_CA" --username "$SM_TEST_USER" \
        "$SM_TEST_REGISTRY_TLS/debian:test" 2>"$T/err") ||
        { echo "HTTPS pull failed: $(cat "$T/err")"; return 1; }
    echo "info: HTTPS + basic auth pull gave $name"
    echo wrong | sm pull --ca-file "$SM_TEST_CA" --username "$SM_TEST_USER" "$SM_TEST_REGISTRY_TLS/debian:test" \
        >/dev/null 2>"$T/err2" && { echo "a wrong password was accepted"; return 1; }
    grep -qi 'authentication failed' "$T/err2" || { echo "wrong password: $(cat "$T/err2")"; return 1; }
    echo "info: wrong password: $(tail -1 "$T/err2")"
    sm pull --username "$SM_TEST_USER" "$SM_TEST_REGISTRY_TLS/debian:test" </dev/null >/dev/null 2>"$T/err3" &&
        { echo "no password on stdin was accepted"; return 1; }
    echo "$SM_TEST_PASSWORD" | sm pull --username "$SM_TEST_USER" "$SM_TEST_REGISTRY_TLS/debian:test" \
        >/dev/null 2>"$T/err4" && { echo "an untrusted certificate was accepted"; return 1; }
    echo "info: no CA: $(tail -1 "$T/err4")"
}

t_img_zstd_and_list() {
    img_env
    local out
    out=$(sm run --plain-http "$SM_TEST_REGISTRY/debian:zstd" -- cat /etc/sm-test-layer 2>"$T/err") ||
        { echo "zstd image: $(cat "$T/err")"; return 1; }
    [[ $out == "supermachine test image, layer 2" ]] || { echo "zstd image: got '$out'"; return 1; }
    sm images >"$T/images" || return 1
    cat "$T/images" | sed 's/^/info: /'
    grep -q "debian:test sha256:" "$T/images" && grep -q "debian:zstd sha256:" "$T/images" ||
        { echo "images does not list both"; return 1; }
}

# Each bad input: a clear error, status 1, and nothing half-written in the store.
t_img_refused() {
    img_env
    local what ref want
    while IFS='|' read -r what ref want; do
        if sm pull --plain-http "$ref" >/dev/null 2>"$T/err"; then
            echo "$what: accepted"
            return 1
        fi
        grep -qiE "$want" "$T/err" || { echo "$what: expected /$want/, got: $(cat "$T/err")"; return 1; }
        echo "info: $what: $(tail -1 "$T/err")"
    done <<EOF
another platform|$SM_TEST_REGISTRY/other:arm64|arm64|amd64
a manifest for arm64|$SM_TEST_REGISTRY/other:arm64-manifest|arm64
no such tag|$SM_TEST_REGISTRY/debian:nope|404|not found|unknown
no such registry|127.0.0.1:9/debian:test|connect|refused|reach
a malformed reference|UPPER/Case:tag|reference|invalid
EOF
    local junk
    junk=$(find "$img_store" -name '*.tmp*' -o -name '.*baking*' 2>/dev/null)
    [[ -z $junk ]] || { echo "left behind: $junk"; return 1; }
}

t_img_corrupt_blob() {
    img_env
    # Its own repository, so the shared test image stays whole: copy, then
    # flip a byte of the layer in the registry's storage.
    skopeo copy -q --src-tls-verify=false --dest-tls-verify=false --preserve-digests \
        "docker://$SM_TEST_REGISTRY/debian:test" "docker://$SM_TEST_REGISTRY/broken:test" >/dev/null 2>&1 ||
        { echo "cannot copy the image for the corrupt-blob test"; return 1; }
    echo "info: (the shared storage means every repo sees the flip: this test runs last)"
    local blob layer
    layer=$(skopeo inspect --tls-verify=false --raw "docker://$SM_TEST_REGISTRY/broken:test" |
        grep -o '"sha256:[0-9a-f]\{64\}"' | tail -n 2 | head -n 1 | tr -d '"')
    layer=${layer#sha256:}
    blob=$(find "$SM_TEST_REGISTRY_DIR/storage" -path "*/blobs/sha256/*/$layer/data" | head -1)
    [[ -n $layer && -n $blob ]] || { echo "no layer blob '$layer' in the registry's storage"; return 1; }
    printf 'X' | dd of="$blob" bs=1 seek=1000 conv=notrunc status=none
    local fresh=$T/images
    mkdir -p "$fresh"
    if SUPERMACHINE_IMAGES=$fresh "$SM_BIN" pull --plain-http "$SM_TEST_REGISTRY/broken:test" >/dev/null 2>"$T/err"; then
        echo "a corrupt layer was accepted"
        return 1
    fi
    grep -qiE 'corrupt|digest mismatch' "$T/err" || { echo "corrupt layer: $(cat "$T/err")"; return 1; }
    echo "info: $(tail -1 "$T/err")"
    [[ -z $(find "$fresh" -path '*blobs/sha256/*' ! -name '*.partial' -size +1M) ]] ||
        { echo "a corrupt blob was stored"; return 1; }
}

# An OCI layout of debian:test whose config says User USER (tag "user"), in
# DIR: the config and manifest rewritten, the layers linked.
img_layout_with_user() {
    local dir=$1 user=$2 src=$img_layouts/debian m cfg cfg_d cfg_n man man_d b
    m=$(tr -d '\n' <"$src/index.json" | grep -o '"digest":"sha256:[0-9a-f]*","size":[0-9]*,"annotations":{"org.opencontainers.image.ref.name":"test"}' |
        grep -o 'sha256:[0-9a-f]*')
    [[ -n $m ]] || return 1
    mkdir -p "$dir/blobs/sha256"
    cp "$src/oci-layout" "$dir/"
    for b in "$src"/blobs/sha256/*; do ln -s "$b" "$dir/blobs/sha256/"; done
    cfg=$(grep -o '"config":{[^}]*}' "$src/blobs/sha256/${m#sha256:}" | grep -o 'sha256:[0-9a-f]*')
    sed "s|\"WorkingDir\":|\"User\":\"$user\",\"WorkingDir\":|" "$src/blobs/sha256/${cfg#sha256:}" >"$dir/cfg"
    cfg_d=$(sha256sum "$dir/cfg" | cut -d' ' -f1)
    cfg_n=$(stat -c %s "$dir/cfg")
    rm -f "$dir/blobs/sha256/$cfg_d" && mv "$dir/cfg" "$dir/blobs/sha256/$cfg_d"
    sed -e "s|${cfg}|sha256:$cfg_d|" -e "s|\"size\":[0-9]*},\"layers\"|\"size\":$cfg_n},\"layers\"|" \
        "$src/blobs/sha256/${m#sha256:}" >"$dir/man"
    man_d=$(sha256sum "$dir/man" | cut -d' ' -f1)
    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"user"}}]}' \
        "$man_d" "$(stat -c %s "$dir/man")" >"$dir/index.json"
    mv "$dir/man" "$dir/blobs/sha256/$man_d"
}

t_img_user() {
    img_layout_with_user "$T/nobody" nobody || { echo "cannot make the layout with a User"; return 1; }
    img_layout_with_user "$T/ghost" ghost || return 1
    local out
    out=$(sm run "oci:$T/nobody:user" -- sh -c 'echo "$(id -un) $(id -u) $HOME"; touch /root/x 2>&1 | grep -c denied' 2>"$T/err")
    [[ $out == $'nobody 65534 /nonexistent\n1' ]] || { echo "User nobody: got '$out', stderr: $(cat "$T/err")"; return 1; }
    out=$(sm run "oci:$T/ghost:user" -- true 2>&1) && { echo "a User missing from /etc/passwd ran: $out"; return 1; }
    [[ $out == *"'ghost' is not in its /etc/passwd"* ]] || { echo "User ghost: got '$out'"; return 1; }
    echo "info: User ghost: $(tail -1 <<<"$out")"
}

# snapshot ID NAME of a VM of the OCI image keeps the image's root
# filesystem (the same disk link, its digest); then prune: while another
# image or a running VM links to the root filesystem it stays, and only
# the blobs go; once the VM is stopped, prune removes it too.
t_img_snapshot_and_prune() {
    img_env
    local id rootfs d out rc
    id=$(sm start --plain-http "$SM_TEST_REGISTRY/debian:test" 2>"$T/err") || { echo "start: $(cat "$T/err")"; return 1; }
    sm exec "$id" -- sh -c 'echo from-the-oci-vm >/root/note' && sm snapshot "$id" saved-oci >/dev/null 2>"$T/err" ||
        { echo "snapshot: $(cat "$T/err")"; sm stop "$id"; return 1; }
    rootfs=$(readlink -f "$img_store/saved-oci/disk")
    [[ $rootfs == "$img_store"/.oci/rootfs/*.sqfs && -f $rootfs ]] ||
        { echo "saved-oci's disk leads to '$rootfs'"; sm stop "$id"; return 1; }
    grep -q "^digest sha256:$(basename "$rootfs" .sqfs)$" "$img_store/saved-oci/image.info" ||
        { echo "saved-oci's image.info: $(cat "$img_store/saved-oci/image.info")"; sm stop "$id"; return 1; }
    out=$(sm run saved-oci -- sh -c 'cat /root/note /etc/debian_version' 2>"$T/err")
    [[ $out =~ ^from-the-oci-vm$'\n'12\.[0-9]+$ ]] || { echo "run saved-oci: '$out': $(cat "$T/err")"; sm stop "$id"; return 1; }
    # The images baked from the reference go; saved-oci still links to the disk.
    for d in "$img_store"/oci-*/; do
        [[ $(readlink -f "$d/disk") == "$rootfs" ]] && { sm rmi "$(basename "$d")" || return 1; }
    done
    sm prune >"$T/prune1" 2>&1 || { echo "prune: $(cat "$T/prune1")"; sm stop "$id"; return 1; }
    [[ -f $rootfs ]] || { echo "prune removed the disk saved-oci uses: $(cat "$T/prune1")"; sm stop "$id"; return 1; }
    sm rmi saved-oci || return 1
    sm prune --dry-run >"$T/dry" 2>&1 && grep -q "^would remove .*sha256/$(basename "$rootfs" .sqfs) " "$T/dry" &&
        [[ -f $img_store/.oci/blobs/sha256/$(basename "$rootfs" .sqfs) ]] ||
        { echo "prune --dry-run: $(cat "$T/dry")"; sm stop "$id"; return 1; }
    sm prune >"$T/prune2" 2>&1 || { echo "prune: $(cat "$T/prune2")"; sm stop "$id"; return 1; }
    echo "info: with the VM running: $(tail -1 "$T/prune2")"
    [[ -f $rootfs && ! -e $img_store/.oci/blobs/sha256/$(basename "$rootfs" .sqfs) ]] ||
        { echo "with the VM running, prune: $(cat "$T/prune2")"; sm stop "$id"; return 1; }
    out=$(sm exec "$id" -- cat /root/note)
    [[ $out == from-the-oci-vm ]] || { echo "the VM after the prune: '$out'"; sm stop "$id"; return 1; }
    sm stop "$id" || return 1
    sm prune >"$T/prune3" 2>&1
    rc=$?
    echo "info: after stop: $(tail -1 "$T/prune3")"
    [[ $rc == 0 && ! -e $rootfs ]] && grep -q "^removed 1 root filesystem and 0 blobs: " "$T/prune3" ||
        { echo "after stop, prune (status $rc): $(cat "$T/prune3")"; return 1; }
}

t_img_stop_registry() {
    "$SM_ROOT/tests/image/registry.sh" stop "$img_reg"
}

check "image: the test registry starts (docker-registry, HTTP and HTTPS + basic auth)" t_img_registry_up
check "image: run REGISTRY/debian:test pulls, builds, bakes and prints /etc/debian_version" t_img_first_run
check "image: a second run needs no registry (it is stopped) and says nothing" t_img_second_run_offline
check "image: the layers' tree in the guest (whiteouts, opaque folder, owners, links)" t_img_tree
check "image: Cmd, Env and WorkingDir honoured; -e wins; hostname, /etc/hosts; settings hidden" t_img_config
check "image: start REF gives a VM of the image (Env, WorkingDir) that runs until stop" t_img_start
check "image: what one VM writes stays in it; the next VM of the image starts clean" t_img_writes_stay_in_vm
check "image: the config's User: commands run as that user; an unknown user is refused with the reason" t_img_user
check "image: HTTPS with basic auth and a CA file; wrong password, no password, no CA refused" t_img_https_auth
check "image: zstd layers; images lists both with ref and digest" t_img_zstd_and_list
check "image: bad references refused with the reason, nothing half-written" t_img_refused
check "image: a corrupt layer in the registry is refused and not stored" t_img_corrupt_blob
check "image: snapshot ID NAME of an OCI image's VM keeps its root filesystem; prune keeps what an image or a running VM uses" \
    t_img_snapshot_and_prune
# sm_image_from_rootfs (build/tests/test_rootfs_image): a busybox folder
# packed, baked, run; the second call reuses the squashfs and the image.
t_img_from_rootfs() {
    local bin=$SM_BUILD/tests/test_rootfs_image
    [[ -x $bin ]] || { echo "$bin is not built (make all-tests)"; return 1; }
    [[ -x /usr/bin/busybox ]] || { echo "no /usr/bin/busybox (busybox-static)"; return 1; }
    "$bin" 2>&1 | tee "$T/out"
    local status=${PIPESTATUS[0]}
    grep '^info:' "$T/out"
    return "$status"
}

check "image: a root filesystem folder (sm_image_from_rootfs) runs; a second call neither packs nor bakes" \
    t_img_from_rootfs
check "image: the registry stops" t_img_stop_registry
