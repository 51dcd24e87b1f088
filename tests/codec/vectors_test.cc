// Every SBMP vector (read at test time from CORING_SBMP_VECTORS_DIR) decoded
// whole, one byte at a time and in seeded random splits must give exactly
// the expected frames, error and incompleteness.
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "coring/codec/decoder.h"
#include "coring/codec/encoder.h"
#include "coring/codec/error.h"
#include "gtest/gtest.h"
#include "json.h"
#include "test_util.h"

namespace coring::sbmp {
namespace {

using testing::Json;
using testing::VectorCase;

// The frame as the vectors' JSON describes it, built independently of the
// sbmp tool's writer.
Json describe(const Frame& f) {
  std::string ext;
  for (const Extension& e : f.extensions) {
    std::string entry =
        absl::StrFormat(R"({"kind":%d,"hex":"%s")", e.kind, testing::to_hex(e.value));
    if (!extension_name(e.kind).empty()) {
      entry += absl::StrFormat(R"(,"name":"%s")", extension_name(e.kind));
    }
    uint64_t v = 0;
    for (uint8_t b : e.value) v = v << 8 | b;
    if (e.kind == kExtRequestId || e.kind == kExtStateVersion || e.kind == kExtTimeoutUs) {
      entry += absl::StrFormat(R"(,"value":%d)", v);
    } else if (e.kind == kExtTraceContext) {
      entry += absl::StrFormat(
          R"(,"value":{"version":%d,"trace_id":"%s","parent_id":"%s","trace_flags":%d})",
          e.value[0], testing::to_hex(e.value.subspan(1, 16)),
          testing::to_hex(e.value.subspan(17, 8)), e.value[25]);
    }
    absl::StrAppend(&ext, ext.empty() ? "" : ",", entry, "}");
  }
  std::string text = absl::StrFormat(
      R"({"offset":%d,"version":"%d.%d","flags":[%s],"type":%d,"length":%d,"ext_len":%d,)"
      R"("extensions":[%s],"payload_hex":"%s"})",
      f.offset, version_major(f.version()), version_minor(f.version()), f.chk() ? R"("CHK")" : "",
      f.type(), f.header.length, f.header.ext_len, ext,
      testing::to_hex(f.payload) + testing::to_hex(f.payload_tail));
  auto json = Json::parse(text);
  EXPECT_TRUE(json.ok()) << text;
  return json.ok() ? *json : Json();
}

// A frame decoded with its bytes together (Frame::wire) and sent back
// unchanged encodes as those bytes, one part; and they are what the encoder
// writes for it from scratch.
void check_sent_as_received(const Frame& f) {
  if (f.wire == nullptr) return;
  const EncodeOptions options{.version = f.version(), .chk = f.chk()};
  EncodedFrame echo;
  ASSERT_TRUE(encode_frame(f, options, echo).ok());
  ASSERT_EQ(echo.parts().size(), 1u);
  const absl::Span<const uint8_t> wire(f.wire, f.header.frame_size());
  EXPECT_EQ(echo.parts()[0].data(), wire.data());
  EXPECT_EQ(echo.parts()[0].size(), wire.size());
  Frame fresh = f;
  fresh.wire = nullptr;
  std::vector<uint8_t> encoded(f.header.frame_size());
  ASSERT_TRUE(encode_frame(fresh, options, absl::MakeSpan(encoded)).ok());
  EXPECT_EQ(testing::to_hex(encoded), testing::to_hex(wire));
}

// Feeds `c` cut at `cuts` (ascending offsets) and checks each frame as it
// comes (a frame from the reassembly buffer is valid only until next()).
// `split`: split payloads allowed (Decoder::set_split_payloads(); the
// pieces all stay valid), so frames across one cut come as two views.
// `whole_first`: next_whole() is asked first, next() only when it declines:
// the frames, the error and its offset must be the same.
void run(const VectorCase& c, const std::vector<size_t>& cuts, const std::string& how,
         bool split = false, bool whole_first = false) {
  SCOPED_TRACE(c.name + " / " + how + (split ? " / split payloads" : "") +
               (whole_first ? " / next_whole first" : ""));
  const Json& want = c.expect;
  Decoder decoder({.max_frame = static_cast<uint32_t>(*want["max_frame"].as_u64())});
  if (split) decoder.set_split_payloads(SIZE_MAX);
  auto bytes = testing::as_bytes(c.bin);
  size_t frames = 0;
  std::optional<FrameError> error;
  size_t start = 0;
  for (size_t i = 0; i <= cuts.size() && !error; ++i) {
    size_t end = i < cuts.size() ? cuts[i] : bytes.size();
    absl::Span<const uint8_t> piece = bytes.subspan(start, end - start);
    start = end;
    for (;;) {
      if (Frame f; whole_first && decoder.next_whole(piece, f)) {
        ASSERT_LT(frames, want["frames"].items().size()) << "unexpected frame";
        EXPECT_EQ(describe(f), want["frames"].items()[frames])
            << describe(f).dump() << "\nwant " << want["frames"].items()[frames].dump();
        EXPECT_NE(f.wire, nullptr);
        check_sent_as_received(f);
        ++frames;
        continue;
      }
      auto next = decoder.next(piece);
      if (!next.ok()) {
        error = frame_error(next.status());
        ASSERT_TRUE(error.has_value()) << next.status();
        break;
      }
      if (!next->has_value()) {
        ASSERT_TRUE(piece.empty());
        break;
      }
      ASSERT_LT(frames, want["frames"].items().size()) << "unexpected frame";
      EXPECT_EQ(describe(**next), want["frames"].items()[frames])
          << describe(**next).dump() << "\nwant " << want["frames"].items()[frames].dump();
      check_sent_as_received(**next);
      ++frames;
    }
  }
  EXPECT_EQ(frames, want["frames"].items().size());
  if (want["error"].is_null()) {
    EXPECT_FALSE(error.has_value()) << error_code_name(error->code);
  } else {
    ASSERT_TRUE(error.has_value());
    EXPECT_EQ(error_code_name(error->code), want["error"]["code"].as_string());
    EXPECT_EQ(error->offset, want["error"]["offset"].as_u64());
    EXPECT_EQ(error_field_name(error->field), want["error"]["field"].as_string());
    EXPECT_FALSE(error->remote);
  }
  EXPECT_EQ(!error && decoder.mid_frame(), want["incomplete"].as_bool());
}

class VectorsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    cases_ = new std::vector<VectorCase>(testing::load_vector_cases());
  }
  static void TearDownTestSuite() {
    delete cases_;
    cases_ = nullptr;
  }
  static std::vector<VectorCase>* cases_;
};
std::vector<VectorCase>* VectorsTest::cases_ = nullptr;

