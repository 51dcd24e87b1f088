// Stream: one connected byte stream (TCP or Unix) on an event loop, usually
// a slot of the ring's fixed-file table. Reads come from the loop's shared
// provided-buffer ring through multishot recv; writes go through a bounded,
// ordered send queue with one send in flight: one send from a registered
// buffer for coalesced small writes, SEND_ZC for large ones, sendmsg to
// gather mixed ones (see stream_state.h).
//
//   Task<> echo(Stream s) {
//     for (;;) {
//       absl::StatusOr<RecvBuffer> buf = co_await s.read();
//       if (!buf.ok() || buf->empty()) break;            // error or EOF
//       if (!(co_await s.write(buf->span())).ok()) break; // ordered, short writes completed
//     }                                                   // buffer back to the ring here
//     co_await s.close();                                 // queued bytes first, then close
//   }
//   absl::StatusOr<Stream> c = co_await Stream::connect(net, address, {.timeout = 2s});
//
// * read(): the next chunk received, as a RecvBuffer that goes back to the
//   ring when released; empty at EOF. An interrupt (idle timeout, server
//   shutdown: interrupt_read()) is returned as its status once data already
//   received has been delivered. A read waiting when another task ends the
//   stream returns at once: FailedPrecondition after close(), Cancelled when
//   the Stream is destroyed, the reason after abort().
// * write(bytes) / write(parts): ordered; completes once the bytes are
//   copied into the send queue (up to NetOptions::copy_threshold) or, for
//   larger writes, once they are handed to the kernel (the caller's memory is
//   sent without a copy) - for a zero-copy send (NetOptions::
//   zero_copy_threshold) once the kernel's notification says it let go. Waits while the queue is
//   over NetOptions::max_queued_bytes (backpressure). Several writers may write at once; their
//   bytes never interleave. abort() fails writes at once, except one whose
//   bytes a zero-copy send still reads: it fails when the notification comes.
//   Do not destroy a coroutine while its write waits: a zero-copy send may
//   still read the bytes from its frame.
// * flush(): waits until every byte queued before it was sent.
// * shutdown_write(): flush, then shutdown(SHUT_WR) (half-close).
// * close(): flush (bounded by NetOptions::linger), then close the file.
//   Destroying a Stream without close() still sends what is queued (lingering
//   in the background, bounded by NetOptions::linger) and then closes.
// TCP_NODELAY is on by default (inherited from the listener for accepted
// streams, set on the socket for connected ones).
//
// A Stream belongs to the loop (and NetContext) it was made on; use it only
// on that thread, and destroy it before the context.
#pragma once

#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <stop_token>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "coring/core/buffer_ring.h"
#include "coring/core/operation.h"
#include "coring/core/task.h"
#include "coring/net/listen_socket.h"
#include "coring/net/net_context.h"
#include "coring/net/socket_address.h"
#include "coring/net/stream_state.h"

namespace coring::net {

struct ConnectOptions {
  std::chrono::nanoseconds timeout = std::chrono::seconds(5);
  SocketOptions socket = {};
};

class Stream {
 public:
  // What read() delivers (ByteStream, byte_stream.h).
  using Buffer = RecvBuffer;

