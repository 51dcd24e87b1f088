// Tests of RecvStream::interrupt() (core/recv_stream.h): a waiting reader is
// woken with the status, data already received comes first, nothing is lost,
// reading goes on afterwards; and of AcceptStream::disarm() (core/accept.h):
// connections accepted before the cancel took effect are still delivered,
// the cancel itself is not, and the stream re-arms on the next next().
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "buffer_test_util.h"
#include "coring/core/accept.h"
#include "coring/core/buffer_ring.h"
#include "coring/core/close.h"
#include "coring/core/recv_stream.h"
#include "coring/core/spawn.h"
#include "coring/core/task.h"
#include "coring/pool/buffer_arena.h"
#include "test_loop_util.h"

namespace coring {
namespace {

using testing::make_arena;
using testing::make_loop;

// Bounded (~2 s) and non-blocking: a loop with an armed op and nothing else
// to do must not block the test.
bool run_until(EventLoop& loop, const std::function<bool()>& done, int = 0) {
  return testing::poll_until(loop, done);
}

struct Reads {
  std::string data;
  std::vector<absl::Status> statuses;  // non-data results, in order
  std::vector<bool> interrupted;
  bool eof = false;
};

// Reads until EOF or `stops` non-data results.
Task<> reader(RecvStream* stream, Reads* out, int stops) {
  while (stops > 0) {
    RecvStream::Next next = stream->next();
    absl::StatusOr<RecvBuffer> buf = co_await next;
    if (!buf.ok()) {
      out->statuses.push_back(buf.status());
      out->interrupted.push_back(next.interrupted());
      --stops;
      continue;
    }
    if (buf->empty()) {
      out->eof = true;
      co_return;
    }
    out->data.append(reinterpret_cast<const char*>(buf->data()), buf->size());
  }
}

TEST(RecvInterruptTest, WakesAWaitingReaderAndReadingGoesOn) {
  pool::BufferArena arena = make_arena();
  auto loop = make_loop();
  auto ring = BufferRing::create(*loop, arena, 8, 1024);
  ASSERT_TRUE(ring.ok());
  auto [a, b] = testing::socket_pair();
  Reads got;
  {
    RecvStream stream = recv_multishot(a.fd, **ring);
    spawn(*loop, reader(&stream, &got, 3));
    ASSERT_EQ(::write(b.fd, "hello", 5), 5);
    ASSERT_TRUE(run_until(
        *loop, [&] { return got.data == "hello"; }, 100));
    // The reader waits on an armed op: the interrupt cancels it and wakes it.
    stream.interrupt(absl::UnavailableError("shutting down"));
    ASSERT_TRUE(run_until(
        *loop, [&] { return got.statuses.size() == 1; }, 100));
    EXPECT_TRUE(absl::IsUnavailable(got.statuses[0])) << got.statuses[0];
    EXPECT_TRUE(got.interrupted[0]);
    EXPECT_FALSE(stream.interrupt_pending());
    // The next read re-arms: data sent after the interrupt still arrives.
    ASSERT_EQ(::write(b.fd, " world", 6), 6);
    ASSERT_TRUE(run_until(
        *loop, [&] { return got.data == "hello world"; }, 100));
    ::shutdown(b.fd, SHUT_WR);
    ASSERT_TRUE(run_until(
        *loop, [&] { return got.eof; }, 100));
  }
  loop->run_once(false);
  EXPECT_EQ((*ring)->outstanding(), 0u);
  EXPECT_EQ(loop->stats().ops_in_flight, 0u);
}

TEST(RecvInterruptTest, DataAlreadyReceivedComesFirst) {
  pool::BufferArena arena = make_arena();
  auto loop = make_loop();
  auto ring = BufferRing::create(*loop, arena, 8, 1024);
  ASSERT_TRUE(ring.ok());
  auto [a, b] = testing::socket_pair();
  Reads got;
  {
    RecvStream stream = recv_multishot(a.fd, **ring);
    stream.start_multishot();  // a single-shot recv would not take "two" unread
    // Arm by one read, then let data queue up with nobody reading.
    spawn(*loop, [](RecvStream* s, Reads* out) -> Task<> {
      absl::StatusOr<RecvBuffer> buf = co_await s->next();
      if (buf.ok()) out->data.append(reinterpret_cast<const char*>(buf->data()), buf->size());
    }(&stream, &got));
    ASSERT_EQ(::write(b.fd, "one", 3), 3);
    ASSERT_TRUE(run_until(
        *loop, [&] { return got.data == "one"; }, 100));
    ASSERT_EQ(::write(b.fd, "two", 3), 3);
    ASSERT_TRUE(run_until(
        *loop, [&] { return stream.queued() == 1; }, 100));
    stream.interrupt(absl::DeadlineExceededError("idle"));
    // "two" is delivered, then the interrupt, then reading resumes.
    spawn(*loop, reader(&stream, &got, 1));
    ASSERT_TRUE(run_until(
        *loop, [&] { return got.statuses.size() == 1; }, 100));
    EXPECT_EQ(got.data, "onetwo");
    EXPECT_TRUE(absl::IsDeadlineExceeded(got.statuses[0]));
    ::shutdown(b.fd, SHUT_WR);
    loop->run_once(false);
  }
  loop->run_once(false);
  EXPECT_EQ((*ring)->outstanding(), 0u);
}

Task<> accept_into(AcceptStream* s, std::vector<absl::StatusOr<uint32_t>>* out) {
  out->push_back(co_await s->next());
}

TEST(AcceptDisarmTest, KeepsWhatWasAcceptedAndReArms) {
  auto loop = make_loop();
  uint16_t port = 0;
  testing::Fd listener = testing::listen_loopback(&port);
  const sockaddr_in addr = testing::loopback_addr(port);
  std::vector<testing::Fd> clients;
  auto connect_one = [&] {
    testing::Fd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    EXPECT_EQ(::connect(c.fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)), 0);
    clients.push_back(std::move(c));
  };
  std::vector<absl::StatusOr<uint32_t>> got;
  {
    AcceptStream accepts = accept_multishot_direct(listener.fd);
    spawn(*loop, accept_into(&accepts, &got));
    connect_one();
    ASSERT_TRUE(run_until(
        *loop, [&] { return got.size() == 1; }, 100));
    ASSERT_TRUE(got[0].ok()) << got[0].status();
    EXPECT_TRUE(accepts.armed());
    // A connection lands while the disarm is on its way: it is kept.
    connect_one();
    accepts.disarm();
    EXPECT_TRUE(accepts.disarming());
    ASSERT_TRUE(run_until(
        *loop, [&] { return !accepts.armed(); }, 100));
    EXPECT_FALSE(accepts.disarming());
    // Disarmed: a new connection waits in the backlog, nothing reports the cancel.
    connect_one();
    for (int i = 0; i < 5; ++i) loop->run_once(false);
    const size_t kept = accepts.queued();
    EXPECT_LE(kept, 1u);
    // next() hands out what was kept, then re-arms and takes the backlog.
    while (got.size() < 3) {
      const size_t before = got.size();
      spawn(*loop, accept_into(&accepts, &got));
      ASSERT_TRUE(run_until(
          *loop, [&] { return got.size() > before; }, 100));
      ASSERT_TRUE(got.back().ok()) << got.back().status();
    }
    for (auto& slot : got) {
      spawn(*loop, [](uint32_t s) -> Task<> { (void)co_await close_direct(s); }(*slot));
    }
    loop->run_once(false);
  }
  loop->run_once(false);
  EXPECT_EQ(got.size(), 3u);
}

}  // namespace
}  // namespace coring
