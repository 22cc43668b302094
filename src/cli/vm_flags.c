#include "cli/vm_flags.h"

#include <stdio.h>
#include <string.h>

#include "cli/options.h"
#include "base/number.h"

/* The longest boot the library accepts (sm_vm_config_boot_timeout_s). */
#define MAX_BOOT_TIMEOUT_S 3600

const char *vm_flag_name(int c)
{
    switch (c) {
    case VM_FLAG_MEMORY: return "--memory";
    case VM_FLAG_CPUS: return "--cpus";
    case VM_FLAG_KERNEL: return "--kernel";
    case VM_FLAG_INITRD: return "--initrd";
    case VM_FLAG_CONSOLE: return "--console";
    case VM_FLAG_BOOT_TIMEOUT: return "--timeout";
    case VM_FLAG_ALLOW: return "--allow";
    case VM_FLAG_DENY: return "--deny";
    case VM_FLAG_NET: return "--net";
    case VM_FLAG_MEMORY_LIMIT: return "--memory-limit";
    case VM_FLAG_CPU_LIMIT: return "--cpu-limit";
    case VM_FLAG_VOLUME: return "--volume";
    case VM_FLAG_VOLUME_SIZE: return "--volume-size";
    default: return "--publish";
    }
}

/* Whole seconds for the library, rounded up: a fraction still waits. */
static sm_code set_boot_timeout(sm_vm_config *cfg, const char *arg)
{
    double s;
    if (!parse_seconds_option("--timeout", arg, &s) || s > MAX_BOOT_TIMEOUT_S)
        return SM_E_INVALID;
    return sm_vm_config_boot_timeout_s(cfg, s < 1 ? 1 : (uint32_t)(s + 0.999));
}

static sm_code set_count(sm_vm_config *cfg, int c, const char *arg)
{
    uint32_t n;
    if (!parse_u32_option(vm_flag_name(c), arg, &n))
        return SM_E_INVALID;
    return c == VM_FLAG_MEMORY ? sm_vm_config_memory_mib(cfg, n) : sm_vm_config_cpus(cfg, n);
}

/* CPUS: digits, then optionally '.' and up to three more: 0.5 is 500
 * millicpus (the library checks the range). */
static bool parse_millicpus(const char *arg, uint32_t *out)
{
    const char *p = arg;
    size_t whole = strspn(p, "0123456789");
    if (!whole && *p != '.')
        return false;
    uint64_t milli = 0;
    for (size_t i = 0; i < whole; i++)
        if ((milli = milli * 10 + (uint64_t)(p[i] - '0')) > 1024 * 1024)
            return false;
    milli *= 1000;
    p += whole;
    if (*p == '.') {
        size_t frac = strspn(++p, "0123456789");
        if (!frac || frac > 3)
            return false;
        for (size_t i = 0, scale = 100; i < frac; i++, scale /= 10)
            milli += (uint64_t)(p[i] - '0') * scale;
        p += frac;
    }
    if (*p || milli > UINT32_MAX)
        return false;
    *out = (uint32_t)milli;
    return true;
}

static sm_code set_limit(sm_vm_config *cfg, int c, const char *arg)
{
    if (c == VM_FLAG_MEMORY_LIMIT) {
        uint64_t bytes;
        return number_bytes(arg, &bytes) && bytes ? sm_vm_config_memory_limit(cfg, bytes) : SM_E_INVALID;
    }
    uint32_t milli;
    return parse_millicpus(arg, &milli) && milli ? sm_vm_config_cpu_limit(cfg, milli) : SM_E_INVALID;
}

