/*
 * The guest's network, as the VMM's NAT expects it (src/vmm/network.h):
 *
 *   eth0           10.0.2.15/24, up
 *   default route  via 10.0.2.2 (the NAT)
 *   resolv.conf    nameserver 10.0.2.3, unless the image names its own
 *   /etc/hosts     10.0.2.2 host.internal (the host's loopback, where allowed)
 *
 * Every VM, every clone of a snapshot included, has the same addresses: each
 * has a NAT of its own. Off means eth0 down, leaving only lo. A guest without
 * eth0 (a VM started with --net off) has nothing to configure.
 */
#include "agent/agent.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define GUEST_IF "eth0"
#define GUEST_ADDR "10.0.2.15"
#define GUEST_NETMASK "255.255.255.0"
#define NAT_GATEWAY "10.0.2.2"
#define NAT_DNS "10.0.2.3"
#define HOST_NAME "host.internal"

static void set_sockaddr(struct sockaddr *sa, const char *addr)
{
    struct sockaddr_in *in = (struct sockaddr_in *)sa;
    memset(in, 0, sizeof *in);
    in->sin_family = AF_INET;
    inet_pton(AF_INET, addr, &in->sin_addr);
}

static bool if_request(int fd, unsigned long req, struct ifreq *ifr, const char *what, char *why, size_t whylen)
{
    if (ioctl(fd, req, ifr) == 0)
        return true;
    snprintf(why, whylen, "%s on " GUEST_IF ": %s", what, strerror(errno));
    return false;
}

static bool set_up(int fd, bool up, char *why, size_t whylen)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, GUEST_IF);
    if (!if_request(fd, SIOCGIFFLAGS, &ifr, "reading the flags", why, whylen))
        return false;
    ifr.ifr_flags = up ? (short)(ifr.ifr_flags | IFF_UP) : (short)(ifr.ifr_flags & ~IFF_UP);
    return if_request(fd, SIOCSIFFLAGS, &ifr, up ? "bringing it up" : "bringing it down", why, whylen);
}

static bool set_address(int fd, char *why, size_t whylen)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, GUEST_IF);
    set_sockaddr(&ifr.ifr_addr, GUEST_ADDR);
    if (!if_request(fd, SIOCSIFADDR, &ifr, "setting " GUEST_ADDR, why, whylen))
        return false;
    set_sockaddr(&ifr.ifr_netmask, GUEST_NETMASK);
    return if_request(fd, SIOCSIFNETMASK, &ifr, "setting its netmask", why, whylen);
}

static bool add_default_route(int fd, char *why, size_t whylen)
{
    struct rtentry rt;
    memset(&rt, 0, sizeof rt);
    set_sockaddr(&rt.rt_dst, "0.0.0.0");
    set_sockaddr(&rt.rt_genmask, "0.0.0.0");
    set_sockaddr(&rt.rt_gateway, NAT_GATEWAY);
    rt.rt_flags = RTF_UP | RTF_GATEWAY;
    rt.rt_dev = (char *)GUEST_IF;
    if (ioctl(fd, SIOCADDRT, &rt) == 0 || errno == EEXIST)
        return true;
    snprintf(why, whylen, "adding the default route via " NAT_GATEWAY ": %s", strerror(errno));
    return false;
}

/* True when path holds a line starting with prefix. */
static bool has_line(const char *path, const char *prefix)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    char line[512];
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = strncmp(line, prefix, strlen(prefix)) == 0;
    fclose(f);
    return found;
}

static void append_line(const char *path, const char *line)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, line, strlen(line)) != (ssize_t)strlen(line))
        agent_log("cannot write %s: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
}

/* The names: an image that brings its own resolver keeps it. */
static void name_services(void)
{
    if (!has_line("/etc/resolv.conf", "nameserver"))
        append_line("/etc/resolv.conf", "nameserver " NAT_DNS "\n");
    if (!has_line("/etc/hosts", NAT_GATEWAY "\t" HOST_NAME))
        append_line("/etc/hosts", NAT_GATEWAY "\t" HOST_NAME "\n");
}

bool netconf_present(void)
{
    return if_nametoindex(GUEST_IF) != 0;
}

bool netconf_apply(bool on, char *why, size_t whylen)
{
    if (!netconf_present()) {
        if (!on)
            return true;
        snprintf(why, whylen, "this guest has no " GUEST_IF " (its VM was started without a network)");
        return false;
    }
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(why, whylen, "socket: %s", strerror(errno));
        return false;
    }
    bool ok = on ? set_address(fd, why, whylen) && set_up(fd, true, why, whylen) &&
                       add_default_route(fd, why, whylen)
                 : set_up(fd, false, why, whylen);
    close(fd);
    if (ok && on)
        name_services();
    return ok;
}
