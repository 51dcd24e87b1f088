/* sbmp_wire.h: the few pieces of SBMP/1.3 (../../../shared/SBMP.md) that the
 * benchmark's C load generator and hand-written baseline servers need, in C
 * that also compiles as C++: CRC-16/CCITT-FALSE, header encode and check, and
 * a pass-through frame scanner for an echo server.
 *
 * This is deliberately NOT coring's codec: the baselines must not share code
 * with the thing they are compared to. What it checks (and what it does not)
 * is stated next to each function, so the comparison stays honest.
 */
#ifndef CORING_BENCH_SBMP_WIRE_H_
#define CORING_BENCH_SBMP_WIRE_H_

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define SBMP_MAGIC 0x53424D50u
#define SBMP_VERSION 0x13u
#define SBMP_HEADER_SIZE 16u
#define SBMP_FLAG_CHK 0x01u
#define SBMP_TYPE_HELLO 0x0001u
#define SBMP_TYPE_HELLO_ACK 0x0002u
#define SBMP_TYPE_PING 0x0003u
#define SBMP_TYPE_PONG 0x0004u
#define SBMP_TYPE_GOAWAY 0x0005u
#define SBMP_TYPE_ECHO 0x0100u /* the first application type */
#define SBMP_DEFAULT_MAX_FRAME (16u << 20)

/* Error codes (SBMP.md section 4) that the baselines send in GOAWAY. */
#define SBMP_PROTOCOL_ERROR 1u
#define SBMP_BAD_MAGIC 2u
#define SBMP_HEADER_CHECKSUM 3u
#define SBMP_FRAME_TOO_LARGE 5u
#define SBMP_UNSUPPORTED_VERSION 6u
#define SBMP_BAD_EXTENSION 7u
#define SBMP_RESERVED_FLAGS 8u

