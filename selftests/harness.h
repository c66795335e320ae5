/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kselftest_harness.h, from the unpacked linux-source-6.1 package, as every
 * C test here includes it. That copy's __timeout_handler() has a parameter
 * it never uses, which -Wextra -Werror refuses; the warning is the
 * harness's, not ours to fix, and stays on for our own code.
 * Its main() scales every test's time limit to the running kernel first.
 */
#ifndef _PD_HARNESS_H
#define _PD_HARNESS_H

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include "kselftest_harness.h"
#pragma GCC diagnostic pop

#include "pd_test.h"

/*
 * The harness's own time limit of each test (TEST_F_TIMEOUT, or 30 s) is
 * written for Debian's kernels too: scaled like every other bound, before
 * the tests run.
 */
static inline void pd_scale_test_timeouts(void)
{
	struct __fixture_metadata *f;
	struct __test_metadata *t;

	for (f = __fixture_list; f; f = f->next)
		for (t = f->tests; t; t = t->next)
			t->timeout *= pd_time_scale();
}

static inline int pd_test_harness_run(int argc, char **argv)
{
	pd_scale_test_timeouts();
	return (test_harness_run)(argc, argv);
}

/* What TEST_HARNESS_MAIN's main() calls. */
#define test_harness_run(argc, argv) pd_test_harness_run(argc, argv)

#endif /* _PD_HARNESS_H */
