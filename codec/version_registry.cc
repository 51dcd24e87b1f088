#include "coring/codec/version_registry.h"

#include "absl/strings/str_format.h"
#include "coring/codec/extensions.h"

namespace coring::sbmp {

std::optional<std::string> Sbmp13Decoder::check_body(const Header&,
                                                     absl::Span<const uint8_t> ext_block,
                                                     absl::Span<const uint8_t>) const {
  if (ext_block.empty()) return std::nullopt;
  if (auto why = validate_extensions(ext_block)) return std::string(*why);
  return std::nullopt;
}

VersionRegistry::VersionRegistry() {
  by_major_[1] = std::make_unique<Sbmp13Decoder>();
  majors_ = uint16_t{1} << 1;
}

const VersionRegistry& VersionRegistry::standard() {
  static const VersionRegistry registry;
  return registry;
}

absl::Status VersionRegistry::add(std::unique_ptr<VersionDecoder> decoder) {
  if (decoder == nullptr) return absl::InvalidArgumentError("null version decoder");
  uint8_t major = version_major(decoder->version());
  if (major == 0) return absl::InvalidArgumentError("major version 0 is not a version");
  by_major_[major] = std::move(decoder);
  majors_ |= static_cast<uint16_t>(1u << major);
  return absl::OkStatus();
}

uint8_t VersionRegistry::min_version() const {
  for (size_t m = 0; m < by_major_.size(); ++m) {
    if (by_major_[m]) return by_major_[m]->version();
  }
  return kVersion13;
}

uint8_t VersionRegistry::max_version() const {
  for (size_t m = by_major_.size(); m-- > 0;) {
    if (by_major_[m]) return by_major_[m]->version();
  }
  return kVersion13;
}

std::optional<uint8_t> VersionRegistry::choose(uint8_t min_version, uint8_t max_version) const {
  if (min_version > max_version) return std::nullopt;
  for (size_t m = by_major_.size(); m-- > 0;) {
    if (!by_major_[m]) continue;
    unsigned lowest = m << 4;
    unsigned highest = lowest | 0x0F;
    if (min_version <= highest && max_version >= lowest) return by_major_[m]->version();
  }
  return std::nullopt;
}

std::string VersionRegistry::supported_list() const {
  std::string out;
  for (const auto& d : by_major_) {
    if (!d) continue;
    if (!out.empty()) out += ',';
    out += absl::StrFormat("%d.%d", version_major(d->version()), version_minor(d->version()));
  }
  return out;
}

}  // namespace coring::sbmp
