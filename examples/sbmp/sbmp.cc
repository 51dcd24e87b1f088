// sbmp: read and write SBMP/1.3 frames from the command line.
//
//   sbmp parse [--format=json|text] [--hex] [--max_frame=N] [FILE|-]
//   sbmp make --type=T [--payload=TEXT | --payload_hex=HEX] [--request_id=N]
//             [--trace=TRACEPARENT] [--state_version=N] [--timeout_us=N]
//             [--chk] [--version=0x13] [--hex]
//
// Exit codes: 0 fine, 1 bad arguments or input that cannot be read,
// 2 protocol error (parse), 3 stream ends inside a frame (parse).
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "command_line.h"
#include "coring/codec/decoder.h"
#include "coring/codec/encoder.h"
#include "coring/codec/error.h"
#include "coring/codec/extensions.h"
#include "frame_format.h"

ABSL_FLAG(std::string, format, "text",
          "parse: output format, 'text' (one aligned line per frame, for people) or 'json' (one "
          "JSON object per frame, the SBMP vectors' frame object shape)");
ABSL_FLAG(bool, hex, false,
          "parse: the input is hex text (whitespace ignored) instead of binary; make: write the "
          "frame as hex text and a newline instead of binary");
ABSL_FLAG(uint32_t, max_frame, coring::sbmp::kDefaultMaxFrame,
          "parse: the largest frame `length` accepted (FRAME_TOO_LARGE above it)");
ABSL_FLAG(std::string, type, "",
          "make (required): message type, a number (decimal or 0x hex, 0..65535) or HELLO, "
          "HELLO_ACK, PING, PONG, GOAWAY");
ABSL_FLAG(std::string, payload, "", "make: the payload as text");
ABSL_FLAG(std::string, payload_hex, "", "make: the payload as hex digits (instead of --payload)");
ABSL_FLAG(std::string, request_id, "", "make: add a REQUEST_ID extension (u64)");
ABSL_FLAG(std::string, trace, "",
          "make: add a TRACE_CONTEXT extension from a W3C traceparent, "
          "VV-<32 hex trace id>-<16 hex parent id>-FF");
ABSL_FLAG(std::string, state_version, "", "make: add a STATE_VERSION extension (u64)");
ABSL_FLAG(std::string, timeout_us, "", "make: add a TIMEOUT_US extension (u32 microseconds)");
ABSL_FLAG(bool, chk, false, "make: set CHK and append the CRC-32C trailer");
ABSL_FLAG(std::string, version, "0x13",
          "make: the header's version byte, as 0xMm, decimal, or M.m (e.g. 1.3)");

namespace coring::sbmp::tool {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitUsage = 1;
constexpr int kExitProtocolError = 2;
constexpr int kExitIncomplete = 3;

int usage_error(const std::string& message) {
  std::fprintf(stderr, "sbmp: %s (see sbmp --help)\n", message.c_str());
  return kExitUsage;
}

// Whether a flag was given a value other than its default (this Abseil does
// not say whether a flag was on the command line). An empty text flag counts
// as not given: `--payload=` and no --payload both mean an empty payload.
bool specified(const absl::Flag<std::string>& flag) { return !absl::GetFlag(flag).empty(); }
bool specified(const absl::Flag<bool>& flag) { return absl::GetFlag(flag); }
bool specified(const absl::Flag<uint32_t>& flag) {
  return absl::GetFlag(flag) != coring::sbmp::kDefaultMaxFrame;
}

// Decimal or 0x-prefixed hex, at most `max`.
absl::StatusOr<uint64_t> parse_number(absl::string_view flag, absl::string_view text,
                                      uint64_t max) {
  uint64_t value = 0;
  bool ok = false;
  if (absl::StartsWith(text, "0x") || absl::StartsWith(text, "0X")) {
    ok = text.size() > 2 && absl::SimpleHexAtoi(text.substr(2), &value);
  } else {
    ok = !text.empty() && std::isdigit(static_cast<unsigned char>(text[0])) &&
         absl::SimpleAtoi(text, &value);
  }
  if (!ok || value > max) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--%s=%s: not a number in 0..%d", flag, text, max));
  }
  return value;
}

