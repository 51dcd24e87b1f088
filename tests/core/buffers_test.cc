// Tests of core/buffer_ring.* with core/recv_stream.h (provided buffers,
// ENOBUFS and recovery, every buffer back at the end) and of registered
// buffers (core/read_write.h, send_fixed in core/send.h).
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "coring/core/buffer_ring.h"
#include "coring/core/read_write.h"
#include "coring/core/recv_stream.h"
#include "coring/core/send.h"
#include "coring/core/spawn.h"
#include "coring/core/task.h"
#include "coring/pool/buffer_arena.h"
#include "test_loop_util.h"

namespace coring {
namespace {

using testing::Fd;
using testing::make_loop;
using testing::run_until;

pool::BufferArena make_arena() {
  auto arena = pool::BufferArena::create({.name = "coring.test_buffers.v1",
                                          .classes = {{4096, 16}},
                                          .carve_bytes = 1 << 20,
                                          .huge_pages = pool::HugePagePolicy::kNever});
  EXPECT_TRUE(arena.ok()) << arena.status();
  return std::move(*arena);
}

std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + i % 26);
  return s;
}

struct Received {
  std::string data;
  std::vector<RecvBuffer> held;
  bool eof = false;
  absl::Status error;
};

// Reads until EOF; holds on to the first `hold` buffers instead of releasing them.
Task<> read_stream(RecvStream* stream, Received* out, size_t hold) {
  for (;;) {
    absl::StatusOr<RecvBuffer> buf = co_await stream->next();
    if (!buf.ok()) {
      out->error = buf.status();
      co_return;
    }
    if (buf->empty()) {
      out->eof = true;
      co_return;
    }
    out->data.append(reinterpret_cast<const char*>(buf->data()), buf->size());
    if (out->held.size() < hold) out->held.push_back(std::move(*buf));
  }
}

