// Built against the installed package only: proves that the headers and the
// libraries a user links with find_package(coring) are complete.
#include <cstdio>

#include "coring/net/frame_codec.h"

int main() {
  std::puts("coring consumer: ok");
  return 0;
}
