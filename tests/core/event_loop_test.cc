// Tests of core/event_loop.*: iterations, timers, posting and switching
// between loops (MSG_RING and the fallbacks), stop, spawn.
#include "coring/core/event_loop.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "coring/core/nop.h"
#include "coring/core/spawn.h"
#include "coring/core/switch_to.h"
#include "coring/core/task.h"
#include "coring/core/timer.h"

namespace coring {
namespace {

using namespace std::chrono_literals;

std::unique_ptr<EventLoop> make_loop(LoopOptions options = {}) {
  auto loop = EventLoop::create(std::move(options));
  EXPECT_TRUE(loop.ok()) << loop.status();
  return loop.ok() ? std::move(*loop) : nullptr;
}

Task<int> add_after_nop(int a, int b) {
  absl::Status s = co_await nop();
  if (!s.ok()) co_return -1;
  co_return a + b;
}

TEST(EventLoopTest, BlockOnReturnsTheResult) {
  auto loop = make_loop();
  EXPECT_EQ(loop->block_on(add_after_nop(2, 3)), 5);
  EXPECT_EQ(EventLoop::current(), nullptr);
  const LoopStats s = loop->stats();
  EXPECT_GE(s.sqes_submitted, 1u);
  EXPECT_GE(s.cqes, 1u);
  EXPECT_EQ(s.stale_cqes, 0u);
}

Task<> throws() {
  (void)co_await nop();
  throw std::runtime_error("boom");
}

TEST(EventLoopTest, BlockOnRethrows) {
  auto loop = make_loop();
  EXPECT_THROW(loop->block_on(throws()), std::runtime_error);
}

TEST(EventLoopTest, SpawnedTaskExceptionIsReported) {
  std::vector<std::string> reported;
  LoopOptions options;
  options.on_task_error = [&](std::exception_ptr e) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      reported.push_back(ex.what());
    }
  };
  auto loop = make_loop(std::move(options));
  spawn(*loop, throws());
  for (int i = 0; i < 10 && reported.empty(); ++i) loop->run_once(true);
  ASSERT_EQ(reported.size(), 1u);
  EXPECT_EQ(reported[0], "boom");
}

// A task that fails per connection must not flood stderr from the loop
// thread: the 1st, 2nd, 4th... failures are printed, all are counted.
TEST(EventLoopTest, RepeatedTaskFailuresArePrintedSparselyAndCounted) {
  auto loop = make_loop();
  constexpr int kTasks = 100;
  ::testing::internal::CaptureStderr();
  for (int i = 0; i < kTasks; ++i) spawn(*loop, throws());
  for (int i = 0; i < 10 && loop->stats().task_failures < kTasks; ++i) loop->run_once(false);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(loop->stats().task_failures, static_cast<uint64_t>(kTasks));
  size_t lines = 0;
  for (char c : err) lines += c == '\n';
  EXPECT_EQ(lines, 7u) << err;  // 1, 2, 4, 8, 16, 32, 64
  EXPECT_NE(err.find("(64 so far): boom"), std::string::npos) << err;
}

Task<> sleeper(std::chrono::milliseconds d, int id, std::vector<int>* order) {
  absl::Status s = co_await sleep_for(d);
  EXPECT_TRUE(s.ok()) << s;
  order->push_back(id);
}

TEST(EventLoopTest, TimersFireInOrder) {
  auto loop = make_loop();
  std::vector<int> order;
  const int delays[] = {50, 10, 40, 0, 30, 20, 60, 5};
  for (int d : delays) spawn(*loop, sleeper(std::chrono::milliseconds(d), d, &order));
  const auto start = std::chrono::steady_clock::now();
  while (order.size() < std::size(delays)) loop->run_once(true);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 60ms);
  EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));
  EXPECT_EQ(order.size(), std::size(delays));
}

