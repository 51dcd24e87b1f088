// when_any: run several Tasks concurrently; the first to finish wins and the
// others are cancelled and awaited.
//
//   auto r = co_await when_any(read_frame(conn), sleep_for(loop, 5s));
//   if (r.index == 1) { /* timed out; the read was cancelled and is over */ }
//   Frame& f = std::get<0>(r.value);
//
// * Lazy like any Task; when awaited it starts every child in order.
// * Children run under the token of a std::stop_source owned by the when_any.
//   The first child to finish (by returning or by throwing) wins: stop is
//   requested on that source, and when_any completes only after every loser
//   has finished too, so nothing a loser uses outlives the when_any. Losers'
//   results and exceptions are discarded.
// * A stop request on the token of the coroutine awaiting when_any is
//   forwarded to all children. Children inherit its ambient context
//   (core/task_context.h).
// * Result: WhenAnyResult{index, value}; value is a std::variant holding the
//   winner's result at that same index (std::monostate for Task<void>,
//   std::reference_wrapper for Task<T&>). If the winner threw, co_await
//   rethrows its exception. The vector form yields WhenAnyVectorResult<T>.
// * Costs one heap allocation per when_any (the std::stop_source state).
#pragma once

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include "coring/core/task.h"
#include "coring/core/when_all.h"

namespace coring {

template <class... Ts>
struct WhenAnyResult {
  std::size_t index;
  std::variant<detail::JoinValue<Ts>...> value;
};

template <class T>
struct WhenAnyVectorResult {
  std::size_t index;
  detail::JoinValue<T> value;
};

template <class... Ts>
Task<WhenAnyResult<Ts...>> when_any(Task<Ts>... tasks) {
  static_assert(sizeof...(Ts) > 0, "when_any needs at least one task");
  detail::JoinState state(detail::JoinState::Mode::kAny, sizeof...(Ts));
  (state.add(tasks), ...);
  co_await state.wait();
  const std::size_t winner = state.first();
  std::optional<std::variant<detail::JoinValue<Ts>...>> value;
  std::tuple<Task<Ts>&...> refs(tasks...);
  // Rethrows the winner's exception, if any.
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (void)((I == winner ? (value.emplace(std::in_place_index<I>,
                                         detail::take_join_value(std::get<I>(refs))),
                           true)
                        : false) ||
           ...);
  }
  (std::index_sequence_for<Ts...>{});
  co_return WhenAnyResult<Ts...>{winner, std::move(*value)};
}

template <class T>
Task<WhenAnyVectorResult<T>> when_any(std::vector<Task<T>> tasks) {
  if (tasks.empty()) throw std::invalid_argument("when_any: no tasks");
  detail::JoinState state(detail::JoinState::Mode::kAny, tasks.size());
  for (Task<T>& task : tasks) state.add(task);
  co_await state.wait();
  const std::size_t winner = state.first();
  co_return WhenAnyVectorResult<T>{winner, detail::take_join_value(tasks[winner])};
}

}  // namespace coring
