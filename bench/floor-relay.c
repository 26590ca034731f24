/*
 * floor-relay: the least a DERP relay can do, as a yardstick for bench/run-floor.ts. Not part of wiremesh.
 *
 * It answers the HTTP upgrade, sends a ServerKey frame, takes the client's key from its ClientInfo frame without
 * opening the box, answers with a ServerInfo frame whose box is never opened by the bench client, and then relays
 * SendPacket frames (spec/derp.md §3, §5): each becomes its RecvPacket in the read buffer (type byte and key
 * rewritten in place) and each run of frames for one destination goes out in one send(), the same batching as the
 * wiremesh fast path. No TLS, no limits, no metrics, no watchers; every other frame type is skipped.
 *
 *   cc -O2 -o build/floor-relay bench/floor-relay.c && build/floor-relay   (prints "floor: listening port=P")
 *
 * One thread, epoll level-triggered, recv() of up to READ_CHUNK bytes per readable event. What a destination's
 * socket does not take waits in its pending buffer (at most PENDING_MAX bytes; beyond it the frames are dropped,
 * which the closed-loop bench never reaches).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK (64 * 1024)
#define PENDING_MAX (1024 * 1024)
#define MAX_FD 65536
#define HDR 5
#define KEY 32
#define MAX_FRAME (64 * 1024)
#define TABLE 131072 /* key table slots (power of two) */

enum { ST_HTTP, ST_CLIENT_INFO, ST_OPEN };
enum { SERVER_KEY = 1, CLIENT_INFO = 2, SERVER_INFO = 3, SEND_PACKET = 4, RECV_PACKET = 5 };

typedef struct {
  int fd, state, out_on;
  uint8_t key[KEY];
  uint8_t *carry; /* bytes of a frame cut by the end of a read (or the handshake so far) */
  size_t carry_len;
  uint8_t *pend; /* bytes the socket has not taken yet */
  size_t pend_len;
} conn;

static conn *conns[MAX_FD];
static conn *table[TABLE];
static int ep;
static uint8_t rbuf[READ_CHUNK + MAX_FRAME + HDR];

static uint32_t key_hash(const uint8_t *k) {
  uint32_t h;
  memcpy(&h, k, 4);
  return h & (TABLE - 1);
}

static conn *lookup(const uint8_t *k) {
  for (uint32_t i = key_hash(k);; i = (i + 1) & (TABLE - 1)) {
    if (table[i] == NULL) return NULL;
    if (table[i] != (conn *)1 && memcmp(table[i]->key, k, KEY) == 0) return table[i];
  }
}

static void table_put(conn *c) {
  uint32_t i = key_hash(c->key);
  while (table[i] != NULL && table[i] != (conn *)1) i = (i + 1) & (TABLE - 1);
  table[i] = c;
}

static void table_del(conn *c) {
  for (uint32_t i = key_hash(c->key);; i = (i + 1) & (TABLE - 1)) {
    if (table[i] == NULL) return;
    if (table[i] == c) {
      table[i] = (conn *)1;
      return;
    }
  }
}

static void set_out(conn *c, int on) {
  if (c->out_on == on) return;
  c->out_on = on;
  struct epoll_event e = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.fd = c->fd};
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

static void drop(conn *c) {
  if (c->state == ST_OPEN) table_del(c);
  conns[c->fd] = NULL;
  close(c->fd);
  free(c->carry);
  free(c->pend);
  free(c);
}

