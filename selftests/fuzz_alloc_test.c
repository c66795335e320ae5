// SPDX-License-Identifier: GPL-2.0
/*
 * Running out of memory, one allocation at a time. Needs the debug
 * kernel's fault injection (scripts/debug-kernel.config); SKIP elsewhere.
 *
 *   alloc.*   every kind of request, with each allocation on its path
 *             failing in turn. /proc/thread-self/fail-nth fails this
 *             task's Nth allocation, and a netlink request runs in its
 *             sender's task, from sendmsg() to the ack. Each attempt starts
 *             from the same table (in a fresh namespace for the first rule
 *             of one), with a listener on the "events" group. Whatever
 *             fails, the request's outcome is one of:
 *             - refused with ENOMEM and a sentence, the table rule for rule
 *               what it was, no event: the module's own allocations;
 *             - refused by netlink before the module saw it: sendmsg()
 *               fails (ENOBUFS); genetlink itself allocates nothing for
 *               our requests, and a dump's start may fail without words;
 *             - the ack lost (ENOBUFS on the socket): the table is then
 *               either what it was or what the request makes it;
 *             - accepted, though an allocation failed (kvmalloc fell back
 *               to vmalloc, or an event could not be built): the table is
 *               what it is without faults, and the listener has the events
 *               or ENOBUFS, never silence.
 *             The walk ends at the first N that no allocation reaches;
 *             every case must have met the module's ENOMEM at least once.
 *   flows.*   the packet path's memory for a UDP flow (allocated in
 *             softirq, where fail-nth cannot reach): failslab, filtered to
 *             the flow cache, fails all of it. The flow is counted missed,
 *             its answer leaves from the target's own port, and flows are
 *             remembered again once memory returns.
 * kmemleak (vm-run's scan when the guest's run ends) finds anything a
 * failed path forgot to free; KASAN and lockdep watch the error paths.
 */

#include <sys/mman.h>

#include "harness.h"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "netlink_helpers.h"
#pragma GCC diagnostic pop
#include "pd_test.h"

#define FAIL_NTH	"/proc/thread-self/fail-nth"
#define FAILSLAB	"/sys/kernel/debug/failslab"
#define FAIL_PAGE	"/sys/kernel/debug/fail_page_alloc"
#define FLOW_CACHE	"/sys/kernel/slab/pd_reply_flow/failslab"
/* No request of these cases makes anywhere near this many allocations. */
#define MAX_NTH		4000u

#define TCP_T		8080	/* a port target's TCP listener */
#define UDP_T		5353	/* ... and UDP socket */
#define BIG		300	/* rules of the big table: kvmalloc'ed arrays */

/*
 * fault_attr knobs this program sets, and what it found there, so that
 * the teardown leaves the kernel's fault injection as it was.
 */
static const char *const knobs[] = {
	FAILSLAB "/ignore-gfp-wait",	FAILSLAB "/verbose",
	FAILSLAB "/cache-filter",	FAILSLAB "/probability",
	FAILSLAB "/interval",		FAILSLAB "/times",
	FAILSLAB "/task-filter",
	FAIL_PAGE "/ignore-gfp-wait",	FAIL_PAGE "/verbose",
};
static char saved[sizeof(knobs) / sizeof(knobs[0])][32];

static bool knobs_save(void)
{
	unsigned int i;

	for (i = 0; i < sizeof(knobs) / sizeof(knobs[0]); i++)
		if (pd_read_file(knobs[i], saved[i], sizeof(saved[i])))
			return false;
	return true;
}

static void knobs_restore(void)
{
	unsigned int i;

	for (i = 0; i < sizeof(knobs) / sizeof(knobs[0]); i++)
		if (saved[i][0])
			pd_write_file(knobs[i], saved[i]);
}

/*
 * fail-nth reaches the task's slab allocations, also those that may
 * sleep (ignore-gfp-wait off), and not its page allocations: slabs take
 * pages only when they run out, which would move the Nth allocation from
 * one attempt to the next. Quietly: a stack dump per injected failure
 * would read as a splat to vm-run.
 */
