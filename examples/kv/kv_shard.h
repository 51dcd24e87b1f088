// KvShard: one thread's part of the key space - the entries it owns and the
// memory they use - with latest-wins versioning. Used only by its owner
// thread, so it has no locks.
//
//   KvShard shard({.max_bytes = 64 << 20});
//   KvShard::Result r = shard.put("k", "v", /*version=*/7);
//   if (r.error == KvError::kStale) ... r.version is the stored one
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "kv_protocol.h"

namespace coring::kv {

struct KvShardOptions {
  size_t max_bytes = 64 << 20;  // keys, values and a per-entry overhead
};

class KvShard {
 public:
  // What a write or read did: no error, or which; the version stored after
  // it (kStale: the newer one that refused it). get() points `value` into
  // the shard: copy it before the shard changes.
  struct Result {
    std::optional<KvError> error;
    uint64_t version = 0;
    std::string_view value;
  };
  static constexpr size_t kEntryOverhead = 64;

  explicit KvShard(KvShardOptions options) : options_(options) {}

  Result get(std::string_view key) const;
  // `version` unset: the stored version + 1. Older than stored: kStale.
  // Equal: nothing changes (idempotent). A deleted key keeps its version
  // (a tombstone), so an older write cannot bring it back.
  Result put(std::string_view key, std::string_view value, std::optional<uint64_t> version);
  Result erase(std::string_view key, std::optional<uint64_t> version);

  size_t bytes() const { return bytes_; }
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::string value;
    uint64_t version = 0;
    bool deleted = false;
  };
  // The version a write would store, or the refusal.
  static std::optional<Result> check_version(const Entry* e, std::optional<uint64_t>& version);

  KvShardOptions options_;
  absl::flat_hash_map<std::string, Entry> entries_;
  size_t bytes_ = 0;
};

}  // namespace coring::kv
