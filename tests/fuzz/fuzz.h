/* tests/fuzz/fuzz.h — what every fuzz target shares: CHECK, an invariant
 * that aborts (so libFuzzer keeps the input) naming the expression and
 * where it failed. */
#ifndef LUME_FUZZ_H
#define LUME_FUZZ_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(x)                                                           \
    do {                                                                   \
        if (!(x)) {                                                        \
            fprintf(stderr, "invariant failed: %s (%s:%d)\n", #x, __FILE__, \
                    __LINE__);                                             \
            abort();                                                       \
        }                                                                  \
    } while (0)

#endif
