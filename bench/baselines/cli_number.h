/* cli_number.h: a numeric command-line value, checked whole, for the
 * benchmark's C programs (bench/loadgen, the baselines): atoi/strtoul/atof
 * alone took "-1" for 4294967295 connections, "abc" for 0, "10x" for 10 and
 * a port of 99999 for 34463.
 *
 *   port = (int)cli_number("uring_echo", "--port", value, 0, 65535, 1);
 *
 * The value must be all of it a number in [lo, hi] (a whole one when
 * `whole`); otherwise "PROGRAM: NAME wants a whole number from LO to HI,
 * got 'VALUE'" goes to stderr and the program exits 1. */
#ifndef CORING_BENCH_CLI_NUMBER_H
#define CORING_BENCH_CLI_NUMBER_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static inline double cli_number(const char* program, const char* name, const char* value, double lo,
                                double hi, int whole) {
  char* end = NULL;
  errno = 0;
  const double x = strtod(value, &end);
  if (*value == '\0' || end == value || *end != '\0' || errno != 0 || !(x >= lo && x <= hi) ||
      (whole && x != (double)(long long)x)) {
    fprintf(stderr, "%s: %s wants %s from %.16g to %.16g, got '%s'\n", program, name,
            whole ? "a whole number" : "a number", lo, hi, value);
    exit(1);
  }
  return x;
}

#endif /* CORING_BENCH_CLI_NUMBER_H */
