// SPDX-License-Identifier: GPL-2.0
/*
 * Churn under traffic (issue 13): for a while, more than a thousand rule
 * changes a second (lone add, replace and del, and batches, some of them
 * aborted or refused) on the very ports that clients keep connecting and
 * sending to, over a veth, TCP and UDP, IPv4 and IPv6; every flow must
 * reach a socket that a rule or the normal lookup named at that moment,
 * none may be reset, refused or left unanswered, and the counters must
 * add up.
 *
 *   [ cli ] c0 ================ s0 [ srv: rules, every socket below ]
 *   198.18.0.1                     198.18.0.2 (S4), 198.18.0.3 (decoys)
 *   2001:db8::1                    2001:db8::2 (S6), 2001:db8::3 (decoys)
 *
 * Each protocol has five churned ports, 5000-5003 and 5300, that clients
 * send to at S4 and S6. Each port has a pool of its own: two dual-stack
 * sockets on [::] that rules name by fd, and two ports that rules name as
 * port targets (a socket on S4 and one on S6 each); its rules name only
 * those, or a port where nothing is bound (DEAD: the flow is
 * undeliverable and the normal lookup answers). Its kind decides what
 * changes it sees:
 *
 *   5000 REPLACE  no normal socket: every flow must be steered. Lone and
 *                 batched replaces of its rule, never a moment uncovered.
 *   5001 DEAD     a normal socket; replaces among the pool and DEAD.
 *   5002 FREE     a normal socket; add, del and replace, for both families
 *                 or one, lone or batched (a del and an add in one batch).
 *   5003 GROUP    no normal socket: every flow must be steered. One rule
 *                 of two targets, the pool's first fd and its first port
 *                 target, replaced again and again with other weights
 *                 (9:1, 1:9, 5:5...) and orders (issue 15): a flow may
 *                 reach either, never the pool's others.
 *   5300 PREFIX   a normal socket; S4/32 and S6/128 rules beside twelve
 *                 other prefixes of each length (a hashed group, so lone
 *                 changes are written into the published table in place),
 *                 whose target, BG, no flow may ever reach.
 *
 * Every socket answers with its identity and when it took the flow: TCP
 * sends them on accept (the client then resets the connection, so that
 * no TIME_WAIT socket is left on either side), UDP echoes the query with
 * them. Decoys that no rule of the port ever names sit on the same
 * addresses (another port) and on the same ports (another address), and
 * every other port's pool is a decoy too: an answer from outside the
 * port's pool and normal socket is a misroute. Stricter, the churner logs
 * each committed state of a port between the times around its request,
 * and the table decided a flow between its start and the first of: the
 * server's taking it, the SYN-ACK's arrival (often before connect()
 * returns), the answer. The answer must come from a socket that a state
 * possibly current then named for the flow's family: its rule's target
 * (either member, on GROUP), or the normal socket when no rule matched or
 * the target could not take the flow.
 *
 * Counters (uapi: a rule's STEERED and UNDELIVERABLE count new flows; the
 * namespace's LOOKUPS are the packets that consulted the table, HITS +
 * MISSES). Over veth, early demux gives every later packet of a TCP
 * connection its socket, and the hook counts no packet that has one; no
 * socket is left in TIME_WAIT; so each flow consults the table exactly
 * once (its SYN, its datagram). So does each stray: now and then the
 * client sends a TCP reset from a port without a connection to 5000 or
 * 5001, which no socket owns: a packet (a hit), not a flow. For what the
 * clients sent:
 *	sent + strays = LOOKUPS = HITS + MISSES,
 *	HITS = steered + undeliverable, over every rule the run had, + strays,
 *	MISSES = normal: the flows that met no rule.
 * With more than one CPU, a segment can also outlive its connection (a
 * client's last ACK handled after its reset, from another CPU's
 * backlog); the server resets each, and those are counted apart.
 * A deleted rule's counters leave with it (its deletion event carries a
 * snapshot, taken before the packets that found it are done), so the sum
 * over the rules is exact only where rules are never deleted: a replace
 * hands its counters on. On 5000, 5001 and 5003, the rule's steered must
 * equal what the pool answered, its undeliverable what the normal socket
 * answered, its UDP replies the pool's answers from the port used; on
 * 5003 each member's steered what that member answered (a replace hands
 * a member's counters to the same target), and its undeliverable 0. On
 * 5002 and 5300, what the pools answered was steered; the rest of HITS,
 * the strays aside, is their undeliverable, which with MISSES must equal
 * what their normal sockets answered. The sum must be what was sent.
 *
 * 10 s (times PD_TIME_SCALE), 60 s with PORTDISPATCH_STRESS=1.
 * PORTDISPATCH_SEED=N repeats a run's choices (not its timing).
 */

#include <linux/filter.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include "harness.h"
/* The requests of netlink_test.c that this test never makes. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "netlink_helpers.h"
#pragma GCC diagnostic pop
#include "pd_link.h"
#include "pd_test.h"

#define note(...) do { ksft_print_msg(__VA_ARGS__); fflush(stdout); } while (0)

#define CLI4		"198.18.0.1"
#define S4		"198.18.0.2"
#define S4B		"198.18.0.3"
#define CLI6		"2001:db8::1"
#define S6		"2001:db8::2"
#define S6B		"2001:db8::3"

#define NKINDS		5
#define POOL_BASE	6000	/* port i's pool: POOL_BASE + 10 i + ... */
#define POOL_FD		2	/* ... + 0, 1: dual-stack, named by fd */
#define POOL_PT		2	/* ... + 2, 3: port targets */
#define DEAD_PORT	6999	/* nothing bound */
#define DECOY_PORT	7000	/* decoys on S4, S6 and [::] */
#define BG_PORT		7001	/* the other prefixes' target */
#define NBG		12	/* other prefixes of each length on PREFIX */

/*
 * Changes a second that the churner must reach on Debian's kernels (it
 * makes 2,000 to 4,800 there, under TCG on one vCPU, with the flows
 * taking their share); and on the debug kernel (PD_TIME_SCALE above 1),
 * where a change costs 25 to 50 times as much (a lone add: 0.7 to 1.8 ms
 * against 30 us on 6.1, scripts/bench/lone; the module is instrumented
 * by KASAN and UBSAN, and kmemleak traces every allocation) while a flow
 * costs about 6 times as much: it made 54 to 125 a second there with
 * kmemleak, 128 to 375 without, as many changes as flows or more, the
 * lower figures on a host loaded by other guests. The run there is for
 * the sanitizers to watch the same interleavings.
 */
#define MIN_RATE	1000
#define MIN_RATE_SLOW	25

enum kind { K_REPLACE, K_DEAD, K_FREE, K_PREFIX, K_GROUP };
static const char *const kind_name[] = {
	"replace", "dead", "free", "prefix", "group",
};
/*
 * The churned ports, the same for TCP and UDP. A change rebuilds the
 * table's block of 256 ports it is in (unless it is made in place): all
 * but PREFIX share one, so that every change there rebuilds its
 * neighbours' sets too; PREFIX, whose set costs most to build, has one of
 * its own.
 */
static const uint16_t kind_port[] = { 5000, 5001, 5002, 5300, 5003 };

/* A rule's target, in the model: none, DEAD, or a pool member. */
#define T_NONE		0
#define T_DEAD		1
#define T_FD(j)		(2 + (j))
#define T_PT(j)		(2 + POOL_FD + (j))
#define NTARGETS	(2 + POOL_FD + POOL_PT)
/*
 * GROUP's rules: two targets, X (the pool's first fd) and Y (its first
 * port target), with the weights and in the order of split i.
 */
#define T_GROUP(i)	(NTARGETS + (i))
#define GROUP_X		T_FD(0)
#define GROUP_Y		T_PT(0)

static const struct {
	uint8_t x, y;		/* weights */
	bool y_first;		/* the order they are given in */
} splits[] = {
	{ 9, 1, false }, { 1, 9, false }, { 5, 5, false }, { 9, 1, true },
	{ 1, 1, true }, { 255, 1, false }, { 1, 255, true }, { 3, 7, false },
};

#define NSPLITS		(sizeof(splits) / sizeof(splits[0]))

/* ---- sockets of the server's namespace ------------------------------- */

enum role { R_POOL, R_NORMAL, R_DECOY, R_BG };
static const char *const role_name[] = { "pool", "normal", "decoy", "bg" };

struct ssock {
	int fd;
	uint8_t proto;		/* IPPROTO_TCP, IPPROTO_UDP */
	uint8_t role;
	int8_t cp;		/* the churned port it serves; -1: none */
	int family;		/* AF_INET, AF_INET6; 0: both */
	const char *addr;
	uint16_t port;
};

#define MAXSOCKS	256
static struct ssock socks[MAXSOCKS];
static int nsocks;

/* A churned port, of one protocol. */
struct cport {
	uint8_t proto;
	enum kind kind;
	uint16_t port;
	int normal[2];		/* its normal socket per family; -1: none */
	int fd_member[POOL_FD];
	int pt_member[POOL_PT][2];	/* per family */
	uint16_t pt_port[POOL_PT];
};

