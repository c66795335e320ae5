/* SPDX-License-Identifier: GPL-2.0 */
/* The netfilter hooks, present in a namespace only while it has rules. */
#ifndef _PD_HOOK_H
#define _PD_HOOK_H

struct net;

int pd_hooks_enable(struct net *net);
void pd_hooks_disable(struct net *net);

#endif /* _PD_HOOK_H */
