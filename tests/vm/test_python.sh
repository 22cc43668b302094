# tests/vm/test_python.sh: the Python binding on real VMs
# (bindings/python/tests_vm, pytest, on build/python from `make python`):
# Image.default(), start, exec, files, snapshot, a pool with 8 threads
# acquiring at once, Ctrl-C during a long exec, the README's example.
# Sourced by run-all.sh, or run by itself:
#   tools/kvmbox -- tests/vm/test_python.sh     (or directly on hardware KVM)
# The default image is baked into a default store of this file's own, VMs
# live under its own runtime folder, which must be empty at the end, with no
# supermachine-vmm process of ours left.

py_standalone=0
if ! declare -F check >/dev/null; then
    py_standalone=1
    cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
    SM_ROOT=$PWD
    SM_VM_WORK=$(mktemp -d "${TMPDIR:-/tmp}/sm-vm.XXXXXX")
    trap 'rm -rf "$SM_VM_WORK"' EXIT
    source tests/vm/lib.sh
fi

py_rt=$SM_VM_WORK/py-rt
py_data=$SM_VM_WORK/py-data   # the library's default store: its images/ folder
mkdir -p "$py_rt" "$py_data" && chmod 700 "$py_rt"
py_bin=${PYTHON:-python3}
[[ -z ${PYTHON:-} && -x /usr/bin/python3 ]] && py_bin=/usr/bin/python3

py_env() {
    env -u SUPERMACHINE_IMAGES XDG_RUNTIME_DIR=$py_rt XDG_DATA_HOME=$py_data \
        SUPERMACHINE_KERNEL=$SM_KERNEL SUPERMACHINE_INITRD=$SM_INITRD \
        SUPERMACHINE_VMM=$SM_BUILD/bin/supermachine-vmm \
        PYTHONPATH=$SM_BUILD/python PYTHONDONTWRITEBYTECODE=1 "$@"
}

# Processes whose command line mentions our runtime folder (our VMMs).
py_vmms() {
    local f
    for f in /proc/[0-9]*/cmdline; do
        tr '\0' ' ' <"$f" 2>/dev/null | grep -F -- "$py_rt/" | grep -q supermachine-vmm && {
            f=${f#/proc/}
            echo "${f%/cmdline}"
        }
    done
}

t_py_vm() {
    local status left
    if ! compgen -G "$SM_BUILD/python/supermachine/_supermachine*.so" >/dev/null; then
        echo "$SM_BUILD/python is not built (make python)"
        return 1
    fi
    "$py_bin" -c 'import pytest' || { echo "no pytest for $py_bin (python3-pytest)"; return 1; }
    # The default image, baked once by the CLI into our own default store
    # ($XDG_DATA_HOME; $SUPERMACHINE_IMAGES is the CLI's alone).
    py_env "$SM_BIN" bake default >"$T/bake.out" 2>&1 ||
        { echo "baking the default image failed:"; cat "$T/bake.out"; return 1; }
    [[ -f $py_data/supermachine/images/default/state ]] ||
        { echo "no default image in $py_data after the bake: $(cat "$T/bake.out")"; return 1; }
    py_env timeout -k 10 1500 "$py_bin" -m pytest -v -p no:cacheprovider -o cache_dir="$T" \
        --basetemp="$T/pytest" "$SM_ROOT/bindings/python/tests_vm" 2>&1
    status=$?
    left=$(ls -A "$py_rt/supermachine/vms" 2>/dev/null)
    [[ -z $left ]] || { echo "VM folders left: $left"; status=1; }
    left=$(py_vmms)
    [[ -z $left ]] || { echo "VMM processes left: $left"; status=1; }
    return $status
}

SM_CHECK_TIMEOUT=${SM_CHECK_TIMEOUT_PYTHON:-1800} \
    check "python: default image, exec, files, snapshot, pool of 8 threads, Ctrl-C, README example" t_py_vm

if ((py_standalone)); then
    echo
    echo "$vm_passed passed, $vm_failed failed"
    ((vm_failed == 0))
    exit
fi
