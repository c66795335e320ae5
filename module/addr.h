/* SPDX-License-Identifier: GPL-2.0 */
/* An IPv4 or IPv6 address, in network order. */
#ifndef _PD_ADDR_H
#define _PD_ADDR_H

#include <linux/in6.h>
#include <linux/types.h>

union pd_addr {
	__be32		v4;
	struct in6_addr	v6;
};

#endif /* _PD_ADDR_H */
