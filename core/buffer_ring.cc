#include "coring/core/buffer_ring.h"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_format.h"
#include "coring/core/errno_status.h"
#include "coring/core/event_loop.h"
#include "coring/pool/buffer_arena.h"

namespace coring {
namespace {

// Every buffer of a ring gets written by the kernel sooner or later, and the
// first write into an untouched page faults inside the recv (with huge
// pages, zeroing 2 MiB there). Touching the block up front moves that cost
// to start-up and makes the ring a fixed cost in the server's RSS, not one
// that looks like it grows with connections.
void prefault(uint8_t* p, size_t bytes) noexcept {
#ifndef MADV_POPULATE_WRITE
  constexpr int MADV_POPULATE_WRITE = 23;  // Linux 5.14
#endif
  const size_t page = 4096;
  const auto begin = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
  const uintptr_t end = reinterpret_cast<uintptr_t>(p) + bytes;
  if (::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_WRITE) == 0) return;
  // Older kernels: one write per page does the same.
  for (uintptr_t a = begin; a < end; a += page) {
    reinterpret_cast<volatile uint8_t*>(std::max(a, reinterpret_cast<uintptr_t>(p)))[0] = 0;
  }
}

constexpr size_t kPage = 4096;

// Calls act(i, end) for each maximal run [i, end) of indices below n for
// which in(i) holds.
template <class In, class Act>
void for_each_run(uint32_t n, In in, Act act) {
  for (uint32_t i = 0; i < n;) {
    if (!in(i)) {
      ++i;
      continue;
    }
    uint32_t end = i;
    while (end < n && in(end)) ++end;
    act(i, end);
    i = end;
  }
}

// madvise(MADV_DONTNEED) on the pages (of `page` bytes) of [begin, end):
// the ones wholly inside it, and those at its ends that lie wholly inside
// [lo, hi) (the memory around it that holds nothing either).
void drop_pages(const uint8_t* lo, const uint8_t* begin, const uint8_t* end, const uint8_t* hi,
                size_t page) noexcept {
  const auto down = [page](const uint8_t* p) {
    return reinterpret_cast<uintptr_t>(p) & ~(page - 1);
  };
  const auto up = [page](const uint8_t* p) {
    return (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
  };
  const uintptr_t b = down(begin) >= reinterpret_cast<uintptr_t>(lo) ? down(begin) : up(begin);
  const uintptr_t e = up(end) <= reinterpret_cast<uintptr_t>(hi) ? up(end) : down(end);
  if (b < e) ::madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
}

// The kernel's head of a provided-buffer ring (IORING_REGISTER_PBUF_STATUS,
// Linux 6.8; liburing 2.3 has no helper): entries from it to our tail are
// still in the ring. -1 if the kernel cannot tell.
int kernel_head(int ring_fd, uint16_t group) noexcept {
  struct {
    uint32_t buf_group;
    uint32_t head;
    uint32_t resv[8];
  } status{};
  status.buf_group = group;
  constexpr unsigned kRegisterPbufStatus = 26;
  if (::syscall(__NR_io_uring_register, ring_fd, kRegisterPbufStatus, &status, 1) != 0) return -1;
  return static_cast<int>(status.head & 0xffff);
}

}  // namespace

absl::StatusOr<std::unique_ptr<BufferRing>> BufferRing::create(EventLoop& loop,
                                                               pool::BufferArena& arena,
                                                               uint32_t count, uint32_t buffer_size,
                                                               uint32_t max_count) {
  if (count == 0 || count > 32768 || (count & (count - 1)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("BufferRing: count %u must be a power of two in [1, 32768]", count));
  }
  if (max_count == 0) max_count = count;
  if (max_count < count || max_count > 32768 || (max_count & (max_count - 1)) != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "BufferRing: max_count %u must be a power of two in [count %u, 32768]", max_count, count));
  }
  if (buffer_size == 0) return absl::InvalidArgumentError("BufferRing: buffer_size must be > 0");
  absl::StatusOr<pool::BufferBlock> block = arena.carve(count, buffer_size);
  if (!block.ok()) return block.status();
  prefault(block->buffer(0), size_t{count} * buffer_size);
  std::unique_ptr<BufferRing> ring(
      new BufferRing(loop, std::move(*block), count, buffer_size, max_count));

  ring->ring_bytes_ = max_count * sizeof(io_uring_buf);
  void* mem =
      mmap(nullptr, ring->ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mem == MAP_FAILED) return errno_to_status(errno, "BufferRing: mmap");
  ring->ring_ = static_cast<io_uring_buf_ring*>(mem);
  io_uring_buf_ring_init(ring->ring_);

  ring->group_ = loop.allocate_buffer_group();
  io_uring_buf_reg reg;
  std::memset(&reg, 0, sizeof(reg));
  reg.ring_addr = reinterpret_cast<uint64_t>(ring->ring_);
  reg.ring_entries = max_count;
  reg.bgid = ring->group_;
  const int ret = io_uring_register_buf_ring(loop.ring().raw(), &reg, 0);
  if (ret < 0) return errno_to_status(-ret, "io_uring_register_buf_ring");
  ring->registered_ = true;
  loop.register_buffer_ring(ring->group_, ring.get());
  // The window's worth into the kernel's ring, the rest held back (the
  // lowest ids on top, as they would have gone in).
  ring->window_ = std::min(count, kMinWindow);
  for (uint32_t i = 0; i < ring->window_; ++i) {
    io_uring_buf_ring_add(ring->ring_, ring->block_.buffer(i), buffer_size,
                          static_cast<uint16_t>(i), io_uring_buf_ring_mask(max_count),
                          static_cast<int>(i));
  }
  io_uring_buf_ring_advance(ring->ring_, static_cast<int>(ring->window_));
  ring->in_ring_ = ring->window_;
  ring->low_ = ring->window_;
  ring->held_back_.resize(max_count);
  for (uint32_t i = count; i > ring->window_; --i) {
    ring->held_back_[ring->held_++] = static_cast<uint16_t>(i - 1);
  }
  return ring;
}