  Stream() = default;
  Stream(Stream&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
  Stream& operator=(Stream&& other) noexcept {
    if (this != &other) {
      reset();
      state_ = std::exchange(other.state_, nullptr);
    }
    return *this;
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream() { reset(); }

  // Takes ownership of a connected socket: a fixed-file slot
  // (FileRef::fixed_index) or a plain fd.
  static Stream adopt(NetContext& ctx, FileRef file);
  // Connects to `address`; DeadlineExceeded after options.timeout.
  static Task<absl::StatusOr<Stream>> connect(NetContext& ctx, SocketAddress address,
                                              ConnectOptions options = {});

  bool valid() const noexcept { return state_ != nullptr; }
  explicit operator bool() const noexcept { return valid(); }
  FileRef file() const noexcept { return state_->file(); }
  NetContext& context() const noexcept { return state_->context(); }

  class ReadAwaiter;
  class WriteAwaiter;
  class WriteBufferAwaiter;

  ReadAwaiter read() noexcept;
  WriteAwaiter write(absl::Span<const uint8_t> bytes) noexcept;
  // Writes a received buffer's bytes, handing the buffer over: the send
  // queue sends from it and gives it back to the ring once sent, so the
  // write returns at once without a copy (an echo's next reads and writes
  // then leave in one send). A buffer up to NetOptions::copy_threshold
  // while other bytes are queued or being sent (it is copied to coalesce
  // with them), or one the shared ring cannot spare (see stream_state.h),
  // is written as write(buf.span()) instead.
  WriteBufferAwaiter write(RecvBuffer&& buf) noexcept;
  // The parts leave in order, as one write; `parts` must stay valid until done.
  WriteAwaiter write(absl::Span<const absl::Span<const uint8_t>> parts) noexcept;
  // As write(parts), but the queue takes `owner` over (the memory `parts`
  // point into, or some of them): parts inside it are sent from it without a
  // copy, the rest copied, and the write completes once queued, without
  // waiting for the send. The buffer stays readable until the next such
  // write or release_taken(); once also sent, it is kept for spare_buffer().
  // A write that has to wait for room holds the buffer in its awaiter, and
  // one that fails frees it with the awaiter.
  WriteAwaiter write(absl::Span<const absl::Span<const uint8_t>> parts,
                     std::vector<uint8_t>&& owner) noexcept;
  // The bytes of the last write(parts, owner) are no longer looked at.
  void release_taken() noexcept;
  // A buffer given to write(parts, owner) on a stream of this loop, since
  // sent and released, its size and capacity as they were (such writes reuse
  // the same few buffers); empty if none is kept. The loop keeps up to
  // NetOptions::spare_buffer_bytes of them.
  std::vector<uint8_t> spare_buffer() noexcept;
  // Hands the send queue `buf`, the buffer just read (left empty; its bytes
  // stay readable), so that write_shared() sends what lies in it without a
  // copy. The reader keeps it until release_shared(); it goes back to the
  // ring once that happened and its bytes written are sent. False, `buf`
  // unchanged, when the ring cannot spare it (the bounds of write(RecvBuffer&&)).
  bool share_received(RecvBuffer& buf) noexcept {
    return state_ != nullptr && state_->share_received(buf);
  }
  void release_shared() noexcept {
    if (state_ != nullptr) state_->release_shared();
  }
  // The reader goes on to its next buffer while still reading the end of
  // this one (StreamState::keep_shared_as_previous()): the shared buffer,
  // or `buf` when it was not shared, stays readable and writes from it are
  // sent without a copy, until release_previous().
  void keep_shared_as_previous() noexcept {
    if (state_ != nullptr) state_->keep_shared_as_previous();
  }
  bool share_previous(RecvBuffer& buf) noexcept {
    return state_ != nullptr && state_->share_previous(buf);
  }
  void release_previous() noexcept {
    if (state_ != nullptr) state_->release_previous();
  }
  // As write(parts), but parts inside the buffer share_received() took are
  // sent from it - as is a small part equal to the bytes just before the
  // next part there (a header encoded as received) - and the rest copied;
  // completes once queued.
  WriteAwaiter write_shared(absl::Span<const absl::Span<const uint8_t>> parts) noexcept;
  // As write(parts), always copying (returns without waiting for the send).
  WriteAwaiter write_copy(absl::Span<const absl::Span<const uint8_t>> parts) noexcept;
  WriteAwaiter flush() noexcept;

  Task<absl::Status> shutdown_write();
  Task<absl::Status> close();

  // Grows the kernel's receive buffer of this (TCP) socket to hold at least
  // `bytes` received and not yet read, leaving the kernel's autotuning on:
  // SO_RCVBUF would turn it off. Autotuning grows the buffer only for a
  // reader that takes more than the last measured window's worth within
  // one round trip; a reader that takes one large message per recv while
  // the peer pipelines them never does, and the peer then waits for a
  // window update per message (FramedOptions::pipelined_receive_buffer).
  // Through SO_RCVLOWAT, raised to `bytes` and set back to 1 (Linux grows
  // the buffer to fit a low-water mark, and never shrinks it), so it leaves
  // SO_RCVLOWAT at 1, its default; the kernel caps `bytes` at half of
  // net.ipv4.tcp_rmem's maximum. A fixed file needs Linux 6.7 (io_uring
  // setsockopt); a plain fd works on any kernel. No effect on a Unix socket.
  // Counted in NetStats::receive_buffers_reserved.
  Task<absl::Status> reserve_receive_buffer(int bytes);

  // Wakes the reader with `why` (idle timeout, shutdown); see read().
  void interrupt_read(absl::Status why) noexcept { state_->interrupt_read(std::move(why)); }
  // Tears the connection down at once: writers and the reader fail with `why`.
  void abort(absl::Status why) noexcept { state_->abort(std::move(why)); }
  size_t queued_bytes() const noexcept { return state_->queued_bytes(); }
  detail::StreamState* state() const noexcept { return state_; }

 private:
  explicit Stream(detail::StreamState* state) noexcept : state_(state) {}
  void reset() noexcept {
    if (state_ != nullptr) std::exchange(state_, nullptr)->release();
  }

  detail::StreamState* state_ = nullptr;
};

namespace detail {
// Stream::reserve_receive_buffer()'s work on `file` alone: it touches no
// stream or context, so that it can run detached (FramedStream, without a
// co_await in its reader's frame, which every connection keeps).
Task<absl::Status> raise_receive_buffer(FileRef file, int bytes);
Task<> raise_receive_buffer_detached(FileRef file, int bytes);
}  // namespace detail

class Stream::ReadAwaiter {
 public:
  explicit ReadAwaiter(detail::StreamState* s) noexcept : state_(s) {
    if (RecvStream* channel = s->channel()) next_.emplace(channel);
  }
  ReadAwaiter(const ReadAwaiter&) = delete;
  // The awaiting coroutine destroyed while suspended here: its Next lets go
  // of the channel first, then the stream learns the reader is gone.
  ~ReadAwaiter() {
    if (waiting_) {
      next_.reset();
      state_->reader_gone();
    }
  }

  bool await_ready() const noexcept { return state_->read_ready(next_); }
  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> h) {
    state_->set_reading(true);
    waiting_ = next_->await_suspend(h);
    if (!waiting_) state_->set_reading(false);
    return waiting_;
  }
  absl::StatusOr<RecvBuffer> await_resume() noexcept {
    return state_->finish_read(next_, std::exchange(waiting_, false));
  }

 private:
  detail::StreamState* state_;
  std::optional<RecvStream::Next> next_;
  bool waiting_ = false;  // suspended on the channel, Next not resumed yet
};

class Stream::WriteAwaiter {
 public:
  WriteAwaiter(detail::StreamState* s, absl::Span<const absl::Span<const uint8_t>> parts,
               detail::Writer::Kind kind) noexcept
      : state_(s) {
    writer_.parts = parts;
    writer_.kind = kind;
  }
  WriteAwaiter(detail::StreamState* s, absl::Span<const uint8_t> bytes) noexcept
      : state_(s), single_(bytes) {
    writer_.parts = absl::MakeConstSpan(&single_, 1);
  }
  // traded: `owner` is a frame buffer FramedStream traded (Writer::traded).
  WriteAwaiter(detail::StreamState* s, absl::Span<const absl::Span<const uint8_t>> parts,
               std::vector<uint8_t>&& owner, bool traded = false) noexcept
      : state_(s), taken_(std::move(owner)) {
    writer_.parts = parts;
    writer_.take = &taken_;
    writer_.traded = traded;
  }
  WriteAwaiter(detail::StreamState* s, RecvBuffer&& buf) noexcept
      : state_(s), owned_(std::move(buf)), single_(owned_.span()) {
    writer_.parts = absl::MakeConstSpan(&single_, 1);
    writer_.adopt = &owned_;
  }
  WriteAwaiter(const WriteAwaiter&) = delete;
  ~WriteAwaiter() {
    using Phase = detail::Writer::Phase;
    if (writer_.phase == Phase::kWaitingRoom || writer_.phase == Phase::kQueued) {
      state_->forget_writer(writer_);
    }
  }

