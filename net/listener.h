// Listener: accepts connections on one event loop, as Streams.
//
//   auto listener = Listener::bind(net, SocketAddress::ipv4_any(7000));   // own SO_REUSEPORT
//   socket for (;;) {
//     absl::StatusOr<Stream> s = co_await (*listener)->accept();
//     if (!s.ok()) break;                      // Cancelled (stop token) or a fatal error
//     spawn(loop, serve(std::move(*s)));
//   }
//
// One per loop: TCP listeners each bind their own socket to the same port
// (SO_REUSEPORT, the kernel spreads connections); a Unix socket is bound once
// and share()d by every loop. With a fixed-file table, one multishot accept
// puts connections directly into the table (re-armed when the kernel ends
// it); without one, single-shot accepts give plain fds.
//
// Capacity: the fixed-file table is a speed-up, not a limit. The multishot
// accept-direct is armed only while the table (by the context's count of
// streams, keeping `reserved_slots` free) has room for a whole backlog -
// it may take that many at once, and the kernel drops a connection that
// finds the table full - and otherwise connections are accepted as plain
// fds until slots are free again. Running out of fds (EMFILE, ENFILE) is not
// silence either: the listener keeps one spare fd open, gives it up to
// accept the waiting connection, and returns it with over_capacity() true,
// so the caller can tell the peer (Server: codec goodbye for
// ResourceExhausted, SBMP GOAWAY(OVERLOADED)) and close; then it reopens the
// spare. If even that fails it backs off with a timer (min_backoff doubling
// to max_backoff), so the loop never spins. Errors accept(2) says to retry
// (ECONNABORTED, EPROTO, EPERM, ENETDOWN, ...: Unavailable) are retried.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>

#include "absl/status/statusor.h"
#include "coring/core/accept.h"
#include "coring/core/task.h"
#include "coring/net/listen_socket.h"
#include "coring/net/net_context.h"
#include "coring/net/socket_address.h"
#include "coring/net/stream.h"

namespace coring::net {

struct ListenerOptions {
  ListenOptions listen = {};
  std::chrono::milliseconds min_backoff{5};
  std::chrono::milliseconds max_backoff{500};
  // Slots of the fixed-file table kept free for other uses (client
  // connections, files) when deciding whether to accept more.
  uint32_t reserved_slots = 8;
};

class Listener {
 public:
  // Binds and listens on a socket of its own.
  static absl::StatusOr<std::unique_ptr<Listener>> bind(NetContext& ctx,
                                                        const SocketAddress& address,
                                                        ListenerOptions options = {});
  // Accepts on a listening socket the caller keeps open (shared by loops).
  static std::unique_ptr<Listener> share(NetContext& ctx, int listen_fd,
                                         ListenerOptions options = {});
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // The next connection. Honours the awaiting coroutine's stop token
  // (Cancelled). Errors only when accepting cannot go on.
  Task<absl::StatusOr<Stream>> accept();

  int fd() const noexcept { return fd_; }
  absl::StatusOr<SocketAddress> local_address() const { return SocketAddress::local_of(fd_); }
  NetContext& context() noexcept { return ctx_; }

  // The connection accept() just returned took the spare fd: the process is
  // out of descriptors. Tell the peer and close it promptly.
  bool over_capacity() const noexcept { return over_capacity_; }

  uint64_t accepted() const noexcept { return accepted_; }
  uint64_t plain_accepts() const noexcept { return plain_; }  // table full: plain fds
  uint64_t spare_accepts() const noexcept { return spare_; }  // out of fds: spare given up
  uint64_t backoffs() const noexcept { return backoffs_; }    // waits for resources
  uint64_t transient_errors() const noexcept { return transient_; }

 private:
  Listener(NetContext& ctx, int fd, UniqueFd owned, ListenerOptions options);
  bool table_has_room() noexcept;

  NetContext& ctx_;
  int fd_;
  UniqueFd owned_;
  ListenerOptions options_;
  std::optional<AcceptStream> accepts_;  // with a fixed-file table
  UniqueFd spare_fd_;                    // given up to accept when out of fds
  bool over_capacity_ = false;
  uint64_t accepted_ = 0;
  uint64_t plain_ = 0;
  uint64_t spare_ = 0;
  uint64_t backoffs_ = 0;
  uint64_t transient_ = 0;
};

}  // namespace coring::net
