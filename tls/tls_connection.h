// TlsConnection: the state behind a TlsStream handle - the OpenSSL SSL object
// on two memory BIOs, the socket's net::Stream, and the buffers that carry
// plaintext and ciphertext between them. Internal to tls/; TlsStream
// (tls_stream.h) is the public face and says what each operation does.
//
// Bytes in: Stream::read() -> BIO_write(rbio) (the ring buffer goes back at
// once) -> SSL_read into plain_in_. Bytes out: SSL_write (small parts staged
// into one record) -> wbio -> BIO_read into cipher_out_ -> Stream::write(),
// which copies small runs into registered buffers and sends large ones from
// cipher_out_ itself, holding the write lock until they are sent. Whatever
// OpenSSL writes on its own (handshake flights, alerts, KeyUpdate answers,
// close_notify) is sent by the same path (send_pending()).
//
// Kernel TLS (ktls.h): right after the handshake the connection may hand
// its records to the kernel (switch_record_path()); from then on read() and
// write() pass plaintext straight through the stream, and OpenSSL is only
// kept for what the handshake told (TlsInfo). The kernel-side reading of
// alerts and tickets is in ktls_records.h; it goes through the ring, so a
// fixed file is served like a plain fd.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "coring/core/task.h"
#include "coring/net/callback_timer.h"
#include "coring/net/stream.h"
#include "coring/tls/ktls.h"
#include "coring/tls/ktls_keys.h"
#include "coring/tls/ktls_records.h"
#include "coring/tls/tls_context.h"
#include "coring/tls/tls_stream.h"
#include "coring/tls/write_lock.h"

struct bio_st;

namespace coring::tls::detail {

class TlsConnection {
 public:
  // Plaintext read at a time: one full record.
  static constexpr size_t kRecordPlain = 16 * 1024;
  // Plaintext encrypted per round before its ciphertext is handed to the
  // stream: bounds cipher_out_ and OpenSSL's write BIO.
  static constexpr size_t kRound = 64 * 1024;
  // Upper bound of TLS's per-record bytes (header, tag, content type) plus slack.
  static constexpr size_t kRecordOverhead = 64;

  TlsConnection(TlsContext& tls, net::Stream stream);
  ~TlsConnection();
  TlsConnection(const TlsConnection&) = delete;
  TlsConnection& operator=(const TlsConnection&) = delete;

  // Makes the SSL object; `server_name` for a client (SNI, verification).
  absl::Status init(bool server, std::string server_name);
  Task<absl::Status> handshake();

  Task<absl::StatusOr<TlsBuffer>> read();
  Task<absl::Status> write(absl::Span<const absl::Span<const uint8_t>> parts);
  bool try_write_now(absl::Span<const absl::Span<const uint8_t>> parts, absl::Status& out);
  // Sends close_notify once, when the connection can still carry it.
  Task<> send_close_notify();

  net::Stream& stream() noexcept { return stream_; }
  const TlsInfo& info() const noexcept { return info_; }

 private:
  // Whether OpenSSL may still be called to write (no fatal error, not closed).
  absl::Status writable() const;
  // Encrypts `parts` from (part, offset) on, up to `budget` plaintext bytes,
  // into the write BIO; advances the cursor.
  absl::Status encrypt(absl::Span<const absl::Span<const uint8_t>> parts, size_t& part,
                       size_t& offset, size_t budget);
  absl::Status ssl_write(const uint8_t* data, size_t size);
  // Moves what the write BIO holds into cipher_out_; its size.
  size_t take_ciphertext();
  // Sends everything OpenSSL has written; the write lock (or the handshake) is held.
  Task<absl::Status> send_pending();
  Task<absl::Status> write_locked(absl::Span<const absl::Span<const uint8_t>> parts);
  // Feeds received ciphertext to OpenSSL.
  void feed(absl::Span<const uint8_t> bytes);
  void fail(absl::Status why);
  // Tries kernel TLS (ktls.h) and records the path taken in info_; not OK
  // when a half-done install leaves the connection unusable.
  Task<absl::Status> switch_record_path();
  void after_handshake();
  // read() and write() once the kernel carries the records.
  Task<absl::StatusOr<TlsBuffer>> kernel_read();
  Task<absl::Status> kernel_write(absl::Span<const absl::Span<const uint8_t>> parts);
  static void on_handshake_deadline(void* self, bool fired) noexcept;

  TlsContext* tls_;
  net::Stream stream_;
  ssl_st* ssl_ = nullptr;
  bio_st* rbio_ = nullptr;  // owned by ssl_
  bio_st* wbio_ = nullptr;  // owned by ssl_
  std::vector<uint8_t> plain_in_;
  std::vector<uint8_t> stage_;
  std::vector<uint8_t> cipher_out_;
  WriteLock lock_;
  absl::Status fatal_;  // OpenSSL failed: no further SSL_write / SSL_shutdown
  bool eof_ = false;
  bool close_notify_sent_ = false;
  bool established_ = false;
  bool handshaking_ = false;
  bool timed_out_ = false;
  std::string what_;         // "TLS handshake with example.test", for errors
  std::string session_key_;  // client: the session cache's key
  TlsInfo info_;
  net::detail::CallbackTimer handshake_timer_;
  // Kernel TLS: whether it was worth a try (init()), the keys gathered
  // during the handshake, and once switched, the buffer read() last gave
  // and the msghdrs of control records read and sent (ktls_records.h:
  // here, not in a coroutine frame, until their completions).
  RecordPathDecision ktls_precheck_;
  KtlsCapture ktls_;
  bool kernel_ = false;
  RecvBuffer kernel_in_;
  ControlRecordMsg kernel_in_msg_;
  ControlRecordMsg kernel_out_msg_;
};

}  // namespace coring::tls::detail
