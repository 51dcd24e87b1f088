// The HELLO / HELLO_ACK rules of SBMP.md 3.1 as one small state machine per
// role, independent of any transport. Feed each with every frame received,
// in order; they say what to send and which Settings apply.
//
//   ClientNegotiation client({.max_frame = 1 << 20});
//   send(HELLO, client.start());           // first frame, framed as 1.3
//   ... for each frame received: if (!client.on_frame(f).ok()) -> GOAWAY + close
//   if (client.established()) use client.settings();
//
//   ServerNegotiation server({});
//   ... for each frame received:
//   absl::StatusOr<std::optional<HelloAck>> step = server.on_frame(f);
//   error -> GOAWAY(code of frame_error(status)) + close; an ack -> send it
//   (framed as 1.3, without CHK); settings() then apply to every later frame.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "coring/codec/control.h"
#include "coring/codec/frame.h"
#include "coring/codec/header.h"
#include "coring/codec/version_registry.h"

namespace coring::sbmp {

// What a connection uses once negotiated (or without HELLO: the defaults).
struct Settings {
  // The version byte both sides frame with.
  uint8_t version = kVersion13;
  // The largest `length` the peer accepts: never send more.
  uint32_t peer_max_frame = kDefaultMaxFrame;
  // Negotiated features (the intersection).
  uint32_t features = 0;

  // Both sides set CHK on every frame after the HELLO_ACK.
  bool chk() const { return (features & kFeatureCrc32c) != 0; }
  friend bool operator==(const Settings&, const Settings&) = default;
};

struct NegotiationOptions {
  // This side's receive limit, announced in HELLO / HELLO_ACK.
  uint32_t max_frame = kDefaultMaxFrame;
  // Features offered (client) or accepted (server).
  uint32_t features = kFeatureCrc32c;
  // At most 255 bytes (longer is cut).
  std::string agent = "coring";
  // nullptr means VersionRegistry::standard(). Not owned.
  const VersionRegistry* versions = nullptr;
};

class ServerNegotiation {
 public:
  explicit ServerNegotiation(NegotiationOptions options);

  // Returns the HELLO_ACK to send when `frame` is the opening HELLO; nullopt
  // for any other acceptable frame (the first non-HELLO frame fixes the
  // defaults). Errors: PROTOCOL_ERROR for a misplaced or second HELLO or any
  // HELLO_ACK (field `type`) and a malformed HELLO (field `payload`);
  // UNSUPPORTED_VERSION (field `type`) when no version is common - then
  // goaway_reason() is the "supported=1.3" text to send.
  absl::StatusOr<std::optional<HelloAck>> on_frame(const Frame& frame);
  // What on_frame() says once established, without the state: a HELLO or
  // HELLO_ACK is a PROTOCOL_ERROR, anything else is fine. (Codec drops its
  // negotiation once done and asks this.)
  static absl::Status check_established(const Frame& frame);

  bool established() const { return established_; }
  const Settings& settings() const { return settings_; }
  // The GOAWAY reason for a failed negotiation.
  const std::string& goaway_reason() const { return goaway_reason_; }

 private:
  NegotiationOptions options_;
  const VersionRegistry* versions_;
  bool established_ = false;
  Settings settings_;
  std::string goaway_reason_;
};

class ClientNegotiation {
 public:
  explicit ClientNegotiation(NegotiationOptions options);

  // The HELLO to open with: every version spoken, max_frame, features,
  // agent. Call once, before sending anything.
  Hello start();
  // Opens without HELLO: version 1.3, 16 MiB, no features, from now on.
  void skip();

  // Takes a HELLO_ACK answering our HELLO (settings then apply). Errors:
  // PROTOCOL_ERROR for a HELLO, an unsolicited or second HELLO_ACK (field
  // `type`) or a malformed one (field `payload`); UNSUPPORTED_VERSION (field
  // `type`) for an ack choosing a major we do not speak.
  absl::Status on_frame(const Frame& frame);
  // What on_frame() says once established (or after skip()), without the
  // state: a HELLO or HELLO_ACK is a PROTOCOL_ERROR, anything else is fine.
  static absl::Status check_established(const Frame& frame);

  bool awaiting_ack() const { return state_ == State::kAwaitingAck; }
  bool established() const { return state_ == State::kEstablished; }
  const Settings& settings() const { return settings_; }

 private:
  enum class State { kIdle, kAwaitingAck, kEstablished };
  NegotiationOptions options_;
  const VersionRegistry* versions_;
  State state_ = State::kIdle;
  Hello hello_;
  Settings settings_;
};

}  // namespace coring::sbmp
