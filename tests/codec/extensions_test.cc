#include "coring/codec/extensions.h"

#include <vector>

#include "gtest/gtest.h"
#include "test_util.h"

namespace coring::sbmp {
namespace {

TEST(ExtensionsTest, BuilderAndTypedAccess) {
  ExtensionBuilder b;
  TraceContext tc;
  tc.trace_id[0] = 0x4b;
  tc.parent_id[7] = 0xb7;
  tc.trace_flags = 1;
  b.set_request_id(42);
  b.set_trace_context(tc);
  b.set_state_version(7);
  b.set_timeout_us(0xFFFFFFFF);
  std::vector<uint8_t> app = {1, 2, 3};
  ASSERT_TRUE(b.add(0x80, app).ok());
  ASSERT_TRUE(b.add(0x80, {}).ok());  // application kinds may repeat
  ASSERT_TRUE(b.add_padding(3).ok());
  EXPECT_EQ(b.size(), 10u + 28 + 10 + 6 + 5 + 2 + 5);
  EXPECT_EQ(validate_extensions(b.bytes()), std::nullopt);

  Extensions e = b.view();
  EXPECT_EQ(e.request_id(), 42u);
  EXPECT_EQ(e.trace_context(), tc);
  EXPECT_EQ(e.state_version(), 7u);
  EXPECT_EQ(e.timeout_us(), 0xFFFFFFFFu);
  std::vector<uint8_t> kinds;
  for (const Extension& x : e) kinds.push_back(x.kind);
  EXPECT_EQ(kinds, (std::vector<uint8_t>{1, 2, 3, 4, 0x80, 0x80, 0}));
  EXPECT_EQ(testing::to_hex(e.find(0x80)->value), "010203");
}

TEST(ExtensionsTest, SetReplacesInPlace) {
  ExtensionBuilder b;
  b.set_request_id(1);
  b.set_timeout_us(5);
  b.set_request_id(2);
  EXPECT_EQ(b.size(), 16u);
  EXPECT_EQ(b.view().request_id(), 2u);
  EXPECT_EQ(b.bytes()[0], kExtRequestId);
}

TEST(ExtensionsTest, BuilderRejectsBrokenEntries) {
  ExtensionBuilder b;
  std::vector<uint8_t> seven(7), eight(8), big(256);
  EXPECT_FALSE(b.add(kExtRequestId, seven).ok());
  EXPECT_TRUE(b.add(kExtRequestId, eight).ok());
  EXPECT_FALSE(b.add(kExtRequestId, eight).ok());
  EXPECT_FALSE(b.add(0x90, big).ok());
  EXPECT_FALSE(b.add_padding(256).ok());
  EXPECT_EQ(b.size(), 10u);
  for (int i = 0; i < 256; ++i) (void)b.add(0x90, absl::MakeConstSpan(big).subspan(0, 255));
  EXPECT_LE(b.size(), ExtensionBuilder::kMaxBlock);
}

TEST(ExtensionsTest, Validation) {
  auto v = [](const char* hex) { return validate_extensions(testing::from_hex(hex)); };
  EXPECT_EQ(v(""), std::nullopt);
  EXPECT_EQ(v("0000"), std::nullopt);
  EXPECT_EQ(v("0500"
              "7f00"
              "ff01aa"),
            std::nullopt);
  EXPECT_NE(v("01"), std::nullopt);      // missing len byte
  EXPECT_NE(v("800301"), std::nullopt);  // overrun
  EXPECT_NE(v("0107"
              "00000000000000"),
            std::nullopt);             // REQUEST_ID len 7
  EXPECT_NE(v("0400"), std::nullopt);  // TIMEOUT_US len 0
  EXPECT_NE(v("030800000000000000000308"
              "0000000000000000"),
            std::nullopt);  // repeated
  EXPECT_EQ(v("0408"
              "0000000000000000"),
            v("0408"
              "0000000000000000"));
}

TEST(ExtensionsTest, EmptyView) {
  Extensions e;
  EXPECT_TRUE(e.empty());
  EXPECT_EQ(e.begin(), e.end());
  EXPECT_EQ(e.request_id(), std::nullopt);
  EXPECT_EQ(extension_name(0x02), "TRACE_CONTEXT");
  EXPECT_EQ(extension_name(0x05), "");
}

}  // namespace
}  // namespace coring::sbmp
