// FramedStream<Codec>: whole frames over a Stream, driven by a FrameCodec
// (frame_codec.h) — e.g. FramedStream<coring::sbmp::Codec>.
//
//   Task<> serve(FramedStream<sbmp::Codec> conn) {
//     for (;;) {
//       auto frame = co_await conn.read_frame();     // a view into the receive buffer
//       if (!frame.ok()) co_return;                   // EOF, goodbye, error: already closed
//       if (!(co_await conn.write_frame(*frame)).ok()) co_return;   // echo, payload not copied
//     }
//   }
//
// * read_frame(): the next application frame; a view valid until the next
//   read_frame(). The receive buffer(s) it points into stay held until then.
//   Protocol frames (keep-alives, handshakes) are handled by the codec and
//   their answers sent before the transport waits for more input.
// * write_frame(frame): encodes and queues the frame after whatever the
//   codec queued before it. The payload is not copied when it is larger than
//   NetOptions::copy_threshold: the write then completes once it is sent, so
//   echoing a frame needs no copy and is done before the next read_frame().
// * When reading must stop, read_frame() closes the connection itself and
//   returns why: a protocol error (the codec's goodbye is sent first), the
//   peer's goodbye, EOF (is_end_of_stream()), a reset, or an interrupt —
//   idle timeout (DeadlineExceeded) or server shutdown (Unavailable) — which
//   the codec turns into its goodbye. Later calls return the same status.
// * close(why): graceful close: codec.close(why) queues the goodbye after the
//   frames already queued, everything is sent, the sending side is shut down
//   (SHUT_WR), and input is read and dropped until the peer closes or
//   FramedOptions::close_timeout passes; then the socket is closed.
// * A FramedStream destroyed without close() still sends what was queued
//   (see Stream), without a goodbye.
#pragma once

#include <chrono>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "coring/core/buffer_ring.h"
#include "coring/core/task.h"
#include "coring/net/frame_codec.h"
#include "coring/net/stream.h"

namespace coring::net {

struct FramedOptions {
  // Bound on a graceful close: sending what is queued, the goodbye, and
  // waiting for the peer to close.
  std::chrono::nanoseconds close_timeout = std::chrono::seconds(2);
};

template <FrameCodec C>
class FramedStream {
 public:
  using Codec = C;
  using Frame = typename C::Frame;

  FramedStream(Stream stream, C codec, FramedOptions options = {})
      : stream_(std::move(stream)), codec_(std::move(codec)), options_(options) {}
  FramedStream(FramedStream&&) noexcept = default;
  FramedStream& operator=(FramedStream&&) noexcept = default;

  Task<absl::StatusOr<Frame>> read_frame();
  Task<absl::Status> write_frame(const Frame& frame);
  // Sends what the codec has queued (handshake, keep-alive answers).
  Task<absl::Status> flush_output();
  Task<absl::Status> close(absl::Status why = absl::OkStatus());

  // The status that ended reading (OK while the connection is open).
  const absl::Status& status() const noexcept { return terminal_; }
  bool closed() const noexcept { return closed_; }
  C& codec() noexcept { return codec_; }
  Stream& stream() noexcept { return stream_; }
  const FramedOptions& options() const noexcept { return options_; }

 private:
  bool has_output() const { return codec_.pending_output().size() > output_in_flight_; }
  // Ends reading with `why` and closes: gracefully (codec goodbye) unless
  // the connection is broken.
  Task<> end(absl::Status why, bool graceful);

