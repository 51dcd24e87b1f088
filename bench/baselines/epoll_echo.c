/* epoll_echo: the classic non-blocking epoll echo server, as a baseline.
 * One thread, level-triggered epoll, read() into one shared buffer and
 * write() straight back; only when a write comes up short is the rest kept
 * for that connection, which then waits for EPOLLOUT and reads nothing until
 * it is flushed (so a peer that does not read is pushed back by TCP).
 *
 *   epoll_echo --port=0 [--host=127.0.0.1] [--sbmp] [--mangle-after=N]
 *   -> "listening on 127.0.0.1:NNNNN" on stdout's first line
 *
 * --sbmp echoes SBMP/1.3 application frames instead of bytes, with the same
 * pass-through scanner as uring_echo --sbmp (sbmp_wire.h): what one read()
 * brings is answered with one writev() of ranges of the read buffer (plus
 * the scanner's own bytes: split headers, HELLO_ACK, PONG, GOAWAY).
 *
 * --mangle-after=N flips one bit of the byte at offset N of every
 * connection's echo: a broken server, for testing that the load generator
 * notices. SIGINT/SIGTERM: exit 0.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "cli_number.h"
#include "sbmp_wire.h"

struct conn {
  int fd;
  uint64_t echoed;  /* bytes echoed so far (for --mangle-after) */
  uint8_t* pending; /* bytes read but not yet written */
  size_t pending_len, pending_off;
  struct sbmp_scanner* scanner; /* --sbmp */
  int closing;                  /* --sbmp: close once pending is written */
  struct conn *prev, *next;     /* every open connection, to free them at exit */
};

static volatile sig_atomic_t stop;
static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

static int epfd;
static long long mangle_after = -1;
static int sbmp_mode;
static uint8_t buf[1 << 18];

static struct conn* open_conns;

static void conn_close(struct conn* c) {
  if (c->prev)
    c->prev->next = c->next;
  else
    open_conns = c->next;
  if (c->next) c->next->prev = c->prev;
  epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  free(c->pending);
  free(c->scanner);
  free(c);
}

