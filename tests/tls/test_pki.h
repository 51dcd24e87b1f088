// TestPki: a throw-away certificate authority and certificates, made with
// OpenSSL's API at test time in a fresh temporary folder (removed at the
// end) - no key is ever committed. EC P-256 keys: quick to make.
//
//   TestPki pki;                         // ca.pem, server.pem/key, expired.pem/key, other_ca.pem
//   TlsContext::server({.cert_file = pki.path("server.pem"), .key_file = pki.path("server.key")});
#pragma once

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <utility>

namespace coring::tls::testing {

class TestPki {
 public:
  TestPki() {
    char tmpl[] = "/tmp/coring-tls-test-XXXXXX";
    const char* d = ::mkdtemp(tmpl);
    EXPECT_NE(d, nullptr);
    dir_ = d != nullptr ? d : "/tmp";
    Pair ca = make("coring test CA", nullptr, nullptr, /*is_ca=*/true, -3600, 86400, "");
    Pair other = make("another CA", nullptr, nullptr, /*is_ca=*/true, -3600, 86400, "");
    Pair server =
        make("localhost", ca.cert, ca.key, false, -3600, 86400, "DNS:localhost,IP:127.0.0.1");
    // Valid from two days ago until yesterday.
    Pair expired =
        make("localhost", ca.cert, ca.key, false, -2 * 86400, -86400, "DNS:localhost,IP:127.0.0.1");
    Pair client = make("coring test client", ca.cert, ca.key, false, -3600, 86400, "");
    save(ca, "ca");
    save(other, "other_ca");
    save(server, "server");
    save(expired, "expired");
    save(client, "client");
    for (Pair* p : {&ca, &other, &server, &expired, &client}) {
      X509_free(p->cert);
      EVP_PKEY_free(p->key);
    }
  }
  ~TestPki() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  TestPki(const TestPki&) = delete;
  TestPki& operator=(const TestPki&) = delete;

  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  const std::string& dir() const { return dir_; }

 private:
  struct Pair {
    X509* cert = nullptr;
    EVP_PKEY* key = nullptr;
  };

  static void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer != nullptr ? issuer : cert, cert, nullptr, nullptr, 0);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    ASSERT_NE(ext, nullptr) << "extension " << value;
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
  }

  Pair make(const char* cn, X509* issuer, EVP_PKEY* issuer_key, bool is_ca, long not_before,
            long not_after, const std::string& san) {
    Pair p;
    p.key = EVP_EC_gen("P-256");
    EXPECT_NE(p.key, nullptr);
    p.cert = X509_new();
    X509_set_version(p.cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(p.cert), ++serial_);
    X509_gmtime_adj(X509_getm_notBefore(p.cert), not_before);
    X509_gmtime_adj(X509_getm_notAfter(p.cert), not_after);
    X509_set_pubkey(p.cert, p.key);
    X509_NAME* name = X509_get_subject_name(p.cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn),
                               -1, -1, 0);
    X509_set_issuer_name(p.cert, issuer != nullptr ? X509_get_subject_name(issuer) : name);
    add_ext(p.cert, issuer, NID_subject_key_identifier, "hash");
    if (is_ca) {
      add_ext(p.cert, issuer, NID_basic_constraints, "critical,CA:TRUE");
      add_ext(p.cert, issuer, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
      add_ext(p.cert, issuer, NID_basic_constraints, "CA:FALSE");
      add_ext(p.cert, issuer, NID_authority_key_identifier, "keyid");
      add_ext(p.cert, issuer, NID_ext_key_usage, "serverAuth,clientAuth");
      if (!san.empty()) add_ext(p.cert, issuer, NID_subject_alt_name, san.c_str());
    }
    EXPECT_GT(X509_sign(p.cert, issuer_key != nullptr ? issuer_key : p.key, EVP_sha256()), 0);
    return p;
  }

  void save(const Pair& p, const std::string& stem) {
    FILE* f = std::fopen(path(stem + ".pem").c_str(), "w");
    ASSERT_NE(f, nullptr);
    PEM_write_X509(f, p.cert);
    std::fclose(f);
    f = std::fopen(path(stem + ".key").c_str(), "w");
    ASSERT_NE(f, nullptr);
    PEM_write_PrivateKey(f, p.key, nullptr, nullptr, 0, nullptr, nullptr);
    std::fclose(f);
  }

  std::string dir_;
  long serial_ = 0;
};

}  // namespace coring::tls::testing
