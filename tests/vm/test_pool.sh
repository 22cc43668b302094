# tests/vm/test_pool.sh: the VM pool (build/tests/test_pool, and the ASan
# build when built): sourced by run-all.sh, or run by itself:
#   tools/kvmbox -- tests/vm/test_pool.sh     (or directly on hardware KVM)
# The test bakes its own image into a store of its own (sm_store_new: images
# and VM folders in a temporary folder) and checks that the pool's VMs live
# there; it fails when a VM folder or an unreaped VMM is left.

pool_standalone=0
if ! declare -F check >/dev/null; then
    pool_standalone=1
    cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
    SM_ROOT=$PWD
    SM_VM_WORK=$(mktemp -d "${TMPDIR:-/tmp}/sm-vm.XXXXXX")
    trap 'rm -rf "$SM_VM_WORK"' EXIT
    source tests/vm/lib.sh
fi

t_pool() {
    local bin=$1 start status
    if [[ ! -x $bin ]]; then
        echo "$bin is not built (make all-tests)"
        return 1
    fi
    start=$(now_ms)
    # Through tee, so that a test stopped by its time limit still shows how
    # far it got.
    CMOCKA_MESSAGE_OUTPUT=STDOUT "$bin" 2>&1 | tee "$T/out"
    status=${PIPESTATUS[0]}
    grep -E '^(acquire of an idle|8 threads|image baked|idle 3|a VM killed|acquire right after)' \
        "$T/out" | sed 's/^/info: /'
    echo "info: $(($(now_ms) - start)) ms in all"
    return $status
}

check "pool: min ready, 8 threads, max and timeouts, fresh VMs, idle shrink, dead VMs ($SM_BUILD)" \
    t_pool "$SM_BUILD/tests/test_pool"
if [[ -x $SM_ROOT/build/asan/tests/test_pool && $SM_BUILD == "$SM_ROOT/build" ]]; then
    check "pool: the same under ASan+UBSan" t_pool "$SM_ROOT/build/asan/tests/test_pool"
fi

if ((pool_standalone)); then
    echo
    echo "$vm_passed passed, $vm_failed failed"
    ((vm_failed == 0))
    exit
fi
