/* loadgen: the benchmark's load generator. One thread, io_uring (or epoll), pinned to one
 * CPU; meant to cost less CPU per message than the servers it measures.
 *
 *   loadgen --port=N [--proto=raw|sbmp] [--conns=16] [--size=64]
 *           [--depth=1 | --rate=MSGS_PER_S] [--duration=2] [--warmup=0.5]
 *           [--cpu=1] [--server-pid=PID]
 *   loadgen --port=N --proto=sbmp --idle --conns=10000 --server-pid=PID
 *   loadgen --port=N --tls [--tls-ca=PEM [--tls-server-name=NAME]] ...
 *   loadgen --port=N --tls --handshakes [--conns=16] [--duration=2]
 *
 * Modes: closed loop with --depth messages in flight per connection (1 is
 * ping-pong), or open loop at a fixed total --rate (message k goes to
 * connection k % conns at t0 + k/rate; its RTT counts from that scheduled
 * time, so a server that falls behind is not excused). --idle opens the
 * connections (SBMP: HELLO exchanged), waits a second and reports the
 * server's RSS per connection (then, with --hold=S, keeps them open S more
 * seconds).
 *
 * Every byte that comes back is verified. Message s of connection c is the
 * SBMP header (for --proto=sbmp: type 0x0100, no extensions, no CHK) and a
 * payload cut from a random block at an offset given by (c, s): within 4096
 * consecutive messages no two of a connection start at the same offset, so a
 * lost, repeated, reordered or foreign message is a mismatch. So is any byte
 * the generator did not send yet. Any mismatch or connection error makes the
 * exit status 1.
 *
 * With --server-pid the generator also reads, at both ends of the measured
 * window, the server's CPU time (all threads: /proc/PID/task/TID/schedstat,
 * in ns; /proc/PID/stat utime+stime, in 10 ms ticks, where that is missing),
 * its RSS, and /proc/stat: host CPU busy time not accounted to the server or
 * to the generator ("other") flags a disturbed run.
 *
 * --tls (built when OpenSSL was found): every connection speaks TLS 1.3
 * (OpenSSL, non-blocking, driven by the same epoll loop) and the messages go
 * through SSL_write/SSL_read; with --tls-ca the server's certificate is
 * verified against it for --tls-server-name (default localhost), else not
 * verified. --handshakes: each connection connects, completes the TLS
 * handshake, closes (with RST, so that no TIME_WAIT piles up) and starts
 * again; reports handshakes/s, the handshake latency and server CPU per
 * handshake.
 *
 * Engines: the measured load runs on io_uring by default (--engine=uring):
 * once every connection is ready, each has a multishot recv on a ring of
 * provided buffers and at most one send in flight, and one io_uring_enter
 * per loop pass submits every send and re-arm and waits for the next
 * completions or deadline. A syscall costs about a microsecond on the VMs
 * this runs on, and with epoll a pass made a read and a write per ready
 * connection: the generator then used more CPU per message than the fastest
 * server it measured. --engine=epoll keeps the epoll loop (read(2),
 * write(2)/writev(2) per ready connection); --tls always uses it.
 * Connecting, HELLO and --idle use epoll either way.
 *
 * What is left is the kernel's, and an echo server's own: pipelined 16 x
 * 64 B over 16 connections, each connection's 16 messages come back in one
 * recv and go out again in one send (1/16 of each per message, one TCP
 * segment each way, next to no pure ACKs: measured), as the echo server
 * reads and writes them; the generator's user space (verifying, timing) is
 * about a tenth of its CPU (client_user_us_per_msg). So where syscalls are
 * cheap, its CPU per message is about the fastest echo server's, not below
 * it.
 *
 * Output: one JSON line on stdout, flat (no nesting, no commas in strings);
 * server_segs_*_per_msg: the server's TCP segments, see count_segments().
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "cli_number.h"
#include "sbmp_wire.h"

#ifdef LOADGEN_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
#endif

/* ---- configuration ---- */
enum { ENGINE_URING, ENGINE_EPOLL };
static struct {
  const char* host;
  int port;
  int sbmp;
  uint32_t conns, size, depth, max_outstanding;
  double rate, duration, warmup, hold;
  int cpu;
  int server_pid;
  int idle;
  const char* label;
  int tls, handshakes;
  const char* tls_ca;
  const char* tls_server_name;
  int engine; /* ENGINE_URING or ENGINE_EPOLL (--tls: epoll) */
} cfg = {.host = "127.0.0.1",
         .conns = 16,
         .size = 64,
         .depth = 1,
         .max_outstanding = 64,
         .duration = 2.0,
         .warmup = 0.5,
         .cpu = -1,
         .label = "",
         .tls_server_name = "localhost",
         .engine = ENGINE_URING};

static void usage_exit(int code) {
  fprintf(code ? stderr : stdout,
          "usage: loadgen --port=N [--host=127.0.0.1] [--proto=raw|sbmp] [--conns=16]\n"
          "               [--size=64] [--depth=1 | --rate=MSGS_PER_S [--max-outstanding=64]]\n"
          "               [--duration=2] [--warmup=0.5] [--cpu=N] [--server-pid=PID]\n"
          "               [--idle [--hold=S]] [--label=TEXT]\n"
          "               [--tls [--tls-ca=PEM] [--tls-server-name=NAME] [--handshakes]]\n"
          "               [--engine=uring|epoll]\n");
  exit(code);
}

#define ARG_WHOLE(name, v, lo, hi) cli_number("loadgen", name, v, lo, hi, 1)
#define ARG_REAL(name, v, lo, hi) cli_number("loadgen", name, v, lo, hi, 0)

static void parse_args(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    const char* v = strchr(a, '=');
    v = v ? v + 1 : "";
#define IS(name) (strncmp(a, name "=", sizeof(name)) == 0)
    if (strcmp(a, "--help") == 0)
      usage_exit(0);
    else if (IS("--host"))
      cfg.host = v;
    else if (IS("--port"))
      cfg.port = (int)ARG_WHOLE("--port", v, 1, 65535);
    else if (IS("--proto")) {
      if (strcmp(v, "sbmp") == 0)
        cfg.sbmp = 1;
      else if (strcmp(v, "raw") == 0)
        cfg.sbmp = 0;
      else
        usage_exit(1);
    } else if (IS("--conns"))
      cfg.conns = (uint32_t)ARG_WHOLE("--conns", v, 1, 1000000);
    else if (IS("--size"))
      cfg.size = (uint32_t)ARG_WHOLE("--size", v, 1, 1u << 20);
    else if (IS("--depth"))
      cfg.depth = (uint32_t)ARG_WHOLE("--depth", v, 1, 65536);
    else if (IS("--max-outstanding"))
      cfg.max_outstanding = (uint32_t)ARG_WHOLE("--max-outstanding", v, 1, 65536);
    else if (IS("--rate"))
      cfg.rate = ARG_REAL("--rate", v, 0, 1e9);
    else if (IS("--duration"))
      cfg.duration = ARG_REAL("--duration", v, 0.001, 86400);
    else if (IS("--warmup"))
      cfg.warmup = ARG_REAL("--warmup", v, 0, 86400);
    else if (IS("--hold"))
      cfg.hold = ARG_REAL("--hold", v, 0, 86400);
    else if (IS("--cpu"))
      cfg.cpu = (int)ARG_WHOLE("--cpu", v, 0, CPU_SETSIZE - 1);
    else if (IS("--server-pid"))
      cfg.server_pid = (int)ARG_WHOLE("--server-pid", v, 1, 4194304);
    else if (IS("--label"))
      cfg.label = v;
    else if (strcmp(a, "--idle") == 0)
      cfg.idle = 1;
    else if (strcmp(a, "--tls") == 0)
      cfg.tls = 1;
    else if (strcmp(a, "--handshakes") == 0)
      cfg.handshakes = 1;
    else if (IS("--tls-ca"))
      cfg.tls_ca = v;
    else if (IS("--tls-server-name"))
      cfg.tls_server_name = v;
    else if (IS("--engine")) {
      if (strcmp(v, "uring") == 0)
        cfg.engine = ENGINE_URING;
      else if (strcmp(v, "epoll") == 0)
        cfg.engine = ENGINE_EPOLL;
      else {
        fprintf(stderr, "loadgen: --engine must be uring or epoll, not '%s'\n", v);
        exit(1);
      }
    } else {
      fprintf(stderr, "loadgen: unknown argument %s\n", a);
      usage_exit(1);
    }
#undef IS
  }
  if (cfg.port <= 0 || cfg.conns == 0 || cfg.depth == 0 || cfg.max_outstanding == 0 ||
      cfg.size > (1u << 20) || cfg.duration <= 0) {
    usage_exit(1);
  }
