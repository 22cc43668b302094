/*
 * supermachine-vmm: one VM in its own process, so that a VMM fault never
 * takes its embedder down. For now it boots a VM exactly as `supermachine
 * boot` does (same options, same exit statuses); the host library's VM
 * lifecycle drives it over its control socket in later work.
 */
#include "cli/commands.h"

int main(int argc, char **argv)
{
    return cmd_boot(argc, argv);
}
