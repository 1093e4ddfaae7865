/* tests/unit/test_drv_linux.c — the Linux hardware drivers without
 * hardware: parameter checking of gpio, i2c and their outputs (a machine
 * without /dev/gpiochip* or /dev/i2c-* still gets the errors an operator
 * sees), and hwmon/iio finding their files in a fake sysfs tree made in a
 * temp dir (the `sysfs` param). The drivers against the real kernel:
 * tests/integration/test_hw_vm.sh. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "drivers.h"
#include "outputs.h"
#include "testutil.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* open drv with params; its rc, *err left for the caller (or NULL) */
static int try_open(const char *drv, bool output, const lume_param *pv, size_t n, void **st,
                    char **err)
{
    lume_params p = {pv, n};
    *err = NULL;
    *st = NULL;
    if (output) {
        const lume_output_driver *d = lume_output_driver_find(drv);
        assert_non_null(d);
        return d->open(NULL, &p, st, err);
    }
    const lume_driver *d = lume_driver_find(drv);
    assert_non_null(d);
    return d->open(NULL, &p, st, err);
}

static void expect_error(const char *drv, bool output, const lume_param *pv, size_t n, int rc,
                         const char *needle)
{
    void *st;
    char *err;
    int got = try_open(drv, output, pv, n, &st, &err);
    if (got != rc || !err || !strstr(err, needle))
        fail_msg("%s: want %d with \"%s\", got %d: %s", drv, rc, needle, got,
                 err ? err : "(no message)");
    assert_null(st);
    free(err);
}

static double open_read(const char *drv, const lume_param *pv, size_t n)
{
    void *st;
    char *err;
    int rc = try_open(drv, false, pv, n, &st, &err);
    if (rc != 0)
        fail_msg("%s: open %d: %s", drv, rc, err ? err : "(no message)");
    const lume_driver *d = lume_driver_find(drv);
    double v = NAN;
    assert_int_equal(d->read(st, 0, &v), 0);
    d->close(st);
    return v;
}

static void test_tables(void **state)
{
    (void)state;
    const char *in[] = {"gpio", "i2c", "hwmon", "iio"};
    for (size_t i = 0; i < N(in); i++) {
        const lume_driver *d = lume_driver_find(in[i]);
        assert_non_null(d);
        assert_non_null(d->doc);
    }
    assert_non_null(lume_output_driver_find("gpio"));
    assert_non_null(lume_output_driver_find("i2c.register"));
}

static void test_gpio_params(void **state)
{
    (void)state;
    lume_param noline[] = {{"chip", "gpiochip0", 0}};
    expect_error("gpio", false, noline, 1, -EINVAL, "'line' is required");
    lume_param nochip[] = {{"line", NULL, 3}};
    expect_error("gpio", false, nochip, 1, -EINVAL, "'chip' is required");
    lume_param bias[] = {{"chip", "gpiochip0", 0}, {"line", NULL, 3}, {"bias", "up", 0}};
    expect_error("gpio", false, bias, 3, -EINVAL, "bias 'up' is not one of");
    lume_param mode[] = {{"chip", "gpiochip0", 0}, {"line", NULL, 3}, {"mode", "edge", 0}};
    expect_error("gpio", false, mode, 3, -EINVAL, "mode 'edge'");
    lume_param deb[] = {{"chip", "gpiochip0", 0}, {"line", NULL, 3}, {"debounce_ms", NULL, 5}};
    expect_error("gpio", false, deb, 3, -EINVAL, "need mode = \"edges\"");
    lume_param big[] = {{"chip", "gpiochip0", 0}, {"line", NULL, 5000}};
    expect_error("gpio", false, big, 2, -EINVAL, "out of range");
    lume_param absent[] = {{"chip", "/nonexistent/gpiochip9", 0}, {"line", NULL, 1}};
    expect_error("gpio", false, absent, 2, -ENOENT, "/nonexistent/gpiochip9");
    lume_param drive[] = {{"chip", "gpiochip0", 0}, {"line", NULL, 1}, {"drive", "weak", 0}};
    expect_error("gpio", true, drive, 3, -EINVAL, "drive 'weak'");
    lume_param init[] = {{"chip", "gpiochip0", 0}, {"line", NULL, 1}, {"initial", NULL, 2}};
    expect_error("gpio", true, init, 3, -EINVAL, "'initial' = 2 is out of range [0, 1]");
}