  bool await_ready() noexcept { return state_->begin_write(writer_); }
  void await_suspend(std::coroutine_handle<> h) noexcept { writer_.handle = h; }
  absl::Status await_resume() noexcept { return std::move(writer_.status); }

 private:
  detail::StreamState* state_;
  RecvBuffer owned_;  // write(RecvBuffer&&): until the queue adopts it or the write is done
  absl::Span<const uint8_t> single_;
  std::vector<uint8_t> taken_;  // write(parts, owner): until the queue takes it over
  detail::Writer writer_;
};

// write(RecvBuffer&&): done in await_ready() with no Writer when the send
// queue takes the buffer (or, small, a copy) at once, as an echo's writes
// are (StreamState::write_received_now()); else a WriteAwaiter, made then.
// Until then its memory is not touched: with thousands of connections a
// message finds its coroutine frame out of the cache, and each line of it
// the write touches is a miss.
class Stream::WriteBufferAwaiter {
 public:
  WriteBufferAwaiter(detail::StreamState* s, RecvBuffer&& buf) noexcept
      : state_(s), buf_(std::move(buf)) {}
  WriteBufferAwaiter(const WriteBufferAwaiter&) = delete;
  ~WriteBufferAwaiter() {
    if (slow_) std::destroy_at(&write_);
  }

