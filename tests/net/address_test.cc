#include <sys/socket.h>
#include <unistd.h>

#include "coring/net/socket_address.h"
#include "gtest/gtest.h"

namespace coring::net {
namespace {

TEST(SocketAddressTest, ParsesIpv4) {
  absl::StatusOr<SocketAddress> a = SocketAddress::parse("127.0.0.1:7000");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->family(), SocketAddress::Family::kIpv4);
  EXPECT_EQ(a->domain(), AF_INET);
  EXPECT_EQ(a->port(), 7000);
  EXPECT_EQ(a->to_string(), "127.0.0.1:7000");
}

TEST(SocketAddressTest, ParsesIpv6InBrackets) {
  absl::StatusOr<SocketAddress> a = SocketAddress::parse("[::1]:65535");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->family(), SocketAddress::Family::kIpv6);
  EXPECT_EQ(a->port(), 65535);
  EXPECT_EQ(a->to_string(), "[::1]:65535");
}

TEST(SocketAddressTest, LocalhostIsIpv4Loopback) {
  absl::StatusOr<SocketAddress> a = SocketAddress::parse("localhost:0");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->to_string(), "127.0.0.1:0");
}

TEST(SocketAddressTest, ParsesUnixPath) {
  absl::StatusOr<SocketAddress> a = SocketAddress::parse("unix:/tmp/x.sock");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->family(), SocketAddress::Family::kUnix);
  EXPECT_EQ(a->port(), 0);
  EXPECT_EQ(a->to_string(), "unix:/tmp/x.sock");
}

TEST(SocketAddressTest, RejectsBadInputWithClearErrors) {
  for (const char* bad :
       {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:12x", "::1:80",
        "[::1]80", "[::1", "example.com:80", "300.1.1.1:80", "unix:"}) {
    absl::StatusOr<SocketAddress> a = SocketAddress::parse(bad);
    EXPECT_FALSE(a.ok()) << bad;
    EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(a.status().message().find("address"), std::string::npos) << bad << ": " << a.status();
  }
  EXPECT_FALSE(SocketAddress::unix_path(std::string(200, 'x')).ok());
}

TEST(SocketAddressTest, LocalOfReportsTheKernelsPortPick) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  SocketAddress any = SocketAddress::ipv4_loopback(0);
  ASSERT_EQ(bind(fd, any.data(), any.size()), 0);
  absl::StatusOr<SocketAddress> bound = SocketAddress::local_of(fd);
  close(fd);
  ASSERT_TRUE(bound.ok()) << bound.status();
  EXPECT_NE(bound->port(), 0);
  EXPECT_EQ(bound->family(), SocketAddress::Family::kIpv4);
}

}  // namespace
}  // namespace coring::net