  Stream stream_;
  C codec_;
  FramedOptions options_;
  RecvBuffer current_;
  absl::Span<const uint8_t> input_;
  absl::Status terminal_;
  size_t output_in_flight_ = 0;
  bool closed_ = false;
};

template <FrameCodec C>
Task<absl::StatusOr<typename C::Frame>> FramedStream<C>::read_frame() {
  if (!terminal_.ok()) co_return terminal_;
  if (closed_ || !stream_.valid()) co_return absl::FailedPreconditionError("read_frame: closed");
  for (;;) {
    if (!input_.empty()) {
      absl::StatusOr<std::optional<Frame>> decoded = codec_.decode(input_);
      if (!decoded.ok()) {
        // A protocol error (the codec queued its goodbye) or the peer's goodbye.
        co_await end(decoded.status(), /*graceful=*/true);
        co_return terminal_;
      }
      if (decoded->has_value()) co_return std::move(**decoded);
      continue;
    }
    if (has_output()) {
      if (absl::Status s = co_await flush_output(); !s.ok()) {
        co_await end(s, /*graceful=*/false);
        co_return terminal_;
      }
    }
    current_.reset();
    absl::StatusOr<RecvBuffer> buf = co_await stream_.read();
    if (!buf.ok()) {
      if (stream_.state()->last_read_interrupted()) {
        // Idle timeout or shutdown: say goodbye with the interrupt's reason.
        co_await end(buf.status(), /*graceful=*/true);
      } else if (absl::IsCancelled(buf.status())) {
        co_return buf.status();  // the caller's stop token; the stream stays usable
      } else {
        co_await end(buf.status(), /*graceful=*/false);
      }
      co_return terminal_;
    }
    if (buf->empty()) {
      co_await end(end_of_stream_error(), /*graceful=*/false);
      co_return terminal_;
    }
    current_ = std::move(*buf);
    input_ = current_.span();
  }
}

template <FrameCodec C>
Task<absl::Status> FramedStream<C>::write_frame(const Frame& frame) {
  if (closed_ || !stream_.valid()) {
    if (terminal_.ok()) co_return absl::FailedPreconditionError("write_frame: closed");
    co_return terminal_;
  }
  typename C::Encoded encoded;  // lives until the write is done
  if (absl::Status s = codec_.encode(frame, encoded); !s.ok()) co_return s;
  if (has_output()) {
    if (absl::Status s = co_await flush_output(); !s.ok()) co_return s;
  }
  absl::Span<const absl::Span<const uint8_t>> parts = encoded.parts();
  co_return co_await stream_.write(parts);
}

template <FrameCodec C>
Task<absl::Status> FramedStream<C>::flush_output() {
  // Always copied: the codec may move its output buffer once consumed.
  // Writes complete in order, so consuming in completion order is right.
  absl::Span<const uint8_t> pending = codec_.pending_output();
  if (pending.size() <= output_in_flight_) co_return absl::OkStatus();
  const absl::Span<const uint8_t> chunk = pending.subspan(output_in_flight_);
  output_in_flight_ += chunk.size();
  const absl::Span<const uint8_t> parts[1] = {chunk};
  absl::Status s = co_await stream_.write_copy(parts);
  output_in_flight_ -= chunk.size();
  codec_.consume_output(chunk.size());
  co_return s;
}

template <FrameCodec C>
Task<absl::Status> FramedStream<C>::close(absl::Status why) {
  // (No conditional expression inside co_await: GCC 12 destroys its
  // temporary twice.)
  if (!closed_) co_await end(std::move(why), /*graceful=*/true);
  co_return absl::OkStatus();
}

template <FrameCodec C>
Task<> FramedStream<C>::end(absl::Status why, bool graceful) {
  if (closed_) co_return;
  closed_ = true;
  // close() with OK leaves reading "ended" as FailedPrecondition.
  terminal_ = why.ok() ? absl::FailedPreconditionError("closed by this side") : why;
  input_ = {};
  current_.reset();
  if (!stream_.valid()) co_return;
  detail::StreamState* state = stream_.state();
  if (!graceful || !state->write_error().ok()) {
    co_await stream_.close();
    co_return;
  }
  // One deadline for the whole goodbye: flush, half-close, drain.
  state->arm_deadline(options_.close_timeout);
  codec_.close(why);
  (void)co_await flush_output();
  const absl::Status half_closed = co_await stream_.shutdown_write();
  if (half_closed.ok()) {
    for (;;) {  // until the peer closes, or the deadline aborts the stream
      absl::StatusOr<RecvBuffer> buf = co_await stream_.read();
      if (!buf.ok() || buf->empty()) break;
    }
  }
  co_await stream_.close();
}

}  // namespace coring::net
