// StreamState: the heap-resident state of one connection behind a Stream
// handle — its file, receive channel, send queue and writers. Internal to
// net/; Stream (stream.h) is the public face. It is a separate object so that
// Stream stays a cheap movable handle while the kernel holds pointers into
// the state (the msghdr and iovecs of the send in flight), and so that a
// stream destroyed with bytes still queued can finish sending them on its own
// (it "lingers", bounded by NetOptions::linger) and then close itself.
//
// Sending: one send in flight per connection, so bytes leave in order. A
// write does not start a send itself: the send starts just before the loop
// next submits to the kernel (a SubmitHook), so everything written in one
// loop iteration leaves in one send. Writes queue segments: small writes are copied into send
// buffers (leased from the loop's registered BufferArena, else slab-pool chunks) and return at
// once; large ones are borrowed from the writer, who waits until they are sent - unless they are a
// received buffer handed over whole (Stream::write(RecvBuffer&&)): the queue then adopts the
// buffer, sends from it and gives it back to the receive ring once sent, and the writer returns at
// once, so an echo's next reads and writes coalesce into one send (a small one only when nothing
// is queued or being sent; else it is copied, to coalesce with those). A stream adopts at most its
// send share (NetOptions::send_share) of buffers, and the send queues of a context together
// at most three quarters of the ring: peers that never read can park no more than that.
// Likewise a heap buffer handed over with the write (Stream::write(parts, std::vector&&), e.g. the
// codec's reassembly buffer an echoed frame lies in): the queue sends the parts inside it from it,
// copies the rest, returns at once, and keeps the buffer once sent for the owner's next hand-over
// (spare_buffer(), shared by the context's streams), so a stream of such writes allocates nothing.
// And the receive buffer a reader is decoding can be shared with the queue (share_received(),
// within the bounds of an adopted buffer): writes of kind kShared send their parts inside it from
// it and return at once; the buffer goes back to the ring once the reader let go of it
// (release_shared()) and its bytes are sent.
// Each completion advances through the segments by the byte count (a short write is simply
// continued) and the next send takes everything queued meanwhile, so writes made while a send is in
// flight are coalesced. Which op (start_send()):
//  * the head segment is at least NetOptions::zero_copy_threshold bytes:
//    SEND_ZC, with IORING_RECVSEND_FIXED_BUF when it lies in a registered
//    region (a copied run, or a borrowed payload still in its provided
//    receive buffer); MSG_MORE when more is queued. Its memory (buffer or
//    writer) is held until the notification CQE (ZcSend), while later sends
//    go on;
//  * the head is the only thing queued: one SEND (the coalesced copied bytes
//    of one send buffer, an adopted receive buffer, a borrowed write). Not a
//    sendmsg of one iovec: the kernel would read a msghdr and an iovec that
//    are cold when each of a thousand connections sends now and then.
//    Silent (EventLoop::expect_silent()) when nothing waits on it: it posts
//    no CQE unless the socket's buffer is full, and the loop takes it for
//    sent after the submit - which also waits for the next completion, so
//    a reply costs one io_uring_enter, not two. After a full buffer, the
//    next send waits for room (a plain SEND) and the one after is silent
//    again;
//  * otherwise one vectored sendmsg of the segments up to kMaxIov, stopping
//    before a segment that goes zero copy (then with MSG_MORE).
// Writers that find the queue over NetOptions::max_queued_bytes wait in FIFO
// order.
//
// Ending: the Stream handle owns the state until release(). The file is
// closed once, in mark_closed() (by Stream::close(), or close_file_now()
// when a released stream is done): a reader waiting then is woken, writes
// still queued fail. abort() fails writers and the reader at once, but what
// a zero-copy send reads from (its send buffer, or its writer, still
// waiting) is kept until the send's notification. A released stream lingers
// while bytes are queued (bounded by NetOptions::linger), then closes its
// file; if notifications are still due it leaves the context's list and the
// last notification deletes it.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cassert>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "coring/core/frame_allocator.h"
#include "coring/core/operation.h"
#include "coring/core/recv_stream.h"
#include "coring/core/submit_hook.h"
#include "coring/net/callback_timer.h"
#include "coring/net/net_context.h"
#include "coring/pool/buffer_lease.h"

