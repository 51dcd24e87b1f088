// EventLoop: one io_uring ring driven by one thread, running coroutines.
//
//   absl::StatusOr<std::unique_ptr<EventLoop>> loop = EventLoop::create({});
//   int v = (*loop)->block_on(compute());     // runs the loop until the task is done
//   spawn(**loop, serve());                   // detached; see spawn.h
//   (*loop)->run();                           // until stop()
//
// Each iteration runs the coroutines made ready since the last one, runs the
// work other threads posted, drains the slab pool's remote-free queue, runs
// the SubmitHooks armed meanwhile (submit_hook.h), submits every SQE queued during the iteration
// with one io_uring_enter (which also waits when there is nothing else to do), then reaps CQEs in
// batches and resumes their coroutines. SQ full: submit and retry. CQ overflow: counted and
// flushed, never dropped.
//
// Threads: a loop is created on, and only ever run by, the thread that owns
// it (SINGLE_ISSUER rings refuse anyone else). Other threads talk to it only
// through post(), stop() and switch_to(), which wake it with IORING_OP_MSG_RING
// (sent from the poster's own ring, or synchronously through
// IORING_REGISTER_SEND_MSG_RING from a thread with no loop), or an eventfd
// where the kernel has neither. Wake-ups are merged while one is pending and
// never lost. A loop must be alive when post()/stop()/switch_to() is called
// on it; once the message is queued the caller touches only a shared mailbox,
// so the loop may finish and be destroyed while the poster is still returning.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "coring/core/frame_allocator.h"
#include "coring/core/loop_stats.h"
#include "coring/core/operation.h"
#include "coring/core/post_queue.h"
#include "coring/core/ring.h"
#include "coring/core/submit_hook.h"
#include "coring/core/task.h"

namespace coring {

namespace pool {
class SlabPool;
class BufferArena;
}  // namespace pool

class FixedFiles;
class BufferRing;
class EventLoop;

namespace detail {
// The loop running on this thread; owned by that loop (set while it runs).
inline thread_local EventLoop* t_current_loop = nullptr;
}  // namespace detail

struct LoopOptions {
  RingOptions ring;
  // Sparse registered file table; clamped to RLIMIT_NOFILE (so by default
  // RLIMIT_NOFILE sizes it, up to 64 Ki slots: 8 bytes of kernel memory
  // each). 0: no table. It is a speed-up, not a limit: net's Listener takes
  // plain fds once the table is full.
  uint32_t fixed_files = 65536;
  // Installed as this thread's frame allocator while the loop runs, and
  // drained (other threads' frees taken back) every 64 iterations. Not
  // owned; may be null.
  pool::SlabPool* slab_pool = nullptr;
  // Registered with the ring (io_uring_register_buffers) after check_memlock
  // when register_buffers is set. Not owned; may be null.
  pool::BufferArena* arena = nullptr;
  bool register_buffers = true;
  // Wake this loop through its eventfd, as on kernels whose probe lacks
  // IORING_OP_MSG_RING, even where MSG_RING works (tests of the fallback;
  // debugging). Such a loop also sends no MSG_RING from its own ring.
  bool force_eventfd_wakeup = false;
  // Reports an exception that escaped a spawn()ed task. Default: stderr.
  std::function<void(std::exception_ptr)> on_task_error;
};

class EventLoop {
 public:
  // Creates the ring on the calling thread, which becomes the loop's owner.
  static absl::StatusOr<std::unique_ptr<EventLoop>> create(LoopOptions options = {});
  // Destroys still-suspended spawned tasks, cancels what is in flight and
  // waits for every final CQE, then closes the ring. Owner thread.
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // The loop running on this thread (inside run()/run_once()/block_on()), or nullptr.
  static EventLoop* current() noexcept { return detail::t_current_loop; }

  // Runs until stop(). Owner thread.
  void run();
  // One iteration; blocks in the kernel for a completion when `block` and
  // there is nothing ready. Owner thread.
  void run_once(bool block = true);
  // Runs the loop until `task` finishes; returns its result (or rethrows).
  template <class T>
  T block_on(Task<T> task);
  // Makes run() return after the current iteration. Any thread.
  void stop();
  bool stop_requested() const noexcept {
    return mailbox_->stop_requested.load(std::memory_order_acquire);
  }

  // Runs `fn` on this loop's thread. Any thread; FIFO per posting thread.
  void post(absl::AnyInvocable<void() &&> fn);
  // Enqueues an intrusive node (switch_to() uses this). Any thread.
  void post_node(PostNode* node) noexcept;
  // Resumes `h` in the next iteration. Owner thread only.
  void schedule(std::coroutine_handle<> h);
  // Runs `hook` once, just before the next submit to the kernel (see
  // submit_hook.h); arming an armed hook does nothing. Owner thread only.
  void before_submit(SubmitHook& hook) noexcept;
  // Runs `hook` once, just before the submit after the next one, and keeps
  // the loop from blocking in the kernel until then; arming an armed hook
  // does nothing. For a hook that defers itself once (submit_hook.h). Owner
  // thread only.
  void before_next_submit(SubmitHook& hook) noexcept;
  // Disarms `hook` if armed. Owner thread only.
  void cancel_before_submit(SubmitHook& hook) noexcept;

