#include "frame_format.h"

#include <algorithm>
#include <cctype>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "coring/codec/control.h"
#include "coring/codec/extensions.h"

namespace coring::sbmp::tool {
namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

uint64_t big_endian(absl::Span<const uint8_t> v) {
  uint64_t x = 0;
  for (uint8_t b : v) x = (x << 8) | b;
  return x;
}

std::string extension_json(const Extension& e) {
  std::string out = absl::StrFormat(R"({"kind":%d)", e.kind);
  absl::string_view name = extension_name(e.kind);
  if (!name.empty()) absl::StrAppend(&out, R"(,"name":")", name, "\"");
  switch (e.kind) {
    case kExtRequestId:
    case kExtStateVersion:
    case kExtTimeoutUs:
      absl::StrAppend(&out, R"(,"value":)", big_endian(e.value));
      break;
    case kExtTraceContext:
      absl::StrAppend(&out,
                      absl::StrFormat(R"(,"value":{"version":%d,"trace_id":"%s","parent_id":"%s",)"
                                      R"("trace_flags":%d})",
                                      e.value[0], hex(e.value.subspan(1, 16)),
                                      hex(e.value.subspan(17, 8)), e.value[25]));
      break;
    default:
      break;
  }
  absl::StrAppend(&out, R"(,"hex":")", hex(e.value), "\"}");
  return out;
}

std::string type_name(uint16_t type) {
  switch (type) {
    case kTypeHello:
      return "HELLO";
    case kTypeHelloAck:
      return "HELLO_ACK";
    case kTypePing:
      return "PING";
    case kTypePong:
      return "PONG";
    case kTypeGoaway:
      return "GOAWAY";
    default:
      return is_control_type(type) ? "reserved" : "app";
  }
}

// Printable preview of a payload: hex and text of its first bytes.
std::string preview(absl::Span<const uint8_t> payload) {
  constexpr size_t kShown = 24;
  auto head = payload.subspan(0, std::min(payload.size(), kShown));
  std::string text;
  for (uint8_t b : head) text += std::isprint(b) ? static_cast<char>(b) : '.';
  return absl::StrFormat("%s%s \"%s\"%s", hex(head), payload.size() > kShown ? "..." : "", text,
                         payload.size() > kShown ? "..." : "");
}

}  // namespace

std::string hex(absl::Span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out += kDigits[b >> 4];
    out += kDigits[b & 0xF];
  }
  return out;
}

std::optional<std::vector<uint8_t>> parse_hex(absl::string_view text) {
  if (text.size() % 2 != 0) return std::nullopt;
  std::vector<uint8_t> out;
  out.reserve(text.size() / 2);
  for (size_t i = 0; i < text.size(); i += 2) {
    int hi = hex_digit(text[i]), lo = hex_digit(text[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<uint8_t>(hi << 4 | lo));
  }
  return out;
}

std::string json_string(absl::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u >= 0x7F) {
      // Texts are not validated as UTF-8 (SBMP.md 4): escape every non-ASCII
      // byte so the line is always valid JSON.
      absl::StrAppend(&out, absl::StrFormat("\\u%04x", u));
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string frame_json(const Frame& f) {
  std::string ext;
  for (const Extension& e : f.extensions) {
    absl::StrAppend(&ext, ext.empty() ? "" : ",", extension_json(e));
  }
  return absl::StrFormat(
      R"({"offset":%d,"version":"%d.%d","flags":[%s],"type":%d,"length":%d,"ext_len":%d,)"
      R"("extensions":[%s],"payload_hex":"%s"})",
      f.offset, version_major(f.version()), version_minor(f.version()), f.chk() ? R"("CHK")" : "",
      f.type(), f.header.length, f.header.ext_len, ext, hex(f.payload));
}

std::string error_json(const FrameError& e, absl::string_view message) {
  return absl::StrFormat(R"({"error":{"code":"%s","offset":%d,"field":"%s","message":%s}})",
                         error_code_name(e.code), e.offset, error_field_name(e.field),
                         json_string(message));
}

std::string incomplete_json(uint64_t offset) {
  return absl::StrFormat(R"({"incomplete":{"offset":%d}})", offset);
}

std::string frame_text(const Frame& f) {
  std::string ext;
  for (const Extension& e : f.extensions) {
    absl::string_view name = extension_name(e.kind);
    std::string value;
    if (e.kind == kExtRequestId || e.kind == kExtStateVersion || e.kind == kExtTimeoutUs) {
      value = absl::StrCat(big_endian(e.value));
    } else if (e.kind == kExtTraceContext) {
      value = absl::StrFormat("%02x-%s-%s-%02x", e.value[0], hex(e.value.subspan(1, 16)),
                              hex(e.value.subspan(17, 8)), e.value[25]);
    } else {
      value = e.value.empty() ? "(empty)" : hex(e.value);
    }
    absl::StrAppend(&ext, " ", name.empty() ? absl::StrFormat("0x%02x", e.kind) : std::string(name),
                    "=", value);
  }
  return absl::StrFormat("@%-8d v%d.%-2d %-3s 0x%04x %-9s len=%-8d ext=%-5d payload=%d B%s%s%s",
                         f.offset, version_major(f.version()), version_minor(f.version()),
                         f.chk() ? "CHK" : "-", f.type(), type_name(f.type()), f.header.length,
                         f.header.ext_len, f.payload.size(), f.payload.empty() ? "" : " ",
                         f.payload.empty() ? "" : preview(f.payload),
                         ext.empty() ? "" : absl::StrCat("  ext:", ext));
}

std::string error_text(const FrameError& e, absl::string_view message) {
  // The message already names code, offset and field; say it once.
  if (absl::StrContains(message, error_code_name(e.code))) return absl::StrCat("error: ", message);
  return absl::StrFormat("error: %s in the frame at offset %d (field %s): %s",
                         error_code_name(e.code), e.offset, error_field_name(e.field), message);
}

std::string incomplete_text(uint64_t offset) {
  return absl::StrFormat("incomplete: the stream ends inside the frame at offset %d", offset);
}

}  // namespace coring::sbmp::tool
