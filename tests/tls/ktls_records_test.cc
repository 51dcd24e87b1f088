// Tests of tls/ktls_records.h without the kernel's TLS ULP: only the
// plumbing. The recvmsg and sendmsg go through the ring on a fixed file and
// on a plain fd of a loopback TCP socket; plain TCP ignores the SOL_TLS
// control message, so what is checked is that the bytes, the lengths and
// MSG_DONTWAIT make it through - not what a kernel-TLS socket would do with
// the record types (that cannot run here).
#include "coring/tls/ktls_records.h"

#include <gtest/gtest.h>
#include <netinet/in.h>

#include <array>
#include <string>

#include "core/test_loop_util.h"
#include "coring/core/close.h"
#include "coring/core/fixed_files.h"
#include "coring/core/task.h"

namespace coring::tls {
namespace {

using coring::testing::Fd;

struct TcpPair {
  Fd client;
  Fd server;
};
TcpPair tcp_pair() {
  uint16_t port = 0;
  Fd listener = coring::testing::listen_loopback(&port);
  Fd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const sockaddr_in addr = coring::testing::loopback_addr(port);
  EXPECT_EQ(::connect(client.fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)), 0);
  Fd server(::accept4(listener.fd, nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_GE(server.fd, 0);
  return TcpPair{std::move(client), std::move(server)};
}

Task<absl::StatusOr<uint32_t>> install(int fd) { co_return co_await install_file(fd); }
Task<absl::Status> close_slot(uint32_t slot) { co_return co_await close_direct(slot); }

Task<absl::Status> send_alert(FileRef file, ControlRecordMsg* m) {
  co_return co_await send_close_notify_alert(file, *m);
}
Task<absl::StatusOr<ControlRecord>> take(FileRef file, ControlRecordMsg* m,
                                         absl::Span<uint8_t> scratch) {
  co_return co_await take_control_record(file, *m, scratch);
}

class KtlsRecordsTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    loop_ = coring::testing::make_loop();
    ASSERT_NE(loop_, nullptr);
    if (!GetParam()) {
      file_ = FileRef(pair_.client.fd);
      return;
    }
    absl::StatusOr<uint32_t> slot = loop_->block_on(install(pair_.client.fd));
    ASSERT_TRUE(slot.ok()) << slot.status();
    file_ = FileRef::fixed_index(*slot);
  }
  void TearDown() override {
    if (file_.fixed) {
      EXPECT_TRUE(loop_->block_on(close_slot(static_cast<uint32_t>(file_.fd))).ok());
    }
  }

  std::unique_ptr<EventLoop> loop_;
  TcpPair pair_ = tcp_pair();
  FileRef file_;
  ControlRecordMsg msg_;
};

// The alert's two bytes (warning, close_notify) reach the peer.
TEST_P(KtlsRecordsTest, CloseNotifyAlertIsSentThroughTheRing) {
  absl::Status s = loop_->block_on(send_alert(file_, &msg_));
  ASSERT_TRUE(s.ok()) << s;
  std::array<uint8_t, 8> got{};
  ASSERT_EQ(::recv(pair_.server.fd, got.data(), got.size(), 0), 2);
  EXPECT_EQ(got[0], 1);
  EXPECT_EQ(got[1], 0);
}

// Bytes without a record type (plain TCP sets no TLS_GET_RECORD_TYPE) are
// the "unexpected record" error, with the length recvmsg took.
TEST_P(KtlsRecordsTest, RecvmsgTakesTheWaitingBytesThroughTheRing) {
  ASSERT_EQ(::send(pair_.server.fd, "abc", 3, 0), 3);
  std::array<uint8_t, 64> scratch{};
  absl::StatusOr<ControlRecord> c = loop_->block_on(take(file_, &msg_, absl::MakeSpan(scratch)));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(c.status().message().find("unexpected record of type 23 (3 bytes)"), std::string::npos)
      << c.status();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(scratch.data()), 3), "abc");
}

// Nothing waiting: MSG_DONTWAIT, so EAGAIN instead of waiting for a record.
TEST_P(KtlsRecordsTest, NothingWaitingIsEagainNotAWait) {
  std::array<uint8_t, 64> scratch{};
  absl::StatusOr<ControlRecord> c = loop_->block_on(take(file_, &msg_, absl::MakeSpan(scratch)));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("kernel TLS: control record: recvmsg: EAGAIN"),
            std::string::npos)
      << c.status();
}

INSTANTIATE_TEST_SUITE_P(Files, KtlsRecordsTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& i) {
                           return std::string(i.param ? "FixedFile" : "PlainFd");
                         });

}  // namespace
}  // namespace coring::tls
