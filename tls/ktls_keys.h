// Kernel-TLS keys: what a connection must hand the kernel to let it carry
// its TLS 1.3 records - per direction, the traffic key, the IV and the
// sequence number of the next record - gathered while OpenSSL runs on
// memory BIOs (it installs nothing itself there).
//
// KtlsCapture is a connection's collector. attach() hooks it to the SSL
// object before the handshake: the context's keylog callback
// (on_keylog(), set by TlsContext when TlsOptions::kernel_tls is on) stores
// the application traffic secrets "CLIENT_TRAFFIC_SECRET_0" and
// "SERVER_TRAFFIC_SECRET_0"; a message callback counts the records each
// direction has carried under those secrets. derive() then turns a
// secret and its count into the linux/tls.h crypto_info (KtlsCryptoInfo)
// with HKDF-Expand-Label (RFC 8446 7.1, 7.3). detach() unhooks it and
// wipes the secrets; the destructor does too.
//
// Covered: TLS 1.3 with AES-128-GCM, AES-256-GCM and ChaCha20-Poly1305.
// Not covered (derive() says so): TLS 1.2, AES-CCM, and a connection that
// already did a KeyUpdate (its secrets are no longer generation 0).
#pragma once

#include <linux/tls.h>

#include <array>
#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

struct ssl_st;

namespace coring::tls {

// One direction's crypto_info for setsockopt(SOL_TLS, TLS_TX / TLS_RX).
// Holds key material: wiped when it goes.
class KtlsCryptoInfo {
 public:
  KtlsCryptoInfo() = default;
  KtlsCryptoInfo(const KtlsCryptoInfo& other) = default;
  KtlsCryptoInfo& operator=(const KtlsCryptoInfo& other) = default;
  ~KtlsCryptoInfo();

  // What setsockopt takes.
  const void* data() const noexcept { return &u_; }
  size_t size() const noexcept { return size_; }
  uint16_t cipher_type() const noexcept { return u_.base.cipher_type; }

  // For checking (tests): the AEAD key, the 12-byte per-connection nonce
  // base (salt then IV; ChaCha20's IV whole), and the next record's number.
  absl::Span<const uint8_t> key() const noexcept;
  std::array<uint8_t, 12> nonce_base() const noexcept;
  uint64_t sequence() const noexcept;

 private:
  friend class KtlsCapture;
  union {
    tls_crypto_info base;
    tls12_crypto_info_aes_gcm_128 aes128;
    tls12_crypto_info_aes_gcm_256 aes256;
    tls12_crypto_info_chacha20_poly1305 chacha;
  } u_ = {};
  size_t size_ = 0;
};

struct KtlsKeys {
  KtlsCryptoInfo tx;  // the records this side writes
  KtlsCryptoInfo rx;  // the records this side reads
};

class KtlsCapture {
 public:
  KtlsCapture() = default;
  KtlsCapture(const KtlsCapture&) = delete;
  KtlsCapture& operator=(const KtlsCapture&) = delete;
  ~KtlsCapture() { detach(); }

  // Hooks this capture to `ssl` (ex_data and message callback); false when
  // OpenSSL refused.
  bool attach(ssl_st* ssl, bool server);
  // Unhooks it and wipes the secrets. Idempotent.
  void detach();

  // Both directions' crypto_info as of now (the next record each way),
  // or why they cannot be had.
  absl::StatusOr<KtlsKeys> derive() const;

  // Records each direction carried under the generation-0 application
  // secrets (for tests and diagnostics).
  uint64_t records_written() const noexcept { return written_; }
  uint64_t records_read() const noexcept { return read_; }

  // SSL_CTX keylog callback (OpenSSL allows one per context): hands the
  // line to the capture attached to `ssl`, if any.
  static void on_keylog(const ssl_st* ssl, const char* line);

 private:
  static void on_message(int write_p, int version, int content_type, const void* buf, size_t len,
                         ssl_st* ssl, void* arg);
  void keylog(const char* line);
  // One direction's crypto_info: `suite` the TLS 1.3 cipher suite's id.
  static absl::Status make_info(uint16_t suite, absl::Span<const uint8_t> secret, uint64_t seq,
                                KtlsCryptoInfo& out);

  ssl_st* ssl_ = nullptr;
  bool server_ = false;
  // Past this side's Finished (write) / the peer's Finished (read): the
  // application secrets are in force in that direction.
  bool write_app_ = false;
  bool read_app_ = false;
  bool key_update_ = false;
  uint64_t written_ = 0;
  uint64_t read_ = 0;
  // Up to SHA-384's 48 bytes (EVP_MAX_MD_SIZE: 64); kept out of OpenSSL's
  // headers, which tls_context.h's users do not include.
  static constexpr size_t kMaxSecret = 64;
  uint8_t client_secret_[kMaxSecret] = {};
  uint8_t server_secret_[kMaxSecret] = {};
  size_t client_secret_len_ = 0;
  size_t server_secret_len_ = 0;
};

// HKDF-Expand-Label(secret, label, "", out.size()) of RFC 8446 7.1 with
// `digest` ("SHA256", "SHA384"). Exposed for tests.
absl::Status hkdf_expand_label(const char* digest, absl::Span<const uint8_t> secret,
                               const char* label, absl::Span<uint8_t> out);

}  // namespace coring::tls
