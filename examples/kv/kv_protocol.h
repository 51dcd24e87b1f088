// The kv example's messages: SBMP application frames, the key and value in
// the payload, the version in STATE_VERSION (SBMP.md 1.2).
//
//   GET     0x0201  payload: key
//   PUT     0x0202  payload: u16 key length (big-endian) | key | value;
//                   STATE_VERSION: the write's version (absent: stored + 1)
//   DELETE  0x0203  payload: key; STATE_VERSION as for PUT
//   OK      0x0280  payload: the value (GET) or empty; STATE_VERSION: stored
//   ERROR   0x0290  payload: u8 KvError | message; STATE_VERSION: the stored
//                   version (kStale)
// Replies also carry the request's TRACE_CONTEXT (same trace id, the
// owner's own parent id) and two application extensions: 0x80 the thread
// that owns the key, 0x81 the thread that received the request.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/types/span.h"

namespace coring::kv {

inline constexpr uint16_t kGet = 0x0201;
inline constexpr uint16_t kPut = 0x0202;
inline constexpr uint16_t kDelete = 0x0203;
inline constexpr uint16_t kOk = 0x0280;
inline constexpr uint16_t kError = 0x0290;
inline constexpr uint8_t kExtOwner = 0x80;
inline constexpr uint8_t kExtReceiver = 0x81;

enum class KvError : uint8_t {
  kNotFound = 1,
  kStale = 2,        // an older version than the stored one
  kTooLarge = 3,     // key or value over the server's limit
  kOutOfMemory = 4,  // over --max_memory
  kBadRequest = 5,
};

inline void encode_put(std::vector<uint8_t>& out, std::string_view key, std::string_view value) {
  out.clear();
  out.push_back(static_cast<uint8_t>(key.size() >> 8));
  out.push_back(static_cast<uint8_t>(key.size()));
  out.insert(out.end(), key.begin(), key.end());
  out.insert(out.end(), value.begin(), value.end());
}

// PUT's key and value, or nullopt when the payload is malformed.
struct PutView {
  std::string_view key;
  std::string_view value;
};
inline std::optional<PutView> decode_put(absl::Span<const uint8_t> p) {
  if (p.size() < 2) return std::nullopt;
  const size_t n = (size_t{p[0]} << 8) | p[1];
  if (p.size() < 2 + n) return std::nullopt;
  const char* base = reinterpret_cast<const char*>(p.data());
  return PutView{std::string_view(base + 2, n), std::string_view(base + 2 + n, p.size() - 2 - n)};
}

inline std::string_view as_string(absl::Span<const uint8_t> p) {
  return std::string_view(reinterpret_cast<const char*>(p.data()), p.size());
}

}  // namespace coring::kv
