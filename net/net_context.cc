// NetContext (net_context.h): creation, the registered-send set-up, the
// list of live streams and the counters' text form.
#include "coring/net/net_context.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>

#include "absl/strings/str_format.h"
#include "coring/net/stream_state.h"

namespace coring::net {

// ---------------------------------------------------------------- NetContext

std::string NetStats::to_string() const {
  return absl::StrFormat(
      "streams_opened=%u streams_closed=%u bytes_received=%u bytes_sent=%u sends=%u "
      "sendmsg_sends=%u fixed_sends=%u zc_sends=%u zc_copied=%u send_buffer_fallbacks=%u "
      "copied_writes=%u borrowed_writes=%u adopted_writes=%u taken_writes=%u shared_writes=%u "
      "writer_waits=%u "
      "aborts=%u lingered=%u "
      "partial_frame_refusals=%u partial_frame_peak=%u drain_overruns=%u "
      "receive_buffers_reserved=%u silent_sends_full=%u",
      streams_opened, streams_closed, bytes_received, bytes_sent, sends, sendmsg_sends, fixed_sends,
      zc_sends, zc_copied, send_buffer_fallbacks, copied_writes, borrowed_writes, adopted_writes,
      taken_writes, shared_writes, writer_waits, aborts, lingered, partial_frame_refusals,
      partial_frame_peak, drain_overruns, receive_buffers_reserved, silent_sends_full);
}

std::vector<uint8_t> NetContext::take_spare_buffer() noexcept {
  if (spare_buffers_.empty()) return {};
  std::vector<uint8_t> bytes = std::move(spare_buffers_.back());
  spare_buffers_.pop_back();
  spare_bytes_ -= bytes.capacity();
  return bytes;
}

std::optional<std::vector<uint8_t>> NetContext::spare_for_trade() noexcept {
  if (!spare_buffers_.empty()) return take_spare_buffer();
  if (traded_bytes_ >= options_.spare_buffer_bytes) return std::nullopt;
  return std::vector<uint8_t>();
}

void NetContext::keep_spare_buffer(std::vector<uint8_t>&& bytes) noexcept {
  if (spare_bytes_ + bytes.capacity() > options_.spare_buffer_bytes) {
    drop_traded(bytes.capacity());
    return;
  }
  spare_bytes_ += bytes.capacity();
  spare_buffers_.push_back(std::move(bytes));
}

std::vector<uint8_t> NetContext::take_frame_buffer(size_t want) noexcept {
  // The last kept buffer that fits, looking a few back at most: the pool is
  // LIFO so that what is taken was used last, still in cache.
  const size_t n = spare_buffers_.size();
  for (size_t i = n; i > 0 && n - i < 4; --i) {
    if (spare_buffers_[i - 1].capacity() >= want) {
      std::swap(spare_buffers_[i - 1], spare_buffers_.back());
      break;
    }
  }
  std::vector<uint8_t> bytes = take_spare_buffer();
  drop_traded(bytes.capacity());
  return bytes;
}

bool NetContext::keep_frame_buffer(std::vector<uint8_t>& bytes) noexcept {
  if (spare_bytes_ + bytes.capacity() > options_.spare_buffer_bytes) return false;
  traded_bytes_ += bytes.capacity();  // as a traded buffer kept after its send
  keep_spare_buffer(std::move(bytes));
  return true;
}

absl::StatusOr<std::unique_ptr<NetContext>> NetContext::create(EventLoop& loop,
                                                               NetOptions options) {
  if (options.max_queued_bytes == 0) {
    return absl::InvalidArgumentError("NetOptions: max_queued_bytes must be > 0");
  }
  if (options.recv_share == 0) {
    // (A share of none would pause every multishot recv at its first chunk.)
    return absl::InvalidArgumentError("NetOptions: recv_share must be > 0");
  }
  if (options.max_recv_buffers == 0 || options.max_recv_buffers > 32768 ||
      (options.max_recv_buffers & (options.max_recv_buffers - 1)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("NetOptions: max_recv_buffers %u must be a power of two in [1, 32768]",
                        options.max_recv_buffers));
  }
  std::unique_ptr<NetContext> ctx(new NetContext(loop, options));
  absl::StatusOr<std::unique_ptr<BufferRing>> ring = absl::UnavailableError("no arena");
  const uint32_t max_buffers = std::max(options.recv_buffers, options.max_recv_buffers);
  if (loop.arena() != nullptr) {
    ring = BufferRing::create(loop, *loop.arena(), options.recv_buffers, options.recv_buffer_size,
                              max_buffers);
  }
  if (!ring.ok()) {
    // The loop has no arena, or no room in it: use one of our own (provided
    // buffers need not be registered).
    absl::StatusOr<pool::BufferArena> arena = pool::BufferArena::create(
        {.name = "coring.net_recv.v1",
         .classes = {{4096, 1}},
         .carve_bytes = size_t{options.recv_buffers} * options.recv_buffer_size});
    if (!arena.ok()) return arena.status();
    ctx->own_arena_.emplace(std::move(*arena));
    ring = BufferRing::create(loop, *ctx->own_arena_, options.recv_buffers,
                              options.recv_buffer_size, max_buffers);
    if (!ring.ok()) return ring.status();
  }
  ctx->ring_ = std::move(*ring);
  ctx->zero_copy_ =
      options.zero_copy_threshold != SIZE_MAX && loop.ring().supports(IORING_OP_SEND_ZC);
  if (options.registered_send_buffers && loop.arena() != nullptr && loop.buffers_registered()) {
    ctx->send_arena_ = loop.arena();
  }
  return ctx;
}

NetContext::~NetContext() {
  // Lingering streams are cut short; streams still owned by a handle are a
  // bug of the caller (they would dangle): report them.
  size_t owned = 0;
  for (detail::StreamState* s = head_; s != nullptr;) {
    detail::StreamState* next = s->list_next;
    if (s->owned()) ++owned;
    s->kill(absl::CancelledError("net context destroyed"));  // deletes it unless owned
    s = next;
  }
  if (owned > 0) {
    std::fprintf(stderr, "coring: NetContext destroyed with %zu streams still open\n", owned);
  }
}

void NetContext::link(detail::StreamState* s) noexcept {
  s->list_next = head_;
  s->list_prev = nullptr;
  if (head_ != nullptr) head_->list_prev = s;
  head_ = s;
  ++live_;
  ++stats_.streams_opened;
}

void NetContext::account_partial_frame(detail::StreamState& s, size_t bytes) noexcept {
  partial_frame_bytes_ = partial_frame_bytes_ - s.partial_bytes + bytes;
  s.partial_bytes = bytes;
  stats_.partial_frame_peak = std::max<uint64_t>(stats_.partial_frame_peak, partial_frame_bytes_);
}

void NetContext::unlink(detail::StreamState* s) noexcept {
  if (s->list_prev != nullptr) {
    s->list_prev->list_next = s->list_next;
  } else {
    head_ = s->list_next;
  }
  if (s->list_next != nullptr) s->list_next->list_prev = s->list_prev;
  s->list_next = s->list_prev = nullptr;
  partial_frame_bytes_ -= s->partial_bytes;
  s->partial_bytes = 0;
  --live_;
  ++stats_.streams_closed;
}

}  // namespace coring::net
