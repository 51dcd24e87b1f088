#include "coring/net/listener.h"

#include <fcntl.h>

#include <algorithm>

#include "coring/core/fixed_files.h"
#include "coring/core/timer.h"

namespace coring::net {

absl::StatusOr<std::unique_ptr<Listener>> Listener::bind(NetContext& ctx,
                                                         const SocketAddress& address,
                                                         ListenerOptions options) {
  absl::StatusOr<UniqueFd> fd = listen_socket(address, options.listen);
  if (!fd.ok()) return fd.status();
  const int raw = fd->get();
  return std::unique_ptr<Listener>(new Listener(ctx, raw, std::move(*fd), options));
}

std::unique_ptr<Listener> Listener::share(NetContext& ctx, int listen_fd, ListenerOptions options) {
  return std::unique_ptr<Listener>(new Listener(ctx, listen_fd, UniqueFd(), options));
}

Listener::Listener(NetContext& ctx, int fd, UniqueFd owned, ListenerOptions options)
    : ctx_(ctx), fd_(fd), owned_(std::move(owned)), options_(options) {
  if (ctx_.fixed_files()) accepts_.emplace(FileRef(fd_));
  spare_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
}

// The accept stream goes first (it cancels its op; connections it still
// carries are closed), then the socket.
Listener::~Listener() { accepts_.reset(); }

bool Listener::table_has_room() noexcept {
  FixedFiles* files = ctx_.loop().fixed_files();
  if (files == nullptr) return true;
  // An armed multishot accept-direct can take the whole backlog at once, and
  // a connection that finds the table full is dropped by the kernel: arm it
  // only while the backlog fits.
  const size_t burst = static_cast<size_t>(std::max(options_.listen.backlog, 0)) + 1;
  return ctx_.live_streams() + options_.reserved_slots + burst <= files->size();
}

Task<absl::StatusOr<Stream>> Listener::accept() {
  std::chrono::milliseconds backoff = options_.min_backoff;
  uint32_t transient_in_a_row = 0;
  over_capacity_ = false;
  if (!spare_fd_) spare_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  for (;;) {
    absl::Status error;
    const bool direct = accepts_ && (accepts_->queued() > 0 || table_has_room());
    if (direct) {
      absl::StatusOr<uint32_t> slot = co_await accepts_->next();
      if (slot.ok()) {
        ++accepted_;
        Stream stream = Stream::adopt(ctx_, FileRef::fixed_index(*slot));
        // Disarm before the kernel accepts into a full table (it would
        // accept and drop the connection); connections accepted meanwhile
        // stay queued, and plain accepts take over until there is room.
        if (!table_has_room() && accepts_->queued() == 0) accepts_->disarm();
        co_return stream;
      }
      error = slot.status();
    } else {
      if (accepts_) accepts_->disarm();  // no-op unless armed
      absl::StatusOr<int> fd = co_await coring::accept(FileRef(fd_));
      if (fd.ok()) {
        ++accepted_;
        if (accepts_) ++plain_;
        co_return Stream::adopt(ctx_, FileRef(*fd));
      }
      error = fd.status();
      if (absl::IsResourceExhausted(error) && spare_fd_) {
        // Out of fds: give the spare up for this connection, so its peer is
        // told instead of waiting in the backlog.
        spare_fd_.reset();
        absl::StatusOr<int> spare = co_await coring::accept(FileRef(fd_));
        if (spare.ok()) {
          ++accepted_;
          ++spare_;
          over_capacity_ = true;
          co_return Stream::adopt(ctx_, FileRef(*spare));
        }
        error = spare.status();
      }
    }
    if (absl::IsCancelled(error)) co_return error;
    if (absl::IsResourceExhausted(error)) {
      ++backoffs_;
      transient_in_a_row = 0;
      absl::Status slept = co_await sleep_for(backoff);
      if (!slept.ok()) co_return slept;  // cancelled
      backoff = std::min(backoff * 2, options_.max_backoff);
      if (!spare_fd_) spare_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
      continue;
    }
    if (absl::IsAborted(error) || absl::IsUnavailable(error)) {
      ++transient_;
      if (++transient_in_a_row > 16) {  // never spin on a misbehaving socket
        absl::Status slept = co_await sleep_for(options_.min_backoff);
        if (!slept.ok()) co_return slept;
        transient_in_a_row = 0;
      }
      continue;
    }
    co_return error;
  }
}

}  // namespace coring::net
