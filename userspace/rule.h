/* SPDX-License-Identifier: GPL-2.0 */
/* Rules on the wire: requests from a rule_spec, rules from replies. */
#ifndef PORTCTL_RULE_H
#define PORTCTL_RULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "parse.h"

struct nlmsghdr;

enum target_type {
	RULE_TARGET_UNKNOWN,
	RULE_TARGET_SOCKET,
	RULE_TARGET_PORT,
};

/* One target of a rule, as the kernel reports it. */
struct rule_target {
	enum target_type type;
	bool has_pid, has_pid_fd, has_inode, has_state;
	bool has_family, has_local_addr, has_local_port;
	uint32_t pid;
	uint32_t pid_fd;
	char comm[32];			/* "" when not reported */
	uint64_t inode;
	uint8_t state;
	uint8_t family;
	bool v6only;
	uint8_t local_addr_len;
	uint8_t local_addr[16];
	uint32_t local_port;
	uint32_t port;
	bool has_weight;		/* targets of a group only */
	uint32_t weight;
	bool has_stats;			/* targets of a group only */
	uint64_t steered;
	uint64_t undeliverable;
};

/*
 * A rule as the kernel reports it; has_* say which attributes came. Its
 * targets are allocated: see rule_free().
 */
struct rule {
	bool has_id;
	uint32_t id;
	uint8_t proto;
	uint32_t port_min;
	uint32_t port_max;
	uint8_t family;			/* 0: any */
	bool has_dst;
	uint8_t dst_len;		/* 4 or 16 */
	uint8_t dst[16];
	uint8_t dst_plen;
	size_t ntargets;
	struct rule_target *targets;	/* in the kernel's order */
	bool has_stats;			/* the rule's own, of all its targets */
	uint64_t steered;
	uint64_t undeliverable;
	bool has_replies;		/* UDP rules, from modules that count */
	uint64_t replies;
	bool has_reason;
	uint8_t reason;
	bool has_count;
	uint32_t count;
};

/*
 * Fills r from a RULE_GET message or an event, to be freed with
 * rule_free(); -1 if it is malformed, with nothing to free.
 */
int rule_parse(const struct nlmsghdr *nlh, struct rule *r);
void rule_free(struct rule *r);

/*
 * A group: a rule the kernel reports with several targets, or with the
 * weight of its one target (a group whose other targets left it).
 */
bool rule_is_group(const struct rule *r);

/* Appends a request's attributes; socket targets send their fd, our copy. */
void rule_put_spec(struct nlmsghdr *nlh, const struct rule_spec *spec);

/* "tcp", "udp", or NULL. */
const char *proto_name(uint8_t proto);

/* A word for the request attribute at offset offs (from extack), or NULL. */
const char *rule_attr_at(const struct nlmsghdr *req, uint32_t offs);

#endif