namespace coring::net::detail {

// One write waiting in, or passing through, a stream's send queue. Lives in
// the awaiting coroutine's frame (inside the write awaiter).
struct Writer {
  // kShared: parts inside the stream's shared receive buffer
  // (StreamState::share_received) are sent from it, the rest copied.
  enum class Kind : uint8_t { kAuto, kCopy, kBarrier, kShared };
  enum class Phase : uint8_t { kNew, kWaitingRoom, kQueued, kDone };

  absl::Span<const absl::Span<const uint8_t>> parts;
  // Stream::write(RecvBuffer&&): the received buffer `parts` lies in, which
  // the send queue may take over instead of copying or borrowing it.
  RecvBuffer* adopt = nullptr;
  // Stream::write(parts, std::vector&&): a buffer the queue takes over;
  // parts inside it are sent from it, the rest copied.
  std::vector<uint8_t>* take = nullptr;
  size_t bytes = 0;
  std::coroutine_handle<> handle;
  absl::Status status;
  Writer* next = nullptr;
  uint32_t segments_left = 0;
  uint32_t holds = 0;  // zero-copy sends of its bytes awaiting their notification
  Kind kind = Kind::kAuto;
  Phase phase = Phase::kNew;
  // `take` is a frame buffer FramedStream traded through the context
  // (NetContext::spare_for_trade(), which bounds those for the whole loop):
  // NetOptions::max_queued_traded_bytes bounds the queue for it, not
  // max_queued_bytes.
  bool traded = false;
};

class StreamState final : private OpTarget, private SubmitHook {
 public:
  // From the loop's slab pool (frame_allocate), like coroutine frames: a
  // connection's fixed state then lives where the pool can give it back to
  // the system once connections are gone, not in malloc's arenas.
  static void* operator new(size_t size) { return frame_allocate(size); }
  static void operator delete(void* p, size_t size) noexcept { frame_deallocate(p, size); }

  static constexpr size_t kMaxIov = 64;
  static constexpr size_t kChunkSize = 16 * 1024 - 64;
  // The largest send buffer one copied write takes: larger writes are split
  // over several (the slab pool serves blocks up to 64 KiB, header included).
  static constexpr size_t kMaxSendBuf = 64 * 1024 - 64;
  // A send buffer from the slab pool (no registered buffer was free) starts
  // this small and doubles, up to kChunkSize, each time the connection
  // fills one: registered buffers run out when thousands of connections
  // send at once (a reconnect storm: a 60-byte HELLO_ACK each), and a
  // kChunkSize block each was 16 MB per 1,000 of them.
  static constexpr size_t kMinSlabSendBuf = 1024 - 16;
  // Zero-copy sends awaiting their notification, per connection.
  static constexpr size_t kMaxZeroCopy = 4;

  StreamState(NetContext& ctx, FileRef file);
  StreamState(const StreamState&) = delete;
  StreamState& operator=(const StreamState&) = delete;

  NetContext& context() noexcept { return *ctx_; }
  FileRef file() const noexcept { return file_; }
  bool file_closed() const noexcept { return file_closed_; }
  bool owned() const noexcept { return owned_; }

  // The Stream handle is gone: linger if bytes are queued, else close now.
  // `this` may be deleted before it returns.
  void release() noexcept;

