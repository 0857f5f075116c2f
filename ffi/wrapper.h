/* The DPDK headers we bind. Compiled with exactly `pkg-config --cflags libdpdk`. */
#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_memory.h>
#include <rte_malloc.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ethdev.h>
#include <rte_dev.h>
#include <rte_bus_vdev.h>
#include <rte_acl.h>
#include <rte_ring.h>
#include <rte_eth_ring.h>
#include <rte_pdump.h>
#include <rte_pcapng.h>
#include <rte_version.h>
#include <rte_prefetch.h>
#include <rte_vhost.h>
#include <rte_eth_vhost.h>
#include <rte_telemetry.h>

/* rte_errno is a thread-local macro; this accessor lets Rust read it (wrapped like any static inline). */
static inline int rte_errno_value(void) { return rte_errno; }
