/*
 * tls_conn: TLS for the derper listener (and the client end for the benchmarks' load generator), done in C with the OpenSSL that the node binary already
 * exports (issue #6 "TLS p99"; docs/tls-native.md). Node's own TLS stack (TLSWrap) runs every record through a
 * memory BIO, a per-read ArrayBuffer, the JS stream machinery and an asynchronous write completion; here one
 * uv_poll per connection drives SSL_read/SSL_write on the socket itself and JS sees plaintext only.
 *
 * Node keeps the accepted TCP socket (net.Server with pauseOnConnect: it never reads it) and owns its fd; this
 * addon polls that fd and must be closed (close(id)) before JS destroys the socket.
 *
 * Contract with JS (src/net/tls-native.ts):
 *   ctxNew(certChainPem, keyPem, sniHost) -> ctx   TLS >= 1.2, ALPN http/1.1 when offered; when sniHost is not
 *     empty a ClientHello whose SNI is missing or differs (case-insensitively) fails the handshake.
 *   server(onRead, onEvent) -> srv                 onRead(id, Buffer) with plaintext; onEvent(id, kind, text)
 *     with kind EV_SECURE (handshake done), EV_DRAIN (all written), EV_EOF (peer closed), EV_ERROR (text says why).
 *   ctxNewClient(servername, verify) -> ctx        a client context: TLS >= 1.2, SNI servername (not for an IP
    literal); verify true checks the chain against the system's CA store and the name (or IP) against servername,
    false accepts any certificate (the load generator against self-signed relays).
  attach(srv, ctx, fd) -> id                      starts the handshake on a non-blocking socket: as the server for
    a server context (an accepted socket), as the client for a client context (a connected socket).
 *   write(srv, id, buf) -> bytes not yet written    0: all handed to the kernel; >0: EV_DRAIN follows.
 *   readStart(srv, id) -> has buffered plaintext    readStop(srv, id)    readNow(srv, id): deliver buffered data.
 *   info(srv, id) -> [protocol, servername, alpn]   shutdown(srv, id): close_notify + SHUT_WR once written.
 *   close(srv, id)                                  idempotent; no callback for this id runs afterwards.
 *   trim(srv) -> connections whose idle buffers were freed (SSL_free_buffers on those with no I/O since the
 *     previous trim; malloc_trim afterwards when that was at least TN_TRIM_RETURN_MIN of them).
 * Errors thrown: TypeError/RangeError with code "tls_native_bad_argument", Error "tls_native_bad_cert".
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <uv.h>

#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#define BAD_ARG "tls_native_bad_argument"
/* Plaintext handed to JS per onRead call (at most 4 full TLS records). */
#define TN_READ_CHUNK (64 * 1024)
/* onRead calls per readable event before yielding to the loop, so one busy peer cannot starve the others. */
#define TN_MAX_READ_ROUNDS 4
/* OpenSSL's record read buffer (read-ahead fills it from the socket): one recv takes a whole burst (a sender's window
 * of frames spans several 16 KiB records) instead of one record per readable event. With SSL_MODE_RELEASE_BUFFERS
 * it is taken from malloc when a read starts and given back when everything in it is decrypted, so connections
 * share a few warm buffers instead of each keeping its own. */
#define TN_TLS_READ_BUFFER (64 * 1024)
/* trim() returns freed heap pages to the kernel (malloc_trim) when it freed the buffers of at least this many. */
#define TN_TRIM_RETURN_MIN 64
/* The server's cipher order, as Go's crypto/tls picks on a machine with AES instructions: AES-128-GCM first
 * (AES-256 costs 14 rounds per block instead of 10, for no gain a relay's clients ask for). */
#define TN_CIPHERSUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define TN_CIPHERS_TLS12                                                                                            \
  "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"                      \
  "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                      \
  "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA"
/* Connections per server (ids are table slots). */
#define TN_MAX_CONNS (1 << 20)

enum { EV_SECURE = 1, EV_DRAIN = 2, EV_EOF = 3, EV_ERROR = 4 };
enum { ST_HANDSHAKE = 0, ST_OPEN = 1, ST_CLOSED = 2 };

typedef struct tn_server tn_server;

