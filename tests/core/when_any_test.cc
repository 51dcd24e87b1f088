#include "coring/core/when_any.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <variant>
#include <vector>

#include "coring/core/task.h"
#include "task_test_support.h"

namespace coring {
namespace {

using testing::CurrentStopToken;
using testing::Driver;
using testing::FakeOp;
using testing::LiveCounter;
using testing::ReadyQueue;
using testing::run_sync;
using testing::store_result;

Task<int> immediately(int v) { co_return v; }

// Waits for `op`; records in `log` how it ended; returns `v`, or -1 if cancelled.
Task<int> wait_op(FakeOp& op, int v, std::vector<std::string>* log = nullptr) {
  const bool completed = co_await op;
  if (log != nullptr) log->push_back(std::to_string(v) + (completed ? " done" : " cancelled"));
  co_return completed ? v : -1;
}

TEST(WhenAnyTest, StartsNothingUntilAwaited) {
  int runs = 0;
  auto counted = [](int& runs) -> Task<int> {
    ++runs;
    co_return 1;
  };
  auto any = when_any(counted(runs), counted(runs));
  EXPECT_EQ(runs, 0);
  auto r = run_sync(std::move(any));
  EXPECT_EQ(r.index, 0u);
  EXPECT_EQ(runs, 2);  // every child is started, even after a winner exists
}

TEST(WhenAnyTest, SynchronousWinnerCancelsAndAwaitsTheLoser) {
  FakeOp op;  // resumes its waiter inline from the stop callback
  std::vector<std::string> log;
  auto r = run_sync(when_any(wait_op(op, 1, &log), immediately(2)));
  EXPECT_EQ(r.index, 1u);
  EXPECT_EQ(std::get<1>(r.value), 2);
  EXPECT_TRUE(op.cancelled());
  EXPECT_EQ(log, std::vector<std::string>{"1 cancelled"});
}

TEST(WhenAnyTest, CompletesOnlyAfterEveryLoserFinished) {
  ReadyQueue queue;
  FakeOp a(&queue), b(&queue), c(&queue);
  std::vector<std::string> log;
  std::optional<WhenAnyResult<int, int, int>> result;
  Driver driver(store_result(
      when_any(wait_op(a, 1, &log), wait_op(b, 2, &log), wait_op(c, 3, &log)), result));
  driver.start();
  EXPECT_TRUE(a.waiting() && b.waiting() && c.waiting());
  b.complete();
  EXPECT_EQ(queue.run(), 3);  // b's completion, then a's and c's cancellations
  ASSERT_TRUE(driver.done());
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->index, 1u);
  EXPECT_EQ(std::get<1>(result->value), 2);
  // Stop callbacks run in an unspecified order; the winner's line comes first.
  ASSERT_EQ(log.size(), 3u);
  EXPECT_EQ(log[0], "2 done");
  std::sort(log.begin() + 1, log.end());
  EXPECT_EQ(log, (std::vector<std::string>{"2 done", "1 cancelled", "3 cancelled"}));
}

TEST(WhenAnyTest, WaitsForALoserThatIgnoresTheStopRequest) {
  ReadyQueue queue;
  FakeOp winner_op(&queue);
  FakeOp stubborn_op(&queue);
  bool stubborn_finished = false;
  auto stubborn = [&]() -> Task<int> {
    // Runs with no stop token, so the stop request cannot reach the op.
    auto inner = [&]() -> Task<bool> { co_return co_await stubborn_op; };
    Task<bool> t = inner();
    t.set_stop_token(std::stop_token());
    co_await std::move(t);
    stubborn_finished = true;
    co_return 7;
  };
  std::optional<WhenAnyResult<int, int>> result;
  Driver driver(store_result(when_any(wait_op(winner_op, 1), stubborn()), result));
  driver.start();
  winner_op.complete();
  queue.run();
  EXPECT_FALSE(driver.done());  // the loser is still running
  EXPECT_TRUE(stubborn_op.waiting());
  stubborn_op.complete();
  queue.run();
  ASSERT_TRUE(driver.done());
  EXPECT_TRUE(stubborn_finished);
  EXPECT_EQ(result->index, 0u);
  EXPECT_EQ(std::get<0>(result->value), 1);
}

TEST(WhenAnyTest, WinnersExceptionIsRethrownLosersExceptionsAreDiscarded) {
  ReadyQueue queue;
  FakeOp a(&queue), b(&queue);
  auto throw_when_done = [](FakeOp& op, std::string what) -> Task<int> {
    co_await op;
    throw std::runtime_error(what);
  };
  std::string caught;
  auto parent = [&]() -> Task<> {
    try {
      co_await when_any(throw_when_done(a, "winner"), throw_when_done(b, "loser"));
    } catch (const std::runtime_error& e) {
      caught = e.what();
    }
  };
  Driver driver(parent());
  driver.start();
  a.complete();
  queue.run();
  ASSERT_TRUE(driver.done());
  EXPECT_EQ(driver.error(), nullptr);
  EXPECT_EQ(caught, "winner");

  // A loser's exception does not escape when the winner succeeded.
  FakeOp c(&queue), d(&queue);
  std::optional<WhenAnyResult<int, int>> result;
  Driver second(store_result(when_any(wait_op(c, 5), throw_when_done(d, "ignored")), result));
  second.start();
  c.complete();
  queue.run();
  ASSERT_TRUE(second.done());
  EXPECT_EQ(second.error(), nullptr);
  EXPECT_EQ(result->index, 0u);
}

TEST(WhenAnyTest, AwaitersStopRequestCancelsEveryChild) {
  std::stop_source outer;
  ReadyQueue queue;
  FakeOp a(&queue), b(&queue);
  std::vector<std::string> log;
  std::optional<WhenAnyResult<int, int>> result;
  Task<> top = store_result(when_any(wait_op(a, 1, &log), wait_op(b, 2, &log)), result);
  top.set_stop_token(outer.get_token());
  Driver driver(std::move(top));
  driver.start();
  outer.request_stop();
  EXPECT_EQ(queue.run(), 2);
  ASSERT_TRUE(driver.done());
  // The first cancellation to complete wins (callback order is unspecified).
  EXPECT_EQ(result->value.index(), result->index);
  std::visit([](int v) { EXPECT_EQ(v, -1); }, result->value);
  std::sort(log.begin(), log.end());
  EXPECT_EQ(log, (std::vector<std::string>{"1 cancelled", "2 cancelled"}));
}

TEST(WhenAnyTest, ChildrenRunUnderTheirOwnStopSource) {
  std::stop_source outer;
  auto token_of = []() -> Task<std::stop_token> { co_return co_await CurrentStopToken{}; };
  auto parent = [&]() -> Task<bool> {
    auto r = co_await when_any(token_of());
    std::stop_token child = std::get<0>(r.value);
    // A fresh source: stopped by the winner, distinct from the awaiter's.
    co_return child.stop_possible() && child.stop_requested() && child != outer.get_token() &&
        !outer.stop_requested();
  };
  Task<bool> t = parent();
  t.set_stop_token(outer.get_token());
  EXPECT_TRUE(run_sync(std::move(t)));
}

TEST(WhenAnyTest, VoidAndReferenceResults) {
  int target = 0;
  auto ref = [](int& t) -> Task<int&> { co_return t; };
  auto nothing = []() -> Task<> { co_return; };
  auto r1 = run_sync(when_any(nothing(), ref(target)));
  EXPECT_EQ(r1.index, 0u);
  EXPECT_TRUE(std::holds_alternative<std::monostate>(r1.value));
  auto r2 = run_sync(when_any(ref(target), nothing()));
  EXPECT_EQ(&std::get<0>(r2.value).get(), &target);
}

TEST(WhenAnyTest, VectorForm) {
  ReadyQueue queue;
  std::deque<FakeOp> ops;  // FakeOp does not move
  for (int i = 0; i < 10; ++i) ops.emplace_back(&queue);
  std::vector<Task<int>> tasks;
  for (int i = 0; i < 10; ++i) tasks.push_back(wait_op(ops[i], i));
  std::optional<WhenAnyVectorResult<int>> result;
  Driver driver(store_result(when_any(std::move(tasks)), result));
  driver.start();
  ops[6].complete();
  EXPECT_EQ(queue.run(), 10);
  ASSERT_TRUE(driver.done());
  EXPECT_EQ(result->index, 6u);
  EXPECT_EQ(result->value, 6);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(ops[i].cancelled(), i != 6);

  EXPECT_THROW(run_sync(when_any(std::vector<Task<int>>{})), std::invalid_argument);
}

TEST(WhenAnyTest, DestroyingASuspendedWhenAnyFreesEverything) {
  int live = 0;
  ReadyQueue queue;
  FakeOp a(&queue), b(&queue);
  auto child = [](LiveCounter, FakeOp& op) -> Task<int> {
    co_await op;
    co_return 1;
  };
  {
    Driver driver(when_any(child(LiveCounter(live), a), child(LiveCounter(live), b)));
    driver.start();
    EXPECT_EQ(live, 2);
  }
  EXPECT_EQ(live, 0);
  EXPECT_TRUE(queue.empty());
}

}  // namespace
}  // namespace coring