Task<bool> sleep_until_deadline(std::chrono::steady_clock::time_point t) {
  absl::Status s = co_await sleep_until(t);
  co_return s.ok() && std::chrono::steady_clock::now() >= t;
}

TEST(EventLoopTest, SleepUntilWaitsForTheDeadline) {
  auto loop = make_loop();
  EXPECT_TRUE(loop->block_on(sleep_until_deadline(std::chrono::steady_clock::now() + 20ms)));
  // A deadline in the past completes at once.
  EXPECT_TRUE(loop->block_on(sleep_until_deadline(std::chrono::steady_clock::now() - 1s)));
}

Task<absl::Status> cancellable_sleep(std::chrono::milliseconds d) {
  co_return co_await sleep_for(d);
}

TEST(EventLoopTest, StopTokenCancelsASleep) {
  auto loop = make_loop();
  std::stop_source stop;
  Task<absl::Status> t = cancellable_sleep(10s);
  t.set_stop_token(stop.get_token());
  absl::Status result;
  spawn(*loop, [](Task<absl::Status> t, absl::Status* out) -> Task<> {
    *out = co_await std::move(t);
  }(std::move(t), &result));
  loop->run_once(false);
  EXPECT_EQ(loop->stats().ops_in_flight, 1u);
  stop.request_stop();
  for (int i = 0; i < 10 && result.ok(); ++i) loop->run_once(true);
  EXPECT_EQ(result.code(), absl::StatusCode::kCancelled) << result;
  EXPECT_EQ(loop->stats().ops_in_flight, 0u);
}

TEST(EventLoopTest, PostOnTheOwnerThreadRunsNextIteration) {
  auto loop = make_loop();
  int ran = 0;
  loop->post([&] { ++ran; });
  EXPECT_EQ(ran, 0);
  loop->run_once(false);
  EXPECT_EQ(ran, 1);
}

// A hook armed several times runs once, before the iteration's submit, in
// arming order; one it disarms does not run; one armed by a hook runs in the
// same pass.
struct CountingHook : SubmitHook {
  CountingHook(std::vector<int>* log, int id) : SubmitHook(&CountingHook::fire), log(log), id(id) {}
  static void fire(SubmitHook* self) noexcept {
    auto* h = static_cast<CountingHook*>(self);
    h->log->push_back(h->id);
    if (h->chain != nullptr) EventLoop::current()->before_submit(*h->chain);
  }
  std::vector<int>* log;
  int id;
  SubmitHook* chain = nullptr;
};

TEST(EventLoopTest, SubmitHookRunsOnceBeforeTheNextSubmit) {
  auto loop = make_loop();
  std::vector<int> log;
  CountingHook a(&log, 1), b(&log, 2), c(&log, 3), d(&log, 4);
  a.chain = &d;
  loop->before_submit(a);
  loop->before_submit(b);
  loop->before_submit(a);  // already armed: nothing
  loop->before_submit(c);
  loop->cancel_before_submit(b);
  EXPECT_TRUE(a.armed());
  EXPECT_FALSE(b.armed());
  loop->run_once(false);
  EXPECT_EQ(log, (std::vector<int>{1, 3, 4}));
  EXPECT_FALSE(a.armed());
  EXPECT_FALSE(d.armed());
  loop->run_once(false);
  EXPECT_EQ(log.size(), 3u);  // disarmed once run
}

// A hook that defers itself once (before_next_submit) when it first runs.
struct DeferringHook : SubmitHook {
  DeferringHook(std::vector<int>* log, int id)
      : SubmitHook(&DeferringHook::fire), log(log), id(id) {}
  static void fire(SubmitHook* self) noexcept {
    auto* h = static_cast<DeferringHook*>(self);
    h->log->push_back(h->id);
    if (std::exchange(h->defer_once, false)) EventLoop::current()->before_next_submit(*h);
  }
  std::vector<int>* log;
  int id;
  bool defer_once = true;
};

