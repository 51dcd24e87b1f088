// Decoder::set_buffer_pool(): the reassembly buffers of large frames come
// from a pool shared by decoders and go back to it between frames; smaller
// ones, buffers the pool refuses and buffers over kKeptBuffer are handled as
// without a pool.
#include <algorithm>
#include <string>
#include <vector>

#include "coring/codec/decoder.h"
#include "coring/codec/encoder.h"
#include "gtest/gtest.h"
#include "test_util.h"

namespace coring::sbmp {
namespace {

constexpr size_t kRead = 16 * 1024;  // a transport's receive buffer

std::vector<uint8_t> make(size_t payload, char fill) {
  const std::string bytes(payload, fill);
  Frame f = make_frame(0x100, testing::as_bytes(bytes));
  std::vector<uint8_t> out(kHeaderSize + kTrailerSize + payload);
  auto n = encode_frame(f, {}, absl::MakeSpan(out));
  EXPECT_TRUE(n.ok());
  out.resize(*n);
  return out;
}

// A pool as a transport keeps one: LIFO, at most max_kept buffers.
struct TestPool {
  std::vector<std::vector<uint8_t>> kept;
  size_t max_kept = 8;
  int takes = 0;  // takes that found a buffer
  int gives = 0;  // buffers kept
  int refusals = 0;

