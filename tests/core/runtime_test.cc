// Tests of core/runtime.*: start/stop, work on every thread, signals.
#include "coring/core/runtime.h"

#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <set>
#include <thread>
#include <vector>

#include "coring/core/nop.h"
#include "coring/core/timer.h"

namespace coring {
namespace {

using namespace std::chrono_literals;

RuntimeOptions small(size_t threads) {
  RuntimeOptions o;
  o.threads = threads;
  o.ring.sq_entries = 64;
  o.fixed_files = 64;
  o.slab.capacity_bytes = 4 << 20;
  o.slab.huge_pages = pool::HugePagePolicy::kNever;
  o.arena.classes = {{4096, 16}};
  o.arena.carve_bytes = 256 << 10;
  o.arena.huge_pages = pool::HugePagePolicy::kNever;
  return o;
}

TEST(RuntimeTest, StartsRunsOnEveryThreadAndStops) {
  Runtime rt(small(3));
  ASSERT_TRUE(rt.start().ok());
  ASSERT_EQ(rt.size(), 3u);
  std::atomic<int> ran{0};
  std::mutex mu;
  std::set<std::thread::id> threads;
  rt.spawn_on_each([&](EventLoop& loop) -> Task<> {
    absl::Status s = co_await nop();
    EXPECT_TRUE(s.ok());
    EXPECT_EQ(EventLoop::current(), &loop);
    EXPECT_TRUE(loop.buffers_registered());
    {
      std::lock_guard<std::mutex> lock(mu);
      threads.insert(std::this_thread::get_id());
    }
    if (ran.fetch_add(1) + 1 == 3) {
      // The last one stops everything.
    }
  });
  for (int i = 0; i < 2000 && ran.load() < 3; ++i) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(ran.load(), 3);
  EXPECT_EQ(threads.size(), 3u);
  rt.stop();
  EXPECT_EQ(rt.run(), 0);  // returns once the stopped threads are joined
}

TEST(RuntimeTest, StopFromInsideALoopEndsRun) {
  Runtime rt(small(2));
  ASSERT_TRUE(rt.start().ok());
  rt.spawn_on_each([&rt](EventLoop&) -> Task<> {
    (void)co_await sleep_for(10ms);
    rt.stop();
  });
  EXPECT_EQ(rt.run(), 0);
}

TEST(RuntimeTest, SuspendedTasksAreDestroyedAtStop) {
  Runtime rt(small(1));
  ASSERT_TRUE(rt.start().ok());
  std::atomic<bool> finished{false};
  std::atomic<bool> started{false};
  rt.spawn_on_each([&](EventLoop&) -> Task<> {
    started = true;
    (void)co_await sleep_for(1h);
    finished = true;
  });
  for (int i = 0; i < 2000 && !started; ++i) std::this_thread::sleep_for(1ms);
  rt.stop();
  EXPECT_EQ(rt.run(), 0);
  EXPECT_FALSE(finished.load());
}

// run_until_signal() returns once `signo` is sent to the process. The signal
// is sent from the runtime's own threads (which have it blocked, like every
// runtime thread), so only the signalfd can take it.
void expect_signal_stops_runtime(int signo) {
  Runtime rt(small(2));
  ASSERT_TRUE(rt.start().ok());
  std::atomic<int> finished{0};
  rt.spawn_on_each([&finished, signo](EventLoop&) -> Task<> {
    (void)co_await sleep_for(20ms);
    ::kill(::getpid(), signo);     // process-directed
    (void)co_await sleep_for(1h);  // destroyed by the shutdown
    finished.fetch_add(1);
  });
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(rt.run_until_signal(), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  EXPECT_EQ(finished.load(), 0);  // stopped by the signal, not by the tasks ending
  // Nothing is left pending: run_until_signal() took the second signal too.
  sigset_t pending;
  sigpending(&pending);
  EXPECT_FALSE(sigismember(&pending, signo));
  if (sigismember(&pending, signo)) {  // keep the rest of the suite alive anyway
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, signo);
    int sig;
    sigwait(&set, &sig);
  }
}

TEST(RuntimeTest, RunUntilSignalStopsOnSigterm) { expect_signal_stops_runtime(SIGTERM); }

TEST(RuntimeTest, RunUntilSignalStopsOnSigint) { expect_signal_stops_runtime(SIGINT); }

// Shutdown hooks run on a signal, in order, while the loops still run;
// a removed hook does not run, and stop() runs none.
TEST(RuntimeTest, ShutdownHooksRunOnSignalBeforeTheLoopsStop) {
  Runtime rt(small(2));
  ASSERT_TRUE(rt.start().ok());
  EventLoop* const first = &rt.loop(0);  // read here, not on the loops' threads
  std::vector<int> order;
  std::atomic<bool> loop_ran_in_hook{false};
  rt.add_shutdown_hook([&order] { order.push_back(1); });
  const uint64_t removed = rt.add_shutdown_hook([&order] { order.push_back(99); });
  rt.add_shutdown_hook([&] {
    order.push_back(2);
    // The loops still run: work posted now is done.
    std::atomic<bool> done{false};
    first->post([&done] { done = true; });
    for (int i = 0; i < 5000 && !done; ++i) std::this_thread::sleep_for(1ms);
    loop_ran_in_hook = done.load();
  });
  rt.remove_shutdown_hook(removed);
  rt.spawn_on_each([first](EventLoop& loop) -> Task<> {
    if (&loop == first) {
      (void)co_await sleep_for(20ms);
      ::kill(::getpid(), SIGTERM);
    }
  });
  EXPECT_EQ(rt.run_until_signal(), 0);
  ASSERT_EQ(order.size(), 2u);
  EXPECT_EQ(order[0], 1);
  EXPECT_EQ(order[1], 2);
  EXPECT_TRUE(loop_ran_in_hook.load());
  sigset_t pending;
  sigpending(&pending);
  if (sigismember(&pending, SIGTERM)) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    int sig;
    sigwait(&set, &sig);
  }
}

TEST(RuntimeTest, ShutdownHooksDoNotRunOnStop) {
  Runtime rt(small(1));
  ASSERT_TRUE(rt.start().ok());
  bool ran = false;
  rt.add_shutdown_hook([&ran] { ran = true; });
  std::thread stopper([&rt] {
    std::this_thread::sleep_for(20ms);
    rt.stop();
  });
  EXPECT_EQ(rt.run_until_signal(), 0);
  stopper.join();
  EXPECT_FALSE(ran);
}

TEST(RuntimeTest, StopEndsRunUntilSignal) {
  // stop() from another thread wakes run_until_signal() (through its eventfd).
  Runtime rt(small(1));
  ASSERT_TRUE(rt.start().ok());
  std::thread stopper([&rt] {
    std::this_thread::sleep_for(20ms);
    rt.stop();
  });
  EXPECT_EQ(rt.run_until_signal(), 0);
  stopper.join();
}

TEST(RuntimeTest, BadOptionsAreAnError) {
  RuntimeOptions o = small(1);
  o.ring.sq_entries = 0;
  Runtime rt(o);
  absl::Status s = rt.start();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("runtime thread 0"), std::string::npos);
  EXPECT_EQ(rt.run(), 1);
}