  // ---- Reading ----
  // A read waits in its RecvStream::Next on the receive channel. The channel
  // is never destroyed under a waiting reader: whoever ends receiving
  // (close, release) interrupts the reader and the channel goes once the
  // reader has let go of it (finish_read, reader_gone).
  RecvStream* channel() noexcept { return has_channel_ ? &*channel_ : nullptr; }
  bool read_ready(const std::optional<RecvStream::Next>& next) const noexcept {
    return interrupted_ || !has_channel_ || channel_doomed_ || !next || next->await_ready();
  }
  // A reader suspended in `next` on the channel (until finish_read).
  void set_reading(bool reading) noexcept { reading_ = reading; }
  // The result of a read: `next` was awaited (`waited`: it suspended on the
  // channel) or found ready. Resets `next` when it waited. For a released
  // stream whose reader was the last user, `this` may be deleted before it
  // returns.
  absl::StatusOr<RecvBuffer> finish_read(std::optional<RecvStream::Next>& next,
                                         bool waited) noexcept;
  // The coroutine waiting in a read was destroyed (its Next is gone).
  // `this` may be deleted before it returns.
  void reader_gone() noexcept;
  // Wakes a reader waiting for data (or the next one) with `why`. Data that
  // already arrived is still delivered first (RecvStream::interrupt).
  void interrupt_read(absl::Status why) noexcept;
  bool interrupt_pending() const noexcept {
    return interrupted_ || (has_channel_ && channel_->interrupt_pending());
  }
  // True when the last read returned an interrupt_read() status.
  bool last_read_interrupted() const noexcept { return last_read_interrupted_; }
  // Idle bookkeeping for sweeps: true if data arrived since the last call.
  bool take_activity() noexcept { return std::exchange(rx_seen_, false); }

