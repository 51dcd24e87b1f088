// serve_tls(): a net::Server whose connections speak TLS - each accepted
// stream gets the handshake (TlsStream::accept), then the handler gets
// FramedStream<C, TlsStream>, exactly as Server::serve<C>() hands out
// FramedStream<C> on plain TCP. A handshake that fails (bad certificate,
// plaintext or garbage, a peer that stalls past TlsOptions::
// handshake_timeout) closes the connection; TlsContext::stats() counts it.
//
//   auto tls = tls::TlsContext::server({.cert_file = cert, .key_file = key});
//   absl::Status s = tls::serve_tls<sbmp::Codec>(server, **tls, echo);
//   // echo: Task<>(FramedStream<sbmp::Codec, tls::TlsStream>)
#pragma once

#include <functional>
#include <utility>

#include "absl/status/status.h"
#include "coring/core/task.h"
#include "coring/net/frame_codec.h"
#include "coring/net/framed_stream.h"
#include "coring/net/server.h"
#include "coring/net/stream.h"
#include "coring/tls/tls_context.h"
#include "coring/tls/tls_stream.h"

namespace coring::tls {

namespace detail {

template <net::FrameCodec C, class H>
Task<> tls_framed_connection(TlsContext& tls, net::Stream stream, H handler, C codec,
                             net::FramedOptions framed) {
  absl::StatusOr<TlsStream> t = co_await TlsStream::accept(tls, std::move(stream));
  if (!t.ok()) co_return;  // closed; counted in tls.stats()
  co_await handler(net::FramedStream<C, TlsStream>(std::move(*t), std::move(codec), framed));
}

}  // namespace detail

// `tls` must outlive the server's connections.
template <net::FrameCodec C, class H>
absl::Status serve_tls(
    net::Server& server, TlsContext& tls, H handler,
    std::function<C()> make_codec = [] { return C(); }) {
  const net::FramedOptions framed = server.options().framed;
  return server.serve(
      [&tls, handler = std::move(handler), make_codec, framed](net::Stream s) -> Task<> {
        return detail::tls_framed_connection<C>(tls, std::move(s), handler, make_codec(), framed);
      });
}

}  // namespace coring::tls
