// Send-path measurement behind NetOptions::zero_copy_threshold (net_context.h):
// one TCP connection over loopback, one message of `size` bytes per
// iteration, sent from one buffer with one op in flight (short sends
// continued), by
//   * sendmsg      IORING_OP_SENDMSG from ordinary memory;
//   * send         IORING_OP_SEND from the same (registered) memory;
//   * write_fixed  IORING_OP_WRITE_FIXED from a registered buffer;
//   * send_zc      IORING_OP_SEND_ZC from ordinary memory, waiting for the
//                  notification CQE before the buffer is reused;
//   * send_zc_fixed the same with IORING_RECVSEND_FIXED_BUF.
// A reader thread drains the other end with recv(). The raw liburing ring
// (no coroutines) isolates the kernel paths. zc_copied_per_iter counts
// notifications with IORING_NOTIF_USAGE_ZC_COPIED: on loopback it is 1 for
// every SEND_ZC (the kernel copies), so loopback numbers show the zero-copy
// ops' bookkeeping cost, not their gain on a real NIC.
//
// Run: net_send_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

#include "alloc_counter.h"

namespace {

#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif

enum class Op { kSendmsg, kSend, kWriteFixed, kSendZc, kSendZcFixed };

struct Connection {
  int sender = -1;
  int receiver = -1;
  std::atomic<bool> stop{false};
  std::thread reader;

  bool open() {
    const int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::listen(lfd, 1) != 0 || ::getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len)) {
      ::close(lfd);
      return false;
    }
    sender = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    ::setsockopt(sender, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (::connect(sender, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return false;
    receiver = ::accept(lfd, nullptr, nullptr);
    ::close(lfd);
    if (receiver < 0) return false;
    reader = std::thread([this] {
      std::vector<char> buf(1 << 20);
      while (!stop.load(std::memory_order_relaxed)) {
        if (::recv(receiver, buf.data(), buf.size(), 0) <= 0) break;
      }
    });
    return true;
  }
  ~Connection() {
    stop = true;
    if (sender >= 0) ::shutdown(sender, SHUT_WR);
    if (reader.joinable()) reader.join();
    if (sender >= 0) ::close(sender);
    if (receiver >= 0) ::close(receiver);
  }
};

void BM_Send(benchmark::State& state, Op op) {
  const size_t size = static_cast<size_t>(state.range(0));
  io_uring ring;
  if (io_uring_queue_init(64, &ring, 0) != 0) {
    state.SkipWithError("io_uring_queue_init");
    return;
  }
  io_uring_probe* probe = io_uring_get_probe_ring(&ring);
  const bool zc = probe != nullptr && io_uring_opcode_supported(probe, IORING_OP_SEND_ZC);
  if (probe != nullptr) io_uring_free_probe(probe);
  if ((op == Op::kSendZc || op == Op::kSendZcFixed) && !zc) {
    io_uring_queue_exit(&ring);
    state.SkipWithError("IORING_OP_SEND_ZC not supported");
    return;
  }
  void* mem = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  std::memset(mem, 0x5a, size);
  iovec region{mem, size};
  if (io_uring_register_buffers(&ring, &region, 1) != 0) {
    ::munmap(mem, size);
    io_uring_queue_exit(&ring);
    state.SkipWithError("io_uring_register_buffers (RLIMIT_MEMLOCK?)");
    return;
  }
  Connection conn;
  if (!conn.open()) {
    state.SkipWithError("loopback connection");
    return;
  }
  auto* base = static_cast<uint8_t*>(mem);
  iovec iov{};
  msghdr msg{};
  uint64_t ops = 0;
  uint64_t copied = 0;
  coring::bench::AllocCounter allocs;
  for (auto _ : state) {
    size_t done = 0;
    while (done < size) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring);
      const size_t left = size - done;
      switch (op) {
        case Op::kSendmsg:
          iov = {base + done, left};
          msg = msghdr{};
          msg.msg_iov = &iov;
          msg.msg_iovlen = 1;
          io_uring_prep_sendmsg(sqe, conn.sender, &msg, MSG_NOSIGNAL);
          break;
        case Op::kSend:
          io_uring_prep_send(sqe, conn.sender, base + done, left, MSG_NOSIGNAL);
          break;
        case Op::kWriteFixed:
          io_uring_prep_write_fixed(sqe, conn.sender, base + done, static_cast<unsigned>(left), 0,
                                    0);
          break;
        case Op::kSendZc:
          io_uring_prep_send_zc(sqe, conn.sender, base + done, left, MSG_NOSIGNAL,
                                IORING_SEND_ZC_REPORT_USAGE);
          break;
        case Op::kSendZcFixed:
          io_uring_prep_send_zc_fixed(sqe, conn.sender, base + done, left, MSG_NOSIGNAL,
                                      IORING_SEND_ZC_REPORT_USAGE, 0);
          break;
      }
      io_uring_submit(&ring);
      ++ops;
      // The result, then (zero copy) the notification.
      bool more = true;
      int res = 0;
      bool have_res = false;
      while (!have_res || more) {
        io_uring_cqe* cqe = nullptr;
        if (io_uring_wait_cqe(&ring, &cqe) != 0) break;
        if (cqe->flags & IORING_CQE_F_NOTIF) {
          if (static_cast<uint32_t>(cqe->res) & IORING_NOTIF_USAGE_ZC_COPIED) ++copied;
          more = false;
        } else {
          res = cqe->res;
          have_res = true;
          more = (cqe->flags & IORING_CQE_F_MORE) != 0;
        }
        io_uring_cqe_seen(&ring, cqe);
      }
      if (res <= 0) {
        state.SkipWithError(res == 0 ? "send returned 0" : std::strerror(-res));
        break;
      }
      done += static_cast<size_t>(res);
    }
  }
  const auto iters = static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(size));
  state.counters["ops_per_iter"] = benchmark::Counter(static_cast<double>(ops) / iters);
  state.counters["zc_copied_per_iter"] = benchmark::Counter(static_cast<double>(copied) / iters);
  state.counters["allocs_per_iter"] =
      benchmark::Counter(static_cast<double>(allocs.count()) / iters);
  io_uring_unregister_buffers(&ring);
  io_uring_queue_exit(&ring);
  ::munmap(mem, size);
}

void sizes(benchmark::internal::Benchmark* b) {
  for (int64_t s = 1 << 10; s <= (1 << 20); s *= 4) b->Arg(s);
  b->Arg(8 << 10)->Arg(32 << 10);
}

BENCHMARK_CAPTURE(BM_Send, sendmsg, Op::kSendmsg)->Apply(sizes);
BENCHMARK_CAPTURE(BM_Send, send, Op::kSend)->Apply(sizes);
BENCHMARK_CAPTURE(BM_Send, write_fixed, Op::kWriteFixed)->Apply(sizes);
BENCHMARK_CAPTURE(BM_Send, send_zc, Op::kSendZc)->Apply(sizes);
BENCHMARK_CAPTURE(BM_Send, send_zc_fixed, Op::kSendZcFixed)->Apply(sizes);

}  // namespace

BENCHMARK_MAIN();
