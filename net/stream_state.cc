// StreamState (stream_state.h): the send queue, the receive channel and the
// ending of one connection.
#include "coring/net/stream_state.h"

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <new>
#include <utility>

#include "coring/core/close.h"
#include "coring/core/errno_status.h"
#include "coring/core/frame_allocator.h"

namespace coring::net {

namespace {
// From linux/io_uring.h (6.2+); liburing 2.3's copy predates them.
constexpr unsigned kSendZcReportUsage = 1U << 3;    // IORING_SEND_ZC_REPORT_USAGE
constexpr uint32_t kNotifUsageZcCopied = 1U << 31;  // IORING_NOTIF_USAGE_ZC_COPIED

}  // namespace

namespace detail {
namespace {

// memcmp() == 0, inlined for the common 16 bytes (an SBMP header).
bool same_bytes(const uint8_t* a, const uint8_t* b, size_t n) noexcept {
  if (n == 16) return std::memcmp(a, b, 16) == 0;
  return std::memcmp(a, b, n) == 0;
}

}  // namespace

StreamState::StreamState(NetContext& ctx, FileRef file)
    : SubmitHook(&StreamState::on_submit_hook),
      ctx_(&ctx),
      loop_(&ctx.loop()),
      file_(file),
      ring_(&ctx.buffers()),
      deadline_(&StreamState::on_deadline, this) {
  channel_.emplace(file, ctx.buffers());
  has_channel_ = true;
  channel_->set_share(ctx.options().recv_share);
  // A connection's reader usually keeps up (an echo, a framed reader):
  // reading multishot from the first byte lets the socket's receive window
  // grow; one that does not is moved back to single-shot by the ring.
  channel_->start_multishot();
  ctx.link(this);
}

StreamState::~StreamState() {
  assert(!sending_);
  assert(zc_busy_ == 0);
  loop_->cancel_before_submit(*this);
  drop_queue(absl::CancelledError("stream destroyed"));
  release_taken();
  release_shared();
  release_previous();
  if (spare_ != nullptr) frame_deallocate(spare_, sizeof(SendBuf));
  if (scratch_ != nullptr) frame_deallocate(scratch_, sizeof(SendScratch));
  if (zc_ != nullptr) free_zc_array();
  if (ctx_ != nullptr) ctx_->unlink(this);
}

void StreamState::trim_idle() noexcept {
  if (idle_hook_ != nullptr) idle_hook_(idle_hook_context_);
  if (spare_ != nullptr) frame_deallocate(std::exchange(spare_, nullptr), sizeof(SendBuf));
  slab_send_size_ = kMinSlabSendBuf;
  // A sendmsg in flight still reads its msghdr and iovecs.
  if (scratch_ != nullptr && !sending_) {
    frame_deallocate(std::exchange(scratch_, nullptr), sizeof(SendScratch));
  }
  if (queue_empty() && segments_.capacity() > 0) std::vector<Segment>().swap(segments_);
  // No zero-copy send awaits its notification: nothing refers to them.
  if (zc_ != nullptr && zc_busy_ == 0) free_zc_array();
}

void StreamState::release() noexcept {
  owned_ = false;
  release_shared();  // its reader is gone
  drop_channel(absl::CancelledError("read: the stream was destroyed"));
  if (wait_head_ != nullptr) abort(absl::CancelledError("stream destroyed with writers waiting"));
  if (!queue_empty() && write_error_.ok() && !file_closed_) {
    ++ctx_->stats().lingered;
    arm_deadline(ctx_->options().linger);
    return;  // sending goes on; finish_if_done() closes when the queue is empty
  }
  finish_if_done();
}

void StreamState::finish_if_done() noexcept {
  // A reader still waiting was woken by release(); it finishes us.
  if (owned_ || sending_ || reading_) return;
  if (!queue_empty() && write_error_.ok()) return;  // lingering: sending on
  close_file_now();
  if (zc_busy_ > 0) {
    // Zero-copy sends awaiting their notification still hold their memory
    // (the socket may still send from it): this lives on until the last
    // notification, but it is no stream of the context any more.
    leave_context();
    return;
  }
  delete this;
}

void StreamState::leave_context() noexcept {
  if (ctx_ == nullptr) return;
  loop_->cancel_before_submit(*this);
  cancel_deadline();
  ctx_->unlink(this);
  ctx_ = nullptr;
}

void StreamState::close_file_now() noexcept {
  if (file_closed_) return;
  mark_closed();
  io_uring_sqe* sqe = loop_->get_sqe();
  prep_close(sqe, file_);
  sqe->user_data = kIgnoreUserData;
}

void StreamState::mark_closed() noexcept {
  file_closed_ = true;
  drop_channel(absl::FailedPreconditionError("read: the stream is closed"));
  // Bytes still queued (written after close()'s flush) can never be sent
  // now: their writers fail instead of waiting forever.
  if (!queue_empty() || wait_head_ != nullptr) {
    abort(absl::FailedPreconditionError("write: the stream was closed before it was sent"));
  }
}

void StreamState::stop_receiving() noexcept {
  drop_channel(absl::FailedPreconditionError("read: the stream stopped receiving"));
}

void StreamState::drop_channel(absl::Status why) noexcept {
  if (!has_channel_ || channel_doomed_) return;
  if (!reading_) {
    destroy_channel();
    return;
  }
  // A reader waits in the channel (its Next points into it): wake it, and
  // destroy the channel once it has let go (finish_read, reader_gone).
  channel_doomed_ = true;
  doom_status_ = why;
  channel_->interrupt(std::move(why));
}

// ---- Reading ----

absl::StatusOr<RecvBuffer> StreamState::finish_read(std::optional<RecvStream::Next>& next,
                                                    bool waited) noexcept {
  last_read_interrupted_ = false;
  // (Each way out its own function, which returns one named result: the
  // buffer is constructed where the caller gets it, not moved per layer.)
  if (waited) return finish_waited_read(next);
  if (!has_channel_ || channel_doomed_ || interrupted_) {
    if (interrupted_) {
      interrupted_ = false;
      last_read_interrupted_ = true;
      return std::exchange(interrupt_status_, absl::OkStatus());
    }
    if (!write_error_.ok()) return write_error_;
    return absl::FailedPreconditionError("read: the stream is closed");
  }
  return take_read(*next);
}

absl::StatusOr<RecvBuffer> StreamState::finish_waited_read(
    std::optional<RecvStream::Next>& next) noexcept {
  reading_ = false;
  // Let go of the channel before anything may destroy it.
  absl::StatusOr<RecvBuffer> buf = next->await_resume();
  const bool interrupted = next->interrupted();
  next.reset();
  if (channel_doomed_) {
    // Receiving ended while this read waited; what it got goes back.
    channel_doomed_ = false;
    destroy_channel();
    buf = std::exchange(doom_status_, absl::OkStatus());
    if (!owned_) finish_if_done();  // the reader was the last user: may delete this
    return buf;
  }
  deliver(buf, interrupted);
  return buf;
}

absl::StatusOr<RecvBuffer> StreamState::take_read(RecvStream::Next& next) noexcept {
  absl::StatusOr<RecvBuffer> buf = next.await_resume();
  deliver(buf, next.interrupted());
  return buf;
}

void StreamState::deliver(absl::StatusOr<RecvBuffer>& buf, bool interrupted) noexcept {
  if (interrupted) {
    last_read_interrupted_ = true;
    return;
  }
  if (!buf.ok()) {
    if (absl::IsCancelled(buf.status())) buf = absl::CancelledError("read cancelled");
    return;
  }
  rx_seen_ = true;
  ctx_->stats().bytes_received += buf->size();
}

void StreamState::reader_gone() noexcept {
  reading_ = false;
  if (channel_doomed_) {
    channel_doomed_ = false;
    destroy_channel();
  }
  if (!owned_) finish_if_done();
}

void StreamState::interrupt_read(absl::Status why) noexcept {
  if (why.ok()) why = absl::CancelledError("read interrupted");
  if (has_channel_) {
    channel_->interrupt(std::move(why));
    return;
  }
  interrupt_status_ = std::move(why);
  interrupted_ = true;
}

// ---- Writing ----

bool StreamState::begin_write(Writer& w) noexcept {
  if (!write_error_.ok()) {
    w.status = write_error_;
    w.phase = Writer::Phase::kDone;
    return true;
  }
  if ((write_closed_ || file_closed_) && w.kind != Writer::Kind::kBarrier) {
    w.status = absl::FailedPreconditionError("write: the stream is closed for writing");
    w.phase = Writer::Phase::kDone;
    return true;
  }
  w.bytes = 0;
  for (absl::Span<const uint8_t> p : w.parts) w.bytes += p.size();
  if (wait_head_ == nullptr && fits(w.bytes, w.traded)) {
    admit(w);
    return w.phase == Writer::Phase::kDone;
  }
  ++ctx_->stats().writer_waits;
  w.phase = Writer::Phase::kWaitingRoom;
  w.next = nullptr;
  if (wait_tail_ != nullptr) {
    wait_tail_->next = &w;
  } else {
    wait_head_ = &w;
  }
  wait_tail_ = &w;
  return false;
}

void StreamState::admit(Writer& w) noexcept {
  const bool copy = w.kind == Writer::Kind::kCopy ||
                    (w.kind == Writer::Kind::kAuto && w.bytes <= ctx_->options().copy_threshold);
  if (w.kind == Writer::Kind::kBarrier) {
    if (queue_empty()) {
      complete(w, absl::OkStatus());
      return;
    }
    segments_.push_back(Segment{nullptr, 0, nullptr, &w, -1, -1});
    w.segments_left = 1;
    w.phase = Writer::Phase::kQueued;
    return;
  }
  if (w.adopt != nullptr && adopt(w)) return;
  if (w.take != nullptr) {
    take_over(w);
    return;
  }
  if (w.kind == Writer::Kind::kShared) {
    queue_shared(w);
    return;
  }
  if (copy) {
    ++ctx_->stats().copied_writes;
    copy_in(w.parts, w.bytes);
    complete(w, absl::OkStatus());
  } else {
    ++ctx_->stats().borrowed_writes;
    uint32_t n = 0;
    for (absl::Span<const uint8_t> p : w.parts) {
      if (p.empty()) continue;
      segments_.push_back(
          Segment{p.data(), p.size(), nullptr, &w, registered_index(p.data(), p.size()), -1});
      ++n;
    }
    queued_bytes_ += w.bytes;
    if (n == 0) {
      complete(w, absl::OkStatus());
      return;
    }
    w.segments_left = n;
    w.holds = 0;
    w.phase = Writer::Phase::kQueued;
  }
  request_send();
}

bool StreamState::may_park(const RecvBuffer& b) const noexcept {
  // Only the context's own ring buffers, while this stream holds less than
  // its send share and all send queues together hold less than three quarters of
  // the ring (peers that never read park no more than that; the rest is
  // for receiving); never one a zero-copy send would take (its notification
  // would have to hold the ring buffer too).
  return ctx_ != nullptr && !b.empty() && b.ring() == ring_ &&
         ring_held_ < ctx_->options().send_share && ctx_->adopted_ < ring_->count() / 4 * 3 &&
         !(ctx_->zero_copy() && b.size() >= ctx_->options().zero_copy_threshold);
}

int32_t StreamState::park(RecvBuffer& b) noexcept {
  const auto id = static_cast<int32_t>(b.buffer_id());
  b.detach();
  ++ring_held_;
  ++ctx_->adopted_;
  return id;
}

void StreamState::unpark(int32_t ring_id) noexcept {
  ring_->give_back(static_cast<uint16_t>(ring_id));
  --ring_held_;
  if (ctx_ != nullptr) --ctx_->adopted_;
}

bool StreamState::adopt(Writer& w) noexcept {
  if (!adopt_buffer(*w.adopt)) return false;
  complete(w, absl::OkStatus());
  request_send();
  return true;
}

bool StreamState::write_received_now(RecvBuffer& b) noexcept {
  const size_t size = b.size();
  if (size == 0 || !queues_now(size)) return false;
  if (!adopt_buffer(b)) {
    if (size > ctx_->options().copy_threshold) return false;  // borrowed: the writer waits
    ++ctx_->stats().copied_writes;
    const absl::Span<const uint8_t> part = b.span();
    copy_in(absl::MakeConstSpan(&part, 1), size);
  }
  request_send();
  return true;
}

bool StreamState::adopt_buffer(RecvBuffer& b) noexcept {
  // Small ones are copied as any small write when they have neighbours to
  // coalesce with (bytes queued, or a send in flight that later writes will
  // queue behind): one registered send buffer, one SEND, and the ring
  // buffer free at once. Alone, a copy buys nothing: the buffer is sent as
  // it is. Measured (bench/run.sh, echo_server, 5 interleaved rounds, server
  // CPU per message against copying every small one; 16, 256 and 1000
  // connections x 64 B and 1 KiB): ping-pong with 1000 connections 0.96 and
  // 0.97, the other 16 cells (ping-pong, 16 in flight, fixed rate) 0.97-1.01.
  if (!may_park(b) || (b.size() <= ctx_->options().copy_threshold && !idle())) return false;
  ++ctx_->stats().adopted_writes;
  const uint8_t* data = b.data();
  const size_t size = b.size();
  const int32_t id = park(b);
  segments_.push_back(Segment{data, size, nullptr, nullptr, registered_index(data, size), id});
  queued_bytes_ += size;
  return true;
}

void StreamState::take_over(Writer& w) noexcept {
  ++ctx_->stats().taken_writes;
  std::vector<uint8_t>& bytes = *w.take;
  // Full (used == capacity): copy_in() never fills it.
  auto* b = new (send_buf_memory()) SendBuf(bytes.data(), bytes.size(), bytes.size(), 0, -1);
  b->adopt(std::move(bytes));
  queue_parts_in(b, w.parts);
  release_taken();
  ++b->holds;
  taken_ = b;
  complete(w, absl::OkStatus());
  request_send();
}

void StreamState::drop_hold(SendBuf*& held) noexcept {
  SendBuf* b = std::exchange(held, nullptr);
  if (b != nullptr && --b->holds == 0 && b->unsent == 0) free_buf(b);
}

void StreamState::add_segment(SendBuf* b, absl::Span<const uint8_t> bytes) noexcept {
  segments_.push_back(Segment{bytes.data(), bytes.size(), b, nullptr, b->buf_index, -1});
}

StreamState::SendBuf* StreamState::share(RecvBuffer& rb) noexcept {
  // Full (used == capacity): copy_in() never fills it. One hold: the reader's.
  auto* b = new (send_buf_memory())
      SendBuf(rb.data(), rb.size(), rb.size(), 1, registered_index(rb.data(), rb.size()));
  b->ring_id = park(rb);
  return b;
}

bool StreamState::share_received(RecvBuffer& rb) noexcept {
  if (!may_park(rb)) return false;
  release_shared();  // the reader is done with the one before, if any
  shared_ = share(rb);
  return true;
}

void StreamState::release_shared() noexcept { drop_hold(shared_); }

void StreamState::keep_shared_as_previous() noexcept {
  release_previous();
  previous_ = std::exchange(shared_, nullptr);
}

bool StreamState::share_previous(RecvBuffer& rb) noexcept {
  if (!may_park(rb)) return false;
  release_previous();
  previous_ = share(rb);
  return true;
}

void StreamState::release_previous() noexcept { drop_hold(previous_); }

void StreamState::queue_shared(Writer& w) noexcept {
  queue_shared_now(w.parts, w.bytes);
  complete(w, absl::OkStatus());
}

void StreamState::queue_parts_in(SendBuf* b, absl::Span<const absl::Span<const uint8_t>> parts,
                                 SendBuf* also) noexcept {
  const auto in = [](SendBuf* buf, const uint8_t* p, size_t n) {
    return buf != nullptr && buf->contains({p, n});
  };
  const auto inside = [&](const uint8_t* p, size_t n) { return in(b, p, n); };
  for (size_t i = 0; i < parts.size(); ++i) {
    const absl::Span<const uint8_t> p = parts[i];
    if (p.empty()) continue;
    if (inside(p.data(), p.size())) {
      queue_in(b, p);
      continue;
    }
    if (in(also, p.data(), p.size())) {
      queue_in(also, p);
      continue;
    }
    // A small part equal to the bytes just before the next part, inside the
    // buffer - an echoed frame's header, encoded as it was received - is
    // sent from there: the frame, and a run of echoed frames, is one run of
    // the buffer.
    size_t j = i + 1;
    while (j < parts.size() && parts[j].empty()) ++j;
    if (p.size() <= 64 && j < parts.size() && inside(parts[j].data(), parts[j].size()) &&
        static_cast<size_t>(parts[j].data() - b->data) >= p.size() &&
        same_bytes(parts[j].data() - p.size(), p.data(), p.size())) {
      queue_in(b, absl::MakeConstSpan(parts[j].data() - p.size(), p.size()));
      continue;
    }
    copy_in(absl::MakeConstSpan(&p, 1), p.size());
  }
}

void* StreamState::send_buf_memory() noexcept {
  return spare_ != nullptr ? std::exchange(spare_, nullptr) : frame_allocate(sizeof(SendBuf));
}

void StreamState::let_go(Segment& s) noexcept {
  if (s.ring_id >= 0) unpark(std::exchange(s.ring_id, -1));
}

int32_t StreamState::registered_index(const uint8_t* p, size_t n) const noexcept {
  pool::BufferArena* arena = ctx_->send_arena();
  return arena == nullptr ? -1 : arena->region_index(p, n);
}

StreamState::SendBuf* StreamState::new_send_buf(size_t bytes) noexcept {
  auto* b = new (send_buf_memory()) SendBuf(nullptr, 0, 0, 0, -1);
  if (pool::BufferArena* arena = ctx_->send_arena(); arena != nullptr) {
    // Prefer a buffer that holds many small writes; else any that fits.
    std::optional<pool::BufferLease> lease = arena->try_acquire(std::max(kChunkSize, bytes));
    if (!lease && bytes < kChunkSize) lease = arena->try_acquire(bytes);
    if (lease) {
      b->adopt(std::move(*lease));
      b->data = b->lease.data();
      b->capacity = b->lease.size();
      b->buf_index = static_cast<int32_t>(b->lease.buf_index());
      return b;
    }
    ++ctx_->stats().send_buffer_fallbacks;
  }
  // fill_, when set, is the buffer this one follows because it ran out of
  // room: this connection writes more than that size holds.
  if (fill_ != nullptr && slab_send_size_ < kChunkSize) {
    slab_send_size_ = static_cast<uint32_t>(std::min<size_t>(kChunkSize, 2 * slab_send_size_));
  }
  b->capacity = std::max<size_t>(slab_send_size_, bytes);
  b->data = static_cast<uint8_t*>(frame_allocate(b->capacity));
  return b;
}

void StreamState::copy_in(absl::Span<const absl::Span<const uint8_t>> parts,
                          size_t bytes) noexcept {
  // A write larger than one send buffer continues in the next ones (a copy
  // of a large frame stays in pool-sized pieces, never a heap block).
  size_t part = 0;
  size_t offset = 0;  // into parts[part]
  while (bytes > 0) {
    if (fill_ == nullptr || fill_->capacity - fill_->used < std::min(bytes, kMaxSendBuf)) {
      // The previous fill buffer is freed once its bytes are sent (advance,
      // release_zc); it has bytes unsent or held, or it would be gone.
      fill_ = new_send_buf(std::min(bytes, kMaxSendBuf));
    }
    const size_t room = std::min(fill_->capacity - fill_->used, bytes);
    uint8_t* const start = fill_->data + fill_->used;
    uint8_t* dst = start;
    for (size_t left = room; left > 0;) {
      const absl::Span<const uint8_t> p = parts[part];
      const size_t n = std::min(left, p.size() - offset);
      if (n > 0) std::memcpy(dst, p.data() + offset, n);
      dst += n;
      left -= n;
      offset += n;
      if (offset == p.size()) {
        ++part;
        offset = 0;
      }
    }
    fill_->used += room;
    fill_->unsent += room;
    queued_bytes_ += room;
    bytes -= room;
    // Extend the last segment when it is the copied run just before ours.
    Segment* last = queue_empty() ? nullptr : &segments_.back();
    if (last != nullptr && last->buf == fill_ && last->data + last->size == start) {
      last->size += room;
    } else {
      segments_.push_back(Segment{start, room, fill_, nullptr, fill_->buf_index, -1});
    }
  }
}

void StreamState::complete(Writer& w, absl::Status status) noexcept {
  w.status = std::move(status);
  w.phase = Writer::Phase::kDone;
  w.segments_left = 0;
  // Resumed from the loop, never from here: the writer may destroy us.
  if (w.handle) loop_->schedule(std::exchange(w.handle, {}));
}

void StreamState::on_submit_hook(SubmitHook* self) noexcept {
  auto* s = static_cast<StreamState*>(self);
  if (s->worth_waiting_a_turn()) {
    ++s->waited_turns_;
    s->loop_->before_next_submit(*s);
    return;
  }
  s->start_send();
}

bool StreamState::worth_waiting_a_turn() const noexcept {
  return waited_turns_ < kMaxSendWaitTurns && !sending_ && has_channel_ && channel_->direct_due() &&
         queued_bytes_ < traded_bound() / 2 && write_error_.ok() && !file_closed_ &&
         wait_head_ == nullptr && (queue_empty() || segments_.back().writer == nullptr);
}

void StreamState::start_send() noexcept {
  if (sending_ || !write_error_.ok() || file_closed_) return;
  // Barriers at the head are reached: nothing before them is unsent. (Only
  // they, or an empty queue, give advance(0) anything to do: the test spares
  // every send the call.)
  if (queue_empty() || segments_[seg_head_].size == 0) advance(0);
  if (queue_empty()) return;
  waited_turns_ = 0;
  Segment& head = segments_[seg_head_];
  const size_t zc_threshold = ctx_->options().zero_copy_threshold;
  const bool zc = ctx_->zero_copy() && zc_busy_ < kMaxZeroCopy;  // a zero-copy send may start
  const bool more = queued_bytes_ > head.size;
  if (zc && head.size >= zc_threshold) {
    submit_zero_copy(head, idle_zc(), more);
    return;
  }
  EventLoop& loop = *loop_;
  OpTable& ops = loop.ops();
  if (!more) {
    // One segment holds all that is queued: coalesced copies in one send
    // buffer, or one adopted receive buffer (an echo's).
    send_index_ = ops.acquire(this);
    ops[send_index_].pending = 1;
    // A plain SEND, not WRITE_FIXED: on a socket WRITE_FIXED is a write(2)
    // through the file layer (fsnotify, no MSG_NOSIGNAL) and was 5-8% slower
    // per op than SEND at every size (bench/net/send_bench.cc, kernel 6.18);
    // a copying send pins no pages, so the registration buys it nothing.
    // (SEND with IORING_RECVSEND_FIXED_BUF: EINVAL on that kernel.)
    // Silent (EventLoop::expect_silent()) when nothing waits on its
    // completion: no writer (borrowed bytes, a flush, room in the queue),
    // no lingering close, nothing queued behind it; and unless the last
    // silent one found the socket's buffer full.
    const bool silent = loop.silent_sends() && !loud_next_ && wait_head_ == nullptr && owned_ &&
                        head.writer == nullptr &&
                        segments_.begin() + seg_head_ + 1 == segments_.end() &&
                        head.size <= INT32_MAX;
    io_uring_sqe* sqe = loop.get_sqe();
    io_uring_prep_send(sqe, file_.fd, head.data, head.size,
                       silent ? MSG_NOSIGNAL | MSG_DONTWAIT | MSG_WAITALL : MSG_NOSIGNAL);
    file_.apply(sqe);
    sqe->user_data = ops.user_data(send_index_);
    if (silent) {
      sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
      loop.expect_silent(send_index_, static_cast<int32_t>(head.size));
      silent_bytes_ = static_cast<uint32_t>(head.size);
    }
    sending_ = true;
    if (head.buf_index >= 0) ++ctx_->stats().fixed_sends;
    return;
  }
  if (scratch_ == nullptr)
    scratch_ = static_cast<SendScratch*>(frame_allocate(sizeof(SendScratch)));
  iovec* const iov = scratch_->iov;
  size_t n = 0;
  bool stopped_before_zc = false;
  for (size_t i = seg_head_; i < segments_.size() && n < kMaxIov; ++i) {
    const Segment& s = segments_[i];
    if (s.size == 0) continue;
    if (n > 0 && zc && s.size >= zc_threshold) {
      stopped_before_zc = true;  // it goes next, zero copy
      break;
    }
    iov[n].iov_base = const_cast<uint8_t*>(s.data);
    iov[n].iov_len = s.size;
    ++n;
  }
  msghdr& msg = scratch_->msg;
  msg = msghdr{};
  msg.msg_iov = iov;
  msg.msg_iovlen = n;
  send_index_ = ops.acquire(this);
  ops[send_index_].pending = 1;
  io_uring_sqe* sqe = loop.get_sqe();
  io_uring_prep_sendmsg(sqe, file_.fd, &msg, MSG_NOSIGNAL | (stopped_before_zc ? MSG_MORE : 0));
  file_.apply(sqe);
  sqe->user_data = ops.user_data(send_index_);
  sending_ = true;
  ++ctx_->stats().sendmsg_sends;
}

void StreamState::submit_zero_copy(Segment& s, ZcSend& z, bool more) noexcept {
  EventLoop& loop = *loop_;
  OpTable& ops = loop.ops();
  z.stream = this;
  z.busy = true;
  z.writer = s.writer;
  z.buf = s.buf;
  if (z.writer != nullptr) ++z.writer->holds;
  if (z.buf != nullptr) ++z.buf->holds;
  ++zc_busy_;
  z.index = ops.acquire(&z);
  ops[z.index].pending = 1;
  io_uring_sqe* sqe = loop.get_sqe();
  const int flags = MSG_NOSIGNAL | (more ? MSG_MORE : 0);
  if (s.buf_index >= 0) {
    io_uring_prep_send_zc_fixed(sqe, file_.fd, s.data, s.size, flags, kSendZcReportUsage,
                                static_cast<unsigned>(s.buf_index));
    ++ctx_->stats().fixed_sends;
  } else {
    io_uring_prep_send_zc(sqe, file_.fd, s.data, s.size, flags, kSendZcReportUsage);
  }
  file_.apply(sqe);
  sqe->user_data = ops.user_data(z.index);
  send_index_ = z.index;
  zc_in_flight_ = &z;
  sending_ = true;
  ++ctx_->stats().zc_sends;
}

void StreamState::on_complete(const OpResult& r) noexcept { on_send_result(r); }

void StreamState::on_zc_complete(ZcSend& z, const OpResult& r) noexcept {
  if ((r.flags & IORING_CQE_F_NOTIF) == 0) {
    if (zc_in_flight_ != &z) {
      // The result of a send abort() cancelled: nothing to advance. What it
      // sends from stays held until the notification (F_MORE), if any.
      if (!r.more()) {
        release_zc(z);
        finish_if_done();
      }
      return;
    }
    // The send's result; the notification follows when F_MORE is set.
    zc_in_flight_ = nullptr;
    if (!r.more()) release_zc(z);
    if (r.res == -EINVAL || r.res == -EOPNOTSUPP) {
      // The kernel refuses these flags (no usage reports, no zero copy on
      // this socket): send without it from now on; nothing was sent.
      ctx_->disable_zero_copy();
      sending_ = false;
      start_send();
      finish_if_done();
      return;
    }
    on_send_result(r);
    return;
  }
  if (ctx_ != nullptr && (static_cast<uint32_t>(r.res) & kNotifUsageZcCopied)) {
    ++ctx_->stats().zc_copied;
  }
  release_zc(z);
  finish_if_done();
}

StreamState::ZcSend& StreamState::idle_zc() noexcept {
  if (zc_ == nullptr) {
    void* memory = frame_allocate(sizeof(ZcSend) * kMaxZeroCopy);
    zc_ = static_cast<ZcSend*>(memory);
    for (size_t i = 0; i < kMaxZeroCopy; ++i) new (&zc_[i]) ZcSend();
  }
  size_t i = 0;
  while (zc_[i].busy) ++i;  // one is idle: zc_busy_ < kMaxZeroCopy
  return zc_[i];
}

void StreamState::free_zc_array() noexcept {
  assert(zc_busy_ == 0);
  for (size_t i = 0; i < kMaxZeroCopy; ++i) zc_[i].~ZcSend();
  frame_deallocate(std::exchange(zc_, nullptr), sizeof(ZcSend) * kMaxZeroCopy);
}

void StreamState::release_zc(ZcSend& z) noexcept {
  z.busy = false;
  --zc_busy_;
  if (Writer* w = std::exchange(z.writer, nullptr); w != nullptr) unhold_writer(*w);
  if (SendBuf* b = std::exchange(z.buf, nullptr); b != nullptr) {
    if (--b->holds == 0 && b->unsent == 0) free_buf(b);
  }
}

void StreamState::unhold_writer(Writer& w) noexcept {
  if (--w.holds == 0 && w.segments_left == 0 && w.phase == Writer::Phase::kQueued) {
    complete(w, write_error_);  // OK unless the stream was aborted meanwhile
  }
}

void StreamState::on_send_result(const OpResult& r) noexcept {
  sending_ = false;
  int32_t res = r.res;
  if (const uint32_t silent = std::exchange(silent_bytes_, 0); silent == 0) {
    if (res >= 0) loud_next_ = false;
  } else if (res == -EAGAIN || (res >= 0 && static_cast<uint32_t>(res) != silent)) {
    // A silent send's CQE (else an error's): the socket's buffer filled up
    // (-EAGAIN: before any byte went). The rest goes in a send that waits
    // for room.
    loud_next_ = true;
    ++ctx_->stats().silent_sends_full;
    if (res == -EAGAIN) res = 0;
  }
  if (res < 0) {
    abort(errno_to_status(-res, "send"));
    finish_if_done();
    return;
  }
  ++ctx_->stats().sends;
  ctx_->stats().bytes_sent += static_cast<size_t>(res);
  advance(static_cast<size_t>(res));
  pump_waiters();
  // Before the next submit, as a write does: what is written until then
  // (the answers to what this turn receives) leaves in the same send.
  if (!queue_empty()) request_send();
  if (!owned_ && queue_empty()) cancel_deadline();
  finish_if_done();
}

void StreamState::advance(size_t n) noexcept {
  while (seg_head_ < segments_.size()) {
    Segment& s = segments_[seg_head_];
    const size_t take = std::min(n, s.size);
    s.data += take;
    s.size -= take;
    n -= take;
    queued_bytes_ -= take;
    if (s.buf != nullptr) s.buf->unsent -= take;
    if (s.size > 0) break;
    let_go(s);
    if (s.buf != nullptr && s.buf->unsent == 0 && s.buf->holds == 0) free_buf(s.buf);
    if (s.writer != nullptr && --s.writer->segments_left == 0 && s.writer->holds == 0) {
      complete(*s.writer, absl::OkStatus());
    }
    ++seg_head_;
  }
  if (queue_empty()) {
    segments_.clear();
    seg_head_ = 0;
  }
}

void StreamState::pump_waiters() noexcept {
  while (wait_head_ != nullptr && write_error_.ok() &&
         fits(wait_head_->bytes, wait_head_->traded)) {
    Writer* w = wait_head_;
    wait_head_ = w->next;
    if (wait_head_ == nullptr) wait_tail_ = nullptr;
    w->next = nullptr;
    admit(*w);
  }
}

void StreamState::free_buf(SendBuf* b) noexcept {
  if (b == fill_) fill_ = nullptr;
  if (b->ring_id >= 0) {
    unpark(b->ring_id);
  } else if (b->owner == SendBuf::Owner::kVector) {
    // (Else freed below.)
    if (ctx_ != nullptr && !b->owned.empty()) ctx_->keep_spare_buffer(std::move(b->owned));
  } else if (b->buf_index < 0) {
    frame_deallocate(b->data, b->capacity);
  }
  b->~SendBuf();  // gives a lease back to the arena
  if (spare_ == nullptr) {
    spare_ = b;  // the next copied write's header: no allocation per write
  } else {
    frame_deallocate(b, sizeof(SendBuf));
  }
}

void StreamState::drop_queue(const absl::Status& why) noexcept {
  assert(!sending_);
  for (size_t i = seg_head_; i < segments_.size(); ++i) {
    Segment& s = segments_[i];
    let_go(s);
    if (s.buf != nullptr) {
      s.buf->unsent -= s.size;
      if (s.buf->unsent == 0 && s.buf->holds == 0) free_buf(s.buf);
    }
    if (s.writer != nullptr && s.writer->phase == Writer::Phase::kQueued) {
      if (s.writer->holds > 0) {
        // A zero-copy send still reads its memory: the write completes
        // (with write_error_) at the notification, not before.
        s.writer->segments_left = 0;
      } else {
        complete(*s.writer, why);
      }
    }
  }
  segments_.clear();
  seg_head_ = 0;
  queued_bytes_ = 0;
  fill_ = nullptr;  // freed above, or held by a zero-copy send
  while (wait_head_ != nullptr) {
    Writer* w = wait_head_;
    wait_head_ = w->next;
    w->next = nullptr;
    complete(*w, why);
  }
  wait_tail_ = nullptr;
}

void StreamState::abort(absl::Status why) noexcept {
  if (why.ok()) why = absl::AbortedError("stream aborted");
  const bool first = write_error_.ok();
  if (first) write_error_ = why;
  if (sending_) {
    if (zc_in_flight_ != nullptr) {
      // A zero-copy send holds what it sends from itself (below): ask the
      // kernel to stop it, asynchronously; its CQEs still come to its ZcSend.
      loop_->cancel_op(loop_->ops().user_data(zc_in_flight_->index));
      zc_in_flight_ = nullptr;
    } else {
      // sendmsg / send: the kernel must let go of the iovecs and the
      // queued memory before the queue is dropped.
      loop_->abandon_op(send_index_, /*borrowed_memory=*/true);
    }
    sending_ = false;
    silent_bytes_ = 0;
  }
  // Zero-copy sends awaiting their notification keep their send buffer or
  // their writer (whose write completes only then): bytes of theirs may
  // still sit in the socket, sent (or sent again) from that memory until the
  // notification says the kernel let go. Given back now, the next lease
  // (maybe another connection's bytes) would go out on this connection.
  // release_zc() lets go at the notification; this stays alive until then.
  if (first && ctx_ != nullptr && (!queue_empty() || wait_head_ != nullptr)) {
    ++ctx_->stats().aborts;
  }
  drop_queue(why);
  if (has_channel_ && !channel_doomed_) interrupt_read(why);
  // A zero-copy notification comes only once the kernel lets go of the
  // bytes, which for a peer that never reads (zero window) is never while
  // the socket is open: tear it down now, so that the writers held until
  // then are released (the socket is done for anyway).
  if (zc_busy_ > 0 && !file_closed_) close_file_now();
}

void StreamState::kill(absl::Status why) noexcept {
  abort(std::move(why));
  finish_if_done();
}

void StreamState::forget_writer(Writer& w) noexcept {
  w.handle = {};  // its coroutine is going away: never resume it
  if (w.phase == Writer::Phase::kWaitingRoom) {
    Writer* prev = nullptr;
    for (Writer* p = wait_head_; p != nullptr; prev = p, p = p->next) {
      if (p != &w) continue;
      (prev != nullptr ? prev->next : wait_head_) = w.next;
      if (wait_tail_ == &w) wait_tail_ = prev;
      break;
    }
    w.phase = Writer::Phase::kDone;
    return;
  }
  // Its bytes are in the queue and its memory is about to go: the stream
  // cannot send them any more. Zero-copy sends of its bytes must not reach
  // it once it is gone. (What such a send left in the socket is sent from
  // memory the writer no longer owns: a writer must not be destroyed while
  // its write waits; see Stream::write.)
  for (size_t i = 0; zc_ != nullptr && i < kMaxZeroCopy; ++i) {
    ZcSend& z = zc_[i];
    if (z.busy && z.writer == &w) {
      z.writer = nullptr;
      --w.holds;
    }
  }
  abort(absl::CancelledError("write abandoned while in flight"));
  if (!owned_) finish_if_done();  // may delete this
}

void StreamState::arm_deadline(std::chrono::nanoseconds after) noexcept {
  deadline_.arm(*loop_, after);
}

void StreamState::on_deadline(void* self, bool fired) noexcept {
  auto* s = static_cast<StreamState*>(self);
  if (fired) {
    s->kill(absl::DeadlineExceededError("stream: queued bytes not sent before the deadline"));
    return;
  }
  if (!s->owned_) s->finish_if_done();
}

}  // namespace detail

}  // namespace coring::net
