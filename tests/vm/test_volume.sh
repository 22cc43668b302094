# tests/vm/test_volume.sh: volumes (issue 13), sourced by run-all.sh.
#
# Volumes are ext4 files mounted through the agent's VOLUME request, in VMs
# restored from the default image: data written in one VM is read by the
# next; one writer at a time; read-only mounts are shared and stay read-only;
# a VM with a volume is not baked; bad --volume flags are refused before any
# VM. The throughput of a volume against the tmpfs overlay is printed (a
# figure, not a limit). Everything lives under this file's own folders.

vol_rt=$SM_VM_WORK/vol-rt
vol_images=$SM_VM_WORK/vol-images
mkdir -p "$vol_rt" "$vol_images" && chmod 700 "$vol_rt" "$vol_images"

vsm() { XDG_RUNTIME_DIR=$vol_rt SUPERMACHINE_IMAGES=$vol_images "$SM_BIN" "$@"; }

# A named volume is made on first use; what one VM writes (no sync of its
# own: the stop powers the guest off, which syncs) the next VM reads.
t_volume_survives() {
    vsm run --volume work:/work -- sh -c 'echo kept >/work/note; grep " /work " /proc/mounts' \
        >"$T/out" 2>"$T/err" || { echo "first run: $(tail -3 "$T/err")"; return 1; }
    grep -q "/work ext4 rw" "$T/out" || { echo "not an ext4 mounted rw at /work: $(cat "$T/out")"; return 1; }
    local id
    id=$(vsm start --volume work:/work 2>"$T/err") || { echo "start: $(tail -3 "$T/err")"; return 1; }
    vsm exec "$id" -- sh -c 'cat /work/note; echo more >>/work/note' >"$T/out2" 2>"$T/err" ||
        { echo "exec: $(tail -3 "$T/err")"; vsm stop "$id"; return 1; }
    vsm stop "$id" >/dev/null || return 1
    [[ $(cat "$T/out2") == kept ]] || { echo "the second VM read '$(cat "$T/out2")'"; return 1; }
    vsm run --volume work:/work:ro -- cat /work/note >"$T/out3" 2>"$T/err" || { echo "$(tail -3 "$T/err")"; return 1; }
    [[ $(cat "$T/out3") == $'kept\nmore' ]] || { echo "the third VM read '$(cat "$T/out3")'"; return 1; }
    vsm volume ls >"$T/ls" && grep -q "^work .* no$" "$T/ls" || { echo "volume ls: $(cat "$T/ls")"; return 1; }
    echo "info: three VMs in turn wrote, appended and read /work/note on the volume 'work'"
}

# While one VM writes a volume, a second is refused (it never starts), and
# the volume cannot be removed; read-only mounts share, and stay read-only.
t_volume_one_writer() {
    local id id2
    id=$(vsm start --volume shared:/v 2>"$T/err") || { echo "start: $(tail -3 "$T/err")"; return 1; }
    vsm run --volume shared:/v -- true 2>"$T/err2"; local rc=$?
    vsm run --volume shared:/v:ro -- true 2>"$T/err3"; local rc_ro=$?
    vsm volume ls >"$T/ls"
    vsm volume rm shared 2>"$T/err4"; local rc_rm=$?
    vsm stop "$id" >/dev/null
    [[ $rc != 0 ]] && grep -q "in use by another VM" "$T/err2" ||
        { echo "a second writer: status $rc: $(tail -3 "$T/err2")"; return 1; }
    [[ $rc_ro != 0 ]] && grep -q "in use by another VM that writes it" "$T/err3" ||
        { echo "a reader beside a writer: status $rc_ro: $(tail -3 "$T/err3")"; return 1; }
    grep -q "^shared .* yes$" "$T/ls" || { echo "volume ls while held: $(cat "$T/ls")"; return 1; }
    [[ $rc_rm != 0 ]] && grep -q "in use" "$T/err4" || { echo "rm while held: status $rc_rm"; return 1; }
    id=$(vsm start --volume shared:/v:ro 2>"$T/err") || { echo "reader 1: $(tail -3 "$T/err")"; return 1; }
    id2=$(vsm start --volume shared:/v:ro 2>"$T/err") || { echo "reader 2: $(tail -3 "$T/err")"; vsm stop "$id"; return 1; }
    vsm exec "$id2" -- sh -c 'echo x >/v/file' 2>"$T/err5"; rc=$?
    vsm stop "$id" "$id2" >/dev/null
    [[ $rc != 0 ]] && grep -qi "read-only" "$T/err5" || { echo "a write to a read-only mount: status $rc: $(cat "$T/err5")"; return 1; }
    vsm volume rm shared || return 1
    [[ ! -e $vol_images/.volumes/shared.ext4 ]] || { echo "rm left the file"; return 1; }
    echo "info: $(head -1 "$T/err2")"
}

