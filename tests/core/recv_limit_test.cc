// Tests of the byte limit on multishot recvs (Ring::recv_limit(),
// RingOptions::allow_recv_limit): where the kernel takes it, a multishot recv
// ends after its stream's share of buffers, so that a reader busy elsewhere
// when a burst arrives holds a share of it, not whatever the ring had room
// for; every byte still arrives, in order, through the recvs armed after.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "buffer_test_util.h"
#include "coring/core/buffer_ring.h"
#include "coring/core/recv_stream.h"
#include "coring/core/spawn.h"
#include "coring/core/task.h"
#include "coring/pool/buffer_arena.h"
#include "test_loop_util.h"

namespace coring {
namespace {

using testing::make_arena;
using testing::make_loop;
using testing::pattern;
using testing::poll_until;

constexpr uint32_t kBuffers = 64;
constexpr uint32_t kBufferSize = 1024;
constexpr uint32_t kShare = 2;
// Buffers a limited multishot recv takes: 8.
constexpr uint32_t kLimit = kShare * RecvStream::kLimitShares;

// Takes one chunk and stops reading (a reader gone off to write its echo).
Task<> take_one(RecvStream* stream, std::string* got) {
  absl::StatusOr<RecvBuffer> buf = co_await stream->next();
  if (buf.ok()) got->assign(reinterpret_cast<const char*>(buf->data()), buf->size());
}

Task<> read_all(RecvStream* stream, std::string* got, bool* eof) {
  for (;;) {
    absl::StatusOr<RecvBuffer> buf = co_await stream->next();
    if (!buf.ok() || buf->empty()) break;
    got->append(reinterpret_cast<const char*>(buf->data()), buf->size());
  }
  *eof = true;
}

struct Burst {
  size_t queued = 0;     // chunks the stream holds, unread, after the burst
  bool armed = false;    // its recv still armed then
  uint32_t in_ring = 0;  // buffers left in the ring then
  std::string data;      // every byte, read afterwards
};

// A multishot stream (share kShare) whose reader waits; 32 buffers' worth
// arrives at once; the reader takes the first chunk and stops. What the
// stream holds then, and then everything read to the end.
Burst burst(bool allow_limit) {
  Burst out;
  pool::BufferArena arena = make_arena();
  LoopOptions options;
  options.ring.allow_recv_limit = allow_limit;
  auto loop = make_loop(options);
  if (loop == nullptr) return out;
  if (!allow_limit) {
    EXPECT_FALSE(loop->ring().recv_limit());
  }
  auto ring = BufferRing::create(*loop, arena, kBuffers, kBufferSize);
  EXPECT_TRUE(ring.ok()) << ring.status();
  if (!ring.ok()) return out;
  EXPECT_EQ((*ring)->recv_limit(), loop->ring().recv_limit());
  auto [in, peer] = testing::socket_pair();
  RecvStream stream = recv_multishot(in.fd, **ring);
  stream.start_multishot();
  stream.set_share(kShare);
  std::string first;
  spawn(*loop, take_one(&stream, &first));
  EXPECT_TRUE(poll_until(*loop, [&] { return stream.armed(); }));
  const std::string message = pattern(32 * kBufferSize);
  EXPECT_EQ(::write(peer.fd, message.data(), message.size()), static_cast<ssize_t>(message.size()));
  EXPECT_TRUE(poll_until(*loop, [&] { return !first.empty(); }));
  for (int i = 0; i < 10; ++i) loop->run_once(false);
  out.queued = stream.queued();
  out.armed = stream.armed();
  out.in_ring = (*ring)->available();
  // The rest, through as many recvs as it takes.
  out.data = first;
  bool eof = false;
  spawn(*loop, read_all(&stream, &out.data, &eof));
  ::shutdown(peer.fd, SHUT_WR);
  EXPECT_TRUE(poll_until(*loop, [&] { return eof; }));
  EXPECT_EQ(out.data, message);
  EXPECT_EQ((*ring)->outstanding(), 0u);
  return out;
}

TEST(RecvLimitTest, BurstStopsAtTheStreamsShare) {
  if (!make_loop()->ring().recv_limit()) {
    GTEST_SKIP() << "this kernel takes no byte limit on a multishot recv (sqe->optlen)";
  }
  const Burst b = burst(/*allow_limit=*/true);
  // The limit's buffers taken (the reader has one, the stream the rest),
  // the recv ended by it: the other 24 KiB wait in the socket.
  EXPECT_EQ(b.queued, kLimit - 1);
  EXPECT_FALSE(b.armed);
  EXPECT_EQ(b.in_ring, kBuffers - (kLimit - 1));
}

TEST(RecvLimitTest, WithoutTheLimitTheBurstTakesWhatTheRingHolds) {
  if (!make_loop()->ring().recv_limit()) {
    GTEST_SKIP() << "this kernel takes no byte limit on a multishot recv (sqe->optlen)";
  }
  // The same kernel, the limit turned off: the one recv drained the socket
  // into the ring before the stream's pause could go in. (What the limit
  // is for; on a kernel without it, this is what every stream gets.)
  const Burst b = burst(/*allow_limit=*/false);
  EXPECT_GT(b.queued, size_t{kLimit});
  EXPECT_LT(b.in_ring, kBuffers - kLimit);
}

}  // namespace
}  // namespace coring