static void test_i2c_params(void **state)
{
    (void)state;
    lume_param noaddr[] = {{"bus", NULL, 1}};
    expect_error("i2c", false, noaddr, 1, -EINVAL, "'address'");
    lume_param addr[] = {{"bus", NULL, 1}, {"address", "0x80", 0}};
    expect_error("i2c", false, addr, 2, -EINVAL, "'address' = 128 is out of range");
    lume_param size[] = {{"bus", NULL, 1}, {"address", "0x48", 0}, {"size", "dword", 0}};
    expect_error("i2c", false, size, 3, -EINVAL, "size 'dword'");
    lume_param len[] = {{"bus", NULL, 1}, {"address", "0x48", 0}, {"length", NULL, 3}};
    expect_error("i2c", false, len, 3, -EINVAL, "'length' needs size = \"block\"");
    lume_param order[] = {{"bus", NULL, 1}, {"address", "0x48", 0}, {"order", "big", 0}};
    expect_error("i2c", false, order, 3, -EINVAL, "order 'big'");
    lume_param scale[] = {{"bus", NULL, 1}, {"address", "0x48", 0}, {"scale", NULL, 0}};
    expect_error("i2c", false, scale, 3, -EINVAL, "'scale' must not be 0");
    lume_param nobus[] = {{"bus", NULL, 1000}, {"address", "0x48", 0}};
    expect_error("i2c", false, nobus, 2, -ENOENT, "/dev/i2c-1000");
    expect_error("i2c.register", true, nobus, 2, -ENOENT, "i2c-dev loaded?");
    lume_param typo[] = {{"bus", NULL, 1}, {"adress", "0x48", 0}};
    expect_error("i2c.register", true, typo, 2, -EINVAL, "unknown param 'adress'");
}

/* ---- a fake sysfs ------------------------------------------------------ */

static char root[256];

