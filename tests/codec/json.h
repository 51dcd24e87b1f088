// A small JSON reader for the codec tests (the SBMP vectors' .json files and
// the sbmp tool's output). Numbers keep their text so 64-bit integers such as
// 18446744073709551615 compare exactly. Not a general-purpose library: no
// \u escapes beyond the ASCII range, no depth limit worth speaking of.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace coring::sbmp::testing {

class Json {
 public:
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject };

  static absl::StatusOr<Json> parse(absl::string_view text);

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::kNull; }
  bool as_bool() const { return bool_; }
  // The number's text, as written.
  const std::string& number_text() const { return text_; }
  std::optional<uint64_t> as_u64() const;
  const std::string& as_string() const { return text_; }
  const std::vector<Json>& items() const { return items_; }
  const std::map<std::string, Json>& members() const { return members_; }
  // Member `key` of an object; a null Json if absent.
  const Json& operator[](const std::string& key) const;
  bool has(const std::string& key) const { return members_.count(key) != 0; }

  // Structural equality (object member order ignored).
  friend bool operator==(const Json& a, const Json& b);
  std::string dump() const;

 private:
  friend class JsonParser;
  Kind kind_ = Kind::kNull;
  bool bool_ = false;
  std::string text_;
  std::vector<Json> items_;
  std::map<std::string, Json> members_;
};

}  // namespace coring::sbmp::testing