  // ---- Writing ----
  // Starts a write; true when it finished without waiting (w.status says how).
  bool begin_write(Writer& w) noexcept;
  // A write awaiter is destroyed while its writer is still linked. `this`
  // may be deleted before it returns (a released stream).
  void forget_writer(Writer& w) noexcept;
  // Fails every queued and waiting writer with `why`, stops sending, drops
  // the queue and wakes a waiting reader with `why`. Idempotent. Memory the
  // kernel may still read is kept: a sendmsg/send in flight is
  // cancelled before this returns; a zero-copy send keeps its send buffer,
  // or its writer waiting (failed at the notification, not before), until
  // its notification CQE, and the state lives until the last one; the file
  // is then closed at once, since the kernel lets go of a socket's queued
  // bytes only when it closes if its peer never reads.
  void abort(absl::Status why) noexcept;
  // abort(), then, for a released stream, close and delete it.
  void kill(absl::Status why) noexcept;
  // Later writes fail with FailedPrecondition (after shutdown(SHUT_WR)).
  void close_for_writing() noexcept { write_closed_ = true; }
  size_t queued_bytes() const noexcept { return queued_bytes_; }
  // A buffer a send queue of this context took over (Writer::take) and has
  // sent, for the next hand-over (NetContext::take_spare_buffer()).
  std::vector<uint8_t> spare_buffer() noexcept {
    return ctx_ != nullptr ? ctx_->take_spare_buffer() : std::vector<uint8_t>();
  }
  // The last buffer taken over stays readable (not reused, not freed) even
  // once sent, until the next take-over or this call: its owner may still
  // view the bytes (FramedStream: the frame just read, valid until the next
  // read_frame(), which calls this: per frame, so the test is inline).
  void release_taken() noexcept {
    if (taken_ != nullptr) drop_hold(taken_);
  }
  // Takes over `b`, the receive buffer the reader is decoding (left empty:
  // a view of its bytes stays valid), so that writes of kind kShared send
  // the parts inside it straight from it. The reader's hold on it ends with
  // release_shared(); the buffer goes back to the ring once that happened
  // and its bytes queued are sent. False, `b` unchanged, when the ring
  // cannot spare it: the bounds of an adopted buffer (adopt()).
  bool share_received(RecvBuffer& b) noexcept;
  // The reader is done with the buffer share_received() took.
  void release_shared() noexcept;
  // The reader moves on to its next receive buffer while it still reads
  // the last bytes of this one (a frame split across the two: FramedStream
  // with FramedOptions::split_payloads): it keeps its hold on the shared
  // buffer, which writes of kind kShared also send from, until
  // release_previous(). share_previous(b) does the same for a receive
  // buffer `b` the reader kept without sharing it (false: the ring cannot
  // spare it; `b` unchanged).
  void keep_shared_as_previous() noexcept;
  bool share_previous(RecvBuffer& b) noexcept;
  void release_previous() noexcept;
  const absl::Status& write_error() const noexcept { return write_error_; }
  // A write of `bytes` begun now would be admitted without waiting (no
  // writer waits, the queue has room): a transport that must commit to a
  // write before starting it (TLS encrypts first) asks this.
  // (traded: a traded frame buffer's write, Writer::traded.)
  bool admits_now(size_t bytes, bool traded = false) const noexcept {
    return wait_head_ == nullptr && fits(bytes, traded);
  }
  // Nothing queued and no send in flight: a write now leaves alone, with no
  // neighbours a copy could coalesce it with.
  bool idle() const noexcept { return !sending_ && queue_empty(); }
  // A write of `bytes` begun now would be queued at once: admitted, and not
  // failed for an error or a closed stream.
  bool queues_now(size_t bytes, bool traded = false) const noexcept {
    return write_error_.ok() && !write_closed_ && !file_closed_ && admits_now(bytes, traded);
  }
  // A write of kind kShared whose `bytes` (the parts' total) queues_now():
  // queued, and so done, at once; no Writer needed (an echo of a frame in
  // the shared buffer is one such write per frame).
  void queue_shared_now(absl::Span<const absl::Span<const uint8_t>> parts, size_t bytes) noexcept {
    assert(queues_now(bytes));
    (void)bytes;
    ++ctx_->stats().shared_writes;
    // (First, inline, the common case: an echoed frame sent as received, one
    // part in the shared buffer, which usually grows the last segment.)
    if (parts.size() == 1 && shared_ != nullptr && shared_->contains(parts[0])) {
      queue_in(shared_, parts[0]);
    } else {
      queue_parts_in(shared_, parts, previous_);
    }
    request_send();
  }
  // Stream::write(RecvBuffer&&) done at once, with no Writer: when a write
  // of `b` queues_now(), `b` is adopted (adopt()'s terms; `b` left empty) or,
  // small, copied, and true returned. False: nothing done, `b` unchanged,
  // and the write is to be made as any other. (An echo's writes are all
  // done here: per message, so no Writer is made, and none of the write
  // awaiter's memory touched, for them.)
  bool write_received_now(RecvBuffer& b) noexcept;
  // queue_shared_now() of one part that lies in the shared buffer whole, as
  // its caller checked (FramedStream's echo of a frame sent as received:
  // per frame, so nothing is checked twice).
  void queue_in_shared_now(absl::Span<const uint8_t> part) noexcept {
    assert(shared_ != nullptr && shared_->contains(part) && queues_now(part.size()));
    ++ctx_->stats().shared_writes;
    queue_in(shared_, part);
    request_send();
  }

  // ---- Closing ----
  // Arms (or re-arms) a deadline after which the stream is aborted.
  void arm_deadline(std::chrono::nanoseconds after) noexcept;
  void cancel_deadline() noexcept { deadline_.cancel(); }
  // Stops receiving (returns held buffers, cancels the recv); a waiting
  // reader gets FailedPrecondition.
  void stop_receiving() noexcept;
  // Marks the file closed: a waiting reader and the writers of bytes still
  // queued get FailedPrecondition. The caller closes it (close.h) itself.
  void mark_closed() noexcept;

