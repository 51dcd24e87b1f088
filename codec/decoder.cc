#include "coring/codec/decoder.h"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <utility>

#include "absl/strings/str_format.h"
#include "coring/codec/crc32c.h"
#include "coring/codec/error.h"

namespace coring::sbmp {
namespace {

uint32_t load32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

}  // namespace

Decoder::Decoder(DecoderOptions options)
    : standard_versions_(options.versions == nullptr ||
                         options.versions == &VersionRegistry::standard()),
      versions_(options.versions ? options.versions : &VersionRegistry::standard()) {
  limits_.max_frame = options.max_frame;
  limits_.majors = versions_->majors();
}

absl::Status Decoder::fail(absl::Status status) {
  error_ = status;
  return status;
}

void Decoder::append(absl::Span<const uint8_t>& input, size_t n, size_t limit) {
  if (n == 0) return;
  // A large frame's header is in (limit: its size). Not past kKeptBuffer:
  // the pool's buffer would be grown, thrown away, and not come back.
  if (buffer_.capacity() == 0 && pool_.take != nullptr && limit >= pool_.min_frame &&
      limit <= kKeptBuffer) {
    buffer_ = pool_.take(pool_.owner, limit);
  }
  if (buffer_.size() < buffered_ + n) {
    // Grow with the bytes that actually arrived (a header's `length` alone
    // must not make us allocate: thousands of 16-byte headers would fill a
    // server's partial-frame budget), doubling so a big frame costs few
    // moves - by at most kMaxGrowth at a time, so that memory budgets checked
    // between reads overshoot little - and never past the frame being
    // reassembled once its header is in. A buffer up to kKeptBuffer is kept,
    // so in a stream of such frames only the first one grows it.
    const size_t doubled = buffer_.size() + std::min(buffer_.size(), kMaxGrowth);
    const size_t target = std::max(buffered_ + n, std::min(doubled, limit));
    buffer_.reserve(target);  // exactly: resize() alone would double the capacity
    buffer_.resize(target);
  }
  std::memcpy(buffer_.data() + buffered_, input.data(), n);
  buffered_ += n;
  input.remove_prefix(n);
}

size_t Decoder::lend_buffer(size_t want, std::vector<uint8_t>& out, size_t& offset) {
  assert(!lent_ && want > 0 && want <= frame_remaining());
  if (want == frame_remaining()) want += kHeaderSize;  // and the next header
  const size_t target = buffered_ + want;
  if (buffer_.size() < target) {
    buffer_.reserve(target);  // exactly, as append()
    buffer_.resize(target);
  }
  offset = buffered_;
  lent_bytes_ = buffer_.capacity();
  lent_ = true;
  out = std::move(buffer_);
  buffer_ = std::vector<uint8_t>();
  return want;
}

void Decoder::return_buffer(std::vector<uint8_t>&& buffer, size_t received) {
  assert(lent_ && buffered_ + received <= buffer.size());
  buffer_ = std::move(buffer);
  lent_ = false;
  lent_bytes_ = 0;
  const size_t size = header_.frame_size();
  if (buffered_ + received > size) {
    // The next frame's first bytes (at most its header): kept aside, as
    // buffer_ goes out with this frame.
    carry_len_ = static_cast<uint32_t>(buffered_ + received - size);
    assert(carry_len_ <= carry_.size());
    std::memcpy(carry_.data(), buffer_.data() + size, carry_len_);
    received -= carry_len_;
  }
  buffered_ += received;
}

void Decoder::take_prefix(absl::Span<const uint8_t> bytes) {
  assert(!mid_frame() && !lent_ && bytes.size() <= carry_.size());
  if (bytes.empty()) return;
  std::memcpy(carry_.data(), bytes.data(), bytes.size());
  carry_len_ = static_cast<uint32_t>(bytes.size());
}

absl::Status Decoder::trailer_mismatch(uint32_t expected, uint32_t actual) const {
  return make_frame_error(
      {ErrorCode::kPayloadChecksum, offset_, ErrorField::kTrailer},
      absl::StrFormat("trailer 0x%08x, computed CRC-32C 0x%08x", expected, actual));
}

absl::StatusOr<std::optional<Frame>> Decoder::finish(const Header& h, const uint8_t* bytes) {
  const uint8_t* body = bytes + kHeaderSize;
  size_t body_size = h.length - (h.chk() ? kTrailerSize : 0);
  absl::Span<const uint8_t> ext_block(body, h.ext_len);
  absl::Span<const uint8_t> payload(body + h.ext_len, body_size - h.ext_len);
  if (h.chk()) {
    uint32_t expected = load32(body + body_size);
    uint32_t actual = crc32c(absl::MakeConstSpan(body, body_size));
    if (expected != actual) return fail(trailer_mismatch(expected, actual));
  }
  return build(h, ext_block, payload, {}, bytes);
}

absl::StatusOr<std::optional<Frame>> Decoder::finish_split(const Header& h,
                                                           absl::Span<const uint8_t> head,
                                                           absl::Span<const uint8_t> rest) {
  const size_t trailer = h.chk() ? kTrailerSize : 0;
  absl::Span<const uint8_t> ext_block = head.subspan(kHeaderSize, h.ext_len);
  absl::Span<const uint8_t> payload = head.subspan(kHeaderSize + h.ext_len);
  absl::Span<const uint8_t> tail = rest.first(rest.size() - trailer);
  if (h.chk()) {
    uint32_t expected = load32(rest.data() + tail.size());
    uint32_t actual = crc32c(tail, crc32c(payload, crc32c(ext_block)));
    if (expected != actual) return fail(trailer_mismatch(expected, actual));
  }
  return build(h, ext_block, payload, tail, nullptr);
}

absl::StatusOr<std::optional<Frame>> Decoder::build(const Header& h,
                                                    absl::Span<const uint8_t> ext_block,
                                                    absl::Span<const uint8_t> payload,
                                                    absl::Span<const uint8_t> tail,
                                                    const uint8_t* wire) {
  // Every return returns `result`, so it is built in the caller's slot
  // (NRVO). Returning another object too costs a copy of the frame out of a
  // temporary, whose fields were just stored one by one: with the 16-byte
  // loads of that copy every frame paid for failed store forwarding.
  absl::StatusOr<std::optional<Frame>> result(absl::in_place, std::in_place);
  // The header check guarantees a decoder for this major.
  const VersionDecoder* version = versions_->find(version_major(h.version));
  if (auto why = version->check_body(h, ext_block, payload)) {
    result =
        fail(make_frame_error({ErrorCode::kBadExtension, offset_, ErrorField::kExtensions}, *why));
    return result;
  }
  hand_out(**result, h, ext_block, payload, tail, wire);
  return result;
}

void Decoder::hand_out(Frame& frame, const Header& h, absl::Span<const uint8_t> ext_block,
                       absl::Span<const uint8_t> payload, absl::Span<const uint8_t> tail,
                       const uint8_t* wire) {
  frame.header = h;
  frame.extensions = Extensions(ext_block);
  frame.payload = payload;
  frame.payload_tail = tail;
  frame.offset = offset_;
  frame.wire = wire;
  offset_ += h.frame_size();
}

void Decoder::unhold() {
  if (held_.empty()) return;
  absl::Span<const uint8_t> head = std::exchange(held_, {});
  append(head, head.size(), header_.frame_size());
}

bool Decoder::whole_body_ok(const Header& h, const uint8_t* bytes) const {
  const uint8_t* body = bytes + kHeaderSize;
  const size_t body_size = h.length - (h.chk() ? kTrailerSize : 0);
  if (h.chk() && load32(body + body_size) != crc32c(absl::MakeConstSpan(body, body_size))) {
    return false;
  }
  if (!standard_versions_ || h.ext_len != 0) {
    const absl::Span<const uint8_t> ext_block(body, h.ext_len);
    const absl::Span<const uint8_t> payload(body + h.ext_len, body_size - h.ext_len);
    if (versions_->find(version_major(h.version))->check_body(h, ext_block, payload)) return false;
  }
  return true;
}

absl::StatusOr<std::optional<Frame>> Decoder::next(absl::Span<const uint8_t>& input) {
  if (!error_.ok()) return error_;
  if (lent_) {
    return absl::FailedPreconditionError("the reassembly buffer is lent out (lend_buffer())");
  }
  if (!held_.empty()) {
    // A split payload's frame: its start is still in the last input.
    if (input.empty()) return std::nullopt;
    const absl::Span<const uint8_t> head = std::exchange(held_, {});
    const size_t rest = header_.frame_size() - head.size();
    if (input.size() >= rest) {
      const absl::Span<const uint8_t> tail = input.first(rest);
      input.remove_prefix(rest);
      return finish_split(header_, head, tail);
    }
    // It goes on past this input too: reassemble it after all.
    held_ = head;
    unhold();
  }
  if (carry_len_ > 0 && buffered_ == 0) {
    // The start of this frame came past the last one: it goes first.
    absl::Span<const uint8_t> carried(carry_.data(), carry_len_);
    carry_len_ = 0;
    absl::StatusOr<std::optional<Frame>> got = next(carried);
    if (!got.ok() || got->has_value()) return got;  // (a frame all in its header)
  }

  if (buffered_ == 0) {
    // The last split frame (a view into buffer_) is gone now: a buffer grown
    // for a large one is given back instead of being kept for the
    // connection's life, to the pool when there is one.
    release_buffer();
    if (buffer_.capacity() > kKeptBuffer) std::vector<uint8_t>().swap(buffer_);
    // Fast path: the frame starts at the front of `input`.
    if (input.size() >= kHeaderSize) {
      absl::StatusOr<Header> h = decode_header(input.data(), limits_, offset_);
      if (!h.ok()) return fail(h.status());
      size_t size = h->frame_size();
      if (input.size() >= size) {
        const uint8_t* bytes = input.data();
        input.remove_prefix(size);
        return finish(*h, bytes);
      }
      header_ = *h;
      // The frame's rest comes in the next input: leave its start where it
      // is if it may be split (set_split_payloads()) at a payload byte, with
      // the whole trailer after it.
      const size_t rest = size - input.size();
      if (rest <= split_max_rest_ && !is_control_type(h->type) &&
          input.size() > kHeaderSize + h->ext_len && rest > (h->chk() ? kTrailerSize : 0)) {
        held_ = input;
        input = {};
        return std::nullopt;
      }
    } else if (input.empty()) {
      return std::nullopt;
    } else if (magic_prefix_mismatch(input)) {
      return fail(make_frame_error({ErrorCode::kBadMagic, offset_, ErrorField::kMagic},
                                   "the stream cannot begin \"SBMP\" here"));
    }
    // A split frame: keep what there is.
    append(input, input.size(), input.size() >= kHeaderSize ? header_.frame_size() : kHeaderSize);
    return std::nullopt;
  }

  if (buffered_ < kHeaderSize) {
    append(input, std::min(kHeaderSize - buffered_, input.size()), kHeaderSize);
    if (buffered_ < kHeaderSize) {
      if (magic_prefix_mismatch(absl::MakeConstSpan(buffer_.data(), buffered_))) {
        return fail(make_frame_error({ErrorCode::kBadMagic, offset_, ErrorField::kMagic},
                                     "the stream cannot begin \"SBMP\" here"));
      }
      return std::nullopt;
    }
    absl::StatusOr<Header> h = decode_header(buffer_.data(), limits_, offset_);
    if (!h.ok()) return fail(h.status());
    header_ = *h;
  }

  size_t size = header_.frame_size();
  append(input, std::min(size - buffered_, input.size()), size);
  if (buffered_ < size) return std::nullopt;
  // The frame is a view into buffer_, which is not written again until the
  // next call: forget it now.
  buffered_ = 0;
  return finish(header_, buffer_.data());
}

}  // namespace coring::sbmp