/* SOURCE:GUEST_PATH[:ro|:rw]; the library checks both parts and says why. */
static bool volume_flag_apply(const char *prog, sm_vm_config *cfg, const char *arg)
{
    char spec[4096 + 512];
    if (snprintf(spec, sizeof spec, "%s", arg) >= (int)sizeof spec) {
        fprintf(stderr, "%s: --volume is too long\n", prog);
        return false;
    }
    bool read_only = false;
    size_t n = strlen(spec);
    if (n > 3 && (!strcmp(spec + n - 3, ":ro") || !strcmp(spec + n - 3, ":rw"))) {
        read_only = spec[n - 2] == 'r' && spec[n - 1] == 'o';
        spec[n - 3] = 0;
    }
    char *colon = strchr(spec, ':');
    if (!colon || colon == spec || !colon[1]) {
        fprintf(stderr, "%s: --volume wants NAME:GUEST_PATH or FILE:GUEST_PATH, with :ro to mount it "
                        "read-only, not '%s'\n", prog, arg);
        return false;
    }
    *colon = 0;
    sm_error err = { 0 };
    if (sm_vm_config_volume(cfg, spec, colon + 1, read_only, &err) == SM_OK)
        return true;
    fprintf(stderr, "%s: --volume %s: %s\n", prog, arg, err.message);
    return false;
}

/* --allow, --deny, --net, -p: the library checks the text and says why. */
static bool net_flag_apply(const char *prog, sm_vm_config *cfg, int c, const char *arg)
{
    sm_error err = { 0 };
    sm_code rc;
    if (c == VM_FLAG_NET) {
        bool on = !strcmp(arg, "on");
        if (!on && strcmp(arg, "off")) {
            fprintf(stderr, "%s: --net wants on or off, not '%s'\n", prog, arg);
            return false;
        }
        return sm_vm_config_net(cfg, on) == SM_OK;
    }
    rc = c == VM_FLAG_ALLOW  ? sm_vm_config_allow(cfg, arg, &err)
         : c == VM_FLAG_DENY ? sm_vm_config_deny(cfg, arg, &err)
                             : sm_vm_config_publish(cfg, arg, &err);
    if (rc)
        fprintf(stderr, "%s: %s\n", prog, err.message);
    return rc == SM_OK;
}

bool vm_flag_apply(const char *prog, sm_vm_config *cfg, int c, const char *arg)
{
    if (c == VM_FLAG_ALLOW || c == VM_FLAG_DENY || c == VM_FLAG_NET || c == VM_FLAG_PUBLISH)
        return net_flag_apply(prog, cfg, c, arg);
    if (c == VM_FLAG_VOLUME)
        return volume_flag_apply(prog, cfg, arg);
    sm_code rc;
    uint64_t bytes;
    switch (c) {
    case VM_FLAG_MEMORY:
    case VM_FLAG_CPUS: rc = set_count(cfg, c, arg); break;
    case VM_FLAG_KERNEL: rc = sm_vm_config_kernel(cfg, arg); break;
    case VM_FLAG_INITRD: rc = sm_vm_config_initrd(cfg, arg); break;
    case VM_FLAG_CONSOLE: rc = sm_vm_config_console_path(cfg, arg); break;
    case VM_FLAG_BOOT_TIMEOUT: rc = set_boot_timeout(cfg, arg); break;
    case VM_FLAG_MEMORY_LIMIT:
    case VM_FLAG_CPU_LIMIT: rc = set_limit(cfg, c, arg); break;
    case VM_FLAG_VOLUME_SIZE:
        rc = number_bytes(arg, &bytes) ? sm_vm_config_volume_size(cfg, bytes) : SM_E_INVALID;
        break;
    default: return false;
    }
    if (rc && c == VM_FLAG_MEMORY_LIMIT)
        fprintf(stderr, "%s: --memory-limit wants a size of at least 64M (bytes, or with K, M, G, T), "
                        "not '%s'\n", prog, arg);
    else if (rc && c == VM_FLAG_VOLUME_SIZE)
        fprintf(stderr, "%s: --volume-size wants a size from 16M to 16T (bytes, or with K, M, G, T), not '%s'\n",
                prog, arg);
    else if (rc && c == VM_FLAG_CPU_LIMIT)
        fprintf(stderr, "%s: --cpu-limit wants CPUs from 0.01 to 1024 (e.g. 0.5 or 2), not '%s'\n", prog, arg);
    else if (rc)
        fprintf(stderr, "%s: bad value '%s' for %s\n", prog, arg, vm_flag_name(c));
    return rc == SM_OK;
}
