#include "peers.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

#include "absl/strings/str_format.h"
#include "coring/codec/control.h"
#include "coring/codec/encoder.h"
#include "coring/codec/extensions.h"
#include "coring/codec/frame.h"

namespace coring::hostile {
namespace {

int ms_until(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::clamp<int64_t>(left.count(), 0, 60'000));
}

// poll() one fd for `events` until `deadline`: the revents, 0 on timeout.
short wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, ms_until(deadline));
    if (r > 0) return p.revents;
    if (r == 0 || errno != EINTR) return 0;
  }
}

absl::Status errno_status(const char* what, int err) {
  if (err == ECONNRESET || err == EPIPE) {
    return absl::UnavailableError(absl::StrFormat("%s: connection reset", what));
  }
  return absl::InternalError(absl::StrFormat("%s: %s", what, std::strerror(err)));
}

int open_socket(const ConnectOptions& options) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (options.rcvbuf > 0) {
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &options.rcvbuf, sizeof options.rcvbuf);
  }
  if (options.sndbuf > 0) {
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &options.sndbuf, sizeof options.sndbuf);
  }
  return fd;
}

sockaddr_in loopback(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

// The connect() of a non-blocking socket: 0 when done, EINPROGRESS, or an errno.
int start_connect(int fd, uint16_t port) {
  const sockaddr_in a = loopback(port);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0) return 0;
  return errno;
}

int socket_error(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  return err;
}

}  // namespace

// ---- Bytes on the wire ------------------------------------------------------

Bytes pattern(size_t n, uint64_t seed) {
  Bytes v(n);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& b : v) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b = static_cast<uint8_t>(x >> 32);
  }
  return v;
}

Bytes frame(uint16_t type, absl::Span<const uint8_t> payload, absl::Span<const uint8_t> ext,
            bool chk) {
  const sbmp::Frame f = sbmp::make_frame(type, payload, sbmp::Extensions(ext));
  const sbmp::EncodeOptions options{.chk = chk};
  absl::StatusOr<sbmp::Header> h = sbmp::frame_header(f, options);
  if (!h.ok()) return {};
  Bytes out(h->frame_size());
  if (!sbmp::encode_frame(f, options, absl::MakeSpan(out)).ok()) return {};
  return out;
}

Bytes header(uint8_t version, uint8_t flags, uint16_t type, uint32_t length, uint16_t ext_len) {
  Bytes out(sbmp::kHeaderSize);
  sbmp::encode_header(
      {.version = version, .flags = flags, .type = type, .length = length, .ext_len = ext_len},
      out.data());
  return out;
}

Bytes request_id_ext(uint64_t id) {
  sbmp::ExtensionBuilder b;
  b.set_request_id(id);
  return Bytes(b.bytes().begin(), b.bytes().end());
}

Bytes hello_payload(uint8_t min_version, uint8_t max_version, uint32_t features) {
  Bytes out(sbmp::kMaxHelloPayload);
  absl::StatusOr<size_t> n = sbmp::write_hello({.min_version = min_version,
                                                .max_version = max_version,
                                                .features = features,
                                                .agent = "hostile"},
                                               absl::MakeSpan(out));
  out.resize(n.ok() ? *n : 0);
  return out;
}

