// The SBMP extension block (SBMP.md 1.2): a sequence of TLV entries
// `kind u8 | len u8 | value`. Extensions is a non-owning view of a block that
// passed validate_extensions(): iterate it for every entry in wire order
// (unknown kinds included), or ask for the four typed kinds directly.
// ExtensionBuilder writes a block.
//
//   for (const Extension& e : frame.extensions) { ... e.kind, e.value ... }
//   std::optional<uint64_t> id = frame.extensions.request_id();
//
//   ExtensionBuilder b;
//   b.set_request_id(42);
//   b.set_timeout_us(5000);
//   encode_frame(..., b.view(), ...);
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace coring::sbmp {

enum ExtensionKind : uint8_t {
  kExtPadding = 0x00,
  kExtRequestId = 0x01,
  kExtTraceContext = 0x02,
  kExtStateVersion = 0x03,
  kExtTimeoutUs = 0x04,
};

// "REQUEST_ID" etc. for kinds 0x00-0x04, "" otherwise.
absl::string_view extension_name(uint8_t kind);

// W3C trace-context, binary form (kind 0x02, 26 bytes).
struct TraceContext {
  uint8_t version = 0;
  std::array<uint8_t, 16> trace_id{};
  std::array<uint8_t, 8> parent_id{};
  uint8_t trace_flags = 0;

  friend bool operator==(const TraceContext&, const TraceContext&) = default;
};
inline constexpr size_t kTraceContextSize = 26;

struct Extension {
  uint8_t kind = 0;
  absl::Span<const uint8_t> value;
};

// Why a block is malformed (for the error message); nullopt when it is fine:
// every entry inside the block, kinds 0x01-0x04 with their fixed length and at
// most once each.
std::optional<absl::string_view> validate_extensions(absl::Span<const uint8_t> block);

class Extensions {
 public:
  class Iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = Extension;
    using difference_type = std::ptrdiff_t;
    using pointer = const Extension*;
    using reference = const Extension&;

    Iterator() = default;
    reference operator*() const { return current_; }
    pointer operator->() const { return &current_; }
    Iterator& operator++() {
      rest_ = rest_.subspan(2 + current_.value.size());
      load();
      return *this;
    }
    Iterator operator++(int) {
      Iterator old = *this;
      ++*this;
      return old;
    }
    friend bool operator==(const Iterator& a, const Iterator& b) {
      return a.rest_.data() == b.rest_.data() && a.rest_.size() == b.rest_.size();
    }

   private:
    friend class Extensions;
    explicit Iterator(absl::Span<const uint8_t> rest) : rest_(rest) { load(); }
    void load() {
      if (rest_.size() >= 2) current_ = Extension{rest_[0], rest_.subspan(2, rest_[1])};
    }
    absl::Span<const uint8_t> rest_;
    Extension current_;
  };

  Extensions() = default;
  // `block` must have passed validate_extensions().
  explicit Extensions(absl::Span<const uint8_t> block) : block_(block) {}

  Iterator begin() const { return Iterator(block_); }
  Iterator end() const { return Iterator(block_.subspan(block_.size())); }
  bool empty() const { return block_.empty(); }
  // The raw block, as on the wire.
  absl::Span<const uint8_t> bytes() const { return block_; }

  // The first entry of `kind`, if any.
  std::optional<Extension> find(uint8_t kind) const;
  std::optional<uint64_t> request_id() const;
  std::optional<TraceContext> trace_context() const;
  std::optional<uint64_t> state_version() const;
  std::optional<uint32_t> timeout_us() const;

 private:
  absl::Span<const uint8_t> block_;
};

// Builds an extension block in inline storage (no heap use up to 64 bytes,
// which holds all four typed kinds). The set_* calls replace an existing
// entry of their kind; add() appends any entry and enforces the block rules.
class ExtensionBuilder {
 public:
  static constexpr size_t kMaxBlock = 0xFFFF;

  void set_request_id(uint64_t id);
  void set_trace_context(const TraceContext& tc);
  void set_state_version(uint64_t version);
  void set_timeout_us(uint32_t us);
  // Appends PADDING with `n` (<= 255) zero bytes.
  absl::Status add_padding(size_t n);
  // Appends one entry: fails on a value over 255 bytes, a typed kind with the
  // wrong length or already present, or a block past 65535 bytes.
  absl::Status add(uint8_t kind, absl::Span<const uint8_t> value);
  // Appends every entry of `block` (kept in order).
  absl::Status add_all(const Extensions& block);

  void clear() { bytes_.clear(); }
  size_t size() const { return bytes_.size(); }
  absl::Span<const uint8_t> bytes() const { return bytes_; }
  Extensions view() const { return Extensions(bytes_); }

 private:
  void set_fixed(uint8_t kind, const uint8_t* value, size_t len);
  absl::InlinedVector<uint8_t, 64> bytes_;
};

}  // namespace coring::sbmp
