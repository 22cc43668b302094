/*
 * libFuzzer target: the VMM process's contract (src/protocol/vmm.c). The
 * input is split at NUL bytes into an argv for vmm_args_parse; the whole
 * input is also tried as a ready line and as a control request. Arguments
 * that parse must format and parse back to the same paths.
 *
 *   build/fuzz/fuzz_vmm_contract -max_total_time=20
 */
#include "protocol/vmm.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same_or_abort(const char *a, const char *b)
{
    if ((a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0))
        abort();
}

static void check_round_trip(const struct vmm_args *a)
{
    struct vmm_argv v;
    if (!vmm_args_format(a, "vmm", &v))
        abort(); /* every parsed set of options fits */
    int n = 0;
    while (v.argv[n])
        n++;
    struct vmm_args b;
    char why[256];
    if (vmm_args_parse(&b, n, v.argv, why, sizeof why) != 0)
        abort();
    same_or_abort(a->kernel, b.kernel);
    same_or_abort(a->restore_dir, b.restore_dir);
    same_or_abort(a->exec_socket, b.exec_socket);
    same_or_abort(a->console, b.console);
    if (a->memory_mib != b.memory_mib || a->cpus != b.cpus || a->ready_fd != b.ready_fd ||
        a->probe != b.probe || a->lifeline_fd != b.lifeline_fd || a->nvolumes != b.nvolumes)
        abort();
    for (uint32_t i = 0; i < a->nvolumes; i++) {
        same_or_abort(a->volumes[i].path, b.volumes[i].path);
        if (a->volumes[i].read_only != b.volumes[i].read_only)
            abort();
    }
}

static void fuzz_args(char *text, size_t size)
{
    char *argv[64] = { "vmm" };
    int argc = 1;
    for (size_t i = 0; i < size && argc < 63;) {
        argv[argc++] = text + i;
        i += strlen(text + i) + 1;
    }
    argv[argc] = NULL;
    struct vmm_args a;
    char why[256];
    if (vmm_args_parse(&a, argc, argv, why, sizeof why) == 0)
        check_round_trip(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 8192)
        return 0;
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;
    struct vmm_ready ready;
    if (vmm_ready_line_parse(text, size, &ready)) { /* what parses formats back the same */
        char again[VMM_READY_LINE_MAX];
        int n = vmm_ready_line_format(again, sizeof again, &ready);
        if (n < 0 || (size_t)n != size || memcmp(again, text, size))
            abort();
    }
    struct vmm_control_request req;
    const char *why;
    if (vmm_control_request_parse(text, &req, &why) && req.verb == VMM_CONTROL_SNAPSHOT && !*req.dir)
        abort();
    fuzz_args(text, size);
    free(text);
    return 0;
}
