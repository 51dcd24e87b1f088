// Tests of core/task_context.h: the ambient context is inherited by awaited
// tasks and when_all/when_any children, an explicit one (null included) wins,
// detached tasks start without one, and lookups are typed.
#include "coring/core/task_context.h"

#include <gtest/gtest.h>

#include <coroutine>
#include <exception>
#include <string>
#include <variant>
#include <vector>

#include "coring/core/task.h"
#include "coring/core/when_all.h"
#include "coring/core/when_any.h"
#include "task_test_support.h"

namespace coring {
namespace {

using testing::run_sync;

struct Info : TaskContext {
  explicit Info(std::string n) : TaskContext(this), name(std::move(n)) {}
  std::string name;
};
struct Other : TaskContext {
  Other() : TaskContext(this) {}
};

Task<const TaskContext*> probe() { co_return co_await current_context(); }

Task<std::string> name_seen() {
  const Info* info = co_await current_context<Info>();
  co_return info != nullptr ? info->name : std::string("none");
}

// Two levels down, so inheritance is shown to go through a plain Task.
Task<std::string> nested_name() { co_return co_await name_seen(); }

TEST(TaskContextTest, NoneByDefault) { EXPECT_EQ(run_sync(probe()), nullptr); }

TEST(TaskContextTest, AwaitedTasksInheritIt) {
  const Info info("a");
  Task<std::string> t = nested_name();
  t.set_context(&info);
  EXPECT_EQ(run_sync(std::move(t)), "a");
}

TEST(TaskContextTest, AnExplicitContextWinsAndNullDetaches) {
  const Info outer("outer");
  const Info inner("inner");
  auto parent = [&]() -> Task<std::string> {
    Task<std::string> own = nested_name();
    own.set_context(&inner);
    Task<std::string> detached = nested_name();
    detached.set_context(nullptr);
    std::string a = co_await std::move(own);
    std::string b = co_await std::move(detached);
    std::string c = co_await nested_name();
    co_return a + "," + b + "," + c;
  };
  Task<std::string> t = parent();
  t.set_context(&outer);
  EXPECT_EQ(run_sync(std::move(t)), "inner,none,outer");
}

TEST(TaskContextTest, LookupsAreTyped) {
  const Other other;
  Task<std::string> t = name_seen();
  t.set_context(&other);
  EXPECT_EQ(run_sync(std::move(t)), "none");  // an Other is not an Info
  Task<const TaskContext*> any = probe();
  any.set_context(&other);
  EXPECT_EQ(run_sync(std::move(any)), &other);
  EXPECT_EQ(static_cast<const TaskContext&>(other).as<Info>(), nullptr);
  EXPECT_EQ(static_cast<const TaskContext&>(other).as<Other>(), &other);
}

TEST(TaskContextTest, WhenAllAndWhenAnyChildrenInheritIt) {
  const Info info("j");
  auto parent = []() -> Task<std::string> {
    auto [a, b] = co_await when_all(nested_name(), name_seen());
    std::vector<Task<std::string>> v;
    v.push_back(nested_name());
    std::vector<std::string> c = co_await when_all(std::move(v));
    auto d = co_await when_any(nested_name(), name_seen());
    co_return a + b + c[0] + std::visit([](const std::string& s) { return s; }, d.value);
  };
  Task<std::string> t = parent();
  t.set_context(&info);
  EXPECT_EQ(run_sync(std::move(t)), "jjjj");
}

TEST(TaskContextTest, DetachedTasksStartWithoutOne) {
  const Info info("d");
  std::string seen;
  auto spawner = [&]() -> Task<> {
    auto body = [](std::string& out) -> Task<> { out = co_await nested_name(); };
    std::coroutine_handle<> h =
        detail::make_detached(body(seen), [](std::exception_ptr) noexcept {});
    h.resume();  // runs to completion: nothing in it suspends
    co_return;
  };
  Task<> t = spawner();
  t.set_context(&info);
  run_sync(std::move(t));
  EXPECT_EQ(seen, "none");
}

TEST(TaskContextTest, WithContextCarriesACopy) {
  std::string seen;
  std::coroutine_handle<> h;
  {
    const Info info("copied");
    auto body = [](std::string& out) -> Task<> { out = co_await nested_name(); };
    h = detail::make_detached(with_context(info, body(seen)), [](std::exception_ptr) noexcept {});
  }  // the original is gone before the task runs
  h.resume();
  EXPECT_EQ(seen, "copied");
}

}  // namespace
}  // namespace coring
