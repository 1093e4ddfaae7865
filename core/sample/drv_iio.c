/* core/sample/drv_iio.c — hwmon and IIO channels, found by name in sysfs.
 *
 * A board file names what it means — the chip "lm75" and its input "temp1"
 * (or its label "Package id 0"), the IIO device "ads1015" and its channel
 * "voltage0" — not hwmon3 or iio:device1, whose numbers change with probe
 * order. open() finds the file once; the reading itself is the `file`
 * driver's (a pread of a sysfs file kept open), so both share its checks.
 *
 * hwmon: every /sys/class/hwmon/hwmonN (in N order; its attributes are in
 *   the directory or, on old drivers, in its device/) whose `name` is the
 *   chip; the first one that has the input wins. The input is a stem
 *   (temp1 -> temp1_input) or the content of a *_label file. Units are the
 *   kernel's (millidegree C, millivolt, milliamp, microwatt, microjoule,
 *   milli-%RH, RPM); the default scale turns them into C, V, A, W, J, %RH.
 * iio: every /sys/bus/iio/devices/iio:deviceN whose `name` is the device;
 *   value = (in_<ch>_raw + offset) * scale, scale and offset from
 *   in_<ch>_scale / in_<ch>_offset, else the shared in_<type>_scale /
 *   in_<type>_offset (type = the channel without its index), else 1 and 0,
 *   read once at open (they are constant for a channel's configuration). */
#include "drv_linux.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define PATH_N 512

/* The first line of a small file, trailing whitespace cut: 0, or -errno. */
static int read_line(const char *path, char *buf, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t got = read(fd, buf, n - 1);
    int e = errno;
    close(fd);
    if (got < 0)
        return -e;
    buf[got] = '\0';
    size_t len = strcspn(buf, "\n");
    while (len && isspace((unsigned char)buf[len - 1]))
        len--;
    buf[len] = '\0';
    return 0;
}

static bool exists(const char *path)
{
    return access(path, R_OK) == 0;
}

/* "hwmon3" < "hwmon12": by the number after prefix. */
static int num_after(const char *name, size_t plen)
{
    return atoi(name + plen);
}

typedef struct dir_list {
    char **v;
    size_t n;
} dir_list;

/* The entries of dir starting with prefix, sorted by their number. */
static int list_numbered(const char *dir, const char *prefix, dir_list *out)
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    size_t plen = strlen(prefix), cap = 0;
    struct dirent *e;
    out->v = NULL;
    out->n = 0;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, prefix, plen) || !isdigit((unsigned char)e->d_name[plen]))
            continue;
        if (out->n == cap) {
            char **nv = realloc(out->v, (cap = cap ? 2 * cap : 8) * sizeof *nv);
            if (!nv)
                break;
            out->v = nv;
        }
        if (!(out->v[out->n] = strdup(e->d_name)))
            break;
        out->n++;
    }
    closedir(d);
    for (size_t i = 1; i < out->n; i++)   /* insertion sort: a handful */
        for (size_t j = i; j > 0 && num_after(out->v[j - 1], plen) > num_after(out->v[j], plen);
             j--) {
            char *t = out->v[j];
            out->v[j] = out->v[j - 1];
            out->v[j - 1] = t;
        }
    return 0;
}

static void list_free(dir_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
}

/* Open the channel as the file driver: path, value * scale + offset. */
/* Does the sysfs name file at `path` (".../name") hold `want`? 1: yes, and
 * path is cut to its folder; 0: no, and the name is added to the list
 * `seen` (for the error that names the chips or devices there are);
 * -1: no name file. */
static int name_is(char *path, const char *want, char *seen, size_t cap, size_t *seen_n)
{
    char name[128];
    if (read_line(path, name, sizeof name) < 0)
        return -1;
    path[strlen(path) - 5] = '\0';
    if (!strcmp(name, want))
        return 1;
    if (*seen_n < cap - 1)
        *seen_n += (size_t)snprintf(seen + *seen_n, cap - *seen_n, "%s%s", *seen_n ? ", " : "",
                                    name);
    return 0;
}

