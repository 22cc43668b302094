#!/bin/busybox sh
# bench/net: /init of the QEMU guest (our guest kernel, this initramfs,
# QEMU's -netdev user with virtio-net-device). It sets eth0 up as our agent
# does in our guest (src/agent/netconf.c: 10.0.2.15/24, default route via
# 10.0.2.2), then runs the same net_worker as our guest, named "qemu", against
# net_bench's server: QEMU's user network, like our NAT, takes 10.0.2.2 to the
# host's 127.0.0.1. The kernel hands init the parameter nb_port=PORT as an
# environment variable. When the worker is told to quit, the guest powers off.
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb ip link set lo up
if $bb ip link set eth0 up && $bb ip addr add 10.0.2.15/24 dev eth0 &&
    $bb ip route add default via 10.0.2.2; then
    echo "bench/net: eth0 up, virtio features (bit 0 first) $($bb cat /sys/class/net/eth0/device/features)"
    /bin/net_worker 10.0.2.2 "$nb_port" qemu
    echo "bench/net: net_worker exited with status $?"
else
    echo "bench/net: could not set up eth0"
    $bb ip link
fi
$bb poweroff -f
