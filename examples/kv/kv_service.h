// KvService: the kv_server's request handler (net/channel_server.h), with
// the key space sharded across the Runtime's threads, shared-nothing: each
// thread owns one KvShard. A request that arrives on a thread that does not
// own its key moves to the owner (co_await switch_to(owner), the loop's
// cross-thread post), is answered from the owner's shard and moves back to
// write the reply. No locks on the data.
//
//   coring::kv::KvService service(rt, {.max_memory = 1 << 30});
//   server.serve<sbmp::Codec>([&service](FramedStream<sbmp::Codec> c) {
//     return net::serve_calls(std::move(c), service.handler());
//   });
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "coring/codec/codec.h"
#include "coring/core/event_loop.h"
#include "coring/core/runtime.h"
#include "coring/core/task.h"
#include "coring/net/channel_server.h"
#include "kv_shard.h"

namespace coring::kv {

struct KvServiceOptions {
  size_t max_key_size = 256;
  size_t max_value_size = 64 * 1024;
  // Stored data (keys, values, per-entry overhead) across all shards; each
  // of N threads gets 1/N of it.
  size_t max_memory = size_t{256} << 20;
};

class KvService {
 public:
  using Call = net::ServerCall<sbmp::Codec>;
  using Reply = absl::StatusOr<sbmp::Frame>;

  // The Runtime must be started (its loops exist).
  KvService(Runtime& runtime, KvServiceOptions options);
  KvService(std::vector<EventLoop*> loops, KvServiceOptions options);

  Task<Reply> handle(Call& call);
  auto handler() {
    return [this](Call& call) { return handle(call); };
  }

  // The thread owning `key` (stable for a given thread count).
  size_t owner_of(std::string_view key) const;

 private:
  // Per thread, touched only by that thread.
  struct alignas(64) Shard {
    explicit Shard(KvShardOptions o) : data(o) {}
    KvShard data;
    uint64_t span_state = 0;  // parent ids of replies' TRACE_CONTEXT
  };
  size_t index_of(const EventLoop* loop) const;

  KvServiceOptions options_;
  std::vector<EventLoop*> loops_;
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace coring::kv
