// RecvStream: multishot IORING_OP_RECV on a provided-buffer ring, read as a
// stream of RecvBuffers.
//
//   RecvStream stream = coring::recv_multishot(fd, buffer_ring);
//   for (;;) {
//     absl::StatusOr<RecvBuffer> buf = co_await stream.next();
//     if (!buf.ok()) break;            // error (Cancelled when the stop token fired)
//     if (buf->empty()) break;         // EOF
//     consume(buf->span());            // the buffer goes back to the ring here
//   }
//
// One armed op serves every read until the kernel ends it; ENOBUFS (every
// buffer held by the application) is swallowed, counted in LoopStats::enobufs,
// and the stream waits in line for a buffer (BufferRing): the next one given
// back wakes it; if its recv then loses the race for that buffer, it goes
// to the head of the line, and once it lost BufferRing::kHandOffAfter in a
// row, unless its last chunk filled a buffer (bulk data), the next buffer
// is handed to it and it receives into that buffer with one non-blocking
// recv (LoopStats::recv_handoffs).
// Destroying the stream cancels the op and returns every buffer it still
// carries.
//
// Fair share: the ring is shared by every stream of the loop, so a stream
// may hold its buffers only while its reader reads. A stream starts in
// single-shot mode - one recv, one buffer, armed only while its reader waits,
// as a readiness-based server reads - and switches to multishot once
// kPromoteAfter chunks in a row found the reader already waiting;
// start_multishot() skips that (net's streams: most readers keep up, and a
// socket read one buffer per wake-up never grows its TCP receive window,
// which caps a connection's throughput at a window per round trip). A
// multishot op is armed only while its reader waits, also on a ring under a
// quarter free (where a single recv per wake-up would again starve the
// window), but a multishot stream whose unread chunks reach its share
// (set_share(); 2 while the ring is under a quarter free) pauses: it cancels
// the op and re-arms once its reader has read the queue. The queued chunks
// stay in their ring buffers (the stream is a BufferHolder): a reader busy writing its echo reads
// them soon, and copying them would cost a memcpy each. But once some stream finds the ring dry,
// the ring checks its holders every BufferRing::kReclaimPeriod, and a stream whose reader took
// nothing over a whole period (stuck writing to a peer that never reads, say) moves what it has
// queued out of the ring into memory of its own (a copy, from the frame allocator), stops its recv,
// and reads single-shot from then on. A stuck reader therefore holds no ring buffer for long while
// others need one, its peer is pushed back by TCP flow control alone, and every other stream keeps
// receiving. LoopStats:: recv_pauses and recv_spills count this.
//
// What a stuck reader holds is the queue it had when it got stuck: its share, and whatever its last
// multishot recv took before the pause's cancel went in - which can be far more, as the kernel
// drains a socket into the ring in one io_uring_enter(), as far as the ring's free buffers go (64
// peers that flood and never read left 17-40 chunks a stream on average, up to ~90, in
// hostile/fairness_test.cc). Where the kernel takes a byte limit on a multishot recv
// (Ring::recv_limit(), probed), the recv ends after kLimitShares shares of full buffers and is
// armed again once the reader waits, so a burst leaves at most that (the same attack: the server's
// RSS +11-16 MiB instead of +37-63 MiB). Elsewhere the burst is bounded by the ring alone.
// (Single-shot recvs after a full chunk would bound it at one, but cost a raw echo of 16 x 64 KiB
// in flight on one connection 29% of its messages per second.)
//
// receive_into(buf, offset, len): the next recv goes straight into the
// reader's own memory (a framed reader that knows where the rest of a large
// frame goes: no ring buffer, no copy out of one). The stream holds `buf`
// until take_direct(): while the recv is in flight, and if the stream is
// destroyed meanwhile, the recv is cancelled synchronously before `buf` is
// freed. The recv is armed as any other (only while the reader waits); a
// multishot recv armed when it is asked for is cancelled first (chunks it
// brought meanwhile are read first), and the stream reads single-shot from
// then on (promotion brings multishot back for small messages).
// LoopStats::recv_direct counts these recvs.
//
// interrupt(why) wakes the reader (idle timeout, shutdown) without losing
// data: the armed op is cancelled, chunks that already arrived are returned
// first, then what the socket already holds (non-blocking recvs until
// EAGAIN: frames a peer sent before a shutdown are still answered), then one
// next() returns `why` (Next::interrupted() tells it apart). The read after
// that re-arms and reads on.
#pragma once

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <climits>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "coring/core/buffer_ring.h"
#include "coring/core/errno_status.h"
#include "coring/core/multishot.h"