  // Memory an idle connection does not need goes back to the pools: the
  // sendmsg scratch, the spare send-buffer header, the segment list's
  // storage, and whatever the reader's idle hook gives back (FramedStream:
  // its codec's reassembly buffer). Called by the owner of the context's
  // streams (Server: after an idle sweep tick without input). Cheap to redo.
  void trim_idle() noexcept;
  // Set while a reader waits for input at a frame boundary (FramedStream):
  // trim_idle() calls hook(context). Cleared by whoever set it before the
  // context goes away.
  void set_idle_hook(void (*hook)(void*) noexcept, void* context) noexcept {
    idle_hook_ = hook;
    idle_hook_context_ = context;
  }

  // Set by FramedStream: part of a frame has arrived and its reader waits
  // for the rest (frame deadlines: the owner's sweeps count frame_ticks,
  // which the reader resets when a frame completes), and the memory its
  // codec holds for that frame (counted in NetContext::partial_frame_bytes()).
  bool mid_frame = false;
  uint32_t frame_ticks = 0;
  size_t partial_bytes = 0;

 private:
  // Copied bytes: a registered buffer (lease) or a slab-pool chunk; or a
  // taken-over heap buffer (owned, not copied into); or a shared receive
  // buffer (ring_id, not copied into). What a message touches fits the
  // first cache line, and the owner of the memory is made only for the
  // buffers that have one: sharing a receive buffer (one per frame of an
  // SBMP echo) writes nothing past it. (The header's memory is the
  // connection's spare_, out of the cache at its next message when there
  // are thousands of connections.)
  struct SendBuf {
    enum class Owner : uint8_t { kNone, kLease, kVector };
    SendBuf(uint8_t* bytes, size_t size, size_t filled, uint32_t holds_now, int32_t index) noexcept
        : data(bytes), capacity(size), used(filled), holds(holds_now), buf_index(index) {}
    SendBuf(const SendBuf&) = delete;
    SendBuf& operator=(const SendBuf&) = delete;
    ~SendBuf() {
      if (owner == Owner::kLease) std::destroy_at(&lease);  // back to the arena
      if (owner == Owner::kVector) std::destroy_at(&owned);
    }
    void adopt(pool::BufferLease&& from) noexcept {
      std::construct_at(&lease, std::move(from));
      owner = Owner::kLease;
    }
    void adopt(std::vector<uint8_t>&& from) noexcept {
      std::construct_at(&owned, std::move(from));
      owner = Owner::kVector;
    }
    bool contains(absl::Span<const uint8_t> bytes) const noexcept {
      return bytes.data() >= data && bytes.data() + bytes.size() <= data + capacity;
    }

    uint8_t* data;
    size_t capacity;
    size_t used;
    size_t unsent = 0;
    uint32_t holds;        // zero-copy sends awaiting their notification; the owner's hold
    int32_t buf_index;     // registered-buffer index, -1 for a slab chunk
    int32_t ring_id = -1;  // a receive buffer, given back to the ring when freed
    Owner owner = Owner::kNone;
    union {
      pool::BufferLease lease;     // kLease
      std::vector<uint8_t> owned;  // kVector
    };
  };
  struct Segment {
    const uint8_t* data;
    size_t size;
    SendBuf* buf;       // copied bytes: the buffer holding them
    Writer* writer;     // borrowed bytes or barrier: whose
    int32_t buf_index;  // registered-buffer index of the bytes, or -1
    int32_t ring_id;    // an adopted receive buffer (given back once sent), or -1
  };
  // One SEND_ZC: the op's target from submission to its notification CQE,
  // holding the buffer or writer it sends from.
  struct ZcSend final : OpTarget {
    StreamState* stream = nullptr;
    Writer* writer = nullptr;
    SendBuf* buf = nullptr;
    uint32_t index = 0;
    bool busy = false;
    void on_complete(const OpResult& r) noexcept override { stream->on_zc_complete(*this, r); }
  };

