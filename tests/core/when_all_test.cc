#include "coring/core/when_all.h"

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

#include "coring/core/task.h"
#include "task_test_support.h"

namespace coring {
namespace {

using testing::Driver;
using testing::FakeOp;
using testing::LiveCounter;
using testing::ReadyQueue;
using testing::run_sync;
using testing::store_result;

Task<int> value(int v, int& runs) {
  ++runs;
  co_return v;
}

// Waits for `op`, then returns `v` (or -1 if the op was cancelled).
Task<int> after(FakeOp& op, int v, std::vector<int>* order = nullptr) {
  const bool completed = co_await op;
  if (order != nullptr) order->push_back(v);
  co_return completed ? v : -1;
}

TEST(WhenAllTest, StartsNothingUntilAwaited) {
  int runs = 0;
  auto all = when_all(value(1, runs), value(2, runs));
  EXPECT_EQ(runs, 0);
  auto [a, b] = run_sync(std::move(all));
  EXPECT_EQ(runs, 2);
  EXPECT_EQ(a, 1);
  EXPECT_EQ(b, 2);
}

TEST(WhenAllTest, TupleHoldsEveryKindOfResult) {
  int target = 0;
  auto ref = [](int& t) -> Task<int&> { co_return t; };
  auto nothing = []() -> Task<> { co_return; };
  auto move_only = []() -> Task<std::unique_ptr<std::string>> {
    co_return std::make_unique<std::string>("moved");
  };
  auto all = when_all(ref(target), nothing(), move_only());
  static_assert(
      std::is_same_v<decltype(all),
                     Task<std::tuple<int&, std::monostate, std::unique_ptr<std::string>>>>);
  auto [r, none, ptr] = run_sync(std::move(all));
  (void)none;
  EXPECT_EQ(&r, &target);
  EXPECT_EQ(*ptr, "moved");
  EXPECT_EQ(run_sync(when_all()), std::tuple<>());
}

TEST(WhenAllTest, WaitsForTheLastChildAndKeepsArgumentOrder) {
  FakeOp a, b, c;
  std::vector<int> order;
  std::optional<std::tuple<int, int, int>> result;
  Driver driver(store_result(
      when_all(after(a, 1, &order), after(b, 2, &order), after(c, 3, &order)), result));
  driver.start();
  EXPECT_TRUE(a.waiting() && b.waiting() && c.waiting());  // all started
  c.complete();
  a.complete();
  EXPECT_FALSE(driver.done());
  b.complete();
  ASSERT_TRUE(driver.done());
  EXPECT_EQ(order, (std::vector<int>{3, 1, 2}));
  EXPECT_EQ(result, std::make_tuple(1, 2, 3));
}

TEST(WhenAllTest, MixOfSynchronousAndSuspendedChildren) {
  ReadyQueue queue;
  FakeOp op(&queue);
  int runs = 0;
  std::optional<std::tuple<int, int, int>> result;
  Driver driver(store_result(when_all(value(1, runs), after(op, 2), value(3, runs)), result));
  driver.start();
  EXPECT_EQ(runs, 2);
  EXPECT_FALSE(driver.done());
  op.complete();
  EXPECT_EQ(queue.run(), 1);
  ASSERT_TRUE(driver.done());
  EXPECT_EQ(result, std::make_tuple(1, 2, 3));
}

Task<int> fail_after(FakeOp& op, std::string message) {
  co_await op;
  throw std::runtime_error(message);
}

TEST(WhenAllTest, RethrowsTheFirstFailureAfterEveryChildFinished) {
  FakeOp a, b, c;
  std::vector<int> order;
  std::string caught;
  auto parent = [&]() -> Task<> {
    try {
      co_await when_all(fail_after(a, "a"), fail_after(b, "b"), after(c, 3, &order));
    } catch (const std::runtime_error& e) {
      caught = e.what();
    }
  };
  Driver driver(parent());
  driver.start();
  b.complete();  // b fails first
  a.complete();
  EXPECT_FALSE(driver.done());  // c still running: when_all waits for it
  EXPECT_TRUE(caught.empty());
  c.complete();
  ASSERT_TRUE(driver.done());
  EXPECT_EQ(caught, "b");
  EXPECT_EQ(order, std::vector<int>{3});
}

TEST(WhenAllTest, SynchronousFailureIsRethrown) {
  auto boom = []() -> Task<int> {
    throw std::logic_error("sync");
    co_return 0;
  };
  int runs = 0;
  EXPECT_THROW(run_sync(when_all(value(1, runs), boom(), value(2, runs))), std::logic_error);
  EXPECT_EQ(runs, 2);  // siblings still ran
}

TEST(WhenAllTest, VectorFormKeepsOrder) {
  std::vector<FakeOp> ops(100);
  std::vector<Task<int>> tasks;
  for (int i = 0; i < 100; ++i) tasks.push_back(after(ops[i], i));
  std::optional<std::vector<int>> result;
  Driver driver(store_result(when_all(std::move(tasks)), result));
  driver.start();
  for (int i = 99; i >= 0; --i) {
    EXPECT_FALSE(driver.done());
    ops[i].complete();
  }
  ASSERT_TRUE(driver.done());
  ASSERT_TRUE(result.has_value());
  for (int i = 0; i < 100; ++i) EXPECT_EQ((*result)[i], i);
}

TEST(WhenAllTest, VectorOfVoidTasksYieldsVoidAndEmptyVectorCompletes) {
  int count = 0;
  auto bump = [](int& c) -> Task<> {
    ++c;
    co_return;
  };
  std::vector<Task<>> tasks;
  for (int i = 0; i < 10; ++i) tasks.push_back(bump(count));
  static_assert(std::is_same_v<decltype(when_all(std::move(tasks))), Task<>>);
  run_sync(when_all(std::move(tasks)));
  EXPECT_EQ(count, 10);
  run_sync(when_all(std::vector<Task<>>{}));
  EXPECT_TRUE(run_sync(when_all(std::vector<Task<int>>{})).empty());

  int target = 5;
  auto ref = [](int& t) -> Task<int&> { co_return t; };
  std::vector<Task<int&>> refs;
  refs.push_back(ref(target));
  std::vector<std::reference_wrapper<int>> got = run_sync(when_all(std::move(refs)));
  EXPECT_EQ(&got[0].get(), &target);
}

TEST(WhenAllTest, ManySynchronousChildrenDoNotGrowTheStack) {
  std::vector<Task<int>> tasks;
  int runs = 0;
  for (int i = 0; i < 100'000; ++i) tasks.push_back(value(1, runs));
  std::vector<int> results = run_sync(when_all(std::move(tasks)));
  EXPECT_EQ(runs, 100'000);
  EXPECT_EQ(results.size(), 100'000u);
}

TEST(WhenAllTest, ChildrenRunUnderTheAwaitersStopToken) {
  std::stop_source source;
  ReadyQueue queue;
  FakeOp a(&queue), b(&queue);
  std::optional<std::tuple<int, int>> result;
  Task<> top = store_result(when_all(after(a, 1), after(b, 2)), result);
  top.set_stop_token(source.get_token());
  Driver driver(std::move(top));
  driver.start();
  EXPECT_TRUE(a.saw_stop_possible());
  EXPECT_TRUE(b.saw_stop_possible());
  a.complete();
  source.request_stop();
  EXPECT_EQ(queue.run(), 2);
  ASSERT_TRUE(driver.done());
  EXPECT_EQ(result, std::make_tuple(1, -1));  // b was cancelled
}

TEST(WhenAllTest, DestroyingASuspendedWhenAllFreesEverything) {
  int live = 0;
  FakeOp a, b;
  auto child = [](LiveCounter, FakeOp& op) -> Task<int> {
    co_await op;
    co_return 1;
  };
  {
    Driver driver(when_all(child(LiveCounter(live), a), child(LiveCounter(live), b)));
    driver.start();
    a.complete();  // one child finished, one still suspended
    EXPECT_EQ(live, 2);
  }
  EXPECT_EQ(live, 0);
}

}  // namespace
}  // namespace coring
