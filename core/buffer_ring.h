// BufferRing: an io_uring provided-buffer ring (io_uring_register_buf_ring)
// whose buffers are carved from the thread's pool::BufferArena, and
// RecvBuffer, the RAII handle on one buffer the kernel filled.
//
//   absl::StatusOr<std::unique_ptr<BufferRing>> ring = BufferRing::create(loop, arena, 256, 4096);
//   RecvStream stream = recv_multishot(fd, **ring);            // recv_stream.h
//   absl::StatusOr<RecvBuffer> buf = co_await stream.next();
//   use(buf->span());                                          // buffer returns to the ring
//                                                              // when `buf` is destroyed
//
// The kernel picks a buffer per received chunk, so an idle connection holds
// none. When the application holds every buffer, multishot recvs end with
// ENOBUFS: that is normal flow, counted in LoopStats::enobufs, and the
// streams re-arm as buffers come back, one stream per buffer (BufferWaiter). Every buffer
// must be back when the ring is destroyed (outstanding() == 0; asserted in
// debug builds, reported on stderr otherwise). Owner thread only, and the
// ring must outlive its RecvBuffers and streams.
//
// A buffer given back while streams wait in line goes back in the ring and
// wakes the first waiter, which arms its recv. That recv may still find
// the ring dry: the recvs armed before it in the same submit (other woken
// streams, multishot ones taking every buffer their data fills) got there
// first. A waiter that lost such a race goes to the head of the line; one
// that lost kHandOffAfter in a row may be handed the next buffer itself
// (BufferWaiter::on_buffer_offered()) and receive into that very buffer.
// Without that, a quiet connection lost race after race while peers
// flooded the thread: in the hostile suite under ASan (64 peers flooding
// small frames), a victim's echo waited up to 0.7-1.4 s; 0.6 s with the
// head of the line alone; ~0.2 s with hand-offs after 2 lost races. A recv
// into one buffer takes one buffer's worth where a woken multishot recv
// takes all its data fills, so RecvStream asks for hand-offs only while
// its chunks are smaller than a buffer: handing buffers to bulk streams
// too cost the raw echo 15-25% of its msgs/s with 256 connections
// pipelining 16 x 64 KiB (the ring overcommitted by honest load).
//
// Elastic (create()'s max_count above count): the kernel's ring is
// registered with max_count entries, but only `count` buffers exist at
// first.
// * Growth: when streams found the ring dry in two reclaim periods in a
//   row and no holder was stuck (honest load outgrew the ring), it grows
//   by another `count` buffers, mapped for it (not registered: sends from
//   them take the unregistered path). 1000 connections pipelining
//   16 x 16 KiB SBMP frames ran a ring of 1024 dry ~1.4 times per message
//   in some runs; grown, it served them as fast as a fixed ring of 4096.
//   A period is dry when streams waited for buffers for a quarter of it
//   (kDryPerPeriod), in one spell or many: under honest load most spells
//   are short. The raw echo at 1000 connections pipelining 16 x 16 KiB
//   waited a third of the time, in spells of under a millisecond on
//   average. While only spells that outlasted a period counted, its ring
//   never grew and ran dry 140-170k times in a 4 s run (1-3k grown), and
//   grown it takes 0.86x the server CPU per message (median of 5 paired
//   runs). Earlier, counting every period in which a stream starved at all
//   was measured and not kept: the raw echo 12-17% dearer at 256 and 1000
//   connections x 64 KiB (bigger batches in a bigger ring). Those cells
//   now grow too (256 x 64 KiB waits ~90% of the time), at 0.97-1.07x.
// * Shrinking: after a kShrinkPeriod in which no stream found the ring dry
//   and the application never held so many buffers that the ring without
//   its newest block would have had less than a quarter block free, that
//   block is retired. Its buffers are not put back any more, and their
//   memory goes back to the system (madvise), a page once every buffer on
//   it is back (on explicit huge pages, a whole 2 MiB one: hugetlbfs gives
//   back nothing smaller; and the hugetlbfs pool keeps that page reserved
//   for this mapping, so it counts as free but no one else can map it
//   before the ring is gone - what growing back relies on, as the kernel
//   refills a buffer that shrink() dropped). "No stream starved" alone
//   is not enough: a ring grown to fit the load starves nobody, and
//   retiring it then starved the load again, once a second.
// * Growing back: a retired block that comes back gets its huge pages
//   again and is touched up front (restore_pages()). Its memory, given
//   back a buffer at a time, had split them: the raw echo at 1000
//   connections pipelining 16 x 64 KiB cost 1.3-1.5x as much per message
//   in a ring grown back without that as in one grown anew.
// * A ring that never starves costs what a fixed ring of `count` does. A
//   peer that sends without reading cannot grow it: its buffers are
//   reclaimed first, and a period in which a holder was let go does not
//   count. max_count bounds it in any case.
//
// The kernel takes a ring's buffers in the order they went in, so a buffer
// given back is filled again only after every other free one: with 1024 x
// 16.5 KiB, each recv writes 16 MiB away from the last, into memory long
// gone from the cache. perf, raw echo at a fixed rate of 16 x 64 KiB: the
// recv's copy cost 7.5-8.3 us a message so, 4.3-4.9 in a ring of 128, and
// 2.8-5.5 in the epoll baseline (one buffer, always warm). The ring
// therefore keeps only a window of its free buffers in the kernel's ring,
// the ones given back last, and holds the rest back (held_back()): under
// light load, recvs take turns among about a MiB of buffers. Measured side
// by side with the ring before (bench/run.sh --steer-rx --cc=reno, 5
// rounds; 1, 16, 256, 1000 connections x 1, 16, 64 KiB x ping-pong,
// pipelined, fixed rate), server CPU per message: raw echo 0.96x (median
// of the 36 cells; 32 better, 4 worse), e.g. fixed rate 256 x 1 KiB 0.83x,
// ping-pong 1 x 64 KiB 0.85x; SBMP echo 0.97x (27 better, 9 worse).
// The window starts at kMinWindow. A buffer given back goes straight into
// the kernel's ring while it holds fewer than the window; the held back
// ones go in once the kernel took half the window and the buffers are not
// back yet (a burst, or a reader holding them). A recv that ends with
// ENOBUFS while buffers are held back doubles the window (widen_window():
// the stream re-arms at once, as no stream starved). Every kNarrowAfter
// buffers taken, the window halves if never more than a quarter of it was
// out at once meanwhile. So under load that takes hundreds of buffers a
// turn, every buffer is in the kernel's ring, as without a window; a ring
// of kMinWindow buffers or fewer has no window.
#pragma once