// A hook armed with before_next_submit() skips the pass under way and runs
// in the next iteration's, and that iteration does not wait in the kernel
// for a completion first (none would come here). Arming it for now while
// it waits for later leaves it for later; it can be disarmed meanwhile.
TEST(EventLoopTest, HookArmedForTheSubmitAfterTheNextRunsOneIterationLater) {
  auto loop = make_loop();
  std::vector<int> log;
  CountingHook now(&log, 1), later(&log, 2), dropped(&log, 3);
  DeferringHook self(&log, 4);
  loop->before_submit(now);
  loop->before_next_submit(later);
  loop->before_submit(later);  // armed already: stays for the next one
  loop->before_next_submit(dropped);
  loop->before_submit(self);
  loop->cancel_before_submit(dropped);
  EXPECT_FALSE(dropped.armed());
  // Nothing but the hooks is pending: were the iteration to wait in the
  // kernel after its pass, it would return only after the post below.
  std::atomic<bool> posted{false};
  bool ran = false;
  std::thread waker([&] {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    posted = true;
    loop->post([&] { ran = true; });
  });
  loop->run_once(true);
  EXPECT_FALSE(posted.load()) << "the iteration waited in the kernel with hooks due";
  EXPECT_EQ(log, (std::vector<int>{1, 4}));
  EXPECT_TRUE(later.armed());
  EXPECT_TRUE(self.armed());
  loop->run_once(false);
  EXPECT_EQ(log, (std::vector<int>{1, 4, 2, 4}));
  EXPECT_FALSE(later.armed());
  EXPECT_FALSE(self.armed());
  waker.join();
  while (!ran) loop->run_once(false);
  EXPECT_EQ(log.size(), 4u);
}

// An SQE a hook queues goes to the kernel in that same iteration's submit.
TEST(EventLoopTest, SubmitHookQueuesIntoTheSameSubmit) {
  auto loop = make_loop();
  struct NopHook : SubmitHook {
    NopHook() : SubmitHook(&NopHook::fire) {}
    static void fire(SubmitHook*) noexcept {
      io_uring_sqe* sqe = EventLoop::current()->get_sqe();
      io_uring_prep_nop(sqe);
      sqe->user_data = kIgnoreUserData;
    }
  } hook;
  loop->before_submit(hook);
  const uint64_t cqes_before = loop->stats().cqes;
  // Hook, submit, reap: a NOP completes within the submit, so its CQE is
  // reaped by this very iteration - it would not be if the hook ran after.
  loop->run_once(false);
  EXPECT_EQ(loop->stats().cqes, cqes_before + 1);
}

TEST(EventLoopTest, StopBeforeRunReturnsImmediately) {
  auto loop = make_loop();
  loop->stop();
  loop->run();
  SUCCEED();
}

// The cross-thread tests run twice: with MSG_RING wake-ups (what this kernel
// offers) and with the eventfd fallback forced (LoopOptions::force_eventfd_wakeup),
// the path kernels without IORING_OP_MSG_RING take.
enum class Wakeup { kMsgRing, kEventfd };

LoopOptions wakeup_options(Wakeup mode) {
  LoopOptions o;
  o.force_eventfd_wakeup = mode == Wakeup::kEventfd;
  return o;
}

// The wake-ups a loop received went the way `mode` says.
void expect_woken_by(Wakeup mode, const LoopStats& s) {
  if (mode == Wakeup::kEventfd) {
    EXPECT_GE(s.eventfd_wakes, 1u) << s.to_string();
    EXPECT_EQ(s.msg_ring_received, 0u) << s.to_string();
    EXPECT_EQ(s.foreign_wakes, 0u) << s.to_string();
  } else {
    // (stop() from a thread without a loop may still use the eventfd on
    // kernels before 6.13, so eventfd_wakes is not checked here.)
    EXPECT_GE(s.msg_ring_received, 1u) << s.to_string();
  }
}

