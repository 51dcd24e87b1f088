// Tests of tls/ktls*.h on a machine without the kernel's TLS ULP: the keys
// a connection would hand the kernel are checked against real records, by
// opening with them what OpenSSL sealed and sealing with them what OpenSSL
// then opens (AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305); their sequence
// numbers count the records sent before the switch (the server's ticket);
// every refusal on the way leaves a working user-space connection with its
// reason (no ULP; a ULP list that claims "tls" but a TCP_ULP that fails with
// ENOENT, by syscall on a plain fd and through the ring on a fixed file);
// and the kernel data path's plumbing runs with an install that pretends to
// succeed (plaintext on the wire).
#include "coring/tls/ktls.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include <optional>
#include <string>
#include <vector>

#include "coring/core/when_all.h"
#include "coring/tls/tls_stream.h"
#include "tls/tls_test_support.h"

namespace coring::tls {
namespace {

using testing::TempFile;
using testing::TlsFixture;

constexpr size_t kHeader = 5;
constexpr size_t kTag = 16;

// The AEAD key and nonce base of a crypto_info, copied so a test can spoil them.
struct AeadKey {
  uint16_t cipher_type = 0;
  std::vector<uint8_t> key;
  std::array<uint8_t, 12> nonce_base = {};
};

AeadKey aead_key(const KtlsCryptoInfo& info) {
  AeadKey k;
  k.cipher_type = info.cipher_type();
  k.key.assign(info.key().begin(), info.key().end());
  k.nonce_base = info.nonce_base();
  return k;
}

const EVP_CIPHER* cipher_of(uint16_t cipher_type) {
  switch (cipher_type) {
    case TLS_CIPHER_AES_GCM_128:
      return EVP_aes_128_gcm();
    case TLS_CIPHER_AES_GCM_256:
      return EVP_aes_256_gcm();
    case TLS_CIPHER_CHACHA20_POLY1305:
      return EVP_chacha20_poly1305();
    default:
      return nullptr;
  }
}

// TLS 1.3 per-record nonce: the IV XOR the sequence number, left-padded.
std::array<uint8_t, 12> nonce_for(const AeadKey& k, uint64_t seq) {
  std::array<uint8_t, 12> n = k.nonce_base;
  for (int i = 0; i < 8; ++i) n[11 - i] ^= static_cast<uint8_t>(seq >> (8 * i));
  return n;
}

// Opens one record (header and body) as the kernel would at `seq`: its
// application-data content, or nullopt when it does not authenticate.
std::optional<std::string> open_record(const AeadKey& k, uint64_t seq,
                                       absl::Span<const uint8_t> record) {
  if (record.size() < kHeader + kTag + 1) return std::nullopt;
  const std::array<uint8_t, 12> nonce = nonce_for(k, seq);
  const size_t body = record.size() - kHeader - kTag;
  std::vector<uint8_t> inner(body + 16);
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  int len = 0;
  int total = 0;
  bool ok = EVP_DecryptInit_ex(ctx, cipher_of(k.cipher_type), nullptr, nullptr, nullptr) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, 12, nullptr) == 1 &&
            EVP_DecryptInit_ex(ctx, nullptr, nullptr, k.key.data(), nonce.data()) == 1 &&
            EVP_DecryptUpdate(ctx, nullptr, &len, record.data(), kHeader) == 1 &&  // AAD
            EVP_DecryptUpdate(ctx, inner.data(), &len, record.data() + kHeader,
                              static_cast<int>(body)) == 1;
  total = len;
  ok = ok &&
       EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, kTag,
                           const_cast<uint8_t*>(record.data() + kHeader + body)) == 1 &&
       EVP_DecryptFinal_ex(ctx, inner.data() + total, &len) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!ok) return std::nullopt;
  // TLSInnerPlaintext: content, the real content type, zero padding.
  size_t end = static_cast<size_t>(total);
  while (end > 0 && inner[end - 1] == 0) --end;
  if (end == 0 || inner[end - 1] != 23) return std::nullopt;
  return std::string(inner.begin(), inner.begin() + static_cast<long>(end - 1));
}