#include <liburing.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "coring/core/frame_allocator.h"
#include "coring/core/operation.h"
#include "coring/pool/buffer_lease.h"
#include "coring/pool/mapped_region.h"

namespace coring {

namespace pool {
class BufferArena;
}
class EventLoop;
class BufferRing;

// Told when buffers came back to a ring that had run dry.
class BufferWaiter {
 public:
  // Buffer `id` was given back and this waiter, first in line, lost
  // BufferRing::kHandOffAfter races for a buffer in a row
  // (wait_for_buffers()). True: the buffer is this waiter's (counted
  // outstanding): it armed a recv into that very buffer, and gives it back
  // (BufferRing::give_back()) if the recv brings no data. False: pass it on.
  virtual bool on_buffer_offered(uint16_t id) noexcept = 0;
  // Buffers are free in the ring (the reclaim timer found some while
  // streams waited) and this waiter is the first in line: true if it took
  // the turn (armed a recv), false to pass it on.
  virtual bool on_buffers_available() noexcept = 0;

 protected:
  ~BufferWaiter() = default;

 private:
  friend class BufferRing;
  BufferWaiter* prev_waiter_ = nullptr;
  BufferWaiter* next_waiter_ = nullptr;
  bool waiting_ = false;
  uint32_t races_lost_ = 0;  // as passed to BufferRing::wait_for_buffers()
};

// Holds ring buffers its reader has not read yet (a RecvStream's queue).
// While some stream waits for buffers (the ring ran dry), the ring checks
// its holders every BufferRing::kReclaimPeriod: one whose reader took
// nothing over a whole period is stuck, and is told to let go
// (release_held(): it moves its chunks out of the ring). A holder whose
// reader reads keeps its buffers: copying them out would cost a memcpy each
// and free nothing for long.
class BufferHolder {
 public:
  virtual void release_held() noexcept = 0;

