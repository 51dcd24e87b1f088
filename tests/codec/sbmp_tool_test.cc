// Runs the built `sbmp` tool (examples/sbmp) on every SBMP vector and checks
// its JSON output against the vectors' expectations, its exit codes, that
// `make | parse` round-trips, that bad arguments give exit 1 and one line, and
// that --help prints the usage to stdout and exits 0.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "json.h"
#include "test_util.h"

namespace coring::sbmp {
namespace {

using testing::Json;

const std::string kTool = CORING_BINARY_DIR "/examples/sbmp/sbmp";

struct ToolRun {
  int exit_code = -1;
  std::vector<std::string> lines;   // stdout
  std::vector<std::string> errors;  // stderr
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  for (absl::string_view l : absl::StrSplit(text, '\n', absl::SkipEmpty())) out.emplace_back(l);
  return out;
}

// A file name of this process's own: ctest runs the tests of this file in
// parallel processes.
std::string temp_path(const std::string& name) {
  return absl::StrCat(::testing::TempDir(), "/sbmp_tool_test.", getpid(), ".", name);
}

// A temp_path() that is removed when the test ends, however it ends.
class TempFile {
 public:
  explicit TempFile(const std::string& name) : path_(temp_path(name)) {}
  ~TempFile() { std::filesystem::remove(path_); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs `args` (a shell command line after the tool's path).
ToolRun run(const std::string& args) {
  std::string err_path = temp_path("stderr.txt");
  std::string command = absl::StrCat("'", kTool, "' ", args, " 2>'", err_path, "'");
  ToolRun r;
  std::FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return r;
  std::string out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, pipe)) > 0;) out.append(buf, n);
  int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.lines = lines_of(out);
  r.errors = lines_of(testing::read_file(err_path));
  std::filesystem::remove(err_path);
  return r;
}

// StrCat, not "'" + p.string() + "'": GCC 12 at -O3 reports a false-positive
// -Wrestrict inside libstdc++ for operator+(const char*, std::string&&).
std::string quoted(const std::filesystem::path& p) { return absl::StrCat("'", p.string(), "'"); }

class SbmpToolTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(std::filesystem::exists(kTool)) << kTool << " not built"; }
};

// Checks the JSON lines of `r` against a vector case's expectations.
void expect_matches(const ToolRun& r, const testing::VectorCase& c) {
  SCOPED_TRACE(c.name);
  const Json& want = c.expect;
  const auto& frames = want["frames"].items();
  bool error = !want["error"].is_null();
  bool incomplete = want["incomplete"].as_bool();
  ASSERT_EQ(r.lines.size(), frames.size() + (error || incomplete ? 1 : 0));
  for (size_t i = 0; i < frames.size(); ++i) {
    auto got = Json::parse(r.lines[i]);
    ASSERT_TRUE(got.ok()) << r.lines[i];
    EXPECT_EQ(*got, frames[i]) << r.lines[i] << "\nwant " << frames[i].dump();
  }
  if (error) {
    EXPECT_EQ(r.exit_code, 2);
    auto got = Json::parse(r.lines.back());
    ASSERT_TRUE(got.ok()) << r.lines.back();
    ASSERT_EQ(got->members().size(), 1u);
    const Json& e = (*got)["error"];
    EXPECT_EQ(e.members().size(), 4u);
    EXPECT_EQ(e["code"], want["error"]["code"]);
    EXPECT_EQ(e["offset"], want["error"]["offset"]);
    EXPECT_EQ(e["field"], want["error"]["field"]);
    EXPECT_EQ(e["message"].kind(), Json::Kind::kString);
    EXPECT_FALSE(e["message"].as_string().empty());
  } else if (incomplete) {
    EXPECT_EQ(r.exit_code, 3);
    uint64_t end = 0;
    if (!frames.empty()) {
      end = *frames.back()["offset"].as_u64() + 16 + *frames.back()["length"].as_u64();
    }
    EXPECT_EQ(r.lines.back(), absl::StrCat(R"({"incomplete":{"offset":)", end, "}}"));
  } else {
    EXPECT_EQ(r.exit_code, 0);
  }
  EXPECT_TRUE(r.errors.empty()) << r.errors.front();
}

TEST_F(SbmpToolTest, JsonOutputMatchesEveryVector) {
  auto cases = testing::load_vector_cases();
  ASSERT_GE(cases.size(), testing::kMinVectorCases);
  for (const auto& c : cases) {
    ToolRun r =
        run(absl::StrCat("parse --format=json --max_frame=", c.expect["max_frame"].number_text(),
                         " ", quoted(c.bin_path)));
    expect_matches(r, c);
  }
}