  ~StreamState();
  // The queue has room for `bytes` more: under NetOptions::max_queued_bytes,
  // or max_queued_traded_bytes for a traded frame buffer (Writer::traded).
  bool fits(size_t bytes, bool traded) const noexcept {
    return queued_bytes_ == 0 ||
           queued_bytes_ + bytes <= (traded ? traded_bound() : ctx_->options().max_queued_bytes);
  }
  size_t traded_bound() const noexcept {
    return std::max(ctx_->options().max_queued_traded_bytes, ctx_->options().max_queued_bytes);
  }
  void admit(Writer& w) noexcept;
  void copy_in(absl::Span<const absl::Span<const uint8_t>> parts, size_t bytes) noexcept;
  SendBuf* new_send_buf(size_t bytes) noexcept;
  int32_t registered_index(const uint8_t* p, size_t n) const noexcept;
  // Takes w.adopt's receive buffer into the queue if that is cheap and fair.
  bool adopt(Writer& w) noexcept;
  // adopt()'s work on the buffer: queued (not yet sent) and true, or false
  // with `b` unchanged.
  bool adopt_buffer(RecvBuffer& b) noexcept;
  // Whether the ring can spare `b` to this stream's send queue (adopted or
  // shared): the bounds on what peers that never read can park.
  bool may_park(const RecvBuffer& b) const noexcept;
  // Takes `b` from its ring into this queue (counted against those bounds);
  // returns its ring id. unpark() gives it back.
  int32_t park(RecvBuffer& b) noexcept;
  void unpark(int32_t ring_id) noexcept;
  // Queues w's parts, sending those inside *w.take from it (Writer::take).
  void take_over(Writer& w) noexcept;
  // Queues w's parts, sending those inside shared_ or previous_ from them
  // (Kind::kShared).
  void queue_shared(Writer& w) noexcept;
  // Queues `parts`: those inside `b` are sent from it, and so is a small
  // part equal to the bytes just before the next part there (an echoed
  // frame's header, encoded as it was received: the frame, and a run of
  // echoed frames, is one run of the buffer); the rest is copied.
  // `also`: a second buffer parts may lie in, or nullptr.
  void queue_parts_in(SendBuf* b, absl::Span<const absl::Span<const uint8_t>> parts,
                      SendBuf* also = nullptr) noexcept;
  // A SendBuf for receive buffer `b`, parked, with the reader's hold.
  SendBuf* share(RecvBuffer& b) noexcept;
  // Gives up the reader's hold on `held` (taken_, shared_, previous_) and
  // clears it; the buffer goes once its queued bytes are sent too.
  void drop_hold(SendBuf*& held) noexcept;
  // Queues `bytes` (inside b, not copied) after the segments queued.
  void queue_in(SendBuf* b, absl::Span<const uint8_t> bytes) noexcept {
    b->unsent += bytes.size();
    queued_bytes_ += bytes.size();
    // Extend the last segment when it ends where these bytes begin.
    Segment* last = queue_empty() ? nullptr : &segments_.back();
    if (last != nullptr && last->buf == b && last->data + last->size == bytes.data()) {
      last->size += bytes.size();
    } else {
      add_segment(b, bytes);
    }
  }
  // A segment of `bytes` in b, last. (Out of line, with the vector's growth
  // in it. Inline, it kept GCC from inlining queue_in() where a frame's
  // echo is queued: 24 instructions more per pipelined frame. The call
  // costs a ping-pong message 32, beside far more kernel work.)
  void add_segment(SendBuf* b, absl::Span<const uint8_t> bytes) noexcept;
  // Memory for a SendBuf header (the spare one, else from the slab pool).
  void* send_buf_memory() noexcept;
  // A segment is done with (sent or dropped): frees what it held.
  void let_go(Segment& s) noexcept;
  void complete(Writer& w, absl::Status status) noexcept;
  void start_send() noexcept;
  // A write was queued: the send starts just before the loop's next submit
  // (SubmitHook), so that the writes the writer makes until then - the echoes
  // of every frame of one received chunk, say - leave in that one send.
  // It waits a turn more when the reader's recv armed in this turn is sure
  // to complete at this submit (RecvStream::direct_due(): a large frame
  // received in place while more input waits): that frame's answer then
  // leaves with this one. Again while the socket holds more, up to
  // kMaxSendWaitTurns turns and half of max_queued_traded_bytes (those
  // answers are traded buffers), so that a peer pipelining large frames
  // gets its answers in as few sends as a multishot reader's echo would
  // make of the same bytes. Not while a writer waits (for its send, or
  // for room): its reader reads nothing more meanwhile.
  // Measured (bench/run.sh, sbmp_echo_server, 64 KiB frames 16 in flight,
  // against waiting one turn, once, with max_queued_bytes; 10 interleaved
  // rounds): server CPU per frame at 16 connections 0.87 (no round worse),
  // 1 connection 0.86 (3 of 10 worse), 256 0.96 (4 of 10); TCP segments
  // the server sent / received per frame at 16 connections 1.91 / 1.76 ->
  // 1.51 / 1.40 (the load generator's TCP_INFO). 1000 connections 1.00 (5
  // rounds); ping-pong does not wait.
  void request_send() noexcept {
    if (!sending_ && !SubmitHook::armed()) loop_->before_submit(*this);
  }
  static void on_submit_hook(SubmitHook* self) noexcept;
  static constexpr uint8_t kMaxSendWaitTurns = 16;
  bool worth_waiting_a_turn() const noexcept;
  void submit_zero_copy(Segment& s, ZcSend& z, bool more) noexcept;
  void on_complete(const OpResult& r) noexcept override;
  void on_zc_complete(ZcSend& z, const OpResult& r) noexcept;
  // A send's result: advance, wake writers, send on (may delete `this`).
  void on_send_result(const OpResult& r) noexcept;
  void release_zc(ZcSend& z) noexcept;
  // A ZcSend not busy (zc_busy_ < kMaxZeroCopy), making them when needed.
  ZcSend& idle_zc() noexcept;
  void free_zc_array() noexcept;
  void advance(size_t n) noexcept;
  void pump_waiters() noexcept;
  void unhold_writer(Writer& w) noexcept;
  void free_buf(SendBuf* b) noexcept;
  void drop_queue(const absl::Status& why) noexcept;
  // (Iterators, not size(): a Segment is 40 bytes, and size() divides.)
  bool queue_empty() const noexcept { return segments_.begin() + seg_head_ == segments_.end(); }
  // finish_read() of a read that waited, and of one that did not.
  absl::StatusOr<RecvBuffer> finish_waited_read(std::optional<RecvStream::Next>& next) noexcept;
  absl::StatusOr<RecvBuffer> take_read(RecvStream::Next& next) noexcept;
  // The result of a read that reached the channel, checked and counted in
  // place.
  void deliver(absl::StatusOr<RecvBuffer>& buf, bool interrupted) noexcept;
  // Released and nothing left to send: close the file and delete this, or,
  // while zero-copy notifications are due, leave the context and wait.
  void finish_if_done() noexcept;
  // Out of the context's list, for good: the file is closed, only zero-copy
  // notifications are due. Touches nothing of the context after this.
  void leave_context() noexcept;
  void close_file_now() noexcept;
  // Ends receiving: destroys the channel, or, while a reader waits on it,
  // wakes the reader with `why` and leaves the rest to finish_read().
  void drop_channel(absl::Status why) noexcept;
  void destroy_channel() noexcept {
    channel_.reset();
    has_channel_ = false;
  }
  static void on_deadline(void* self, bool fired) noexcept;

