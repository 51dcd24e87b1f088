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

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

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
  // 1024 buffers, as the raw liburing baseline (bench/baselines): with
  // hundreds of connections each pipelining, 512 ran the ring low (where
  // paused streams copy their queue out) most of the time. 16 KiB and 512
  // bytes each, so that a message of 16 KiB with its framing - an SBMP
  // header and extensions, an HTTP/2 frame header, a TLS record's overhead -
  // arrives in one buffer and is read in place, not split across two and
  // reassembled by a copy. Under light load only a window of them (64 and
  // up, core/buffer_ring.h) takes turns in the kernel's ring, so that recvs
  // write into memory still in the cache.
  uint32_t recv_buffers = 1024;
  uint32_t recv_buffer_size = 16 * 1024 + 512;
  // How far the ring may grow, in blocks of recv_buffers, while honest load
  // keeps it dry (a power of two; at most recv_buffers: it does not grow).
  // It gives the blocks back once a second passes in which it did not need
  // them (core/buffer_ring.h). Each grown block of 1024 costs 16.5 MiB of
  // resident memory while it lasts. Off by default: measured with loopback's
  // receive steered as a NIC's would be (bench/run.sh --steer-rx --cc=reno,
  // side by side, medians of 4-5 per-round ratios of server CPU per
  // message), a ring allowed to grow to 4096 cost the raw echo 1.09-1.27x
  // what the fixed ring of 1024 did in all four pipelined cells of 256 and
  // 1000 connections x 16 and 64 KiB (every round), and 2048 cost it
  // 1.18-1.23x at 64 KiB. The SBMP echo: 1.14x at 256 x 16 KiB pipelined
  // (every round), level elsewhere, 0.90x only in ping-pong at 1000 x 16
  // KiB. Ping-pong of the raw echo was level. (Unsteered, growing to 4096
  // had measured 0.86x at 1000 x 16 KiB pipelined. Likely why, not
  // measured piece by piece: a bigger ring makes bigger batches, a bigger
  // working set, and sends from grown buffers, which are not registered.)
  // Worth trying where many connections stream large messages at once and
  // memory is cheap.
  uint32_t max_recv_buffers = 1024;
  // Receive-side backpressure, per connection: received chunks (buffers of
  // the shared ring) a connection may hold unread before the loop stops
  // taking its bytes (2 while the ring is under a quarter free). The peer is
  // then pushed back by TCP flow control alone until the application reads;
  // a connection whose reader stopped reading gives its chunks back to the
  // ring once others starve, so a peer that sends without reading cannot
  // starve the others of the ring (core/recv_stream.h). At least 1. It
  // also bounds what a stuck reader's stream copies out of the ring (share
  // x buffer size per connection). Measured (bench/run.sh, echo_server, 3
  // interleaved rounds, server CPU per message, 32 against 8, when this
  // share was send_share too): 16 in flight, 256 connections x 16/64 KiB
  // 0.92/0.90, but 1 connection x 16 KiB 1.26 (1.17-1.28) and 64 KiB at a
  // fixed rate 1.05-1.10. With --steer-rx (each side pays for its own
  // receiving, as behind a NIC) 16 against 8 read 0.83-0.99 in five
  // pipelined cells (1 and 16 connections, 256 x 16 KiB) but 1.06 at 256 x
  // 64 KiB: a larger share makes fewer, larger sends, which loopback's
  // accounting does not reward.
  uint32_t recv_share = 8;
  // Received buffers one connection's send queue may hold (Stream::write(
  // RecvBuffer&&) adopts them and sends from them, and the reader's shared
  // buffer, share_received()); the send queues of a loop together hold at
  // most three quarters of the ring whatever this says. Past it, a received
  // buffer written is copied if small (copy_threshold), else borrowed: the
  // writer waits for its send, and a peer that does not read is pushed back
  // by TCP flow control. 0: never (every such write copies or waits).
  // An echo pipelining large messages has more than 8 of its buffers
  // waiting for their send at once: with 8 here (recv_share, as it was), a
  // tenth of a raw echo's writes of 16 x 64 KiB in flight on 16 connections
  // waited for their send, and it made twice as many sends. Measured
  // (bench/run.sh, 16 in flight, server CPU per message, 32 against 8, side
  // by side, medians of per-round ratios): raw echo (10 rounds) 1, 16, 256
  // connections x 16 KiB 1.02, 0.94, 0.98, x 64 KiB 0.92, 0.85, 0.95; SBMP
  // echo (7 rounds) x 16 KiB 1.00, 0.95, 0.84, x 64 KiB 1.04, 0.98, 0.99.
  // The price: 64 peers that never read make a raw echo server touch more
  // of its ring (RSS +19-39 MiB against +8-17, hostile/fairness_test.cc),
  // still within the ring and NetOptions::max_queued_bytes.
  uint32_t send_share = 32;
  // Per connection: bytes queued for sending (copied, or borrowed from a
  // waiting writer) beyond which writers wait. Bounds what a peer that never
  // reads can make the server hold.
  size_t max_queued_bytes = 256 * 1024;
  // The same bound for FramedStream's writes of a large frame's buffer,
  // reassembled or received in place, which the send queue takes over in a
  // trade (Stream::write(parts, std::vector&&) otherwise keeps to
  // max_queued_bytes). Those buffers are bounded for the whole loop already
  // (spare_buffer_bytes: past it FramedStream borrows instead, and the
  // writer waits), so this one only shares that among the connections.
  // It is larger than max_queued_bytes so that an echo of large pipelined
  // frames, which receives one frame per recv, sends several per send: with
  // 256 KiB, two 64 KiB frames a send, and each send's last TCP segment
  // carried a frame's few last bytes alone.
  size_t max_queued_traded_bytes = 2 * 1024 * 1024;
  // Writes up to this size are copied into the connection's send queue and
  // return at once, so that many small writes leave in one send; larger
  // writes are sent from the caller's memory (no copy) and wait until sent.
  size_t copy_threshold = 8 * 1024;
  // Copied writes go into registered buffers leased from the loop's
  // BufferArena (when it has one registered), so that the coalesced bytes
  // leave with one IORING_OP_SEND from one buffer; false (or no registered
  // arena, or none free): slab-pool chunks and sendmsg.
  bool registered_send_buffers = true;
  // A send of at least this many bytes from one buffer uses IORING_OP_SEND_ZC
  // (from a registered buffer with IORING_RECVSEND_FIXED_BUF: an echoed
  // payload still in its receive buffer, a large copied run); the buffer is
  // held until the notification CQE. SIZE_MAX: never. Ignored when the ring
  // lacks SEND_ZC.
  //
  // Measured by bench/net/send_bench.cc (one loopback TCP connection, one op
  // in flight, median real time per message in us, 5 repetitions, kernel
  // 6.18, 2 shared vCPUs, noisy):
  //   size     sendmsg  write_fixed  send_zc  send_zc_fixed
  //   1 KiB      5.4       5.6        51.5      12.7
  //   16 KiB     7.7       7.9        54.3      14.6
  //   64 KiB    28.9      23.3        25.7      65.0
  //   256 KiB   71.3      71.5        61.7      63.4
  //   1 MiB    215.3     216.4       337.2     203.2
  // (A later run with plain SEND added, the op for one registered buffer:
  // 1/16/64 KiB send 4.9/8.7/34.9, write_fixed 5.2/9.6/37.7, sendmsg
  // 4.8/9.2/33.0.)
  // On loopback SEND_ZC always copies (every notification carries
  // IORING_NOTIF_USAGE_ZC_COPIED, counted in NetStats::zc_copied), and its
  // notification comes only when the peer ACKs the data, so below ~64 KiB it
  // is pure overhead (tens of us, up to a delayed ACK for a writer that waits
  // for it); from 64-256 KiB it is level with or ahead of the copying ops
  // (one op, no short-send continuation). Default: 128 KiB, inside that
  // crossover. On a real NIC the copy it saves is the gain and the crossover
  // is lower: tune it per deployment (SIZE_MAX turns zero copy off).
  size_t zero_copy_threshold = 128 * 1024;
  // Memory budget of this loop for partially received frames (what codecs
  // hold to reassemble frames split across reads). A connection whose
  // partial frame would take the loop past it is closed with the codec's
  // goodbye for ResourceExhausted (SBMP: GOAWAY(OVERLOADED)), so a crowd of
  // peers each parking most of a large frame cannot grow memory without
  // bound. 0: no budget.
  size_t max_partial_frame_bytes = 64 * 1024 * 1024;
  // Heap buffers that send queues took over (Stream::write(parts, owner):
  // FramedStream's echo of a reassembled frame) and have sent are kept for
  // the next hand-over on any of the loop's streams, so that a stream of
  // such writes allocates nothing. FramedStream trades a codec's buffer only
  // while the loop's traded buffers (queued, and kept) stay within this
  // many bytes, or a kept one is free; past that it copies or borrows as
  // without trading. Shared by the loop rather than kept per connection:
  // what is held follows the bytes in flight, not every connection's peak.
  // The same pool holds FramedStream codecs' reassembly buffers of large
  // frames between frames (take_frame_buffer()); one the pool has no room
  // for stays with its connection.
  size_t spare_buffer_bytes = 8 * 1024 * 1024;
  // How long a stream destroyed with bytes still queued keeps sending them.
  std::chrono::milliseconds linger{2000};
};