#define NCP		(2 * NKINDS)	/* TCP's, then UDP's */
static struct cport cports[NCP];

/* What a rule state looks like to the model. */
struct pstate {
	uint8_t t[2];		/* IPv4's and IPv6's target (or prefix rule's) */
	bool split;		/* a rule per family, not one for both */
};

/*
 * The socket that answers a flow of family @f when the target is @t; of
 * a group, its member X.
 */
static int eff_id(const struct cport *c, int f, int t)
{
	if (t >= T_GROUP(0))
		t = GROUP_X;
	if (t == T_NONE || t == T_DEAD)
		return c->normal[f];
	if (t < T_PT(0))
		return c->fd_member[t - T_FD(0)];
	return c->pt_member[t - T_PT(0)][f];
}

/* The other socket that may answer it: a group's member Y; -1 if none. */
static int eff_id2(const struct cport *c, int f, int t)
{
	return t >= T_GROUP(0) ? eff_id(c, f, GROUP_Y) : -1;
}

static int fam_index(int family)
{
	return family == AF_INET6;
}

/* ---- logs ------------------------------------------------------------- */

/* A committed state of a churned port: between @s and @e it took effect. */
struct slog {
	uint64_t s, e;
	int16_t id[2];
	int16_t id2[2];		/* another that may answer: a group's; -1 */
	uint8_t cp;
};

/*
 * A UDP answer leaves from the address and port the client sent to when
 * the module remembered the flow (or the normal socket answers), else
 * from the answering socket's own port.
 */
enum { FROM_ELSEWHERE, FROM_PORT_USED, FROM_OWN_PORT };

enum outcome { O_OK, O_REFUSED, O_RESET, O_EOF, O_TIMEOUT, O_ERROR };
static const char *const outcome_name[] = {
	"answered", "refused", "reset", "closed without an identity",
	"timed out", "failed",
};

struct flow {
	uint64_t t0, t1;	/* sent; answered (or given up) */
	uint64_t thi;		/* the table was read by then */
	int16_t id;		/* who answered */
	uint8_t cp, f, outcome;
	uint8_t from;		/* UDP: where the answer came from, FROM_* */
	int err;
};

struct vec {
	void *v;
	size_t n, cap, size;
};

static void *vec_push(struct vec *v)
{
	if (v->n == v->cap) {
		v->cap = v->cap ? 2 * v->cap : 4096;
		v->v = realloc(v->v, v->cap * v->size);
		if (!v->v)
			abort();
	}
	return (char *)v->v + v->n++ * v->size;
}

static struct vec slogs = { .size = sizeof(struct slog) };
static struct vec flows = { .size = sizeof(struct flow) };

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* ---- namespaces ------------------------------------------------------- */

static int ns_srv = -1, ns_cli = -1;

/* In the current namespace, @a4 and @a6 are at device @peer's address. */
static int neighbours(const char *dev, const char *a4, const char *a6,
		      const uint8_t *mac)
{
	int ifindex = if_nametoindex(dev);

	return pd_add_neigh(AF_INET, ifindex, a4, mac) ?:
	       pd_add_neigh(AF_INET6, ifindex, a6, mac);
}

static int topology(void)
{
	uint8_t cmac[6], smac[6];
	const char *what;
	int err, s0;

	ns_srv = pd_new_ns();
	if (ns_srv < 0)
		return -1;
	ns_cli = pd_new_ns();
	if (ns_cli < 0)
		return -1;
	err = pd_make_veth("c0", "s0", ns_srv);
	if (err)
		return pd_setup_fail("veth c0/s0", err);
	what = pd_link_setup("c0", CLI4, CLI6);
	if (what)
		return pd_setup_fail(what, errno);
	err = pd_link_mac("c0", cmac);
	if (err)
		return pd_setup_fail("c0's address", err);

	pd_go(ns_srv);
	what = pd_link_setup("s0", S4, S6);
	if (what)
		return pd_setup_fail(what, errno);
	s0 = if_nametoindex("s0");
	err = pd_add_addr(AF_INET, s0, S4B, 24) ?:
	      pd_add_addr(AF_INET6, s0, S6B, 64) ?:
	      pd_link_mac("s0", smac) ?:
	      neighbours("s0", CLI4, CLI6, cmac);
	if (err)
		return pd_setup_fail("the server's side", err);

	pd_go(ns_cli);
	err = neighbours("c0", S4, S6, smac);
	if (err)
		return pd_setup_fail("the client's neighbours", err);
	/* c0 came up first, without a carrier: it sends once it has one. */
	err = pd_link_wait_ready(if_nametoindex("c0"), pd_ms(5000));
	pd_go(ns_srv);
	if (!err)
		err = pd_link_wait_ready(s0, pd_ms(5000));
	return err ? pd_setup_fail("c0 and s0 up", err) : 0;
}

/*
 * A socket of the server's namespace, nonblocking; its index is its
 * identity. -1 when it could not be made, with pd_setup_error saying why.
 */
static int ssock(uint8_t proto, int family, const char *addr, int port,
		 enum role role, int cp)
{
	/* IPv6 on [::] takes IPv4 too; on an address, IPv6 only. */
	bool dual = family == AF_INET6 && !strcmp(addr, "::");
	int fd = pd_server(family, proto == IPPROTO_TCP ? SOCK_STREAM :
			   SOCK_DGRAM, addr, port, !dual);

	if (fd < 0 || nsocks == MAXSOCKS) {
		char what[96];

		snprintf(what, sizeof(what), "%s socket on %s port %d",
			 proto == IPPROTO_TCP ? "TCP" : "UDP", addr, port);
		return pd_setup_fail(what, fd < 0 ? errno : ENOSPC);
	}
	/* More room than flows in flight, so that no SYN is ever dropped. */
	if (proto == IPPROTO_TCP)
		listen(fd, 1024);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	socks[nsocks] = (struct ssock){
		.fd = fd, .proto = proto, .role = role, .cp = cp,
		.family = dual ? 0 : family, .addr = addr, .port = port,
	};
	return nsocks++;
}

/* Every socket of the pools, normal, decoy and BG: 0, or -1. */
static int make_sockets(void)
{
	int p, k, j;

	for (p = 0; p < 2; p++) {
		uint8_t proto = p ? IPPROTO_UDP : IPPROTO_TCP;

		for (k = 0; k < NKINDS; k++) {
			int i = p * NKINDS + k;
			struct cport *c = &cports[i];
			int base = POOL_BASE + 10 * k;

			c->proto = proto;
			c->kind = k;
			c->port = kind_port[k];
			c->normal[0] = c->normal[1] = -1;
			if (k != K_REPLACE && k != K_GROUP) {
				c->normal[0] = ssock(proto, AF_INET, S4,
						     c->port, R_NORMAL, i);
				c->normal[1] = ssock(proto, AF_INET6, S6,
						     c->port, R_NORMAL, i);
			}
			/* The same port at the other addresses. */
			ssock(proto, AF_INET, S4B, c->port, R_DECOY, -1);
			ssock(proto, AF_INET6, S6B, c->port, R_DECOY, -1);
			for (j = 0; j < POOL_FD; j++)
				c->fd_member[j] = ssock(proto, AF_INET6, "::",
							base + j, R_POOL, i);
			for (j = 0; j < POOL_PT; j++) {
				int port = base + POOL_FD + j;

				c->pt_port[j] = port;
				c->pt_member[j][0] = ssock(proto, AF_INET, S4,
							   port, R_POOL, i);
				c->pt_member[j][1] = ssock(proto, AF_INET6, S6,
							   port, R_POOL, i);
				ssock(proto, AF_INET, S4B, port, R_DECOY, -1);
				ssock(proto, AF_INET6, S6B, port, R_DECOY, -1);
			}
		}
		/* Another port at the pools' addresses; BG. */
		ssock(proto, AF_INET, S4, DECOY_PORT, R_DECOY, -1);
		ssock(proto, AF_INET6, S6, DECOY_PORT, R_DECOY, -1);
		ssock(proto, AF_INET6, "::", DECOY_PORT + 2, R_DECOY, -1);
		ssock(proto, AF_INET, S4, BG_PORT, R_BG, -1);
		ssock(proto, AF_INET6, S6, BG_PORT, R_BG, -1);
	}
	return pd_setup_error[0] ? -1 : 0;
}

/* ---- the model and its requests ---------------------------------------- */

struct op {
	uint8_t cmd;		/* RULE_ADD, RULE_REPLACE, RULE_DEL */
	uint8_t cp;
	uint8_t family;		/* 0: both; AF_INET, AF_INET6 */
	uint8_t target;
	int expect;		/* the errno the model predicts */
};

static struct pdn nl;
static struct pstate model[NCP];

static uint64_t rng_state;

static uint32_t rnd(uint32_t n)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 2685821657736338717ull) >> 32) % n;
}

