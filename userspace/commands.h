/* SPDX-License-Identifier: GPL-2.0 */
/* The subcommands; main.c holds their table. */
#ifndef PORTCTL_COMMANDS_H
#define PORTCTL_COMMANDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/portdispatch.h>

#include "rule.h"

struct nl;
struct nl_status;
struct nlmsghdr;

/* The options before the command. */
struct options {
	uint8_t family;		/* -4: AF_INET, -6: AF_INET6, else 0 */
	bool json;		/* -j */
	bool stats;		/* -s */
};

/* Each takes the words after its name and returns an exit status. */
int cmd_add(int argc, char **argv, const struct options *opt);
int cmd_replace(int argc, char **argv, const struct options *opt);
int cmd_del(int argc, char **argv, const struct options *opt);
int cmd_flush(int argc, char **argv, const struct options *opt);
int cmd_list(int argc, char **argv, const struct options *opt);
int cmd_stats(int argc, char **argv, const struct options *opt);
int cmd_monitor(int argc, char **argv, const struct options *opt);
int cmd_save(int argc, char **argv, const struct options *opt);
int cmd_metrics(int argc, char **argv, const struct options *opt);
int cmd_exec(int argc, char **argv, const struct options *opt);
int run_batch(const char *path);

/* "add", "replace", "del": the word a command goes by. */
const char *rule_cmd_name(uint8_t cmd);

/*
 * Says why the kernel refused a rule change: its own message if it gave
 * one, else a sentence about the rule. req (may be NULL) lets an extack
 * offset name the word the kernel objected to.
 */
void report_rule_error(const struct nl_status *st, const struct rule_spec *spec,
		       const struct nlmsghdr *req);

/* Every rule of the table. */
struct rule_list {
	struct rule *rules;
	size_t n;
	size_t cap;
};

/*
 * Reads the table, again when a change of it came in between (a dump
 * flagged NLM_F_DUMP_INTR), a few times at most. If no read was
 * consistent: without undone, 0 and the last read, with a warning; with
 * it (what a whole table was wanted for and is not done: "nothing was
 * saved"), -1, having said so. -1 also when the kernel refused, having
 * said why.
 */
int dump_rules(struct nl *nl, struct rule_list *list, const char *undone);
void rule_list_free(struct rule_list *list);

/* The namespace's counters (STATS_GET), by NS_STATS attribute type. */
struct ns_stats {
	bool seen;
	uint64_t value[PORTDISPATCH_A_NS_STATS_MAX + 1];
	bool has[PORTDISPATCH_A_NS_STATS_MAX + 1];	/* the kernel sent it */
};

/* Reads them; -1 when the kernel refused or sent none, having said why. */
int read_ns_stats(struct nl *nl, struct ns_stats *s);

#endif