// Counters of one context (one loop), read on its thread.
struct NetStats {
  uint64_t streams_opened = 0;
  uint64_t streams_closed = 0;
  uint64_t bytes_received = 0;
  uint64_t bytes_sent = 0;
  uint64_t sends = 0;                   // send operations completed (all kinds)
  uint64_t sendmsg_sends = 0;           // IORING_OP_SENDMSG submitted
  uint64_t fixed_sends = 0;             // from one registered buffer (SEND or SEND_ZC fixed)
  uint64_t zc_sends = 0;                // IORING_OP_SEND_ZC submitted (fixed or not)
  uint64_t zc_copied = 0;               // SEND_ZC notifications saying the kernel copied anyway
  uint64_t silent_sends_full = 0;       // silent sends (EventLoop::expect_silent()) that found the
                                        // socket's buffer full: the rest went in one that waits
  uint64_t send_buffer_fallbacks = 0;   // copied writes that found no free registered buffer
  uint64_t copied_writes = 0;           // writes copied into a send queue
  uint64_t borrowed_writes = 0;         // writes sent from the caller's memory
  uint64_t adopted_writes = 0;          // received buffers the send queue took over (no copy)
  uint64_t taken_writes = 0;            // heap buffers the send queue took over (no copy)
  uint64_t shared_writes = 0;           // writes sent from the reader's receive buffer (no copy)
  uint64_t writer_waits = 0;            // writers that waited for room (backpressure)
  uint64_t aborts = 0;                  // streams torn down with bytes or writers pending
  uint64_t lingered = 0;                // streams destroyed with bytes still queued
  uint64_t partial_frame_refusals = 0;  // closed: their partial frame exceeded the budget
  uint64_t partial_frame_peak = 0;      // bytes: the most partial_frame_bytes() held at once
  uint64_t drain_overruns = 0;  // sent over close_drain_bytes after the goodbye (left unread)
  uint64_t receive_buffers_reserved = 0;  // asked for (Stream::reserve_receive_buffer(),
                                          // FramedOptions::pipelined_receive_buffer)

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
  // Bytes held for partially received frames by this loop's streams, and
  // whether `more` on top of them fits NetOptions::max_partial_frame_bytes.
  // A frame's buffer counts until its reader next waits for input: a
  // handler holding the frame it read (stuck echoing it to a peer that does
  // not read) holds its share of the budget.
  size_t partial_frame_bytes() const noexcept { return partial_frame_bytes_; }
  bool partial_frame_fits(size_t more) const noexcept {
    return options_.max_partial_frame_bytes == 0 ||
           partial_frame_bytes_ + more <= options_.max_partial_frame_bytes;
  }
  // Receive buffers the streams' send queues hold (Stream::write(
  // RecvBuffer&&)): at most three quarters of the ring.
  uint32_t adopted_buffers() const noexcept { return adopted_; }
  // Receive buffers readers keep while waiting for the rest of a frame that
  // starts in them (FramedOptions::split_payloads): at most half the ring,
  // so that peers that stop mid-frame cannot take it from the others (a
  // quarter cost 1,000 pipelining connections more copies than splitting
  // saved). False: over that bound (the reader copies instead).
  bool hold_split_buffer() noexcept {
    if (split_held_ >= ring_->count() / 2) return false;
    ++split_held_;
    return true;
  }
  void release_split_buffer() noexcept { --split_held_; }
  uint32_t split_buffers_held() const noexcept { return split_held_; }
  // Sets stream `s`'s share of partial_frame_bytes() (FramedStream).
  void account_partial_frame(detail::StreamState& s, size_t bytes) noexcept;
  // True when the loop has a fixed-file table: streams use fixed files.
  bool fixed_files() noexcept { return loop_.fixed_files() != nullptr; }
  // The loop's registered arena, which copied writes lease send buffers
  // from and borrowed writes are located in (nullptr: none, or disabled).
  pool::BufferArena* send_arena() noexcept { return send_arena_; }
  // Whether sends at or above zero_copy_threshold use SEND_ZC (probed; turned
  // off for good if the kernel refuses the op's flags).
  bool zero_copy() const noexcept { return zero_copy_; }
  void disable_zero_copy() noexcept { zero_copy_ = false; }

