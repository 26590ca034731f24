/*
 * udp_batch: a UDP socket that receives with recvmmsg(2) and sends with sendmmsg(2), for the STUN server's hot
 * path (issue #6; spec/node-performance.md §2 "no recvmmsg/sendmmsg in dgram" and §4 "uv_poll + one JS call per
 * batch"). This file is the Node-API glue (plus libuv's uv_poll on the loop from napi_get_uv_event_loop); the
 * socket and the syscalls are in native/udp_batch_io.c, the layout and bounds in native/udp_batch.h.
 *
 * Contract with JS (src/net/udp-batch.ts; the constants of udp_batch.h are exported and checked there):
 *   open(family 4|6, host, port, v6only, recvSlab, recvMeta, sendSlab, sendMeta, stats, onBatch) -> handle
 *     The five buffers are ArrayBuffers allocated by JS and pinned here (strong references) until close.
 *     On readability: up to UB_MAX_ROUNDS rounds of recvmmsg(UB_MAX_BATCH, MSG_DONTWAIT), each followed by
 *     ONE onBatch(count) through napi_make_callback (so nextTicks and microtasks drain after each batch).
 *   port(handle) -> bound port;  send(handle, count, first) -> datagrams accepted by the kernel, sending the
 *     slots [first, first+count) of the send slab/meta with sendmmsg; EAGAIN/ENOBUFS drop the rest (counted),
 *     another errno skips that one datagram (counted, errno kept in stats);  close(handle) -> idempotent.
 *   Errors: TypeError/RangeError with code "udp_batch_bad_argument"; Error with code "udp_batch_closed";
 *   Error with code "udp_batch_syscall" and numeric `errno` + string `syscall` for socket/bind failures.
 *
 * Build: scripts/build-native.ts (gcc -O2 -shared -fPIC against the Node-API and libuv headers).
 */
#include "udp_batch.h"
#define NAPI_VERSION 8
#include <node_api.h>
#include <uv.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BAD_ARG "udp_batch_bad_argument"

typedef struct {
  napi_env env;
  uv_poll_t poll;
  int closed;          /* close requested: no more I/O, the fd is closed */
  int uv_closed;       /* uv_close callback ran: the struct may be freed once finalized too */
  int finalized;       /* the JS handle was garbage collected */
  int in_callback;
  int release_pending; /* close() ran inside onBatch: drop the JS references once it returns */
  napi_ref cb_ref, resource_ref, buf_refs[5];
  napi_async_context async_ctx;
  ub_io io;
} ub_sock;

static napi_value throw_syscall(napi_env env, const char *syscall, int err) {
  napi_value code, msg, error, num, sys;
  char text[160];
  snprintf(text, sizeof text, "%s failed: %s", syscall, strerror(err));
  napi_create_string_utf8(env, "udp_batch_syscall", NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, code, msg, &error);
  napi_create_int32(env, err, &num);
  napi_set_named_property(env, error, "errno", num);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &sys);
  napi_set_named_property(env, error, "syscall", sys);
  napi_throw(env, error);
  return NULL;
}

static void release_js(ub_sock *s) {
  napi_env env = s->env;
  if (s->cb_ref != NULL) napi_delete_reference(env, s->cb_ref);
  if (s->resource_ref != NULL) napi_delete_reference(env, s->resource_ref);
  for (int i = 0; i < 5; i++)
    if (s->buf_refs[i] != NULL) napi_delete_reference(env, s->buf_refs[i]);
  if (s->async_ctx != NULL) napi_async_destroy(env, s->async_ctx);
  s->cb_ref = s->resource_ref = NULL;
  for (int i = 0; i < 5; i++) s->buf_refs[i] = NULL;
  s->async_ctx = NULL;
  s->io.recv_slab = s->io.recv_meta = s->io.send_slab = s->io.send_meta = NULL;
  s->io.stats = NULL;
}