// Seals `plain` as one application-data record at `seq`, as the kernel would.
std::vector<uint8_t> seal_record(const AeadKey& k, uint64_t seq, std::string_view plain) {
  std::vector<uint8_t> inner(plain.begin(), plain.end());
  inner.push_back(23);  // the real content type: application data
  const size_t length = inner.size() + kTag;
  std::vector<uint8_t> record(kHeader + length);
  record[0] = 0x17;  // application data, TLS 1.2 on the wire (RFC 8446 5.2)
  record[1] = 0x03;
  record[2] = 0x03;
  record[3] = static_cast<uint8_t>(length >> 8);
  record[4] = static_cast<uint8_t>(length);
  const std::array<uint8_t, 12> nonce = nonce_for(k, seq);
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  int len = 0;
  bool ok = EVP_EncryptInit_ex(ctx, cipher_of(k.cipher_type), nullptr, nullptr, nullptr) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, 12, nullptr) == 1 &&
            EVP_EncryptInit_ex(ctx, nullptr, nullptr, k.key.data(), nonce.data()) == 1 &&
            EVP_EncryptUpdate(ctx, nullptr, &len, record.data(), kHeader) == 1 &&
            EVP_EncryptUpdate(ctx, record.data() + kHeader, &len, inner.data(),
                              static_cast<int>(inner.size())) == 1 &&
            EVP_EncryptFinal_ex(ctx, record.data() + kHeader + len, &len) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, kTag,
                                record.data() + kHeader + inner.size()) == 1;
  EVP_CIPHER_CTX_free(ctx);
  EXPECT_TRUE(ok);
  return record;
}

// Reads raw bytes from `s` until `count` whole records came; the records.
Task<absl::StatusOr<std::vector<std::vector<uint8_t>>>> read_records(net::Stream& s, size_t count) {
  std::vector<uint8_t> bytes;
  std::vector<std::vector<uint8_t>> records;
  while (records.size() < count) {
    size_t at = 0;
    records.clear();
    while (bytes.size() - at >= kHeader) {
      const size_t len = size_t{bytes[at + 3]} << 8 | bytes[at + 4];
      if (bytes.size() - at < kHeader + len) break;
      records.emplace_back(bytes.begin() + static_cast<long>(at),
                           bytes.begin() + static_cast<long>(at + kHeader + len));
      at += kHeader + len;
    }
    if (records.size() >= count) break;
    absl::StatusOr<RecvBuffer> buf = co_await s.read();
    if (!buf.ok()) co_return buf.status();
    if (buf->empty()) co_return absl::DataLossError("EOF before the records");
    bytes.insert(bytes.end(), buf->data(), buf->data() + buf->size());
  }
  co_return records;
}

// An install that keeps the keys and installs nothing.
KtlsInstall keep_keys(std::vector<KtlsKeys>* keys) {
  return [keys](FileRef, const KtlsKeys& k) {
    keys->push_back(k);
    return absl::UnavailableError("test: keys kept, nothing installed");
  };
}

struct Pair {
  absl::StatusOr<TlsStream> server = absl::UnknownError("not run");
  absl::StatusOr<TlsStream> client = absl::UnknownError("not run");
};

// Both handshakes, on the fixture's listener.
Task<Pair> handshake_pair(TlsFixture& f) {
  auto accept = [](TlsFixture& f) -> Task<absl::StatusOr<TlsStream>> {
    absl::StatusOr<net::Stream> s = co_await f.listener->accept();
    if (!s.ok()) co_return s.status();
    co_return co_await TlsStream::accept(*f.server_tls, std::move(*s));
  };
  auto [server, client] = co_await when_all(
      accept(f), TlsStream::connect(*f.client_tls, *f.t.net, f.addr, "localhost"));
  Pair p;
  p.server = std::move(server);
  p.client = std::move(client);
  co_return p;
}

Task<> close_both(Pair& p) {
  if (p.client.ok()) (void)co_await p.client->transport().close();
  if (p.server.ok()) (void)co_await p.server->transport().close();
}

struct Suite {
  const char* name;
  uint16_t cipher_type;
  const char* test_name;
};
void PrintTo(const Suite& s, std::ostream* os) { *os << s.name; }

class KtlsKeysTest : public ::testing::TestWithParam<Suite> {
 protected:
  // Contexts whose (fake) kernel offers the ULP and whose install keeps
  // the keys; `tickets`: the server issues one.
  std::unique_ptr<TlsFixture> fixture(bool tickets = true) {
    TlsOptions server{.tls13_ciphersuites = GetParam().name,
                      .resume_sessions = tickets,
                      .ulp_list_file = ulp_.path(),
                      .kernel_tls_install = keep_keys(&server_keys_)};
    TlsOptions client{.tls13_ciphersuites = GetParam().name,
                      .resume_sessions = tickets,
                      .ulp_list_file = ulp_.path(),
                      .kernel_tls_install = keep_keys(&client_keys_)};
    return std::make_unique<TlsFixture>(server, client);
  }

