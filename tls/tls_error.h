// tls_error: absl::Status from OpenSSL's per-thread error queue, naming the
// reason OpenSSL gives ("certificate verify failed", "wrong version
// number") and, for a failed verification, the X.509 reason ("certificate
// has expired", "hostname mismatch").
//
// Codes: a certificate the peer or this side refused -> Unauthenticated;
// bytes that are not the TLS we accept (plaintext, garbage, bad records) ->
// DataLoss; anything else OpenSSL reports -> Internal.
//
// OpenSSL's error queue is per thread and shared by every connection of a
// loop: clear it (ERR_clear_error) before each call whose failure is then
// read here.
#pragma once

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

struct ssl_st;

namespace coring::tls {

// The error of an SSL_* call on `ssl` that returned `ret`; drains the queue.
absl::Status ssl_call_error(absl::string_view what, ssl_st* ssl, int ret);
// The error queue's contents as a status of `code` (configuration errors).
absl::Status openssl_error(absl::StatusCode code, absl::string_view what);

}  // namespace coring::tls
