// The built example programs, run as child processes on loopback:
//  * sbmp_echo_server with clients connected: its ring's /proc fdinfo shows
//    registered files (the accepted sockets) and registered buffers;
//  * SIGTERM with frames in flight: every frame answered, GOAWAY(SHUTDOWN),
//    exit 0; bad flags: one line, exit 1;
//  * pingpong_client against it (and --raw against echo_server) for about a
//    second: zero errors, messages counted; a mismatch makes it fail.
// Every child is killed in teardown however the test ends.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "child_process.h"
#include "sbmp_test_support.h"

extern char** environ;

namespace coring::net::sbmp_testing {
namespace {

using coring::testing::ChildProcess;

const std::string kBin = CORING_BINARY_DIR "/examples/net/";

// Starts sbmp_echo_server on a free loopback port; port() once it listens.
struct ServerProcess {
  explicit ServerProcess(std::vector<std::string> extra = {}) : child(args(std::move(extra))) {
    const std::string line = child.read_line();
    static const std::regex kListening(R"(^listening on 127\.0\.0\.1:(\d+)$)");
    std::smatch m;
    if (std::regex_match(line, m, kListening)) {
      port = static_cast<uint16_t>(std::stoi(m[1]));
    } else {
      ADD_FAILURE() << "unexpected first line: '" << line << "'";
    }
  }
  static std::vector<std::string> args(std::vector<std::string> extra) {
    std::vector<std::string> a = {kBin + "sbmp_echo_server", "--host=127.0.0.1", "--port=0",
                                  "--threads=1"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  ChildProcess child;
  uint16_t port = 0;
};

struct RingInfo {
  bool complete = false;  // fdinfo printed the tables (it skips them while the ring is busy)
  long user_files = -1;
  long user_bufs = -1;
  int installed_sockets = 0;  // entries of the file table that hold a socket
};

// fdinfo of every io_uring the process has open.
std::vector<RingInfo> rings_of(pid_t pid) {
  std::vector<RingInfo> rings;
  const std::string proc = "/proc/" + std::to_string(pid);
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(proc + "/fd", ec)) {
    std::error_code link_ec;
    const auto target = std::filesystem::read_symlink(entry.path(), link_ec);
    if (link_ec || target.string() != "anon_inode:[io_uring]") continue;
    std::ifstream info(proc + "/fdinfo/" + entry.path().filename().string());
    RingInfo r;
    std::string line;
    bool in_files = false;
    while (std::getline(info, line)) {
      if (line.rfind("UserFiles:", 0) == 0) {
        r.user_files = std::stol(line.substr(10));
        in_files = true;
      } else if (line.rfind("UserBufs:", 0) == 0) {
        r.user_bufs = std::stol(line.substr(9));
        r.complete = true;
        in_files = false;
      } else if (in_files && line.find("socket:[") != std::string::npos) {
        ++r.installed_sockets;
      }
    }
    rings.push_back(r);
  }
  return rings;
}

TEST(SbmpProcessTest, RingShowsRegisteredFilesAndBuffersWhileClientsAreConnected) {
  ServerProcess server;
  ASSERT_NE(server.port, 0);
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(std::make_unique<RawClient>(server.port));
    clients.back()->expect_echo(encode(0x0100, bytes_of("hello")), 0x0100, {}, bytes_of("hello"));
  }
  // The kernel prints the tables only when it gets the ring's lock at once;
  // the server is idle now, but retry a little.
  RingInfo best;
  for (int attempt = 0; attempt < 100 && best.installed_sockets < 3; ++attempt) {
    for (const RingInfo& r : rings_of(server.child.pid())) {
      if (r.complete && r.installed_sockets >= best.installed_sockets) best = r;
    }
    if (best.installed_sockets < 3) std::this_thread::sleep_for(20ms);
  }
  ASSERT_TRUE(best.complete) << "no io_uring fdinfo with UserFiles/UserBufs";
  EXPECT_GT(best.user_files, 0) << "no registered file table";
  EXPECT_GE(best.installed_sockets, 3) << "accepted sockets not in the fixed-file table";
  EXPECT_GT(best.user_bufs, 0) << "no registered buffers";
}

TEST(SbmpProcessTest, SigtermAnswersFramesInFlightThenGoawayShutdownAndExitZero) {
  ServerProcess server;
  ASSERT_NE(server.port, 0);
  constexpr int kFrames = 50;
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int c = 0; c < 2; ++c) {
    clients.push_back(std::make_unique<RawClient>(server.port));
    std::vector<uint8_t> wire;
    for (int i = 0; i < kFrames; ++i) {
      const auto f = encode(0x0100, pattern(4096, uint32_t(c * 1000 + i)), request_id_ext(i));
      wire.insert(wire.end(), f.begin(), f.end());
    }
    ASSERT_TRUE(clients.back()->send(wire));
  }
  RawClient idle(server.port);
  idle.expect_echo(encode(0x0100, {}), 0x0100, {}, {});
  // The server is working on them: the first echo of each is back.
  std::vector<int> received(clients.size(), 0);
  for (size_t c = 0; c < clients.size(); ++c) {
    absl::StatusOr<OwnedFrame> f = clients[c]->read_frame();
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_EQ(f->extensions().request_id(), 0u);
    received[c] = 1;
  }
  ASSERT_EQ(::kill(server.child.pid(), SIGTERM), 0);
  for (size_t c = 0; c < clients.size(); ++c) {
    for (int i = received[c]; i < kFrames; ++i) {
      absl::StatusOr<OwnedFrame> f = clients[c]->read_frame();
      ASSERT_TRUE(f.ok()) << "client " << c << " frame " << i << ": " << f.status();
      ASSERT_EQ(f->type(), 0x0100) << "client " << c << " frame " << i;
      EXPECT_EQ(f->extensions().request_id(), uint64_t(i));
      EXPECT_EQ(f->payload, pattern(4096, uint32_t(c * 1000 + i)));
    }
    clients[c]->expect_goaway_and_close(sbmp::ErrorCode::kShutdown);
  }
  idle.expect_goaway_and_close(sbmp::ErrorCode::kShutdown);
  EXPECT_EQ(server.child.wait(), 0);
}

TEST(SbmpProcessTest, BadFlagsPrintOneLineAndExitOne) {
  for (std::string flag : {"--max_frame=0", "--max_frame=1031", "--idle_timeout=soon",
                           "--port=70000", "--host=x.y", "--no_such_flag"}) {
    ChildProcess server({kBin + "sbmp_echo_server", "--port=0", flag});
    EXPECT_EQ(server.wait(), 1) << flag;
    EXPECT_EQ(server.read_all(), "") << flag;  // the error went to stderr
  }
  // The smallest --max_frame it takes: a peer's GOAWAY with its longest
  // reason, and a trailer.
  ChildProcess smallest(
      {kBin + "sbmp_echo_server", "--host=127.0.0.1", "--port=0", "--max_frame=1032"});
  EXPECT_NE(smallest.read_line().find("listening on"), std::string::npos);
  ChildProcess client({kBin + "pingpong_client", "--depth=0"});
  EXPECT_EQ(client.wait(), 1);
}

uint64_t json_number(const std::string& json, const std::string& key) {
  const std::regex re("\"" + key + "\":([0-9.]+)");
  std::smatch m;
  if (!std::regex_search(json, m, re)) {
    ADD_FAILURE() << "no \"" << key << "\" in " << json;
    return 0;
  }
  return static_cast<uint64_t>(std::stod(m[1]));
}

std::vector<std::string> client_args(uint16_t port, std::vector<std::string> extra) {
  std::vector<std::string> a = {kBin + "pingpong_client",
                                "--port=" + std::to_string(port),
                                "--duration=1s",
                                "--conns=4",
                                "--depth=3",
                                "--json"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

TEST(SbmpProcessTest, PingpongClientRunsCleanAgainstTheServer) {
  ServerProcess server;
  ASSERT_NE(server.port, 0);
  for (const std::vector<std::string>& extra :
       {std::vector<std::string>{"--size=100"}, {"--hello", "--size=20000", "--threads=2"}}) {
    ChildProcess client(client_args(server.port, extra));
    const std::string json = client.read_all();
    EXPECT_EQ(client.wait(), 0) << json;
    EXPECT_EQ(json_number(json, "errors"), 0u) << json;
    EXPECT_EQ(json_number(json, "mismatches"), 0u) << json;
    EXPECT_GT(json_number(json, "msgs"), 0u) << json;
  }
  ASSERT_EQ(::kill(server.child.pid(), SIGTERM), 0);
  EXPECT_EQ(server.child.wait(), 0);
}

TEST(SbmpProcessTest, PingpongClientRawModeAgainstEchoServer) {
  ChildProcess echo({kBin + "echo_server", "--host=127.0.0.1", "--port=0", "--threads=1"});
  const std::string line = echo.read_line();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(line, m, std::regex(R"(127\.0\.0\.1:(\d+))"))) << line;
  ChildProcess client(client_args(static_cast<uint16_t>(std::stoi(m[1])), {"--raw"}));
  const std::string json = client.read_all();
  EXPECT_EQ(client.wait(), 0) << json;
  EXPECT_EQ(json_number(json, "errors"), 0u) << json;
  EXPECT_GT(json_number(json, "msgs"), 0u) << json;
}

TEST(SbmpProcessTest, PingpongClientFailsWhenEchoesDoNotMatch) {
  // Raw bytes to an SBMP server: it answers with GOAWAY(BAD_MAGIC), which is
  // not the echo the client expects.
  ServerProcess server;
  ASSERT_NE(server.port, 0);
  ChildProcess client(client_args(server.port, {"--raw", "--conns=1"}));
  const std::string json = client.read_all();
  EXPECT_EQ(client.wait(), 1) << json;
  EXPECT_GT(json_number(json, "errors"), 0u) << json;
}

}  // namespace
}  // namespace coring::net::sbmp_testing
