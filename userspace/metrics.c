// SPDX-License-Identifier: GPL-2.0
/*
 * metrics: the table's counters in Prometheus' text exposition format
 * (0.0.4), for node_exporter's textfile collector, which reads a file
 * that must never be seen half written:
 *
 *	portctl metrics > DIR/portdispatch.prom.$$ &&
 *		mv DIR/portdispatch.prom.$$ DIR/portdispatch.prom
 *
 * So it prints all of the table or nothing: the rules are read in one
 * consistent dump (a dump that a change interrupted is read again, as
 * save reads it, since an interrupted one may list a rule twice, which
 * would be two series with the same labels), and the text is made in
 * memory and written only when whole.
 *
 * A rule's series are labelled with what makes the rule unique in its
 * table, and nothing that a replace changes: proto, ports, prefix and
 * family (two rules that share all four would conflict). Its targets are
 * not among them: a replace keeps the rule's counters, and a series that
 * the replace ended and another that began with the old count would cut
 * one counter in two. Each target's series (a lone target's counters are
 * its rule's) add member (its place in the rule, from 0, which makes two
 * targets that read alike distinct), target (its words, as portctl list
 * prints them) and, in a rule of several, weight;
 * portdispatch_target_info names every target of every rule with these
 * labels, to join on.
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "nl.h"
#include "rule_show.h"
#include "util.h"

/* The namespace's counters, from STATS_GET, as portctl stats prints them. */
static const struct {
	int type;
	const char *name;
	const char *kind;
	const char *help;
} ns_metrics[] = {
	{ PORTDISPATCH_A_NS_STATS_LOOKUPS, "portdispatch_lookups_total",
	  "counter", "Packets that consulted the table (hits plus misses)." },
	{ PORTDISPATCH_A_NS_STATS_HITS, "portdispatch_hits_total", "counter",
	  "Packets that consulted the table and that a rule covered." },
	{ PORTDISPATCH_A_NS_STATS_MISSES, "portdispatch_misses_total",
	  "counter", "Packets that consulted the table and that no rule covered." },
	{ PORTDISPATCH_A_NS_STATS_MAX_RULES, "portdispatch_rules_limit",
	  "gauge", "Rules the table may hold (module parameter max_rules)." },
	{ PORTDISPATCH_A_NS_STATS_UDP_FLOWS, "portdispatch_udp_flows", "gauge",
	  "Steered UDP flows remembered, to answer from the address and port the client used." },
	{ PORTDISPATCH_A_NS_STATS_MAX_UDP_FLOWS, "portdispatch_udp_flows_limit",
	  "gauge", "Steered UDP flows the namespace may remember (module parameter max_udp_flows)." },
	{ PORTDISPATCH_A_NS_STATS_UDP_FLOWS_MISSED,
	  "portdispatch_udp_flows_missed_total", "counter",
	  "Steered UDP flows that could not be remembered: their replies left from the target's own port." },
};

enum value { STEERED, UNDELIVERABLE, REPLIES };

/* A rule's own counters, of all its targets. */
static const struct {
	enum value value;
	const char *name;
	const char *help;
} rule_metrics[] = {
	{ STEERED, "portdispatch_rule_steered_total",
	  "New flows the rule handed to one of its targets." },
	{ UNDELIVERABLE, "portdispatch_rule_undeliverable_total",
	  "New flows the rule matched that none of its targets could take, left to the normal lookup." },
	{ REPLIES, "portdispatch_rule_replies_total",
	  "UDP datagrams the rule's targets sent back from the address and port the client used." },
};

/* The counters of each target: a lone target's are its rule's. */
static const struct {
	enum value value;
	const char *name;
	const char *help;
} target_metrics[] = {
	{ STEERED, "portdispatch_target_steered_total",
	  "New flows this target took." },
	{ UNDELIVERABLE, "portdispatch_target_undeliverable_total",
	  "New flows whose first choice was this target but that it could not take, passed on to the rule's next target or the normal lookup." },
};

static void family_header(FILE *f, const char *name, const char *kind,
			  const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, kind);
}

/*
 * A label's value, quoted: backslash, double quote and line feed escaped
 * as the format says, and a byte that is not UTF-8, which the format
 * refuses (and with it the whole file), as U+FFFD. What a process named
 * itself reaches here.
 */
static void put_value(FILE *f, const char *value)
{
	const unsigned char *s = (const unsigned char *)value;

	fputc('"', f);
	while (*s) {
		size_t n = utf8_len(s);

		if (!n) {
			fputs("\xef\xbf\xbd", f);
			s++;
		} else if (*s == '\\' || *s == '"') {
			fprintf(f, "\\%c", *s++);
		} else if (*s == '\n') {
			fputs("\\n", f);
			s++;
		} else {
			fwrite(s, 1, n, f);
			s += n;
		}
	}
	fputc('"', f);
}

static void put_label(FILE *f, bool first, const char *name,
		      const char *value)
{
	fprintf(f, "%s%s=", first ? "" : ",", name);
	put_value(f, value);
}

/* proto, ports, prefix ("" for every local address), family. */
static void rule_labels(FILE *f, const struct rule *r)
{
	const char *proto = proto_name(r->proto);
	char buf[INET6_ADDRSTRLEN + 8] = "";
	char ports[24];

	if (!proto) {
		snprintf(ports, sizeof(ports), "ipproto-%u", r->proto);
		put_label(f, true, "proto", ports);
	} else {
		put_label(f, true, "proto", proto);
	}
	if (r->port_max != r->port_min)
		snprintf(ports, sizeof(ports), "%" PRIu32 "-%" PRIu32,
			 r->port_min, r->port_max);
	else
		snprintf(ports, sizeof(ports), "%" PRIu32, r->port_min);
	put_label(f, false, "ports", ports);
	if (r->has_dst)
		rule_format_dst(r, buf, sizeof(buf));
	put_label(f, false, "prefix", buf);
	put_label(f, false, "family", rule_family_text(r->family));
}

