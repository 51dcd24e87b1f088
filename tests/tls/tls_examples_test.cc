// The example programs over TLS: sbmp_echo_server --tls_cert/--tls_key and
// pingpong_client --tls_ca/--tls_server_name, as child processes, with a CA
// made at test time. A client that names the wrong host fails its handshake;
// the server counts it and serves on.
#include <gtest/gtest.h>
#include <signal.h>

#include <regex>
#include <string>
#include <vector>

#include "child_process.h"
#include "tls/test_pki.h"

namespace coring::tls {
namespace {

using namespace std::chrono_literals;
using coring::testing::ChildProcess;

const std::string kBin = CORING_BINARY_DIR "/examples/net/";

uint16_t listening_port(ChildProcess& child) {
  const std::string line = child.read_line();
  static const std::regex kListening(R"(^listening on 127\.0\.0\.1:(\d+)$)");
  std::smatch m;
  if (!std::regex_match(line, m, kListening)) {
    ADD_FAILURE() << "unexpected first line: '" << line << "'";
    return 0;
  }
  return static_cast<uint16_t>(std::stoi(m[1]));
}

std::vector<std::string> client_args(uint16_t port, const testing::TestPki& pki,
                                     std::vector<std::string> extra) {
  std::vector<std::string> a = {
      kBin + "pingpong_client", "--host=127.0.0.1", "--port=" + std::to_string(port), "--conns=4",
      "--duration=300ms",       "--depth=3",        "--tls_ca=" + pki.path("ca.pem"), "--json"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

TEST(TlsExamplesTest, PingpongClientOverTlsRunsCleanAgainstTheServer) {
  testing::TestPki pki;
  ChildProcess server({kBin + "sbmp_echo_server", "--host=127.0.0.1", "--port=0", "--threads=1",
                       "--stats", "--tls_cert=" + pki.path("server.pem"),
                       "--tls_key=" + pki.path("server.key")});
  const uint16_t port = listening_port(server);
  ASSERT_NE(port, 0);
  for (const std::vector<std::string>& extra :
       {std::vector<std::string>{"--size=100", "--tls_server_name=localhost"},
        {"--hello", "--size=70000"}}) {  // server name: --host (127.0.0.1, an IP SAN)
    ChildProcess client(client_args(port, pki, extra));
    const std::string json = client.read_all();
    EXPECT_EQ(client.wait(), 0) << json;
    EXPECT_NE(json.find("\"errors\":0"), std::string::npos) << json;
    EXPECT_NE(json.find("\"mismatches\":0"), std::string::npos) << json;
  }
  // The wrong name: every handshake fails, the client says why.
  ChildProcess wrong(client_args(port, pki, {"--tls_server_name=wrong.example", "--conns=1"}),
                     /*with_stderr=*/true);
  const std::string out = wrong.read_all();
  EXPECT_EQ(wrong.wait(), 1) << out;
  EXPECT_NE(out.find("hostname mismatch"), std::string::npos) << out;

  ASSERT_EQ(::kill(server.pid(), SIGTERM), 0);
  const std::string stats = server.read_all();
  EXPECT_EQ(server.wait(), 0);
  EXPECT_NE(stats.find("tls handshakes=8 failures=1"), std::string::npos) << stats;
}

TEST(TlsExamplesTest, ServerRefusesAMissingCertificate) {
  ChildProcess server({kBin + "sbmp_echo_server", "--host=127.0.0.1", "--port=0",
                       "--tls_cert=/nonexistent.pem", "--tls_key=/nonexistent.key"},
                      /*with_stderr=*/true);
  const std::string out = server.read_all();
  EXPECT_EQ(server.wait(), 1);
  EXPECT_NE(out.find("/nonexistent.pem"), std::string::npos) << out;
}

}  // namespace
}  // namespace coring::tls