TEST(BufferRingTest, RejectsBadShapes) {
  pool::BufferArena arena = make_arena();
  auto loop = make_loop();
  EXPECT_EQ(BufferRing::create(*loop, arena, 3, 4096).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BufferRing::create(*loop, arena, 0, 4096).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(BufferRing::create(*loop, arena, 4096, 4096).ok());  // more than the carve region
}

TEST(BufferRingTest, MultishotRecvSurvivesExhaustionAndRecovers) {
  pool::BufferArena arena = make_arena();
  auto loop = make_loop();
  auto ring = BufferRing::create(*loop, arena, 4, 1024);
  ASSERT_TRUE(ring.ok()) << ring.status();
  auto [a, b] = testing::socket_pair();
  Received got;
  {
    RecvStream stream = recv_multishot(a.fd, **ring);
    spawn(*loop, read_stream(&stream, &got, /*hold=*/4));
    // 4 buffers of 1 KiB, 6 KiB sent: the reader holds all four and the
    // ring runs dry (a multishot recv ends with ENOBUFS; a single-shot one,
    // as a new stream uses, is not armed until buffers come back).
    const std::string first = pattern(6 * 1024);
    ASSERT_EQ(::write(b.fd, first.data(), first.size()), static_cast<ssize_t>(first.size()));
    ASSERT_TRUE(run_until(
        *loop, [&] { return got.data.size() == 4 * 1024u && (*ring)->available() == 0; }, 200));
    for (int i = 0; i < 5; ++i) loop->run_once(false);
    EXPECT_EQ(got.data.size(), 4 * 1024u);
    EXPECT_EQ((*ring)->outstanding(), 4u);
    EXPECT_FALSE(stream.armed());
    // Buffers come back: the stream re-arms and the rest arrives intact.
    got.held.clear();
    ASSERT_TRUE(run_until(
        *loop, [&] { return got.data.size() == first.size(); }, 200));
    EXPECT_EQ(got.data, first);
    ::shutdown(b.fd, SHUT_WR);
    ASSERT_TRUE(run_until(
        *loop, [&] { return got.eof; }, 200));
    EXPECT_TRUE(got.error.ok()) << got.error;
    EXPECT_EQ((*ring)->outstanding(), got.held.size());
    got.held.clear();
  }
  loop->run_once(false);
  EXPECT_EQ((*ring)->outstanding(), 0u);  // every entry back
  EXPECT_EQ(loop->stats().ops_in_flight, 0u);
}

// Reads until `bytes` have arrived, keeping every chunk, and stops reading.
Task<> read_and_keep(RecvStream* stream, Received* out, size_t bytes) {
  while (out->data.size() < bytes) {
    absl::StatusOr<RecvBuffer> buf = co_await stream->next();
    if (!buf.ok() || buf->empty()) co_return;
    out->data.append(reinterpret_cast<const char*>(buf->data()), buf->size());
    out->held.push_back(std::move(*buf));
  }
}

// A reader that keeps every buffer of `ring` (it reads a ring's worth and
// holds on to it): the ring is dry until the test gives buffers back
// (held.held.pop_back()).
struct DryRing {
  DryRing(EventLoop& loop, BufferRing& ring)
      : pair(testing::socket_pair()), stream(recv_multishot(pair.first.fd, ring)) {
    const size_t bytes = size_t{ring.count()} * ring.buffer_size();
    spawn(loop, read_and_keep(&stream, &held, bytes));
    const std::string all = pattern(bytes);
    EXPECT_EQ(::write(pair.second.fd, all.data(), all.size()), static_cast<ssize_t>(all.size()));
    EXPECT_TRUE(run_until(
        loop, [&] { return held.data.size() == bytes && ring.available() == 0; }, 200));
  }
  std::pair<Fd, Fd> pair;
  RecvStream stream;
  Received held;
};

// Buffers coming back to a dry ring wake the waiting streams one per
// buffer, first come first served: waking every waiter for one buffer would
// arm a recv each, and all but one would end in ENOBUFS.
TEST(BufferRingTest, EachBufferBackWakesOneWaitingStream) {
  pool::BufferArena arena = make_arena();
  auto loop = make_loop();
  auto ring = BufferRing::create(*loop, arena, 2, 1024);
  ASSERT_TRUE(ring.ok()) << ring.status();
  DryRing dry(*loop, **ring);
  Received& held = dry.held;
  // Six streams with a byte each to read and a reader each (which keeps
  // what it reads): the ring is dry, so they all wait.
  constexpr int kStreams = 6;
  std::vector<std::pair<Fd, Fd>> pairs;
  std::vector<std::unique_ptr<RecvStream>> streams;
  std::vector<Received> got(kStreams);
  for (int i = 0; i < kStreams; ++i) {
    pairs.push_back(testing::socket_pair());
    streams.push_back(std::make_unique<RecvStream>(pairs[i].first.fd, **ring));
    spawn(*loop, read_stream(streams[i].get(), &got[i], /*hold=*/1));
    ASSERT_EQ(::write(pairs[i].second.fd, "x", 1), 1);
    for (int k = 0; k < 3; ++k) loop->run_once(false);
  }
  for (int k = 0; k < 10; ++k) loop->run_once(false);
  auto served = [&] {
    int n = 0;
    for (const Received& r : got) n += r.data.empty() ? 0 : 1;
    return n;
  };
  EXPECT_EQ(served(), 0);
  const uint64_t enobufs = loop->stats().enobufs;
  // One buffer back: one stream, the first that waited, gets it; nobody
  // else even tries.
  held.held.pop_back();
  for (int k = 0; k < 10; ++k) loop->run_once(false);
  EXPECT_EQ(served(), 1);
  EXPECT_EQ(got[0].data, "x");
  EXPECT_EQ(loop->stats().enobufs, enobufs);
  held.held.pop_back();
  for (int k = 0; k < 10; ++k) loop->run_once(false);
  EXPECT_EQ(served(), 2);
  EXPECT_EQ(got[1].data, "x");
  EXPECT_EQ(loop->stats().enobufs, enobufs);
  // Everyone else is served as buffers keep coming back.
  got[0].held.clear();
  got[1].held.clear();
  ASSERT_TRUE(run_until(
      *loop,
      [&] {
        for (Received& r : got) r.held.clear();
        return served() == kStreams;
      },
      500));
  for (auto& p : pairs) ::shutdown(p.second.fd, SHUT_WR);
  ::shutdown(dry.pair.second.fd, SHUT_WR);
  ASSERT_TRUE(run_until(
      *loop,
      [&] {
        for (const Received& r : got) {
          if (!r.eof) return false;
        }
        return true;
      },
      500));
  EXPECT_EQ((*ring)->outstanding(), 0u);
}

// Records what the ring tells it; takes every turn and every buffer.
class RecordingWaiter final : public BufferWaiter {
 public:
  RecordingWaiter(std::string name, std::vector<std::string>* log)
      : name_(std::move(name)), log_(log) {}
  bool on_buffer_offered(uint16_t id) noexcept override {
    log_->push_back(name_ + " offered");
    offered.push_back(id);
    return true;
  }
  bool on_buffers_available() noexcept override {
    log_->push_back(name_ + " woken");
    return true;
  }
  std::vector<uint16_t> offered;

 private:
  std::string name_;
  std::vector<std::string>* log_;
};

// A stream woken for a buffer given back may still find the ring dry: a
// recv armed before its own in the same submit took the buffer (a woken
// multishot recv takes all its data fills). Having lost that race it goes
// to the head of the line; having lost BufferRing::kHandOffAfter in a row
// it is handed the next buffer itself, to receive into. With peers flooding the thread, a
// quiet connection otherwise lost race after race (issue 11's hostile
// runs: a victim's echo waited 0.7-1.4 s behind 64 flooding peers).
TEST(BufferRingTest, WaitersThatLostRacesGoFirstAndAreHandedBuffers) {
  pool::BufferArena arena = make_arena();
  auto loop = make_loop();
  auto ring = BufferRing::create(*loop, arena, 4, 1024);
  ASSERT_TRUE(ring.ok()) << ring.status();
  DryRing dry(*loop, **ring);
  Received& held = dry.held;
  std::vector<std::string> log;
  RecordingWaiter fresh("fresh", &log), lost_once("lost_once", &log),
      lost_often("lost_often", &log), also_often("also_often", &log);
  (*ring)->wait_for_buffers(&fresh);
  (*ring)->wait_for_buffers(&lost_once, 1);
  (*ring)->wait_for_buffers(&lost_often, BufferRing::kHandOffAfter);
  (*ring)->wait_for_buffers(&also_often, BufferRing::kHandOffAfter + 1);
  // Line: lost_once, lost_often, also_often (in the order they came), fresh.
  // A buffer back wakes lost_once (into the ring: its woken recv takes
  // what its data fills); the next two are handed over.
  for (int i = 0; i < 4; ++i) held.held.pop_back();
  EXPECT_EQ(log, (std::vector<std::string>{"lost_once woken", "lost_often offered",
                                           "also_often offered", "fresh woken"}));
  EXPECT_EQ(loop->stats().recv_handoffs, 2u);
  // A handed-over buffer stays outstanding until its taker gives it back.
  EXPECT_EQ((*ring)->outstanding(), 2u);
  EXPECT_EQ((*ring)->available(), 2u);
  for (RecordingWaiter* w : {&lost_often, &also_often}) {
    ASSERT_EQ(w->offered.size(), 1u);
    (*ring)->give_back(w->offered[0]);
  }
  EXPECT_EQ((*ring)->outstanding(), 0u);
  ::shutdown(dry.pair.second.fd, SHUT_WR);
  for (int k = 0; k < 5; ++k) loop->run_once(false);
}

// End to end: both buffers come back at once, each wakes one stream in
// line, but the flooder's recv, first in the submit, fills both; the
// victim lost its race and is first for the next buffer.
TEST(BufferRingTest, StreamThatLostTheRaceForABufferGetsTheNextOne) {
  pool::BufferArena arena = make_arena();
  auto loop = make_loop();
  auto ring = BufferRing::create(*loop, arena, 2, 1024);
  ASSERT_TRUE(ring.ok()) << ring.status();
  auto flood_pair = testing::socket_pair();
  auto victim_pair = testing::socket_pair();
  DryRing dry(*loop, **ring);
  Received& held = dry.held;
  // In line, in this order: a flooder with 4 KiB to read (multishot), and
  // a victim with one byte.
  RecvStream flooder = recv_multishot(flood_pair.first.fd, **ring);
  flooder.start_multishot();
  Received flooded;
  spawn(*loop, read_stream(&flooder, &flooded, /*hold=*/16));
  const std::string flood = pattern(4 * 1024);
  ASSERT_EQ(::write(flood_pair.second.fd, flood.data(), flood.size()),
            static_cast<ssize_t>(flood.size()));
  for (int k = 0; k < 3; ++k) loop->run_once(false);
  RecvStream victim = recv_multishot(victim_pair.first.fd, **ring);
  Received got;
  spawn(*loop, read_stream(&victim, &got, /*hold=*/1));
  ASSERT_EQ(::write(victim_pair.second.fd, "x", 1), 1);
  for (int k = 0; k < 3; ++k) loop->run_once(false);
  ASSERT_EQ(loop->stats().recv_dry_waits, 2u);
  held.held.clear();
  for (int k = 0; k < 5; ++k) loop->run_once(false);
  EXPECT_EQ(flooded.data.size(), 2 * 1024u);
  EXPECT_TRUE(got.data.empty());
  // The next buffer back is the victim's, though the flooder has more to
  // read and waited in line before it.
  flooded.held.pop_back();
  for (int k = 0; k < 5; ++k) loop->run_once(false);
  EXPECT_EQ(got.data, "x");
  EXPECT_EQ(flooded.data.size(), 2 * 1024u);
  // Then everyone is served as buffers keep coming back.
  ASSERT_TRUE(run_until(
      *loop,
      [&] {
        flooded.held.clear();
        got.held.clear();
        return flooded.data == flood;
      },
      200));
  for (auto* p : {&dry.pair, &flood_pair, &victim_pair}) ::shutdown(p->second.fd, SHUT_WR);
  ASSERT_TRUE(run_until(
      *loop, [&] { return got.eof && flooded.eof; }, 200));
  EXPECT_EQ((*ring)->outstanding(), 0u);
}

// A reader that starts on a dry ring, with nothing to read yet, waits for
// data holding no buffer and is not in line (it would only pass on every
// buffer offered); once its data comes, ENOBUFS puts it in line.
TEST(BufferRingTest, IdleStreamOnADryRingWaitsForDataOutOfLine) {
  pool::BufferArena arena = make_arena();
  auto loop = make_loop();
  auto ring = BufferRing::create(*loop, arena, 2, 1024);
  ASSERT_TRUE(ring.ok()) << ring.status();
  auto quiet_pair = testing::socket_pair();
  auto busy_pair = testing::socket_pair();
  DryRing dry(*loop, **ring);
  Received& held = dry.held;
  RecvStream quiet = recv_multishot(quiet_pair.first.fd, **ring);
  Received quiet_got;
  spawn(*loop, read_stream(&quiet, &quiet_got, /*hold=*/1));
  for (int k = 0; k < 3; ++k) loop->run_once(false);
  EXPECT_TRUE(quiet.armed());  // polling for data, no buffer
  RecvStream busy = recv_multishot(busy_pair.first.fd, **ring);
  Received busy_got;
  spawn(*loop, read_stream(&busy, &busy_got, /*hold=*/1));
  ASSERT_EQ(::write(busy_pair.second.fd, "b", 1), 1);
  for (int k = 0; k < 3; ++k) loop->run_once(false);
  EXPECT_EQ(loop->stats().recv_dry_waits, 1u);  // the busy stream only
  held.held.pop_back();
  ASSERT_TRUE(run_until(
      *loop, [&] { return busy_got.data == "b"; }, 200));
  EXPECT_TRUE(quiet_got.data.empty());
  EXPECT_TRUE(quiet.armed());
  // The quiet stream's data comes: the ring is still dry, so it waits in
  // line, and the next buffer back is its.
  ASSERT_EQ(::write(quiet_pair.second.fd, "q", 1), 1);
  for (int k = 0; k < 5; ++k) loop->run_once(false);
  EXPECT_TRUE(quiet_got.data.empty());
  EXPECT_EQ(loop->stats().recv_dry_waits, 2u);
  held.held.pop_back();
  ASSERT_TRUE(run_until(
      *loop, [&] { return quiet_got.data == "q"; }, 200));
  quiet_got.held.clear();
  busy_got.held.clear();
  for (auto* p : {&dry.pair, &quiet_pair, &busy_pair}) ::shutdown(p->second.fd, SHUT_WR);
  ASSERT_TRUE(run_until(
      *loop, [&] { return quiet_got.eof && busy_got.eof; }, 200));
  EXPECT_EQ((*ring)->outstanding(), 0u);
}

Task<> read_one(RecvStream* stream, std::string* out) {
  absl::StatusOr<RecvBuffer> buf = co_await stream->next();
  if (buf.ok()) out->assign(reinterpret_cast<const char*>(buf->data()), buf->size());
}

TEST(BufferRingTest, DestroyedStreamReturnsItsBuffers) {
  pool::BufferArena arena = make_arena();
  auto loop = make_loop();
  auto ring = BufferRing::create(*loop, arena, 8, 512);
  ASSERT_TRUE(ring.ok()) << ring.status();
  auto [a, b] = testing::socket_pair();
  std::string first;
  {
    RecvStream stream = recv_multishot(a.fd, **ring);
    stream.start_multishot();
    spawn(*loop, read_one(&stream, &first));
    ASSERT_EQ(::write(b.fd, "one", 3), 3);
    ASSERT_TRUE(run_until(
        *loop, [&] { return !first.empty(); }, 100));
    EXPECT_EQ(first, "one");
    EXPECT_TRUE(stream.armed());  // multishot: still armed, nobody reading
    // Chunks arriving now are queued in the stream, each holding a buffer.
    ASSERT_EQ(::write(b.fd, "two", 3), 3);
    ASSERT_TRUE(run_until(
        *loop, [&] { return stream.queued() == 1; }, 100));
    ASSERT_EQ(::write(b.fd, "three", 5), 5);
    ASSERT_TRUE(run_until(
        *loop, [&] { return stream.queued() == 2; }, 100));
    EXPECT_EQ((*ring)->outstanding(), 2u);
  }
  // Destroyed while armed: queued buffers go back, the op is cancelled, and
  // whatever the orphaned op still picks is returned by its reclaimer.
  ASSERT_EQ(::write(b.fd, "late", 4), 4);
  for (int i = 0; i < 5; ++i) loop->run_once(false);
  EXPECT_EQ(loop->stats().ops_in_flight, 0u);
  EXPECT_EQ((*ring)->outstanding(), 0u);
}

// Reads `n` chunks; notes for each whether the recv that brought it is
// still armed (multishot: it reads on by itself) when the reader gets it.
Task<> read_noting_armed(RecvStream* stream, int n, std::vector<bool>* armed) {
  for (int i = 0; i < n; ++i) {
    absl::StatusOr<RecvBuffer> buf = co_await stream->next();
    if (!buf.ok() || buf->empty()) co_return;
    armed->push_back(stream->armed());
  }
}

// A reader that keeps up is read multishot even while the ring is under a
// quarter free: one recv per wake-up would keep its socket's receive window
// from growing (the many-connection, large-message throughput cap).
TEST(BufferRingTest, ReaderThatKeepsUpReadsInBurstsOnALowRing) {
  pool::BufferArena arena = make_arena();
  auto loop = make_loop();
  auto ring = BufferRing::create(*loop, arena, 8, 512);
  ASSERT_TRUE(ring.ok()) << ring.status();
  // Another reader keeps 7 of the 8 buffers: the ring is low.
  auto [hog_a, hog_b] = testing::socket_pair();
  RecvStream hog = recv_multishot(hog_a.fd, **ring);
  Received hog_got;
  spawn(*loop, read_stream(&hog, &hog_got, 7));
  for (int i = 0; i < 7; ++i) {
    ASSERT_EQ(::write(hog_b.fd, "h", 1), 1);
    ASSERT_TRUE(run_until(
        *loop, [&] { return hog_got.held.size() == static_cast<size_t>(i + 1); }, 100));
  }
  ASSERT_LT((*ring)->available(), (*ring)->count() / 4);

  auto [a, b] = testing::socket_pair();
  RecvStream stream = recv_multishot(a.fd, **ring);
  stream.start_multishot();
  std::vector<bool> armed;
  spawn(*loop, read_noting_armed(&stream, 3, &armed));
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(::write(b.fd, "x", 1), 1);
    ASSERT_TRUE(run_until(
        *loop, [&] { return armed.size() == static_cast<size_t>(i + 1); }, 100));
  }
  EXPECT_EQ(armed, (std::vector<bool>{true, true, true}));
  EXPECT_TRUE(stream.multishot());
  hog_got.held.clear();
  ::shutdown(hog_b.fd, SHUT_WR);
  ASSERT_TRUE(run_until(
      *loop, [&] { return hog_got.eof; }, 100));
}

