// SPDX-License-Identifier: GPL-2.0
/*
 * Replies of steered UDP flows (module/reply.h; "UDP replies" in the uapi
 * header): what a target sends back to a client whose datagram a rule
 * steered to it leaves from the address and port the client used, with
 * every checksum right, whichever way the stack finishes it; nothing else
 * is rewritten; a flow expires, leaves with its rule, is bounded, and is
 * paid for by the rule owner's memory cgroup.
 *
 *   [ cli ] c0 ===== r0 [ rtr ] r1 ===== s1 [ the test's: rules, targets ]
 *   198.18.1.2     198.18.1.1  198.18.2.1    198.18.2.2 (A1)
 *   2001:db8:1::2  2001:db8:1::1 2001:db8:2::1 2001:db8:2::2 (A1)
 *                                            lo: 198.18.3.1, 2001:db8:3::5 (A2)
 *
 * Clients send to A1:53 (P); a rule steers the flow to a target socket on
 * 5353 (T), bound to the wildcard (the reply's port changes) or to A2
 * (its address and port change). A2 is on lo so that a wildcard socket's
 * replies leave from A1 by source address selection, for IPv6 too. A1
 * and A2 differ in their sum of 16-bit words: a checksum left unchanged
 * for the new address would be wrong (2001:db8:3::1 would be right).
 *
 * The router is there so that checksums are checked. A veth hands a
 * CHECKSUM_PARTIAL packet to its peer as it is, and a receiver trusts one
 * (skb_csum_unnecessary()): a wrong checksum sent so would go unseen. A
 * packet checksummed in software (CHECKSUM_NONE) is checked in software by
 * the client's UDP (udp4_csum_init() / udp6_csum_init(), counted in
 * InCsumErrors when wrong, and dropped). So in the checksum tests r0, the
 * router's side to the client, has no offload and finishes in software
 * whatever reaches it CHECKSUM_PARTIAL, and the client's checksum errors
 * are counted.
 *
 * Counters are read over netlink (netlink_helpers.h): the rule's REPLIES,
 * the namespace's UDP_FLOWS and UDP_FLOWS_MISSED. The namespaces are made
 * once for all the tests (see topology()); the module parameters that
 * some tests change are reset to what they were when the program
 * started, before every test and at its end.
 */

#include <netinet/ip.h>
#include <netinet/udp.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "harness.h"
/* The requests of netlink_test.c that these tests never make. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "netlink_helpers.h"
#pragma GCC diagnostic pop
#include "pd_link.h"
#include "pd_test.h"

#define P		53	/* what clients send to */
#define T		5353	/* where the target is bound */
#define T2		5354	/* another target */

#define CLI4		"198.18.1.2"
#define RTR_C4		"198.18.1.1"
#define RTR_S4		"198.18.2.1"
#define A1_4		"198.18.2.2"
#define A2_4		"198.18.3.1"
#define CLI6		"2001:db8:1::2"
#define RTR_C6		"2001:db8:1::1"
#define RTR_S6		"2001:db8:2::1"
#define A1_6		"2001:db8:2::2"
#define A2_6		"2001:db8:3::5"

/* For what must happen; only a failing test waits this long. */
#define WAIT_MS		pd_ms(5000)

#define ADD		PORTDISPATCH_CMD_RULE_ADD
#define REPLACE		PORTDISPATCH_CMD_RULE_REPLACE

/* ---- module parameters -------------------------------------------------- */

#define PARAM_DIR	"/sys/module/portdispatch/parameters/"

static const char *const params[] = { "udp_timeout", "max_udp_flows" };
static char saved[2][32];
static pid_t main_pid;

static int param_set(const char *name, unsigned long value)
{
	char path[128], buf[32];

	snprintf(path, sizeof(path), PARAM_DIR "%s", name);
	snprintf(buf, sizeof(buf), "%lu", value);
	return pd_write_file(path, buf);
}

static unsigned long param_get(const char *name)
{
	char path[128], buf[32] = "0";

	snprintf(path, sizeof(path), PARAM_DIR "%s", name);
	pd_read_file(path, buf, sizeof(buf));
	return strtoul(buf, NULL, 10);
}

static void params_restore(void)
{
	char path[128];
	unsigned int i;

	for (i = 0; i < 2; i++) {
		if (!saved[i][0])
			continue;
		snprintf(path, sizeof(path), PARAM_DIR "%s", params[i]);
		pd_write_file(path, saved[i]);
	}
}

/* Every test's child _exit()s: only the program's end runs this. */
static void params_restore_at_exit(void)
{
	if (getpid() == main_pid)
		params_restore();
}

static void __attribute__((constructor)) params_save(void)
{
	char path[128];
	unsigned int i;

	for (i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), PARAM_DIR "%s", params[i]);
		if (pd_read_file(path, saved[i], sizeof(saved[i])))
			saved[i][0] = '\0';
	}
	main_pid = getpid();
	atexit(params_restore_at_exit);
}

/* ---- namespaces and sockets ---------------------------------------------- */

/* The three namespaces of a test; a socket lives in the one it was made in. */
static int ns_srv = -1, ns_rtr = -1, ns_cli = -1;
/* portdispatch's netlink, in the server's namespace. */
static struct pdn nl;

/*
 * In namespace @ns, @addr4 and @addr6 are at the hardware address of
 * device @peer of namespace @peer_ns, through device @dev.
 */
static int neighbour(int ns, const char *dev, const char *addr4,
		     const char *addr6, int peer_ns, const char *peer)
{
	uint8_t mac[6];
	int err, ifindex;

	pd_go(peer_ns);
	err = pd_link_mac(peer, mac);
	pd_go(ns);
	ifindex = if_nametoindex(dev);
	if (!err)
		err = pd_add_neigh(AF_INET, ifindex, addr4, mac);
	if (!err)
		err = pd_add_neigh(AF_INET6, ifindex, addr6, mac);
	return err ? pd_setup_fail(dev, err) : 0;
}

static int link_setup(const char *dev, const char *addr4, const char *addr6)
{
	const char *what = pd_link_setup(dev, addr4, addr6);
	char buf[64];

	if (!what)
		return 0;
	snprintf(buf, sizeof(buf), "%s: %s", dev, what);
	return pd_setup_fail(buf, errno);
}

/*
 * The three namespaces, their links, addresses, routes and neighbours,
 * made once, before the tests: every test's process starts in the
 * server's namespace, and can enter the others. Making them afresh for
 * each test would cost the debug kernel, with its one CPU, seconds a test,
 * taking them down as much as making them. A test leaves behind only what
 * its setup resets: rules, flows, offloads and module parameters.
 */
