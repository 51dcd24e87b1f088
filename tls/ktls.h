// Kernel TLS: the switch, tried after each handshake, that would hand a
// connection's record encryption to the kernel (setsockopt TCP_ULP "tls",
// then TLS_TX / TLS_RX with the traffic keys) so that the data path is plain
// io_uring send/recv again.
//
// What is here: detection. The kernel offers kTLS only when "tls" is among
// its TCP upper-layer protocols (/proc/sys/net/ipv4/tcp_available_ulp); the
// machines coring is developed on list only "mptcp", so every connection
// falls back to user-space records and says so (TlsInfo::record_path, the
// context's TlsStats). What is not here yet: installing the keys. With
// memory BIOs OpenSSL does not do it itself (it does for socket BIOs), so
// even where the kernel has the ULP the connection stays in user space, with
// that reason recorded - the switch is one function, decide_record_path().
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "coring/core/operation.h"

struct ssl_st;

namespace coring::tls {

enum class RecordPath : uint8_t { kUserSpace, kKernel };
std::string_view to_string(RecordPath path);

// True when `ulp_list_file` (normally /proc/sys/net/ipv4/tcp_available_ulp)
// names "tls". A file that cannot be read counts as "no".
bool kernel_offers_tls(const std::string& ulp_list_file);

struct RecordPathDecision {
  RecordPath path = RecordPath::kUserSpace;
  std::string reason;  // why user space, when it is
};

// After a completed handshake on `ssl` over `file`: which path carries the
// records from now on. `wanted`: TlsOptions::kernel_tls.
RecordPathDecision decide_record_path(bool wanted, const std::string& ulp_list_file, FileRef file,
                                      ssl_st* ssl);

}  // namespace coring::tls