typedef struct {
  uv_poll_t poll;
  tn_server *srv;
  SSL *ssl;            /* NULL: a plain TCP connection (attach without a context) */
  int fd;
  int id;
  int state;
  int reading;          /* JS wants plaintext */
  int read_wants_write; /* SSL_read asked for writability */
  int shutdown_pending; /* close_notify once the pending bytes are out */
  int active;           /* I/O since the last trim() */
  int events;           /* current poll mask */
  uint8_t *pend;        /* plaintext accepted from JS, not yet taken by SSL_write */
  size_t pend_len, pend_cap;
} tn_conn;

struct tn_server {
  napi_env env;
  napi_ref on_read, on_event, resource, rbuf_ref;
  napi_async_context actx;
  tn_conn **conns;
  int cap, used, free_head;
  int *next_free;
  int closed;
  /* JS's read buffer (server()'s third argument, ≥ TN_READ_CHUNK bytes): SSL_read decrypts into it and onRead
   * gets only the length, so a read allocates nothing. JS copies what it keeps before onRead returns. */
  uint8_t *rbuf;
};

typedef struct {
  SSL_CTX *ctx;
  char sni[256]; /* server: the SNI required ('' any); client: the servername sent and verified */
  int client;
  int verify;    /* client: check the certificate */
} tn_ctx;

/* ---- helpers ----
 * OpenSSL's error queue must be empty before an SSL call for SSL_get_error to be right. It is kept empty by
 * clearing it after every failure (ssl_error_text, conn_close, ctxNew) instead of before every call, which costs
 * a thread-local lookup per record on the hot path. */

static napi_value throw_coded(napi_env env, const char *code, const char *msg) {
  napi_value c, m, e;
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &c);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_error(env, c, m, &e);
  napi_throw(env, e);
  return NULL;
}

static int get_i32(napi_env env, napi_value v, int32_t *out) {
  napi_valuetype t;
  double d = 0;
  napi_typeof(env, v, &t);
  if (t != napi_number || napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0 && d <= 2147483647.0) || d != (double)(int32_t)d) {
    napi_throw_type_error(env, BAD_ARG, "expected a non-negative 32-bit integer");
    return 0;
  }
  *out = (int32_t)d;
  return 1;
}

static char *get_str(napi_env env, napi_value v) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
    napi_throw_type_error(env, BAD_ARG, "expected a string");
    return NULL;
  }
  char *s = malloc(len + 1);
  if (s == NULL) return NULL;
  napi_get_value_string_utf8(env, v, s, len + 1, &len);
  return s;
}

static tn_server *get_server(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || p == NULL) {
    napi_throw_type_error(env, BAD_ARG, "expected a tls_conn server");
    return NULL;
  }
  return (tn_server *)p;
}

/* Reads the (server, id, …) arguments of a per-connection call: 0 after throwing; *c is NULL for an id that is
 * closed or unknown (callers treat that as a no-op). */
static int conn_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv, tn_server **s, tn_conn **c) {
  size_t argc = want;
  int32_t id;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < want) {
    napi_throw_type_error(env, BAD_ARG, "missing arguments");
    return 0;
  }
  *s = get_server(env, argv[0]);
  if (*s == NULL || !get_i32(env, argv[1], &id)) return 0;
  *c = id < (*s)->cap ? (*s)->conns[id] : NULL;
  return 1;
}

static void ssl_error_text(char *out, size_t n, const char *what) {
  unsigned long e = ERR_get_error();
  char reason[200];
  if (e == 0) snprintf(reason, sizeof reason, "%s", errno != 0 ? strerror(errno) : "connection closed");
  else ERR_error_string_n(e, reason, sizeof reason);
  ERR_clear_error();
  snprintf(out, n, "%s: %s", what, reason);
}

/* ---- calling JS ---- */

static void call_js(tn_server *s, napi_ref fn_ref, size_t argc, napi_value *argv) {
  napi_env env = s->env;
  napi_value fn, recv, result;
  napi_get_reference_value(env, fn_ref, &fn);
  napi_get_reference_value(env, s->resource, &recv);
  if (napi_make_callback(env, s->actx, recv, fn, argc, argv, &result) != napi_ok) {
    napi_value exc;
    if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) napi_fatal_exception(env, exc);
  }
}

static void emit_event(tn_conn *c, int kind, const char *text) {
  tn_server *s = c->srv;
  napi_handle_scope scope;
  napi_value argv[3];
  if (s->closed || napi_open_handle_scope(s->env, &scope) != napi_ok) return;
  napi_create_int32(s->env, c->id, &argv[0]);
  napi_create_int32(s->env, kind, &argv[1]);
  napi_create_string_utf8(s->env, text == NULL ? "" : text, NAPI_AUTO_LENGTH, &argv[2]);
  call_js(s, s->on_event, 3, argv);
  napi_close_handle_scope(s->env, scope);
}