TEST_F(SbmpToolTest, HexInputFromStdinGivesTheSameResult) {
  auto cases = testing::load_vector_cases();
  ASSERT_GE(cases.size(), testing::kMinVectorCases);
  TempFile hex_path_file("input.hex");
  const std::string& hex_path = hex_path_file.path();
  for (const auto& c : cases) {
    // Hex with line breaks and spaces, which the tool ignores.
    std::string hex = testing::to_hex(testing::as_bytes(c.bin));
    std::string spaced;
    for (size_t i = 0; i < hex.size(); i += 2) {
      absl::StrAppend(&spaced, hex.substr(i, 2), i % 32 == 30 ? "\n" : " ");
    }
    std::ofstream(hex_path) << spaced;
    ToolRun r = run(absl::StrCat("parse --hex --format=json --max_frame=",
                                 c.expect["max_frame"].number_text(), " - < '", hex_path, "'"));
    expect_matches(r, c);
  }
}

TEST_F(SbmpToolTest, TextFormatHasOneLinePerFrameAndTheSameExitCodes) {
  auto cases = testing::load_vector_cases();
  ASSERT_GE(cases.size(), testing::kMinVectorCases);
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    ToolRun r = run(absl::StrCat("parse --max_frame=", c.expect["max_frame"].number_text(), " ",
                                 quoted(c.bin_path)));
    bool error = !c.expect["error"].is_null();
    bool incomplete = c.expect["incomplete"].as_bool();
    EXPECT_EQ(r.exit_code, error ? 2 : incomplete ? 3 : 0);
    ASSERT_EQ(r.lines.size(), c.expect["frames"].items().size() + (error || incomplete ? 1 : 0));
    if (error) {
      EXPECT_TRUE(absl::StartsWith(r.lines.back(), "error: ")) << r.lines.back();
      EXPECT_TRUE(absl::StrContains(r.lines.back(), c.expect["error"]["code"].as_string()));
    }
    if (incomplete) {
      EXPECT_TRUE(absl::StartsWith(r.lines.back(), "incomplete: "));
    }
  }
}

