// SPDX-License-Identifier: GPL-2.0
#include "parse.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/portdispatch.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "util.h"

#define TARGET_HINT "\"pid PID [fd FD]\" or \"port PORT\""

static int parse_proto(const char *word, uint8_t *proto)
{
	if (!strcmp(word, "tcp"))
		*proto = IPPROTO_TCP;
	else if (!strcmp(word, "udp"))
		*proto = IPPROTO_UDP;
	else
		return -1;
	return 0;
}

/* A number the kernel will judge; what cannot be a u32 is refused here. */
static int parse_number(const char *word, const char *what, uint32_t *out)
{
	if (!parse_u32(word, out))
		return 0;
	if (errno == ERANGE)
		errorf("\"%s\" is too large to be %s", word, what);
	else
		errorf("\"%s\" is not %s", word, what);
	return -1;
}

static int parse_ports(const char *word, struct rule_spec *spec)
{
	size_t len = strlen(word);
	char buf[64];
	char *dash;

	if (len >= sizeof(buf)) {
		errno = EINVAL;
		goto bad;
	}
	memcpy(buf, word, len + 1);
	dash = strchr(buf, '-');
	if (dash)
		*dash = '\0';
	if (parse_u32(buf, &spec->port_min))
		goto bad;
	if (dash) {
		if (parse_u32(dash + 1, &spec->port_max))
			goto bad;
		spec->has_port_max = true;
	} else {
		spec->port_max = spec->port_min;
	}
	return 0;
bad:
	/* Say "too large" only when the syntax was right. */
	if (errno == ERANGE)
		errorf("\"%s\" is too large to be a port number", word);
	else
		errorf("\"%s\" is not a port or port range (expected PORT or PORT-PORT)",
		       word);
	return -1;
}

/*
 * An IPv4 packet reaches the table with its IPv4 addresses, never as
 * ::ffff:a.b.c.d, so a prefix of IPv4-mapped addresses only (::ffff:0:0/96
 * or longer) matches nothing: say what to write instead. The kernel
 * refuses it too, for other clients.
 */
static int refuse_v4mapped(const char *word, const struct rule_spec *spec)
{
	static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };
	const char *without = spec->family == AF_INET6 ? ", without -6" : "";
	const char *what = "holds only IPv4-mapped IPv6 addresses";
	char v4[INET_ADDRSTRLEN], instead[64];
	unsigned int plen = spec->dst_plen;

	if (spec->dst_family != AF_INET6 || plen < 96 || plen > 128 ||
	    memcmp(spec->dst, mapped, sizeof(mapped)))
		return 0;
	inet_ntop(AF_INET, spec->dst + 12, v4, sizeof(v4));
	if (plen == 96) {
		snprintf(instead, sizeof(instead), "-4 instead of %sthe prefix",
			 *without ? "-6 and " : "");
	} else if (plen == 128) {
		what = "is an IPv4-mapped IPv6 address";
		snprintf(instead, sizeof(instead), "\"dst %s\" instead%s", v4,
			 without);
	} else {
		snprintf(instead, sizeof(instead), "\"dst %s/%u\" instead%s",
			 v4, plen - 96, without);
	}
	errorf("\"%s\" %s, which no packet is sent to (IPv4 packets are matched by their IPv4 address): write %s",
	       word, what, instead);
	return -1;
}

static int parse_prefix(const char *word, struct rule_spec *spec)
{
	char buf[INET6_ADDRSTRLEN + 8];
	size_t wordlen = strlen(word);
	const char *plen = NULL;
	uint32_t len;
	char *slash;
	int max;

	if (wordlen >= sizeof(buf))
		goto bad;
	memcpy(buf, word, wordlen + 1);
	slash = strchr(buf, '/');
	if (slash) {
		*slash = '\0';
		plen = slash + 1;
	}
	if (inet_pton(AF_INET, buf, spec->dst) == 1) {
		spec->dst_family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, spec->dst) == 1) {
		spec->dst_family = AF_INET6;
		max = 128;
	} else {
		goto bad;
	}
	if (!plen) {
		len = (uint32_t)max;
	} else if (parse_u32(plen, &len)) {
		goto bad;
	} else if (len > UINT8_MAX) {
		/* RULE_DST_PLEN is a u8: this cannot even be sent. */
		errorf("\"%s\": the prefix length %u is too large (at most %d)",
		       word, len, max);
		return -1;
	}
	spec->dst_plen = (uint8_t)len;
	spec->has_dst = true;
	return refuse_v4mapped(word, spec);
bad:
	errorf("\"%s\" is not an IPv4 or IPv6 prefix (e.g. 192.0.2.0/24 or 2001:db8::/64)",
	       word);
	return -1;
}

/*
 * The value at *i, taken, or NULL when the words end there or a comma
 * ends the target: "port ," lacks its number as "port" at the end does.
 */