static int knobs_for_nth(void)
{
	return pd_write_file(FAILSLAB "/ignore-gfp-wait", "N") ?:
	       pd_write_file(FAILSLAB "/verbose", "0") ?:
	       pd_write_file(FAILSLAB "/cache-filter", "N") ?:
	       pd_write_file(FAIL_PAGE "/ignore-gfp-wait", "Y") ?:
	       pd_write_file(FAIL_PAGE "/verbose", "0");
}

/* fault injection is there, or SKIP with the reason. */
static const char *no_fault_injection(void)
{
	if (access(FAIL_NTH, W_OK))
		return "no " FAIL_NTH " (CONFIG_FAULT_INJECTION: the debug kernel has it)";
	if (access(FAILSLAB, F_OK) || access(FAIL_PAGE, F_OK))
		return "no failslab/fail_page_alloc in debugfs (CONFIG_FAILSLAB, CONFIG_FAIL_PAGE_ALLOC, CONFIG_FAULT_INJECTION_DEBUG_FS)";
	if (!knobs_save())
		return "the fault_attr knobs in debugfs are not readable";
	return NULL;
}

/*
 * Without fault injection (Debian's kernels) there is nothing to run: the
 * program skips as a whole, once, saying why. Else the knobs it will
 * change are saved now, for every test's teardown to restore.
 */
static void __attribute__((constructor)) need_fault_injection(void)
{
	const char *why = no_fault_injection();

	if (why) {
		ksft_print_header();
		ksft_exit_skip("%s\n", why);
	}
}

/* The Nth allocation of this thread from now fails. */
static int nth_arm(int fd, unsigned int n)
{
	char buf[16];
	int len = snprintf(buf, sizeof(buf), "%u", n);

	return pwrite(fd, buf, len, 0) == len ? 0 : -errno;
}

/* Disarms; true when the failure was injected (no allocation was left). */
static bool nth_fired(int fd)
{
	char buf[16] = "";
	bool fired;

	fired = pread(fd, buf, sizeof(buf) - 1, 0) > 0 && atoi(buf) == 0;
	pwrite(fd, "0", 1, 0);
	return fired;
}

/* ---- one attempt's world ----------------------------------------------- */

struct world {
	struct pdn nl, ev;	/* requests; the "events" listener */
	int tcp, udp, tcp6;	/* a TCP listener, a bound UDP socket, [::]:8443 */
};

enum outcome {
	ACKED,		/* 0: applied */
	REFUSED,	/* the kernel's error ack */
	NOT_SENT,	/* sendmsg() failed */
	ACK_LOST,	/* ENOBUFS on the socket instead of the ack */
};

struct fault_case;

struct walk {
	const struct fault_case *fc;
	struct world w;
	int nth_fd;
	struct pdn_dump before, want;	/* the table; it after the request */
	unsigned int want_events;	/* events the request makes */
	/* tallies */
	unsigned int sites, module_enomem, core, lost, accepted;
};

struct fault_case {
	const char *what;
	/* builds the table the request starts from (no faults) */
	int (*setup)(struct world *w, struct pdn_status *st);
	/* the request that runs under faults */
	int (*request)(struct world *w, struct pdn_status *st);
	/* what happens next, without faults: 0, or the errno it got */
	int (*then)(struct world *w, enum outcome o,
		    const struct pdn_status *req, struct pdn_status *st);
	/*
	 * How the next attempt gets the table back: by default FLUSH and
	 * setup again; by undoing the request (a big table, built once);
	 * or in a fresh namespace (the first rule of one).
	 */
	int (*undo)(struct world *w, struct pdn_status *st);
	bool fresh;
	bool is_dump;	/* genetlink's dump start allocates too */
};

static int open_world(struct world *w)
{
	int err;

	memset(w, 0, sizeof(*w));
	w->tcp = w->udp = w->tcp6 = -1;
	err = pd_enter_netns() ?: pdn_open(&w->nl) ?: pdn_open(&w->ev);
	if (err)
		return err;
	w->tcp = pd_server(AF_INET, SOCK_STREAM, "127.0.0.1", TCP_T, false);
	w->udp = pd_server(AF_INET, SOCK_DGRAM, "127.0.0.1", UDP_T, false);
	w->tcp6 = pd_server(AF_INET6, SOCK_STREAM, "::1", 8443, true);
	if (w->tcp < 0 || w->udp < 0 || w->tcp6 < 0)
		return -errno;
	return 0;
}

