// libFuzzer target, end to end: the input is what a peer sends to the
// sbmp_echo_server handler - FramedStream<sbmp::Codec> on a real EventLoop,
// over a socketpair - cut into writes of sizes picked from the input, with
// the server's answers read as they come and the peer's side shut down at the
// end. Besides "no crash, no hang, no leak, no sanitizer report", it checks
// what the peer got against the codec alone decoding the same bytes:
//  * the answers decode cleanly as SBMP (no error, no partial frame);
//  * the application frames echoed are the ones the codec decodes - type,
//    extension block and payload, in order - all of them unless the server
//    gave up with GOAWAY(OVERLOADED) (PONGs it could not send), a prefix then;
//  * at most one GOAWAY, and nothing after it; when the codec fails on the
//    input, the GOAWAY carries its code (or OVERLOADED, which may come first);
//  * the handler ends and the connection closes in bounded time.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "coring/codec/codec.h"
#include "coring/codec/control.h"
#include "coring/codec/decoder.h"
#include "coring/codec/error.h"
#include "coring/core/event_loop.h"
#include "coring/core/spawn.h"
#include "coring/net/framed_stream.h"
#include "coring/net/net_context.h"
#include "coring/net/stream.h"

namespace {

using coring::sbmp::Codec;
using Conn = coring::net::FramedStream<Codec>;
using Bytes = std::vector<uint8_t>;

void check(bool ok) {
  if (!ok) std::abort();
}

// One loop and NetContext for the whole run (creating a ring per input would
// measure io_uring_setup, not the code under test).
struct Env {
  Env() {
    auto l = coring::EventLoop::create({});
    check(l.ok());
    loop = std::move(*l);
    auto n = coring::net::NetContext::create(*loop, {});
    check(n.ok());
    net = std::move(*n);
  }
  std::unique_ptr<coring::EventLoop> loop;
  std::unique_ptr<coring::net::NetContext> net;
};

Env& env() {
  static Env* e = new Env();  // never destroyed: streams of a crashing input may still hold it
  return *e;
}

// The sbmp_echo_server handler; *done once it returned.
coring::Task<> echo(Conn conn, bool* done) {
  struct Done {
    bool* flag;
    ~Done() { *flag = true; }
  } guard{done};
  for (;;) {
    auto frame = co_await conn.read_frame();
    if (!frame.ok()) co_return;  // already closed
    if (!(co_await conn.write_frame(*frame)).ok()) break;
  }
  (void)co_await conn.close();
}

struct AppFrame {
  uint16_t type;
  Bytes ext;
  Bytes payload;
  bool operator==(const AppFrame&) const = default;
};

// What the codec alone makes of the input: the application frames the
// handler echoes and, when the connection ends with a GOAWAY of this side,
// its code. Fed one byte at a time with its output taken at once, so that
// PONGs never pile up (the server's may: then GOAWAY(OVERLOADED)).
struct Reference {
  std::vector<AppFrame> frames;
  std::optional<uint32_t> goaway;
};

Reference reference(const uint8_t* data, size_t size) {
  Reference r;
  Codec codec;
  Codec::Encoded encoded;
  for (size_t i = 0; i < size; ++i) {
    absl::Span<const uint8_t> in(data + i, 1);
    for (;;) {
      absl::StatusOr<std::optional<coring::sbmp::Frame>> f = codec.decode(in);
      codec.consume_output(codec.pending_output().size());
      if (!f.ok()) {
        std::optional<coring::sbmp::FrameError> e = coring::sbmp::frame_error(f.status());
        if (e && !e->remote) r.goaway = static_cast<uint32_t>(e->code);
        return r;
      }
      if (!f->has_value()) break;
      const coring::sbmp::Frame& fr = **f;
      if (!codec.encode(fr, encoded).ok()) {
        // The echo cannot be sent (over the peer's max_frame): the handler
        // closes, GOAWAY(NO_ERROR).
        r.goaway = static_cast<uint32_t>(coring::sbmp::ErrorCode::kNoError);
        return r;
      }
      r.frames.push_back({fr.type(),
                          Bytes(fr.extensions.bytes().begin(), fr.extensions.bytes().end()),
                          Bytes(fr.payload.begin(), fr.payload.end())});
    }
  }
  return r;
}

// Write sizes: a small generator seeded by the input, 1 byte to 4 KiB.
class Splits {
 public:
  Splits(const uint8_t* data, size_t size) : x_(size * 2654435761u + (size ? data[0] : 0) + 1) {}
  size_t next() {
    x_ = x_ * 6364136223846793005ull + 1442695040888963407ull;
    const unsigned pick = static_cast<unsigned>(x_ >> 60);
    return pick < 4 ? 1 + (x_ >> 40) % 16 : 1 + (x_ >> 40) % 4096;
  }

 private:
  uint64_t x_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Env& e = env();
  int sv[2];
  check(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  const int peer = sv[1];
  check(::fcntl(peer, F_SETFL, O_NONBLOCK) == 0);
  bool done = false;
  coring::spawn(
      *e.loop,
      echo(Conn(coring::net::Stream::adopt(*e.net, coring::FileRef(sv[0])), Codec()), &done));

  // Peer: write the input in pieces, then shut down; read everything back.
  Splits splits(data, size);
  size_t sent = 0;
  bool shut = false, eof = false;
  Bytes out;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!(done && eof && e.net->live_streams() == 0)) {
    check(std::chrono::steady_clock::now() < deadline);  // a hang
    if (sent < size) {
      const size_t n = std::min(splits.next(), size - sent);
      const ssize_t w = ::send(peer, data + sent, n, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (w > 0) {
        sent += static_cast<size_t>(w);
      } else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        sent = size;  // the server closed: nothing more goes through
      }
    } else if (!shut) {
      ::shutdown(peer, SHUT_WR);
      shut = true;
    }
    e.loop->run_once(false);
    uint8_t buf[64 * 1024];
    const ssize_t r = ::recv(peer, buf, sizeof buf, MSG_DONTWAIT);
    if (r > 0) {
      out.insert(out.end(), buf, buf + r);
    } else if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
      eof = true;
    }
  }
  ::close(peer);

  // What the peer got.
  coring::sbmp::Decoder decoder({.max_frame = UINT32_MAX});
  absl::Span<const uint8_t> in(out);
  std::vector<AppFrame> echoed;
  std::optional<uint32_t> goaway;
  for (;;) {
    absl::StatusOr<std::optional<coring::sbmp::Frame>> f = decoder.next(in);
    check(f.ok());
    if (!f->has_value()) break;
    const coring::sbmp::Frame& fr = **f;
    check(!goaway.has_value());  // nothing after a GOAWAY
    if (fr.type() == coring::sbmp::kTypeGoaway) {
      absl::StatusOr<coring::sbmp::GoAway> g = coring::sbmp::parse_goaway(fr);
      check(g.ok());
      goaway = g->code;
    } else if (!coring::sbmp::is_control_type(fr.type())) {
      echoed.push_back({fr.type(),
                        Bytes(fr.extensions.bytes().begin(), fr.extensions.bytes().end()),
                        Bytes(fr.payload.begin(), fr.payload.end())});
    }
  }
  check(!decoder.mid_frame());

  const Reference want = reference(data, size);
  const uint32_t overloaded = static_cast<uint32_t>(coring::sbmp::ErrorCode::kOverloaded);
  if (goaway == overloaded && want.goaway != overloaded) {
    check(echoed.size() <= want.frames.size());
    check(std::equal(echoed.begin(), echoed.end(), want.frames.begin()));
  } else {
    check(echoed == want.frames);
    check(goaway == want.goaway);
  }
  return 0;
}
