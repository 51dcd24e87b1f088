// listen_socket(): a bound, listening stream socket for an IPv4, IPv6 or
// Unix-domain address, ready for a Listener (multishot accept).
//
//   absl::StatusOr<UniqueFd> fd = listen_socket(SocketAddress::ipv4_any(7000), {});
//   if (!fd.ok()) return fd.status();    // "bind 0.0.0.0:7000: EADDRINUSE: ..."
//
// TCP sockets get SO_REUSEADDR, and SO_REUSEPORT when asked (one listener per
// event-loop thread on the same port; the kernel spreads connections). Options
// set here on the listening socket (TCP_NODELAY, buffer sizes) are inherited by
// every accepted socket, which is how accepted fixed files get them without a
// setsockopt syscall per connection. A Unix path that holds a stale socket (no
// one listening) is removed first; any other file there is an error.
#pragma once

#include <cstdint>
#include <optional>

#include "absl/status/statusor.h"
#include "coring/net/socket_address.h"
#include "coring/net/unique_fd.h"

namespace coring::net {

// Per-socket options, for listening sockets (inherited by accepted ones) and
// for client sockets.
struct SocketOptions {
  bool tcp_nodelay = true;
  // SO_SNDBUF / SO_RCVBUF when set (the kernel doubles what it is given).
  std::optional<int> send_buffer = {};
  std::optional<int> receive_buffer = {};
};

struct ListenOptions {
  int backlog = 1024;
  bool reuse_port = true;  // TCP only
  SocketOptions socket = {};
};

absl::StatusOr<UniqueFd> listen_socket(const SocketAddress& address,
                                       const ListenOptions& options = {});

// Applies `options` to a socket of the given family (TCP_NODELAY only for TCP).
absl::Status apply_socket_options(int fd, SocketAddress::Family family,
                                  const SocketOptions& options);

}  // namespace coring::net
