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
// Both go through the ring (IORING_OP_RECVMSG / IORING_OP_SENDMSG), so a
// fixed file - coring's default socket, with no fd in this process - works
// as a plain fd does. The msghdr, iovec and control buffer the kernel reads
// and writes until the completion live in a ControlRecordMsg that the
// connection owns, not in the awaiting coroutine's frame.
//
// None of this runs on the machines coring is developed on (no TLS ULP):
// it is kept to these two calls so that what cannot be tested stays small.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "coring/core/operation.h"
#include "coring/core/task.h"

namespace coring::tls {

enum class ControlRecord : uint8_t {
  kCloseNotify,  // the end of the peer's stream
  kSkipped,      // nothing for the reader: read on
};

// The memory of one recvmsg or sendmsg of a control record. One per
// direction: a reader and a closer may each have one in flight.
struct ControlRecordMsg {
  msghdr msg{};
  iovec iov{};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(uint8_t))] = {};
  uint8_t alert[2] = {};
};

// Reads the non-data record waiting on `file` (without blocking) into
// `scratch`: what it means for the reader, or the error it amounts to.
// `m` and `scratch` must stay alive until the completion.
Task<absl::StatusOr<ControlRecord>> take_control_record(FileRef file, ControlRecordMsg& m,
                                                        absl::Span<uint8_t> scratch);

// Sends a close_notify alert through the kernel's TLS (without blocking).
// `m` must stay alive until the completion.
Task<absl::Status> send_close_notify_alert(FileRef file, ControlRecordMsg& m);

}  // namespace coring::tls