static void emit_read(tn_conn *c, size_t len) {
  tn_server *s = c->srv;
  napi_handle_scope scope;
  napi_value argv[2];
  if (s->closed || napi_open_handle_scope(s->env, &scope) != napi_ok) return;
  napi_create_int32(s->env, c->id, &argv[0]);
  napi_create_int32(s->env, (int32_t)len, &argv[1]);
  call_js(s, s->on_read, 2, argv);
  napi_close_handle_scope(s->env, scope);
}

/* ---- connection lifecycle ---- */

static void on_uv_close(uv_handle_t *h) {
  tn_conn *c = (tn_conn *)h->data;
  free(c->pend);
  free(c);
}

/* Stops polling and frees TLS state; the fd stays open (Node's socket owns it). No JS is called. */
static void conn_close(tn_conn *c) {
  if (c->state == ST_CLOSED) return;
  tn_server *s = c->srv;
  if (c->ssl != NULL && c->state == ST_OPEN && c->pend_len == 0) SSL_shutdown(c->ssl); /* best-effort close_notify, never blocks */
  c->state = ST_CLOSED;
  uv_poll_stop(&c->poll);
  SSL_free(c->ssl);
  c->ssl = NULL;
  ERR_clear_error();
  s->conns[c->id] = NULL;
  s->next_free[c->id] = s->free_head;
  s->free_head = c->id;
  s->used--;
  uv_close((uv_handle_t *)&c->poll, on_uv_close);
}

static void on_poll(uv_poll_t *h, int status, int events);

static void update_poll(tn_conn *c) {
  if (c->state == ST_CLOSED) return;
  int ev = 0;
  if (c->state == ST_HANDSHAKE || c->reading) ev |= UV_READABLE;
  if (c->pend_len > 0 || c->read_wants_write || (c->state == ST_HANDSHAKE && SSL_want_write(c->ssl))) ev |= UV_WRITABLE;
  if (ev == c->events) return;
  c->events = ev;
  if (ev == 0) uv_poll_stop(&c->poll);
  else uv_poll_start(&c->poll, ev, on_poll);
}

/* Fails the connection: stops I/O, then tells JS (which closes it and the socket). */
static void conn_fail(tn_conn *c, const char *text) {
  c->reading = 0;
  c->pend_len = 0;
  c->read_wants_write = 0;
  uv_poll_stop(&c->poll);
  c->events = 0;
  emit_event(c, EV_ERROR, text);
}

static void do_handshake(tn_conn *c) {
  ERR_clear_error();
  int r = SSL_do_handshake(c->ssl);
  if (r == 1) {
    c->state = ST_OPEN;
    update_poll(c);
    emit_event(c, EV_SECURE, NULL);
    return;
  }
  int e = SSL_get_error(c->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    update_poll(c);
    return;
  }
  char text[256];
  ssl_error_text(text, sizeof text, "tls handshake");
  conn_fail(c, text);
}

