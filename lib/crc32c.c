/*
 * crc32c: CRC-32C in hardware or from a table (see crc32c.h).
 */
#include "crc32c.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CRC32C_X86 1
#include <nmmintrin.h>
#else
#define CRC32C_X86 0
#endif

#define CRC32C_POLY 0x82F63B78u /* reflected */

/* table[k][b]: the CRC of byte b followed by k zero bytes (slicing-by-8). */
static uint32_t crc32c_table[8][256];
static pthread_once_t crc32c_table_once = PTHREAD_ONCE_INIT;

static void crc32c_table_build(void)
{
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int i = 0; i < 8; i++)
            c = c & 1 ? c >> 1 ^ CRC32C_POLY : c >> 1;
        crc32c_table[0][b] = c;
    }
    for (uint32_t b = 0; b < 256; b++)
        for (size_t k = 1; k < 8; k++)
            crc32c_table[k][b] = crc32c_table[k - 1][b] >> 8 ^ crc32c_table[0][crc32c_table[k - 1][b] & 0xff];
}

static uint64_t crc32c_load64le(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

uint32_t crc32c_extend_sw(uint32_t crc, const void *data, size_t len)
{
    const uint8_t *p = data;
    uint32_t c = ~crc;

    (void)pthread_once(&crc32c_table_once, crc32c_table_build);
    for (; len >= 8; p += 8, len -= 8) {
        uint64_t v = crc32c_load64le(p) ^ c;
        c = crc32c_table[7][v & 0xff] ^ crc32c_table[6][v >> 8 & 0xff] ^ crc32c_table[5][v >> 16 & 0xff] ^
            crc32c_table[4][v >> 24 & 0xff] ^ crc32c_table[3][v >> 32 & 0xff] ^ crc32c_table[2][v >> 40 & 0xff] ^
            crc32c_table[1][v >> 48 & 0xff] ^ crc32c_table[0][v >> 56];
    }
    while (len--)
        c = c >> 8 ^ crc32c_table[0][(c ^ *p++) & 0xff];
    return ~c;
}

#if CRC32C_X86
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const uint8_t *p, size_t len)
{
    uint64_t c = ~crc;
    for (; len >= 8; p += 8, len -= 8)
        c = _mm_crc32_u64(c, crc32c_load64le(p));
    uint32_t c32 = (uint32_t)c;
    while (len--)
        c32 = _mm_crc32_u8(c32, *p++);
    return ~c32;
}
#endif

bool crc32c_hw_available(void)
{
#if CRC32C_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2");
#else
    return false;
#endif
}

uint32_t crc32c_extend_hw(uint32_t crc, const void *data, size_t len)
{
#if CRC32C_X86
    return crc32c_sse42(crc, data, len);
#else
    return crc32c_extend_sw(crc, data, len);
#endif
}

/* 0: not chosen yet, 1: table, 2: hardware. Racing first callers all store the same answer. */
static int crc32c_choice;

static int crc32c_choose(void)
{
    int c = __atomic_load_n(&crc32c_choice, __ATOMIC_RELAXED);
    if (!c) {
        c = crc32c_hw_available() ? 2 : 1;
        __atomic_store_n(&crc32c_choice, c, __ATOMIC_RELAXED);
    }
    return c;
}

uint32_t crc32c_extend(uint32_t crc, const void *data, size_t len)
{
    return crc32c_choose() == 2 ? crc32c_extend_hw(crc, data, len) : crc32c_extend_sw(crc, data, len);
}

const char *crc32c_implementation(void)
{
    return crc32c_choose() == 2 ? "sse4.2" : "table";
}