 protected:
  ~BufferHolder() = default;
  // Bumped by the holder every time its reader takes a chunk.
  uint64_t reads_ = 0;

 private:
  friend class BufferRing;
  // holding_ is read on every read (BufferRing::release()): beside reads_,
  // in the holder's first cache line; the ring's list links last.
  bool holding_ = false;
  bool seen_ = false;        // checked once since it began holding
  uint64_t reads_seen_ = 0;  // reads_ at the last check
  BufferHolder* prev_holder_ = nullptr;
  BufferHolder* next_holder_ = nullptr;
};

class RecvBuffer {
 public:
  RecvBuffer() = default;
  RecvBuffer(RecvBuffer&& other) noexcept
      : ring_(std::exchange(other.ring_, nullptr)),
        data_(std::exchange(other.data_, nullptr)),
        size_(std::exchange(other.size_, 0)),
        id_(other.id_),
        owned_(std::exchange(other.owned_, false)) {}
  RecvBuffer& operator=(RecvBuffer&& other) noexcept {
    if (this != &other) {
      reset();
      ring_ = std::exchange(other.ring_, nullptr);
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
      id_ = other.id_;
      owned_ = std::exchange(other.owned_, false);
    }
    return *this;
  }
  // Bytes moved out of the ring into memory from frame_allocate(size) (a
  // stream at its share gives its buffers back; recv_stream.h); freed with
  // the handle.
  static RecvBuffer adopt_copy(uint8_t* data, size_t size) noexcept {
    RecvBuffer b(nullptr, data, size, 0);
    b.owned_ = true;
    return b;
  }
  // Bytes received straight into the reader's own memory
  // (RecvStream::receive_into()): a view, nothing to give back.
  static RecvBuffer view(uint8_t* data, size_t size) noexcept {
    return RecvBuffer(nullptr, data, size, 0);
  }
  RecvBuffer(const RecvBuffer&) = delete;
  RecvBuffer& operator=(const RecvBuffer&) = delete;
  ~RecvBuffer() { reset(); }

  // Gives the buffer back to its ring now.
  void reset() noexcept;

  // An empty RecvBuffer (size 0, no ring) means end of stream.
  bool empty() const noexcept { return size_ == 0; }
  const uint8_t* data() const noexcept { return data_; }
  uint8_t* data() noexcept { return data_; }
  size_t size() const noexcept { return size_; }
  absl::Span<const uint8_t> span() const noexcept { return {data_, size_}; }
  uint16_t buffer_id() const noexcept { return id_; }
  // The ring this buffer goes back to (nullptr: empty, or a copy).
  BufferRing* ring() const noexcept { return ring_; }
  // Lets go of a ring buffer without giving it back: the caller now owns
  // buffer buffer_id() and gives it back with ring()->give_back() (a send
  // queue sending from it). Only for a buffer with a ring().
  void detach() noexcept {
    ring_ = nullptr;
    data_ = nullptr;
    size_ = 0;
  }

 private:
  friend class BufferRing;
  RecvBuffer(BufferRing* ring, uint8_t* data, size_t size, uint16_t id) noexcept
      : ring_(ring), data_(data), size_(size), id_(id) {}

