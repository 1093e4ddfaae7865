// fuzz-liblume: yes
/* tests/fuzz/fuzz_msgsig.c — libFuzzer target for what `lume verify` reads
 * from a capture it cannot trust: the signed envelope (core/trust/msgsign.c
 * lume_msgsig_unwrap) and telemetry topics with their property bags
 * (core/hub/hub.c lume_hub_parse_telemetry, lume_hub_bag_get).
 *
 * Input: the bytes, used whole as an envelope and, cut at the first NUL,
 * as a topic. Invariants, abort() on violation:
 *
 *  1. unwrap returns 0 or -EINVAL; -EINVAL with a message starting
 *     "malformed: " and nothing held;
 *  2. on 0: alg and key id are strings, 1 <= seq <= 999999999999999, the
 *     signature fits; wrapping the fields again and unwrapping that gives
 *     the same alg, key id, seq, ts, signature and payload bytes;
 *  3. parse_telemetry returns 0 or -EINVAL; on 0 the device is non-empty
 *     and holds no '/', the route is non-empty (its length route_len), and
 *     the dialect is named;
 *  4. bag_get never writes past the buffer it is given. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hub.h"
#include "msgsign.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lume_msgsig m = {0};
    char sig[LUME_SIG_B64_MAX], *err = NULL;
    void *hold = NULL;
    int r = lume_msgsig_unwrap(data, size, &m, sig, &hold, &err);
    CHECK(r == 0 || r == -EINVAL);
    if (r < 0) {
        CHECK(err && !strncmp(err, "malformed: ", 11) && !hold);
        free(err);
    } else {
        CHECK(m.alg && m.key_id && m.seq >= 1 && m.seq <= 999999999999999ULL);
        CHECK(strlen(sig) < LUME_SIG_B64_MAX);
        size_t len = 0;
        char *again = lume_msgsig_wrap(&m, sig, &len);
        CHECK(again);
        lume_msgsig m2 = {0};
        char sig2[LUME_SIG_B64_MAX];
        void *hold2 = NULL;
        CHECK(lume_msgsig_unwrap(again, len, &m2, sig2, &hold2, &err) == 0);
        CHECK(!strcmp(m.alg, m2.alg) && !strcmp(m.key_id, m2.key_id) && m.seq == m2.seq &&
              m.ts_ms == m2.ts_ms && !strcmp(sig, sig2) && m.len == m2.len &&
              (m.len == 0 || !memcmp(m.payload, m2.payload, m.len)));
        free(hold2);
        free(again);
        free(hold);
    }

    char *topic = strndup((const char *)data, size);
    CHECK(topic);
    lume_hub_msg hm;
    r = lume_hub_parse_telemetry(topic, &hm);
    CHECK(r == 0 || r == -EINVAL);
    if (r == 0) {
        CHECK(hm.dialect && hm.device[0] && !strchr(hm.device, '/'));
        CHECK(hm.route_len > 0 && hm.route_len == strlen(hm.route));
    }
    char small[8];
    memset(small, 0x5a, sizeof small);
    (void)lume_hub_bag_get(topic, "lume-sig", small, sizeof small - 1);
    CHECK(small[sizeof small - 1] == 0x5a);
    free(topic);
    return 0;
}
