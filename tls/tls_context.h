// TlsContext: the configuration every TLS connection of one role shares - an
// OpenSSL SSL_CTX with its certificate, trust anchors, ALPN list, version
// floor, and (client) the cache of sessions to resume - plus counters of
// what its connections did. Made once, before the loops run; shared by every
// loop thread (OpenSSL's SSL_CTX is thread-safe; the session cache and the
// counters here are too).
//
//   auto server = tls::TlsContext::server({.cert_file = "cert.pem", .key_file = "key.pem"});
//   auto client = tls::TlsContext::client({.ca_file = "ca.pem"});   // verifies by default
//   // then tls::TlsStream::accept(**server, stream) / TlsStream::connect(**client, ...)
//
// A client verifies the server's certificate chain against `ca_file` (the
// system's trust store when empty) and its name against the name given to
// connect(); turning that off (verify_peer = false) is for tests only. A
// server asks for a client certificate only when verify_peer is set and
// ca_file names the anchors to check it against.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "coring/tls/ktls.h"

struct ssl_ctx_st;
struct ssl_session_st;
struct ssl_st;

namespace coring::tls {

enum class TlsVersion : uint8_t { kTls12, kTls13 };

struct TlsOptions {
  // PEM certificate chain and private key: required for a server, optional
  // for a client (mutual TLS).
  std::string cert_file = {};
  std::string key_file = {};
  // PEM trust anchors for the peer's certificate. Client: empty means the
  // system's default store.
  std::string ca_file = {};
  // Client: verify the server (chain and host name); on by default. Server:
  // require and verify a client certificate (needs ca_file).
  bool verify_peer = true;
  // ALPN protocols in order of preference ("h2", "sbmp/1.3"); empty: none.
  // A server picks the first of its own that the client offers; a client
  // offers these and accepts no other.
  std::vector<std::string> alpn = {};
  TlsVersion min_version = TlsVersion::kTls12;
  // TLS 1.3 cipher suites in order of preference, OpenSSL's syntax
  // ("TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"); empty: OpenSSL's.
  std::string tls13_ciphersuites = {};
  // The whole handshake, from the first byte to Finished; a peer that stalls
  // longer is dropped with DeadlineExceeded.
  std::chrono::nanoseconds handshake_timeout = std::chrono::seconds(10);
  // Client: keep the tickets servers send and offer them on the next
  // connection to the same name (session resumption). Server: issue tickets.
  bool resume_sessions = true;
  // Try kernel TLS after the handshake (ktls.h); user-space records when the
  // kernel has none.
  bool kernel_tls = true;
  // Where the kernel lists its TCP upper-layer protocols (a test points it
  // elsewhere to exercise the detection).
  std::string ulp_list_file = "/proc/sys/net/ipv4/tcp_available_ulp";
  // Tests: takes the place of the setsockopt calls that install the keys
  // (ktls.h); not OK means nothing was installed.
  KtlsInstall kernel_tls_install = nullptr;
  // OpenSSL frees a connection's record buffers (~34 KiB) while it is idle:
  // for many idle connections, at the price of an allocation per burst.
  bool release_idle_buffers = false;
};

// Counters over every connection of the context (relaxed; any thread).
struct TlsStats {
  uint64_t handshakes = 0;          // completed
  uint64_t handshake_failures = 0;  // includes timeouts
  uint64_t handshake_timeouts = 0;
  uint64_t resumed = 0;             // completed by resuming a session
  uint64_t kernel_records = 0;      // connections whose records the kernel handles
  uint64_t user_space_records = 0;  // connections whose records OpenSSL handles
  std::string to_string() const;
};

class TlsContext {
  struct Private {};

 public:
  // Use server() or client().
  TlsContext(Private, bool server, TlsOptions options, ssl_ctx_st* ctx);
  static absl::StatusOr<std::unique_ptr<TlsContext>> server(TlsOptions options);
  static absl::StatusOr<std::unique_ptr<TlsContext>> client(TlsOptions options);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  bool is_server() const noexcept { return server_; }
  const TlsOptions& options() const noexcept { return options_; }
  ssl_ctx_st* native() const noexcept { return ctx_; }
  TlsStats stats() const;

  // Client session cache, keyed by the name connected to. take_session()
  // returns a reference the caller frees (SSL_SESSION_free), or nullptr.
  ssl_session_st* take_session(const std::string& key);
  void store_session(const std::string& key, ssl_session_st* session);

  // Counters (TlsStream updates them).
  struct Counters {
    std::atomic<uint64_t> handshakes{0};
    std::atomic<uint64_t> handshake_failures{0};
    std::atomic<uint64_t> handshake_timeouts{0};
    std::atomic<uint64_t> resumed{0};
    std::atomic<uint64_t> kernel_records{0};
    std::atomic<uint64_t> user_space_records{0};
  };
  Counters& counters() noexcept { return counters_; }

 private:
  static absl::StatusOr<std::unique_ptr<TlsContext>> make(bool server, TlsOptions options);
  static int on_new_session(ssl_st* ssl, ssl_session_st* session);
  static int on_alpn_select(ssl_st* ssl, const unsigned char** out, unsigned char* outlen,
                            const unsigned char* in, unsigned int inlen, void* arg);

  bool server_;
  TlsOptions options_;
  ssl_ctx_st* ctx_;
  std::vector<uint8_t> alpn_wire_;  // length-prefixed protocols, as TLS sends them
  Counters counters_;
  std::mutex sessions_mu_;  // handshakes only, never per message
  absl::flat_hash_map<std::string, ssl_session_st*> sessions_;
};

}  // namespace coring::tls
