#include "coring/tls/ktls_records.h"

#include <linux/tls.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"
#include "coring/core/errno_status.h"

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

absl::StatusOr<ControlRecord> take_control_record(int fd, absl::Span<uint8_t> scratch) {
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(uint8_t))] = {};
  iovec iov{scratch.data(), scratch.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  const ssize_t n = ::recvmsg(fd, &msg, MSG_DONTWAIT);
  if (n < 0) return errno_to_status(errno, "kernel TLS: recvmsg of a control record");
  uint8_t type = kApplicationData;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_TLS && c->cmsg_type == TLS_GET_RECORD_TYPE) {
      std::memcpy(&type, CMSG_DATA(c), sizeof(type));
    }
  }
  const size_t len = static_cast<size_t>(n);
  if (type == kAlert) {
    if (len >= 2 && scratch[1] == kCloseNotify) return ControlRecord::kCloseNotify;
    return absl::DataLossError(absl::StrFormat("TLS read (kernel TLS): the peer sent alert %d",
                                               len >= 2 ? scratch[1] : -1));
  }
  if (type == kHandshake && len >= 1) {
    if (scratch[0] == kNewSessionTicket) return ControlRecord::kSkipped;
    if (scratch[0] == kKeyUpdate) {
      return absl::UnimplementedError("TLS read: KeyUpdate under kernel TLS not supported");
    }
    return absl::DataLossError(
        absl::StrFormat("TLS read (kernel TLS): unexpected handshake message %d", scratch[0]));
  }
  // Data here would mean the EIO was about something else: nothing is lost
  // only if no byte was taken, and this path cannot tell the reader's buffer
  // about them, so it is an error too.
  return absl::DataLossError(
      absl::StrFormat("TLS read (kernel TLS): unexpected record of type %d (%d bytes)", type, len));
}

absl::Status send_close_notify_alert(int fd) {
  uint8_t alert[2] = {1 /* warning */, kCloseNotify};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(uint8_t))] = {};
  iovec iov{alert, sizeof(alert)};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_TLS;
  c->cmsg_type = TLS_SET_RECORD_TYPE;
  c->cmsg_len = CMSG_LEN(sizeof(uint8_t));
  std::memcpy(CMSG_DATA(c), &kAlert, sizeof(kAlert));
  if (::sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
    return errno_to_status(errno, "kernel TLS: close_notify");
  }
  return absl::OkStatus();
}

}  // namespace coring::tls