/* What @op does to @s: the errno it must fail with, or 0 and @s changed. */
static int model_apply(const struct cport *c, struct pstate *s,
		       const struct op *op)
{
	int f = fam_index(op->family), o = !f;

	if (c->kind == K_PREFIX) {
		switch (op->cmd) {
		case PORTDISPATCH_CMD_RULE_ADD:
			if (s->t[f] != T_NONE)
				return EEXIST;
			/* fall through */
		case PORTDISPATCH_CMD_RULE_REPLACE:
			s->t[f] = op->target;
			return 0;
		default:
			if (s->t[f] == T_NONE)
				return ENOENT;
			s->t[f] = T_NONE;
			return 0;
		}
	}

	switch (op->cmd) {
	case PORTDISPATCH_CMD_RULE_ADD:
		if (!op->family) {
			if (s->t[0] != T_NONE || s->t[1] != T_NONE)
				return EEXIST;
			s->t[0] = s->t[1] = op->target;
			s->split = false;
			return 0;
		}
		if (s->t[f] != T_NONE)
			return EEXIST;
		s->t[f] = op->target;
		s->split = true;
		return 0;
	case PORTDISPATCH_CMD_RULE_REPLACE:
		if (!op->family) {
			s->t[0] = s->t[1] = op->target;
			s->split = false;
			return 0;
		}
		/* A rule for both families is replaced whole. */
		if (!s->split)
			s->t[o] = T_NONE;
		s->t[f] = op->target;
		s->split = true;
		return 0;
	default:
		if (s->t[0] == T_NONE && s->t[1] == T_NONE)
			return ENOENT;
		if (!op->family || !s->split) {
			s->t[0] = s->t[1] = T_NONE;
			s->split = false;
			return 0;
		}
		if (s->t[f] == T_NONE)
			return ENOENT;
		s->t[f] = T_NONE;
		if (s->t[o] == T_NONE)
			s->split = false;
		return 0;
	}
}

/*
 * A target other than @not: a pool member, or DEAD where allowed; on
 * GROUP, another split.
 */
static uint8_t pick_target(const struct cport *c, uint8_t not)
{
	uint8_t first = c->kind == K_REPLACE ? T_FD(0) : T_DEAD, t;

	if (c->kind == K_GROUP) {
		do
			t = T_GROUP(rnd(NSPLITS));
		while (t == not);
		return t;
	}
	do
		t = first + rnd(NTARGETS - first);
	while (t == not);
	return t;
}

/* A change that the model says applies to @s, for port @cp. */
static void pick_op(int cp, const struct pstate *s, struct op *op)
{
	const struct cport *c = &cports[cp];
	static const uint8_t fams[] = { 0, AF_INET, AF_INET6 };
	int f;

	memset(op, 0, sizeof(*op));
	op->cp = cp;
	switch (c->kind) {
	case K_REPLACE:
	case K_DEAD:
	case K_GROUP:
		op->cmd = PORTDISPATCH_CMD_RULE_REPLACE;
		op->target = pick_target(c, s->t[0]);
		return;
	case K_PREFIX:
		op->family = rnd(2) ? AF_INET6 : AF_INET;
		f = fam_index(op->family);
		if (s->t[f] == T_NONE)
			op->cmd = PORTDISPATCH_CMD_RULE_ADD;
		else
			op->cmd = rnd(2) ? PORTDISPATCH_CMD_RULE_REPLACE :
					   PORTDISPATCH_CMD_RULE_DEL;
		op->target = pick_target(c, s->t[f]);
		return;
	case K_FREE:
		op->family = fams[rnd(3)];
		f = fam_index(op->family);
		switch (rnd(3)) {
		case 0:
			op->cmd = PORTDISPATCH_CMD_RULE_REPLACE;
			break;
		case 1:
			op->cmd = PORTDISPATCH_CMD_RULE_DEL;
			break;
		default:
			op->cmd = PORTDISPATCH_CMD_RULE_ADD;
		}
		/* Only what applies: an add where nothing conflicts, a del of a rule. */
		if (op->cmd == PORTDISPATCH_CMD_RULE_ADD &&
		    (op->family ? s->t[f] != T_NONE :
		     s->t[0] != T_NONE || s->t[1] != T_NONE))
			op->cmd = PORTDISPATCH_CMD_RULE_DEL;
		if (op->cmd == PORTDISPATCH_CMD_RULE_DEL &&
		    (op->family && s->split ? s->t[f] == T_NONE :
		     s->t[0] == T_NONE && s->t[1] == T_NONE))
			op->cmd = PORTDISPATCH_CMD_RULE_ADD;
		if (op->cmd == PORTDISPATCH_CMD_RULE_ADD && op->family &&
		    s->t[f] != T_NONE)
			op->cmd = PORTDISPATCH_CMD_RULE_REPLACE;
		op->target = pick_target(c, s->t[f]);
		return;
	}
}

/* A change that must be refused: an add over REPLACE's rule, always there. */
static void pick_bad_op(struct op *op)
{
	memset(op, 0, sizeof(*op));
	op->cmd = PORTDISPATCH_CMD_RULE_ADD;
	op->cp = rnd(2) ? K_REPLACE : NKINDS + K_REPLACE;
	op->target = T_FD(0);
	op->expect = EEXIST;
}

static void put_target(struct pdn_req *r, const struct cport *c, int t)
{
	if (t >= T_GROUP(0)) {
		const struct pdn_member x = {
			.fd = socks[c->fd_member[0]].fd,
			.weight = splits[t - T_GROUP(0)].x,
		};
		const struct pdn_member y = {
			.port = c->pt_port[0],
			.weight = splits[t - T_GROUP(0)].y,
		};
		bool y_first = splits[t - T_GROUP(0)].y_first;

		pdn_target_member(r, y_first ? &y : &x);
		pdn_target_member(r, y_first ? &x : &y);
		return;
	}
	if (t == T_DEAD)
		pdn_target_port(r, DEAD_PORT);
	else if (t < T_PT(0))
		pdn_target_fd(r, socks[c->fd_member[t - T_FD(0)]].fd);
	else
		pdn_target_port(r, c->pt_port[t - T_PT(0)]);
}

/* @op as a request, appended to @buf at *@len; its sequence number. */
static uint32_t put_op(char *buf, size_t *len, const struct op *op)
{
	const struct cport *c = &cports[op->cp];
	struct pdn_req r;

	pdn_req_init(&nl, &r, op->cmd, NLM_F_ACK);
	pdn_rule_key(&r, c->proto, c->port, 0);
	if (c->kind == K_PREFIX)
		pdn_rule_dst(&r, op->family == AF_INET ? S4 "/32" : S6 "/128");
	else if (op->family)
		pdn_put_u8(&r, PORTDISPATCH_A_RULE_FAMILY, op->family);
	if (op->cmd != PORTDISPATCH_CMD_RULE_DEL)
		put_target(&r, c, op->target);
	memcpy(buf + *len, r.buf, r.nlh->nlmsg_len);
	*len += NLMSG_ALIGN(r.nlh->nlmsg_len);
	return r.nlh->nlmsg_seq;
}

static uint32_t put_cmd(char *buf, size_t *len, uint8_t cmd)
{
	struct pdn_req r;

	pdn_req_init(&nl, &r, cmd, NLM_F_ACK);
	memcpy(buf + *len, r.buf, r.nlh->nlmsg_len);
	*len += NLMSG_ALIGN(r.nlh->nlmsg_len);
	return r.nlh->nlmsg_seq;
}

/* ---- the churner -------------------------------------------------------- */

#define MAX_BATCH	8

static uint64_t run_end;		/* when the clients stop starting flows */

static struct {
	unsigned long changes;		/* rule commands that took effect */
	unsigned long lone, batches, aborted;
	unsigned long refused[2];	/* lone changes, batches */
	unsigned long by_cmd[4];	/* RULE_ADD, REPLACE, DEL */
	char error[512];		/* the first thing that went wrong */
	uint64_t start, end;
} churn;

static void log_state(int cp, uint64_t s, uint64_t e)
{
	struct slog *l = vec_push(&slogs);
	int f;

	l->s = s;
	l->e = e;
	l->cp = cp;
	for (f = 0; f < 2; f++) {
		l->id[f] = eff_id(&cports[cp], f, model[cp].t[f]);
		l->id2[f] = eff_id2(&cports[cp], f, model[cp].t[f]);
	}
}

static void churn_fail(const char *fmt, ...)
{
	va_list ap;

	if (churn.error[0])
		return;
	va_start(ap, fmt);
	vsnprintf(churn.error, sizeof(churn.error), fmt, ap);
	va_end(ap);
}

static const char *op_str(const struct op *op, char *buf, size_t len)
{
	static const char *const cmds[] = { "?", "add", "replace", "del" };
	const struct cport *c = &cports[op->cp];

	snprintf(buf, len, "%s%s %s %u%s%s target %d",
		 op->family == AF_INET ? "-4 " : op->family == AF_INET6 ? "-6 " : "",
		 cmds[op->cmd], c->proto == IPPROTO_TCP ? "tcp" : "udp",
		 c->port, c->kind == K_PREFIX ? " dst " : "",
		 c->kind != K_PREFIX ? "" : op->family == AF_INET ? S4 "/32" :
		 S6 "/128", op->target);
	return buf;
}