static void close_world(struct world *w)
{
	pdn_close(&w->ev);
	pdn_close(&w->nl);
	if (w->tcp >= 0)
		close(w->tcp);
	if (w->udp >= 0)
		close(w->udp);
	if (w->tcp6 >= 0)
		close(w->tcp6);
	memset(w, 0, sizeof(*w));
}

/* ---- tables and requests ------------------------------------------------ */

static int setup_empty(struct world *w, struct pdn_status *st)
{
	(void)w;
	memset(st, 0, sizeof(*st));
	return 0;
}

/* A TCP port rule, a UDP socket rule, a range under a prefix. */
static int setup_three(struct world *w, struct pdn_status *st)
{
	struct pdn_req r;

	return pdn_rule_to_port(&w->nl, PORTDISPATCH_CMD_RULE_ADD,
				IPPROTO_TCP, 80, 0, TCP_T, st) ?:
	       pdn_rule_to_fd(&w->nl, PORTDISPATCH_CMD_RULE_ADD, IPPROTO_UDP,
			      53, w->udp, st) ?:
	       (pdn_req_init(&w->nl, &r, PORTDISPATCH_CMD_RULE_ADD, 0),
		pdn_rule_key(&r, IPPROTO_TCP, 1000, 2000),
		pdn_rule_dst(&r, "127.0.0.0/8"),
		pdn_target_fd(&r, w->tcp),
		pdn_do(&w->nl, &r, st));
}

static int setup_three_batch(struct world *w, struct pdn_status *st)
{
	return setup_three(w, st) ?:
	       pdn_cmd(&w->nl, PORTDISPATCH_CMD_BATCH_BEGIN, st);
}

/* setup_three, then a batch with three changes staged. */
static int setup_staged(struct world *w, struct pdn_status *st)
{
	return setup_three_batch(w, st) ?:
	       pdn_del(&w->nl, IPPROTO_TCP, 80, 0, st) ?:
	       pdn_rule_to_port(&w->nl, PORTDISPATCH_CMD_RULE_REPLACE,
				IPPROTO_TCP, 1000, 2000, 8081, st) ?:
	       pdn_rule_to_port(&w->nl, PORTDISPATCH_CMD_RULE_ADD,
				IPPROTO_UDP, 100, 199, UDP_T, st);
}

/* RULE_ADD or RULE_DEL of tcp 10000 for 10.X.Y.Z/32, to port @tport. */
static int big_rule(struct world *w, uint8_t cmd, unsigned int i,
		    uint32_t tport, struct pdn_status *st)
{
	char dst[32];
	struct pdn_req r;

	snprintf(dst, sizeof(dst), "10.%u.%u.%u/32", i >> 16, (i >> 8) & 255,
		 i & 255);
	pdn_req_init(&w->nl, &r, cmd, 0);
	pdn_rule_key(&r, IPPROTO_TCP, 10000, 0);
	pdn_rule_dst(&r, dst);
	if (cmd != PORTDISPATCH_CMD_RULE_DEL)
		pdn_target_port(&r, tport);
	return pdn_do(&w->nl, &r, st);
}

/*
 * BIG rules for one port, each for its own address: one stretch of ports
 * whose port set, and the edges that build it, take arrays past a page
 * (kvmalloc), in one commit.
 */
static int setup_big(struct world *w, struct pdn_status *st)
{
	unsigned int i;
	int err = pdn_cmd(&w->nl, PORTDISPATCH_CMD_BATCH_BEGIN, st);

	for (i = 0; i < BIG && !err; i++)
		err = big_rule(w, PORTDISPATCH_CMD_RULE_ADD, i, TCP_T, st);
	return err ?: pdn_cmd(&w->nl, PORTDISPATCH_CMD_BATCH_COMMIT, st);
}

static int add_tcp_port(struct world *w, struct pdn_status *st)
{
	return pdn_rule_to_port(&w->nl, PORTDISPATCH_CMD_RULE_ADD, IPPROTO_TCP,
				80, 0, TCP_T, st);
}

static int add_udp_socket(struct world *w, struct pdn_status *st)
{
	return pdn_rule_to_fd(&w->nl, PORTDISPATCH_CMD_RULE_ADD, IPPROTO_UDP,
			      53, w->udp, st);
}