/* Sends what it can of p[0, n) after anything pending; keeps the rest (up to PENDING_MAX). */
static void out(conn *c, const uint8_t *p, size_t n) {
  if (c->pend_len == 0) {
    ssize_t k = send(c->fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (k < 0) k = (errno == EAGAIN || errno == EINTR) ? 0 : (ssize_t)n;
    p += k;
    n -= (size_t)k;
    if (n == 0) return;
  }
  if (c->pend_len + n > PENDING_MAX) return;
  c->pend = realloc(c->pend, c->pend_len + n);
  memcpy(c->pend + c->pend_len, p, n);
  c->pend_len += n;
  set_out(c, 1);
}

static void flush(conn *c) {
  ssize_t k = send(c->fd, c->pend, c->pend_len, MSG_DONTWAIT | MSG_NOSIGNAL);
  if (k <= 0) return;
  memmove(c->pend, c->pend + k, c->pend_len - (size_t)k);
  c->pend_len -= (size_t)k;
  if (c->pend_len == 0) set_out(c, 0);
}

static void frame(conn *c, int type, const uint8_t *body, uint32_t len) {
  uint8_t h[HDR] = {(uint8_t)type, (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len};
  out(c, h, HDR);
  out(c, body, len);
}

/* Handshake input in c->carry; returns the bytes used, or -1 to drop the connection. */
static ssize_t handshake(conn *c, const uint8_t *b, size_t n) {
  if (c->state == ST_HTTP) {
    const uint8_t *end = memmem(b, n, "\r\n\r\n", 4);
    if (end == NULL) return n > 8192 ? -1 : 0;
    static const char resp[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\r\n";
    out(c, (const uint8_t *)resp, sizeof resp - 1);
    uint8_t sk[8 + KEY] = {0x44, 0x45, 0x52, 0x50, 0xf0, 0x9f, 0x94, 0x91, 9};
    frame(c, SERVER_KEY, sk, sizeof sk);
    c->state = ST_CLIENT_INFO;
    return end + 4 - b;
  }
  if (n < HDR) return 0;
  uint32_t len = (uint32_t)b[1] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 8 | b[4];
  if (b[0] != CLIENT_INFO || len < KEY || len > 8192) return -1;
  if (n < HDR + len) return 0;
  memcpy(c->key, b + HDR, KEY);
  conn *old = lookup(c->key);
  if (old != NULL) table_del(old);
  table_put(c);
  uint8_t info[24 + 16 + 2] = {0};
  frame(c, SERVER_INFO, info, sizeof info);
  c->state = ST_OPEN;
  return HDR + len;
}

/* Relays the whole frames in b[0, n) from c; returns the bytes used. */
static size_t relay(conn *c, uint8_t *b, size_t n) {
  size_t off = 0, run_at = 0;
  conn *run = NULL;
  while (n - off >= HDR) {
    uint32_t len = (uint32_t)b[off + 1] << 24 | (uint32_t)b[off + 2] << 16 | (uint32_t)b[off + 3] << 8 | b[off + 4];
    if (len > MAX_FRAME) {
      off = n; /* garbage: give up on this read */
      break;
    }
    if (n - off < HDR + len) break;
    conn *dst = NULL;
    if (b[off] == SEND_PACKET && len >= KEY) dst = lookup(b + off + HDR);
    if (dst != run) {
      if (run != NULL) out(run, b + run_at, off - run_at);
      run = dst;
      run_at = off;
    }
    if (dst != NULL) {
      b[off] = RECV_PACKET;
      memcpy(b + off + HDR, c->key, KEY);
    }
    off += HDR + len;
  }
  if (run != NULL) out(run, b + run_at, off - run_at);
  return off;
}

static void readable(conn *c) {
  size_t have = c->carry_len;
  if (have > 0) memcpy(rbuf, c->carry, have);
  ssize_t k = recv(c->fd, rbuf + have, READ_CHUNK, 0);
  if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR)) {
    drop(c);
    return;
  }
  if (k < 0) return;
  size_t n = have + (size_t)k, used = 0;
  while (c->state != ST_OPEN) {
    ssize_t u = handshake(c, rbuf + used, n - used);
    if (u < 0) {
      drop(c);
      return;
    }
    if (u == 0) break;
    used += (size_t)u;
  }
  if (c->state == ST_OPEN) used += relay(c, rbuf + used, n - used);
  c->carry_len = n - used;
  if (c->carry_len > 0) {
    c->carry = realloc(c->carry, c->carry_len);
    memmove(c->carry, rbuf + used, c->carry_len);
  }
}

int main(void) {
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 4096) < 0) return perror("listen"), 1;
  getsockname(ls, (struct sockaddr *)&a, &al);
  printf("floor: listening port=%d\n", ntohs(a.sin_port));
  fflush(stdout);
  ep = epoll_create1(0);
  struct epoll_event e = {.events = EPOLLIN, .data.fd = ls}, evs[256];
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &e);
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == ls) {
        int s;
        while ((s = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          if (s >= MAX_FD) {
            close(s);
            continue;
          }
          setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          conn *c = calloc(1, sizeof *c);
          c->fd = s;
          conns[s] = c;
          struct epoll_event ce = {.events = EPOLLIN, .data.fd = s};
          epoll_ctl(ep, EPOLL_CTL_ADD, s, &ce);
        }
        continue;
      }
      conn *c = conns[fd];
      if (c != NULL && (evs[i].events & EPOLLOUT)) flush(c);
      c = conns[fd];
      if (c != NULL && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) readable(c);
    }
  }
}