/* What one step of the churner sends: a lone change, or a batch. */
struct step {
	struct op ops[MAX_BATCH + 1];
	unsigned int n;
	uint8_t end;		/* 0: a lone change; BATCH_COMMIT or _ABORT */
	bool refused;		/* a command is refused: nothing applies */
	struct pstate after[NCP];	/* the model once it applied */
};

/*
 * A lone change, one in 50 of them refused, or a batch of 2 to MAX_BATCH
 * changes, anywhere (a port may change several times in one), one in 20
 * aborted and one in 20 refused at its COMMIT for a bad command in it.
 */
static void plan_step(struct step *st)
{
	unsigned int i, bad;
	int cp;

	memset(st, 0, sizeof(*st));
	memcpy(st->after, model, sizeof(model));
	if (rnd(100) < 65) {
		st->n = 1;
		if (!rnd(50)) {
			pick_bad_op(&st->ops[0]);
			st->refused = true;
			return;
		}
		cp = rnd(NCP);
		pick_op(cp, &st->after[cp], &st->ops[0]);
		model_apply(&cports[cp], &st->after[cp], &st->ops[0]);
		return;
	}
	st->end = PORTDISPATCH_CMD_BATCH_COMMIT;
	st->n = 2 + rnd(MAX_BATCH - 1);
	for (i = 0; i < st->n; i++) {
		cp = rnd(NCP);
		pick_op(cp, &st->after[cp], &st->ops[i]);
		model_apply(&cports[cp], &st->after[cp], &st->ops[i]);
	}
	i = rnd(100);
	if (i < 5) {
		st->end = PORTDISPATCH_CMD_BATCH_ABORT;
	} else if (i < 10) {
		/* It changes nothing: the commands after it stand as planned. */
		bad = rnd(st->n + 1);
		memmove(&st->ops[bad + 1], &st->ops[bad],
			(st->n - bad) * sizeof(st->ops[0]));
		pick_bad_op(&st->ops[bad]);
		st->n++;
		st->refused = true;
	}
}

/*
 * One step, in one datagram, each request acked, and each answer what
 * the model says. Then the ports it changed are logged in their new
 * state, between the times around sendmsg(): the kernel handles every
 * request of a datagram before sendmsg() returns (a genetlink doit runs
 * in the sender), so the commit is between them.
 */
static int churn_step(void)
{
	static char buf[(MAX_BATCH + 3) * 256];
	uint32_t seq[MAX_BATCH + 3];
	unsigned int nreq = 0, i, logged = 0;
	struct pdn_status ack;
	size_t len = 0;
	struct step st;
	uint64_t s, e;
	char what[128];

	plan_step(&st);
	if (st.end)
		seq[nreq++] = put_cmd(buf, &len, PORTDISPATCH_CMD_BATCH_BEGIN);
	for (i = 0; i < st.n; i++)
		seq[nreq++] = put_op(buf, &len, &st.ops[i]);
	if (st.end)
		seq[nreq++] = put_cmd(buf, &len, st.end);

	s = now_ns();
	if (mnl_socket_sendto(nl.sock, buf, len) != (ssize_t)len) {
		churn_fail("sending %u requests: %s", nreq, strerror(errno));
		return -1;
	}
	e = now_ns();
	for (i = 0; i < nreq; i++) {
		const struct op *op = NULL;
		int want = 0, err = pdn_wait(&nl, seq[i], &ack);

		if (st.end && i == nreq - 1)
			want = st.refused ? EINVAL : 0;
		else if (!st.end || i)
			op = &st.ops[st.end ? i - 1 : i];
		if (op)
			want = op->expect;
		if (err == want)
			continue;
		if (op)
			op_str(op, what, sizeof(what));
		else
			snprintf(what, sizeof(what), "%s", i ? "the batch's end" :
				 "BATCH_BEGIN");
		churn_fail("%s: %s (\"%s\"), the model expected %s", what,
			   err ? strerror(err) : "applied", ack.msg,
			   want ? strerror(want) : "success");
		return -1;
	}

	if (st.refused) {
		churn.refused[!!st.end]++;
		return 0;
	}
	if (st.end == PORTDISPATCH_CMD_BATCH_ABORT) {
		churn.aborted++;
		return 0;
	}
	if (st.end)
		churn.batches++;
	else
		churn.lone++;
	memcpy(model, st.after, sizeof(model));
	for (i = 0; i < st.n; i++) {
		churn.by_cmd[st.ops[i].cmd]++;
		churn.changes++;
		if (!(logged & 1u << st.ops[i].cp))
			log_state(st.ops[i].cp, s, e);
		logged |= 1u << st.ops[i].cp;
	}
	return 0;
}

static void *churner(void *arg)
{
	(void)arg;
	churn.start = now_ns();
	while (now_ns() < run_end)
		if (churn_step())
			break;
	churn.end = now_ns();
	return NULL;
}

/* ---- the server --------------------------------------------------------- */

static int stop_fd = -1;

#define EV_SOCK		(1ull << 32)
#define EV_CONN		(2ull << 32)
#define EV_STOP		(3ull << 32)

static struct {
	unsigned long accepted, datagrams, send_errors;
} served;

/*
 * What a socket answers: a query's sequence number and magic, echoed
 * (UDP), then its identity and when it took the flow (CLOCK_MONOTONIC,
 * the same clock as the churner's: the table had decided by then).
 */
struct answer {
	uint32_t seq, magic;
	uint32_t id;
	uint32_t ns_hi, ns_lo;
};

#define MAGIC		0x63687572	/* "chur" */

static void serve_udp(int id)
{
	struct sockaddr_storage peer;
	struct answer a;

	for (;;) {
		socklen_t plen = sizeof(peer);
		ssize_t n = recvfrom(socks[id].fd, &a, sizeof(a), MSG_DONTWAIT,
				     (struct sockaddr *)&peer, &plen);
		uint64_t t = now_ns();

		if (n < 0)
			return;
		served.datagrams++;
		a.id = htonl(id);
		a.ns_hi = htonl(t >> 32);
		a.ns_lo = htonl((uint32_t)t);
		if (sendto(socks[id].fd, &a, sizeof(a), MSG_DONTWAIT,
			   (struct sockaddr *)&peer, plen) != sizeof(a))
			served.send_errors++;
	}
}

static void serve_tcp(int ep, int id)
{
	struct epoll_event ev;
	struct answer a;
	int fd;

	while ((fd = accept4(socks[id].fd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
		uint64_t t = now_ns();

		served.accepted++;
		a.id = htonl(id);
		a.ns_hi = htonl(t >> 32);
		a.ns_lo = htonl((uint32_t)t);
		if (send(fd, &a.id, 12, MSG_DONTWAIT) != 12)
			served.send_errors++;
		/* Closed once the client resets it: no FIN from here. */
		ev.events = EPOLLIN | EPOLLRDHUP;
		ev.data.u64 = EV_CONN | (uint32_t)fd;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev))
			close(fd);
	}
}

static void *server(void *arg)
{
	struct epoll_event evs[64], ev;
	int ep = epoll_create1(EPOLL_CLOEXEC), i, n;

	(void)arg;
	for (i = 0; i < nsocks; i++) {
		ev.events = EPOLLIN;
		ev.data.u64 = EV_SOCK | i;
		epoll_ctl(ep, EPOLL_CTL_ADD, socks[i].fd, &ev);
	}
	ev.events = EPOLLIN;
	ev.data.u64 = EV_STOP;
	epoll_ctl(ep, EPOLL_CTL_ADD, stop_fd, &ev);

	for (;;) {
		n = epoll_wait(ep, evs, 64, -1);
		for (i = 0; i < n; i++) {
			uint64_t what = evs[i].data.u64 & ~0xffffffffull;
			int v = (uint32_t)evs[i].data.u64;
			char sink[64];

			if (what == EV_STOP) {
				close(ep);
				return NULL;
			}
			if (what == EV_CONN) {
				ssize_t r = recv(v, sink, sizeof(sink),
						 MSG_DONTWAIT);

				if (r == 0 || (r < 0 && errno != EAGAIN))
					close(v);
			} else if (socks[v].proto == IPPROTO_TCP) {
				serve_tcp(ep, v);
			} else {
				serve_udp(v);
			}
		}
	}
}

/* ---- the clients -------------------------------------------------------- */

#define WIN_TCP		8	/* connections in flight */
#define WIN_UDP		8	/* queries in flight */
#define UDP_SOCKS	2	/* per family */

/* A flow unanswered this long failed: a guest starved by its host is slow. */
#define FLOW_TIMEOUT_NS	(pd_ms(5000) * 1000000ull)

struct slot {
	bool busy;
	int fd;			/* TCP */
	uint32_t seq;		/* UDP */
	uint64_t t0;		/* before connect() or sendto() */
	uint64_t thi;		/* the SYN-ACK had come by then (TCP); 0: not yet */
	uint8_t cp, f;
};