/* A v6 prefix rule to a v6-only socket, echoed back. */
static int add_v6_echo(struct world *w, struct pdn_status *st)
{
	struct pdn_req r;

	pdn_req_init(&w->nl, &r, PORTDISPATCH_CMD_RULE_ADD, NLM_F_ECHO);
	pdn_rule_key(&r, IPPROTO_TCP, 443, 0);
	pdn_rule_dst(&r, "::1/128");
	pdn_target_fd(&r, w->tcp6);
	return pdn_do(&w->nl, &r, st);
}

static int replace_tcp(struct world *w, struct pdn_status *st)
{
	return pdn_rule_to_port(&w->nl, PORTDISPATCH_CMD_RULE_REPLACE,
				IPPROTO_TCP, 80, 0, 8081, st);
}

static int del_udp(struct world *w, struct pdn_status *st)
{
	return pdn_del(&w->nl, IPPROTO_UDP, 53, 0, st);
}

static int flush(struct world *w, struct pdn_status *st)
{
	return pdn_cmd(&w->nl, PORTDISPATCH_CMD_FLUSH, st);
}

static int begin(struct world *w, struct pdn_status *st)
{
	return pdn_cmd(&w->nl, PORTDISPATCH_CMD_BATCH_BEGIN, st);
}

static int commit(struct world *w, struct pdn_status *st)
{
	return pdn_cmd(&w->nl, PORTDISPATCH_CMD_BATCH_COMMIT, st);
}

static int stats(struct world *w, struct pdn_status *st)
{
	struct pdn_stats s;

	return pdn_stats(&w->nl, &s, st);
}

/* One more address for the big table's port: its port set again. */
static int add_to_big(struct world *w, struct pdn_status *st)
{
	return big_rule(w, PORTDISPATCH_CMD_RULE_ADD, BIG, 8081, st);
}

static int undo_big(struct world *w, struct pdn_status *st)
{
	int err = big_rule(w, PORTDISPATCH_CMD_RULE_DEL, BIG, 0, st);

	return err == ENOENT ? 0 : err;
}

/* The whole table, read under faults: complete and right, or an error. */
static struct pdn_dump *dump_before;

static bool same_rule(const struct pdn_rule *a, const struct pdn_rule *b)
{
	struct pdn_rule x = *a, y = *b;

	/*
	 * Attempts may have sockets of their own, and ids move on with
	 * each table built again: all else is the same.
	 */
	x.t.inode = y.t.inode = 0;
	x.id = y.id = 0;
	return pdn_rule_same(&x, &y);
}

static bool same_table(const struct pdn_dump *a, const struct pdn_dump *b)
{
	unsigned int i;

	if (a->count != b->count)
		return false;
	for (i = 0; i < a->count; i++)
		if (!same_rule(&a->rules[i], &b->rules[i]))
			return false;
	return true;
}

static int dump(struct world *w, struct pdn_status *st)
{
	struct pdn_dump d;

	memset(st, 0, sizeof(*st));
	st->err = pdn_dump(&w->nl, &d);
	if (!st->err && !same_table(&d, dump_before)) {
		st->err = EBADE;
		snprintf(st->msg, sizeof(st->msg),
			 "the dump has %u rules, not the table's %u, or others",
			 d.count, dump_before->count);
	} else if (st->err) {
		/* d.msg says whose error it was: theirs or ours */
		st->local = !!strstr(d.msg, "no answer");
		memcpy(st->msg, d.msg, sizeof(st->msg));
	}
	pdn_dump_free(&d);
	return st->err;
}

/* A change staged under faults is committed now, without. */
static int then_commit(struct world *w, enum outcome o,
		       const struct pdn_status *req, struct pdn_status *st)
{
	int err = commit(w, st);

	/* The module refused the change for memory: the commit must too. */
	if (o == REFUSED && req->msg[0])
		return err == ENOMEM ? 0 : err ?: EPROTO;
	return err;
}

/*
 * Whatever became of the batch, ABORT ends it if it is still open (its
 * own errno does not matter), and then a new one opens and aborts.
 */
