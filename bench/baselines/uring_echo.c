/* uring_echo: the hand-written raw liburing echo server the benchmark
 * compares coring with. One thread, one ring, in C, straight on liburing 2.3:
 * multishot accept, multishot recv into a provided-buffer ring, and sends
 * straight out of the received buffers (no copy). With --sbmp it echoes
 * SBMP/1.3 application frames instead of bytes (see sbmp_wire.h for what it
 * checks): HELLO is answered, frames are passed through unchanged.
 *
 *   uring_echo --port=0 [--host=127.0.0.1] [--sbmp] [--buffers=1024] [--buffer-size=16896]
 *   -> "listening on 127.0.0.1:NNNNN" on stdout's first line
 *
 * The buffers are as many and as big as coring's receive buffers by default
 * (net/net_context.h, NetOptions: 1024 of 16 KiB + 512 B), so that both
 * servers read the same bytes per recv: an SBMP frame of 16 KiB payload with
 * its header, or a pipelined burst of 16 frames of 1 KiB, fits one buffer in
 * either. (With buffers of exactly 16 KiB, as this server had until
 * 2026-12-07, those took two recvs each, and frames split between two
 * buffers: --sbmp cost 2.2x as much per frame at 256 connections x 16
 * pipelined 1 KiB frames, which flattered coring's SBMP echo next to it.)
 *
 * SIGINT/SIGTERM: exit 0, printing its counters (completions and bytes per
 * io_uring_enter) on stderr. SIGUSR1: print "uring_echo: enters=N" on stderr
 * (bench/run.sh counts messages per io_uring_enter per cell with it).
 *
 * Every completion is one of four kinds, tagged in user_data's low bits, and
 * has one handler each: accept, recv, send, and nothing else.
 *
 * Why sends are serialised per connection: two sends in flight on one TCP
 * socket may complete out of order after a short write, which would reorder
 * the echo. A connection has at most one send (a sendmsg gathering up to
 * kMaxIov queued pieces) in flight; received buffers queue behind it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli_number.h"
#include "sbmp_wire.h"

enum { OP_ACCEPT = 1, OP_RECV = 2, OP_SEND = 3 };
enum { kMaxIov = 16, kBufGroup = 0 };

/* A piece of the echo waiting to be sent: bytes of a received buffer, or
 * (SBMP control answers and split headers) a small heap copy. */
struct piece {
  struct piece* next;
  const uint8_t* data;
  uint32_t len;
  int32_t bid;   /* provided buffer it points into, or -1 */
  uint8_t* heap; /* owned copy, or NULL */
};

struct conn {
  int fd;
  uint8_t recv_armed; /* a multishot recv is in flight */
  uint8_t sending;    /* a sendmsg is in flight (pieces [head, sent_n) of the queue) */
  uint8_t eof;        /* no more receiving: close once the queue is sent */
  uint8_t starved;    /* recv ended with ENOBUFS: re-arm when buffers come back */
  uint32_t sent_n;    /* pieces in the in-flight sendmsg */
  struct piece *head, *tail;
  struct conn* next_starved;
  struct sbmp_scanner* scanner; /* --sbmp */
  struct msghdr msg;
  struct iovec iov[kMaxIov];
};

static struct io_uring ring;
static struct io_uring_buf_ring* br;
static uint8_t* buffers;
static uint32_t* buffer_refs;
static unsigned buf_count = 1024, buf_size = 16 * 1024 + 512;
static int sbmp_mode;
static struct conn** conns;                 /* by fd */
static struct conn *starved, *starved_tail; /* FIFO of connections waiting for a buffer */
static struct piece* free_pieces;
static volatile sig_atomic_t stop, report;
static struct { unsigned long long enters, cqes, recvs, sends, bytes_in, enobufs; } stats;

static void on_signal(int sig) {
  if (sig == SIGUSR1)
    report = 1;
  else
    stop = 1;
}

static struct io_uring_sqe* get_sqe(void) {
  struct io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  if (!sqe) { /* SQ full: hand what we have to the kernel first */
    io_uring_submit(&ring);
    ++stats.enters;
    sqe = io_uring_get_sqe(&ring);
  }
  return sqe;
}