# A volume file of the caller's (a path), four volumes at once, and a fifth refused.
t_volume_paths_and_count() {
    local f=$SM_VM_WORK/vol-own.ext4
    truncate -s 32M "$f" && mkfs.ext4 -q -F "$f" || { echo "mkfs.ext4 on $f failed"; return 1; }
    vsm run --volume "$f:/a" --volume b1:/b --volume b2:/c --volume b3:/d -- \
        sh -c 'for d in /a /b /c /d; do echo hi >$d/f || exit 1; done; grep -c " ext4 " /proc/mounts' \
        >"$T/out" 2>"$T/err" || { echo "four volumes: $(tail -3 "$T/err")"; return 1; }
    [[ $(cat "$T/out") == 4 ]] || { echo "ext4 mounts: $(cat "$T/out")"; return 1; }
    vsm run --volume a1:/a --volume a2:/b --volume a3:/c --volume a4:/d --volume a5:/e -- true 2>"$T/err"
    local rc=$?
    [[ $rc == 2 ]] && grep -q "at most 4 volumes" "$T/err" || { echo "a fifth: status $rc: $(cat "$T/err")"; return 1; }
}

# Bad flags are refused before any VM (status 2, the reason).
t_volume_bad_flags() {
    local spec rc
    for spec in nocolon ":/x" "v:" "v:relative" "v:/" ".hidden:/x" "a b:/x"; do
        vsm run --volume "$spec" -- true 2>"$T/err"; rc=$?
        [[ $rc == 2 ]] || { echo "--volume '$spec': status $rc: $(cat "$T/err")"; return 1; }
    done
    vsm run --volume missing/file.ext4:/x -- true 2>"$T/err"; rc=$?
    [[ $rc != 0 ]] && grep -q "missing/file.ext4" "$T/err" || { echo "a missing file: status $rc: $(cat "$T/err")"; return 1; }
    vsm run --volume-size 1K --volume v:/x -- true 2>"$T/err"; rc=$?
    [[ $rc == 2 ]] || { echo "--volume-size 1K: status $rc"; return 1; }
    ls "$vol_images/.volumes" | grep -q '^v\.' && { echo "a refused flag made a volume"; return 1; }
    return 0
}

# A volume's file is written by a guest: a regular file that is something
# else, or a link planted in its place, is refused.
t_volume_hostile_file() {
    mkdir -p "$vol_images/.volumes" && mkfifo "$SM_VM_WORK/vol-fifo" &&
        ln -sf /etc/passwd "$vol_images/.volumes/planted.ext4" || return 1
    XDG_RUNTIME_DIR=$vol_rt SUPERMACHINE_IMAGES=$vol_images timeout 120 "$SM_BIN" run \
        --volume "$SM_VM_WORK/vol-fifo:/x" -- true 2>"$T/err"; local rc=$?
    [[ $rc != 0 && $rc != 124 ]] && grep -q "not a regular file" "$T/err" || { echo "a FIFO: status $rc: $(cat "$T/err")"; return 1; }
    vsm run --volume planted:/x -- true 2>"$T/err"; rc=$?
    [[ $rc != 0 ]] || { echo "a planted link was mounted"; return 1; }
    echo "info: planted link: $(tail -1 "$T/err")"
}

# Throughput, side by side in one VM: 64 MiB written (and fsync'd) then read
# back, on the volume and on the tmpfs overlay (10 ms clock: /proc/uptime,
# as busybox's date has no nanoseconds). A figure, not a limit.
t_volume_throughput() {
    vsm run --volume speed:/v --volume-size 256M -- sh -c '
        t() { read -r up _ </proc/uptime; echo $(( ${up%.*} * 1000 + (1${up#*.} - 100) * 10 )); }
        for d in /v /tmp; do
            a=$(t); dd if=/dev/zero of=$d/big bs=1M count=64 conv=fsync 2>/dev/null || exit 1; b=$(t)
            echo 3 >/proc/sys/vm/drop_caches 2>/dev/null
            dd if=$d/big of=/dev/null bs=1M 2>/dev/null || exit 1; c=$(t)
            echo "$d $((b - a)) $((c - b))"
        done' >"$T/out" 2>"$T/err" || { echo "$(tail -3 "$T/err")"; return 1; }
    local vw vr tw tr
    read -r _ vw vr <<<"$(grep '^/v ' "$T/out")"
    read -r _ tw tr <<<"$(grep '^/tmp ' "$T/out")"
    [[ -n $vw && -n $tw ]] || { echo "no figures: $(cat "$T/out")"; return 1; }
    echo "info: 64 MiB written+fsync'd / read: volume ${vw} ms / ${vr} ms, tmpfs overlay ${tw} ms / ${tr} ms"
}

check "volume: data written in one VM is read in the next" t_volume_survives
check "volume: one writer at a time; read-only mounts share and stay read-only" t_volume_one_writer
check "volume: a file of the caller's, four at once, a fifth refused" t_volume_paths_and_count
check "volume: bad --volume flags are refused before any VM" t_volume_bad_flags
check "volume: a FIFO or a planted link is refused" t_volume_hostile_file
check "volume: throughput against the tmpfs overlay (a figure)" t_volume_throughput