  TempFile ulp_{"mptcp tls\n"};
  std::vector<KtlsKeys> server_keys_;
  std::vector<KtlsKeys> client_keys_;
};

// What the server writes after the switch, the client opens with the
// server's TX keys - at sequence 1, after the ticket the server sent.
TEST_P(KtlsKeysTest, ServerTxKeysOpenTheServersRecords) {
  auto f = fixture();
  Pair p = f->t.run(handshake_pair(*f));
  ASSERT_TRUE(p.server.ok()) << p.server.status();
  ASSERT_TRUE(p.client.ok()) << p.client.status();
  ASSERT_EQ(server_keys_.size(), 1u);
  const KtlsCryptoInfo& tx = server_keys_[0].tx;
  EXPECT_EQ(tx.cipher_type(), GetParam().cipher_type);
  EXPECT_EQ(tx.sequence(), 1u) << "the NewSessionTicket went out under the same keys";
  EXPECT_EQ(p.server->info().record_path, RecordPath::kUserSpace);
  EXPECT_NE(p.server->info().record_path_reason.find("test: keys kept"), std::string::npos)
      << p.server->info().record_path_reason;

  auto records = f->t.run([](Pair& p) -> Task<absl::StatusOr<std::vector<std::vector<uint8_t>>>> {
    if (auto s = co_await p.server->write(
            absl::MakeConstSpan(reinterpret_cast<const uint8_t*>("server says hi"), 14));
        !s.ok()) {
      co_return s;
    }
    // The ticket, then the data: both as OpenSSL sealed them.
    co_return co_await read_records(p.client->transport(), 2);
  }(p));
  ASSERT_TRUE(records.ok()) << records.status();
  const AeadKey key = aead_key(tx);
  std::optional<std::string> plain = open_record(key, tx.sequence(), (*records)[1]);
  ASSERT_TRUE(plain.has_value()) << "the derived TX keys do not open the server's record";
  EXPECT_EQ(*plain, "server says hi");
  // Neither the record before (it is the ticket, not data) nor the wrong
  // sequence number nor a spoiled key opens it.
  EXPECT_FALSE(open_record(key, tx.sequence() - 1, (*records)[1]).has_value());
  EXPECT_FALSE(open_record(key, tx.sequence() - 1, (*records)[0]).has_value());
  AeadKey spoiled = key;
  spoiled.key[0] ^= 1;
  EXPECT_FALSE(open_record(spoiled, tx.sequence(), (*records)[1]).has_value());
  f->t.run(close_both(p));
}

// The client's first record after the switch opens with its TX keys at 0.
TEST_P(KtlsKeysTest, ClientTxKeysOpenTheClientsRecords) {
  auto f = fixture();
  Pair p = f->t.run(handshake_pair(*f));
  ASSERT_TRUE(p.server.ok()) << p.server.status();
  ASSERT_TRUE(p.client.ok()) << p.client.status();
  ASSERT_EQ(client_keys_.size(), 1u);
  const KtlsCryptoInfo& tx = client_keys_[0].tx;
  EXPECT_EQ(tx.sequence(), 0u);
  auto records = f->t.run([](Pair& p) -> Task<absl::StatusOr<std::vector<std::vector<uint8_t>>>> {
    const std::string big(20000, 'x');  // two records: the second at sequence 1
    const absl::Span<const uint8_t> parts[2] = {
        absl::MakeConstSpan(reinterpret_cast<const uint8_t*>("client says hi"), 14),
        absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(big.data()), big.size())};
    if (auto s = co_await p.client->write(parts); !s.ok()) co_return s;
    co_return co_await read_records(p.server->transport(), 2);
  }(p));
  ASSERT_TRUE(records.ok()) << records.status();
  const AeadKey key = aead_key(tx);
  std::optional<std::string> first = open_record(key, tx.sequence(), (*records)[0]);
  std::optional<std::string> second = open_record(key, tx.sequence() + 1, (*records)[1]);
  ASSERT_TRUE(first.has_value() && second.has_value());
  EXPECT_EQ(*first + *second, "client says hi" + std::string(20000, 'x'));
  EXPECT_FALSE(open_record(key, tx.sequence() + 1, (*records)[0]).has_value());
  AeadKey spoiled = key;
  spoiled.nonce_base[11] ^= 0x80;
  EXPECT_FALSE(open_record(spoiled, tx.sequence(), (*records)[0]).has_value());
  f->t.run(close_both(p));
}