  BufferRing* ring_ = nullptr;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  uint16_t id_ = 0;
  bool owned_ = false;  // data_ is a copy from frame_allocate(), not a ring buffer
};

class BufferRing final : private OpTarget {
 public:
  // How often holders are checked while streams wait for buffers: a stuck
  // reader holds ring buffers at most about two periods after the ring ran
  // dry.
  static constexpr std::chrono::milliseconds kReclaimPeriod{5};
  // Races for a buffer a waiter lost in a row before it is handed one (see
  // the top of this file).
  static constexpr uint32_t kHandOffAfter = 2;
  // An elastic ring retires its newest grown block after this long with no
  // stream finding it dry and no need for the block (one block per period).
  static constexpr std::chrono::milliseconds kShrinkPeriod{1000};
  // A reclaim period is dry (counts towards growth) when streams waited
  // for buffers this long in it, a quarter of it (see the top of this file).
  static constexpr std::chrono::microseconds kDryPerPeriod{1250};

  // `count` (a power of two, <= 32768) buffers of `buffer_size` bytes,
  // carved from `arena`, registered with `loop`'s ring under a free group
  // id. `max_count` (0: `count`; else a power of two in [count, 32768]):
  // how far the ring may grow, in blocks of `count` (see the top of this
  // file).
  static absl::StatusOr<std::unique_ptr<BufferRing>> create(EventLoop& loop,
                                                            pool::BufferArena& arena,
                                                            uint32_t count, uint32_t buffer_size,
                                                            uint32_t max_count = 0);
  ~BufferRing();
  BufferRing(const BufferRing&) = delete;
  BufferRing& operator=(const BufferRing&) = delete;

  uint16_t group() const noexcept { return group_; }
  // Buffers in use now: `count` of create(), more while grown.
  uint32_t count() const noexcept { return count_; }
  uint32_t max_count() const noexcept { return max_count_; }
  uint32_t buffer_size() const noexcept { return buffer_size_; }
  // Multishot recvs into this ring carry a byte limit
  // (RecvStream::kLimitShares; Ring::recv_limit() at creation, off for good
  // once the kernel refuses a limited recv).
  bool recv_limit() const noexcept { return recv_limit_; }
  void disable_recv_limit() noexcept { recv_limit_ = false; }
  // Buffers the application holds (delivered, not yet returned).
  uint32_t outstanding() const noexcept { return outstanding_; }
  // Buffers free: in the kernel's ring (as far as reaped CQEs tell: recvs in
  // flight may have taken more), or held back to go in as it takes them.
  uint32_t available() const noexcept { return in_ring_ + held_; }
  // Of those, the ones held back, and how many the kernel's ring is kept
  // at (see the top of this file).
  uint32_t held_back() const noexcept { return held_; }
  uint32_t window() const noexcept { return window_; }
  // The smallest window: 64 x 16.5 KiB, about 1 MiB.
  static constexpr uint32_t kMinWindow = 64;
  // Buffers taken between checks for a narrower window.
  static constexpr uint32_t kNarrowAfter = 1024;

