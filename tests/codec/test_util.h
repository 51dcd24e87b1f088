// Helpers shared by the codec tests: hex conversion, reading files, and the
// SBMP vector cases from CORING_SBMP_VECTORS_DIR.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "json.h"

namespace coring::sbmp::testing {

inline std::string to_hex(absl::Span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out += kDigits[b >> 4];
    out += kDigits[b & 0xF];
  }
  return out;
}

inline std::vector<uint8_t> from_hex(absl::string_view hex) {
  std::vector<uint8_t> out;
  auto nibble = [](char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(nibble(hex[i]) << 4 | nibble(hex[i + 1])));
  }
  return out;
}

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline absl::Span<const uint8_t> as_bytes(const std::string& s) {
  return absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

struct VectorCase {
  std::string name;
  std::filesystem::path bin_path;
  std::string bin;
  Json expect;
};

// Every case in the vectors directory, sorted by name. Missing files or bad
// JSON come back as a case with an empty name (the caller fails on it).
inline std::vector<VectorCase> load_vector_cases() {
  std::vector<VectorCase> cases;
  std::filesystem::path dir(CORING_SBMP_VECTORS_DIR);
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return cases;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().extension() != ".json") continue;
    VectorCase c;
    c.bin_path = entry.path();
    c.bin_path.replace_extension(".bin");
    auto json = Json::parse(read_file(entry.path()));
    if (!json.ok() || !std::filesystem::exists(c.bin_path)) {
      cases.push_back({});
      continue;
    }
    c.name = entry.path().stem().string();
    c.bin = read_file(c.bin_path);
    c.expect = *std::move(json);
    cases.push_back(std::move(c));
  }
  std::sort(cases.begin(), cases.end(),
            [](const VectorCase& a, const VectorCase& b) { return a.name < b.name; });
  return cases;
}

inline constexpr size_t kMinVectorCases = 88;

}  // namespace coring::sbmp::testing