// A record sealed with the server's RX keys, sent past the client's TLS,
// is what the server's OpenSSL reads.
TEST_P(KtlsKeysTest, ServerRxKeysSealWhatTheServerReads) {
  auto f = fixture();
  Pair p = f->t.run(handshake_pair(*f));
  ASSERT_TRUE(p.server.ok()) << p.server.status();
  ASSERT_TRUE(p.client.ok()) << p.client.status();
  ASSERT_EQ(server_keys_.size(), 1u);
  const KtlsCryptoInfo& rx = server_keys_[0].rx;
  EXPECT_EQ(rx.sequence(), 0u);
  const std::vector<uint8_t> record = seal_record(aead_key(rx), rx.sequence(), "sealed by hand");
  auto got = f->t.run(
      [](Pair& p, const std::vector<uint8_t>& record) -> Task<absl::StatusOr<std::string>> {
        if (auto s = co_await p.client->transport().write(absl::MakeConstSpan(record)); !s.ok()) {
          co_return s;
        }
        absl::StatusOr<TlsBuffer> b = co_await p.server->read();
        if (!b.ok()) co_return b.status();
        co_return std::string(reinterpret_cast<const char*>(b->data()), b->size());
      }(p, record));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "sealed by hand");
  f->t.run(close_both(p));
}

// The client's RX keys count from its switch: the ticket the server sent
// meanwhile is record 0 (the kernel would read it), a record sealed at 1
// after it is what the client reads.
TEST_P(KtlsKeysTest, ClientRxKeysSealWhatTheClientReadsAfterTheTicket) {
  auto f = fixture();
  Pair p = f->t.run(handshake_pair(*f));
  ASSERT_TRUE(p.server.ok()) << p.server.status();
  ASSERT_TRUE(p.client.ok()) << p.client.status();
  ASSERT_EQ(client_keys_.size(), 1u);
  const KtlsCryptoInfo& rx = client_keys_[0].rx;
  EXPECT_EQ(rx.sequence(), 0u);
  const std::vector<uint8_t> record =
      seal_record(aead_key(rx), rx.sequence() + 1, "after the ticket");
  auto got = f->t.run(
      [](Pair& p, const std::vector<uint8_t>& record) -> Task<absl::StatusOr<std::string>> {
        if (auto s = co_await p.server->transport().write(absl::MakeConstSpan(record)); !s.ok()) {
          co_return s;
        }
        absl::StatusOr<TlsBuffer> b = co_await p.client->read();  // takes the ticket on the way
        if (!b.ok()) co_return b.status();
        co_return std::string(reinterpret_cast<const char*>(b->data()), b->size());
      }(p, record));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "after the ticket");
  f->t.run(close_both(p));
}

// Without tickets nothing precedes the server's data: sequence 0.
TEST_P(KtlsKeysTest, WithoutTicketsTheServerStartsAtZero) {
  auto f = fixture(/*tickets=*/false);
  Pair p = f->t.run(handshake_pair(*f));
  ASSERT_TRUE(p.server.ok()) << p.server.status();
  ASSERT_TRUE(p.client.ok()) << p.client.status();
  ASSERT_EQ(server_keys_.size(), 1u);
  const KtlsCryptoInfo& tx = server_keys_[0].tx;
  EXPECT_EQ(tx.sequence(), 0u);
  auto records = f->t.run([](Pair& p) -> Task<absl::StatusOr<std::vector<std::vector<uint8_t>>>> {
    if (auto s = co_await p.server->write(
            absl::MakeConstSpan(reinterpret_cast<const uint8_t*>("no ticket"), 9));
        !s.ok()) {
      co_return s;
    }
    co_return co_await read_records(p.client->transport(), 1);
  }(p));
  ASSERT_TRUE(records.ok()) << records.status();
  std::optional<std::string> plain = open_record(aead_key(tx), 0, (*records)[0]);
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(*plain, "no ticket");
  f->t.run(close_both(p));
}

INSTANTIATE_TEST_SUITE_P(
    Tls13, KtlsKeysTest,
    ::testing::Values(Suite{"TLS_AES_128_GCM_SHA256", TLS_CIPHER_AES_GCM_128, "Aes128Gcm"},
                      Suite{"TLS_AES_256_GCM_SHA384", TLS_CIPHER_AES_GCM_256, "Aes256Gcm"},
                      Suite{"TLS_CHACHA20_POLY1305_SHA256", TLS_CIPHER_CHACHA20_POLY1305,
                            "ChaCha20Poly1305"}),
    [](const ::testing::TestParamInfo<Suite>& i) { return std::string(i.param.test_name); });

