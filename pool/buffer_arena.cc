#include "coring/pool/buffer_arena.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "coring/pool/memlock.h"

namespace coring::pool {
namespace detail {

struct ArenaState {
  struct Class {
    uint32_t buffer_size = 0;
    uint32_t count = 0;
    uint8_t* base = nullptr;
    uint16_t buf_index = 0;
    uint32_t touched = 0;              // slots [0, touched) were leased before
    std::vector<uint32_t> free_slots;  // a stack: the warmest buffer goes out first
  };

  std::string name;
  MappedRegion memory;
  std::vector<struct iovec> regions;
  std::vector<Class> classes;  // ascending buffer_size; class i is region i
  // The carve region: free runs, offset -> length, coalesced.
  uint8_t* carve_base = nullptr;
  size_t carve_size = 0;
  size_t carve_touched = 0;  // bytes [0, carve_touched) were carved before
  uint16_t carve_index = 0;
  std::map<size_t, size_t> carve_free;
  uint64_t allocs = 0;
  uint64_t frees = 0;
  uint64_t reuses = 0;
  uint64_t high_water = 0;
  bool orphaned = false;  // the BufferArena is gone; the last lease deletes this

  void on_alloc() {
    const uint64_t live = ++allocs - frees;
    high_water = std::max(high_water, live);
  }
  // After a return: true if this state must now be deleted.
  bool on_free() {
    ++frees;
    return orphaned && allocs == frees;
  }
};

void release_buffer(ArenaState* state, uint32_t buffer_class, uint32_t slot) noexcept {
  state->classes[buffer_class].free_slots.push_back(slot);
  if (state->on_free()) std::unique_ptr<ArenaState> last(state);
}

void release_block(ArenaState* state, size_t offset, size_t bytes) noexcept {
  auto [it, inserted] = state->carve_free.emplace(offset, bytes);
  // Merge with the following run, then with the preceding one.
  auto next = std::next(it);
  if (next != state->carve_free.end() && it->first + it->second == next->first) {
    it->second += next->second;
    state->carve_free.erase(next);
  }
  if (it != state->carve_free.begin()) {
    auto prev = std::prev(it);
    if (prev->first + prev->second == it->first) {
      prev->second += it->second;
      state->carve_free.erase(it);
    }
  }
  if (state->on_free()) std::unique_ptr<ArenaState> last(state);
}

}  // namespace detail

// Out of line on purpose: inlined into std::optional<BufferBlock>, GCC 12
// warns (falsely) that the fields may be read uninitialized.
void BufferLease::reset() noexcept {
  if (state_ != nullptr) {
    detail::release_buffer(std::exchange(state_, nullptr), buffer_class_, slot_);
    data_ = nullptr;
    size_ = 0;
  }
}

void BufferBlock::reset() noexcept {
  if (state_ != nullptr) {
    detail::release_block(std::exchange(state_, nullptr), region_offset_, reserved_);
    data_ = nullptr;
    count_ = 0;
    buffer_size_ = 0;
  }
}

namespace {

constexpr size_t kSmallPage = 4096;
constexpr size_t kMaxRegionBytes = size_t{1} << 30;  // io_uring's limit per registered buffer
constexpr size_t kMaxClasses = 64;
constexpr uint32_t kMaxCarveCount = 32768;  // io_uring's provided-buffer ring limit

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

absl::Status check_options(const BufferArenaOptions& o) {
  if (absl::Status s = validate_pool_name(o.name); !s.ok()) return s;
  if (o.classes.empty()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("buffer arena '%s': no buffer classes configured", o.name));
  }
  if (o.classes.size() > kMaxClasses) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "buffer arena '%s': %d buffer classes, at most %d", o.name, o.classes.size(), kMaxClasses));
  }
  for (size_t i = 0; i < o.classes.size(); ++i) {
    const BufferClass& c = o.classes[i];
    if (c.buffer_size == 0 || c.buffer_size % 64 != 0 || c.count == 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "buffer arena '%s': class {%d bytes x %d}: sizes must be non-zero multiples of 64 "
          "and counts non-zero",
          o.name, c.buffer_size, c.count));
    }
    if (uint64_t{c.buffer_size} * c.count > kMaxRegionBytes) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "buffer arena '%s': class {%d bytes x %d} exceeds io_uring's 1 GiB per registered "
          "buffer",
          o.name, c.buffer_size, c.count));
    }
    for (size_t j = 0; j < i; ++j) {
      if (o.classes[j].buffer_size == c.buffer_size) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "buffer arena '%s': buffer size %d configured twice", o.name, c.buffer_size));
      }
    }
  }
  if (o.carve_bytes > kMaxRegionBytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "buffer arena '%s': carve_bytes %d exceeds io_uring's 1 GiB per registered buffer", o.name,
        o.carve_bytes));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<BufferArena> BufferArena::create(BufferArenaOptions options) {
  if (absl::Status s = check_options(options); !s.ok()) return s;
  auto state = std::make_unique<detail::ArenaState>();
  state->name = std::move(options.name);
  std::vector<BufferClass> classes = options.classes;
  std::sort(classes.begin(), classes.end(), [](const BufferClass& a, const BufferClass& b) {
    return a.buffer_size < b.buffer_size;
  });

  // One mapping; each region starts on a 4 KiB page.
  size_t total = 0;
  for (const BufferClass& c : classes)
    total += round_up(size_t{c.buffer_size} * c.count, kSmallPage);
  const size_t carve = round_up(options.carve_bytes, kSmallPage);
  total += carve;
  absl::StatusOr<MappedRegion> memory = MappedRegion::map(total, kSmallPage, options.huge_pages);
  if (!memory.ok()) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("buffer arena '%s': cannot map %d bytes: %s", state->name, total,
                        memory.status().message()));
  }
  state->memory = *std::move(memory);

  size_t offset = 0;
  for (const BufferClass& c : classes) {
    detail::ArenaState::Class cls;
    cls.buffer_size = c.buffer_size;
    cls.count = c.count;
    cls.base = state->memory.data() + offset;
    cls.buf_index = static_cast<uint16_t>(state->regions.size());
    cls.free_slots.reserve(c.count);
    for (uint32_t slot = c.count; slot > 0; --slot) cls.free_slots.push_back(slot - 1);
    const size_t bytes = size_t{c.buffer_size} * c.count;
    state->regions.push_back({cls.base, bytes});
    state->classes.push_back(std::move(cls));
    offset += round_up(bytes, kSmallPage);
  }
  if (carve > 0) {
    state->carve_base = state->memory.data() + offset;
    state->carve_size = carve;
    state->carve_index = static_cast<uint16_t>(state->regions.size());
    state->regions.push_back({state->carve_base, carve});
    state->carve_free.emplace(0, carve);
  }
  return BufferArena(std::move(state));
}