// Two loops on two threads; `fn` runs on loop B's thread with both.
// The loop must outlive every call into it from other threads, stop()
// included: B is destroyed only once the stopping thread is done with it.
struct TwoLoops {
  std::unique_ptr<EventLoop> b;
  std::thread thread;
  std::promise<EventLoop*> ready;
  std::promise<void> stopped;
  LoopStats b_stats;  // B's counters, taken on B's thread once run() returned

  explicit TwoLoops(LoopOptions options = {}) {
    std::future<EventLoop*> f = ready.get_future();
    thread = std::thread([this, options = std::move(options)]() mutable {
      b = make_loop(std::move(options));
      ready.set_value(b.get());
      b->run();
      b_stats = b->stats();
      stopped.get_future().wait();
      b.reset();
    });
    f.wait();
  }
  // Stops and joins B; b_stats is valid afterwards.
  void finish() {
    if (!thread.joinable()) return;
    b->stop();
    stopped.set_value();
    thread.join();
  }
  ~TwoLoops() { finish(); }
};

class CrossThreadTest : public ::testing::TestWithParam<Wakeup> {};

INSTANTIATE_TEST_SUITE_P(Wakeups, CrossThreadTest,
                         ::testing::Values(Wakeup::kMsgRing, Wakeup::kEventfd),
                         [](const ::testing::TestParamInfo<Wakeup>& info) {
                           return info.param == Wakeup::kMsgRing ? "MsgRing" : "Eventfd";
                         });

TEST_P(CrossThreadTest, PostFromAnotherThreadWakesABlockedLoop) {
  auto loop = make_loop(wakeup_options(GetParam()));
  std::atomic<int> ran{0};
  std::thread poster([&] {
    std::this_thread::sleep_for(20ms);  // the loop is blocked in the kernel by now
    for (int i = 0; i < 100; ++i) loop->post([&ran] { ran.fetch_add(1); });
    loop->stop();
  });
  loop->run();  // returns only through the posted stop
  poster.join();
  loop->run_once(false);  // whatever raced with stop
  EXPECT_EQ(ran.load(), 100);
  const LoopStats s = loop->stats();
  if (GetParam() == Wakeup::kEventfd) {
    expect_woken_by(Wakeup::kEventfd, s);
  } else {
    // A thread without a loop wakes with SEND_MSG_RING (6.13+) or the eventfd.
    EXPECT_GE(s.msg_ring_received + s.eventfd_wakes, 1u) << s.to_string();
  }
}

Task<> post_many(EventLoop& target, int n, std::atomic<int>* received, int* in_order) {
  int next_expected = 0;
  int* expected = &next_expected;
  for (int i = 0; i < n; ++i) {
    target.post([i, received, expected, in_order] {
      if (i == *expected) ++*in_order;
      *expected = i + 1;
      received->fetch_add(1, std::memory_order_release);
    });
    if (i % 1024 == 1023) (void)co_await nop();  // let the loop submit its wake-ups
  }
  // Wait until everything arrived (the counter is only read here).
  while (received->load(std::memory_order_acquire) < n) (void)co_await sleep_for(1ms);
}

TEST_P(CrossThreadTest, ManyPostsBetweenTwoLoopsNoneLost) {
  TwoLoops two(wakeup_options(GetParam()));
  auto a = make_loop(wakeup_options(GetParam()));
  // A million through MSG_RING; the eventfd path costs a write() per merged
  // wake-up, so 100,000 keep it (and its TSan run) fast.
  const int messages = GetParam() == Wakeup::kMsgRing ? 1'000'000 : 100'000;
  std::atomic<int> received{0};
  int in_order = 0;
  a->block_on(post_many(*two.b, messages, &received, &in_order));
  EXPECT_EQ(received.load(), messages);
  EXPECT_EQ(in_order, messages);  // FIFO from one sender
  two.finish();
  const LoopStats s = a->stats();
  if (GetParam() == Wakeup::kMsgRing) {
    EXPECT_GE(s.msg_ring_sent, 1u) << s.to_string();
    // Wake-ups are merged: far fewer than one per message.
    EXPECT_LT(s.msg_ring_sent, static_cast<uint64_t>(messages));
  } else {
    EXPECT_EQ(s.msg_ring_sent, 0u) << s.to_string();
    // Merged here too: far fewer eventfd wake-ups than messages.
    EXPECT_LT(two.b_stats.eventfd_wakes, static_cast<uint64_t>(messages));
  }
  expect_woken_by(GetParam(), two.b_stats);
}

