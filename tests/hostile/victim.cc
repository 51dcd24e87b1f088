// The victim of the hostile suite (peers.h): one well-behaved connection
// whose echoes are verified and timed.
#include <algorithm>
#include <random>

#include "absl/strings/str_format.h"
#include "peers.h"

namespace coring::hostile {

double VictimReport::percentile_ms(double p) const {
  if (latencies_us.empty()) return 0;
  std::vector<uint32_t> v = latencies_us;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * (v.size() - 1) + 0.5));
  std::nth_element(v.begin(), v.begin() + i, v.end());
  return v[i] / 1000.0;
}

std::string VictimReport::to_string() const {
  return absl::StrFormat(
      "victim: %u echoes verified (%u bytes), p50 %.2f ms, p99 %.2f ms, max %.2f ms, %u errors%s",
      frames, bytes_verified, p50_ms(), p99_ms(), max_ms(), errors,
      first_error.empty() ? "" : " (first: " + first_error + ")");
}

Victim::Victim(VictimOptions options) : options_(options) {
  thread_ = std::thread([this] { run(); });
}

Victim::~Victim() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

bool Victim::wait_for_frames(uint64_t n, Clock::duration timeout) const {
  const auto deadline = Clock::now() + timeout;
  while (frames_.load() < n) {
    if (failed_.load() || Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

VictimReport Victim::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  return report_;
}

void Victim::run() {
  auto fail = [this](std::string why) {
    ++report_.errors;
    if (report_.first_error.empty()) {
      report_.first_error = absl::StrFormat("echo %u: %s", report_.frames, why);
    }
    failed_ = true;
  };
  absl::StatusOr<Socket> s = Socket::connect(options_.port, {.timeout = options_.echo_timeout});
  if (!s.ok()) return fail(s.status().ToString());
  Peer peer(std::move(*s));
  std::mt19937_64 rng(options_.seed);
  std::uniform_int_distribution<size_t> size(options_.min_payload, options_.max_payload);
  Bytes back;
  while (!stop_.load() && (options_.max_frames == 0 || report_.frames < options_.max_frames)) {
    const uint64_t seq = report_.frames;
    const Bytes payload = pattern(size(rng), options_.seed * 1'000'003 + seq);
    const auto start = Clock::now();
    const auto deadline = start + options_.echo_timeout;
    absl::Status st;
    if (options_.raw) {
      st = peer.socket().send_all(payload, deadline);
      back.assign(payload.size(), 0);
      for (size_t got = 0; st.ok() && got < back.size();) {
        absl::StatusOr<size_t> n =
            peer.socket().recv_some(absl::MakeSpan(back).subspan(got), deadline);
        if (!n.ok()) {
          st = n.status();
        } else if (*n == 0) {
          st = absl::NotFoundError("EOF");
        } else {
          got += *n;
        }
      }
      if (st.ok() && back != payload) st = absl::DataLossError("echoed bytes differ");
    } else {
      st =
          peer.echo(0x0100 + (seq % 0xFE00), payload, request_id_ext(seq), deadline - Clock::now());
    }
    if (!st.ok()) return fail(st.ToString());
    report_.latencies_us.push_back(static_cast<uint32_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count()));
    ++report_.frames;
    report_.bytes_verified += payload.size();
    frames_.store(report_.frames);
    if (options_.pause.count() > 0) std::this_thread::sleep_for(options_.pause);
  }
}

VictimReport echo_round(VictimOptions options, uint64_t count) {
  options.max_frames = count;
  Victim v(options);
  v.wait_for_frames(count, options.echo_timeout * (count + 1));
  return v.stop();
}

}  // namespace coring::hostile
