// libFuzzer target for the streaming decoder. The first bytes pick how the
// rest of the input is cut into reads; the decoder must give exactly the
// result of decoding the whole stream at once - same frames, same error,
// same incompleteness - and never crash, hang or read out of bounds; also
// with split payloads allowed (a frame across two reads comes as two views
// of them: Decoder::set_split_payloads()).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <vector>

#include "coring/codec/decoder.h"
#include "coring/codec/error.h"

namespace {

using coring::sbmp::Decoder;
using coring::sbmp::Frame;
using coring::sbmp::FrameError;

struct Seen {
  uint64_t offset;
  uint16_t type;
  uint8_t version;
  uint8_t flags;
  std::vector<uint8_t> ext;
  std::vector<uint8_t> payload;
  bool operator==(const Seen&) const = default;
};

struct Result {
  std::vector<Seen> frames;
  std::optional<FrameError> error;
  bool incomplete = false;
};

void check(bool ok) {
  if (!ok) std::abort();
}

// Decodes `data` cut at the sizes `cuts` yields (cycled). The reads all stay
// valid, as split payloads need.
Result decode(const uint8_t* data, size_t size, const std::vector<size_t>& cuts, uint32_t max_frame,
              bool split_payloads = false) {
  Decoder decoder({.max_frame = max_frame});
  if (split_payloads) decoder.set_split_payloads(SIZE_MAX);
  Result r;
  size_t pos = 0;
  size_t i = 0;
  while (pos < size && !r.error) {
    size_t piece = cuts.empty() ? size : std::min(size - pos, cuts[i++ % cuts.size()]);
    absl::Span<const uint8_t> in(data + pos, piece);
    pos += piece;
    for (;;) {
      auto next = decoder.next(in);
      if (!next.ok()) {
        r.error = coring::sbmp::frame_error(next.status());
        check(r.error.has_value());
        break;
      }
      if (!next->has_value()) {
        check(in.empty());
        break;
      }
      const Frame& f = **next;
      // Structural invariants of every frame handed out.
      check(f.header.length == f.header.ext_len + f.payload_size() + (f.chk() ? 4 : 0));
      check(split_payloads || f.payload_tail.empty());
      check(f.header.length <= max_frame);
      check(f.extensions.bytes().size() == f.header.ext_len);
      size_t entries = 0;
      for (const auto& e : f.extensions) entries += 2 + e.value.size();
      check(entries == f.header.ext_len);
      r.frames.push_back({f.offset,
                          f.type(),
                          f.version(),
                          f.header.flags,
                          {f.extensions.bytes().begin(), f.extensions.bytes().end()},
                          {f.payload.begin(), f.payload.end()}});
      r.frames.back().payload.insert(r.frames.back().payload.end(), f.payload_tail.begin(),
                                     f.payload_tail.end());
    }
  }
  if (!r.error) {
    r.incomplete = decoder.mid_frame();
    // Everything offered was consumed: frames up to offset(), a partial one after.
    check(r.incomplete ? decoder.offset() < size : decoder.offset() == size);
  }
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Byte 0: the max_frame limit; byte 1: the cutting pattern. Seeds (the
  // vectors) start with "SBMP", which keeps them meaningful as streams too:
  // the control bytes are only taken from inputs that do not start so.
  uint32_t max_frame = coring::sbmp::kDefaultMaxFrame;
  std::vector<size_t> cuts;
  if (size >= 2 && data[0] != 'S') {
    max_frame = data[0] < 128 ? coring::sbmp::kDefaultMaxFrame : (data[0] - 127u) * 16u;
    uint8_t pattern = data[1];
    for (int k = 0; k < 4; ++k) cuts.push_back(1 + ((pattern >> (2 * k)) & 3) * (k + 1) * 3);
    data += 2;
    size -= 2;
  }
  Result whole = decode(data, size, {}, max_frame);
  Result bytewise = decode(data, size, {1}, max_frame);
  const std::vector<size_t> pattern = cuts.empty() ? std::vector<size_t>{7, 1, 16} : cuts;
  Result split = decode(data, size, pattern, max_frame);
  Result views = decode(data, size, pattern, max_frame, /*split_payloads=*/true);
  for (const Result* other : {&bytewise, &split, &views}) {
    check(other->frames == whole.frames);
    check(other->error == whole.error);
    check(other->incomplete == whole.incomplete);
  }
  return 0;
}