static const char *take_value(int argc, const char *const *argv, int *i)
{
	if (*i >= argc || !strcmp(argv[*i], ","))
		return NULL;
	return argv[(*i)++];
}

/* TARGET := pid PID [fd FD] | port PORT; argv[*i] is its first word. */
static int parse_target(int argc, const char *const *argv, int *i,
			struct target_spec *t)
{
	const char *kind = argv[(*i)++], *value;

	if (!strcmp(kind, "port")) {
		value = take_value(argc, argv, i);
		if (!value) {
			errorf("\"port\" needs a port number");
			return -1;
		}
		t->kind = SPEC_TARGET_PORT;
		return parse_number(value, "a port", &t->port);
	}
	if (strcmp(kind, "pid")) {
		errorf("\"%s\" is not a target (expected " TARGET_HINT ")", kind);
		return -1;
	}
	value = take_value(argc, argv, i);
	if (!value) {
		errorf("\"pid\" needs a process id");
		return -1;
	}
	t->kind = SPEC_TARGET_SOCKET;
	if (parse_number(value, "a process id", &t->pid))
		return -1;
	if (*i < argc && !strcmp(argv[*i], "fd")) {
		(*i)++;
		value = take_value(argc, argv, i);
		if (!value) {
			errorf("\"fd\" needs a file descriptor number");
			return -1;
		}
		t->has_pid_fd = true;
		return parse_number(value, "a file descriptor number",
				    &t->pid_fd);
	}
	return 0;
}

/* [weight W] after a target: W is 1-255. */
static int parse_weight(int argc, const char *const *argv, int *i,
			struct target_spec *t)
{
	const char *value;
	uint32_t w = 0;

	if (*i >= argc || strcmp(argv[*i], "weight"))
		return 0;
	(*i)++;
	value = take_value(argc, argv, i);
	if (!value) {
		errorf("\"weight\" needs a number from 1 to 255");
		return -1;
	}
	if (parse_u32(value, &w) && errno != ERANGE) {
		errorf("\"%s\" is not a weight (a number from 1 to 255)", value);
		return -1;
	}
	if (w < 1 || w > SPEC_WEIGHT_MAX) {
		errorf("weight %s is out of range 1-%d", value, SPEC_WEIGHT_MAX);
		return -1;
	}
	t->has_weight = true;
	t->weight = w;
	return 0;
}

/*
 * TARGET-LIST := TARGET [weight W] [, TARGET [weight W]]...; *i points
 * after "to", and is left after the list.
 */
static int parse_targets(int argc, const char *const *argv, int *i,
			 struct rule_spec *spec)
{
	for (;;) {
		struct target_spec *t;

		if (*i >= argc) {
			if (spec->ntargets)
				errorf("the target list ends with \",\": a target must follow it");
			else
				errorf("\"to\" needs a target: " TARGET_HINT);
			return -1;
		}
		if (!strcmp(argv[*i], ",")) {
			if (spec->ntargets)
				errorf("the target list has an empty member: a target must come between two commas");
			else
				errorf("\"to\" needs a target before \",\"");
			return -1;
		}
		if (spec->ntargets == SPEC_TARGETS_MAX) {
			errorf("too many targets: a rule has at most %d",
			       SPEC_TARGETS_MAX);
			return -1;
		}
		spec->targets = xreallocarray(spec->targets, spec->ntargets + 1,
					      sizeof(*spec->targets));
		t = &spec->targets[spec->ntargets++];
		memset(t, 0, sizeof(*t));
		t->fd = -1;
		if (parse_target(argc, argv, i, t) ||
		    parse_weight(argc, argv, i, t))
			return -1;
		if (*i >= argc)
			return 0;
		if (!strcmp(argv[*i], "weight")) {
			errorf("\"weight\" is given twice for one target");
			return -1;
		}
		if (!strcmp(argv[*i], "pid") || !strcmp(argv[*i], "port")) {
			errorf("a comma must come before \"%s\": the targets of a list are separated by commas",
			       argv[*i]);
			return -1;
		}
		if (strcmp(argv[*i], ","))
			return 0;
		(*i)++;
	}
}

/*
 * The words, with the commas of those after the first two (protocol and
 * ports) as words of their own: "8443," is "8443" and ",", so that a list
 * reads the same written "a, b", "a , b" or "a,b". Returns the number of
 * words in *out, which points into *text; both are to be freed.
 */
static int split_commas(int argc, char **argv, const char ***out,
			char **text)
{
	size_t words = 0, size = 0;
	char *p;
	int i, n = 0;

	for (i = 0; i < argc; i++) {
		size_t len = strlen(argv[i]);

		words += len ? len : 1;
		size += 2 * len + 1;
	}
	*out = xcalloc(words, sizeof(**out));
	*text = p = xmalloc(size);
	for (i = 0; i < argc; i++) {
		const char *w = argv[i];

		if (i < 2 || !strchr(w, ',')) {
			(*out)[n++] = w;
			continue;
		}
		while (*w) {
			size_t len = strcspn(w, ",");

			if (!len) {
				(*out)[n++] = ",";
				w++;
				continue;
			}
			memcpy(p, w, len);
			p[len] = '\0';
			(*out)[n++] = p;
			p += len + 1;
			w += len;
		}
	}
	return n;
}

