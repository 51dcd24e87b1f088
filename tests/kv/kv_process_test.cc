// The kv example programs as child processes on loopback: kv_server on a
// free port ("listening on" first), kv_client put/get, an older version
// refused naming the stored one, an equal version accepted, a missing key,
// a short verified load, and SIGTERM: exit 0.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <regex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

namespace {

using namespace std::chrono_literals;
const std::string kBin = CORING_BINARY_DIR "/examples/kv/";

// A child with stdout (and stderr, when asked) on a pipe; killed if still
// running at the end.
class Child {
 public:
  explicit Child(std::vector<std::string> argv, bool with_stderr = false) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      ADD_FAILURE() << "pipe: " << std::strerror(errno);
      return;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    if (with_stderr) posix_spawn_file_actions_adddup2(&actions, fds[1], STDERR_FILENO);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    const int rc = posix_spawn(&pid_, args[0], &actions, &attr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    ::close(fds[1]);
    out_ = fds[0];
    if (rc != 0) {
      ADD_FAILURE() << "spawn " << argv[0] << ": " << std::strerror(rc);
      pid_ = -1;
    }
  }
  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (out_ >= 0) ::close(out_);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  std::string read_line(std::chrono::milliseconds timeout = 5000ms) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (size_t nl = buffered_.find('\n'); nl != std::string::npos) {
        std::string line = buffered_.substr(0, nl);
        buffered_.erase(0, nl + 1);
        return line;
      }
      if (!read_some(deadline)) return {};
    }
  }
  std::string read_all(std::chrono::milliseconds timeout = 20000ms) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (read_some(deadline)) {
    }
    return std::exchange(buffered_, {});
  }
  int wait(std::chrono::milliseconds timeout = 20000ms) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (pid_ > 0) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      if (std::chrono::steady_clock::now() >= deadline) return -1;
      std::this_thread::sleep_for(5ms);
    }
    return -1;
  }

 private:
  bool read_some(std::chrono::steady_clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (out_ < 0 || left.count() <= 0) return false;
    pollfd p{out_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char buf[4096];
    const ssize_t n = ::read(out_, buf, sizeof buf);
    if (n <= 0) return false;
    buffered_.append(buf, static_cast<size_t>(n));
    return true;
  }
  pid_t pid_ = -1;
  int out_ = -1;
  std::string buffered_;
};

struct Result {
  int rc;
  std::string out;  // stdout and stderr
};

Result client(uint16_t port, std::vector<std::string> args) {
  std::vector<std::string> argv = {kBin + "kv_client", "--port=" + std::to_string(port)};
  argv.insert(argv.end(), args.begin(), args.end());
  Child c(argv, /*with_stderr=*/true);
  std::string out = c.read_all();
  return {c.wait(), out};
}

TEST(KvProcessTest, PutGetVersionsLoadAndSigterm) {
  Child server({kBin + "kv_server", "--host=127.0.0.1", "--port=0", "--threads=2"});
  const std::string line = server.read_line();
  std::smatch m;
  static const std::regex kListening(R"(^listening on 127\.0\.0\.1:(\d+)$)");
  ASSERT_TRUE(std::regex_match(line, m, kListening)) << "first line: '" << line << "'";
  const auto port = static_cast<uint16_t>(std::stoi(m[1]));

  Result r = client(port, {"put", "fruit", "apple", "--version=5"});
  EXPECT_EQ(r.rc, 0) << r.out;
  r = client(port, {"get", "fruit"});
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(r.out, "apple\n");
  r = client(port, {"put", "fruit", "pear", "--version=4"});
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("stored version 5"), std::string::npos) << r.out;
  r = client(port, {"put", "fruit", "plum", "--version=5"});  // equal: idempotent
  EXPECT_EQ(r.rc, 0) << r.out;
  r = client(port, {"put", "fruit", "fig", "--version=6"});
  EXPECT_EQ(r.rc, 0) << r.out;
  r = client(port, {"get", "fruit"});
  EXPECT_EQ(r.out, "fig\n");
  r = client(port, {"get", "no-such-key"});
  EXPECT_EQ(r.rc, 1) << r.out;
  r = client(port, {"load", "--duration=500ms", "--concurrency=16", "--keys=50", "--json"});
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("\"errors\":0"), std::string::npos) << r.out;
  r = client(port, {"frobnicate"});
  EXPECT_EQ(r.rc, 1) << r.out;

  ASSERT_EQ(::kill(server.pid(), SIGTERM), 0);
  EXPECT_EQ(server.wait(), 0);
}

}  // namespace
