/*
 * libFuzzer target: the egress filter (src/vmm/net_filter.c) on any frame a
 * hostile guest can send. Whatever the verdict, nothing is read past the
 * frame (ASan), and a refusal is a whole frame of at most NET_REFUSAL_MAX
 * bytes that the filter itself would drop or pass, never refuse (a refusal
 * must not call for another).
 *
 *   build/fuzz/fuzz_net_filter -max_total_time=20
 */
#include "vmm/net_filter.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct net_policy policy;
static int ready;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ready) {
        net_policy_init(&policy);
        struct net_rule r;
        char why[128];
        if (net_rule_parse("10.0.2.2:8080", NET_ALLOW, &r, why, sizeof why))
            net_policy_add(&policy, &r, why, sizeof why);
        ready = 1;
    }
    if (size > 2048)
        return 0;
    /* A copy of exactly size bytes, so ASan sees any read past the frame. */
    uint8_t *frame = malloc(size ? size : 1);
    if (!frame)
        return 0;
    memcpy(frame, data, size);
    enum net_verdict v = net_filter_judge(&policy, NULL, frame, size);
    uint8_t out[NET_REFUSAL_MAX];
    size_t n = net_filter_refusal(frame, size, out);
    if (v != NET_VERDICT_REFUSE && v != NET_VERDICT_DROP && v != NET_VERDICT_PASS)
        abort();
    if (n > NET_REFUSAL_MAX)
        abort();
    if (n && net_filter_judge(&policy, NULL, out, n) == NET_VERDICT_REFUSE)
        abort();
    free(frame);
    return 0;
}
