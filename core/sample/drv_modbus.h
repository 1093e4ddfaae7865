/* core/sample/drv_modbus.h — Modbus TCP/RTU drivers (libmodbus): the sensor
 * driver `modbus` and the output drivers `modbus.coil`, `modbus.register`.
 * docs/sampler.md and docs/outputs.md describe their params. */
#ifndef LUME_DRV_MODBUS_H
#define LUME_DRV_MODBUS_H

#include <stdint.h>

#include "drivers.h"
#include "outputs.h"

enum { LUME_MB_U16, LUME_MB_S16, LUME_MB_U32, LUME_MB_S32, LUME_MB_F32 };

/* "u16", "s16", "u32", "s32", "float32" -> LUME_MB_*, or -EINVAL. */
int lume_modbus_type(const char *name);
/* Registers per value of that type: 1 or 2. */
int lume_modbus_width(int type);
/* Decode regs (as read, in address order) into a number. big_words: the
 * first register holds the high word (ABCD, Modbus's usual order); else
 * the low word comes first (CDAB). */
double lume_modbus_decode(const uint16_t *regs, int type, int big_words);
/* Encode v (already in raw units, rounded for integer types) into regs.
 * -ERANGE when v does not fit the type. */
int lume_modbus_encode(double v, int type, int big_words, uint16_t regs[2]);

extern const lume_driver lume_drv_modbus;
extern const lume_output_driver lume_out_modbus_coil;
extern const lume_output_driver lume_out_modbus_register;

#endif
