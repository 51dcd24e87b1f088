#include "coring/pool/memlock.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace coring::pool {
namespace {

using ::testing::HasSubstr;

TEST(MemlockTest, EnoughOrUnlimitedOrCapabilityIsOk) {
  EXPECT_TRUE(check_memlock(1 << 20, MemlockLimits{std::nullopt, std::nullopt, false}).ok());
  EXPECT_TRUE(check_memlock(1 << 20, MemlockLimits{1 << 20, 1 << 20, false}).ok());
  EXPECT_TRUE(check_memlock(1 << 30, MemlockLimits{65536, 65536, true}).ok());
}

TEST(MemlockTest, TooLowSaysHowToRaiseIt) {
  const absl::Status s = check_memlock(8 << 20, MemlockLimits{8 << 10, 8 << 10, false});
  ASSERT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  const std::string m(s.message());
  EXPECT_THAT(m, HasSubstr("8 MiB"));
  EXPECT_THAT(m, HasSubstr("RLIMIT_MEMLOCK >= 8388608 bytes"));
  EXPECT_THAT(m, HasSubstr("the limit is 8 KiB"));
  EXPECT_THAT(m, HasSubstr("ulimit -l 8192"));
  EXPECT_THAT(m, HasSubstr("/etc/security/limits.conf"));
  EXPECT_THAT(m, HasSubstr("LimitMEMLOCK="));
  EXPECT_THAT(m, HasSubstr("CAP_IPC_LOCK"));
  EXPECT_THAT(m, HasSubstr("the hard limit is lower too"));
  const absl::Status soft_only =
      check_memlock(8 << 20, MemlockLimits{8 << 10, std::nullopt, false});
  EXPECT_THAT(std::string(soft_only.message()), HasSubstr("hard limit unlimited"));
  EXPECT_THAT(std::string(soft_only.message()), ::testing::Not(HasSubstr("lower too")));
}

TEST(MemlockTest, CurrentLimitsAreReadable) {
  absl::StatusOr<MemlockLimits> limits = current_memlock_limits();
  ASSERT_TRUE(limits.ok()) << limits.status();
  // Whatever they are, a zero-byte pin is always fine and the verdict agrees
  // with the pure function.
  EXPECT_TRUE(check_memlock(0).ok());
  EXPECT_EQ(check_memlock(size_t{1} << 40).ok(), check_memlock(size_t{1} << 40, *limits).ok());
}

}  // namespace
}  // namespace coring::pool