BufferRing::BufferRing(EventLoop& loop, pool::BufferBlock block, uint32_t count,
                       uint32_t buffer_size, uint32_t max_count)
    : loop_(loop),
      block_(std::move(block)),
      count_(count),
      block_count_(count),
      max_count_(max_count),
      buffer_size_(buffer_size),
      recv_limit_(loop.ring().recv_limit()),
      parked_(max_count - count, true) {}

BufferRing::~BufferRing() {
  // The timer's timespec lives in its op slot: orphaning it is enough.
  if (reclaim_armed_) loop_.abandon_op(reclaim_index_, /*borrowed_memory=*/false);
  if (outstanding_ != 0) {
    std::fprintf(stderr, "coring: buffer ring %u destroyed with %u buffers still held\n", group_,
                 outstanding_);
    assert(outstanding_ == 0 && "every RecvBuffer must be released before its BufferRing");
  }
  if (registered_) {
    loop_.unregister_buffer_ring(group_);
    io_uring_unregister_buf_ring(loop_.ring().raw(), group_);
  }
  if (ring_ != nullptr) munmap(ring_, ring_bytes_);
}

void BufferRing::put_in_ring(uint16_t id) noexcept {
  io_uring_buf_ring_add(ring_, data(id), buffer_size_, id, io_uring_buf_ring_mask(max_count_), 0);
  io_uring_buf_ring_advance(ring_, 1);
  ++in_ring_;
}

void BufferRing::add(uint16_t id) noexcept {
  if (id >= block_count_) parked_[id - block_count_] = false;
  // (A ring at its full window keeps every free buffer in: entries of a
  // retired block still there do not count against it.)
  if (in_ring_ < window_ || window_ >= count_) {
    put_in_ring(id);
  } else {
    held_back_[held_++] = id;
  }
}

void BufferRing::fill_window() noexcept {
  while (in_ring_ < window_ && held_ > 0) put_in_ring(held_back_[--held_]);
}

