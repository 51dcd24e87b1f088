#include "coring/tls/tls_connection.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cassert>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "coring/core/event_loop.h"
#include "coring/tls/ktls_records.h"
#include "coring/tls/tls_error.h"

namespace coring::tls::detail {

TlsConnection::TlsConnection(TlsContext& tls, net::Stream stream)
    : tls_(&tls),
      stream_(std::move(stream)),
      handshake_timer_(&TlsConnection::on_handshake_deadline, this) {}

TlsConnection::~TlsConnection() {
  ktls_.detach();  // unhooks from ssl_ while it exists
  if (ssl_ != nullptr) SSL_free(ssl_);
}

absl::Status TlsConnection::init(bool server, std::string server_name) {
  ERR_clear_error();
  ssl_ = SSL_new(tls_->native());
  if (ssl_ == nullptr) return openssl_error(absl::StatusCode::kInternal, "SSL_new");
  rbio_ = BIO_new(BIO_s_mem());
  wbio_ = BIO_new(BIO_s_mem());
  if (rbio_ == nullptr || wbio_ == nullptr) {
    BIO_free(rbio_);
    BIO_free(wbio_);
    rbio_ = wbio_ = nullptr;
    return openssl_error(absl::StatusCode::kInternal, "BIO_new");
  }
  // An empty memory BIO asks to be retried instead of reporting EOF.
  BIO_set_mem_eof_return(rbio_, -1);
  SSL_set_bio(ssl_, rbio_, wbio_);
  plain_in_.resize(kRecordPlain);
  const TlsOptions& options = tls_->options();
  ktls_precheck_ = precheck_record_path(options.kernel_tls, options.ulp_list_file);
  if (ktls_precheck_.path == RecordPath::kKernel && !ktls_.attach(ssl_, server)) {
    ktls_precheck_ = {RecordPath::kUserSpace, "kernel TLS: SSL_set_ex_data failed", {}};
  }
  if (ktls_precheck_.path == RecordPath::kKernel) {
    // A multishot recv armed past the handshake's last read could take the
    // first kernel-TLS record off the socket: read one recv at a time until
    // the switch (switch_record_path() turns multishot back on).
    if (RecvStream* channel = stream_.state()->channel()) channel->start_single_shot();
  }
  if (server) {
    what_ = "TLS handshake (server)";
    SSL_set_accept_state(ssl_);
    return absl::OkStatus();
  }
  what_ = absl::StrCat("TLS handshake with ", server_name);
  SSL_set_connect_state(ssl_);
  const TlsOptions& o = tls_->options();
  if (o.verify_peer && server_name.empty()) {
    return absl::InvalidArgumentError(
        "TLS client: a server name to verify the certificate against is required");
  }
  // An IP address is checked against the certificate's IP SANs and is not
  // sent as SNI (RFC 6066 allows only host names there).
  const bool is_ip = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), server_name.c_str()) == 1;
  if (!is_ip && !server_name.empty()) {
    if (SSL_set_tlsext_host_name(ssl_, server_name.c_str()) != 1 ||
        (o.verify_peer && SSL_set1_host(ssl_, server_name.c_str()) != 1)) {
      return openssl_error(absl::StatusCode::kInvalidArgument,
                           absl::StrFormat("TLS server name '%s'", server_name));
    }
  }
  if (!o.verify_peer && is_ip) {
    X509_VERIFY_PARAM_set1_ip(SSL_get0_param(ssl_), nullptr, 0);
  }
  if (o.resume_sessions) {
    session_key_ = server_name;
    SSL_set_app_data(ssl_, session_key_.c_str());
    if (SSL_SESSION* session = tls_->take_session(session_key_); session != nullptr) {
      SSL_set_session(ssl_, session);
      SSL_SESSION_free(session);
    }
  }
  return absl::OkStatus();
}

void TlsConnection::on_handshake_deadline(void* self, bool fired) noexcept {
  auto* c = static_cast<TlsConnection*>(self);
  if (!fired || !c->handshaking_) return;
  c->timed_out_ = true;
  c->stream_.abort(absl::DeadlineExceededError("TLS handshake: not finished in time"));
}