  // A buffer kept by keep_spare_buffer() (size and capacity as they were),
  // or an empty one.
  std::vector<uint8_t> take_spare_buffer() noexcept;
  // Keeps a sent buffer for take_spare_buffer() while they fit
  // NetOptions::spare_buffer_bytes; otherwise leaves it to the caller, who
  // frees it (it no longer counts as traded).
  void keep_spare_buffer(std::vector<uint8_t>&& bytes) noexcept;
  // For a trade (FramedStream::exchange_frame_buffer()): a kept buffer, or
  // an empty one while the traded bytes have room; nullopt: do not trade.
  std::optional<std::vector<uint8_t>> spare_for_trade() noexcept;
  // For codecs' reassembly buffers (FramedStream gives its codec these as
  // its pool, when the codec takes one): the most recently kept buffer of
  // at least `want` bytes among the last few, else the last; an empty one
  // when none is kept. A buffer taken no longer counts as traded.
  std::vector<uint8_t> take_frame_buffer(size_t want) noexcept;
  // Keeps a codec's reassembly buffer, between its frames, for any of the
  // loop's codecs while the kept buffers fit NetOptions::spare_buffer_bytes
  // (it then counts as traded); false, `bytes` untouched, otherwise.
  bool keep_frame_buffer(std::vector<uint8_t>& bytes) noexcept;
  // A trade gave the send queue `taken` bytes of buffer and the codec
  // `given` (the spare_for_trade() buffer).
  void traded(size_t taken, size_t given) noexcept {
    traded_bytes_ += taken;
    drop_traded(given);
  }

