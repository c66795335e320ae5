/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Differences between the kernels portdispatch builds against (6.1 and
 * later). Each one is detected by a feature, not a version number: macros
 * directly, struct layouts by a probe in Kbuild (PD_HAVE_*).
 */
#ifndef _PD_COMPAT_H
#define _PD_COMPAT_H

#include <linux/atomic.h>
#include <linux/kernel.h>
#include <net/netlink.h>
#include <net/udp.h>

/*
 * NL_SET_ERR_MSG_FMT (6.2) formats into a buffer inside the extack. Before
 * it, the message must outlive the doit until the ack is written, and
 * requests run in parallel (parallel_ops), so a single static buffer
 * could be overwritten by a concurrent request. A small ring of buffers makes that a
 * matter of dozens of concurrent failing requests within one ack's time, and
 * even then only the text is wrong: every slot stays NUL-terminated.
 */
#ifndef NL_SET_ERR_MSG_FMT
#define PD_ERRBUF_SLOTS	32
#define PD_ERRBUF_LEN	80

char *pd_compat_errbuf(void);

#define NL_SET_ERR_MSG_FMT(extack, fmt, args...) do {			\
	struct netlink_ext_ack *__extack = (extack);			\
	char *__buf;							\
									\
	if (!__extack)							\
		break;							\
	__buf = pd_compat_errbuf();					\
	snprintf(__buf, PD_ERRBUF_LEN - 1, fmt, ##args);		\
	__extack->_msg = __buf;						\
} while (0)
#endif

/* UDP hash tables became per network namespace in 6.2. */
static inline struct udp_table *pd_udp_table(struct net *net)
{
#ifdef PD_HAVE_NETNS_UDP_TABLE
	return net->ipv4.udp_table;
#else
	return &udp_table;
#endif
}

#endif /* _PD_COMPAT_H */