  Decoder::BufferPool hooks(size_t min_frame) { return {this, &take, &give, min_frame}; }
  static std::vector<uint8_t> take(void* owner, size_t /*want*/) noexcept {
    TestPool& p = *static_cast<TestPool*>(owner);
    if (p.kept.empty()) return {};
    std::vector<uint8_t> b = std::move(p.kept.back());
    p.kept.pop_back();
    ++p.takes;
    return b;
  }
  static bool give(void* owner, std::vector<uint8_t>& buffer) noexcept {
    TestPool& p = *static_cast<TestPool*>(owner);
    if (p.kept.size() >= p.max_kept) {
      ++p.refusals;
      return false;
    }
    p.kept.push_back(std::move(buffer));
    ++p.gives;
    return true;
  }
};

// Feeds `frame` in kRead pieces; returns the frame's payload address
// (nullptr if it did not come out whole, with a test failure).
const uint8_t* feed(Decoder& d, const std::vector<uint8_t>& frame) {
  const uint8_t* payload = nullptr;
  for (size_t at = 0; at < frame.size(); at += kRead) {
    absl::Span<const uint8_t> chunk =
        absl::MakeConstSpan(frame).subspan(at, std::min(kRead, frame.size() - at));
    auto r = d.next(chunk);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return nullptr;
    if (r->has_value()) {
      EXPECT_EQ((*r)->payload.size() + kHeaderSize, frame.size());  // (no trailer)
      EXPECT_EQ((*r)->payload.back(), frame.back());
      payload = (*r)->payload.data();
    }
  }
  EXPECT_NE(payload, nullptr);
  return payload;
}

// Two connections take turns receiving 64 KiB frames: one buffer serves
// both, and neither holds it between its frames.
TEST(DecoderBufferPoolTest, DecodersTakingTurnsShareOneBuffer) {
  TestPool pool;
  Decoder a, b;
  a.set_buffer_pool(pool.hooks(kRead));
  b.set_buffer_pool(pool.hooks(kRead));
  std::vector<const uint8_t*> payloads;
  for (int i = 0; i < 6; ++i) {
    Decoder& d = i % 2 == 0 ? a : b;
    payloads.push_back(feed(d, make(64 * 1024, static_cast<char>('a' + i))));
    d.release_buffer();  // the frame is no longer in use
    EXPECT_EQ(d.buffer_bytes(), 0u);
    EXPECT_FALSE(d.mid_frame());
  }
  ASSERT_EQ(pool.kept.size(), 1u);
  EXPECT_EQ(pool.takes, 5);  // every frame after the first
  EXPECT_EQ(pool.gives, 6);
  for (const uint8_t* p : payloads) EXPECT_EQ(p, payloads[0]);
}

// Without release_buffer(), the decoder gives its buffer back on the call
// after the one that returned the frame (the frame is gone by then).
TEST(DecoderBufferPoolTest, TheNextCallGivesTheBufferBack) {
  TestPool pool;
  Decoder d;
  d.set_buffer_pool(pool.hooks(kRead));
  feed(d, make(40 * 1024, 'x'));
  EXPECT_GT(d.buffer_bytes(), 0u);  // still viewed by the frame
  EXPECT_TRUE(pool.kept.empty());
  absl::Span<const uint8_t> none;
  ASSERT_TRUE(d.next(none).ok());
  EXPECT_EQ(d.buffer_bytes(), 0u);
  EXPECT_EQ(pool.kept.size(), 1u);
}

// Mid-frame, the bytes received so far stay where they are.
TEST(DecoderBufferPoolTest, NothingIsGivenMidFrame) {
  TestPool pool;
  Decoder d;
  d.set_buffer_pool(pool.hooks(kRead));
  const std::vector<uint8_t> frame = make(64 * 1024, 'm');
  absl::Span<const uint8_t> first = absl::MakeConstSpan(frame).subspan(0, kRead);
  ASSERT_TRUE(d.next(first).ok());
  ASSERT_TRUE(d.mid_frame());
  const size_t held = d.buffer_bytes();
  d.release_buffer();
  d.trim();
  EXPECT_EQ(d.buffer_bytes(), held);
  EXPECT_TRUE(pool.kept.empty());
  absl::Span<const uint8_t> rest = absl::MakeConstSpan(frame).subspan(kRead);
  auto r = d.next(rest);
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ((*r)->payload.size(), 64u * 1024);
}

// Frames under min_frame reassemble in the decoder's own buffer, kept as
// without a pool: the pool holds only buffers of large frames.
TEST(DecoderBufferPoolTest, SmallFramesKeepTheirOwnBuffer) {
  TestPool pool;
  pool.kept.emplace_back(64 * 1024);
  Decoder d;
  d.set_buffer_pool(pool.hooks(kRead));
  const std::vector<uint8_t> frame = make(1000, 's');
  for (int i = 0; i < 3; ++i) {
    absl::Span<const uint8_t> first = absl::MakeConstSpan(frame).subspan(0, 300);
    absl::Span<const uint8_t> rest = absl::MakeConstSpan(frame).subspan(300);
    ASSERT_TRUE(d.next(first).ok());
    auto r = d.next(rest);
    ASSERT_TRUE(r.ok() && r->has_value());
    d.release_buffer();
  }
  EXPECT_GT(d.buffer_bytes(), 0u);
  EXPECT_LT(d.buffer_bytes(), kRead);
  EXPECT_EQ(pool.takes, 0);
  EXPECT_EQ(pool.gives, 0);
}

// A buffer the pool refuses stays with the decoder, which reuses it.
TEST(DecoderBufferPoolTest, ARefusedBufferIsKept) {
  TestPool pool;
  pool.max_kept = 0;
  Decoder d;
  d.set_buffer_pool(pool.hooks(kRead));
  const uint8_t* first = feed(d, make(64 * 1024, '1'));
  d.release_buffer();
  EXPECT_GT(d.buffer_bytes(), 0u);
  const uint8_t* second = feed(d, make(64 * 1024, '2'));
  EXPECT_EQ(first, second);
  EXPECT_EQ(pool.refusals, 2);
}

// A frame over kKeptBuffer (1 MiB) neither takes a pool buffer (it would
// grow it and throw it away) nor gives its own: the pool's buffers stay the
// size of the frames it serves.
TEST(DecoderBufferPoolTest, ABufferOverTheKeptSizeIsFreed) {
  TestPool pool;
  pool.kept.emplace_back(64 * 1024);
  Decoder d;
  d.set_buffer_pool(pool.hooks(kRead));
  feed(d, make(1 << 20, 'L'));
  EXPECT_EQ(pool.takes, 0);
  d.release_buffer();
  EXPECT_EQ(pool.kept.size(), 1u);  // only the one there before
  absl::Span<const uint8_t> none;
  ASSERT_TRUE(d.next(none).ok());
  EXPECT_EQ(d.buffer_bytes(), 0u);
  EXPECT_EQ(pool.kept.size(), 1u);
  EXPECT_EQ(pool.gives, 0);
}

// trim() (an idle connection) gives a pool-sized buffer to the pool.
TEST(DecoderBufferPoolTest, TrimGivesToThePool) {
  TestPool pool;
  Decoder d;
  d.set_buffer_pool(pool.hooks(kRead));
  feed(d, make(20 * 1024, 't'));
  d.trim();
  EXPECT_EQ(d.buffer_bytes(), 0u);
  EXPECT_EQ(pool.kept.size(), 1u);
}

}  // namespace
}  // namespace coring::sbmp