Task<absl::Status> TlsConnection::handshake() {
  const TlsOptions& o = tls_->options();
  handshaking_ = true;
  if (o.handshake_timeout.count() > 0) {
    handshake_timer_.arm(*EventLoop::current(), o.handshake_timeout);
  }
  absl::Status result;
  for (;;) {
    ERR_clear_error();
    const int r = SSL_do_handshake(ssl_);
    absl::Status failed;
    if (r != 1 && SSL_get_error(ssl_, r) != SSL_ERROR_WANT_READ) {
      failed = ssl_call_error(what_, ssl_, r);
      fatal_ = failed;
    }
    // The next flight, or the alert that tells the peer why.
    absl::Status sent = co_await send_pending();
    if (!failed.ok()) {
      result = std::move(failed);
      break;
    }
    if (!sent.ok()) {
      result = std::move(sent);
      break;
    }
    if (r == 1) break;
    absl::StatusOr<RecvBuffer> buf = co_await stream_.read();
    if (!buf.ok()) {
      result = buf.status();
      break;
    }
    if (buf->empty()) {
      result = absl::UnavailableError(
          absl::StrCat(what_, ": the peer closed the connection during the handshake"));
      break;
    }
    feed(buf->span());
  }
  handshaking_ = false;
  handshake_timer_.cancel();
  TlsContext::Counters& counters = tls_->counters();
  if (timed_out_) {
    result = absl::DeadlineExceededError(absl::StrFormat(
        "%s: not finished within %d ms", what_,
        std::chrono::duration_cast<std::chrono::milliseconds>(o.handshake_timeout).count()));
    counters.handshake_timeouts.fetch_add(1, std::memory_order_relaxed);
  }
  if (result.ok()) result = co_await switch_record_path();
  if (!result.ok()) {
    if (fatal_.ok()) fatal_ = result;
    counters.handshake_failures.fetch_add(1, std::memory_order_relaxed);
    co_return result;
  }
  after_handshake();
  co_return absl::OkStatus();
}

void TlsConnection::after_handshake() {
  established_ = true;
  info_.version = SSL_get_version(ssl_);
  info_.cipher = SSL_get_cipher_name(ssl_);
  const unsigned char* alpn = nullptr;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(ssl_, &alpn, &alpn_len);
  if (alpn != nullptr) info_.alpn.assign(reinterpret_cast<const char*>(alpn), alpn_len);
  info_.resumed = SSL_session_reused(ssl_) == 1;
  TlsContext::Counters& counters = tls_->counters();
  counters.handshakes.fetch_add(1, std::memory_order_relaxed);
  if (info_.resumed) counters.resumed.fetch_add(1, std::memory_order_relaxed);
  (info_.record_path == RecordPath::kKernel ? counters.kernel_records : counters.user_space_records)
      .fetch_add(1, std::memory_order_relaxed);
}

Task<absl::Status> TlsConnection::switch_record_path() {
  RecordPathDecision d = std::move(ktls_precheck_);
  const bool tried = d.path == RecordPath::kKernel;
  if (tried) {
    // What OpenSSL wrote (the last flight, tickets) must be on the socket
    // before TLS_TX: the kernel would encrypt it a second time.
    if (absl::Status s = co_await stream_.flush(); !s.ok()) co_return s;
    const TlsOptions& o = tls_->options();
    net::detail::StreamState* st = stream_.state();
    const RecvStream* channel = st->channel();
    // Named, not a temporary in the co_await: g++ 12 may destroy an
    // aggregate temporary there twice.
    KtlsSwitchPoint at{
        .wanted = o.kernel_tls,
        .ulp_list_file = o.ulp_list_file,
        .file = stream_.file(),
        .capture = &ktls_,
        .unread_bytes = BIO_ctrl_pending(rbio_),
        .unread_elsewhere = SSL_has_pending(ssl_) == 1 ||
                            (channel != nullptr && (channel->queued() > 0 || channel->armed())),
        .install = &o.kernel_tls_install,
    };
    d = co_await decide_record_path(std::move(at));
  }
  ktls_.detach();  // the secrets are wiped either way
  if (tried) {
    // init() made the stream read single-shot for the switch: done.
    if (RecvStream* channel = stream_.state()->channel()) channel->start_multishot();
  }
  kernel_ = d.path == RecordPath::kKernel;
  info_.record_path = d.path;
  info_.record_path_reason = std::move(d.reason);
  co_return d.fatal;
}

void TlsConnection::feed(absl::Span<const uint8_t> bytes) {
  // A memory BIO takes everything (it grows; its buffer is reused once read).
  if (!bytes.empty()) BIO_write(rbio_, bytes.data(), static_cast<int>(bytes.size()));
}

void TlsConnection::fail(absl::Status why) {
  if (fatal_.ok()) fatal_ = std::move(why);
}

absl::Status TlsConnection::writable() const {
  if (!fatal_.ok()) return fatal_;
  if (close_notify_sent_) return absl::FailedPreconditionError("TLS write: close_notify was sent");
  return absl::OkStatus();
}

size_t TlsConnection::take_ciphertext() {
  const size_t n = BIO_ctrl_pending(wbio_);
  if (n == 0) return 0;
  if (cipher_out_.size() < n) cipher_out_.resize(n);
  const int got = BIO_read(wbio_, cipher_out_.data(), static_cast<int>(n));
  return got > 0 ? static_cast<size_t>(got) : 0;
}

