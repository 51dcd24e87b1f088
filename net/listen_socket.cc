#include "coring/net/listen_socket.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "absl/strings/str_format.h"
#include "coring/core/errno_status.h"

namespace coring::net {
namespace {

absl::Status set_int(int fd, int level, int name, int value, const char* what) {
  if (::setsockopt(fd, level, name, &value, sizeof(value)) != 0) {
    return errno_to_status(errno, what);
  }
  return absl::OkStatus();
}

// A Unix socket file nobody listens on is left behind by a crashed server;
// removing it lets the next one start. Anything else at the path is kept.
absl::Status remove_stale_unix_socket(const SocketAddress& address) {
  const auto* un = reinterpret_cast<const sockaddr_un*>(address.data());
  if (un->sun_path[0] == '\0') return absl::OkStatus();  // abstract namespace
  struct stat st {};
  if (::lstat(un->sun_path, &st) != 0) return absl::OkStatus();  // nothing there
  if (!S_ISSOCK(st.st_mode)) {
    return absl::AlreadyExistsError(
        absl::StrFormat("listen %s: the path exists and is not a socket; refusing to replace it",
                        address.to_string()));
  }
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (probe && ::connect(probe.get(), address.data(), address.size()) == 0) {
    return absl::AlreadyExistsError(absl::StrFormat(
        "listen %s: another process is listening on this socket", address.to_string()));
  }
  ::unlink(un->sun_path);
  return absl::OkStatus();
}

}  // namespace

absl::Status apply_socket_options(int fd, SocketAddress::Family family,
                                  const SocketOptions& options) {
  if (family != SocketAddress::Family::kUnix && options.tcp_nodelay) {
    if (absl::Status s = set_int(fd, IPPROTO_TCP, TCP_NODELAY, 1, "setsockopt(TCP_NODELAY)");
        !s.ok()) {
      return s;
    }
  }
  if (options.send_buffer) {
    if (absl::Status s =
            set_int(fd, SOL_SOCKET, SO_SNDBUF, *options.send_buffer, "setsockopt(SO_SNDBUF)");
        !s.ok()) {
      return s;
    }
  }
  if (options.receive_buffer) {
    if (absl::Status s =
            set_int(fd, SOL_SOCKET, SO_RCVBUF, *options.receive_buffer, "setsockopt(SO_RCVBUF)");
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> listen_socket(const SocketAddress& address, const ListenOptions& options) {
  const std::string where = address.to_string();
  const bool is_unix = address.family() == SocketAddress::Family::kUnix;
  if (options.backlog <= 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("listen %s: backlog must be positive, got %d", where, options.backlog));
  }
  if (is_unix) {
    if (absl::Status s = remove_stale_unix_socket(address); !s.ok()) return s;
  }
  UniqueFd fd(::socket(address.domain(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return errno_to_status(errno, "socket for " + where);
  if (!is_unix) {
    if (absl::Status s = set_int(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1, "setsockopt(SO_REUSEADDR)");
        !s.ok()) {
      return s;
    }
    if (options.reuse_port) {
      if (absl::Status s =
              set_int(fd.get(), SOL_SOCKET, SO_REUSEPORT, 1, "setsockopt(SO_REUSEPORT)");
          !s.ok()) {
        return s;
      }
    }
    if (address.family() == SocketAddress::Family::kIpv6) {
      // "[::]:port" serves IPv6 only; IPv4 clients use an IPv4 listener.
      (void)set_int(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, 1, "setsockopt(IPV6_V6ONLY)");
    }
  }
  if (absl::Status s = apply_socket_options(fd.get(), address.family(), options.socket); !s.ok()) {
    return s;
  }
  if (::bind(fd.get(), address.data(), address.size()) != 0) {
    return errno_to_status(errno, "bind " + where);
  }
  if (::listen(fd.get(), options.backlog) != 0) {
    return errno_to_status(errno, "listen " + where);
  }
  return fd;
}

}  // namespace coring::net