#ifndef LOADGEN_TLS
  if (cfg.tls) {
    fprintf(stderr, "loadgen: built without OpenSSL: no --tls\n");
    exit(1);
  }
#endif
  if (cfg.tls) cfg.engine = ENGINE_EPOLL; /* OpenSSL reads and writes the sockets itself */
  if (cfg.handshakes && (!cfg.tls || cfg.idle)) {
    fprintf(stderr, "loadgen: --handshakes needs --tls (and no --idle)\n");
    exit(1);
  }
}

/* ---- time, stats ---- */
static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Log-linear histogram of nanoseconds: 32 sub-buckets per power of two. */
#define HIST_BUCKETS (64 * 32)
static uint64_t hist[HIST_BUCKETS];
static inline unsigned hist_index(uint64_t v) {
  if (v < 64) return (unsigned)v;
  unsigned msb = 63u - (unsigned)__builtin_clzll(v);
  return (msb - 4) * 32 + (unsigned)((v >> (msb - 5)) & 31);
}
static double hist_value(unsigned idx) {
  if (idx < 64) return idx;
  unsigned msb = idx / 32 + 4;
  double low = (double)((uint64_t)(32 + idx % 32) << (msb - 5));
  return low + (double)(1ull << (msb - 5)) / 2;
}
static double hist_quantile(double q) {
  uint64_t total = 0;
  for (unsigned i = 0; i < HIST_BUCKETS; ++i) total += hist[i];
  if (total == 0) return 0;
  uint64_t rank = (uint64_t)(q * (double)(total - 1)) + 1, seen = 0;
  for (unsigned i = 0; i < HIST_BUCKETS; ++i) {
    seen += hist[i];
    if (seen >= rank) return hist_value(i);
  }
  return 0;
}

static char first_error[200];
static uint64_t errors, mismatches;
static void error_at(uint32_t conn, const char* fmt, ...) {
  ++errors;
  if (first_error[0]) return;
  int n = snprintf(first_error, sizeof first_error, "conn %u: ", conn);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(first_error + n, sizeof first_error - (size_t)n, fmt, ap);
  va_end(ap);
  for (char* p = first_error; *p; ++p) { /* stays a flat JSON string */
    if (*p == '"' || *p == '\\' || *p == ',' || (unsigned char)*p < 0x20) *p = ' ';
  }
}

/* /proc figures: ticks of CPU time; the server's also in ns (schedstat). */
struct proc_sample {
  uint64_t server_ticks, self_ticks, busy_ticks, irq_ticks, total_ticks;
  uint64_t server_ns;
  long server_rss_kib;
  int server_ok, server_ns_ok;
};
static int read_file(const char* path, char* buf, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, cap - 1);
  close(fd);
  if (n < 0) return -1;
  buf[n] = 0;
  return (int)n;
}
static int stat_ticks(const char* path, uint64_t* ticks) {
  char buf[1024];
  if (read_file(path, buf, sizeof buf) < 0) return -1;
  const char* p = strrchr(buf, ')'); /* comm may hold spaces */
  if (!p) return -1;
  unsigned long long utime = 0, stime = 0;
  /* fields after comm: state(3) ... utime(14) stime(15) */
  if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
    return -1;
  *ticks = utime + stime;
  return 0;
}
/* The CPU time of all of pid's threads in ns: the first field of each
 * /proc/PID/task/TID/schedstat (the scheduler's runtime, which /proc/PID/stat
 * reports only in 10 ms ticks: +-7% of a server busy 15% of a 1 s window). */
static int schedstat_ns(int pid, uint64_t* ns) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task", pid);
  DIR* dir = opendir(path);
  if (!dir) return -1;
  uint64_t sum = 0;
  int threads = 0, ok = 1;
  for (struct dirent* e; (e = readdir(dir)) != NULL;) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    char file[320], buf[128];
    unsigned long long run = 0;
    snprintf(file, sizeof file, "/proc/%d/task/%s/schedstat", pid, e->d_name);
    if (read_file(file, buf, sizeof buf) < 0) continue; /* the thread just exited */
    if (sscanf(buf, "%llu", &run) != 1) ok = 0;
    sum += run;
    ++threads;
  }
  closedir(dir);
  if (!ok || threads == 0) return -1;
  *ns = sum;
  return 0;
}
static long rss_kib(int pid) {
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  if (read_file(path, buf, sizeof buf) < 0) return -1;
  const char* p = strstr(buf, "VmRSS:");
  return p ? strtol(p + 6, NULL, 10) : -1;
}
static void sample(struct proc_sample* s) {
  memset(s, 0, sizeof *s);
  char buf[512];
  if (read_file("/proc/stat", buf, sizeof buf) > 0) {
    unsigned long long f[8] = {0};
    sscanf(buf, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &f[0], &f[1], &f[2], &f[3], &f[4],
           &f[5], &f[6], &f[7]);
    /* user nice system idle iowait irq softirq steal */
    s->busy_ticks = f[0] + f[1] + f[2] + f[7];
    s->irq_ticks = f[5] + f[6];
    s->total_ticks = f[0] + f[1] + f[2] + f[3] + f[4] + f[5] + f[6] + f[7];
  }
  stat_ticks("/proc/self/stat", &s->self_ticks);
  if (cfg.server_pid > 0) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", cfg.server_pid);
    s->server_ok = stat_ticks(path, &s->server_ticks) == 0;
    s->server_ns_ok = schedstat_ns(cfg.server_pid, &s->server_ns) == 0;
    s->server_rss_kib = rss_kib(cfg.server_pid);
  }
}

/* The server's CPU seconds between two samples (-1: unknown): schedstat's
 * ns when both samples have them, else /proc/PID/stat's ticks. */
static double server_cpu_seconds(const struct proc_sample* a, const struct proc_sample* b,
                                 double ticks_per_s) {
  if (a->server_ns_ok && b->server_ns_ok && b->server_ns >= a->server_ns)
    return (double)(b->server_ns - a->server_ns) / 1e9;
  if (a->server_ok && b->server_ok)
    return (double)(b->server_ticks - a->server_ticks) / ticks_per_s;
  return -1;
}

