// Tests of core/setsockopt.h on real loopback TCP sockets, as a plain fd and
// as a fixed file: the value set through the ring is what getsockopt() on
// the raw fd reads back; a bad option and the missing TLS ULP come back as
// their errno; an op whose coroutine is destroyed before submission still
// reads its value from the slot.
#include "coring/core/setsockopt.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <fstream>
#include <string>
#include <utility>

#include "coring/core/close.h"
#include "coring/core/fixed_files.h"
#include "coring/core/task.h"
#include "test_loop_util.h"

namespace coring {
namespace {

using testing::Fd;
using testing::make_loop;

// TCP_ULP as in linux/tcp.h (Debian 12's netinet/tcp.h has it; kept for
// older libcs).
#ifndef TCP_ULP
#define TCP_ULP 31
#endif

// A connected loopback TCP socket (the accepted side stays open beside it).
struct TcpPair {
  Fd client;
  Fd server;
};
TcpPair tcp_pair() {
  uint16_t port = 0;
  Fd listener = testing::listen_loopback(&port);
  Fd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const sockaddr_in addr = testing::loopback_addr(port);
  EXPECT_EQ(::connect(client.fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)), 0);
  Fd server(::accept4(listener.fd, nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_GE(server.fd, 0);
  return TcpPair{std::move(client), std::move(server)};
}

int get_int(int fd, int level, int optname) {
  int value = -1;
  socklen_t len = sizeof(value);
  EXPECT_EQ(::getsockopt(fd, level, optname, &value, &len), 0);
  return value;
}

Task<absl::Status> set_int(FileRef file, int level, int optname, int value) {
  co_return co_await setsockopt(file, level, optname, &value, sizeof(value));
}

// Sets `value` and returns the errno the kernel answered (0: set).
Task<int> set_bytes_errno(FileRef file, int level, int optname, std::string value) {
  SetSockOpt op =
      setsockopt(file, level, optname, value.data(), static_cast<socklen_t>(value.size()));
  (void)co_await op;
  co_return op.error();
}

Task<absl::StatusOr<uint32_t>> install(int fd) { co_return co_await install_file(fd); }
Task<absl::Status> close_slot(uint32_t slot) { co_return co_await close_direct(slot); }

// Whether `s` (of a call that should succeed) says this kernel has no
// socket uring_cmd (before Linux 6.7): the test is skipped then.
bool lacks_uring_setsockopt(const absl::Status& s) {
  return !s.ok() && s.message().find("needs Linux 6.7") != std::string::npos;
}

TEST(SetSockOptTest, PlainFdOptionIsWhatGetsockoptReads) {
  auto loop = make_loop();
  TcpPair p = tcp_pair();
  absl::Status s = loop->block_on(set_int(p.client.fd, IPPROTO_TCP, TCP_NODELAY, 1));
  if (lacks_uring_setsockopt(s)) GTEST_SKIP() << s;
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_NE(get_int(p.client.fd, IPPROTO_TCP, TCP_NODELAY), 0);
  ASSERT_TRUE(loop->block_on(set_int(p.client.fd, IPPROTO_TCP, TCP_NODELAY, 0)).ok());
  EXPECT_EQ(get_int(p.client.fd, IPPROTO_TCP, TCP_NODELAY), 0);
  // The kernel doubles SO_RCVBUF (socket(7)): what it read was our value.
  ASSERT_TRUE(loop->block_on(set_int(p.client.fd, SOL_SOCKET, SO_RCVBUF, 48 * 1024)).ok());
  EXPECT_EQ(get_int(p.client.fd, SOL_SOCKET, SO_RCVBUF), 96 * 1024);
}

TEST(SetSockOptTest, FixedFileOptionIsWhatGetsockoptOnItsFdReads) {
  auto loop = make_loop();
  ASSERT_NE(loop->fixed_files(), nullptr);
  TcpPair p = tcp_pair();
  // The slot holds a duplicate of the fd: the same socket, read through p.client.
  absl::StatusOr<uint32_t> slot = loop->block_on(install(p.client.fd));
  ASSERT_TRUE(slot.ok()) << slot.status();
  const FileRef fixed = FileRef::fixed_index(*slot);
  absl::Status s = loop->block_on(set_int(fixed, IPPROTO_TCP, TCP_NODELAY, 1));
  if (lacks_uring_setsockopt(s)) GTEST_SKIP() << s;
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_NE(get_int(p.client.fd, IPPROTO_TCP, TCP_NODELAY), 0);
  ASSERT_TRUE(loop->block_on(set_int(fixed, IPPROTO_TCP, TCP_NODELAY, 0)).ok());
  EXPECT_EQ(get_int(p.client.fd, IPPROTO_TCP, TCP_NODELAY), 0);
  ASSERT_TRUE(loop->block_on(set_int(fixed, SOL_SOCKET, SO_RCVBUF, 40 * 1024)).ok());
  EXPECT_EQ(get_int(p.client.fd, SOL_SOCKET, SO_RCVBUF), 80 * 1024);
  // Not the index taken for an fd: the server side is untouched.
  EXPECT_NE(get_int(p.server.fd, SOL_SOCKET, SO_RCVBUF), 80 * 1024);
  EXPECT_TRUE(loop->block_on(close_slot(*slot)).ok());
}

TEST(SetSockOptTest, UnknownOptionIsItsErrnoOnBothKinds) {
  auto loop = make_loop();
  TcpPair p = tcp_pair();
  absl::StatusOr<uint32_t> slot = loop->block_on(install(p.client.fd));
  ASSERT_TRUE(slot.ok()) << slot.status();
  for (const FileRef file : {FileRef(p.client.fd), FileRef::fixed_index(*slot)}) {
    absl::Status s = loop->block_on(set_int(file, SOL_SOCKET, 0x7fff, 1));
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message().find("setsockopt: ENOPROTOOPT"), std::string::npos) << s;
    EXPECT_EQ(loop->block_on(set_bytes_errno(file, SOL_SOCKET, 0x7fff, "1234")), ENOPROTOOPT);
  }
  EXPECT_TRUE(loop->block_on(close_slot(*slot)).ok());
}

bool kernel_offers_tls_ulp() {
  std::ifstream in("/proc/sys/net/ipv4/tcp_available_ulp");
  std::string word;
  while (in >> word) {
    if (word == "tls") return true;
  }
  return false;
}

// The step kernel TLS starts with (tls/ktls.cc). Without the ULP the
// kernel answers ENOENT; with it, the fixed file becomes a TLS socket.
TEST(SetSockOptTest, TcpUlpTlsOnAFixedFileIsEnoentWithoutTheUlp) {
  auto loop = make_loop();
  TcpPair p = tcp_pair();
  absl::StatusOr<uint32_t> slot = loop->block_on(install(p.client.fd));
  ASSERT_TRUE(slot.ok()) << slot.status();
  const int err = loop->block_on(
      set_bytes_errno(FileRef::fixed_index(*slot), SOL_TCP, TCP_ULP, std::string("tls", 4)));
  if (err == EOPNOTSUPP || err == EINVAL) GTEST_SKIP() << "no io_uring setsockopt here";
  if (kernel_offers_tls_ulp()) {
    EXPECT_EQ(err, 0);
  } else {
    EXPECT_EQ(err, ENOENT);
  }
  EXPECT_TRUE(loop->block_on(close_slot(*slot)).ok());
}

Task<> set_rcvbuf_only(FileRef file, int value) {
  (void)co_await setsockopt(file, SOL_SOCKET, SO_RCVBUF, &value, sizeof(value));
  ADD_FAILURE() << "the abandoned coroutine was resumed";
}

// The coroutine is destroyed after its op was queued, before submission:
// `value` in its frame is gone by the time the kernel reads the option,
// which it takes from the op's slot.
TEST(SetSockOptTest, AbandonedBeforeSubmissionStillSetsTheCopiedValue) {
  auto loop = make_loop();
  TcpPair p = tcp_pair();
  absl::StatusOr<uint32_t> slot = loop->block_on(install(p.client.fd));
  ASSERT_TRUE(slot.ok()) << slot.status();
  const FileRef fixed = FileRef::fixed_index(*slot);
  absl::Status s = loop->block_on(set_int(fixed, IPPROTO_TCP, TCP_NODELAY, 1));
  if (lacks_uring_setsockopt(s)) GTEST_SKIP() << s;
  loop->block_on([](FileRef file) -> Task<> {
    Task<> t = set_rcvbuf_only(file, 36 * 1024);
    t.handle().resume();  // queued, not submitted yet
    co_return;            // `t` destroyed here, before the completion
  }(fixed));
  for (int i = 0; i < 5; ++i) loop->run_once(false);
  EXPECT_EQ(loop->stats().ops_in_flight, 0u);
  EXPECT_EQ(get_int(p.client.fd, SOL_SOCKET, SO_RCVBUF), 72 * 1024);
  EXPECT_TRUE(loop->block_on(close_slot(*slot)).ok());
}

}  // namespace
}  // namespace coring