static int then_reopen(struct world *w, enum outcome o,
		       const struct pdn_status *req, struct pdn_status *st)
{
	(void)o;
	(void)req;
	pdn_cmd(&w->nl, PORTDISPATCH_CMD_BATCH_ABORT, st);
	return begin(w, st) ?: pdn_cmd(&w->nl, PORTDISPATCH_CMD_BATCH_ABORT, st);
}

static const struct fault_case cases[] = {
	{ .what = "first TCP rule, to a port",
	  .setup = setup_empty, .request = add_tcp_port, .fresh = true },
	{ .what = "first UDP rule, to a socket",
	  .setup = setup_empty, .request = add_udp_socket, .fresh = true },
	{ .what = "IPv6 prefix rule, echoed",
	  .setup = setup_three, .request = add_v6_echo },
	{ .what = "replace", .setup = setup_three, .request = replace_tcp },
	{ .what = "delete", .setup = setup_three, .request = del_udp },
	{ .what = "flush", .setup = setup_three, .request = flush },
	{ .what = "batch begin", .setup = setup_three, .request = begin,
	  .then = then_reopen },
	{ .what = "change staged in a batch", .setup = setup_three_batch,
	  .request = add_v6_echo, .then = then_commit },
	{ .what = "batch commit", .setup = setup_staged, .request = commit,
	  .then = then_reopen },
	{ .what = "stats", .setup = setup_three, .request = stats },
	{ .what = "rule into a table of 300", .setup = setup_big,
	  .request = add_to_big, .undo = undo_big },
	{ .what = "dump of 300 rules", .setup = setup_big, .request = dump,
	  .undo = setup_empty, .is_dump = true },
};

/* ---- the walk ------------------------------------------------------------ */

static enum outcome outcome_of(int err, const struct pdn_status *st)
{
	if (!err)
		return ACKED;
	if (!st->local)
		return REFUSED;
	return strstr(st->msg, "no answer") ? ACK_LOST : NOT_SENT;
}

static const char *const outcome_name[] = {
	[ACKED] = "accepted", [REFUSED] = "refused",
	[NOT_SENT] = "not sent", [ACK_LOST] = "ack lost",
};

/*
 * Events the listener had since it joined, up to a marker rule added
 * after the attempt; *lost when it was told it missed some (ENOBUFS).
 * It then leaves the group, so that what resets the table is not heard.
 */
static int count_events(struct world *w, unsigned int *events, bool *lost)
{
	uint32_t grp = w->ev.events_group;
	struct pdn_status st;
	struct pdn_rule ev;
	int err;

	*events = 0;
	*lost = false;
	err = pdn_rule_to_port(&w->nl, PORTDISPATCH_CMD_RULE_ADD, IPPROTO_TCP,
			       9, 0, TCP_T, &st);
	if (err)
		return err;
	for (;;) {
		err = pdn_event(&w->ev, PDN_TIMEOUT_MS, &ev);
		if (err == -ENOBUFS) {
			*lost = true;
			continue;
		}
		if (err)
			return -err;
		if (ev.cmd == PORTDISPATCH_CMD_RULE_ADD_NTF &&
		    ev.port_min == 9 && ev.proto == IPPROTO_TCP)
			break;
		(*events)++;
	}
	if (mnl_socket_setsockopt(w->ev.sock, NETLINK_DROP_MEMBERSHIP, &grp,
				  sizeof(grp)))
		return errno;
	return 0;
}

/* The table the request starts from, again. */
static int reset(struct walk *wk, bool first, struct pdn_status *st)
{
	const struct fault_case *fc = wk->fc;
	struct world *w = &wk->w;
	int err;

	memset(st, 0, sizeof(*st));
	if (first || fc->fresh) {
		if (!first)
			close_world(w);
		err = open_world(w);
		if (err)
			return -err;
		return fc->setup(w, st);
	}
	/* an open batch (ENOENT when none), the marker */
	pdn_cmd(&w->nl, PORTDISPATCH_CMD_BATCH_ABORT, st);
	if (fc->undo) {
		err = pdn_del(&w->nl, IPPROTO_TCP, 9, 0, st);
		return err && err != ENOENT ? err : fc->undo(w, st);
	}
	return pdn_cmd(&w->nl, PORTDISPATCH_CMD_FLUSH, st) ?: fc->setup(w, st);
}