/* ---- message pattern ---- */
static uint8_t* pattern; /* random bytes: 4096 + size */
static uint8_t header[SBMP_HEADER_SIZE];
static uint32_t prefix;  /* 16 for SBMP, 0 for raw */
static uint32_t msg_len; /* prefix + size */

static inline const uint8_t* payload_of(uint32_t conn, uint64_t seq) {
  return pattern + (((uint64_t)conn * 4099u + seq * 61u) & 4095u);
}

/* ---- connections ---- */
enum { CONNECTING, TLS_HANDSHAKE, HELLO_WAIT, READY, DONE };

struct conn {
  int fd;
  uint32_t id;
  uint8_t state;
  uint8_t want_write; /* a write came up short: wait for EPOLLOUT */
  uint64_t tx_seq;    /* next byte to send: message tx_seq, byte tx_off */
  uint32_t tx_off;
  uint64_t tx_limit; /* messages released for sending: seq < tx_limit */
  uint64_t rx_seq;   /* next byte expected back */
  uint32_t rx_off;
  uint64_t* sent_ns; /* release time of message seq, at [seq % window] */
  /* --engine=uring: the send in flight ends at (end_seq, end_off) if it is
   * sent whole; its bytes are in txb (small messages, copied) or described
   * by msg (large ones, pointing into the pattern). */
  uint8_t sending;
  uint32_t end_off;
  uint64_t end_seq;
  uint8_t* txb;
  struct msghdr* msg;
  uint32_t hs_have; /* HELLO_ACK bytes gathered */
  uint8_t hs[SBMP_HEADER_SIZE + 300];
#ifdef LOADGEN_TLS
  SSL* ssl;
  uint64_t started_ns; /* --handshakes: when this connection's connect began */
#endif
};

static struct conn* conns;
static uint32_t window; /* slots in sent_ns: depth, or max_outstanding with --rate */
static int epfd;
static uint32_t ready_count, done_count, connecting_count;
static uint64_t now;        /* the time of this loop iteration */
static int measuring;       /* RTTs go into the histogram */
static uint64_t msgs_total; /* messages verified, all phases */
static uint64_t late;       /* --rate: messages not sent, the connection's window was full */
static uint8_t rxbuf[1 << 18];
static uint8_t txbuf[128 * (SBMP_HEADER_SIZE + 2048)]; /* 128 iovecs' worth of small messages */
static uint64_t syscalls;     /* read, write(v), epoll_pwait2, io_uring_enter */
static uint8_t* tls_txbuf;    /* --tls: what one SSL_write takes (512 KiB + a message) */
static struct io_uring uring; /* --engine=uring */
static int uring_on;          /* the load runs on `uring` (connections that have c->msg) */

/* ---- TLS: read and write as read(2)/write(2) do (EAGAIN when it would block) ---- */
#ifdef LOADGEN_TLS
static SSL_CTX* tls_ctx;
static uint64_t handshakes_total;

static const char* tls_reason(void) {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  const char* r = e ? ERR_reason_error_string(e) : NULL;
  return r ? r : "TLS error";
}

static int tls_setup(void) {
  tls_ctx = SSL_CTX_new(TLS_client_method());
  if (!tls_ctx) return -1;
  SSL_CTX_set_min_proto_version(tls_ctx, TLS1_3_VERSION);
  SSL_CTX_set_mode(tls_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (cfg.tls_ca) {
    if (SSL_CTX_load_verify_locations(tls_ctx, cfg.tls_ca, NULL) != 1) {
      fprintf(stderr, "loadgen: --tls-ca=%s: %s\n", cfg.tls_ca, tls_reason());
      return -1;
    }
    SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_PEER, NULL);
  }
  return 0;
}

/* After the TCP connect: a new SSL on the socket, client side. */
static int tls_attach(struct conn* c) {
  c->ssl = SSL_new(tls_ctx);
  if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) return -1;
  SSL_set_tlsext_host_name(c->ssl, cfg.tls_server_name);
  if (cfg.tls_ca) SSL_set1_host(c->ssl, cfg.tls_server_name);
  SSL_set_connect_state(c->ssl);
  return 0;
}

static ssize_t tls_result(struct conn* c, int r) {
  if (r > 0) return r;
  switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
      errno = EAGAIN;
      return -1;
    case SSL_ERROR_ZERO_RETURN:
      return 0;
    case SSL_ERROR_SYSCALL:
      if (errno == 0) errno = ECONNRESET;
      return -1;
    default:
      errno = EPROTO;
      return -1;
  }
}
#endif

static ssize_t conn_read(struct conn* c, void* buf, size_t n) {
#ifdef LOADGEN_TLS
  if (c->ssl) return tls_result(c, SSL_read(c->ssl, buf, n > (1u << 30) ? 1 << 30 : (int)n));
#endif
  return read(c->fd, buf, n);
}

static ssize_t conn_write(struct conn* c, const void* buf, size_t n) {
#ifdef LOADGEN_TLS
  if (c->ssl) return tls_result(c, SSL_write(c->ssl, buf, n > (1u << 30) ? 1 << 30 : (int)n));
#endif
  return write(c->fd, buf, n);
}

static void conn_fail(struct conn* c) {
  if (c->state == DONE) return;
  if (c->state == READY) --ready_count;
  c->state = DONE;
  ++done_count;
  epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
#ifdef LOADGEN_TLS
  SSL_free(c->ssl);
  c->ssl = NULL;
#endif
  if (c->msg != NULL) { /* end its recv and send on the ring, and let go of its slot */
    shutdown(c->fd, SHUT_RDWR);
    int none = -1;
    io_uring_register_files_update(&uring, c->id, &none, 1);
  }
  close(c->fd);
  c->fd = -1;
}

/* Releases message c->tx_limit for sending at time t. */
static inline void release(struct conn* c, uint64_t t) {
  c->sent_ns[c->tx_limit % window] = t;
  ++c->tx_limit;
}

/* Describes the released bytes from (tx_seq, tx_off) on: at most 128 iovecs
 * and 512 KiB. Returns the iovec count; *total is their size, and
 * (*end_seq, *end_off) where they end. */
static int gather(const struct conn* c, struct iovec* iov, size_t* total, uint64_t* end_seq,
                  uint32_t* end_off) {
  int n = 0;
  size_t sum = 0;
  uint64_t seq = c->tx_seq;
  uint32_t off = c->tx_off;
  while (seq < c->tx_limit && n + 2 <= 128 && sum < (1u << 19)) {
    if (off < prefix) {
      iov[n].iov_base = header + off;
      iov[n].iov_len = prefix - off;
      sum += prefix - off;
      ++n;
      off = prefix;
    }
    iov[n].iov_base = (void*)(payload_of(c->id, seq) + (off - prefix));
    iov[n].iov_len = msg_len - off;
    sum += msg_len - off;
    if (iov[n].iov_len) ++n;
    ++seq;
    off = 0;
  }
  *total = sum;
  *end_seq = seq;
  *end_off = off;
  return n;
}

/* Small messages go out copied into one buffer: one write of it costs less
 * than a writev of two iovecs per message. */
static size_t copy_out(const struct iovec* iov, int n, uint8_t* out) {
  size_t at = 0;
  for (int i = 0; i < n; ++i) {
    memcpy(out + at, iov[i].iov_base, iov[i].iov_len);
    at += iov[i].iov_len;
  }
  return at;
}