static int open_as_file(lume_board_ctx *b, const char *path, double scale, double offset,
                        void **state, char **err)
{
    lume_param pv[3] = {{"path", path, 0}, {"scale", NULL, scale}, {"offset", NULL, offset}};
    lume_params p = {pv, 3};
    return lume_driver_find("file")->open(b, &p, state, err);
}

/* ---- hwmon ------------------------------------------------------------- */

static const lume_pspec hwmon_spec[] = {
    {"chip", LUME_P_STR, 0, 0, 0},
    {"input", LUME_P_STR, 0, 0, 0},
    {"scale", LUME_P_NUM, 1, -1e12, 1e12},
    {"offset", LUME_P_NUM, 0, -1e12, 1e12},
    {"sysfs", LUME_P_STR, 0, 0, 0},
};

static double hwmon_unit(const char *stem)
{
    static const struct { const char *type; double scale; } units[] = {
        {"temp", 1e-3}, {"in", 1e-3}, {"curr", 1e-3}, {"humidity", 1e-3},
        {"power", 1e-6}, {"energy", 1e-6},
    };
    size_t n = strcspn(stem, "0123456789");
    for (size_t i = 0; i < sizeof units / sizeof *units; i++)
        if (strlen(units[i].type) == n && !strncmp(stem, units[i].type, n))
            return units[i].scale;
    return 1;
}

/* In dir, the stem whose _input exists: input itself, or the one whose
 * _label reads input. Writes the stem into stem[64]; false when none. */
static bool hwmon_input(const char *dir, const char *input, char *stem)
{
    char path[PATH_N + 256], label[128];
    snprintf(path, sizeof path, "%s/%s_input", dir, input);
    if (strlen(input) < 64 && exists(path)) {
        snprintf(stem, 64, "%s", input);
        return true;
    }
    DIR *d = opendir(dir);
    if (!d)
        return false;
    struct dirent *e;
    bool found = false;
    while (!found && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 7 || n - 6 >= 64 || strcmp(e->d_name + n - 6, "_label"))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (read_line(path, label, sizeof label) < 0 || strcmp(label, input))
            continue;
        snprintf(stem, 64, "%.*s", (int)(n - 6), e->d_name);
        snprintf(path, sizeof path, "%s/%s_input", dir, stem);
        found = exists(path);
    }
    closedir(d);
    return found;
}

int lume_hwmon_open(lume_board_ctx *b, const lume_params *p, void **state, char **err)
{
    lume_pvals v;
    *err = NULL;
    int r = lume_params_parse("hwmon", hwmon_spec, 5, p, &v, err);
    if (r < 0)
        return r;
    if (!v.str[0] || !v.str[1]) {
        *err = lume_strdupf("hwmon: params 'chip' (its name file, e.g. \"lm75\", "
                            "\"coretemp\") and 'input' (e.g. \"temp1\" or a label) are required");
        return -EINVAL;
    }
    char root[PATH_N], dir[PATH_N + 128], stem[64], seen[256] = "";
    size_t seen_n = 0;
    bool chip_found = false;
    snprintf(root, sizeof root, "%s/class/hwmon", v.str[4] ? v.str[4] : "/sys");
    dir_list l;
    if ((r = list_numbered(root, "hwmon", &l)) < 0) {
        *err = lume_strdupf("hwmon: %s: %s", root, strerror(-r));
        return -ENOENT;
    }
    r = -ENOENT;
    for (size_t i = 0; i < l.n && r == -ENOENT; i++) {
        for (int sub = 0; sub < 2; sub++) {
            snprintf(dir, sizeof dir, "%s/%s%s/name", root, l.v[i], sub ? "/device" : "");
            int m = name_is(dir, v.str[0], seen, sizeof seen, &seen_n);
            if (m < 0)
                continue;
            if (m == 0)
                break;
            chip_found = true;
            if (!hwmon_input(dir, v.str[1], stem))
                continue;
            char path[PATH_N + 256];
            snprintf(path, sizeof path, "%s/%s_input", dir, stem);
            double scale = (v.given & 4) ? v.num[2] : hwmon_unit(stem);
            r = open_as_file(b, path, scale, v.num[3], state, err);
            break;
        }
    }
    list_free(&l);
    if (r == -ENOENT && !*err)
        *err = chip_found
                   ? lume_strdupf("hwmon: chip '%s' has no input '%s' (neither %s_input nor a "
                                  "*_label reading \"%s\")", v.str[0], v.str[1], v.str[1],
                                  v.str[1])
                   : lume_strdupf("hwmon: no chip named '%s' under %s (chips: %s)", v.str[0],
                                  root, seen_n ? seen : "none");
    return r;
}

