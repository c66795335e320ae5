/* SPDX-License-Identifier: GPL-2.0 */
/*
 * How whatever a request causes is allocated: charged to the requester's
 * memory cgroup, and allowed to fail rather than wake the OOM killer. A
 * container at its memory.max gets ENOMEM and a sentence for a rule too
 * many; no process of it is killed for the module's sake.
 */
#ifndef _PD_GFP_H
#define _PD_GFP_H

#include <linux/gfp.h>

#define PD_GFP	(GFP_KERNEL_ACCOUNT | __GFP_RETRY_MAYFAIL | __GFP_NOWARN)

#endif /* _PD_GFP_H */
