// SPDX-License-Identifier: GPL-2.0
/* Storage behind compat.h, for kernels that need it. */

#include "compat.h"

#ifdef PD_ERRBUF_SLOTS
static char pd_errbufs[PD_ERRBUF_SLOTS][PD_ERRBUF_LEN];
static atomic_t pd_errbuf_next = ATOMIC_INIT(0);

char *pd_compat_errbuf(void)
{
	unsigned int slot = atomic_inc_return(&pd_errbuf_next);

	return pd_errbufs[slot % PD_ERRBUF_SLOTS];
}
#endif