/* SSL_write of buf[0..len) until the socket is full; returns the bytes taken, or -1 after conn_fail. */
static ssize_t write_some(tn_conn *c, const uint8_t *buf, size_t len) {
  size_t off = 0;
  if (c->ssl == NULL) {
    while (off < len) {
      ssize_t n = send(c->fd, buf + off, len - off, MSG_NOSIGNAL);
      if (n > 0) {
        off += (size_t)n;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      char text[256];
      snprintf(text, sizeof text, "tcp write: %s", strerror(errno));
      conn_fail(c, text);
      return -1;
    }
    return (ssize_t)off;
  }
  while (off < len) {
    size_t n = 0;
    int r = SSL_write_ex(c->ssl, buf + off, len - off, &n);
    if (r == 1) {
      off += n;
      continue;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) break;
    char text[256];
    ssl_error_text(text, sizeof text, "tls write");
    conn_fail(c, text);
    return -1;
  }
  return (ssize_t)off;
}

/* Writes as much pending plaintext as the socket takes; returns 0, or -1 after conn_fail. */
static int flush_pending(tn_conn *c) {
  ssize_t off = write_some(c, c->pend, c->pend_len);
  if (off < 0) return -1;
  if (off > 0) {
    memmove(c->pend, c->pend + off, c->pend_len - (size_t)off);
    c->pend_len -= (size_t)off;
  }
  return 0;
}

/* Reads and delivers plaintext while JS wants it; bounded rounds per call. */
static void do_read(tn_conn *c) {
  tn_server *s = c->srv;
  c->read_wants_write = 0;
  for (int round = 0; round < TN_MAX_READ_ROUNDS; round++) {
    size_t got = 0;
    int stop = 0, eof = 0;
    char text[256] = "";
    if (c->ssl == NULL) {
      /* Plain TCP: one recv per round; the poll is level-triggered, so a short read means the socket is empty. */
      ssize_t n;
      do n = recv(c->fd, s->rbuf, TN_READ_CHUNK, 0);
      while (n < 0 && errno == EINTR);
      if (n > 0) {
        got = (size_t)n;
        stop = got < TN_READ_CHUNK;
      } else if (n == 0) eof = 1;
      else if (errno == EAGAIN || errno == EWOULDBLOCK) stop = 1;
      else snprintf(text, sizeof text, "tcp read: %s", strerror(errno));
    }
    while (c->ssl != NULL && got < TN_READ_CHUNK) {
      size_t n = 0;
      errno = 0;
      int r = SSL_read_ex(c->ssl, s->rbuf + got, TN_READ_CHUNK - got, &n);
      if (r == 1) {
        got += n;
        /* All that recv() brought is decrypted: stop here instead of paying a recv() that says EAGAIN (the
         * poll is level-triggered, so anything that arrived meanwhile is reported again). */
        if (!SSL_has_pending(c->ssl)) {
          stop = 1;
          break;
        }
        continue;
      }
      int e = SSL_get_error(c->ssl, r);
      stop = 1;
      if (e == SSL_ERROR_WANT_READ) break;
      if (e == SSL_ERROR_WANT_WRITE) {
        c->read_wants_write = 1;
        break;
      }
      if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0 && ERR_peek_error() == 0)) eof = 1;
      else ssl_error_text(text, sizeof text, "tls read");
      break;
    }
    if (got > 0) {
      c->active = 1;
      emit_read(c, got);
      if (c->state == ST_CLOSED) return;
    }
    if (eof) {
      c->reading = 0;
      update_poll(c);
      emit_event(c, EV_EOF, NULL);
      return;
    }
    if (text[0] != 0) {
      conn_fail(c, text);
      return;
    }
    if (stop || !c->reading) break;
  }
  update_poll(c);
}

static void after_write_progress(tn_conn *c) {
  if (c->pend_len > 0) {
    update_poll(c);
    return;
  }
  update_poll(c);
  if (c->shutdown_pending) {
    c->shutdown_pending = 0;
    if (c->ssl != NULL) SSL_shutdown(c->ssl);
    ERR_clear_error();
    shutdown(c->fd, SHUT_WR);
  }
  emit_event(c, EV_DRAIN, NULL);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  tn_conn *c = (tn_conn *)h->data;
  if (c->state == ST_CLOSED) return;
  if (status < 0) {
    char text[128];
    snprintf(text, sizeof text, "poll: %s", uv_strerror(status));
    conn_fail(c, text);
    return;
  }
  if (c->state == ST_HANDSHAKE) {
    do_handshake(c);
    if (c->state != ST_OPEN) return;
    events |= UV_READABLE; /* the client's first request often came with its Finished */
  }
  if ((events & UV_WRITABLE) && c->pend_len > 0) {
    c->active = 1;
    if (flush_pending(c) != 0 || c->state == ST_CLOSED) return;
    if (c->pend_len == 0) {
      after_write_progress(c);
      if (c->state == ST_CLOSED) return;
    }
  }
  if (c->reading && ((events & UV_READABLE) || c->read_wants_write)) do_read(c);
  else update_poll(c);
}

