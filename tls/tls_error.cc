#include "coring/tls/tls_error.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <string>

#include "absl/strings/str_cat.h"

namespace coring::tls {

namespace {

bool is_certificate_reason(int reason) {
  switch (reason) {
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
      return true;
    default:
      return false;
  }
}

// Appends the queue's reasons ("error:0A000086:SSL routines::certificate
// verify failed"); returns the reason code of the first.
int drain_queue(std::string& out) {
  int first = 0;
  char buf[256];
  while (unsigned long e = ERR_get_error()) {
    if (first == 0) first = ERR_GET_REASON(e);
    ERR_error_string_n(e, buf, sizeof buf);
    absl::StrAppend(&out, out.empty() ? "" : "; ", buf);
  }
  return first;
}

}  // namespace

absl::Status openssl_error(absl::StatusCode code, absl::string_view what) {
  std::string reasons;
  drain_queue(reasons);
  if (reasons.empty()) reasons = "no reason given by OpenSSL";
  return absl::Status(code, absl::StrCat(what, ": ", reasons));
}

absl::Status ssl_call_error(absl::string_view what, SSL* ssl, int ret) {
  const int kind = SSL_get_error(ssl, ret);
  std::string reasons;
  const int reason = drain_queue(reasons);
  absl::StatusCode code = absl::StatusCode::kInternal;
  if (kind == SSL_ERROR_SSL) code = absl::StatusCode::kDataLoss;
  if (is_certificate_reason(reason)) code = absl::StatusCode::kUnauthenticated;
  const long verify = SSL_get_verify_result(ssl);
  if (verify != X509_V_OK) {
    code = absl::StatusCode::kUnauthenticated;
    absl::StrAppend(&reasons, " (certificate: ", X509_verify_cert_error_string(verify), ")");
  }
  if (reasons.empty()) {
    reasons = kind == SSL_ERROR_SYSCALL ? "the transport failed" : "no reason given by OpenSSL";
  }
  return absl::Status(code, absl::StrCat(what, ": ", reasons));
}

}  // namespace coring::tls
