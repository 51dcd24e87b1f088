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
// Running out of descriptors or table slots (EMFILE, ENFILE, ENOMEM, table
// full) is not an error for accept(): it backs off with a timer (min_backoff
// doubling to max_backoff) and tries again, so existing connections keep
// being served and the loop never spins. Before re-arming it also waits until
// the loop's table has a free slot by its own count (NetContext streams), so
// that connections wait in the kernel's backlog instead of being accepted and
// dropped. Limitation: an armed multishot accept-direct takes every
// connection the kernel has, so a burst that overfills the table loses the
// one that finds it full (the kernel accepts it, has no slot, and closes it);
// the few accepted while the op is being disarmed are kept and served. Keep
// `reserved_slots` above the expected burst. Transient errors
// (ECONNABORTED, EINTR, EAGAIN) are retried.
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

  uint64_t accepted() const noexcept { return accepted_; }
  uint64_t backoffs() const noexcept { return backoffs_; }  // waits for resources
  uint64_t transient_errors() const noexcept { return transient_; }

 private:
  Listener(NetContext& ctx, int fd, UniqueFd owned, ListenerOptions options);
  bool table_has_room() noexcept;

  NetContext& ctx_;
  int fd_;
  UniqueFd owned_;
  ListenerOptions options_;
  std::optional<AcceptStream> accepts_;  // with a fixed-file table
  uint64_t accepted_ = 0;
  uint64_t backoffs_ = 0;
  uint64_t transient_ = 0;
};

}  // namespace coring::net