void BufferRing::check_window() noexcept {
  narrow_countdown_ = kNarrowAfter;
  if (low_ >= window_ - window_ / 4 && window_ / 2 >= kMinWindow) window_ /= 2;
  low_ = in_ring_;
}

bool BufferRing::widen_window() noexcept {
  if (held_ == 0) return false;
  window_ = std::min(std::max(window_ * 2, in_ring_ + 1), count_);
  low_ = 0;  // (no narrowing in this period)
  fill_window();
  return true;
}

RecvBuffer BufferRing::take(uint16_t id, size_t length) noexcept {
  assert(id < max_count_);
  return RecvBuffer(this, data(id), length, id);
}

void BufferRing::give_back(uint16_t id) noexcept {
  assert(outstanding_ > 0);
  --outstanding_;
  if (retired(id)) {
    park(id);
    return;
  }
  if (waiters_ != nullptr && offer(id)) return;
  add(id);
  // One waiter per buffer: the first that takes its turn arms a recv, which
  // the buffer serves.
  wake_one();
}

BufferWaiter* BufferRing::pop_waiter() noexcept {
  BufferWaiter* w = waiters_;
  unlink(w);
  return w;
}

void BufferRing::unlink(BufferWaiter* w) noexcept {
  (w->prev_waiter_ != nullptr ? w->prev_waiter_->next_waiter_ : waiters_) = w->next_waiter_;
  (w->next_waiter_ != nullptr ? w->next_waiter_->prev_waiter_ : waiters_tail_) = w->prev_waiter_;
  // (A lost waiter's predecessor lost too, or there is none.)
  if (lost_tail_ == w) lost_tail_ = w->prev_waiter_;
  w->prev_waiter_ = w->next_waiter_ = nullptr;
  w->waiting_ = false;
  if (waiters_ == nullptr) {  // the dry spell is over
    dry_in_period_ += Clock::now() - dry_since_;
  }
}

bool BufferRing::offer(uint16_t id) noexcept {
  // A waiter that no longer reads passes the buffer on.
  bool taken = false;
  while (waiters_ != nullptr && waiters_->races_lost_ >= kHandOffAfter && !taken) {
    BufferWaiter* w = pop_waiter();
    if (++outstanding_ > peak_outstanding_) peak_outstanding_ = outstanding_;
    taken = w->on_buffer_offered(id);
    if (!taken) --outstanding_;
  }
  if (waiters_ == nullptr) stop_reclaim();
  if (taken) loop_.count_recv_handoff();
  return taken;
}

bool BufferRing::wake_one() noexcept {
  // A waiter that no longer reads passes the turn on.
  bool taken = false;
  while (waiters_ != nullptr && !taken) taken = pop_waiter()->on_buffers_available();
  if (waiters_ == nullptr) stop_reclaim();
  return taken;
}

size_t BufferRing::drop_granule(uint32_t b) const noexcept {
  return grown_[b - 1].huge_pages() == pool::HugePageMode::kExplicit ? pool::kHugePageSize : kPage;
}

const uint8_t* BufferRing::edge(uint32_t b, uint32_t i) const noexcept {
  const pool::MappedRegion& region = grown_[b - 1];
  return i < block_count_ ? region.data() + size_t{i} * buffer_size_
                          : region.data() + region.size();
}

void BufferRing::park(uint16_t id) noexcept {
  parked_[id - block_count_] = true;
  // The pages it lies on go back once every buffer on them is parked (their
  // memory holds nothing), never while one may hold data: found by walking
  // the parked neighbours as far as those pages reach (a page may hold
  // several small buffers, a huge page over a hundred).
  const uint32_t b = id / block_count_;
  const uint32_t first = b * block_count_;
  const size_t page = drop_granule(b);
  const auto at = [&](uint32_t i) { return reinterpret_cast<uintptr_t>(edge(b, i)); };
  const uintptr_t page_lo = at(id - first) & ~(page - 1);
  const uintptr_t page_hi = (at(id - first) + buffer_size_ + page - 1) & ~(page - 1);
  uint32_t lo = id - first;
  uint32_t hi = lo + 1;
  while (lo > 0 && at(lo) > page_lo && parked_[first + lo - 1 - block_count_]) --lo;
  while (hi < block_count_ && at(hi) < page_hi && parked_[first + hi - block_count_]) ++hi;
  const uint8_t* const p = edge(b, id - first);
  drop_pages(edge(b, lo), p, p + buffer_size_, edge(b, hi), page);
}

