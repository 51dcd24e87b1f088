// SocketAddress: an IPv4, IPv6 or Unix-domain stream socket address.
//
// Parsed from the forms a user types on a command line — "127.0.0.1:7000",
// "[::1]:7000", "localhost:7000" (numeric hosts and "localhost" only: no DNS
// on the hot path of a server start), "unix:/run/app.sock" — or built from
// parts. It owns a sockaddr_storage, so it can be passed to bind/connect or
// to an io_uring connect, whose SQE points at it until the CQE arrives.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace coring::net {

class SocketAddress {
 public:
  enum class Family { kIpv4, kIpv6, kUnix };

  // Parses "HOST:PORT", "[V6]:PORT" or "unix:PATH"; a clear error otherwise.
  static absl::StatusOr<SocketAddress> parse(std::string_view text);
  static SocketAddress ipv4_loopback(uint16_t port);
  static SocketAddress ipv6_loopback(uint16_t port);
  static SocketAddress ipv4_any(uint16_t port);
  static absl::StatusOr<SocketAddress> unix_path(std::string_view path);
  // The address a socket is bound to (getsockname), e.g. to learn port 0's pick.
  static absl::StatusOr<SocketAddress> local_of(int fd);

  Family family() const { return family_; }
  int domain() const;     // AF_INET, AF_INET6 or AF_UNIX
  uint16_t port() const;  // 0 for Unix addresses
  void set_port(uint16_t port);

  const sockaddr* data() const { return reinterpret_cast<const sockaddr*>(&storage_); }
  sockaddr* data() { return reinterpret_cast<sockaddr*>(&storage_); }
  socklen_t size() const { return size_; }

  // "127.0.0.1:7000", "[::1]:7000" or "unix:/path".
  std::string to_string() const;

 private:
  SocketAddress() = default;

  sockaddr_storage storage_{};
  socklen_t size_ = 0;
  Family family_ = Family::kIpv4;
};

}  // namespace coring::net
