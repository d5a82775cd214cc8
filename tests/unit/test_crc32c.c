/*
 * Unit tests for lib/crc32c: RFC 3720's test vectors (B.4: 32 zero bytes, 32 0xFF bytes, 32
 * ascending and 32 descending bytes) and "123456789", with both implementations; the hardware one
 * equals the table on random data of every length and alignment, and extending piece by piece
 * equals one call.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"

typedef uint32_t (*CrcFn)(uint32_t, const void *, size_t);

static void check_vectors(CrcFn f)
{
    uint8_t buf[32];

    memset(buf, 0, sizeof(buf));
    assert_int_equal(f(0, buf, sizeof(buf)), 0x8A9136AAu);
    memset(buf, 0xff, sizeof(buf));
    assert_int_equal(f(0, buf, sizeof(buf)), 0x62A8AB43u);
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)i;
    assert_int_equal(f(0, buf, sizeof(buf)), 0x46DD794Eu);
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(31 - i);
    assert_int_equal(f(0, buf, sizeof(buf)), 0x113FDB5Cu);
    assert_int_equal(f(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(f(0, "", 0), 0u);
}

static void test_vectors_table(void **state)
{
    (void)state;
    check_vectors(crc32c_extend_sw);
}

static void test_vectors_default(void **state)
{
    (void)state;
    check_vectors(crc32c_extend);
    assert_string_equal(crc32c_implementation(), crc32c_hw_available() ? "sse4.2" : "table");
}

static void test_vectors_hardware(void **state)
{
    (void)state;
    if (!crc32c_hw_available()) {
        print_message("no SSE4.2 on this CPU: hardware CRC-32C not tested\n");
        skip();
    }
    check_vectors(crc32c_extend_hw);
}

static void test_hw_equals_table_random(void **state)
{
    (void)state;
    enum { N = 1 << 16 };
    uint8_t *buf = malloc(N + 8);
    assert_non_null(buf);
    srand(20261203);
    for (size_t i = 0; i < N + 8; i++)
        buf[i] = (uint8_t)rand();
    bool hw = crc32c_hw_available();
    for (size_t off = 0; off < 8; off++)
        for (size_t len = 0; len < 300; len++) {
            uint32_t sw = crc32c_extend_sw(0, buf + off, len);
            if (hw)
                assert_int_equal(crc32c_extend_hw(0, buf + off, len), sw);
            assert_int_equal(crc32c_extend(0, buf + off, len), sw);
        }
    uint32_t whole = crc32c_extend_sw(0, buf, N);
    if (hw)
        assert_int_equal(crc32c_extend_hw(0, buf, N), whole);
    /* piece by piece, uneven pieces, both implementations */
    uint32_t a = 0, b = 0;
    for (size_t at = 0, step = 1; at < N; at += step, step = step * 3 % 1021 + 1) {
        size_t n = at + step > N ? N - at : step;
        a = crc32c_extend_sw(a, buf + at, n);
        b = crc32c_extend(b, buf + at, n);
    }
    assert_int_equal(a, whole);
    assert_int_equal(b, whole);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors_table),
        cmocka_unit_test(test_vectors_default),
        cmocka_unit_test(test_vectors_hardware),
        cmocka_unit_test(test_hw_equals_table_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
