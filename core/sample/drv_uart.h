/* core/sample/drv_uart.h — the `uart` sensor driver: a number from a serial
 * line (termios, non-blocking), by line or by length framing. */
#ifndef LUME_DRV_UART_H
#define LUME_DRV_UART_H

#include <stddef.h>

#include "drivers.h"

/* Field `field` (1-based) of line (len bytes, no newline) split on sep, as a
 * number. 0 and *out, -ENODATA (fewer fields), -EBADMSG (not a number). */
int lume_uart_field(const char *line, size_t len, char sep, int field, double *out);

extern const lume_driver lume_drv_uart;

#endif
