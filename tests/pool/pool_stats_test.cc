#include "coring/pool/pool_stats.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace coring::pool {
namespace {

using ::testing::HasSubstr;

TEST(PoolNameTest, AcceptsDomainResourceVersion) {
  EXPECT_TRUE(validate_pool_name("sbmp.echo.rx.v1").ok());
  EXPECT_TRUE(validate_pool_name("net.conn.v12").ok());
  EXPECT_TRUE(validate_pool_name("core_2.frames_x.v0").ok());
}

TEST(PoolNameTest, RejectsMalformedNames) {
  for (const char* bad : {"", "v1", "net.v1", "sbmp.echo.rx", "sbmp.echo.rx.v", "sbmp.echo.rx.vx",
                          "Sbmp.echo.v1", "sbmp..echo.v1", "sbmp.echo-rx.v1", "sbmp.echo.v1.",
                          ".sbmp.echo.v1", "sbmp.1echo.v1", "sbmp.echo.V1"}) {
    const absl::Status s = validate_pool_name(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(s.message()), HasSubstr("domain.resource.v<major>")) << bad;
  }
}

PoolStats sample() {
  PoolStats s;
  s.name = "sbmp.echo.rx.v1";
  s.kind = "slab";
  s.allocs_total = 10;
  s.frees_total = 7;
  s.reuses_total = 4;
  s.in_use = 3;
  s.high_water = 5;
  s.bytes_reserved = 2097152;
  s.bytes_released = 65536;
  s.capacity_bytes = 1048576;
  s.cross_thread_frees = 2;
  s.huge_pages = HugePageMode::kTransparent;
  return s;
}

TEST(PoolStatsTest, TextRendering) {
  EXPECT_EQ(sample().to_text(),
            "sbmp.echo.rx.v1 slab: allocs_total=10 frees_total=7 reuses_total=4 in_use=3 "
            "high_water=5 bytes_reserved=2097152 bytes_released=65536 capacity_bytes=1048576 "
            "cross_thread_frees=2 "
            "huge_pages=yes (transparent)");
  PoolStats plain = sample();
  plain.huge_pages = HugePageMode::kNone;
  EXPECT_THAT(plain.to_text(), ::testing::EndsWith("huge_pages=no"));
}

TEST(PoolStatsTest, JsonRendering) {
  EXPECT_EQ(sample().to_json(),
            "{\"name\":\"sbmp.echo.rx.v1\",\"kind\":\"slab\",\"allocs_total\":10,"
            "\"frees_total\":7,\"reuses_total\":4,\"in_use\":3,\"high_water\":5,"
            "\"bytes_reserved\":2097152,\"bytes_released\":65536,\"capacity_bytes\":1048576,"
            "\"cross_thread_frees\":2,"
            "\"huge_pages\":\"yes\",\"huge_page_mode\":\"transparent\"}");
  PoolStats odd = sample();
  odd.kind = "a\"b\\c\n";
  odd.huge_pages = HugePageMode::kExplicit;
  EXPECT_THAT(odd.to_json(), HasSubstr("\"kind\":\"a\\\"b\\\\c\\u000a\""));
  EXPECT_THAT(odd.to_json(), HasSubstr("\"huge_pages\":\"yes\",\"huge_page_mode\":\"explicit\""));
}

}  // namespace
}  // namespace coring::pool