static struct slot tslot[WIN_TCP], uslot[WIN_UDP];
static int usock[2][UDP_SOCKS];
static int cli_ep;
static unsigned int next_tcp, next_udp;
static uint32_t useq;

/*
 * @srv_ns: when the server accepted the connection or read the datagram,
 * after the table decided; 0 when there was no answer.
 */
static void record(struct slot *sl, enum outcome o, int id, int err,
		   uint8_t from, uint64_t srv_ns)
{
	struct flow *fl = vec_push(&flows);

	fl->t0 = sl->t0;
	fl->t1 = now_ns();
	fl->thi = fl->t1;
	if (sl->thi && sl->thi < fl->thi)
		fl->thi = sl->thi;
	if (srv_ns && srv_ns < fl->thi)
		fl->thi = srv_ns;
	fl->id = id;
	fl->cp = sl->cp;
	fl->f = sl->f;
	fl->outcome = o;
	fl->err = err;
	fl->from = from;
	sl->busy = false;
}

static void dst(int cp, int f, struct sockaddr_storage *ss, socklen_t *len)
{
	*len = pd_sockaddr(f ? AF_INET6 : AF_INET, f ? S6 : S4,
			   cports[cp].port, ss);
}

static uint64_t answer_ns(const struct answer *a)
{
	return (uint64_t)ntohl(a->ns_hi) << 32 | ntohl(a->ns_lo);
}

/*
 * Stray segments: now and then a TCP reset from a port without a
 * connection, to 5000 or 5001, which always have a rule. No socket owns
 * it, so the hook hands it to the rule's target (a listener ignores a
 * reset), as it would a SYN cookie's ACK, and counts it as the packet it
 * is (LOOKUPS, HITS), never as a flow (STEERED, UNDELIVERABLE).
 */
#define STRAY_EVERY	16	/* connections */

static int raw[2] = { -1, -1 };
static unsigned long strays;
static unsigned int next_stray;

