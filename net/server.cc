#include "coring/net/server.h"

#include <signal.h>

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "coring/core/spawn.h"
#include "coring/core/timer.h"
#include "coring/net/stream_state.h"
#include "coring/pool/slab_pool.h"

namespace coring::net {

struct Server::Shared {
  ServerOptions options;
  Handler handler;
  Reject reject;
  Server* server = nullptr;
  std::atomic<size_t> connections{0};
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> rejected{0};
  std::atomic<uint64_t> idle_closed{0};
  std::atomic<uint64_t> frame_timeouts{0};
  std::atomic<uint64_t> aborted_at_shutdown{0};
  std::atomic<bool> shutting_down{false};
  std::mutex mu;
  std::vector<std::pair<EventLoop*, std::weak_ptr<struct LoopServer>>> loops;
  // Loops that have set up (or failed to set up) their NetContext, and the
  // first failure: what start() waits for on a Runtime. Under mu.
  size_t loops_set_up = 0;
  absl::Status set_up_error;
  std::condition_variable set_up_cv;
};

// One loop's share of the server. Held by the loop's tasks (accept loop,
// handlers), so the NetContext lives until the last connection is gone.
struct LoopServer {
  LoopServer(std::shared_ptr<Server::Shared> s, EventLoop& l) : shared(std::move(s)), loop(l) {}
  ~LoopServer() {
    listener.reset();  // before the context its accepted streams use
    net.reset();
  }

