/* tests/unit/test_kv.c — the state store against a real SQLite file. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kv.h"
#include "testutil.h"

typedef struct fx {
    char     dir[256];
    char     path[300];
    lume_kv *kv;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    if (tu_tmpdir(f->dir, sizeof f->dir, "kv")) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/state.db", f->dir);
    char *err = NULL;
    f->kv = lume_kv_open(f->path, &err);
    if (!f->kv) {
        fprintf(stderr, "open: %s\n", err ? err : "?");
        free(err);
        tu_rm_tree(f->dir);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    lume_kv_close(f->kv);
    tu_rm_tree(f->dir);
    free(f);
    return 0;
}

static void reopen(fx *f)
{
    lume_kv_close(f->kv);
    char *err = NULL;
    f->kv = lume_kv_open(f->path, &err);
    assert_non_null(f->kv);
    assert_null(err);
}

static void expect_val(lume_kv *kv, const char *ns, const char *key, const void *want,
                       size_t wlen, int wtype)
{
    void *v = NULL;
    size_t len = 99;
    int type = -1;
    assert_int_equal(lume_kv_get(kv, ns, key, &v, &len, &type), 0);
    assert_non_null(v);
    assert_int_equal(len, wlen);
    assert_int_equal(type, wtype);
    if (wlen)
        assert_memory_equal(v, want, wlen);
    free(v);
}

static void test_set_get_overwrite(void **state)
{
    fx *f = *state;
    assert_int_equal(lume_kv_set(f->kv, "script:rules", "limit", "42", 2, 1), 0);
    expect_val(f->kv, "script:rules", "limit", "42", 2, 1);
    /* Overwrite with another type and length. */
    assert_int_equal(lume_kv_set(f->kv, "script:rules", "limit", "1000.5", 6, 3), 0);
    expect_val(f->kv, "script:rules", "limit", "1000.5", 6, 3);
    /* Same key in another namespace is another value. */
    assert_int_equal(lume_kv_set(f->kv, "twin", "limit", "x", 1, 2), 0);
    expect_val(f->kv, "script:rules", "limit", "1000.5", 6, 3);
    expect_val(f->kv, "twin", "limit", "x", 1, 2);
    /* The copy is NUL-terminated past its length. */
    void *v;
    size_t len;
    assert_int_equal(lume_kv_get(f->kv, "twin", "limit", &v, &len, NULL), 0);
    assert_string_equal(v, "x");
    free(v);
}

static void test_missing_and_del(void **state)
{
    fx *f = *state;
    void *v = (void *)0x1;
    size_t len = 7;
    assert_int_equal(lume_kv_get(f->kv, "ns", "nope", &v, &len, NULL), -ENOENT);
    assert_int_equal(lume_kv_set(f->kv, "ns", "k", "v", 1, 0), 0);
    assert_int_equal(lume_kv_del(f->kv, "ns", "k"), 0);
    assert_int_equal(lume_kv_get(f->kv, "ns", "k", &v, &len, NULL), -ENOENT);
    /* Deleting what is absent is not an error. */
    assert_int_equal(lume_kv_del(f->kv, "ns", "k"), 0);
    assert_int_equal(lume_kv_del(f->kv, "other", "never"), 0);
}

static void test_binary_values(void **state)
{
    fx *f = *state;
    unsigned char bin[256];
    for (int i = 0; i < 256; i++)
        bin[i] = (unsigned char)(255 - i);   /* contains a NUL at 255 and more */
    const char nuls[5] = {0, 'a', 0, 0, 'b'};
    assert_int_equal(lume_kv_set(f->kv, "b", "all", bin, sizeof bin, 7), 0);
    assert_int_equal(lume_kv_set(f->kv, "b", "nuls", nuls, sizeof nuls, 8), 0);
    assert_int_equal(lume_kv_set(f->kv, "b", "empty", NULL, 0, 9), 0);
    reopen(f);
    expect_val(f->kv, "b", "all", bin, sizeof bin, 7);
    expect_val(f->kv, "b", "nuls", nuls, sizeof nuls, 8);
    expect_val(f->kv, "b", "empty", NULL, 0, 9);
}