// RFC 8448 (3. Simple 1-RTT Handshake): the server's application traffic
// secret and the key and IV derived from it.
TEST(KtlsKeysTest, HkdfExpandLabelMatchesRfc8448) {
  auto unhex = [](std::string_view h) {
    std::vector<uint8_t> out;
    for (size_t i = 0; i + 1 < h.size(); i += 2) {
      out.push_back(static_cast<uint8_t>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16)));
    }
    return out;
  };
  const std::vector<uint8_t> secret =
      unhex("a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643");
  std::vector<uint8_t> key(16), iv(12);
  ASSERT_TRUE(hkdf_expand_label("SHA256", secret, "key", absl::MakeSpan(key)).ok());
  ASSERT_TRUE(hkdf_expand_label("SHA256", secret, "iv", absl::MakeSpan(iv)).ok());
  EXPECT_EQ(key, unhex("9f02283b6c9c07efc26bb9f2ac92e356"));
  EXPECT_EQ(iv, unhex("cf782b88dd83549aadf1e984"));
}

// ---- Falling back ----

LoopOptions no_fixed_files() {
  LoopOptions o;
  o.fixed_files = 0;
  return o;
}

// Echo over a context pair with `client` options; the client's info.
TlsInfo echo_with(TlsFixture& f, absl::Status* result) {
  f.serve(1);
  TlsInfo info;
  *result = f.t.run(testing::tls_sbmp_client(*f.t.net, *f.client_tls, f.addr, "localhost",
                                             {0, 1, 100, 20000, 70000, 3}, &info));
  f.wait_server(0);
  return info;
}

TEST(KtlsFallbackTest, NoUlpOnThisMachineEchoesInUserSpace) {
  TlsFixture f;  // the real /proc/sys/net/ipv4/tcp_available_ulp
  if (kernel_offers_tls("/proc/sys/net/ipv4/tcp_available_ulp")) {
    GTEST_SKIP() << "this kernel offers the TLS ULP";
  }
  absl::Status s;
  TlsInfo info = echo_with(f, &s);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(info.record_path, RecordPath::kUserSpace);
  EXPECT_NE(info.record_path_reason.find("no TLS ULP"), std::string::npos)
      << info.record_path_reason;
  EXPECT_EQ(f.client_tls->stats().user_space_records, 1u);
  EXPECT_EQ(f.client_tls->stats().kernel_records, 0u);
}

TEST(KtlsFallbackTest, FailedTcpUlpNamesTheStepAndEchoesInUserSpace) {
  TempFile ulp("mptcp tls\n");
  // Plain fds: the install gets as far as its first setsockopt.
  TlsFixture f(TlsOptions{.ulp_list_file = ulp.path()}, TlsOptions{.ulp_list_file = ulp.path()},
               no_fixed_files());
  absl::Status s;
  TlsInfo info = echo_with(f, &s);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(info.record_path, RecordPath::kUserSpace);
  if (kernel_offers_tls("/proc/sys/net/ipv4/tcp_available_ulp")) {
    GTEST_SKIP() << "this kernel offers the TLS ULP: " << info.record_path_reason;
  }
  EXPECT_EQ(info.record_path_reason,
            "kernel TLS install failed: TCP_ULP \"tls\": setsockopt: ENOENT");
  EXPECT_EQ(f.sides[0].info.record_path_reason, info.record_path_reason);
  EXPECT_EQ(f.client_tls->stats().user_space_records, 1u);
  EXPECT_EQ(f.server_tls->stats().user_space_records, 1u);
}

