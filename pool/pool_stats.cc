#include "coring/pool/pool_stats.h"

#include <string>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_format.h"

namespace coring::pool {
namespace {

// Debian's Abseil has its own string_view type.
std::string escape(std::string_view s) {
  return absl::CHexEscape(absl::string_view(s.data(), s.size()));
}

bool is_lower(char c) { return c >= 'a' && c <= 'z'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

absl::Status bad_name(std::string_view name, std::string_view why) {
  return absl::InvalidArgumentError(absl::StrFormat(
      "pool name '%s' %s; expected domain.resource.v<major>, e.g. 'sbmp.echo.rx.v1' "
      "(lowercase [a-z0-9_] segments starting with a letter, at least two, then v<digits>)",
      escape(name), why));
}

// JSON string body: the names are validated, but the kind is free text.
std::string json_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += absl::StrFormat("\\u%04x", static_cast<unsigned char>(c));
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

absl::Status validate_pool_name(std::string_view name) {
  if (name.empty()) return bad_name(name, "is empty");
  if (name.size() > 128) return bad_name(name.substr(0, 32), "is longer than 128 characters");
  int segments = 0;
  size_t start = 0;
  while (true) {
    const size_t dot = name.find('.', start);
    const std::string_view seg =
        name.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    const bool last = dot == std::string_view::npos;
    if (seg.empty()) return bad_name(name, "has an empty segment");
    if (last) {
      if (seg.size() < 2 || seg[0] != 'v') return bad_name(name, "does not end in .v<major>");
      for (char c : seg.substr(1)) {
        if (!is_digit(c)) return bad_name(name, "does not end in .v<major>");
      }
      break;
    }
    if (!is_lower(seg[0])) {
      return bad_name(name, absl::StrFormat("has segment '%s' not starting with a-z", escape(seg)));
    }
    for (char c : seg) {
      if (!is_lower(c) && !is_digit(c) && c != '_') {
        return bad_name(name, absl::StrFormat("has segment '%s' with a character outside [a-z0-9_]",
                                              escape(seg)));
      }
    }
    ++segments;
    start = dot + 1;
  }
  if (segments < 2) return bad_name(name, "needs a domain and a resource before the version");
  return absl::OkStatus();
}

std::string PoolStats::to_text() const {
  return absl::StrFormat(
      "%s %s: allocs_total=%d frees_total=%d reuses_total=%d in_use=%d high_water=%d "
      "bytes_reserved=%d bytes_released=%d capacity_bytes=%d cross_thread_frees=%d huge_pages=%s%s",
      name, kind, allocs_total, frees_total, reuses_total, in_use, high_water, bytes_reserved,
      bytes_released, capacity_bytes, cross_thread_frees,
      huge_pages == HugePageMode::kNone ? "no" : "yes",
      huge_pages == HugePageMode::kNone ? "" : absl::StrFormat(" (%s)", to_string(huge_pages)));
}

std::string PoolStats::to_json() const {
  return absl::StrFormat(
      "{\"name\":\"%s\",\"kind\":\"%s\",\"allocs_total\":%d,\"frees_total\":%d,"
      "\"reuses_total\":%d,\"in_use\":%d,\"high_water\":%d,\"bytes_reserved\":%d,"
      "\"bytes_released\":%d,\"capacity_bytes\":%d,\"cross_thread_frees\":%d,\"huge_pages\":\"%s\","
      "\"huge_page_mode\":\"%s\"}",
      json_escape(name), json_escape(kind), allocs_total, frees_total, reuses_total, in_use,
      high_water, bytes_reserved, bytes_released, capacity_bytes, cross_thread_frees,
      huge_pages == HugePageMode::kNone ? "no" : "yes", to_string(huge_pages));
}

}  // namespace coring::pool
