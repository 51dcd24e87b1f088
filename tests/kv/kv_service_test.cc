// Tests of examples/kv/kv_service.*, in process: a kv Server on a two-thread
// Runtime, clients on threads of their own, so that requests land on a
// thread that does not own their key and are forwarded (ThreadSanitizer runs
// these: label "channel").
//  * latest-wins under concurrent writers: four client threads write the same
//    keys with interleaved versions; every key ends at its highest version
//    with that version's value;
//  * a forwarded request keeps its trace id (the reply's TRACE_CONTEXT comes
//    from the owner thread with a parent id of its own);
//  * limits: a key or value over the limit, and writes past the memory
//    budget, get clear error replies and the server goes on.
#include "kv_service.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "coring/core/runtime.h"
#include "coring/core/when_all.h"
#include "coring/net/channel.h"
#include "coring/net/client.h"
#include "coring/net/server.h"
#include "kv_protocol.h"

namespace coring::kv {
namespace {

using Codec = sbmp::Codec;
using Chan = net::Channel<Codec>;
using Conn = net::FramedStream<Codec>;

struct KvFixture {
  explicit KvFixture(KvServiceOptions options = {})
      : rt({.threads = 2}), server(rt, {.port = 0, .host = "127.0.0.1"}) {
    EXPECT_TRUE(rt.start().ok());
    service = std::make_unique<KvService>(rt, options);
    KvService* s = service.get();
    EXPECT_TRUE(
        server.serve<Codec>([s](Conn c) { return net::serve_calls(std::move(c), s->handler()); })
            .ok());
  }
  ~KvFixture() {
    server.shutdown();
    rt.stop();
  }
  uint16_t port() const { return server.address().port(); }

  Runtime rt;
  net::Server server;
  std::unique_ptr<KvService> service;
};

// Runs `body(channel)` on a loop of its own on this thread, over `conns`
// connections' worth of... one connection.
template <class Body>
absl::Status with_client(uint16_t port, Body body) {
  auto loop = EventLoop::create({});
  if (!loop.ok()) return loop.status();
  auto net = net::NetContext::create(**loop);
  if (!net.ok()) return net.status();
  absl::Status s =
      (*loop)->block_on([](net::NetContext& net, uint16_t port, Body& body) -> Task<absl::Status> {
        const sbmp::CodecOptions hello{.role = sbmp::Role::kClient};
        auto conn = co_await net::connect_framed(net, net::SocketAddress::ipv4_loopback(port),
                                                 Codec(hello));
        if (!conn.ok()) co_return conn.status();
        Chan ch(std::move(*conn), {.max_in_flight = 64});
        absl::Status st = co_await body(ch);
        co_await ch.close();
        co_return st;
      }(**net, port, body));
  for (int i = 0; i < 10000 && (*net)->live_streams() > 0; ++i) (*loop)->run_once(false);
  net->reset();
  return s;
}

std::string value_of(const std::string& key, uint64_t version) {
  return absl::StrCat(key, "@", version);
}

Task<absl::StatusOr<Chan::Reply>> put(Chan& ch, const std::string& key, const std::string& value,
                                      std::optional<uint64_t> version) {
  std::vector<uint8_t> payload;
  encode_put(payload, key, value);
  sbmp::ExtensionBuilder ext;
  if (version) ext.set_state_version(*version);
  const sbmp::Frame req = sbmp::make_frame(kPut, payload, ext.view());
  co_return co_await ch.call(req);
}

Task<absl::StatusOr<Chan::Reply>> get(Chan& ch, const std::string& key,
                                      std::optional<sbmp::TraceContext> trace = {}) {
  const sbmp::Frame req = sbmp::make_frame(
      kGet, absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(key.data()), key.size()));
  net::CallOptions<Codec> options;
  options.trace = trace;
  co_return co_await ch.call(req, options);
}

constexpr int kWriters = 4;
constexpr int kKeys = 16;
constexpr uint64_t kVersions = 40;  // writer w writes the versions v with (v - 1) % kWriters == w

TEST(KvServiceTest, LatestWinsUnderConcurrentWritersOnSeveralThreads) {
  KvFixture kv;
  std::vector<std::thread> writers;
  std::vector<absl::Status> results(kWriters);
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      results[static_cast<size_t>(w)] = with_client(kv.port(), [w](Chan& ch) -> Task<absl::Status> {
        std::vector<Task<absl::Status>> calls;
        for (int k = 0; k < kKeys; ++k) {
          calls.push_back([](Chan& ch, int w, int k) -> Task<absl::Status> {
            const std::string key = absl::StrCat("key", k);
            // Descending on some writers, ascending on others: stale writes happen.
            for (uint64_t i = 0; i < kVersions / kWriters; ++i) {
              const uint64_t round = (w % 2 == 0) ? i : kVersions / kWriters - 1 - i;
              const uint64_t v = 1 + round * kWriters + static_cast<uint64_t>(w);
              auto r = co_await put(ch, key, value_of(key, v), v);
              if (!r.ok()) co_return r.status();
              const uint64_t stored = (*r)->extensions.state_version().value_or(0);
              if ((*r)->type() == kOk ? stored != v : stored <= v) {
                co_return absl::InternalError(absl::StrCat("bad answer to v", v));
              }
            }
            co_return absl::OkStatus();
          }(ch, w, k));
        }
        for (const absl::Status& st : co_await when_all(std::move(calls))) {
          if (!st.ok()) co_return st;
        }
        co_return absl::OkStatus();
      });
    });
  }
  for (std::thread& t : writers) t.join();
  for (const absl::Status& st : results) ASSERT_TRUE(st.ok()) << st;
  absl::Status check = with_client(kv.port(), [](Chan& ch) -> Task<absl::Status> {
    for (int k = 0; k < kKeys; ++k) {
      const std::string key = absl::StrCat("key", k);
      auto r = co_await get(ch, key);
      if (!r.ok()) co_return r.status();
      if ((*r)->type() != kOk) co_return absl::InternalError(key + " missing");
      if ((*r)->extensions.state_version() != kVersions) {
        co_return absl::InternalError(key + " did not converge to the highest version");
      }
      if (as_string((*r)->payload) != value_of(key, kVersions)) {
        co_return absl::InternalError(key + " holds another version's value");
      }
    }
    co_return absl::OkStatus();
  });
  EXPECT_TRUE(check.ok()) << check;
}