  std::shared_ptr<Server::Shared> shared;
  EventLoop& loop;
  std::unique_ptr<NetContext> net;
  std::unique_ptr<Listener> listener;
  std::stop_source stop;  // requested when shutdown begins
  size_t handlers = 0;
  bool draining = false;
};

namespace {

struct HandlerCount {
  LoopServer& ls;
  explicit HandlerCount(LoopServer& l) : ls(l) { ++ls.handlers; }
  ~HandlerCount() {
    --ls.handlers;
    ls.shared->connections.fetch_sub(1, std::memory_order_relaxed);
  }
};

Task<> run_connection(std::shared_ptr<LoopServer> ls, Stream stream, bool reject) {
  HandlerCount count(*ls);
  if (reject) {
    co_await ls->shared->reject(std::move(stream));
  } else {
    co_await ls->shared->handler(std::move(stream));
  }
}

Task<> accept_loop(std::shared_ptr<LoopServer> ls) {
  Server::Shared& shared = *ls->shared;
  const size_t limit = shared.options.max_connections;
  uint64_t errors_in_a_row = 0;
  for (;;) {
    absl::StatusOr<Stream> s = co_await ls->listener->accept();
    if (!s.ok()) {
      if (absl::IsCancelled(s.status())) co_return;
      // Not transient by accept(2)'s list, yet a listener must not stop for
      // good: report (1st, 2nd, 4th, ... in a row) and try again after a pause.
      ++errors_in_a_row;
      if ((errors_in_a_row & (errors_in_a_row - 1)) == 0) {
        std::fprintf(stderr, "coring: accept failed (%llu in a row), retrying in 1 s: %s\n",
                     static_cast<unsigned long long>(errors_in_a_row),
                     s.status().ToString().c_str());
      }
      if (!(co_await sleep_for(std::chrono::seconds(1))).ok()) co_return;  // shutdown
      continue;
    }
    errors_in_a_row = 0;
    const size_t n = shared.connections.fetch_add(1, std::memory_order_relaxed) + 1;
    const bool reject = ls->draining || (limit > 0 && n > limit) || ls->listener->over_capacity();
    (reject ? shared.rejected : shared.accepted).fetch_add(1, std::memory_order_relaxed);
    spawn(ls->loop, run_connection(ls, std::move(*s), reject));
  }
}

Task<> idle_sweeper(std::shared_ptr<LoopServer> ls) {
  using std::chrono::milliseconds;
  const milliseconds idle = ls->shared->options.idle_timeout;
  const milliseconds frame = ls->shared->options.frame_timeout;
  milliseconds shortest = idle.count() > 0 ? idle : frame;
  if (frame.count() > 0) shortest = std::min(shortest, frame);
  const milliseconds tick =
      std::clamp<milliseconds>(shortest / 4, milliseconds(5), milliseconds(1000));
  auto ticks_for = [&](milliseconds t) {
    return t.count() > 0 ? static_cast<uint32_t>((t + tick - milliseconds(1)) / tick) : 0u;
  };
  const uint32_t idle_needed = ticks_for(idle);
  const uint32_t frame_needed = ticks_for(frame);
  for (;;) {
    if (!(co_await sleep_for(tick)).ok()) co_return;  // cancelled: shutdown
    ls->net->for_each_stream([&](detail::StreamState& s) {
      if (!s.owned()) return;  // lingering: has its own deadline
      if (frame_needed > 0 && s.mid_frame) {
        ++s.frame_ticks;
        if (s.frame_ticks == frame_needed) {
          ls->shared->frame_timeouts.fetch_add(1, std::memory_order_relaxed);
          s.interrupt_read(
              absl::DeadlineExceededError("frame timeout: a frame arrived too slowly"));
        } else if (s.frame_ticks >= 2 * frame_needed) {
          s.abort(absl::DeadlineExceededError("frame timeout: connection did not close"));
          return;
        }
      }
      if (s.take_activity()) {
        s.idle_ticks = 0;
        return;
      }
      // A whole tick without input: the connection gives back the memory
      // it keeps for reuse (idle connections are most of a big server's).
      if (++s.idle_ticks == 1) s.trim_idle();
      if (idle_needed == 0) return;
      if (s.idle_ticks == idle_needed) {
        ls->shared->idle_closed.fetch_add(1, std::memory_order_relaxed);
        s.interrupt_read(absl::DeadlineExceededError("idle timeout"));
      } else if (s.idle_ticks >= 2 * idle_needed) {
        s.abort(absl::DeadlineExceededError("idle timeout: connection did not close"));
      }
    });
    // Pages of the thread's slab pool unused for a whole tick go back to
    // the system (after a burst of connections closes, say).
    if (pool::SlabPool* slab = ls->loop.slab_pool()) slab->trim();
  }
}

Task<> drain(std::shared_ptr<LoopServer> ls) {
  ls->draining = true;
  ls->net->for_each_stream([](detail::StreamState& s) {
    if (s.owned()) s.interrupt_read(absl::UnavailableError("server shutting down"));
  });
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + ls->shared->options.shutdown_deadline;
  bool killed = false;
  while (ls->handlers > 0 || ls->net->live_streams() > 0) {
    const auto now = std::chrono::steady_clock::now();
    if (!killed && now >= deadline) {
      killed = true;
      ls->net->for_each_stream([&](detail::StreamState& s) {
        ls->shared->aborted_at_shutdown.fetch_add(1, std::memory_order_relaxed);
        s.kill(absl::DeadlineExceededError("server shutdown deadline passed"));
      });
    }
    if (killed && now >= deadline + std::chrono::seconds(1)) {
      std::fprintf(stderr, "coring: %zu connection handlers did not finish after shutdown\n",
                   ls->handlers);
      break;
    }
    (void)co_await sleep_for(std::chrono::milliseconds(5));
  }
}

Task<> run_loop(std::shared_ptr<Server::Shared> shared, EventLoop* loop, int fd) {
  auto ls = std::make_shared<LoopServer>(shared, *loop);
  absl::StatusOr<std::unique_ptr<NetContext>> net = NetContext::create(*loop, shared->options.net);
  {
    std::lock_guard<std::mutex> lock(shared->mu);
    if (!net.ok() && shared->set_up_error.ok()) shared->set_up_error = net.status();
    ++shared->loops_set_up;
    shared->set_up_cv.notify_all();
  }
  if (!net.ok()) {
    std::fprintf(stderr, "coring: server thread not serving: %s\n",
                 net.status().ToString().c_str());
  } else {
    ls->net = std::move(*net);
    ls->listener = Listener::share(*ls->net, fd, shared->options.listener);
    {
      std::lock_guard<std::mutex> lock(shared->mu);
      shared->loops.emplace_back(loop, ls);
    }
    if (shared->shutting_down.load()) ls->stop.request_stop();
    if (shared->options.idle_timeout.count() > 0 || shared->options.frame_timeout.count() > 0) {
      Task<> sweeper = idle_sweeper(ls);
      sweeper.set_stop_token(ls->stop.get_token());
      spawn(*loop, std::move(sweeper));
    }
    Task<> accepting = accept_loop(ls);
    accepting.set_stop_token(ls->stop.get_token());
    co_await std::move(accepting);
    co_await drain(ls);
  }
  Server* server = shared->server;
  ls.reset();
  server->loop_finished();
}

}  // namespace

std::string ServerStats::to_string() const {
  return absl::StrFormat(
      "accepted=%u rejected=%u active=%u idle_closed=%u frame_timeouts=%u aborted_at_shutdown=%u",
      accepted, rejected, active, idle_closed, frame_timeouts, aborted_at_shutdown);
}

Server::Server(Runtime& runtime, ServerOptions options)
    : runtime_(&runtime), options_(std::move(options)) {}

Server::Server(std::vector<EventLoop*> loops, ServerOptions options)
    : loops_(std::move(loops)), options_(std::move(options)) {}

Server::~Server() {
  if (shutdown_hook_ != 0) runtime_->remove_shutdown_hook(shutdown_hook_);
  if (started_ && !finished()) {
    std::fprintf(stderr, "coring: Server destroyed before its shutdown finished\n");
  }
}

absl::Status Server::serve(Handler handler) {
  return start(std::move(handler), [](Stream s) -> Task<> { (void)co_await s.close(); });
}

absl::Status Server::start(Handler handler, Reject reject) {
  if (started_) return absl::FailedPreconditionError("Server: serve() was called already");
  if (runtime_ != nullptr) {
    if (absl::Status s = runtime_->start(); !s.ok()) return s;
    loops_.clear();
    for (size_t i = 0; i < runtime_->size(); ++i) loops_.push_back(&runtime_->loop(i));
  }
  if (loops_.empty()) return absl::InvalidArgumentError("Server: no event loops");

  absl::StatusOr<SocketAddress> address = absl::InvalidArgumentError("unset");
  if (!options_.unix_path.empty()) {
    address = SocketAddress::unix_path(options_.unix_path);
  } else {
    const bool v6 = options_.host.find(':') != std::string::npos && options_.host[0] != '[';
    address = SocketAddress::parse(v6 ? absl::StrFormat("[%s]:%u", options_.host, options_.port)
                                      : absl::StrFormat("%s:%u", options_.host, options_.port));
  }
  if (!address.ok()) return address.status();
  const bool shared_socket = address->family() == SocketAddress::Family::kUnix;
  ListenOptions listen = options_.listener.listen;
  listen.reuse_port = !shared_socket;
  for (size_t i = 0; i < (shared_socket ? 1 : loops_.size()); ++i) {
    absl::StatusOr<UniqueFd> fd = listen_socket(*address, listen);
    if (!fd.ok()) {
      sockets_.clear();
      return fd.status();
    }
    if (i == 0) {
      absl::StatusOr<SocketAddress> bound = SocketAddress::local_of(fd->get());
      if (!bound.ok()) return bound.status();
      if (!shared_socket) address->set_port(bound->port());
    }
    sockets_.push_back(std::move(*fd));
  }
  address_ = *address;

  shared_ = std::make_shared<Shared>();
  shared_->options = options_;
  shared_->handler = std::move(handler);
  shared_->reject = std::move(reject);
  shared_->server = this;
  started_ = true;
  if (runtime_ != nullptr) {
    // Runtime::run_until_signal() drains the server before it stops the loops.
    shutdown_hook_ = runtime_->add_shutdown_hook([this] { shutdown(); });
  }
  for (size_t i = 0; i < loops_.size(); ++i) {
    const int fd = sockets_[shared_socket ? 0 : i].get();
    spawn(*loops_[i], run_loop(shared_, loops_[i], fd));
  }
  return wait_until_set_up();
}

absl::Status Server::wait_until_set_up() {
  // Only a Runtime's loops run by themselves; loops handed in may be driven
  // by this very thread later, so waiting for them here could never end.
  if (runtime_ == nullptr) return absl::OkStatus();
  for (EventLoop* loop : loops_) {
    if (EventLoop::current() == loop) return absl::OkStatus();
  }
  absl::Status error;
  {
    std::unique_lock<std::mutex> lock(shared_->mu);
    // Setting up is an mmap and a few io_uring registrations; the bound only
    // keeps a wedged loop from hanging serve().
    shared_->set_up_cv.wait_for(lock, std::chrono::seconds(10),
                                [&] { return shared_->loops_set_up == loops_.size(); });
    error = shared_->set_up_error;
  }
  if (error.ok()) return error;
  // A server with a thread that cannot serve would accept connections into
  // its backlog and never answer them: refuse to run at all.
  shutdown();
  return absl::Status(error.code(),
                      absl::StrCat("Server: an event loop cannot serve: ", error.message()));
}

void Server::loop_finished() {
  std::lock_guard<std::mutex> lock(mu_);
  loops_done_.fetch_add(1);
  cv_.notify_all();
}

void Server::begin_shutdown() {
  if (!started_ || shared_->shutting_down.exchange(true)) return;
  std::lock_guard<std::mutex> lock(shared_->mu);
  for (auto& [loop, weak] : shared_->loops) {
    loop->post([w = weak] {
      if (auto ls = w.lock()) ls->stop.request_stop();
    });
  }
}

void Server::shutdown() {
  if (!started_) return;
  begin_shutdown();
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, options_.shutdown_deadline + std::chrono::seconds(3),
               [this] { return finished(); });
}

