// Millis: an Abseil flag type for a duration given either as a bare number of
// milliseconds ("250") or as an absl duration ("250ms", "1.5s", "2m").
//
//   ABSL_FLAG(coring::examples::Millis, idle_timeout, {}, "...");
//   std::chrono::milliseconds t = absl::GetFlag(FLAGS_idle_timeout).value;
//
// A bad value is rejected by absl::ParseCommandLine like any other flag: one
// line naming the flag, exit 1.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace coring::examples {

struct Millis {
  std::chrono::milliseconds value{0};
};

inline bool AbslParseFlag(absl::string_view text, Millis* out, std::string* error) {
  int64_t ms = 0;
  absl::Duration d;
  if (absl::SimpleAtoi(text, &ms)) {
    d = absl::Milliseconds(ms);
  } else if (!absl::ParseDuration(text, &d)) {
    *error = "expected milliseconds (250) or a duration (250ms, 1.5s, 2m)";
    return false;
  }
  if (d < absl::ZeroDuration() || d > absl::Hours(24 * 365)) {
    *error = "must be between 0 and a year";
    return false;
  }
  out->value = absl::ToChronoMilliseconds(d);
  return true;
}

inline std::string AbslUnparseFlag(Millis m) { return absl::StrCat(m.value.count()); }

}  // namespace coring::examples
