// SPDX-License-Identifier: GPL-2.0
/* The commands that change the table one request at a time. */
#include <errno.h>
#include <linux/netlink.h>
#include <linux/portdispatch.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "nl.h"
#include "print.h"
#include "rule_show.h"
#include "target.h"
#include "util.h"

const char *rule_cmd_name(uint8_t cmd)
{
	switch (cmd) {
	case PORTDISPATCH_CMD_RULE_ADD:
		return "add";
	case PORTDISPATCH_CMD_RULE_REPLACE:
		return "replace";
	case PORTDISPATCH_CMD_RULE_DEL:
		return "del";
	}
	return "change";
}

void report_rule_error(const struct nl_status *st, const struct rule_spec *spec,
		       const struct nlmsghdr *req)
{
	const char *where = NULL;
	char words[96];

	if (st->msg[0] || st->code == EPERM) {
		nl_report(st, NULL, true);
		return;
	}
	spec_words(spec, words, sizeof(words));
	if (spec->cmd == PORTDISPATCH_CMD_RULE_DEL && st->code == ENOENT) {
		errorf("there is no rule %s to delete", words);
		return;
	}
	if (req && st->has_offs)
		where = rule_attr_at(req, st->offs);
	if (where)
		errorf("could not %s rule %s: %s (the kernel objected to %s)",
		       rule_cmd_name(spec->cmd), words, strerror(st->code), where);
	else
		errorf("could not %s rule %s: %s", rule_cmd_name(spec->cmd),
		       words, strerror(st->code));
}

/* With -j, the kernel echoes the rule it stored before its ack. */
struct echo {
	bool seen;
	struct rule rule;
};

static void echo_data(const struct nlmsghdr *nlh, void *arg)
{
	struct echo *e = arg;

	if (!e->seen && !rule_parse(nlh, &e->rule))
		e->seen = true;
}

/* The kernel holds the sockets once it answered: our copies are done. */
static void close_targets(struct rule_spec *spec)
{
	size_t i;

	for (i = 0; i < spec->ntargets; i++) {
		if (spec->targets[i].fd >= 0)
			close(spec->targets[i].fd);
		spec->targets[i].fd = -1;
	}
}

/* Our copy of each socket target; -1 having said why, none kept. */
static int take_targets(struct rule_spec *spec)
{
	size_t i;

	for (i = 0; i < spec->ntargets; i++) {
		struct target_spec *t = &spec->targets[i];

		if (t->kind != SPEC_TARGET_SOCKET)
			continue;
		t->fd = target_take(spec, t);
		if (t->fd < 0) {
			close_targets(spec);
			return -1;
		}
	}
	return 0;
}

static int change_rule(uint8_t cmd, int argc, char **argv,
		       const struct options *opt)
{
	char buf[NL_MSG_MAX];
	struct rule_spec spec;
	struct nlmsghdr *nlh;
	struct echo echo = { .seen = false };
	struct nl_status st;
	struct nl nl;
	int ret;

	ret = parse_rule(rule_cmd_name(cmd), cmd, opt->family, argc, argv,
			 &spec);
	if (ret)
		return ret;
	if (take_targets(&spec) || nl_open(&nl)) {
		close_targets(&spec);
		spec_free(&spec);
		return EXIT_ERROR;
	}

	nlh = nl_msg_start(&nl, buf, cmd, opt->json ? NLM_F_ECHO : 0);
	rule_put_spec(nlh, &spec);
	if (nl_request(&nl, nlh, echo_data, &echo, &st)) {
		report_rule_error(&st, &spec, nlh);
		ret = EXIT_ERROR;
	} else if (opt->json) {
		if (echo.seen) {
			rule_print(NULL, &echo.rule, true);
			print_end_record();
		} else {
			warnf("the kernel did not echo the rule");
		}
	}
	rule_free(&echo.rule);
	close_targets(&spec);
	spec_free(&spec);
	nl_close(&nl);
	return ret;
}

int cmd_add(int argc, char **argv, const struct options *opt)
{
	return change_rule(PORTDISPATCH_CMD_RULE_ADD, argc, argv, opt);
}

int cmd_replace(int argc, char **argv, const struct options *opt)
{
	return change_rule(PORTDISPATCH_CMD_RULE_REPLACE, argc, argv, opt);
}

int cmd_del(int argc, char **argv, const struct options *opt)
{
	return change_rule(PORTDISPATCH_CMD_RULE_DEL, argc, argv, opt);
}

int cmd_flush(int argc, char **argv, const struct options *opt)
{
	char buf[NL_MSG_MAX];
	struct nl_status st;
	struct nl nl;
	int ret = EXIT_OK;

	(void)opt;
	(void)argc;	/* main() has refused arguments */
	(void)argv;
	if (nl_open(&nl))
		return EXIT_ERROR;
	if (nl_request(&nl, nl_msg_start(&nl, buf, PORTDISPATCH_CMD_FLUSH, 0),
		       NULL, NULL, &st)) {
		nl_report(&st, "flush the table", true);
		ret = EXIT_ERROR;
	}
	nl_close(&nl);
	return ret;
}
