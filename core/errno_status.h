// errno -> absl::Status: every io_uring result that is a negative errno turns
// into the matching absl code, and the message keeps the errno's symbolic name
// ("ECONNRESET: Connection reset by peer") so logs stay greppable.
//
//   int res = cqe->res;
//   if (res < 0) return coring::errno_to_status(-res, "recv");
//
// ECANCELED maps to Cancelled, ETIME/ETIMEDOUT to DeadlineExceeded.
#pragma once

#include <string_view>

#include "absl/status/status.h"

namespace coring {

// The symbolic name of `err` ("EAGAIN"), or "E<number>" when unknown.
std::string_view errno_name(int err) noexcept;

// The absl code matching `err` (a positive errno value).
absl::StatusCode errno_to_code(int err) noexcept;

// A Status for the positive errno value `err`; `context` (the operation) is
// prepended when not empty: "recv: ECONNRESET: Connection reset by peer".
absl::Status errno_to_status(int err, std::string_view context = {});

}  // namespace coring
