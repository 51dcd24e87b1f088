#include "coring/tls/ktls.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "coring/core/errno_status.h"
#include "coring/core/setsockopt.h"

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

namespace {

// One install step. A plain fd takes the syscall: it works on every kernel
// with the TLS ULP, where the ring's setsockopt needs 6.7. A fixed file has
// no fd in this process, so only the ring can reach it.
Task<absl::Status> set_option(FileRef file, int level, int optname, const void* value, size_t size,
                              const char* step) {
  int err = 0;
  if (!file.fixed) {
    if (::setsockopt(file.fd, level, optname, value, static_cast<socklen_t>(size)) != 0) {
      err = errno;
    }
  } else {
    SetSockOpt op = coring::setsockopt(file, level, optname, value, static_cast<socklen_t>(size));
    (void)co_await op;
    err = op.error();
  }
  if (err == 0) co_return absl::OkStatus();
  std::string reason = absl::StrCat(step, ": setsockopt: ", std::string(errno_name(err)));
  // Before Linux 6.7 a socket takes no uring_cmd (EOPNOTSUPP), before 5.19
  // the ring knows no IORING_OP_URING_CMD (EINVAL; only the first step can
  // tell, later ones may be refusing the keys).
  if (file.fixed && (err == EOPNOTSUPP || (err == EINVAL && optname == TCP_ULP))) {
    absl::StrAppend(&reason, " (setsockopt on an io_uring fixed file needs Linux 6.7)");
  }
  co_return absl::Status(errno_to_code(err), reason);
}

}  // namespace

Task<absl::Status> install_kernel_tls(FileRef file, const KtlsKeys& keys, bool& tx_installed) {
  tx_installed = false;
  static constexpr char kUlp[] = "tls";
  if (absl::Status s =
          co_await set_option(file, SOL_TCP, TCP_ULP, kUlp, sizeof(kUlp), "TCP_ULP \"tls\"");
      !s.ok()) {
    co_return s;
  }
  if (absl::Status s =
          co_await set_option(file, SOL_TLS, TLS_TX, keys.tx.data(), keys.tx.size(), "TLS_TX");
      !s.ok()) {
    co_return s;
  }
  tx_installed = true;
  co_return co_await set_option(file, SOL_TLS, TLS_RX, keys.rx.data(), keys.rx.size(), "TLS_RX");
}

Task<RecordPathDecision> decide_record_path(KtlsSwitchPoint at) {
  RecordPathDecision d = precheck_record_path(at.wanted, at.ulp_list_file);
  if (d.path == RecordPath::kUserSpace) co_return d;
  d.path = RecordPath::kUserSpace;
  if (at.capture == nullptr) {
    d.reason = "kernel TLS: no traffic keys were captured for this connection";
    co_return d;
  }
  if (at.unread_bytes > 0 || at.unread_elsewhere) {
    d.reason = absl::StrFormat(
        "kernel TLS: ciphertext past the handshake was already taken off the socket (%d bytes in "
        "the read BIO%s)",
        at.unread_bytes, at.unread_elsewhere ? ", more in OpenSSL or the stream" : "");
    co_return d;
  }
  absl::StatusOr<KtlsKeys> keys = at.capture->derive();
  if (!keys.ok()) {
    d.reason = absl::StrCat("kernel TLS: ", keys.status().message());
    co_return d;
  }
  absl::Status s;
  bool tx_installed = false;
  if (at.install != nullptr && *at.install) {
    s = (*at.install)(at.file, *keys);
  } else {
    s = co_await install_kernel_tls(at.file, *keys, tx_installed);
  }
  if (!s.ok()) {
    d.reason = absl::StrCat("kernel TLS install failed: ", s.message());
    if (tx_installed) {
      // The kernel now encrypts what is sent, OpenSSL would too: neither
      // path can carry this connection's records any more.
      d.fatal = absl::Status(s.code(), d.reason);
    }
    co_return d;
  }
  d.path = RecordPath::kKernel;
  co_return d;
}

}  // namespace coring::tls
