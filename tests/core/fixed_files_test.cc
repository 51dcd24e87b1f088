// Tests of core/fixed_files.*: the sparse table, kernel slot allocation,
// a full table, close_direct.
#include "coring/core/fixed_files.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <vector>

#include "coring/core/close.h"
#include "coring/core/connect.h"
#include "coring/core/recv.h"
#include "coring/core/send.h"
#include "coring/core/task.h"
#include "test_loop_util.h"

namespace coring {
namespace {

using testing::Fd;
using testing::make_loop;

TEST(FixedFilesTest, TableSizeComesFromOptionsAndRlimit) {
  LoopOptions options;
  options.fixed_files = 16;
  auto loop = make_loop(std::move(options));
  ASSERT_NE(loop->fixed_files(), nullptr);
  EXPECT_EQ(loop->fixed_files()->size(), 16u);

  rlimit limit{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
  LoopOptions huge;
  huge.fixed_files = 1u << 30;
  auto clamped = make_loop(std::move(huge));
  EXPECT_EQ(clamped->fixed_files()->size(), static_cast<uint32_t>(limit.rlim_cur));
  EXPECT_EQ(clamped->fixed_files()->requested(), 1u << 30);
}

Task<std::vector<absl::StatusOr<uint32_t>>> open_sockets(int n) {
  std::vector<absl::StatusOr<uint32_t>> out;
  for (int i = 0; i < n; ++i) out.push_back(co_await socket_direct(AF_INET, SOCK_STREAM, 0));
  co_return out;
}

Task<absl::Status> close_slot(uint32_t slot) { co_return co_await close_direct(slot); }

TEST(FixedFilesTest, FullTableIsAClearErrorAndRecovers) {
  LoopOptions options;
  options.fixed_files = 4;
  auto loop = make_loop(std::move(options));
  auto results = loop->block_on(open_sockets(5));
  ASSERT_EQ(results.size(), 5u);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(results[i].ok()) << results[i].status();
  EXPECT_EQ(results[4].status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(results[4].status().message().find("fixed-file table full (4 slots"), std::string::npos)
      << results[4].status();
  EXPECT_NE(results[4].status().message().find("ENFILE"), std::string::npos);

  ASSERT_TRUE(loop->block_on(close_slot(*results[2])).ok());
  auto again = loop->block_on(open_sockets(1));
  ASSERT_TRUE(again[0].ok()) << again[0].status();
  EXPECT_EQ(*again[0], *results[2]);  // the freed slot is the free one
  // Closing a slot twice is an error, not a crash.
  ASSERT_TRUE(loop->block_on(close_slot(*again[0])).ok());
  EXPECT_FALSE(loop->block_on(close_slot(*again[0])).ok());
}

Task<std::string> install_and_echo(int fd) {
  absl::StatusOr<uint32_t> slot = co_await install_file(fd);
  if (!slot.ok()) co_return slot.status().ToString();
  std::array<uint8_t, 16> buf{};
  absl::StatusOr<size_t> n = co_await recv(FileRef::fixed_index(*slot), absl::MakeSpan(buf));
  absl::Status c = co_await close_direct(*slot);
  if (!n.ok()) co_return n.status().ToString();
  if (!c.ok()) co_return c.ToString();
  co_return std::string(reinterpret_cast<char*>(buf.data()), *n);
}

TEST(FixedFilesTest, InstallFilePutsAnFdIntoTheTable) {
  auto loop = make_loop();
  auto [a, b] = testing::socket_pair();
  ASSERT_EQ(::write(b.fd, "hi", 2), 2);
  EXPECT_EQ(loop->block_on(install_and_echo(a.fd)), "hi");
}

Task<> install_only(int fd, bool* installed) {
  absl::StatusOr<uint32_t> slot = co_await install_file(fd);
  *installed = slot.ok();
}

// The installing coroutine is destroyed after the op was queued, before its
// completion: the slot the kernel filled must be closed again, or the
// duplicate keeps the socket open for good (the peer never sees EOF).
TEST(FixedFilesTest, InstallFileAbandonedBeforeItsCompletionFreesTheSlot) {
  auto loop = make_loop();
  auto [a, b] = testing::socket_pair();
  bool installed = false;
  loop->block_on([](int fd, bool* installed) -> Task<> {
    Task<> t = install_only(fd, installed);
    t.handle().resume();  // queued, not submitted yet
    co_return;            // `t` destroyed here, before the completion
  }(a.fd, &installed));
  for (int i = 0; i < 5; ++i) loop->run_once(false);
  EXPECT_FALSE(installed);
  EXPECT_EQ(loop->stats().ops_in_flight, 0u);
  ::close(std::exchange(a.fd, -1));
  for (int i = 0; i < 5; ++i) loop->run_once(false);
  char c;
  EXPECT_EQ(::recv(b.fd, &c, 1, MSG_DONTWAIT), 0) << "no EOF: the table still holds the socket";
}

}  // namespace
}  // namespace coring