BufferArena::BufferArena(std::unique_ptr<detail::ArenaState> state) : state_(std::move(state)) {}
BufferArena::BufferArena(BufferArena&&) noexcept = default;

BufferArena& BufferArena::operator=(BufferArena&& other) noexcept {
  if (this != &other) {
    this->~BufferArena();
    std::construct_at(this, std::move(other));
  }
  return *this;
}

BufferArena::~BufferArena() {
  if (state_ == nullptr || state_->allocs == state_->frees) return;
  // Leases are still out (maybe with I/O in flight): their memory must stay
  // valid, so the last of them frees the state and unmaps.
  state_->orphaned = true;
  static_cast<void>(state_.release());
}

absl::Span<const struct iovec> BufferArena::regions() const { return state_->regions; }

size_t BufferArena::registered_bytes() const {
  size_t total = 0;
  for (const struct iovec& r : state_->regions) total += r.iov_len;
  return total;
}

absl::Status BufferArena::check_memlock() const { return pool::check_memlock(registered_bytes()); }

const std::string& BufferArena::name() const { return state_->name; }

absl::StatusOr<BufferLease> BufferArena::acquire(size_t size) {
  if (std::optional<BufferLease> lease = try_acquire(size)) return std::move(*lease);
  detail::ArenaState& s = *state_;
  for (const detail::ArenaState::Class& c : s.classes) {
    if (c.buffer_size < size) continue;
    return absl::ResourceExhaustedError(absl::StrFormat(
        "buffer arena '%s' exhausted: all %d buffers of %d bytes are leased (request: %d "
        "bytes; %d leases and blocks live in the arena)",
        s.name, c.count, c.buffer_size, size, s.allocs - s.frees));
  }
  return absl::InvalidArgumentError(absl::StrFormat(
      "buffer arena '%s': a %d-byte buffer is larger than the largest class (%d bytes)", s.name,
      size, s.classes.back().buffer_size));
}

