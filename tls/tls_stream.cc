#include "coring/tls/tls_stream.h"

#include "coring/tls/tls_connection.h"

namespace coring::tls {

TlsStream::TlsStream() noexcept = default;
TlsStream::TlsStream(TlsStream&&) noexcept = default;
TlsStream& TlsStream::operator=(TlsStream&&) noexcept = default;
TlsStream::~TlsStream() = default;
TlsStream::TlsStream(std::unique_ptr<detail::TlsConnection> conn) noexcept
    : conn_(std::move(conn)) {}

Task<absl::StatusOr<TlsStream>> TlsStream::handshake(std::unique_ptr<detail::TlsConnection> conn) {
  absl::Status s = co_await conn->handshake();
  if (!s.ok()) {
    // The alert (if any) was queued: close() sends it, bounded by linger.
    (void)co_await conn->stream().close();
    co_return s;
  }
  co_return TlsStream(std::move(conn));
}

Task<absl::StatusOr<TlsStream>> TlsStream::accept(TlsContext& tls, net::Stream stream) {
  auto conn = std::make_unique<detail::TlsConnection>(tls, std::move(stream));
  if (absl::Status s = conn->init(/*server=*/true, {}); !s.ok()) {
    (void)co_await conn->stream().close();
    co_return s;
  }
  co_return co_await handshake(std::move(conn));
}

Task<absl::StatusOr<TlsStream>> TlsStream::connect(TlsContext& tls, net::Stream stream,
                                                   std::string server_name) {
  auto conn = std::make_unique<detail::TlsConnection>(tls, std::move(stream));
  if (absl::Status s = conn->init(/*server=*/false, std::move(server_name)); !s.ok()) {
    (void)co_await conn->stream().close();
    co_return s;
  }
  co_return co_await handshake(std::move(conn));
}

Task<absl::StatusOr<TlsStream>> TlsStream::connect(TlsContext& tls, net::NetContext& net,
                                                   net::SocketAddress address,
                                                   std::string server_name,
                                                   net::ConnectOptions options) {
  absl::StatusOr<net::Stream> s = co_await net::Stream::connect(net, address, options);
  if (!s.ok()) co_return s.status();
  co_return co_await connect(tls, std::move(*s), std::move(server_name));
}

const TlsInfo& TlsStream::info() const noexcept { return conn_->info(); }
net::Stream& TlsStream::transport() noexcept { return conn_->stream(); }
net::detail::StreamState* TlsStream::state() const noexcept {
  return conn_ ? conn_->stream().state() : nullptr;
}
net::NetContext& TlsStream::context() const noexcept { return conn_->stream().context(); }

Task<absl::StatusOr<TlsBuffer>> TlsStream::read() { return conn_->read(); }

Task<absl::Status> TlsStream::write(absl::Span<const uint8_t> bytes) {
  const absl::Span<const uint8_t> parts[1] = {bytes};
  co_return co_await conn_->write(parts);
}

Task<absl::Status> TlsStream::write(absl::Span<const absl::Span<const uint8_t>> parts) {
  return conn_->write(parts);
}

bool TlsStream::try_write_now(absl::Span<const absl::Span<const uint8_t>> parts,
                              absl::Status& out) {
  return conn_->try_write_now(parts, out);
}

Task<absl::Status> TlsStream::shutdown_write() {
  if (!conn_) co_return absl::FailedPreconditionError("shutdown_write: no stream");
  co_await conn_->send_close_notify();
  co_return co_await conn_->stream().shutdown_write();
}

Task<absl::Status> TlsStream::close() {
  if (!conn_) co_return absl::OkStatus();
  co_await conn_->send_close_notify();
  co_return co_await conn_->stream().close();
}

void TlsStream::interrupt_read(absl::Status why) noexcept {
  conn_->stream().interrupt_read(std::move(why));
}
void TlsStream::abort(absl::Status why) noexcept { conn_->stream().abort(std::move(why)); }

}  // namespace coring::tls
