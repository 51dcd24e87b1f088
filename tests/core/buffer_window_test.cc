// Tests of BufferRing's window (core/buffer_ring.h): the kernel's ring holds
// only the free buffers given back last, so that a light load cycles through
// a few cache-warm buffers instead of the whole ring; a burst widens the
// window without a stream ever waiting for buffers that are free; a light
// load narrows it again; a shrinking ring parks what it held back.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "buffer_test_util.h"
#include "coring/core/buffer_ring.h"
#include "coring/core/recv_stream.h"
#include "coring/core/spawn.h"
#include "coring/core/task.h"
#include "test_loop_util.h"

namespace coring {
namespace {

using testing::make_arena;
using testing::make_loop;
using testing::pattern;
using testing::run_until;

struct Chunks {
  std::string data;
  std::vector<uint16_t> ids;  // the ring buffer of each chunk, in order
  bool eof = false;
};

// Reads until EOF, recording each chunk's buffer and letting go of it.
Task<> read_ids(RecvStream* stream, Chunks* out) {
  for (;;) {
    absl::StatusOr<RecvBuffer> buf = co_await stream->next();
    if (!buf.ok() || buf->empty()) {
      out->eof = true;
      co_return;
    }
    out->data.append(reinterpret_cast<const char*>(buf->data()), buf->size());
    out->ids.push_back(buf->buffer_id());
  }
}

// Sends `n` messages of 100 bytes, each once the last has arrived (one
// buffer a turn), and checks that every byte arrived in order.
void trickle(EventLoop& loop, int fd, Chunks& got, int n) {
  for (int i = 0; i < n; ++i) {
    const size_t before = got.data.size();
    const std::string msg = pattern(100 + i % 7);
    ASSERT_EQ(::send(fd, msg.data(), msg.size(), 0), static_cast<ssize_t>(msg.size()));
    ASSERT_TRUE(run_until(
        loop, [&] { return got.data.size() == before + msg.size(); }, 200));
    ASSERT_EQ(got.data.substr(before), msg);
  }
}

size_t distinct(const std::vector<uint16_t>& ids, size_t last) {
  const size_t from = ids.size() > last ? ids.size() - last : 0;
  return std::set<uint16_t>(ids.begin() + static_cast<ptrdiff_t>(from), ids.end()).size();
}

// Each test's loop and a ring of `count` 1 KiB buffers on it.
class BufferWindowTest : public ::testing::Test {
 protected:
  bool make_ring(uint32_t count, uint32_t max_count = 0) {
    auto ring = BufferRing::create(*loop, arena, count, 1024, max_count);
    EXPECT_TRUE(ring.ok()) << ring.status();
    if (ring.ok()) ring_ = std::move(*ring);
    return ring_ != nullptr;
  }

  pool::BufferArena arena = make_arena();
  std::unique_ptr<EventLoop> loop = make_loop();
  std::unique_ptr<BufferRing> ring_;
};

TEST_F(BufferWindowTest, LightLoadReusesTheBuffersGivenBackLast) {
  ASSERT_TRUE(make_ring(512));
  BufferRing& r = *ring_;
  EXPECT_EQ(r.window(), BufferRing::kMinWindow);
  EXPECT_EQ(r.held_back(), 512u - BufferRing::kMinWindow);
  EXPECT_EQ(r.available(), 512u);
  auto [a, b] = testing::socket_pair();
  Chunks got;
  {
    RecvStream stream = recv_multishot(a.fd, r);
    spawn(*loop, read_ids(&stream, &got));
    trickle(*loop, b.fd, got, 300);
    // First in, first out through the whole ring would use 300 buffers.
    EXPECT_EQ(got.ids.size(), 300u);
    EXPECT_LE(distinct(got.ids, 300), size_t{BufferRing::kMinWindow} + 1);
    EXPECT_EQ(r.window(), BufferRing::kMinWindow);
    ::shutdown(b.fd, SHUT_WR);
    ASSERT_TRUE(run_until(
        *loop, [&] { return got.eof; }, 200));
  }
  loop->run_once(false);
  EXPECT_EQ(r.outstanding(), 0u);
  EXPECT_EQ(r.available(), 512u);
}

// Four streams with 40 KiB each waiting in their sockets when their
// multishot recvs go in: ~160 buffers taken in one turn, more than a
// window of 64.
struct Burst {
  static constexpr int kStreams = 4;
  static constexpr size_t kBytes = 40 * 1024;

