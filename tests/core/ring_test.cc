// Tests of core/ring.*: set-up flag ladder, fallback, features, SQ full, and
// CQ overflow through the EventLoop (no CQE lost).
#include "coring/core/ring.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "coring/core/event_loop.h"
#include "coring/core/nop.h"
#include "coring/core/spawn.h"
#include "coring/core/task.h"

namespace coring {
namespace {

TEST(RingTest, PrefersDeferTaskrun) {
  auto ring = Ring::create({.sq_entries = 64});
  ASSERT_TRUE(ring.ok()) << ring.status();
  EXPECT_EQ((*ring)->mode(), RingMode::kDeferTaskrun) << (*ring)->describe();
  EXPECT_TRUE((*ring)->setup_flags() & IORING_SETUP_SINGLE_ISSUER);
  EXPECT_TRUE((*ring)->setup_flags() & IORING_SETUP_SUBMIT_ALL);
  EXPECT_GE((*ring)->cq_entries(), 4 * (*ring)->sq_entries());
  EXPECT_TRUE((*ring)->has_feature(IORING_FEAT_NODROP));
  EXPECT_TRUE((*ring)->supports(IORING_OP_NOP));
  EXPECT_TRUE((*ring)->supports(IORING_OP_MSG_RING));
  EXPECT_TRUE((*ring)->ring_fd_registered());
}

TEST(RingTest, FallsBackWhenPreferredFlagsAreRefused) {
  auto coop = Ring::create({.sq_entries = 32, .allow_defer_taskrun = false});
  ASSERT_TRUE(coop.ok()) << coop.status();
  EXPECT_EQ((*coop)->mode(), RingMode::kCoopTaskrun);
  EXPECT_FALSE((*coop)->setup_flags() & IORING_SETUP_DEFER_TASKRUN);
  EXPECT_TRUE((*coop)->setup_flags() & IORING_SETUP_COOP_TASKRUN);

  auto plain = Ring::create({.sq_entries = 32,
                             .allow_defer_taskrun = false,
                             .allow_coop_taskrun = false,
                             .allow_submit_all = false});
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ((*plain)->mode(), RingMode::kPlain);
  EXPECT_EQ((*plain)->setup_flags() & (IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL), 0u);
}

TEST(RingTest, RejectsBadSizes) {
  EXPECT_EQ(Ring::create({.sq_entries = 0}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Ring::create({.sq_entries = 64, .cq_entries = 8}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RingTest, SqFullSubmitsToMakeRoom) {
  auto ring = Ring::create({.sq_entries = 8, .cq_entries = 64});
  ASSERT_TRUE(ring.ok());
  for (int i = 0; i < 20; ++i) {
    io_uring_sqe* sqe = (*ring)->get_sqe();
    ASSERT_NE(sqe, nullptr);
    io_uring_prep_nop(sqe);
  }
  EXPECT_GE((*ring)->counters().sq_full, 2u);
  (*ring)->submit_and_wait(20);
  EXPECT_EQ(io_uring_cq_ready((*ring)->raw()), 20u);
}

// Silent sends (Ring::silent_send()): probed at set-up, said in describe(),
// never where forbidden; the probe's own completions are all consumed.
TEST(RingTest, SilentSendIsProbedAndCanBeForbidden) {
  auto off = Ring::create({.sq_entries = 64, .allow_silent_send = false});
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_FALSE((*off)->silent_send());
  EXPECT_EQ((*off)->describe().find("silent sends"), std::string::npos);
  auto on = Ring::create({.sq_entries = 64});
  ASSERT_TRUE(on.ok()) << on.status();
  RecordProperty("silent_send", (*on)->silent_send() ? "yes" : "no");
  EXPECT_EQ((*on)->describe().find("silent sends") != std::string::npos, (*on)->silent_send());
  if ((*on)->silent_send()) {
    EXPECT_EQ(io_uring_cq_ready((*on)->raw()), 0u);
    EXPECT_EQ(io_uring_sq_ready((*on)->raw()), 0u);
  }
}

// Every mode runs coroutines the same way.
class RingModeTest : public ::testing::TestWithParam<int> {};

Task<int> count_nops(int n) {
  int ok = 0;
  for (int i = 0; i < n; ++i) ok += (co_await nop()).ok() ? 1 : 0;
  co_return ok;
}

TEST_P(RingModeTest, LoopRunsInEveryMode) {
  LoopOptions options;
  options.ring.sq_entries = 16;
  options.ring.allow_defer_taskrun = GetParam() == 0;
  options.ring.allow_coop_taskrun = GetParam() <= 1;
  auto loop = EventLoop::create(std::move(options));
  ASSERT_TRUE(loop.ok()) << loop.status();
  EXPECT_EQ(static_cast<int>((*loop)->ring().mode()), GetParam());
  EXPECT_EQ((*loop)->block_on(count_nops(100)), 100);
}

INSTANTIATE_TEST_SUITE_P(Modes, RingModeTest, ::testing::Values(0, 1, 2));

// A tiny CQ and many completions at once: the kernel holds the overflow,
// the loop notices, counts it and delivers every CQE.
Task<> one_nop(int* done) {
  absl::Status s = co_await nop();
  if (s.ok()) ++*done;
}

TEST(RingTest, CqOverflowLosesNoCompletion) {
  LoopOptions options;
  options.ring.sq_entries = 8;
  options.ring.cq_entries = 16;
  auto loop = EventLoop::create(std::move(options));
  ASSERT_TRUE(loop.ok()) << loop.status();
  EXPECT_EQ((*loop)->ring().cq_entries(), 16u);
  constexpr int kOps = 500;
  int done = 0;
  for (int i = 0; i < kOps; ++i) spawn(**loop, one_nop(&done));
  // All start in one iteration: 500 SQEs through an 8-entry SQ into a
  // 16-entry CQ.
  for (int i = 0; i < 100 && done < kOps; ++i) (*loop)->run_once(false);
  EXPECT_EQ(done, kOps);
  const LoopStats stats = (*loop)->stats();
  EXPECT_GT(stats.cq_overflows, 0u) << stats.to_string();
  EXPECT_GT(stats.sq_full, 0u);
  EXPECT_EQ(stats.cq_dropped, 0u);
  EXPECT_EQ(stats.stale_cqes, 0u);
  EXPECT_EQ(stats.ops_in_flight, 0u);
}

}  // namespace
}  // namespace coring
