#include "coring/tls/tls_context.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <utility>

#include "absl/strings/str_format.h"
#include "coring/tls/tls_error.h"

namespace coring::tls {

namespace {

// Where on_new_session() finds its TlsContext and the SSL's cache key.
int context_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

}  // namespace

std::string TlsStats::to_string() const {
  return absl::StrFormat(
      "tls handshakes=%d failures=%d timeouts=%d resumed=%d kernel_records=%d "
      "user_space_records=%d",
      handshakes, handshake_failures, handshake_timeouts, resumed, kernel_records,
      user_space_records);
}

absl::StatusOr<std::unique_ptr<TlsContext>> TlsContext::server(TlsOptions options) {
  if (options.cert_file.empty() || options.key_file.empty()) {
    return absl::InvalidArgumentError("TLS server: a certificate and a key file are required");
  }
  return make(true, std::move(options));
}

absl::StatusOr<std::unique_ptr<TlsContext>> TlsContext::client(TlsOptions options) {
  return make(false, std::move(options));
}

absl::StatusOr<std::unique_ptr<TlsContext>> TlsContext::make(bool server, TlsOptions options) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (ctx == nullptr) return openssl_error(absl::StatusCode::kInternal, "SSL_CTX_new");
  // From here `self` owns ctx.
  auto self = std::make_unique<TlsContext>(Private{}, server, std::move(options), ctx);
  const TlsOptions& o = self->options_;
  SSL_CTX_set_ex_data(ctx, context_index(), self.get());
  SSL_CTX_set_min_proto_version(
      ctx, o.min_version == TlsVersion::kTls13 ? TLS1_3_VERSION : TLS1_2_VERSION);
  if (!o.tls13_ciphersuites.empty() &&
      SSL_CTX_set_ciphersuites(ctx, o.tls13_ciphersuites.c_str()) != 1) {
    return openssl_error(absl::StatusCode::kInvalidArgument,
                         absl::StrFormat("TLS 1.3 cipher suites '%s'", o.tls13_ciphersuites));
  }
  // The traffic secrets for kernel TLS (ktls_keys.h). The only keylog use in
  // coring: a key log file, if one is added, is written from the same
  // callback (OpenSSL takes one per context).
  if (o.kernel_tls) SSL_CTX_set_keylog_callback(ctx, &KtlsCapture::on_keylog);
  // Memory BIOs never block, but a write may move (the send path copies).
  SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (o.release_idle_buffers) SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if (!o.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, o.cert_file.c_str()) != 1) {
      return openssl_error(absl::StatusCode::kInvalidArgument,
                           absl::StrFormat("TLS certificate %s", o.cert_file));
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, o.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      return openssl_error(absl::StatusCode::kInvalidArgument,
                           absl::StrFormat("TLS private key %s", o.key_file));
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      return openssl_error(absl::StatusCode::kInvalidArgument,
                           "TLS private key does not match the certificate");
    }
  }
  if (!o.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, o.ca_file.c_str(), nullptr) != 1) {
      return openssl_error(absl::StatusCode::kInvalidArgument,
                           absl::StrFormat("TLS trust anchors %s", o.ca_file));
    }
  } else if (!server && o.verify_peer) {
    (void)SSL_CTX_set_default_verify_paths(ctx);
  }
  if (server) {
    if (o.verify_peer && !o.ca_file.empty()) {
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    }
    if (!o.resume_sessions) {
      SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
      SSL_CTX_set_num_tickets(ctx, 0);
      SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    } else {
      // Stateless tickets (the default): the server keeps nothing per
      // session; one ticket is enough for a client that reconnects serially.
      SSL_CTX_set_num_tickets(ctx, 1);
    }
    if (!o.alpn.empty()) SSL_CTX_set_alpn_select_cb(ctx, &TlsContext::on_alpn_select, self.get());
  } else {
    if (o.verify_peer) SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    if (o.resume_sessions) {
      SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
      SSL_CTX_sess_set_new_cb(ctx, &TlsContext::on_new_session);
    } else {
      SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
  }
  for (const std::string& p : o.alpn) {
    if (p.empty() || p.size() > 255) {
      return absl::InvalidArgumentError(absl::StrFormat("ALPN protocol '%s': 1..255 bytes", p));
    }
    self->alpn_wire_.push_back(static_cast<uint8_t>(p.size()));
    self->alpn_wire_.insert(self->alpn_wire_.end(), p.begin(), p.end());
  }
  if (!server && !self->alpn_wire_.empty() &&
      SSL_CTX_set_alpn_protos(ctx, self->alpn_wire_.data(),
                              static_cast<unsigned>(self->alpn_wire_.size())) != 0) {
    return openssl_error(absl::StatusCode::kInvalidArgument, "SSL_CTX_set_alpn_protos");
  }
  return self;
}

TlsContext::TlsContext(Private, bool server, TlsOptions options, SSL_CTX* ctx)
    : server_(server), options_(std::move(options)), ctx_(ctx) {}

TlsContext::~TlsContext() {
  for (auto& [key, session] : sessions_) SSL_SESSION_free(session);
  SSL_CTX_free(ctx_);
}

TlsStats TlsContext::stats() const {
  TlsStats s;
  s.handshakes = counters_.handshakes.load(std::memory_order_relaxed);
  s.handshake_failures = counters_.handshake_failures.load(std::memory_order_relaxed);
  s.handshake_timeouts = counters_.handshake_timeouts.load(std::memory_order_relaxed);
  s.resumed = counters_.resumed.load(std::memory_order_relaxed);
  s.kernel_records = counters_.kernel_records.load(std::memory_order_relaxed);
  s.user_space_records = counters_.user_space_records.load(std::memory_order_relaxed);
  return s;
}

SSL_SESSION* TlsContext::take_session(const std::string& key) {
  std::lock_guard<std::mutex> lock(sessions_mu_);
  auto it = sessions_.find(key);
  if (it == sessions_.end()) return nullptr;
  SSL_SESSION* s = it->second;
  // TLS 1.3 tickets are single-use: hand this one out once; the server
  // sends a fresh one on the resumed connection.
  sessions_.erase(it);
  if (SSL_SESSION_is_resumable(s) != 1) {
    SSL_SESSION_free(s);
    return nullptr;
  }
  return s;
}

void TlsContext::store_session(const std::string& key, SSL_SESSION* session) {
  std::lock_guard<std::mutex> lock(sessions_mu_);
  auto [it, inserted] = sessions_.try_emplace(key, session);
  if (!inserted) {
    SSL_SESSION_free(it->second);
    it->second = session;
  }
}

int TlsContext::on_new_session(SSL* ssl, SSL_SESSION* session) {
  auto* self = static_cast<TlsContext*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), context_index()));
  const char* key = static_cast<const char*>(SSL_get_app_data(ssl));
  if (self == nullptr || key == nullptr) return 0;
  self->store_session(key, session);
  return 1;  // we keep the reference
}

int TlsContext::on_alpn_select(SSL*, const unsigned char** out, unsigned char* outlen,
                               const unsigned char* in, unsigned int inlen, void* arg) {
  auto* self = static_cast<TlsContext*>(arg);
  unsigned char* selected = nullptr;
  // Server preference first: OpenSSL walks the first list and finds each in the second.
  if (SSL_select_next_proto(&selected, outlen, self->alpn_wire_.data(),
                            static_cast<unsigned>(self->alpn_wire_.size()), in,
                            inlen) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_ALERT_FATAL;  // no_application_protocol
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

}  // namespace coring::tls
