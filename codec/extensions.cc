#include "coring/codec/extensions.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace coring::sbmp {
namespace {

// The fixed length of kinds 0x01-0x04; 0 for the others (any length).
constexpr size_t fixed_length(uint8_t kind) {
  switch (kind) {
    case kExtRequestId:
    case kExtStateVersion:
      return 8;
    case kExtTraceContext:
      return kTraceContextSize;
    case kExtTimeoutUs:
      return 4;
    default:
      return 0;
  }
}

uint64_t load_be(absl::Span<const uint8_t> v) {
  uint64_t x = 0;
  for (uint8_t b : v) x = (x << 8) | b;
  return x;
}

template <size_t N>
std::array<uint8_t, N> store_be(uint64_t v) {
  std::array<uint8_t, N> out{};
  for (size_t i = 0; i < N; ++i) out[N - 1 - i] = static_cast<uint8_t>(v >> (8 * i));
  return out;
}

}  // namespace

absl::string_view extension_name(uint8_t kind) {
  switch (kind) {
    case kExtPadding:
      return "PADDING";
    case kExtRequestId:
      return "REQUEST_ID";
    case kExtTraceContext:
      return "TRACE_CONTEXT";
    case kExtStateVersion:
      return "STATE_VERSION";
    case kExtTimeoutUs:
      return "TIMEOUT_US";
    default:
      return "";
  }
}

std::optional<absl::string_view> validate_extensions(absl::Span<const uint8_t> block) {
  unsigned seen = 0;  // bit k: kind k (1..4) present
  size_t i = 0;
  while (i < block.size()) {
    if (block.size() - i < 2) return "an entry is cut off before its length byte";
    uint8_t kind = block[i];
    size_t len = block[i + 1];
    if (len > block.size() - i - 2) return "an entry runs past the end of the block";
    if (size_t fixed = fixed_length(kind); fixed != 0) {
      if (len != fixed) return "a typed extension has the wrong length";
      if (seen & (1u << kind)) return "a typed extension appears twice";
      seen |= 1u << kind;
    }
    i += 2 + len;
  }
  return std::nullopt;
}

std::optional<Extension> Extensions::find(uint8_t kind) const {
  for (const Extension& e : *this) {
    if (e.kind == kind) return e;
  }
  return std::nullopt;
}

std::optional<uint64_t> Extensions::request_id() const {
  auto e = find(kExtRequestId);
  if (!e) return std::nullopt;
  return load_be(e->value);
}

std::optional<uint64_t> Extensions::state_version() const {
  auto e = find(kExtStateVersion);
  if (!e) return std::nullopt;
  return load_be(e->value);
}

std::optional<uint32_t> Extensions::timeout_us() const {
  auto e = find(kExtTimeoutUs);
  if (!e) return std::nullopt;
  return static_cast<uint32_t>(load_be(e->value));
}

std::optional<TraceContext> Extensions::trace_context() const {
  auto e = find(kExtTraceContext);
  if (!e || e->value.size() != kTraceContextSize) return std::nullopt;
  TraceContext tc;
  tc.version = e->value[0];
  std::copy_n(e->value.begin() + 1, 16, tc.trace_id.begin());
  std::copy_n(e->value.begin() + 17, 8, tc.parent_id.begin());
  tc.trace_flags = e->value[25];
  return tc;
}

void ExtensionBuilder::set_fixed(uint8_t kind, const uint8_t* value, size_t len) {
  for (size_t i = 0; i + 2 <= bytes_.size(); i += 2 + bytes_[i + 1]) {
    if (bytes_[i] == kind) {
      std::copy_n(value, len, bytes_.begin() + i + 2);
      return;
    }
  }
  bytes_.push_back(kind);
  bytes_.push_back(static_cast<uint8_t>(len));
  bytes_.insert(bytes_.end(), value, value + len);
}

void ExtensionBuilder::set_request_id(uint64_t id) {
  set_fixed(kExtRequestId, store_be<8>(id).data(), 8);
}

void ExtensionBuilder::set_state_version(uint64_t version) {
  set_fixed(kExtStateVersion, store_be<8>(version).data(), 8);
}

void ExtensionBuilder::set_timeout_us(uint32_t us) {
  set_fixed(kExtTimeoutUs, store_be<4>(us).data(), 4);
}

void ExtensionBuilder::set_trace_context(const TraceContext& tc) {
  std::array<uint8_t, kTraceContextSize> v{};
  v[0] = tc.version;
  std::copy(tc.trace_id.begin(), tc.trace_id.end(), v.begin() + 1);
  std::copy(tc.parent_id.begin(), tc.parent_id.end(), v.begin() + 17);
  v[25] = tc.trace_flags;
  set_fixed(kExtTraceContext, v.data(), v.size());
}

absl::Status ExtensionBuilder::add_padding(size_t n) {
  std::array<uint8_t, 255> zeros{};
  if (n > zeros.size()) return absl::InvalidArgumentError("PADDING longer than 255 bytes");
  return add(kExtPadding, absl::MakeConstSpan(zeros.data(), n));
}

absl::Status ExtensionBuilder::add(uint8_t kind, absl::Span<const uint8_t> value) {
  if (value.size() > 255) {
    return absl::InvalidArgumentError(
        absl::StrFormat("extension 0x%02x: value of %d bytes (at most 255)", kind, value.size()));
  }
  if (size_t fixed = fixed_length(kind); fixed != 0) {
    if (value.size() != fixed) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s needs %d bytes, got %d", extension_name(kind), fixed, value.size()));
    }
    if (view().find(kind)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s may appear only once", extension_name(kind)));
    }
  }
  if (bytes_.size() + 2 + value.size() > kMaxBlock) {
    return absl::InvalidArgumentError("extension block longer than 65535 bytes");
  }
  bytes_.push_back(kind);
  bytes_.push_back(static_cast<uint8_t>(value.size()));
  bytes_.insert(bytes_.end(), value.begin(), value.end());
  return absl::OkStatus();
}

absl::Status ExtensionBuilder::add_all(const Extensions& block) {
  for (const Extension& e : block) {
    if (absl::Status st = add(e.kind, e.value); !st.ok()) return st;
  }
  return absl::OkStatus();
}

}  // namespace coring::sbmp