// Fixed files (the default): the install's setsockopt goes through the
// ring (IORING_OP_URING_CMD) and gets the kernel's own answer.
TEST(KtlsFallbackTest, FixedFileInstallGoesThroughTheRingAndEchoesInUserSpace) {
  TempFile ulp("tls\n");
  TlsFixture f(TlsOptions{.ulp_list_file = ulp.path()}, TlsOptions{.ulp_list_file = ulp.path()});
  absl::Status s;
  TlsInfo info = echo_with(f, &s);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(info.record_path, RecordPath::kUserSpace);
  if (kernel_offers_tls("/proc/sys/net/ipv4/tcp_available_ulp")) {
    GTEST_SKIP() << "this kernel offers the TLS ULP: " << info.record_path_reason;
  }
  if (info.record_path_reason.find("needs Linux 6.7") != std::string::npos) {
    GTEST_SKIP() << "no io_uring setsockopt on this kernel: " << info.record_path_reason;
  }
  EXPECT_EQ(info.record_path_reason,
            "kernel TLS install failed: TCP_ULP \"tls\": setsockopt: ENOENT");
  EXPECT_EQ(f.sides[0].info.record_path_reason, info.record_path_reason);
  EXPECT_EQ(f.client_tls->stats().user_space_records, 1u);
  EXPECT_EQ(f.server_tls->stats().user_space_records, 1u);
}

TEST(KtlsFallbackTest, Tls12SaysItIsNotCovered) {
  TempFile ulp("tls\n");
  std::vector<KtlsKeys> keys;
  TlsFixture f(TlsOptions{.ulp_list_file = ulp.path(), .kernel_tls_install = keep_keys(&keys)},
               TlsOptions{.ulp_list_file = ulp.path()});
  // A client that speaks TLS 1.2 only.
  SSL_CTX_set_max_proto_version(f.client_tls->native(), TLS1_2_VERSION);
  absl::Status s;
  TlsInfo info = echo_with(f, &s);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(info.version, "TLSv1.2");
  EXPECT_NE(info.record_path_reason.find("kernel TLS: TLSv1.2: kernel TLS is done here for TLS "
                                         "1.3 only"),
            std::string::npos)
      << info.record_path_reason;
  EXPECT_TRUE(keys.empty());  // nothing was even tried
}

// ---- The kernel path's plumbing, with an install that pretends ----
// (on fixed files, the fixture's default; a real kernel-TLS socket cannot
// be had here)

TEST(KtlsFallbackTest, PretendedInstallCarriesPlaintextThroughTheStream) {
  TempFile ulp("tls\n");
  KtlsInstall pretend = [](FileRef, const KtlsKeys&) { return absl::OkStatus(); };
  TlsFixture f(TlsOptions{.ulp_list_file = ulp.path(), .kernel_tls_install = pretend},
               TlsOptions{.ulp_list_file = ulp.path(), .kernel_tls_install = pretend});
  Pair p = f.t.run(handshake_pair(f));
  ASSERT_TRUE(p.server.ok()) << p.server.status();
  ASSERT_TRUE(p.client.ok()) << p.client.status();
  EXPECT_EQ(p.client->info().record_path, RecordPath::kKernel);
  EXPECT_EQ(p.server->info().record_path, RecordPath::kKernel);
  EXPECT_EQ(p.client->info().record_path_reason, "");
  EXPECT_TRUE(p.client->transport().file().fixed);
  EXPECT_EQ(f.client_tls->stats().kernel_records, 1u);
  EXPECT_EQ(f.server_tls->stats().kernel_records, 1u);
  auto got = f.t.run([](Pair& p) -> Task<absl::StatusOr<std::string>> {
    if (auto s = co_await p.client->write(
            absl::MakeConstSpan(reinterpret_cast<const uint8_t*>("plain ping"), 10));
        !s.ok()) {
      co_return s;
    }
    absl::StatusOr<TlsBuffer> b = co_await p.server->read();
    if (!b.ok()) co_return b.status();
    co_return std::string(reinterpret_cast<const char*>(b->data()), b->size());
  }(p));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "plain ping");  // the stream carried it as it was
  // close_notify goes out by sendmsg through the ring on the fixed file;
  // plain TCP ignores its TLS_SET_RECORD_TYPE, so the peer sees the alert's
  // two bytes (warning, close_notify) and then EOF.
  auto tail = f.t.run([](Pair& p) -> Task<absl::StatusOr<std::string>> {
    if (auto s = co_await p.client->shutdown_write(); !s.ok()) co_return s;
    std::string bytes;
    for (;;) {
      absl::StatusOr<RecvBuffer> b = co_await p.server->transport().read();
      if (!b.ok()) co_return b.status();
      if (b->empty()) co_return bytes;
      bytes.append(reinterpret_cast<const char*>(b->data()), b->size());
    }
  }(p));
  ASSERT_TRUE(tail.ok()) << tail.status();
  EXPECT_EQ(*tail, std::string("\x01\x00", 2));
  f.t.run(close_both(p));
}

}  // namespace
}  // namespace coring::tls
