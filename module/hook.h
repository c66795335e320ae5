/* SPDX-License-Identifier: GPL-2.0 */
/* The netfilter hooks; attach.c registers them for a namespace. */
#ifndef _PD_HOOK_H
#define _PD_HOOK_H

struct nf_hook_state;
struct sk_buff;

/* @priv is the namespace's struct pd_datapath. */
unsigned int pd_hook_ipv4(void *priv, struct sk_buff *skb,
			  const struct nf_hook_state *state);
unsigned int pd_hook_ipv6(void *priv, struct sk_buff *skb,
			  const struct nf_hook_state *state);

#endif /* _PD_HOOK_H */