bool BufferRing::grow() noexcept {
  if (count_ + block_count_ > max_count_) return false;
  const uint32_t b = blocks_in_use_;
  const auto first = static_cast<uint16_t>(b * block_count_);
  if (b - 1 == grown_.size()) {
    // Huge pages where the system offers them, as the arena's: measured,
    // pipelined 1000 x 16 KiB SBMP frames cost 7.6 us each with the grown
    // buffers on 4 KiB pages against 5.3 with a fixed ring of as many.
    absl::StatusOr<pool::MappedRegion> region = pool::MappedRegion::map(
        size_t{block_count_} * buffer_size_, kPage, pool::HugePagePolicy::kAuto);
    if (!region.ok()) return false;
    prefault(region->data(), region->size());
    grown_.push_back(std::move(*region));
    ++blocks_in_use_;
    for (uint32_t i = 0; i < block_count_; ++i) add(static_cast<uint16_t>(first + i));
  } else {
    // A retired block again: what came back goes in; what is still in the
    // ring or held stays where it is.
    ++blocks_in_use_;
    restore_pages(b);
    for (uint32_t i = 0; i < block_count_; ++i) {
      const auto id = static_cast<uint16_t>(first + i);
      if (parked_[id - block_count_]) add(id);
    }
  }
  count_ += block_count_;
  // It grew because streams starved with every buffer free in the kernel's
  // ring: all of them go in.
  window_ = count_;
  low_ = 0;
  fill_window();
  ++grows_;
  loop_.count_recv_ring_grow();
  return true;
}

void BufferRing::restore_pages(uint32_t b) noexcept {
  // Its parked buffers gave their memory back a page at a time, which
  // splits the block's huge pages; faulted in again inside the recvs, 4 KiB
  // at a time, they cost the raw echo 45-49 us per message at 1000
  // connections pipelining 16 x 64 KiB, against 31-33 in a block mapped
  // anew. Collapsed into huge pages again (Linux 6.1; its contents are
  // kept) and touched up front, the block is as good as new.
#ifndef MADV_COLLAPSE
  constexpr int MADV_COLLAPSE = 25;
#endif
  pool::MappedRegion& region = grown_[b - 1];
  if (region.huge_pages() == pool::HugePageMode::kTransparent) {
    ::madvise(region.data(), region.size(), MADV_COLLAPSE);
  }
  // Only parked buffers are touched: the others may hold data.
  const uint32_t first = b * block_count_;
  for_each_run(
      block_count_, [&](uint32_t i) { return parked_[first + i - block_count_]; },
      [&](uint32_t i, uint32_t end) {
        prefault(data(static_cast<uint16_t>(first + i)), size_t{end - i} * buffer_size_);
      });
}

bool BufferRing::shrink() noexcept {
  if (blocks_in_use_ <= 1) return false;
  --blocks_in_use_;
  count_ -= block_count_;
  ++shrinks_;
  loop_.count_recv_ring_shrink();
  // Its buffers still in the ring stay there (a provided-buffer ring cannot
  // take entries back) and are parked as the kernel hands them out. Their
  // memory can go now, but only that of buffers the kernel has not taken:
  // one taken whose CQE is not reaped yet holds data. Entries from the
  // kernel's head to our tail are untaken, and under DEFER_TASKRUN nothing
  // takes more before this thread enters the kernel for completions again
  // (otherwise task work could run at the end of any syscall: keep them).
  const uint32_t b = blocks_in_use_;
  const uint32_t first = b * block_count_;
  std::vector<bool> untaken(block_count_, false);
  const int head = (loop_.ring().setup_flags() & IORING_SETUP_DEFER_TASKRUN) != 0
                       ? kernel_head(loop_.ring().fd(), group_)
                       : -1;
  if (head >= 0) {
    const uint16_t tail = ring_->tail;
    for (auto i = static_cast<uint16_t>(head); i != tail; ++i) {
      const uint16_t id = ring_->bufs[i & (max_count_ - 1)].bid;
      if (id >= first && id < first + block_count_) untaken[id - first] = true;
    }
  }
  for_each_run(
      block_count_, [&](uint32_t i) { return untaken[i]; },
      [&](uint32_t i, uint32_t end) {
        drop_pages(edge(b, i), edge(b, i), edge(b, end), edge(b, end), drop_granule(b));
      });
  // Those held back are parked now: they never went to the kernel.
  uint32_t kept = 0;
  for (uint32_t i = 0; i < held_; ++i) {
    const uint16_t id = held_back_[i];
    if (id >= first && id < first + block_count_) {
      park(id);
    } else {
      held_back_[kept++] = id;
    }
  }
  held_ = kept;
  if (window_ > count_) window_ = count_;
  return true;
}