/* ---- contexts ---- */

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in, unsigned int inlen, void *arg) {
  (void)ssl;
  (void)arg;
  for (unsigned int i = 0; i < inlen;) {
    unsigned int l = in[i];
    if (i + 1 + l > inlen) break;
    if (l == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
      *out = in + i + 1;
      *outlen = (unsigned char)l;
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + l;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

static int sni_check(SSL *ssl, int *alert, void *arg) {
  tn_ctx *t = (tn_ctx *)arg;
  if (t->sni[0] == 0) return SSL_TLSEXT_ERR_OK;
  const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (name != NULL && strcasecmp(name, t->sni) == 0) return SSL_TLSEXT_ERR_OK;
  *alert = SSL_AD_UNRECOGNIZED_NAME;
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static void ctx_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  tn_ctx *t = (tn_ctx *)data;
  SSL_CTX_free(t->ctx); /* connections keep their own reference */
  free(t);
}

static napi_value bad_cert(napi_env env, SSL_CTX *ctx, tn_ctx *t, const char *what) {
  char text[320];
  ssl_error_text(text, sizeof text, what);
  if (ctx != NULL) SSL_CTX_free(ctx);
  free(t);
  return throw_coded(env, "tls_native_bad_cert", text);
}

/* Both ends: partial writes, read-ahead into a TN_TLS_READ_BUFFER buffer, record buffers released when empty. */
static void set_buffers(SSL_CTX *ctx) {
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_default_read_buffer_len(ctx, TN_TLS_READ_BUFFER);
}

static napi_value js_ctx_new(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3) return (napi_throw_type_error(env, BAD_ARG, "ctxNew(certPem, keyPem, sniHost)"), NULL);
  char *cert = get_str(env, argv[0]), *key = cert == NULL ? NULL : get_str(env, argv[1]), *sni = key == NULL ? NULL : get_str(env, argv[2]);
  if (sni == NULL) {
    free(cert);
    free(key);
    return NULL;
  }
  tn_ctx *t = calloc(1, sizeof *t);
  snprintf(t->sni, sizeof t->sni, "%s", sni);
  free(sni);
  ERR_clear_error();
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == NULL) return free(cert), free(key), bad_cert(env, NULL, t, "SSL_CTX_new");
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_CIPHER_SERVER_PREFERENCE);
  set_buffers(ctx);
  /* Go's crypto/tls order on AES hardware (TN_CIPHERSUITES, TN_CIPHERS_TLS12; src/derper/tls.ts mirrors them). */
  if (SSL_CTX_set_ciphersuites(ctx, TN_CIPHERSUITES) != 1 || SSL_CTX_set_cipher_list(ctx, TN_CIPHERS_TLS12) != 1)
    return free(cert), free(key), bad_cert(env, ctx, t, "cipher list");
  SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
  SSL_CTX_set_tlsext_servername_callback(ctx, sni_check);
  SSL_CTX_set_tlsext_servername_arg(ctx, t);
  /* Leaf, then every further certificate of the PEM as the chain (intermediates and the meta cert). */
  BIO *b = BIO_new_mem_buf(cert, -1);
  X509 *leaf = PEM_read_bio_X509(b, NULL, NULL, NULL);
  int ok = leaf != NULL && SSL_CTX_use_certificate(ctx, leaf) == 1;
  X509_free(leaf);
  while (ok) {
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    if (x == NULL) break;
    if (SSL_CTX_add0_chain_cert(ctx, x) != 1) {
      X509_free(x);
      ok = 0;
    }
  }
  BIO_free(b);
  free(cert);
  if (!ok) return free(key), bad_cert(env, ctx, t, "certificate");
  ERR_clear_error(); /* PEM_read at the end of the chain leaves "no start line" */
  b = BIO_new_mem_buf(key, -1);
  EVP_PKEY *pk = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
  BIO_free(b);
  free(key);
  ok = pk != NULL && SSL_CTX_use_PrivateKey(ctx, pk) == 1 && SSL_CTX_check_private_key(ctx) == 1;
  EVP_PKEY_free(pk);
  if (!ok) return bad_cert(env, ctx, t, "private key");
  t->ctx = ctx;
  napi_create_external(env, t, ctx_finalize, NULL, &out);
  return out;
}

static napi_value js_ctx_new_client(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], out;
  bool verify = false;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2 || napi_get_value_bool(env, argv[1], &verify) != napi_ok)
    return (napi_throw_type_error(env, BAD_ARG, "ctxNewClient(servername, verify)"), NULL);
  char *name = get_str(env, argv[0]);
  if (name == NULL) return NULL;
  tn_ctx *t = calloc(1, sizeof *t);
  snprintf(t->sni, sizeof t->sni, "%s", name);
  free(name);
  t->client = 1;
  t->verify = verify;
  ERR_clear_error();
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == NULL) return bad_cert(env, NULL, t, "SSL_CTX_new");
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
  set_buffers(ctx);
  if (verify && SSL_CTX_set_default_verify_paths(ctx) != 1) return bad_cert(env, ctx, t, "CA store");
  SSL_CTX_set_verify(ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
  t->ctx = ctx;
  napi_create_external(env, t, ctx_finalize, NULL, &out);
  return out;
}

