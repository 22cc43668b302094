#!/usr/bin/env bash
# The local registries of issue 6's tests and bench/pull: Debian's
# docker-registry (distribution 2.8) twice, holding scripts/test-image.sh's
# images.
#
#   tests/image/registry.sh start DIR   start both, push the images, wait
#   tests/image/registry.sh env DIR     print the shell assignments below
#   tests/image/registry.sh stop DIR    stop both (safe to repeat)
#
# DIR is created if needed and must be writable: keep it under /tmp (or
# $KVMBOX_SHARE) so that this also works inside tools/kvmbox, whose root is
# read-only. The test image must already be built there (scripts/test-image.sh,
# as root, outside the box); its cache may be read-only.
#
#   registry  address           transport  auth
#   --------  ----------------  ---------  ------------------------------------
#   plain     127.0.0.1:5000    HTTP       none
#   tls       127.0.0.1:5443    HTTPS      basic (htpasswd, bcrypt), a fresh
#                                          user and random password per start
#
# The HTTPS one's certificate is for IP 127.0.0.1 (subjectAltName), signed by
# a CA made at start: DIR/ca.crt (it is in no system trust store, so a client
# without it must refuse the server; `skopeo --cert-dir DIR` trusts it, and
# `curl --cacert DIR/ca.crt`). Both serve ONE storage,
# DIR/storage/docker/registry/v2 (blobs/sha256/XX/HEX/data), so what is
# pushed through one is served by both; a test that damages a blob there
# should copy the image to a repository of its own first.
# Ports: SM_TEST_REGISTRY_PORT and SM_TEST_REGISTRY_TLS_PORT override 5000 and
# 5443; a port in use is an error (nothing is started then).
#
# Repositories and tags pushed (the same on both, see scripts/test-image.sh;
# all but debian:docker with the layout's own manifest digests):
#   debian:test            OCI manifest, linux/amd64, two gzip layers
#   debian:multi           OCI index: linux/arm64 + linux/amd64 (= debian:test)
#   debian:docker          debian:test as a Docker v2 schema 2 manifest
#   debian:zstd            debian:test with zstd layers (OCI tar+zstd)
#   other:arm64            OCI index with only linux/arm64
#   other:arm64-manifest   OCI manifest whose config says linux/arm64
#
# `env DIR` prints (values for the default ports):
#   SM_TEST_REGISTRY=127.0.0.1:5000
#   SM_TEST_REGISTRY_TLS=127.0.0.1:5443
#   SM_TEST_CA=DIR/ca.crt
#   SM_TEST_USER=smtest
#   SM_TEST_PASSWORD=<random hex>
#   SM_TEST_REGISTRY_DIR=DIR
#   export SM_TEST_REGISTRY SM_TEST_REGISTRY_TLS SM_TEST_CA SM_TEST_USER ...
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
timeout=${SM_TEST_REGISTRY_TIMEOUT:-120}
export TMPDIR="${TMPDIR:-/tmp}"   # skopeo's default, /var/tmp, is read-only in kvmbox

log() { echo "registry: $*" >&2; }
die() { log "$*"; exit 1; }

usage() {
    echo "usage: tests/image/registry.sh start|stop|env DIR" >&2
    exit 2
}

# True if something accepts connections on 127.0.0.1:PORT.
port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# True if PID is alive and is a docker-registry (pids get reused).
is_registry() {
    [[ -r /proc/$1/cmdline ]] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q docker-registry
}

# DIR/ca.crt is the only certificate or key directly in DIR, so that DIR
# also works as skopeo's --cert-dir; the rest lives in DIR/private.
make_certs() {
    local d=$1 p=$1/private
    mkdir -p "$p"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$p/ca.key" -out "$d/ca.crt" -days 3650 -subj "/CN=supermachine test CA" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$p/server.key" -out "$p/server.csr" -subj "/CN=127.0.0.1" 2>/dev/null
    printf '%s\n' subjectAltName=IP:127.0.0.1 basicConstraints=CA:FALSE \
        keyUsage=critical,digitalSignature extendedKeyUsage=serverAuth >"$p/server.ext"
    openssl x509 -req -in "$p/server.csr" -CA "$d/ca.crt" -CAkey "$p/ca.key" \
        -CAcreateserial -CAserial "$p/ca.srl" -days 3650 -extfile "$p/server.ext" \
        -out "$p/server.crt" 2>/dev/null
}

# write_config FILE ADDR [tls]: a registry configuration on the shared storage.
write_config() {
    local file=$1 addr=$2 tls=${3:-}
    {
        printf 'version: 0.1\n'
        printf 'log:\n  level: warn\n  accesslog:\n    disabled: true\n'
        printf 'storage:\n  filesystem:\n    rootdirectory: %s/storage\n' "$dir"
        printf '  delete:\n    enabled: true\n'
        printf 'http:\n  addr: %s\n  secret: %s\n' "$addr" "$secret"
        if [[ -n $tls ]]; then
            printf '  tls:\n    certificate: %s/private/server.crt\n' "$dir"
            printf '    key: %s/private/server.key\n' "$dir"
            printf 'auth:\n  htpasswd:\n    realm: supermachine-test\n    path: %s/htpasswd\n' "$dir"
        fi
    } >"$file"
}