/* (tx_seq, tx_off) moves on by w bytes written. */
static void advance_tx(struct conn* c, size_t w) {
  uint64_t pos = (uint64_t)c->tx_off + (uint64_t)w;
  c->tx_seq += pos / msg_len;
  c->tx_off = (uint32_t)(pos % msg_len);
}

static void uring_flush(struct conn* c);

/* Writes released bytes until done or the socket is full. */
static void flush(struct conn* c) {
  if (c->msg != NULL) { /* on the ring */
    uring_flush(c);
    return;
  }
  struct iovec iov[128];
  while (!c->want_write && c->state == READY && (c->tx_seq < c->tx_limit)) {
    size_t total;
    uint64_t end_seq;
    uint32_t end_off;
    const int n = gather(c, iov, &total, &end_seq, &end_off);
    ssize_t w;
    if (msg_len <= 2048 || cfg.tls) { /* small messages (or TLS): one copy, one write */
      uint8_t* out = cfg.tls ? tls_txbuf : txbuf;
      w = conn_write(c, out, copy_out(iov, n, out));
    } else {
      w = writev(c->fd, iov, n);
    }
    ++syscalls;
    if (w < 0) {
      if (errno == EAGAIN) {
        c->want_write = 1;
        return;
      }
      error_at(c->id, "write: %s", strerror(errno));
      conn_fail(c);
      return;
    }
    advance_tx(c, (size_t)w);
    if ((size_t)w < total) c->want_write = 1;
  }
}

/* Checks n echoed bytes against what was sent. */
static void verify(struct conn* c, const uint8_t* p, size_t n) {
  while (n > 0) {
    /* What has been written, or is being written (--engine=uring) */
    const uint64_t tx_seq = c->sending ? c->end_seq : c->tx_seq;
    const uint32_t tx_off = c->sending ? c->end_off : c->tx_off;
    if (c->rx_seq > tx_seq || (c->rx_seq == tx_seq && c->rx_off >= tx_off)) {
      ++mismatches;
      error_at(c->id, "%zu byte(s) back that were never sent (message %" PRIu64 ")", n, c->rx_seq);
      conn_fail(c);
      return;
    }
    uint32_t take = msg_len - c->rx_off;
    if (take > n) take = (uint32_t)n;
    const uint8_t* want;
    uint32_t done = 0;
    if (c->rx_off < prefix) {
      uint32_t h = prefix - c->rx_off;
      if (h > take) h = take;
      if (memcmp(p, header + c->rx_off, h) != 0) goto mismatch;
      done = h;
    }
    want = payload_of(c->id, c->rx_seq) + (c->rx_off + done - prefix);
    if (take > done && memcmp(p + done, want, take - done) != 0) goto mismatch;
    p += take;
    n -= take;
    c->rx_off += take;
    if (c->rx_off == msg_len) {
      if (measuring) ++hist[hist_index(now - c->sent_ns[c->rx_seq % window])];
      ++msgs_total;
      ++c->rx_seq;
      c->rx_off = 0;
    }
  }
  return;
mismatch:
  ++mismatches;
  error_at(c->id, "echo differs in message %" PRIu64 " near byte %u", c->rx_seq, c->rx_off);
  conn_fail(c);
}

static int load_running; /* closed loop: refill windows */

static void on_readable(struct conn* c) {
  for (;;) {
    ssize_t r = conn_read(c, rxbuf, sizeof rxbuf);
    ++syscalls;
    if (r > 0) {
      verify(c, rxbuf, (size_t)r);
      if (c->state != READY) return;
      /* drained (edge-triggered); TLS hands out one record per call */
      if ((size_t)r < sizeof rxbuf && !cfg.tls) break;
      continue;
    }
    if (r == 0) {
      error_at(c->id, "server closed the connection (message %" PRIu64 ")", c->rx_seq);
      conn_fail(c);
      return;
    }
    if (errno == EAGAIN) break;
    if (errno == EINTR) continue;
    error_at(c->id, "read: %s", strerror(errno));
    conn_fail(c);
    return;
  }
  if (load_running && cfg.rate == 0) {
    while (c->tx_limit < c->rx_seq + cfg.depth) release(c, now);
    flush(c);
  }
}

/* ---- --engine=uring: the measured load on io_uring ---- */
enum { UR_RECV = 0, UR_SEND = 1 }; /* user_data: connection id << 1 | kind */
enum { UR_BUF_GROUP = 1 };
static struct io_uring_buf_ring* ubr;
static uint8_t* ubufs;
static uint32_t ubuf_count, ubuf_size;

static struct io_uring_sqe* uring_sqe(void) {
  struct io_uring_sqe* sqe = io_uring_get_sqe(&uring);
  if (sqe == NULL) { /* the SQ is full: hand it to the kernel */
    io_uring_submit(&uring);
    ++syscalls;
    sqe = io_uring_get_sqe(&uring);
  }
  return sqe;
}

static void uring_arm_recv(struct conn* c) {
  struct io_uring_sqe* sqe = uring_sqe();
  if (sqe == NULL) {
    error_at(c->id, "io_uring: no submission queue entry for a recv");
    conn_fail(c);
    return;
  }
  io_uring_prep_recv_multishot(sqe, (int)c->id, NULL, 0, 0); /* fixed file c->id */
  sqe->flags |= IOSQE_BUFFER_SELECT | IOSQE_FIXED_FILE;
  sqe->buf_group = UR_BUF_GROUP;
  io_uring_sqe_set_data64(sqe, (uint64_t)c->id << 1 | UR_RECV);
}

/* One send of the released bytes, unless one is in flight: its completion
 * sends the rest. */
static void uring_flush(struct conn* c) {
  if (c->sending || c->state != READY || c->tx_seq >= c->tx_limit) return;
  struct io_uring_sqe* sqe = uring_sqe();
  if (sqe == NULL) {
    error_at(c->id, "io_uring: no submission queue entry for a send");
    conn_fail(c);
    return;
  }
  size_t total;
  struct iovec* iov = c->msg->msg_iov;
  const int n = gather(c, iov, &total, &c->end_seq, &c->end_off);
  if (c->txb != NULL) {
    io_uring_prep_send(sqe, (int)c->id, c->txb, copy_out(iov, n, c->txb), MSG_NOSIGNAL);
  } else {
    c->msg->msg_iovlen = (size_t)n;
    io_uring_prep_sendmsg(sqe, (int)c->id, c->msg, MSG_NOSIGNAL);
  }
  sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, (uint64_t)c->id << 1 | UR_SEND);
  c->sending = 1;
}

static void uring_on_send(struct conn* c, int res) {
  c->sending = 0;
  if (c->state != READY) return;
  if (res < 0) {
    error_at(c->id, "send: %s", strerror(-res));
    conn_fail(c);
    return;
  }
  advance_tx(c, (size_t)res); /* a short send: the rest goes next */
  uring_flush(c);
}

