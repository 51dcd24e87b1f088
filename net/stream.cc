#include "coring/net/stream.h"

#include <sys/socket.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_format.h"
#include "coring/core/close.h"
#include "coring/core/connect.h"
#include "coring/core/errno_status.h"
#include "coring/core/fixed_files.h"
#include "coring/core/frame_allocator.h"
#include "coring/core/op_awaitable.h"
#include "coring/net/socket_ops.h"

namespace coring::net {

// ---------------------------------------------------------------- NetContext

std::string NetStats::to_string() const {
  return absl::StrFormat(
      "streams_opened=%u streams_closed=%u bytes_received=%u bytes_sent=%u sends=%u "
      "copied_writes=%u borrowed_writes=%u writer_waits=%u aborts=%u lingered=%u",
      streams_opened, streams_closed, bytes_received, bytes_sent, sends, copied_writes,
      borrowed_writes, writer_waits, aborts, lingered);
}

absl::StatusOr<std::unique_ptr<NetContext>> NetContext::create(EventLoop& loop,
                                                               NetOptions options) {
  if (options.max_queued_bytes == 0) {
    return absl::InvalidArgumentError("NetOptions: max_queued_bytes must be > 0");
  }
  std::unique_ptr<NetContext> ctx(new NetContext(loop, options));
  absl::StatusOr<std::unique_ptr<BufferRing>> ring = absl::UnavailableError("no arena");
  if (loop.arena() != nullptr) {
    ring = BufferRing::create(loop, *loop.arena(), options.recv_buffers, options.recv_buffer_size);
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
    ring =
        BufferRing::create(loop, *ctx->own_arena_, options.recv_buffers, options.recv_buffer_size);
    if (!ring.ok()) return ring.status();
  }
  ctx->ring_ = std::move(*ring);
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

void NetContext::unlink(detail::StreamState* s) noexcept {
  if (s->list_prev != nullptr) {
    s->list_prev->list_next = s->list_next;
  } else {
    head_ = s->list_next;
  }
  if (s->list_next != nullptr) s->list_next->list_prev = s->list_prev;
  s->list_next = s->list_prev = nullptr;
  --live_;
  ++stats_.streams_closed;
}

// --------------------------------------------------------------- StreamState

namespace detail {

StreamState::StreamState(NetContext& ctx, FileRef file)
    : ctx_(&ctx), file_(file), deadline_(&StreamState::on_deadline, this) {
  channel_.emplace(file, ctx.buffers());
  ctx.link(this);
}

StreamState::~StreamState() {
  assert(!sending_);
  drop_queue(absl::CancelledError("stream destroyed"));
  ctx_->unlink(this);
}

void StreamState::release() noexcept {
  owned_ = false;
  channel_.reset();
  if (wait_head_ != nullptr) abort(absl::CancelledError("stream destroyed with writers waiting"));
  if (!queue_empty() && write_error_.ok() && !file_closed_) {
    ++ctx_->stats().lingered;
    arm_deadline(ctx_->options().linger);
    return;  // sending goes on; finish_if_done() closes when the queue is empty
  }
  finish_if_done();
}

void StreamState::finish_if_done() noexcept {
  if (owned_ || sending_) return;
  if (!queue_empty() && write_error_.ok()) return;
  close_file_now();
  delete this;
}

void StreamState::close_file_now() noexcept {
  if (file_closed_) return;
  file_closed_ = true;
  channel_.reset();
  EventLoop& loop = ctx_->loop();
  io_uring_sqe* sqe = loop.get_sqe();
  if (file_.fixed) {
    io_uring_prep_close_direct(sqe, static_cast<unsigned>(file_.fd));
  } else {
    io_uring_prep_close(sqe, file_.fd);
  }
  sqe->user_data = kIgnoreUserData;
}

void StreamState::mark_closed() noexcept {
  file_closed_ = true;
  channel_.reset();
}

// ---- Reading ----

absl::StatusOr<RecvBuffer> StreamState::finish_read(RecvChannel::Next& next,
                                                    bool suspended) noexcept {
  reading_ = false;
  last_read_interrupted_ = false;
  if (!channel_) {
    if (interrupted_) {
      interrupted_ = false;
      last_read_interrupted_ = true;
      return std::exchange(interrupt_status_, absl::OkStatus());
    }
    if (!write_error_.ok()) return write_error_;
    return absl::FailedPreconditionError("read: the stream is closed");
  }
  if (!suspended && channel_->queued() == 0) {
    // Ready because of an interrupt, with no data waiting.
    interrupted_ = false;
    last_read_interrupted_ = true;
    channel_->clear_interrupt();
    return std::exchange(interrupt_status_, absl::OkStatus());
  }
  const RecvChannel::Item item = next.await_resume();
  if (item.res == RecvChannel::kInterrupted) {
    channel_->clear_interrupt();
    if (interrupted_) {
      interrupted_ = false;
      last_read_interrupted_ = true;
      return std::exchange(interrupt_status_, absl::OkStatus());
    }
    return absl::CancelledError("read interrupted");
  }
  if (item.res == -ECANCELED) return absl::CancelledError("read cancelled");
  absl::StatusOr<RecvBuffer> buf = channel_->to_buffer(item);
  if (buf.ok()) {
    rx_seen_ = true;
    ctx_->stats().bytes_received += buf->size();
  }
  return buf;
}

void StreamState::interrupt_read(absl::Status why) noexcept {
  if (why.ok()) why = absl::CancelledError("read interrupted");
  interrupt_status_ = std::move(why);
  interrupted_ = true;
  if (channel_ && reading_) channel_->interrupt();
}

// ---- Writing ----

bool StreamState::fits(size_t bytes) const noexcept {
  return queued_bytes_ == 0 || queued_bytes_ + bytes <= ctx_->options().max_queued_bytes;
}

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
  if (wait_head_ == nullptr && fits(w.bytes)) {
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
    segments_.push_back(Segment{nullptr, 0, nullptr, &w});
    w.segments_left = 1;
    w.phase = Writer::Phase::kQueued;
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
      segments_.push_back(Segment{p.data(), p.size(), nullptr, &w});
      ++n;
    }
    queued_bytes_ += w.bytes;
    if (n == 0) {
      complete(w, absl::OkStatus());
      return;
    }
    w.segments_left = n;
    w.phase = Writer::Phase::kQueued;
  }
  start_send();
}

void StreamState::copy_in(absl::Span<const absl::Span<const uint8_t>> parts,
                          size_t bytes) noexcept {
  if (bytes == 0) return;
  if (fill_ == nullptr || fill_->capacity - fill_->used < bytes) {
    const size_t capacity = std::max(kChunkSize, bytes);
    void* memory = frame_allocate(sizeof(Chunk) + capacity);
    fill_ = new (memory) Chunk{capacity, 0, 0};
  }
  uint8_t* dst = fill_->data() + fill_->used;
  for (absl::Span<const uint8_t> p : parts) {
    if (!p.empty()) std::memcpy(dst, p.data(), p.size());
    dst += p.size();
  }
  const uint8_t* start = fill_->data() + fill_->used;
  fill_->used += bytes;
  fill_->unsent += bytes;
  queued_bytes_ += bytes;
  // Extend the last segment when it is the copied run just before ours.
  if (!queue_empty()) {
    Segment& last = segments_.back();
    if (last.chunk == fill_ && last.data + last.size == start) {
      last.size += bytes;
      return;
    }
  }
  segments_.push_back(Segment{start, bytes, fill_, nullptr});
}

void StreamState::complete(Writer& w, absl::Status status) noexcept {
  w.status = std::move(status);
  w.phase = Writer::Phase::kDone;
  w.segments_left = 0;
  // Resumed from the loop, never from here: the writer may destroy us.
  if (w.handle) ctx_->loop().schedule(std::exchange(w.handle, {}));
}

void StreamState::start_send() noexcept {
  if (sending_ || !write_error_.ok() || file_closed_) return;
  // Barriers at the head are reached: nothing before them is unsent.
  advance(0);
  size_t n = 0;
  for (size_t i = seg_head_; i < segments_.size() && n < kMaxIov; ++i) {
    const Segment& s = segments_[i];
    if (s.size == 0) continue;
    iov_[n].iov_base = const_cast<uint8_t*>(s.data);
    iov_[n].iov_len = s.size;
    ++n;
  }
  if (n == 0) return;
  msg_ = msghdr{};
  msg_.msg_iov = iov_;
  msg_.msg_iovlen = n;
  EventLoop& loop = ctx_->loop();
  OpTable& ops = loop.ops();
  send_index_ = ops.acquire(this);
  ops[send_index_].pending = 1;
  io_uring_sqe* sqe = loop.get_sqe();
  io_uring_prep_sendmsg(sqe, file_.fd, &msg_, MSG_NOSIGNAL);
  file_.apply(sqe);
  sqe->user_data = ops.user_data(send_index_);
  sending_ = true;
}

void StreamState::on_complete(const OpResult& r) noexcept {
  sending_ = false;
  if (r.res < 0) {
    abort(errno_to_status(-r.res, "send"));
    finish_if_done();
    return;
  }
  ++ctx_->stats().sends;
  ctx_->stats().bytes_sent += static_cast<size_t>(r.res);
  advance(static_cast<size_t>(r.res));
  pump_waiters();
  start_send();
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
    if (s.chunk != nullptr) s.chunk->unsent -= take;
    if (s.size > 0) break;
    if (s.chunk != nullptr && s.chunk->unsent == 0) free_chunk(s.chunk);
    if (s.writer != nullptr && --s.writer->segments_left == 0) {
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
  while (wait_head_ != nullptr && write_error_.ok() && fits(wait_head_->bytes)) {
    Writer* w = wait_head_;
    wait_head_ = w->next;
    if (wait_head_ == nullptr) wait_tail_ = nullptr;
    w->next = nullptr;
    admit(*w);
  }
}

void StreamState::free_chunk(Chunk* c) noexcept {
  if (c == fill_) fill_ = nullptr;
  const size_t size = sizeof(Chunk) + c->capacity;
  c->~Chunk();
  frame_deallocate(c, size);
}

void StreamState::drop_queue(const absl::Status& why) noexcept {
  assert(!sending_);
  for (size_t i = seg_head_; i < segments_.size(); ++i) {
    Segment& s = segments_[i];
    if (s.chunk != nullptr) {
      s.chunk->unsent -= s.size;
      if (s.chunk->unsent == 0) free_chunk(s.chunk);
    }
    if (s.writer != nullptr && s.writer->phase == Writer::Phase::kQueued) complete(*s.writer, why);
  }
  segments_.clear();
  seg_head_ = 0;
  queued_bytes_ = 0;
  if (fill_ != nullptr) free_chunk(fill_);  // empty, or every byte was dropped above
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
    // The kernel must let go of the iovecs and queued memory first.
    ctx_->loop().abandon_op(send_index_, /*borrowed_memory=*/true);
    sending_ = false;
  }
  if (first && (!queue_empty() || wait_head_ != nullptr)) ++ctx_->stats().aborts;
  drop_queue(why);
  if (channel_) interrupt_read(why);
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
  // cannot send them any more.
  abort(absl::CancelledError("write abandoned while in flight"));
}

void StreamState::arm_deadline(std::chrono::nanoseconds after) noexcept {
  deadline_.arm(ctx_->loop(), after);
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

// -------------------------------------------------------------------- Stream

Stream Stream::adopt(NetContext& ctx, FileRef file) {
  return Stream(new detail::StreamState(ctx, file));
}

Task<absl::StatusOr<Stream>> Stream::connect(NetContext& ctx, SocketAddress address,
                                             ConnectOptions options) {
  UniqueFd fd(::socket(address.domain(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) co_return errno_to_status(errno, "socket for " + address.to_string());
  if (absl::Status s = apply_socket_options(fd.get(), address.family(), options.socket); !s.ok()) {
    co_return s;
  }
  FileRef file(fd.get());
  if (ctx.fixed_files()) {
    absl::StatusOr<uint32_t> slot = co_await install_file(fd.get());
    if (!slot.ok()) co_return slot.status();
    fd.reset();
    file = FileRef::fixed_index(*slot);
  }
  absl::Status s =
      co_await coring::connect(file, address.data(), address.size()).timeout(options.timeout);
  if (!s.ok()) {
    if (file.fixed) (void)co_await coring::close(file);
    co_return absl::Status(s.code(),
                           absl::StrFormat("connect %s: %s", address.to_string(), s.message()));
  }
  fd.release();  // owned by the stream now (a plain fd when there is no table)
  co_return adopt(ctx, file);
}

Task<absl::Status> Stream::shutdown_write() {
  detail::StreamState* s = state_;
  if (s == nullptr) co_return absl::FailedPreconditionError("shutdown_write: no stream");
  absl::Status flushed = co_await flush();
  s->close_for_writing();
  if (!flushed.ok()) co_return flushed;
  if (s->file_closed()) co_return absl::FailedPreconditionError("shutdown_write: closed");
  co_return co_await shutdown_socket(s->file(), SHUT_WR);
}

Task<absl::Status> Stream::close() {
  detail::StreamState* s = state_;
  if (s == nullptr || s->file_closed()) co_return absl::OkStatus();
  s->arm_deadline(s->context().options().linger);
  absl::Status flushed = co_await flush();
  s->cancel_deadline();
  s->close_for_writing();
  s->mark_closed();
  absl::Status closed = co_await coring::close(s->file());
  if (!flushed.ok()) co_return flushed;
  co_return closed;
}

bool is_end_of_stream(const absl::Status& status) {
  return absl::IsOutOfRange(status) && status.message() == "end of stream";
}

absl::Status end_of_stream_error() { return absl::OutOfRangeError("end of stream"); }

}  // namespace coring::net