static inline void sbmp_put16(uint8_t* p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static inline void sbmp_put32(uint8_t* p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}
static inline uint16_t sbmp_get16(const uint8_t* p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t sbmp_get32(const uint8_t* p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF), table driven. The table is
 * filled on first use; every user of this header is single-threaded. */
static inline uint16_t sbmp_crc16(const uint8_t* p, size_t n) {
  static uint16_t table[256];
  static int ready = 0;
  if (!ready) {
    for (unsigned i = 0; i < 256; ++i) {
      uint16_t c = (uint16_t)(i << 8);
      for (int b = 0; b < 8; ++b) c = (uint16_t)((c & 0x8000) ? (c << 1) ^ 0x1021 : c << 1);
      table[i] = c;
    }
    ready = 1;
  }
  uint16_t crc = 0xFFFF;
  for (size_t i = 0; i < n; ++i) crc = (uint16_t)((crc << 8) ^ table[((crc >> 8) ^ p[i]) & 0xFF]);
  return crc;
}

/* Writes a 16-byte header (no CHK flag). */
static inline void sbmp_encode_header(uint8_t* h, uint16_t type, uint32_t length,
                                      uint16_t ext_len) {
  sbmp_put32(h, SBMP_MAGIC);
  h[4] = SBMP_VERSION;
  h[5] = 0;
  sbmp_put16(h + 6, type);
  sbmp_put32(h + 8, length);
  sbmp_put16(h + 12, ext_len);
  sbmp_put16(h + 14, sbmp_crc16(h, 14));
}

/* Checks a complete header in the order SBMP.md 1.1 gives: magic, hcrc,
 * version major, flags, length, ext_len. Returns 0 or an SBMP error code. */
static inline uint32_t sbmp_check_header(const uint8_t* h, uint32_t max_frame) {
  if (sbmp_get32(h) != SBMP_MAGIC) return SBMP_BAD_MAGIC;
  if (sbmp_get16(h + 14) != sbmp_crc16(h, 14)) return SBMP_HEADER_CHECKSUM;
  if ((h[4] >> 4) != (SBMP_VERSION >> 4)) return SBMP_UNSUPPORTED_VERSION;
  if (h[5] & ~SBMP_FLAG_CHK) return SBMP_RESERVED_FLAGS;
  const uint32_t length = sbmp_get32(h + 8);
  if (length > max_frame) return SBMP_FRAME_TOO_LARGE;
  const uint32_t chk = (h[5] & SBMP_FLAG_CHK) ? 4u : 0u;
  if (length < chk || sbmp_get16(h + 12) > length - chk) return SBMP_BAD_EXTENSION;
  return 0;
}

/* ---- A pass-through scanner for an echo server ----
 *
 * An SBMP echo sends every application frame back unchanged, so it need not
 * copy or re-encode anything: it scans the received bytes for frame
 * boundaries, checks each header, and echoes the bytes of application frames
 * as they are. Control frames are gathered and answered: HELLO (first frame
 * only) -> HELLO_ACK (version 1.3, no optional features), PING -> PONG, GOAWAY
 * -> close; anything else -> GOAWAY(code) and close.
 *
 * Not checked (coring's codec does check them, so this baseline does less
 * work than coring per frame): CRC-32C trailers of CHK frames and the
 * extension TLVs of application frames. The load generator sends neither. */
enum sbmp_event_kind {
  SBMP_EV_NEED_MORE = 0, /* every byte given was consumed */
  SBMP_EV_PASS,          /* echo in[off, off+len) */
  SBMP_EV_COPY,          /* echo data/len (the scanner's own bytes: copy them now) */
  SBMP_EV_REPLY,         /* send data/len (a control answer: copy it now) */
  SBMP_EV_CLOSE,         /* data/len is a GOAWAY to send (len 0: none); then close */
};

struct sbmp_event {
  enum sbmp_event_kind kind;
  size_t off, len;
  const uint8_t* data;
};

#define SBMP_CONTROL_MAX (SBMP_HEADER_SIZE + 2048u)

struct sbmp_scanner {
  uint32_t max_frame;
  uint32_t frames;    /* frames seen so far */
  uint32_t hdr_have;  /* bytes of the current header gathered in hdr */
  uint32_t body_left; /* body bytes of the current frame not yet scanned */
  uint8_t passing;    /* the current frame is an application frame */
  uint8_t closed;
  uint8_t hdr[SBMP_HEADER_SIZE];
  uint32_t ctl_have; /* control frame: bytes gathered in ctl (header included) */
  uint8_t ctl[SBMP_CONTROL_MAX];
  uint8_t out[SBMP_HEADER_SIZE + 64 + 64 + 32]; /* the answer being handed out */
};

static inline void sbmp_scanner_init(struct sbmp_scanner* s, uint32_t max_frame) {
  memset(s, 0, offsetof(struct sbmp_scanner, ctl));
  s->max_frame = max_frame;
}

static inline void sbmp_goaway(struct sbmp_scanner* s, uint32_t code, struct sbmp_event* ev) {
  sbmp_encode_header(s->out, SBMP_TYPE_GOAWAY, 4, 0);
  sbmp_put32(s->out + SBMP_HEADER_SIZE, code);
  s->closed = 1;
  ev->kind = SBMP_EV_CLOSE;
  ev->data = s->out;
  ev->len = SBMP_HEADER_SIZE + 4;
}

/* A whole control frame is in s->ctl: answer it. */
static inline void sbmp_control(struct sbmp_scanner* s, struct sbmp_event* ev) {
  const uint8_t* h = s->ctl;
  const uint16_t type = sbmp_get16(h + 6);
  const uint32_t length = sbmp_get32(h + 8);
  const uint32_t ext_len = sbmp_get16(h + 12);
  const uint32_t chk = (h[5] & SBMP_FLAG_CHK) ? 4u : 0u;
  const uint8_t* payload = h + SBMP_HEADER_SIZE + ext_len;
  const uint32_t payload_len = length - ext_len - chk;
  const int first = s->frames == 1;
  if (type == SBMP_TYPE_HELLO && first && payload_len >= 12 && payload_len <= 12 + 255 &&
      sbmp_get16(payload + 2) == 0 && payload[0] <= payload[1]) {
    if (payload[0] > 0x1F || payload[1] < 0x10) { /* no 1.x version in range */
      sbmp_goaway(s, SBMP_UNSUPPORTED_VERSION, ev);
      return;
    }
    static const char agent[] = "bench-baseline";
    const uint32_t len = 12 + (uint32_t)sizeof agent - 1;
    sbmp_encode_header(s->out, SBMP_TYPE_HELLO_ACK, len, 0);
    uint8_t* p = s->out + SBMP_HEADER_SIZE;
    p[0] = SBMP_VERSION;
    p[1] = 0;
    sbmp_put16(p + 2, 0);
    sbmp_put32(p + 4, s->max_frame);
    sbmp_put32(p + 8, 0); /* features: none (no CRC32C) */
    memcpy(p + 12, agent, sizeof agent - 1);
    ev->kind = SBMP_EV_REPLY;
    ev->data = s->out;
    ev->len = SBMP_HEADER_SIZE + len;
  } else if (type == SBMP_TYPE_PING && payload_len <= 64) {
    /* PONG: the PING's payload (and its extensions, e.g. REQUEST_ID). */
    sbmp_encode_header(s->out, SBMP_TYPE_PONG, ext_len + payload_len, (uint16_t)ext_len);
    memcpy(s->out + SBMP_HEADER_SIZE, h + SBMP_HEADER_SIZE, ext_len + payload_len);
    ev->kind = SBMP_EV_REPLY;
    ev->data = s->out;
    ev->len = SBMP_HEADER_SIZE + ext_len + payload_len;
  } else if (type == SBMP_TYPE_GOAWAY) {
    s->closed = 1;
    ev->kind = SBMP_EV_CLOSE;
    ev->data = s->out;
    ev->len = 0;
  } else if (type == SBMP_TYPE_PONG) {
    ev->kind = SBMP_EV_NEED_MORE; /* unsolicited PONG: ignored */
  } else {
    sbmp_goaway(s, SBMP_PROTOCOL_ERROR, ev);
  }
}

/* Scans in[*pos, n): returns with one event and *pos advanced past the bytes
 * it covers. Call again while the event is not SBMP_EV_NEED_MORE. */
static inline void sbmp_scan(struct sbmp_scanner* s, const uint8_t* in, size_t n, size_t* pos,
                             struct sbmp_event* ev) {
  ev->kind = SBMP_EV_NEED_MORE;
  while (*pos < n && !s->closed) {
    size_t at = *pos, left = n - at;
    if (s->body_left > 0 && s->passing) { /* application body: echo as is */
      size_t take = left < s->body_left ? left : s->body_left;
      s->body_left -= (uint32_t)take;
      *pos += take;
      ev->kind = SBMP_EV_PASS;
      ev->off = at;
      ev->len = take;
      return;
    }
    if (s->body_left > 0) { /* control body: gather */
      size_t take = left < s->body_left ? left : s->body_left;
      memcpy(s->ctl + s->ctl_have, in + at, take);
      s->ctl_have += (uint32_t)take;
      s->body_left -= (uint32_t)take;
      *pos += take;
      if (s->body_left == 0) {
        sbmp_control(s, ev);
        if (ev->kind != SBMP_EV_NEED_MORE) return;
      }
      continue;
    }
    /* A header. The common case: all 16 bytes are here. */
    const uint8_t* h;
    int split = 0;
    if (s->hdr_have == 0 && left >= SBMP_HEADER_SIZE) {
      h = in + at;
      *pos += SBMP_HEADER_SIZE;
    } else {
      size_t take = SBMP_HEADER_SIZE - s->hdr_have;
      if (take > left) take = left;
      memcpy(s->hdr + s->hdr_have, in + at, take);
      s->hdr_have += (uint32_t)take;
      *pos += take;
      if (s->hdr_have < SBMP_HEADER_SIZE) return; /* NEED_MORE */
      s->hdr_have = 0;
      h = s->hdr;
      split = 1;
    }
    const uint32_t err = sbmp_check_header(h, s->max_frame);
    if (err) {
      sbmp_goaway(s, err, ev);
      return;
    }
    ++s->frames;
    const uint16_t type = sbmp_get16(h + 6);
    const uint32_t length = sbmp_get32(h + 8);
    if (type == SBMP_TYPE_HELLO && s->frames != 1) {
      sbmp_goaway(s, SBMP_PROTOCOL_ERROR, ev);
      return;
    }
    s->body_left = length;
    if (type >= 0x0100) {
      s->passing = 1;
      if (split) { /* the header came in pieces: hand out the gathered copy */
        ev->kind = SBMP_EV_COPY;
        ev->data = s->hdr;
        ev->len = SBMP_HEADER_SIZE;
      } else {
        ev->kind = SBMP_EV_PASS;
        ev->off = at;
        ev->len = SBMP_HEADER_SIZE;
        /* Extend over the body bytes already here: one range per frame run. */
        size_t more = n - *pos < length ? n - *pos : length;
        ev->len += more;
        s->body_left -= (uint32_t)more;
        *pos += more;
        /* ...and over whole application frames that follow. */
        while (s->body_left == 0 && n - *pos >= SBMP_HEADER_SIZE) {
          const uint8_t* h2 = in + *pos;
          if (sbmp_check_header(h2, s->max_frame) || sbmp_get16(h2 + 6) < 0x0100) break;
          ++s->frames;
          const uint32_t len2 = sbmp_get32(h2 + 8);
          size_t avail = n - *pos - SBMP_HEADER_SIZE;
          size_t take = avail < len2 ? avail : len2;
          ev->len += SBMP_HEADER_SIZE + take;
          *pos += SBMP_HEADER_SIZE + take;
          s->body_left = len2 - (uint32_t)take;
        }
      }
      return;
    }
    s->passing = 0;
    if (length > SBMP_CONTROL_MAX - SBMP_HEADER_SIZE) {
      sbmp_goaway(s, SBMP_PROTOCOL_ERROR, ev);
      return;
    }
    memcpy(s->ctl, h, SBMP_HEADER_SIZE);
    s->ctl_have = SBMP_HEADER_SIZE;
    if (length == 0) {
      sbmp_control(s, ev);
      if (ev->kind != SBMP_EV_NEED_MORE) return;
    }
  }
}

#endif /* CORING_BENCH_SBMP_WIRE_H_ */
