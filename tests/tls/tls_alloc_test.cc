// Steady-state allocations on the TLS path: after a warm-up, an SBMP echo
// over FramedStream<sbmp::Codec, TlsStream> (both ends on this thread)
// makes no heap allocation per message in coring's code - operator new and
// the malloc family, counted by bench/alloc_counter, minus what OpenSSL
// allocates itself (counted through CRYPTO_set_mem_functions). OpenSSL 3.0's
// own per-record allocations and the coroutine frames (from the loop's slab
// pool, not the heap) are reported per message.
#include <gtest/gtest.h>
#include <openssl/crypto.h>

#include <cstdlib>

#include "alloc_counter.h"
#include "coring/pool/slab_pool.h"
#include "tls/tls_test_support.h"

namespace coring::tls {
namespace {

thread_local uint64_t t_openssl_allocations = 0;

void* counting_malloc(size_t n, const char*, int) {
  ++t_openssl_allocations;
  return std::malloc(n);
}
void* counting_realloc(void* p, size_t n, const char*, int) {
  ++t_openssl_allocations;
  return std::realloc(p, n);
}
void counting_free(void* p, const char*, int) { std::free(p); }

// Before OpenSSL's first allocation (static initialization of this test).
const bool kHooked = CRYPTO_set_mem_functions(counting_malloc, counting_realloc, counting_free);

using testing::TlsConn;
using testing::TlsFixture;

struct Counts {
  uint64_t heap = 0;     // every heap allocation of this thread
  uint64_t openssl = 0;  // those OpenSSL made
  uint64_t slab = 0;     // coroutine frames from the slab pool
};

Task<absl::Status> echo_counting(TlsFixture& f, size_t size, int warmup, int measured,
                                 Counts* out) {
  auto t = co_await TlsStream::connect(*f.client_tls, *f.t.net, f.addr, "localhost");
  if (!t.ok()) co_return t.status();
  const sbmp::CodecOptions hello{.role = sbmp::Role::kClient};
  TlsConn conn(std::move(*t), sbmp::Codec(hello));
  const std::vector<uint8_t> payload = testing::pattern(size, 5);
  const sbmp::Frame frame = sbmp::make_frame(testing::kEchoType, payload);
  pool::SlabPool* slab = f.t.loop->slab_pool();
  std::optional<bench::AllocCounter> heap;
  uint64_t slab_before = 0;
  uint64_t openssl_before = 0;
  for (int i = 0; i < warmup + measured; ++i) {
    if (i == warmup) {
      heap.emplace();
      openssl_before = t_openssl_allocations;
      slab_before = slab != nullptr ? slab->stats().allocs_total : 0;
    }
    if (auto s = co_await conn.write_frame(frame); !s.ok()) co_return s;
    auto got = co_await conn.read_frame();
    if (!got.ok()) co_return got.status();
    if (got->payload.size() != size) co_return absl::DataLossError("echo differs");
  }
  out->heap = heap->count();
  out->openssl = t_openssl_allocations - openssl_before;
  out->slab = slab != nullptr ? slab->stats().allocs_total - slab_before : 0;
  (void)co_await conn.close();
  co_return absl::OkStatus();
}

TEST(TlsAllocTest, SteadyStateEchoMakesNoHeapAllocationsOutsideOpenssl) {
  ASSERT_TRUE(kHooked) << "OpenSSL allocated before the counting hooks were installed";
  for (size_t size : {64, 1024, 16 * 1024}) {
    pool::SlabPool slab;  // coroutine frames, as a Runtime's loops have
    LoopOptions lo;
    lo.slab_pool = &slab;
    TlsFixture f({}, {}, std::move(lo));
    f.serve(1);
    Counts c;
    constexpr int kMeasured = 1000;
    absl::Status s = f.t.run(echo_counting(f, size, 200, kMeasured, &c));
    ASSERT_TRUE(s.ok()) << s;
    f.wait_server(0);
    // A message: the client writes it, the server reads, writes back, the client reads.
    std::printf(
        "%zu B echo, both ends: %.3f heap allocations/message outside OpenSSL, %.3f inside "
        "OpenSSL, %.3f coroutine frames (slab)/message\n",
        size, double(c.heap - c.openssl) / kMeasured, double(c.openssl) / kMeasured,
        double(c.slab) / kMeasured);
    EXPECT_EQ(c.heap - c.openssl, 0u) << size << "-byte frames";
  }
}

}  // namespace
}  // namespace coring::tls
