/* SPDX-License-Identifier: GPL-2.0 */
/* The generic netlink family: requests, dumps and events. */
#ifndef _PD_NETLINK_H
#define _PD_NETLINK_H

struct pd_change;
struct pd_net;

int pd_nl_init(void);
void pd_nl_exit(void);

/* Announce one committed change to the "events" group. */
void pd_nl_notify(struct pd_net *pn, const struct pd_change *c);

#endif /* _PD_NETLINK_H */
