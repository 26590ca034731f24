/*
 * udp_batch I/O: the UDP socket, recvmmsg into the shared slab + meta records, sendmmsg from them
 * (spec/node-performance.md §2 "no recvmmsg/sendmmsg in dgram"). Plain POSIX, no Node-API: the glue that polls
 * it and calls JS is native/udp_batch.c. Layout and bounds: native/udp_batch.h.
 */
#include "udp_batch.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

int ub_io_bind(int family, const char *host, int port, int v6only, const char **syscall) {
  ub_addr addr;
  socklen_t alen;
  memset(&addr, 0, sizeof addr);
  *syscall = "inet_pton";
  if (family == 4) {
    addr.v4.sin_family = AF_INET;
    addr.v4.sin_port = htons((uint16_t)port);
    alen = sizeof addr.v4;
    if (inet_pton(AF_INET, host, &addr.v4.sin_addr) != 1) return -EINVAL;
  } else {
    addr.v6.sin6_family = AF_INET6;
    addr.v6.sin6_port = htons((uint16_t)port);
    alen = sizeof addr.v6;
    if (inet_pton(AF_INET6, host, &addr.v6.sin6_addr) != 1) return -EINVAL;
  }
  *syscall = "socket";
  int fd = socket(family == 4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1, zero = 0, sz = UB_SOCKBUF_BYTES;
  if (family == 6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, v6only ? &one : &zero, sizeof one);
  /* FORCE variants exceed net.core.*mem_max but need CAP_NET_ADMIN; fall back to the capped ones. */
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz) != 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof sz) != 0) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
  *syscall = "bind";
  if (bind(fd, &addr.sa, alen) != 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  return fd;
}

int ub_io_port(const ub_io *io) {
  ub_addr a;
  socklen_t alen = sizeof a;
  if (getsockname(io->fd, &a.sa, &alen) != 0) return -errno;
  return ntohs(a.sa.sa_family == AF_INET ? a.v4.sin_port : a.v6.sin6_port);
}

/* Writes one received datagram's meta record. */
static void put_meta(uint8_t *rec, int len, int flags, const ub_addr *a) {
  int32_t *w = (int32_t *)rec;
  uint8_t *ip = rec + 16;
  w[0] = len;
  w[1] = flags;
  if (a->sa.sa_family == AF_INET) {
    w[2] = 4;
    w[3] = ntohs(a->v4.sin_port);
    memcpy(ip, &a->v4.sin_addr, 4);
  } else if (a->sa.sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&a->v6.sin6_addr)) {
    w[2] = 4;
    w[3] = ntohs(a->v6.sin6_port);
    memcpy(ip, a->v6.sin6_addr.s6_addr + 12, 4);
  } else {
    w[2] = 6;
    w[3] = ntohs(a->v6.sin6_port);
    memcpy(ip, &a->v6.sin6_addr, 16);
  }
}

int ub_io_recv(ub_io *io) {
  for (int i = 0; i < UB_MAX_BATCH; i++) {
    io->riov[i].iov_base = io->recv_slab + (size_t)i * UB_SLOT_BYTES;
    io->riov[i].iov_len = UB_SLOT_BYTES;
    memset(&io->rmsgs[i].msg_hdr, 0, sizeof io->rmsgs[i].msg_hdr);
    io->rmsgs[i].msg_hdr.msg_name = &io->raddr[i];
    io->rmsgs[i].msg_hdr.msg_namelen = sizeof io->raddr[i];
    io->rmsgs[i].msg_hdr.msg_iov = &io->riov[i];
    io->rmsgs[i].msg_hdr.msg_iovlen = 1;
  }
  int n;
  do n = recvmmsg(io->fd, io->rmsgs, UB_MAX_BATCH, MSG_DONTWAIT, NULL);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    /* e.g. ECONNREFUSED from an ICMP error queued on the socket: consumed and counted. */
    io->stats[ST_RECV_ERRORS] += 1;
    io->stats[ST_LAST_ERRNO] = errno;
    return -1;
  }
  for (int i = 0; i < n; i++) {
    int flags = (io->rmsgs[i].msg_hdr.msg_flags & MSG_TRUNC) ? UB_FLAG_TRUNCATED : 0;
    if (flags) io->stats[ST_RECV_TRUNCATED] += 1;
    put_meta(io->recv_meta + (size_t)i * UB_META_BYTES, (int)io->rmsgs[i].msg_len, flags, &io->raddr[i]);
  }
  io->stats[ST_RECV_PACKETS] += n;
  if (n > 0) io->stats[ST_RECV_BATCHES] += 1;
  return n;
}

