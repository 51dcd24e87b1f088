// Server: a listener and accept loop on every event-loop thread, and a
// handler coroutine per connection, which takes its stream by value.
//
//   coring::Runtime rt({.threads = 4});
//   coring::net::Server server(rt, {.port = 7000, .idle_timeout = 30s});
//   absl::Status s = server.serve<coring::sbmp::Codec>(handler);  // Task<>(FramedStream<Codec>)
//   if (!s.ok()) { ... }                      // bind errors, bad options
//   return server.run_until_signal();          // SIGINT/SIGTERM: graceful shutdown, then 0
//   // or, the same through the Runtime (the server registers a shutdown hook):
//   return rt.run_until_signal();
//
// serve(handler) does the same for raw byte streams (Task<>(Stream)).
//
// * TCP: every loop binds its own socket to the port (SO_REUSEPORT); port 0
//   is resolved once, so all loops share the port address() reports. Unix
//   (`unix_path`): one socket, accepted on by every loop.
// * Connection limit (`max_connections`, whole server; and RLIMIT_NOFILE,
//   see Listener): a connection over it is accepted and closed at once; a
//   framed one first gets the codec's goodbye for ResourceExhausted (SBMP:
//   GOAWAY(OVERLOADED)).
// * Timeouts, on by default: a connection whose peer sent nothing for
//   `idle_timeout` (60 s), or whose frame started arriving more than
//   `frame_timeout` (30 s) ago and is still incomplete, is interrupted with
//   DeadlineExceeded (framed: codec goodbye, SBMP GOAWAY(IDLE_TIMEOUT), then
//   close); if it is still there after twice that time (its handler stuck
//   writing to a peer that does not read) it is aborted.
// * Graceful shutdown (begin_shutdown(), shutdown(), run_until_signal()):
//   stop accepting; every connection is interrupted with Unavailable once the
//   frames it already received are read (framed: codec goodbye, SBMP
//   GOAWAY(SHUTDOWN)); handlers finish what they are doing; after
//   `shutdown_deadline` the remaining connections are aborted.
//
// The Server must outlive the loops' use of it: shut it down (or stop the
// Runtime) before destroying it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "coring/core/event_loop.h"
#include "coring/core/runtime.h"
#include "coring/core/task.h"
#include "coring/net/frame_codec.h"
#include "coring/net/framed_stream.h"
#include "coring/net/listener.h"
#include "coring/net/net_context.h"
#include "coring/net/socket_address.h"
#include "coring/net/stream.h"
#include "coring/net/unique_fd.h"

namespace coring::net {

struct ServerOptions {
  uint16_t port = 0;
  std::string host = "0.0.0.0";  // numeric IPv4/IPv6 or "localhost"
  std::string unix_path = {};    // when set: a Unix-domain server instead of TCP
  ListenerOptions listener = {};
  NetOptions net = {};
  FramedOptions framed = {};
  size_t max_connections = 0;  // 0: no limit but RLIMIT_NOFILE (see Listener)
  // A connection whose peer sent nothing for this long is closed (framed:
  // codec goodbye, SBMP GOAWAY(IDLE_TIMEOUT)). 0: never.
  std::chrono::milliseconds idle_timeout{60'000};
  // Framed connections: a frame that has started to arrive must arrive in
  // full within this (a peer trickling a byte at a time does not keep it
  // alive); else the same goodbye as idle. 0: no limit.
  std::chrono::milliseconds frame_timeout{30'000};
  std::chrono::milliseconds shutdown_deadline{5000};
};

// Whole-server counters (any thread).
struct ServerStats {
  uint64_t accepted = 0;
  uint64_t rejected = 0;  // over max_connections
  uint64_t active = 0;
  uint64_t idle_closed = 0;
  uint64_t frame_timeouts = 0;
  uint64_t aborted_at_shutdown = 0;
  std::string to_string() const;
};

class Server {
 public:
  using Handler = std::function<Task<>(Stream)>;

  Server(Runtime& runtime, ServerOptions options);
  // Loops run elsewhere (each by its own thread), e.g. a test's loop.
  Server(std::vector<EventLoop*> loops, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Raw byte streams. Binds now (errors are returned), then starts a listener
  // on every loop (posted: it starts when the loop runs). On a Runtime it
  // also waits until every loop has set up its receive ring, and returns a
  // loop's error (bad NetOptions, no memory) instead of a server that
  // accepts and never answers. Once only.
  absl::Status serve(Handler handler);

  // Frames: `handler` gets FramedStream<C>(stream, make_codec()).
  template <FrameCodec C, class H>
  absl::Status serve(
      H handler, std::function<C()> make_codec = [] { return C(); });

  // The bound address (the port resolved when 0 was asked for).
  const SocketAddress& address() const { return *address_; }

  // Graceful shutdown; any thread, idempotent. finished() once every loop is done.
  void begin_shutdown();
  bool finished() const noexcept { return loops_done_.load() == loops_.size() && started_; }
  // begin_shutdown(), then waits until finished(). Not from a loop thread.
  void shutdown();
  // With a Runtime: starts it, waits for SIGINT/SIGTERM, shuts the server
  // down gracefully, stops the Runtime; 0, 2 if connections had to be
  // aborted at the shutdown deadline (1 if the Runtime failed to start).
  int run_until_signal();

  ServerStats stats() const;
  // The send/receive counters of the server's NetContext on `loop`; call on
  // that loop's thread. nullopt when the loop serves no context (not set up,
  // or gone).
  std::optional<NetStats> net_stats(EventLoop& loop) const;
  const ServerOptions& options() const { return options_; }

  struct Shared;         // state the loops share (server.cc)
  void loop_finished();  // called by each loop when it is done

 private:
  using Reject = std::function<Task<>(Stream)>;
  absl::Status start(Handler handler, Reject reject);
  // On a Runtime: waits until every loop has its NetContext, so that serve()
  // returns a loop's set-up error (and "listening" means serving).
  absl::Status wait_until_set_up();

  Runtime* runtime_ = nullptr;
  uint64_t shutdown_hook_ = 0;  // in runtime_: shutdown() on SIGINT/SIGTERM
  std::vector<EventLoop*> loops_;
  ServerOptions options_;
  std::optional<SocketAddress> address_;
  std::shared_ptr<Shared> shared_;
  std::vector<UniqueFd> sockets_;
  std::atomic<size_t> loops_done_{0};
  bool started_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
};

template <FrameCodec C, class H>
absl::Status Server::serve(H handler, std::function<C()> make_codec) {
  const FramedOptions framed = options_.framed;
  Handler run = [handler = std::move(handler), make_codec, framed](Stream s) -> Task<> {
    return handler(FramedStream<C>(std::move(s), make_codec(), framed));
  };
  Reject reject = [make_codec, framed](Stream s) -> Task<> {
    return [](FramedStream<C> conn) -> Task<> {
      co_await conn.refuse(absl::ResourceExhaustedError("connection limit reached"));
    }(FramedStream<C>(std::move(s), make_codec(), framed));
  };
  return start(std::move(run), std::move(reject));
}

}  // namespace coring::net
