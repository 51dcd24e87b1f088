// read_fixed() / write_fixed(): file or socket I/O on registered buffers
// (the loop's BufferArena, registered with io_uring_register_buffers).
//
//   absl::StatusOr<pool::BufferLease> lease = arena.acquire(4096);
//   auto n = co_await coring::read_fixed(fd, lease->span(), lease->buf_index(), offset);
//   n = co_await coring::write_fixed(fd, lease->span().first(*n), lease->buf_index(), offset);
//
// `offset` is the file offset (ignored by sockets and pipes; -1: the file's
// current position).
#pragma once

#include <cstdint>

#include "absl/types/span.h"
#include "coring/core/op_awaitable.h"

namespace coring {

class ReadFixed : public OpAwaitable<ReadFixed> {
 public:
  ReadFixed(FileRef file, absl::Span<uint8_t> buffer, uint16_t buf_index, uint64_t offset) noexcept
      : file_(file), buffer_(buffer), offset_(offset), buf_index_(buf_index) {}

  void prepare(io_uring_sqe* sqe, OpSlot&) noexcept {
    io_uring_prep_read_fixed(sqe, file_.fd, buffer_.data(), static_cast<unsigned>(buffer_.size()),
                             offset_, buf_index_);
    file_.apply(sqe);
  }
  absl::StatusOr<size_t> result(const OpResult& r) const { return size_of(r, "read_fixed"); }

 private:
  FileRef file_;
  absl::Span<uint8_t> buffer_;
  uint64_t offset_;
  uint16_t buf_index_;
};

class WriteFixed : public OpAwaitable<WriteFixed> {
 public:
  WriteFixed(FileRef file, absl::Span<const uint8_t> data, uint16_t buf_index,
             uint64_t offset) noexcept
      : file_(file), data_(data), offset_(offset), buf_index_(buf_index) {}

  void prepare(io_uring_sqe* sqe, OpSlot&) noexcept {
    io_uring_prep_write_fixed(sqe, file_.fd, data_.data(), static_cast<unsigned>(data_.size()),
                              offset_, buf_index_);
    file_.apply(sqe);
  }
  absl::StatusOr<size_t> result(const OpResult& r) const { return size_of(r, "write_fixed"); }

 private:
  FileRef file_;
  absl::Span<const uint8_t> data_;
  uint64_t offset_;
  uint16_t buf_index_;
};

inline ReadFixed read_fixed(FileRef file, absl::Span<uint8_t> buffer, uint16_t buf_index,
                            uint64_t offset = 0) noexcept {
  return ReadFixed(file, buffer, buf_index, offset);
}
inline WriteFixed write_fixed(FileRef file, absl::Span<const uint8_t> data, uint16_t buf_index,
                              uint64_t offset = 0) noexcept {
  return WriteFixed(file, data, buf_index, offset);
}

}  // namespace coring