static void put(const char *rel, const char *text)
{
    char path[512], dir[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    snprintf(dir, sizeof dir, "%s", path);
    for (char *s = dir + strlen(root) + 1; (s = strchr(s, '/')); s++) {
        *s = '\0';
        mkdir(dir, 0755);
        *s = '/';
    }
    assert_int_equal(tu_write_text(path, text), 0);
}

static int fx_setup(void **state)
{
    (void)state;
    return tu_tmpdir(root, sizeof root, "sysfs");
}

static int fx_teardown(void **state)
{
    (void)state;
    tu_rm_tree(root);
    return 0;
}

static void test_hwmon(void **state)
{
    (void)state;
    put("class/hwmon/hwmon0/name", "acpitz\n");
    put("class/hwmon/hwmon0/temp1_input", "30000\n");
    put("class/hwmon/hwmon2/name", "lm75\n");
    put("class/hwmon/hwmon2/temp1_input", "25500\n");
    put("class/hwmon/hwmon10/name", "coretemp\n");
    put("class/hwmon/hwmon10/temp1_label", "Core 0\n");
    put("class/hwmon/hwmon10/temp1_input", "41000\n");
    put("class/hwmon/hwmon10/temp2_label", "Package id 0\n");
    put("class/hwmon/hwmon10/temp2_input", "48000\n");
    put("class/hwmon/hwmon10/in0_input", "1200\n");
    put("class/hwmon/hwmon10/power1_input", "5000000\n");
    put("class/hwmon/hwmon10/fan1_input", "2400\n");
    put("class/hwmon/hwmon3/device/name", "oldchip\n");   /* attributes under device/ */
    put("class/hwmon/hwmon3/device/temp1_input", "-5000\n");

    lume_param lm75[] = {{"chip", "lm75", 0}, {"input", "temp1", 0}, {"sysfs", root, 0}};
    assert_true(fabs(open_read("hwmon", lm75, 3) - 25.5) < 1e-9);
    lume_param label[] = {{"chip", "coretemp", 0}, {"input", "Package id 0", 0},
                          {"sysfs", root, 0}};
    assert_true(fabs(open_read("hwmon", label, 3) - 48) < 1e-9);
    lume_param volt[] = {{"chip", "coretemp", 0}, {"input", "in0", 0}, {"sysfs", root, 0}};
    assert_true(fabs(open_read("hwmon", volt, 3) - 1.2) < 1e-9);
    lume_param watt[] = {{"chip", "coretemp", 0}, {"input", "power1", 0}, {"sysfs", root, 0}};
    assert_true(fabs(open_read("hwmon", watt, 3) - 5) < 1e-9);
    lume_param fan[] = {{"chip", "coretemp", 0}, {"input", "fan1", 0}, {"sysfs", root, 0}};
    assert_true(fabs(open_read("hwmon", fan, 3) - 2400) < 1e-9);
    lume_param raw[] = {{"chip", "lm75", 0}, {"input", "temp1", 0}, {"scale", NULL, 1},
                        {"offset", NULL, 1}, {"sysfs", root, 0}};
    assert_true(fabs(open_read("hwmon", raw, 5) - 25501) < 1e-9);
    lume_param old[] = {{"chip", "oldchip", 0}, {"input", "temp1", 0}, {"sysfs", root, 0}};
    assert_true(fabs(open_read("hwmon", old, 3) - -5) < 1e-9);

    /* the value follows the file */
    void *st;
    char *err;
    assert_int_equal(try_open("hwmon", false, lm75, 3, &st, &err), 0);
    put("class/hwmon/hwmon2/temp1_input", "26000\n");
    double v;
    assert_int_equal(lume_driver_find("hwmon")->read(st, 0, &v), 0);
    assert_true(fabs(v - 26) < 1e-9);
    lume_driver_find("hwmon")->close(st);

    lume_param nochip[] = {{"chip", "tmp102", 0}, {"input", "temp1", 0}, {"sysfs", root, 0}};
    expect_error("hwmon", false, nochip, 3, -ENOENT, "chips: acpitz, lm75, oldchip, coretemp");
    lume_param noin[] = {{"chip", "lm75", 0}, {"input", "temp7", 0}, {"sysfs", root, 0}};
    expect_error("hwmon", false, noin, 3, -ENOENT, "chip 'lm75' has no input 'temp7'");
    lume_param need[] = {{"chip", "lm75", 0}, {"sysfs", root, 0}};
    expect_error("hwmon", false, need, 2, -EINVAL, "are required");
    lume_param nosys[] = {{"chip", "lm75", 0}, {"input", "temp1", 0}, {"sysfs", "/nonexistent", 0}};
    expect_error("hwmon", false, nosys, 3, -ENOENT, "/nonexistent/class/hwmon");
}

static void test_iio(void **state)
{
    (void)state;
    put("bus/iio/devices/iio:device0/name", "bmp280\n");
    put("bus/iio/devices/iio:device1/name", "ads1015\n");
    put("bus/iio/devices/iio:device1/in_voltage0_raw", "1000\n");
    put("bus/iio/devices/iio:device1/in_voltage_scale", "2.0\n");          /* shared */
    put("bus/iio/devices/iio:device1/in_voltage1_raw", "5\n");
    put("bus/iio/devices/iio:device1/in_voltage1_scale", "0.5\n");         /* its own */
    put("bus/iio/devices/iio:device1/in_voltage1_offset", "10\n");
    put("bus/iio/devices/iio:device1/in_temp_raw", "100\n");
    put("bus/iio/devices/iio:device1/in_temp_offset", "-50\n");
    put("bus/iio/devices/iio:device1/in_temp_scale", "0.1\n");
    put("bus/iio/devices/iio:device1/in_voltage2_raw", "7\n");
    put("bus/iio/devices/iio:device1/in_voltage2_scale", "abc\n");

    lume_param v0[] = {{"device", "ads1015", 0}, {"channel", "voltage0", 0}, {"sysfs", root, 0}};
    assert_true(fabs(open_read("iio", v0, 3) - 2000) < 1e-9);
    lume_param v1[] = {{"device", "ads1015", 0}, {"channel", "voltage1", 0}, {"sysfs", root, 0}};
    assert_true(fabs(open_read("iio", v1, 3) - 7.5) < 1e-9);      /* (5 + 10) * 0.5 */
    lume_param t[] = {{"device", "ads1015", 0}, {"channel", "temp", 0}, {"sysfs", root, 0}};
    assert_true(fabs(open_read("iio", t, 3) - 5) < 1e-9);         /* (100 - 50) * 0.1 */

    lume_param bad[] = {{"device", "ads1015", 0}, {"channel", "voltage2", 0}, {"sysfs", root, 0}};
    expect_error("iio", false, bad, 3, -EBADMSG, "holds \"abc\", not a number");
    lume_param noch[] = {{"device", "ads1015", 0}, {"channel", "voltage9", 0}, {"sysfs", root, 0}};
    expect_error("iio", false, noch, 3, -ENOENT, "no channel 'voltage9'");
    lume_param nodev[] = {{"device", "mcp3008", 0}, {"channel", "voltage0", 0}, {"sysfs", root, 0}};
    expect_error("iio", false, nodev, 3, -ENOENT, "devices: bmp280, ads1015");
    lume_param slash[] = {{"device", "ads1015", 0}, {"channel", "../x", 0}, {"sysfs", root, 0}};
    expect_error("iio", false, slash, 3, -EINVAL, "are required");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables),
        cmocka_unit_test(test_gpio_params),
        cmocka_unit_test(test_i2c_params),
        cmocka_unit_test_setup_teardown(test_hwmon, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_iio, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