Task<bool> hop(EventLoop& a, EventLoop& b, int rounds) {
  for (int i = 0; i < rounds; ++i) {
    co_await switch_to(b);
    if (EventLoop::current() != &b) co_return false;
    co_await switch_to(a);
    if (EventLoop::current() != &a) co_return false;
  }
  co_return true;
}

TEST_P(CrossThreadTest, SwitchToMovesBetweenThreads) {
  TwoLoops two(wakeup_options(GetParam()));
  auto a = make_loop(wakeup_options(GetParam()));
  EXPECT_TRUE(a->block_on(hop(*a, *two.b, 1000)));
  two.finish();
  expect_woken_by(GetParam(), two.b_stats);
  expect_woken_by(GetParam(), a->stats());
}

TEST_P(CrossThreadTest, ForeignThreadsCanSpawn) {
  TwoLoops two(wakeup_options(GetParam()));
  std::atomic<bool> done{false};
  spawn(*two.b, [](std::atomic<bool>* d) -> Task<> {
    (void)co_await nop();
    d->store(true);
  }(&done));
  for (int i = 0; i < 2000 && !done.load(); ++i) std::this_thread::sleep_for(1ms);
  EXPECT_TRUE(done.load());
}

TEST(EventLoopTest, DestroyingTheLoopDestroysSuspendedTasks) {
  auto loop = make_loop();
  bool finished = false;
  spawn(*loop, [](bool* f) -> Task<> {
    (void)co_await sleep_for(10s);
    *f = true;
  }(&finished));
  loop->run_once(false);
  EXPECT_EQ(loop->stats().ops_in_flight, 1u);
  loop.reset();  // must not hang, leak or resume the task
  EXPECT_FALSE(finished);
}

// Completions go out in the order the kernel posted them, through a CQ
// overflow and SQ-full submits made from inside a dispatch (a multishot
// recv's chunks must never be reordered).
Task<> record_after_nop(int index, std::vector<int>* order, int fill) {
  if (!(co_await nop()).ok()) co_return;
  order->push_back(index);
  // Inside the dispatch of this CQE: take more SQEs than the SQ holds, so
  // the loop has to reap the CQ (and the kernel's overflow) aside.
  EventLoop* loop = EventLoop::current();
  for (int i = 0; i < fill; ++i) {
    io_uring_sqe* sqe = loop->get_sqe();
    io_uring_prep_nop(sqe);
    sqe->user_data = kIgnoreUserData;
  }
}

TEST(EventLoopTest, CompletionsThroughACqOverflowKeepTheirOrder) {
  LoopOptions options;
  options.ring.sq_entries = 8;
  options.ring.cq_entries = 16;
  auto loop = make_loop(std::move(options));
  constexpr int kOps = 400;
  std::vector<int> order;
  for (int i = 0; i < kOps; ++i) spawn(*loop, record_after_nop(i, &order, i % 50 == 0 ? 64 : 0));
  for (int i = 0; i < 200 && order.size() < kOps; ++i) loop->run_once(false);
  ASSERT_EQ(order.size(), static_cast<size_t>(kOps));
  for (int i = 0; i < kOps; ++i) ASSERT_EQ(order[i], i) << "completion " << i << " out of order";
  EXPECT_GT(loop->stats().cq_overflows, 0u);
}

}  // namespace
}  // namespace coring