Task<absl::Status> TlsConnection::send_pending() {
  // Loops: OpenSSL may write more (a KeyUpdate answer from a read) while
  // a large run is being sent from cipher_out_.
  for (;;) {
    const size_t n = take_ciphertext();
    if (n == 0) co_return absl::OkStatus();
    absl::Status s = co_await stream_.write(absl::MakeConstSpan(cipher_out_.data(), n));
    if (!s.ok()) co_return s;
  }
}

absl::Status TlsConnection::ssl_write(const uint8_t* data, size_t size) {
  ERR_clear_error();
  size_t written = 0;
  const int r = SSL_write_ex(ssl_, data, size, &written);
  if (r != 1) {
    absl::Status s = ssl_call_error("TLS write", ssl_, r);
    fail(s);
    return s;
  }
  return absl::OkStatus();
}

absl::Status TlsConnection::encrypt(absl::Span<const absl::Span<const uint8_t>> parts, size_t& part,
                                    size_t& offset, size_t budget) {
  if (stage_.empty()) stage_.resize(kRecordPlain);
  size_t staged = 0;
  auto flush_stage = [&]() -> absl::Status {
    if (staged == 0) return absl::OkStatus();
    const size_t n = std::exchange(staged, 0);
    return ssl_write(stage_.data(), n);
  };
  while (part < parts.size() && budget > 0) {
    const absl::Span<const uint8_t> p = parts[part].subspan(offset);
    const size_t n = std::min(p.size(), budget);
    if (n == 0) {
      ++part;
      offset = 0;
      continue;
    }
    // Records are filled: pieces (a frame's header, its payload, its
    // trailer) are staged together until a record is full; only whole
    // records go to OpenSSL straight from the caller's memory.
    size_t take = 0;
    if (staged > 0 || n < stage_.size()) {
      take = std::min(n, stage_.size() - staged);
      std::memcpy(stage_.data() + staged, p.data(), take);
      staged += take;
      if (staged == stage_.size()) {
        if (absl::Status s = flush_stage(); !s.ok()) return s;
      }
    } else {
      take = n - n % stage_.size();
      if (absl::Status s = ssl_write(p.data(), take); !s.ok()) return s;
    }
    budget -= take;
    offset += take;
    if (offset == parts[part].size()) {
      ++part;
      offset = 0;
    }
  }
  return flush_stage();
}

bool TlsConnection::try_write_now(absl::Span<const absl::Span<const uint8_t>> parts,
                                  absl::Status& out) {
  if (!fatal_.ok()) {
    out = fatal_;
    return true;
  }
  size_t total = 0;
  for (absl::Span<const uint8_t> p : parts) total += p.size();
  // Kernel TLS: write() hands the plaintext to the stream as it is.
  if (kernel_ || total > kRound || !lock_.try_lock()) return false;
  const size_t pending = BIO_ctrl_pending(wbio_);
  const size_t bound = pending + total + kRecordOverhead * (total / kRecordPlain + 2);
  net::detail::StreamState* st = stream_.state();
  if (!st->admits_now(bound)) {
    lock_.unlock();
    return false;
  }
  if (out = writable(); out.ok()) {
    size_t part = 0;
    size_t offset = 0;
    out = encrypt(parts, part, offset, total);
  }
  if (const size_t n = take_ciphertext(); n > 0) {
    // Copied into the send queue at once: admits_now() said it fits.
    const absl::Span<const uint8_t> cipher[1] = {absl::MakeConstSpan(cipher_out_.data(), n)};
    net::Stream::WriteAwaiter w(st, cipher, net::detail::Writer::Kind::kCopy);
    const bool done = w.await_ready();
    assert(done);
    absl::Status sent = done ? w.await_resume() : absl::InternalError("TLS: send queue refused");
    if (out.ok()) out = std::move(sent);
  }
  lock_.unlock();
  return true;
}

Task<absl::Status> TlsConnection::write_locked(absl::Span<const absl::Span<const uint8_t>> parts) {
  if (absl::Status s = writable(); !s.ok()) co_return s;
  size_t part = 0;
  size_t offset = 0;
  while (part < parts.size()) {
    if (absl::Status s = encrypt(parts, part, offset, kRound); !s.ok()) {
      (void)co_await send_pending();  // records already made go out before the error
      co_return s;
    }
    if (absl::Status s = co_await send_pending(); !s.ok()) co_return s;
  }
  co_return co_await send_pending();
}

