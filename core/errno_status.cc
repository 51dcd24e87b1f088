#include "coring/core/errno_status.h"

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"

namespace coring {

std::string_view errno_name(int err) noexcept {
  switch (err) {
#define CORING_ERRNO_CASE(e) \
  case e:                    \
    return #e;
    CORING_ERRNO_CASE(EPERM)
    CORING_ERRNO_CASE(ENOENT)
    CORING_ERRNO_CASE(EINTR)
    CORING_ERRNO_CASE(EIO)
    CORING_ERRNO_CASE(ENXIO)
    CORING_ERRNO_CASE(E2BIG)
    CORING_ERRNO_CASE(EBADF)
    CORING_ERRNO_CASE(EAGAIN)
    CORING_ERRNO_CASE(ENOMEM)
    CORING_ERRNO_CASE(EACCES)
    CORING_ERRNO_CASE(EFAULT)
    CORING_ERRNO_CASE(EBUSY)
    CORING_ERRNO_CASE(EEXIST)
    CORING_ERRNO_CASE(ENODEV)
    CORING_ERRNO_CASE(ENOTDIR)
    CORING_ERRNO_CASE(EISDIR)
    CORING_ERRNO_CASE(EINVAL)
    CORING_ERRNO_CASE(ENFILE)
    CORING_ERRNO_CASE(EMFILE)
    CORING_ERRNO_CASE(ENOSPC)
    CORING_ERRNO_CASE(ESPIPE)
    CORING_ERRNO_CASE(EPIPE)
    CORING_ERRNO_CASE(ERANGE)
    CORING_ERRNO_CASE(ENOSYS)
    CORING_ERRNO_CASE(ENOBUFS)
    CORING_ERRNO_CASE(ENOTSOCK)
    CORING_ERRNO_CASE(EDESTADDRREQ)
    CORING_ERRNO_CASE(EMSGSIZE)
    CORING_ERRNO_CASE(EPROTOTYPE)
    CORING_ERRNO_CASE(ENOPROTOOPT)
    CORING_ERRNO_CASE(EPROTONOSUPPORT)
    CORING_ERRNO_CASE(EOPNOTSUPP)
    CORING_ERRNO_CASE(EAFNOSUPPORT)
    CORING_ERRNO_CASE(EADDRINUSE)
    CORING_ERRNO_CASE(EADDRNOTAVAIL)
    CORING_ERRNO_CASE(ENETDOWN)
    CORING_ERRNO_CASE(ENETUNREACH)
    CORING_ERRNO_CASE(ENETRESET)
    CORING_ERRNO_CASE(ECONNABORTED)
    CORING_ERRNO_CASE(ECONNRESET)
    CORING_ERRNO_CASE(EISCONN)
    CORING_ERRNO_CASE(ENOTCONN)
    CORING_ERRNO_CASE(ESHUTDOWN)
    CORING_ERRNO_CASE(ETIMEDOUT)
    CORING_ERRNO_CASE(ECONNREFUSED)
    CORING_ERRNO_CASE(EHOSTDOWN)
    CORING_ERRNO_CASE(EHOSTUNREACH)
    CORING_ERRNO_CASE(EALREADY)
    CORING_ERRNO_CASE(EINPROGRESS)
    CORING_ERRNO_CASE(ECANCELED)
    CORING_ERRNO_CASE(ETIME)
    CORING_ERRNO_CASE(EOVERFLOW)
    CORING_ERRNO_CASE(ENAMETOOLONG)
#undef CORING_ERRNO_CASE
    default:
      return {};
  }
}

absl::StatusCode errno_to_code(int err) noexcept {
  switch (err) {
    case 0:
      return absl::StatusCode::kOk;
    case ECANCELED:
      return absl::StatusCode::kCancelled;
    case ETIME:
    case ETIMEDOUT:
      return absl::StatusCode::kDeadlineExceeded;
    case EINVAL:
    case EBADF:
    case ENOTSOCK:
    case EDESTADDRREQ:
    case EMSGSIZE:
    case EPROTOTYPE:
    case ENOPROTOOPT:
    case EFAULT:
    case ENAMETOOLONG:
    case EISDIR:
    case ENOTDIR:
    case ESPIPE:
      return absl::StatusCode::kInvalidArgument;
    case ENOENT:
    case ENODEV:
    case ENXIO:
      return absl::StatusCode::kNotFound;
    case EEXIST:
    case EADDRINUSE:
    case EISCONN:
      return absl::StatusCode::kAlreadyExists;
    case EPERM:
    case EACCES:
      return absl::StatusCode::kPermissionDenied;
    case ENOMEM:
    case ENOBUFS:
    case ENFILE:
    case EMFILE:
    case ENOSPC:
    case E2BIG:
      return absl::StatusCode::kResourceExhausted;
    case ENOTCONN:
    case EALREADY:
    case EINPROGRESS:
    case EBUSY:
      return absl::StatusCode::kFailedPrecondition;
    case ERANGE:
    case EOVERFLOW:
      return absl::StatusCode::kOutOfRange;
    case ENOSYS:
    case EOPNOTSUPP:
    case EPROTONOSUPPORT:
    case EAFNOSUPPORT:
      return absl::StatusCode::kUnimplemented;
    case ECONNABORTED:
      return absl::StatusCode::kAborted;
    case EAGAIN:
    case EINTR:
    case ECONNRESET:
    case ECONNREFUSED:
    case EPIPE:
    case ENETDOWN:
    case ENETUNREACH:
    case ENETRESET:
    case EHOSTDOWN:
    case EHOSTUNREACH:
    case ESHUTDOWN:
    case EADDRNOTAVAIL:
      return absl::StatusCode::kUnavailable;
    case EIO:
      return absl::StatusCode::kDataLoss;
    default:
      return absl::StatusCode::kUnknown;
  }
}

absl::Status errno_to_status(int err, std::string_view context) {
  if (err == 0) return absl::OkStatus();
  std::string_view name = errno_name(err);
  std::string fallback;
  if (name.empty()) {
    fallback = absl::StrCat("E", err);
    name = fallback;
  }
  char buf[128];
  const char* text = strerror_r(err, buf, sizeof(buf));  // GNU variant
  std::string message;
  if (!context.empty()) message.append(context).append(": ");
  message.append(name).append(": ").append(text);
  return absl::Status(errno_to_code(err), message);
}

}  // namespace coring
