// A toy SBMP/2.1 decoder for the version-registry tests: same header, but
// 2.1 frames carry no extension block.
#pragma once

#include <optional>
#include <string>

#include "coring/codec/version_registry.h"

namespace coring::sbmp::testing {

class ToyV2Decoder final : public VersionDecoder {
 public:
  static constexpr uint8_t kVersion = 0x21;
  uint8_t version() const override { return kVersion; }
  std::optional<std::string> check_body(const Header&, absl::Span<const uint8_t> ext_block,
                                        absl::Span<const uint8_t>) const override {
    if (!ext_block.empty()) return std::string("SBMP/2.1 frames have no extension block");
    return std::nullopt;
  }
};

}  // namespace coring::sbmp::testing
