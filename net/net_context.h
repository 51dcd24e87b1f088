// NetContext: what net/ needs on one event-loop thread — the provided-buffer
// ring streams receive into, the per-connection defaults, the list of live
// streams (for idle sweeps and graceful shutdown) and counters.
//
//   auto loop = coring::EventLoop::create({});
//   auto net = coring::net::NetContext::create(**loop, {});   // on the loop's thread
//   auto stream = co_await coring::net::Stream::connect(**net, address);
//
// One per loop, created and used on the loop's thread; it must outlive every
// Stream made with it (streams still alive when it is destroyed are aborted).
// The receive buffers are carved from the loop's BufferArena when it has one
// with room, else from an arena the context owns (provided buffers need not be
// registered). The receive ring is shared by every connection of the loop: a
// connection holds a buffer only from the moment data arrives until the
// application lets go of it, so idle connections hold none.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "coring/core/buffer_ring.h"
#include "coring/core/event_loop.h"
#include "coring/pool/buffer_arena.h"

namespace coring::net {

namespace detail {
class StreamState;
}

struct NetOptions {
  // The loop's shared receive ring: count (a power of two) x size.
  uint32_t recv_buffers = 512;
  uint32_t recv_buffer_size = 16 * 1024;
  // Per connection: bytes queued for sending (copied, or borrowed from a
  // waiting writer) beyond which writers wait. Bounds what a peer that never
  // reads can make the server hold.
  size_t max_queued_bytes = 256 * 1024;
  // Writes up to this size are copied into the connection's send queue and
  // return at once, so that many small writes leave in one sendmsg; larger
  // writes are sent from the caller's memory (no copy) and wait until sent.
  size_t copy_threshold = 8 * 1024;
  // How long a stream destroyed with bytes still queued keeps sending them.
  std::chrono::milliseconds linger{2000};
};

// Counters of one context (one loop), read on its thread.
struct NetStats {
  uint64_t streams_opened = 0;
  uint64_t streams_closed = 0;
  uint64_t bytes_received = 0;
  uint64_t bytes_sent = 0;
  uint64_t sends = 0;            // sendmsg operations completed
  uint64_t copied_writes = 0;    // writes copied into a send queue
  uint64_t borrowed_writes = 0;  // writes sent from the caller's memory
  uint64_t writer_waits = 0;     // writers that waited for room (backpressure)
  uint64_t aborts = 0;           // streams torn down with bytes or writers pending
  uint64_t lingered = 0;         // streams destroyed with bytes still queued

  std::string to_string() const;
};

class NetContext {
 public:
  static absl::StatusOr<std::unique_ptr<NetContext>> create(EventLoop& loop,
                                                            NetOptions options = {});
  ~NetContext();
  NetContext(const NetContext&) = delete;
  NetContext& operator=(const NetContext&) = delete;

  EventLoop& loop() noexcept { return loop_; }
  BufferRing& buffers() noexcept { return *ring_; }
  const NetOptions& options() const noexcept { return options_; }
  NetStats& stats() noexcept { return stats_; }
  // Streams open on this context (including lingering ones).
  size_t live_streams() const noexcept { return live_; }
  // True when the loop has a fixed-file table: streams use fixed files.
  bool fixed_files() noexcept { return loop_.fixed_files() != nullptr; }

  // Calls fn(detail::StreamState&) for every live stream. `fn` may interrupt
  // or abort streams, and kill() the stream it is given. (Defined in
  // stream_state.h.)
  template <class Fn>
  void for_each_stream(Fn&& fn);

 private:
  friend class detail::StreamState;
  NetContext(EventLoop& loop, NetOptions options) : loop_(loop), options_(options) {}
  void link(detail::StreamState* s) noexcept;
  void unlink(detail::StreamState* s) noexcept;

  EventLoop& loop_;
  NetOptions options_;
  std::optional<pool::BufferArena> own_arena_;
  std::unique_ptr<BufferRing> ring_;
  NetStats stats_;
  detail::StreamState* head_ = nullptr;
  size_t live_ = 0;
};

}  // namespace coring::net