absl::StatusOr<uint16_t> parse_type(absl::string_view text) {
  std::string upper = absl::AsciiStrToUpper(text);
  if (upper == "HELLO") return kTypeHello;
  if (upper == "HELLO_ACK") return kTypeHelloAck;
  if (upper == "PING") return kTypePing;
  if (upper == "PONG") return kTypePong;
  if (upper == "GOAWAY") return kTypeGoaway;
  absl::StatusOr<uint64_t> n = parse_number("type", text, 0xFFFF);
  if (!n.ok()) return n.status();
  return static_cast<uint16_t>(*n);
}

absl::StatusOr<uint8_t> parse_version(absl::string_view text) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, '.');
  if (parts.size() == 2) {
    uint32_t major, minor;
    if (absl::SimpleAtoi(parts[0], &major) && absl::SimpleAtoi(parts[1], &minor) && major < 16 &&
        minor < 16) {
      return static_cast<uint8_t>(major << 4 | minor);
    }
    return absl::InvalidArgumentError(
        absl::StrFormat("--version=%s: major and minor must be 0..15", text));
  }
  absl::StatusOr<uint64_t> n = parse_number("version", text, 0xFF);
  if (!n.ok()) return n.status();
  return static_cast<uint8_t>(*n);
}

absl::StatusOr<TraceContext> parse_traceparent(absl::string_view text) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, '-');
  auto bad = absl::InvalidArgumentError(
      absl::StrFormat("--trace=%s: expected VV-<32 hex>-<16 hex>-FF (a W3C traceparent)", text));
  if (parts.size() != 4 || parts[0].size() != 2 || parts[1].size() != 32 || parts[2].size() != 16 ||
      parts[3].size() != 2) {
    return bad;
  }
  auto version = parse_hex(parts[0]), trace_id = parse_hex(parts[1]),
       parent_id = parse_hex(parts[2]), flags = parse_hex(parts[3]);
  if (!version || !trace_id || !parent_id || !flags) return bad;
  TraceContext tc;
  tc.version = (*version)[0];
  std::copy(trace_id->begin(), trace_id->end(), tc.trace_id.begin());
  std::copy(parent_id->begin(), parent_id->end(), tc.parent_id.begin());
  tc.trace_flags = (*flags)[0];
  return tc;
}

// Flags of the other subcommand are mistakes worth reporting.
std::string misplaced_flag(bool parse) {
  struct Named {
    const char* name;
    bool set;
  };
  const Named parse_only[] = {{"format", absl::GetFlag(FLAGS_format) != "text"},
                              {"max_frame", specified(FLAGS_max_frame)}};
  const Named make_only[] = {{"type", specified(FLAGS_type)},
                             {"payload", specified(FLAGS_payload)},
                             {"payload_hex", specified(FLAGS_payload_hex)},
                             {"request_id", specified(FLAGS_request_id)},
                             {"trace", specified(FLAGS_trace)},
                             {"state_version", specified(FLAGS_state_version)},
                             {"timeout_us", specified(FLAGS_timeout_us)},
                             {"chk", specified(FLAGS_chk)},
                             {"version", absl::GetFlag(FLAGS_version) != "0x13"}};
  for (const Named& n : parse ? absl::MakeConstSpan(make_only) : absl::MakeConstSpan(parse_only)) {
    if (n.set) return n.name;
  }
  return "";
}

