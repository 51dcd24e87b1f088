// Attackers and a victim for the hostile suite (tests/hostile/): plain
// loopback sockets driven with poll(), SBMP bytes from the codec's encoder or
// by hand, and no GoogleTest, so that hostile_soak uses the same pieces.
//
//   Victim victim({.port = port});                  // echoes on its own thread
//   Flooder flood({.port = port, .peers = 8});      // sends, never reads
//   ...
//   VictimReport r = victim.stop();                 // frames, bytes, p50/p99, errors
//   Ending e = peer.read_ending(3s);                // GOAWAY(code) and close, EOF, reset, silence
//
// Every wait has a deadline; every socket is non-blocking underneath.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "coring/codec/decoder.h"
#include "coring/codec/error.h"
#include "coring/codec/header.h"

namespace coring::hostile {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Bytes = std::vector<uint8_t>;

// ---- Bytes on the wire ------------------------------------------------------

// Deterministic pseudo-random bytes.
Bytes pattern(size_t n, uint64_t seed);
// A well-formed SBMP/1.3 frame (any type, control included) from the encoder.
Bytes frame(uint16_t type, absl::Span<const uint8_t> payload, absl::Span<const uint8_t> ext = {},
            bool chk = false);
// A 16-byte header with exactly these fields and a correct hcrc: for frames
// the encoder refuses to make (huge lengths, reserved flags, other versions).
Bytes header(uint8_t version, uint8_t flags, uint16_t type, uint32_t length, uint16_t ext_len);
Bytes request_id_ext(uint64_t id);
Bytes hello_payload(uint8_t min_version, uint8_t max_version, uint32_t features = 0);
Bytes concat(std::initializer_list<absl::Span<const uint8_t>> parts);
// Protocols that are not SBMP, as a confused or scanning client sends them.
Bytes http_request();
Bytes tls_client_hello();
// Random bytes that cannot begin "SBMP".
Bytes random_garbage(size_t n, uint64_t seed);

// ---- Sockets ----------------------------------------------------------------

struct ConnectOptions {
  std::chrono::milliseconds timeout{2000};
  // SO_RCVBUF / SO_SNDBUF set before connecting (0: the kernel's). A small
  // receive buffer makes a peer that never reads push back at once.
  int rcvbuf = 0;
  int sndbuf = 0;
};

// A non-blocking TCP socket to 127.0.0.1; every wait is bounded.
class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) : fd_(fd) {}
  Socket(Socket&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Socket& operator=(Socket&& other) noexcept;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  ~Socket() { close(); }

  // DeadlineExceeded when the handshake does not finish in time (a listener
  // that stopped accepting with a full backlog drops the SYN).
  static absl::StatusOr<Socket> connect(uint16_t port, const ConnectOptions& options = {});

  int fd() const { return fd_; }
  bool valid() const { return fd_ >= 0; }

  absl::Status send_all(absl::Span<const uint8_t> bytes, Clock::time_point deadline);
  // What the kernel takes now without waiting (0: the send buffer is full).
  absl::StatusOr<size_t> send_now(absl::Span<const uint8_t> bytes);
  // Bytes received (0: EOF) by `deadline`. Unavailable on a reset,
  // DeadlineExceeded when nothing came.
  absl::StatusOr<size_t> recv_some(absl::Span<uint8_t> out, Clock::time_point deadline);
  // True when the server closed or reset the connection (seen without reading).
  bool peer_gone() const;
  // Bytes received and not read yet.
  size_t unread() const;
  // SO_LINGER {1, 0} and close: the server sees a reset.
  void reset();
  void close();

 private:
  int fd_ = -1;
};

// ---- An SBMP peer -----------------------------------------------------------

struct ReceivedFrame {
  sbmp::Header header;
  Bytes ext;
  Bytes payload;
  uint16_t type() const { return header.type; }
};

// The code of a GOAWAY frame; nullopt for another type or a malformed GOAWAY.
std::optional<uint32_t> goaway_code(const ReceivedFrame& f, std::string* reason = nullptr);

// How the server ended a connection, as the peer saw it.
struct Ending {
  enum class Kind { kGoaway, kEof, kReset, kSilence, kError };
  Kind kind = Kind::kSilence;
  uint32_t code = 0;  // of the GOAWAY
  std::string reason;
  bool closed_after = false;   // an EOF or reset followed the GOAWAY in time
  Clock::duration elapsed{};   // until the GOAWAY (or the close)
  uint64_t frames_before = 0;  // frames read (and skipped) before it
  std::string error;           // kError: what went wrong

  bool goaway_and_close(sbmp::ErrorCode c) const {
    return kind == Kind::kGoaway && code == static_cast<uint32_t>(c) && closed_after;
  }
  // GOAWAY(any code) and close, EOF or reset: anything but silence or garbage.
  bool closed() const {
    return (kind == Kind::kGoaway && closed_after) || kind == Kind::kEof || kind == Kind::kReset;
  }
  std::string to_string() const;
};

class Peer {
 public:
  explicit Peer(Socket socket);
  static absl::StatusOr<Peer> connect(uint16_t port, const ConnectOptions& options = {});

  Socket& socket() { return socket_; }

