#include "coring/tls/ktls_keys.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/ssl.h>

#include <cstring>
#include <string_view>

#include "absl/strings/str_format.h"

namespace coring::tls {

static_assert(EVP_MAX_MD_SIZE <= 64, "a traffic secret fits KtlsCapture's buffers");

namespace {

// Where on_keylog() finds a connection's capture.
int capture_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// TLS 1.3 cipher suite ids (RFC 8446 B.4).
constexpr uint16_t kAes128GcmSha256 = 0x1301;
constexpr uint16_t kAes256GcmSha384 = 0x1302;
constexpr uint16_t kChaCha20Poly1305Sha256 = 0x1303;

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Hex into `out`; the byte count, 0 when it is not hex or does not fit.
size_t parse_hex(std::string_view hex, uint8_t* out, size_t capacity) {
  if (hex.size() % 2 != 0 || hex.size() / 2 > capacity) return 0;
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = hex_value(hex[i]);
    const int lo = hex_value(hex[i + 1]);
    if (hi < 0 || lo < 0) return 0;
    out[i / 2] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return hex.size() / 2;
}

// The big-endian record number linux/tls.h expects.
void put_sequence(uint64_t seq, unsigned char (&out)[8]) {
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<unsigned char>(seq & 0xff);
    seq >>= 8;
  }
}

}  // namespace

KtlsCryptoInfo::~KtlsCryptoInfo() { OPENSSL_cleanse(&u_, sizeof(u_)); }

absl::Span<const uint8_t> KtlsCryptoInfo::key() const noexcept {
  switch (u_.base.cipher_type) {
    case TLS_CIPHER_AES_GCM_128:
      return absl::MakeConstSpan(u_.aes128.key);
    case TLS_CIPHER_AES_GCM_256:
      return absl::MakeConstSpan(u_.aes256.key);
    case TLS_CIPHER_CHACHA20_POLY1305:
      return absl::MakeConstSpan(u_.chacha.key);
    default:
      return {};
  }
}

std::array<uint8_t, 12> KtlsCryptoInfo::nonce_base() const noexcept {
  std::array<uint8_t, 12> n = {};
  switch (u_.base.cipher_type) {
    case TLS_CIPHER_AES_GCM_128:
      std::memcpy(n.data(), u_.aes128.salt, 4);
      std::memcpy(n.data() + 4, u_.aes128.iv, 8);
      break;
    case TLS_CIPHER_AES_GCM_256:
      std::memcpy(n.data(), u_.aes256.salt, 4);
      std::memcpy(n.data() + 4, u_.aes256.iv, 8);
      break;
    case TLS_CIPHER_CHACHA20_POLY1305:
      std::memcpy(n.data(), u_.chacha.iv, 12);
      break;
    default:
      break;
  }
  return n;
}

uint64_t KtlsCryptoInfo::sequence() const noexcept {
  const unsigned char* p = nullptr;
  switch (u_.base.cipher_type) {
    case TLS_CIPHER_AES_GCM_128:
      p = u_.aes128.rec_seq;
      break;
    case TLS_CIPHER_AES_GCM_256:
      p = u_.aes256.rec_seq;
      break;
    case TLS_CIPHER_CHACHA20_POLY1305:
      p = u_.chacha.rec_seq;
      break;
    default:
      return 0;
  }
  uint64_t seq = 0;
  for (int i = 0; i < 8; ++i) seq = seq << 8 | p[i];
  return seq;
}

