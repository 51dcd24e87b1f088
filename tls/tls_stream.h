// TlsStream: a TLS connection over a net::Stream, with the Stream's API, so
// that FramedStream<Codec, TlsStream> frames over TLS exactly as
// FramedStream<Codec> does over plain TCP.
//
//   auto tls = tls::TlsContext::server({.cert_file = cert, .key_file = key});
//   server.serve([&](net::Stream s) -> Task<> {
//     auto conn = co_await tls::TlsStream::accept(**tls, std::move(s));  // handshake
//     if (!conn.ok()) co_return;                     // bad peer: already closed, reason in status
//     co_await echo(FramedStream<sbmp::Codec, tls::TlsStream>(std::move(*conn), sbmp::Codec()));
//   });
//   // client: verifies the server's certificate and that it is for "example.test"
//   auto c = co_await tls::TlsStream::connect(**client_tls, net, address, "example.test");
//
// OpenSSL runs on memory BIOs: ciphertext arrives through the Stream's
// multishot recv on the loop's provided-buffer ring (each received chunk is
// handed to OpenSSL and its ring buffer given back at once) and leaves
// through the Stream's send queue (registered buffers, one send; large
// runs sent from the connection's own buffer without a further copy). So a
// TLS connection keeps the plain path's fixed file, backpressure, fair share
// of the receive ring, idle and frame deadlines and shutdown: all of them
// act on the same StreamState (state()). No call blocks the loop.
//
// * accept()/connect(): the handshake, bounded by
//   TlsOptions::handshake_timeout (DeadlineExceeded); on failure the socket
//   is closed (after the alert, if OpenSSL produced one) and the status names
//   OpenSSL's reason: Unauthenticated for a certificate refused (expired,
//   unknown CA, wrong host name), DataLoss for bytes that are not TLS.
// * read(): the next plaintext, as a TlsBuffer that views the connection's
//   plaintext buffer - valid until the next read(); empty at the end of the
//   stream (the peer's close_notify, or TCP EOF without one: info().truncated).
//   Interrupts (idle timeout, shutdown) come through as the Stream's do.
// * write(): encrypts (a frame's parts share full records) and queues the
//   records; ordered across concurrent writers. try_write_now() is the
//   synchronous path FramedStream takes when the queue has room.
// * shutdown_write() / close(): close_notify first, then as Stream.
// * Kernel TLS (ktls.h): right after the handshake the records may go to
//   the kernel; read() and write() then move plaintext through the Stream.
//   info().record_path says which path a connection took, and why.
//
// Memory per connection: the TlsConnection (a few hundred bytes), a 16 KiB
// plaintext buffer, and, once it writes, a 16 KiB staging buffer and a
// ciphertext buffer that grows to the largest round (64 KiB + record
// overhead); OpenSSL's SSL object and record buffers (~34 KiB; released
// while idle with TlsOptions::release_idle_buffers). Measured: ~60 KiB RSS
// per idle connection after the handshake (tests/tls/tls_hostile_test).
// Steady state: coring's code allocates nothing per message; OpenSSL 3.0
// itself makes two small allocations per record it seals or opens
// (tests/tls/tls_alloc_test counts both).
//
// Use on the loop thread the Stream belongs to; the TlsContext must outlive it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "coring/core/task.h"
#include "coring/net/net_context.h"
#include "coring/net/socket_address.h"
#include "coring/net/stream.h"
#include "coring/tls/ktls.h"
#include "coring/tls/tls_context.h"

namespace coring::tls {

// What a connection negotiated.
struct TlsInfo {
  std::string version;  // "TLSv1.3"
  std::string cipher;   // "TLS_AES_256_GCM_SHA384"
  std::string alpn;     // the protocol both sides agreed on, or empty
  bool resumed = false;
  RecordPath record_path = RecordPath::kUserSpace;
  std::string record_path_reason;  // why user space, when it is
  bool truncated = false;          // the peer closed TCP without close_notify
};

// Plaintext delivered by TlsStream::read(): a view into the connection's
// plaintext buffer, valid until the next read(). Empty: end of stream.
class TlsBuffer {
 public:
  TlsBuffer() = default;
  TlsBuffer(const uint8_t* data, size_t size) noexcept : data_(data), size_(size) {}
  TlsBuffer(TlsBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  TlsBuffer& operator=(TlsBuffer&& other) noexcept {
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    return *this;
  }

  bool empty() const noexcept { return size_ == 0; }
  const uint8_t* data() const noexcept { return data_; }
  size_t size() const noexcept { return size_; }
  absl::Span<const uint8_t> span() const noexcept { return {data_, size_}; }
  void reset() noexcept {
    data_ = nullptr;
    size_ = 0;
  }

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

namespace detail {
class TlsConnection;
}

class TlsStream {
 public:
  using Buffer = TlsBuffer;

  TlsStream() noexcept;
  TlsStream(TlsStream&&) noexcept;
  TlsStream& operator=(TlsStream&&) noexcept;
  ~TlsStream();

  // The server side of the handshake on an accepted stream.
  static Task<absl::StatusOr<TlsStream>> accept(TlsContext& tls, net::Stream stream);
  // The client side on a connected stream; `server_name` is sent as SNI (a
  // DNS name) and is what the certificate must name (DNS name or IP address).
  static Task<absl::StatusOr<TlsStream>> connect(TlsContext& tls, net::Stream stream,
                                                 std::string server_name);
  // Connects (net::Stream::connect), then the handshake.
  static Task<absl::StatusOr<TlsStream>> connect(TlsContext& tls, net::NetContext& net,
                                                 net::SocketAddress address,
                                                 std::string server_name,
                                                 net::ConnectOptions options = {});

  bool valid() const noexcept { return conn_ != nullptr; }
  explicit operator bool() const noexcept { return valid(); }
  const TlsInfo& info() const noexcept;
  // The socket's stream and state (deadlines, bookkeeping; ByteStream).
  net::Stream& transport() noexcept;
  net::detail::StreamState* state() const noexcept;
  net::NetContext& context() const noexcept;

  Task<absl::StatusOr<TlsBuffer>> read();
  Task<absl::Status> write(absl::Span<const uint8_t> bytes);
  // The parts leave in order as one write; `parts` must stay valid until done.
  Task<absl::Status> write(absl::Span<const absl::Span<const uint8_t>> parts);
  // As write(): TLS always encrypts into memory of its own.
  Task<absl::Status> write_copy(absl::Span<const absl::Span<const uint8_t>> parts) {
    return write(parts);
  }
  // The write done without suspending, when no other write is in progress
  // and the send queue has room: true with its result in `out`.
  bool try_write_now(absl::Span<const absl::Span<const uint8_t>> parts, absl::Status& out);
  Task<absl::Status> shutdown_write();
  Task<absl::Status> close();
  void interrupt_read(absl::Status why) noexcept;
  void abort(absl::Status why) noexcept;

 private:
  explicit TlsStream(std::unique_ptr<detail::TlsConnection> conn) noexcept;
  static Task<absl::StatusOr<TlsStream>> handshake(std::unique_ptr<detail::TlsConnection> conn);

  std::unique_ptr<detail::TlsConnection> conn_;
};

}  // namespace coring::tls