  absl::Status send(absl::Span<const uint8_t> bytes, Clock::duration timeout = 5s);
  // The next frame (control frames included), checked by the decoder.
  // NotFound on EOF, Unavailable on a reset, DeadlineExceeded on timeout.
  absl::StatusOr<ReceivedFrame> read_frame(Clock::time_point deadline);
  // Sends a frame and checks its echo: type, extension block and payload,
  // byte for byte.
  absl::Status echo(uint16_t type, absl::Span<const uint8_t> payload,
                    absl::Span<const uint8_t> ext = {}, Clock::duration timeout = 2s);
  // Reads until the server ends the connection or `timeout` passes; frames
  // before a GOAWAY are skipped (counted). After a GOAWAY, waits up to
  // `close_grace` for the close.
  Ending read_ending(Clock::duration timeout, Clock::duration close_grace = 3s);

 private:
  Socket socket_;
  std::unique_ptr<sbmp::Decoder> decoder_;
  Bytes pending_;
  size_t pos_ = 0;
};

// ---- The victim -------------------------------------------------------------

struct VictimOptions {
  uint16_t port = 0;
  // Raw bytes for echo_server instead of SBMP frames.
  bool raw = false;
  size_t min_payload = 1;
  size_t max_payload = 4096;
  // An echo later than this is an error (and ends the victim).
  std::chrono::milliseconds echo_timeout{2000};
  // Between two frames.
  std::chrono::microseconds pause{500};
  uint64_t seed = 1;
  // Stop after this many frames (0: until stop()).
  uint64_t max_frames = 0;
};

struct VictimReport {
  uint64_t frames = 0;          // echoes verified
  uint64_t bytes_verified = 0;  // payload bytes compared
  uint64_t errors = 0;
  std::string first_error;
  std::vector<uint32_t> latencies_us;  // per echo, send to last byte back

  double percentile_ms(double p) const;
  double p50_ms() const { return percentile_ms(50); }
  double p99_ms() const { return percentile_ms(99); }
  double max_ms() const { return percentile_ms(100); }
  std::string to_string() const;
};

// A well-behaved client on its own thread: one connection, one frame at a
// time (REQUEST_ID = sequence number, payload of random size), each echo
// verified byte for byte and timed. The first error ends it.
class Victim {
 public:
  explicit Victim(VictimOptions options);
  ~Victim();
  Victim(const Victim&) = delete;
  Victim& operator=(const Victim&) = delete;

  uint64_t frames() const { return frames_.load(); }
  bool failed() const { return failed_.load(); }
  // Waits until `n` echoes were verified (false on failure or timeout).
  bool wait_for_frames(uint64_t n, Clock::duration timeout) const;
  VictimReport stop();

 private:
  void run();

  VictimOptions options_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> failed_{false};
  std::atomic<uint64_t> frames_{0};
  VictimReport report_;
  std::thread thread_;
};

// `count` echoes on a fresh connection, synchronously.
VictimReport echo_round(VictimOptions options, uint64_t count);

// ---- Attackers ----------------------------------------------------------------

// Peers that send frames (raw: bytes) as fast as the server takes them and
// never read, each with a small receive buffer, pushed by a thread until
// stop(). The sockets stay open (unread) until the Flooder is destroyed.
// Each peer opens with one large frame (the server's echo of it cannot be
// delivered, so its writer waits), then sends small frames, one per send():
// many small segments, each costing the server a receive buffer of its own
// if it keeps receiving for a connection that is not consuming.
class Flooder {
 public:
  struct Options {
    uint16_t port = 0;
    size_t peers = 1;
    size_t opening = 4 << 20;  // payload of the first frame (0: none)
    size_t payload = 100;      // of every later frame
    size_t frames_per_send = 1;
    bool raw = false;
    int rcvbuf = 4096;
  };
  explicit Flooder(Options options);
  ~Flooder();
  Flooder(const Flooder&) = delete;
  Flooder& operator=(const Flooder&) = delete;

  size_t connected() const { return connected_.load(); }
  uint64_t bytes_sent() const { return bytes_sent_.load(); }
  // Stops pushing; the sockets stay open and unread.
  void stop();
  // After stop(): the sockets, for the caller to read or reset.
  std::vector<Socket>& sockets() { return sockets_; }

 private:
  void run();

  Options options_;
  std::vector<Socket> sockets_;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> connected_{0};
  std::atomic<uint64_t> bytes_sent_{0};
  std::thread thread_;
};

// Pushes a byte stream into each socket - `prefix` then `fill` bytes of a
// pattern - without reading, until every stream is sent, has made no progress
// for `stall`, was closed by the server, or `deadline` passes; `keep_going`
// (called every ~50 ms) can end it early.
struct PushStream {
  Socket* socket = nullptr;
  const Bytes* prefix = nullptr;
  uint64_t fill = 0;
  // Out:
  uint64_t sent = 0;
  bool done = false;
  bool stalled = false;
  bool closed = false;
};
struct PushResult {
  uint64_t bytes = 0;
  size_t done = 0;
  size_t stalled = 0;
  size_t closed = 0;
  bool stopped_early = false;
};
PushResult push_streams(std::vector<PushStream>& streams, Clock::duration stall,
                        Clock::time_point deadline,
                        const std::function<bool()>& keep_going = nullptr);

// Opens `n` connections, `batch` handshakes at a time; stops at the first
// failure (its status in *error). Returns those that connected.
std::vector<Socket> connect_many(uint16_t port, size_t n, const ConnectOptions& options,
                                 absl::Status* error, size_t batch = 256);

}  // namespace coring::hostile