static const char *family_option(uint8_t family)
{
	return family == AF_INET ? "-4" : "-6";
}

static int parse_words(const char *name, uint8_t cmd, uint8_t family,
		       int argc, const char *const *argv,
		       struct rule_spec *spec)
{
	bool wants_target = cmd != PORTDISPATCH_CMD_RULE_DEL;
	int i = 0;

	memset(spec, 0, sizeof(*spec));
	spec->cmd = cmd;
	spec->family = family;

	if (i >= argc) {
		errorf("%s needs a protocol (tcp or udp); try \"portctl %s help\"",
		       name, name);
		return EXIT_USAGE;
	}
	if (parse_proto(argv[i], &spec->proto)) {
		errorf("\"%s\" is not a protocol (expected tcp or udp)", argv[i]);
		return EXIT_USAGE;
	}
	if (++i >= argc) {
		errorf("\"%s\" needs a port or port range (PORT or PORT-PORT)",
		       argv[0]);
		return EXIT_USAGE;
	}
	if (parse_ports(argv[i++], spec))
		return EXIT_USAGE;

	while (i < argc) {
		const char *word = argv[i++];

		if (!strcmp(word, "dst") && !spec->has_dst) {
			if (i >= argc) {
				errorf("\"dst\" needs a prefix (e.g. 192.0.2.0/24 or 2001:db8::/64)");
				return EXIT_USAGE;
			}
			if (parse_prefix(argv[i++], spec))
				return EXIT_USAGE;
			if (family && family != spec->dst_family) {
				errorf("%s limits the rule to %s, but \"%s\" is an %s prefix",
				       family_option(family),
				       family == AF_INET ? "IPv4" : "IPv6",
				       argv[i - 1],
				       family == AF_INET ? "IPv6" : "IPv4");
				return EXIT_USAGE;
			}
		} else if (!strcmp(word, "to") && wants_target &&
			   !spec->ntargets) {
			if (parse_targets(argc, argv, &i, spec))
				return EXIT_USAGE;
		} else if (!strcmp(word, "to") && !wants_target) {
			errorf("%s takes no target: a rule is named by its protocol, ports and prefix",
			       name);
			return EXIT_USAGE;
		} else if (!strcmp(word, "dst") || !strcmp(word, "to")) {
			errorf("\"%s\" is given twice", word);
			return EXIT_USAGE;
		} else if (word[0] == '-' && word[1] && !word[2] &&
			   strchr("46js", word[1])) {
			errorf("options go before the command, as in \"portctl %s %s ...\"",
			       word, name);
			return EXIT_USAGE;
		} else {
			errorf("unexpected \"%s\" (expected %s)", word,
			       wants_target ? "\"dst PREFIX\" or \"to TARGET\"" :
					      "\"dst PREFIX\"");
			return EXIT_USAGE;
		}
	}

	if (wants_target && !spec->ntargets) {
		errorf("%s needs a target: \"to pid PID [fd FD]\" or \"to port PORT\"",
		       name);
		return EXIT_USAGE;
	}
	return 0;
}

int parse_rule(const char *name, uint8_t cmd, uint8_t family,
	       int argc, char **argv, struct rule_spec *spec)
{
	const char **words;
	char *text;
	int n = split_commas(argc, argv, &words, &text);
	int ret = parse_words(name, cmd, family, n, words, spec);

	free(words);
	free(text);
	if (ret)
		spec_free(spec);
	return ret;
}

void spec_free(struct rule_spec *spec)
{
	free(spec->targets);
	spec->targets = NULL;
	spec->ntargets = 0;
}

uint8_t spec_family(const struct rule_spec *spec)
{
	if (spec->family)
		return spec->family;
	return spec->has_dst ? spec->dst_family : 0;
}

void spec_words(const struct rule_spec *spec, char *buf, size_t len)
{
	char addr[INET6_ADDRSTRLEN] = "";
	char ports[24];

	if (spec->has_port_max)
		snprintf(ports, sizeof(ports), "%u-%u", spec->port_min,
			 spec->port_max);
	else
		snprintf(ports, sizeof(ports), "%u", spec->port_min);
	if (spec->has_dst)
		inet_ntop(spec->dst_family, spec->dst, addr, sizeof(addr));
	if (spec->has_dst)
		snprintf(buf, len, "%s %s dst %s/%u",
			 spec->proto == IPPROTO_TCP ? "tcp" : "udp", ports,
			 addr, spec->dst_plen);
	else
		snprintf(buf, len, "%s %s",
			 spec->proto == IPPROTO_TCP ? "tcp" : "udp", ports);
}
