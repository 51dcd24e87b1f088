#include "coring/tls/ktls.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "coring/core/errno_status.h"

namespace coring::tls {

std::string_view to_string(RecordPath path) {
  return path == RecordPath::kKernel ? "kernel" : "user-space";
}

bool kernel_offers_tls(const std::string& ulp_list_file) {
  std::ifstream in(ulp_list_file);
  std::string word;
  while (in >> word) {
    if (word == "tls") return true;
  }
  return false;
}

RecordPathDecision precheck_record_path(bool wanted, const std::string& ulp_list_file) {
  if (!wanted)
    return {RecordPath::kUserSpace, "kernel TLS not wanted (TlsOptions::kernel_tls)", {}};
  if (!kernel_offers_tls(ulp_list_file)) {
    return {RecordPath::kUserSpace, "the kernel offers no TLS ULP (" + ulp_list_file + ")", {}};
  }
  return {RecordPath::kKernel, {}, {}};
}

absl::Status install_kernel_tls(FileRef file, const KtlsKeys& keys, bool& tx_installed) {
  tx_installed = false;
  if (file.fixed) {
    // setsockopt on a registered file needs IORING_OP_URING_CMD with
    // SOCKET_URING_OP_SETSOCKOPT (Linux 6.7), which neither liburing 2.3
    // nor these kernel headers define; net/ keeps no raw fd beside the slot.
    return absl::UnimplementedError(
        "the socket is an io_uring fixed file: no fd for setsockopt (liburing 2.3 has no "
        "SOCKET_URING_OP_SETSOCKOPT)");
  }
  auto failed = [](const char* step) {
    const int err = errno;
    return absl::Status(errno_to_code(err),
                        absl::StrCat(step, ": setsockopt: ", std::string(errno_name(err))));
  };
  static constexpr char kUlp[] = "tls";
  if (::setsockopt(file.fd, SOL_TCP, TCP_ULP, kUlp, sizeof(kUlp)) != 0) {
    return failed("TCP_ULP \"tls\"");
  }
  if (::setsockopt(file.fd, SOL_TLS, TLS_TX, keys.tx.data(),
                   static_cast<socklen_t>(keys.tx.size())) != 0) {
    return failed("TLS_TX");
  }
  tx_installed = true;
  if (::setsockopt(file.fd, SOL_TLS, TLS_RX, keys.rx.data(),
                   static_cast<socklen_t>(keys.rx.size())) != 0) {
    return failed("TLS_RX");
  }
  return absl::OkStatus();
}

RecordPathDecision decide_record_path(const KtlsSwitchPoint& at) {
  RecordPathDecision d = precheck_record_path(at.wanted, at.ulp_list_file);
  if (d.path == RecordPath::kUserSpace) return d;
  d.path = RecordPath::kUserSpace;
  if (at.capture == nullptr) {
    d.reason = "kernel TLS: no traffic keys were captured for this connection";
    return d;
  }
  if (at.unread_bytes > 0 || at.unread_elsewhere) {
    d.reason = absl::StrFormat(
        "kernel TLS: ciphertext past the handshake was already taken off the socket (%d bytes in "
        "the read BIO%s)",
        at.unread_bytes, at.unread_elsewhere ? ", more in OpenSSL or the stream" : "");
    return d;
  }
  absl::StatusOr<KtlsKeys> keys = at.capture->derive();
  if (!keys.ok()) {
    d.reason = absl::StrCat("kernel TLS: ", keys.status().message());
    return d;
  }
  absl::Status s;
  bool tx_installed = false;
  if (at.install != nullptr && *at.install) {
    s = (*at.install)(at.file, *keys);
  } else {
    s = install_kernel_tls(at.file, *keys, tx_installed);
  }
  if (!s.ok()) {
    d.reason = absl::StrCat("kernel TLS install failed: ", s.message());
    if (tx_installed) {
      // The kernel now encrypts what is sent, OpenSSL would too: neither
      // path can carry this connection's records any more.
      d.fatal = absl::Status(s.code(), d.reason);
    }
    return d;
  }
  d.path = RecordPath::kKernel;
  return d;
}

}  // namespace coring::tls
