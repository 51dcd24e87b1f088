// Tests of how a net::Stream ends (net/stream.*, net/stream_state.h): a close
// made under a stopped stop token (Stream, FramedStream, a cancelled
// connect) still closes the socket and frees its fixed-file slot; a reader waiting in read() is
// woken when another task closes, aborts or destroys the stream; abort() keeps the memory of
// zero-copy sends (send buffers, a writer's bytes) until the kernel's
// notification says it let go.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <stop_token>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coring/core/spawn.h"
#include "coring/core/timer.h"
#include "coring/net/framed_stream.h"
#include "coring/net/stream.h"
#include "coring/net/unique_fd.h"
#include "length_prefix_codec.h"
#include "net_test_support.h"

namespace coring::net {
namespace {

using namespace std::chrono_literals;
using testing::LengthPrefixCodec;
using testing::pattern;
using testing::PlainListener;
using testing::RegisteredLoop;
using testing::TestLoop;

// True when `fd`'s peer closed (recv returns 0) within `timeout`.
bool sees_eof(int fd, std::chrono::milliseconds timeout = 1000ms) {
  timeval tv{0, static_cast<suseconds_t>(timeout.count() * 1000)};
  tv.tv_sec = tv.tv_usec / 1'000'000;
  tv.tv_usec %= 1'000'000;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  char c;
  return ::recv(fd, &c, 1, 0) == 0;
}

// Reads what is there without waiting; the byte count (0 when nothing).
size_t drain_now(int fd) {
  std::vector<uint8_t> buf(1 << 16);
  size_t total = 0;
  for (;;) {
    const ssize_t r = ::recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
    if (r <= 0) return total;
    total += static_cast<size_t>(r);
  }
}

std::stop_token stopped_token() {
  static std::stop_source* source = [] {
    auto* s = new std::stop_source;
    s->request_stop();
    return s;
  }();
  return source->get_token();
}

// ------------------------------------------------- closing under a stop

// A handler whose stop token is already stopped (a server shutting down)
// closes its stream: the close must still be submitted, or the socket and
// its fixed-file slot leak. More closes than the table has slots: a leaked
// slot makes a later connect fail with ResourceExhausted.
TEST(StreamLifecycleTest, CloseUnderAStoppedTokenClosesTheSocketAndFreesItsSlot) {
  LoopOptions lo;
  lo.fixed_files = 8;
  TestLoop t(std::move(lo));
  ASSERT_TRUE(t.net->fixed_files());
  PlainListener peer;
  absl::Status s = t.run([](NetContext& net, PlainListener& peer) -> Task<absl::Status> {
    for (int i = 0; i < 12; ++i) {
      absl::StatusOr<Stream> c = co_await Stream::connect(net, peer.address);
      if (!c.ok())
        co_return absl::Status(c.status().code(),
                               absl::StrCat("connect #", i, ": ", c.status().message()));
      UniqueFd p = peer.accept();
      Task<absl::Status> closing = c->close();
      closing.set_stop_token(stopped_token());
      absl::Status closed = co_await std::move(closing);
      if (!sees_eof(p.get())) {
        co_return absl::InternalError(
            absl::StrCat("close #", i, " under a stopped token (", closed.ToString(),
                         "): the peer saw no EOF, the socket was not closed"));
      }
    }
    co_return absl::OkStatus();
  }(*t.net, peer));
  EXPECT_TRUE(s.ok()) << s;
}

// FramedStream::close() under a stopped token: the goodbye is queued, the
// half-close (an ordinary op) is cancelled, and the socket is still closed.
TEST(StreamLifecycleTest, FramedCloseUnderAStoppedTokenClosesTheSocket) {
  TestLoop t;
  PlainListener peer;
  absl::Status s = t.run([](NetContext& net, PlainListener& peer) -> Task<absl::Status> {
    absl::StatusOr<Stream> c = co_await Stream::connect(net, peer.address);
    if (!c.ok()) co_return c.status();
    UniqueFd p = peer.accept();
    FramedStream<LengthPrefixCodec> framed(std::move(*c), LengthPrefixCodec());
    Task<absl::Status> closing = framed.close();
    closing.set_stop_token(stopped_token());
    (void)co_await std::move(closing);
    // The goodbye (8 bytes), then EOF.
    uint8_t goodbye[8];
    if (::recv(p.get(), goodbye, sizeof(goodbye), MSG_WAITALL) != sizeof(goodbye)) {
      co_return absl::InternalError("no goodbye");
    }
    if (!sees_eof(p.get())) {
      co_return absl::InternalError(
          "FramedStream::close() under a stopped token: the peer saw no EOF");
    }
    co_return absl::OkStatus();
  }(*t.net, peer));
  EXPECT_TRUE(s.ok()) << s;
}

// A connect cancelled by its stop token frees the fixed-file slot it took:
// the close of its failure path runs although the token is stopped.
TEST(StreamLifecycleTest, ConnectCancelledByItsStopTokenFreesItsSlot) {
  LoopOptions lo;
  lo.fixed_files = 4;
  TestLoop t(std::move(lo));
  ASSERT_TRUE(t.net->fixed_files());
  // Backlog 0 with one connection waiting: the kernel drops further SYNs,
  // so a connect there waits until it is cancelled.
  PlainListener full(/*backlog=*/0);
  UniqueFd filler(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(::connect(filler.get(), full.address.data(), full.address.size()), 0);
  PlainListener open;
  absl::Status s =
      t.run([](NetContext& net, PlainListener& full, PlainListener& open) -> Task<absl::Status> {
        for (int i = 0; i < 8; ++i) {
          std::stop_source stop;
          Task<absl::StatusOr<Stream>> connecting = Stream::connect(net, full.address);
          connecting.set_stop_token(stop.get_token());
          spawn(net.loop(), [](std::stop_source& s) -> Task<> {
            (void)co_await sleep_for(20ms);
            s.request_stop();
          }(stop));
          absl::StatusOr<Stream> c = co_await std::move(connecting);
          if (c.ok()) co_return absl::InternalError("connect to a full backlog succeeded");
          if (!absl::IsCancelled(c.status())) {
            co_return absl::InternalError(
                absl::StrCat("cancelled connect #", i, ": ", c.status().ToString()));
          }
        }
        absl::StatusOr<Stream> c = co_await Stream::connect(net, open.address);
        if (!c.ok()) co_return c.status();
        co_return co_await c->close();
      }(*t.net, full, open));
  EXPECT_TRUE(s.ok()) << s;
}

// ------------------------------------------------- a reader while the stream ends

struct ReadOutcome {
  bool done = false;
  absl::Status status;
};

Task<> read_once(Stream& s, ReadOutcome& out) {
  absl::StatusOr<RecvBuffer> buf = co_await s.read();
  out.status = !buf.ok()      ? buf.status()
               : buf->empty() ? absl::OutOfRangeError("EOF")
                              : absl::OkStatus();
  out.done = true;
}

// Waits (bounded) for the reader to finish.
Task<bool> reader_finished(const ReadOutcome& r) {
  for (int i = 0; i < 400 && !r.done; ++i) (void)co_await sleep_for(5ms);
  co_return r.done;
}

enum class Ending { kClose, kAbort, kDestroy };

class ReaderWhileEnding : public ::testing::TestWithParam<Ending> {};

// Task A waits in read() on a connection whose peer sends nothing; task B
// ends the stream: close(), abort() or destroying the Stream. A resumes
// with an error at once, and nothing touches freed memory (ASan).
TEST_P(ReaderWhileEnding, WakesTheReaderWithAnError) {
  TestLoop t;
  PlainListener peer;
  const Ending ending = GetParam();
  absl::Status s =
      t.run([](NetContext& net, PlainListener& peer, Ending ending) -> Task<absl::Status> {
        absl::StatusOr<Stream> c = co_await Stream::connect(net, peer.address);
        if (!c.ok()) co_return c.status();
        UniqueFd p = peer.accept();
        ReadOutcome r;
        spawn(net.loop(), read_once(*c, r));
        (void)co_await sleep_for(10ms);
        if (r.done) co_return absl::InternalError("read() returned with nothing sent");
        switch (ending) {
          case Ending::kClose:
            if (absl::Status st = co_await c->close(); !st.ok()) co_return st;
            break;
          case Ending::kAbort:
            c->abort(absl::AbortedError("aborted by the test"));
            break;
          case Ending::kDestroy: {
            Stream gone = std::move(*c);
            break;
          }
        }
        if (!(co_await reader_finished(r))) {
          co_return absl::DeadlineExceededError(
              "the reader waiting in read() was not woken when the stream ended");
        }
        if (r.status.ok()) co_return absl::InternalError("read() returned OK");
        if (ending == Ending::kAbort && !absl::IsAborted(r.status)) {
          co_return absl::InternalError("read() after abort: " + r.status.ToString());
        }
        if (ending == Ending::kDestroy && net.live_streams() != 0) {
          co_return absl::InternalError("the destroyed stream's state is still alive");
        }
        if (ending != Ending::kClose && c->valid()) (void)co_await c->close();
        if (!sees_eof(p.get())) co_return absl::InternalError("the peer saw no EOF");
        co_return absl::OkStatus();
      }(*t.net, peer, ending));
  EXPECT_TRUE(s.ok()) << s;
}

INSTANTIATE_TEST_SUITE_P(Endings, ReaderWhileEnding,
                         ::testing::Values(Ending::kClose, Ending::kAbort, Ending::kDestroy),
                         [](const ::testing::TestParamInfo<Ending>& info) {
                           switch (info.param) {
                             case Ending::kClose:
                               return "Close";
                             case Ending::kAbort:
                               return "Abort";
                             case Ending::kDestroy:
                               return "Destroy";
                           }
                           return "Unknown";
                         });

// The coroutine waiting in read() is destroyed (not resumed), then the
// stream is closed and destroyed: nothing is left pointing into the
// channel or the reader's frame (ASan).
TEST(StreamLifecycleTest, ReaderDestroyedWhileWaitingThenClose) {
  TestLoop t;
  PlainListener peer;
  absl::Status s = t.run([](NetContext& net, PlainListener& peer) -> Task<absl::Status> {
    absl::StatusOr<Stream> c = co_await Stream::connect(net, peer.address);
    if (!c.ok()) co_return c.status();
    UniqueFd p = peer.accept();
    ReadOutcome r;
    Task<> reader = read_once(*c, r);
    reader.handle().resume();  // runs until it waits in read()
    if (r.done) co_return absl::InternalError("read() returned with nothing sent");
    reader = Task<>();  // destroyed while waiting
    if (absl::Status st = co_await c->close(); !st.ok()) co_return st;
    if (!sees_eof(p.get())) co_return absl::InternalError("the peer saw no EOF");
    co_return absl::OkStatus();
  }(*t.net, peer));
  EXPECT_TRUE(s.ok()) << s;
}

// ------------------------------------------------- writers while the stream closes

// close() flushes, then closes the file. A write admitted in between (its
// writer resumed by the same completion that ended the flush, just before
// close() itself) can never be sent once the file is closed: it must fail,
// not wait forever (and keep the stream alive forever once released).
TEST(StreamLifecycleTest, AWriteLeftQueuedByCloseFailsInsteadOfHanging) {
  TestLoop t;
  PlainListener peer;
  absl::Status s = t.run([](NetContext& net, PlainListener& peer) -> Task<absl::Status> {
    absl::StatusOr<Stream> c = co_await Stream::connect(net, peer.address);
    if (!c.ok()) co_return c.status();
    UniqueFd p = peer.accept();
    std::thread drainer([fd = p.get()] {
      std::vector<uint8_t> buf(1 << 16);
      while (::recv(fd, buf.data(), buf.size(), 0) > 0) {
      }
    });
    ReadOutcome second;
    auto writer = [](Stream& s, ReadOutcome& out) -> Task<> {
      const std::vector<uint8_t> first = pattern(64 * 1024, 1);
      (void)co_await s.write(absl::MakeConstSpan(first));  // borrowed: done once sent
      // Resumed before close() (scheduled first): queued after its flush.
      const std::vector<uint8_t> big = pattern(8 << 20, 2);
      out.status = co_await s.write(absl::MakeConstSpan(big));
      out.done = true;
    };
    Task<> w = writer(*c, second);
    w.handle().resume();  // runs until its first write waits
    absl::Status closed = co_await c->close();
    bool finished = co_await reader_finished(second);
    *c = Stream();
    if (!finished) {
      // Unblock the test: the file is closed, nothing will wake the writer.
      w = Task<>();
    }
    ::shutdown(p.get(), SHUT_RDWR);
    drainer.join();
    if (!closed.ok()) co_return closed;
    if (!finished) {
      co_return absl::DeadlineExceededError(
          "a write queued when close() closed the file never completed");
    }
    if (second.status.ok()) co_return absl::InternalError("the unsent write returned OK");
    if (net.live_streams() != 0) co_return absl::InternalError("the closed stream is still alive");
    co_return absl::OkStatus();
  }(*t.net, peer));
  EXPECT_TRUE(s.ok()) << s;
}

// ------------------------------------------------- abort and zero copy

// Zero-copy sends to a peer that does not read: once its receive window is
// full, their bytes sit in our socket, still read from our memory. (A tiny
// peer receive buffer is avoided on purpose: on loopback it slows TCP to
// zero-window probes, and the notifications would take seconds.)
NetOptions zero_copy_options() {
  NetOptions o;
  o.zero_copy_threshold = 4096;
  return o;
}

// Copied writes in registered send buffers, sent with SEND_ZC: abort()
// must not give the buffers back to the arena before the notification (the
// next lease would overwrite bytes still queued in the socket); once the
// peer reads, the notifications come and every buffer goes back. The
// stream destroyed meanwhile stays alive until then (ASan).
TEST(StreamLifecycleTest, AbortKeepsZeroCopySendBuffersUntilTheNotification) {
  RegisteredLoop t(zero_copy_options());
  if (!t.net->zero_copy()) GTEST_SKIP() << "no IORING_OP_SEND_ZC";
  PlainListener peer;
  pool::BufferArena& arena = *t.arena;
  absl::Status s = t.run([](NetContext& net, PlainListener& peer,
                            pool::BufferArena& arena) -> Task<absl::Status> {
    // The receive ring may hold leases of the same arena: count from here.
    const uint64_t base = arena.stats().in_use;
    auto leased = [&arena, base] { return arena.stats().in_use - base; };
    absl::StatusOr<Stream> c = co_await Stream::connect(net, peer.address);
    if (!c.ok()) co_return c.status();
    UniqueFd p = peer.accept();
    const std::vector<uint8_t> chunk = pattern(6000, 5);
    absl::Status last;
    // Copied (each at least zero_copy_threshold): returns at once until the
    // queue is over max_queued_bytes; then it waits.
    auto writer = [](Stream& s, const std::vector<uint8_t>& chunk, absl::Status& last) -> Task<> {
      const absl::Span<const uint8_t> parts[1] = {absl::MakeConstSpan(chunk)};
      for (int i = 0; i < 200 && last.ok(); ++i) last = co_await s.write_copy(parts);
    };
    spawn(net.loop(), writer(*c, chunk, last));
    (void)co_await sleep_for(100ms);
    if (net.stats().zc_sends == 0) co_return absl::InternalError("no zero-copy send was made");
    if (leased() == 0) co_return absl::InternalError("no send buffer leased");
    c->abort(absl::AbortedError("aborted by the test"));
    (void)co_await sleep_for(20ms);
    if (last.ok()) co_return absl::InternalError("the waiting writer was not failed by abort()");
    if (leased() == 0) {
      co_return absl::InternalError(
          "abort() gave zero-copy send buffers back before their notification");
    }
    *c = Stream();  // released: the state waits for the notifications
    (void)co_await sleep_for(20ms);
    if (leased() == 0) {
      co_return absl::InternalError(
          "destroying the aborted stream gave its zero-copy send buffers back early");
    }
    // The peer reads: the bytes are acknowledged, the notifications come.
    for (int i = 0; i < 400 && leased() > 0; ++i) {
      drain_now(p.get());
      (void)co_await sleep_for(5ms);
    }
    if (leased() != 0) {
      co_return absl::InternalError(
          absl::StrCat(leased(), " send buffers still leased after the notifications"));
    }
    co_return absl::OkStatus();
  }(*t.net, peer, arena));
  EXPECT_TRUE(s.ok()) << s;
}

// A large write is sent from the writer's own memory (SEND_ZC): after
// abort() the write completes (with an error) only once the notification
// says the kernel let go of that memory, because the writer frees it then.
TEST(StreamLifecycleTest, AbortCompletesAZeroCopyWriteOnlyAfterTheNotification) {
  RegisteredLoop t(zero_copy_options());
  if (!t.net->zero_copy()) GTEST_SKIP() << "no IORING_OP_SEND_ZC";
  PlainListener peer;
  absl::Status s = t.run([](NetContext& net, PlainListener& peer) -> Task<absl::Status> {
    absl::StatusOr<Stream> c = co_await Stream::connect(net, peer.address);
    if (!c.ok()) co_return c.status();
    UniqueFd p = peer.accept();
    ReadOutcome w;
    auto writer = [](Stream& s, ReadOutcome& out) -> Task<> {
      const std::vector<uint8_t> big = pattern(1 << 20, 9);  // in this frame
      out.status = co_await s.write(absl::MakeConstSpan(big));
      out.done = true;
    };
    spawn(net.loop(), writer(*c, w));
    (void)co_await sleep_for(100ms);
    if (net.stats().zc_sends == 0) co_return absl::InternalError("no zero-copy send was made");
    if (w.done) co_return absl::InternalError("the write finished with the peer not reading");
    c->abort(absl::AbortedError("aborted by the test"));
    (void)co_await sleep_for(20ms);
    if (w.done) {
      co_return absl::InternalError(absl::StrCat(
          "abort() completed a zero-copy write before the notification (", w.status.ToString(),
          "): its memory is freed while the socket still sends from it"));
    }
    for (int i = 0; i < 400 && !w.done; ++i) {
      drain_now(p.get());
      (void)co_await sleep_for(5ms);
    }
    if (!w.done) co_return absl::DeadlineExceededError("the write never completed");
    if (w.status.ok()) co_return absl::InternalError("the aborted write returned OK");
    (void)co_await c->close();
    co_return absl::OkStatus();
  }(*t.net, peer));
  EXPECT_TRUE(s.ok()) << s;
}

}  // namespace
}  // namespace coring::net
