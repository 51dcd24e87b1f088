#include "coring/core/event_loop.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_format.h"
#include "coring/core/buffer_ring.h"
#include "coring/core/errno_status.h"
#include "coring/core/fixed_files.h"
#include "coring/pool/buffer_arena.h"
#include "coring/pool/slab_pool.h"

namespace coring {

namespace {

// IORING_REGISTER_SEND_MSG_RING (Linux 6.13): a MSG_RING without a source
// ring, for threads that run no loop. Not in liburing 2.3's headers.
constexpr unsigned kRegisterSendMsgRing = 31;
constexpr unsigned kReapBatch = 64;
constexpr unsigned kRemoteBatch = 4096;

// A failure that repeats (a task that throws per connection, an
// io_uring_enter error each iteration) is printed the 1st, 2nd, 4th, 8th...
// time only; LoopStats counts every one.
bool worth_printing(uint64_t nth) { return (nth & (nth - 1)) == 0; }

// A posted function, allocated from the posting thread's frame allocator.
template <class Fn>
struct FnNode final : PostNode {
  explicit FnNode(Fn&& f) : fn(std::move(f)) { run = &FnNode::invoke; }
  static void invoke(PostNode* self) noexcept {
    auto* node = static_cast<FnNode*>(self);
    std::move(node->fn)();
    node->~FnNode();
    frame_deallocate(node, sizeof(FnNode));
  }
  Fn fn;
};

}  // namespace

std::string LoopStats::to_string() const {
  return absl::StrFormat(
      "iterations=%u sqes_submitted=%u submit_calls=%u cqes=%u sq_full=%u cq_overflows=%u "
      "cq_dropped=%u enobufs=%u recv_dry_waits=%u recv_handoffs=%u recv_ring_grows=%u "
      "recv_ring_shrinks=%u recv_direct=%u recv_direct_bytes=%u recv_pauses=%u "
      "recv_spills=%u recv_spilled_bytes=%u "
      "ops_in_flight=%u msg_ring_sent=%u msg_ring_received=%u "
      "foreign_wakes=%u eventfd_wakes=%u posts_run=%u stale_cqes=%u task_failures=%u "
      "enter_errors=%u silent_sends=%u",
      iterations, sqes_submitted, submit_calls, cqes, sq_full, cq_overflows, cq_dropped, enobufs,
      recv_dry_waits, recv_handoffs, recv_ring_grows, recv_ring_shrinks, recv_direct,
      recv_direct_bytes, recv_pauses, recv_spills, recv_spilled_bytes, ops_in_flight, msg_ring_sent,
      msg_ring_received, foreign_wakes, eventfd_wakes, posts_run, stale_cqes, task_failures,
      enter_errors, silent_sends);
}

// Makes this loop current on the thread and installs its frame allocator.
class EventLoop::Scope {
 public:
  explicit Scope(EventLoop* loop)
      : previous_(detail::t_current_loop), frames_(loop->options_.slab_pool) {
    detail::t_current_loop = loop;
  }
  ~Scope() { detail::t_current_loop = previous_; }

