// Kernel-TLS records other than application data, on a socket whose
// records the kernel handles (ktls.h). A plain recv of such a record fails
// with EIO; the record itself is read with recvmsg and a TLS_GET_RECORD_TYPE
// control message. Sending one needs sendmsg with TLS_SET_RECORD_TYPE.
//
// Covered: the peer's close_notify (end of stream), its other alerts (an
// error naming the alert), a NewSessionTicket (dropped: OpenSSL never sees
// it, so this connection's ticket is lost), a KeyUpdate (an error: not
// supported under kernel TLS here), anything else (an error); sending
// close_notify. Not covered: sending KeyUpdate, renewing keys, reading a
// control record larger than the caller's buffer.
//
// None of this runs on the machines coring is developed on (no TLS ULP):
// it is kept to these two calls so that what cannot be tested stays small.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace coring::tls {

enum class ControlRecord : uint8_t {
  kCloseNotify,  // the end of the peer's stream
  kSkipped,      // nothing for the reader: read on
};

// Reads the non-data record waiting on `fd` (without blocking) into
// `scratch`: what it means for the reader, or the error it amounts to.
absl::StatusOr<ControlRecord> take_control_record(int fd, absl::Span<uint8_t> scratch);

// Sends a close_notify alert through the kernel's TLS (without blocking).
absl::Status send_close_notify_alert(int fd);

}  // namespace coring::tls