int run_make(const std::vector<char*>& args) {
  if (args.size() > 2) return usage_error(absl::StrFormat("make takes no argument '%s'", args[2]));
  if (std::string wrong = misplaced_flag(false); !wrong.empty()) {
    return usage_error(absl::StrFormat("--%s applies to 'sbmp parse', not 'make'", wrong));
  }
  if (!specified(FLAGS_type)) return usage_error("make needs --type");
  if (specified(FLAGS_max_frame) || absl::GetFlag(FLAGS_format) != "text") {
    return usage_error("--format and --max_frame apply to 'sbmp parse', not 'make'");
  }
  absl::StatusOr<uint16_t> type = parse_type(absl::GetFlag(FLAGS_type));
  if (!type.ok()) return usage_error(std::string(type.status().message()));
  absl::StatusOr<uint8_t> version = parse_version(absl::GetFlag(FLAGS_version));
  if (!version.ok()) return usage_error(std::string(version.status().message()));

  if (specified(FLAGS_payload) && specified(FLAGS_payload_hex)) {
    return usage_error("give --payload or --payload_hex, not both");
  }
  std::vector<uint8_t> payload;
  if (specified(FLAGS_payload_hex)) {
    auto bytes = parse_hex(absl::GetFlag(FLAGS_payload_hex));
    if (!bytes) return usage_error("--payload_hex: an even number of hex digits expected");
    payload = *std::move(bytes);
  } else {
    std::string text = absl::GetFlag(FLAGS_payload);
    payload.assign(text.begin(), text.end());
  }

  ExtensionBuilder ext;
  if (specified(FLAGS_request_id)) {
    auto n = parse_number("request_id", absl::GetFlag(FLAGS_request_id), UINT64_MAX);
    if (!n.ok()) return usage_error(std::string(n.status().message()));
    ext.set_request_id(*n);
  }
  if (specified(FLAGS_trace)) {
    auto tc = parse_traceparent(absl::GetFlag(FLAGS_trace));
    if (!tc.ok()) return usage_error(std::string(tc.status().message()));
    ext.set_trace_context(*tc);
  }
  if (specified(FLAGS_state_version)) {
    auto n = parse_number("state_version", absl::GetFlag(FLAGS_state_version), UINT64_MAX);
    if (!n.ok()) return usage_error(std::string(n.status().message()));
    ext.set_state_version(*n);
  }
  if (specified(FLAGS_timeout_us)) {
    auto n = parse_number("timeout_us", absl::GetFlag(FLAGS_timeout_us), UINT32_MAX);
    if (!n.ok()) return usage_error(std::string(n.status().message()));
    ext.set_timeout_us(static_cast<uint32_t>(*n));
  }

  Frame frame = make_frame(*type, payload, ext.view());
  EncodeOptions options{.version = *version, .chk = absl::GetFlag(FLAGS_chk)};
  absl::StatusOr<Header> header = frame_header(frame, options);
  if (!header.ok()) return usage_error(std::string(header.status().message()));
  std::vector<uint8_t> out(header->frame_size());
  absl::StatusOr<size_t> n = encode_frame(frame, options, absl::MakeSpan(out));
  if (!n.ok()) return usage_error(std::string(n.status().message()));
  if (absl::GetFlag(FLAGS_hex)) {
    std::string text = hex(out) + "\n";
    std::fwrite(text.data(), 1, text.size(), stdout);
  } else {
    std::fwrite(out.data(), 1, out.size(), stdout);
  }
  return std::fflush(stdout) == 0 ? kExitOk : usage_error("cannot write to stdout");
}

// Turns hex text into bytes across reads (a digit pair may straddle two).
class HexReader {
 public:
  // Appends the bytes of `text` to `out`; false on a character that is
  // neither a hex digit nor whitespace.
  bool feed(absl::string_view text, std::vector<uint8_t>& out, std::string& error) {
    for (char c : text) {
      if (std::isspace(static_cast<unsigned char>(c))) continue;
      int digit =
          std::isxdigit(static_cast<unsigned char>(c))
              ? (std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : (c | 0x20) - 'a' + 10)
              : -1;
      if (digit < 0) {
        error = absl::StrFormat("input is not hex: character 0x%02x at input byte %d",
                                static_cast<unsigned char>(c), position_);
        return false;
      }
      ++position_;
      if (pending_ < 0) {
        pending_ = digit;
      } else {
        out.push_back(static_cast<uint8_t>(pending_ << 4 | digit));
        pending_ = -1;
      }
    }
    return true;
  }
  bool odd() const { return pending_ >= 0; }

 private:
  int pending_ = -1;
  uint64_t position_ = 0;
};