/* ---- iio --------------------------------------------------------------- */

static const lume_pspec iio_spec[] = {
    {"device", LUME_P_STR, 0, 0, 0},
    {"channel", LUME_P_STR, 0, 0, 0},
    {"sysfs", LUME_P_STR, 0, 0, 0},
};

/* in_<ch>_<what>, else in_<type>_<what>, as a number; dflt when neither
 * exists, -EBADMSG when one exists and is not a number. */
static int iio_attr(const char *dir, const char *ch, const char *what, double dflt,
                    double *out, char **err)
{
    char path[PATH_N + 128], text[64];
    size_t type_n = strcspn(ch, "0123456789");
    for (int shared = 0; shared < 2; shared++) {
        snprintf(path, sizeof path, "%s/in_%.*s_%s", dir,
                 shared ? (int)type_n : (int)strlen(ch), ch, what);
        if (read_line(path, text, sizeof text) < 0)
            continue;
        char *end;
        *out = strtod(text, &end);
        if (end == text || *end) {
            *err = lume_strdupf("iio: %s holds \"%s\", not a number", path, text);
            return -EBADMSG;
        }
        return 0;
    }
    *out = dflt;
    return 0;
}

int lume_iio_open(lume_board_ctx *b, const lume_params *p, void **state, char **err)
{
    lume_pvals v;
    *err = NULL;
    int r = lume_params_parse("iio", iio_spec, 3, p, &v, err);
    if (r < 0)
        return r;
    if (!v.str[0] || !v.str[1] || strchr(v.str[1], '/')) {
        *err = lume_strdupf("iio: params 'device' (its name file, e.g. \"ads1015\") and "
                            "'channel' (e.g. \"voltage0\", \"temp\") are required");
        return -EINVAL;
    }
    char root[PATH_N], dir[PATH_N + 64], seen[256] = "";
    size_t seen_n = 0;
    bool dev_found = false;
    snprintf(root, sizeof root, "%s/bus/iio/devices", v.str[2] ? v.str[2] : "/sys");
    dir_list l;
    if ((r = list_numbered(root, "iio:device", &l)) < 0) {
        *err = lume_strdupf("iio: %s: %s", root, strerror(-r));
        return -ENOENT;
    }
    r = -ENOENT;
    for (size_t i = 0; i < l.n && r == -ENOENT && !*err; i++) {
        snprintf(dir, sizeof dir, "%s/%s/name", root, l.v[i]);
        if (name_is(dir, v.str[0], seen, sizeof seen, &seen_n) <= 0)
            continue;
        dev_found = true;
        char raw[PATH_N + 128];
        snprintf(raw, sizeof raw, "%s/in_%s_raw", dir, v.str[1]);
        if (!exists(raw))
            continue;
        double scale, offset;
        if ((r = iio_attr(dir, v.str[1], "scale", 1, &scale, err)) < 0 ||
            (r = iio_attr(dir, v.str[1], "offset", 0, &offset, err)) < 0)
            break;
        r = open_as_file(b, raw, scale, offset * scale, state, err);
    }
    list_free(&l);
    if (r == -ENOENT && !*err)
        *err = dev_found ? lume_strdupf("iio: device '%s' has no channel '%s' (no in_%s_raw)",
                                        v.str[0], v.str[1], v.str[1])
                         : lume_strdupf("iio: no device named '%s' under %s (devices: %s)",
                                        v.str[0], root, seen_n ? seen : "none");
    return r;
}
