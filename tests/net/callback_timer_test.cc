// Tests of net/callback_timer.h: fire, cancel, and arm() while a cancel is on
// its way (the new deadline must replace the old one, not be dropped).
#include "coring/net/callback_timer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <vector>

#include "coring/core/event_loop.h"

namespace coring::net::detail {
namespace {

using namespace std::chrono_literals;

struct Calls {
  std::vector<bool> fired;
  static void record(void* self, bool fired) noexcept {
    static_cast<Calls*>(self)->fired.push_back(fired);
  }
};

std::unique_ptr<EventLoop> make_loop() {
  auto loop = EventLoop::create({});
  EXPECT_TRUE(loop.ok()) << loop.status();
  return loop.ok() ? std::move(*loop) : nullptr;
}

// Blocking iterations until `calls` has `n` entries (bounded).
bool run_until_calls(EventLoop& loop, const Calls& calls, size_t n) {
  for (int i = 0; i < 1000 && calls.fired.size() < n; ++i) loop.run_once(true);
  return calls.fired.size() >= n;
}

TEST(CallbackTimerTest, FiresOnce) {
  auto loop = make_loop();
  Calls calls;
  CallbackTimer timer(&Calls::record, &calls);
  timer.arm(*loop, 5ms);
  ASSERT_TRUE(run_until_calls(*loop, calls, 1));
  EXPECT_EQ(calls.fired, std::vector<bool>{true});
  EXPECT_FALSE(timer.in_flight());
}

TEST(CallbackTimerTest, CancelRunsTheCallbackWithFiredFalse) {
  auto loop = make_loop();
  Calls calls;
  CallbackTimer timer(&Calls::record, &calls);
  timer.arm(*loop, 10s);
  timer.cancel();
  ASSERT_TRUE(run_until_calls(*loop, calls, 1));
  EXPECT_EQ(calls.fired, std::vector<bool>{false});
}

// A stream's close() cancels its linger deadline and FramedStream's goodbye
// arms a new one at once: that deadline must hold.
TEST(CallbackTimerTest, ArmWhileCancellingArmsTheNewDeadline) {
  auto loop = make_loop();
  Calls calls;
  CallbackTimer timer(&Calls::record, &calls);
  timer.arm(*loop, 10s);
  timer.cancel();
  timer.arm(*loop, 5ms);
  ASSERT_TRUE(run_until_calls(*loop, calls, 1)) << "the re-armed deadline never came";
  EXPECT_EQ(calls.fired, std::vector<bool>{true});
  for (int i = 0; i < 3; ++i) loop->run_once(false);
  EXPECT_EQ(calls.fired.size(), 1u);
  EXPECT_EQ(loop->stats().ops_in_flight, 0u);
}

TEST(CallbackTimerTest, CancelAfterReArmWinsAgain) {
  auto loop = make_loop();
  Calls calls;
  CallbackTimer timer(&Calls::record, &calls);
  timer.arm(*loop, 10s);
  timer.cancel();
  timer.arm(*loop, 10s);
  timer.cancel();
  ASSERT_TRUE(run_until_calls(*loop, calls, 1));
  EXPECT_EQ(calls.fired, std::vector<bool>{false});
  EXPECT_FALSE(timer.in_flight());
}

TEST(CallbackTimerTest, DestroyedWhileReArmingLeavesNothingBehind) {
  auto loop = make_loop();
  Calls calls;
  {
    CallbackTimer timer(&Calls::record, &calls);
    timer.arm(*loop, 10s);
    timer.cancel();
    timer.arm(*loop, 10s);
  }
  for (int i = 0; i < 5; ++i) loop->run_once(false);
  EXPECT_TRUE(calls.fired.empty());
  EXPECT_EQ(loop->stats().ops_in_flight, 0u);
}

}  // namespace
}  // namespace coring::net::detail