std::optional<BufferLease> BufferArena::try_acquire(size_t size) noexcept {
  detail::ArenaState& s = *state_;
  for (uint32_t i = 0; i < s.classes.size(); ++i) {
    detail::ArenaState::Class& c = s.classes[i];
    if (c.buffer_size < size) continue;
    if (c.free_slots.empty()) return std::nullopt;
    const uint32_t slot = c.free_slots.back();
    c.free_slots.pop_back();
    if (slot < c.touched) {
      ++s.reuses;
    } else {
      c.touched = slot + 1;
    }
    s.on_alloc();
    const size_t region_offset = size_t{slot} * c.buffer_size;
    return BufferLease(&s, c.base + region_offset, c.buffer_size, i, slot, c.buf_index,
                       region_offset);
  }
  return std::nullopt;
}

absl::StatusOr<BufferBlock> BufferArena::carve(uint32_t count, uint32_t buffer_size) {
  detail::ArenaState& s = *state_;
  if (count == 0 || count > kMaxCarveCount || buffer_size == 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("buffer arena '%s': carve(%d, %d): need 1..%d buffers of a non-zero size",
                        s.name, count, buffer_size, kMaxCarveCount));
  }
  const size_t bytes = round_up(uint64_t{count} * buffer_size, kSmallPage);
  for (auto it = s.carve_free.begin(); it != s.carve_free.end(); ++it) {
    if (it->second < bytes) continue;
    const size_t offset = it->first;
    const size_t rest = it->second - bytes;
    s.carve_free.erase(it);
    if (rest > 0) s.carve_free.emplace(offset + bytes, rest);
    if (offset < s.carve_touched) ++s.reuses;
    s.carve_touched = std::max(s.carve_touched, offset + bytes);
    s.on_alloc();
    return BufferBlock(&s, s.carve_base + offset, count, buffer_size, s.carve_index, offset, bytes);
  }
  size_t largest = 0;
  for (const auto& [offset, length] : s.carve_free) largest = std::max(largest, length);
  return absl::ResourceExhaustedError(absl::StrFormat(
      "buffer arena '%s': cannot carve %d x %d bytes (%d bytes): carve region is %d bytes, "
      "largest free run %d bytes",
      s.name, count, buffer_size, bytes, s.carve_size, largest));
}

int32_t BufferArena::region_index(const void* p, size_t n) const noexcept {
  const detail::ArenaState& s = *state_;
  const auto* byte = static_cast<const uint8_t*>(p);
  if (byte < s.memory.data() || byte + n > s.memory.data() + s.memory.size()) return -1;
  for (size_t i = s.regions.size(); i-- > 0;) {
    const auto* base = static_cast<const uint8_t*>(s.regions[i].iov_base);
    if (byte >= base && byte + n <= base + s.regions[i].iov_len) return static_cast<int32_t>(i);
  }
  return -1;
}

absl::StatusOr<BufferAddress> BufferArena::locate(const void* p) const {
  if (const int32_t i = region_index(p, 1); i >= 0) {
    const auto* base = static_cast<const uint8_t*>(state_->regions[i].iov_base);
    return BufferAddress{static_cast<uint16_t>(i),
                         static_cast<size_t>(static_cast<const uint8_t*>(p) - base)};
  }
  return absl::NotFoundError(
      absl::StrFormat("buffer arena '%s': %p is not in a registered region", state_->name, p));
}

PoolStats BufferArena::stats() const {
  const detail::ArenaState& s = *state_;
  PoolStats out;
  out.name = s.name;
  out.kind = "buffer_arena";
  out.allocs_total = s.allocs;
  out.frees_total = s.frees;
  out.reuses_total = s.reuses;
  out.in_use = s.allocs - s.frees;
  out.high_water = s.high_water;
  out.bytes_reserved = s.memory.size();
  out.capacity_bytes = registered_bytes();
  out.huge_pages = s.memory.huge_pages();
  return out;
}

}  // namespace coring::pool