typedef struct seen {
    int  n;
    char keys[8][16];
    size_t lens[8];
    int  stop_after;
} seen;

static int collect(void *ud, const char *key, const void *val, size_t len, int type)
{
    seen *s = ud;
    (void)val;
    (void)type;
    snprintf(s->keys[s->n], sizeof s->keys[s->n], "%s", key);
    s->lens[s->n] = len;
    s->n++;
    return s->stop_after && s->n >= s->stop_after;
}

static void test_each_and_bytes(void **state)
{
    fx *f = *state;
    /* Inserted out of order; each visits in key order, one namespace only. */
    assert_int_equal(lume_kv_set(f->kv, "a", "zeta", "123", 3, 0), 0);
    assert_int_equal(lume_kv_set(f->kv, "a", "alpha", "1", 1, 0), 0);
    assert_int_equal(lume_kv_set(f->kv, "a", "mid", "12345", 5, 0), 0);
    assert_int_equal(lume_kv_set(f->kv, "b", "beta", "xx", 2, 0), 0);

    seen s = {0};
    assert_int_equal(lume_kv_each(f->kv, "a", collect, &s), 3);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.keys[0], "alpha");
    assert_string_equal(s.keys[1], "mid");
    assert_string_equal(s.keys[2], "zeta");
    assert_int_equal(s.lens[1], 5);

    seen early = {.stop_after = 2};
    assert_int_equal(lume_kv_each(f->kv, "a", collect, &early), 2);
    seen none = {0};
    assert_int_equal(lume_kv_each(f->kv, "empty", collect, &none), 0);

    /* Keys and values: alpha+1, mid+5, zeta+3. */
    assert_int_equal(lume_kv_ns_bytes(f->kv, "a"), 5 + 1 + 3 + 5 + 4 + 3);
    assert_int_equal(lume_kv_ns_bytes(f->kv, "b"), 4 + 2);
    assert_int_equal(lume_kv_ns_bytes(f->kv, "nothing"), 0);
    assert_int_equal(lume_kv_del(f->kv, "a", "mid"), 0);
    assert_int_equal(lume_kv_ns_bytes(f->kv, "a"), 5 + 1 + 4 + 3);
}

static void test_persistence(void **state)
{
    fx *f = *state;
    assert_int_equal(lume_kv_set(f->kv, "twin", "version", "17", 2, 1), 0);
    assert_int_equal(lume_kv_set(f->kv, "twin", "gone", "x", 1, 1), 0);
    assert_int_equal(lume_kv_del(f->kv, "twin", "gone"), 0);
    reopen(f);
    expect_val(f->kv, "twin", "version", "17", 2, 1);
    void *v;
    assert_int_equal(lume_kv_get(f->kv, "twin", "gone", &v, NULL, NULL), -ENOENT);

    /* A second handle on the same file sees committed writes at once. */
    char *err = NULL;
    lume_kv *other = lume_kv_open(f->path, &err);
    assert_non_null(other);
    assert_int_equal(lume_kv_set(f->kv, "twin", "version", "18", 2, 1), 0);
    expect_val(other, "twin", "version", "18", 2, 1);
    lume_kv_close(other);
}

static void test_bad_args(void **state)
{
    fx *f = *state;
    void *v;
    char *err = NULL;
    assert_int_equal(lume_kv_set(f->kv, NULL, "k", "v", 1, 0), -EINVAL);
    assert_int_equal(lume_kv_set(f->kv, "ns", "k", NULL, 3, 0), -EINVAL);
    assert_int_equal(lume_kv_get(f->kv, "ns", NULL, &v, NULL, NULL), -EINVAL);
    assert_int_equal(lume_kv_del(NULL, "ns", "k"), -EINVAL);
    assert_null(lume_kv_open("/nonexistent-dir-lume/x.db", &err));
    assert_non_null(err);
    assert_non_null(strstr(err, "/nonexistent-dir-lume/x.db"));
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_set_get_overwrite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_and_del, setup, teardown),
        cmocka_unit_test_setup_teardown(test_binary_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_each_and_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persistence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_args, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