static int topology(void)
{
	int err, lo;

	ns_srv = pd_new_ns();
	if (ns_srv < 0)
		return -1;
	ns_rtr = pd_new_ns();
	if (ns_rtr < 0)
		return -1;
	err = pd_write_file("/proc/sys/net/ipv4/ip_forward", "1");
	if (!err)
		err = pd_write_file("/proc/sys/net/ipv6/conf/all/forwarding",
				    "1");
	if (err)
		return pd_setup_fail("forwarding", err);
	err = pd_make_veth("r1", "s1", ns_srv);
	if (err)
		return pd_setup_fail("veth r1/s1", err);
	if (link_setup("r1", RTR_S4, RTR_S6))
		return -1;

	ns_cli = pd_new_ns();
	if (ns_cli < 0)
		return -1;
	err = pd_make_veth("c0", "r0", ns_rtr);
	if (err)
		return pd_setup_fail("veth c0/r0", err);
	if (link_setup("c0", CLI4, CLI6))
		return -1;
	err = pd_add_default_route(AF_INET, RTR_C4) ?:
	      pd_add_default_route(AF_INET6, RTR_C6);
	if (err)
		return pd_setup_fail("the client's routes", err);

	pd_go(ns_rtr);
	if (link_setup("r0", RTR_C4, RTR_C6))
		return -1;

	pd_go(ns_srv);
	if (link_setup("s1", A1_4, A1_6))
		return -1;
	lo = if_nametoindex("lo");
	err = pd_add_addr(AF_INET, lo, A2_4, 32) ?:
	      pd_add_addr(AF_INET6, lo, A2_6, 128) ?:
	      pd_add_default_route(AF_INET, RTR_S4) ?:
	      pd_add_default_route(AF_INET6, RTR_S6);
	if (err)
		return pd_setup_fail("the server's addresses and routes", err);

	/*
	 * Every neighbour is known: no ARP or neighbour discovery to wait
	 * for. (A router solicits for what it forwards from its link-local
	 * address, which r0 and s1 get only once the link watcher has seen
	 * their carrier, up to a second later, and the solicitation is
	 * retried a second after.)
	 */
	if (neighbour(ns_cli, "c0", RTR_C4, RTR_C6, ns_rtr, "r0") ||
	    neighbour(ns_rtr, "r0", CLI4, CLI6, ns_cli, "c0") ||
	    neighbour(ns_rtr, "r1", A1_4, A1_6, ns_srv, "s1") ||
	    neighbour(ns_srv, "s1", RTR_S4, RTR_S6, ns_rtr, "r1"))
		return -1;
	/*
	 * r0 and s1 came up after their peers: with a carrier, so
	 * dev_activate() let them send at once. r1 and c0 came up first,
	 * without one, and send nothing until the link watcher has seen
	 * their carrier come (an urgent event, handled soon).
	 */
	pd_go(ns_rtr);
	err = pd_link_wait_ready(if_nametoindex("r1"), WAIT_MS);
	pd_go(ns_cli);
	if (!err)
		err = pd_link_wait_ready(if_nametoindex("c0"), WAIT_MS);
	pd_go(ns_srv);
	return err ? pd_setup_fail("r1 and c0 up", err) : 0;
}

static void __attribute__((constructor)) topology_make(void)
{
	topology();
}

/* Before each test. False when the module is not loaded (it skips). */
static bool __fresh(struct __test_metadata *_metadata)
{
	struct pdn_status st;
	int err;

	ASSERT_EQ('\0', pd_setup_error[0])
		TH_LOG("the namespaces of the tests: %s", pd_setup_error);
	params_restore();
	err = pdn_open(&nl);
	if (err == -ENOENT)
		return false;
	ASSERT_EQ(0, err) TH_LOG("portdispatch's netlink: %s", strerror(-err));
	/* What an earlier test may have left; its flows go with its rules. */
	ASSERT_EQ(0, pdn_cmd(&nl, PORTDISPATCH_CMD_FLUSH, &st)) TH_LOG("%s",
								     st.msg);
	err = pd_set_tx_csum("s1", true);
	pd_go(ns_rtr);
	if (!err)
		err = pd_set_tx_csum("r0", true);
	pd_go(ns_srv);
	ASSERT_EQ(0, err) TH_LOG("tx checksum offload on: %s", strerror(-err));
	return true;
}

#define fresh() __fresh(_metadata)