int run_parse(const std::vector<char*>& args) {
  if (args.size() > 3) return usage_error("parse takes at most one FILE");
  if (std::string wrong = misplaced_flag(true); !wrong.empty()) {
    return usage_error(absl::StrFormat("--%s applies to 'sbmp make', not 'parse'", wrong));
  }
  std::string format = absl::GetFlag(FLAGS_format);
  if (format != "json" && format != "text") {
    return usage_error(absl::StrFormat("--format=%s: use json or text", format));
  }
  bool json = format == "json";
  std::string path = args.size() == 3 ? args[2] : "-";
  std::FILE* in = stdin;
  if (path != "-") {
    in = std::fopen(path.c_str(), "rb");
    if (in == nullptr) {
      return usage_error(absl::StrFormat("cannot open %s: %s", path, std::strerror(errno)));
    }
  }
  auto close_input = [&] {
    if (in != stdin) std::fclose(in);
  };

  Decoder decoder({.max_frame = absl::GetFlag(FLAGS_max_frame)});
  HexReader hex_reader;
  bool hex_input = absl::GetFlag(FLAGS_hex);
  std::vector<char> chunk(1 << 16);
  std::vector<uint8_t> bytes;
  for (;;) {
    size_t n = std::fread(chunk.data(), 1, chunk.size(), in);
    if (n == 0) {
      if (std::ferror(in)) {
        close_input();
        return usage_error(absl::StrFormat("cannot read %s", path));
      }
      break;
    }
    absl::Span<const uint8_t> input;
    if (hex_input) {
      bytes.clear();
      std::string error;
      if (!hex_reader.feed(absl::string_view(chunk.data(), n), bytes, error)) {
        close_input();
        return usage_error(error);
      }
      input = bytes;
    } else {
      input = absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(chunk.data()), n);
    }
    for (;;) {
      absl::StatusOr<std::optional<Frame>> next = decoder.next(input);
      if (!next.ok()) {
        close_input();
        FrameError e = frame_error(next.status()).value_or(FrameError{});
        std::string line =
            json ? error_json(e, next.status().message()) : error_text(e, next.status().message());
        std::printf("%s\n", line.c_str());
        return kExitProtocolError;
      }
      if (!next->has_value()) break;
      std::string line = json ? frame_json(**next) : frame_text(**next);
      std::printf("%s\n", line.c_str());
    }
  }
  close_input();
  if (hex_reader.odd()) return usage_error("hex input ends with half a byte");
  if (decoder.mid_frame()) {
    std::string line = json ? incomplete_json(decoder.offset()) : incomplete_text(decoder.offset());
    std::printf("%s\n", line.c_str());
    return kExitIncomplete;
  }
  return kExitOk;
}

}  // namespace
}  // namespace coring::sbmp::tool

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "reads and writes SBMP/1.3 frames.\n\n"
      "Usage:\n"
      "  sbmp parse [--format=json|text] [--hex] [--max_frame=N] [FILE|-]\n"
      "      Decodes a byte stream (FILE or stdin; binary, or hex text with --hex) and prints\n"
      "      one line per frame. A protocol error ends with an error line (exit 2); a stream\n"
      "      that ends inside a frame ends with an incomplete line (exit 3).\n"
      "  sbmp make --type=T [--payload=TEXT | --payload_hex=HEX] [--request_id=N]\n"
      "            [--trace=TRACEPARENT] [--state_version=N] [--timeout_us=N] [--chk]\n"
      "            [--version=0x13] [--hex]\n"
      "      Writes one frame to stdout. `sbmp make ... | sbmp parse` round-trips.\n\n"
      "Exit codes: 0 ok, 1 bad arguments or unreadable input, 2 protocol error,\n"
      "3 incomplete stream.");
  std::vector<char*> args = coring::examples::parse_command_line(argc, argv);
  if (args.size() < 2) return coring::sbmp::tool::usage_error("missing subcommand: parse or make");
  std::string command = args[1];
  if (command == "parse") return coring::sbmp::tool::run_parse(args);
  if (command == "make") return coring::sbmp::tool::run_make(args);
  return coring::sbmp::tool::usage_error(
      absl::StrFormat("unknown subcommand '%s': use parse or make", command));
}