/* Fills the sockaddr for send slot `slot`; returns 0 if the meta record is invalid for this socket. */
static int send_addr(const ub_io *io, int slot, ub_addr *a, socklen_t *alen, size_t *len) {
  const uint8_t *rec = io->send_meta + (size_t)slot * UB_META_BYTES;
  const int32_t *w = (const int32_t *)rec;
  if (w[0] < 0 || w[0] > UB_SLOT_BYTES || w[3] < 0 || w[3] > 65535) return 0;
  *len = (size_t)w[0];
  memset(a, 0, sizeof *a);
  if (w[2] == 4 && io->family == 4) {
    a->v4.sin_family = AF_INET;
    a->v4.sin_port = htons((uint16_t)w[3]);
    memcpy(&a->v4.sin_addr, rec + 16, 4);
    *alen = sizeof a->v4;
  } else if (w[2] == 4 && io->family == 6) { /* IPv4 peer of a dual-stack socket: IPv4-mapped */
    a->v6.sin6_family = AF_INET6;
    a->v6.sin6_port = htons((uint16_t)w[3]);
    a->v6.sin6_addr.s6_addr[10] = 0xff;
    a->v6.sin6_addr.s6_addr[11] = 0xff;
    memcpy(a->v6.sin6_addr.s6_addr + 12, rec + 16, 4);
    *alen = sizeof a->v6;
  } else if (w[2] == 6 && io->family == 6) {
    a->v6.sin6_family = AF_INET6;
    a->v6.sin6_port = htons((uint16_t)w[3]);
    memcpy(&a->v6.sin6_addr, rec + 16, 16);
    *alen = sizeof a->v6;
  } else {
    return 0;
  }
  return 1;
}

int ub_io_send(ub_io *io, int first, int count) {
  int k = 0;
  for (int i = first; i < first + count; i++) {
    socklen_t alen;
    size_t len;
    if (!send_addr(io, i, &io->saddr[k], &alen, &len)) {
      io->stats[ST_SEND_ERRORS] += 1;
      io->stats[ST_LAST_ERRNO] = EINVAL;
      continue;
    }
    io->siov[k].iov_base = io->send_slab + (size_t)i * UB_SLOT_BYTES;
    io->siov[k].iov_len = len;
    memset(&io->smsgs[k].msg_hdr, 0, sizeof io->smsgs[k].msg_hdr);
    io->smsgs[k].msg_hdr.msg_name = &io->saddr[k];
    io->smsgs[k].msg_hdr.msg_namelen = alen;
    io->smsgs[k].msg_hdr.msg_iov = &io->siov[k];
    io->smsgs[k].msg_hdr.msg_iovlen = 1;
    k++;
  }
  int sent = 0;
  for (int i = 0; i < k;) {
    int r = sendmmsg(io->fd, &io->smsgs[i], (unsigned)(k - i), MSG_DONTWAIT);
    if (r > 0) {
      sent += r;
      i += r;
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
      io->stats[ST_SEND_DROPPED] += k - i; /* full send buffer: drop the rest, as UDP may */
      io->stats[ST_LAST_ERRNO] = errno;
      break;
    }
    /* The datagram at i failed (ECONNREFUSED, ENETUNREACH, EPERM, EINVAL...): skip it, send the rest. */
    io->stats[ST_SEND_ERRORS] += 1;
    io->stats[ST_LAST_ERRNO] = r < 0 ? errno : EIO;
    i++;
  }
  io->stats[ST_SEND_PACKETS] += sent;
  return sent;
}
