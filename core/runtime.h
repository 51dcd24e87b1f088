// Runtime: N threads, each owning one EventLoop, one pool::SlabPool (its
// coroutine frames) and one pool::BufferArena (registered buffers).
//
//   coring::Runtime rt({.threads = 4, .pin = true});
//   if (absl::Status s = rt.start(); !s.ok()) return 1;
//   rt.spawn_on_each([](EventLoop& loop) -> Task<> { co_await serve(loop); });
//   return rt.run_until_signal();         // SIGINT/SIGTERM: hooks, stop, drain, join, 0
//
// Shutdown hooks (add_shutdown_hook) run on the thread in run_until_signal()
// once the signal arrives, before the loops are stopped, in the order they
// were added; a hook may block, e.g. net::Server registers one that drains
// its connections (GOAWAY(SHUTDOWN) to every SBMP peer) while the loops still
// run. They do not run when stop() ends run_until_signal() instead.
//
// start() creates every loop on its own thread and reports the first error
// (ring set-up, memlock, ...). run() blocks until stop(); run_until_signal()
// until SIGINT or SIGTERM or stop(). The Runtime blocks both signals in the
// constructing thread, so every thread it starts inherits the mask, and
// run_until_signal() takes them from a signalfd: the calling thread sleeps in
// poll() on that signalfd and on an eventfd that stop() writes, so it reacts
// at once and wakes for nothing else. Stopping lets each loop finish its
// iteration, destroys its remaining tasks (cancelling their operations) and
// joins the threads.
#pragma once

#include <signal.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "coring/core/event_loop.h"
#include "coring/core/ring.h"
#include "coring/core/task.h"
#include "coring/pool/buffer_arena.h"
#include "coring/pool/slab_pool.h"

namespace coring {

struct RuntimeOptions {
  // 0: one per CPU. At most Runtime::kMaxThreadsPerCpu per CPU (start()
  // refuses more).
  size_t threads = 0;
  bool pin = false;  // pin thread i to CPU i (mod the CPU count)
  RingOptions ring = {};
  uint32_t fixed_files = 65536;  // per loop; see LoopOptions::fixed_files
  pool::SlabPoolOptions slab = {};
  bool buffers = true;  // create and register a BufferArena per thread
  pool::BufferArenaOptions arena = {};
};

class Runtime {
 public:
  // More loops than CPUs buy nothing, and each costs its ring, slab pool and
  // buffers (net's receive ring alone is about 17 MB): asked for 100,000,
  // the process was ended by the kernel's OOM killer before any set-up
  // failed.
  static constexpr size_t kMaxThreadsPerCpu = 16;

  explicit Runtime(RuntimeOptions options = {});
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Starts the threads (once); the first set-up error, if any.
  absl::Status start();
  // start() if needed, then blocks until stop(); 0, or 1 if start failed.
  int run();
  // As run(), but SIGINT or SIGTERM also stops it; returns 0.
  int run_until_signal();
  // Any thread (also from inside a loop).
  void stop();

  // Adds a hook for run_until_signal() (see above); the id removes it. Any
  // thread. The hook must stay callable until removed or run.
  uint64_t add_shutdown_hook(absl::AnyInvocable<void()> hook);
  // Removes a hook that has not run yet (no-op otherwise). Any thread.
  void remove_shutdown_hook(uint64_t id);

  size_t size() const noexcept { return workers_.size(); }
  EventLoop& loop(size_t i) noexcept { return *workers_[i]->loop; }
  pool::BufferArena* arena(size_t i) noexcept { return workers_[i]->arena.get(); }

  // Runs make(loop) as a detached task on every loop. `make` is kept alive
  // as long as the Runtime, so a capturing lambda coroutine may use its
  // captures across suspensions.
  void spawn_on_each(std::function<Task<>(EventLoop&)> make);

 private:
  struct Worker {
    std::thread thread;
    std::unique_ptr<EventLoop> loop;
    std::unique_ptr<pool::SlabPool> slab;
    std::unique_ptr<pool::BufferArena> arena;
    std::mutex mu;  // guards `live` against stop() from other threads
    EventLoop* live = nullptr;
  };
  void worker_main(size_t index, Worker* worker, std::promise<absl::Status>* ready);
  void join();
  int wait();

  void run_shutdown_hooks();

  RuntimeOptions options_;
  std::mutex hooks_mu_;
  std::vector<std::pair<uint64_t, absl::AnyInvocable<void()>>> hooks_;
  uint64_t next_hook_id_ = 1;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::deque<std::function<Task<>(EventLoop&)>> makers_;
  sigset_t signals_{};
  sigset_t previous_mask_{};
  std::atomic<bool> stop_requested_{false};
  // Written by stop(), so that run_until_signal() wakes without polling.
  int stop_fd_ = -1;
  bool started_ = false;
  absl::Status start_status_;
};

}  // namespace coring
