/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The compiled table: what packets read. It is immutable once published
 * and replaced as a whole (RCU), so a reader sees one commit or the next,
 * never a mixture. Ports index blocks of 256 port slots; a slot points to
 * the port set of the rules covering that port (portset.h). An uncovered
 * port costs two loads.
 *
 * A commit copies the root, rebuilds only the blocks its changes touched
 * and shares the others with the previous table. A port set spanning
 * several blocks is shared by them and counts one reference per block.
 */
#ifndef _PD_TABLE_H
#define _PD_TABLE_H

#include <linux/bits.h>
#include <linux/refcount.h>
#include <linux/socket.h>

#include "portset.h"
#include "rule.h"

struct pd_store;
struct pd_txn;

#define PD_BLOCK_SHIFT	8
#define PD_BLOCK_PORTS	BIT(PD_BLOCK_SHIFT)
#define PD_NBLOCKS	(65536U >> PD_BLOCK_SHIFT)
#define PD_NDIRTY	(PD_NPROTO * PD_NBLOCKS)

struct pd_block {
	struct pd_portset *set[PD_BLOCK_PORTS];
};

struct pd_table {
	struct pd_block	*block[PD_NPROTO][PD_NBLOCKS];
};

/* The rules covering @port of @proto, or NULL. Under rcu_read_lock(). */
static inline struct pd_portset *
pd_table_port(const struct pd_table *table, u8 proto, u16 port)
{
	const struct pd_block *block = table->block[proto][port >> PD_BLOCK_SHIFT];

	if (!block)
		return NULL;
	return block->set[port & (PD_BLOCK_PORTS - 1)];
}

/* Which blocks a change to ports [lo, hi] of a protocol invalidates. */
void pd_table_mark_dirty(unsigned long *dirty, u8 proto, u16 lo, u16 hi);

struct pd_table *pd_table_rebuild(struct pd_store *store,
				  const struct pd_txn *txn,
				  const struct pd_table *old,
				  const unsigned long *dirty,
				  struct pd_block **replaced,
				  unsigned int *nr_replaced);
int pd_table_patch(struct pd_table *table, struct pd_rule *add,
		   struct pd_rule *del);
void pd_table_discard(struct pd_table *table, const unsigned long *dirty);
bool pd_table_empty(const struct pd_table *table);
void pd_block_free(struct pd_block *block);
void pd_table_destroy(struct pd_table *table);

#endif /* _PD_TABLE_H */