  // Calls fn(detail::StreamState&) for every live stream. `fn` may interrupt
  // or abort streams, and kill() the stream it is given. (Defined in
  // stream_state.h.)
  template <class Fn>
  void for_each_stream(Fn&& fn);

 private:
  friend class detail::StreamState;
  NetContext(EventLoop& loop, NetOptions options) : loop_(loop), options_(options) {}
  void link(detail::StreamState* s) noexcept;
  void drop_traded(size_t capacity) noexcept { traded_bytes_ -= std::min(traded_bytes_, capacity); }
  void unlink(detail::StreamState* s) noexcept;

  EventLoop& loop_;
  NetOptions options_;
  pool::BufferArena* send_arena_ = nullptr;
  bool zero_copy_ = false;
  std::optional<pool::BufferArena> own_arena_;
  std::unique_ptr<BufferRing> ring_;
  NetStats stats_;
  detail::StreamState* head_ = nullptr;
  size_t live_ = 0;
  size_t partial_frame_bytes_ = 0;
  // Receive buffers the streams' send queues hold (adopted writes), of the
  // ring's count: capped at three quarters (StreamState::adopt()).
  uint32_t adopted_ = 0;
  uint32_t split_held_ = 0;
  std::vector<std::vector<uint8_t>> spare_buffers_;
  size_t spare_bytes_ = 0;
  size_t traded_bytes_ = 0;
};

}  // namespace coring::net