/* Client side of a new connection: SNI (names only, RFC 6066 §3), the name or IP to verify, then ClientHello. */
static int client_setup(SSL *ssl, const tn_ctx *t) {
  unsigned char ip[16];
  int is_ip = inet_pton(AF_INET, t->sni, ip) == 1 || inet_pton(AF_INET6, t->sni, ip) == 1;
  SSL_set_connect_state(ssl);
  if (t->sni[0] == 0) return 1;
  if (!is_ip && SSL_set_tlsext_host_name(ssl, t->sni) != 1) return 0;
  if (!t->verify) return 1;
  return is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), t->sni) == 1 : SSL_set1_host(ssl, t->sni) == 1;
}

/* ---- server ---- */

static void server_teardown(tn_server *s) {
  if (s->closed) return;
  for (int i = 0; i < s->cap; i++)
    if (s->conns[i] != NULL) conn_close(s->conns[i]);
  s->closed = 1;
}

static void server_cleanup_hook(void *arg) { server_teardown((tn_server *)arg); }

static void server_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  tn_server *s = (tn_server *)data;
  napi_remove_env_cleanup_hook(env, server_cleanup_hook, s);
  server_teardown(s);
  /* Connections still closing reference s only through conn->srv, which on_uv_close does not touch. */
  free(s->conns);
  free(s->next_free);
  free(s);
}

static napi_value js_server(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], out, name, res;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_valuetype t0 = napi_undefined, t1 = napi_undefined;
  bool is_buf = false;
  void *rbuf = NULL;
  size_t rlen = 0;
  if (argc >= 3) {
    napi_typeof(env, argv[0], &t0);
    napi_typeof(env, argv[1], &t1);
    napi_is_buffer(env, argv[2], &is_buf);
    if (is_buf) napi_get_buffer_info(env, argv[2], &rbuf, &rlen);
  }
  if (t0 != napi_function || t1 != napi_function || !is_buf || rlen < TN_READ_CHUNK)
    return (napi_throw_type_error(env, BAD_ARG, "server(onRead, onEvent, readBuffer of >= 65536 bytes)"), NULL);
  tn_server *s = calloc(1, sizeof *s);
  if (s == NULL) return throw_coded(env, "tls_native_full", "out of memory");
  s->env = env;
  s->free_head = -1;
  s->rbuf = rbuf;
  napi_create_reference(env, argv[2], 1, &s->rbuf_ref);
  napi_create_reference(env, argv[0], 1, &s->on_read);
  napi_create_reference(env, argv[1], 1, &s->on_event);
  napi_create_object(env, &res);
  napi_create_reference(env, res, 1, &s->resource);
  napi_create_string_utf8(env, "wiremesh:tls_conn", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, res, name, &s->actx);
  napi_add_env_cleanup_hook(env, server_cleanup_hook, s);
  napi_create_external(env, s, server_finalize, NULL, &out);
  return out;
}

static int grow(tn_server *s) {
  int ncap = s->cap == 0 ? 1024 : s->cap * 2;
  if (ncap > TN_MAX_CONNS) return 0;
  tn_conn **nc = realloc(s->conns, sizeof *nc * (size_t)ncap);
  if (nc == NULL) return 0;
  s->conns = nc;
  int *nf = realloc(s->next_free, sizeof *nf * (size_t)ncap);
  if (nf == NULL) return 0;
  s->next_free = nf;
  for (int i = ncap - 1; i >= s->cap; i--) {
    s->conns[i] = NULL;
    s->next_free[i] = s->free_head;
    s->free_head = i;
  }
  s->cap = ncap;
  return 1;
}