  bool await_ready() noexcept {
    if (state_->write_received_now(buf_)) return true;
    std::construct_at(&write_, state_, std::move(buf_));
    slow_ = true;
    return write_.await_ready();
  }
  void await_suspend(std::coroutine_handle<> h) noexcept { write_.await_suspend(h); }
  absl::Status await_resume() noexcept { return slow_ ? write_.await_resume() : absl::OkStatus(); }

 private:
  detail::StreamState* state_;
  RecvBuffer buf_;  // until queued (adopted: left empty; copied: back to the ring with this)
  bool slow_ = false;
  union {
    WriteAwaiter write_;  // made by await_ready() when the write is not done at once
  };
};

inline Stream::ReadAwaiter Stream::read() noexcept { return ReadAwaiter(state_); }
inline Stream::WriteAwaiter Stream::write(absl::Span<const uint8_t> bytes) noexcept {
  return WriteAwaiter(state_, bytes);
}
inline Stream::WriteBufferAwaiter Stream::write(RecvBuffer&& buf) noexcept {
  return WriteBufferAwaiter(state_, std::move(buf));
}
inline Stream::WriteAwaiter Stream::write(
    absl::Span<const absl::Span<const uint8_t>> parts) noexcept {
  return WriteAwaiter(state_, parts, detail::Writer::Kind::kAuto);
}
inline Stream::WriteAwaiter Stream::write(absl::Span<const absl::Span<const uint8_t>> parts,
                                          std::vector<uint8_t>&& owner) noexcept {
  return WriteAwaiter(state_, parts, std::move(owner));
}
inline void Stream::release_taken() noexcept {
  if (state_ != nullptr) state_->release_taken();
}
inline std::vector<uint8_t> Stream::spare_buffer() noexcept {
  return state_ != nullptr ? state_->spare_buffer() : std::vector<uint8_t>();
}
inline Stream::WriteAwaiter Stream::write_copy(
    absl::Span<const absl::Span<const uint8_t>> parts) noexcept {
  return WriteAwaiter(state_, parts, detail::Writer::Kind::kCopy);
}
inline Stream::WriteAwaiter Stream::write_shared(
    absl::Span<const absl::Span<const uint8_t>> parts) noexcept {
  return WriteAwaiter(state_, parts, detail::Writer::Kind::kShared);
}
inline Stream::WriteAwaiter Stream::flush() noexcept {
  return WriteAwaiter(state_, {}, detail::Writer::Kind::kBarrier);
}

// True for the status read paths return when the peer closed its side.
bool is_end_of_stream(const absl::Status& status);
absl::Status end_of_stream_error();

}  // namespace coring::net
