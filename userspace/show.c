// SPDX-License-Identifier: GPL-2.0
/* The commands that read the table, list and stats, and how they read it. */
#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/portdispatch.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "nl.h"
#include "print.h"
#include "rule_show.h"
#include "util.h"

/* A dump that spans a change of the table is retried this often. */
#define DUMP_TRIES 4

static void add_rule(const struct nlmsghdr *nlh, void *arg)
{
	struct rule_list *list = arg;

	if (list->n == list->cap) {
		list->cap = list->cap ? list->cap * 2 : 64;
		list->rules = xreallocarray(list->rules, list->cap,
					    sizeof(*list->rules));
	}
	if (!rule_parse(nlh, &list->rules[list->n]))
		list->n++;
}

static void rule_list_clear(struct rule_list *list)
{
	size_t i;

	for (i = 0; i < list->n; i++)
		rule_free(&list->rules[i]);
	list->n = 0;
}

void rule_list_free(struct rule_list *list)
{
	rule_list_clear(list);
	free(list->rules);
	list->rules = NULL;
	list->n = list->cap = 0;
}

int dump_rules(struct nl *nl, struct rule_list *list, const char *undone)
{
	char buf[NL_MSG_MAX];
	struct nl_status st;
	int tries;

	for (tries = 0; tries < DUMP_TRIES; tries++) {
		rule_list_clear(list);
		if (nl_request(nl, nl_msg_start(nl, buf,
						PORTDISPATCH_CMD_RULE_GET,
						NLM_F_DUMP),
			       add_rule, list, &st)) {
			nl_report(&st, "list the rules", false);
			return -1;
		}
		if (!nl->dump_intr)
			return 0;
	}
	if (undone) {
		errorf("the table changed each of the %d times it was read, so %s; try again",
		       DUMP_TRIES, undone);
		return -1;
	}
	warnf("the table kept changing while it was read: this listing may be inconsistent");
	return 0;
}

int cmd_list(int argc, char **argv, const struct options *opt)
{
	struct rule_list list = { .n = 0 };
	struct nl nl;
	int ret = EXIT_OK;

	(void)argc;	/* main() has refused arguments */
	(void)argv;
	if (nl_open(&nl))
		return EXIT_ERROR;
	if (dump_rules(&nl, &list, NULL)) {
		ret = EXIT_ERROR;
	} else {
		print_open_array(NULL);
		for (size_t i = 0; i < list.n; i++) {
			rule_print(NULL, &list.rules[i], opt->stats);
			print_end_record();
		}
		print_close_array();
		if (opt->json)
			print_end_record();
	}
	rule_list_free(&list);
	nl_close(&nl);
	return ret;
}

static void stats_data(const struct nlmsghdr *nlh, void *arg)
{
	struct ns_stats *s = arg;
	const struct nlattr *a;

	s->seen = true;
	mnl_attr_for_each(a, nlh, GENL_HDRLEN) {
		uint16_t type = mnl_attr_get_type(a);

		if (type > PORTDISPATCH_A_NS_STATS_MAX)
			continue;
		/* Counters are u64, sizes u32; take either. */
		if (!mnl_attr_validate(a, MNL_TYPE_U64)) {
			s->value[type] = mnl_attr_get_u64(a);
			s->has[type] = true;
		} else if (!mnl_attr_validate(a, MNL_TYPE_U32)) {
			s->value[type] = mnl_attr_get_u32(a);
			s->has[type] = true;
		}
	}
}

int read_ns_stats(struct nl *nl, struct ns_stats *s)
{
	char buf[NL_MSG_MAX];
	struct nl_status st;

	memset(s, 0, sizeof(*s));
	if (nl_request(nl, nl_msg_start(nl, buf, PORTDISPATCH_CMD_STATS_GET, 0),
		       stats_data, s, &st)) {
		nl_report(&st, "read the counters", false);
		return -1;
	}
	if (!s->seen) {
		errorf("the kernel sent no counters");
		return -1;
	}
	return 0;
}

int cmd_stats(int argc, char **argv, const struct options *opt)
{
	static const struct {
		int type;
		const char *key;
		const char *textfmt;
	} counters[] = {
		{ PORTDISPATCH_A_NS_STATS_LOOKUPS, "lookups", "lookups %s\n" },
		{ PORTDISPATCH_A_NS_STATS_HITS, "hits", "hits %s\n" },
		{ PORTDISPATCH_A_NS_STATS_MISSES, "misses", "misses %s\n" },
		{ PORTDISPATCH_A_NS_STATS_RULES, "rules", "rules %s\n" },
		{ PORTDISPATCH_A_NS_STATS_MAX_RULES, "max_rules",
		  "max_rules %s\n" },
		{ PORTDISPATCH_A_NS_STATS_UDP_FLOWS, "udp_flows",
		  "udp_flows %s\n" },
		{ PORTDISPATCH_A_NS_STATS_MAX_UDP_FLOWS, "max_udp_flows",
		  "max_udp_flows %s\n" },
		{ PORTDISPATCH_A_NS_STATS_UDP_FLOWS_MISSED, "udp_flows_missed",
		  "udp_flows_missed %s\n" },
	};
	struct ns_stats s;
	struct nl nl;
	int ret = EXIT_OK;

	(void)opt;
	(void)argc;	/* main() has refused arguments */
	(void)argv;
	if (nl_open(&nl))
		return EXIT_ERROR;
	if (read_ns_stats(&nl, &s)) {
		ret = EXIT_ERROR;
	} else {
		print_open_object(NULL);
		for (size_t i = 0; i < ARRAY_SIZE(counters); i++) {
			if (s.has[counters[i].type])
				print_uint(counters[i].key, counters[i].textfmt,
					   s.value[counters[i].type]);
			else
				print_null(counters[i].key);
		}
		print_close_object();
		if (opt->json)
			print_end_record();
	}
	nl_close(&nl);
	return ret;
}
