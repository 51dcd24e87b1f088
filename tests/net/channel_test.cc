// Tests of net/channel.h and net/channel_server.h over loopback with SBMP:
// replies matched out of order, deadlines on the client (late reply dropped
// and counted) and on the server (the handler's stop token), cancellation of
// one call, a connection dying under 1,000 pending calls, GOAWAY mid-traffic
// (received requests still answered, then Unavailable), trace context and
// deadline carried through a forwarding server (by hand, and by themselves:
// the handler's ambient CallContext), and both concurrency bounds.
#include "coring/net/channel.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "coring/codec/codec.h"
#include "coring/core/timer.h"
#include "coring/core/when_all.h"
#include "coring/net/channel_server.h"
#include "coring/net/client.h"
#include "coring/net/server.h"
#include "echo_fixtures.h"
#include "net_test_support.h"

namespace coring::net {
namespace {

using namespace std::chrono_literals;
using sbmp::Codec;
using Conn = FramedStream<Codec>;
using Chan = Channel<Codec>;
using Call = ServerCall<Codec>;
using Reply = absl::StatusOr<Codec::Frame>;
using testing::ServerOnLoop;
using Clock = std::chrono::steady_clock;

constexpr uint16_t kType = 0x0101;

std::vector<uint8_t> u32_bytes(uint32_t v) {
  std::vector<uint8_t> out(4);
  std::memcpy(out.data(), &v, 4);
  return out;
}
uint32_t u32_of(absl::Span<const uint8_t> p) {
  uint32_t v = 0;
  if (p.size() >= 4) std::memcpy(&v, p.data(), 4);
  return v;
}

Task<absl::StatusOr<std::unique_ptr<Chan>>> open_channel(NetContext& net, SocketAddress addr,
                                                         ChannelOptions options = {}) {
  const sbmp::CodecOptions hello{.role = sbmp::Role::kClient};
  absl::StatusOr<Conn> conn = co_await connect_framed(net, addr, Codec(hello));
  if (!conn.ok()) co_return conn.status();
  co_return std::make_unique<Chan>(std::move(*conn), options);
}

// Echo handler: the payload back, after payload[1] milliseconds if present.
Task<Reply> echo_after(Call& call) {
  const auto& req = call.request();
  if (req.payload.size() > 4 && req.payload[4] > 0) {
    (void)co_await sleep_for(std::chrono::milliseconds(req.payload[4]));
  }
  call.reply_buffer().assign(req.payload.begin(), req.payload.end());
  co_return sbmp::make_frame(kType, call.reply_buffer());
}

// One call whose reply must echo `value`.
Task<absl::Status> call_and_check(Chan& ch, uint32_t value, uint8_t delay_ms,
                                  CallOptions<Codec> options = {}) {
  std::vector<uint8_t> payload = u32_bytes(value);
  payload.push_back(delay_ms);
  const Codec::Frame request = sbmp::make_frame(kType, payload);
  absl::StatusOr<Chan::Reply> reply = co_await ch.call(request, options);
  if (!reply.ok()) co_return reply.status();
  if (u32_of((*reply)->payload) != value) co_return absl::DataLossError("reply for another call");
  co_return absl::OkStatus();
}

TEST(ChannelTest, RepliesOutOfOrderReachTheirCallers) {
  ServerOnLoop s;
  std::vector<uint32_t> answered;  // the order the server replied in
  auto handler = [&answered](Call& call) -> Task<Reply> {
    Reply r = co_await echo_after(call);
    answered.push_back(u32_of(call.request().payload));
    co_return r;
  };
  ASSERT_TRUE(
      s.server.serve<Codec>([handler](Conn c) { return serve_calls(std::move(c), handler); }).ok());
  absl::Status r = s.t.run([](NetContext& net, SocketAddress addr) -> Task<absl::Status> {
    auto ch = co_await open_channel(net, addr);
    if (!ch.ok()) co_return ch.status();
    std::vector<Task<absl::Status>> calls;
    // The first call sent is answered last.
    for (uint32_t i = 0; i < 16; ++i) {
      calls.push_back(call_and_check(**ch, 1000 + i, static_cast<uint8_t>(2 * (16 - i))));
    }
    for (const absl::Status& st : co_await when_all(std::move(calls))) {
      if (!st.ok()) co_return st;
    }
    if ((*ch)->stats().calls != 16) co_return absl::InternalError("calls not counted");
    co_await (*ch)->close();
    co_return absl::OkStatus();
  }(*s.t.net, s.address()));
  EXPECT_TRUE(r.ok()) << r;
  ASSERT_EQ(answered.size(), 16u);
  EXPECT_FALSE(std::is_sorted(answered.begin(), answered.end())) << "replies came in order";
}

// A hand-written server that answers every request `delay` late, whatever
// its budget says, echoing the payload with the request's id.
Task<> late_server(Listener& listener, std::chrono::milliseconds delay, int* requests) {
  absl::StatusOr<Stream> s = co_await listener.accept();
  if (!s.ok()) co_return;
  Conn conn(std::move(*s), Codec());
  for (;;) {
    auto f = co_await conn.read_frame();
    if (!f.ok()) break;
    ++*requests;
    std::vector<uint8_t> payload(f->payload.begin(), f->payload.end());
    sbmp::ExtensionBuilder ext;
    ext.set_request_id(*f->extensions.request_id());
    (void)co_await sleep_for(delay);
    const Codec::Frame reply = sbmp::make_frame(kType, payload, ext.view());
    if (!(co_await conn.write_frame(reply)).ok()) break;
  }
  (void)co_await conn.close();
}

TEST(ChannelTest, ClientDeadlineExpiresAndTheLateReplyIsDropped) {
  testing::TestLoop t;
  auto l = Listener::bind(*t.net, SocketAddress::ipv4_loopback(0));
  ASSERT_TRUE(l.ok()) << l.status();
  int requests = 0;
  // The reply comes 400 ms late: a call that ends before then was ended by
  // its 20 ms deadline (the margin absorbs a loaded machine).
  spawn(*t.loop, late_server(**l, 420ms, &requests));
  const SocketAddress addr = *(*l)->local_address();
  absl::Status r = t.run([](NetContext& net, SocketAddress addr) -> Task<absl::Status> {
    auto ch = co_await open_channel(net, addr);
    if (!ch.ok()) co_return ch.status();
    const auto start = Clock::now();
    absl::Status first = co_await call_and_check(**ch, 7, 0, {.deadline = start + 20ms});
    if (!absl::IsDeadlineExceeded(first)) {
      co_return absl::InternalError("expected DeadlineExceeded, got " + first.ToString());
    }
    if (Clock::now() - start > 300ms)
      co_return absl::InternalError("the deadline was not enforced");
    // The next call gets its own reply, not the late one of the first call.
    absl::Status second = co_await call_and_check(**ch, 8, 0, {.deadline = Clock::now() + 5s});
    if (!second.ok()) co_return second;
    if ((*ch)->stats().late_replies != 1) co_return absl::InternalError("late reply not counted");
    if ((*ch)->stats().deadline_exceeded != 1) co_return absl::InternalError("expiry not counted");
    co_await (*ch)->close();
    co_return absl::OkStatus();
  }(*t.net, addr));
  EXPECT_TRUE(r.ok()) << r;
  EXPECT_EQ(requests, 2);
  l->reset();
}

TEST(ChannelTest, ServerHandlerSeesItsDeadlineAndStopToken) {
  ServerOnLoop s;
  ChannelServerStats stats;
  struct Seen {
    bool had_deadline = false;
    std::chrono::microseconds budget{0};
    bool stopped = false;
    absl::Status sleep;
  } seen;
  auto handler = [&seen](Call& call) -> Task<Reply> {
    seen.had_deadline = call.deadline().has_value();
    if (call.deadline()) {
      seen.budget =
          std::chrono::duration_cast<std::chrono::microseconds>(*call.deadline() - Clock::now());
    }
    seen.sleep = co_await sleep_for(10s);  // the stop token ends it at the deadline
    seen.stopped = call.stop_token().stop_requested();
    co_return absl::DeadlineExceededError("too slow");
  };
  ASSERT_TRUE(s.server
                  .serve<Codec>([handler, &stats](Conn c) {
                    return serve_calls(std::move(c), handler, {.stats = &stats});
                  })
                  .ok());
  absl::Status r = s.t.run([](NetContext& net, SocketAddress addr) -> Task<absl::Status> {
    auto ch = co_await open_channel(net, addr);
    if (!ch.ok()) co_return ch.status();
    absl::Status st = co_await call_and_check(**ch, 1, 0, {.deadline = Clock::now() + 50ms});
    co_await (*ch)->close();
    if (!absl::IsDeadlineExceeded(st)) co_return absl::InternalError(st.ToString());
    co_return absl::OkStatus();
  }(*s.t.net, s.address()));
  EXPECT_TRUE(r.ok()) << r;
  s.stop();
  EXPECT_TRUE(seen.had_deadline);
  EXPECT_GT(seen.budget.count(), 0);
  EXPECT_LE(seen.budget, 50ms);
  EXPECT_TRUE(seen.stopped);
  EXPECT_TRUE(absl::IsCancelled(seen.sleep)) << seen.sleep;
  EXPECT_EQ(stats.deadline_exceeded, 1u);
  EXPECT_EQ(stats.replies, 0u);
}

// A handler that holds its reply until `*gate` opens.
auto gated_echo(const bool* gate, int* arrived) {
  return [gate, arrived](Call& call) -> Task<Reply> {
    ++*arrived;
    while (!*gate) {
      if (!(co_await sleep_for(1ms)).ok()) co_return absl::CancelledError("stopped");
    }
    call.reply_buffer().assign(call.request().payload.begin(), call.request().payload.end());
    co_return sbmp::make_frame(kType, call.reply_buffer());
  };
}

Task<> wait_until(const int* counter, int value) {
  while (*counter < value) (void)co_await sleep_for(1ms);
}

TEST(ChannelTest, CancellingOneCallLeavesTheOthers) {
  ServerOnLoop s;
  bool gate = false;
  int arrived = 0;
  auto handler = gated_echo(&gate, &arrived);
  ASSERT_TRUE(
      s.server.serve<Codec>([handler](Conn c) { return serve_calls(std::move(c), handler); }).ok());
  absl::Status r = s.t.run([](NetContext& net, SocketAddress addr, bool& gate,
                              int& arrived) -> Task<absl::Status> {
    auto ch = co_await open_channel(net, addr);
    if (!ch.ok()) co_return ch.status();
    std::stop_source cancel;
    auto canceller = [](std::stop_source& cancel, bool& gate, int& arrived) -> Task<absl::Status> {
      co_await wait_until(&arrived, 3);  // all three requests reached the server
      cancel.request_stop();
      (void)co_await sleep_for(5ms);
      gate = true;
      co_return absl::OkStatus();
    };
    std::vector<Task<absl::Status>> tasks;
    tasks.push_back(call_and_check(**ch, 1, 0));
    tasks.push_back(call_and_check(**ch, 2, 0, {.stop = cancel.get_token()}));
    tasks.push_back(call_and_check(**ch, 3, 0));
    tasks.push_back(canceller(cancel, gate, arrived));
    std::vector<absl::Status> results = co_await when_all(std::move(tasks));
    if (!results[0].ok()) co_return results[0];
    if (!absl::IsCancelled(results[1])) co_return absl::InternalError(results[1].ToString());
    if (!results[2].ok()) co_return results[2];
    // The connection is fine: another call works; the cancelled one's reply was dropped.
    if (absl::Status st = co_await call_and_check(**ch, 4, 0); !st.ok()) co_return st;
    if ((*ch)->stats().cancelled != 1) co_return absl::InternalError("cancel not counted");
    if ((*ch)->stats().late_replies != 1) co_return absl::InternalError("late reply not counted");
    co_await (*ch)->close();
    co_return absl::OkStatus();
  }(*s.t.net, s.address(), gate, arrived));
  EXPECT_TRUE(r.ok()) << r;
}

// Reads `count` requests, then drops the connection without a goodbye.
Task<> drop_after(Listener& listener, int count, int* seen) {
  absl::StatusOr<Stream> s = co_await listener.accept();
  if (!s.ok()) co_return;
  Conn conn(std::move(*s), Codec());
  while (*seen < count) {
    auto f = co_await conn.read_frame();
    if (!f.ok()) break;
    ++*seen;
  }
  conn.stream().abort(absl::AbortedError("test drops the connection"));
  (void)co_await conn.close();
}

TEST(ChannelTest, ConnectionDeathFailsAThousandPendingCalls) {
  testing::TestLoop t;
  auto l = Listener::bind(*t.net, SocketAddress::ipv4_loopback(0));
  ASSERT_TRUE(l.ok()) << l.status();
  int seen = 0;
  spawn(*t.loop, drop_after(**l, 300, &seen));
  const SocketAddress addr = *(*l)->local_address();
  absl::Status r = t.run([](NetContext& net, SocketAddress addr) -> Task<absl::Status> {
    // 1,000 calls, 300 in flight and 700 waiting for a slot.
    auto ch = co_await open_channel(net, addr, {.max_in_flight = 300});
    if (!ch.ok()) co_return ch.status();
    std::vector<Task<absl::Status>> calls;
    for (uint32_t i = 0; i < 1000; ++i) calls.push_back(call_and_check(**ch, i, 0));
    std::vector<absl::Status> results = co_await when_all(std::move(calls));
    for (const absl::Status& st : results) {
      if (!absl::IsUnavailable(st) || !absl::StrContains(st.message(), "connection ended")) {
        co_return absl::InternalError("expected Unavailable naming the cause, got " +
                                      st.ToString());
      }
    }
    if ((*ch)->stats().failed != 1000) co_return absl::InternalError("failures not counted");
    // And later calls fail at once.
    absl::Status late = co_await call_and_check(**ch, 5000, 0);
    if (!absl::IsUnavailable(late)) co_return absl::InternalError(late.ToString());
    co_await (*ch)->close();
    co_return absl::OkStatus();
  }(*t.net, addr));
  EXPECT_TRUE(r.ok()) << r;
  EXPECT_EQ(seen, 300);
  l->reset();
}

TEST(ChannelTest, GoawayMidTrafficAnswersReceivedRequestsThenRefuses) {
  ServerOnLoop s;
  bool gate = false;
  int arrived = 0;
  auto handler = gated_echo(&gate, &arrived);
  ASSERT_TRUE(
      s.server.serve<Codec>([handler](Conn c) { return serve_calls(std::move(c), handler); }).ok());
  absl::Status r = s.t.run([](NetContext& net, SocketAddress addr, Server& server, bool& gate,
                              int& arrived) -> Task<absl::Status> {
    auto ch = co_await open_channel(net, addr);
    if (!ch.ok()) co_return ch.status();
    auto shutdown = [](Server& server, bool& gate, int& arrived) -> Task<absl::Status> {
      co_await wait_until(&arrived, 8);
      server.begin_shutdown();  // GOAWAY(SHUTDOWN) once the 8 are answered
      (void)co_await sleep_for(10ms);
      gate = true;
      co_return absl::OkStatus();
    };
    std::vector<Task<absl::Status>> tasks;
    for (uint32_t i = 0; i < 8; ++i) tasks.push_back(call_and_check(**ch, i, 0));
    tasks.push_back(shutdown(server, gate, arrived));
    for (const absl::Status& st : co_await when_all(std::move(tasks))) {
      if (!st.ok()) co_return st;  // every request received before the GOAWAY is answered
    }
    while ((*ch)->accepting()) (void)co_await sleep_for(1ms);
    if (!absl::StrContains((*ch)->status().message(), "GOAWAY")) {
      co_return absl::InternalError("cause not named: " + (*ch)->status().ToString());
    }
    absl::Status after = co_await call_and_check(**ch, 99, 0);
    if (!absl::IsUnavailable(after)) co_return absl::InternalError(after.ToString());
    co_await (*ch)->close();
    co_return absl::OkStatus();
  }(*s.t.net, s.address(), s.server, gate, arrived));
  EXPECT_TRUE(r.ok()) << r;
  EXPECT_EQ(arrived, 8);
}

TEST(ChannelTest, TraceContextAndDeadlineGoThroughAForwardingServer) {
  // Two servers on one loop: the frontend forwards each request to the
  // backend, which reports the trace context and deadline it saw.
  ServerOnLoop s;
  Server backend(std::vector<EventLoop*>{s.t.loop.get()}, {.host = "127.0.0.1"});
  struct Seen {
    std::optional<Codec::TraceContext> trace;
    std::optional<Clock::time_point> deadline;
  } seen;
  auto report = [&seen](Call& call) -> Task<Reply> {
    seen.trace = call.trace();
    seen.deadline = call.deadline();
    co_return sbmp::make_frame(kType, call.request().payload);  // the request outlives the write
  };
  ASSERT_TRUE(
      backend.serve<Codec>([report](Conn c) { return serve_calls(std::move(c), report); }).ok());
  std::unique_ptr<Chan> upstream;
  auto forward = [&upstream](Call& call) -> Task<Reply> {
    const CallOptions<Codec> options = call.context().call_options();
    absl::StatusOr<Chan::Reply> r = co_await upstream->call(call.request(), options);
    if (!r.ok()) co_return r.status();
    call.reply_buffer().assign((*r)->payload.begin(), (*r)->payload.end());
    co_return sbmp::make_frame(kType, call.reply_buffer());
  };
  ASSERT_TRUE(
      s.server.serve<Codec>([forward](Conn c) { return serve_calls(std::move(c), forward); }).ok());
  Codec::TraceContext sent;
  for (int i = 0; i < 16; ++i) sent.trace_id[i] = static_cast<uint8_t>(0xA0 + i);
  for (int i = 0; i < 8; ++i) sent.parent_id[i] = static_cast<uint8_t>(0x10 + i);
  sent.trace_flags = 1;
  const Clock::time_point deadline = Clock::now() + 5s;
  const SocketAddress back = SocketAddress::ipv4_loopback(backend.address().port());
  absl::Status r = s.t.run([](NetContext& net, SocketAddress front, SocketAddress back,
                              std::unique_ptr<Chan>& upstream, Codec::TraceContext sent,
                              Clock::time_point deadline) -> Task<absl::Status> {
    auto up = co_await open_channel(net, back);
    if (!up.ok()) co_return up.status();
    upstream = std::move(*up);
    auto ch = co_await open_channel(net, front);
    if (!ch.ok()) co_return ch.status();
    absl::Status st = co_await call_and_check(**ch, 42, 0, {.deadline = deadline, .trace = sent});
    co_await (*ch)->close();
    co_await upstream->close();
    co_return st;
  }(*s.t.net, s.address(), back, upstream, sent, deadline));
  EXPECT_TRUE(r.ok()) << r;
  backend.begin_shutdown();
  for (int i = 0; i < 100000 && !backend.finished(); ++i) s.t.loop->run_once(false);
  EXPECT_TRUE(backend.finished());
  upstream.reset();
  ASSERT_TRUE(seen.trace.has_value());
  EXPECT_EQ(seen.trace->trace_id, sent.trace_id);
  EXPECT_NE(seen.trace->parent_id, sent.parent_id);
  EXPECT_NE(seen.trace->parent_id, (std::array<uint8_t, 8>{}));
  EXPECT_EQ(seen.trace->trace_flags, 1);
  ASSERT_TRUE(seen.deadline.has_value());
  // A relative budget: later than the caller's only by the time in transit.
  EXPECT_LE(*seen.deadline, deadline + 500ms);
  EXPECT_GT(*seen.deadline, deadline - 1s);
}

TEST(ChannelTest, CallsMadeWhileHandlingARequestCarryItsTraceAndDeadline) {
  // The frontend's handler calls the backend without passing the request's
  // context on; the backend reports what each call (by its value) carried.
  ServerOnLoop s;
  Server backend(std::vector<EventLoop*>{s.t.loop.get()}, {.host = "127.0.0.1"});
  struct Seen {
    std::optional<Codec::TraceContext> trace;
    std::optional<Clock::time_point> deadline;
  };
  std::map<uint32_t, Seen> seen;  // by the value called with
  auto report = [&seen](Call& call) -> Task<Reply> {
    seen[u32_of(call.request().payload)] = {call.trace(), call.deadline()};
    co_return sbmp::make_frame(kType, call.request().payload);
  };
  ASSERT_TRUE(
      backend.serve<Codec>([report](Conn c) { return serve_calls(std::move(c), report); }).ok());

  Codec::TraceContext explicit_trace;
  explicit_trace.trace_id.fill(0x77);
  explicit_trace.parent_id.fill(0x66);
  std::unique_ptr<Chan> upstream;
  std::map<uint32_t, Clock::time_point> incoming;  // the frontend's deadline, by mode
  Clock::time_point mode2_called{};
  auto forward = [&](Call& call) -> Task<Reply> {
    const uint32_t mode = u32_of(call.request().payload);
    if (call.deadline()) incoming[mode] = *call.deadline();
    absl::Status st;
    if (mode == 0) {
      // No options, in tasks the handler awaits (through when_all).
      auto [a, b] =
          co_await when_all(call_and_check(*upstream, 100, 0), call_and_check(*upstream, 101, 0));
      st = a.ok() ? b : a;
    } else if (mode == 1) {
      // An explicit trace wins; a later explicit deadline does not.
      st = co_await call_and_check(*upstream, 110, 0,
                                   {.deadline = Clock::now() + 60s, .trace = explicit_trace});
    } else {
      // An earlier explicit deadline wins; the trace still comes along.
      mode2_called = Clock::now();
      st = co_await call_and_check(*upstream, 120, 0, {.deadline = mode2_called + 1s});
    }
    if (!st.ok()) co_return st;
    call.reply_buffer().assign(call.request().payload.begin(), call.request().payload.end());
    co_return sbmp::make_frame(kType, call.reply_buffer());
  };
  ASSERT_TRUE(
      s.server.serve<Codec>([forward](Conn c) { return serve_calls(std::move(c), forward); }).ok());

  Codec::TraceContext sent;
  for (int i = 0; i < 16; ++i) sent.trace_id[i] = static_cast<uint8_t>(0xA0 + i);
  for (int i = 0; i < 8; ++i) sent.parent_id[i] = static_cast<uint8_t>(0x10 + i);
  sent.trace_flags = 1;
  const SocketAddress back = SocketAddress::ipv4_loopback(backend.address().port());
  absl::Status r =
      s.t.run([](NetContext& net, SocketAddress front, SocketAddress back,
                 std::unique_ptr<Chan>& upstream, Codec::TraceContext sent) -> Task<absl::Status> {
        auto up = co_await open_channel(net, back);
        if (!up.ok()) co_return up.status();
        upstream = std::move(*up);
        auto ch = co_await open_channel(net, front);
        if (!ch.ok()) co_return ch.status();
        for (uint32_t mode = 0; mode < 3; ++mode) {
          absl::Status st = co_await call_and_check(**ch, mode, 0,
                                                    {.deadline = Clock::now() + 5s, .trace = sent});
          if (!st.ok()) co_return st;
        }
        // Outside any handler: a call carries nothing it was not given.
        absl::Status plain = co_await call_and_check(*upstream, 200, 0);
        co_await (*ch)->close();
        co_await upstream->close();
        co_return plain;
      }(*s.t.net, s.address(), back, upstream, sent));
  EXPECT_TRUE(r.ok()) << r;
  backend.begin_shutdown();
  for (int i = 0; i < 100000 && !backend.finished(); ++i) s.t.loop->run_once(false);
  EXPECT_TRUE(backend.finished());
  upstream.reset();

  // The budget goes over the wire relative to "now", so a downstream
  // deadline may be later than the incoming one by the time in transit.
  constexpr auto kTransit = 100ms;
  ASSERT_EQ(incoming.size(), 3u);
  for (uint32_t v : {100u, 101u}) {
    SCOPED_TRACE(v);
    ASSERT_TRUE(seen[v].trace.has_value());
    EXPECT_EQ(seen[v].trace->trace_id, sent.trace_id);
    EXPECT_NE(seen[v].trace->parent_id, sent.parent_id);
    EXPECT_NE(seen[v].trace->parent_id, (std::array<uint8_t, 8>{}));
    EXPECT_EQ(seen[v].trace->trace_flags, 1);
    ASSERT_TRUE(seen[v].deadline.has_value());
    EXPECT_LE(*seen[v].deadline, incoming[0] + kTransit);
  }
  ASSERT_TRUE(seen[100].trace && seen[101].trace);
  EXPECT_NE(seen[100].trace->parent_id, seen[101].trace->parent_id);  // a span per call

  ASSERT_TRUE(seen[110].trace.has_value());
  EXPECT_EQ(seen[110].trace->trace_id, explicit_trace.trace_id);
  ASSERT_TRUE(seen[110].deadline.has_value());
  EXPECT_LE(*seen[110].deadline, incoming[1] + kTransit);

  ASSERT_TRUE(seen[120].trace.has_value());
  EXPECT_EQ(seen[120].trace->trace_id, sent.trace_id);
  ASSERT_TRUE(seen[120].deadline.has_value());
  EXPECT_LE(*seen[120].deadline, mode2_called + 1s + kTransit);
  EXPECT_LT(*seen[120].deadline, incoming[2] - 2s);

  ASSERT_EQ(seen.count(200), 1u);
  EXPECT_FALSE(seen[200].trace.has_value());
  EXPECT_FALSE(seen[200].deadline.has_value());
}

TEST(ChannelTest, ServerConcurrencyLimitAndClientInFlightBound) {
  ServerOnLoop s;
  ChannelServerStats stats;
  struct Load {
    int active = 0;
    int peak = 0;
  } load;
  auto handler = [&load](Call& call) -> Task<Reply> {
    load.peak = std::max(load.peak, ++load.active);
    (void)co_await sleep_for(3ms);
    --load.active;
    co_return sbmp::make_frame(kType, call.request().payload);
  };
  ASSERT_TRUE(s.server
                  .serve<Codec>([handler, &stats](Conn c) {
                    return serve_calls(std::move(c), handler,
                                       {.max_concurrent = 4, .stats = &stats});
                  })
                  .ok());
  absl::Status r = s.t.run([](NetContext& net, SocketAddress addr) -> Task<absl::Status> {
    auto ch = co_await open_channel(net, addr, {.max_in_flight = 16});
    if (!ch.ok()) co_return ch.status();
    std::vector<Task<absl::Status>> calls;
    for (uint32_t i = 0; i < 40; ++i) calls.push_back(call_and_check(**ch, i, 0));
    for (const absl::Status& st : co_await when_all(std::move(calls))) {
      if (!st.ok()) co_return st;
    }
    if ((*ch)->stats().slot_waits == 0) co_return absl::InternalError("no caller waited");
    if ((*ch)->in_flight() != 0) co_return absl::InternalError("slots not given back");
    co_await (*ch)->close();
    co_return absl::OkStatus();
  }(*s.t.net, s.address()));
  EXPECT_TRUE(r.ok()) << r;
  EXPECT_EQ(load.peak, 4);
  EXPECT_GT(stats.read_pauses, 0u);
  EXPECT_EQ(stats.replies, 40u);
}

}  // namespace
}  // namespace coring::net
