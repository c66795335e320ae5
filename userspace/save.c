// SPDX-License-Identifier: GPL-2.0
/*
 * save: the table as a batch file that "portctl -b" loads back.
 *
 * Each port rule is a "replace" line and nothing else is: loading the file
 * makes or swaps in exactly the rules it names and leaves every other rule
 * alone. So it changes nothing on the table it came from, makes the saved
 * rules on an empty one, and never deletes a socket rule, which it can only
 * mention in a comment.
 */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "nl.h"
#include "rule_show.h"
#include "util.h"

static void save_header(void)
{
	char name[256] = "?", host[256];
	char date[64] = "?";
	time_t now = time(NULL);
	struct tm tm;

	gethostname(name, sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	/*
	 * The root of a UTS namespace names the host as it likes: a newline
	 * in the name would end the comment, and the rest of the name would
	 * be a line that loading the file runs.
	 */
	copy_printable(host, sizeof(host), name);
	if (gmtime_r(&now, &tm))
		strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S UTC", &tm);
	printf("# portdispatch rules of %s, saved by portctl on %s.\n", host,
	       date);
	printf("# Load with \"portctl -b FILE\": every line applies, or none does.\n");
	printf("# It sets the rules it names and leaves the others alone (socket rules too):\n");
	printf("# put \"flush\" first to make the table exactly this file.\n");
}

/* What save writes a rule's targets in: a group's take 16 of them. */
#define TARGETS_TEXT 2048

static size_t count_type(const struct rule *r, enum target_type type)
{
	size_t i, n = 0;

	for (i = 0; i < r->ntargets; i++)
		n += r->targets[i].type == type;
	return n;
}

static void save_rule(const struct rule *r)
{
	const char *fam = rule_family_option(r);
	char words[96], targets[TARGETS_TEXT];
	size_t sockets;

	rule_format_targets(r, false, targets, sizeof(targets));
	if (!rule_format_words(r, words, sizeof(words))) {
		printf("# %s -> %s: portctl cannot express this rule\n", words,
		       targets);
		return;
	}
	if (!r->ntargets || count_type(r, RULE_TARGET_UNKNOWN)) {
		printf("# %s%s: the kernel reported a target portctl does not know\n",
		       fam, words);
		return;
	}
	sockets = count_type(r, RULE_TARGET_SOCKET);
	if (!sockets) {
		printf("%sreplace %s to %s\n", fam, words, targets);
		return;
	}
	printf("# %s -> %s: %s; pids and fds do not survive a restart, so re-add it when the service runs:\n",
	       words, targets, sockets > 1 ? "socket targets" :
	       "a socket target");
	rule_format_targets(r, true, targets, sizeof(targets));
	printf("# %sadd %s to %s\n", fam, words, targets);
}

int cmd_save(int argc, char **argv, const struct options *opt)
{
	struct rule_list list = { .n = 0 };
	struct nl nl;
	int ret = EXIT_OK;

	(void)opt;
	(void)argc;	/* main() has refused arguments */
	(void)argv;
	if (nl_open(&nl))
		return EXIT_ERROR;
	/*
	 * Loaded onto an empty table (at boot), a partial copy would
	 * silently lack rules: all of the table or nothing.
	 */
	if (dump_rules(&nl, &list, "nothing was saved")) {
		ret = EXIT_ERROR;
	} else {
		save_header();
		for (size_t i = 0; i < list.n; i++)
			save_rule(&list.rules[i]);
	}
	rule_list_free(&list);
	nl_close(&nl);
	return ret;
}
