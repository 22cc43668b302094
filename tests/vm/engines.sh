# tests/vm/engines.sh: podman and containerd set up to run as root with all of
# their state in one folder, for tests/vm/test_engines.sh and bench/runtime
# (sourced; bash). Inside tools/kvmbox the host's root is read-only, so
# nothing may go to /var/lib/containers, /etc/containers, /var/tmp or
# /opt/containerd: every path either engine writes is set here.
#
#   eng_podman_setup DIR        write DIR/containers.conf and DIR/storage.conf
#                               (vfs: the box has no overlay module; cgroupfs:
#                               no systemd; file events: no journald)
#   epodman DIR ARGS...         podman with those files
#   eng_podman_load DIR         load debian:test (as docker.io/library/debian:test)
#   eng_containerd_start DIR    start containerd (native snapshotter, no CRI
#                               plugin) with root, state and socket under DIR;
#                               wait for its socket; import debian:test
#   ectr DIR ARGS...            ctr on that socket, namespace "sm"
#   eng_containerd_stop DIR     stop it (by its pid, from DIR/containerd.pid)
#
# The image: scripts/test-image.sh's debian:test, from its `docker save`
# archive: both engines load that format, and no registry is needed.

# shellcheck disable=SC2034 # used by the files that source this one
eng_image=docker.io/library/debian:test
eng_archive=$("$SM_ROOT/scripts/test-image.sh" --print-dir 2>/dev/null | tail -n 1)/debian-test.docker.tar

# The runtime's images (src/runtime/store.h), shared by the checks so that
# later containers of the image restore the first's bake. podman gives
# conmon, and so the runtime, only the environment containers.conf names;
# containerd's shims inherit containerd's.
export SUPERMACHINE_RUNTIME_IMAGES=${SUPERMACHINE_RUNTIME_IMAGES:-$SM_VM_WORK/engines-images}

eng_podman_setup() {
    local d=$1
    mkdir -p "$d/storage" "$d/run" "$d/tmp" "$d/cni" || return 1
    cat >"$d/storage.conf" <<EOF || return 1
[storage]
driver = "vfs"
graphroot = "$d/storage"
runroot = "$d/run"
EOF
    cat >"$d/containers.conf" <<EOF
[containers]
# --network none everywhere: no CNI plugins, no slirp4netns.
netns = "none"
[network]
network_config_dir = "$d/cni"
[engine]
conmon_env_vars = ["PATH=$PATH", "SUPERMACHINE_RUNTIME_IMAGES=$SUPERMACHINE_RUNTIME_IMAGES"]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$d/events.log"
tmp_dir = "$d/run/libpod"
static_dir = "$d/storage/libpod"
volume_path = "$d/storage/volumes"
image_copy_tmp_dir = "$d/tmp"
EOF
}

epodman() {
    local d=$1
    shift
    CONTAINERS_CONF=$d/containers.conf CONTAINERS_STORAGE_CONF=$d/storage.conf \
        TMPDIR=$d/tmp podman "$@"
}

eng_podman_load() {
    [[ -f $eng_archive ]] || { echo "no $eng_archive: run scripts/test-image.sh on the host first"; return 1; }
    epodman "$1" load -q -i "$eng_archive" >"$1/load.out" 2>&1 ||
        { echo "podman load: $(tail -5 "$1/load.out")"; return 1; }
}

eng_containerd_start() {
    local d=$1 i
    mkdir -p "$d/root" "$d/state" "$d/opt" || return 1
    cat >"$d/config.toml" <<EOF || return 1
version = 2
root = "$d/root"
state = "$d/state"
# CRI is Kubernetes' door: not used here, and it wants CNI and overlayfs.
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$d/containerd.sock"
[ttrpc]
  address = "$d/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$d/opt"
EOF
    containerd --config "$d/config.toml" >"$d/containerd.log" 2>&1 &
    echo $! >"$d/containerd.pid"
    for ((i = 0; i < 300; i++)); do
        ectr "$d" version >/dev/null 2>&1 && break
        kill -0 "$(cat "$d/containerd.pid")" 2>/dev/null ||
            { echo "containerd exited: $(tail -5 "$d/containerd.log")"; return 1; }
        sleep 0.1
    done
    ectr "$d" version >/dev/null 2>&1 || { echo "containerd did not answer in 30 s: $(tail -5 "$d/containerd.log")"; return 1; }
    [[ -f $eng_archive ]] || { echo "no $eng_archive: run scripts/test-image.sh on the host first"; return 1; }
    ectr "$d" image import --snapshotter native "$eng_archive" >"$d/import.out" 2>&1 ||
        { echo "ctr image import: $(tail -5 "$d/import.out")"; return 1; }
}

ectr() {
    local d=$1
    shift
    ctr --address "$d/containerd.sock" --namespace sm "$@"
}

eng_containerd_stop() {
    local pid
    pid=$(cat "$1/containerd.pid" 2>/dev/null) || return 0
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -f "$1/containerd.pid"
}
