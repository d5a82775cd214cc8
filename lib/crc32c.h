/*
 * crc32c: CRC-32C (Castagnoli, polynomial 0x1EDC6F41, reflected 0x82F63B78; initial value and final
 * xor 0xFFFFFFFF), the checksum of iSCSI (RFC 3720), ext4, and PostgreSQL's WAL, pg_control and
 * backup_manifest (its default file checksum).
 *
 * Owns the two implementations and the choice between them: the SSE4.2 crc32 instruction, chosen
 * once at run time when the CPU has it (__builtin_cpu_supports), else a portable slicing-by-8
 * table. Pure functions, thread-safe, no allocation.
 */
#ifndef DRSUP_CRC32C_H
#define DRSUP_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The CRC-32C of what crc covered followed by data[0..len): start with 0, and
 * crc32c_extend(crc32c_extend(0, a), b) is the CRC-32C of a then b. "123456789" gives 0xE3069283. */
uint32_t crc32c_extend(uint32_t crc, const void *data, size_t len);
/* The same with one implementation forced (tests, benchmarks): the table always works; the
 * hardware one only where crc32c_hw_available(). */
uint32_t crc32c_extend_sw(uint32_t crc, const void *data, size_t len);
uint32_t crc32c_extend_hw(uint32_t crc, const void *data, size_t len);
bool crc32c_hw_available(void);
/* "sse4.2" or "table": what crc32c_extend uses. */
const char *crc32c_implementation(void);

#endif