TEST(RuntimeTest, TooManyThreadsAreRefusedBeforeAnyStarts) {
  const size_t cpus = std::max(1u, std::thread::hardware_concurrency());
  RuntimeOptions o = small(1);
  o.threads = Runtime::kMaxThreadsPerCpu * cpus + 1;
  Runtime rt(o);
  absl::Status s = rt.start();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("per CPU"), std::string::npos) << s;
  EXPECT_EQ(rt.start(), s);  // (once: the same answer)
  EXPECT_EQ(rt.run(), 1);
  EXPECT_EQ(rt.size(), 0u);  // no thread was started
}

TEST(RuntimeTest, AThreadThatCannotStartIsAnError) {
  // Every new thread asks for a stack larger than the address space, so
  // that creating the first worker fails (as at the process's or system's
  // thread limit): start() says so, and nothing is left running.
  pthread_attr_t saved;
  ASSERT_EQ(pthread_getattr_default_np(&saved), 0);
  pthread_attr_t huge;
  ASSERT_EQ(pthread_attr_init(&huge), 0);
  ASSERT_EQ(pthread_attr_setstacksize(&huge, size_t{1} << 47), 0);
  ASSERT_EQ(pthread_setattr_default_np(&huge), 0);
  absl::Status s;
  int run_rc = -1;
  {
    Runtime rt(small(2));
    s = rt.start();
    if (s.ok()) rt.stop();  // (should threads start after all, run() still returns)
    run_rc = rt.run();
  }
  // (Restored before any check can end the test.)
  EXPECT_EQ(pthread_setattr_default_np(&saved), 0);
  pthread_attr_destroy(&huge);
  pthread_attr_destroy(&saved);
  EXPECT_EQ(run_rc, 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_NE(s.message().find("runtime thread 0: cannot start a thread"), std::string::npos) << s;
  // Threads start again.
  Runtime rt(small(1));
  ASSERT_TRUE(rt.start().ok());
  rt.stop();
  EXPECT_EQ(rt.run(), 0);
}

TEST(RuntimeTest, AsManyThreadsAsAllowedStart) {
  // The limit itself is allowed (small loops: the test's rings and pools).
  const size_t cpus = std::max(1u, std::thread::hardware_concurrency());
  RuntimeOptions o = small(1);
  o.threads = Runtime::kMaxThreadsPerCpu * cpus;
  if (o.threads > 128) GTEST_SKIP() << o.threads << " threads: too many for a unit test";
  Runtime rt(o);
  ASSERT_TRUE(rt.start().ok());
  EXPECT_EQ(rt.size(), o.threads);
  rt.stop();
  EXPECT_EQ(rt.run(), 0);  // joins them
}

}  // namespace
}  // namespace coring
