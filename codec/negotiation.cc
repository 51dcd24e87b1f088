#include "coring/codec/negotiation.h"

#include "absl/strings/str_format.h"
#include "coring/codec/error.h"

namespace coring::sbmp {
namespace {

absl::Status type_error(ErrorCode code, const Frame& frame, absl::string_view why) {
  return make_frame_error({code, frame.offset, ErrorField::kType}, why);
}

}  // namespace

ServerNegotiation::ServerNegotiation(NegotiationOptions options)
    : options_(std::move(options)),
      versions_(options_.versions ? options_.versions : &VersionRegistry::standard()) {
  if (options_.agent.size() > kMaxAgent) options_.agent.resize(kMaxAgent);
}

absl::Status ServerNegotiation::check_established(const Frame& frame) {
  if (frame.type() == kTypeHelloAck) {
    return type_error(ErrorCode::kProtocolError, frame, "HELLO_ACK answers no HELLO");
  }
  if (frame.type() == kTypeHello) {
    return type_error(ErrorCode::kProtocolError, frame, "HELLO after the first frame");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<HelloAck>> ServerNegotiation::on_frame(const Frame& frame) {
  if (established_ || frame.type() != kTypeHello) {
    if (absl::Status st = check_established(frame); !st.ok()) return st;
    established_ = true;  // no HELLO first: the defaults hold
    return std::nullopt;
  }
  absl::StatusOr<Hello> hello = parse_hello(frame);
  if (!hello.ok()) return hello.status();
  std::optional<uint8_t> version = versions_->choose(hello->min_version, hello->max_version);
  if (!version) {
    goaway_reason_ = "supported=" + versions_->supported_list();
    return type_error(ErrorCode::kUnsupportedVersion, frame,
                      absl::StrFormat("no common version in [0x%02x, 0x%02x]; %s",
                                      hello->min_version, hello->max_version, goaway_reason_));
  }
  established_ = true;
  settings_.version = *version;
  settings_.peer_max_frame = effective_max_frame(hello->max_frame);
  settings_.features = hello->features & options_.features & kKnownFeatures;
  return HelloAck{*version, options_.max_frame, settings_.features, options_.agent};
}

ClientNegotiation::ClientNegotiation(NegotiationOptions options)
    : options_(std::move(options)),
      versions_(options_.versions ? options_.versions : &VersionRegistry::standard()) {
  if (options_.agent.size() > kMaxAgent) options_.agent.resize(kMaxAgent);
}

Hello ClientNegotiation::start() {
  state_ = State::kAwaitingAck;
  hello_ = Hello{versions_->min_version(), versions_->max_version(), options_.max_frame,
                 options_.features & kKnownFeatures, options_.agent};
  return hello_;
}

void ClientNegotiation::skip() {
  state_ = State::kEstablished;
  settings_ = Settings{};
}

absl::Status ClientNegotiation::check_established(const Frame& frame) {
  if (frame.type() == kTypeHello) {
    return type_error(ErrorCode::kProtocolError, frame, "HELLO sent to a client");
  }
  if (frame.type() == kTypeHelloAck) {
    return type_error(ErrorCode::kProtocolError, frame, "HELLO_ACK answers no HELLO");
  }
  return absl::OkStatus();
}

absl::Status ClientNegotiation::on_frame(const Frame& frame) {
  if (state_ != State::kAwaitingAck || frame.type() != kTypeHelloAck) {
    return check_established(frame);
  }
  absl::StatusOr<HelloAck> ack = parse_hello_ack(frame);
  if (!ack.ok()) return ack.status();
  uint8_t major = version_major(ack->version);
  bool offered =
      major >= version_major(hello_.min_version) && major <= version_major(hello_.max_version);
  if (!offered || versions_->find(major) == nullptr) {
    return type_error(ErrorCode::kUnsupportedVersion, frame,
                      absl::StrFormat("HELLO_ACK chose version 0x%02x, not offered", ack->version));
  }
  state_ = State::kEstablished;
  settings_.version = ack->version;
  settings_.peer_max_frame = effective_max_frame(ack->max_frame);
  // "The intersection": a server answering more than we offered gets ours.
  settings_.features = ack->features & hello_.features;
  return absl::OkStatus();
}

}  // namespace coring::sbmp