// Writes as much of `data` as the socket takes now (non-blocking).
size_t write_some(int fd, const std::string& data) {
  const ssize_t n = ::send(fd, data.data(), data.size(), MSG_DONTWAIT);
  return n > 0 ? static_cast<size_t>(n) : 0;
}

// Reads `n` chunks, answering each (ping-pong), so the reader always waits.
Task<> ping_pong(RecvStream* stream, int fd, int n, std::string* out) {
  for (int i = 0; i < n; ++i) {
    absl::StatusOr<RecvBuffer> buf = co_await stream->next();
    if (!buf.ok() || buf->empty()) {
      *out += buf.ok() ? std::string("<eof>") : buf.status().ToString();
      co_return;
    }
    out->append(reinterpret_cast<const char*>(buf->data()), buf->size());
    if (::write(fd, "k", 1) != 1) co_return;
  }
}

// A paused stream keeps its queued chunks in the ring while the ring has
// room (copying them out would cost a memcpy each for a reader that may
// just be busy); once another stream finds the ring dry, a reader that took
// nothing for a whole reclaim period is stuck, and its chunks move out.
TEST(BufferRingTest, StreamThatIsNotReadGivesTheRingBackWhenOthersNeedIt) {
  pool::BufferArena arena = make_arena();
  auto loop = make_loop();
  auto ring = BufferRing::create(*loop, arena, 16, 1024);
  ASSERT_TRUE(ring.ok()) << ring.status();
  // Not structured bindings: lambdas below use them (clang 14 refuses that).
  auto greedy_pair = testing::socket_pair();
  auto victim_pair = testing::socket_pair();
  Fd& greedy_in = greedy_pair.first;
  Fd& greedy_out = greedy_pair.second;
  Fd& victim_in = victim_pair.first;
  Fd& victim_out = victim_pair.second;
  RecvStream greedy = recv_multishot(greedy_in.fd, **ring);
  greedy.set_share(3);
  RecvStream victim = recv_multishot(victim_in.fd, **ring);
  // Ping-pong first: the reader keeps up, so the stream goes multishot.
  std::string first;
  spawn(*loop, ping_pong(&greedy, greedy_in.fd, 40, &first));
  for (int i = 0; i < 40; ++i) {
    ASSERT_EQ(::write(greedy_out.fd, "p", 1), 1);
    bool acked = false;
    char ack;
    ASSERT_TRUE(run_until(
        *loop, [&] { return acked = acked || ::recv(greedy_out.fd, &ack, 1, MSG_DONTWAIT) == 1; },
        100))
        << first;
  }
  ASSERT_EQ(first, std::string(40, 'p'));
  ASSERT_TRUE(greedy.multishot());
  ASSERT_TRUE(greedy.armed());  // and now nobody reads it
  // The greedy peer sends far more than the whole ring; its reader is stuck.
  const std::string flood = pattern(256 * 1024);
  size_t flooded = write_some(greedy_out.fd, flood);
  ASSERT_GT(flooded, 16 * 1024u);
  ASSERT_TRUE(run_until(
      *loop, [&] { return loop->stats().recv_pauses >= 1 && !greedy.armed(); }, 200));
  for (int i = 0; i < 20; ++i) loop->run_once(false);
  // It paused at its share, its chunks still in their ring buffers: the
  // ring has room, nothing was copied.
  const size_t paused_with = greedy.queued();
  EXPECT_GE(paused_with, 3u);
  EXPECT_EQ(loop->stats().recv_spills, 0u);
  EXPECT_EQ((*ring)->available(), 16u - paused_with);
  // A victim that needs more buffers at once than are left (it holds every
  // chunk of a 15 KiB message, and a buffer is 1 KiB) starves until the
  // stuck stream lets go - within a couple of reclaim periods - and then
  // gets every byte.
  Received got;
  spawn(*loop, read_stream(&victim, &got, /*hold=*/16));
  const std::string message = pattern(15 * 1024);
  ASSERT_EQ(::write(victim_out.fd, message.data(), message.size()),
            static_cast<ssize_t>(message.size()));
  ASSERT_TRUE(run_until(
      *loop, [&] { return got.data.size() == message.size(); }, 1000))
      << got.data.size() << " bytes, spills " << loop->stats().recv_spills;
  EXPECT_EQ(got.data, message);
  EXPECT_GE(loop->stats().recv_spills, paused_with);
  EXPECT_EQ((*ring)->outstanding(), got.held.size());  // the greedy stream holds none
  got.held.clear();
  // Once its reader reads again, the stuck stream reads on (single-shot,
  // one buffer at a time) and every byte arrives in order, none lost.
  Received rest;
  spawn(*loop, read_stream(&greedy, &rest, 0));
  ASSERT_TRUE(run_until(
      *loop,
      [&] {
        flooded += write_some(greedy_out.fd, flood.substr(flooded));
        return flooded == flood.size() && rest.data.size() == flood.size();
      },
      5000));
  EXPECT_EQ(rest.data, flood);
  ::shutdown(victim_out.fd, SHUT_WR);
  ::shutdown(greedy_out.fd, SHUT_WR);
  ASSERT_TRUE(run_until(
      *loop, [&] { return got.eof && rest.eof; }, 200));
  EXPECT_EQ((*ring)->outstanding(), 0u);
}

