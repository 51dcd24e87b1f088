#include "coring/tls/ktls_records.h"

#include <linux/tls.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "coring/core/recv.h"
#include "coring/core/send.h"

namespace coring::tls {

namespace {

// TLS content types and handshake message types (RFC 8446 B.1, B.3).
constexpr uint8_t kAlert = 21;
constexpr uint8_t kHandshake = 22;
constexpr uint8_t kApplicationData = 23;
constexpr uint8_t kNewSessionTicket = 4;
constexpr uint8_t kKeyUpdate = 24;
constexpr uint8_t kCloseNotify = 0;

}  // namespace

Task<absl::StatusOr<ControlRecord>> take_control_record(FileRef file, ControlRecordMsg& m,
                                                        absl::Span<uint8_t> scratch) {
  m = ControlRecordMsg{};
  m.iov = iovec{scratch.data(), scratch.size()};
  m.msg.msg_iov = &m.iov;
  m.msg.msg_iovlen = 1;
  m.msg.msg_control = m.control;
  m.msg.msg_controllen = sizeof(m.control);
  // MSG_DONTWAIT: the EIO said the record is there; EAGAIN would mean it
  // is not, and the caller should not wait on a record it cannot name.
  absl::StatusOr<size_t> got = co_await coring::recvmsg(file, &m.msg, MSG_DONTWAIT);
  if (!got.ok()) {
    co_return absl::Status(got.status().code(),
                           absl::StrCat("kernel TLS: control record: ", got.status().message()));
  }
  uint8_t type = kApplicationData;
  for (cmsghdr* c = CMSG_FIRSTHDR(&m.msg); c != nullptr; c = CMSG_NXTHDR(&m.msg, c)) {
    if (c->cmsg_level == SOL_TLS && c->cmsg_type == TLS_GET_RECORD_TYPE) {
      std::memcpy(&type, CMSG_DATA(c), sizeof(type));
    }
  }
  const size_t len = *got;
  if (type == kAlert) {
    if (len >= 2 && scratch[1] == kCloseNotify) co_return ControlRecord::kCloseNotify;
    co_return absl::DataLossError(absl::StrFormat("TLS read (kernel TLS): the peer sent alert %d",
                                                  len >= 2 ? scratch[1] : -1));
  }
  if (type == kHandshake && len >= 1) {
    if (scratch[0] == kNewSessionTicket) co_return ControlRecord::kSkipped;
    if (scratch[0] == kKeyUpdate) {
      co_return absl::UnimplementedError("TLS read: KeyUpdate under kernel TLS not supported");
    }
    co_return absl::DataLossError(
        absl::StrFormat("TLS read (kernel TLS): unexpected handshake message %d", scratch[0]));
  }
  // Data here would mean the EIO was about something else: nothing is lost
  // only if no byte was taken, and this path cannot tell the reader's buffer
  // about them, so it is an error too.
  co_return absl::DataLossError(
      absl::StrFormat("TLS read (kernel TLS): unexpected record of type %d (%d bytes)", type, len));
}

Task<absl::Status> send_close_notify_alert(FileRef file, ControlRecordMsg& m) {
  m = ControlRecordMsg{};
  m.alert[0] = 1;  // warning
  m.alert[1] = kCloseNotify;
  m.iov = iovec{m.alert, sizeof(m.alert)};
  m.msg.msg_iov = &m.iov;
  m.msg.msg_iovlen = 1;
  m.msg.msg_control = m.control;
  m.msg.msg_controllen = sizeof(m.control);
  cmsghdr* c = CMSG_FIRSTHDR(&m.msg);
  c->cmsg_level = SOL_TLS;
  c->cmsg_type = TLS_SET_RECORD_TYPE;
  c->cmsg_len = CMSG_LEN(sizeof(uint8_t));
  std::memcpy(CMSG_DATA(c), &kAlert, sizeof(kAlert));
  absl::StatusOr<size_t> sent = co_await coring::sendmsg(file, &m.msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  if (!sent.ok()) {
    co_return absl::Status(sent.status().code(),
                           absl::StrCat("kernel TLS: close_notify: ", sent.status().message()));
  }
  co_return absl::OkStatus();
}

}  // namespace coring::tls