static void uring_on_recv(struct conn* c, const struct io_uring_cqe* cqe) {
  const int more = cqe->flags & IORING_CQE_F_MORE;
  if (cqe->res > 0) {
    const uint32_t bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
    uint8_t* buf = ubufs + (size_t)bid * ubuf_size;
    if (c->state == READY) verify(c, buf, (size_t)cqe->res);
    io_uring_buf_ring_add(ubr, buf, ubuf_size, (unsigned short)bid,
                          io_uring_buf_ring_mask(ubuf_count), 0);
    io_uring_buf_ring_advance(ubr, 1);
    if (c->state != READY) return;
    if (load_running && cfg.rate == 0) {
      while (c->tx_limit < c->rx_seq + cfg.depth) release(c, now);
      uring_flush(c);
    }
    if (!more) uring_arm_recv(c);
    return;
  }
  if (c->state != READY) return;
  if (cqe->res == -ENOBUFS) { /* every buffer was taken; they are back by the next submit */
    if (!more) uring_arm_recv(c);
    return;
  }
  if (cqe->res == 0) {
    error_at(c->id, "server closed the connection (message %" PRIu64 ")", c->rx_seq);
  } else {
    error_at(c->id, "recv: %s", strerror(-cqe->res));
  }
  conn_fail(c);
}

/* One pass: submits what was queued, waits for a completion or `until`. */
static void uring_poll_once(uint64_t until) {
  uint64_t t = now_ns();
  uint64_t wait = until > t ? until - t : 0;
  struct __kernel_timespec ts = {(long long)(wait / 1000000000u), (long long)(wait % 1000000000u)};
  struct io_uring_cqe* cqe;
  io_uring_submit_and_wait_timeout(&uring, &cqe, 1, &ts, NULL); /* -ETIME: the deadline came */
  ++syscalls;
  now = now_ns();
  unsigned head, n = 0;
  io_uring_for_each_cqe(&uring, head, cqe) {
    struct conn* c = &conns[cqe->user_data >> 1];
    if ((cqe->user_data & 1) == UR_SEND) {
      uring_on_send(c, cqe->res);
    } else {
      uring_on_recv(c, cqe);
    }
    ++n;
  }
  io_uring_cq_advance(&uring, n);
}

static uint32_t pow2_at_least(uint32_t v) {
  uint32_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

/* Moves every ready connection from epoll to a ring. 0, or -errno (the load
 * then stays on epoll). */
static int uring_start(void) {
  uint32_t entries = pow2_at_least(cfg.conns * 2 < 64 ? 64 : cfg.conns * 2);
  if (entries > 16384) entries = 16384;
  struct io_uring_params p;
  memset(&p, 0, sizeof p);
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
  p.cq_entries = entries * 4;
  int r = io_uring_queue_init_params(entries, &uring, &p);
  if (r == -EINVAL) { /* before 6.1: no DEFER_TASKRUN */
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_CQSIZE;
    p.cq_entries = entries * 4;
    r = io_uring_queue_init_params(entries, &uring, &p);
  }
  if (r < 0) return r;
  /* Buffers about as large as what a connection has in flight (4-64 KiB),
   * and no more of them than the connections can fill at once, 32 MiB at
   * most: the kernel writes into them in turn, and a small set stays in
   * the cache. */
  const uint64_t in_flight = (uint64_t)msg_len * (cfg.rate > 0 ? 4 : cfg.depth);
  ubuf_size = 4096;
  if (in_flight > 4096) ubuf_size = in_flight >= 65536 ? 65536 : pow2_at_least((uint32_t)in_flight);
  ubuf_count = pow2_at_least(cfg.conns * 2 < 64 ? 64 : cfg.conns * 2);
  while (ubuf_count > 64 && (uint64_t)ubuf_count * ubuf_size > (32u << 20)) ubuf_count >>= 1;
  if (ubuf_count > 32768) ubuf_count = 32768;
  /* io_uring_setup_buf_ring() came in liburing 2.4: map and register by hand. */
  ubr = mmap(NULL, ubuf_count * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE,
             MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  ubufs = malloc((size_t)ubuf_count * ubuf_size);
  if (ubr == MAP_FAILED || ubufs == NULL) {
    io_uring_queue_exit(&uring);
    return -ENOMEM;
  }
  struct io_uring_buf_reg reg = {
      .ring_addr = (unsigned long)ubr, .ring_entries = ubuf_count, .bgid = UR_BUF_GROUP};
  r = io_uring_register_buf_ring(&uring, &reg, 0);
  if (r < 0) {
    io_uring_queue_exit(&uring);
    return r;
  }
  io_uring_buf_ring_init(ubr);
  for (uint32_t i = 0; i < ubuf_count; ++i) {
    io_uring_buf_ring_add(ubr, ubufs + (size_t)i * ubuf_size, ubuf_size, (unsigned short)i,
                          io_uring_buf_ring_mask(ubuf_count), (int)i);
  }
  io_uring_buf_ring_advance(ubr, (int)ubuf_count);
  /* The sockets as fixed files, slot = connection id: no file lookup per
   * operation. */
  int* fds = malloc(cfg.conns * sizeof *fds);
  if (fds == NULL) {
    io_uring_queue_exit(&uring);
    return -ENOMEM;
  }
  for (uint32_t i = 0; i < cfg.conns; ++i) fds[i] = conns[i].state == READY ? conns[i].fd : -1;
  r = io_uring_register_files(&uring, fds, cfg.conns);
  free(fds);
  if (r < 0) {
    io_uring_queue_exit(&uring);
    return r;
  }
  /* What a send in flight reads, per connection, kept until exit: a msghdr
   * and 128 iovecs, and for small messages the bytes themselves (no more
   * than its window of messages is ever released). */
  const size_t msg_bytes = sizeof(struct msghdr) + 128 * sizeof(struct iovec);
  const size_t txb_bytes = msg_len <= 2048 ? (size_t)(window < 127 ? window : 127) * msg_len : 0;
  uint8_t* msgs = calloc(cfg.conns, msg_bytes);
  uint8_t* txbs = txb_bytes ? malloc(cfg.conns * txb_bytes) : NULL;
  if (msgs == NULL || (txb_bytes && txbs == NULL)) {
    free(msgs);
    io_uring_queue_exit(&uring);
    return -ENOMEM;
  }
  /* A connection with c->msg is on the ring (flush() asks). */
  for (uint32_t i = 0; i < cfg.conns; ++i) {
    struct conn* c = &conns[i];
    if (c->state != READY) continue;
    c->msg = (struct msghdr*)(msgs + (size_t)i * msg_bytes);
    c->msg->msg_iov = (struct iovec*)(c->msg + 1);
    if (txb_bytes) c->txb = txbs + (size_t)i * txb_bytes;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    uring_arm_recv(c);
  }
  uring_on = 1;
  return 0;
}

static void became_ready(struct conn* c) {
  c->state = READY;
  ++ready_count;
}

static void send_hello(struct conn* c) {
  static const char agent[] = "coring-bench-loadgen";
  uint8_t f[SBMP_HEADER_SIZE + 12 + sizeof agent];
  const uint32_t len = 12 + (uint32_t)sizeof agent - 1;
  sbmp_encode_header(f, SBMP_TYPE_HELLO, len, 0);
  uint8_t* p = f + SBMP_HEADER_SIZE;
  p[0] = SBMP_VERSION;
  p[1] = SBMP_VERSION;
  sbmp_put16(p + 2, 0);
  sbmp_put32(p + 4, 0); /* max_frame: default */
  sbmp_put32(p + 8, 0); /* features: none, so no CHK trailers */
  memcpy(p + 12, agent, sizeof agent - 1);
  if (conn_write(c, f, SBMP_HEADER_SIZE + len) != (ssize_t)(SBMP_HEADER_SIZE + len)) {
    error_at(c->id, "HELLO not written");
    conn_fail(c);
    return;
  }
  c->state = HELLO_WAIT;
}

static void on_hello_ack(struct conn* c) {
  for (;;) {
    uint32_t need = SBMP_HEADER_SIZE;
    if (c->hs_have >= SBMP_HEADER_SIZE) need += sbmp_get32(c->hs + 8);
    if (need > sizeof c->hs) {
      error_at(c->id, "HELLO_ACK too long");
      conn_fail(c);
      return;
    }
    if (c->hs_have == need && need > SBMP_HEADER_SIZE) break;
    ssize_t r = conn_read(c, c->hs + c->hs_have, need - c->hs_have);
    if (r <= 0) {
      if (r < 0 && errno == EAGAIN) return;
      error_at(c->id, "no HELLO_ACK (%s)", r == 0 ? "EOF" : strerror(errno));
      conn_fail(c);
      return;
    }
    c->hs_have += (uint32_t)r;
    if (c->hs_have == SBMP_HEADER_SIZE) {
      uint32_t err = sbmp_check_header(c->hs, sizeof c->hs);
      if (err || sbmp_get16(c->hs + 6) != SBMP_TYPE_HELLO_ACK || sbmp_get32(c->hs + 8) < 12) {
        error_at(c->id, "expected HELLO_ACK (type %u error %u)", sbmp_get16(c->hs + 6), err);
        conn_fail(c);
        return;
      }
    }
  }
  const uint8_t* p = c->hs + SBMP_HEADER_SIZE + sbmp_get16(c->hs + 12);
  if (p[0] != SBMP_VERSION || sbmp_get32(p + 8) != 0) {
    error_at(c->id, "HELLO_ACK chose version %#x features %#x", p[0], sbmp_get32(p + 8));
    conn_fail(c);
    return;
  }
  became_ready(c);
}

static int start_connect(struct conn* c, const struct sockaddr_in* addr) {
#ifdef LOADGEN_TLS
  c->started_ns = now_ns();
#endif
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) {
    error_at(c->id, "socket: %s", strerror(errno));
    c->state = DONE;
    ++done_count;
    return -1;
  }
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = c};
  epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
  c->state = CONNECTING;
  ++connecting_count;
  if (connect(c->fd, (const struct sockaddr*)addr, sizeof *addr) < 0 && errno != EINPROGRESS) {
    error_at(c->id, "connect: %s", strerror(errno));
    --connecting_count;
    conn_fail(c);
    return -1;
  }
  return 0;
}