Task<std::string> fixed_round_trip(pool::BufferArena* arena, int out_fd, int in_fd) {
  absl::StatusOr<pool::BufferLease> tx = arena->acquire(64);
  absl::StatusOr<pool::BufferLease> rx = arena->acquire(64);
  if (!tx.ok() || !rx.ok()) co_return "acquire failed";
  std::memcpy(tx->data(), "registered", 10);
  absl::StatusOr<size_t> n = co_await send_fixed(out_fd, tx->span().first(10), tx->buf_index());
  if (!n.ok()) co_return "send_fixed: " + n.status().ToString();
  absl::StatusOr<size_t> m = co_await read_fixed(in_fd, rx->span(), rx->buf_index());
  if (!m.ok()) co_return "read_fixed: " + m.status().ToString();
  absl::StatusOr<size_t> w = co_await write_fixed(in_fd, rx->span().first(*m), rx->buf_index());
  if (!w.ok()) co_return "write_fixed: " + w.status().ToString();
  co_return std::string(reinterpret_cast<char*>(rx->data()), *m);
}

TEST(RegisteredBuffersTest, FixedBufferOpsUseTheArena) {
  pool::BufferArena arena = make_arena();
  LoopOptions options;
  options.arena = &arena;
  auto loop = make_loop(std::move(options));
  ASSERT_TRUE(loop->buffers_registered());
  auto [a, b] = testing::socket_pair();
  EXPECT_EQ(loop->block_on(fixed_round_trip(&arena, a.fd, b.fd)), "registered");
  char back[16] = {};
  ASSERT_EQ(::read(a.fd, back, sizeof(back)), 10);  // echoed by write_fixed
  EXPECT_STREQ(back, "registered");
}

}  // namespace
}  // namespace coring
