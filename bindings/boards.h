/* bindings/boards.h — boards.c: load boards/NAME.lua into the sampler. */
#ifndef LUME_BOARDS_H
#define LUME_BOARDS_H

#include "lume.h"

int lume_board_load(lume_runtime *rt, char **err);

#endif
