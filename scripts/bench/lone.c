// SPDX-License-Identifier: GPL-2.0
/*
 * lone: what single requests cost as a port's prefixes grow, for
 * scripts/bench/changes. Speaks the family directly (selftests'
 * netlink_helpers.h): no process start in what it times.
 *
 *   lone -n COUNT [-c CHUNKS] [-r ROUNDS]
 *
 * Adds COUNT prefix rules "udp 5300 dst 10.X.Y.Z/32 to port 5353", one
 * acknowledged request each, and prints the mean microseconds per add of
 * each of CHUNKS equal stretches: flat when a lone add costs the same
 * beside few prefixes and many, rising when it grows with them. Then,
 * ROUNDS times in turn, one add (and its delete) beside the COUNT
 * prefixes and one on an empty port, and the medians of both. The caller
 * must flush afterwards.
 */
#include <time.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "netlink_helpers.h"
#pragma GCC diagnostic pop

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* One RULE_ADD or RULE_DEL of udp PORT dst 10.X.Y.Z/32; its microseconds. */
static double lone(struct pdn *n, uint8_t cmd, uint32_t port, uint32_t i)
{
	struct pdn_status st;
	struct pdn_req r;
	char prefix[32];
	double t0;

	snprintf(prefix, sizeof(prefix), "10.%u.%u.%u/32", (i >> 16) & 255,
		 (i >> 8) & 255, i & 255);
	pdn_req_init(n, &r, cmd, 0);
	pdn_rule_key(&r, IPPROTO_UDP, port, 0);
	pdn_rule_dst(&r, prefix);
	if (cmd != PORTDISPATCH_CMD_RULE_DEL)
		pdn_target_port(&r, 5353);
	t0 = now_us();
	if (pdn_do(n, &r, &st)) {
		fprintf(stderr, "lone: %s %s: %s %s\n",
			cmd == PORTDISPATCH_CMD_RULE_DEL ? "del" : "add", prefix,
			strerror(st.err), st.msg);
		exit(1);
	}
	return now_us() - t0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, unsigned int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return v[n / 2];
}

int main(int argc, char **argv)
{
	unsigned int count = 65536, chunks = 16, rounds = 50, i, c;
	double *beside, *empty, sum;
	struct pdn n;
	int opt, err;

	while ((opt = getopt(argc, argv, "n:c:r:")) != -1) {
		switch (opt) {
		case 'n': count = strtoul(optarg, NULL, 0); break;
		case 'c': chunks = strtoul(optarg, NULL, 0); break;
		case 'r': rounds = strtoul(optarg, NULL, 0); break;
		default:
			fprintf(stderr, "usage: lone -n COUNT [-c CHUNKS] [-r ROUNDS]\n");
			return 2;
		}
	}
	if (!chunks || count < chunks || !rounds)
		return 2;
	err = pdn_open(&n);
	if (err) {
		fprintf(stderr, "lone: cannot open the family: %s\n", strerror(-err));
		return 1;
	}

	printf("lone adds, us per add, by stretch of %u:", count / chunks);
	for (c = 0, i = 0; c < chunks; c++) {
		for (sum = 0; i < (c + 1) * (count / chunks); i++)
			sum += lone(&n, PORTDISPATCH_CMD_RULE_ADD, 5300, i);
		printf(" %.0f", sum / (count / chunks));
		fflush(stdout);
	}
	printf("\n");

	beside = calloc(rounds, sizeof(*beside));
	empty = calloc(rounds, sizeof(*empty));
	if (!beside || !empty)
		return 1;
	for (c = 0; c < rounds; c++) {
		beside[c] = lone(&n, PORTDISPATCH_CMD_RULE_ADD, 5300, i);
		lone(&n, PORTDISPATCH_CMD_RULE_DEL, 5300, i);
		empty[c] = lone(&n, PORTDISPATCH_CMD_RULE_ADD, 5400, i);
		lone(&n, PORTDISPATCH_CMD_RULE_DEL, 5400, i);
	}
	printf("one add beside %u prefixes: %.0f us; on an empty port: %.0f us\n",
	       count, median(beside, rounds), median(empty, rounds));
	pdn_close(&n);
	return 0;
}