Task<absl::Status> TlsConnection::write(absl::Span<const absl::Span<const uint8_t>> parts) {
  if (kernel_) co_return co_await kernel_write(parts);
  co_await lock_.lock();
  WriteLockGuard locked(lock_);
  co_return co_await write_locked(parts);
}

Task<absl::StatusOr<TlsBuffer>> TlsConnection::read() {
  if (kernel_) co_return co_await kernel_read();
  for (;;) {
    if (eof_) co_return TlsBuffer();
    if (!fatal_.ok()) co_return fatal_;
    ERR_clear_error();
    size_t got = 0;
    const int r = SSL_read_ex(ssl_, plain_in_.data(), plain_in_.size(), &got);
    const int kind = r == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_, r);
    absl::Status failed;
    if (kind != SSL_ERROR_NONE && kind != SSL_ERROR_WANT_READ && kind != SSL_ERROR_ZERO_RETURN) {
      failed = ssl_call_error("TLS read", ssl_, r);
      fail(failed);
    }
    // What reading made OpenSSL write (a KeyUpdate answer, an alert). A
    // writer holding the lock sends it with its own records.
    if (BIO_ctrl_pending(wbio_) > 0 && lock_.try_lock()) {
      WriteLockGuard locked(lock_);
      // A failed send shows on the next write; the plaintext read is still good.
      (void)co_await send_pending();
    }
    if (!failed.ok()) co_return failed;
    if (kind == SSL_ERROR_NONE) co_return TlsBuffer(plain_in_.data(), got);
    if (kind == SSL_ERROR_ZERO_RETURN) {  // the peer's close_notify
      eof_ = true;
      co_return TlsBuffer();
    }
    absl::StatusOr<RecvBuffer> buf = co_await stream_.read();
    if (!buf.ok()) co_return buf.status();  // interrupts pass through: reading may go on
    if (buf->empty()) {
      info_.truncated = true;  // TCP EOF without close_notify
      eof_ = true;
      co_return TlsBuffer();
    }
    feed(buf->span());
  }
}

Task<> TlsConnection::send_close_notify() {
  if (close_notify_sent_ || !established_ || !fatal_.ok()) co_return;
  net::detail::StreamState* st = stream_.state();
  if (st == nullptr || st->file_closed() || !st->write_error().ok()) co_return;
  co_await lock_.lock();
  WriteLockGuard locked(lock_);
  if (!close_notify_sent_ && fatal_.ok() && kernel_) {
    close_notify_sent_ = true;
    // After the plaintext queued before it; a failure shows as the peer's
    // truncated stream, as a failed user-space close_notify would. (A
    // test's pretended install sends these two bytes as plaintext.)
    if ((co_await stream_.flush()).ok()) {
      (void)co_await send_close_notify_alert(stream_.file(), kernel_out_msg_);
    }
  } else if (!close_notify_sent_ && fatal_.ok()) {
    close_notify_sent_ = true;
    ERR_clear_error();
    (void)SSL_shutdown(ssl_);  // 0: sent, the peer's not yet seen - we do not wait for it here
    ERR_clear_error();
    (void)co_await send_pending();
  }
}

// ---- Kernel TLS: the kernel seals and opens the records ----

Task<absl::Status> TlsConnection::kernel_write(absl::Span<const absl::Span<const uint8_t>> parts) {
  if (absl::Status s = writable(); !s.ok()) co_return s;
  co_return co_await stream_.write(parts);
}

Task<absl::StatusOr<TlsBuffer>> TlsConnection::kernel_read() {
  for (;;) {
    kernel_in_ = RecvBuffer();  // the previous read's buffer goes back to the ring
    if (eof_) co_return TlsBuffer();
    if (!fatal_.ok()) co_return fatal_;
    absl::StatusOr<RecvBuffer> buf = co_await stream_.read();
    if (!buf.ok()) {
      // EIO (DataLoss) is the kernel saying the next record is not
      // application data: read it with its type.
      if (!absl::IsDataLoss(buf.status()) || stream_.state()->last_read_interrupted()) {
        co_return buf.status();
      }
      absl::StatusOr<ControlRecord> c =
          co_await take_control_record(stream_.file(), kernel_in_msg_, absl::MakeSpan(plain_in_));
      if (!c.ok()) {
        fail(c.status());
        co_return c.status();
      }
      if (*c == ControlRecord::kCloseNotify) {
        eof_ = true;
        co_return TlsBuffer();
      }
      continue;  // a ticket OpenSSL cannot take any more: read on
    }
    if (buf->empty()) {
      info_.truncated = true;  // TCP EOF without close_notify
      eof_ = true;
      co_return TlsBuffer();
    }
    kernel_in_ = std::move(*buf);
    co_return TlsBuffer(kernel_in_.data(), kernel_in_.size());
  }
}

}  // namespace coring::tls::detail