static uint16_t csum(const void *data, size_t len, uint32_t sum)
{
	const uint16_t *w = data;

	for (; len > 1; len -= 2)
		sum += *w++;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

static void stray(void)
{
	unsigned int c = next_stray++;
	int f = c % 2, cp = (c / 2) % 2 ? K_DEAD : K_REPLACE;
	struct {
		struct in_addr src, dst;
		uint8_t zero, proto;
		uint16_t len;
		struct tcphdr th;
	} p = { .proto = IPPROTO_TCP, .len = htons(sizeof(p.th)) };
	struct sockaddr_storage ss;
	socklen_t len;

	/* Below the ephemeral ports: never a connection's. */
	p.th.source = htons(1024 + c % 30000);
	p.th.dest = htons(cports[cp].port);
	p.th.seq = htonl(c * 2654435761u);
	p.th.doff = sizeof(p.th) / 4;
	p.th.rst = 1;
	/* IPv6's checksum is the kernel's (IPV6_CHECKSUM). */
	if (!f) {
		inet_pton(AF_INET, CLI4, &p.src);
		inet_pton(AF_INET, S4, &p.dst);
		p.th.check = csum(&p, sizeof(p), 0);
	}
	dst(cp, f, &ss, &len);
	/* A raw socket's "port" is its protocol, or none. */
	if (f)
		((struct sockaddr_in6 *)&ss)->sin6_port = 0;
	else
		((struct sockaddr_in *)&ss)->sin_port = 0;
	if (sendto(raw[f], &p.th, sizeof(p.th), 0, (struct sockaddr *)&ss,
		   len) == sizeof(p.th))
		strays++;
}

/* Raw TCP sockets of the clients, that send strays and read nothing. */
static int make_raw(void)
{
	struct sock_filter none = BPF_STMT(BPF_RET | BPF_K, 0);
	struct sock_fprog prog = { .len = 1, .filter = &none };
	struct sockaddr_storage ss;
	socklen_t len;
	int f;

	for (f = 0; f < 2; f++) {
		raw[f] = socket(f ? AF_INET6 : AF_INET, SOCK_RAW | SOCK_CLOEXEC,
				IPPROTO_TCP);
		len = pd_sockaddr(f ? AF_INET6 : AF_INET, f ? CLI6 : CLI4, 0,
				  &ss);
		if (raw[f] < 0 ||
		    setsockopt(raw[f], SOL_SOCKET, SO_ATTACH_FILTER, &prog,
			       sizeof(prog)) ||
		    (f && setsockopt(raw[f], IPPROTO_IPV6, IPV6_CHECKSUM,
				     &(int){ offsetof(struct tcphdr, check) },
				     sizeof(int))) ||
		    bind(raw[f], (struct sockaddr *)&ss, len))
			return pd_setup_fail("a raw TCP socket", errno);
	}
	return 0;
}

static void tcp_start(int i)
{
	struct slot *sl = &tslot[i];
	struct pollfd p = { .events = POLLOUT };
	struct sockaddr_storage ss;
	struct epoll_event ev;
	socklen_t len;
	unsigned int c = next_tcp++;

	if (!(c % STRAY_EVERY))
		stray();
	sl->cp = (c / 2) % NKINDS;
	sl->f = c % 2;
	dst(sl->cp, sl->f, &ss, &len);
	sl->thi = 0;
	sl->busy = true;
	sl->t0 = now_ns();
	sl->fd = socket(sl->f ? AF_INET6 : AF_INET,
			SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (sl->fd < 0) {
		record(sl, O_ERROR, -1, errno, 0, 0);
		return;
	}
	if (connect(sl->fd, (struct sockaddr *)&ss, len) && errno != EINPROGRESS) {
		record(sl, errno == ECONNREFUSED ? O_REFUSED : O_ERROR, -1,
		       errno, 0, 0);
		close(sl->fd);
		return;
	}
	/*
	 * Over a veth the SYN is usually handled, and answered, before
	 * connect() returns: then the table decided before now.
	 */
	p.fd = sl->fd;
	if (poll(&p, 1, 0) == 1 && p.revents == POLLOUT)
		sl->thi = now_ns();
	ev.events = EPOLLIN | EPOLLRDHUP | (sl->thi ? 0 : EPOLLOUT);
	ev.data.u64 = i;
	epoll_ctl(cli_ep, EPOLL_CTL_ADD, sl->fd, &ev);
}

/* Done with a connection: a reset, so that no TIME_WAIT socket is left. */
static void tcp_close(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

static void tcp_event(int i, uint32_t events)
{
	struct slot *sl = &tslot[i];
	struct epoll_event ev;
	struct answer a;
	ssize_t n;
	int err;

	if ((events & EPOLLOUT) && !sl->thi) {
		sl->thi = now_ns();
		ev.events = EPOLLIN | EPOLLRDHUP;
		ev.data.u64 = i;
		epoll_ctl(cli_ep, EPOLL_CTL_MOD, sl->fd, &ev);
	}
	n = recv(sl->fd, &a.id, 12, MSG_DONTWAIT);
	err = errno;
	if (n < 0 && err == EAGAIN) {
		socklen_t len = sizeof(err);

		/* Not readable: an error came (a reset), or nothing yet. */
		if (getsockopt(sl->fd, SOL_SOCKET, SO_ERROR, &err, &len) || !err)
			return;
		n = -1;
	}
	if (n == 12)
		record(sl, O_OK, ntohl(a.id), 0, 0, answer_ns(&a));
	else if (n == 0)
		record(sl, O_EOF, -1, 0, 0, 0);
	else if (n > 0)
		record(sl, O_ERROR, -1, EMSGSIZE, 0, 0);
	else
		record(sl, err == ECONNREFUSED ? O_REFUSED :
		       err == ECONNRESET ? O_RESET : O_ERROR, -1, err, 0, 0);
	tcp_close(sl->fd);
}

static void udp_start(int i)
{
	struct slot *sl = &uslot[i];
	struct sockaddr_storage ss;
	socklen_t len;
	unsigned int c = next_udp++;
	struct answer q = { 0 };

	sl->cp = NKINDS + (c / 2) % NKINDS;
	sl->f = c % 2;
	sl->seq = (++useq << 8) | i;
	sl->thi = 0;
	dst(sl->cp, sl->f, &ss, &len);
	q.seq = htonl(sl->seq);
	q.magic = htonl(MAGIC);
	sl->busy = true;
	sl->t0 = now_ns();
	if (sendto(usock[sl->f][(c / 2 / NKINDS) % UDP_SOCKS], &q, 8, 0,
		   (struct sockaddr *)&ss, len) != 8)
		record(sl, O_ERROR, -1, errno, 0, 0);
}

static uint8_t udp_from(const struct slot *sl, uint32_t id,
			const struct sockaddr_storage *from)
{
	struct sockaddr_storage used;
	socklen_t len;
	int port = pd_sockaddr_port(from);

	dst(sl->cp, sl->f, &used, &len);
	/* As the client sent it, or else as the socket sent it. */
	if (!memcmp(from, &used, len))
		return FROM_PORT_USED;
	/* A socket on [::] answers from the address the stack chooses. */
	if ((int)id < nsocks && port == socks[id].port)
		return FROM_OWN_PORT;
	return FROM_ELSEWHERE;
}

static void udp_event(int fd)
{
	struct sockaddr_storage from;
	struct answer a;

	for (;;) {
		socklen_t flen = sizeof(from);
		ssize_t n = recvfrom(fd, &a, sizeof(a), MSG_DONTWAIT,
				     (struct sockaddr *)&from, &flen);
		uint32_t seq;
		struct slot *sl;

		if (n < 0)
			return;
		if (n != sizeof(a) || ntohl(a.magic) != MAGIC)
			continue;
		seq = ntohl(a.seq);
		sl = &uslot[seq & 0xff];
		if ((seq & 0xff) >= WIN_UDP || !sl->busy || sl->seq != seq)
			continue;	/* an answer too late: its query failed */
		record(sl, O_OK, ntohl(a.id), 0, udp_from(sl, ntohl(a.id), &from),
		       answer_ns(&a));
	}
}

static void expire(uint64_t now)
{
	int i;

	for (i = 0; i < WIN_TCP; i++)
		if (tslot[i].busy && now - tslot[i].t0 > FLOW_TIMEOUT_NS) {
			record(&tslot[i], O_TIMEOUT, -1, 0, 0, 0);
			tcp_close(tslot[i].fd);
		}
	for (i = 0; i < WIN_UDP; i++)
		if (uslot[i].busy && now - uslot[i].t0 > FLOW_TIMEOUT_NS)
			record(&uslot[i], O_TIMEOUT, -1, 0, 0, 0);
}

static bool any_busy(void)
{
	int i;

	for (i = 0; i < WIN_TCP; i++)
		if (tslot[i].busy)
			return true;
	for (i = 0; i < WIN_UDP; i++)
		if (uslot[i].busy)
			return true;
	return false;
}

static void *client(void *arg)
{
	struct epoll_event evs[32];
	uint64_t now, last_expire = 0;
	int i, n;

	(void)arg;
	/* The connections' sockets are made here, on the clients' side. */
	pd_go(ns_cli);
	for (;;) {
		now = now_ns();
		if (now < run_end) {
			for (i = 0; i < WIN_TCP; i++)
				if (!tslot[i].busy)
					tcp_start(i);
			for (i = 0; i < WIN_UDP; i++)
				if (!uslot[i].busy)
					udp_start(i);
		} else if (!any_busy()) {
			return NULL;
		}
		n = epoll_wait(cli_ep, evs, 32, 10);
		for (i = 0; i < n; i++) {
			uint64_t d = evs[i].data.u64;

			if (d & EV_SOCK)
				udp_event((int)(uint32_t)d);
			else
				tcp_event((int)d, evs[i].events);
		}
		now = now_ns();
		if (now - last_expire > 10000000ull) {
			expire(now);
			last_expire = now;
		}
	}
}

static int make_clients(void)
{
	struct epoll_event ev;
	int f, j;

	pd_go(ns_cli);
	if (make_raw()) {
		pd_go(ns_srv);
		return -1;
	}
	cli_ep = epoll_create1(EPOLL_CLOEXEC);
	for (f = 0; f < 2; f++) {
		for (j = 0; j < UDP_SOCKS; j++) {
			int fd = pd_server(f ? AF_INET6 : AF_INET, SOCK_DGRAM,
					   f ? CLI6 : CLI4, 0, true);

			if (fd < 0) {
				pd_go(ns_srv);
				return pd_setup_fail("a client's UDP socket", errno);
			}
			usock[f][j] = fd;
			ev.events = EPOLLIN;
			ev.data.u64 = EV_SOCK | (uint32_t)fd;
			epoll_ctl(cli_ep, EPOLL_CTL_ADD, fd, &ev);
		}
	}
	pd_go(ns_srv);
	return 0;
}

/* ---- checks -------------------------------------------------------------- */


static const char *sock_str(int id, char *buf, size_t len)
{
	const struct ssock *s;

	if (id < 0 || id >= nsocks) {
		snprintf(buf, len, "socket %d (no such socket)", id);
		return buf;
	}
	s = &socks[id];
	snprintf(buf, len, "socket %d (%s of %s, %s %s%s%s port %u)", id,
		 role_name[s->role],
		 s->cp < 0 ? "no churned port" : cports[s->cp].proto ==
		 IPPROTO_TCP ? "TCP" : "UDP", s->cp < 0 ? "" :
		 kind_name[cports[s->cp].kind], s->family == AF_INET6 ? "[" : "",
		 s->addr, s->family == AF_INET6 ? "]" : "", s->port);
	return buf;
}

/* The states of @cp possibly current during [t0, t1]: [*lo, *hi]. */
static void states_during(const struct slog *const *st, size_t n,
			  uint64_t t0, uint64_t t1, size_t *lo, size_t *hi)
{
	size_t a = 0, b = n;

	/* The first state whose successor took effect at t0 or later. */
	while (a < b) {
		size_t m = (a + b) / 2;

		if (m + 1 < n && st[m + 1]->e < t0)
			a = m + 1;
		else
			b = m;
	}
	*lo = a;
	for (b = a; b + 1 < n && st[b + 1]->s <= t1; b++)
		;
	*hi = b;
}


/*
 * The starting table, in one batch: a rule on every churned port but
 * FREE's IPv6 side, and PREFIX's other prefixes, which never change.
 */
static int initial_rules(char *err, size_t errlen)
{
	static char buf[128 * 256];
	static const struct op first[NKINDS][2] = {
		[K_REPLACE] = { { PORTDISPATCH_CMD_RULE_ADD, 0, 0, T_FD(0), 0 } },
		[K_DEAD] = { { PORTDISPATCH_CMD_RULE_ADD, 0, 0, T_PT(0), 0 } },
		[K_FREE] = { { PORTDISPATCH_CMD_RULE_ADD, 0, AF_INET, T_FD(1), 0 } },
		[K_PREFIX] = { { PORTDISPATCH_CMD_RULE_ADD, 0, AF_INET, T_FD(0), 0 },
			       { PORTDISPATCH_CMD_RULE_ADD, 0, AF_INET6, T_PT(1), 0 } },
		[K_GROUP] = { { PORTDISPATCH_CMD_RULE_ADD, 0, 0, T_GROUP(0), 0 } },
	};
	uint32_t seq[128];
	unsigned int nreq = 0, i;
	struct pdn_status st;
	size_t len = 0;
	int cp, j;

	seq[nreq++] = put_cmd(buf, &len, PORTDISPATCH_CMD_BATCH_BEGIN);
	for (cp = 0; cp < NCP; cp++) {
		const struct cport *c = &cports[cp];

		for (j = 0; j < 2 && first[c->kind][j].cmd; j++) {
			struct op op = first[c->kind][j];

			op.cp = cp;
			model_apply(c, &model[cp], &op);
			seq[nreq++] = put_op(buf, &len, &op);
		}
		if (c->kind != K_PREFIX)
			continue;
		for (j = 1; j <= 2 * NBG; j++) {
			struct pdn_req r;
			char prefix[64];

			if (j <= NBG)
				snprintf(prefix, sizeof(prefix),
					 "198.18.9.%d/32", j);
			else
				snprintf(prefix, sizeof(prefix),
					 "2001:db8:9::%d/128", j);
			pdn_req_init(&nl, &r, PORTDISPATCH_CMD_RULE_ADD,
				     NLM_F_ACK);
			pdn_rule_key(&r, c->proto, c->port, 0);
			pdn_rule_dst(&r, prefix);
			pdn_target_port(&r, BG_PORT);
			memcpy(buf + len, r.buf, r.nlh->nlmsg_len);
			len += NLMSG_ALIGN(r.nlh->nlmsg_len);
			seq[nreq++] = r.nlh->nlmsg_seq;
		}
	}
	seq[nreq++] = put_cmd(buf, &len, PORTDISPATCH_CMD_BATCH_COMMIT);
	if (mnl_socket_sendto(nl.sock, buf, len) != (ssize_t)len) {
		snprintf(err, errlen, "sending the first rules: %s",
			 strerror(errno));
		return -1;
	}
	for (i = 0; i < nreq; i++) {
		if (pdn_wait(&nl, seq[i], &st)) {
			snprintf(err, errlen, "request %u of the first rules: %s (%.160s)",
				 i, strerror(st.err), st.msg);
			return -1;
		}
	}
	for (cp = 0; cp < NCP; cp++)
		log_state(cp, 0, 0);
	return 0;
}

/* The run's length: 10 s, 60 s under PORTDISPATCH_STRESS=1, scaled. */
static int run_ms(void)
{
	const char *stress = getenv("PORTDISPATCH_STRESS");

	return pd_ms(stress && atoi(stress) > 0 ? 60000 : 10000);
}

/*
 * The stack's own counters: the resets the server's side sent, segments
 * TCP sent again on either side, datagrams UDP dropped for a full
 * receive buffer.
 */
struct stack_counts {
	long out_rsts, retrans, rcvbuf_errors;
};

static void stack_counts(struct stack_counts *c)
{
	int i, ns[2] = { ns_srv, ns_cli };

	memset(c, 0, sizeof(*c));
	/* The main thread's namespace is what /proc/self/net shows. */
	for (i = 0; i < 2; i++) {
		pd_go(ns[i]);
		if (ns[i] == ns_srv)
			c->out_rsts = pd_proc_counter("/proc/net/snmp", "Tcp",
						      "OutRsts");
		c->retrans += pd_proc_counter("/proc/net/snmp", "Tcp",
					      "RetransSegs");
		c->rcvbuf_errors +=
			pd_proc_counter("/proc/net/snmp", "Udp", "RcvbufErrors") +
			pd_proc_counter("/proc/net/snmp6", NULL,
					"Udp6RcvbufErrors");
	}
	pd_go(ns_srv);
}

/* Per churned port: what the clients saw. */
struct tally {
	unsigned long sent, pool, normal;
	unsigned long from_port;	/* UDP: answers FROM_PORT_USED */
	unsigned long rewritten;	/* ... of them, by the pool */
};

static struct tally tally[NCP];

/* Flows each socket answered, as the clients saw them. */
static unsigned long answered_by[MAXSOCKS];

/* Up to this many of each kind of failure are printed. */
#define SHOW		10

/*
 * Every flow answered, by a socket of its port's that a state of the
 * port possibly current while the table decided named for its family.
 */
static void __check_flows(struct __test_metadata *_metadata, uint64_t start)
{
	unsigned long failed = 0, outside = 0, late = 0, elsewhere = 0;
	uint64_t slowest = 0;
	unsigned long exact = 0, answered = 0;
	const struct slog **per[NCP];
	size_t nper[NCP] = { 0 };
	uint64_t window = 0;
	char a[96], b[128];
	size_t i, k;
	int cp;

	/* Each port's states in time order (the churner logged them so). */
	for (i = 0; i < slogs.n; i++)
		nper[((struct slog *)slogs.v)[i].cp]++;
	for (cp = 0; cp < NCP; cp++) {
		per[cp] = calloc(nper[cp], sizeof(*per[cp]));
		ASSERT_NE(NULL, per[cp]);
		nper[cp] = 0;
	}
	for (i = 0; i < slogs.n; i++) {
		const struct slog *l = &((struct slog *)slogs.v)[i];

		per[l->cp][nper[l->cp]++] = l;
	}

	for (i = 0; i < flows.n; i++) {
		const struct flow *fl = &((struct flow *)flows.v)[i];
		const struct cport *c = &cports[fl->cp];
		const struct slog *const *st = per[fl->cp];
		struct tally *t = &tally[fl->cp];
		long took = (long)((fl->t1 - fl->t0) / 1000000);
		const struct ssock *s;
		size_t lo, hi;

		snprintf(a, sizeof(a), "%s %s%s%s:%u at %ld ms",
			 c->proto == IPPROTO_TCP ? "TCP" : "UDP",
			 fl->f ? "[" : "", fl->f ? S6 : S4, fl->f ? "]" : "",
			 c->port, (long)((fl->t0 - start) / 1000000));
		t->sent++;
		if (fl->t1 - fl->t0 > slowest)
			slowest = fl->t1 - fl->t0;
		if (fl->outcome != O_OK) {
			if (failed++ < SHOW)
				TH_LOG("%s: %s%s%s after %ld ms", a,
				       outcome_name[fl->outcome],
				       fl->err ? ": " : "",
				       fl->err ? strerror(fl->err) : "", took);
			continue;
		}
		s = fl->id >= 0 && fl->id < nsocks ? &socks[fl->id] : NULL;
		if (!s || s->cp != fl->cp ||
		    (s->role != R_POOL && s->role != R_NORMAL) ||
		    (s->family && fam_index(s->family) != fl->f)) {
			if (outside++ < SHOW)
				TH_LOG("misrouted: %s, answered by %s, which no rule of the port names",
				       a, sock_str(fl->id, b, sizeof(b)));
			continue;
		}
		answered++;
		t->pool += s->role == R_POOL;
		t->normal += s->role == R_NORMAL;
		t->from_port += fl->from == FROM_PORT_USED;
		t->rewritten += fl->from == FROM_PORT_USED && s->role == R_POOL;
		if (c->proto == IPPROTO_UDP && fl->from == FROM_ELSEWHERE &&
		    elsewhere++ < SHOW)
			TH_LOG("%s: answered from neither the address and port used nor the socket's own port",
			       a);
		window += fl->thi - fl->t0;

		answered_by[fl->id]++;
		states_during(st, nper[fl->cp], fl->t0, fl->thi, &lo, &hi);
		for (k = lo; k <= hi && st[k]->id[fl->f] == st[lo]->id[fl->f] &&
		     st[k]->id2[fl->f] < 0; k++)
			;
		/* Its time allowed one socket alone: checked exactly. */
		exact += k > hi;
		for (k = lo; k <= hi && st[k]->id[fl->f] != fl->id &&
		     st[k]->id2[fl->f] != fl->id; k++)
			;
		if (k > hi && late++ < SHOW) {
			char names[64] = "";
			size_t m, n = 0;

			for (m = lo; m <= hi && n + 8 < sizeof(names); m++)
				n += snprintf(names + n, sizeof(names) - n,
					      " %d", st[m]->id[fl->f]);
			TH_LOG("misrouted in time: %s, decided within %ld us, answered by %s; the port's states then named%s",
			       a, (long)((fl->thi - fl->t0) / 1000),
			       sock_str(fl->id, b, sizeof(b)), names);
		}
	}
	note("%lu answers, the table deciding within %.0f us of the flow's start on average; for %lu (%.0f%%) only one socket was right then\n",
	     answered, answered ? window / 1e3 / answered : 0.0, exact,
	     answered ? 100.0 * exact / answered : 0.0);
	note("%lu flows not answered, %lu answered from outside their port's sockets, %lu by a socket that no state of their time named; the slowest took %llu ms\n",
	     failed, outside, late, (unsigned long long)(slowest / 1000000));
	for (cp = 0; cp < NCP; cp++) {
		const struct cport *c = &cports[cp];

		char udp[64] = "";

		if (c->proto == IPPROTO_UDP)
			snprintf(udp, sizeof(udp), ", %lu from the port used",
				 tally[cp].from_port);
		note("%s %u (%s): %zu states; %lu flows, %lu answered by the pool, %lu by the normal socket%s\n",
		     c->proto == IPPROTO_TCP ? "tcp" : "udp", c->port,
		     kind_name[c->kind], nper[cp], tally[cp].sent,
		     tally[cp].pool, tally[cp].normal, udp);
		free(per[cp]);
	}
	EXPECT_EQ(0UL, failed);
	EXPECT_EQ(0UL, outside);
	EXPECT_EQ(0UL, late);
	EXPECT_EQ(0UL, elsewhere);
}

#define check_flows(start)	__check_flows(_metadata, start)

/*
 * GROUP's rule @r: its two members, each having steered what it answered
 * (Y: its sockets of both families), whatever the weights and order.
 */
static void __check_members(struct __test_metadata *_metadata,
			    const struct pdn_rule *r, const struct cport *c)
{
	unsigned long x = answered_by[c->fd_member[0]];
	unsigned long y = answered_by[c->pt_member[0][0]] +
			  answered_by[c->pt_member[0][1]];
	unsigned int i;

	ASSERT_EQ(2U, r->ntargets) TH_LOG("rule %u on %u", r->id, c->port);
	for (i = 0; i < 2; i++) {
		const struct pdn_target *t = &r->m[i];
		bool is_y = t->seen & (1u << PORTDISPATCH_A_TARGET_PORT);

		EXPECT_EQ(is_y ? y : x, t->steered)
			TH_LOG("rule %u on %u, member %c: steered, against the flows it answered",
			       r->id, c->port, is_y ? 'Y' : 'X');
		EXPECT_EQ(0ULL, t->undeliverable)
			TH_LOG("rule %u on %u, member %c: undeliverable",
			       r->id, c->port, is_y ? 'Y' : 'X');
	}
	note("%s %u (group): X steered %llu, Y %llu, answered %lu and %lu\n",
	     c->proto == IPPROTO_TCP ? "tcp" : "udp", c->port,
	     (unsigned long long)r->m[r->m[0].port ? 1 : 0].steered,
	     (unsigned long long)r->m[r->m[0].port ? 0 : 1].steered, x, y);
}

#define check_members(r, c)	__check_members(_metadata, r, c)

/*
 * steered + undeliverable + normal = sent: see the top of the file for
 * which counters say what, and where the sum is exact.
 */
static void __check_counters(struct __test_metadata *_metadata,
			     const struct pdn_stats *st0,
			     const struct stack_counts *sc0,
			     const struct stack_counts *sc1)
{
	uint64_t lookups, hits, misses, steered = 0, undeliverable_rd = 0;
	unsigned long sent = 0, pool_fp = 0, normal_fp = 0;
	uint64_t undeliverable, extra, rsts, retrans;
	struct pdn_status ack;
	struct pdn_stats st1;
	struct pdn_dump dump;
	unsigned int i;
	int cp;

	ASSERT_EQ(0, pdn_dump(&nl, &dump)) TH_LOG("dump: %s", dump.msg);
	for (cp = 0; cp < NCP; cp++) {
		const struct cport *c = &cports[cp];
		const struct pdn_rule *r = NULL;

		sent += tally[cp].sent;
		if (c->kind == K_FREE || c->kind == K_PREFIX) {
			pool_fp += tally[cp].pool;
			normal_fp += tally[cp].normal;
			continue;
		}
		/* Only ever replaced: its counters have every flow. */
		for (i = 0; i < dump.count; i++)
			if (dump.rules[i].proto == c->proto &&
			    dump.rules[i].port_min == c->port)
				r = &dump.rules[i];
		ASSERT_NE(NULL, r) TH_LOG("no rule on %u", c->port);
		if (c->kind == K_GROUP)
			check_members(r, c);
		EXPECT_EQ(tally[cp].pool, r->steered)
			TH_LOG("rule %u on %u: steered, against the flows its pool answered",
			       r->id, c->port);
		EXPECT_EQ(tally[cp].normal, r->undeliverable)
			TH_LOG("rule %u on %u: undeliverable, against the flows its normal socket answered",
			       r->id, c->port);
		/* The pool's answers that left from the port used. */
		if (c->proto == IPPROTO_UDP)
			EXPECT_EQ(tally[cp].rewritten, r->replies)
				TH_LOG("rule %u on %u: replies, against the pool's answers from the port used",
				       r->id, c->port);
		steered += r->steered;
		undeliverable_rd += r->undeliverable;
	}
	pdn_dump_free(&dump);

	ASSERT_EQ(0, pdn_stats(&nl, &st1, &ack)) TH_LOG("STATS_GET: %s", ack.msg);
	lookups = st1.lookups - st0->lookups;
	hits = st1.hits - st0->hits;
	misses = st1.misses - st0->misses;
	EXPECT_EQ(lookups, hits + misses);
	/*
	 * Each flow and each stray consults the table once. With more than
	 * one CPU, a client's last ACK and its reset can be handled out of
	 * order (each CPU has its own backlog): the ACK then finds its
	 * connection gone, and the server answers it with a reset. So can a
	 * segment sent again after the guest stalled, unless it is a reset
	 * itself.
	 */
	ASSERT_LE(sent + strays, lookups)
		TH_LOG("lookups: fewer than the flows and strays sent (%lu, %lu)",
		       sent, strays);
	extra = lookups - sent - strays;
	rsts = sc1->out_rsts - sc0->out_rsts;
	retrans = sc1->retrans - sc0->retrans;
	EXPECT_LE(rsts, extra)
		TH_LOG("the server reset %llu segments that found no connection, but only %llu more than the flows and strays sent consulted the table",
		       (unsigned long long)rsts, (unsigned long long)extra);
	EXPECT_LE(extra, rsts + retrans)
		TH_LOG("lookups: %llu more than the flows and strays sent, only %llu answered with a reset, %llu segments sent again",
		       (unsigned long long)extra, (unsigned long long)rsts,
		       (unsigned long long)retrans);
	/*
	 * What the pools of 5002 and 5300 answered was steered; the rest of
	 * their hits, but for the strays, undeliverable, went to their normal
	 * sockets, as did the misses.
	 */
	steered += pool_fp;
	ASSERT_LE(steered + undeliverable_rd + strays, hits)
		TH_LOG("hits: fewer than the flows steered and undeliverable, and the strays");
	undeliverable = hits - strays - steered;
	note("counters: steered %llu + undeliverable %llu + normal %llu = %llu, %lu flows sent; lookups %llu = hits %llu + misses %llu: the flows, %lu strays and %llu segments that outlived their connection (%llu reset, %llu sent again)\n",
	     (unsigned long long)steered, (unsigned long long)undeliverable,
	     (unsigned long long)misses,
	     (unsigned long long)(steered + undeliverable + misses), sent,
	     (unsigned long long)lookups, (unsigned long long)hits,
	     (unsigned long long)misses, strays, (unsigned long long)extra,
	     (unsigned long long)rsts, (unsigned long long)retrans);
	/* Exact unless such segments blur the hits and misses. */
	if (extra)
		return;
	EXPECT_EQ(sent, steered + undeliverable + misses);
	EXPECT_EQ(normal_fp, undeliverable - undeliverable_rd + misses)
		TH_LOG("flows that the normal sockets of 5002 and 5300 answered, against their undeliverable and unmatched flows");
}

#define check_counters(st0, sc0, sc1) \
	__check_counters(_metadata, st0, sc0, sc1)

FIXTURE(churn) {
	int unused;
};

FIXTURE_SETUP(churn)
{
}

FIXTURE_TEARDOWN(churn)
{
}

TEST_F_TIMEOUT(churn, under_traffic, 150)
{
	struct stack_counts sc0, sc1;
	pthread_t th_srv, th_churn, th_cli;
	double secs, rate, min_rate;
	struct pdn_status ack;
	struct pdn_stats st0;
	const char *env;
	char err[256];
	uint64_t start;
	int ret;

	env = getenv("PORTDISPATCH_SEED");
	rng_state = env ? strtoull(env, NULL, 0) :
		    (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	if (!rng_state)
		rng_state = 1;
	note("seed %llu (PORTDISPATCH_SEED repeats the choices)\n",
	     (unsigned long long)rng_state);

	ASSERT_EQ(0, topology()) TH_LOG("%s", pd_setup_error);
	ret = pdn_open(&nl);
	if (ret == -ENOENT)
		SKIP(return, "the portdispatch module is not loaded");
	ASSERT_EQ(0, ret) TH_LOG("portdispatch's netlink: %s", strerror(-ret));
	ASSERT_EQ(0, make_sockets()) TH_LOG("%s", pd_setup_error);
	ASSERT_EQ(0, make_clients()) TH_LOG("%s", pd_setup_error);
	ASSERT_EQ(0, initial_rules(err, sizeof(err))) TH_LOG("%s", err);

	ASSERT_EQ(0, pdn_stats(&nl, &st0, &ack)) TH_LOG("STATS_GET: %s", ack.msg);
	stack_counts(&sc0);

	stop_fd = eventfd(0, EFD_CLOEXEC);
	ASSERT_LE(0, stop_fd);
	ASSERT_EQ(0, pthread_create(&th_srv, NULL, server, NULL));
	start = now_ns();
	run_end = start + run_ms() * 1000000ull;
	ASSERT_EQ(0, pthread_create(&th_churn, NULL, churner, NULL));
	ASSERT_EQ(0, pthread_create(&th_cli, NULL, client, NULL));
	pthread_join(th_cli, NULL);
	pthread_join(th_churn, NULL);
	ASSERT_EQ((ssize_t)sizeof(uint64_t),
		  write(stop_fd, &(uint64_t){ 1 }, sizeof(uint64_t)));
	pthread_join(th_srv, NULL);

	secs = (churn.end - churn.start) / 1e9;
	rate = churn.changes / secs;
	note("%.1f s: %lu rule changes, %.0f a second: %lu lone, %lu in %lu batches (add %lu, replace %lu, del %lu); refused, as they should be: %lu lone changes and %lu batches; %lu batches aborted\n",
	     secs, churn.changes, rate, churn.lone, churn.changes - churn.lone,
	     churn.batches, churn.by_cmd[PORTDISPATCH_CMD_RULE_ADD],
	     churn.by_cmd[PORTDISPATCH_CMD_RULE_REPLACE],
	     churn.by_cmd[PORTDISPATCH_CMD_RULE_DEL], churn.refused[0],
	     churn.refused[1], churn.aborted);
	note("%zu flows, %.0f a second: %lu TCP connections, %lu UDP queries\n",
	     flows.n, flows.n / (run_ms() / 1e3), served.accepted,
	     served.datagrams);
	EXPECT_EQ(0, churn.error[0]) TH_LOG("churner: %s", churn.error);
	/* The answers never wait for room: a failed one is the stack's. */
	EXPECT_EQ(0UL, served.send_errors)
		TH_LOG("the server could not send %lu answers", served.send_errors);

	check_flows(start);
	stack_counts(&sc1);
	EXPECT_EQ(sc0.rcvbuf_errors, sc1.rcvbuf_errors)
		TH_LOG("datagrams dropped for a full receive buffer");
	check_counters(&st0, &sc0, &sc1);

	min_rate = pd_time_scale() > 1 ? MIN_RATE_SLOW : MIN_RATE;
	EXPECT_LE(min_rate, rate)
		TH_LOG("%.0f changes a second, below %.0f", rate, min_rate);
}

TEST_HARNESS_MAIN