  // Starts a detached task (see spawn.h). Any thread.
  void spawn_task(Task<> task);

  Ring& ring() noexcept { return *ring_; }
  OpTable& ops() noexcept { return ops_; }
  FixedFiles* fixed_files() noexcept { return fixed_files_.get(); }
  pool::SlabPool* slab_pool() const noexcept { return options_.slab_pool; }
  pool::BufferArena* arena() const noexcept { return options_.arena; }
  bool buffers_registered() const noexcept { return buffers_registered_; }
  bool is_owner_thread() const noexcept { return std::this_thread::get_id() == owner_; }
  // Iterations begun so far: work done under one value happened in one
  // turn of the loop (a per-turn budget resets when it changes).
  uint64_t iteration() const noexcept { return iterations_; }
  LoopStats stats() const;
  void count_enobufs() noexcept { ++enobufs_; }
  void count_recv_pause() noexcept { ++recv_pauses_; }
  void count_recv_dry_wait() noexcept { ++recv_dry_waits_; }
  void count_recv_handoff() noexcept { ++recv_handoffs_; }
  void count_recv_ring_grow() noexcept { ++recv_ring_grows_; }
  void count_recv_ring_shrink() noexcept { ++recv_ring_shrinks_; }
  void count_recv_direct(size_t bytes) noexcept {
    ++recv_direct_;
    recv_direct_bytes_ += bytes;
  }
  void count_recv_spill(size_t bytes) noexcept {
    ++recv_spills_;
    recv_spilled_bytes_ += bytes;
  }

  // ---- For awaitables (owner thread) ----
  // A free SQE; submits to make room when the SQ is full and, if the kernel
  // still takes nothing, reaps CQEs aside to unblock it. Never nullptr.
  io_uring_sqe* get_sqe() noexcept {
    if (io_uring_sqe* sqe = ring_->get_sqe(); sqe != nullptr) return sqe;
    return get_sqe_slow();
  }
  // Makes room for `n` SQEs taken back to back (an op and its linked timeout).
  void reserve_sqes(unsigned n) noexcept;
  // Asks the kernel to cancel the operation `user_data` names. Any thread; on
  // the owner thread the request is queued at once (never dropped: a full SQ
  // is submitted to make room), from elsewhere it is posted.
  void cancel_op(uint64_t user_data);
  // The awaiting coroutine of slot `index` is being destroyed while the op is
  // in flight: orphans the slot and makes sure the kernel no longer touches
  // memory the op borrowed (buffers in the dying frame) before returning.
  void abandon_op(uint32_t index, bool borrowed_memory) noexcept;

  // Whether this loop's sends may be silent (Ring::silent_send()).
  bool silent_sends() const noexcept { return silent_sends_; }
  // The op in slot `index` was just prepared as a silent send of `bytes`
  // bytes. Unless a CQE comes for it (it did not send them all: the CQE is
  // posted within the submit that takes it), its target gets the result
  // `bytes` as if a CQE had brought it, right after that submit, before the
  // CQEs reaped then are dispatched. That submit may also wait, until
  // something else completes: so the target must not need this completion
  // to go on (no writer waits on it, nothing is queued behind it), and must
  // not come to need it before that submit (prepared in a SubmitHook:
  // nothing runs in between; one prepared earlier keeps the loop from
  // waiting).
  void expect_silent(uint32_t index, int32_t bytes) {
    silent_.push_back(Silent{ops_.user_data(index), bytes});
  }

  // Buffer rings register themselves so orphaned recv CQEs can return their buffers.
  void register_buffer_ring(uint16_t group, BufferRing* ring);
  void unregister_buffer_ring(uint16_t group) noexcept;
  BufferRing* buffer_ring(uint16_t group) noexcept;
  // A buffer group id not in use on this loop.
  uint16_t allocate_buffer_group() noexcept;

 private:
  struct Cqe {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
  };
  class Scope;
  class WakeOp;

  explicit EventLoop(LoopOptions options);
  absl::Status init();
  // One iteration; the caller has made this loop current (Scope).
  void iterate(bool block);
  // block_on()'s loop: iterates until `done`, with one Scope for all of it.
  void run_until(bool& done);
  io_uring_sqe* get_sqe_slow() noexcept;
  // CQEs reaped aside (reap_aside()) dispatched, oldest first. The test
  // inline: reap() asks twice per call, and there rarely are any.
  void dispatch_deferred() noexcept {
    if (!deferred_cqes_.empty()) dispatch_deferred_cqes();
  }
  void dispatch_deferred_cqes() noexcept;
  void run_ready();
  void run_submit_hooks() noexcept;
  static void link_hook(SubmitHook*& head, SubmitHook*& tail, SubmitHook& hook) noexcept;
  void drain_remote();
  void reap();
  void dispatch(const Cqe& cqe) noexcept;
  void deliver(OpSlot& slot, uint32_t index, const OpResult& result, bool final) noexcept;
  void reap_aside() noexcept;
  // Delivers the silent sends (expect_silent()) that a submit took and
  // that no CQE came for; leaves them for later until then.
  void complete_silent() noexcept;
  bool is_silent(uint64_t user_data) const noexcept;
  void arm_eventfd_read() noexcept;
  void on_wake() noexcept;
  void shutdown() noexcept;

