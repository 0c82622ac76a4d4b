/* Folded into include/hma.h; kept only so that files written against the draft still build. */
#include "hma.h"
