// SPDX-License-Identifier: GPL-2.0
/*
 * portctl: the command line of portdispatch, the programmable
 * port-to-socket table. See portctl(8).
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "commands.h"
#include "print.h"
#include "util.h"

#ifndef PORTCTL_VERSION
#define PORTCTL_VERSION "unknown"
#endif

/* Which options mean something to a command. */
#define TAKES_FAMILY	(1u << 0)
#define TAKES_JSON	(1u << 1)
#define TAKES_STATS	(1u << 2)
#define NO_ARGUMENTS	(1u << 3)

struct command {
	const char *name;
	int (*run)(int argc, char **argv, const struct options *opt);
	unsigned int takes;
	const char *summary;
	const char *usage;
};

#define TARGET_USAGE \
	"       TARGET-LIST := TARGET [weight W] [, TARGET [weight W]]...\n" \
	"       TARGET := pid PID [fd FD] | port PORT\n" \
	"Up to 16 targets; new flows spread over them in proportion to their\n" \
	"weights, W from 1 to 255 (1 when not given).\n"

static const struct command commands[] = {
	{ "add", cmd_add, TAKES_FAMILY | TAKES_JSON,
	  "add a rule: new flows to these ports go to a socket, or spread over several",
	  "portctl [-4|-6] [-j] add {tcp|udp} PORT[-PORT] [dst PREFIX] to TARGET-LIST\n"
	  TARGET_USAGE
	  "Fails if the rule overlaps one with the same protocol and prefix.\n"
	  "With -j, prints the rule as the kernel stored it.\n" },
	{ "replace", cmd_replace, TAKES_FAMILY | TAKES_JSON,
	  "add a rule, or swap the targets of an existing one atomically",
	  "portctl [-4|-6] [-j] replace {tcp|udp} PORT[-PORT] [dst PREFIX] to TARGET-LIST\n"
	  TARGET_USAGE
	  "No new flow is lost while the targets change.\n" },
	{ "del", cmd_del, TAKES_FAMILY,
	  "delete a rule",
	  "portctl [-4|-6] del {tcp|udp} PORT[-PORT] [dst PREFIX]\n"
	  "Deletes the rule with exactly these ports and prefix.\n" },
	{ "list", cmd_list, TAKES_JSON | TAKES_STATS | NO_ARGUMENTS,
	  "show the rules (what portctl does without a command)",
	  "portctl [-j] [-s] list\n"
	  "With -s, shows each rule's counters; with -j, prints JSON.\n" },
	{ "flush", cmd_flush, NO_ARGUMENTS,
	  "delete every rule",
	  "portctl flush\n" },
	{ "stats", cmd_stats, TAKES_JSON | NO_ARGUMENTS,
	  "show the table's counters",
	  "portctl [-j] stats\n" },
	{ "monitor", cmd_monitor, TAKES_JSON | NO_ARGUMENTS,
	  "print changes to the table as they happen",
	  "portctl [-j] monitor\n"
	  "Runs until interrupted; with -j, prints one JSON object a line.\n" },
	{ "save", cmd_save, NO_ARGUMENTS,
	  "print the table as a file that \"portctl -b\" loads",
	  "portctl save > FILE\n"
	  "Loading FILE (portctl -b FILE) replaces the rules it names and leaves\n"
	  "the others alone: it changes nothing on the table it came from, and\n"
	  "makes the saved rules on an empty one; put \"flush\" first to make the\n"
	  "table exactly FILE. Socket targets cannot be restored (pids and fds do\n"
	  "not survive a restart): they are written as comments. Writes the\n"
	  "whole table or nothing.\n" },
	{ "metrics", cmd_metrics, NO_ARGUMENTS,
	  "print the counters in Prometheus' text format",
	  "portctl metrics > FILE\n"
	  "Prints the counters of the table, of each rule and of each target of\n"
	  "a rule of several, in Prometheus' text format: all of them, or\n"
	  "nothing and exit 1. For node_exporter's textfile collector, write a\n"
	  "file beside the one it reads, then rename it:\n"
	  "  portctl metrics > DIR/portdispatch.prom.$$ &&\n"
	  "    mv DIR/portdispatch.prom.$$ DIR/portdispatch.prom\n" },
	{ "exec", cmd_exec, TAKES_FAMILY,
	  "run a server on ports it need not be root for: the sockets come from portctl",
	  "portctl exec [-4|-6] [-u USER[:GROUP]] [--replace] CLAUSE... -- COMMAND [ARG]...\n"
	  "       CLAUSE := {tcp|udp} PORT[-PORT] [dst PREFIX]\n"
	  "Makes a socket for each clause on a port that needs no privilege, adds\n"
	  "the rule that sends the clause's ports to it, becomes USER (-u: its\n"
	  "groups too, and no capabilities), and runs COMMAND in its own process\n"
	  "with the sockets at fd 3 and up, as systemd passes them (LISTEN_FDS,\n"
	  "LISTEN_PID, LISTEN_FDNAMES). The rules leave when the server's sockets\n"
	  "close. --replace takes the ports over from the rules there: their\n"
	  "servers keep the connections they have; new ones come here.\n" },
	{ "help", NULL, 0,
	  "show this help; \"portctl COMMAND help\" shows one command's",
	  "portctl help [COMMAND]\n" },
};

