// ByteStream: what FramedStream (framed_stream.h) needs from the transport
// under it. Stream (stream.h) is the plain one; a TLS stream (tls/, a
// library of its own so net/ never links OpenSSL) is another. The transport
// stays connected to one StreamState - the socket's - so that the owner of
// the connections (Server: idle and frame deadlines, shutdown) and the
// framing's bookkeeping (mid_frame, partial_bytes) work the same over both.
//
// Optional member, used when present:
//  * bool try_write_now(absl::Span<const absl::Span<const uint8_t>> parts,
//    absl::Status& out) - the write, done without suspending: true with its
//    result in `out`; false (nothing written) when it must wait.
#pragma once

#include <concepts>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "coring/core/task.h"
#include "coring/net/net_context.h"
#include "coring/net/stream_state.h"

namespace coring::net {

template <class S>
concept ByteStream = std::movable<S> &&
    requires(S& s, const S& cs, absl::Span<const absl::Span<const uint8_t>> parts,
             typename S::Buffer& buffer, absl::Status why) {
  // What read() delivers: a movable handle on received bytes (span(),
  // empty() at end of stream, reset() to let go of them early).
  typename S::Buffer;
  requires std::movable<typename S::Buffer>;
  { buffer.span() } -> std::convertible_to<absl::Span<const uint8_t>>;
  { buffer.empty() } -> std::convertible_to<bool>;
  buffer.reset();

  { cs.valid() } -> std::convertible_to<bool>;
  { cs.state() } -> std::same_as<detail::StreamState*>;
  { cs.context() } -> std::same_as<NetContext&>;
  // Awaitables: read() -> absl::StatusOr<Buffer>; write(parts) and
  // write_copy(parts) -> absl::Status, as Stream's.
  s.read();
  s.write(parts);
  s.write_copy(parts);
  { s.shutdown_write() } -> std::same_as<Task<absl::Status>>;
  { s.close() } -> std::same_as<Task<absl::Status>>;
  s.interrupt_read(why);
};

}  // namespace coring::net
