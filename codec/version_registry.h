// VersionRegistry: the SBMP major versions one side speaks, each with the
// VersionDecoder that implements exactly one version byte of it (SBMP.md
// 3.1). The frame decoder asks it whether a header's major is spoken and
// lets that version check the body; negotiation asks it which version to
// pick for a HELLO's range.
//
// standard() holds 1.3 only. To speak a second major, build your own:
//
//   VersionRegistry versions;                       // starts with 1.3
//   versions.add(std::make_unique<MyV2Decoder>());  // version() == 0x21
//   Codec codec({.versions = &versions});           // must outlive codec
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "coring/codec/header.h"

namespace coring::sbmp {

class VersionDecoder {
 public:
  virtual ~VersionDecoder() = default;
  // The one version byte this decoder implements (0x13 for SBMP/1.3).
  virtual uint8_t version() const = 0;
  // Checks a frame body whose header and trailer already passed. Returns why
  // the extension block (or another body rule of this version) is broken, or
  // nullopt. The caller turns it into BAD_EXTENSION (field `extensions`).
  virtual std::optional<std::string> check_body(const Header& header,
                                                absl::Span<const uint8_t> ext_block,
                                                absl::Span<const uint8_t> payload) const = 0;
};

// SBMP/1.3 (any 1.y frame is read the same way).
class Sbmp13Decoder final : public VersionDecoder {
 public:
  uint8_t version() const override { return kVersion13; }
  std::optional<std::string> check_body(const Header& header, absl::Span<const uint8_t> ext_block,
                                        absl::Span<const uint8_t> payload) const override;
};

class VersionRegistry {
 public:
  // Holds Sbmp13Decoder.
  VersionRegistry();
  VersionRegistry(const VersionRegistry&) = delete;
  VersionRegistry& operator=(const VersionRegistry&) = delete;

  // The registry with 1.3 only; immutable.
  static const VersionRegistry& standard();

  // Registers (or replaces) the decoder for its version's major.
  absl::Status add(std::unique_ptr<VersionDecoder> decoder);

  const VersionDecoder* find(uint8_t major) const {
    return major < by_major_.size() ? by_major_[major].get() : nullptr;
  }
  // Bit M set: major M spoken.
  uint16_t majors() const { return majors_; }
  // The lowest and highest version bytes spoken (for a HELLO's range).
  uint8_t min_version() const;
  uint8_t max_version() const;

  // The version byte to answer a HELLO offering [min_version, max_version]:
  // the highest spoken major M with some version M.x in the range.
  std::optional<uint8_t> choose(uint8_t min_version, uint8_t max_version) const;
  // "1.3" or "1.3,2.1": the GOAWAY(UNSUPPORTED_VERSION) reason's list.
  std::string supported_list() const;

 private:
  std::array<std::unique_ptr<VersionDecoder>, 16> by_major_;
  uint16_t majors_ = 0;
};

}  // namespace coring::sbmp