static void arm_accept(int listen_fd) {
  struct io_uring_sqe* sqe = get_sqe();
  io_uring_prep_multishot_accept(sqe, listen_fd, NULL, NULL, SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, ((uint64_t)listen_fd << 8) | OP_ACCEPT);
}

static void arm_recv(struct conn* c) {
  struct io_uring_sqe* sqe = get_sqe();
  io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = kBufGroup;
  io_uring_sqe_set_data64(sqe, ((uint64_t)c->fd << 8) | OP_RECV);
  c->recv_armed = 1;
}

static void pump(struct conn* c);

static void buffer_return(int bid) {
  if (--buffer_refs[bid] > 0) return;
  io_uring_buf_ring_add(br, buffers + (size_t)bid * buf_size, buf_size, (unsigned short)bid,
                        io_uring_buf_ring_mask(buf_count), 0);
  io_uring_buf_ring_advance(br, 1);
  /* A buffer is back: the connection that ran dry first may receive again.
   * One per buffer, in order: re-arming them all would mostly buy ENOBUFS. */
  while (starved) {
    struct conn* c = starved;
    starved = c->next_starved;
    if (!starved) starved_tail = NULL;
    c->starved = 0;
    if (!c->eof) {
      arm_recv(c);
      break;
    }
    pump(c); /* it ended while it waited */
  }
}

static struct piece* piece_new(void) {
  struct piece* p = free_pieces;
  if (p)
    free_pieces = p->next;
  else
    p = malloc(sizeof *p);
  memset(p, 0, sizeof *p);
  p->bid = -1;
  return p;
}

static void piece_free(struct piece* p) {
  if (p->bid >= 0) buffer_return(p->bid);
  free(p->heap);
  p->next = free_pieces;
  free_pieces = p;
}

static void enqueue(struct conn* c, struct piece* p) {
  if (c->tail)
    c->tail->next = p;
  else
    c->head = p;
  c->tail = p;
}

static void conn_close(struct conn* c) {
  while (c->head) {
    struct piece* p = c->head;
    c->head = p->next;
    piece_free(p);
  }
  conns[c->fd] = NULL;
  close(c->fd);
  free(c->scanner);
  free(c);
}

/* Sends what is queued, if nothing is in flight; closes a finished connection. */
static void pump(struct conn* c) {
  if (c->sending) return;
  if (!c->head) {
    if (c->eof && !c->recv_armed && !c->starved)
      conn_close(c); /* a starved one is closed when its turn comes */
    return;
  }
  uint32_t n = 0;
  for (struct piece* p = c->head; p && n < kMaxIov; p = p->next, ++n) {
    c->iov[n].iov_base = (void*)p->data;
    c->iov[n].iov_len = p->len;
  }
  memset(&c->msg, 0, sizeof c->msg);
  c->msg.msg_iov = c->iov;
  c->msg.msg_iovlen = n;
  c->sent_n = n;
  c->sending = 1;
  struct io_uring_sqe* sqe = get_sqe();
  io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL);
  io_uring_sqe_set_data64(sqe, ((uint64_t)c->fd << 8) | OP_SEND);
}

/* The connection is to end: stop its recv (shutdown makes it complete). */
static void finish(struct conn* c) {
  c->eof = 1;
  shutdown(c->fd, SHUT_RDWR);
}

static void on_accept(struct io_uring_cqe* cqe, int listen_fd) {
  if (!(cqe->flags & IORING_CQE_F_MORE)) arm_accept(listen_fd);
  if (cqe->res < 0) return; /* e.g. EMFILE: the peer is refused */
  int fd = cqe->res;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct conn* c = calloc(1, sizeof *c);
  c->fd = fd;
  if (sbmp_mode) {
    c->scanner = malloc(sizeof *c->scanner);
    sbmp_scanner_init(c->scanner, SBMP_DEFAULT_MAX_FRAME);
  }
  conns[fd] = c;
  arm_recv(c);
}

static void queue_copy(struct conn* c, const uint8_t* data, size_t len) {
  struct piece* p = piece_new();
  p->heap = malloc(len);
  memcpy(p->heap, data, len);
  p->data = p->heap;
  p->len = (uint32_t)len;
  enqueue(c, p);
}