  // The fields are in two groups. First those a message touches (its read,
  // its write, the send and its completion), then the rest: with thousands
  // of connections a message finds its connection's state out of the cache,
  // and each of its cache lines is a miss (bench/instructions.sh counts
  // them). The receive channel is last of the first group: its own rarely
  // used fields are at its end.
  NetContext* ctx_;  // nullptr once it left the context (leave_context)
  EventLoop* loop_;
  FileRef file_;
  std::vector<Segment> segments_;
  size_t seg_head_ = 0;
  size_t queued_bytes_ = 0;
  SendBuf* fill_ = nullptr;
  // One freed SendBuf's memory (not constructed), kept for the next copied
  // write: a connection writing one small message at a time allocates no
  // header per write. Its data (an arena lease or a slab chunk) is not kept.
  void* spare_ = nullptr;
  SendBuf* taken_ = nullptr;     // the last taken over, held (holds) until release_taken()
  SendBuf* shared_ = nullptr;    // the reader's receive buffer, held until release_shared()
  SendBuf* previous_ = nullptr;  // the one before, held until release_previous()
  BufferRing* ring_;             // the context's receive ring (adopted buffers go back to it)
  uint32_t ring_held_ = 0;       // adopted receive buffers in the queue
  uint32_t send_index_ = 0;
  absl::Status write_error_;
  Writer* wait_head_ = nullptr;
  ZcSend* zc_in_flight_ = nullptr;  // the send in flight is this zero-copy one
  // What a sendmsg reads until its completion. Leased from the slab pool by
  // the first sendmsg and kept while the connection is busy (no per-send
  // cost); trim_idle() gives it back when no send is in flight: at 1 KiB it
  // was the largest part of an idle connection's state.
  struct SendScratch {
    msghdr msg;
    iovec iov[kMaxIov];
  };
  SendScratch* scratch_ = nullptr;
  void (*idle_hook_)(void*) noexcept = nullptr;
  void* idle_hook_context_ = nullptr;
  uint32_t zc_busy_ = 0;
  // The size of the next send buffer from the slab pool (kMinSlabSendBuf
  // doubling to kChunkSize; back to the minimum on trim_idle()).
  uint32_t slab_send_size_ = kMinSlabSendBuf;
  // The channel goes when the waiting reader lets go of it; the reader
  // gets doom_status_.
  bool channel_doomed_ = false;
  bool interrupted_ = false;
  bool reading_ = false;
  bool rx_seen_ = false;
  bool last_read_interrupted_ = false;
  bool write_closed_ = false;
  bool sending_ = false;
  uint8_t waited_turns_ = 0;  // this send waited so far (worth_waiting_a_turn)
  bool loud_next_ = false;    // a silent send found the socket full: the next waits for room
  bool owned_ = true;
  bool file_closed_ = false;
  // channel_ is engaged: read on every message, and the optional's own flag
  // lies past the RecvStream, a cache line no message needs otherwise.
  bool has_channel_ = false;
  // The bytes of the silent send in flight (EventLoop::expect_silent()); 0:
  // none is. (In the flags' padding, on the line on_send_result() reads.)
  uint32_t silent_bytes_ = 0;
  std::optional<RecvStream> channel_;

  absl::Status doom_status_;
  absl::Status interrupt_status_;
  Writer* wait_tail_ = nullptr;
  // kMaxZeroCopy of them, from the slab pool at the first zero-copy send
  // (most connections never send one); trim_idle() gives them back when none
  // is busy.
  ZcSend* zc_ = nullptr;
  CallbackTimer deadline_;

 public:
  // Intrusive list of the context's streams.
  StreamState* list_next = nullptr;
  StreamState* list_prev = nullptr;
  // Free for the owner of the context's streams (Server: idle sweeps).
  uint32_t idle_ticks = 0;
  void* user = nullptr;
};

}  // namespace coring::net::detail

namespace coring::net {

template <class Fn>
void NetContext::for_each_stream(Fn&& fn) {
  for (detail::StreamState* s = head_; s != nullptr;) {
    detail::StreamState* next = s->list_next;  // fn may finish (delete) a lingering stream
    fn(*s);
    s = next;
  }
}

}  // namespace coring::net
