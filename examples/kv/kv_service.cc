#include "kv_service.h"

#include <array>
#include <optional>
#include <string>

#include "absl/strings/str_format.h"
#include "coring/core/switch_to.h"

namespace coring::kv {
namespace {

// FNV-1a: the same owner for a key in every run.
uint64_t hash_key(std::string_view key) {
  uint64_t h = 14695981039346656037ull;
  for (char c : key) {
    h ^= static_cast<uint8_t>(c);
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace

KvService::KvService(Runtime& runtime, KvServiceOptions options) : options_(options) {
  for (size_t i = 0; i < runtime.size(); ++i) loops_.push_back(&runtime.loop(i));
  for (size_t i = 0; i < loops_.size(); ++i) {
    shards_.push_back(
        std::make_unique<Shard>(KvShardOptions{.max_bytes = options_.max_memory / loops_.size()}));
    shards_.back()->span_state = 0x5eed0000ull + i;
  }
}

KvService::KvService(std::vector<EventLoop*> loops, KvServiceOptions options)
    : options_(options), loops_(std::move(loops)) {
  for (size_t i = 0; i < loops_.size(); ++i) {
    shards_.push_back(
        std::make_unique<Shard>(KvShardOptions{.max_bytes = options_.max_memory / loops_.size()}));
    shards_.back()->span_state = 0x5eed0000ull + i;
  }
}

size_t KvService::owner_of(std::string_view key) const { return hash_key(key) % loops_.size(); }

size_t KvService::index_of(const EventLoop* loop) const {
  for (size_t i = 0; i < loops_.size(); ++i) {
    if (loops_[i] == loop) return i;
  }
  return 0;
}

Task<KvService::Reply> KvService::handle(Call& call) {
  const sbmp::Frame& req = call.request();
  std::vector<uint8_t>& out = call.reply_buffer();
  sbmp::ExtensionBuilder& ext = call.reply_header();
  out.clear();
  ext.clear();
  auto error = [&](KvError code, uint64_t version, const std::string& message) {
    out.assign(1, static_cast<uint8_t>(code));
    out.insert(out.end(), message.begin(), message.end());
    if (version > 0) ext.set_state_version(version);
    return sbmp::make_frame(kError, out, ext.view());
  };

  std::string_view key;
  std::string_view value;
  if (req.type() == kPut) {
    std::optional<PutView> put = decode_put(req.payload);
    if (!put) co_return error(KvError::kBadRequest, 0, "malformed PUT payload");
    key = put->key;
    value = put->value;
  } else if (req.type() == kGet || req.type() == kDelete) {
    key = as_string(req.payload);
  } else {
    co_return error(KvError::kBadRequest, 0, absl::StrFormat("unknown type 0x%04x", req.type()));
  }
  if (key.empty()) co_return error(KvError::kBadRequest, 0, "empty key");
  if (key.size() > options_.max_key_size) {
    co_return error(KvError::kTooLarge, 0,
                    absl::StrFormat("key of %d bytes is over the limit of %d", key.size(),
                                    options_.max_key_size));
  }
  if (value.size() > options_.max_value_size) {
    co_return error(KvError::kTooLarge, 0,
                    absl::StrFormat("value of %d bytes is over the limit of %d", value.size(),
                                    options_.max_value_size));
  }

  EventLoop* home = EventLoop::current();
  const size_t home_index = index_of(home);
  const size_t owner = owner_of(key);
  if (owner != home_index) co_await switch_to(*loops_[owner]);  // forwarded to the owner

  // On the owner's thread: its shard, and nobody else's.
  Shard& shard = *shards_[owner];
  const std::optional<uint64_t> version = req.extensions.state_version();
  KvShard::Result r;
  if (req.type() == kGet) {
    r = shard.data.get(key);
  } else if (req.type() == kPut) {
    r = shard.data.put(key, value, version);
  } else {
    r = shard.data.erase(key, version);
  }
  sbmp::Frame reply;
  if (!r.error) {
    out.assign(r.value.begin(), r.value.end());  // copied before leaving the owner
    ext.set_state_version(r.version);
    reply = sbmp::make_frame(kOk, out, {});
  } else if (*r.error == KvError::kStale) {
    reply = error(KvError::kStale, r.version,
                  absl::StrFormat("version %d is older than the stored version %d",
                                  version.value_or(0), r.version));
  } else if (*r.error == KvError::kNotFound) {
    reply = error(KvError::kNotFound, 0, absl::StrFormat("no key '%s'", key));
  } else {
    reply = error(KvError::kOutOfMemory, 0,
                  absl::StrFormat("over the memory budget (--max_memory=%d, %d bytes per thread)",
                                  options_.max_memory, options_.max_memory / loops_.size()));
  }
  if (std::optional<sbmp::TraceContext> trace = req.extensions.trace_context()) {
    uint64_t z = (shard.span_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 31)) * 0xbf58476d1ce4e5b9ull;
    for (size_t i = 0; i < 8; ++i) trace->parent_id[i] = static_cast<uint8_t>(z >> (8 * i) | 1);
    ext.set_trace_context(*trace);
  }
  const std::array<uint8_t, 1> owner_byte{static_cast<uint8_t>(owner)};
  const std::array<uint8_t, 1> home_byte{static_cast<uint8_t>(home_index)};
  (void)ext.add(kExtOwner, owner_byte);
  (void)ext.add(kExtReceiver, home_byte);
  reply.extensions = ext.view();

  if (owner != home_index) co_await switch_to(*home);  // the reply goes out from home
  co_return reply;
}

}  // namespace coring::kv