static void usage_all(FILE *f)
{
	size_t i;

	fputs("Usage: portctl [OPTIONS] COMMAND [ARGUMENTS]\n"
	      "       portctl -b FILE\n"
	      "\n"
	      "Commands:\n", f);
	for (i = 0; i < ARRAY_SIZE(commands); i++)
		fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
	fputs("\n"
	      "Options:\n"
	      "  -4, -6          limit a rule to IPv4 or IPv6\n"
	      "  -j, --json      print JSON\n"
	      "  -s, --stats     show each rule's counters (list)\n"
	      "  -b, --batch FILE\n"
	      "                  apply the commands of FILE (- for standard input)\n"
	      "                  all together, or none of them\n"
	      "  -V, --version   print the version\n"
	      "\n"
	      "See portctl(8) for more.\n", f);
}

static const struct command *find_command(const char *name)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(commands); i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	return NULL;
}

static int help(int argc, char **argv)
{
	const struct command *c;

	if (argc == 0) {
		usage_all(stdout);
		return EXIT_OK;
	}
	c = find_command(argv[0]);
	if (!c) {
		errorf("unknown command \"%s\"; try \"portctl help\"", argv[0]);
		return EXIT_USAGE;
	}
	printf("Usage: %s", c->usage);
	return EXIT_OK;
}

static void refuse_option(const struct command *c, const char *option)
{
	errorf("option %s does not apply to \"%s\"; try \"portctl %s help\"",
	       option, c->name, c->name);
}

/* Options that do not apply are refused rather than silently ignored. */
static int check_options(const struct command *c, const struct options *opt)
{
	const char *bad = NULL;

	if (opt->family && !(c->takes & TAKES_FAMILY))
		bad = opt->family == AF_INET ? "-4" : "-6";
	else if (opt->json && !(c->takes & TAKES_JSON))
		bad = "-j";
	else if (opt->stats && !(c->takes & TAKES_STATS))
		bad = "-s";
	if (!bad)
		return 0;
	refuse_option(c, bad);
	return EXIT_USAGE;
}

/* word is one of is_option()'s. */
static bool takes_option(const struct command *c, const char *word)
{
	switch (word[1]) {
	case '4':
	case '6':
		return c->takes & TAKES_FAMILY;
	case 'j':
		return c->takes & TAKES_JSON;
	}
	return c->takes & TAKES_STATS;
}

static bool is_option(const char *word)
{
	return word[0] == '-' && word[1] && strchr("46js", word[1]) &&
	       !word[2];
}

static int check_arguments(const struct command *c, int argc, char **argv)
{
	if (!(c->takes & NO_ARGUMENTS) || argc == 0)
		return 0;
	/* Moved before the command, it would be refused all the same. */
	if (is_option(argv[0]) && !takes_option(c, argv[0]))
		refuse_option(c, argv[0]);
	else if (is_option(argv[0]))
		errorf("options go before the command, as in \"portctl %s %s\"",
		       argv[0], c->name);
	else
		errorf("%s takes no arguments (found \"%s\"); try \"portctl %s help\"",
		       c->name, argv[0], c->name);
	return EXIT_USAGE;
}

static int finish(int status)
{
	/* A full disk or a closed pipe must not pass for success. */
	if (fflush(stdout) || ferror(stdout)) {
		if (status == EXIT_OK)
			errorf("could not write the output");
		return status ? status : EXIT_ERROR;
	}
	return status;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "stats", no_argument, NULL, 's' },
		{ "batch", required_argument, NULL, 'b' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct options opt = { 0 };
	const char *batch = NULL;
	const struct command *c;
	const char *name;
	int o;

	opterr = 0;	/* our own messages, as sentences */
	while ((o = getopt_long(argc, argv, "+46jsb:Vh", longopts, NULL)) != -1) {
		switch (o) {
		case '4':
		case '6':
			if (opt.family) {
				errorf("give at most one of -4 and -6");
				return EXIT_USAGE;
			}
			opt.family = o == '4' ? AF_INET : AF_INET6;
			break;
		case 'j':
			opt.json = true;
			break;
		case 's':
			opt.stats = true;
			break;
		case 'b':
			batch = optarg;
			break;
		case 'V':
			printf("portctl %s\n", PORTCTL_VERSION);
			return finish(EXIT_OK);
		case 'h':
			usage_all(stdout);
			return finish(EXIT_OK);
		default:
			if (optopt == 'b')
				errorf("option -b needs a file name (or - for standard input)");
			else if (optopt)
				errorf("unknown option \"-%c\"; try \"portctl help\"",
				       optopt);
			else
				errorf("unknown option \"%s\"; try \"portctl help\"",
				       argv[optind - 1]);
			return EXIT_USAGE;
		}
	}
	argc -= optind;
	argv += optind;

	if (batch) {
		if (argc) {
			errorf("-b takes no command (found \"%s\"): the commands are in the file",
			       argv[0]);
			return EXIT_USAGE;
		}
		if (opt.family || opt.json || opt.stats) {
			errorf("-b takes no other option: put -4 or -6 on the lines of the file");
			return EXIT_USAGE;
		}
		return finish(run_batch(batch));
	}

	name = argc ? argv[0] : "list";	/* no command: the useful thing */
	c = find_command(name);
	if (!c) {
		errorf("unknown command \"%s\"; try \"portctl help\"", name);
		return EXIT_USAGE;
	}
	if (!c->run)
		return finish(help(argc - 1, argv + 1));
	if (argc >= 2 && !strcmp(argv[1], "help")) {
		if (argc > 2) {
			errorf("unexpected \"%s\" after \"help\"", argv[2]);
			return EXIT_USAGE;
		}
		printf("Usage: %s", c->usage);
		return finish(EXIT_OK);
	}
	if (check_options(c, &opt) ||
	    check_arguments(c, argc ? argc - 1 : 0, argv + 1))
		return EXIT_USAGE;
	print_set_json(opt.json);
	return finish(c->run(argc ? argc - 1 : 0, argv + 1, &opt));
}