static void queue_range(struct conn* c, int bid, const uint8_t* data, size_t len) {
  struct piece* p = piece_new();
  p->data = data;
  p->len = (uint32_t)len;
  p->bid = bid;
  ++buffer_refs[bid];
  enqueue(c, p);
}

static void on_recv(struct io_uring_cqe* cqe, struct conn* c) {
  const int more = cqe->flags & IORING_CQE_F_MORE;
  if (!more) c->recv_armed = 0;
  if (cqe->res <= 0) {
    if (cqe->res == -ENOBUFS && !c->eof) { /* the ring ran dry: wait for a buffer */
      ++stats.enobufs;
      if (!more && !c->starved) {
        c->starved = 1;
        c->next_starved = NULL;
        if (starved_tail)
          starved_tail->next_starved = c;
        else
          starved = c;
        starved_tail = c;
      }
      return;
    }
    if (!more) c->eof = 1; /* EOF or error */
    pump(c);
    return;
  }
  ++stats.recvs;
  stats.bytes_in += (unsigned)cqe->res;
  const int bid = (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
  const uint8_t* data = buffers + (size_t)bid * buf_size;
  buffer_refs[bid] = 1; /* held by this function until the end */
  if (!sbmp_mode || c->eof) {
    if (!c->eof) queue_range(c, bid, data, (size_t)cqe->res);
  } else {
    size_t pos = 0;
    struct sbmp_event ev;
    do {
      sbmp_scan(c->scanner, data, (size_t)cqe->res, &pos, &ev);
      switch (ev.kind) {
        case SBMP_EV_PASS:
          queue_range(c, bid, data + ev.off, ev.len);
          break;
        case SBMP_EV_COPY:
        case SBMP_EV_REPLY:
          queue_copy(c, ev.data, ev.len);
          break;
        case SBMP_EV_CLOSE:
          if (ev.len) queue_copy(c, ev.data, ev.len);
          finish(c);
          break;
        case SBMP_EV_NEED_MORE:
          break;
      }
    } while (ev.kind != SBMP_EV_NEED_MORE && ev.kind != SBMP_EV_CLOSE);
  }
  buffer_return(bid);
  if (!more && !c->eof && !c->starved) arm_recv(c); /* the kernel ended the multishot */
  pump(c);
}

static void on_send(struct io_uring_cqe* cqe, struct conn* c) {
  c->sending = 0;
  if (cqe->res < 0) { /* the peer is gone: drop what is queued */
    finish(c);
    while (c->head) {
      struct piece* p = c->head;
      c->head = p->next;
      piece_free(p);
    }
    c->tail = NULL;
    pump(c);
    return;
  }
  ++stats.sends;
  size_t done = (size_t)cqe->res;
  for (uint32_t i = 0; i < c->sent_n && c->head; ++i) {
    struct piece* p = c->head;
    if (done < p->len) { /* short write: the rest goes next */
      p->data += done;
      p->len -= (uint32_t)done;
      break;
    }
    done -= p->len;
    c->head = p->next;
    if (!c->head) c->tail = NULL;
    piece_free(p);
  }
  pump(c);
}

static int setup_buffer_ring(void) {
  /* io_uring_setup_buf_ring() came in liburing 2.4: map and register by hand. */
  size_t ring_bytes = buf_count * sizeof(struct io_uring_buf);
  br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (br == MAP_FAILED) return -errno;
  struct io_uring_buf_reg reg = {
      .ring_addr = (unsigned long)br, .ring_entries = buf_count, .bgid = kBufGroup};
  int ret = io_uring_register_buf_ring(&ring, &reg, 0);
  if (ret) return ret;
  io_uring_buf_ring_init(br);
  buffers = malloc((size_t)buf_count * buf_size);
  buffer_refs = calloc(buf_count, sizeof *buffer_refs);
  for (unsigned i = 0; i < buf_count; ++i) {
    io_uring_buf_ring_add(br, buffers + (size_t)i * buf_size, buf_size, (unsigned short)i,
                          io_uring_buf_ring_mask(buf_count), (int)i);
  }
  io_uring_buf_ring_advance(br, (int)buf_count);
  return 0;
}

int main(int argc, char** argv) {
  const char* host = "127.0.0.1";
  int port = 0;
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    if (strncmp(a, "--port=", 7) == 0)
      port = (int)cli_number("uring_echo", "--port", a + 7, 0, 65535, 1);
    else if (strncmp(a, "--host=", 7) == 0)
      host = a + 7;
    else if (strcmp(a, "--sbmp") == 0)
      sbmp_mode = 1;
    else if (strncmp(a, "--buffers=", 10) == 0)
      buf_count = (unsigned)cli_number("uring_echo", "--buffers", a + 10, 1, 32768, 1);
    else if (strncmp(a, "--buffer-size=", 14) == 0)
      buf_size = (unsigned)cli_number("uring_echo", "--buffer-size", a + 14, 1, 1u << 30, 1);
    else {
      fprintf(stderr,
              "usage: uring_echo [--port=N] [--host=ADDR] [--sbmp] [--buffers=N (%u)]"
              " [--buffer-size=N (%u)]\n",
              buf_count, buf_size);
      return strcmp(a, "--help") == 0 ? 0 : 1;
    }
  }
  if (buf_count == 0 || (buf_count & (buf_count - 1)) || buf_count > 32768 || buf_size == 0) {
    fprintf(stderr, "uring_echo: --buffers must be a power of two <= 32768\n");
    return 1;
  }
  struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: io_uring_enter sees EINTR */
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGUSR1, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  conns = calloc(rl.rlim_cur, sizeof *conns);

  struct io_uring_params params = {0};
  params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
  params.cq_entries = 16384;
  int ret = io_uring_queue_init_params(2048, &ring, &params);
  if (ret < 0) { /* an older kernel: without the single-issuer hints */
    memset(&params, 0, sizeof params);
    params.flags = IORING_SETUP_CQSIZE;
    params.cq_entries = 16384;
    ret = io_uring_queue_init_params(2048, &ring, &params);
  }
  if (ret < 0) {
    fprintf(stderr, "uring_echo: io_uring_queue_init: %s\n", strerror(-ret));
    return 1;
  }
  if ((ret = setup_buffer_ring()) != 0) {
    fprintf(stderr, "uring_echo: buffer ring: %s\n", strerror(-ret));
    return 1;
  }

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1 ||
      bind(lfd, (struct sockaddr*)&addr, sizeof addr) < 0 || listen(lfd, 4096) < 0) {
    fprintf(stderr, "uring_echo: listen on %s:%d: %s\n", host, port, strerror(errno));
    return 1;
  }
  socklen_t alen = sizeof addr;
  getsockname(lfd, (struct sockaddr*)&addr, &alen);
  printf("listening on %s:%d\n", host, ntohs(addr.sin_port));
  fflush(stdout);
  arm_accept(lfd);

  while (!stop) {
    if (report) {
      report = 0;
      fprintf(stderr, "uring_echo: enters=%llu\n", stats.enters);
    }
    ret = io_uring_submit_and_wait(&ring, 1);
    ++stats.enters;
    if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
      fprintf(stderr, "uring_echo: io_uring_enter: %s\n", strerror(-ret));
      return 1;
    }
    struct io_uring_cqe* cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      ++n;
      const uint64_t ud = io_uring_cqe_get_data64(cqe);
      const int fd = (int)(ud >> 8);
      switch (ud & 0xFF) {
        case OP_ACCEPT:
          on_accept(cqe, fd);
          break;
        case OP_RECV:
          if (conns[fd]) on_recv(cqe, conns[fd]);
          break;
        case OP_SEND:
          if (conns[fd]) on_send(cqe, conns[fd]);
          break;
      }
    }
    io_uring_cq_advance(&ring, n);
    stats.cqes += n;
  }
  fprintf(stderr,
          "uring_echo: %llu io_uring_enter, %llu completions (%.2f per enter), %llu recvs, "
          "%llu sends, %llu bytes in, %llu ENOBUFS\n",
          stats.enters, stats.cqes, stats.enters ? (double)stats.cqes / stats.enters : 0.0,
          stats.recvs, stats.sends, stats.bytes_in, stats.enobufs);
  return 0;
}
