/* core/base/datadir.c — where an installed lume keeps its boards, stdlib
 * and default scripts. See config.h (lume_datadir, lume_data_default).
 *
 * The one object built with -DLUME_DATADIR (the Makefile's
 * $(PREFIX)/share/lume), so a `make install PREFIX=...` rebuilds this file
 * alone. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"

#ifndef LUME_DATADIR
#define LUME_DATADIR "/usr/local/share/lume"
#endif

const char *lume_datadir_builtin(void) { return LUME_DATADIR; }

const char *lume_datadir(void)
{
    const char *env = getenv("LUME_DATADIR");
    return env && *env ? env : LUME_DATADIR;
}

char *lume_data_default(const char *sub)
{
    const char *env = getenv("LUME_DATADIR");
    struct stat st;
    if (env && *env)
        return lume_strdupf("%s/%s", env, sub);
    if (stat(sub, &st) == 0 && S_ISDIR(st.st_mode))
        return strdup(sub);
    return lume_strdupf("%s/%s", LUME_DATADIR, sub);
}
