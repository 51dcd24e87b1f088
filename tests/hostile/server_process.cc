#include "server_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <regex>
#include <sstream>
#include <thread>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace coring::hostile {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Reads from `fd` into `out` until a newline is buffered, EOF, or `deadline`.
// False on EOF or timeout.
bool read_more(int fd, std::string& out, Clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
  if (fd < 0 || left.count() <= 0) return false;
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
  char buf[4096];
  const ssize_t n = ::read(fd, buf, sizeof buf);
  if (n <= 0) return false;
  out.append(buf, static_cast<size_t>(n));
  return true;
}

// fork + exec with stdout on `out_fd` (stderr inherited), an empty signal
// mask (the parent may block SIGTERM for a sigwait thread) and, optionally,
// RLIMIT_NOFILE. Between fork and exec only async-signal-safe calls.
pid_t spawn(const std::vector<std::string>& argv, int out_fd, std::optional<uint64_t> nofile) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  rlimit limit{};
  if (nofile) limit = {static_cast<rlim_t>(*nofile), static_cast<rlim_t>(*nofile)};
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  if (nofile) ::setrlimit(RLIMIT_NOFILE, &limit);
  ::dup2(out_fd, STDOUT_FILENO);
  ::execv(args[0], args.data());
  ::_exit(127);
}

// Entries of a directory (0 when unreadable).
size_t entries_of(const std::string& dir) {
  std::error_code ec;
  size_t n = 0;
  for (auto it = std::filesystem::directory_iterator(dir, ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

}  // namespace

std::string example_binary(const std::string& name) {
  return std::string(CORING_BINARY_DIR) + "/examples/net/" + name;
}

const std::set<std::string>& supported_flags(const std::string& binary) {
  static std::mutex mu;
  static std::map<std::string, std::set<std::string>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(binary);
  if (it != cache.end()) return it->second;
  std::set<std::string>& flags = cache[binary];
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return flags;
  const pid_t pid = spawn({binary, "--helpfull"}, fds[1], std::nullopt);
  ::close(fds[1]);
  std::string text;
  const auto deadline = Clock::now() + 10s;
  while (read_more(fds[0], text, deadline)) {
  }
  ::close(fds[0]);
  if (pid > 0) ::waitpid(pid, nullptr, 0);
  // Lines like "    --idle_timeout (close idle peers after ...); default: 0;"
  static const std::regex kFlag(R"(^\s+--([a-z0-9_]+) \()");
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_search(line, m, kFlag)) flags.insert(m[1]);
  }
  return flags;
}

uint64_t raise_nofile_limit() {
  rlimit l{};
  if (::getrlimit(RLIMIT_NOFILE, &l) != 0) return 0;
  if (l.rlim_cur < l.rlim_max) {
    l.rlim_cur = l.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &l);
    ::getrlimit(RLIMIT_NOFILE, &l);
  }
  return l.rlim_cur;
}

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::start(const std::string& binary,
                                                                    std::vector<std::string> args,
                                                                    StartOptions options) {
  std::vector<std::string> argv = {binary, "--host=127.0.0.1", "--port=0"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::unique_ptr<ServerProcess> p(new ServerProcess());
  p->command_line_ = absl::StrJoin(argv, " ");
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrFormat("pipe: %s", std::strerror(errno)));
  }
  p->pid_ = spawn(argv, fds[1], options.nofile);
  ::close(fds[1]);
  p->out_ = fds[0];
  if (p->pid_ < 0) return absl::InternalError(absl::StrFormat("fork: %s", std::strerror(errno)));
  // sbmp_echo_server: "listening on 127.0.0.1:PORT";
  // echo_server: "echo_server: listening on 127.0.0.1:PORT with N threads".
  const auto deadline = Clock::now() + options.timeout;
  size_t nl;
  while ((nl = p->buffered_.find('\n')) == std::string::npos) {
    if (!read_more(p->out_, p->buffered_, deadline)) break;
  }
  const std::string line = p->buffered_.substr(0, nl);
  static const std::regex kListening(R"(listening on 127\.0\.0\.1:(\d+))");
  std::smatch m;
  if (nl == std::string::npos || !std::regex_search(line, m, kListening)) {
    p->alive();
    return absl::FailedPreconditionError(
        absl::StrFormat("%s: no 'listening on' line (got '%s'%s)", p->command_line_, p->buffered_,
                        p->exit_code_ ? absl::StrFormat(", exit %d", *p->exit_code_) : ""));
  }
  p->buffered_.erase(0, nl + 1);
  p->port_ = static_cast<uint16_t>(std::stoi(m[1]));
  return p;
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0 && !exit_code_) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (out_ >= 0) ::close(out_);
}

bool ServerProcess::alive() {
  if (pid_ <= 0 || exit_code_) return false;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r != pid_) return true;
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return false;
}

std::optional<int> ServerProcess::wait(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (alive()) {
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(5ms);
  }
  return exit_code_;
}

bool ServerProcess::signal(int sig) { return alive() && ::kill(pid_, sig) == 0; }

uint64_t ServerProcess::rss_kib() const {
  std::ifstream status("/proc/" + std::to_string(pid_) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6));
  }
  return 0;
}

size_t ServerProcess::fd_count() const {
  return entries_of("/proc/" + std::to_string(pid_) + "/fd");
}

size_t ServerProcess::threads() const {
  return entries_of("/proc/" + std::to_string(pid_) + "/task");
}

std::optional<size_t> ServerProcess::fixed_sockets() const {
  const std::string proc = "/proc/" + std::to_string(pid_);
  std::error_code ec;
  size_t total = 0;
  bool any = false;
  for (const auto& entry : std::filesystem::directory_iterator(proc + "/fd", ec)) {
    std::error_code link_ec;
    if (std::filesystem::read_symlink(entry.path(), link_ec).string() != "anon_inode:[io_uring]") {
      continue;
    }
    // The kernel prints the tables only when it gets the ring's lock at once.
    for (int attempt = 0; attempt < 50; ++attempt) {
      std::ifstream info(proc + "/fdinfo/" + entry.path().filename().string());
      bool in_files = false, complete = false;
      size_t sockets = 0;
      for (std::string line; std::getline(info, line);) {
        if (line.rfind("UserFiles:", 0) == 0) {
          in_files = true;
        } else if (line.rfind("UserBufs:", 0) == 0) {
          in_files = false;
          complete = true;
        } else if (in_files && line.find("socket:[") != std::string::npos) {
          ++sockets;
        }
      }
      if (complete) {
        total += sockets;
        any = true;
        break;
      }
      std::this_thread::sleep_for(10ms);
    }
  }
  if (!any) return std::nullopt;
  return total;
}

std::string ServerProcess::read_output(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (read_more(out_, buffered_, deadline)) {
  }
  return std::exchange(buffered_, {});
}

}  // namespace coring::hostile