int Server::run_until_signal() {
  if (runtime_ == nullptr) return 1;
  if (!runtime_->start().ok()) return 1;
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  const timespec tick{0, 50'000'000};
  for (;;) {
    const int sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig == SIGINT || sig == SIGTERM) break;
    if (started_ && finished()) break;
  }
  if (shutdown_hook_ != 0) runtime_->remove_shutdown_hook(std::exchange(shutdown_hook_, 0));
  shutdown();
  runtime_->stop();
  if (const uint64_t aborted = stats().aborted_at_shutdown; aborted > 0) {
    std::fprintf(stderr, "coring: %llu connection(s) aborted at the shutdown deadline\n",
                 static_cast<unsigned long long>(aborted));
    return 2;
  }
  return 0;
}

ServerStats Server::stats() const {
  ServerStats s;
  if (!shared_) return s;
  s.accepted = shared_->accepted.load();
  s.rejected = shared_->rejected.load();
  s.active = shared_->connections.load();
  s.idle_closed = shared_->idle_closed.load();
  s.frame_timeouts = shared_->frame_timeouts.load();
  s.aborted_at_shutdown = shared_->aborted_at_shutdown.load();
  return s;
}

std::optional<NetStats> Server::net_stats(EventLoop& loop) const {
  if (!shared_) return std::nullopt;
  std::lock_guard<std::mutex> lock(shared_->mu);
  for (const auto& [l, weak] : shared_->loops) {
    if (l != &loop) continue;
    std::shared_ptr<LoopServer> ls = weak.lock();
    if (ls && ls->net) return ls->net->stats();
  }
  return std::nullopt;
}

}  // namespace coring::net
