// SPDX-License-Identifier: GPL-2.0
/*
 * Rules of several targets ("groups", issue 15): new flows spread by a hash
 * of their 4-tuple in proportion to the targets' weights, stable while the
 * rule is unchanged, moved as little as a change allows, and never lost to
 * a target that cannot take them.
 *
 *   clients 127.0.0.1:EPHEMERAL --> 127.0.0.1:80 (TCP), :53 (UDP, and ::1)
 *                 |  a rule of the port to members M0..Mn-1, by weight
 *                 v
 *   members: TCP listeners on 8081.., UDP sockets on 5301.., of this
 *   process; named by fd, or by port
 *
 * - weights_9_1: 10,000 connections to a rule of weights 9:1; 90% +- 2%
 *   land on the first, and each member's TARGET_STATS steered is what it
 *   accepted, the rule's the total.
 * - udp_tuples_keep_member: 1,000 UDP 4-tuples (a client socket each, on
 *   its own port; half IPv4, half IPv6) send 10 datagrams each,
 *   interleaved, to 3 equal dual-stack members: every datagram of a tuple
 *   reaches the same member.
 * - replace_moves_only_what_must: ~2,000 tuples mapped to 4 members (two
 *   by fd, two by port) before and after each RULE_REPLACE: the same
 *   members in another order move nothing; removing one moves exactly its
 *   tuples, over the three others; a weight raised moves tuples only to
 *   its member, lowered again only from it, back to where they were; a
 *   member's socket closing (the reaper's replace) moves only its tuples.
 * - closed_member_skipped: of 3 listeners one closes; 300 connections at
 *   once all reach the two others; the reaper's RULE_REPLACE_NTF shows
 *   the rule (same RULE_ID) with the two; closing them ends it with
 *   RULE_DEL_NTF reason SOCKET_CLOSED.
 * - unready_members_skipped: a port member with nothing listening and a
 *   listener shut down are passed over, and counted as undeliverable of
 *   their own; when no member can take a flow the normal lookup answers.
 * - refusals: 17 targets, weight 0 or 256, one socket or port twice:
 *   EINVAL with a message saying what is wrong and pointing at the
 *   attribute at fault; an IPv4 socket beside an IPv6-only one:
 *   EAFNOSUPPORT (the header's errno for a socket that cannot take the
 *   family); and the table untouched.
 * - dump_shape: a lone target's weight is accepted and forgotten (no
 *   TARGET_WEIGHT nor TARGET_STATS); a group lists its targets in order,
 *   each with its weight and counters.
 *
 * Every test runs in a network namespace of its own; a normal listener
 * or UDP socket on the rule's port would answer a flow that no member
 * took, so the TCP tests keep one there to see such flows arrive. The
 * flows are many, so they are made in bursts: nonblocking connects, then
 * the listeners accept until each one is taken (loopback handles a SYN
 * within connect()). On a slow kernel (PD_TIME_SCALE above 1: the debug
 * kernel's sanitizers) every test makes fewer flows (a third to a tenth),
 * and weights_9_1's tolerance grows as the binomial spread does.
 */

#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "harness.h"
#include "pd_test.h"
/* The requests of netlink_test.c that these tests never make. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "netlink_helpers.h"
#pragma GCC diagnostic pop

#define note(...) do { ksft_print_msg(__VA_ARGS__); fflush(stdout); } while (0)

#define LO		"127.0.0.1"
#define LO6		"::1"
#define TCP_PORT	80	/* the rules' ports */
#define UDP_PORT	53
#define TCP_BASE	8081	/* member i listens on TCP_BASE + i */
#define UDP_BASE	5301	/* ... or is bound to UDP_BASE + i */
#define DEAD_PORT	8999	/* nothing listens there */
#define MAXM		8	/* members a test makes, at most */

/* Bounds on Debian's kernels, scaled to this one. */
#define WAIT_MS		pd_ms(3000)
/* How soon the reaper acts on a closed socket: twice a second. */
#define REAP_MS		pd_ms(3000)

#define WINDOW		128	/* connections in flight */

/*
 * How many flows a test makes: @n on Debian's kernels, @slow on a slow
 * one (PD_TIME_SCALE above 1): the debug kernel's sanitizers make a flow
 * cost 15 to 35 times as much there (10 ms a connection, 0.5 ms a
 * datagram), and it runs the same code paths with fewer.
 */
static unsigned int flows(unsigned int n, unsigned int slow)
{
	return pd_time_scale() > 1 ? slow : n;
}

FIXTURE(group) {
	struct pdn nl;
};

FIXTURE_SETUP(group)
{
	struct rlimit rl;
	int err = pd_enter_netns();

	ASSERT_EQ(0, err) TH_LOG("private network namespace: %s",
				 strerror(-err));
	err = pdn_open(&self->nl);
	if (err == -ENOENT)
		SKIP(_exit(255), "no \"%s\" generic netlink family: the module is not loaded",
		     PORTDISPATCH_FAMILY_NAME);
	ASSERT_EQ(0, err) TH_LOG("portdispatch's netlink: %s", strerror(-err));
	/* A client socket per UDP tuple: a few thousand. */
	ASSERT_EQ(0, getrlimit(RLIMIT_NOFILE, &rl));
	rl.rlim_cur = rl.rlim_max;
	ASSERT_EQ(0, setrlimit(RLIMIT_NOFILE, &rl));
}

FIXTURE_TEARDOWN(group)
{
	/* Sockets, rules and namespace go with the process. */
}

/* ---- members ---------------------------------------------------------- */

/* A TCP listener on LO:@port, nonblocking, with room for a burst. */
static int listener(int port)
{
	int fd = pd_server(AF_INET, SOCK_STREAM, LO, port, false);

	if (fd < 0)
		return -1;
	listen(fd, 1024);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	return fd;
}

/*
 * A UDP socket on LO:@port (@dual: [::]:@port, both families),
 * nonblocking, whose receive buffer holds every datagram of a round (the
 * test is root in its guest).
 */
static int udp_member(int port, bool dual)
{
	int fd = dual ? pd_server(AF_INET6, SOCK_DGRAM, "::", port, false) :
			pd_server(AF_INET, SOCK_DGRAM, LO, port, false);
	int size = 8 << 20;

	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)))
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	fcntl(fd, F_SETFL, O_NONBLOCK);
	return fd;
}

static uint64_t inode_of(int fd)
{
	struct stat st;

	return fstat(fd, &st) ? 0 : st.st_ino;
}

/* ---- TCP: many connections -------------------------------------------- */

/*
 * What a burst of connections came to. SYNs sent again are only logged: a
 * guest that its host stalls past the first RTO (1 s) sends some, to no
 * harm, and a SYN that the module handed to a socket that dropped it
 * would be counted again when sent again, which the checks of the
 * counters against what was accepted see.
 */
