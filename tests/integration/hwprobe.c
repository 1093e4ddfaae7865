/* tests/integration/hwprobe.c — one driver call from the command line, for
 * the real-kernel test (tests/integration/test_hw_vm.sh runs it inside the
 * VM): open a sensor driver and take one reading, or open an output driver
 * and write one value, through the same tables lume's board loader uses.
 *   hwprobe read DRIVER key=value...          prints "value V" or "error: ..."
 *   hwprobe write DRIVER VALUE key=value...   prints "wrote V" or "error: ..."
 * The test drives outputs through lume itself (a script and its board);
 * hwprobe is for the drivers' errors: a value a register cannot hold, an
 * address or line someone else holds, a missing chip. Every value is passed
 * as a string (the params parser reads numbers, 0x48 included, from
 * strings). Exit 0 on success, 1 on a driver error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers.h"
#include "outputs.h"

int main(int argc, char **argv)
{
    if (argc < 3 || (strcmp(argv[1], "read") && strcmp(argv[1], "write")) ||
        (!strcmp(argv[1], "write") && argc < 4)) {
        fprintf(stderr, "usage: hwprobe read DRIVER k=v... | write DRIVER VALUE k=v...\n");
        return 2;
    }
    int wr = !strcmp(argv[1], "write"), first = wr ? 4 : 3;
    lume_param pv[16];
    size_t n = 0;
    for (int i = first; i < argc && n < 16; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq)
            return fprintf(stderr, "hwprobe: '%s' is not key=value\n", argv[i]), 2;
        *eq = '\0';
        pv[n++] = (lume_param){argv[i], eq + 1, 0};
    }
    lume_params p = {pv, n};
    lume_board_ctx *b = lume_board_ctx_new(1);
    void *st = NULL;
    char *err = NULL;
    int rc;
    if (wr) {
        const lume_output_driver *d = lume_output_driver_find(argv[2]);
        if (!d)
            return fprintf(stderr, "hwprobe: no output driver '%s'\n", argv[2]), 2;
        if ((rc = d->open(b, &p, &st, &err)) == 0) {
            rc = d->write(st, strtod(argv[3], NULL), &err);
            d->close(st);
        }
        if (rc == 0)
            printf("wrote %s\n", argv[3]);
    } else {
        const lume_driver *d = lume_driver_find(argv[2]);
        if (!d)
            return fprintf(stderr, "hwprobe: no driver '%s'\n", argv[2]), 2;
        double v = 0;
        if ((rc = d->open(b, &p, &st, &err)) == 0) {
            rc = d->read(st, 0, &v);
            d->close(st);
            if (rc < 0)
                err = NULL, printf("error: read: %s\n", strerror(-rc));
        }
        if (rc == 0)
            printf("value %.17g\n", v);
    }
    if (err)
        printf("error: %s\n", err);
    free(err);
    lume_board_ctx_free(b);
    return rc == 0 ? 0 : 1;
}
