/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kselftest_harness.h, from the unpacked linux-source-6.1 package, as every
 * C test here includes it. That copy's __timeout_handler() has a parameter
 * it never uses, which -Wextra -Werror refuses; the warning is the
 * harness's, not ours to fix, and stays on for our own code.
 */
#ifndef _PD_HARNESS_H
#define _PD_HARNESS_H

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include "kselftest_harness.h"
#pragma GCC diagnostic pop

#endif /* _PD_HARNESS_H */