static void connected(struct conn* c) {
  if (cfg.sbmp)
    send_hello(c);
  else
    became_ready(c);
}

#ifdef LOADGEN_TLS
static const struct sockaddr_in* server_addr;

/* --handshakes: this connection is done; the next one starts. */
static void handshake_done(struct conn* c) {
  ++handshakes_total;
  if (measuring) ++hist[hist_index(now_ns() - c->started_ns)];
  struct linger lg = {1, 0}; /* RST: no TIME_WAIT on either side */
  setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
  SSL_free(c->ssl);
  c->ssl = NULL;
  close(c->fd);
  c->fd = -1;
  start_connect(c, server_addr);
}

static void tls_step(struct conn* c) {
  ERR_clear_error();
  int r = SSL_do_handshake(c->ssl);
  ++syscalls;
  if (r == 1) {
    if (cfg.handshakes) {
      handshake_done(c);
    } else {
      connected(c);
    }
    return;
  }
  int e = SSL_get_error(c->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
  const long verify = SSL_get_verify_result(c->ssl);
  if (verify != X509_V_OK) {
    error_at(c->id, "TLS handshake: certificate: %s", X509_verify_cert_error_string(verify));
  } else {
    error_at(c->id, "TLS handshake: %s", e == SSL_ERROR_SYSCALL ? "connection lost" : tls_reason());
  }
  conn_fail(c);
}
#endif

static void on_event(struct conn* c, uint32_t events) {
#ifdef LOADGEN_TLS
  if (c->state == TLS_HANDSHAKE) {
    tls_step(c);
    return;
  }
#endif
  if (c->state == CONNECTING) {
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    --connecting_count;
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
      error_at(c->id, "connect: %s", strerror(err));
      conn_fail(c);
      return;
    }
#ifdef LOADGEN_TLS
    if (cfg.tls) {
      if (tls_attach(c) != 0) {
        error_at(c->id, "SSL_new: %s", tls_reason());
        conn_fail(c);
        return;
      }
      c->state = TLS_HANDSHAKE;
      tls_step(c);
      return;
    }
#endif
    connected(c);
    return;
  }
  if (c->state == HELLO_WAIT) {
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_hello_ack(c);
    return;
  }
  if (c->state != READY) return;
  if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c);
  if (c->state == READY && (events & EPOLLOUT) && c->want_write) {
    c->want_write = 0;
    flush(c);
  }
}

/* One pass of the event loop, waiting at most until `until` (ns). */
static void poll_once(uint64_t until) {
  if (uring_on) {
    uring_poll_once(until);
    return;
  }
  struct epoll_event evs[256];
  uint64_t t = now_ns();
  uint64_t wait = until > t ? until - t : 0;
  struct timespec ts = {(time_t)(wait / 1000000000u), (long)(wait % 1000000000u)};
  int n = epoll_pwait2(epfd, evs, 256, &ts, NULL);
  ++syscalls;
  now = now_ns();
  for (int i = 0; i < n; ++i) on_event((struct conn*)evs[i].data.ptr, evs[i].events);
}

static volatile sig_atomic_t interrupted;
static void on_signal(int sig) {
  (void)sig;
  interrupted = 1;
}

/* TCP segments over the connections (TCP_INFO; Linux 4.6+): what the
 * client's sockets received are the segments the server sent - its echoes
 * and its pure ACKs - and what they sent, the segments it received. On
 * loopback every segment costs both ends a pass through the stack (and,
 * with receive steering, an inter-processor interrupt), so segments per
 * message explain much of a server's kernel time: an echo that sends the
 * same bytes in fewer, fuller segments, or acknowledges with its data
 * instead of alone, costs less. glibc's struct tcp_info stops before these
 * counters: the kernel's layout goes on past it as below. */
struct tcp_info_segs {
  struct tcp_info base;
  uint64_t pacing_rate, max_pacing_rate, bytes_acked, bytes_received;
  uint32_t segs_out, segs_in, notsent_bytes, min_rtt, data_segs_in, data_segs_out;
};
_Static_assert(offsetof(struct tcp_info_segs, segs_out) == 136, "struct tcp_info layout");
_Static_assert(offsetof(struct tcp_info_segs, data_segs_out) == 156, "struct tcp_info layout");
struct seg_counts {
  uint64_t in, data_in, out; /* the client's: the server's out, data out, in */
  uint32_t conns;            /* the connections counted */
  int ok;
};
static void count_segments(struct seg_counts* s) {
  memset(s, 0, sizeof *s);
  s->ok = 1;
  for (uint32_t i = 0; i < cfg.conns; ++i) {
    const struct conn* c = &conns[i];
    if (c->state != READY) continue;
    struct tcp_info_segs ti;
    socklen_t len = sizeof ti;
    if (getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
        len < offsetof(struct tcp_info_segs, data_segs_out) + sizeof ti.data_segs_out) {
      s->ok = 0;
      return;
    }
    s->in += ti.segs_in;
    s->data_in += ti.data_segs_in;
    s->out += ti.segs_out;
    ++s->conns;
  }
}
/* Per message between two counts, or -1 when unknown (a connection ended
 * in between, or the kernel has no such counters). */