static void on_uv_close(uv_handle_t *h) {
  ub_sock *s = (ub_sock *)h->data;
  s->uv_closed = 1;
  if (s->finalized) free(s);
}

/* uv_poll_stop already removed the fd from epoll, so the port is released now, not on the next loop turn. */
static void stop_and_close(ub_sock *s) {
  uv_poll_stop(&s->poll);
  close(s->io.fd);
  s->io.fd = -1;
  uv_close((uv_handle_t *)&s->poll, on_uv_close);
}

static void cleanup_hook(void *arg);

/* Stops polling and closes the socket; `with_js` also drops the JS references (not during env teardown). */
static void ub_close(ub_sock *s, int with_js) {
  if (s->closed) return;
  s->closed = 1;
  napi_remove_env_cleanup_hook(s->env, cleanup_hook, s);
  stop_and_close(s);
  if (with_js && s->in_callback) s->release_pending = 1;
  else if (with_js) release_js(s);
}

static void cleanup_hook(void *arg) {
  ub_sock *s = (ub_sock *)arg;
  if (s->closed) return;
  s->closed = 1;
  stop_and_close(s);
}

static void finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  ub_sock *s = (ub_sock *)data;
  s->finalized = 1;
  if (!s->closed) ub_close(s, 0);
  if (s->uv_closed) free(s);
}

/* Calls onBatch(count); returns 0 when the loop should stop (exception or closed). */
static int deliver(ub_sock *s, int count) {
  napi_env env = s->env;
  napi_handle_scope scope;
  napi_value cb, recv, arg, result;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return 0;
  napi_get_reference_value(env, s->cb_ref, &cb);
  napi_get_reference_value(env, s->resource_ref, &recv);
  napi_create_int32(env, count, &arg);
  s->in_callback = 1;
  napi_status st = napi_make_callback(env, s->async_ctx, recv, cb, 1, &arg, &result);
  s->in_callback = 0;
  if (s->release_pending) {
    s->release_pending = 0;
    release_js(s);
  }
  int go_on = 1;
  if (st != napi_ok) {
    napi_value exc;
    if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) napi_fatal_exception(env, exc);
    go_on = 0;
  }
  napi_close_handle_scope(env, scope);
  return go_on && !s->closed;
}

static void on_readable(uv_poll_t *h, int status, int events) {
  (void)events;
  ub_sock *s = (ub_sock *)h->data;
  if (s->closed) return;
  if (status < 0) {
    s->io.stats[ST_RECV_ERRORS] += 1;
    s->io.stats[ST_LAST_ERRNO] = -status;
    return;
  }
  for (int round = 0; round < UB_MAX_ROUNDS && !s->closed; round++) {
    int n = ub_io_recv(&s->io);
    if (n < 0) continue; /* counted; the error was consumed */
    if (n == 0) return;  /* drained */
    if (!deliver(s, n)) return;
    if (n < UB_MAX_BATCH) return;
  }
}

/* ---- argument helpers ---- */

static int get_i32(napi_env env, napi_value v, const char *what, int32_t *out) {
  napi_valuetype t;
  double d = 0;
  napi_typeof(env, v, &t);
  /* Range check first: converting NaN or an out-of-range double to int32_t is undefined behaviour. */
  if (t != napi_number || napi_get_value_double(env, v, &d) != napi_ok || !(d >= -2147483648.0 && d <= 2147483647.0) ||
      d != (double)(int32_t)d) {
    char m[96];
    snprintf(m, sizeof m, "%s must be a 32-bit integer", what);
    napi_throw_type_error(env, BAD_ARG, m);
    return 0;
  }
  *out = (int32_t)d;
  return 1;
}