void BufferRing::stop_reclaim() noexcept {
  // Nobody waits: the timer has nothing to do (and an idle loop no op in
  // flight) unless the ring is grown (its shrink timer takes over) or
  // could grow and streams starved (whether they stay dry long enough
  // decides growth).
  if (!reclaim_armed_ || reclaim_cancelling_ || blocks_in_use_ > 1 || watching_dry_spell()) {
    return;
  }
  reclaim_cancelling_ = true;
  loop_.cancel_op(loop_.ops().user_data(reclaim_index_));
}

void BufferRing::wait_for_buffers(BufferWaiter* waiter, uint32_t races_lost) noexcept {
  if (waiter->waiting_) return;
  if (waiters_ == nullptr) dry_since_ = Clock::now();
  waiter->waiting_ = true;
  waiter->races_lost_ = races_lost;
  // A waiter that lost its race goes ahead of those that have not had a
  // turn yet (behind the others that lost theirs).
  BufferWaiter* prev = waiters_tail_;
  if (races_lost > 0) {
    prev = lost_tail_;
    lost_tail_ = waiter;
  }
  BufferWaiter*& next = prev != nullptr ? prev->next_waiter_ : waiters_;
  waiter->prev_waiter_ = prev;
  waiter->next_waiter_ = next;
  (next != nullptr ? next->prev_waiter_ : waiters_tail_) = waiter;
  next = waiter;
}

void BufferRing::cancel_wait(BufferWaiter* waiter) noexcept {
  if (!waiter->waiting_) return;
  unlink(waiter);
  if (waiters_ == nullptr) stop_reclaim();
}

void BufferRing::hold(BufferHolder* holder) noexcept {
  if (holder->holding_) return;
  holder->holding_ = true;
  holder->seen_ = false;
  holder->prev_holder_ = nullptr;
  holder->next_holder_ = holders_;
  if (holders_ != nullptr) holders_->prev_holder_ = holder;
  holders_ = holder;
  if (waiters_ != nullptr) arm_reclaim();  // streams already starve
}

void BufferRing::release(BufferHolder* holder) noexcept {
  if (!holder->holding_) return;
  holder->holding_ = false;
  if (holder->prev_holder_ != nullptr) {
    holder->prev_holder_->next_holder_ = holder->next_holder_;
  } else {
    holders_ = holder->next_holder_;
  }
  if (holder->next_holder_ != nullptr) holder->next_holder_->prev_holder_ = holder->prev_holder_;
  holder->prev_holder_ = holder->next_holder_ = nullptr;
}

void BufferRing::note_starved() noexcept {
  starved_ = true;
  starved_in_period_ = true;
  arm_reclaim();
}

void BufferRing::arm_reclaim() noexcept {
  if (!reclaim_armed_) {
    arm_timer(kReclaimPeriod);
  } else if (timer_period_ != kReclaimPeriod && !reclaim_cancelling_) {
    // The shrink timer: cancelled, its completion arms the reclaim one.
    reclaim_cancelling_ = true;
    loop_.cancel_op(loop_.ops().user_data(reclaim_index_));
  }
}

