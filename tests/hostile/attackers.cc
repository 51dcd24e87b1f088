// The attackers of the hostile suite (peers.h) that push bytes: Flooder
// and push_streams().
#include <poll.h>

#include <algorithm>

#include "peers.h"

namespace coring::hostile {

Flooder::Flooder(Options options) : options_(options) {
  for (size_t i = 0; i < options_.peers; ++i) {
    absl::StatusOr<Socket> s = Socket::connect(options_.port, {.rcvbuf = options_.rcvbuf});
    if (!s.ok()) break;
    sockets_.push_back(std::move(*s));
  }
  connected_ = sockets_.size();
  thread_ = std::thread([this] { run(); });
}

Flooder::~Flooder() { stop(); }

void Flooder::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void Flooder::run() {
  // First one large frame, whose echo the server cannot deliver (its writer
  // then waits); then small frames back to back, each socket walking through
  // `wire`, one send() of up to frames_per_send frames at a time.
  const Bytes big = pattern(options_.opening, 76);
  const Bytes opening = options_.raw || big.empty() ? big : frame(0x0100, big);
  const Bytes payload = pattern(options_.payload, 77);
  const Bytes one = options_.raw ? payload : frame(0x0100, payload);
  const size_t per_send = one.size() * std::clamp<size_t>(options_.frames_per_send, 1, 16);
  Bytes wire;
  for (int i = 0; i < 16; ++i) wire.insert(wire.end(), one.begin(), one.end());
  std::vector<size_t> opened(sockets_.size(), 0);  // bytes of `opening` sent
  std::vector<size_t> offset(sockets_.size(), 0);  // in `wire`
  std::vector<pollfd> fds(sockets_.size());
  while (!stop_.load()) {
    bool any = false;
    for (size_t i = 0; i < sockets_.size(); ++i) {
      if (!sockets_[i].valid()) continue;
      const bool opening_phase = opened[i] < opening.size();
      absl::Span<const uint8_t> rest = opening_phase
                                           ? absl::MakeConstSpan(opening).subspan(opened[i])
                                           : absl::MakeConstSpan(wire).subspan(offset[i], per_send);
      absl::StatusOr<size_t> n = sockets_[i].send_now(rest);
      if (!n.ok()) {
        sockets_[i].close();  // the server closed it
        continue;
      }
      any = any || *n > 0;
      bytes_sent_ += *n;
      if (opening_phase) {
        opened[i] += *n;
      } else {
        offset[i] = (offset[i] + *n) % wire.size();
      }
    }
    if (!any) {
      for (size_t i = 0; i < sockets_.size(); ++i) fds[i] = {sockets_[i].fd(), POLLOUT, 0};
      ::poll(fds.data(), fds.size(), 20);
    }
  }
}

PushResult push_streams(std::vector<PushStream>& streams, Clock::duration stall,
                        Clock::time_point deadline, const std::function<bool()>& keep_going) {
  static const Bytes filler = pattern(1 << 20, 4242);
  PushResult r;
  std::vector<Clock::time_point> progress(streams.size(), Clock::now());
  std::vector<pollfd> fds;
  auto next_check = Clock::now() + 50ms;
  for (;;) {
    const auto now = Clock::now();
    if (now >= deadline) break;
    if (keep_going && now >= next_check) {
      next_check = now + 50ms;
      if (!keep_going()) {
        r.stopped_early = true;
        break;
      }
    }
    fds.clear();
    bool active = false;
    for (size_t i = 0; i < streams.size(); ++i) {
      PushStream& p = streams[i];
      if (p.done || p.stalled || p.closed) continue;
      const uint64_t prefix = p.prefix != nullptr ? p.prefix->size() : 0;
      const uint64_t total = prefix + p.fill;
      // Up to 1 MiB at a time: what is left of the prefix, or of the filler.
      absl::Span<const uint8_t> chunk;
      if (p.sent < prefix) {
        chunk = absl::MakeConstSpan(*p.prefix).subspan(p.sent);
      } else {
        chunk = absl::MakeConstSpan(filler).subspan(
            0, std::min<uint64_t>(filler.size(), total - p.sent));
      }
      absl::StatusOr<size_t> n = chunk.empty() ? 0 : p.socket->send_now(chunk);
      if (!n.ok()) {
        p.closed = true;
        ++r.closed;
        continue;
      }
      p.sent += *n;
      r.bytes += *n;
      if (p.sent == total) {
        p.done = true;
        ++r.done;
        continue;
      }
      if (*n > 0) {
        progress[i] = now;
      } else if (now - progress[i] >= stall) {
        p.stalled = true;
        ++r.stalled;
        continue;
      }
      active = true;
      fds.push_back({p.socket->fd(), POLLOUT, 0});
    }
    if (!active) break;
    ::poll(fds.data(), fds.size(), 10);
  }
  return r;
}

}  // namespace coring::hostile
