// print_runtime_stats(): one block of counters per event-loop thread - its
// ring (LoopStats), its coroutine-frame slab pool and its registered-buffer
// arena, how its ring was set up, and its share of the server (NetStats) -
// then the server's connection counters. Each loop's figures are read on its
// own thread (they are owner-thread only), so call this while the Runtime is
// running, from any thread that is not one of its loops.
#pragma once

#include <cstdio>
#include <future>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_format.h"
#include "coring/core/event_loop.h"
#include "coring/core/runtime.h"
#include "coring/net/server.h"
#include "coring/pool/buffer_arena.h"
#include "coring/pool/slab_pool.h"

namespace coring::examples {

inline std::string loop_stats_text(EventLoop& loop) {
  std::string text = absl::StrFormat("  ring: %s\n", loop.stats().to_string());
  if (pool::SlabPool* slab = loop.slab_pool()) {
    absl::StrAppendFormat(&text, "  pool: %s\n", slab->stats().to_text());
  }
  if (pool::BufferArena* arena = loop.arena()) {
    absl::StrAppendFormat(&text, "  arena: %s (registered: %s)\n", arena->stats().to_text(),
                          loop.buffers_registered() ? "yes" : "no");
  }
  // How the kernel took the ring (after the counters: scripts read the line
  // after "thread N:").
  absl::StrAppendFormat(&text, "  setup: %s\n", loop.ring().describe());
  return text;
}

// With the server's NetContext counters on that loop (sends, copied /
// borrowed / adopted writes): read on the loop's thread too.
inline std::string loop_stats_text(EventLoop& loop, const net::Server& server) {
  std::string text = loop_stats_text(loop);
  if (std::optional<net::NetStats> net = server.net_stats(loop)) {
    absl::StrAppendFormat(&text, "  net: %s\n", net->to_string());
  }
  return text;
}

inline void print_runtime_stats(Runtime& rt, const net::Server& server, std::FILE* out) {
  for (size_t i = 0; i < rt.size(); ++i) {
    // Shared: a loop too busy to answer in time still sets it later.
    auto text = std::make_shared<std::promise<std::string>>();
    std::future<std::string> ready = text->get_future();
    EventLoop& loop = rt.loop(i);
    loop.post([&loop, &server, text] { text->set_value(loop_stats_text(loop, server)); });
    if (ready.wait_for(std::chrono::seconds(2)) != std::future_status::ready) {
      std::fprintf(out, "thread %zu: no answer\n", i);
      continue;
    }
    std::fprintf(out, "thread %zu:\n%s", i, ready.get().c_str());
  }
  std::fprintf(out, "connections: %s\n", server.stats().to_string().c_str());
  std::fflush(out);
}

}  // namespace coring::examples
