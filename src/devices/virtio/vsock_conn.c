/* The socket-free core of virtio-vsock; the header table is in vsock_conn.h. */
#include "devices/virtio/vsock_conn.h"

#include <stdlib.h>
#include <string.h>

/* --- header ------------------------------------------------------------------------ */

static void put_le(uint8_t *p, uint64_t v, unsigned bytes)
{
    for (unsigned i = 0; i < bytes; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, unsigned bytes)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < bytes; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

void vsock_hdr_encode(const struct vsock_hdr *h, uint8_t out[VSOCK_HDR_SIZE])
{
    put_le(out + 0, h->src_cid, 8);
    put_le(out + 8, h->dst_cid, 8);
    put_le(out + 16, h->src_port, 4);
    put_le(out + 20, h->dst_port, 4);
    put_le(out + 24, h->len, 4);
    put_le(out + 28, h->type, 2);
    put_le(out + 30, h->op, 2);
    put_le(out + 32, h->flags, 4);
    put_le(out + 36, h->buf_alloc, 4);
    put_le(out + 40, h->fwd_cnt, 4);
}

void vsock_hdr_decode(const uint8_t in[VSOCK_HDR_SIZE], struct vsock_hdr *h)
{
    h->src_cid = get_le(in + 0, 8);
    h->dst_cid = get_le(in + 8, 8);
    h->src_port = (uint32_t)get_le(in + 16, 4);
    h->dst_port = (uint32_t)get_le(in + 20, 4);
    h->len = (uint32_t)get_le(in + 24, 4);
    h->type = (uint16_t)get_le(in + 28, 2);
    h->op = (uint16_t)get_le(in + 30, 2);
    h->flags = (uint32_t)get_le(in + 32, 4);
    h->buf_alloc = (uint32_t)get_le(in + 36, 4);
    h->fwd_cnt = (uint32_t)get_le(in + 40, 4);
}

const char *vsock_op_name(uint32_t op)
{
    static const char *const names[] = { "INVALID", "REQUEST", "RESPONSE", "RST",
                                         "SHUTDOWN", "RW", "CREDIT_UPDATE", "CREDIT_REQUEST" };
    return op < sizeof names / sizeof names[0] ? names[op] : "unknown";
}

/* --- byte ring ------------------------------------------------------------------------ */

int vsock_ring_push(struct vsock_ring *r, uint32_t cap, const void *src, uint32_t len)
{
    if (len == 0)
        return 0;
    if (!r->data) {
        r->data = malloc(cap);
        if (!r->data)
            return -1;
        r->cap = cap;
        r->head = r->len = 0;
    }
    if (len > r->cap - r->len)
        return -1;
    uint32_t tail = (r->head + r->len) % r->cap;
    uint32_t first = r->cap - tail < len ? r->cap - tail : len;
    memcpy(r->data + tail, src, first);
    memcpy(r->data, (const uint8_t *)src + first, len - first);
    r->len += len;
    return 0;
}

int vsock_ring_iov(const struct vsock_ring *r, struct iovec iov[2])
{
    if (!r->len)
        return 0;
    uint32_t first = r->cap - r->head < r->len ? r->cap - r->head : r->len;
    iov[0] = (struct iovec){ .iov_base = r->data + r->head, .iov_len = first };
    if (first == r->len)
        return 1;
    iov[1] = (struct iovec){ .iov_base = r->data, .iov_len = r->len - first };
    return 2;
}

void vsock_ring_consume(struct vsock_ring *r, uint32_t n)
{
    if (n > r->len)
        n = r->len;
    r->len -= n;
    r->head = r->len ? (r->head + n) % r->cap : 0;
    if (!r->len)
        vsock_ring_free(r); /* idle connections hold no buffer */
}

void vsock_ring_free(struct vsock_ring *r)
{
    free(r->data);
    *r = (struct vsock_ring){ 0 };
}

/* --- connection table ------------------------------------------------------------------ */

static uint32_t bucket_of(uint32_t local_port, uint32_t peer_port)
{
    uint32_t h = local_port * 2654435761u ^ (peer_port + 0x9e3779b9u) * 2246822519u;
    return (h ^ (h >> 15)) & (VSOCK_HASH_BUCKETS - 1);
}

int vsock_table_init(struct vsock_conn_table *t, uint32_t max)
{
    memset(t, 0, sizeof *t);
    t->conns = calloc(max, sizeof *t->conns);
    if (!t->conns)
        return -1;
    t->max = max;
    for (uint32_t i = 0; i < VSOCK_HASH_BUCKETS; i++)
        t->buckets[i] = -1;
    for (uint32_t i = 0; i < max; i++) {
        t->conns[i].index = i;
        t->conns[i].fd = -1;
        t->conns[i].free_next = i + 1 < max ? (int32_t)(i + 1) : -1;
    }
    t->free_head = max ? 0 : -1;
    t->next_ephemeral = 1u << 30;
    return 0;
}

void vsock_table_destroy(struct vsock_conn_table *t)
{
    if (t->conns)
        for (uint32_t i = 0; i < t->max; i++)
            vsock_ring_free(&t->conns[i].to_host);
    free(t->conns);
    t->conns = NULL;
    t->max = t->count = 0;
}

struct vsock_conn *vsock_table_slot(const struct vsock_conn_table *t, uint32_t i)
{
    return i < t->max ? &t->conns[i] : NULL;
}

struct vsock_conn *vsock_table_alloc(struct vsock_conn_table *t)
{
    if (t->free_head < 0)
        return NULL;
    struct vsock_conn *c = &t->conns[t->free_head];
    t->free_head = c->free_next;
    uint32_t index = c->index, gen = c->gen + 1;
    memset(c, 0, sizeof *c);
    c->index = index;
    c->gen = gen;
    c->fd = -1;
    c->state = VSOCK_CONN_HOST_HANDSHAKE; /* callers set the real state */
    c->rx_prev = c->rx_next = c->hash_next = c->free_next = -1;
    t->count++;
    return c;
}

struct vsock_conn *vsock_table_alloc_leaving(struct vsock_conn_table *t, uint32_t keep_free)
{
    return t->max - t->count > keep_free ? vsock_table_alloc(t) : NULL;
}

struct vsock_conn *vsock_table_find(const struct vsock_conn_table *t, uint32_t local_port, uint32_t peer_port)
{
    /* A chain is at most max long: every slot is in at most one bucket once. */
    int32_t i = t->buckets[bucket_of(local_port, peer_port)];
    for (uint32_t steps = 0; i >= 0 && steps < t->max; steps++) {
        struct vsock_conn *c = &t->conns[i];
        if (c->local_port == local_port && c->peer_port == peer_port)
            return c;
        i = c->hash_next;
    }
    return NULL;
}

int vsock_table_bind(struct vsock_conn_table *t, struct vsock_conn *c, uint32_t local_port, uint32_t peer_port)
{
    if (c->hashed || vsock_table_find(t, local_port, peer_port))
        return -1;
    uint32_t b = bucket_of(local_port, peer_port);
    c->local_port = local_port;
    c->peer_port = peer_port;
    c->hash_next = t->buckets[b];
    t->buckets[b] = (int32_t)c->index;
    c->hashed = true;
    return 0;
}

static void unhash(struct vsock_conn_table *t, struct vsock_conn *c)
{
    int32_t *link = &t->buckets[bucket_of(c->local_port, c->peer_port)];
    for (uint32_t steps = 0; *link >= 0 && steps < t->max; steps++) {
        if (*link == (int32_t)c->index) {
            *link = c->hash_next;
            break;
        }
        link = &t->conns[*link].hash_next;
    }
    c->hashed = false;
    c->hash_next = -1;
}

void vsock_table_release(struct vsock_conn_table *t, struct vsock_conn *c)
{
    if (c->state == VSOCK_CONN_FREE)
        return;
    if (c->hashed)
        unhash(t, c);
    vsock_ring_free(&c->to_host);
    c->state = VSOCK_CONN_FREE;
    c->fd = -1;
    c->pending = 0;
    c->free_next = t->free_head;
    t->free_head = (int32_t)c->index;
    t->count--;
}

uint32_t vsock_table_ephemeral_port(struct vsock_conn_table *t, uint32_t peer_port)
{
    /* At most count pairs can be taken, so count + 1 candidates always find one. */
    for (uint32_t tries = 0; tries <= t->count; tries++) {
        uint32_t port = t->next_ephemeral;
        t->next_ephemeral = port == UINT32_MAX - 1 ? 1u << 30 : port + 1;
        if (!vsock_table_find(t, port, peer_port))
            return port;
    }
    return t->next_ephemeral; /* unreachable: a bind of it fails cleanly */
}

void vsock_table_reseed_ephemeral(struct vsock_conn_table *t, uint32_t seed)
{
    t->next_ephemeral = (1u << 30) + seed % (UINT32_MAX - 1 - (1u << 30));
}

/* --- credit ------------------------------------------------------------------------------ */

uint32_t vsock_conn_peer_credit(const struct vsock_conn *c)
{
    uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt; /* wraps like the guest's counters */
    return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

void vsock_conn_update_peer(struct vsock_conn *c, const struct vsock_hdr *h)
{
    c->peer_buf_alloc = h->buf_alloc;
    c->peer_fwd_cnt = h->fwd_cnt;
    if (vsock_conn_peer_credit(c) > 0)
        c->credit_requested = false;
}

bool vsock_conn_credit_update_due(const struct vsock_conn *c)
{
    return (uint32_t)(c->fwd_cnt - c->fwd_cnt_sent) >= VSOCK_CONN_BUF_ALLOC / 2;
}

/* --- handshake -------------------------------------------------------------------------- */

int vsock_parse_connect_line(const char *line, uint32_t len, uint32_t *port)
{
    static const char prefix[] = "CONNECT ";
    const uint32_t plen = sizeof prefix - 1;
    if (len < plen + 2 || memcmp(line, prefix, plen) != 0 || line[len - 1] != '\n')
        return -1;
    uint32_t digits = len - plen - 1;
    if (digits > 10)
        return -1;
    uint64_t v = 0;
    for (uint32_t i = 0; i < digits; i++) {
        char ch = line[plen + i];
        if (ch < '0' || ch > '9')
            return -1;
        v = v * 10 + (uint64_t)(ch - '0');
    }
    if (v > UINT32_MAX)
        return -1;
    *port = (uint32_t)v;
    return 0;
}