TEST_F(VectorsTest, DirectoryHoldsAllCases) {
  ASSERT_TRUE(std::filesystem::is_directory(CORING_SBMP_VECTORS_DIR))
      << "SBMP vectors not found at " << CORING_SBMP_VECTORS_DIR
      << " (configure with -DCORING_SBMP_VECTORS_DIR=...)";
  ASSERT_GE(cases_->size(), testing::kMinVectorCases);
  for (const VectorCase& c : *cases_) {
    EXPECT_FALSE(c.name.empty()) << "a case with a missing .bin or unreadable .json";
  }
}

TEST_F(VectorsTest, Whole) {
  ASSERT_GE(cases_->size(), testing::kMinVectorCases);
  for (const VectorCase& c : *cases_) {
    run(c, {}, "whole");
    run(c, {}, "whole", /*split=*/false, /*whole_first=*/true);
  }
}

TEST_F(VectorsTest, OneByteAtATime) {
  ASSERT_GE(cases_->size(), testing::kMinVectorCases);
  for (const VectorCase& c : *cases_) {
    std::vector<size_t> cuts;
    for (size_t i = 1; i < c.bin.size(); ++i) cuts.push_back(i);
    run(c, cuts, "one byte at a time");
  }
}

TEST_F(VectorsTest, RandomSplits) {
  ASSERT_GE(cases_->size(), testing::kMinVectorCases);
  for (const VectorCase& c : *cases_) {
    for (uint32_t seed = 1; seed <= 8; ++seed) {
      std::mt19937 rng(seed);
      // Small pieces for some seeds, frame-sized ones for others.
      size_t max_piece = seed <= 4 ? 7 : 64;
      std::uniform_int_distribution<size_t> piece(0, max_piece);
      std::vector<size_t> cuts;
      for (size_t at = piece(rng); at < c.bin.size(); at += piece(rng)) cuts.push_back(at);
      run(c, cuts, absl::StrFormat("random split seed %d", seed));
      run(c, cuts, absl::StrFormat("random split seed %d", seed), /*split=*/true);
      run(c, cuts, absl::StrFormat("random split seed %d", seed), /*split=*/true,
          /*whole_first=*/true);
    }
  }
}

// Every case cut once, at every offset (a case over 1 KiB: every 7th, over
// 4 KiB every 251st, and every one within 64 bytes of its ends), with split
// payloads allowed: a frame across the cut comes as two views of the two
// pieces, and the frames, the error and its offset are the same as whole.
// (Every offset of every case took 38 s under ASan.)
TEST_F(VectorsTest, SplitPayloadsAtEveryCut) {
  ASSERT_GE(cases_->size(), testing::kMinVectorCases);
  for (const VectorCase& c : *cases_) {
    const size_t n = c.bin.size();
    const size_t stride = n > 4096 ? 251 : n > 1024 ? 7 : 1;
    for (size_t cut = 1; cut < n; ++cut) {
      if (cut % stride != 0 && cut > 64 && cut < n - 64) continue;
      run(c, {cut}, absl::StrFormat("cut at %d", cut), /*split=*/true);
    }
  }
}

}  // namespace
}  // namespace coring::sbmp
