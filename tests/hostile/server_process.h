// ServerProcess: an example server (sbmp_echo_server, echo_server) run as a
// child process on a free loopback port, for the hostile suite.
//
//   auto server = ServerProcess::start(example_binary("sbmp_echo_server"),
//                                      {"--threads=1", "--idle_timeout=2s"});
//   if (!server.ok()) ...                  // did not start, or no "listening on" line
//   uint16_t port = (*server)->port();
//   (*server)->rss_kib(); (*server)->fd_count();   // from /proc/PID
//   (*server)->signal(SIGTERM); (*server)->wait(5s);
//
// --host=127.0.0.1 --port=0 come first (extra arguments may override them).
// The child is killed (SIGKILL) and reaped in the destructor however the
// test ends, so no server outlives its test.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace coring::hostile {

// CORING_BINARY_DIR/examples/net/<name>.
std::string example_binary(const std::string& name);

// The flags `binary` accepts, read from `binary --helpfull` (cached).
const std::set<std::string>& supported_flags(const std::string& binary);

// Raises this process's RLIMIT_NOFILE soft limit to its hard limit (children
// inherit it); returns the new soft limit.
uint64_t raise_nofile_limit();

struct StartOptions {
  // RLIMIT_NOFILE (soft and hard) for the child; unset: inherited.
  std::optional<uint64_t> nofile;
  std::chrono::milliseconds timeout{5000};  // for the "listening on" line
};

class ServerProcess {
 public:
  static absl::StatusOr<std::unique_ptr<ServerProcess>> start(const std::string& binary,
                                                              std::vector<std::string> args,
                                                              StartOptions options = {});
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  pid_t pid() const { return pid_; }
  uint16_t port() const { return port_; }
  const std::string& command_line() const { return command_line_; }

  // False once it exited (it is then reaped; exit_code() says how).
  bool alive();
  // Exit status, or 128 + signal; nullopt while running.
  std::optional<int> exit_code() const { return exit_code_; }
  // Waits up to `timeout` for the exit; the exit code, nullopt if still running.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  bool signal(int sig);

  // /proc/PID/status VmRSS in KiB (0 when unreadable).
  uint64_t rss_kib() const;
  // Entries of /proc/PID/fd.
  size_t fd_count() const;
  // Sockets installed in the io_uring fixed-file tables of the process (its
  // accepted connections); nullopt when the kernel did not print the tables.
  std::optional<size_t> fixed_sockets() const;
  // Threads (/proc/PID/task entries).
  size_t threads() const;

  // Its stdout after the first line, read until EOF or `timeout`.
  std::string read_output(std::chrono::milliseconds timeout);

 private:
  ServerProcess() = default;

  pid_t pid_ = -1;
  int out_ = -1;
  uint16_t port_ = 0;
  std::string command_line_;
  std::string buffered_;
  std::optional<int> exit_code_;
};

}  // namespace coring::hostile
