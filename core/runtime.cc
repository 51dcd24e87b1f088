#include "coring/core/runtime.h"

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <future>
#include <system_error>

#include "absl/strings/str_format.h"

namespace coring {

Runtime::Runtime(RuntimeOptions options) : options_(std::move(options)) {
  if (options_.threads == 0) {
    options_.threads = std::max<size_t>(1, std::thread::hardware_concurrency());
  }
  sigemptyset(&signals_);
  sigaddset(&signals_, SIGINT);
  sigaddset(&signals_, SIGTERM);
  // Blocked before any thread starts, so all inherit it and the signals
  // stay pending until run_until_signal() takes them.
  pthread_sigmask(SIG_BLOCK, &signals_, &previous_mask_);
  // Without it (fd limit) run_until_signal() still works, with a slow stop().
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

Runtime::~Runtime() {
  stop();
  join();
  if (stop_fd_ >= 0) ::close(stop_fd_);
  pthread_sigmask(SIG_SETMASK, &previous_mask_, nullptr);
}

void Runtime::worker_main(size_t index, Worker* worker, std::promise<absl::Status>* ready) {
  if (options_.pin) {
    const unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(index % cpus, &set);
    pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
  }
  auto fail = [&](absl::Status s) {
    ready->set_value(
        absl::Status(s.code(), absl::StrFormat("runtime thread %u: %s", index, s.message())));
  };
  worker->slab = std::make_unique<pool::SlabPool>(options_.slab);
  if (!worker->slab->status().ok()) return fail(worker->slab->status());
  if (options_.buffers) {
    absl::StatusOr<pool::BufferArena> arena = pool::BufferArena::create(options_.arena);
    if (!arena.ok()) return fail(arena.status());
    worker->arena = std::make_unique<pool::BufferArena>(std::move(*arena));
  }
  LoopOptions loop_options;
  loop_options.ring = options_.ring;
  loop_options.fixed_files = options_.fixed_files;
  loop_options.slab_pool = worker->slab.get();
  loop_options.arena = worker->arena.get();
  loop_options.register_buffers = options_.buffers;
  absl::StatusOr<std::unique_ptr<EventLoop>> loop = EventLoop::create(std::move(loop_options));
  if (!loop.ok()) return fail(loop.status());
  worker->loop = std::move(*loop);
  {
    std::lock_guard<std::mutex> lock(worker->mu);
    worker->live = worker->loop.get();
  }
  ready->set_value(absl::OkStatus());
  if (!stop_requested_.load(std::memory_order_acquire)) worker->loop->run();
  {
    std::lock_guard<std::mutex> lock(worker->mu);
    worker->live = nullptr;
  }
  // Drain and close on this thread (the ring's owner), pool last.
  worker->loop.reset();
  worker->arena.reset();
}

absl::Status Runtime::start() {
  if (started_) return start_status_;
  started_ = true;
  const size_t cpus = std::max(1u, std::thread::hardware_concurrency());
  if (options_.threads > kMaxThreadsPerCpu * cpus) {
    start_status_ = absl::InvalidArgumentError(
        absl::StrFormat("RuntimeOptions: %u threads is more than %u per CPU (%u here, %u CPUs)",
                        options_.threads, kMaxThreadsPerCpu, kMaxThreadsPerCpu * cpus, cpus));
    return start_status_;
  }
  std::vector<std::promise<absl::Status>> ready(options_.threads);
  for (size_t i = 0; i < options_.threads; ++i) {
    auto worker = std::make_unique<Worker>();
    Worker* w = worker.get();
    workers_.push_back(std::move(worker));
    try {
      w->thread = std::thread([this, i, w, p = &ready[i]] { worker_main(i, w, p); });
    } catch (const std::system_error& e) {
      // (The process's or the system's thread limit, or memory.) The ones
      // started so far are stopped below; no other is started.
      ready[i].set_value(absl::ResourceExhaustedError(
          absl::StrFormat("runtime thread %u: cannot start a thread: %s", i, e.what())));
      for (size_t j = i + 1; j < options_.threads; ++j) ready[j].set_value(absl::OkStatus());
      break;
    }
  }
  for (auto& p : ready) {
    absl::Status s = p.get_future().get();
    if (!s.ok() && start_status_.ok()) start_status_ = s;
  }
  if (!start_status_.ok()) {
    stop();
    join();
  }
  return start_status_;
}

void Runtime::stop() {
  stop_requested_.store(true, std::memory_order_release);
  if (stop_fd_ >= 0) {
    const uint64_t one = 1;
    ssize_t n;
    do {
      n = ::write(stop_fd_, &one, sizeof(one));
    } while (n < 0 && errno == EINTR);
  }
  for (auto& w : workers_) {
    std::lock_guard<std::mutex> lock(w->mu);
    if (w->live != nullptr) w->live->stop();
  }
}

void Runtime::join() {
  for (auto& w : workers_) {
    if (w->thread.joinable()) w->thread.join();
  }
}

int Runtime::run() {
  if (!start().ok()) return 1;
  join();
  return 0;
}

int Runtime::run_until_signal() {
  if (!start().ok()) return 1;
  // Blocked here too, in case this is not the constructing thread: the
  // signals must reach the signalfd, not a default handler.
  sigset_t caller_mask;
  pthread_sigmask(SIG_BLOCK, &signals_, &caller_mask);
  const int signal_fd = ::signalfd(-1, &signals_, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signal_fd < 0) {
    std::fprintf(stderr, "coring: signalfd failed (%s); waiting with sigtimedwait\n",
                 std::strerror(errno));
  }
  pollfd fds[2] = {{signal_fd, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
  while (!stop_requested_.load(std::memory_order_acquire)) {
    if (signal_fd < 0 || stop_fd_ < 0) {
      // Degraded (out of descriptors): the old polling wait.
      const timespec tick{0, 50'000'000};
      const int sig = sigtimedwait(&signals_, nullptr, &tick);
      if (sig == SIGINT || sig == SIGTERM) break;
      continue;
    }
    // Sleeps until a signal or stop(); nothing else wakes it.
    if (::poll(fds, 2, -1) < 0) continue;  // EINTR
    if ((fds[0].revents & POLLIN) != 0) {
      signalfd_siginfo info;
      const ssize_t n = ::read(signal_fd, &info, sizeof(info));
      if (n == sizeof(info) && (info.ssi_signo == SIGINT || info.ssi_signo == SIGTERM)) break;
    }
    // fds[1]: stop() ran; the loop condition sees its flag.
  }
  // A signal (not stop()) ended the wait: let the hooks drain their work
  // while the loops still run.
  if (!stop_requested_.load(std::memory_order_acquire)) run_shutdown_hooks();
  stop();
  join();
  if (signal_fd >= 0) {
    // Further SIGINT/SIGTERM already pending asked for the same shutdown:
    // take them, so restoring the caller's mask does not deliver them.
    signalfd_siginfo info;
    while (::read(signal_fd, &info, sizeof(info)) == sizeof(info)) {
    }
    ::close(signal_fd);
  }
  pthread_sigmask(SIG_SETMASK, &caller_mask, nullptr);
  return 0;
}

uint64_t Runtime::add_shutdown_hook(absl::AnyInvocable<void()> hook) {
  std::lock_guard<std::mutex> lock(hooks_mu_);
  const uint64_t id = next_hook_id_++;
  hooks_.emplace_back(id, std::move(hook));
  return id;
}

void Runtime::remove_shutdown_hook(uint64_t id) {
  std::lock_guard<std::mutex> lock(hooks_mu_);
  for (auto it = hooks_.begin(); it != hooks_.end(); ++it) {
    if (it->first == id) {
      hooks_.erase(it);
      return;
    }
  }
}

void Runtime::run_shutdown_hooks() {
  // Taken out first: a hook may add or remove hooks (or destroy their owner).
  std::vector<std::pair<uint64_t, absl::AnyInvocable<void()>>> hooks;
  {
    std::lock_guard<std::mutex> lock(hooks_mu_);
    hooks.swap(hooks_);
  }
  for (auto& [id, hook] : hooks) hook();
}

void Runtime::spawn_on_each(std::function<Task<>(EventLoop&)> make) {
  const auto* stored = &makers_.emplace_back(std::move(make));
  for (auto& w : workers_) {
    std::lock_guard<std::mutex> lock(w->mu);
    EventLoop* loop = w->live;
    if (loop == nullptr) continue;
    loop->post([loop, stored] { loop->spawn_task((*stored)(*loop)); });
  }
}

}  // namespace coring
