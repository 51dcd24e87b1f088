#include "coring/tls/ktls.h"

#include <fstream>
#include <sstream>

namespace coring::tls {

std::string_view to_string(RecordPath path) {
  return path == RecordPath::kKernel ? "kernel" : "user-space";
}

bool kernel_offers_tls(const std::string& ulp_list_file) {
  std::ifstream in(ulp_list_file);
  std::string word;
  while (in >> word) {
    if (word == "tls") return true;
  }
  return false;
}

RecordPathDecision decide_record_path(bool wanted, const std::string& ulp_list_file, FileRef,
                                      ssl_st*) {
  if (!wanted) return {RecordPath::kUserSpace, "kernel TLS not wanted (TlsOptions::kernel_tls)"};
  if (!kernel_offers_tls(ulp_list_file)) {
    return {RecordPath::kUserSpace, "the kernel offers no TLS ULP (" + ulp_list_file + ")"};
  }
  // The ULP exists, but handing the traffic keys of a memory-BIO connection
  // to it (TLS_TX / TLS_RX crypto_info) is not implemented yet.
  return {RecordPath::kUserSpace, "installing memory-BIO keys into kernel TLS is not implemented"};
}

}  // namespace coring::tls
