// LengthPrefixCodec: a tiny FrameCodec for net/'s tests, so they need no
// codec/. A frame is a 4-byte big-endian length and that many payload bytes.
// Three lengths are control frames:
//   0xFFFFFFF0 PING  -> answered with PONG (0xFFFFFFF1) by the codec itself
//   0xFFFFFFF2 BAD   -> a protocol error: the codec queues GOODBYE(InvalidArgument)
//   0xFFFFFFF3 GOODBYE + 4-byte absl status code: the peer is closing
// Lengths above max_frame (other than those) are protocol errors too.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "absl/types/span.h"
#include "coring/net/frame_codec.h"

namespace coring::net::testing {

inline constexpr uint32_t kPing = 0xFFFFFFF0;
inline constexpr uint32_t kPong = 0xFFFFFFF1;
inline constexpr uint32_t kBad = 0xFFFFFFF2;
inline constexpr uint32_t kGoodbye = 0xFFFFFFF3;

inline void put_be32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}
inline uint32_t get_be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

struct LpFrame {
  absl::Span<const uint8_t> payload;
};

class LengthPrefixCodec {
 public:
  using Frame = LpFrame;
  class Encoded {
   public:
    absl::Span<const absl::Span<const uint8_t>> parts() const {
      return absl::MakeConstSpan(parts_.data(), n_);
    }

   private:
    friend class LengthPrefixCodec;
    std::array<uint8_t, 4> header_{};
    std::array<absl::Span<const uint8_t>, 2> parts_{};
    size_t n_ = 0;
  };

  // The output buffer never moves while bytes in it are pending (the
  // FrameCodec contract): it is reserved once and only cleared when empty.
  explicit LengthPrefixCodec(uint32_t max_frame = 8 << 20) : max_frame_(max_frame) {
    output_.reserve(kOutputCapacity);
  }
  static constexpr size_t kOutputCapacity = 64 * 1024;

  absl::StatusOr<std::optional<Frame>> decode(absl::Span<const uint8_t>& input) {
    if (!error_.ok()) return error_;
    for (;;) {
      // Header (possibly split across inputs).
      while (header_fill_ < 4 && !input.empty()) {
        header_[header_fill_++] = input[0];
        input.remove_prefix(1);
      }
      if (header_fill_ < 4) return std::nullopt;
      const uint32_t len = get_be32(header_.data());
      if (len == kPing) {
        header_fill_ = 0;
        if (output_.size() + 4 > kOutputCapacity) {  // a peer that never reads its PONGs
          error_ = absl::ResourceExhaustedError("too many unanswered PINGs");
          queue_goodbye(absl::StatusCode::kResourceExhausted);
          return error_;
        }
        uint8_t pong[4];
        put_be32(pong, kPong);
        output_.insert(output_.end(), pong, pong + 4);
        ++pings_;
        continue;
      }
      if (len == kGoodbye) {
        // Needs the 4-byte code.
        while (code_fill_ < 4 && !input.empty()) {
          code_[code_fill_++] = input[0];
          input.remove_prefix(1);
        }
        if (code_fill_ < 4) return std::nullopt;
        goodbye_received_ = static_cast<absl::StatusCode>(get_be32(code_.data()));
        error_ = absl::Status(
            absl::StatusCode::kAborted,
            absl::StrFormat("peer said goodbye (code %d)", static_cast<int>(*goodbye_received_)));
        return error_;
      }
      if (len == kBad || len > max_frame_) {
        error_ = absl::InvalidArgumentError(absl::StrFormat("bad frame length %u", len));
        queue_goodbye(absl::StatusCode::kInvalidArgument);
        return error_;
      }
      // Payload: a view into input when whole, else assembled in partial_.
      if (partial_.empty() && input.size() >= len) {
        Frame f{input.first(len)};
        input.remove_prefix(len);
        header_fill_ = 0;
        return f;
      }
      const size_t take = std::min<size_t>(len - partial_.size(), input.size());
      partial_.insert(partial_.end(), input.begin(), input.begin() + take);
      input.remove_prefix(take);
      if (partial_.size() < len) return std::nullopt;
      header_fill_ = 0;
      assembled_.swap(partial_);
      partial_.clear();
      return Frame{absl::MakeConstSpan(assembled_)};
    }
  }