static napi_value js_attach(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3) return (napi_throw_type_error(env, BAD_ARG, "attach(server, ctx, fd)"), NULL);
  tn_server *s = get_server(env, argv[0]);
  if (s == NULL) return NULL;
  /* ctx null: plain TCP, open at once (no handshake, no Secure event). */
  napi_valuetype ct = napi_undefined;
  napi_typeof(env, argv[1], &ct);
  tn_ctx *t = NULL;
  if (ct != napi_null) {
    void *p = NULL;
    if (napi_get_value_external(env, argv[1], &p) != napi_ok || p == NULL) return (napi_throw_type_error(env, BAD_ARG, "expected a tls_conn context or null"), NULL);
    t = (tn_ctx *)p;
  }
  int32_t fd;
  if (!get_i32(env, argv[2], &fd)) return NULL;
  if (s->closed) return throw_coded(env, "tls_native_closed", "tls_conn server is closed");
  if (s->free_head < 0 && !grow(s)) return throw_coded(env, "tls_native_full", "too many TLS connections");
  tn_conn *c = calloc(1, sizeof *c);
  if (c == NULL) return throw_coded(env, "tls_native_full", "out of memory");
  c->fd = fd;
  if (t != NULL && ((c->ssl = SSL_new(t->ctx)) == NULL || SSL_set_fd(c->ssl, fd) != 1 || (t->client && !client_setup(c->ssl, t)))) {
    if (c->ssl != NULL) SSL_free(c->ssl);
    free(c);
    ERR_clear_error();
    return throw_coded(env, "tls_native_full", "SSL_new failed");
  }
  uv_loop_t *loop;
  napi_get_uv_event_loop(env, &loop);
  int r = uv_poll_init(loop, &c->poll, fd);
  if (r != 0) {
    SSL_free(c->ssl);
    free(c);
    char text[128];
    snprintf(text, sizeof text, "uv_poll_init: %s", uv_strerror(r));
    return throw_coded(env, BAD_ARG, text);
  }
  if (c->ssl != NULL && !t->client) SSL_set_accept_state(c->ssl);
  c->poll.data = c;
  c->srv = s;
  c->reading = 1;
  c->id = s->free_head;
  s->free_head = s->next_free[c->id];
  s->conns[c->id] = c;
  s->used++;
  c->state = c->ssl != NULL ? ST_HANDSHAKE : ST_OPEN;
  /* A client speaks first: its ClientHello goes out from the first writable poll. */
  c->events = t != NULL && t->client ? UV_READABLE | UV_WRITABLE : UV_READABLE;
  uv_poll_start(&c->poll, c->events, on_poll);
  napi_create_int32(env, c->id, &out);
  return out;
}

/* write(server, id, bytes, start, end): takes bytes[start, end) now (sent, or copied to the pending buffer). */
static napi_value js_write(napi_env env, napi_callback_info info) {
  napi_value argv[5], out;
  tn_server *s;
  tn_conn *c;
  if (!conn_args(env, info, 5, argv, &s, &c)) return NULL;
  void *data = NULL;
  size_t len = 0;
  bool is_ta = false;
  int32_t start = 0, end = 0;
  napi_is_typedarray(env, argv[2], &is_ta);
  if (!is_ta) return (napi_throw_type_error(env, BAD_ARG, "write(server, id, Uint8Array, start, end)"), NULL);
  napi_get_typedarray_info(env, argv[2], NULL, &len, &data, NULL, NULL);
  if (!get_i32(env, argv[3], &start) || !get_i32(env, argv[4], &end)) return NULL;
  if (start > end || (size_t)end > len) return (napi_throw_range_error(env, BAD_ARG, "write: start/end outside the array"), NULL);
  data = (uint8_t *)data + start;
  len = (size_t)(end - start);
  if (c == NULL || c->state != ST_OPEN) {
    napi_create_int32(env, -1, &out);
    return out;
  }
  c->active = 1;
  size_t off = 0;
  if (c->pend_len == 0) {
    ssize_t n = write_some(c, data, len);
    if (n < 0) {
      napi_create_int32(env, -1, &out);
      return out;
    }
    off = (size_t)n;
  }
  size_t rest = len - off;
  if (rest > 0) {
    if (c->pend_len + rest > c->pend_cap) {
      size_t ncap = c->pend_cap == 0 ? 16384 : c->pend_cap;
      while (ncap < c->pend_len + rest) ncap *= 2;
      uint8_t *np = realloc(c->pend, ncap);
      if (np == NULL) return throw_coded(env, "tls_native_full", "out of memory");
      c->pend = np;
      c->pend_cap = ncap;
    }
    memcpy(c->pend + c->pend_len, (uint8_t *)data + off, rest);
    c->pend_len += rest;
    update_poll(c);
  }
  napi_create_double(env, (double)c->pend_len, &out);
  return out;
}

