#include "coring/codec/codec.h"

#include <algorithm>
#include <array>
#include <cstdint>

#include "absl/strings/str_format.h"

namespace coring::sbmp {
namespace {

// Room always kept for our final GOAWAY (the largest one).
constexpr size_t kGoawayReserve = kHeaderSize + kMaxGoawayPayload + kTrailerSize;

uint32_t goaway_code_for(const absl::Status& why) {
  if (auto e = frame_error(why)) return static_cast<uint32_t>(e->code);
  switch (why.code()) {
    case absl::StatusCode::kUnavailable:
      return static_cast<uint32_t>(ErrorCode::kShutdown);
    case absl::StatusCode::kResourceExhausted:
      return static_cast<uint32_t>(ErrorCode::kOverloaded);
    case absl::StatusCode::kDeadlineExceeded:
      return static_cast<uint32_t>(ErrorCode::kIdleTimeout);
    default:
      return static_cast<uint32_t>(ErrorCode::kNoError);
  }
}

}  // namespace

Codec::Codec(CodecOptions options)
    : decoder_({.max_frame = effective_max_frame(options.max_frame), .versions = options.versions}),
      role_(options.role) {
  // Until negotiated, frames are 1.3 (HELLO and HELLO_ACK always are).
  decoder_.set_accepted_majors(uint16_t{1} << version_major(kVersion13));
  NegotiationOptions negotiation{.max_frame = options.max_frame,
                                 .features = options.features,
                                 .agent = std::move(options.agent),
                                 .versions = options.versions};
  if (role_ == Role::kServer) {
    negotiation_ = std::make_unique<std::variant<ServerNegotiation, ClientNegotiation>>(
        std::in_place_type<ServerNegotiation>, std::move(negotiation));
    return;
  }
  if (!options.send_hello) return;  // the defaults hold: nothing to negotiate
  negotiation_ = std::make_unique<std::variant<ServerNegotiation, ClientNegotiation>>(
      std::in_place_type<ClientNegotiation>, std::move(negotiation));
  Hello hello = client()->start();
  std::array<uint8_t, kMaxHelloPayload> payload{};
  size_t n = *write_hello(hello, absl::MakeSpan(payload));
  queue(kTypeHello, {}, absl::MakeConstSpan(payload.data(), n));
}

bool Codec::established() const {
  if (negotiation_ == nullptr) return true;
  return server() != nullptr ? server()->established() : client()->established();
}

void Codec::apply(const Settings& settings) {
  settings_ = settings;
  decoder_.set_accepted_majors(static_cast<uint16_t>(1u << version_major(settings.version)));
}

bool Codec::queue(uint16_t type, absl::Span<const uint8_t> ext_block,
                  absl::Span<const uint8_t> payload, bool for_goaway) {
  if (goaway_sent_) return false;  // nothing follows our GOAWAY
  // Not zeroed: only the bytes encoded into it are ever read.
  if (output_ == nullptr) output_ = std::make_unique_for_overwrite<uint8_t[]>(kOutputCapacity);
  size_t limit = kOutputCapacity - (for_goaway ? 0 : kGoawayReserve);
  size_t room = out_end_ < limit ? limit - out_end_ : 0;
  Frame frame = make_frame(type, payload, Extensions(ext_block));
  absl::StatusOr<size_t> n =
      encode_frame(frame, {.version = settings_.version, .chk = settings_.chk()},
                   absl::MakeSpan(output_.get() + out_end_, room));
  if (n.ok()) out_end_ += *n;
  if (out_begin_ == out_end_) output_.reset();  // nothing was pending and nothing fit
  return n.ok();
}

void Codec::queue_goaway(uint32_t code, absl::string_view reason) {
  if (goaway_sent_ || goaway_received_) return;
  std::array<uint8_t, kMaxGoawayPayload> payload{};
  size_t n = *write_goaway({code, reason.substr(0, kMaxGoawayReason)}, absl::MakeSpan(payload));
  queue(kTypeGoaway, {}, absl::MakeConstSpan(payload.data(), n), /*for_goaway=*/true);
  goaway_sent_ = true;
  closing_ = true;
}

absl::Status Codec::fail(absl::Status status, absl::string_view reason) {
  error_ = status;
  auto e = frame_error(status);
  uint32_t code = static_cast<uint32_t>(e ? e->code : ErrorCode::kProtocolError);
  queue_goaway(code, reason.empty() ? absl::string_view(status.message()) : reason);
  return status;
}

void Codec::consume_output(size_t n) {
  out_begin_ += std::min(n, out_end_ - out_begin_);
  if (out_begin_ == out_end_) {
    out_begin_ = out_end_ = 0;
    // All sent: after a handshake or a goodbye nothing more is likely to
    // come, so the buffer goes; keep-alive traffic keeps it (see trim()).
    if (!keep_output_) output_.reset();
  }
}

void Codec::trim() {
  decoder_.trim();
  if (out_begin_ == out_end_) {
    output_.reset();
    keep_output_ = false;
  }
}

void Codec::close(absl::Status why) {
  closing_ = true;
  queue_goaway(goaway_code_for(why), why.message());
}

absl::Status Codec::ping(absl::Span<const uint8_t> payload, std::optional<uint64_t> request_id) {
  if (closing_ || !error_.ok()) return absl::FailedPreconditionError("connection is closing");
  if (payload.size() > kMaxPingPayload) {
    return absl::InvalidArgumentError("PING payload over 64 bytes");
  }
  ExtensionBuilder ext;
  if (request_id) ext.set_request_id(*request_id);
  keep_output_ = true;
  if (!queue(kTypePing, ext.bytes(), payload)) {
    return absl::ResourceExhaustedError("output buffer full");
  }
  return absl::OkStatus();
}

absl::Status Codec::on_negotiation(const Frame& frame) {
  // Once negotiated (the common case) an application frame costs this one
  // test. Before that, it ends a server's wait for a HELLO (none came
  // first: the defaults hold).
  if (negotiation_ == nullptr) {
    if (!is_control_type(frame.type())) return absl::OkStatus();
    absl::Status st = role_ == Role::kServer ? ServerNegotiation::check_established(frame)
                                             : ClientNegotiation::check_established(frame);
    return st.ok() ? st : fail(std::move(st));
  }
  if (ServerNegotiation* server = this->server(); server != nullptr) {
    absl::StatusOr<std::optional<HelloAck>> step = server->on_frame(frame);
    if (!step.ok()) return fail(step.status(), server->goaway_reason());
    if (step->has_value()) {
      std::array<uint8_t, kMaxHelloPayload> payload{};
      size_t n = *write_hello_ack(**step, absl::MakeSpan(payload));
      // The ack itself goes out as 1.3 without CHK; the settings apply after.
      queue(kTypeHelloAck, {}, absl::MakeConstSpan(payload.data(), n));
      apply(server->settings());
    }
    if (server->established()) negotiation_.reset();  // see negotiation_
    return absl::OkStatus();
  }
  ClientNegotiation* client = this->client();
  if (absl::Status st = client->on_frame(frame); !st.ok()) return fail(st);
  if (client->established()) {
    apply(client->settings());
    negotiation_.reset();
  }
  return absl::OkStatus();
}

absl::Status Codec::on_control(const Frame& frame) {
  switch (frame.type()) {
    case kTypeHello:
    case kTypeHelloAck:
      return absl::OkStatus();  // handled by on_negotiation
    case kTypePing: {
      if (absl::Status st = check_ping(frame); !st.ok()) return fail(st);
      if (closing_) return absl::OkStatus();
      // A PONG copies the payload and REQUEST_ID, nothing else.
      std::array<uint8_t, 10> ext{};
      size_t ext_len = 0;
      if (auto e = frame.extensions.find(kExtRequestId)) {
        ext[0] = kExtRequestId;
        ext[1] = 8;
        std::copy(e->value.begin(), e->value.end(), ext.begin() + 2);
        ext_len = ext.size();
      }
      keep_output_ = true;
      if (!queue(kTypePong, absl::MakeConstSpan(ext.data(), ext_len), frame.payload)) {
        return fail(make_frame_error({ErrorCode::kOverloaded, frame.offset, ErrorField::kNone},
                                     "PONGs not read by the peer filled the output buffer"),
                    "too many unanswered PINGs");
      }
      return absl::OkStatus();
    }
    case kTypePong:
      ++pongs_;  // solicited or not: nothing to do
      return absl::OkStatus();
    case kTypeGoaway: {
      absl::StatusOr<GoAway> goaway = parse_goaway(frame);
      if (!goaway.ok()) return fail(goaway.status());
      goaway_received_ = true;
      closing_ = true;
      error_ = make_remote_goaway_error(goaway->code, frame.offset, goaway->reason);
      return error_;
    }
    default:
      return fail(check_control_type(frame));
  }
}

absl::StatusOr<std::optional<Frame>> Codec::decode(absl::Span<const uint8_t>& input) {
  // One object, returned by every return: the decoder builds the frame in
  // the caller's slot (NRVO; see Decoder::build()). Only frames that come
  // after a control frame in the same input are copied out of the loop of
  // decode_after_control().
  const bool stopped = !error_.ok();
  absl::StatusOr<std::optional<Frame>> next =
      stopped ? absl::StatusOr<std::optional<Frame>>(error_) : decoder_.next(input);
  // (Lent: the caller's mistake, not the peer's: no GOAWAY.)
  if (stopped || decoder_.lent()) return next;
  if (absl::Status st = take(next); !st.ok()) {
    next = std::move(st);
  } else if (next->has_value() && is_control_type((*next)->type())) {
    next = decode_after_control(input);
  }
  return next;
}

absl::StatusOr<std::optional<Frame>> Codec::decode_after_control(absl::Span<const uint8_t>& input) {
  for (;;) {
    absl::StatusOr<std::optional<Frame>> next = decoder_.next(input);
    if (absl::Status st = take(next); !st.ok()) return st;
    if (!next->has_value() || !is_control_type((*next)->type())) return next;
  }
}

absl::Status Codec::take(const absl::StatusOr<std::optional<Frame>>& next) {
  if (!next.ok()) return fail(next.status());
  if (!next->has_value()) return absl::OkStatus();
  const Frame& frame = **next;
  if (absl::Status st = on_negotiation(frame); !st.ok()) return st;
  return is_control_type(frame.type()) ? on_control(frame) : absl::OkStatus();
}

absl::Status Codec::refuse(const Frame& frame) const {
  if (closing_ || !error_.ok()) {
    return absl::FailedPreconditionError("SBMP connection is closing: nothing more is sent");
  }
  return absl::InvalidArgumentError(absl::StrFormat(
      "type 0x%04x is a control type: the codec sends control frames itself", frame.type()));
}

std::optional<std::chrono::microseconds> Codec::time_budget(const Frame& frame) {
  const std::optional<uint32_t> us = frame.extensions.timeout_us();
  if (!us) return std::nullopt;
  return std::chrono::microseconds(*us);
}

Frame Codec::stamp(const Frame& frame, uint64_t id, std::optional<std::chrono::microseconds> budget,
                   const std::optional<TraceContext>& trace, CallHeader& header) {
  header.clear();
  for (const Extension& e : frame.extensions) {
    if (e.kind == kExtRequestId || (budget && e.kind == kExtTimeoutUs) ||
        (trace && e.kind == kExtTraceContext)) {
      continue;
    }
    // Entries of a validated block fit a block again; only the 64 KiB block
    // limit could refuse one, and then the entry is left out.
    (void)header.add(e.kind, e.value);
  }
  header.set_request_id(id);
  if (budget) {
    const int64_t us = std::clamp<int64_t>(budget->count(), 0, UINT32_MAX);
    header.set_timeout_us(static_cast<uint32_t>(us));
  }
  if (trace) header.set_trace_context(*trace);
  Frame out = frame;
  out.extensions = header.view();
  return out;
}

Frame Codec::copy_frame(const Frame& frame, std::vector<uint8_t>& storage) {
  const absl::Span<const uint8_t> ext = frame.extensions.bytes();
  storage.clear();
  storage.insert(storage.end(), ext.begin(), ext.end());
  storage.insert(storage.end(), frame.payload.begin(), frame.payload.end());
  storage.insert(storage.end(), frame.payload_tail.begin(), frame.payload_tail.end());
  Frame out = frame;
  out.extensions = Extensions(absl::MakeConstSpan(storage.data(), ext.size()));
  out.payload = absl::MakeConstSpan(storage.data() + ext.size(), frame.payload_size());
  out.payload_tail = {};
  return out;
}

}  // namespace coring::sbmp
