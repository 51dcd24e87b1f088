// Tests of a stop requested on another thread than the loop's, for the
// multishot streams (core/multishot.h): the waiting reader gets Cancelled
// whether its op is armed or it waits for ring buffers with nothing armed,
// nothing is left in flight and every buffer goes back. Run under TSan too
// (label core): the stop callback runs on the foreign thread.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <random>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "buffer_test_util.h"
#include "coring/core/accept.h"
#include "coring/core/buffer_ring.h"
#include "coring/core/recv_stream.h"
#include "coring/core/spawn.h"
#include "coring/core/task.h"
#include "coring/pool/buffer_arena.h"
#include "test_loop_util.h"

namespace coring {
namespace {

using testing::Fd;
using testing::make_arena;
using testing::make_loop;

// Bounded (~5 s) and non-blocking: a loop whose only event is a post from
// another thread must not block the test.
bool run_until(EventLoop& loop, const std::function<bool()>& done) {
  return testing::poll_until(loop, done, 5000);
}

struct Reads {
  std::atomic<bool> waiting{false};  // set just before each co_await
  std::string data;
  std::vector<RecvBuffer> held;
  size_t hold = 0;
  absl::Status error;
  bool done = false;
};

// Reads until an error or EOF; holds on to the first `out->hold` buffers.
Task<> reader(RecvStream* stream, Reads* out) {
  for (;;) {
    out->waiting.store(true);
    absl::StatusOr<RecvBuffer> buf = co_await stream->next();
    out->waiting.store(false);
    if (!buf.ok()) {
      out->error = buf.status();
      break;
    }
    if (buf->empty()) break;
    out->data.append(reinterpret_cast<const char*>(buf->data()), buf->size());
    if (out->held.size() < out->hold) out->held.push_back(std::move(*buf));
  }
  out->done = true;
}

void stop_from_another_thread(std::stop_source& source) {
  std::thread([&source] { source.request_stop(); }).join();
}

TEST(ForeignStopTest, CancelsAnArmedRecv) {
  pool::BufferArena arena = make_arena();
  auto loop = make_loop();
  auto ring = BufferRing::create(*loop, arena, 4, 1024);
  ASSERT_TRUE(ring.ok()) << ring.status();
  auto [a, b] = testing::socket_pair();
  Reads got;
  {
    RecvStream stream = recv_multishot(a.fd, **ring);
    std::stop_source source;
    Task<> task = reader(&stream, &got);
    task.set_stop_token(source.get_token());
    spawn(*loop, std::move(task));
    ASSERT_EQ(::write(b.fd, "hi", 2), 2);
    ASSERT_TRUE(run_until(*loop, [&] { return got.data == "hi"; }));
    ASSERT_TRUE(run_until(*loop, [&] { return stream.armed(); }));
    stop_from_another_thread(source);
    ASSERT_TRUE(run_until(*loop, [&] { return got.done; }));
    EXPECT_TRUE(absl::IsCancelled(got.error)) << got.error;
    EXPECT_FALSE(stream.armed());
  }
  loop->run_once(false);
  EXPECT_EQ((*ring)->outstanding(), 0u);
  EXPECT_EQ(loop->stats().ops_in_flight, 0u);
}

// The waiting reader's stop callback lives in the stream
// (MultishotStream::stop_slot()): a reader destroyed while it waits takes
// it away, so a stop requested afterwards, from any thread, reaches
// nothing - not the op armed for it, which the next reader's read uses.
TEST(ForeignStopTest, StopOfAReaderDestroyedWhileWaitingDoesNotReachTheNextReader) {
  pool::BufferArena arena = make_arena();
  auto loop = make_loop();
  auto ring = BufferRing::create(*loop, arena, 4, 1024);
  ASSERT_TRUE(ring.ok()) << ring.status();
  auto [a, b] = testing::socket_pair();
  {
    RecvStream stream = recv_multishot(a.fd, **ring);
    std::stop_source local;
    std::stop_source foreign;
    for (std::stop_source* source : {&local, &foreign}) {
      Reads gone;
      Task<> task = reader(&stream, &gone);
      task.set_stop_token(source->get_token());
      loop->post([&task] { task.handle().resume(); });
      // (Set just before it waits: the post ran it that far.)
      ASSERT_TRUE(run_until(*loop, [&] { return gone.waiting.load(); }));
      ASSERT_TRUE(stream.armed());
      task = Task<>();  // destroyed while it waits
      if (source == &local) {
        source->request_stop();
      } else {
        stop_from_another_thread(*source);
      }
      for (int i = 0; i < 3; ++i) loop->run_once(false);
      EXPECT_TRUE(stream.armed());  // nothing cancelled the op
      EXPECT_FALSE(gone.done);
    }
    Reads next;
    spawn(*loop, reader(&stream, &next));
    ASSERT_EQ(::write(b.fd, "hi", 2), 2);
    ASSERT_TRUE(run_until(*loop, [&] { return next.data == "hi"; }));
    ::close(std::exchange(b.fd, -1));  // EOF ends the read
    ASSERT_TRUE(run_until(*loop, [&] { return next.done; }));
    EXPECT_TRUE(next.error.ok()) << next.error;
  }
  loop->run_once(false);
  EXPECT_EQ((*ring)->outstanding(), 0u);
  EXPECT_EQ(loop->stats().ops_in_flight, 0u);
}

TEST(ForeignStopTest, CancelsAReaderWaitingForRingBuffers) {
  pool::BufferArena arena = make_arena();
  auto loop = make_loop();
  auto ring = BufferRing::create(*loop, arena, 4, 1024);
  ASSERT_TRUE(ring.ok()) << ring.status();
  auto greedy_pair = testing::socket_pair();
  auto victim_pair = testing::socket_pair();
  Reads greedy_got;
  greedy_got.hold = 4;
  Reads victim_got;
  {
    RecvStream greedy = recv_multishot(greedy_pair.first.fd, **ring);
    RecvStream victim = recv_multishot(victim_pair.first.fd, **ring);
    spawn(*loop, reader(&greedy, &greedy_got));
    // The greedy reader holds every buffer of the ring.
    const std::string flood(4 * 1024, 'g');
    ASSERT_EQ(::write(greedy_pair.second.fd, flood.data(), flood.size()),
              static_cast<ssize_t>(flood.size()));
    ASSERT_TRUE(run_until(*loop, [&] { return (*ring)->available() == 0; }));
    // The victim's reader waits in line with nothing armed: its data came
    // while the ring was dry (ENOBUFS).
    std::stop_source source;
    Task<> task = reader(&victim, &victim_got);
    task.set_stop_token(source.get_token());
    spawn(*loop, std::move(task));
    ASSERT_EQ(::write(victim_pair.second.fd, "v", 1), 1);
    for (int i = 0; i < 5; ++i) loop->run_once(false);
    ASSERT_TRUE(victim_got.waiting.load());
    ASSERT_FALSE(victim.armed());
    // Stopped from elsewhere, it is woken although no buffer came back.
    stop_from_another_thread(source);
    ASSERT_TRUE(run_until(*loop, [&] { return victim_got.done; }));
    EXPECT_TRUE(absl::IsCancelled(victim_got.error)) << victim_got.error;
    EXPECT_EQ((*ring)->available(), 0u);
    // Buffers coming back later do not arm the stopped stream.
    greedy_got.held.clear();
    for (int i = 0; i < 5; ++i) loop->run_once(false);
    EXPECT_FALSE(victim.armed());
    ::shutdown(greedy_pair.second.fd, SHUT_WR);
    ASSERT_TRUE(run_until(*loop, [&] { return greedy_got.done; }));
    EXPECT_TRUE(greedy_got.error.ok()) << greedy_got.error;
    greedy_got.held.clear();
  }
  loop->run_once(false);
  EXPECT_EQ((*ring)->outstanding(), 0u);
  EXPECT_EQ(loop->stats().ops_in_flight, 0u);
}

TEST(ForeignStopTest, CancelsAnArmedAccept) {
  auto loop = make_loop();
  uint16_t port = 0;
  Fd listener = testing::listen_loopback(&port);
  absl::StatusOr<uint32_t> got = absl::UnknownError("not yet");
  bool done = false;
  {
    AcceptStream accepts = accept_multishot_direct(listener.fd);
    std::stop_source source;
    Task<> task = [](AcceptStream* s, absl::StatusOr<uint32_t>* out, bool* d) -> Task<> {
      *out = co_await s->next();
      *d = true;
    }(&accepts, &got, &done);
    task.set_stop_token(source.get_token());
    spawn(*loop, std::move(task));
    ASSERT_TRUE(run_until(*loop, [&] { return accepts.armed(); }));
    stop_from_another_thread(source);
    ASSERT_TRUE(run_until(*loop, [&] { return done; }));
    EXPECT_TRUE(absl::IsCancelled(got.status())) << got.status();
    ASSERT_TRUE(run_until(*loop, [&] { return !accepts.armed(); }));
  }
  loop->run_once(false);
  EXPECT_EQ(loop->stats().ops_in_flight, 0u);
}

// Stops land at random moments while data flows and the ring runs dry now
// and then: every reader ends (Cancelled, or EOF when the stop came late),
// no byte is reordered, and nothing is left in flight.
TEST(ForeignStopTest, RandomStopsWhileDataFlows) {
  pool::BufferArena arena = make_arena();
  auto loop = make_loop();
  auto ring = BufferRing::create(*loop, arena, 2, 1024);
  ASSERT_TRUE(ring.ok()) << ring.status();
  std::mt19937 rng(12345);
  for (int round = 0; round < 40; ++round) {
    auto [a, b] = testing::socket_pair();
    Reads got;
    got.hold = round % 3 == 0 ? 2 : 0;  // some rounds keep the ring dry
    {
      RecvStream stream = recv_multishot(a.fd, **ring);
      std::stop_source source;
      Task<> task = reader(&stream, &got);
      task.set_stop_token(source.get_token());
      spawn(*loop, std::move(task));
      std::string sent;
      for (int i = 0; i < 20; ++i) sent.push_back(static_cast<char>('a' + (round + i) % 26));
      // Two chunks: a holding reader then keeps the whole ring.
      ASSERT_EQ(::write(b.fd, sent.data(), 10), 10);
      for (int i = 0; i < 3; ++i) loop->run_once(false);
      ASSERT_EQ(::write(b.fd, sent.data() + 10, 10), 10);
      const auto delay = std::chrono::microseconds(rng() % 2000);
      std::thread stopper([&source, delay] {
        std::this_thread::sleep_for(delay);
        source.request_stop();
      });
      for (int i = 0; i < 10; ++i) loop->run_once(false);
      stopper.join();
      ASSERT_TRUE(run_until(*loop, [&] { return got.done; })) << "round " << round;
      EXPECT_TRUE(got.error.ok() || absl::IsCancelled(got.error)) << got.error;
      EXPECT_EQ(sent.substr(0, got.data.size()), got.data);
      got.held.clear();
    }
    ASSERT_TRUE(run_until(*loop, [&] { return loop->stats().ops_in_flight == 0; }))
        << "round " << round;
    EXPECT_EQ((*ring)->outstanding(), 0u);
  }
}

}  // namespace
}  // namespace coring
