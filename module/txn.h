/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Transactions. Every change goes through one: a lone request in a
 * transaction of its own, a batch in the transaction its client opened.
 * Commands are checked when they arrive and applied to the store as staged
 * changes; packets see none of them until the commit publishes a table
 * compiled from the result. An abort undoes the journal in reverse.
 * Callers hold pd_net.lock.
 */
#ifndef _PD_TXN_H
#define _PD_TXN_H

#include <linux/atomic.h>
#include <linux/list.h>
#include <linux/types.h>

struct netlink_ext_ack;
struct pd_key;
struct pd_net;
struct pd_rule;
struct pd_txn;
struct work_struct;

enum pd_op {
	PD_OP_ADD,
	PD_OP_REPLACE,
	PD_OP_DEL,
	PD_OP_FLUSH,
};

/* One command of a transaction, as the journal keeps it. */
struct pd_change {
	struct list_head node;
	enum pd_op	op;
	struct pd_rule	*added;		/* ADD, REPLACE */
	struct list_head removed;	/* rules leaving, through del_node */
	u32		nr_removed;
	u32		host_charged;	/* what it took of max_rules_total */
};

/* Rules of every namespace, staged additions included. */
extern atomic_t pd_host_rules;

/* A namespace's end: its published rules leave the host's count. */
void pd_txn_host_release(unsigned int rules);

/* The transaction for a change request from netlink socket @portid. */
struct pd_txn *pd_txn_get(struct pd_net *pn, u32 portid,
			  struct netlink_ext_ack *extack);
/* Ends a request's use of @txn: a lone request commits or aborts here. */
int pd_txn_put(struct pd_net *pn, struct pd_txn *txn, int err,
	       struct netlink_ext_ack *extack);

int pd_txn_add(struct pd_net *pn, struct pd_txn *txn, struct pd_rule *rule,
	       bool replace, struct netlink_ext_ack *extack);
int pd_txn_del(struct pd_net *pn, struct pd_txn *txn, const struct pd_key *key,
	       struct netlink_ext_ack *extack);
int pd_txn_flush(struct pd_net *pn, struct pd_txn *txn);
int pd_txn_reap(struct pd_net *pn, struct pd_txn *txn, struct pd_rule *rule);

struct pd_txn *pd_txn_begin(u32 portid);
int pd_txn_commit(struct pd_net *pn, struct pd_txn *txn,
		  struct netlink_ext_ack *extack);
void pd_txn_abort(struct pd_net *pn, struct pd_txn *txn);

int pd_batch_begin(struct pd_net *pn, u32 portid,
		   struct netlink_ext_ack *extack);
int pd_batch_end(struct pd_net *pn, u32 portid, bool commit,
		 struct netlink_ext_ack *extack);
void pd_batch_release(struct pd_net *pn, u32 portid);
/* A command of @portid's batch was refused before it reached it. */
void pd_batch_refused(struct pd_net *pn, u32 portid, int err);
void pd_batch_idle_work(struct work_struct *work);
void pd_batch_forget_dropped(struct pd_net *pn);

#endif /* _PD_TXN_H */