absl::Status hkdf_expand_label(const char* digest, absl::Span<const uint8_t> secret,
                               const char* label, absl::Span<uint8_t> out) {
  // HkdfLabel: uint16 length, opaque label<7..255> = "tls13 " + label,
  // opaque context<0..255> = "" (RFC 8446 7.1).
  const size_t label_len = 6 + std::strlen(label);
  if (out.size() > 0xffff || label_len > 255) {
    return absl::InvalidArgumentError("HKDF-Expand-Label: label or length too long");
  }
  uint8_t info[2 + 1 + 255 + 1];
  size_t n = 0;
  info[n++] = static_cast<uint8_t>(out.size() >> 8);
  info[n++] = static_cast<uint8_t>(out.size());
  info[n++] = static_cast<uint8_t>(label_len);
  std::memcpy(info + n, "tls13 ", 6);
  std::memcpy(info + n + 6, label, label_len - 6);
  n += label_len;
  info[n++] = 0;

  EVP_KDF* kdf = EVP_KDF_fetch(nullptr, OSSL_KDF_NAME_HKDF, nullptr);
  EVP_KDF_CTX* ctx = kdf != nullptr ? EVP_KDF_CTX_new(kdf) : nullptr;
  EVP_KDF_free(kdf);  // the context keeps its own reference
  if (ctx == nullptr) return absl::InternalError("HKDF-Expand-Label: no HKDF in OpenSSL");
  int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, const_cast<char*>(digest), 0),
      // In expand-only mode the key is the pseudorandom key: the secret.
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<uint8_t*>(secret.data()),
                                        secret.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, n),
      OSSL_PARAM_construct_end(),
  };
  const int ok = EVP_KDF_derive(ctx, out.data(), out.size(), params);
  EVP_KDF_CTX_free(ctx);
  if (ok != 1) {
    return absl::InternalError(
        absl::StrFormat("HKDF-Expand-Label(%s, \"%s\") failed", digest, label));
  }
  return absl::OkStatus();
}

bool KtlsCapture::attach(SSL* ssl, bool server) {
  if (SSL_set_ex_data(ssl, capture_index(), this) != 1) return false;
  ssl_ = ssl;
  server_ = server;
  SSL_set_msg_callback(ssl, &KtlsCapture::on_message);
  SSL_set_msg_callback_arg(ssl, this);
  return true;
}

void KtlsCapture::detach() {
  if (ssl_ != nullptr) {
    // Off the per-record path from now on: the user-space records then
    // cost no callback.
    SSL_set_msg_callback(ssl_, nullptr);
    SSL_set_msg_callback_arg(ssl_, nullptr);
    SSL_set_ex_data(ssl_, capture_index(), nullptr);
    ssl_ = nullptr;
  }
  OPENSSL_cleanse(client_secret_, sizeof(client_secret_));
  OPENSSL_cleanse(server_secret_, sizeof(server_secret_));
  client_secret_len_ = server_secret_len_ = 0;
}

void KtlsCapture::on_keylog(const SSL* ssl, const char* line) {
  if (auto* self = static_cast<KtlsCapture*>(SSL_get_ex_data(ssl, capture_index()))) {
    self->keylog(line);
  }
}

void KtlsCapture::keylog(const char* line) {
  // "<label> <client_random hex> <secret hex>" (NSS key log format).
  const std::string_view l(line);
  const size_t a = l.find(' ');
  const size_t b = a == std::string_view::npos ? a : l.find(' ', a + 1);
  if (b == std::string_view::npos) return;
  const std::string_view label = l.substr(0, a);
  const std::string_view hex = l.substr(b + 1);
  if (label == "CLIENT_TRAFFIC_SECRET_0") {
    client_secret_len_ = parse_hex(hex, client_secret_, sizeof(client_secret_));
  } else if (label == "SERVER_TRAFFIC_SECRET_0") {
    server_secret_len_ = parse_hex(hex, server_secret_, sizeof(server_secret_));
  }
}

void KtlsCapture::on_message(int write_p, int, int content_type, const void* buf, size_t len, SSL*,
                             void* arg) {
  // Why a message callback (and not parsing the record headers in the
  // BIOs): in TLS 1.3 every encrypted record's header says "application
  // data", so the headers cannot tell where the handshake keys end. OpenSSL
  // reports a record's header (SSL3_RT_HEADER) as it writes or reads the
  // record, and a handshake message once its record is done; the keys change
  // right after a Finished. So records reported after this side's Finished
  // (written) or the peer's (read) are the ones under the application
  // secrets - the server's NewSessionTickets, a client's early reads - and
  // their count is the next record's sequence number.
  auto* self = static_cast<KtlsCapture*>(arg);
  if (self == nullptr) return;
  const auto* bytes = static_cast<const uint8_t*>(buf);
  if (content_type == SSL3_RT_HEADER) {
    if (write_p != 0 && self->write_app_) ++self->written_;
    if (write_p == 0 && self->read_app_) ++self->read_;
  } else if (content_type == SSL3_RT_HANDSHAKE && len > 0) {
    if (bytes[0] == SSL3_MT_FINISHED) {
      (write_p != 0 ? self->write_app_ : self->read_app_) = true;
    } else if (bytes[0] == SSL3_MT_KEY_UPDATE) {
      self->key_update_ = true;
    }
  }
}