  // A CQE carrying a buffer (IORING_CQE_F_BUFFER) arrived: the kernel took
  // one out of the ring.
  void mark_taken() noexcept {
    if (++outstanding_ > peak_outstanding_) peak_outstanding_ = outstanding_;
    --in_ring_;
    if (count_ > kMinWindow) {
      if (in_ring_ < low_) low_ = in_ring_;
      if (--narrow_countdown_ == 0) check_window();
      if (in_ring_ < window_ / 2 && held_ > 0) fill_window();
    }
  }
  // A recv ended with ENOBUFS: if buffers were held back, the window was
  // too narrow for the load. It doubles and is filled; true then (the
  // stream may re-arm at once).
  bool widen_window() noexcept;
  // The buffer a CQE names, as an owning handle (after mark_taken()).
  RecvBuffer take(uint16_t id, size_t length) noexcept;
  // Buffer `id`'s memory (buffer_size() bytes), for a recv into a buffer
  // offered to a waiter.
  uint8_t* data(uint16_t id) noexcept {
    if (id < block_count_) return block_.buffer(id);
    return grown_[id / block_count_ - 1].data() + size_t{id % block_count_} * buffer_size_;
  }
  // Gives buffer `id` back (RecvBuffer does this): to the first waiter if it
  // waits for a buffer of its own and takes it, else into the ring, waking
  // the first waiter.
  void give_back(uint16_t id) noexcept;
  // Registers `waiter` to be told once buffers are given back.
  // `races_lost`: how many times in a row the waiter was woken and its
  // recv found the ring dry all the same; from one on it goes ahead of the
  // waiters that lost none, from kHandOffAfter on it is offered the buffer
  // itself. Otherwise waiters are served in FIFO order, one per buffer
  // given back: waking every waiter for one buffer would arm a recv each,
  // and all but one would end in ENOBUFS (a thundering herd that costs a
  // round trip per waiter per buffer). A waiter with nothing to
  // read does not take the buffer it was woken for, so while streams wait,
  // every kReclaimPeriod the ring also wakes as many waiters as it has
  // buffers free.
  void wait_for_buffers(BufferWaiter* waiter, uint32_t races_lost = 0) noexcept;
  void cancel_wait(BufferWaiter* waiter) noexcept;
  // Tells `waiter` now if it is still registered; `waiter` may name a
  // destroyed object (then it is not in the list and is not touched).
  void wake_waiter(const BufferWaiter* waiter) noexcept;
  // `holder` holds buffers its reader has not read (see BufferHolder);
  // release() once it holds none.
  void hold(BufferHolder* holder) noexcept;
  void release(BufferHolder* holder) noexcept;
  // A stream found the ring dry and waits: check the holders and the free
  // buffers every kReclaimPeriod until no stream waits.
  void note_starved() noexcept;

  // Blocks of `count` buffers added (grow()) and retired (shrink()) so far.
  uint64_t grows() const noexcept { return grows_; }
  uint64_t shrinks() const noexcept { return shrinks_; }
  // Adds a block of `count` buffers (a retired one again, or newly mapped);
  // false at max_count or when the memory cannot be had. The reclaim timer
  // calls it; public for tests.
  bool grow() noexcept;
  // Retires the newest grown block; false if none is grown. The timer calls
  // it after a quiet kShrinkPeriod (see the top of this file); public for
  // tests.
  bool shrink() noexcept;

 private:
  BufferRing(EventLoop& loop, pool::BufferBlock block, uint32_t count, uint32_t buffer_size,
             uint32_t max_count);
  // Buffer `id` is free: into the kernel's ring if the window has room,
  // else held back.
  void add(uint16_t id) noexcept;
  void put_in_ring(uint16_t id) noexcept;
  // Puts held back buffers into the kernel's ring, the last given back
  // first, until it holds the window.
  void fill_window() noexcept;
  // Every kNarrowAfter buffers taken: a narrower window if a quarter of
  // this one was enough (see the top of this file).
  void check_window() noexcept;
  bool retired(uint16_t id) const noexcept {
    return id >= block_count_ && id / block_count_ >= blocks_in_use_;
  }
  // A retired buffer came back: it stays out of the ring, its memory goes
  // back to the system.
  void park(uint16_t id) noexcept;
  // What grown block b's memory goes back to the system in: 2 MiB on
  // explicit huge pages (hugetlbfs gives back only whole ones and fails a
  // smaller madvise with EINVAL; the page stays reserved for the block, see
  // "Shrinking" above), else 4 KiB pages.
  size_t drop_granule(uint32_t b) const noexcept;
  // Where buffer i of grown block b starts; for i == count, the end of the
  // block's memory (the slack after its last buffer holds nothing).
  const uint8_t* edge(uint32_t b, uint32_t i) const noexcept;
  // Brings back the memory of retired block `b`'s parked buffers, as a
  // new block has it (grow()).
  void restore_pages(uint32_t b) noexcept;
  // The timer (IORING_OP_TIMEOUT, its timespec in the op slot): every
  // kReclaimPeriod while streams wait (and one period more after streams
  // starved), every kShrinkPeriod while grown and nobody starves.
  void arm_reclaim() noexcept;
  void arm_timer(std::chrono::milliseconds period) noexcept;
  // Streams starved in this period or the last was dry, and the ring may
  // still grow: the timer runs on, and the time streams wait decides.
  bool watching_dry_spell() const noexcept {
    return (dry_periods_ > 0 || starved_in_period_) && count_ < max_count_;
  }
  // Arms the timer the ring's state calls for, if any.
  void schedule() noexcept;
  void on_complete(const OpResult& result) noexcept override;
  // Lets go of every holder whose reader took nothing since the last
  // check; true if it let go of any.
  bool reclaim() noexcept;
  // Wakes the first waiter that takes its turn; false if none did.
  bool wake_one() noexcept;
  // Offers buffer `id` to the first waiters while they lost kHandOffAfter
  // races in a row; false if none took it.
  bool offer(uint16_t id) noexcept;
  // The first waiter, out of the line.
  BufferWaiter* pop_waiter() noexcept;
  void unlink(BufferWaiter* waiter) noexcept;
  // Cancels the timer (asynchronously) once no stream waits.
  void stop_reclaim() noexcept;

