#include "coring/core/task.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <vector>

#include "task_test_support.h"

namespace coring {
namespace {

using testing::CurrentStopToken;
using testing::Driver;
using testing::FakeOp;
using testing::LiveCounter;
using testing::ReadyQueue;
using testing::run_sync;
using testing::stack_position;

static_assert(!std::is_copy_constructible_v<Task<int>>);
static_assert(std::is_nothrow_move_constructible_v<Task<int>>);
static_assert(std::is_nothrow_move_assignable_v<Task<>>);

Task<int> answer() { co_return 42; }

Task<int> record_and_return(int& runs, int value) {
  ++runs;
  co_return value;
}

TEST(TaskTest, IsLazyUntilAwaited) {
  int runs = 0;
  Task<int> child = record_and_return(runs, 7);
  EXPECT_EQ(runs, 0);
  EXPECT_TRUE(child.valid());
  EXPECT_FALSE(child.done());

  auto parent = [](Task<int> t, int& runs) -> Task<int> {
    EXPECT_EQ(runs, 0);  // still not started inside the parent
    int v = co_await std::move(t);
    EXPECT_EQ(runs, 1);
    co_return v + 1;
  };
  Task<int> outer = parent(std::move(child), runs);
  EXPECT_FALSE(child.valid());
  EXPECT_EQ(runs, 0);
  EXPECT_EQ(run_sync(std::move(outer)), 8);
  EXPECT_EQ(runs, 1);
}

TEST(TaskTest, ReturnsValuesOfEveryKind) {
  EXPECT_EQ(run_sync(answer()), 42);

  auto move_only = []() -> Task<std::unique_ptr<std::string>> {
    co_return std::make_unique<std::string>("frame");
  };
  EXPECT_EQ(*run_sync(move_only()), "frame");

  int target = 1;
  auto by_ref = [](int& t) -> Task<int&> { co_return t; };
  auto use_ref = [&](int& t) -> Task<> {
    int& r = co_await by_ref(t);
    r = 99;
  };
  run_sync(use_ref(target));
  EXPECT_EQ(target, 99);

  auto by_rvalue_ref = [](std::string& s) -> Task<std::string&&> { co_return std::move(s); };
  auto steal = [&](std::string& s) -> Task<std::string> {
    std::string taken = co_await by_rvalue_ref(s);
    co_return taken;
  };
  std::string source(100, 'x');
  EXPECT_EQ(run_sync(steal(source)), std::string(100, 'x'));

  auto braced = []() -> Task<std::vector<int>> { co_return {1, 2, 3}; };
  EXPECT_EQ(run_sync(braced()), (std::vector<int>{1, 2, 3}));

  bool ran = false;
  auto void_task = [](bool& r) -> Task<> {
    r = true;
    co_return;
  };
  run_sync(void_task(ran));
  EXPECT_TRUE(ran);
}

TEST(TaskTest, AwaitsAnLvalueTask) {
  auto parent = []() -> Task<int> {
    Task<int> t = answer();
    int v = co_await t;
    EXPECT_TRUE(t.done());
    co_return v;
  };
  EXPECT_EQ(run_sync(parent()), 42);
}

Task<int> throws_after(int depth) {
  if (depth == 0) throw std::runtime_error("deep failure");
  co_return co_await throws_after(depth - 1) + 1;
}

TEST(TaskTest, ExceptionPropagatesToTheAwaiter) {
  auto catcher = []() -> Task<std::string> {
    try {
      co_await throws_after(10);
    } catch (const std::runtime_error& e) {
      co_return e.what();
    }
    co_return "not thrown";
  };
  EXPECT_EQ(run_sync(catcher()), "deep failure");
  EXPECT_THROW(run_sync(throws_after(3)), std::runtime_error);

  // A task that throws after suspending rethrows in its awaiter on resume.
  FakeOp op;
  bool caught = false;
  auto child = [](FakeOp& op) -> Task<int> {
    co_await op;
    throw std::invalid_argument("after resume");
  };
  auto parent = [&]() -> Task<> {
    try {
      co_await child(op);
    } catch (const std::invalid_argument&) {
      caught = true;
    }
  };
  Driver driver(parent());
  driver.start();
  EXPECT_FALSE(driver.done());
  op.complete();
  EXPECT_TRUE(driver.done());
  EXPECT_TRUE(caught);
  EXPECT_EQ(driver.error(), nullptr);
}

TEST(TaskTest, DestroyingANeverStartedTaskFreesItsFrame) {
  int live = 0;
  int runs = 0;
  {
    auto body = [](LiveCounter, int& runs) -> Task<int> {
      ++runs;
      co_return 1;
    };
    Task<int> t = body(LiveCounter(live), runs);
    EXPECT_EQ(live, 1);  // the parameter copy lives in the frame
  }
  EXPECT_EQ(live, 0);
  EXPECT_EQ(runs, 0);

  // Move assignment frees the frame the target held.
  auto body = [](LiveCounter) -> Task<> { co_return; };
  Task<> a = body(LiveCounter(live));
  Task<> b = body(LiveCounter(live));
  EXPECT_EQ(live, 2);
  a = std::move(b);
  EXPECT_EQ(live, 1);
  a = Task<>();
  EXPECT_EQ(live, 0);
}

TEST(TaskTest, DestroyingASuspendedChainFreesEveryFrame) {
  int live = 0;
  FakeOp op;
  auto leaf = [](LiveCounter, FakeOp& op) -> Task<int> {
    co_await op;
    ADD_FAILURE() << "resumed after destruction";
    co_return 1;
  };
  auto middle = [&](LiveCounter c) -> Task<int> {
    LiveCounter local(live);
    co_return co_await leaf(c, op);
  };
  auto top = [&](LiveCounter c) -> Task<> {
    LiveCounter local(live);
    co_await middle(c);
  };
  {
    Driver driver(top(LiveCounter(live)));
    driver.start();
    EXPECT_TRUE(op.waiting());
    // top: param, local, and the argument temporary of `co_await middle(c)`
    // (it lives across the suspension); middle: the same three; leaf: param.
    EXPECT_EQ(live, 7);
  }
  EXPECT_EQ(live, 0);
}

TEST(TaskTest, ResumesAfterASuspension) {
  FakeOp op;
  auto child = [](FakeOp& op) -> Task<int> {
    bool completed = co_await op;
    co_return completed ? 5 : -1;
  };
  int result = 0;
  auto parent = [&]() -> Task<> { result = co_await child(op) * 2; };
  Driver driver(parent());
  driver.start();
  EXPECT_FALSE(driver.done());
  EXPECT_TRUE(op.waiting());
  op.complete();
  EXPECT_TRUE(driver.done());
  EXPECT_EQ(result, 10);
}

// Symmetric transfer: a loop of synchronously completing awaits resumes the
// parent from the child's final_suspend by tail call, so the stack stays flat.
struct StackSpan {
  std::uintptr_t low = std::numeric_limits<std::uintptr_t>::max();
  std::uintptr_t high = 0;
  void record() {
    const std::uintptr_t p = stack_position();
    low = std::min(low, p);
    high = std::max(high, p);
  }
  std::uintptr_t size() const { return high - low; }
};

Task<int> one(StackSpan& span) {
  span.record();
  co_return 1;
}

TEST(TaskTest, MillionSynchronousAwaitsDoNotGrowTheStack) {
  StackSpan span;
  auto loop = [](StackSpan& span) -> Task<long> {
    long sum = 0;
    for (int i = 0; i < 1'000'000; ++i) sum += co_await one(span);
    co_return sum;
  };
  EXPECT_EQ(run_sync(loop(span)), 1'000'000);
  EXPECT_LT(span.size(), 4096u);
}

Task<int> recurse(int depth, StackSpan& span) {
  span.record();
  if (depth == 0) co_return 0;
  co_return co_await recurse(depth - 1, span) + 1;
}

TEST(TaskTest, DeepRecursionDoesNotGrowTheStack) {
  // 100,000 nested frames would need several MiB of stack (far more under
  // ASan) if each start or resume nested a call.
  StackSpan span;
  EXPECT_EQ(run_sync(recurse(100'000, span)), 100'000);
  EXPECT_LT(span.size(), 4096u);
}

TEST(TaskTest, ResumesFromAQueueKeepTheStackFlat) {
  // Every await suspends and is resumed from the queue, like I/O completions.
  ReadyQueue queue;
  FakeOp op(&queue);
  StackSpan span;
  auto child = [&]() -> Task<int> {
    co_await op;
    span.record();
    co_return 1;
  };
  auto loop = [&]() -> Task<long> {
    long sum = 0;
    for (int i = 0; i < 10'000; ++i) sum += co_await child();
    co_return sum;
  };
  std::optional<long> result;
  Driver driver(testing::store_result(loop(), result));
  driver.start();
  for (int i = 0; i < 10'000; ++i) {
    ASSERT_TRUE(op.waiting());
    op.complete();
    EXPECT_EQ(queue.run(), 1);
  }
  EXPECT_TRUE(driver.done());
  EXPECT_EQ(result, 10'000);
  EXPECT_LT(span.size(), 4096u);
}

TEST(TaskTest, PromiseStopTokenDefaultsToEmpty) {
  auto probe = []() -> Task<bool> {
    std::stop_token token = co_await CurrentStopToken{};
    co_return token.stop_possible();
  };
  EXPECT_FALSE(run_sync(probe()));
}

TEST(TaskTest, ChildInheritsTheAwaitersStopToken) {
  std::stop_source source;
  auto grandchild = [](std::stop_token expected) -> Task<bool> {
    std::stop_token token = co_await CurrentStopToken{};
    co_return token == expected;
  };
  auto child = [&](std::stop_token expected) -> Task<bool> {
    co_return co_await grandchild(expected);
  };
  Task<bool> t = child(source.get_token());
  t.set_stop_token(source.get_token());
  EXPECT_TRUE(run_sync(std::move(t)));
}

TEST(TaskTest, ExplicitStopTokenIsNotOverriddenByTheAwaiter) {
  std::stop_source outer;
  std::stop_source inner;
  auto probe = []() -> Task<std::stop_token> { co_return co_await CurrentStopToken{}; };
  auto parent = [&]() -> Task<bool> {
    Task<std::stop_token> own = probe();
    own.set_stop_token(inner.get_token());
    Task<std::stop_token> inherited = probe();
    std::stop_token a = co_await std::move(own);
    std::stop_token b = co_await std::move(inherited);
    co_return a == inner.get_token() && b == outer.get_token();
  };
  Task<bool> t = parent();
  t.set_stop_token(outer.get_token());
  EXPECT_TRUE(run_sync(std::move(t)));
}

TEST(TaskTest, StopRequestReachesAnOperationInANestedTask) {
  std::stop_source source;
  ReadyQueue queue;
  FakeOp op(&queue);
  auto leaf = [](FakeOp& op) -> Task<bool> { co_return co_await op; };
  auto middle = [&]() -> Task<bool> { co_return co_await leaf(op); };
  std::optional<bool> completed;
  Task<> top = testing::store_result(middle(), completed);
  top.set_stop_token(source.get_token());
  Driver driver(std::move(top));
  driver.start();
  EXPECT_TRUE(op.waiting());
  EXPECT_TRUE(op.saw_stop_possible());
  source.request_stop();
  EXPECT_FALSE(driver.done());  // cancellation completes later, like a CQE
  EXPECT_EQ(queue.run(), 1);
  ASSERT_TRUE(driver.done());
  EXPECT_EQ(completed, false);
}

TEST(TaskTest, DetachedRunnerReportsSuccessAndEscapedExceptions) {
  {
    Driver ok(answer());
    EXPECT_FALSE(ok.done());
    ok.start();
    EXPECT_TRUE(ok.done());
    EXPECT_EQ(ok.error(), nullptr);
  }
  {
    Driver failing(throws_after(2));
    failing.start();
    ASSERT_TRUE(failing.done());
    ASSERT_NE(failing.error(), nullptr);
    EXPECT_THROW(std::rethrow_exception(failing.error()), std::runtime_error);
  }
}

TEST(TaskTest, DetachedRunnerDestroyedBeforeStartFreesTheTask) {
  int live = 0;
  int calls = 0;
  auto body = [](LiveCounter) -> Task<> { co_return; };
  std::coroutine_handle<> h = detail::make_detached(
      body(LiveCounter(live)), [&calls](std::exception_ptr) noexcept { ++calls; });
  EXPECT_EQ(live, 1);
  h.destroy();
  EXPECT_EQ(live, 0);
  EXPECT_EQ(calls, 0);
}

TEST(TaskTest, DetachedRunnerFreesFramesAfterCompletion) {
  int live = 0;
  int calls = 0;
  FakeOp op;
  auto body = [](LiveCounter, FakeOp& op) -> Task<> { co_await op; };
  std::coroutine_handle<> h =
      detail::make_detached(body(LiveCounter(live), op), [&](std::exception_ptr e) noexcept {
        EXPECT_EQ(e, nullptr);
        EXPECT_EQ(live, 1);  // on_done runs before the frames are freed
        ++calls;
      });
  h.resume();
  EXPECT_EQ(calls, 0);
  op.complete();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(live, 0);
}

}  // namespace
}  // namespace coring