Bytes concat(std::initializer_list<absl::Span<const uint8_t>> parts) {
  Bytes out;
  for (auto p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

Bytes http_request() {
  const std::string_view s =
      "GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl/7.88.1\r\n"
      "Accept: */*\r\n\r\n";
  return Bytes(s.begin(), s.end());
}

Bytes tls_client_hello() {
  // A TLS 1.2/1.3 ClientHello record as a browser opens with (shortened).
  Bytes body = {0x01, 0x00, 0x00, 0x00,  // handshake: client_hello, length (patched)
                0x03, 0x03};             // legacy_version TLS 1.2
  Bytes random = pattern(32, 1303);
  body.insert(body.end(), random.begin(), random.end());
  body.push_back(0x00);                                     // session id: none
  for (uint8_t b : {0x00, 0x04, 0x13, 0x01, 0x13, 0x02}) {  // cipher suites
    body.push_back(b);
  }
  for (uint8_t b : {0x01, 0x00}) body.push_back(b);  // compression: null
  // extensions: supported_versions (TLS 1.3)
  for (uint8_t b : {0x00, 0x07, 0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04}) body.push_back(b);
  const size_t hs_len = body.size() - 4;
  body[1] = static_cast<uint8_t>(hs_len >> 16);
  body[2] = static_cast<uint8_t>(hs_len >> 8);
  body[3] = static_cast<uint8_t>(hs_len);
  Bytes record(5 + body.size());  // handshake record, TLS 1.0 on the record layer
  record[0] = 0x16;
  record[1] = 0x03;
  record[2] = 0x01;
  record[3] = static_cast<uint8_t>(body.size() >> 8);
  record[4] = static_cast<uint8_t>(body.size());
  std::copy(body.begin(), body.end(), record.begin() + 5);
  return record;
}

Bytes random_garbage(size_t n, uint64_t seed) {
  Bytes v = pattern(n, seed);
  if (!v.empty() && v[0] == 'S') v[0] = 'X';
  return v;
}

// ---- Sockets ----------------------------------------------------------------

Socket& Socket::operator=(Socket&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

absl::StatusOr<Socket> Socket::connect(uint16_t port, const ConnectOptions& options) {
  Socket s(open_socket(options));
  if (!s.valid()) return errno_status("socket", errno);
  const int rc = start_connect(s.fd(), port);
  if (rc == 0) return s;
  if (rc != EINPROGRESS) return errno_status("connect", rc);
  if (wait_for(s.fd(), POLLOUT, Clock::now() + options.timeout) == 0) {
    return absl::DeadlineExceededError(absl::StrFormat("connect to port %u: no handshake in %d ms",
                                                       port,
                                                       static_cast<int>(options.timeout.count())));
  }
  if (const int err = socket_error(s.fd()); err != 0) return errno_status("connect", err);
  return s;
}

absl::Status Socket::send_all(absl::Span<const uint8_t> bytes, Clock::time_point deadline) {
  while (!bytes.empty()) {
    absl::StatusOr<size_t> n = send_now(bytes);
    if (!n.ok()) return n.status();
    bytes.remove_prefix(*n);
    if (bytes.empty()) break;
    if (*n == 0 && wait_for(fd_, POLLOUT, deadline) == 0) {
      return absl::DeadlineExceededError(absl::StrFormat(
          "send: %u bytes not taken in time (the server stopped reading)", bytes.size()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> Socket::send_now(absl::Span<const uint8_t> bytes) {
  for (;;) {
    const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    return errno_status("send", errno);
  }
}

absl::StatusOr<size_t> Socket::recv_some(absl::Span<uint8_t> out, Clock::time_point deadline) {
  for (;;) {
    const ssize_t n = ::recv(fd_, out.data(), out.size(), MSG_DONTWAIT);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return errno_status("recv", errno);
    if (wait_for(fd_, POLLIN, deadline) == 0) {
      return absl::DeadlineExceededError("nothing from the server in time");
    }
  }
}

bool Socket::peer_gone() const {
  pollfd p{fd_, POLLRDHUP, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

size_t Socket::unread() const {
  int n = 0;
  return ::ioctl(fd_, FIONREAD, &n) == 0 && n > 0 ? static_cast<size_t>(n) : 0;
}

void Socket::reset() {
  if (fd_ < 0) return;
  const linger l{1, 0};
  ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close();
}

void Socket::close() {
  if (fd_ >= 0) ::close(std::exchange(fd_, -1));
}

// ---- An SBMP peer -----------------------------------------------------------

std::optional<uint32_t> goaway_code(const ReceivedFrame& f, std::string* reason) {
  if (f.type() != sbmp::kTypeGoaway) return std::nullopt;
  absl::StatusOr<sbmp::GoAway> g =
      sbmp::parse_goaway(sbmp::make_frame(f.type(), f.payload, sbmp::Extensions(f.ext)));
  if (!g.ok()) return std::nullopt;
  if (reason != nullptr) *reason = std::string(g->reason);
  return g->code;
}

std::string Ending::to_string() const {
  const double ms = std::chrono::duration<double, std::milli>(elapsed).count();
  switch (kind) {
    case Kind::kGoaway:
      return absl::StrFormat("GOAWAY(%s) '%s' after %.0f ms, %s, %u frames before",
                             sbmp::error_code_name(static_cast<sbmp::ErrorCode>(code)), reason, ms,
                             closed_after ? "then closed" : "NOT closed after", frames_before);
    case Kind::kEof:
      return absl::StrFormat("EOF without GOAWAY after %.0f ms, %u frames before", ms,
                             frames_before);
    case Kind::kReset:
      return absl::StrFormat("reset without GOAWAY after %.0f ms, %u frames before", ms,
                             frames_before);
    case Kind::kSilence:
      return absl::StrFormat("silence for %.0f ms (%u frames before)", ms, frames_before);
    case Kind::kError:
      return absl::StrFormat("error after %.0f ms: %s", ms, error);
  }
  return "?";
}

Peer::Peer(Socket socket)
    : socket_(std::move(socket)),
      decoder_(std::make_unique<sbmp::Decoder>(sbmp::DecoderOptions{.max_frame = UINT32_MAX})) {}

absl::StatusOr<Peer> Peer::connect(uint16_t port, const ConnectOptions& options) {
  absl::StatusOr<Socket> s = Socket::connect(port, options);
  if (!s.ok()) return s.status();
  return Peer(std::move(*s));
}

absl::Status Peer::send(absl::Span<const uint8_t> bytes, Clock::duration timeout) {
  return socket_.send_all(bytes, Clock::now() + timeout);
}

absl::StatusOr<ReceivedFrame> Peer::read_frame(Clock::time_point deadline) {
  for (;;) {
    absl::Span<const uint8_t> in(pending_.data() + pos_, pending_.size() - pos_);
    absl::StatusOr<std::optional<sbmp::Frame>> next = decoder_->next(in);
    pos_ = pending_.size() - in.size();
    if (!next.ok()) return next.status();
    if (next->has_value()) {
      const sbmp::Frame& f = **next;
      return ReceivedFrame{f.header,
                           Bytes(f.extensions.bytes().begin(), f.extensions.bytes().end()),
                           Bytes(f.payload.begin(), f.payload.end())};
    }
    pending_.clear();  // all consumed (a split frame is kept by the decoder)
    pos_ = 0;
    uint8_t buf[64 * 1024];
    absl::StatusOr<size_t> n = socket_.recv_some(absl::MakeSpan(buf), deadline);
    if (!n.ok()) return n.status();
    if (*n == 0) return absl::NotFoundError("EOF");
    pending_.assign(buf, buf + *n);
  }
}

absl::Status Peer::echo(uint16_t type, absl::Span<const uint8_t> payload,
                        absl::Span<const uint8_t> ext, Clock::duration timeout) {
  const auto deadline = Clock::now() + timeout;
  if (absl::Status s = socket_.send_all(frame(type, payload, ext), deadline); !s.ok()) return s;
  absl::StatusOr<ReceivedFrame> f = read_frame(deadline);
  if (!f.ok()) return f.status();
  if (f->type() != type || !std::equal(f->ext.begin(), f->ext.end(), ext.begin(), ext.end()) ||
      !std::equal(f->payload.begin(), f->payload.end(), payload.begin(), payload.end())) {
    return absl::DataLossError(absl::StrFormat(
        "echo differs: type 0x%04x (sent 0x%04x), %u ext bytes (sent %u), %u payload bytes "
        "(sent %u)",
        f->type(), type, f->ext.size(), ext.size(), f->payload.size(), payload.size()));
  }
  return absl::OkStatus();
}

Ending Peer::read_ending(Clock::duration timeout, Clock::duration close_grace) {
  const auto start = Clock::now();
  const auto deadline = start + timeout;
  Ending e;
  for (;;) {
    absl::StatusOr<ReceivedFrame> f = read_frame(deadline);
    e.elapsed = Clock::now() - start;
    if (!f.ok()) {
      if (absl::IsNotFound(f.status())) {
        e.kind = Ending::Kind::kEof;
      } else if (absl::IsUnavailable(f.status())) {
        e.kind = Ending::Kind::kReset;
      } else if (absl::IsDeadlineExceeded(f.status())) {
        e.kind = Ending::Kind::kSilence;
      } else {
        e.kind = Ending::Kind::kError;
        e.error = f.status().ToString();
      }
      return e;
    }
    if (f->type() != sbmp::kTypeGoaway) {
      ++e.frames_before;
      continue;
    }
    std::optional<uint32_t> code = goaway_code(*f, &e.reason);
    if (!code) {
      e.kind = Ending::Kind::kError;
      e.error = "malformed GOAWAY";
      return e;
    }
    e.kind = Ending::Kind::kGoaway;
    e.code = *code;
    // Then the close: EOF or reset, and no more bytes.
    uint8_t buf[4096];
    const auto close_deadline = Clock::now() + close_grace;
    for (;;) {
      absl::StatusOr<size_t> n = socket_.recv_some(absl::MakeSpan(buf), close_deadline);
      if (n.ok() && *n == 0) {
        e.closed_after = pos_ == pending_.size() && !decoder_->mid_frame();
        break;
      }
      if (!n.ok()) {
        e.closed_after = absl::IsUnavailable(n.status());
        break;
      }
      pending_.insert(pending_.end(), buf, buf + *n);  // bytes after the GOAWAY: not closed
    }
    return e;
  }
}

std::vector<Socket> connect_many(uint16_t port, size_t n, const ConnectOptions& options,
                                 absl::Status* error, size_t batch) {
  std::vector<Socket> out;
  out.reserve(n);
  while (out.size() < n) {
    const size_t k = std::min(batch, n - out.size());
    std::vector<Socket> pending;
    std::vector<pollfd> fds;
    for (size_t i = 0; i < k; ++i) {
      Socket s(open_socket(options));
      if (!s.valid()) {
        *error = errno_status("socket", errno);
        return out;
      }
      const int rc = start_connect(s.fd(), port);
      if (rc != 0 && rc != EINPROGRESS) {
        *error = errno_status("connect", rc);
        return out;
      }
      fds.push_back({s.fd(), POLLOUT, 0});
      pending.push_back(std::move(s));
    }
    const auto deadline = Clock::now() + options.timeout;
    size_t waiting = pending.size();
    while (waiting > 0) {
      const int r = ::poll(fds.data(), fds.size(), ms_until(deadline));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        *error = absl::DeadlineExceededError(absl::StrFormat(
            "connect: %u of %u handshakes unfinished after %d ms (%u connected before)", waiting,
            pending.size(), static_cast<int>(options.timeout.count()), out.size()));
        for (size_t i = 0; i < pending.size(); ++i) {
          if (fds[i].fd < 0) out.push_back(std::move(pending[i]));
        }
        return out;
      }
      for (auto& p : fds) {
        if (p.fd >= 0 && p.revents != 0) {
          if (const int err = socket_error(p.fd); err != 0) {
            *error = errno_status("connect", err);
            return out;
          }
          p.fd = -p.fd - 1;  // done: poll() skips negative fds
          --waiting;
        }
      }
    }
    for (auto& s : pending) out.push_back(std::move(s));
  }
  *error = absl::OkStatus();
  return out;
}

}  // namespace coring::hostile