static napi_value js_conn_op(napi_env env, napi_callback_info info, int op) {
  napi_value argv[2], out;
  tn_server *s;
  tn_conn *c;
  if (!conn_args(env, info, 2, argv, &s, &c)) return NULL;
  napi_get_boolean(env, false, &out);
  if (c == NULL || c->state == ST_CLOSED) return out;
  switch (op) {
    case 0: /* readStart */
      c->reading = 1;
      update_poll(c);
      napi_get_boolean(env, c->state == ST_OPEN && c->ssl != NULL && SSL_pending(c->ssl) > 0, &out);
      break;
    case 1: /* readStop */
      c->reading = 0;
      update_poll(c);
      break;
    case 2: /* readNow */
      if (c->state == ST_OPEN && c->reading) do_read(c);
      break;
    case 3: /* shutdown */
      if (c->state != ST_OPEN) break;
      if (c->pend_len > 0) c->shutdown_pending = 1;
      else {
        if (c->ssl != NULL) SSL_shutdown(c->ssl);
        ERR_clear_error();
        shutdown(c->fd, SHUT_WR);
      }
      break;
    case 4: /* close */
      conn_close(c);
      break;
  }
  return out;
}

static napi_value js_read_start(napi_env env, napi_callback_info info) { return js_conn_op(env, info, 0); }
static napi_value js_read_stop(napi_env env, napi_callback_info info) { return js_conn_op(env, info, 1); }
static napi_value js_read_now(napi_env env, napi_callback_info info) { return js_conn_op(env, info, 2); }
static napi_value js_shutdown(napi_env env, napi_callback_info info) { return js_conn_op(env, info, 3); }
static napi_value js_close(napi_env env, napi_callback_info info) { return js_conn_op(env, info, 4); }

static napi_value js_info(napi_env env, napi_callback_info info) {
  napi_value argv[2], out, v;
  tn_server *s;
  tn_conn *c;
  if (!conn_args(env, info, 2, argv, &s, &c)) return NULL;
  napi_create_array_with_length(env, 3, &out);
  if (c == NULL || c->state != ST_OPEN || c->ssl == NULL) return out;
  const char *name = SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
  const unsigned char *alpn = NULL;
  unsigned int alen = 0;
  SSL_get0_alpn_selected(c->ssl, &alpn, &alen);
  napi_create_string_utf8(env, SSL_get_version(c->ssl), NAPI_AUTO_LENGTH, &v);
  napi_set_element(env, out, 0, v);
  napi_create_string_utf8(env, name == NULL ? "" : name, NAPI_AUTO_LENGTH, &v);
  napi_set_element(env, out, 1, v);
  napi_create_string_utf8(env, alpn == NULL ? "" : (const char *)alpn, alpn == NULL ? 0 : alen, &v);
  napi_set_element(env, out, 2, v);
  return out;
}

/* Frees OpenSSL's record buffers of open connections with no I/O since the previous trim(). */
static napi_value js_trim(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  tn_server *s = argc < 1 ? NULL : get_server(env, argv[0]);
  if (s == NULL) return NULL;
  int n = 0;
  for (int i = 0; i < s->cap; i++) {
    tn_conn *c = s->conns[i];
    if (c == NULL || c->state != ST_OPEN) continue;
    if (c->active) c->active = 0;
    else if (c->ssl != NULL && c->pend_len == 0 && SSL_free_buffers(c->ssl) == 1) n++;
  }
#ifdef __GLIBC__
  /* glibc keeps freed chunks inside its heap; give whole free pages back so idle connections cost no RSS. */
  if (n >= TN_TRIM_RETURN_MIN) malloc_trim(0);
#endif
  napi_create_int32(env, n, &out);
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"ctxNew", NULL, js_ctx_new, NULL, NULL, NULL, napi_default, NULL},
      {"ctxNewClient", NULL, js_ctx_new_client, NULL, NULL, NULL, napi_default, NULL},
      {"server", NULL, js_server, NULL, NULL, NULL, napi_default, NULL},
      {"attach", NULL, js_attach, NULL, NULL, NULL, napi_default, NULL},
      {"write", NULL, js_write, NULL, NULL, NULL, napi_default, NULL},
      {"readStart", NULL, js_read_start, NULL, NULL, NULL, napi_default, NULL},
      {"readStop", NULL, js_read_stop, NULL, NULL, NULL, napi_default, NULL},
      {"readNow", NULL, js_read_now, NULL, NULL, NULL, napi_default, NULL},
      {"shutdown", NULL, js_shutdown, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
      {"info", NULL, js_info, NULL, NULL, NULL, napi_default, NULL},
      {"trim", NULL, js_trim, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  napi_value abi;
  napi_create_int32(env, 5, &abi);
  napi_set_named_property(env, exports, "ABI", abi);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