/*
 * One attempt: the table to start from, the request with its @nth
 * allocation failing (0: none), what follows, and the checks. Returns
 * false when the walk is over (no allocation was left to fail).
 */
static bool attempt(struct __test_metadata *_metadata, struct walk *wk,
		    unsigned int nth)
{
	const struct fault_case *fc = wk->fc;
	struct pdn_status st, then_st;
	struct pdn_dump before, after;
	unsigned int events;
	enum outcome o;
	bool fired = false, lost, was, now;
	struct world *w = &wk->w;
	int err;

	ASSERT_EQ(0, reset(wk, !nth, &st))
		TH_LOG("%s: the table to start from: %s \"%s\"", fc->what,
		       strerror(st.err), st.msg);
	ASSERT_EQ(0, pdn_dump(&w->nl, &before));
	if (!nth) {
		wk->before = before;
		dump_before = &wk->before;
	} else {
		ASSERT_TRUE(same_table(&before, &wk->before))
			TH_LOG("%s: the table to start from has %u rules, not %u",
			       fc->what, before.count, wk->before.count);
		pdn_dump_free(&before);
	}
	ASSERT_EQ(0, pdn_join_events(&w->ev));

	if (nth)
		ASSERT_EQ(0, nth_arm(wk->nth_fd, nth));
	err = fc->request(w, &st);
	if (nth)
		fired = nth_fired(wk->nth_fd);
	o = outcome_of(err, &st);
	/* A dump cut short may go on in the socket: take another. */
	if (fc->is_dump && st.local) {
		pdn_close(&w->nl);
		ASSERT_EQ(0, pdn_open(&w->nl));
	}

	if (fc->then) {
		err = fc->then(w, o, &st, &then_st);
		EXPECT_EQ(0, err)
			TH_LOG("%s, allocation %u failing (%s, %s \"%s\"): then %s \"%s\"",
			       fc->what, nth, outcome_name[o],
			       strerror(st.err), st.msg, strerror(then_st.err),
			       then_st.msg);
	}
	ASSERT_EQ(0, pdn_dump(&w->nl, &after));
	ASSERT_EQ(0, count_events(w, &events, &lost));

	if (!nth) {
		ASSERT_EQ((int)ACKED, (int)o)
			TH_LOG("%s without faults: %s \"%s\"", fc->what,
			       strerror(st.err), st.msg);
		wk->want = after;
		wk->want_events = events;
		return true;
	}

	was = same_table(&after, &wk->before);
	now = same_table(&after, &wk->want);
	switch (o) {
	case ACKED:
		if (fired)
			wk->accepted++;
		EXPECT_TRUE(now)
			TH_LOG("%s, allocation %u failing: accepted, but the table (%u rules) is not what it is without faults",
			       fc->what, nth, after.count);
		break;
	case REFUSED:
		EXPECT_TRUE(fired)
			TH_LOG("%s: refused without a fault: %s \"%s\"",
			       fc->what, strerror(st.err), st.msg);
		/* a dump's later parts are built as the reader reads */
		EXPECT_TRUE(st.err == ENOMEM ||
			    (fc->is_dump && st.err == ENOBUFS))
			TH_LOG("%s, allocation %u failing: %s \"%s\", not ENOMEM",
			       fc->what, nth, strerror(st.err), st.msg);
		if (st.msg[0])
			wk->module_enomem++;
		else
			wk->core++;
		/*
		 * genetlink allocates nothing for a request before the module
		 * sees it (no policy on the ops, see module/netlink.c): every
		 * ENOMEM but a dump's is the module's, and says why.
		 */
		if (!fc->is_dump) {
			EXPECT_NE(0, st.msg[0])
				TH_LOG("%s, allocation %u failing: ENOMEM without a sentence",
				       fc->what, nth);
		}
		EXPECT_TRUE(was)
			TH_LOG("%s, allocation %u failing: refused, but the table changed (%u rules, %u before)",
			       fc->what, nth, after.count, wk->before.count);
		break;
	case NOT_SENT:
		wk->core++;
		EXPECT_TRUE(st.err == ENOBUFS || st.err == ENOMEM)
			TH_LOG("%s, allocation %u failing: %s", fc->what, nth,
			       strerror(st.err));
		EXPECT_TRUE(was)
			TH_LOG("%s, allocation %u failing: not sent, but the table changed",
			       fc->what, nth);
		break;
	case ACK_LOST:
		wk->lost++;
		EXPECT_EQ(ENOBUFS, st.err)
			TH_LOG("%s, allocation %u failing: no ack: %s",
			       fc->what, nth, strerror(st.err));
		EXPECT_TRUE(was || now)
			TH_LOG("%s, allocation %u failing: the ack was lost, and the table is neither before nor after",
			       fc->what, nth);
		break;
	}
	/* An applied change is told, or the listener knows it missed it. */
	if (now && !was) {
		EXPECT_TRUE(lost || events == wk->want_events)
			TH_LOG("%s, allocation %u failing: %u events, %u without faults, and no ENOBUFS",
			       fc->what, nth, events, wk->want_events);
	} else if (was) {
		EXPECT_TRUE(!lost && !events)
			TH_LOG("%s, allocation %u failing: nothing changed, but %u events%s",
			       fc->what, nth, events, lost ? " and ENOBUFS" : "");
	}
	pdn_dump_free(&after);
	if (fired)
		wk->sites++;
	return fired;
}