 private:
  EventLoop* previous_;
  FrameAllocatorScope frames_;
};

EventLoop::EventLoop(LoopOptions options)
    : options_(std::move(options)), owner_(std::this_thread::get_id()) {}

absl::StatusOr<std::unique_ptr<EventLoop>> EventLoop::create(LoopOptions options) {
  std::unique_ptr<EventLoop> loop(new EventLoop(std::move(options)));
  if (absl::Status s = loop->init(); !s.ok()) return s;
  return loop;
}

absl::Status EventLoop::init() {
  absl::StatusOr<std::unique_ptr<Ring>> ring = Ring::create(options_.ring);
  if (!ring.ok()) return ring.status();
  ring_ = std::move(*ring);
  mailbox_->msg_ring_ok = !options_.force_eventfd_wakeup && ring_->supports(IORING_OP_MSG_RING);
  mailbox_->ring_fd = ::fcntl(ring_->fd(), F_DUPFD_CLOEXEC, 0);
  if (mailbox_->ring_fd < 0) return errno_to_status(errno, "dup(ring fd)");
  eventfd_ = ::eventfd(0, EFD_CLOEXEC);
  if (eventfd_ < 0) return errno_to_status(errno, "eventfd");
  mailbox_->eventfd = eventfd_;

  if (options_.fixed_files > 0) {
    absl::StatusOr<std::unique_ptr<FixedFiles>> files =
        FixedFiles::create(*ring_, options_.fixed_files);
    if (!files.ok()) return files.status();
    fixed_files_ = std::move(*files);
  }
  if (options_.arena != nullptr && options_.register_buffers) {
    if (absl::Status s = options_.arena->check_memlock(); !s.ok()) return s;
    absl::Span<const iovec> regions = options_.arena->regions();
    const int ret = io_uring_register_buffers(ring_->raw(), regions.data(),
                                              static_cast<unsigned>(regions.size()));
    if (ret < 0) return errno_to_status(-ret, "io_uring_register_buffers");
    buffers_registered_ = true;
  }
  ready_.reserve(64);
  running_.reserve(64);
  deferred_cqes_.reserve(ring_->cq_entries());
  silent_sends_ = ring_->silent_send();
  if (silent_sends_) {
    silent_.reserve(64);
  }
  arm_eventfd_read();
  return absl::OkStatus();
}

EventLoop::~EventLoop() {
  if (ring_ != nullptr) shutdown();
}

EventLoop::Mailbox::~Mailbox() {
  if (ring_fd >= 0) ::close(ring_fd);
  if (eventfd >= 0) ::close(eventfd);
}

void EventLoop::shutdown() noexcept {
  Scope scope(this);
  // Let posted work and ready coroutines run once more (they may finish).
  for (int round = 0; round < 4; ++round) run_once(false);
  // Still-suspended detached tasks are destroyed; their awaiters orphan
  // their operations (and cancel those that borrowed frame memory).
  for (std::coroutine_handle<>& h : detached_) {
    if (h) std::exchange(h, {}).destroy();
  }
  detached_.clear();
  detached_free_.clear();
  ready_.clear();
  shutting_down_ = true;  // the eventfd read is not re-armed from here on
  // Cancel the rest (multishot ops of destroyed streams, the eventfd read)
  // and wait for every final CQE: the kernel must be done with our memory
  // before it goes away.
  for (int attempt = 0; attempt < 200 && (ops_.in_use() > 0 || eventfd_armed_); ++attempt) {
    io_uring_sqe* sqe = get_sqe();
    // Every op in one request (Linux 5.19+); every other round one at a
    // time, for a kernel that refuses CANCEL_ALL.
    io_uring_prep_cancel64(
        sqe, 0, IORING_ASYNC_CANCEL_ANY | (attempt % 2 == 0 ? IORING_ASYNC_CANCEL_ALL : 0));
    sqe->user_data = kIgnoreUserData;
    __kernel_timespec ts{.tv_sec = 0, .tv_nsec = 10'000'000};
    io_uring_cqe* cqe = nullptr;
    io_uring_submit_and_wait_timeout(ring_->raw(), &cqe, 1, &ts, nullptr);
    if (!silent_.empty()) complete_silent();
    reap();
  }
  if (ops_.in_use() > 0) {
    std::fprintf(stderr, "coring: event loop closed with %zu operations still in flight\n",
                 ops_.in_use());
  }
  // Posted nodes that arrived too late still get to run (and free themselves).
  while (PostNode* node = mailbox_->queue.pop()) node->run(node);
  fixed_files_.reset();
}

void EventLoop::run() {
  Scope scope(this);
  while (!mailbox_->stop_requested.load(std::memory_order_acquire)) iterate(true);
  mailbox_->stop_requested.store(false, std::memory_order_release);
}

void EventLoop::stop() {
  if (is_owner_thread()) {
    mailbox_->stop_requested.store(true, std::memory_order_release);
    return;
  }
  std::shared_ptr<Mailbox> mailbox = mailbox_;  // the loop may be gone once the flag is seen
  mailbox->stop_requested.store(true, std::memory_order_release);
  if (!mailbox->wake_pending.exchange(true, std::memory_order_acq_rel)) wake(*mailbox);
}

void EventLoop::run_once(bool block) {
  Scope scope(this);
  iterate(block);
}

void EventLoop::run_until(bool& done) {
  Scope scope(this);
  bool* outer = std::exchange(until_, &done);
  while (!done) iterate(true);
  until_ = outer;
}

void EventLoop::iterate(bool block) {
  ++iterations_;
  if (!ready_.empty() || local_head_ != nullptr) run_ready();
  Mailbox& mailbox = *mailbox_;
  if (!mailbox.queue.empty()) drain_remote();
  // Other threads' frees wait in the pool's queue for its owner to take
  // them back. The pool does so itself before it grows and in trim(), so
  // looking every 64th iteration keeps its stats current enough: looking
  // every time cost a server woken once per message ~0.75% of its CPU
  // (two cache lines, cold after each wait).
  if ((iterations_ & 63) == 0 && options_.slab_pool != nullptr) options_.slab_pool->drain();
  // Silent sends prepared before the hooks run (none but in a hook, unless
  // a submit has not taken them yet) may be needed by now: no waiting then.
  const bool silent_before_hooks = !silent_.empty();
  if (hooks_head_ != nullptr || later_head_ != nullptr) run_submit_hooks();
  // Still armed hooks are due in the next pass (before_next_submit).
  const bool idle = ready_.empty() && local_head_ == nullptr && deferred_cqes_.empty() &&
                    mailbox.queue.empty() && hooks_head_ == nullptr && !silent_before_hooks &&
                    !mailbox.stop_requested.load(std::memory_order_relaxed) &&
                    !(until_ != nullptr && *until_);
  // Silent sends just prepared: waiting in the submit that takes them
  // saves the io_uring_enter a CQE of theirs would have cost. After a busy
  // turn, though, more is likely to come at once, and sleeping first costs
  // more than that enter: then submit, reap, and wait in the next turn.
  const bool busy = cqes_ - cqes_at_enter_ > kBusyTurnCqes;
  cqes_at_enter_ = cqes_;
  const bool wait = block && idle && (silent_.empty() || !busy);
  const int ret = wait ? ring_->submit_and_wait(1) : ring_->submit();
  if (ret < 0 && ret != -EAGAIN && ret != -EBUSY && ret != -ETIME && ret != -EINTR &&
      worth_printing(++enter_errors_)) {
    std::fprintf(stderr, "coring: io_uring_enter failed (%llu so far): %s\n",
                 static_cast<unsigned long long>(enter_errors_),
                 errno_to_status(-ret).ToString().c_str());
  }
  // First: what dispatching the CQEs resumes may write again, and finds
  // those sends done.
  if (!silent_.empty()) complete_silent();
  reap();
}

void EventLoop::run_ready() {
  running_.swap(ready_);
  for (std::coroutine_handle<> h : running_) h.resume();
  running_.clear();
  PostNode* node = std::exchange(local_head_, nullptr);
  local_tail_ = nullptr;
  while (node != nullptr) {
    PostNode* next = node->next.load(std::memory_order_relaxed);
    ++posts_run_;
    node->run(node);
    node = next;
  }
}

void EventLoop::link_hook(SubmitHook*& head, SubmitHook*& tail, SubmitHook& hook) noexcept {
  hook.next_ = nullptr;
  hook.prev_ = tail;
  (tail != nullptr ? tail->next_ : head) = &hook;
  tail = &hook;
}

void EventLoop::before_submit(SubmitHook& hook) noexcept {
  if (hook.armed_) return;
  hook.armed_ = true;
  link_hook(hooks_head_, hooks_tail_, hook);
}

void EventLoop::before_next_submit(SubmitHook& hook) noexcept {
  if (hook.armed_) return;
  hook.armed_ = true;
  hook.later_ = true;
  link_hook(later_head_, later_tail_, hook);
}

void EventLoop::cancel_before_submit(SubmitHook& hook) noexcept {
  if (!hook.armed_) return;
  hook.armed_ = false;
  SubmitHook*& head = hook.later_ ? later_head_ : hooks_head_;
  SubmitHook*& tail = hook.later_ ? later_tail_ : hooks_tail_;
  hook.later_ = false;
  (hook.prev_ != nullptr ? hook.prev_->next_ : head) = hook.next_;
  (hook.next_ != nullptr ? hook.next_->prev_ : tail) = hook.prev_;
  hook.prev_ = hook.next_ = nullptr;
}

void EventLoop::run_submit_hooks() noexcept {
  // Hooks armed while these run (by a hook) run too, before the submit.
  while (SubmitHook* hook = hooks_head_) {
    cancel_before_submit(*hook);
    hook->run(hook);
  }
  // Those armed for the submit after this one are due in the next pass;
  // until then the loop must not block (iterate() sees hooks_head_).
  for (SubmitHook* hook = later_head_; hook != nullptr; hook = hook->next_) hook->later_ = false;
  hooks_head_ = std::exchange(later_head_, nullptr);
  hooks_tail_ = std::exchange(later_tail_, nullptr);
}

void EventLoop::drain_remote() {
  for (unsigned i = 0; i < kRemoteBatch; ++i) {
    PostNode* node = mailbox_->queue.pop();
    if (node == nullptr) break;
    ++posts_run_;
    node->run(node);
  }
}

void EventLoop::dispatch_deferred_cqes() noexcept {
  // Dispatch may reap aside again: those CQEs are newer than the rest of
  // the snapshot and older than anything still in the CQ, so they go next.
  while (!deferred_cqes_.empty()) {
    std::vector<Cqe> pending;
    pending.swap(deferred_cqes_);
    for (const Cqe& c : pending) dispatch(c);
    pending.clear();
    if (deferred_cqes_.empty()) deferred_cqes_.swap(pending);  // keep the capacity
  }
}

void EventLoop::reap() {
  dispatch_deferred();
  io_uring* raw = ring_->raw();
  const unsigned mask = raw->cq.ring_mask;
  // The CQ read inline (what io_uring_peek_batch_cqe does, without the
  // call): this runs every iteration. One CQE, the common case of a
  // request/response loop, skips the batch.
  unsigned head = *raw->cq.khead;
  unsigned ready = io_uring_smp_load_acquire(raw->cq.ktail) - head;
  if (ready == 1) {
    const io_uring_cqe& c = raw->cq.cqes[head & mask];
    const Cqe one{c.user_data, c.res, c.flags};
    io_uring_cq_advance(raw, 1);
    ++cqes_;
    dispatch(one);
    dispatch_deferred();
    if (!ring_->cq_needs_check()) return;
    head = *raw->cq.khead;
    ready = io_uring_smp_load_acquire(raw->cq.ktail) - head;
  }
  Cqe batch[kReapBatch];
  const unsigned max_rounds = ring_->cq_entries() / kReapBatch * 4 + 4;
  for (unsigned round = 0; round < max_rounds; ++round) {
    if (round > 0) {
      head = *raw->cq.khead;
      ready = io_uring_smp_load_acquire(raw->cq.ktail) - head;
    }
    const unsigned n = ready < kReapBatch ? ready : kReapBatch;
    for (unsigned i = 0; i < n; ++i) {
      const io_uring_cqe& c = raw->cq.cqes[(head + i) & mask];
      batch[i] = Cqe{c.user_data, c.res, c.flags};
    }
    // Advance before dispatching: a resumed coroutine may reap again.
    if (n > 0) io_uring_cq_advance(raw, n);
    cqes_ += n;
    for (unsigned i = 0; i < n; ++i) dispatch(batch[i]);
    // What a dispatch reaped aside came after this batch and before what the
    // CQ holds now: deliver it first.
    dispatch_deferred();
    if (n == kReapBatch) continue;
    // A short batch emptied the CQ, unless the kernel holds a backlog
    // (overflow): then enter to have it flushed and keep reaping.
    if (!ring_->cq_needs_check() || !ring_->check_cq_overflow()) break;
    ring_->submit();
  }
}

void EventLoop::complete_silent() noexcept {
  // Each was taken by a submit (the SQ is empty), within which it posted
  // its CQE if it posts one: in the CQ now, or dispatched already (none
  // waits aside or in the kernel's overflow list). Those with a CQE in the
  // CQ are left to it.
  if (ring_->sq_ready() != 0 || !deferred_cqes_.empty() || ring_->cq_needs_check()) return;
  io_uring* raw = ring_->raw();
  const unsigned mask = raw->cq.ring_mask;
  const unsigned tail = io_uring_smp_load_acquire(raw->cq.ktail);
  for (unsigned head = *raw->cq.khead; head != tail; ++head) {
    const io_uring_cqe& c = raw->cq.cqes[head & mask];
    // (A send's CQE is its last: multishot results, most of a busy CQ, are
    // not looked up.)
    if ((c.user_data & kInternalBit) || (c.flags & IORING_CQE_F_MORE)) continue;
    if (OpSlot* slot = ops_.lookup(c.user_data & ~kCompanionBit); slot != nullptr) {
      slot->cqe_due = true;
    }
  }
  // Their targets may prepare more (appended, for the next submit).
  const size_t n = silent_.size();
  for (size_t i = 0; i < n; ++i) {
    const Silent s = silent_[i];  // (an append may move the vector)
    OpSlot* slot = ops_.lookup(s.user_data);
    // Its CQE came, or comes: it did not send every byte.
    if (slot == nullptr || slot->cqe_due) continue;
    ++silent_completions_;
    deliver(*slot, OpTable::index_of(s.user_data), OpResult{s.res, 0, false}, true);
  }
  silent_.erase(silent_.begin(), silent_.begin() + static_cast<ptrdiff_t>(n));
}

bool EventLoop::is_silent(uint64_t user_data) const noexcept {
  for (const Silent& s : silent_) {
    if (s.user_data == user_data) return true;
  }
  return false;
}

void EventLoop::reap_aside() noexcept {
  io_uring* raw = ring_->raw();
  ring_->check_cq_overflow();
  io_uring_cqe* cqe = nullptr;
  if (io_uring_peek_cqe(raw, &cqe) != 0) {
    ring_->submit();  // get the kernel to flush what it holds
  }
  unsigned head;
  unsigned n = 0;
  io_uring_for_each_cqe(raw, head, cqe) {
    deferred_cqes_.push_back(Cqe{cqe->user_data, cqe->res, cqe->flags});
    ++n;
  }
  io_uring_cq_advance(raw, n);
  cqes_ += n;
}

void EventLoop::dispatch(const Cqe& cqe) noexcept {
  const uint64_t ud = cqe.user_data;
  if (ud & kInternalBit) {
    if (ud == kWakeUserData) {
      ++msg_ring_received_;
      on_wake();
    } else if (ud == kEventfdUserData) {
      eventfd_armed_ = false;
      if (cqe.res > 0) {
        ++eventfd_wakes_;
        on_wake();
      }
      if (cqe.res != -ECANCELED && !shutting_down_) arm_eventfd_read();
    }
    return;
  }
  const bool companion = (ud & kCompanionBit) != 0;
  OpSlot* slot = ops_.lookup(ud & ~kCompanionBit);
  if (slot == nullptr) {
    ++stale_cqes_;
    return;
  }
  const uint32_t index = OpTable::index_of(ud);
  if (companion) {
    if (cqe.res == -ETIME) slot->timed_out = true;
    if (--slot->pending == 0 && slot->main_done) {
      deliver(*slot, index, OpResult{slot->main_res, slot->main_flags, slot->timed_out}, true);
    }
    return;
  }
  OpResult result{cqe.res, cqe.flags, false};
  if (result.more()) {
    deliver(*slot, index, result, false);
    return;
  }
  if (--slot->pending > 0) {
    // Linked: the result goes out with the timeout's verdict.
    slot->main_done = true;
    slot->main_res = cqe.res;
    slot->main_flags = cqe.flags;
    return;
  }
  result.timed_out = slot->timed_out;
  if (OpTarget* target = slot->target; target != nullptr) [[likely]] {
    ops_.release(index, *slot);
    target->on_complete(result);
    return;
  }
  deliver(*slot, index, result, true);
}

void EventLoop::deliver(OpSlot& slot, uint32_t index, const OpResult& result, bool final) noexcept {
  OpTarget* target = slot.target;
  if (target == nullptr) {
    if (slot.reclaim != nullptr) slot.reclaim(*this, slot, result);
    if (final) ops_.release(index);
    return;
  }
  if (final) ops_.release(index, slot);
  target->on_complete(result);
}

io_uring_sqe* EventLoop::get_sqe_slow() noexcept {
  for (;;) {
    if (io_uring_sqe* sqe = ring_->get_sqe(); sqe != nullptr) return sqe;
    // The kernel took nothing (a CQ backlog): make room in the CQ and retry.
    reap_aside();
  }
}

void EventLoop::reserve_sqes(unsigned n) noexcept {
  while (!ring_->reserve(n)) reap_aside();
}

void EventLoop::cancel_op(uint64_t user_data) {
  if (!is_owner_thread()) {
    post([this, user_data] { cancel_op(user_data); });
    return;
  }
  if (ops_.lookup(user_data) == nullptr) return;  // already complete
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_cancel64(sqe, user_data, 0);
  sqe->user_data = kIgnoreUserData;
}

void EventLoop::abandon_op(uint32_t index, bool borrowed_memory) noexcept {
  OpSlot& slot = ops_[index];
  slot.target = nullptr;
  const uint64_t ud = ops_.user_data(index);
  if (!borrowed_memory) {
    cancel_op(ud);
    return;
  }
  // The op may still sit in the SQ, where a cancel would not find it.
  ring_->submit();
  if (ops_.lookup(ud) == nullptr) return;
  // A silent send a submit took is done: it completes within that submit
  // (its slot goes in complete_silent(), or with its CQE).
  if (ring_->sq_ready() == 0 && is_silent(ud)) return;
  io_uring_sync_cancel_reg reg;
  std::memset(&reg, 0, sizeof(reg));
  reg.addr = ud;
  reg.fd = -1;
  reg.timeout.tv_sec = -1;
  reg.timeout.tv_nsec = -1;
  const int ret = io_uring_register_sync_cancel(ring_->raw(), &reg);
  // 0: cancelled; ENOENT: already completed (its CQE is on the way). Either
  // way the kernel is done with the op's memory.
  if (ret == 0 || ret == -ENOENT) return;
  // No synchronous cancel: cancel asynchronously and wait for the final CQE,
  // setting every other completion aside for the next reap.
  cancel_op(ud);
  while (ops_.lookup(ud) != nullptr) {
    ring_->submit_and_wait(1);
    reap_aside();
    for (size_t i = 0; i < deferred_cqes_.size();) {
      if ((deferred_cqes_[i].user_data & ~kCompanionBit) == ud) {
        const Cqe c = deferred_cqes_[i];
        deferred_cqes_.erase(deferred_cqes_.begin() + static_cast<ptrdiff_t>(i));
        dispatch(c);
      } else {
        ++i;
      }
    }
  }
}

void EventLoop::post(absl::AnyInvocable<void() &&> fn) {
  using Node = FnNode<absl::AnyInvocable<void() &&>>;
  void* memory = frame_allocate(sizeof(Node));
  post_node(new (memory) Node(std::move(fn)));
}

void EventLoop::post_node(PostNode* node) noexcept {
  if (is_owner_thread()) {
    node->next.store(nullptr, std::memory_order_relaxed);
    if (local_tail_ != nullptr) {
      local_tail_->next.store(node, std::memory_order_relaxed);
    } else {
      local_head_ = node;
    }
    local_tail_ = node;
    return;
  }
  // Once pushed, the node may run and the loop finish and be destroyed
  // before this thread continues: from here on only the mailbox is touched.
  std::shared_ptr<Mailbox> mailbox = mailbox_;
  mailbox->queue.push(node);
  // Only the first poster after the loop took its last wake-up sends one.
  if (!mailbox->wake_pending.exchange(true, std::memory_order_acq_rel)) wake(*mailbox);
}

void EventLoop::schedule(std::coroutine_handle<> h) { ready_.push_back(h); }

void EventLoop::wake(Mailbox& mailbox) noexcept {
  EventLoop* from = detail::t_current_loop;
  if (from != nullptr && from->mailbox_.get() != &mailbox && from->mailbox_->msg_ring_ok &&
      mailbox.msg_ring_ok) {
    // From the poster's own ring. Its CQE comes back to the poster: success
    // needs nothing; failure means the target ring is gone (nobody to wake).
    const uint32_t index = from->ops_.acquire(nullptr);
    OpSlot& slot = from->ops_[index];
    slot.reclaim = [](EventLoop&, const OpSlot&, const OpResult& result) {
      if (result.res < 0) {
        std::fprintf(stderr, "coring: MSG_RING wake-up failed: %s\n",
                     errno_to_status(-result.res).ToString().c_str());
      }
    };
    slot.pending = 1;
    io_uring_sqe* sqe = from->get_sqe();
    io_uring_prep_msg_ring(sqe, mailbox.ring_fd, 0, kWakeUserData, 0);
    sqe->user_data = from->ops_.user_data(index);
    ++from->msg_ring_sent_;
    return;
  }
  if (mailbox.msg_ring_ok && mailbox.sync_msg_ring_ok.load(std::memory_order_relaxed)) {
    io_uring_sqe sqe;
    std::memset(&sqe, 0, sizeof(sqe));
    io_uring_prep_msg_ring(&sqe, mailbox.ring_fd, 0, kWakeUserData, 0);
    const int ret = io_uring_register(static_cast<unsigned>(-1), kRegisterSendMsgRing, &sqe, 1);
    if (ret >= 0) {
      mailbox.foreign_wakes.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if (ret == -EINVAL || ret == -EOPNOTSUPP) {
      mailbox.sync_msg_ring_ok.store(false, std::memory_order_relaxed);
    }
  }
  wake_by_eventfd(mailbox);
}

void EventLoop::wake_by_eventfd(Mailbox& mailbox) noexcept {
  const uint64_t one = 1;
  ssize_t n;
  do {
    n = ::write(mailbox.eventfd, &one, sizeof(one));
  } while (n < 0 && errno == EINTR);
}

void EventLoop::arm_eventfd_read() noexcept {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_read(sqe, eventfd_, &eventfd_value_, sizeof(eventfd_value_), 0);
  sqe->user_data = kEventfdUserData;
  eventfd_armed_ = true;
}

void EventLoop::on_wake() noexcept {
  // Cleared before the queue is drained (next iteration): a poster that
  // pushes after this exchange sends a fresh wake-up.
  mailbox_->wake_pending.exchange(false, std::memory_order_acq_rel);
}

void EventLoop::spawn_task(Task<> task) {
  if (!is_owner_thread()) {
    post([this, t = std::move(task)]() mutable { spawn_task(std::move(t)); });
    return;
  }
  uint32_t index;
  if (!detached_free_.empty()) {
    index = detached_free_.back();
    detached_free_.pop_back();
  } else {
    index = static_cast<uint32_t>(detached_.size());
    detached_.emplace_back();
    detached_free_.reserve(detached_.capacity());
  }
  detached_[index] =
      detail::make_detached(std::move(task), [this, index](std::exception_ptr e) noexcept {
        detached_[index] = {};
        detached_free_.push_back(index);
        if (!e) return;
        ++task_failures_;
        if (options_.on_task_error) {
          options_.on_task_error(e);
          return;
        }
        if (!worth_printing(task_failures_)) return;
        const auto n = static_cast<unsigned long long>(task_failures_);
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          std::fprintf(stderr, "coring: a spawned task failed (%llu so far): %s\n", n, ex.what());
        } catch (...) {
          std::fprintf(stderr,
                       "coring: a spawned task failed (%llu so far) with a non-std exception\n", n);
        }
      });
  schedule(detached_[index]);
}

LoopStats EventLoop::stats() const {
  const RingCounters& rc = ring_->counters();
  LoopStats s;
  s.iterations = iterations_;
  s.sqes_submitted = rc.sqes_submitted;
  s.submit_calls = rc.submit_calls;
  s.cqes = cqes_;
  s.sq_full = rc.sq_full;
  s.cq_overflows = rc.cq_overflows;
  s.cq_dropped = rc.cq_dropped;
  s.enobufs = enobufs_;
  s.recv_pauses = recv_pauses_;
  s.recv_spills = recv_spills_;
  s.recv_spilled_bytes = recv_spilled_bytes_;
  s.recv_dry_waits = recv_dry_waits_;
  s.recv_handoffs = recv_handoffs_;
  s.recv_ring_grows = recv_ring_grows_;
  s.recv_ring_shrinks = recv_ring_shrinks_;
  s.recv_direct = recv_direct_;
  s.recv_direct_bytes = recv_direct_bytes_;
  s.ops_in_flight = ops_.in_use();
  s.msg_ring_sent = msg_ring_sent_;
  s.msg_ring_received = msg_ring_received_;
  s.foreign_wakes = mailbox_->foreign_wakes.load(std::memory_order_relaxed);
  s.eventfd_wakes = eventfd_wakes_;
  s.task_failures = task_failures_;
  s.enter_errors = enter_errors_;
  s.posts_run = posts_run_;
  s.stale_cqes = stale_cqes_;
  s.silent_sends = silent_completions_;
  return s;
}

void EventLoop::register_buffer_ring(uint16_t group, BufferRing* ring) {
  if (buffer_rings_.size() <= group) buffer_rings_.resize(size_t{group} + 1, nullptr);
  buffer_rings_[group] = ring;
}

void EventLoop::unregister_buffer_ring(uint16_t group) noexcept {
  if (group < buffer_rings_.size()) buffer_rings_[group] = nullptr;
}

BufferRing* EventLoop::buffer_ring(uint16_t group) noexcept {
  return group < buffer_rings_.size() ? buffer_rings_[group] : nullptr;
}

uint16_t EventLoop::allocate_buffer_group() noexcept {
  for (size_t g = 0; g < buffer_rings_.size(); ++g) {
    if (buffer_rings_[g] == nullptr) return static_cast<uint16_t>(g);
  }
  return static_cast<uint16_t>(buffer_rings_.size());
}

}  // namespace coring