static int get_buf(napi_env env, napi_value v, size_t want, const char *what, uint8_t **out) {
  bool is_ab = false;
  void *data = NULL;
  size_t len = 0;
  char m[128];
  napi_is_arraybuffer(env, v, &is_ab);
  if (!is_ab || napi_get_arraybuffer_info(env, v, &data, &len) != napi_ok) {
    snprintf(m, sizeof m, "%s must be an ArrayBuffer", what);
    napi_throw_type_error(env, BAD_ARG, m);
    return 0;
  }
  if (len != want) {
    snprintf(m, sizeof m, "%s must be %zu bytes, got %zu", what, want, len);
    napi_throw_range_error(env, BAD_ARG, m);
    return 0;
  }
  *out = (uint8_t *)data;
  return 1;
}

static ub_sock *get_sock(napi_env env, napi_value v) {
  napi_valuetype t;
  void *data = NULL;
  napi_typeof(env, v, &t);
  if (t != napi_external || napi_get_value_external(env, v, &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, BAD_ARG, "not a udp_batch handle");
    return NULL;
  }
  return (ub_sock *)data;
}

/* ---- exported functions ---- */

static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 10;
  napi_value argv[10];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 10) {
    napi_throw_type_error(env, BAD_ARG, "open expects 10 arguments");
    return NULL;
  }
  int32_t family, port;
  if (!get_i32(env, argv[0], "family", &family) || !get_i32(env, argv[2], "port", &port)) return NULL;
  if (family != 4 && family != 6) {
    napi_throw_range_error(env, BAD_ARG, "family must be 4 or 6");
    return NULL;
  }
  if (port < 0 || port > 65535) {
    napi_throw_range_error(env, BAD_ARG, "port must be 0..65535");
    return NULL;
  }
  char host[64];
  size_t host_len = 0;
  if (napi_get_value_string_utf8(env, argv[1], host, sizeof host, &host_len) != napi_ok) {
    napi_throw_type_error(env, BAD_ARG, "host must be a string");
    return NULL;
  }
  bool v6only = false;
  if (napi_get_value_bool(env, argv[3], &v6only) != napi_ok) {
    napi_throw_type_error(env, BAD_ARG, "v6only must be a boolean");
    return NULL;
  }
  uint8_t *bufs[5];
  static const char *names[5] = {"recvSlab", "recvMeta", "sendSlab", "sendMeta", "stats"};
  const size_t sizes[5] = {UB_MAX_BATCH * UB_SLOT_BYTES, UB_MAX_BATCH * UB_META_BYTES, UB_MAX_BATCH * UB_SLOT_BYTES,
                           UB_MAX_BATCH * UB_META_BYTES, UB_STATS_COUNT * sizeof(double)};
  for (int i = 0; i < 5; i++)
    if (!get_buf(env, argv[4 + i], sizes[i], names[i], &bufs[i])) return NULL;
  napi_valuetype cbt;
  napi_typeof(env, argv[9], &cbt);
  if (cbt != napi_function) {
    napi_throw_type_error(env, BAD_ARG, "onBatch must be a function");
    return NULL;
  }

  const char *syscall = "";
  int fd = ub_io_bind(family, host, port, v6only, &syscall);
  if (fd == -EINVAL && strcmp(syscall, "inet_pton") == 0) {
    napi_throw_type_error(env, BAD_ARG, family == 4 ? "host is not an IPv4 literal" : "host is not an IPv6 literal");
    return NULL;
  }
  if (fd < 0) return throw_syscall(env, syscall, -fd);

  ub_sock *s = calloc(1, sizeof *s);
  if (s == NULL) {
    close(fd);
    return throw_syscall(env, "calloc", ENOMEM);
  }
  s->env = env;
  s->io.fd = fd;
  s->io.family = family;
  s->io.recv_slab = bufs[0];
  s->io.recv_meta = bufs[1];
  s->io.send_slab = bufs[2];
  s->io.send_meta = bufs[3];
  s->io.stats = (double *)bufs[4];
  uv_loop_t *loop = NULL;
  int r = napi_get_uv_event_loop(env, &loop) == napi_ok ? uv_poll_init(loop, &s->poll, fd) : UV_EINVAL;
  if (r != 0) {
    close(fd);
    free(s);
    return throw_syscall(env, "uv_poll_init", -r);
  }
  s->poll.data = s;
  napi_value resource, name, handle;
  napi_create_object(env, &resource);
  napi_create_string_utf8(env, "wiremesh:udp_batch", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, resource, name, &s->async_ctx);
  napi_create_reference(env, resource, 1, &s->resource_ref);
  napi_create_reference(env, argv[9], 1, &s->cb_ref);
  for (int i = 0; i < 5; i++) napi_create_reference(env, argv[4 + i], 1, &s->buf_refs[i]);
  napi_add_env_cleanup_hook(env, cleanup_hook, s);
  r = uv_poll_start(&s->poll, UV_READABLE, on_readable);
  if (napi_create_external(env, s, finalize, NULL, &handle) != napi_ok) {
    ub_close(s, 1);
    return NULL;
  }
  if (r != 0) {
    ub_close(s, 1);
    return throw_syscall(env, "uv_poll_start", -r);
  }
  return handle;
}