absl::Status KtlsCapture::make_info(uint16_t suite, absl::Span<const uint8_t> secret, uint64_t seq,
                                    KtlsCryptoInfo& out) {
  const char* digest = suite == kAes256GcmSha384 ? "SHA384" : "SHA256";
  uint8_t key[32];
  uint8_t iv[12];
  const size_t key_len = suite == kAes128GcmSha256 ? 16 : 32;
  absl::Status s = hkdf_expand_label(digest, secret, "key", absl::MakeSpan(key, key_len));
  if (s.ok()) s = hkdf_expand_label(digest, secret, "iv", absl::MakeSpan(iv));
  if (s.ok()) {
    switch (suite) {
      case kAes128GcmSha256: {
        tls12_crypto_info_aes_gcm_128& c = out.u_.aes128;
        c.info.version = TLS_1_3_VERSION;
        c.info.cipher_type = TLS_CIPHER_AES_GCM_128;
        std::memcpy(c.key, key, sizeof(c.key));
        std::memcpy(c.salt, iv, sizeof(c.salt));  // the IV's first 4 bytes
        std::memcpy(c.iv, iv + 4, sizeof(c.iv));  // and its last 8
        put_sequence(seq, c.rec_seq);
        out.size_ = sizeof(c);
        break;
      }
      case kAes256GcmSha384: {
        tls12_crypto_info_aes_gcm_256& c = out.u_.aes256;
        c.info.version = TLS_1_3_VERSION;
        c.info.cipher_type = TLS_CIPHER_AES_GCM_256;
        std::memcpy(c.key, key, sizeof(c.key));
        std::memcpy(c.salt, iv, sizeof(c.salt));
        std::memcpy(c.iv, iv + 4, sizeof(c.iv));
        put_sequence(seq, c.rec_seq);
        out.size_ = sizeof(c);
        break;
      }
      default: {  // ChaCha20-Poly1305: the whole IV, no salt
        tls12_crypto_info_chacha20_poly1305& c = out.u_.chacha;
        c.info.version = TLS_1_3_VERSION;
        c.info.cipher_type = TLS_CIPHER_CHACHA20_POLY1305;
        std::memcpy(c.key, key, sizeof(c.key));
        std::memcpy(c.iv, iv, sizeof(c.iv));
        put_sequence(seq, c.rec_seq);
        out.size_ = sizeof(c);
        break;
      }
    }
  }
  OPENSSL_cleanse(key, sizeof(key));
  OPENSSL_cleanse(iv, sizeof(iv));
  return s;
}

absl::StatusOr<KtlsKeys> KtlsCapture::derive() const {
  if (ssl_ == nullptr) return absl::FailedPreconditionError("no key capture on this connection");
  if (SSL_version(ssl_) != TLS1_3_VERSION) {
    return absl::UnimplementedError(
        absl::StrFormat("%s: kernel TLS is done here for TLS 1.3 only", SSL_get_version(ssl_)));
  }
  const uint16_t suite = SSL_CIPHER_get_protocol_id(SSL_get_current_cipher(ssl_));
  if (suite != kAes128GcmSha256 && suite != kAes256GcmSha384 && suite != kChaCha20Poly1305Sha256) {
    return absl::UnimplementedError(absl::StrFormat(
        "cipher %s: not one kernel TLS is done for here", SSL_get_cipher_name(ssl_)));
  }
  if (key_update_) {
    return absl::UnimplementedError("a KeyUpdate happened before the switch to kernel TLS");
  }
  if (client_secret_len_ == 0 || server_secret_len_ == 0 || !write_app_ || !read_app_) {
    return absl::InternalError("the application traffic secrets were not captured");
  }
  const absl::Span<const uint8_t> client(client_secret_, client_secret_len_);
  const absl::Span<const uint8_t> server(server_secret_, server_secret_len_);
  KtlsKeys keys;
  absl::Status s = make_info(suite, server_ ? server : client, written_, keys.tx);
  if (s.ok()) s = make_info(suite, server_ ? client : server, read_, keys.rx);
  if (!s.ok()) return s;
  return keys;
}

}  // namespace coring::tls