TEST(KvServiceTest, ForwardedRequestKeepsItsTraceId) {
  KvFixture kv;
  absl::Status st = with_client(kv.port(), [](Chan& ch) -> Task<absl::Status> {
    sbmp::TraceContext trace;
    for (int i = 0; i < 16; ++i)
      trace.trace_id[static_cast<size_t>(i)] = static_cast<uint8_t>(i + 1);
    trace.parent_id[0] = 0x77;
    trace.trace_flags = 1;
    // Keys until one lives on the other thread than this connection's.
    for (int k = 0; k < 64; ++k) {
      const std::string key = absl::StrCat("trace-key-", k);
      auto p = co_await put(ch, key, "v", std::nullopt);
      if (!p.ok()) co_return p.status();
      auto r = co_await get(ch, key, trace);
      if (!r.ok()) co_return r.status();
      const auto owner = (*r)->extensions.find(kExtOwner);
      const auto receiver = (*r)->extensions.find(kExtReceiver);
      if (!owner || !receiver) co_return absl::InternalError("no owner/receiver extensions");
      if (owner->value[0] == receiver->value[0]) continue;  // not forwarded
      const std::optional<sbmp::TraceContext> back = (*r)->extensions.trace_context();
      if (!back) co_return absl::InternalError("the forwarded reply has no trace context");
      if (back->trace_id != trace.trace_id) co_return absl::InternalError("trace id changed");
      if (back->parent_id == trace.parent_id) co_return absl::InternalError("parent id reused");
      co_return absl::OkStatus();
    }
    co_return absl::InternalError("no key was forwarded");
  });
  EXPECT_TRUE(st.ok()) << st;
}

TEST(KvServiceTest, LimitsGiveClearErrors) {
  KvFixture kv({.max_key_size = 16, .max_value_size = 1000, .max_memory = 8 * 1024});
  absl::Status st = with_client(kv.port(), [](Chan& ch) -> Task<absl::Status> {
    auto expect_error = [](const absl::StatusOr<Chan::Reply>& r, KvError code,
                           const char* text) -> absl::Status {
      if (!r.ok()) return r.status();
      if ((*r)->type() != kError || (*r)->payload.empty() ||
          (*r)->payload[0] != static_cast<uint8_t>(code) ||
          std::string(as_string((*r)->payload)).find(text) == std::string::npos) {
        return absl::InternalError(absl::StrCat("expected an error naming '", text, "'"));
      }
      return absl::OkStatus();
    };
    auto big_key = co_await put(ch, std::string(17, 'k'), "v", std::nullopt);
    if (auto e = expect_error(big_key, KvError::kTooLarge, "over the limit"); !e.ok()) co_return e;
    auto big_value = co_await put(ch, "k", std::string(1001, 'v'), std::nullopt);
    if (auto e = expect_error(big_value, KvError::kTooLarge, "over the limit"); !e.ok())
      co_return e;
    // 4 KiB per thread: a few 900-byte values fit, then the budget refuses.
    bool refused = false;
    for (int i = 0; i < 32 && !refused; ++i) {
      auto r = co_await put(ch, absl::StrCat("m", i), std::string(900, 'x'), std::nullopt);
      if (!r.ok()) co_return r.status();
      if ((*r)->type() == kError) {
        if (auto e = expect_error(r, KvError::kOutOfMemory, "memory budget"); !e.ok()) co_return e;
        refused = true;
      }
    }
    if (!refused) co_return absl::InternalError("the memory budget never refused");
    auto small = co_await put(ch, "ok", "v", std::nullopt);  // still serving
    if (!small.ok()) co_return small.status();
    co_return absl::OkStatus();
  });
  EXPECT_TRUE(st.ok()) << st;
}

}  // namespace
}  // namespace coring::kv
