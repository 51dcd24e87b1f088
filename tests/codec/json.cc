#include "json.h"

#include <cctype>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace coring::sbmp::testing {

class JsonParser {
 public:
  explicit JsonParser(absl::string_view text) : s_(text) {}

  absl::StatusOr<Json> document() {
    Json v;
    if (!value(v, 0)) return error();
    skip_ws();
    if (i_ != s_.size()) return error();
    return v;
  }

 private:
  absl::Status error() const {
    return absl::InvalidArgumentError(absl::StrFormat("bad JSON at byte %d of %d", i_, s_.size()));
  }
  void skip_ws() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  bool eat(char c) {
    skip_ws();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  bool literal(absl::string_view word) {
    if (s_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    return true;
  }

  bool value(Json& v, int depth) {
    if (depth > 64) return false;
    skip_ws();
    if (i_ >= s_.size()) return false;
    char c = s_[i_];
    if (c == '{') return object(v, depth);
    if (c == '[') return array(v, depth);
    if (c == '"') {
      v.kind_ = Json::Kind::kString;
      return string(v.text_);
    }
    if (literal("null")) return true;
    if (literal("true") || literal("false")) {
      v.kind_ = Json::Kind::kBool;
      v.bool_ = s_[i_ - 1] == 'e' && s_[i_ - 2] == 'u';
      return true;
    }
    return number(v);
  }

  bool number(Json& v) {
    size_t start = i_;
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    while (i_ < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[i_])) || s_[i_] == '.' ||
                              s_[i_] == 'e' || s_[i_] == 'E' || s_[i_] == '+' || s_[i_] == '-')) {
      ++i_;
    }
    if (i_ == start) return false;
    v.kind_ = Json::Kind::kNumber;
    v.text_ = std::string(s_.substr(start, i_ - start));
    double unused;
    return absl::SimpleAtod(v.text_, &unused);
  }

  bool string(std::string& out) {
    ++i_;  // opening quote
    while (i_ < s_.size() && s_[i_] != '"') {
      char c = s_[i_++];
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) return false;
      char e = s_[i_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out += e;
          break;
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'u': {
          uint32_t code = 0;
          if (i_ + 4 > s_.size()) return false;
          for (int k = 0; k < 4; ++k) {
            char h = s_[i_++];
            if (!std::isxdigit(static_cast<unsigned char>(h))) return false;
            code = code * 16 + (std::isdigit(static_cast<unsigned char>(h))
                                    ? h - '0'
                                    : (std::tolower(static_cast<unsigned char>(h)) - 'a' + 10));
          }
          if (code >= 0x80) return false;  // not needed by the tests
          out += static_cast<char>(code);
          break;
        }
        default:
          return false;
      }
    }
    if (i_ >= s_.size()) return false;
    ++i_;  // closing quote
    return true;
  }

  bool array(Json& v, int depth) {
    ++i_;
    v.kind_ = Json::Kind::kArray;
    if (eat(']')) return true;
    do {
      Json item;
      if (!value(item, depth + 1)) return false;
      v.items_.push_back(std::move(item));
    } while (eat(','));
    return eat(']');
  }

  bool object(Json& v, int depth) {
    ++i_;
    v.kind_ = Json::Kind::kObject;
    if (eat('}')) return true;
    do {
      skip_ws();
      std::string key;
      if (i_ >= s_.size() || s_[i_] != '"' || !string(key)) return false;
      if (!eat(':')) return false;
      Json item;
      if (!value(item, depth + 1)) return false;
      if (!v.members_.emplace(std::move(key), std::move(item)).second) return false;
    } while (eat(','));
    return eat('}');
  }

  absl::string_view s_;
  size_t i_ = 0;
};

absl::StatusOr<Json> Json::parse(absl::string_view text) { return JsonParser(text).document(); }

std::optional<uint64_t> Json::as_u64() const {
  uint64_t v;
  if (kind_ != Kind::kNumber || !absl::SimpleAtoi(text_, &v)) return std::nullopt;
  return v;
}

const Json& Json::operator[](const std::string& key) const {
  static const Json kNull;
  auto it = members_.find(key);
  return it == members_.end() ? kNull : it->second;
}

bool operator==(const Json& a, const Json& b) {
  if (a.kind_ != b.kind_) return false;
  switch (a.kind_) {
    case Json::Kind::kNull:
      return true;
    case Json::Kind::kBool:
      return a.bool_ == b.bool_;
    case Json::Kind::kNumber: {
      auto x = a.as_u64(), y = b.as_u64();
      if (x && y) return *x == *y;
      double dx, dy;
      return absl::SimpleAtod(a.text_, &dx) && absl::SimpleAtod(b.text_, &dy) && dx == dy;
    }
    case Json::Kind::kString:
      return a.text_ == b.text_;
    case Json::Kind::kArray:
      return a.items_ == b.items_;
    case Json::Kind::kObject:
      return a.members_ == b.members_;
  }
  return false;
}

std::string Json::dump() const {
  switch (kind_) {
    case Kind::kNull:
      return "null";
    case Kind::kBool:
      return bool_ ? "true" : "false";
    case Kind::kNumber:
      return text_;
    case Kind::kString:
      return absl::StrCat("\"", text_, "\"");
    case Kind::kArray: {
      std::string out = "[";
      for (size_t i = 0; i < items_.size(); ++i)
        absl::StrAppend(&out, i ? "," : "", items_[i].dump());
      return out + "]";
    }
    case Kind::kObject: {
      std::string out = "{";
      bool first = true;
      for (const auto& [k, v] : members_) {
        absl::StrAppend(&out, first ? "" : ",", "\"", k, "\":", v.dump());
        first = false;
      }
      return out + "}";
    }
  }
  return "";
}

}  // namespace coring::sbmp::testing