  Burst(EventLoop& loop, BufferRing& ring) : got(kStreams) {
    for (int i = 0; i < kStreams; ++i) {
      pairs.push_back(testing::socket_pair());
      sent.push_back(pattern(kBytes + static_cast<size_t>(i)));
      EXPECT_EQ(::send(pairs.back().second.fd, sent.back().data(), sent.back().size(), 0),
                static_cast<ssize_t>(sent.back().size()));
    }
    for (int i = 0; i < kStreams; ++i) {
      streams.push_back(std::make_unique<RecvStream>(pairs[i].first.fd, ring));
      streams.back()->start_multishot();
      spawn(loop, read_ids(streams.back().get(), &got[i]));
    }
    EXPECT_TRUE(run_until(
        loop, [&] { return every([&](int i) { return got[i].data.size() >= sent[i].size(); }); },
        500));
    for (int i = 0; i < kStreams; ++i) EXPECT_EQ(got[i].data, sent[i]);
  }
  // Ends every stream (EOF from each peer).
  void finish(EventLoop& loop) {
    for (auto& p : pairs) ::shutdown(p.second.fd, SHUT_WR);
    EXPECT_TRUE(run_until(
        loop, [&] { return every([&](int i) { return got[i].eof; }); }, 200));
  }
  // True when `pred(i)` holds for every stream i.
  template <class Pred>
  bool every(Pred pred) const {
    for (int i = 0; i < kStreams; ++i) {
      if (!pred(i)) return false;
    }
    return true;
  }

  std::vector<std::pair<testing::Fd, testing::Fd>> pairs;
  std::vector<std::string> sent;
  std::vector<Chunks> got;
  std::vector<std::unique_ptr<RecvStream>> streams;
};

TEST_F(BufferWindowTest, BurstWidensTheWindowAndNoStreamWaitsForFreeBuffers) {
  ASSERT_TRUE(make_ring(512));
  BufferRing& r = *ring_;
  {
    Burst burst(*loop, r);
    // The kernel found the window empty while buffers were held back: the
    // window widened and the recv went in again at once, no stream waited
    // in line for a buffer.
    EXPECT_GT(loop->stats().enobufs, 0u);
    EXPECT_EQ(loop->stats().recv_dry_waits, 0u);
    EXPECT_GT(r.window(), BufferRing::kMinWindow);
    burst.finish(*loop);
  }
  loop->run_once(false);
  EXPECT_EQ(r.outstanding(), 0u);
  EXPECT_EQ(r.available(), 512u);
}

TEST_F(BufferWindowTest, LightLoadNarrowsAWideWindowAgain) {
  ASSERT_TRUE(make_ring(512));
  BufferRing& r = *ring_;
  Burst burst(*loop, r);
  EXPECT_GT(r.window(), BufferRing::kMinWindow);
  // Then one buffer at a time on one of them: the window halves every
  // kNarrowAfter buffers taken.
  Chunks& got = burst.got[0];
  trickle(*loop, burst.pairs[0].second.fd, got, static_cast<int>(BufferRing::kNarrowAfter) * 8);
  EXPECT_EQ(r.window(), BufferRing::kMinWindow);
  EXPECT_LE(distinct(got.ids, 100), size_t{BufferRing::kMinWindow} + 1);
  burst.finish(*loop);
}

// A grown ring's newest block retired while some of its buffers are held
// back (free, not in the kernel's ring): those are parked, never handed to
// the kernel again, and every byte still arrives intact.
TEST_F(BufferWindowTest, ShrinkParksTheRetiredBuffersItHeldBack) {
  ASSERT_TRUE(make_ring(128, /*max_count=*/256));
  BufferRing& r = *ring_;
  ASSERT_TRUE(r.grow());
  EXPECT_EQ(r.count(), 256u);
  EXPECT_EQ(r.window(), 256u);  // grown for starving streams: all in
  EXPECT_EQ(r.held_back(), 0u);
  auto [a, b] = testing::socket_pair();
  Chunks got;
  RecvStream stream = recv_multishot(a.fd, r);
  spawn(*loop, read_ids(&stream, &got));
  // Light load narrows the window; buffers given back past it are held
  // back, the grown block's among them.
  trickle(*loop, b.fd, got, static_cast<int>(BufferRing::kNarrowAfter) * 5);
  EXPECT_EQ(r.window(), BufferRing::kMinWindow);
  EXPECT_GT(r.held_back(), 0u);
  const uint32_t free_before = r.available();
  ASSERT_TRUE(r.shrink());
  EXPECT_EQ(r.count(), 128u);
  EXPECT_LT(r.available(), free_before);  // the retired ones held back are parked
  // The retired block's entries still in the kernel's ring serve once more
  // and are parked as they come back; then only the first block serves.
  trickle(*loop, b.fd, got, 400);
  for (size_t i = got.ids.size() - 100; i < got.ids.size(); ++i) EXPECT_LT(got.ids[i], 128u);
  ::shutdown(b.fd, SHUT_WR);
  ASSERT_TRUE(run_until(
      *loop, [&] { return got.eof; }, 200));
  EXPECT_EQ(r.outstanding(), 0u);
}

}  // namespace
}  // namespace coring