static napi_value js_port(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  ub_sock *s = argc == 1 ? get_sock(env, argv[0]) : NULL;
  if (s == NULL) {
    if (argc != 1) napi_throw_type_error(env, BAD_ARG, "port expects a handle");
    return NULL;
  }
  if (s->closed) {
    napi_throw_error(env, "udp_batch_closed", "socket is closed");
    return NULL;
  }
  int port = ub_io_port(&s->io);
  if (port < 0) return throw_syscall(env, "getsockname", -port);
  napi_create_int32(env, port, &out);
  return out;
}

static napi_value js_send(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 3) {
    napi_throw_type_error(env, BAD_ARG, "send expects (handle, count, first)");
    return NULL;
  }
  ub_sock *s = get_sock(env, argv[0]);
  int32_t count, first;
  if (s == NULL || !get_i32(env, argv[1], "count", &count) || !get_i32(env, argv[2], "first", &first)) return NULL;
  if (count < 0 || first < 0 || count > UB_MAX_BATCH - first) {
    napi_throw_range_error(env, BAD_ARG, "slots [first, first+count) must lie within the batch");
    return NULL;
  }
  if (s->closed) {
    napi_throw_error(env, "udp_batch_closed", "socket is closed");
    return NULL;
  }
  int sent = ub_io_send(&s->io, first, count);
  napi_create_int32(env, sent, &out);
  return out;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 1) {
    napi_throw_type_error(env, BAD_ARG, "close expects a handle");
    return NULL;
  }
  ub_sock *s = get_sock(env, argv[0]);
  if (s != NULL) ub_close(s, 1);
  return NULL;
}

static void export_int(napi_env env, napi_value exports, const char *name, int v) {
  napi_value n;
  napi_create_int32(env, v, &n);
  napi_set_named_property(env, exports, name, n);
}

static void export_fn(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value f;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &f);
  napi_set_named_property(env, exports, name, f);
}

NAPI_MODULE_INIT() {
  export_fn(env, exports, "open", js_open);
  export_fn(env, exports, "port", js_port);
  export_fn(env, exports, "send", js_send);
  export_fn(env, exports, "close", js_close);
  export_int(env, exports, "ABI", UB_ABI);
  export_int(env, exports, "MAX_BATCH", UB_MAX_BATCH);
  export_int(env, exports, "SLOT_BYTES", UB_SLOT_BYTES);
  export_int(env, exports, "META_BYTES", UB_META_BYTES);
  export_int(env, exports, "MAX_ROUNDS", UB_MAX_ROUNDS);
  export_int(env, exports, "SOCKBUF_BYTES", UB_SOCKBUF_BYTES);
  export_int(env, exports, "STATS_COUNT", UB_STATS_COUNT);
  export_int(env, exports, "FLAG_TRUNCATED", UB_FLAG_TRUNCATED);
  return exports;
}