FIXTURE(alloc) {
	struct walk wk;
};

FIXTURE_VARIANT(alloc) {
	unsigned int i;
};

#define CASE(name, idx)						\
	FIXTURE_VARIANT_ADD(alloc, name) { .i = (idx) }
CASE(first_tcp_rule_to_port, 0);
CASE(first_udp_rule_to_socket, 1);
CASE(ipv6_prefix_rule_echoed, 2);
CASE(replace, 3);
CASE(del, 4);
CASE(flush, 5);
CASE(batch_begin, 6);
CASE(change_staged_in_batch, 7);
CASE(batch_commit, 8);
CASE(stats, 9);
CASE(rule_into_big_table, 10);
CASE(dump_big_table, 11);

FIXTURE_SETUP(alloc)
{
	if (access("/sys/module/portdispatch", F_OK))
		SKIP(_exit(255), "the portdispatch module is not loaded");
	/* A page fault of ours must not take the injected failure. */
	ASSERT_EQ(0, mlockall(MCL_CURRENT | MCL_FUTURE));
	memset(&self->wk, 0, sizeof(self->wk));
	self->wk.fc = &cases[variant->i];
	ASSERT_EQ(0, knobs_for_nth());
	self->wk.nth_fd = open(FAIL_NTH, O_RDWR);
	ASSERT_LE(0, self->wk.nth_fd);
}

FIXTURE_TEARDOWN(alloc)
{
	if (self->wk.nth_fd > 0)
		nth_fired(self->wk.nth_fd);
	knobs_restore();
}

TEST_F_TIMEOUT(alloc, each_allocation_fails_in_turn, 300)
{
	struct walk *wk = &self->wk;
	unsigned int nth;

	attempt(_metadata, wk, 0);
	for (nth = 1; nth < MAX_NTH; nth++)
		if (!attempt(_metadata, wk, nth))
			break;
	ASSERT_LT(nth, MAX_NTH);
	ksft_print_msg("%s: %u allocations failed in turn: %u refused by the module (ENOMEM, a sentence), %u by netlink first, %u acks lost, %u accepted anyway\n",
		       wk->fc->what, wk->sites, wk->module_enomem, wk->core,
		       wk->lost, wk->accepted);
	/* the harness ends a test with _exit(): stdio is not flushed */
	fflush(stdout);
	if (!wk->fc->is_dump) {
		EXPECT_LT(0u, wk->module_enomem)
			TH_LOG("%s: no failure reached the module's allocations",
			       wk->fc->what);
	}
	pdn_dump_free(&wk->before);
	pdn_dump_free(&wk->want);
	close_world(&wk->w);
}

/* ---- the packet path's flows --------------------------------------------- */

FIXTURE(flows) {
	int target;
};

FIXTURE_SETUP(flows)
{
	char buf[8];

	self->target = -1;
	if (access("/sys/module/portdispatch", F_OK))
		SKIP(_exit(255), "the portdispatch module is not loaded");
	if (pd_read_file(FLOW_CACHE, buf, sizeof(buf)) || strcmp(buf, "1"))
		SKIP(_exit(255), "the flow cache is not failslab's (boot with slub_debug=A,pd_reply_flow)");
	ASSERT_EQ(0, pd_enter_netns());
	self->target = pd_server(AF_INET, SOCK_DGRAM, "127.0.0.1", UDP_T,
				 false);
	ASSERT_LE(0, self->target);
}

