// PoolStats: a snapshot of one pool's counters, rendered as text or JSON.
//
// Every pool carries a name of the form domain.resource.v<major>, e.g.
// "sbmp.echo.rx.v1": lowercase segments of [a-z0-9_] starting with a letter,
// at least two of them, then "v" and a major version number. The version
// lets a dashboard tell apart two layouts of the same resource.
//
//   PoolStats s = slab_pool.stats();
//   std::cout << s.to_text();   // "sbmp.echo.rx.v1 slab: allocs_total=... huge_pages=yes
//   (transparent)" std::cout << s.to_json();   // {"name":"sbmp.echo.rx.v1","kind":"slab",...}
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "coring/pool/mapped_region.h"

namespace coring::pool {

// OK, or InvalidArgument saying what is wrong with `name` and the expected form.
absl::Status validate_pool_name(std::string_view name);

struct PoolStats {
  std::string name;                 // domain.resource.v<major>
  std::string kind;                 // "slab" or "buffer_arena"
  uint64_t allocs_total = 0;        // successful allocations / leases
  uint64_t frees_total = 0;         // blocks / leases returned (remote frees once drained)
  uint64_t reuses_total = 0;        // allocations served by memory that had been handed out before
  uint64_t in_use = 0;              // blocks / leases live now (allocs_total - frees_total)
  uint64_t high_water = 0;          // the most ever live at once
  uint64_t bytes_reserved = 0;      // address space mapped for the pool
  uint64_t bytes_released = 0;      // of it, unused pages given back to the system (slab trim())
  uint64_t capacity_bytes = 0;      // the configured limit
  uint64_t cross_thread_frees = 0;  // frees made on another thread (slab: once drained)
  HugePageMode huge_pages = HugePageMode::kNone;

  // One line: "<name> <kind>: allocs_total=1 frees_total=0 ... huge_pages=no".
  std::string to_text() const;
  // One JSON object; huge_pages is "yes"/"no", huge_page_mode the detail.
  std::string to_json() const;
};

}  // namespace coring::pool