/* A UDP socket of the client's namespace, bound to @port (0: any). */
static int cli_udp(int family, int port)
{
	struct sockaddr_storage ss;
	socklen_t len = pd_sockaddr(family, family == AF_INET ? "0.0.0.0" :
				    "::", port, &ss);
	int fd;

	pd_go(ns_cli);
	fd = socket(family, SOCK_DGRAM, 0);
	pd_go(ns_srv);
	if (fd < 0)
		return -1;
	if (family == AF_INET6)
		setsockopt(fd, SOL_IPV6, IPV6_V6ONLY, &(int){ 1 }, sizeof(int));
	if (bind(fd, (struct sockaddr *)&ss, len)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* ... connected to @addr:@port, as dig and every stub resolver are. */
static int cli_connected(int family, const char *addr, int port)
{
	struct sockaddr_storage ss;
	socklen_t len = pd_sockaddr(family, addr, port, &ss);
	int fd = cli_udp(family, 0);

	if (fd >= 0 && connect(fd, (struct sockaddr *)&ss, len)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* A counter of the client's stack (pd_proc_counter()). */
static long cli_counter(const char *file, const char *table, const char *name)
{
	long v;

	pd_go(ns_cli);
	v = pd_proc_counter(file, table, name);
	pd_go(ns_srv);
	return v;
}

/*
 * Datagrams the client's UDP dropped for a bad checksum. Both tables: one
 * that a socket's poll() finds bad counts in IPv4's whatever its family
 * (first_packet_length()), one that recvmsg() or the receive path finds
 * in its own family's.
 */
static long cli_csum_errors(void)
{
	long v4 = cli_counter("/proc/net/snmp", "Udp", "InCsumErrors");
	long v6 = cli_counter("/proc/net/snmp6", NULL, "Udp6InCsumErrors");

	return v4 < 0 || v6 < 0 ? -1 : v4 + v6;
}

/* Fragments the server's stack made. */
static long srv_frag_creates(int family)
{
	if (family == AF_INET6)
		return pd_proc_counter("/proc/net/snmp6", NULL,
				       "Ip6FragCreates");
	return pd_proc_counter("/proc/net/snmp", "Ip", "FragCreates");
}

/* The contents of answer @seed. */
static void pattern(unsigned char *buf, size_t len, unsigned int seed)
{
	size_t i;

	for (i = 0; i < len; i++)
		buf[i] = (unsigned char)(i * 7 + seed * 13 + 1);
}

static int sendto_addr(int fd, const void *buf, size_t len,
		       const struct sockaddr_storage *to)
{
	socklen_t tolen = to->ss_family == AF_INET ?
			  sizeof(struct sockaddr_in) :
			  sizeof(struct sockaddr_in6);
	ssize_t n = sendto(fd, buf, len, 0, (const struct sockaddr *)to, tolen);

	return n == (ssize_t)len ? 0 : -errno;
}

/*
 * One datagram from @fd within @ms: its true length (MSG_TRUNC), or -1
 * when none came; its source in @from.
 */
static ssize_t recv_dgram(int fd, int ms, void *buf, size_t len,
			  struct sockaddr_storage *from)
{
	socklen_t fromlen = sizeof(*from);

	memset(from, 0, sizeof(*from));
	if (!pd_readable(fd, ms))
		return -1;
	return recvfrom(fd, buf, len, MSG_TRUNC | MSG_DONTWAIT,
			(struct sockaddr *)from, &fromlen);
}

/* "198.18.2.2:53", "[2001:db8:2::2]:53" */
static const char *where(int family, const char *addr, int port, char *buf,
			 size_t len)
{
	struct sockaddr_storage ss;

	pd_sockaddr(family, addr, port, &ss);
	return pd_fmt_ss(&ss, buf, len);
}

/* Where a query that never reached the target went, as far as counted. */
static void __lost(struct __test_metadata *_metadata)
{
	struct pdn_status st;
	struct pdn_stats s;
	struct pdn_dump dump;
	unsigned int i;
	long fw4, fw6;

	pd_go(ns_rtr);
	fw4 = pd_proc_counter("/proc/net/snmp", "Ip", "ForwDatagrams");
	fw6 = pd_proc_counter("/proc/net/snmp6", NULL, "Ip6OutForwDatagrams");
	pd_go(ns_srv);
	TH_LOG("the router forwarded %ld IPv4 and %ld IPv6 packets", fw4, fw6);
	TH_LOG("here: UDP NoPorts %ld, Udp6NoPorts %ld, InErrors %ld, Udp6InErrors %ld",
	       pd_proc_counter("/proc/net/snmp", "Udp", "NoPorts"),
	       pd_proc_counter("/proc/net/snmp6", NULL, "Udp6NoPorts"),
	       pd_proc_counter("/proc/net/snmp", "Udp", "InErrors"),
	       pd_proc_counter("/proc/net/snmp6", NULL, "Udp6InErrors"));
	if (!pdn_stats(&nl, &s, &st))
		TH_LOG("lookups %llu, hits %llu, misses %llu",
		       (unsigned long long)s.lookups,
		       (unsigned long long)s.hits,
		       (unsigned long long)s.misses);
	if (pdn_dump(&nl, &dump))
		dump.count = 0;
	for (i = 0; i < dump.count; i++)
		TH_LOG("rule %s %u: steered %llu, undeliverable %llu",
		       dump.rules[i].proto == IPPROTO_UDP ? "udp" : "tcp",
		       dump.rules[i].port_min,
		       (unsigned long long)dump.rules[i].steered,
		       (unsigned long long)dump.rules[i].undeliverable);
	pdn_dump_free(&dump);
}

/*
 * The target @t takes the client's next datagram; its source (the client)
 * lands in @client.
 */
static void __serve(struct __test_metadata *_metadata, int t,
		    struct sockaddr_storage *client)
{
	char buf[2048];
	ssize_t n;

	n = recv_dgram(t, WAIT_MS, buf, sizeof(buf), client);
	if (n < 0)
		__lost(_metadata);
	ASSERT_LE(0, n) TH_LOG("the target got no datagram in %d ms", WAIT_MS);
}

#define serve(t, client) __serve(_metadata, t, client)

/*
 * @t sends @len bytes of answer @seed to @client, and @c, the client's
 * socket, receives them from @want. @c may be connected: then an answer
 * from anywhere else never reaches it.
 */
static void __answer(struct __test_metadata *_metadata, int t,
		     const struct sockaddr_storage *client, int c,
		     size_t len, unsigned int seed, const char *want)
{
	unsigned char out[4096], in[4096];
	struct sockaddr_storage from;
	char got[80];
	ssize_t n;
	int err;

	ASSERT_GE(sizeof(out), len);
	pattern(out, len, seed);
	err = sendto_addr(t, out, len, client);
	ASSERT_EQ(0, err) TH_LOG("the answer: %s", strerror(-err));
	n = recv_dgram(c, WAIT_MS, in, sizeof(in), &from);
	ASSERT_LE(0, n)
		TH_LOG("no answer reached the client in %d ms (expected one from %s; a connected socket takes only its peer's; the client's UDP has dropped %ld for their checksum)",
		       WAIT_MS, want, cli_csum_errors());
	pd_fmt_ss(&from, got, sizeof(got));
	ASSERT_STREQ(want, got) TH_LOG("where the answer came from");
	ASSERT_EQ((ssize_t)len, n) TH_LOG("length of the answer");
	ASSERT_EQ(0, memcmp(out, in, len)) TH_LOG("contents of the answer");
}

#define answer(t, client, c, len, seed, want)				\
	__answer(_metadata, t, client, c, len, seed, want)

/*
 * The client's socket @c sends a query to @addr:@port (NULL: its peer),
 * the target @t takes it and answers with @len bytes, which reach @c from
 * @want. The client's address lands in @client when given.
 */
static void __exchange(struct __test_metadata *_metadata, int c, int t,
		       int family, const char *addr, int port, size_t len,
		       const char *want, struct sockaddr_storage *client)
{
	struct sockaddr_storage ss, cl;
	int err = 0;

	if (addr) {
		pd_sockaddr(family, addr, port, &ss);
		err = sendto_addr(c, "query", 5, &ss);
	} else if (send(c, "query", 5, 0) != 5) {
		err = -errno;
	}
	ASSERT_EQ(0, err) TH_LOG("the query: %s", strerror(-err));
	serve(t, &cl);
	answer(t, &cl, c, len, port, want);
	if (client)
		*client = cl;
}

#define exchange(c, t, family, addr, port, len, want, client)		\
	__exchange(_metadata, c, t, family, addr, port, len, want, client)

/* The namespace's counters, read now. */
static struct pdn_stats __ns_stats(struct __test_metadata *_metadata)
{
	struct pdn_status st;
	struct pdn_stats s;
	int err = pdn_stats(&nl, &s, &st);

	EXPECT_EQ(0, err) TH_LOG("STATS_GET: %s %s", strerror(err), st.msg);
	EXPECT_TRUE(!!(s.seen & (1u << PORTDISPATCH_A_NS_STATS_UDP_FLOWS)))
		TH_LOG("STATS_GET has no UDP_FLOWS");
	return s;
}

#define ns_stats() __ns_stats(_metadata)
#define udp_flows() (ns_stats().udp_flows)

/* The rule @proto @port as a dump shows it: false when there is none. */
static bool __find_rule(struct __test_metadata *_metadata, uint8_t proto,
			int port, struct pdn_rule *rule)
{
	struct pdn_dump d;
	unsigned int i;
	bool found = false;

	EXPECT_EQ(0, pdn_dump(&nl, &d)) TH_LOG("dump: %s", d.msg);
	for (i = 0; i < d.count; i++) {
		if (d.rules[i].proto == proto &&
		    d.rules[i].port_min == (uint32_t)port) {
			*rule = d.rules[i];
			found = true;
			break;
		}
	}
	pdn_dump_free(&d);
	return found;
}

/* The REPLIES counter of the UDP rule on @port. */
static long __replies(struct __test_metadata *_metadata, int port)
{
	struct pdn_rule r;

	if (!__find_rule(_metadata, IPPROTO_UDP, port, &r))
		return -1;
	EXPECT_TRUE(PDN_SHAS(&r, PORTDISPATCH_A_RULE_STATS_REPLIES))
		TH_LOG("the UDP rule on %d has no REPLIES counter", port);
	return (long)r.replies;
}

#define replies(port) __replies(_metadata, port)

/* A rule udp P (or tcp) to port @tport, or to the socket @fd (@tport 0). */
static void __rule(struct __test_metadata *_metadata, uint8_t cmd,
		   uint8_t proto, int tport, int fd)
{
	struct pdn_status st;
	int err;

	if (tport)
		err = pdn_rule_to_port(&nl, cmd, proto, P, 0, tport, &st);
	else
		err = pdn_rule_to_fd(&nl, cmd, proto, P, fd, &st);
	ASSERT_EQ(0, err) TH_LOG("%s %s %d to %s %d: %s %s",
				 cmd == ADD ? "add" : "replace",
				 proto == IPPROTO_UDP ? "udp" : "tcp", P,
				 tport ? "port" : "fd", tport ?: fd,
				 strerror(err), st.msg);
}

#define rule(cmd, tport, fd) __rule(_metadata, cmd, IPPROTO_UDP, tport, fd)

/* ---- once: the mechanics that do not depend on the family ---------------- */

FIXTURE(once) {
};

FIXTURE_SETUP(once)
{
	if (!fresh())
		SKIP(_exit(255), "the portdispatch module is not loaded");
}

static struct {
	char root[64], owner[96], sender[96];
	bool mounted, enabled;
} cg;

static void cg_cleanup(void)
{
	char path[128];

	if (cg.sender[0])
		rmdir(cg.sender);
	if (cg.owner[0])
		rmdir(cg.owner);
	if (cg.enabled) {
		snprintf(path, sizeof(path), "%s/cgroup.subtree_control",
			 cg.root);
		pd_write_file(path, "-memory");
	}
	if (cg.mounted)
		umount(cg.root);
	if (cg.root[0])
		rmdir(cg.root);
	memset(&cg, 0, sizeof(cg));
}

FIXTURE_TEARDOWN(once)
{
	struct pdn_status st;

	/* The flows go with the rules, before their cgroups. */
	pdn_cmd(&nl, PORTDISPATCH_CMD_FLUSH, &st);
	pdn_close(&nl);
	cg_cleanup();
	params_restore();
}

/*
 * 5. A flow expires after udp_timeout seconds without a datagram, and its
 * target's datagrams to the client leave from T again. With udp_timeout=1
 * the collector is queued to run every second (max(1 s, min(timeouts) /
 * 2)), so the flow leaves between 1 and 2 s after the last answer. This
 * test comes first: a collector queued by an earlier test's flows, with
 * udp_timeout at 30 s, would run only 5 s after them.
 */
TEST_F(once, expires)
{
	struct sockaddr_storage cl;
	int t, c, err;
	long t0, took;
	uint32_t flows;

	err = param_set("udp_timeout", 1);
	ASSERT_EQ(0, err) TH_LOG("udp_timeout: %s", strerror(-err));
	t = pd_server(AF_INET, SOCK_DGRAM, "0.0.0.0", T, false);
	ASSERT_LE(0, t);
	rule(ADD, T, -1);
	c = cli_udp(AF_INET, 0);
	ASSERT_LE(0, c);
	exchange(c, t, AF_INET, A1_4, P, 100, A1_4 ":53", &cl);
	ASSERT_EQ(1u, udp_flows());
	t0 = pd_now_ms();
	while ((flows = udp_flows()) && pd_now_ms() - t0 < pd_ms(5000))
		usleep(50 * 1000);
	took = pd_now_ms() - t0;
	ASSERT_EQ(0u, flows) TH_LOG("the flow is still remembered %ld ms after its last datagram",
				    took);
	TH_LOG("forgotten %ld ms after the last answer", took);
	answer(t, &cl, c, 100, 1, A1_4 ":5353");
	EXPECT_EQ(1, replies(P));
	close(c);
	close(t);
}

/* slab_unreclaimable of a cgroup's memory.stat, in bytes; -1: none. */
static long cg_slab(const char *dir)
{
	char path[128], line[128];
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "%s/memory.stat", dir);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (v < 0 && fgets(line, sizeof(line), f))
		if (!strncmp(line, "slab_unreclaimable ", 19))
			v = strtol(line + 19, NULL, 10);
	fclose(f);
	return v;
}

/* Run @fn in a child process of cgroup @dir; its exit status. */
static int in_cgroup(const char *dir, int (*fn)(void))
{
	char path[128], pid[16];
	int status;
	pid_t child = fork();

	if (child < 0)
		return -1;
	if (!child) {
		snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
		snprintf(pid, sizeof(pid), "%d", getpid());
		_exit(pd_write_file(path, pid) ? 100 : fn());
	}
	if (waitpid(child, &status, 0) != child)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 101;
}

/* The rule owner's part: add udp P to port T. */
static int add_rule(void)
{
	struct pdn_status st;
	struct pdn n;
	int err = pdn_open(&n);

	if (!err)
		err = pdn_rule_to_port(&n, ADD, IPPROTO_UDP, P, 0, T, &st);
	pdn_close(&n);
	return err ? 1 : 0;
}

#define CG_FLOWS	5000
#define CG_SPORT	20000

/*
 * The sender's part: a datagram to 127.0.0.1:P from each of CG_FLOWS
 * source ports, through one raw socket (IPPROTO_RAW never receives): the
 * sender allocates nothing per flow itself.
 */
static int send_flows(void)
{
	struct sockaddr_in dst = { .sin_family = AF_INET };
	struct {
		struct iphdr ip;
		struct udphdr udp;
		char data[4];
	} pkt = { 0 };
	int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW), i;

	if (fd < 0)
		return 1;
	inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
	pkt.ip.version = 4;
	pkt.ip.ihl = 5;
	pkt.ip.ttl = 64;
	pkt.ip.protocol = IPPROTO_UDP;
	pkt.ip.daddr = dst.sin_addr.s_addr;
	pkt.udp.dest = htons(P);
	pkt.udp.len = htons(sizeof(pkt.udp) + sizeof(pkt.data));
	/* The kernel fills the source, length, id and header checksum in. */
	for (i = 0; i < CG_FLOWS; i++) {
		pkt.udp.source = htons(CG_SPORT + i);
		if (sendto(fd, &pkt, sizeof(pkt), 0, (struct sockaddr *)&dst,
			   sizeof(dst)) != sizeof(pkt))
			return 2;
		/*
		 * Let softirq drain lo's backlog, which drops past
		 * netdev_max_backlog (1000) when ksoftirqd lags.
		 */
		if (!(i % 200))
			usleep(1000);
	}
	close(fd);
	return 0;
}

/*
 * 8. A flow is paid for by the memory cgroup of the rule's owner, not by
 * whoever sent the datagram, nor by no one (the flows are made in
 * softirq, where nothing is charged unless the module says to whom): the
 * rule is added from cgroup "owner", CG_FLOWS flows come from cgroup
 * "sender", and the owner's unreclaimable slab grows by at least 100
 * bytes a flow (a flow's record is larger) while the sender's does not.
 */
TEST_F_TIMEOUT(once, charged_to_rule_owner, 60)
{
	char path[160], buf[256];
	long x0, y0, x, y, t0;
	struct pdn_stats s0, s;
	uint32_t flows;
	int t, rc;

	snprintf(cg.root, sizeof(cg.root), "/tmp/pd-cgroup-XXXXXX");
	ASSERT_NE(NULL, mkdtemp(cg.root));
	if (mount("none", cg.root, "cgroup2", 0, NULL))
		SKIP(return, "no cgroup2 here (CONFIG_CGROUPS): %s",
		     strerror(errno));
	cg.mounted = true;
	snprintf(path, sizeof(path), "%s/cgroup.controllers", cg.root);
	if (pd_read_file(path, buf, sizeof(buf)) || !strstr(buf, "memory"))
		SKIP(return, "cgroup2 has no memory controller (CONFIG_MEMCG off, or memory bound to cgroup v1)");
	snprintf(path, sizeof(path), "%s/cgroup.subtree_control", cg.root);
	/* Empty (-EIO) while no controller is enabled. */
	buf[0] = '\0';
	rc = pd_read_file(path, buf, sizeof(buf));
	ASSERT_TRUE(!rc || rc == -EIO) TH_LOG("%s: %s", path, strerror(-rc));
	if (!strstr(buf, "memory")) {
		ASSERT_EQ(0, pd_write_file(path, "+memory"));
		cg.enabled = true;
	}
	snprintf(cg.owner, sizeof(cg.owner), "%s/owner", cg.root);
	snprintf(cg.sender, sizeof(cg.sender), "%s/sender", cg.root);
	ASSERT_EQ(0, mkdir(cg.owner, 0755));
	ASSERT_EQ(0, mkdir(cg.sender, 0755));
	if (param_get("max_udp_flows") < CG_FLOWS)
		ASSERT_EQ(0, param_set("max_udp_flows", CG_FLOWS));

	t = pd_server(AF_INET, SOCK_DGRAM, "127.0.0.1", T, false);
	ASSERT_LE(0, t);
	rc = in_cgroup(cg.owner, add_rule);
	ASSERT_EQ(0, rc) TH_LOG("adding the rule from the owner's cgroup");
	x0 = cg_slab(cg.owner);
	y0 = cg_slab(cg.sender);
	s0 = ns_stats();
	ASSERT_LE(0, x0) TH_LOG("no slab_unreclaimable in memory.stat");
	rc = in_cgroup(cg.sender, send_flows);
	ASSERT_EQ(0, rc) TH_LOG("sending from the sender's cgroup");

	/* The last datagrams may still be in lo's backlog. */
	t0 = pd_now_ms();
	s = ns_stats();
	do {
		flows = s.udp_flows;
		usleep(50 * 1000);
		s = ns_stats();
	} while (s.udp_flows != flows && pd_now_ms() - t0 < WAIT_MS);
	ASSERT_EQ(s0.udp_flows_missed, s.udp_flows_missed);
	ASSERT_LE(CG_FLOWS * 9 / 10, (int)flows)
		TH_LOG("%u flows of %d: the rest of the datagrams were lost",
		       flows, CG_FLOWS);

	/* memory.stat is brought up to date every 2 s at the latest. */
	t0 = pd_now_ms();
	while ((x = cg_slab(cg.owner)) - x0 < flows * 100L &&
	       pd_now_ms() - t0 < pd_ms(5000))
		usleep(100 * 1000);
	y = cg_slab(cg.sender);
	TH_LOG("%u flows; slab_unreclaimable: the owner's +%ld (%ld a flow), the sender's +%ld",
	       flows, x - x0, (x - x0) / flows, y - y0);
	EXPECT_LE(flows * 100L, x - x0)
		TH_LOG("the rule owner's cgroup did not pay for the flows");
	EXPECT_GT(flows * 10L, y - y0)
		TH_LOG("the sender's cgroup paid for the flows");
	close(t);
}

/* ---- per family ----------------------------------------------------------- */

FIXTURE(rep) {
};

FIXTURE_VARIANT(rep) {
	int family;
	const char *a1;		/* what the client sends to, on s1 */
	const char *a2;		/* another local address, on lo */
	const char *any;
	const char *cli;
};

FIXTURE_VARIANT_ADD(rep, ipv4) {
	.family = AF_INET,
	.a1 = A1_4,
	.a2 = A2_4,
	.any = "0.0.0.0",
	.cli = CLI4,
};

FIXTURE_VARIANT_ADD(rep, ipv6) {
	.family = AF_INET6,
	.a1 = A1_6,
	.a2 = A2_6,
	.any = "::",
	.cli = CLI6,
};

FIXTURE_SETUP(rep)
{
	if (!fresh())
		SKIP(_exit(255), "the portdispatch module is not loaded");
}

FIXTURE_TEARDOWN(rep)
{
	pdn_close(&nl);
	params_restore();
}

/*
 * 1a. The dig case: a connected client sends to P; the rule hands the
 * flow to the socket on T (a port target); the answers reach the
 * connected socket, from A1:P. Each counts once as a reply of the rule,
 * and the namespace remembers one flow.
 */
TEST_F(rep, port_target)
{
	int family = variant->family, t, c, i;
	char a1p[64];

	where(family, variant->a1, P, a1p, sizeof(a1p));
	t = pd_server(family, SOCK_DGRAM, variant->any, T, true);
	ASSERT_LE(0, t);
	rule(ADD, T, -1);
	c = cli_connected(family, variant->a1, P);
	ASSERT_LE(0, c);
	for (i = 0; i < 3; i++)
		exchange(c, t, family, NULL, P, 100, a1p, NULL);
	EXPECT_EQ(3, replies(P));
	EXPECT_EQ(1u, udp_flows());
	close(c);
	close(t);
}

/* 1b. The same with the socket itself as the target (pid fd). */
TEST_F(rep, socket_target)
{
	int family = variant->family, t, c, i;
	char a1p[64];

	where(family, variant->a1, P, a1p, sizeof(a1p));
	t = pd_server(family, SOCK_DGRAM, variant->any, T, true);
	ASSERT_LE(0, t);
	rule(ADD, 0, t);
	c = cli_connected(family, variant->a1, P);
	ASSERT_LE(0, c);
	for (i = 0; i < 2; i++)
		exchange(c, t, family, NULL, P, 100, a1p, NULL);
	EXPECT_EQ(2, replies(P));
	EXPECT_EQ(1u, udp_flows());
	close(c);
	close(t);
}

/*
 * 2. A target bound to another local address (A2:T) answers from A1:P:
 * the address too is the one the client used, and the IPv4 header's
 * checksum follows it (the client's IP layer drops a wrong one). A socket
 * target: a port target is looked up at the packet's own address.
 */
TEST_F(rep, address_rewritten)
{
	int family = variant->family, t, c;
	char a1p[64];

	where(family, variant->a1, P, a1p, sizeof(a1p));
	t = pd_server(family, SOCK_DGRAM, variant->a2, T, true);
	ASSERT_LE(0, t);
	rule(ADD, 0, t);
	c = cli_connected(family, variant->a1, P);
	ASSERT_LE(0, c);
	exchange(c, t, family, NULL, P, 100, a1p, NULL);
	EXPECT_EQ(1, replies(P));
	close(c);
	close(t);
}

/* Device @dev of namespace @ns does no transmit checksum offload. */
static void __no_offload(struct __test_metadata *_metadata, int ns,
			 const char *dev)
{
	int err;

	pd_go(ns);
	err = pd_set_tx_csum(dev, false);
	pd_go(ns_srv);
	ASSERT_EQ(0, err) TH_LOG("tx checksum offload off on %s: %s", dev,
				 strerror(-err));
}

#define no_offload(ns, dev) __no_offload(_metadata, ns, dev)

/*
 * The checksum cases: a target on A2:T, a connected client of A1:P, and
 * an answer of @len bytes whose UDP checksum the client's stack checks in
 * software: r0 does no checksum offload, so whatever reaches it
 * CHECKSUM_PARTIAL is finished there, in software (validate_xmit_skb() ->
 * skb_checksum_help(), or GSO), and the client gets CHECKSUM_NONE; it
 * counts no error.
 */
static void __checked_answer(struct __test_metadata *_metadata,
			     const FIXTURE_VARIANT(rep) *variant, int t,
			     size_t len)
{
	int family = variant->family, c;
	long errs0, errs1;
	char a1p[64];

	no_offload(ns_rtr, "r0");
	where(family, variant->a1, P, a1p, sizeof(a1p));
	rule(ADD, 0, t);
	c = cli_connected(family, variant->a1, P);
	ASSERT_LE(0, c);
	errs0 = cli_csum_errors();
	ASSERT_LE(0, errs0) TH_LOG("no InCsumErrors counter");
	exchange(c, t, family, NULL, P, len, a1p, NULL);
	errs1 = cli_csum_errors();
	EXPECT_EQ(errs0, errs1) TH_LOG("the client dropped %ld datagrams for their checksum",
				       errs1 - errs0);
	close(c);
}

#define checked_answer(t, len) __checked_answer(_metadata, variant, t, len)

/*
 * 3a. CHECKSUM_NONE: s1 does no checksum offload either, so
 * __ip_append_data() (__ip6_append_data()) leaves the datagram
 * CHECKSUM_NONE and udp_send_skb() (udp_v6_send_skb()) writes its whole
 * checksum, over the target's address and port, before ip_local_out()
 * runs LOCAL_OUT. The rewrite must update it for both; nothing
 * recomputes it later.
 */
TEST_F(rep, csum_none)
{
	int t;

	no_offload(ns_srv, "s1");
	t = pd_server(variant->family, SOCK_DGRAM, variant->a2, T, true);
	ASSERT_LE(0, t);
	checked_answer(t, 1000);
	close(t);
}

/*
 * 3b. CHECKSUM_PARTIAL: s1 offloads (a veth's default), so the datagram
 * reaches LOCAL_OUT CHECKSUM_PARTIAL, its check field holding only the
 * pseudo-header's sum (udp4_hwcsum(), udp6_hwcsum_outgoing()), with the
 * target's address in it. The router forwards it as it is and r0
 * finishes it from that seed: only a seed updated for A1 gives a checksum
 * the client accepts. (The port is not in the seed: the sum over the
 * header takes the new one.)
 */
TEST_F(rep, csum_partial)
{
	int t;

	t = pd_server(variant->family, SOCK_DGRAM, variant->a2, T, true);
	ASSERT_LE(0, t);
	checked_answer(t, 1000);
	close(t);
}

/*
 * 3c. UDP GSO, as QUIC servers send: one sendto() of 4000 bytes with
 * UDP_SEGMENT 1000 is one GSO skb at LOCAL_OUT (udp_send_skb() sets
 * gso_size, and requires CHECKSUM_PARTIAL: the seed again), rewritten
 * once. s1 can carry it whole (a veth has NETIF_F_GSO_UDP_L4), the router
 * forwards it whole, and r0, with no checksum offload, loses its GSO
 * features for it too (harmonize_features()): __udp_gso_segment() cuts it
 * in software, taking each segment's checksum from the GSO skb's seed and
 * header. The client, with no UDP_GRO, receives four datagrams of 1000
 * bytes from A1:P. s1 sending fewer packets than four shows the skb left
 * the server whole.
 */
TEST_F(rep, gso)
{
	int family = variant->family, t, c, err, i;
	unsigned char out[4000], in[1500];
	struct sockaddr_storage cl, from;
	long errs0, tx0, tx1;
	char a1p[64], got[80];
	ssize_t n;

	where(family, variant->a1, P, a1p, sizeof(a1p));
	no_offload(ns_rtr, "r0");
	t = pd_server(family, SOCK_DGRAM, variant->a2, T, true);
	ASSERT_LE(0, t);
	ASSERT_EQ(0, setsockopt(t, SOL_UDP, UDP_SEGMENT, &(int){ 1000 },
				sizeof(int)));
	rule(ADD, 0, t);
	c = cli_connected(family, variant->a1, P);
	ASSERT_LE(0, c);
	errs0 = cli_csum_errors();
	ASSERT_EQ(5, send(c, "query", 5, 0));
	serve(t, &cl);

	tx0 = pd_tx_packets("s1");
	pattern(out, sizeof(out), 3);
	err = sendto_addr(t, out, sizeof(out), &cl);
	ASSERT_EQ(0, err) TH_LOG("a GSO send: %s", strerror(-err));
	for (i = 0; i < 4; i++) {
		n = recv_dgram(c, WAIT_MS, in, sizeof(in), &from);
		ASSERT_EQ(1000, n)
			TH_LOG("segment %d of 4: %zd bytes (-1: none in %d ms; the client dropped %ld for their checksum)",
			       i + 1, n, WAIT_MS,
			       cli_csum_errors() - errs0);
		pd_fmt_ss(&from, got, sizeof(got));
		ASSERT_STREQ(a1p, got) TH_LOG("segment %d's source", i + 1);
		ASSERT_EQ(0, memcmp(in, out + 1000 * i, 1000))
			TH_LOG("segment %d's contents", i + 1);
	}
	tx1 = pd_tx_packets("s1");
	EXPECT_GT(4, tx1 - tx0)
		TH_LOG("s1 sent %ld packets: the answer was cut before it left",
		       tx1 - tx0);
	EXPECT_EQ(errs0, cli_csum_errors());
	EXPECT_EQ(1, replies(P)) TH_LOG("one GSO skb, one rewrite");
	close(c);
	close(t);
}

/*
 * 3d. A 3000-byte answer over 1500-byte links: __ip_append_data()
 * (__ip6_append_data()) builds it as a chain of skbs (frag_list),
 * CHECKSUM_NONE with its whole checksum (udp_csum() sums the chain), and
 * LOCAL_OUT sees it whole: ip_fragment() and ip6_fragment() cut it only
 * after, in ip_finish_output() and ip6_finish_output(). The client
 * reassembles it and checks the checksum in software.
 */
TEST_F(rep, fragmented)
{
	int t;
	long f0, f1;

	t = pd_server(variant->family, SOCK_DGRAM, variant->a2, T, true);
	ASSERT_LE(0, t);
	f0 = srv_frag_creates(variant->family);
	checked_answer(t, 3000);
	f1 = srv_frag_creates(variant->family);
	EXPECT_LE(2, f1 - f0) TH_LOG("the server made %ld fragments", f1 - f0);
	close(t);
}

/*
 * 3e. Options between the network and the UDP header: IPv4 options (four
 * bytes of NOP and END) and an IPv6 destination options header (PadN),
 * set on the target socket. The UDP header is found past them. (IPv6
 * offloads no checksum past an extension header: CHECKSUM_NONE.)
 */
TEST_F(rep, header_options)
{
	static const unsigned char ip_opts[4] = { 1, 1, 1, 0 };
	/* Next header (the kernel's), length 0 (8 bytes), PadN of 4. */
	static const unsigned char dst_opts[8] = { 0, 0, 1, 4, 0, 0, 0, 0 };
	int t, err;

	t = pd_server(variant->family, SOCK_DGRAM, variant->a2, T, true);
	ASSERT_LE(0, t);
	if (variant->family == AF_INET)
		err = setsockopt(t, SOL_IP, IP_OPTIONS, ip_opts,
				 sizeof(ip_opts));
	else
		err = setsockopt(t, SOL_IPV6, IPV6_DSTOPTS, dst_opts,
				 sizeof(dst_opts));
	ASSERT_EQ(0, err) TH_LOG("options on the target: %s", strerror(errno));
	checked_answer(t, 100);
	close(t);
}

/*
 * 4a. Only steered flows' answers change: the same client's socket that
 * talks to T itself gets its answers from T, and remembers nothing, before
 * and after another of its sockets has a steered flow; a socket of the
 * client that never sent anything, written to by the target, hears from T.
 */
TEST_F(rep, untouched_other_flows)
{
	int family = variant->family, t, c, d, s;
	struct sockaddr_storage quiet;
	socklen_t len = sizeof(quiet);
	char a1p[64], a1t[64];

	where(family, variant->a1, P, a1p, sizeof(a1p));
	where(family, variant->a1, T, a1t, sizeof(a1t));
	t = pd_server(family, SOCK_DGRAM, variant->any, T, true);
	ASSERT_LE(0, t);
	rule(ADD, T, -1);
	d = cli_connected(family, variant->a1, T);
	c = cli_connected(family, variant->a1, P);
	s = cli_udp(family, 0);
	ASSERT_LE(0, d);
	ASSERT_LE(0, c);
	ASSERT_LE(0, s);

	exchange(d, t, family, NULL, T, 100, a1t, NULL);
	EXPECT_EQ(0u, udp_flows()) TH_LOG("a flow to T itself was remembered");
	exchange(c, t, family, NULL, P, 100, a1p, NULL);
	EXPECT_EQ(1u, udp_flows());
	exchange(d, t, family, NULL, T, 100, a1t, NULL);

	/* The quiet socket's address, as the server sees it. */
	ASSERT_EQ(0, getsockname(s, (struct sockaddr *)&quiet, &len));
	pd_sockaddr(family, variant->cli, pd_sockaddr_port(&quiet), &quiet);
	answer(t, &quiet, s, 100, 9, a1t);
	EXPECT_EQ(1, replies(P));
	EXPECT_EQ(1u, udp_flows());
	close(c);
	close(d);
	close(s);
	close(t);
}

/*
 * 4b. Only the target's answers change: a socket on A1:T (another
 * address, the same port as the target on A2:T) writing to the client of
 * a steered flow is heard from A1:T, and one bound to A1:P itself (a
 * server answering from the original port) from A1:P, neither counted as
 * a rewritten reply; the target's own answer is.
 */
TEST_F(rep, untouched_other_sockets)
{
	int family = variant->family, t, c, o1, o2;
	struct sockaddr_storage cl;
	char a1p[64], a1t[64];

	where(family, variant->a1, P, a1p, sizeof(a1p));
	where(family, variant->a1, T, a1t, sizeof(a1t));
	t = pd_server(family, SOCK_DGRAM, variant->a2, T, true);
	ASSERT_LE(0, t);
	rule(ADD, 0, t);
	c = cli_udp(family, 0);
	ASSERT_LE(0, c);
	exchange(c, t, family, variant->a1, P, 100, a1p, &cl);

	o1 = pd_server(family, SOCK_DGRAM, variant->a1, T, true);
	o2 = pd_server(family, SOCK_DGRAM, variant->a1, P, true);
	ASSERT_LE(0, o1) TH_LOG("bind %s: %s", a1t, strerror(errno));
	ASSERT_LE(0, o2) TH_LOG("bind %s: %s", a1p, strerror(errno));
	answer(o1, &cl, c, 100, 1, a1t);
	answer(o2, &cl, c, 100, 2, a1p);
	EXPECT_EQ(1, replies(P)) TH_LOG("other sockets' datagrams counted");
	answer(t, &cl, c, 100, 3, a1p);
	EXPECT_EQ(2, replies(P));
	close(o1);
	close(o2);
	close(c);
	close(t);
}

/*
 * A TCP connection from the client's port @port (0: any) to @addr:@port,
 * accepted on @l; data goes both ways, and the client sees @want as its
 * peer.
 */
static void __tcp_roundtrip(struct __test_metadata *_metadata, int family,
			    int cport, const char *addr, int port, int l,
			    const char *want)
{
	struct timeval tv = { .tv_sec = WAIT_MS / 1000 };
	struct sockaddr_storage ss;
	char got[80], buf[16];
	socklen_t len;
	int c, a;

	pd_go(ns_cli);
	c = socket(family, SOCK_STREAM, 0);
	pd_go(ns_srv);
	ASSERT_LE(0, c);
	if (family == AF_INET6)
		setsockopt(c, SOL_IPV6, IPV6_V6ONLY, &(int){ 1 }, sizeof(int));
	/* connect() and recv() give up in time. */
	setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	/* The port's last connection may be closing. */
	setsockopt(c, SOL_SOCKET, SO_REUSEADDR, &(int){ 1 }, sizeof(int));
	len = pd_sockaddr(family, family == AF_INET ? "0.0.0.0" : "::", cport,
			  &ss);
	ASSERT_EQ(0, bind(c, (struct sockaddr *)&ss, len))
		TH_LOG("bind a TCP client to port %d: %s", cport,
		       strerror(errno));
	len = pd_sockaddr(family, addr, port, &ss);
	ASSERT_EQ(0, connect(c, (struct sockaddr *)&ss, len))
		TH_LOG("connect to %s: %s", want, strerror(errno));
	ASSERT_TRUE(pd_readable(l, WAIT_MS));
	a = accept(l, NULL, NULL);
	ASSERT_LE(0, a);
	ASSERT_EQ(4, send(c, "ping", 4, 0));
	ASSERT_TRUE(pd_readable(a, WAIT_MS));
	ASSERT_EQ(4, recv(a, buf, sizeof(buf), 0));
	ASSERT_EQ(4, send(a, "pong", 4, 0));
	ASSERT_EQ(4, recv(c, buf, sizeof(buf), 0))
		TH_LOG("data from %s: %s", want, strerror(errno));
	ASSERT_EQ(0, memcmp(buf, "pong", 4));
	len = sizeof(ss);
	ASSERT_EQ(0, getpeername(c, (struct sockaddr *)&ss, &len));
	ASSERT_STREQ(want, pd_fmt_ss(&ss, got, sizeof(got)));
	close(a);
	close(c);
}

#define tcp_roundtrip(family, cport, addr, port, l, want)		\
	__tcp_roundtrip(_metadata, family, cport, addr, port, l, want)

/*
 * 4c. TCP is untouched. A UDP flow comes from the client's port X; from
 * X too, a TCP connection goes to A1:T itself, and another one to A1:P,
 * which a TCP rule steers to the listener on T (and which therefore
 * answers from P). The reply hooks, there for the UDP rule, see every
 * segment; those from T to X even have the flow's client, port and
 * target port: only their protocol and socket tell them apart. A TCP
 * rule has no REPLIES counter at all.
 */
TEST_F(rep, untouched_tcp)
{
	int family = variant->family, u, l, cu, port;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char a1p[64], a1t[64];
	struct pdn_rule r;

	where(family, variant->a1, P, a1p, sizeof(a1p));
	where(family, variant->a1, T, a1t, sizeof(a1t));
	u = pd_server(family, SOCK_DGRAM, variant->any, T, true);
	l = pd_server(family, SOCK_STREAM, variant->any, T, true);
	ASSERT_LE(0, u);
	ASSERT_LE(0, l);
	rule(ADD, T, -1);
	__rule(_metadata, ADD, IPPROTO_TCP, T, -1);

	cu = cli_udp(family, 0);
	ASSERT_LE(0, cu);
	ASSERT_EQ(0, getsockname(cu, (struct sockaddr *)&ss, &len));
	port = pd_sockaddr_port(&ss);
	exchange(cu, u, family, variant->a1, P, 100, a1p, NULL);

	tcp_roundtrip(family, port, variant->a1, T, l, a1t);
	tcp_roundtrip(family, port, variant->a1, P, l, a1p);

	ASSERT_TRUE(__find_rule(_metadata, IPPROTO_TCP, P, &r));
	EXPECT_FALSE(PDN_SHAS(&r, PORTDISPATCH_A_RULE_STATS_REPLIES))
		TH_LOG("a TCP rule reports %llu replies",
		       (unsigned long long)r.replies);
	EXPECT_EQ(1, replies(P));
	EXPECT_EQ(1u, udp_flows());
	close(cu);
	close(l);
	close(u);
}

/*
 * 6. A flow leaves with its rule: a replace that keeps the target keeps
 * the flows (and the counters), one to another target drops them at once,
 * and so does a delete; afterwards the target's datagrams to the client
 * leave from T. For a socket target, "the same" is the same socket.
 */
TEST_F(rep, dropped_with_rule)
{
	int family = variant->family, t, t2, c;
	struct sockaddr_storage cl;
	struct pdn_status st;
	char a1p[64], a1t[64];

	where(family, variant->a1, P, a1p, sizeof(a1p));
	where(family, variant->a1, T, a1t, sizeof(a1t));
	t = pd_server(family, SOCK_DGRAM, variant->any, T, true);
	t2 = pd_server(family, SOCK_DGRAM, variant->any, T2, true);
	ASSERT_LE(0, t);
	ASSERT_LE(0, t2);
	c = cli_udp(family, 0);
	ASSERT_LE(0, c);

	rule(ADD, T, -1);
	exchange(c, t, family, variant->a1, P, 100, a1p, &cl);
	ASSERT_EQ(1u, udp_flows());

	rule(REPLACE, T, -1);
	ASSERT_EQ(1u, udp_flows()) TH_LOG("a replace to the same port dropped the flow");
	answer(t, &cl, c, 100, 1, a1p);
	EXPECT_EQ(2, replies(P)) TH_LOG("the counter did not follow the replace");

	rule(REPLACE, T2, -1);
	ASSERT_EQ(0u, udp_flows()) TH_LOG("a replace to another port kept the flow");
	answer(t, &cl, c, 100, 2, a1t);

	rule(REPLACE, T, -1);
	exchange(c, t, family, variant->a1, P, 100, a1p, NULL);
	ASSERT_EQ(1u, udp_flows());
	ASSERT_EQ(0, pdn_del(&nl, IPPROTO_UDP, P, 0, &st)) TH_LOG("%s", st.msg);
	ASSERT_EQ(0u, udp_flows()) TH_LOG("a delete kept the flow");
	answer(t, &cl, c, 100, 3, a1t);

	rule(ADD, 0, t);
	exchange(c, t, family, variant->a1, P, 100, a1p, NULL);
	rule(REPLACE, 0, t);
	ASSERT_EQ(1u, udp_flows()) TH_LOG("a replace to the same socket dropped the flow");
	answer(t, &cl, c, 100, 4, a1p);
	close(c);
	close(t);
	close(t2);
}

/*
 * 7. Bounded: with max_udp_flows=4, four answered flows are remembered
 * and the twelve after them are not (counted as missed), and answered
 * from T, while the four go on being answered from P.
 *
 * pd_reply_room() admits a flow while the count is under the limit, read
 * before the flow is added under its bucket's lock only: flows noted at
 * the same time on n CPUs can overshoot it by n - 1, one at a time (as
 * here) never. At the limit, a new flow may only replace an expired or
 * never-answered flow of its own bucket; the first four have answers.
 */
#define BOUND		4
#define CLIENTS		16

TEST_F(rep, bounded)
{
	int family = variant->family, t, c[CLIENTS], i, err;
	struct sockaddr_storage cl[CLIENTS];
	char a1p[64], a1t[64];
	struct pdn_stats s0, s;

	where(family, variant->a1, P, a1p, sizeof(a1p));
	where(family, variant->a1, T, a1t, sizeof(a1t));
	err = param_set("max_udp_flows", BOUND);
	ASSERT_EQ(0, err) TH_LOG("max_udp_flows: %s", strerror(-err));
	t = pd_server(family, SOCK_DGRAM, variant->any, T, true);
	ASSERT_LE(0, t);
	rule(ADD, T, -1);
	s0 = ns_stats();
	for (i = 0; i < CLIENTS; i++) {
		c[i] = cli_udp(family, 0);
		ASSERT_LE(0, c[i]);
		exchange(c[i], t, family, variant->a1, P, 100,
			 i < BOUND ? a1p : a1t, &cl[i]);
	}
	s = ns_stats();
	EXPECT_EQ((uint32_t)BOUND, s.max_udp_flows);
	EXPECT_EQ((uint32_t)BOUND, s.udp_flows);
	EXPECT_EQ((uint64_t)(CLIENTS - BOUND),
		  s.udp_flows_missed - s0.udp_flows_missed);
	for (i = 0; i < BOUND; i++)
		answer(t, &cl[i], c[i], 100, i, a1p);
	EXPECT_EQ(2 * BOUND, replies(P));
	for (i = 0; i < CLIENTS; i++)
		close(c[i]);
	close(t);
}

TEST_HARNESS_MAIN
