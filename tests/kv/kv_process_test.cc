// The kv example programs as child processes on loopback: kv_server on a
// free port ("listening on" first), kv_client put/get, an older version
// refused naming the stored one, an equal version accepted, a missing key,
// a short verified load, and SIGTERM: exit 0. And load options that make no
// load refused before connecting, and server limits that make no store
// refused before serving.
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

#include "child_process.h"

extern char** environ;

namespace {

using namespace std::chrono_literals;
const std::string kBin = CORING_BINARY_DIR "/examples/kv/";

using Child = coring::testing::ChildProcess;

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

TEST(KvProcessTest, BadLoadOptionsAreRefusedBeforeConnecting) {
  // Port 1: nothing listens there, so a run that got past the checks fails
  // with a connect error instead of the option's.
  const std::pair<const char*, const char*> cases[] = {
      {"--concurrency=0", "--concurrency must be 1..65536"},
      {"--concurrency=100000000", "--concurrency must be 1..65536"},
      {"--keys=0", "--keys must be 1..10000000"},
      {"--value_size=100000000", "--value_size must be at most 16777216"},
      {"--get_ratio=1.5", "--get_ratio must be from 0 to 1"},
      {"--get_ratio=nan", "--get_ratio must be from 0 to 1"},
      {"--duration=0", "--duration must be above 0"},
  };
  for (const auto& [flag, want] : cases) {
    Result r = client(1, {"load", flag});
    EXPECT_EQ(r.rc, 1) << flag << ": " << r.out;
    EXPECT_NE(r.out.find(want), std::string::npos) << flag << ": " << r.out;
  }
}

TEST(KvProcessTest, BadServerLimitsAreRefusedBeforeServing) {
  // A server that could store nothing, or whose limits no request reaches,
  // exits 1 with one line instead of printing "listening on".
  const std::pair<const char*, const char*> cases[] = {
      {"--max_key_size=0", "--max_key_size must be 1..16777216"},
      {"--max_key_size=20000000", "--max_key_size must be 1..16777216"},
      {"--max_value_size=20000000", "--max_value_size must be at most 16777216"},
      {"--max_concurrent=0", "--max_concurrent must be 1..65536"},
      {"--max_memory=0", "--max_memory=0 leaves each of the 2 threads 0 bytes"},
      {"--max_memory=100000",
       "--max_memory=100000 leaves each of the 2 threads 50000 bytes, less "
       "than the 65856 of an entry of the largest key and value"},
  };
  for (const auto& [flag, want] : cases) {
    Child server({kBin + "kv_server", "--host=127.0.0.1", "--port=0", "--threads=2", flag},
                 /*with_stderr=*/true);
    // (Bounded: a server that started instead keeps its output open.)
    const std::string out = server.read_all(3s);
    EXPECT_EQ(server.wait(1s), 1) << flag << ": " << out;
    EXPECT_NE(out.find(want), std::string::npos) << flag << ": " << out;
    EXPECT_EQ(out.find("listening on"), std::string::npos) << flag << ": " << out;
  }
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
