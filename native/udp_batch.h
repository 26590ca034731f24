/*
 * udp_batch: shared definitions of the recvmmsg/sendmmsg socket (native/udp_batch_io.c: the socket and the
 * syscalls, no Node-API) and its Node-API glue (native/udp_batch.c). docs/stun.md "Batched UDP path";
 * spec/node-performance.md §2, §4. Every bound is listed in docs/LIMITS.md (STUN section).
 *
 * Buffers shared with JS (allocated by src/net/udp-batch.ts, pinned here until close):
 *   slabs  UB_MAX_BATCH slots of UB_SLOT_BYTES
 *   metas  UB_MAX_BATCH records of UB_META_BYTES, native byte order:
 *          int32 length | int32 flags (UB_FLAG_TRUNCATED) | int32 family 4|6 | int32 port | uint8 address[16]
 *          (IPv4 in the first 4 address bytes; an IPv4-mapped IPv6 source is reported as family 4)
 *   stats  UB_STATS_COUNT doubles, indexed by the ST_* values
 */
#ifndef WIREMESH_UDP_BATCH_H
#define WIREMESH_UDP_BATCH_H

#define _GNU_SOURCE
#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>

/* Datagrams per recvmmsg/sendmmsg call and per JS callback (spec/node-performance.md §4: 64 per wakeup). */
#define UB_MAX_BATCH 64
/* Bytes per slab slot: a larger datagram is truncated and flagged (STUN requests are 20-100 bytes). */
#define UB_SLOT_BYTES 2048
/* Bytes per meta record: 4 int32 + 16 address bytes, padded to 32. */
#define UB_META_BYTES 32
/* recvmmsg rounds per readiness wakeup before yielding to the event loop (at most 1024 datagrams). */
#define UB_MAX_ROUNDS 16
/* SO_RCVBUF / SO_SNDBUF asked for (the kernel caps it at net.core.[rw]mem_max unless we may FORCE). */
#define UB_SOCKBUF_BYTES (4 * 1024 * 1024)
/* Counters in the stats Float64Array. */
#define UB_STATS_COUNT 8
#define UB_FLAG_TRUNCATED 1
/* Version of the JS<->C contract; bumped on any layout change (checked by src/net/udp-batch.ts). */
#define UB_ABI 1

enum {
  ST_RECV_PACKETS = 0,
  ST_RECV_BATCHES = 1,
  ST_RECV_TRUNCATED = 2,
  ST_RECV_ERRORS = 3,
  ST_SEND_PACKETS = 4,
  ST_SEND_DROPPED = 5,
  ST_SEND_ERRORS = 6,
  ST_LAST_ERRNO = 7,
};

typedef union {
  struct sockaddr sa;
  struct sockaddr_in v4;
  struct sockaddr_in6 v6;
} ub_addr;

/* The socket and its fixed per-batch scratch (no allocation after open). */
typedef struct {
  int fd;
  int family; /* 4 | 6 */
  uint8_t *recv_slab, *recv_meta, *send_slab, *send_meta;
  double *stats;
  struct mmsghdr rmsgs[UB_MAX_BATCH];
  struct iovec riov[UB_MAX_BATCH];
  ub_addr raddr[UB_MAX_BATCH];
  struct mmsghdr smsgs[UB_MAX_BATCH];
  struct iovec siov[UB_MAX_BATCH];
  ub_addr saddr[UB_MAX_BATCH];
} ub_io;

/* Binds a non-blocking UDP socket; returns the fd, or -errno with *syscall naming the failed call
 * ("inet_pton" with -EINVAL when host is not a literal of `family`). */
int ub_io_bind(int family, const char *host, int port, int v6only, const char **syscall);
/* One recvmmsg round into the slab + meta: returns the count (> 0), 0 when nothing is queued, -1 after a
 * counted receive error (the caller may keep reading). */
int ub_io_recv(ub_io *io);
/* sendmmsg of send slots [first, first+count); returns how many the kernel accepted (failures counted). */
int ub_io_send(ub_io *io, int first, int count);
/* The bound port, or -errno. */
int ub_io_port(const ub_io *io);

#endif