struct tally {
	unsigned long took[MAXM + 1];	/* accepted, per listener */
	unsigned long failed;		/* refused, reset, never accepted */
	int err;			/* the first failure's errno */
	long ms;			/* how long it took */
	long retrans;			/* SYNs sent again meanwhile */
};

static void tally_fail(struct tally *t, int err)
{
	if (!t->failed++)
		t->err = err;
}

/* SYNs sent again because the first went unanswered. */
static long syn_retrans(void)
{
	return pd_proc_counter("/proc/net/netstat", "TcpExt", "TCPSynRetrans");
}

/* Done with a client: a reset, so that no TIME_WAIT socket is left. */
static void abort_close(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

/*
 * @count connections to LO:@port, @window at a time: nonblocking
 * connects, then @ls[0..@nl) accept until every one is taken, a client
 * fails, or WAIT_MS passes. What each listener took lands in @t.
 */
static void connect_many(const int *ls, int nl, int port, unsigned int count,
			 unsigned int window, struct tally *t)
{
	struct pollfd p[MAXM + 1 + 512];
	struct sockaddr_storage ss;
	socklen_t len = pd_sockaddr(AF_INET, LO, port, &ss);
	unsigned int done, i, m;
	int cli[512], j;
	long t0 = pd_now_ms(), retrans = syn_retrans();

	if (window > 512)
		window = 512;
	for (done = 0; done < count; done += m) {
		unsigned int open = 0, taken = 0;
		long end;

		m = count - done < window ? count - done : window;
		for (i = 0; i < m; i++) {
			cli[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK |
					SOCK_CLOEXEC, 0);
			if (cli[i] < 0) {
				tally_fail(t, errno);
				continue;
			}
			if (connect(cli[i], (struct sockaddr *)&ss, len) &&
			    errno != EINPROGRESS) {
				tally_fail(t, errno);
				close(cli[i]);
				cli[i] = -1;
				continue;
			}
			open++;
		}
		end = pd_now_ms() + WAIT_MS;
		while (taken < open) {
			long left = end - pd_now_ms();
			int ret;

			for (j = 0; j < nl; j++)
				p[j] = (struct pollfd){ .fd = ls[j],
							.events = POLLIN };
			/* Only POLLERR and POLLHUP: a refused or reset one. */
			for (i = 0; i < m; i++)
				p[nl + i] = (struct pollfd){ .fd = cli[i] };
			ret = left > 0 ? poll(p, nl + m, left) : 0;
			if (ret <= 0)
				break;
			for (j = 0; j < nl; j++) {
				int a;

				if (!(p[j].revents & POLLIN))
					continue;
				while ((a = accept4(ls[j], NULL, NULL,
						    SOCK_CLOEXEC)) >= 0) {
					t->took[j]++;
					taken++;
					close(a);
				}
			}
			for (i = 0; i < m; i++) {
				socklen_t elen = sizeof(int);
				int err = 0;

				if (!(p[nl + i].revents & (POLLERR | POLLHUP)))
					continue;
				getsockopt(cli[i], SOL_SOCKET, SO_ERROR, &err,
					   &elen);
				tally_fail(t, err ?: ECONNRESET);
				close(cli[i]);
				cli[i] = -1;
				open--;
			}
		}
		for (; taken < open; taken++)
			tally_fail(t, ETIMEDOUT);
		for (i = 0; i < m; i++)
			if (cli[i] >= 0)
				abort_close(cli[i]);
	}
	t->ms = pd_now_ms() - t0;
	t->retrans = syn_retrans() - retrans;
}

/* ---- UDP: tuples ------------------------------------------------------ */

/* A datagram: which tuple sent it, in which round. */
struct probe {
	uint32_t tuple, round;
};

#define NONE		-1	/* no member got the tuple's datagram */
#define SEVERAL		-2	/* more than one did */

/*
 * @n client sockets, each on a port of its own: a 4-tuple each. With
 * @mixed, the odd ones are IPv6 (on ::1).
 */
static int *udp_clients(unsigned int n, bool mixed)
{
	struct sockaddr_storage ss[2];
	socklen_t len[2] = {
		pd_sockaddr(AF_INET, LO, 0, &ss[0]),
		pd_sockaddr(AF_INET6, LO6, 0, &ss[1]),
	};
	int *c = calloc(n, sizeof(*c));
	unsigned int i, f;

	for (i = 0; c && i < n; i++) {
		f = mixed && i % 2;
		c[i] = socket(f ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC,
			      0);
		if (c[i] < 0 ||
		    bind(c[i], (struct sockaddr *)&ss[f], len[f])) {
			snprintf(pd_setup_error, sizeof(pd_setup_error),
				 "client socket %u: %s", i, strerror(errno));
			while (i--)
				close(c[i]);
			free(c);
			return NULL;
		}
	}
	return c;
}

/* Reads what the members hold; the count of this round's datagrams. */
static unsigned int udp_drain(const int *m, int nm, uint32_t round, int *who)
{
	unsigned int got = 0;
	struct probe pr;
	int k;

	for (k = 0; k < nm; k++) {
		while (recv(m[k], &pr, sizeof(pr), MSG_DONTWAIT) ==
		       sizeof(pr)) {
			if (pr.round != round)
				continue;	/* late, from a failed round */
			got++;
			who[pr.tuple] = who[pr.tuple] == NONE ? k : SEVERAL;
		}
	}
	return got;
}

/*
 * Each of the @n tuples sends one datagram to LO:UDP_PORT (@mixed: the
 * odd ones to [LO6]:UDP_PORT); @who[i] says which member (index in @m)
 * got tuple i's, NONE or SEVERAL. Returns how many datagrams arrived.
 */
static unsigned int udp_map(const int *cli, unsigned int n, bool mixed,
			    const int *m, int nm, uint32_t round, int *who)
{
	struct sockaddr_storage ss[2];
	socklen_t len[2] = {
		pd_sockaddr(AF_INET, LO, UDP_PORT, &ss[0]),
		pd_sockaddr(AF_INET6, LO6, UDP_PORT, &ss[1]),
	};
	struct pollfd p[MAXM];
	unsigned int i, got = 0;
	long end;
	int k;

	for (i = 0; i < n; i++)
		who[i] = NONE;
	for (i = 0; i < n; i++) {
		struct probe pr = { .tuple = i, .round = round };

		unsigned int f = mixed && i % 2;

		sendto(cli[i], &pr, sizeof(pr), 0, (struct sockaddr *)&ss[f],
		       len[f]);
		if (i % 256 == 255)
			got += udp_drain(m, nm, round, who);
	}
	end = pd_now_ms() + WAIT_MS;
	for (;;) {
		got += udp_drain(m, nm, round, who);
		if (got >= n || pd_now_ms() > end)
			break;
		for (k = 0; k < nm; k++)
			p[k] = (struct pollfd){ .fd = m[k], .events = POLLIN };
		poll(p, nm, end - pd_now_ms() > 0 ? end - pd_now_ms() : 0);
	}
	return got;
}

/* ---- the table -------------------------------------------------------- */

/* A request must succeed. */
#define ASSERT_DONE(call, st, what)					\
	ASSERT_EQ(0, (call))						\
		TH_LOG("%s: %s%s \"%s\"", (what), strerror((st)->err),	\
		       (st)->local ? " (locally)" : "", (st)->msg)

/* The rule on PROTO PORT, as a dump shows it now, into @r. */
static void __get_rule(struct __test_metadata *_metadata, struct pdn *nl,
		       uint8_t proto, uint32_t port, struct pdn_rule *r)
{
	const struct pdn_rule *found;
	struct pdn_dump d;
	int err = pdn_dump(nl, &d);

	ASSERT_EQ(0, err) TH_LOG("dump: %s \"%s\"", strerror(err), d.msg);
	found = pdn_dump_find(&d, proto, port);
	if (found)
		*r = *found;
	pdn_dump_free(&d);
	ASSERT_NE(NULL, found) TH_LOG("no rule on %s %u in the dump",
				      proto == IPPROTO_TCP ? "tcp" : "udp",
				      port);
	ASSERT_FALSE(r->malformed);
}

#define get_rule(proto, port, r)					\
	__get_rule(_metadata, &self->nl, proto, port, r)

/*
 * A group as dumped: its targets the sockets @fds in that order (or the
 * port, where @fds[i] is negative: -port), with @weights; each with its
 * counters.
 */
static void __check_members(struct __test_metadata *_metadata,
			    const struct pdn_rule *r, const int *fds,
			    const uint32_t *weights, unsigned int n)
{
	unsigned int i;

	ASSERT_EQ(n, r->ntargets)
		TH_LOG("rule %u: %u targets in the dump, expected %u", r->id,
		       r->ntargets, n);
	for (i = 0; i < n; i++) {
		const struct pdn_target *t = &r->m[i];

		if (fds[i] < 0) {
			EXPECT_EQ((uint32_t)-fds[i], t->port)
				TH_LOG("rule %u, target %u: port %u, expected port %d",
				       r->id, i, t->port, -fds[i]);
		} else {
			EXPECT_EQ(inode_of(fds[i]), t->inode)
				TH_LOG("rule %u, target %u: socket inode %llu, expected fd %d's",
				       r->id, i, (unsigned long long)t->inode,
				       fds[i]);
		}
		EXPECT_TRUE(!!(t->seen & (1u << PORTDISPATCH_A_TARGET_WEIGHT)))
			TH_LOG("rule %u, target %u: no TARGET_WEIGHT", r->id, i);
		EXPECT_EQ(weights[i], t->weight)
			TH_LOG("rule %u, target %u: weight", r->id, i);
		EXPECT_TRUE(!!(t->seen & (1u << PORTDISPATCH_A_TARGET_STATS)))
			TH_LOG("rule %u, target %u: no TARGET_STATS", r->id, i);
		EXPECT_EQ((1u << PORTDISPATCH_A_RULE_STATS_STEERED) |
			  (1u << PORTDISPATCH_A_RULE_STATS_UNDELIVERABLE),
			  t->sseen)
			TH_LOG("rule %u, target %u: TARGET_STATS holds counters %#x, expected steered and undeliverable only",
			       r->id, i, t->sseen);
	}
}

#define check_members(r, fds, weights, n)				\
	__check_members(_metadata, r, fds, weights, n)

/* ---- weights ---------------------------------------------------------- */

/* Connections on Debian's kernels, and on slow ones. */
#define SPREAD_CONNS		10000
#define SPREAD_CONNS_SLOW	1000
/* 90% +- 2% at 10,000; as the binomial spread grows, 1/sqrt(n), at 1,000. */
#define SPREAD_TOL		0.02
#define SPREAD_TOL_SLOW		0.063

TEST_F_TIMEOUT(group, weights_9_1, 120)
{
	unsigned int n = flows(SPREAD_CONNS, SPREAD_CONNS_SLOW);
	double tol = n < SPREAD_CONNS ? SPREAD_TOL_SLOW : SPREAD_TOL, share;
	struct pdn_member m[2];
	struct tally t = { 0 };
	struct pdn_status st;
	struct pdn_rule r;
	int ls[3], fds[2];

	ls[0] = listener(TCP_BASE);
	ls[1] = listener(TCP_BASE + 1);
	ls[2] = listener(TCP_PORT);	/* the normal lookup's */
	ASSERT_TRUE(ls[0] >= 0 && ls[1] >= 0 && ls[2] >= 0);
	m[0] = (struct pdn_member){ .fd = ls[0], .weight = 9 };
	m[1] = (struct pdn_member){ .fd = ls[1], .weight = 1 };
	ASSERT_DONE(pdn_rule_members(&self->nl, PORTDISPATCH_CMD_RULE_ADD,
				     IPPROTO_TCP, TCP_PORT, m, 2, &st),
		    &st, "add tcp 80 to fd A weight 9, fd B weight 1");

	connect_many(ls, 3, TCP_PORT, n, WINDOW, &t);
	share = (double)t.took[0] / n;
	note("%u connections in %ld ms: %lu on A (weight 9, %.2f%%), %lu on B (weight 1), %lu on the normal listener, %lu failed, %ld SYNs sent again\n",
	     n, t.ms, t.took[0], 100 * share, t.took[1], t.took[2], t.failed,
	     t.retrans);
	EXPECT_EQ(0UL, t.failed)
		TH_LOG("%lu connections failed, the first: %s", t.failed,
		       strerror(t.err));
	EXPECT_EQ(0UL, t.took[2])
		TH_LOG("%lu connections went to the normal lookup", t.took[2]);
	EXPECT_TRUE(share > 0.9 - tol && share < 0.9 + tol)
		TH_LOG("A took %.2f%% of the connections, expected 90%% +- %.2f",
		       100 * share, 100 * tol);

	get_rule(IPPROTO_TCP, TCP_PORT, &r);
	fds[0] = ls[0];
	fds[1] = ls[1];
	check_members(&r, fds, ((const uint32_t[]){ 9, 1 }), 2);
	EXPECT_EQ(t.took[0], r.m[0].steered)
		TH_LOG("A's steered, against the connections it accepted");
	EXPECT_EQ(t.took[1], r.m[1].steered)
		TH_LOG("B's steered, against the connections it accepted");
	EXPECT_EQ(0ULL, r.m[0].undeliverable + r.m[1].undeliverable);
	EXPECT_EQ((uint64_t)n, r.steered) TH_LOG("the rule's steered");
	EXPECT_EQ(0ULL, r.undeliverable) TH_LOG("the rule's undeliverable");
}

/* ---- UDP tuples ------------------------------------------------------- */

#define TUPLES		1000
#define TUPLES_SLOW	300
#define ROUNDS		10

TEST_F(group, udp_tuples_keep_member)
{
	static int first[TUPLES], who[TUPLES];
	unsigned int n = flows(TUPLES, TUPLES_SLOW);
	unsigned long on[3] = { 0 }, moved = 0, lost = 0;
	const uint32_t weights[3] = { 1, 1, 1 };
	struct pdn_member pm[3];
	struct pdn_status st;
	struct pdn_rule r;
	unsigned int i, got;
	uint32_t round;
	int m[3], *cli, k;
	long t0;

	for (k = 0; k < 3; k++) {
		m[k] = udp_member(UDP_BASE + k, true);
		ASSERT_LE(0, m[k]);
		/* The default weight, and 1 said: the same. */
		pm[k] = (struct pdn_member){ .fd = m[k], .weight = k ? 1 : 0 };
	}
	ASSERT_DONE(pdn_rule_members(&self->nl, PORTDISPATCH_CMD_RULE_ADD,
				     IPPROTO_UDP, UDP_PORT, pm, 3, &st),
		    &st, "add udp 53 to three dual-stack fds");
	cli = udp_clients(n, true);
	ASSERT_NE(NULL, cli) TH_LOG("%s", pd_setup_error);

	t0 = pd_now_ms();
	for (round = 0; round < ROUNDS; round++) {
		got = udp_map(cli, n, true, m, 3, round, round ? who : first);
		lost += n - got;
		if (!round)
			continue;
		for (i = 0; i < n; i++) {
			if (who[i] == first[i] || who[i] == NONE)
				continue;
			if (moved++ < 5)
				TH_LOG("tuple %u: member %d in round 0, %d in round %u",
				       i, first[i], who[i], round);
		}
	}
	for (i = 0; i < n; i++)
		if (first[i] >= 0)
			on[first[i]]++;
	note("%u tuples x %u datagrams in %ld ms: %lu, %lu, %lu tuples on the members\n",
	     n, ROUNDS, pd_now_ms() - t0, on[0], on[1], on[2]);
	EXPECT_EQ(0UL, lost) TH_LOG("%lu datagrams reached no member", lost);
	EXPECT_EQ(0UL, moved)
		TH_LOG("%lu datagrams reached another member than their tuple's first",
		       moved);
	/* A third each, give or take: about 10 standard deviations. */
	for (k = 0; k < 3; k++) {
		EXPECT_TRUE(on[k] > n / 6 && on[k] < n / 2)
			TH_LOG("member %d took %lu of %u tuples, not about a third",
			       k, on[k], n);
	}

	get_rule(IPPROTO_UDP, UDP_PORT, &r);
	check_members(&r, m, weights, 3);
	for (k = 0; k < 3; k++) {
		EXPECT_EQ(on[k] * ROUNDS, r.m[k].steered)
			TH_LOG("member %d's steered, against the datagrams it got", k);
	}
	EXPECT_EQ((uint64_t)n * ROUNDS, r.steered);
}

/* ---- replace: what moves ---------------------------------------------- */

#define MAP_TUPLES	2000
#define MAP_TUPLES_SLOW	1000
#define NREP		4	/* members of replace_moves_only_what_must */

/* One step of replace_moves_only_what_must: its rule, and where tuples went. */
struct remap {
	int m[NREP];			/* the members' sockets */
	int *cli;
	unsigned int n;			/* tuples */
	uint32_t round;
	int *was, *now;			/* per tuple: member, NONE, SEVERAL */
	unsigned long move[NREP][NREP];	/* tuples from member i to j */
	unsigned long got[NREP];	/* datagrams each member got, ever */
	unsigned long lost;		/* tuples of the last step on none */
};

/*
 * A member of that rule: A and B are named by fd, C and D by port (their
 * sockets are bound there), so that both kinds of identity are hashed.
 */
static struct pdn_member rep_member(const struct remap *x, int k,
				    uint32_t weight)
{
	if (k < 2)
		return (struct pdn_member){ .fd = x->m[k], .weight = weight };
	return (struct pdn_member){ .port = UDP_BASE + k, .weight = weight };
}

/*
 * RULE_REPLACE (RULE_ADD the first time) of udp 53 to members @ks with
 * @ws (none: the rule as it is), then every tuple's member, and the moves
 * since the last step.
 */
static void __remap_step(struct __test_metadata *_metadata, struct pdn *nl,
			 struct remap *x, const int *ks, const uint32_t *ws,
			 unsigned int n, const char *what)
{
	struct pdn_member pm[NREP];
	struct pdn_status st;
	unsigned int i;
	int *tmp;

	for (i = 0; ks && i < n; i++)
		pm[i] = rep_member(x, ks[i], ws[i]);
	if (ks)
		ASSERT_DONE(pdn_rule_members(nl, x->round ?
					     PORTDISPATCH_CMD_RULE_REPLACE :
					     PORTDISPATCH_CMD_RULE_ADD,
					     IPPROTO_UDP, UDP_PORT, pm, n, &st),
			    &st, what);
	tmp = x->was;
	x->was = x->now;
	x->now = tmp;
	udp_map(x->cli, x->n, false, x->m, NREP, x->round, x->now);
	x->lost = 0;
	memset(x->move, 0, sizeof(x->move));
	for (i = 0; i < x->n; i++) {
		if (x->now[i] < 0)
			x->lost++;
		else
			x->got[x->now[i]]++;
		if (x->round && x->was[i] >= 0 && x->now[i] >= 0)
			x->move[x->was[i]][x->now[i]]++;
	}
	x->round++;
	ASSERT_EQ(0UL, x->lost)
		TH_LOG("after %s: %lu tuples' datagrams reached no member, or several",
		       what, x->lost);
}

#define remap_step(x, ks, ws, n, what)					\
	__remap_step(_metadata, &self->nl, x, ks, ws, n, what)

static const char rep_name[] = "ABCD";

/* Tuples that moved from member @i (any, if -1) to another. */
static unsigned long moved_from(const struct remap *x, int i)
{
	unsigned long sum = 0;
	int a, b;

	for (a = 0; a < NREP; a++)
		for (b = 0; b < NREP; b++)
			if (a != b && (i < 0 || a == i))
				sum += x->move[a][b];
	return sum;
}

static unsigned long moved_to(const struct remap *x, int j)
{
	unsigned long sum = 0;
	int a;

	for (a = 0; a < NREP; a++)
		if (a != j)
			sum += x->move[a][j];
	return sum;
}

/* What moved, in the log: "A->C 12, D->C 40". */
static const char *moves_str(const struct remap *x, char *buf, size_t len)
{
	size_t n = 0;
	int a, b;

	buf[0] = '\0';
	for (a = 0; a < NREP; a++)
		for (b = 0; b < NREP; b++)
			if (a != b && x->move[a][b] && n < len)
				n += snprintf(buf + n, len - n, "%s%c->%c %lu",
					      n ? ", " : "", rep_name[a],
					      rep_name[b], x->move[a][b]);
	return n ? buf : "nothing";
}

/* The tuples that member @k has now. */
static unsigned long tuples_on(const struct remap *x, int k)
{
	unsigned long n = 0;
	unsigned int i;

	for (i = 0; i < x->n; i++)
		n += x->now[i] == k;
	return n;
}

/* Member @k left, with @share tuples: exactly those moved, and no other. */
static void __only_leaver_moved(struct __test_metadata *_metadata,
				const struct remap *x, int k,
				unsigned long share)
{
	char moves[256];

	note("%c leaving moved %lu of %u tuples (%s)\n", rep_name[k],
	     moved_from(x, -1), x->n, moves_str(x, moves, sizeof(moves)));
	EXPECT_EQ(share, moved_from(x, k))
		TH_LOG("%c had %lu tuples, %lu moved: %s", rep_name[k], share,
		       moved_from(x, k), moves_str(x, moves, sizeof(moves)));
	EXPECT_EQ(0UL, moved_from(x, -1) - moved_from(x, k))
		TH_LOG("tuples of the members that stayed moved: %s",
		       moves_str(x, moves, sizeof(moves)));
}

#define only_leaver_moved(x, k, share)					\
	__only_leaver_moved(_metadata, x, k, share)

TEST_F(group, replace_moves_only_what_must)
{
	static int map_a[MAP_TUPLES], map_b[MAP_TUPLES], before[MAP_TUPLES];
	struct remap x = { .was = map_a, .now = map_b };
	unsigned int n = flows(MAP_TUPLES, MAP_TUPLES_SLOW);
	unsigned long share_c, moved, want;
	char moves[256];
	struct pdn_rule r;
	int k, fds[3];
	long t0;

	for (k = 0; k < NREP; k++) {
		x.m[k] = udp_member(UDP_BASE + k, false);
		ASSERT_LE(0, x.m[k]);
	}
	x.n = n;
	x.cli = udp_clients(n, false);
	ASSERT_NE(NULL, x.cli) TH_LOG("%s", pd_setup_error);
	t0 = pd_now_ms();

	remap_step(&x, ((const int[]){ 0, 1, 2, 3 }),
		   ((const uint32_t[]){ 1, 1, 1, 1 }), 4, "add A B C D");
	for (k = 0; k < NREP; k++) {
		EXPECT_LT(0UL, x.got[k]) TH_LOG("member %c took no tuple",
						rep_name[k]);
	}

	/* The same members, in another order: the same place for each. */
	remap_step(&x, ((const int[]){ 3, 1, 0, 2 }),
		   ((const uint32_t[]){ 1, 1, 1, 1 }), 4, "replace by D B A C");
	EXPECT_EQ(0UL, moved_from(&x, -1))
		TH_LOG("reordering the members moved tuples: %s",
		       moves_str(&x, moves, sizeof(moves)));

	/* C leaves: its tuples spread over the others, and no other moves. */
	share_c = tuples_on(&x, 2);
	remap_step(&x, ((const int[]){ 0, 1, 3 }),
		   ((const uint32_t[]){ 1, 1, 1 }), 3, "replace by A B D");
	only_leaver_moved(&x, 2, share_c);
	/* A quarter, give or take about 5 standard deviations. */
	EXPECT_TRUE(share_c > n * 18 / 100 &&
		    share_c < n * 32 / 100)
		TH_LOG("C had %lu of %u tuples, not about a quarter", share_c,
		       n);
	for (k = 0; k < NREP; k++) {
		if (k == 2)
			continue;
		EXPECT_LT(0UL, x.move[2][k])
			TH_LOG("none of C's tuples went to %c: %s", rep_name[k],
			       moves_str(&x, moves, sizeof(moves)));
	}
	memcpy(before, x.now, n * sizeof(*before));

	/* B's weight 1 -> 3: its share 1/3 -> 3/5; tuples move only to B. */
	remap_step(&x, ((const int[]){ 0, 1, 3 }),
		   ((const uint32_t[]){ 1, 3, 1 }), 3, "replace by A, B weight 3, D");
	moved = moved_from(&x, -1);
	want = n * 4 / 15;
	note("B's weight 1 -> 3 moved %lu of %u tuples (%s), about %lu expected\n",
	     moved, n, moves_str(&x, moves, sizeof(moves)), want);
	EXPECT_EQ(moved, moved_to(&x, 1))
		TH_LOG("raising B's weight moved tuples elsewhere than to B: %s",
		       moves_str(&x, moves, sizeof(moves)));
	EXPECT_TRUE(moved > want - n / 12 &&
		    moved < want + n / 12)
		TH_LOG("%lu tuples moved to B, expected about %lu", moved, want);

	/* And back: only from B, each tuple to where it was. */
	remap_step(&x, ((const int[]){ 0, 1, 3 }),
		   ((const uint32_t[]){ 1, 1, 1 }), 3, "replace by A B D again");
	EXPECT_EQ(moved_from(&x, -1), moved_from(&x, 1))
		TH_LOG("lowering B's weight moved tuples of other members: %s",
		       moves_str(&x, moves, sizeof(moves)));
	EXPECT_EQ(0, memcmp(before, x.now, n * sizeof(*before)))
		TH_LOG("the same members and weights again, but not every tuple where it was");
	note("%u replaces, %u tuples mapped after each, in %ld ms\n",
	     x.round, n, pd_now_ms() - t0);

	/* Each member's counters went on with it through every replace. */
	get_rule(IPPROTO_UDP, UDP_PORT, &r);
	fds[0] = x.m[0];
	fds[1] = x.m[1];
	fds[2] = -(UDP_BASE + 3);
	check_members(&r, fds, ((const uint32_t[]){ 1, 1, 1 }), 3);
	EXPECT_EQ(x.got[0], r.m[0].steered) TH_LOG("A's steered");
	EXPECT_EQ(x.got[1], r.m[1].steered) TH_LOG("B's steered");
	EXPECT_EQ(x.got[3], r.m[2].steered) TH_LOG("D's steered");
	EXPECT_EQ((uint64_t)x.round * n, r.steered)
		TH_LOG("the rule's steered, against the datagrams sent");

	/*
	 * A's socket closes: the reaper's rule of B and D moves A's tuples
	 * only, and over both (its table is A's slots chosen again).
	 */
	share_c = tuples_on(&x, 0);
	fds[0] = x.m[0];
	x.m[0] = socket(AF_INET, SOCK_DGRAM, 0);	/* receives nothing */
	ASSERT_LE(0, x.m[0]);
	close(fds[0]);
	t0 = pd_now_ms();
	do {
		get_rule(IPPROTO_UDP, UDP_PORT, &r);
	} while (r.ntargets != 2 && pd_now_ms() - t0 < REAP_MS &&
		 !usleep(20000));
	ASSERT_EQ(2U, r.ntargets) TH_LOG("A closed, but the rule still has %u targets",
					 r.ntargets);
	remap_step(&x, NULL, NULL, 0, "A closed");
	only_leaver_moved(&x, 0, share_c);
	EXPECT_LT(0UL, x.move[0][1]) TH_LOG("none of A's tuples went to B");
	EXPECT_LT(0UL, x.move[0][3]) TH_LOG("none of A's tuples went to D");
}

/* ---- members that cannot take a flow ---------------------------------- */

/* Connections at once. */
#define BURST		flows(300, 100)

/*
 * The next event about rule @id within @ms, the others passed over:
 * 0, or -errno (-ETIMEDOUT: none came).
 */
static int event_for(struct pdn *ev, uint32_t id, int ms, struct pdn_rule *e)
{
	long end = pd_now_ms() + ms;

	for (;;) {
		long left = end - pd_now_ms();
		int err;

		if (left < 0)
			return -ETIMEDOUT;
		err = pdn_event(ev, left, e);
		if (err)
			return err;
		if (!e->malformed && e->id == id)
			return 0;
	}
}

static const char *cmd_name(uint8_t cmd)
{
	switch (cmd) {
	case PORTDISPATCH_CMD_RULE_ADD_NTF:
		return "RULE_ADD_NTF";
	case PORTDISPATCH_CMD_RULE_REPLACE_NTF:
		return "RULE_REPLACE_NTF";
	case PORTDISPATCH_CMD_RULE_DEL_NTF:
		return "RULE_DEL_NTF";
	case PORTDISPATCH_CMD_FLUSH_NTF:
		return "FLUSH_NTF";
	}
	return "another command";
}

/* A burst of BURST connections: all of them reach the listeners @ok. */
static void __burst_reaches(struct __test_metadata *_metadata, const int *ls,
			    int nl, int normal, const bool *ok,
			    struct tally *t)
{
	unsigned long elsewhere = 0;
	int j;

	connect_many(ls, nl, TCP_PORT, BURST, BURST, t);
	for (j = 0; j < nl; j++)
		if (!ok[j])
			elsewhere += t->took[j];
	note("%u connections at once in %ld ms: %lu failed, %lu on the normal listener, %ld SYNs sent again\n",
	     BURST, t->ms, t->failed, t->took[normal], t->retrans);
	EXPECT_EQ(0UL, t->failed)
		TH_LOG("%lu connections failed, the first: %s", t->failed,
		       strerror(t->err));
	EXPECT_EQ(0UL, elsewhere)
		TH_LOG("%lu connections reached a listener that no live member is (%lu the normal one)",
		       elsewhere, t->took[normal]);
}

#define burst_reaches(ls, nl, normal, ok, t)				\
	__burst_reaches(_metadata, ls, nl, normal, ok, t)

/*
 * A member that closes is passed over until the reaper takes it out of
 * the group, with an event; the rule goes with its last member.
 */
TEST_F(group, closed_member_skipped)
{
	const uint32_t ones[3] = { 1, 1, 1 };
	const bool live[4] = { true, false, true, false };
	struct pdn_member pm[3];
	struct tally t = { 0 };
	struct pdn_status st;
	struct pdn_rule r, e;
	struct pdn ev;
	uint32_t id;
	int ls[4], k, err, fds[2];
	bool replaced = false;

	for (k = 0; k < 3; k++) {
		ls[k] = listener(TCP_BASE + k);
		ASSERT_LE(0, ls[k]);
		pm[k] = (struct pdn_member){ .fd = ls[k], .weight = 1 };
	}
	ls[3] = listener(TCP_PORT);	/* what a flow no member took meets */
	ASSERT_LE(0, ls[3]);
	ASSERT_DONE(pdn_rule_members(&self->nl, PORTDISPATCH_CMD_RULE_ADD,
				     IPPROTO_TCP, TCP_PORT, pm, 3, &st),
		    &st, "add tcp 80 to three listeners");
	get_rule(IPPROTO_TCP, TCP_PORT, &r);
	id = r.id;
	err = pdn_open(&ev);
	ASSERT_EQ(0, err) TH_LOG("events socket: %s", strerror(-err));
	ASSERT_EQ(0, pdn_join_events(&ev));

	/* The rule names it until the reaper acts: the flows pass it over. */
	close(ls[1]);
	ls[1] = -1;
	burst_reaches(ls, 4, 3, live, &t);

	ASSERT_EQ(0, event_for(&ev, id, REAP_MS, &e))
		TH_LOG("no event about rule %u within %d ms of a member's closing",
		       id, REAP_MS);
	ASSERT_EQ(PORTDISPATCH_CMD_RULE_REPLACE_NTF, e.cmd)
		TH_LOG("rule %u: %s, expected RULE_REPLACE_NTF", id,
		       cmd_name(e.cmd));
	fds[0] = ls[0];
	fds[1] = ls[2];
	check_members(&e, fds, ones, 2);
	/* Those it had counted were steered with the closed member there. */
	note("the reaper acted after %llu of %u connections\n",
	     (unsigned long long)e.steered, BURST);

	/* Every connection steered, each counted on its member still. */
	get_rule(IPPROTO_TCP, TCP_PORT, &r);
	EXPECT_EQ(id, r.id);
	check_members(&r, fds, ones, 2);
	EXPECT_EQ(t.took[0], r.m[0].steered) TH_LOG("member 0's steered");
	EXPECT_EQ(t.took[2], r.m[1].steered) TH_LOG("member 2's steered");
	EXPECT_EQ((uint64_t)BURST, r.steered) TH_LOG("the rule's steered");
	EXPECT_EQ(0ULL, r.undeliverable) TH_LOG("the rule's undeliverable");

	/* The last two: perhaps one reap for both, perhaps one each. */
	close(ls[0]);
	close(ls[2]);
	for (;;) {
		ASSERT_EQ(0, event_for(&ev, id, REAP_MS, &e))
			TH_LOG("no event about rule %u within %d ms of its last members' closing",
			       id, REAP_MS);
		if (e.cmd != PORTDISPATCH_CMD_RULE_REPLACE_NTF || replaced)
			break;
		/* A group of one is still reported as a group. */
		replaced = true;
		ASSERT_EQ(1U, e.ntargets);
		EXPECT_TRUE(!!(e.m[0].seen & (1u << PORTDISPATCH_A_TARGET_WEIGHT)))
			TH_LOG("a group left with one member: no TARGET_WEIGHT");
	}
	ASSERT_EQ(PORTDISPATCH_CMD_RULE_DEL_NTF, e.cmd)
		TH_LOG("rule %u: %s, expected RULE_DEL_NTF", id, cmd_name(e.cmd));
	EXPECT_EQ(PORTDISPATCH_DEL_REASON_SOCKET_CLOSED, e.reason);
	pdn_close(&ev);
}

/*
 * A port member with nothing on it and a listener shut down (open, not
 * listening, so never reaped) are passed over in each flow's own order,
 * counted as undeliverable of their own; none of the rule's. Once no
 * member can take a flow, the normal lookup answers it.
 */
TEST_F(group, unready_members_skipped)
{
	const bool live[4] = { true, false, true, false };
	struct pdn_member pm[4];
	struct tally t = { 0 }, t2 = { 0 };
	struct pdn_status st;
	struct pdn_rule r;
	int ls[4], k, fds[4];

	for (k = 0; k < 3; k++) {
		ls[k] = listener(TCP_BASE + k);
		ASSERT_LE(0, ls[k]);
	}
	ls[3] = listener(TCP_PORT);
	ASSERT_LE(0, ls[3]);
	pm[0] = (struct pdn_member){ .fd = ls[0] };
	pm[1] = (struct pdn_member){ .port = DEAD_PORT };
	pm[2] = (struct pdn_member){ .fd = ls[1] };
	pm[3] = (struct pdn_member){ .fd = ls[2] };
	ASSERT_DONE(pdn_rule_members(&self->nl, PORTDISPATCH_CMD_RULE_ADD,
				     IPPROTO_TCP, TCP_PORT, pm, 4, &st),
		    &st, "add tcp 80 to fd, port 8999, fd, fd");
	/* Listening no more: a state in which it could not have been added. */
	ASSERT_EQ(0, shutdown(ls[1], SHUT_RD)) TH_LOG("shutdown: %s",
						      strerror(errno));

	/* ls[] in the tally: 0, 1 (shut), 2, the normal one. */
	burst_reaches(ls, 4, 3, live, &t);
	get_rule(IPPROTO_TCP, TCP_PORT, &r);
	fds[0] = ls[0];
	fds[1] = -DEAD_PORT;
	fds[2] = ls[1];
	fds[3] = ls[2];
	check_members(&r, fds, ((const uint32_t[]){ 1, 1, 1, 1 }), 4);
	note("steered: %llu, %llu, %llu, %llu; undeliverable: %llu, %llu, %llu, %llu\n",
	     (unsigned long long)r.m[0].steered, (unsigned long long)r.m[1].steered,
	     (unsigned long long)r.m[2].steered, (unsigned long long)r.m[3].steered,
	     (unsigned long long)r.m[0].undeliverable,
	     (unsigned long long)r.m[1].undeliverable,
	     (unsigned long long)r.m[2].undeliverable,
	     (unsigned long long)r.m[3].undeliverable);
	EXPECT_EQ(t.took[0], r.m[0].steered);
	EXPECT_EQ(t.took[2], r.m[3].steered);
	EXPECT_EQ(0ULL, r.m[1].steered + r.m[2].steered)
		TH_LOG("members that cannot take a flow counted one as steered");
	/* Each was the first choice of about a quarter of the flows. */
	EXPECT_LT(0ULL, r.m[1].undeliverable)
		TH_LOG("port %d: no flow counted undeliverable", DEAD_PORT);
	EXPECT_LT(0ULL, r.m[2].undeliverable)
		TH_LOG("the listener shut down: no flow counted undeliverable");
	EXPECT_EQ(0ULL, r.m[0].undeliverable + r.m[3].undeliverable);
	EXPECT_EQ((uint64_t)BURST, r.steered);
	EXPECT_EQ(0ULL, r.undeliverable)
		TH_LOG("the rule counted flows that a member took as undeliverable");

	/* No member left that can: the normal lookup answers, and counts. */
	ASSERT_EQ(0, shutdown(ls[0], SHUT_RD));
	ASSERT_EQ(0, shutdown(ls[2], SHUT_RD));
	connect_many(ls, 4, TCP_PORT, 20, 20, &t2);
	EXPECT_EQ(0UL, t2.failed) TH_LOG("the first failure: %s",
					 strerror(t2.err));
	EXPECT_EQ(20UL, t2.took[3])
		TH_LOG("%lu of 20 connections reached the normal listener",
		       t2.took[3]);
	get_rule(IPPROTO_TCP, TCP_PORT, &r);
	EXPECT_EQ((uint64_t)BURST, r.steered);
	EXPECT_EQ(20ULL, r.undeliverable) TH_LOG("the rule's undeliverable");
}

/* ---- refusals --------------------------------------------------------- */

#define NO_OFFS		UINT32_MAX	/* no attribute to point at */

/*
 * A request refused with @want, pointing at the attribute at @offs, and
 * with a message that says @words (matched without case).
 */
static void __refused(struct __test_metadata *_metadata, int err, int want,
		      const struct pdn_status *st, uint32_t offs,
		      const char *words, const char *what)
{
	EXPECT_EQ(want, err)
		TH_LOG("%s: %s (\"%s\"), expected %s", what,
		       err ? strerror(err) : "accepted", st->msg,
		       strerror(want));
	if (err != want)
		return;
	EXPECT_NE(NULL, strcasestr(st->msg, words))
		TH_LOG("%s: the message \"%s\" does not say \"%s\"", what,
		       st->msg, words);
	if (offs == NO_OFFS)
		return;
	EXPECT_TRUE(st->has_offs && st->offs == offs)
		TH_LOG("%s: the error points at offset %d, not at the attribute at %u",
		       what, st->has_offs ? (int)st->offs : -1, offs);
}

#define refused(err, st, offs, words, what)				\
	__refused(_metadata, err, EINVAL, st, offs, words, what)

/*
 * RULE_ADD (or REPLACE) of tcp 80 to @n members, built in @req (which
 * says where each attribute went); its errno.
 */
static int add_members(struct pdn *nl, uint8_t cmd, const struct pdn_member *m,
		       unsigned int n, struct pdn_req *req,
		       struct pdn_status *st)
{
	unsigned int i;

	pdn_req_init(nl, req, cmd, 0);
	pdn_rule_key(req, IPPROTO_TCP, TCP_PORT, 0);
	for (i = 0; i < n; i++)
		pdn_target_member(req, &m[i]);
	return pdn_do(nl, req, st);
}

/* Where the last RULE_TARGET went; and the last TARGET_WEIGHT. */
#define LAST_TARGET	req.top[PORTDISPATCH_A_RULE_TARGET]
#define LAST_WEIGHT	req.tgt[PORTDISPATCH_A_TARGET_WEIGHT]

TEST_F(group, refusals)
{
	struct pdn_member m[PDN_MAX_TARGETS + 1];
	struct pdn_status st;
	struct pdn_dump d;
	struct pdn_req req;
	struct pdn_rule r;
	int a, a2, b6, both, k, err;

	a = listener(TCP_BASE);
	ASSERT_LE(0, a);
	a2 = dup(a);		/* the same socket, by another fd */
	b6 = pd_server(AF_INET6, SOCK_STREAM, "::1", TCP_BASE + 1, true);
	both = pd_server(AF_INET6, SOCK_STREAM, "::", TCP_BASE + 2, false);
	ASSERT_TRUE(a2 >= 0 && b6 >= 0 && both >= 0);

	/* 16 targets is the most, with any weight from 1 to 255. */
	for (k = 0; k <= PDN_MAX_TARGETS; k++)
		m[k] = (struct pdn_member){ .port = 9001 + k,
					    .weight = k ? 255 : 1 };
	ASSERT_DONE(add_members(&self->nl, PORTDISPATCH_CMD_RULE_ADD, m,
				PDN_MAX_TARGETS, &req, &st), &st, "16 targets");
	get_rule(IPPROTO_TCP, TCP_PORT, &r);
	EXPECT_EQ((unsigned int)PDN_MAX_TARGETS, r.ntargets);
	for (k = 0; k < PDN_MAX_TARGETS; k++) {
		EXPECT_EQ(9001U + k, r.m[k].port) TH_LOG("target %d", k);
		EXPECT_EQ(k ? 255U : 1U, r.m[k].weight) TH_LOG("target %d", k);
	}
	ASSERT_DONE(pdn_del(&self->nl, IPPROTO_TCP, TCP_PORT, 0, &st), &st,
		    "del");

	err = add_members(&self->nl, PORTDISPATCH_CMD_RULE_ADD, m,
			  PDN_MAX_TARGETS + 1, &req, &st);
	refused(err, &st, NO_OFFS, "at most 16", "17 targets");

	m[0] = (struct pdn_member){ .port = 9001, .weight = 256 };
	m[1] = (struct pdn_member){ .port = 9002 };
	err = add_members(&self->nl, PORTDISPATCH_CMD_RULE_ADD, m, 2, &req, &st);
	refused(err, &st, LAST_WEIGHT, "weight 256", "weight 256");

	/* Weight 0 is not "none": sent by hand. */
	pdn_req_init(&self->nl, &req, PORTDISPATCH_CMD_RULE_ADD, 0);
	pdn_rule_key(&req, IPPROTO_TCP, TCP_PORT, 0);
	pdn_target_port(&req, 9001);
	pdn_target_start(&req);
	pdn_put_u32(&req, PORTDISPATCH_A_TARGET_PORT, 9002);
	pdn_put_u32(&req, PORTDISPATCH_A_TARGET_WEIGHT, 0);
	pdn_target_end(&req);
	err = pdn_do(&self->nl, &req, &st);
	refused(err, &st, LAST_WEIGHT, "weight 0", "weight 0");

	/* The repeat is the last target. */
	m[0] = (struct pdn_member){ .fd = a };
	m[1] = (struct pdn_member){ .port = 9002 };
	m[2] = (struct pdn_member){ .fd = a };
	err = add_members(&self->nl, PORTDISPATCH_CMD_RULE_ADD, m, 3, &req, &st);
	refused(err, &st, LAST_TARGET, "repeat", "one fd twice");
	m[2] = (struct pdn_member){ .fd = a2 };
	err = add_members(&self->nl, PORTDISPATCH_CMD_RULE_ADD, m, 3, &req, &st);
	refused(err, &st, LAST_TARGET, "repeat", "one socket by two fds");

	m[0] = (struct pdn_member){ .port = 9001 };
	m[2] = (struct pdn_member){ .port = 9001, .weight = 2 };
	err = add_members(&self->nl, PORTDISPATCH_CMD_RULE_ADD, m, 3, &req, &st);
	refused(err, &st, LAST_TARGET, "repeat", "one port twice");

	/* The errno the header gives a socket that cannot take the family. */
	m[0] = (struct pdn_member){ .fd = a };
	m[1] = (struct pdn_member){ .fd = b6 };
	err = add_members(&self->nl, PORTDISPATCH_CMD_RULE_ADD, m, 2, &req, &st);
	__refused(_metadata, err, EAFNOSUPPORT, &st, NO_OFFS, "IPv6-only",
		  "an IPv4 socket and an IPv6-only one");

	/* Nothing of it in the table. */
	ASSERT_EQ(0, pdn_dump(&self->nl, &d));
	EXPECT_EQ(0U, d.count) TH_LOG("refused requests left %u rules", d.count);
	pdn_dump_free(&d);

	/* A family in common is enough: IPv4, and IPv6 that takes IPv4. */
	m[1] = (struct pdn_member){ .fd = both, .weight = 3 };
	ASSERT_DONE(add_members(&self->nl, PORTDISPATCH_CMD_RULE_ADD, m, 2,
				&req, &st),
		    &st, "an IPv4 socket and a dual-stack one");

	/* A refused replace leaves the rule as it was. */
	m[2] = (struct pdn_member){ .fd = a2 };
	err = add_members(&self->nl, PORTDISPATCH_CMD_RULE_REPLACE, m, 3, &req,
			  &st);
	refused(err, &st, LAST_TARGET, "repeat",
		"replace by a list naming one socket twice");
	get_rule(IPPROTO_TCP, TCP_PORT, &r);
	check_members(&r, ((const int[]){ a, both }),
		      ((const uint32_t[]){ 1, 3 }), 2);
}

/* ---- dumps ------------------------------------------------------------ */

/*
 * A rule of one target is what it always was, a weight given to it
 * accepted and forgotten; a group's targets come in the order given.
 */
TEST_F(group, dump_shape)
{
	struct pdn_member m[3];
	struct pdn_status st;
	struct pdn_rule r;
	int u[3], k;

	for (k = 0; k < 3; k++) {
		u[k] = udp_member(UDP_BASE + k, false);
		ASSERT_LE(0, u[k]);
	}
	m[0] = (struct pdn_member){ .fd = u[0], .weight = 7 };
	ASSERT_DONE(pdn_rule_members(&self->nl, PORTDISPATCH_CMD_RULE_ADD,
				     IPPROTO_UDP, UDP_PORT, m, 1, &st),
		    &st, "add udp 53 to one fd, weight 7");
	get_rule(IPPROTO_UDP, UDP_PORT, &r);
	EXPECT_EQ(1U, r.ntargets);
	EXPECT_EQ(inode_of(u[0]), r.t.inode);
	EXPECT_FALSE(PDN_THAS(&r, PORTDISPATCH_A_TARGET_WEIGHT))
		TH_LOG("a lone target reported with a weight (%u)", r.t.weight);
	EXPECT_FALSE(PDN_THAS(&r, PORTDISPATCH_A_TARGET_STATS))
		TH_LOG("a lone target reported with counters of its own");

	m[0] = (struct pdn_member){ .port = UDP_BASE + 2, .weight = 200 };
	m[1] = (struct pdn_member){ .fd = u[0] };
	m[2] = (struct pdn_member){ .fd = u[1], .weight = 255 };
	ASSERT_DONE(pdn_rule_members(&self->nl, PORTDISPATCH_CMD_RULE_REPLACE,
				     IPPROTO_UDP, UDP_PORT, m, 3, &st),
		    &st, "replace by three targets");
	get_rule(IPPROTO_UDP, UDP_PORT, &r);
	check_members(&r, ((const int[]){ -(UDP_BASE + 2), u[0], u[1] }),
		      ((const uint32_t[]){ 200, 1, 255 }), 3);
	/* The first target is also where a one-target reader looks. */
	EXPECT_EQ((uint32_t)UDP_BASE + 2, r.t.port);
}

TEST_HARNESS_MAIN