TEST_F(SbmpToolTest, MakeThenParseRoundTrips) {
  TempFile bin_file("made.bin");
  const std::string& bin = bin_file.path();
  ToolRun made = run(absl::StrCat(
      "make --type=0x0100 --payload='hello, world' --request_id=18446744073709551615 "
      "--trace=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 --state_version=7 "
      "--timeout_us=4294967295 --chk > '",
      bin, "'"));
  ASSERT_EQ(made.exit_code, 0);
  ToolRun parsed = run(absl::StrCat("parse --format=json '", bin, "'"));
  ASSERT_EQ(parsed.exit_code, 0);
  ASSERT_EQ(parsed.lines.size(), 1u);
  auto f = Json::parse(parsed.lines[0]);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ((*f)["type"].number_text(), "256");
  EXPECT_EQ((*f)["flags"].dump(), R"(["CHK"])");
  EXPECT_EQ((*f)["payload_hex"].as_string(), "68656c6c6f2c20776f726c64");
  const auto& ext = (*f)["extensions"].items();
  ASSERT_EQ(ext.size(), 4u);
  EXPECT_EQ(ext[0]["value"].number_text(), "18446744073709551615");
  EXPECT_EQ(ext[1]["value"]["trace_id"].as_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(ext[1]["value"]["trace_flags"].number_text(), "1");
  EXPECT_EQ(ext[2]["value"].number_text(), "7");
  EXPECT_EQ(ext[3]["value"].number_text(), "4294967295");

  // Hex out, hex in; a pipe; names and versions.
  ToolRun piped = run(absl::StrCat("make --type=PING --payload_hex=6869 --hex | '", kTool,
                                   "' parse --hex --format=json"));
  ASSERT_EQ(piped.exit_code, 0);
  ASSERT_EQ(piped.lines.size(), 1u);
  EXPECT_EQ(piped.lines[0],
            R"({"offset":0,"version":"1.3","flags":[],"type":3,"length":2,"ext_len":0,)"
            R"("extensions":[],"payload_hex":"6869"})");
  // The spec's example frame, byte for byte.
  ToolRun example = run("make --type=3 --payload=hi --hex");
  ASSERT_EQ(example.lines.size(), 1u);
  std::string spec =
      testing::read_file(std::string(CORING_SBMP_VECTORS_DIR) + "/spec_example_ping.bin");
  EXPECT_EQ(example.lines[0], testing::to_hex(testing::as_bytes(spec)));
  ToolRun v =
      run(absl::StrCat("make --type=300 --version=1.15 | '", kTool, "' parse --format=json"));
  ASSERT_EQ(v.lines.size(), 1u);
  EXPECT_TRUE(absl::StrContains(v.lines[0], R"("version":"1.15")")) << v.lines[0];
  ToolRun v2 =
      run(absl::StrCat("make --type=300 --version=0x21 | '", kTool, "' parse --format=json"));
  EXPECT_EQ(v2.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(v2.lines.back(), "UNSUPPORTED_VERSION"));
}

TEST_F(SbmpToolTest, BadArgumentsExitOneWithOneLine) {
  const char* bad[] = {
      "",
      "frobnicate",
      "make",
      "make --type=65536",
      "make --type=nope",
      "make --type=1 --payload=a --payload_hex=61",
      "make --type=1 --payload_hex=6",
      "make --type=1 --payload_hex=zz",
      "make --type=1 --request_id=-1",
      "make --type=1 --request_id=18446744073709551616",
      "make --type=1 --timeout_us=4294967296",
      "make --type=1 --trace=00-00",
      "make --type=1 --version=1.16",
      "make --type=1 --format=json",
      "make --type=1 extra",
      "parse --format=xml /dev/null",
      "parse --type=1 /dev/null",
      "parse /nonexistent/file",
      "parse a b",
      "parse --max_frame=-5 /dev/null",
      "parse --no_such_flag",
      "--no_such_flag",
      "parse --max_frame",
      "make --type",
  };
  for (const char* args : bad) {
    SCOPED_TRACE(args);
    ToolRun r = run(args);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_EQ(r.errors.size(), 1u) << absl::StrJoin(r.errors, "\n");
    EXPECT_TRUE(r.lines.empty());
  }
  TempFile bad_hex_file("bad.hex");
  const std::string& bad_hex = bad_hex_file.path();
  std::ofstream(bad_hex) << "53 42 4d 5g";
  ToolRun r = run(absl::StrCat("parse --hex '", bad_hex, "'"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.errors.size(), 1u);
  std::ofstream(bad_hex) << "53 42 4d 5";  // half a byte at the end
  r = run(absl::StrCat("parse --hex '", bad_hex, "'"));
  EXPECT_EQ(r.exit_code, 1);
}

TEST_F(SbmpToolTest, EmptyInputIsFine) {
  ToolRun r = run("parse --format=json /dev/null");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(r.lines.empty());
}

TEST_F(SbmpToolTest, HelpDescribesEveryFlagOnStdoutAndExitsZero) {
  ToolRun r = run("--help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(r.errors.empty()) << absl::StrJoin(r.errors, "\n");
  std::string out = absl::StrJoin(r.lines, "\n");
  EXPECT_TRUE(absl::StartsWith(out, "sbmp: reads and writes SBMP/1.3 frames.")) << out;
  EXPECT_TRUE(absl::StrContains(out, "Usage:")) << out;
  EXPECT_TRUE(absl::StrContains(out, "sbmp parse")) << out;
  EXPECT_TRUE(absl::StrContains(out, "sbmp make")) << out;
  for (const char* flag :
       {"--format", "--hex", "--max_frame", "--type", "--payload", "--payload_hex", "--request_id",
        "--trace", "--state_version", "--timeout_us", "--chk", "--version"}) {
    EXPECT_TRUE(absl::StrContains(out, flag)) << flag;
  }
  // Only the tool's own flags, not Abseil's.
  EXPECT_FALSE(absl::StrContains(out, "--flagfile")) << out;
}

TEST_F(SbmpToolTest, EveryHelpSpellingExitsZeroEvenWithOtherArguments) {
  for (const char* args : {"-h", "-help", "--helpfull", "--helpshort", "--help=format",
                           "parse --help", "make --type=1 --help", "--no_such_flag --help"}) {
    SCOPED_TRACE(args);
    ToolRun r = run(args);
    EXPECT_EQ(r.exit_code, 0);
    ASSERT_FALSE(r.lines.empty());
    EXPECT_TRUE(absl::StartsWith(r.lines[0], "sbmp: ")) << r.lines[0];
    EXPECT_TRUE(r.errors.empty()) << absl::StrJoin(r.errors, "\n");
  }
  // After "--" it is an argument: `parse` takes it as a FILE that is not there.
  ToolRun r = run("parse -- --help");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.errors.size(), 1u) << absl::StrJoin(r.errors, "\n");
}

}  // namespace
}  // namespace coring::sbmp
