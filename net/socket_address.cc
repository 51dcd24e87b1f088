#include "coring/net/socket_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "coring/core/errno_status.h"

namespace coring::net {
namespace {

absl::StatusOr<uint16_t> parse_port(std::string_view text, std::string_view whole) {
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value > 65535) {
    return absl::InvalidArgumentError(
        absl::StrFormat("bad port '%s' in address '%s': want 0..65535", text, whole));
  }
  return static_cast<uint16_t>(value);
}

}  // namespace

absl::StatusOr<SocketAddress> SocketAddress::parse(std::string_view text) {
  if (text.starts_with("unix:")) return unix_path(text.substr(5));
  std::string_view host;
  std::string_view port;
  if (text.starts_with("[")) {
    const size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return absl::InvalidArgumentError(
          absl::StrFormat("bad address '%s': want [IPV6]:PORT", text));
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrFormat("bad address '%s': want HOST:PORT, [IPV6]:PORT or unix:PATH", text));
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrFormat("bad address '%s': put an IPv6 host in brackets, [::1]:PORT", text));
    }
  }
  absl::StatusOr<uint16_t> port_number = parse_port(port, text);
  if (!port_number.ok()) return port_number.status();
  if (host == "localhost") return ipv4_loopback(*port_number);

  SocketAddress address;
  const std::string host_string(host);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&address.storage_);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&address.storage_);
  if (inet_pton(AF_INET, host_string.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    address.size_ = sizeof(sockaddr_in);
    address.family_ = Family::kIpv4;
  } else if (inet_pton(AF_INET6, host_string.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    address.size_ = sizeof(sockaddr_in6);
    address.family_ = Family::kIpv6;
  } else {
    return absl::InvalidArgumentError(absl::StrFormat(
        "bad host '%s' in address '%s': want a numeric IPv4/IPv6 address or localhost", host,
        text));
  }
  address.set_port(*port_number);
  return address;
}

SocketAddress SocketAddress::ipv4_loopback(uint16_t port) {
  SocketAddress address;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&address.storage_);
  v4->sin_family = AF_INET;
  v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  v4->sin_port = htons(port);
  address.size_ = sizeof(sockaddr_in);
  address.family_ = Family::kIpv4;
  return address;
}

SocketAddress SocketAddress::ipv4_any(uint16_t port) {
  SocketAddress address = ipv4_loopback(port);
  reinterpret_cast<sockaddr_in*>(&address.storage_)->sin_addr.s_addr = htonl(INADDR_ANY);
  return address;
}

SocketAddress SocketAddress::ipv6_loopback(uint16_t port) {
  SocketAddress address;
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&address.storage_);
  v6->sin6_family = AF_INET6;
  v6->sin6_addr = in6addr_loopback;
  v6->sin6_port = htons(port);
  address.size_ = sizeof(sockaddr_in6);
  address.family_ = Family::kIpv6;
  return address;
}

absl::StatusOr<SocketAddress> SocketAddress::unix_path(std::string_view path) {
  SocketAddress address;
  auto* un = reinterpret_cast<sockaddr_un*>(&address.storage_);
  if (path.empty() || path.size() >= sizeof(un->sun_path)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "bad Unix socket address path '%s': want 1..%d bytes", path, sizeof(un->sun_path) - 1));
  }
  un->sun_family = AF_UNIX;
  std::memcpy(un->sun_path, path.data(), path.size());
  address.size_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  address.family_ = Family::kUnix;
  return address;
}

absl::StatusOr<SocketAddress> SocketAddress::local_of(int fd) {
  SocketAddress address;
  address.size_ = sizeof(address.storage_);
  if (getsockname(fd, address.data(), &address.size_) != 0) {
    return errno_to_status(errno, "getsockname");
  }
  switch (address.storage_.ss_family) {
    case AF_INET:
      address.family_ = Family::kIpv4;
      break;
    case AF_INET6:
      address.family_ = Family::kIpv6;
      break;
    case AF_UNIX:
      address.family_ = Family::kUnix;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrFormat("getsockname: unsupported family %d", address.storage_.ss_family));
  }
  return address;
}

int SocketAddress::domain() const {
  switch (family_) {
    case Family::kIpv4:
      return AF_INET;
    case Family::kIpv6:
      return AF_INET6;
    case Family::kUnix:
      return AF_UNIX;
  }
  return AF_UNSPEC;
}

uint16_t SocketAddress::port() const {
  switch (family_) {
    case Family::kIpv4:
      return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
    case Family::kIpv6:
      return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
    case Family::kUnix:
      return 0;
  }
  return 0;
}

void SocketAddress::set_port(uint16_t port) {
  if (family_ == Family::kIpv4) {
    reinterpret_cast<sockaddr_in*>(&storage_)->sin_port = htons(port);
  } else if (family_ == Family::kIpv6) {
    reinterpret_cast<sockaddr_in6*>(&storage_)->sin6_port = htons(port);
  }
}

std::string SocketAddress::to_string() const {
  char host[INET6_ADDRSTRLEN] = {};
  switch (family_) {
    case Family::kIpv4:
      inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, host,
                sizeof(host));
      return absl::StrFormat("%s:%d", host, port());
    case Family::kIpv6:
      inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, host,
                sizeof(host));
      return absl::StrFormat("[%s]:%d", host, port());
    case Family::kUnix:
      return absl::StrFormat("unix:%s", reinterpret_cast<const sockaddr_un*>(&storage_)->sun_path);
  }
  return "?";
}

}  // namespace coring::net
