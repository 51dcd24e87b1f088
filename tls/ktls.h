// Kernel TLS: the switch, tried once after each handshake, that hands a
// connection's record encryption to the kernel (setsockopt TCP_ULP "tls",
// then TLS_TX and TLS_RX with the traffic keys) so that the data path is
// plain io_uring send/recv again. With memory BIOs OpenSSL never does this
// itself (it does only for socket BIOs), so coring does: the keys come from
// KtlsCapture (ktls_keys.h), the steps are here, and TlsConnection carries
// plaintext once they succeed (ktls_records.h has the kernel-side record
// handling).
//
// decide_record_path() goes step by step and stops, with a reason, at the
// first that fails; the connection then keeps its user-space records
// (TlsInfo::record_path / record_path_reason, the context's TlsStats):
//  * TlsOptions::kernel_tls off;
//  * the kernel offers no "tls" upper-layer protocol
//    (/proc/sys/net/ipv4/tcp_available_ulp; the machines coring is
//    developed on list only "mptcp");
//  * ciphertext past the handshake was already taken off the socket (in
//    OpenSSL's buffers, the stream's queue or an armed recv): the kernel
//    would start mid-stream;
//  * no keys for it (TLS 1.2, AES-CCM, a KeyUpdate before the switch);
//  * the install: a setsockopt fails - the reason names the step and errno:
//    `kernel TLS install failed: TCP_ULP "tls": setsockopt: ENOENT`.
// A failed TCP_ULP or TLS_TX leaves the socket passing bytes as before. A
// TLS_RX that fails after TLS_TX succeeded cannot be undone: the decision
// then carries a fatal status and the handshake fails with it.
//
// The setsockopt calls: a plain fd takes the syscall (kernel TLS works from
// Linux 4.13 on, and so keeps working where the ring has no setsockopt); an
// io_uring fixed file - coring's default, with no fd in the process - goes
// through the ring (core/setsockopt.h, IORING_OP_URING_CMD, Linux 6.7+; an
// older kernel's EOPNOTSUPP/EINVAL is the reason then). Past the switch, the
// records that are not data are read and close_notify is sent with io_uring
// recvmsg / sendmsg on either kind (ktls_records.h).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "coring/core/operation.h"
#include "coring/core/task.h"
#include "coring/tls/ktls_keys.h"

namespace coring::tls {

enum class RecordPath : uint8_t { kUserSpace, kKernel };
std::string_view to_string(RecordPath path);

// True when `ulp_list_file` (normally /proc/sys/net/ipv4/tcp_available_ulp)
// names "tls". A file that cannot be read counts as "no".
bool kernel_offers_tls(const std::string& ulp_list_file);

// How the keys reach the socket. Not OK: nothing was installed. The
// default is the setsockopt calls (install_kernel_tls()); tests pass their
// own (TlsOptions::kernel_tls_install) to see the keys at the switch point.
// Synchronous: a test's install only looks at the keys or pretends.
using KtlsInstall = std::function<absl::Status(FileRef file, const KtlsKeys& keys)>;

// What a connection knows at the switch point (right after its handshake,
// with everything OpenSSL wrote already sent).
struct KtlsSwitchPoint {
  bool wanted = true;  // TlsOptions::kernel_tls
  std::string ulp_list_file;
  FileRef file;
  const KtlsCapture* capture = nullptr;
  // Ciphertext received but not read by OpenSSL: the kernel would never
  // see those bytes. In the read BIO; elsewhere (OpenSSL's own buffer, the
  // stream's queue, or a recv armed that may take some).
  size_t unread_bytes = 0;
  bool unread_elsewhere = false;
  const KtlsInstall* install = nullptr;  // nullptr: the setsockopt calls
};

struct RecordPathDecision {
  RecordPath path = RecordPath::kUserSpace;
  std::string reason;  // why user space, when it is
  absl::Status fatal;  // not OK: half installed, the connection cannot go on
};

// Whether the switch is worth trying at all (cheap: no keys, no syscalls
// but reading the ULP list); the user-space reason when it is not.
RecordPathDecision precheck_record_path(bool wanted, const std::string& ulp_list_file);

// Runs on the connection's loop (the install may go through its ring).
Task<RecordPathDecision> decide_record_path(KtlsSwitchPoint at);

// The setsockopt steps, on a plain fd or a fixed file. `tx_installed`: the
// kernel took TLS_TX (so a later failure cannot fall back).
Task<absl::Status> install_kernel_tls(FileRef file, const KtlsKeys& keys, bool& tx_installed);

}  // namespace coring::tls