FIXTURE_TEARDOWN(flows)
{
	knobs_restore();
	if (self->target >= 0)
		close(self->target);
}

/*
 * A client's query to 127.0.0.1:53 reaches the target; the target answers;
 * the port the answer comes from.
 */
static int query(struct __test_metadata *_metadata, int target)
{
	struct sockaddr_storage to, from;
	socklen_t tolen = pd_sockaddr(AF_INET, "127.0.0.1", 53, &to);
	socklen_t fromlen = sizeof(from);
	char buf[16];
	int cli = pd_server(AF_INET, SOCK_DGRAM, "127.0.0.1", 0, false);
	int port;

	EXPECT_LE(0, cli);
	if (cli < 0)
		return -1;
	EXPECT_EQ(4, sendto(cli, "ask", 4, 0, (struct sockaddr *)&to, tolen));
	EXPECT_TRUE(pd_readable(target, pd_ms(2000)))
		TH_LOG("the query did not reach the target");
	EXPECT_EQ(4, recvfrom(target, buf, sizeof(buf), MSG_DONTWAIT,
			      (struct sockaddr *)&from, &fromlen));
	EXPECT_EQ(4, sendto(target, "ans", 4, 0, (struct sockaddr *)&from,
			    fromlen));
	EXPECT_TRUE(pd_readable(cli, pd_ms(2000)))
		TH_LOG("the answer did not reach the client");
	fromlen = sizeof(from);
	EXPECT_EQ(4, recvfrom(cli, buf, sizeof(buf), MSG_DONTWAIT,
			      (struct sockaddr *)&from, &fromlen));
	port = pd_sockaddr_port(&from);
	close(cli);
	return port;
}

TEST_F(flows, flow_memory_failing_leaves_answers_from_target_port)
{
	struct pdn nl;
	struct pdn_status st;
	struct pdn_stats s;

	ASSERT_EQ(0, pdn_open(&nl));
	ASSERT_EQ(0, pdn_rule_to_port(&nl, PORTDISPATCH_CMD_RULE_ADD,
				      IPPROTO_UDP, 53, 0, UDP_T, &st))
		TH_LOG("udp 53 to port %d: %s \"%s\"", UDP_T, strerror(st.err),
		       st.msg);

	/*
	 * Every allocation from the flow cache (failslab's flag, set at
	 * boot) fails, in any context; no other cache has the flag.
	 */
	ASSERT_EQ(0, pd_write_file(FAILSLAB "/verbose", "0"));
	ASSERT_EQ(0, pd_write_file(FAILSLAB "/task-filter", "N"));
	ASSERT_EQ(0, pd_write_file(FAILSLAB "/interval", "1"));
	ASSERT_EQ(0, pd_write_file(FAILSLAB "/times", "-1"));
	ASSERT_EQ(0, pd_write_file(FAILSLAB "/cache-filter", "Y"));
	ASSERT_EQ(0, pd_write_file(FAILSLAB "/probability", "100"));

	EXPECT_EQ(UDP_T, query(_metadata, self->target))
		TH_LOG("no memory for the flow: the answer leaves from the target's port");
	EXPECT_EQ(UDP_T, query(_metadata, self->target));
	ASSERT_EQ(0, pdn_stats(&nl, &s, &st));
	EXPECT_EQ(0u, s.udp_flows);
	EXPECT_EQ(2u, s.udp_flows_missed);

	/* memory returns: the next client's flow is remembered */
	ASSERT_EQ(0, pd_write_file(FAILSLAB "/probability", "0"));
	EXPECT_EQ(53, query(_metadata, self->target))
		TH_LOG("memory is back: the answer leaves from the port asked");
	ASSERT_EQ(0, pdn_stats(&nl, &s, &st));
	EXPECT_EQ(1u, s.udp_flows);
	EXPECT_EQ(2u, s.udp_flows_missed);
	pdn_close(&nl);
}

TEST_HARNESS_MAIN
