// UniqueFd: owns one plain file descriptor and closes it when destroyed.
//
//   absl::StatusOr<UniqueFd> fd = listen_socket(address);
//   int raw = fd->get();                 // still owned
//   int mine = fd->release();            // the caller closes it now
//
// Used for what lives outside the ring's fixed-file table: listening sockets
// and sockets being set up before they are installed into it.
#pragma once

#include <unistd.h>

#include <utility>

namespace coring::net {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ >= 0; }
  explicit operator bool() const noexcept { return valid(); }
  int release() noexcept { return std::exchange(fd_, -1); }
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace coring::net