# launch NAME CONFIG: starts a registry detached from our stdio, records its pid.
launch() {
    setsid docker-registry serve "$2" </dev/null >"$dir/$1.log" 2>&1 &
    echo $! >"$dir/$1.pid"
}

# wait_ready NAME CURL_ARGS...: until GET /v2/ answers 200 (the registry died
# or the timeout passed: error with its log).
wait_ready() {
    local name=$1 pid code deadline=$((SECONDS + timeout))
    shift
    pid=$(cat "$dir/$name.pid")
    while :; do
        code=$(curl -s -o /dev/null -w '%{http_code}' "$@" || true)
        [[ $code == 200 ]] && return 0
        if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
            tail -n 20 "$dir/$name.log" >&2
            die "the $name registry did not answer /v2/ (last HTTP code: $code)"
        fi
        sleep 0.2
    done
}

# push LAYOUT:TAG REPO:TAG [SKOPEO_OPTIONS]: with --preserve-digests by
# default, so that the registry serves the layout's manifests byte for byte
# (without it skopeo swaps the zstd layers for gzip ones it has seen before).
push() {
    local src=$1 dest=$2
    shift 2
    (($#)) || set -- --preserve-digests
    log "push $dest"
    skopeo copy --quiet --dest-tls-verify=false "$@" "oci:$src" "docker://$plain_addr/$dest" >&2 ||
        die "skopeo copy oci:$src docker://$plain_addr/$dest failed"
}

start() {
    local port=${SM_TEST_REGISTRY_PORT:-5000} tls_port=${SM_TEST_REGISTRY_TLS_PORT:-5443}
    local cmd images
    for cmd in docker-registry skopeo openssl htpasswd curl setsid; do
        command -v "$cmd" >/dev/null || die "$cmd is missing: run scripts/deps.sh"
    done
    if [[ -f $dir/plain.pid ]] && is_registry "$(cat "$dir/plain.pid")"; then
        die "already running in $dir (stop it first: tests/image/registry.sh stop $dir)"
    fi
    images=$("$repo/scripts/test-image.sh" --print-dir) || die "no test image (scripts/test-image.sh)"
    port_busy "$port" && die "port $port is in use; set SM_TEST_REGISTRY_PORT to a free one"
    port_busy "$tls_port" && die "port $tls_port is in use; set SM_TEST_REGISTRY_TLS_PORT to a free one"

    mkdir -p "$dir/storage"
    plain_addr=127.0.0.1:$port
    local tls_addr=127.0.0.1:$tls_port user=smtest password
    password=$(openssl rand -hex 12)
    secret=$(openssl rand -hex 16)
    make_certs "$dir"
    htpasswd -Bbn "$user" "$password" >"$dir/htpasswd" 2>/dev/null
    write_config "$dir/plain.yml" "$plain_addr"
    write_config "$dir/tls.yml" "$tls_addr" tls
    {
        printf 'SM_TEST_REGISTRY=%s\nSM_TEST_REGISTRY_TLS=%s\n' "$plain_addr" "$tls_addr"
        printf 'SM_TEST_CA=%s/ca.crt\nSM_TEST_USER=%s\nSM_TEST_PASSWORD=%s\n' "$dir" "$user" "$password"
        printf 'SM_TEST_REGISTRY_DIR=%s\n' "$dir"
        printf 'export SM_TEST_REGISTRY SM_TEST_REGISTRY_TLS SM_TEST_CA SM_TEST_USER'
        printf ' SM_TEST_PASSWORD SM_TEST_REGISTRY_DIR\n'
    } >"$dir/env"

    launch plain "$dir/plain.yml"
    launch tls "$dir/tls.yml"
    trap stop_all EXIT   # a failed start leaves nothing running
    wait_ready plain "http://$plain_addr/v2/"
    wait_ready tls --cacert "$dir/ca.crt" -u "$user:$password" "https://$tls_addr/v2/"
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$dir/ca.crt" "https://$tls_addr/v2/" || true)
    [[ $code == 401 ]] || die "the tls registry answered $code without credentials, not 401"

    push "$images/debian:test" debian:test
    push "$images/debian:multi" debian:multi --all --preserve-digests
    push "$images/debian:test" debian:docker --format v2s2
    push "$images/debian:zstd" debian:zstd
    push "$images/other:arm64" other:arm64 --all --preserve-digests
    push "$images/other:arm64-manifest" other:arm64-manifest
    trap - EXIT
    log "plain http://$plain_addr, https://$tls_addr (CA $dir/ca.crt, user $user); logs in $dir"
}

stop_one() {
    local pidfile=$dir/$1.pid pid i
    [[ -f $pidfile ]] || return 0
    pid=$(cat "$pidfile")
    if is_registry "$pid"; then
        kill "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            is_registry "$pid" || break
            sleep 0.1
        done
        is_registry "$pid" && kill -9 "$pid" 2>/dev/null
    fi
    rm -f "$pidfile"
}

stop_all() {
    stop_one plain
    stop_one tls
}

(($# == 2)) || usage
case $2 in
    /*) dir=$2 ;;
    *) dir=$PWD/$2 ;;
esac
case $1 in
    start)
        mkdir -p "$dir"
        start
        ;;
    stop) stop_all ;;
    env)
        [[ -f $dir/env ]] || die "no registry was started in $dir"
        cat "$dir/env"
        ;;
    *) usage ;;
esac
