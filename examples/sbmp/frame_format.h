// How the sbmp tool prints frames: one JSON object per line with exactly the
// keys of a frame object in the SBMP vectors' .json files, or one aligned
// line for people. Also the tool's error/incomplete lines and hex helpers.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "coring/codec/error.h"
#include "coring/codec/frame.h"

namespace coring::sbmp::tool {

std::string hex(absl::Span<const uint8_t> bytes);
// Hex digits to bytes (no whitespace); nullopt on a bad digit or odd count.
std::optional<std::vector<uint8_t>> parse_hex(absl::string_view text);
std::string json_string(absl::string_view text);

// {"offset":0,"version":"1.3","flags":[],"type":256,...,"payload_hex":"..."}
std::string frame_json(const Frame& frame);
// {"error":{"code":"...","offset":N,"field":"...","message":"..."}}
std::string error_json(const FrameError& error, absl::string_view message);
// {"incomplete":{"offset":N}}
std::string incomplete_json(uint64_t offset);

std::string frame_text(const Frame& frame);
std::string error_text(const FrameError& error, absl::string_view message);
std::string incomplete_text(uint64_t offset);

}  // namespace coring::sbmp::tool