  absl::Status encode(const Frame& frame, Encoded& encoded) {
    if (closing_) return absl::FailedPreconditionError("encode: closing");
    put_be32(encoded.header_.data(), static_cast<uint32_t>(frame.payload.size()));
    encoded.parts_[0] = absl::MakeConstSpan(encoded.header_);
    encoded.parts_[1] = frame.payload;
    encoded.n_ = frame.payload.empty() ? 1 : 2;
    return absl::OkStatus();
  }

  absl::Span<const uint8_t> pending_output() const {
    return absl::MakeConstSpan(output_).subspan(out_begin_);
  }
  void consume_output(size_t n) {
    out_begin_ += n;
    if (out_begin_ == output_.size()) {
      output_.clear();
      out_begin_ = 0;
    }
  }

  void close(absl::Status why) {
    if (closing_) return;
    closing_ = true;
    if (goodbye_received_ || goodbye_sent_) return;
    queue_goodbye(why.code());
  }

  // A frame handed out from the reassembly buffers is reused by a later decode().
  bool owns(const uint8_t* p) const {
    const auto in = [p](const std::vector<uint8_t>& v) {
      return p >= v.data() && p < v.data() + v.size();
    };
    return in(assembled_) || in(partial_);
  }

  std::optional<absl::StatusCode> goodbye_received() const { return goodbye_received_; }
  bool goodbye_sent() const { return goodbye_sent_; }
  int pings() const { return pings_; }

 protected:
  void queue_goodbye(absl::StatusCode code) {
    goodbye_sent_ = true;
    closing_ = true;
    uint8_t bye[8];
    put_be32(bye, kGoodbye);
    put_be32(bye + 4, static_cast<uint32_t>(code));
    output_.insert(output_.end(), bye, bye + 8);
  }

  uint32_t max_frame_;
  std::array<uint8_t, 4> header_{};
  size_t header_fill_ = 0;
  std::array<uint8_t, 4> code_{};
  size_t code_fill_ = 0;
  std::vector<uint8_t> partial_;
  std::vector<uint8_t> assembled_;
  std::vector<uint8_t> output_;
  size_t out_begin_ = 0;
  absl::Status error_;
  std::optional<absl::StatusCode> goodbye_received_;
  bool goodbye_sent_ = false;
  bool closing_ = false;
  int pings_ = 0;
};

static_assert(FrameCodec<LengthPrefixCodec>);

// A LengthPrefixCodec that trades its reassembly buffer for another (the
// optional FrameCodec member exchange_buffer()), counting the trades and
// those where it got a used buffer back (one with capacity).
struct TradeCounts {
  int exchanges = 0;
  int recycled = 0;
};
class TradingCodec : public LengthPrefixCodec {
 public:
  explicit TradingCodec(TradeCounts* counts) : counts_(counts) {}
  bool exchange_buffer(const uint8_t* p, std::vector<uint8_t>& other) {
    if (p < assembled_.data() || p >= assembled_.data() + assembled_.size()) return false;
    ++counts_->exchanges;
    if (other.capacity() > 0) ++counts_->recycled;
    assembled_.swap(other);
    return true;
  }

 private:
  TradeCounts* counts_;
};

static_assert(FrameCodec<TradingCodec>);

// Encodes one data frame.
inline std::vector<uint8_t> lp_frame(absl::Span<const uint8_t> payload) {
  std::vector<uint8_t> v(4 + payload.size());
  put_be32(v.data(), static_cast<uint32_t>(payload.size()));
  if (!payload.empty()) std::memcpy(v.data() + 4, payload.data(), payload.size());
  return v;
}

}  // namespace coring::net::testing