static void watch(struct conn* c, uint32_t events) {
  struct epoll_event ev = {.events = events, .data.ptr = c};
  epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Writes data; keeps what the socket did not take. Returns -1 on error. */
static int echo_out(struct conn* c, const uint8_t* data, size_t len) {
  ssize_t w = write(c->fd, data, len);
  if (w < 0) {
    if (errno != EAGAIN) return -1;
    w = 0;
  }
  if ((size_t)w < len) {
    c->pending = malloc(len - (size_t)w);
    memcpy(c->pending, data + w, len - (size_t)w);
    c->pending_len = len - (size_t)w;
    c->pending_off = 0;
    watch(c, EPOLLOUT);
  }
  return 0;
}

static void on_readable(struct conn* c) {
  ssize_t r = read(c->fd, buf, sizeof buf);
  if (r <= 0) {
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
    return conn_close(c); /* EOF or error */
  }
  if (mangle_after >= 0 && (uint64_t)mangle_after >= c->echoed &&
      (uint64_t)mangle_after < c->echoed + (uint64_t)r) {
    buf[mangle_after - (long long)c->echoed] ^= 0x01;
  }
  c->echoed += (uint64_t)r;
  if (echo_out(c, buf, (size_t)r) < 0) conn_close(c);
}

/* --sbmp: what one read answers, gathered for one writev(). Ranges of buf,
 * and copies (in side) of the scanner's bytes, which its next call reuses. */
static struct iovec iov[256];
static int niov;
static uint8_t side[1 << 16];
static size_t side_used;

/* Writes what is staged; keeps what the socket did not take. -1 on error. */
static int flush_staged(struct conn* c) {
  size_t total = 0;
  for (int i = 0; i < niov; ++i) total += iov[i].iov_len;
  ssize_t w = 0;
  if (!c->pending && niov > 0) {
    w = writev(c->fd, iov, niov);
    if (w < 0) {
      if (errno != EAGAIN) {
        niov = 0;
        side_used = 0;
        return -1;
      }
      w = 0;
    }
  }
  if ((size_t)w < total) { /* append the rest to pending, then wait for EPOLLOUT */
    const size_t keep = c->pending ? c->pending_len - c->pending_off : 0;
    uint8_t* p = malloc(keep + total - (size_t)w);
    if (keep) memcpy(p, c->pending + c->pending_off, keep);
    size_t at = keep, skip = (size_t)w;
    for (int i = 0; i < niov; ++i) {
      size_t len = iov[i].iov_len, off = 0;
      if (skip >= len) {
        skip -= len;
        continue;
      }
      off = skip;
      skip = 0;
      memcpy(p + at, (const uint8_t*)iov[i].iov_base + off, len - off);
      at += len - off;
    }
    free(c->pending);
    c->pending = p;
    c->pending_len = at;
    c->pending_off = 0;
    watch(c, EPOLLOUT);
  }
  niov = 0;
  side_used = 0;
  return 0;
}

static int stage(struct conn* c, const uint8_t* data, size_t len, int copy) {
  if (len == 0) return 0;
  if (niov == (int)(sizeof iov / sizeof iov[0]) || (copy && side_used + len > sizeof side)) {
    if (flush_staged(c) < 0) return -1;
  }
  if (copy) {
    memcpy(side + side_used, data, len);
    data = side + side_used;
    side_used += len;
  }
  iov[niov].iov_base = (void*)data;
  iov[niov].iov_len = len;
  ++niov;
  return 0;
}

static void on_readable_sbmp(struct conn* c) {
  ssize_t r = read(c->fd, buf, sizeof buf);
  if (r <= 0) {
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
    return conn_close(c); /* EOF or error */
  }
  size_t pos = 0;
  struct sbmp_event ev;
  int err = 0;
  do {
    sbmp_scan(c->scanner, buf, (size_t)r, &pos, &ev);
    switch (ev.kind) {
      case SBMP_EV_PASS:
        err = stage(c, buf + ev.off, ev.len, 0);
        break;
      case SBMP_EV_COPY:
      case SBMP_EV_REPLY:
        err = stage(c, ev.data, ev.len, 1);
        break;
      case SBMP_EV_CLOSE:
        err = stage(c, ev.data, ev.len, 1);
        c->closing = 1;
        break;
      case SBMP_EV_NEED_MORE:
        break;
    }
  } while (!err && ev.kind != SBMP_EV_NEED_MORE && ev.kind != SBMP_EV_CLOSE);
  if (err || flush_staged(c) < 0 || (c->closing && !c->pending)) conn_close(c);
}

static void on_writable(struct conn* c) {
  ssize_t w = write(c->fd, c->pending + c->pending_off, c->pending_len - c->pending_off);
  if (w < 0) {
    if (errno != EAGAIN) conn_close(c);
    return;
  }
  c->pending_off += (size_t)w;
  if (c->pending_off == c->pending_len) {
    free(c->pending);
    c->pending = NULL;
    if (c->closing) return conn_close(c);
    watch(c, EPOLLIN);
  }
}

int main(int argc, char** argv) {
  const char* host = "127.0.0.1";
  int port = 0;
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    if (strncmp(a, "--port=", 7) == 0)
      port = (int)cli_number("epoll_echo", "--port", a + 7, 0, 65535, 1);
    else if (strncmp(a, "--host=", 7) == 0)
      host = a + 7;
    else if (strncmp(a, "--mangle-after=", 15) == 0)
      mangle_after = (long long)cli_number("epoll_echo", "--mangle-after", a + 15, 0, 1e15, 1);
    else if (strcmp(a, "--sbmp") == 0)
      sbmp_mode = 1;
    else {
      fprintf(stderr, "usage: epoll_echo [--port=N] [--host=ADDR] [--sbmp] [--mangle-after=N]\n");
      return strcmp(a, "--help") == 0 ? 0 : 1;
    }
  }
  struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: epoll_wait sees EINTR */
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1 ||
      bind(lfd, (struct sockaddr*)&addr, sizeof addr) < 0 || listen(lfd, 4096) < 0) {
    fprintf(stderr, "epoll_echo: listen on %s:%d: %s\n", host, port, strerror(errno));
    return 1;
  }
  socklen_t alen = sizeof addr;
  getsockname(lfd, (struct sockaddr*)&addr, &alen);
  printf("listening on %s:%d\n", host, ntohs(addr.sin_port));
  fflush(stdout);

  epfd = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev);
  struct epoll_event evs[512];
  while (!stop) {
    int n = epoll_wait(epfd, evs, 512, -1);
    for (int i = 0; i < n; ++i) {
      struct conn* c = evs[i].data.ptr;
      if (!c) { /* the listener: accept what is waiting */
        for (int k = 0; k < 64; ++k) {
          int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) break;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          c = calloc(1, sizeof *c);
          if (!c) {
            close(fd);
            continue;
          }
          c->fd = fd;
          c->next = open_conns;
          if (open_conns) open_conns->prev = c;
          open_conns = c;
          if (sbmp_mode) {
            c->scanner = malloc(sizeof *c->scanner);
            sbmp_scanner_init(c->scanner, SBMP_DEFAULT_MAX_FRAME);
          }
          struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
          epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
        }
        continue;
      }
      if (c->pending)
        on_writable(c);
      else if (sbmp_mode)
        on_readable_sbmp(c);
      else
        on_readable(c);
    }
  }
  while (open_conns) conn_close(open_conns);
  close(epfd);
  close(lfd);
  return 0;
}