/* The rule's, then member, target and (in a rule of several) weight. */
static void target_labels(FILE *f, const struct rule *r, size_t i)
{
	const struct rule_target *t = &r->targets[i];
	char buf[128];

	rule_labels(f, r);
	snprintf(buf, sizeof(buf), "%zu", i);
	put_label(f, false, "member", buf);
	if (t->type == RULE_TARGET_UNKNOWN)
		snprintf(buf, sizeof(buf), "unknown");
	else
		rule_format_target(t, buf, sizeof(buf));
	put_label(f, false, "target", buf);
	if (t->has_weight) {
		snprintf(buf, sizeof(buf), "%" PRIu32, t->weight);
		put_label(f, false, "weight", buf);
	}
}

static void put_sample(FILE *f, uint64_t value)
{
	fprintf(f, "} %" PRIu64 "\n", value);
}

static void put_rules(FILE *f, const struct rule_list *list)
{
	size_t i, j, k;

	for (k = 0; k < ARRAY_SIZE(rule_metrics); k++) {
		family_header(f, rule_metrics[k].name, "counter",
			      rule_metrics[k].help);
		for (i = 0; i < list->n; i++) {
			const struct rule *r = &list->rules[i];
			uint64_t v;

			if (!r->has_stats)
				continue;
			switch (rule_metrics[k].value) {
			case STEERED:
				v = r->steered;
				break;
			case UNDELIVERABLE:
				v = r->undeliverable;
				break;
			default:	/* UDP rules only */
				if (!r->has_replies)
					continue;
				v = r->replies;
				break;
			}
			fprintf(f, "%s{", rule_metrics[k].name);
			rule_labels(f, r);
			put_sample(f, v);
		}
	}

	for (k = 0; k < ARRAY_SIZE(target_metrics); k++) {
		family_header(f, target_metrics[k].name, "counter",
			      target_metrics[k].help);
		for (i = 0; i < list->n; i++) {
			const struct rule *r = &list->rules[i];

			for (j = 0; j < r->ntargets; j++) {
				const struct rule_target *t = &r->targets[j];
				uint64_t steered, undeliverable;

				/*
				 * The kernel counts per target in rules of
				 * several; a lone target's are the rule's.
				 */
				if (t->has_stats) {
					steered = t->steered;
					undeliverable = t->undeliverable;
				} else if (r->ntargets == 1 && r->has_stats) {
					steered = r->steered;
					undeliverable = r->undeliverable;
				} else {
					continue;
				}
				fprintf(f, "%s{", target_metrics[k].name);
				target_labels(f, r, j);
				put_sample(f, target_metrics[k].value == STEERED ?
					   steered : undeliverable);
			}
		}
	}

	family_header(f, "portdispatch_target_info", "gauge",
		      "Each target of each rule, always 1: its words and weight, to join with the rule's counters.");
	for (i = 0; i < list->n; i++) {
		for (j = 0; j < list->rules[i].ntargets; j++) {
			fputs("portdispatch_target_info{", f);
			target_labels(f, &list->rules[i], j);
			put_sample(f, 1);
		}
	}
}

static void put_metrics(FILE *f, const struct rule_list *list,
			const struct ns_stats *s)
{
	size_t k;

	family_header(f, "portdispatch_rules", "gauge",
		      "Rules in the table: those whose series follow.");
	fprintf(f, "portdispatch_rules %zu\n", list->n);
	for (k = 0; k < ARRAY_SIZE(ns_metrics); k++) {
		family_header(f, ns_metrics[k].name, ns_metrics[k].kind,
			      ns_metrics[k].help);
		/* The UDP flows' come from modules that rewrite replies. */
		if (s->has[ns_metrics[k].type])
			fprintf(f, "%s %" PRIu64 "\n", ns_metrics[k].name,
				s->value[ns_metrics[k].type]);
	}
	put_rules(f, list);
}

int cmd_metrics(int argc, char **argv, const struct options *opt)
{
	struct rule_list list = { .n = 0 };
	struct ns_stats s;
	char *text = NULL;
	size_t len = 0;
	struct nl nl;
	FILE *f;
	int err;

	(void)opt;
	(void)argc;	/* main() has refused arguments */
	(void)argv;
	if (nl_open(&nl))
		return EXIT_ERROR;
	err = dump_rules(&nl, &list, "no metrics were written");
	if (!err)
		err = read_ns_stats(&nl, &s);
	nl_close(&nl);
	if (err) {
		rule_list_free(&list);
		return EXIT_ERROR;
	}

	f = open_memstream(&text, &len);
	if (!f) {
		errorf("cannot make the metrics: out of memory");
		rule_list_free(&list);
		return EXIT_ERROR;
	}
	put_metrics(f, &list, &s);
	err = ferror(f);
	if (fclose(f) || err) {
		errorf("cannot make the metrics: out of memory");
		free(text);
		rule_list_free(&list);
		return EXIT_ERROR;
	}
	rule_list_free(&list);
	/* main() says so if stdout takes less than all of it. */
	fwrite(text, 1, len, stdout);
	free(text);
	return EXIT_OK;
}