namespace coring {

// (BufferWaiter last, and the fields a message does not touch after the
// others: see the fields.)
class RecvStream final : private detail::MultishotStream,
                         private BufferHolder,
                         private BufferWaiter {
 public:
  RecvStream(FileRef file, BufferRing& ring) noexcept
      : MultishotStream(&RecvStream::reclaim, ring.group()), file_(file), ring_(ring) {}
  ~RecvStream() {
    // The kernel must be done with direct_buf_ before it is freed.
    if (direct_armed_) abandon(/*borrowed_memory=*/true);
    ring_.cancel_wait(this);
    ring_.release(static_cast<BufferHolder*>(this));
    while (queued() > 0) {
      Item item = pop();
      if (item.copy != nullptr) {
        frame_deallocate(item.copy, static_cast<size_t>(item.res));
      } else if (item.res >= 0 && (item.flags & IORING_CQE_F_BUFFER)) {
        ring_.give_back(static_cast<uint16_t>(item.flags >> IORING_CQE_BUFFER_SHIFT));
      }
    }
  }

  class Next : public NextAwaiter {
   public:
    Next(RecvStream* stream) noexcept : NextAwaiter(stream) {}
    bool await_ready() const noexcept {
      const RecvStream* s = self();
      return s->queued() > 0 || (s->interrupt_pending_ && s->drained_);
    }
    absl::StatusOr<RecvBuffer> await_resume() noexcept {
      RecvStream* s = self();
      const bool empty = s->queued() == 0 && !s->handed_off();
      Item item = NextAwaiter::await_resume();
      s->took_chunk();
      if (item.res == kInterrupted || (empty && s->interrupt_pending_ && s->drained_)) {
        interrupted_ = true;
        s->interrupt_pending_ = false;
        s->drained_ = false;
        return std::exchange(s->interrupt_status_, absl::OkStatus());
      }
      return s->to_buffer(item);
    }
    // True when this read returned the interrupt() status.
    bool interrupted() const noexcept { return interrupted_; }

   private:
    // (The base's stream: a pointer of its own would take room in the
    // reader's frame.)
    RecvStream* self() const noexcept { return static_cast<RecvStream*>(stream_); }
    bool interrupted_ = false;  // (in the base's tail padding: no room taken)
  };

  static_assert(sizeof(Next) == 3 * sizeof(void*),
                "a read's awaiter is part of the reader's frame");

  // The next chunk received (empty at EOF).
  Next next() noexcept { return Next(this); }

  // Wakes the reader with `why` (Cancelled when OK) once the chunks already
  // received are read; see the top of this file. Owner thread. A second
  // interrupt before the first is delivered replaces its status.
  void interrupt(absl::Status why) noexcept {
    if (why.ok()) why = absl::CancelledError("recv interrupted");
    interrupt_status_ = std::move(why);
    interrupt_pending_ = true;
    if (armed_) {
      if (!cancel_outstanding_) {
        cancel_outstanding_ = true;
        loop_->cancel_op(user_data_);
      }
    } else if (waiter_ && loop_ != nullptr) {
      // Waiting for buffers to come back: nothing to cancel.
      ring_.cancel_wait(this);
      push(Item{kInterrupted, 0});
      loop_->schedule(std::exchange(waiter_, {}));
    }
  }
  bool interrupt_pending() const noexcept { return interrupt_pending_; }

  // Where the kernel takes a byte limit on a multishot recv
  // (Ring::recv_limit()), the recv ends after this many shares of full
  // buffers: what a burst can leave with a reader that got stuck meanwhile.
  // Against no limit, SBMP echo of 16 x 16 KiB in flight on 16
  // connections: one share cost 15% of the messages per second and two 6%
  // (single runs); four, 1.03x the server's CPU per message (bench/run.sh,
  // 7 rounds side by side). Raw echo of 16 x 64 KiB in flight on 16
  // connections: 0.99x the CPU per message of the same server with 64
  // shares (which almost never ends a recv there; 30 rounds side by side,
  // 14 of them worse), so nothing measurable. (A 15-round comparison with
  // the server from before the limit, other changes included, read 1.08x;
  // the spread of single rounds there is 0.7-1.3x.)
  static constexpr uint32_t kLimitShares = 4;

  // Chunks this stream may queue unread before it pauses (at least 1); see
  // the top of this file.
  void set_share(uint32_t max_queued) noexcept { max_queued_ = max_queued > 0 ? max_queued : 1; }
  uint32_t share() const noexcept { return max_queued_; }
  // Arms multishot from the start instead of after kPromoteAfter chunks (a
  // reader expected to keep up); the share still applies, and a reader that
  // turns out stuck still falls back to single-shot (release_held()).
  void start_multishot() noexcept { single_ = false; }
  // Reads single-shot (one recv per wait) until start_multishot() or
  // promotion: nothing is left armed between reads, for a reader that must
  // know that no byte past what it read is taken off the socket (TLS before
  // handing the socket to kernel TLS).
  void start_single_shot() noexcept {
    single_ = true;
    streak_ = 0;
  }
  bool multishot() const noexcept { return !single_; }

  // The next recv armed receives at most `len` bytes into buf[offset, ...)
  // instead of a ring buffer (see the top of this file); the read returns
  // them as a RecvBuffer::view(). Owner thread, while no reader waits and
  // no earlier receive_into() is outstanding (take_direct() not called).
  void receive_into(std::vector<uint8_t>&& buf, size_t offset, size_t len) noexcept {
    assert(!direct_ && !direct_armed_ && offset + len <= buf.size() && len > 0);
    direct_buf_ = std::move(buf);
    direct_offset_ = offset;
    direct_len_ = len;
    direct_got_ = 0;
    direct_ = true;
    start_single_shot();
    if (armed_ && !cancel_outstanding_ && !stopping_) {
      // A multishot recv would take the bytes first: stop it (as a pause).
      cancel_outstanding_ = true;
      loop_->cancel_op(user_data_);
    }
  }
  // Ends a receive_into(): `out` gets the buffer back; returns the bytes the
  // recv put into it (0 if it was not armed, failed, or was cancelled).
  // Only once the read that may have armed it has returned.
  size_t take_direct(std::vector<uint8_t>& out) noexcept {
    assert(!direct_armed_);
    direct_ = false;
    out = std::move(direct_buf_);
    return std::exchange(direct_got_, 0);
  }
  // The last recv straight into the reader's memory left more bytes in the
  // socket (IORING_CQE_F_SOCK_NONEMPTY): the next read will not wait. Until
  // the next recv is armed.
  bool direct_left_more() const noexcept { return direct_more_; }
  // A recv straight into the reader's memory is armed and was armed right
  // after the last one left more bytes in the socket: it completes at the
  // next submit (the socket already holds input for it).
  bool direct_due() const noexcept { return direct_armed_ && direct_due_; }

  using MultishotStream::armed;
  using MultishotStream::queued;

 private:
  static constexpr int32_t kInterrupted = INT32_MIN;

  void on_complete(const OpResult& r) noexcept override {
    if (direct_armed_) {
      // The recv into the reader's memory: one shot, its bytes in place.
      direct_armed_ = false;
      direct_due_ = false;
      direct_ = false;
      OpResult got = r;
      if (r.res > 0) {
        got.flags |= kDirectFlag;
        direct_got_ = static_cast<size_t>(r.res);
        direct_more_ = (r.flags & IORING_CQE_F_SOCK_NONEMPTY) != 0;
        loop_->count_recv_direct(direct_got_);
      }
      on_result(got);  // last: the reader may destroy us
      return;
    }
    if (offered_ >= 0) {
      // The recv into an offered buffer: as if the kernel had picked it.
      const auto id = static_cast<uint16_t>(std::exchange(offered_, -1));
      OpResult got = r;
      if (r.res > 0) {
        got.flags |= IORING_CQE_F_BUFFER | (uint32_t{id} << IORING_CQE_BUFFER_SHIFT);
        counted_ = true;  // outstanding since the offer (on_cqe() takes the flag)
      } else {
        ring_.give_back(id);
        // (With an interrupt pending, the EAGAIN is the drain's end, taken below.)
        offer_found_nothing_ = r.res == -EAGAIN && !interrupt_pending_;
      }
      on_result(got);  // last: the reader may destroy us
      return;
    }
    on_result(r);
  }

  void on_result(const OpResult& r) noexcept {
    if (interrupt_pending_ && r.res == -EAGAIN && !r.more()) {
      // The drain recv found the socket empty: now the interrupt.
      cancel_outstanding_ = false;
      mark_disarmed();
      drained_ = true;
      if (waiter_) {
        push(Item{kInterrupted, 0});
        std::exchange(waiter_, {}).resume();
      }
      return;
    }
    if (cancel_outstanding_ && !r.more()) {
      cancel_outstanding_ = false;
      // The end of the op interrupt() cancelled (or ENOBUFS got there first).
      if (!stopping_ && (r.res == -ECANCELED || r.res == -ENOBUFS)) {
        if (r.res == -ENOBUFS) {
          loop_->count_enobufs();
          ran_dry_ = true;
        }
        mark_disarmed();
        if (!waiter_) return;  // the next next() drains and interrupts, or re-arms
        // Interrupted: drain what the socket already holds (the recv is
        // then non-blocking), then the interrupt; else read on.
        arm_or_wait();
        return;
      }
    }
    if (r.has_buffer()) {
      if (!waiter_) {
        streak_ = 0;
        if (r.more() && !cancel_outstanding_ && !stopping_ && over_share()) {
          // Pause: this chunk is queued as usual below; the op's end
          // (ECANCELED) is taken above, and the reader re-arms once it has
          // read the queue. The queue stays in its ring buffers: a reader
          // busy writing its echo reads them soon, and copying them out
          // would cost a memcpy each. If the reader is stuck instead, the
          // ring takes them back once streams starve (release_held()).
          cancel_outstanding_ = true;
          loop_->count_recv_pause();
          loop_->cancel_op(user_data_);
        }
        MultishotStream::on_complete(r);  // queued: nobody to resume
        if (single_ && !direct_) {
          // A stream the ring took its buffers back from (or a chunk the
          // kernel posted before its recv ended): its reader does not read,
          // so what it receives moves out of the ring at once. (Not chunks
          // a multishot recv stopped for receive_into() brought: that
          // reader reads.)
          spill_queued();
        } else {
          ring_.hold(this);
        }
        return;
      }
      if (single_ && ++streak_ >= kPromoteAfter) {
        single_ = false;  // the reader keeps up: the next arm is multishot
      }
    }
    MultishotStream::on_complete(r);
  }

  // The ring ran dry and this stream's reader took nothing for a whole
  // reclaim period: it is stuck (writing to a peer that never reads, say).
  // Its chunks move out of the ring, its recv stops, and it reads
  // single-shot - one buffer at a time, only while its reader waits - from
  // now on, until its reader keeps up again.
  void release_held() noexcept override {
    spill_queued();
    single_ = true;
    streak_ = 0;
    if (armed_ && !cancel_outstanding_ && !stopping_) {
      cancel_outstanding_ = true;
      loop_->count_recv_pause();
      loop_->cancel_op(user_data_);
    }
  }
  // The reader took a chunk (or a status): progress, for the ring's check.
  void took_chunk() noexcept {
    ++reads_;
    if (queued() == 0) ring_.release(static_cast<BufferHolder*>(this));
  }

  // Copies every queued chunk still in a ring buffer into memory of its own
  // and gives the buffer back. Only for a stream whose reader is not waiting
  // (no resumption can happen here).
  void spill_queued() noexcept {
    for (size_t i = 0; i < count_; ++i) {
      Item& item = queue_[(head_ + i) % queue_.size()];
      if (item.res <= 0 || !(item.flags & IORING_CQE_F_BUFFER) || item.copy != nullptr) continue;
      const auto id = static_cast<uint16_t>(item.flags >> IORING_CQE_BUFFER_SHIFT);
      RecvBuffer held = ring_.take(id, static_cast<size_t>(item.res));
      item.copy = static_cast<uint8_t*>(frame_allocate(held.size()));
      std::memcpy(item.copy, held.data(), held.size());
      item.flags &= ~static_cast<uint32_t>(IORING_CQE_F_BUFFER);
      loop_->count_recv_spill(held.size());
    }  // each `held` goes back to the ring here
    ring_.release(static_cast<BufferHolder*>(this));
  }

  // A share of chunks (the stream pauses there), the status that may
  // follow them (end of stream, an error, an interrupt) and a chunk the
  // kernel posted before the pause's cancel took effect: 160 bytes with the
  // default share, paid by idle connections too (one result is all they
  // queue). Capped so that a large share costs only streams that use it.
  // (A reader stuck behind a burst grows it further: see the top.)
  size_t first_capacity() const noexcept override {
    return std::min<size_t>(max_queued_ + 2, kMaxFirstCapacity);
  }
  static constexpr size_t kMaxFirstCapacity = 16;

  // With the chunk `r` carries queued too, is this stream at its share?
  bool over_share() const noexcept {
    const size_t after = queued() + 1;
    return after >= max_queued_ || (after >= 2 && ring_low());
  }
  bool ring_low() const noexcept { return ring_.available() < ring_.count() / 4; }
  uint32_t limit_bytes() const noexcept {
    return static_cast<uint32_t>(
        std::min<uint64_t>(uint64_t{max_queued_} * kLimitShares * ring_.buffer_size(), UINT32_MAX));
  }

  void prepare(io_uring_sqe* sqe) noexcept override {
    capped_ = false;
    direct_due_ = direct_ && direct_more_;
    direct_more_ = false;
    if (direct_) {
      // (Non-blocking while an interrupt drains the socket.)
      io_uring_prep_recv(sqe, file_.fd, direct_buf_.data() + direct_offset_, direct_len_,
                         interrupt_pending_ ? MSG_DONTWAIT : 0);
      file_.apply(sqe);
      direct_armed_ = true;
      return;
    }
    if (offered_ >= 0) {
      // Non-blocking: a stream waits in line only after ENOBUFS, so its
      // socket holds data, but a buffer must never wait on an idle socket.
      io_uring_prep_recv(sqe, file_.fd, ring_.data(static_cast<uint16_t>(offered_)),
                         ring_.buffer_size(), MSG_DONTWAIT);
      file_.apply(sqe);
      return;
    } else if (interrupt_pending_) {
      // Drain: bytes the peer sent before the interrupt are still read (and
      // answered); EAGAIN once the socket is empty ends it.
      io_uring_prep_recv(sqe, file_.fd, nullptr, 0, MSG_DONTWAIT);
    } else if (single_) {
      io_uring_prep_recv(sqe, file_.fd, nullptr, 0, 0);  // one chunk; no F_MORE
    } else {
      io_uring_prep_recv_multishot(sqe, file_.fd, nullptr, 0, 0);
      // Ends (without F_MORE) after kLimitShares shares of full buffers,
      // armed again once the reader waits (see the top of the file).
      capped_ = ring_.recv_limit();
      if (capped_) sqe->file_index = limit_bytes();  // sqe->optlen
    }
    if (poll_first_) sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = ring_.group();
    file_.apply(sqe);
  }
  bool ready_to_arm() noexcept override {
    // The orphan reclaimer must know an offered buffer (it is not in the CQE).
    context_ = offered_ >= 0
                   ? (kOfferedBit | uint64_t{static_cast<uint16_t>(offered_)} << 16 | ring_.group())
                   : ring_.group();
    if (offered_ >= 0 || direct_) return true;  // needs no buffer of the ring
    poll_first_ = false;
    // After ENOBUFS, wait in line for a buffer of one's own, whatever
    // available() says: what is in the ring goes to whichever armed recv's
    // data arrives first (and recvs in flight may have taken it already), so
    // re-arming would end in ENOBUFS again, a round trip per stream per
    // turn, and under a flood, every turn.
    const bool dry = std::exchange(ran_dry_, false);
    // The ring held buffers back from the kernel: not dry, armed at once.
    // (Widened here, where arming looks at the ring anyway; the ENOBUFS
    // completion only notes that the stream ran dry.)
    if (dry && ring_.widen_window()) return true;
    // (An interrupt's drain still tries: bytes the peer sent before it are
    // to be answered.)
    if (ring_.available() > 0 && (!dry || interrupt_pending_)) return true;
    if (interrupt_pending_ && waiter_) {
      // Nothing to drain into: the interrupt now (resumed from the loop; we
      // may be inside the reader's await_suspend).
      drained_ = true;
      push(Item{kInterrupted, 0});
      loop_->schedule(std::exchange(waiter_, {}));
      return false;
    }
    if (!dry && !interrupt_pending_) {
      // The ring is dry, but nothing says this socket has data: wait for
      // data holding no buffer (a recv with an empty ring fails at once
      // unless it polls first). Once data comes, ENOBUFS puts the stream in
      // line; idle streams never queue up there for buffers they would
      // only pass on.
      poll_first_ = true;
      return true;
    }
    loop_->count_recv_dry_wait();
    // A stream whose last chunk filled its buffer (bulk data, more waiting)
    // keeps its place at the head but is not handed a buffer: a recv into
    // one buffer takes one buffer's worth, where its woken multishot recv
    // takes all its data fills.
    ring_.wait_for_buffers(
        this, bulk_ ? std::min(races_lost_, BufferRing::kHandOffAfter - 1) : races_lost_);
    ring_.note_starved();
    return false;
  }
  bool absorb_final(const OpResult& r) noexcept override {
    if (r.res == -EAGAIN && std::exchange(offer_found_nothing_, false)) return true;
    if (r.res == -EINVAL && std::exchange(capped_, false)) {
      // The kernel took the limit when probed but refuses it now: the
      // ring's recvs go without from here on, this one first.
      ring_.disable_recv_limit();
      return true;
    }
    if (r.res != -ENOBUFS) return false;
    loop_->count_enobufs();
    ran_dry_ = true;
    if (std::exchange(woken_, false)) ++races_lost_;  // woken for a buffer, and still none
    return true;
  }
  void on_cqe(const OpResult& r) noexcept override {
    if (r.has_buffer()) {
      woken_ = false;
      races_lost_ = 0;
      bulk_ = r.res >= static_cast<int32_t>(ring_.buffer_size());
      if (!std::exchange(counted_, false)) ring_.mark_taken();
    }
  }
  bool on_buffer_offered(uint16_t id) noexcept override {
    if (!waiter_ || armed_) return false;
    offered_ = id;
    arm_or_wait();
    if (!armed_) offered_ = -1;  // a foreign stop got there first
    return armed_;
  }
  bool on_buffers_available() noexcept override {
    if (waiter_) arm_or_wait();
    woken_ = armed_;
    return armed_;
  }
  // Through the loop's ring registry and the ring's waiter list, so that a
  // stream (or ring) destroyed before the post runs is never touched.
  void wake_foreign() noexcept override {
    loop_->post([loop = loop_, group = ring_.group(), self = static_cast<BufferWaiter*>(this)] {
      if (BufferRing* ring = loop->buffer_ring(group)) ring->wake_waiter(self);
    });
  }

  absl::StatusOr<RecvBuffer> to_buffer(const Item& item) noexcept {
    if (item.res < 0) return errno_to_status(-item.res, "recv_multishot");
    if (item.flags & kDirectFlag) {
      return RecvBuffer::view(direct_buf_.data() + direct_offset_, static_cast<size_t>(item.res));
    }
    if (item.copy != nullptr)
      return RecvBuffer::adopt_copy(item.copy, static_cast<size_t>(item.res));
    if (!(item.flags & IORING_CQE_F_BUFFER)) return RecvBuffer();  // EOF (res == 0)
    RecvBuffer buf = ring_.take(static_cast<uint16_t>(item.flags >> IORING_CQE_BUFFER_SHIFT),
                                static_cast<size_t>(item.res));
    if (item.res == 0) return RecvBuffer();  // EOF with a buffer: give it back
    return buf;
  }

  static void reclaim(EventLoop& loop, const OpSlot& slot, const OpResult& r) {
    const bool offered = (slot.context & kOfferedBit) != 0;
    if (!r.has_buffer() && !offered) return;
    if (BufferRing* ring = loop.buffer_ring(static_cast<uint16_t>(slot.context))) {
      if (offered) {
        ring->give_back(static_cast<uint16_t>(slot.context >> 16));
      } else {
        ring->mark_taken();
        ring->give_back(r.buffer_id());
      }
    }
  }

  // First the fields a message touches, then the rest: a connection's
  // state is out of the cache when its next message comes, with thousands
  // of them, and each of its cache lines is a miss (net's StreamState puts
  // this stream last of its own such fields).
  FileRef file_;
  BufferRing& ring_;
  // The flags a completion reads (on_result()) first: with ring_, one cache
  // line in net's StreamState.
  bool direct_armed_ = false;  // a recv into direct_buf_ is in flight
  bool direct_ = false;        // the next recv armed goes into direct_buf_
  bool single_ = true;
  bool cancel_outstanding_ = false;  // interrupt()'s or a pause's cancel of the armed op
  bool interrupt_pending_ = false;
  bool bulk_ = false;         // the last chunk filled its buffer
  bool direct_more_ = false;  // the last direct recv left bytes in the socket
  bool direct_due_ = false;   // the one armed now was armed right after that
  bool drained_ = false;      // interrupted, and the socket was read dry since
  bool ran_dry_ = false;      // the last recv ended with ENOBUFS
  bool capped_ = false;       // the multishot recv armed last has a byte limit
  static constexpr uint64_t kOfferedBit = uint64_t{1} << 32;  // in the op slot's context
  int32_t offered_ = -1;              // the offered buffer the armed recv receives into
  bool counted_ = false;              // the result in hand carries an offered buffer
  bool offer_found_nothing_ = false;  // the recv into an offered buffer found the socket empty
  bool poll_first_ = false;           // arm with IORING_RECVSEND_POLL_FIRST (the ring is dry)
  bool woken_ = false;                // armed for a buffer given back while it waited in line
  uint32_t races_lost_ = 0;           // ... and that recv found the ring dry all the same, in a row
  // Marks a queued result whose bytes are in direct_buf_ (a bit no recv CQE
  // carries; such a result carries no ring buffer).
  static constexpr uint32_t kDirectFlag = 1u << 14;
  static constexpr uint32_t kPromoteAfter = 32;
  uint32_t max_queued_ = 8;
  uint32_t streak_ = 0;  // single-shot chunks in a row that found the reader waiting

  absl::Status interrupt_status_;
  // receive_into(): the reader's buffer, and where in it the recv goes.
  std::vector<uint8_t> direct_buf_;
  size_t direct_offset_ = 0;
  size_t direct_len_ = 0;
  size_t direct_got_ = 0;  // bytes the recv put there
  StopSlot stop_slot_;
  StopSlot& stop_slot() noexcept override { return stop_slot_; }
};

inline RecvStream recv_multishot(FileRef file, BufferRing& ring) noexcept {
  return RecvStream(file, ring);
}

}  // namespace coring