static double segs_per_msg(const struct seg_counts* a, const struct seg_counts* b, uint64_t a_v,
                           uint64_t b_v, uint64_t msgs) {
  if (!a->ok || !b->ok || a->conns != b->conns || b_v < a_v || msgs == 0) return -1;
  return (double)(b_v - a_v) / (double)msgs;
}
static double user_seconds(const struct rusage* a, const struct rusage* b) {
  return (double)(b->ru_utime.tv_sec - a->ru_utime.tv_sec) +
         (double)(b->ru_utime.tv_usec - a->ru_utime.tv_usec) / 1e6;
}
static double cpu_seconds(const struct rusage* a, const struct rusage* b) {
  return user_seconds(a, b) + (double)(b->ru_stime.tv_sec - a->ru_stime.tv_sec) +
         (double)(b->ru_stime.tv_usec - a->ru_stime.tv_usec) / 1e6;
}

#ifdef LOADGEN_TLS
/* --handshakes: --conns connections handshake over and over. */
static int run_handshakes(const struct sockaddr_in* addr) {
  now = now_ns();
  for (uint32_t i = 0; i < cfg.conns; ++i) {
    conns[i].id = i;
    start_connect(&conns[i], addr);
  }
  const uint64_t t_measure = now + (uint64_t)(cfg.warmup * 1e9);
  const uint64_t t_end = t_measure + (uint64_t)(cfg.duration * 1e9);
  while (!interrupted && now < t_measure && done_count < cfg.conns) poll_once(t_measure);
  struct proc_sample s0, s1;
  struct rusage ru0, ru1;
  getrusage(RUSAGE_SELF, &ru0);
  sample(&s0);
  const uint64_t h0 = handshakes_total;
  measuring = 1;
  const uint64_t t0 = now_ns();
  while (!interrupted && now < t_end && done_count < cfg.conns) poll_once(t_end);
  measuring = 0;
  const double seconds = (double)(now_ns() - t0) / 1e9;
  getrusage(RUSAGE_SELF, &ru1);
  sample(&s1);
  const uint64_t n = handshakes_total - h0;
  const double tck = (double)sysconf(_SC_CLK_TCK);
  const double server_cpu = server_cpu_seconds(&s0, &s1, tck);
  const double client_cpu = cpu_seconds(&ru0, &ru1);
  const double m = n ? (double)n : 1;
  if (n == 0) error_at(0, "no handshake completed");
  printf(
      "{\"label\":\"%s\",\"mode\":\"handshakes\",\"proto\":\"tls\",\"conns\":%u,"
      "\"seconds\":%.3f,\"handshakes\":%" PRIu64
      ",\"handshakes_per_sec\":%.0f,\"p50_us\":%.1f,\"p99_us\":%.1f,"
      "\"client_cpu_s\":%.4f,\"client_us_per_handshake\":%.2f,\"server_cpu_s\":%.3f,"
      "\"server_us_per_handshake\":%.2f,\"server_rss_kib\":%ld,\"errors\":%" PRIu64
      ",\"first_error\":\"%s\"}\n",
      cfg.label, cfg.conns, seconds, n, seconds > 0 ? (double)n / seconds : 0,
      hist_quantile(0.5) / 1e3, hist_quantile(0.99) / 1e3, client_cpu, client_cpu * 1e6 / m,
      server_cpu, server_cpu >= 0 ? server_cpu * 1e6 / m : -1, s1.server_rss_kib, errors,
      first_error);
  fflush(stdout);
  return errors ? 1 : 0;
}
#endif

int main(int argc, char** argv) {
  parse_args(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  prctl(PR_SET_TIMERSLACK, 1UL); /* --rate: wake on time, not up to 50 us late */
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  if (cfg.cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cfg.cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) perror("loadgen: sched_setaffinity");
  }
  prefix = cfg.sbmp ? SBMP_HEADER_SIZE : 0;
  msg_len = prefix + cfg.size;
  if (cfg.sbmp) sbmp_encode_header(header, SBMP_TYPE_ECHO, cfg.size, 0);
  /* Whole 8-byte words: the fill below writes one at a time. */
  const size_t pattern_len = ((size_t)4096 + cfg.size + 8 + 7) & ~(size_t)7;
  pattern = malloc(pattern_len);
  if (!pattern) return 2;
  uint64_t x = 0x1234567890ABCDEFull;
  for (size_t i = 0; i < pattern_len; i += 8) { /* splitmix64 */
    uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    memcpy(pattern + i, &z, 8);
  }
  window = cfg.rate > 0 ? cfg.max_outstanding : cfg.depth;
  conns = calloc(cfg.conns, sizeof *conns);
  uint64_t* slots = calloc((size_t)cfg.conns * window, sizeof(uint64_t));
  if (!conns || !slots) return 2;

  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cfg.port)};
  if (inet_pton(AF_INET, strcmp(cfg.host, "localhost") ? cfg.host : "127.0.0.1", &addr.sin_addr) !=
      1) {
    fprintf(stderr, "loadgen: --host must be a numeric IPv4 address\n");
    return 1;
  }
  epfd = epoll_create1(EPOLL_CLOEXEC);
#ifdef LOADGEN_TLS
  if (cfg.tls) {
    if (tls_setup() != 0) return 1;
    tls_txbuf = malloc((1u << 19) + msg_len);
    if (!tls_txbuf) return 2;
    server_addr = &addr;
    if (cfg.handshakes) {
      free(slots); /* connections come and go one by one there */
      return run_handshakes(&addr);
    }
  }
