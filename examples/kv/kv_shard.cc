#include "kv_shard.h"

namespace coring::kv {

KvShard::Result KvShard::get(std::string_view key) const {
  auto it = entries_.find(absl::string_view(key.data(), key.size()));
  if (it == entries_.end() || it->second.deleted) {
    return {.error = KvError::kNotFound,
            .version = it == entries_.end() ? 0 : it->second.version,
            .value = {}};
  }
  return {.error = std::nullopt, .version = it->second.version, .value = it->second.value};
}

std::optional<KvShard::Result> KvShard::check_version(const Entry* e,
                                                      std::optional<uint64_t>& version) {
  const uint64_t stored = e != nullptr ? e->version : 0;
  if (!version) version = stored + 1;
  if (e != nullptr && *version < stored) {
    return Result{.error = KvError::kStale, .version = stored, .value = {}};
  }
  if (e != nullptr && *version == stored) {
    return Result{.error = std::nullopt, .version = stored, .value = {}};  // idempotent
  }
  return std::nullopt;
}

KvShard::Result KvShard::put(std::string_view key, std::string_view value,
                             std::optional<uint64_t> version) {
  auto it = entries_.find(absl::string_view(key.data(), key.size()));
  Entry* e = it == entries_.end() ? nullptr : &it->second;
  if (std::optional<Result> done = check_version(e, version)) return *done;
  const size_t old_bytes = e == nullptr ? 0 : key.size() + e->value.size() + kEntryOverhead;
  const size_t new_bytes = key.size() + value.size() + kEntryOverhead;
  if (bytes_ - old_bytes + new_bytes > options_.max_bytes) {
    return {.error = KvError::kOutOfMemory, .version = e == nullptr ? 0 : e->version, .value = {}};
  }
  if (e == nullptr) e = &entries_[std::string(key)];
  e->value.assign(value.data(), value.size());
  e->version = *version;
  e->deleted = false;
  bytes_ = bytes_ - old_bytes + new_bytes;
  return {.error = std::nullopt, .version = *version, .value = {}};
}

KvShard::Result KvShard::erase(std::string_view key, std::optional<uint64_t> version) {
  auto it = entries_.find(absl::string_view(key.data(), key.size()));
  if (it == entries_.end()) return {.error = KvError::kNotFound, .version = 0, .value = {}};
  Entry* e = &it->second;
  if (std::optional<Result> done = check_version(e, version)) return *done;
  bytes_ -= e->value.size();
  e->value = std::string();  // the tombstone keeps the key and version only
  e->version = *version;
  e->deleted = true;
  return {.error = std::nullopt, .version = *version, .value = {}};
}

}  // namespace coring::kv