void BufferRing::arm_timer(std::chrono::milliseconds period) noexcept {
  OpTable& ops = loop_.ops();
  reclaim_index_ = ops.acquire(this);
  OpSlot& slot = ops[reclaim_index_];
  slot.pending = 1;
  slot.ts.tv_sec = std::chrono::duration_cast<std::chrono::seconds>(period).count();
  slot.ts.tv_nsec = std::chrono::nanoseconds(period % std::chrono::seconds(1)).count();
  io_uring_sqe* sqe = loop_.get_sqe();
  io_uring_prep_timeout(sqe, &slot.ts, 0, 0);
  sqe->user_data = ops.user_data(reclaim_index_);
  reclaim_armed_ = true;
  timer_period_ = period;
  // The period starts now for the dry-time count (a spell under way too).
  dry_in_period_ = {};
  if (waiters_ != nullptr) dry_since_ = Clock::now();
}

void BufferRing::schedule() noexcept {
  if (reclaim_armed_) return;
  if (waiters_ != nullptr || watching_dry_spell()) {
    arm_timer(kReclaimPeriod);
  } else if (blocks_in_use_ > 1) {
    starved_ = false;
    peak_outstanding_ = outstanding_;
    arm_timer(kShrinkPeriod);
  }
}

void BufferRing::on_complete(const OpResult& result) noexcept {
  reclaim_armed_ = false;
  if (result.res == -ECANCELED) {
    // Our own cancel (nobody waited any more, or streams starve while the
    // shrink timer ran): what the ring needs now. Anyone else's: the loop
    // is shutting down.
    if (std::exchange(reclaim_cancelling_, false)) schedule();
    return;
  }
  reclaim_cancelling_ = false;  // it expired first; the cancel finds nothing
  if (timer_period_ == kReclaimPeriod) {
    const bool released = reclaim();
    // A waiter woken for a buffer may have had nothing to read, leaving the
    // buffer free while others wait: as many turns as there are free buffers.
    for (uint32_t free = available(); free > 0 && wake_one(); --free) {
    }
    // Streams waited for buffers kDryPerPeriod or more in this period,
    // and no holder was stuck: the second such period in a row grows the
    // ring. (Dry spells come and go with the load: streams waiting right
    // at a tick would miss most of them.)
    Clock::duration dry_time = std::exchange(dry_in_period_, Clock::duration{});
    if (waiters_ != nullptr) {
      const Clock::time_point now = Clock::now();
      dry_time += now - std::exchange(dry_since_, now);
    }
    starved_in_period_ = false;
    const bool dry = dry_time >= kDryPerPeriod;
    if (dry && !released) {
      if (++dry_periods_ >= 2 && grow()) {
        dry_periods_ = 0;
        for (uint32_t free = available(); free > 0 && wake_one(); --free) {
        }
      }
    } else {
      dry_periods_ = 0;
    }
  } else if (!starved_ && waiters_ == nullptr &&
             peak_outstanding_ + block_count_ / 4 <= count_ - block_count_) {
    // Nobody starved and the ring without its newest block would have kept
    // a quarter block free all along.
    shrink();
  }
  schedule();
}

bool BufferRing::reclaim() noexcept {
  bool released = false;
  for (BufferHolder* h = holders_; h != nullptr;) {
    BufferHolder* next = h->next_holder_;
    if (h->seen_ && h->reads_ == h->reads_seen_) {
      // Its reader took nothing for a whole period while others starve.
      // Letting go gives buffers back, which wakes waiters; none of that
      // touches the list of holders.
      release(h);
      h->release_held();
      released = true;
    } else {
      h->seen_ = true;
      h->reads_seen_ = h->reads_;
    }
    h = next;
  }
  return released;
}

void BufferRing::wake_waiter(const BufferWaiter* waiter) noexcept {
  for (BufferWaiter* p = waiters_; p != nullptr; p = p->next_waiter_) {
    if (p == waiter) {
      cancel_wait(p);
      p->on_buffers_available();
      return;
    }
  }
}

}  // namespace coring