#endif

  const long rss_before = cfg.server_pid > 0 ? rss_kib(cfg.server_pid) : -1;
  /* Connect, at most 256 handshakes at a time (a full backlog drops SYNs). */
  uint32_t next = 0;
  const uint64_t connect_deadline = now_ns() + 60000000000ull;
  now = now_ns();
  while (ready_count + done_count < cfg.conns && !interrupted && now < connect_deadline) {
    while (next < cfg.conns && connecting_count < 256) {
      conns[next].id = next;
      conns[next].sent_ns = slots + (size_t)next * window;
      start_connect(&conns[next], &addr);
      ++next;
    }
    poll_once(now + 10000000u);
  }
  if (ready_count < cfg.conns) {
    if (!first_error[0])
      error_at(ready_count, "only %u of %u connections ready", ready_count, cfg.conns);
    errors += cfg.conns - ready_count - done_count;
  }

  struct proc_sample s0, s1;
  struct rusage ru0, ru1;
  double seconds = 0;
  uint64_t msgs = 0;
  if (cfg.idle) {
    /* Memory: connections open and idle; let the server settle. */
    const uint64_t until = now_ns() + 1000000000ull;
    while (now_ns() < until && !interrupted) poll_once(until);
    long rss_after = rss_kib(cfg.server_pid);
    printf(
        "{\"label\":\"%s\",\"mode\":\"idle\",\"proto\":\"%s\",\"conns\":%u,\"ready\":%u,"
        "\"server_rss_before_kib\":%ld,\"server_rss_kib\":%ld,\"rss_per_conn_bytes\":%.0f,"
        "\"errors\":%" PRIu64 ",\"first_error\":\"%s\"}\n",
        cfg.label, cfg.sbmp ? "sbmp" : "raw", cfg.conns, ready_count, rss_before, rss_after,
        ready_count ? (double)(rss_after - rss_before) * 1024.0 / ready_count : 0.0, errors,
        first_error);
    fflush(stdout);
    /* --hold=S: keep them open a while longer (to look at the server). */
    const uint64_t hold_end = now_ns() + (uint64_t)(cfg.hold * 1e9);
    while (now_ns() < hold_end && !interrupted) poll_once(hold_end);
  } else {
    /* Load: warm up, then the measured window, then drain. */
    if (cfg.engine == ENGINE_URING) {
      const int r = uring_start();
      if (r < 0) {
        fprintf(stderr, "loadgen: io_uring: %s; the load runs on epoll\n", strerror(-r));
        cfg.engine = ENGINE_EPOLL;
      }
    }
    load_running = 1;
    const uint64_t t0 = now_ns();
    now = t0;
    uint64_t k = 0; /* --rate: next message to schedule */
    const double ns_per_msg = cfg.rate > 0 ? 1e9 / cfg.rate : 0;
    if (cfg.rate == 0) {
      for (uint32_t i = 0; i < cfg.conns; ++i) {
        struct conn* c = &conns[i];
        if (c->state != READY) continue;
        while (c->tx_limit < cfg.depth) release(c, now);
        flush(c);
      }
    }
    const uint64_t t_measure = t0 + (uint64_t)(cfg.warmup * 1e9);
    const uint64_t t_end = t_measure + (uint64_t)(cfg.duration * 1e9);
    int phase = 0; /* 0 warmup, 1 measuring */
    uint64_t msgs0 = 0, late0 = 0, syscalls0 = 0;
    struct seg_counts seg0, seg1;
    while (!interrupted && ready_count > 0) {
      if (phase == 0 && now >= t_measure) {
        phase = 1;
        measuring = 1;
        msgs0 = msgs_total;
        late0 = late;
        syscalls0 = syscalls;
        count_segments(&seg0); /* (before the client's CPU time starts) */
        getrusage(RUSAGE_SELF, &ru0);
        sample(&s0);
      }
      if (phase == 1 && now >= t_end) break;
      uint64_t until = phase == 0 ? t_measure : t_end;
      if (cfg.rate > 0) {
        for (;;) {
          const uint64_t due = t0 + (uint64_t)((double)k * ns_per_msg);
          if (due > now) {
            if (due < until) until = due;
            break;
          }
          struct conn* c = &conns[k % cfg.conns];
          if (c->state == READY) {
            if (c->tx_limit - c->rx_seq < window) {
              release(c, due);
              flush(c);
            } else {
              ++late;
            }
          }
          ++k;
        }
      } else if (until > now + 10000000u) {
        until = now + 10000000u;
      }
      poll_once(until);
    }
    getrusage(RUSAGE_SELF, &ru1);
    sample(&s1);
    count_segments(&seg1); /* (after the client's CPU time ends) */
    if (phase == 0) {
      s0 = s1;
      ru0 = ru1;
      seg0 = seg1;
      msgs0 = msgs_total;
    }
    seconds = phase == 1 ? (double)(now - t_measure) / 1e9 : 0;
    msgs = msgs_total - msgs0;
    measuring = 0;
    load_running = 0;
    /* Drain: every released message must come back. */
    /* 5 s, plus time for what may be in flight at 100 MB/s (at most 60 s). */
    double drain_s = 5.0 + (double)cfg.conns * window * msg_len / 1e8;
    if (drain_s > 60) drain_s = 60;
    const uint64_t drain_end = now_ns() + (uint64_t)(drain_s * 1e9);
    for (;;) {
      int pending = 0;
      for (uint32_t i = 0; i < cfg.conns; ++i) {
        struct conn* c = &conns[i];
        if (c->state == READY && c->rx_seq < c->tx_limit) pending = 1;
      }
      if (!pending || now_ns() >= drain_end || interrupted) break;
      poll_once(now_ns() + 10000000u);
    }
    for (uint32_t i = 0; i < cfg.conns; ++i) {
      struct conn* c = &conns[i];
      if (c->state == READY && c->rx_seq < c->tx_limit) {
        error_at(c->id, "%" PRIu64 " message(s) never came back", c->tx_limit - c->rx_seq);
      }
    }

    const double tck = (double)sysconf(_SC_CLK_TCK);
    const double client_cpu = cpu_seconds(&ru0, &ru1);
    const double server_cpu = server_cpu_seconds(&s0, &s1, tck);
    const double total = (double)(s1.total_ticks - s0.total_ticks);
    double other = (double)(s1.busy_ticks - s0.busy_ticks) -
                   (double)(s1.self_ticks - s0.self_ticks) -
                   (s0.server_ok ? (double)(s1.server_ticks - s0.server_ticks) : 0);
    if (other < 0) other = 0;
    const double irq = (double)(s1.irq_ticks - s0.irq_ticks);
    const double m = msgs ? (double)msgs : 1;
    printf(
        "{\"label\":\"%s\",\"mode\":\"%s\",\"proto\":\"%s%s\",\"engine\":\"%s\","
        "\"conns\":%u,\"size\":%u,"
        "\"depth\":%u,\"rate\":%.0f,\"seconds\":%.3f,\"msgs\":%" PRIu64
        ",\"msgs_per_sec\":%.0f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,"
        "\"late\":%" PRIu64
        ",\"client_cpu_s\":%.4f,\"client_us_per_msg\":%.4f,\"client_user_us_per_msg\":%.4f,"
        "\"server_cpu_s\":%.3f,\"server_us_per_msg\":%.4f,\"server_rss_kib\":%ld,"
        "\"client_syscalls_per_msg\":%.3f,\"host_other_pct\":%.1f,\"host_irq_pct\":%.1f,"
        "\"server_segs_out_per_msg\":%.3f,\"server_data_segs_out_per_msg\":%.3f,"
        "\"server_segs_in_per_msg\":%.3f,"
        "\"errors\":%" PRIu64 ",\"mismatches\":%" PRIu64 ",\"first_error\":\"%s\"}\n",
        cfg.label, cfg.rate > 0 ? "rate" : (cfg.depth == 1 ? "pingpong" : "pipelined"),
        cfg.sbmp ? "sbmp" : "raw", cfg.tls ? "+tls" : "", uring_on ? "uring" : "epoll", cfg.conns,
        cfg.size, cfg.depth, cfg.rate, seconds, msgs, seconds > 0 ? (double)msgs / seconds : 0,
        hist_quantile(0.5) / 1e3, hist_quantile(0.99) / 1e3, hist_quantile(0.999) / 1e3,
        late - late0, client_cpu, client_cpu * 1e6 / m, user_seconds(&ru0, &ru1) * 1e6 / m,
        server_cpu, server_cpu >= 0 ? server_cpu * 1e6 / m : -1, s1.server_rss_kib,
        (double)(syscalls - syscalls0) / m, total > 0 ? other * 100.0 / total : 0,
        total > 0 ? irq * 100.0 / total : 0, segs_per_msg(&seg0, &seg1, seg0.in, seg1.in, msgs),
        segs_per_msg(&seg0, &seg1, seg0.data_in, seg1.data_in, msgs),
        segs_per_msg(&seg0, &seg1, seg0.out, seg1.out, msgs), errors, mismatches, first_error);
  }
  fflush(stdout);
  for (uint32_t i = 0; i < cfg.conns; ++i) {
    if (conns[i].fd > 0 && conns[i].state != DONE) close(conns[i].fd);
  }
  return errors || mismatches ? 1 : 0;
}