  EventLoop& loop_;
  pool::BufferBlock block_;
  io_uring_buf_ring* ring_ = nullptr;
  size_t ring_bytes_ = 0;
  uint32_t count_;        // buffers of the blocks in use
  uint32_t block_count_;  // buffers per block (create()'s count)
  uint32_t max_count_;    // ring entries
  uint32_t buffer_size_;
  bool recv_limit_;
  uint32_t outstanding_ = 0;
  uint32_t in_ring_ = 0;
  // Free buffers not in the kernel's ring, the last given back on top.
  // (max_count entries, held_ of them in use: never grows.)
  std::vector<uint16_t> held_back_;
  uint32_t held_ = 0;
  uint32_t window_ = 0;
  uint32_t low_ = 0;  // the fewest in the kernel's ring since the last check_window()
  uint32_t narrow_countdown_ = kNarrowAfter;
  // Grown blocks (block b at grown_[b - 1]); those from blocks_in_use_ on
  // are retired, mapped until the ring goes (the kernel may still fill
  // their buffers left in the ring).
  std::vector<pool::MappedRegion> grown_;
  // Per grown id (from block_count_ on): out of the ring and not held (a
  // retired block's buffer that came back, or one never put in).
  std::vector<bool> parked_;
  uint32_t blocks_in_use_ = 1;
  using Clock = std::chrono::steady_clock;
  uint32_t dry_periods_ = 0;         // dry reclaim periods in a row
  Clock::time_point dry_since_{};    // while streams wait: since then
  Clock::duration dry_in_period_{};  // streams waited this long in this period (spells over)
  bool starved_in_period_ = false;   // a stream found the ring dry since the last tick
  bool starved_ = false;             // ... since the last shrink check
  uint32_t peak_outstanding_ = 0;    // most buffers held at once since then
  uint64_t grows_ = 0;
  uint64_t shrinks_ = 0;
  uint16_t group_ = 0;
  bool registered_ = false;
  // The line, woken from the head: first the waiters that lost a race (in
  // the order they lost it), then the others (FIFO). Doubly linked, with the
  // end of the first part at hand, so that joining and leaving it are O(1)
  // with thousands of streams in line.
  BufferWaiter* waiters_ = nullptr;
  BufferWaiter* waiters_tail_ = nullptr;
  BufferWaiter* lost_tail_ = nullptr;  // the last waiter that lost a race
  BufferHolder* holders_ = nullptr;
  uint32_t reclaim_index_ = 0;
  std::chrono::milliseconds timer_period_{0};  // of the armed timer
  bool reclaim_armed_ = false;
  bool reclaim_cancelling_ = false;  // stop_reclaim()'s cancel is on its way
};

inline void RecvBuffer::reset() noexcept {
  if (ring_ != nullptr) std::exchange(ring_, nullptr)->give_back(id_);
  if (std::exchange(owned_, false)) frame_deallocate(data_, size_);
  data_ = nullptr;
  size_ = 0;
}

}  // namespace coring