  LoopOptions options_;
  std::thread::id owner_;
  std::unique_ptr<Ring> ring_;
  OpTable ops_;
  std::unique_ptr<FixedFiles> fixed_files_;
  bool buffers_registered_ = false;
  std::vector<BufferRing*> buffer_rings_;

  // Ready work of this thread.
  std::vector<std::coroutine_handle<>> ready_;
  std::vector<std::coroutine_handle<>> running_;
  PostNode* local_head_ = nullptr;
  PostNode* local_tail_ = nullptr;
  // Armed SubmitHooks, in arming order: due before the next submit, and
  // due before the one after it (before_next_submit).
  SubmitHook* hooks_head_ = nullptr;
  SubmitHook* hooks_tail_ = nullptr;
  SubmitHook* later_head_ = nullptr;
  SubmitHook* later_tail_ = nullptr;
  // CQEs reaped while the SQ was stuck (reap_aside), dispatched next.
  std::vector<Cqe> deferred_cqes_;
  // Silent sends (expect_silent()) not delivered yet.
  struct Silent {
    uint64_t user_data;
    int32_t res;
  };
  std::vector<Silent> silent_;
  bool silent_sends_ = false;

  // Cross-thread.
  // Everything another thread touches, shared so that a poster still inside
  // post()/stop() never touches a loop that finished and was destroyed
  // meanwhile (the message it posted may be what let the loop finish).
  struct Mailbox {
    PostQueue queue;
    alignas(64) std::atomic<bool> wake_pending{false};
    std::atomic<bool> stop_requested{false};
    std::atomic<bool> sync_msg_ring_ok{true};
    std::atomic<uint64_t> foreign_wakes{0};
    int ring_fd = -1;  // a dup: keeps the ring file valid for MSG_RING
    int eventfd = -1;
    bool msg_ring_ok = false;
    ~Mailbox();
  };
  // Wakes the loop owning `mailbox` (called after a push, without the loop).
  static void wake(Mailbox& mailbox) noexcept;
  static void wake_by_eventfd(Mailbox& mailbox) noexcept;

  std::shared_ptr<Mailbox> mailbox_ = std::make_shared<Mailbox>();
  int eventfd_ = -1;            // == mailbox_->eventfd
  uint64_t eventfd_value_ = 0;  // the eventfd read's buffer; lives as long as the loop
  bool eventfd_armed_ = false;
  bool shutting_down_ = false;

  // block_on(): the loop must not block once this turns true.
  bool* until_ = nullptr;

  // Detached tasks still running, for shutdown.
  std::vector<std::coroutine_handle<>> detached_;
  std::vector<uint32_t> detached_free_;

  uint64_t iterations_ = 0;
  uint64_t cqes_ = 0;
  uint64_t enobufs_ = 0;
  uint64_t recv_pauses_ = 0;
  uint64_t recv_spills_ = 0;
  uint64_t recv_spilled_bytes_ = 0;
  uint64_t recv_dry_waits_ = 0;
  uint64_t recv_handoffs_ = 0;
  uint64_t recv_ring_grows_ = 0;
  uint64_t recv_ring_shrinks_ = 0;
  uint64_t recv_direct_ = 0;
  uint64_t recv_direct_bytes_ = 0;
  uint64_t msg_ring_sent_ = 0;
  uint64_t msg_ring_received_ = 0;
  uint64_t eventfd_wakes_ = 0;
  uint64_t posts_run_ = 0;
  uint64_t task_failures_ = 0;
  uint64_t enter_errors_ = 0;
  uint64_t stale_cqes_ = 0;
  uint64_t silent_completions_ = 0;
  // cqes_ at the last submit in iterate(): a turn that reaped more than
  // kBusyTurnCqes is busy (see there).
  uint64_t cqes_at_enter_ = 0;
  static constexpr uint64_t kBusyTurnCqes = 2;
};

namespace detail {
template <class T>
struct BlockOnState {
  std::optional<T> value;
};
template <>
struct BlockOnState<void> {};

template <class T>
Task<> block_on_body(Task<T> task, BlockOnState<T>& state, bool& done) {
  struct Done {
    bool& done;
    ~Done() { done = true; }
  } guard{done};
  if constexpr (std::is_void_v<T>) {
    co_await std::move(task);
  } else {
    state.value.emplace(co_await std::move(task));
  }
}
}  // namespace detail

template <class T>
T EventLoop::block_on(Task<T> task) {
  detail::BlockOnState<T> state;
  bool done = false;
  std::exception_ptr error;
  Task<> body = detail::block_on_body(std::move(task), state, done);
  std::coroutine_handle<> h = detail::make_detached(
      std::move(body), [&error](std::exception_ptr e) noexcept { error = std::move(e); });
  schedule(h);
  run_until(done);
  if (error) std::rethrow_exception(error);
  if constexpr (!std::is_void_v<T>) return std::move(*state.value);
}

}  // namespace coring
