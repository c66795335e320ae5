// SPDX-License-Identifier: GPL-2.0
/*
 * Steering semantics at the socket level: which socket a new flow reaches,
 * with which local address, for every kind of target, family, prefix and
 * port range, and what happens when the target is gone.
 *
 *   client --SYN/datagram--> lo:80, lo:53 (nothing of ours bound there)
 *                |  portctl add {tcp 80|udp 53} [dst P] to {pid PID [fd FD]|port N}
 *                v
 *   a socket of this process on lo:8080 / lo:5353 takes it, and sees
 *   lo:80 / lo:53 as its local address (getsockname, IP_ORIGDSTADDR): no NAT
 *
 * lo is 127.0.0.1 and ::1, plus 2001:db8::5 and ::6 (nodad) for the IPv6
 * prefix test. Every test runs in a network namespace of its own (the
 * fixtures' setup), so its rules, addresses, MTU and sockets vanish with
 * the test process, whatever way it ends. The table is driven with
 * portctl, as a user would; a refusal is checked by its exit status and
 * message, a flow by who accepted or received it and with which address.
 */

#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <time.h>

#include "harness.h"
#include "pd_link.h"
#include "pd_test.h"

#define LO4	"127.0.0.1"
#define LO6	"::1"
#define OUTLEN	4096

/*
 * Bounds on Debian's kernels, scaled to this one (pd_ms()). Long enough
 * for a guest under TCG; only a broken case waits this long.
 */
#define WAIT_MS		pd_ms(3000)
/* How long to watch for what must not come. */
#define QUIET_MS	pd_ms(300)
/* How soon a rule whose socket is gone must leave the table and the list. */
#define GONE_MS		pd_ms(1000)

/*
 * Where a test's clients connect from: the test's own namespace, or (the
 * dev tests) client_ns, across a veth, home_ns being the test's. A socket
 * stays for its whole life in the namespace it was made in.
 */
static int client_ns = -1, home_ns = -1;

static int client_side(void)
{
	return client_ns < 0 || !setns(client_ns, CLONE_NEWNET) ? 0 : -errno;
}

static void home_side(void)
{
	if (client_ns >= 0 && setns(home_ns, CLONE_NEWNET)) {
		/* Stranded on the client's side: nothing after is sound. */
		perror("setns back to the test's namespace");
		abort();
	}
}

/* pd_connect(), from the clients' namespace. */
static int client_connect(int family, int type, const char *addr, int port)
{
	int fd = client_side();

	if (fd)
		return fd;
	fd = pd_connect(family, type, addr, port);
	home_side();
	return fd;
}

/* The same text for an address and port given separately. */
static const char *hostport(int family, const char *addr, int port,
			    char *buf, size_t len)
{
	struct sockaddr_storage ss;

	pd_sockaddr(family, addr, port, &ss);
	return pd_fmt_ss(&ss, buf, len);
}

/*
 * Accept one connection from @lfd within @ms. Returns the new socket, or
 * -1 when none came; its local address (getsockname) lands in @local.
 */
static int accept_local(int lfd, int ms, char *local, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	int fd;

	snprintf(local, len, "nothing");
	if (!pd_readable(lfd, ms))
		return -1;
	fd = accept(lfd, NULL, NULL);
	if (fd < 0)
		return -1;
	if (getsockname(fd, (struct sockaddr *)&ss, &sslen))
		snprintf(local, len, "getsockname: %s", strerror(errno));
	else
		pd_fmt_ss(&ss, local, len);
	return fd;
}

/* Datagrams the stack cut into fragments, per family. */
static long frag_creates(int family)
{
	if (family == AF_INET6)
		return pd_proc_counter("/proc/net/snmp6", NULL,
				       "Ip6FragCreates");
	return pd_proc_counter("/proc/net/snmp", "Ip", "FragCreates");
}

/* SYNs sent again because the first went unanswered. */
static long syn_retrans(void)
{
	return pd_proc_counter("/proc/net/netstat", "TcpExt", "TCPSynRetrans");
}

/*
 * Connect to @addr:@port; @lfd must accept the connection, and see
 * @want_local as its local address (NULL: @addr:@port itself), the
 * client's original destination.
 */
static void __expect_steered(struct __test_metadata *_metadata, int family,
			     const char *addr, int port, int lfd,
			     const char *want_local)
{
	char dst[64], local[80];
	int c, a;

	hostport(family, addr, port, dst, sizeof(dst));
	if (!want_local)
		want_local = dst;
	c = client_connect(family, SOCK_STREAM, addr, port);
	ASSERT_LE(0, c)
		TH_LOG("connect to %s: %s (expected the steered listener fd %d to take it)",
		       dst, strerror(-c), lfd);
	a = accept_local(lfd, WAIT_MS, local, sizeof(local));
	close(c);
	ASSERT_LE(0, a)
		TH_LOG("connected to %s, but listener fd %d got nothing in %d ms",
		       dst, lfd, WAIT_MS);
	close(a);
	ASSERT_STREQ(want_local, local)
		TH_LOG("local address of the connection to %s accepted by fd %d",
		       dst, lfd);
}

#define expect_steered(family, addr, port, lfd)				\
	__expect_steered(_metadata, family, addr, port, lfd, NULL)

/*
 * A connection to @addr:@port is refused at once: the first SYN meets an
 * RST. A SYN that was dropped, or handed to a socket that could not take
 * it, is sent again after a second; the client's stack counts that.
 */
static void __expect_refused(struct __test_metadata *_metadata, int family,
			     const char *addr, int port, const char *why)
{
	long t0, before, retrans, took;
	char dst[64];
	int c;

	hostport(family, addr, port, dst, sizeof(dst));
	c = client_side();
	ASSERT_EQ(0, c) TH_LOG("into the clients' namespace: %s", strerror(-c));
	before = syn_retrans();
	t0 = pd_now_ms();
	c = pd_connect(family, SOCK_STREAM, addr, port);
	took = pd_now_ms() - t0;
	retrans = syn_retrans() - before;
	home_side();
	if (c >= 0)
		close(c);
	ASSERT_LE(0, before) TH_LOG("no TcpExt TCPSynRetrans counter");
	ASSERT_EQ(-ECONNREFUSED, c)
		TH_LOG("connect to %s (%s): %s after %ld ms, expected it refused",
		       dst, why, c >= 0 ? "connected" : strerror(-c), took);
	ASSERT_EQ(0, retrans)
		TH_LOG("connect to %s: refused only after %ld SYN retransmission(s), %ld ms",
		       dst, retrans, took);
}

#define expect_refused(family, addr, port, why)				\
	__expect_refused(_metadata, family, addr, port, why)

/* portctl ARGS must succeed; its output (OUTLEN bytes) lands in @out. */
static void __portctl_ok(struct __test_metadata *_metadata, char *out,
			 const char *fmt, ...)
{
	char args[512];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	rc = pd_portctl(out, OUTLEN, "%s", args);
	ASSERT_EQ(0, rc) TH_LOG("portctl %s: exit %d: %s", args, rc, out);
}

#define portctl_ok(out, fmt, ...)					\
	__portctl_ok(_metadata, out, fmt, ##__VA_ARGS__)

/* Does `portctl list` show a rule whose line starts with @prefix? */
static bool __rule_listed(struct __test_metadata *_metadata,
			  const char *prefix, char *line, size_t linelen)
{
	char out[OUTLEN];
	const char *p;
	int rc;

	rc = pd_portctl(out, sizeof(out), "list");
	EXPECT_EQ(0, rc) TH_LOG("portctl list: exit %d: %s", rc, out);
	for (p = out; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, prefix, strlen(prefix)))
			continue;
		if (line) {
			snprintf(line, linelen, "%.*s",
				 (int)(strchrnul(p, '\n') - p), p);
		}
		return true;
	}
	return false;
}

#define rule_listed(prefix, line)					\
	__rule_listed(_metadata, prefix, line, sizeof(line))

/* The number after @word in @text (e.g. "undeliverable 3"), or -1. */
static long number_after(const char *text, const char *word)
{
	const char *p = strstr(text, word);

	return p ? strtol(p + strlen(word), NULL, 10) : -1;
}

/*
 * In @out, what `portctl -s list` printed: the number after @word
 * ("steered ", "undeliverable ") on the line of the rule that starts with
 * @prefix, or -1.
 */
static long rule_count(const char *out, const char *prefix,
		       const char *word)
{
	size_t plen = strlen(prefix);
	const char *p, *end;
	char line[512];

	for (p = out; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, prefix, plen))
			continue;
		end = strchrnul(p, '\n');
		snprintf(line, sizeof(line), "%.*s", (int)(end - p), p);
		return number_after(line, word);
	}
	return -1;
}

/* How many rules the namespace's table holds, by `portctl stats`. */
static long __table_rules(struct __test_metadata *_metadata)
{
	char out[OUTLEN];
	int rc;

	rc = pd_portctl(out, sizeof(out), "stats");
	EXPECT_EQ(0, rc) TH_LOG("portctl stats: exit %d: %s", rc, out);
	return strncmp(out, "rules ", 6) ? number_after(out, "\nrules ") :
					   number_after(out, "rules ");
}

/*
 * When something left the table, in ms after an event: it was still there
 * by a look begun at @present (-1: never seen), and gone by one begun at
 * @gone_start that returned at @gone_end.
 */
struct gone {
	long present, gone_start, gone_end;
	int looks;
};

/*
 * Poll until the table has no rule (@listing false: `portctl stats`), or
 * until `portctl list` shows no rule starting with @prefix. False when a
 * look begun more than GONE_MS after @since still saw it.
 */
static bool __rule_gone(struct __test_metadata *_metadata, bool listing,
			const char *prefix, long since, struct gone *g)
{
	g->present = -1;
	for (g->looks = 1;; g->looks++) {
		long t = pd_now_ms() - since;
		bool there = listing ? __rule_listed(_metadata, prefix, NULL, 0) :
				       __table_rules(_metadata) != 0;

		if (!there) {
			g->gone_start = t;
			g->gone_end = pd_now_ms() - since;
			return true;
		}
		g->present = t;
		if (t > GONE_MS)
			return false;
		usleep(20 * 1000);
	}
}

static void __expect_rule_gone(struct __test_metadata *_metadata,
			       bool listing, const char *prefix, long since,
			       const char *what)
{
	const char *how = listing ? "portctl list" : "portctl stats";
	struct gone g;

	ASSERT_TRUE(__rule_gone(_metadata, listing, prefix, since, &g))
		TH_LOG("%s still shows the rule %ld ms after %s", how,
		       g.present, what);
	TH_LOG("%s: gone %ld-%ld ms after %s (last seen at %ld ms, %d looks)",
	       how, g.gone_start, g.gone_end, what, g.present, g.looks);
}

#define expect_rule_gone(listing, prefix, since, what)			\
	__expect_rule_gone(_metadata, listing, prefix, since, what)

/*
 * A bound UDP socket that reports each datagram's original destination
 * (an IPv6 one that takes IPv4 too reports IPv4's as IPv4 does), as
 * pd_server_dev() makes it.
 */
static int udp_target_dev(int family, const char *addr, int port,
			  bool v6only, const char *dev)
{
	int fd = pd_server_dev(family, SOCK_DGRAM, addr, port, v6only, dev);
	int on = 1;

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_IP, IP_RECVORIGDSTADDR, &on, sizeof(on));
	if (family == AF_INET6)
		setsockopt(fd, SOL_IPV6, IPV6_RECVORIGDSTADDR, &on,
			   sizeof(on));
	return fd;
}

static int udp_target(int family, const char *addr, int port)
{
	return udp_target_dev(family, addr, port, false, NULL);
}

/*
 * Receive one datagram within @ms: its true length (MSG_TRUNC), or -1 when
 * none came. @orig gets its original destination, when the socket asked
 * for it.
 */
static ssize_t udp_recv(int fd, int ms, void *buf, size_t len, char *orig,
			size_t origlen)
{
	char control[CMSG_SPACE(sizeof(struct sockaddr_in6))];
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = control,
		.msg_controllen = sizeof(control),
	};
	struct cmsghdr *cm;
	ssize_t n;

	if (orig)
		snprintf(orig, origlen, "none");
	if (!pd_readable(fd, ms))
		return -1;
	n = recvmsg(fd, &msg, MSG_TRUNC | MSG_DONTWAIT);
	if (n < 0 || !orig)
		return n;
	for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
		struct sockaddr_storage ss = { 0 };
		size_t clen = cm->cmsg_len - CMSG_LEN(0);

		if (!((cm->cmsg_level == SOL_IP &&
		       cm->cmsg_type == IP_ORIGDSTADDR) ||
		      (cm->cmsg_level == SOL_IPV6 &&
		       cm->cmsg_type == IPV6_ORIGDSTADDR)))
			continue;
		memcpy(&ss, CMSG_DATA(cm), clen < sizeof(ss) ? clen : sizeof(ss));
		pd_fmt_ss(&ss, orig, origlen);
	}
	return n;
}

/*
 * Send one datagram from a fresh, unconnected socket of the clients'
 * namespace; 0 or -errno.
 */
static int udp_send(int family, const char *addr, int port, const void *buf,
		    size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sslen = pd_sockaddr(family, addr, port, &ss);
	int fd, err = client_side();

	if (err)
		return err;
	fd = socket(family, SOCK_DGRAM, 0);
	err = fd < 0 ? -errno : 0;
	home_side();
	if (err)
		return err;
	if (sendto(fd, buf, len, 0, (struct sockaddr *)&ss, sslen) !=
	    (ssize_t)len)
		err = -errno;
	close(fd);
	return err;
}

/*
 * A datagram to @addr:@port reaches @fd, which sees @want_orig (NULL:
 * @addr:@port itself) as its original destination.
 */
static void __expect_udp_delivered(struct __test_metadata *_metadata,
				   int family, const char *addr, int port,
				   int fd, const char *want_orig)
{
	char dst[64], buf[64], orig[80];
	ssize_t n;
	int err;

	hostport(family, addr, port, dst, sizeof(dst));
	if (!want_orig)
		want_orig = dst;
	err = udp_send(family, addr, port, "hello", 5);
	ASSERT_EQ(0, err) TH_LOG("send to %s: %s", dst, strerror(-err));
	n = udp_recv(fd, WAIT_MS, buf, sizeof(buf), orig, sizeof(orig));
	ASSERT_EQ(5, n)
		TH_LOG("the datagram to %s did not reach fd %d in %d ms", dst,
		       fd, WAIT_MS);
	ASSERT_EQ(0, memcmp(buf, "hello", 5));
	ASSERT_STREQ(want_orig, orig)
		TH_LOG("original destination of the datagram to %s, on fd %d",
		       dst, fd);
}

#define expect_udp_delivered(family, addr, port, fd)			\
	__expect_udp_delivered(_metadata, family, addr, port, fd, NULL)

/*
 * A datagram to @addr:@port meets the normal lookup's ICMP port
 * unreachable, which a connected socket reads as ECONNREFUSED: not
 * silence, and no socket takes it.
 */
static void __expect_udp_refused(struct __test_metadata *_metadata,
				 int family, const char *addr, int port,
				 const char *why)
{
	struct timeval tv = { .tv_sec = WAIT_MS / 1000 };
	char dst[64], buf[64];
	long t0, took;
	ssize_t n;
	int c, err;

	hostport(family, addr, port, dst, sizeof(dst));
	c = client_connect(family, SOCK_DGRAM, addr, port);
	ASSERT_LE(0, c) TH_LOG("connect a UDP socket to %s: %s", dst,
			       strerror(-c));
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ASSERT_EQ(4, send(c, "ping", 4, 0))
		TH_LOG("send to %s: %s", dst, strerror(errno));
	t0 = pd_now_ms();
	n = recv(c, buf, sizeof(buf), 0);
	err = errno;
	took = pd_now_ms() - t0;
	close(c);
	ASSERT_EQ(-1, n)
		TH_LOG("%s (%s) answered %zd bytes: nothing should answer",
		       dst, why, n);
	ASSERT_EQ(ECONNREFUSED, err)
		TH_LOG("datagram to %s (%s): %s after %ld ms, expected ECONNREFUSED (ICMP port unreachable)",
		       dst, why, strerror(err), took);
}

#define expect_udp_refused(family, addr, port, why)			\
	__expect_udp_refused(_metadata, family, addr, port, why)

/* Run a shell command in the test's namespace; its exit status. */
static int run(char *out, size_t outlen, const char *fmt, ...)
{
	char cmd[512];
	va_list ap;
	size_t n = 0;
	FILE *p;
	int status;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	strncat(cmd, " 2>&1", sizeof(cmd) - strlen(cmd) - 1);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	n = fread(out, 1, outlen - 1, p);
	out[n] = '\0';
	status = pclose(p);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int set_lo_mtu(int mtu)
{
	struct ifreq ifr = { .ifr_name = "lo", .ifr_mtu = mtu };
	int fd = socket(AF_INET, SOCK_DGRAM, 0), err;

	if (fd < 0)
		return -errno;
	err = ioctl(fd, SIOCSIFMTU, &ifr) ? -errno : 0;
	close(fd);
	return err;
}

/*
 * Tests that hold for both families: the variant names the loopback
 * address and, for destination prefixes, a wide prefix, one address
 * inside it (narrow) and another (far).
 */
FIXTURE(fam) {
};

FIXTURE_VARIANT(fam) {
	int family;
	const char *lo;
	const char *wide;	/* prefix covering near and far */
	const char *narrow;	/* prefix holding near only */
	const char *near;
	const char *far;
	const char *add[2];	/* addresses to put on lo first */
	const char *host;	/* printf format: the i-th of many hosts */
	bool add_hosts;		/* those hosts need putting on lo */
};

FIXTURE_VARIANT_ADD(fam, ipv4) {
	.family = AF_INET,
	.lo = LO4,
	.wide = "127.0.0.0/8",
	.narrow = "127.0.0.2",
	.near = "127.0.0.2",
	.far = "127.0.0.3",
	.host = "127.0.1.%d",
};

FIXTURE_VARIANT_ADD(fam, ipv6) {
	.family = AF_INET6,
	.lo = LO6,
	.wide = "2001:db8::/32",
	.narrow = "2001:db8::5/128",
	.near = "2001:db8::5",
	.far = "2001:db8::6",
	.add = { "2001:db8::5/128", "2001:db8::6/128" },
	.host = "2001:db8::1:%x",
	.add_hosts = true,
};

FIXTURE_SETUP(fam)
{
	int err = pd_enter_netns();

	ASSERT_EQ(0, err) TH_LOG("private network namespace: %s",
				 strerror(-err));
}

FIXTURE_TEARDOWN(fam)
{
}

/*
 * Same for the tests that pick their families themselves.
 */
FIXTURE(ns) {
};

FIXTURE_SETUP(ns)
{
	int err = pd_enter_netns();

	ASSERT_EQ(0, err) TH_LOG("private network namespace: %s",
				 strerror(-err));
}

FIXTURE_TEARDOWN(ns)
{
}

/* 1. A connection to port 80 reaches the listener on 8080, unNATed. */
TEST_F(fam, tcp_original_destination)
{
	char out[OUTLEN];
	int l;

	l = pd_server(variant->family, SOCK_STREAM, variant->lo, 8080, false);
	ASSERT_LE(0, l) TH_LOG("listen on 8080: %s", strerror(errno));
	/* Without the rule, nothing answers on 80. */
	expect_refused(variant->family, variant->lo, 80, "no rule yet");

	portctl_ok(out, "add tcp 80 to pid %d fd %d", getpid(), l);
	expect_steered(variant->family, variant->lo, 80, l);
	close(l);
}

/* 2. A datagram to 53 reaches the socket on 5353, which sees port 53. */
TEST_F(fam, udp_original_destination)
{
	char out[OUTLEN];
	int u;

	u = udp_target(variant->family, variant->lo, 5353);
	ASSERT_LE(0, u) TH_LOG("bind to 5353: %s", strerror(errno));
	portctl_ok(out, "add udp 53 to pid %d fd %d", getpid(), u);
	expect_udp_delivered(variant->family, variant->lo, 53, u);
	close(u);
}

/*
 * 5. Longest destination prefix wins, whatever order the rules came in:
 * no dst -> A, the wide prefix -> B, one address -> C.
 */
TEST_F(fam, longest_prefix_wins)
{
	char out[OUTLEN];
	int a, b, c, i, rc;

	for (i = 0; i < 2 && variant->add[i]; i++) {
		rc = run(out, sizeof(out), "ip addr add %s dev lo nodad",
			 variant->add[i]);
		ASSERT_EQ(0, rc) TH_LOG("ip addr add %s: %s", variant->add[i],
					out);
	}
	a = pd_server(variant->family, SOCK_STREAM, variant->lo, 8081, false);
	b = pd_server(variant->family, SOCK_STREAM, variant->lo, 8082, false);
	c = pd_server(variant->family, SOCK_STREAM, variant->lo, 8083, false);
	ASSERT_LE(0, a);
	ASSERT_LE(0, b);
	ASSERT_LE(0, c);

	portctl_ok(out, "add tcp 80 dst %s to pid %d fd %d", variant->narrow,
		   getpid(), c);
	portctl_ok(out, "add tcp 80 to pid %d fd %d", getpid(), a);
	portctl_ok(out, "add tcp 80 dst %s to pid %d fd %d", variant->wide,
		   getpid(), b);

	expect_steered(variant->family, variant->near, 80, c);
	expect_steered(variant->family, variant->far, 80, b);
	expect_steered(variant->family, variant->lo, 80,
		       variant->family == AF_INET ? b : a);

	/* Without the wide prefix, the rule without dst takes far. */
	portctl_ok(out, "del tcp 80 dst %s", variant->wide);
	expect_steered(variant->family, variant->far, 80, a);
	expect_steered(variant->family, variant->near, 80, c);

	/* None is pending anywhere: every connection went where checked. */
	EXPECT_FALSE(pd_readable(a, 0));
	EXPECT_FALSE(pd_readable(b, 0));
	EXPECT_FALSE(pd_readable(c, 0));
	close(a);
	close(b);
	close(c);
}

/*
 * 5a. Many single-address rules on one port, the size at which the
 * module indexes them by hash instead of scanning: each address still
 * finds its own rule, and a deleted one falls back to the port's rule.
 */
#define MANY_HOSTS	16

TEST_F_TIMEOUT(fam, many_addresses_one_port, 120)
{
	char out[OUTLEN], host[MANY_HOSTS][48];
	int srv[4], i, rc;

	for (i = 0; i < 4; i++) {
		srv[i] = pd_server(variant->family, SOCK_STREAM, variant->lo,
				   8090 + i, false);
		ASSERT_LE(0, srv[i]);
	}
	for (i = 0; i < MANY_HOSTS; i++) {
		snprintf(host[i], sizeof(host[i]), variant->host, i + 1);
		if (variant->add_hosts) {
			rc = run(out, sizeof(out),
				 "ip addr add %s dev lo nodad", host[i]);
			ASSERT_EQ(0, rc) TH_LOG("ip addr add %s: %s", host[i],
						out);
		}
		portctl_ok(out, "add tcp 80 dst %s to pid %d fd %d", host[i],
			   getpid(), srv[i % 3]);
	}
	portctl_ok(out, "add tcp 80 to pid %d fd %d", getpid(), srv[3]);

	for (i = 0; i < MANY_HOSTS; i++)
		expect_steered(variant->family, host[i], 80, srv[i % 3]);
	expect_steered(variant->family, variant->lo, 80, srv[3]);

	for (i = 0; i < MANY_HOSTS; i += 2)
		portctl_ok(out, "del tcp 80 dst %s", host[i]);
	for (i = 0; i < MANY_HOSTS; i++)
		expect_steered(variant->family, host[i], 80,
			       i % 2 ? srv[i % 3] : srv[3]);

	for (i = 0; i < 4; i++) {
		EXPECT_FALSE(pd_readable(srv[i], 0));
		close(srv[i]);
	}
}

/*
 * 7. A datagram the sender cut into fragments (lo's MTU at 1280) is
 * reassembled before the hook looks at its ports: steered whole, once.
 */
TEST_F(fam, fragmented_udp_steered_whole)
{
	static char big[4000], buf[8192];
	char out[OUTLEN], orig[80], want[64];
	long before, after;
	ssize_t n;
	size_t i;
	int u, err;

	err = set_lo_mtu(1280);
	ASSERT_EQ(0, err) TH_LOG("lo mtu 1280: %s", strerror(-err));
	u = udp_target(variant->family, variant->lo, 5353);
	ASSERT_LE(0, u) TH_LOG("bind to 5353: %s", strerror(errno));
	portctl_ok(out, "add udp 53 to pid %d fd %d", getpid(), u);

	for (i = 0; i < sizeof(big); i++)
		big[i] = (char)(i * 7 + 1);
	before = frag_creates(variant->family);
	err = udp_send(variant->family, variant->lo, 53, big, sizeof(big));
	ASSERT_EQ(0, err) TH_LOG("send 4000 bytes to 53: %s", strerror(-err));
	after = frag_creates(variant->family);
	ASSERT_LT(before, after)
		TH_LOG("4000 bytes went unfragmented (FragCreates %ld -> %ld)",
		       before, after);

	n = udp_recv(u, WAIT_MS, buf, sizeof(buf), orig, sizeof(orig));
	ASSERT_EQ((ssize_t)sizeof(big), n)
		TH_LOG("expected one 4000-byte datagram on the target (-1: none)");
	ASSERT_EQ(0, memcmp(buf, big, sizeof(big)))
		TH_LOG("the reassembled datagram differs from what was sent");
	hostport(variant->family, variant->lo, 53, want, sizeof(want));
	ASSERT_STREQ(want, orig);
	n = udp_recv(u, QUIET_MS, buf, sizeof(buf), NULL, 0);
	ASSERT_EQ(-1, n) TH_LOG("a second datagram (%zd bytes) reached the target",
				n);
	close(u);
}

/* 3a. "to pid P fd F" names exactly that socket, not another listener. */
TEST_F(ns, target_pid_fd)
{
	char out[OUTLEN];
	int l1, l2;

	l1 = pd_server(AF_INET, SOCK_STREAM, LO4, 8080, false);
	l2 = pd_server(AF_INET, SOCK_STREAM, LO4, 8081, false);
	ASSERT_LE(0, l1);
	ASSERT_LE(0, l2);
	portctl_ok(out, "add tcp 80 to pid %d fd %d", getpid(), l2);
	expect_steered(AF_INET, LO4, 80, l2);
	EXPECT_FALSE(pd_readable(l1, 0))
		TH_LOG("fd %d, not named, got a connection", l1);
	close(l1);
	close(l2);
}

/*
 * 3b. "to pid P" alone takes the process's one listening TCP socket
 * (a bound UDP socket is not a candidate for a TCP rule); with two
 * listeners it is refused, and the message lists both.
 */
TEST_F(ns, target_pid_alone)
{
	char out[OUTLEN], line[512], want[64];
	int l1, l2, u, rc;

	u = pd_server(AF_INET, SOCK_DGRAM, LO4, 5353, false);
	l1 = pd_server(AF_INET, SOCK_STREAM, LO4, 8080, false);
	ASSERT_LE(0, u);
	ASSERT_LE(0, l1);
	portctl_ok(out, "add tcp 80 to pid %d", getpid());
	expect_steered(AF_INET, LO4, 80, l1);
	ASSERT_TRUE(rule_listed("tcp 80 ", line)) TH_LOG("portctl list: no tcp 80");
	snprintf(want, sizeof(want), " fd %d ", l1);
	EXPECT_NE(NULL, strstr(line, want))
		TH_LOG("the rule should name fd %d: %s", l1, line);

	l2 = pd_server(AF_INET, SOCK_STREAM, LO4, 8081, false);
	ASSERT_LE(0, l2);
	rc = pd_portctl(out, sizeof(out), "add tcp 81 to pid %d", getpid());
	ASSERT_EQ(1, rc) TH_LOG("two listeners: expected exit 1, got %d: %s",
				rc, out);
	EXPECT_EQ(0, strncmp(out, "Error: ", 7)) TH_LOG("message: %s", out);
	snprintf(want, sizeof(want), "fd %d (127.0.0.1:8080)", l1);
	EXPECT_NE(NULL, strstr(out, want)) TH_LOG("'%s' not in: %s", want, out);
	snprintf(want, sizeof(want), "fd %d (127.0.0.1:8081)", l2);
	EXPECT_NE(NULL, strstr(out, want)) TH_LOG("'%s' not in: %s", want, out);
	EXPECT_FALSE(rule_listed("tcp 81 ", line))
		TH_LOG("a refused rule is listed: %s", line);
	expect_refused(AF_INET, LO4, 81, "refused rule");
	close(u);
	close(l1);
	close(l2);
}

/*
 * 3c. "to port 8080" is whichever socket listens on 8080 when the flow
 * arrives: a new listener takes over with no portctl call in between.
 */
TEST_F(ns, target_port_follows_listener)
{
	char out[OUTLEN];
	int l1, l2;

	l1 = pd_server(AF_INET, SOCK_STREAM, LO4, 8080, false);
	ASSERT_LE(0, l1);
	portctl_ok(out, "add tcp 80 to port 8080");
	expect_steered(AF_INET, LO4, 80, l1);

	close(l1);
	expect_refused(AF_INET, LO4, 80, "nothing listens on 8080");

	l2 = pd_server(AF_INET, SOCK_STREAM, LO4, 8080, false);
	ASSERT_LE(0, l2) TH_LOG("listen again on 8080: %s", strerror(errno));
	expect_steered(AF_INET, LO4, 80, l2);
	close(l2);
}

/*
 * 4a. A rule without -4/-6 to an IPv6 socket that takes IPv4 too steers
 * both families; IPv4 arrives as ::ffff:127.0.0.1.
 */
TEST_F(ns, dual_stack_takes_ipv4)
{
	char out[OUTLEN];
	int l;

	l = pd_server(AF_INET6, SOCK_STREAM, "::", 8080, false);
	ASSERT_LE(0, l);
	portctl_ok(out, "add tcp 80 to pid %d fd %d", getpid(), l);
	__expect_steered(_metadata, AF_INET, LO4, 80, l,
			 "[::ffff:127.0.0.1]:80");
	expect_steered(AF_INET6, LO6, 80, l);
	close(l);
}

/* 4b. ... but to an IPV6_V6ONLY socket it is an IPv6 rule. */
TEST_F(ns, v6only_refuses_ipv4)
{
	char out[OUTLEN];
	int l;

	l = pd_server(AF_INET6, SOCK_STREAM, "::", 8080, true);
	ASSERT_LE(0, l);
	portctl_ok(out, "add tcp 80 to pid %d fd %d", getpid(), l);
	expect_refused(AF_INET, LO4, 80, "the target is IPv6-only");
	expect_steered(AF_INET6, LO6, 80, l);
	close(l);
}

/* 4c. -4 to a dual-stack socket steers IPv4 only. */
TEST_F(ns, ipv4_rule_on_dual_stack)
{
	char out[OUTLEN];
	int l;

	l = pd_server(AF_INET6, SOCK_STREAM, "::", 8080, false);
	ASSERT_LE(0, l);
	portctl_ok(out, "-4 add tcp 80 to pid %d fd %d", getpid(), l);
	__expect_steered(_metadata, AF_INET, LO4, 80, l,
			 "[::ffff:127.0.0.1]:80");
	expect_refused(AF_INET6, LO6, 80, "the rule is -4");
	close(l);
}

/* 4d. -6 to an IPv4 socket is refused, and says why. */
TEST_F(ns, ipv6_rule_to_ipv4_socket_refused)
{
	char out[OUTLEN], line[512];
	int l, rc;

	l = pd_server(AF_INET, SOCK_STREAM, LO4, 8080, false);
	ASSERT_LE(0, l);
	rc = pd_portctl(out, sizeof(out), "-6 add tcp 80 to pid %d fd %d",
			getpid(), l);
	ASSERT_EQ(1, rc) TH_LOG("expected exit 1, got %d: %s", rc, out);
	EXPECT_EQ(0, strncmp(out, "Error: ", 7)) TH_LOG("message: %s", out);
	EXPECT_NE(NULL, strstr(out, "IPv4")) TH_LOG("message: %s", out);
	EXPECT_NE(NULL, strstr(out, "IPv6")) TH_LOG("message: %s", out);
	EXPECT_FALSE(rule_listed("tcp 80 ", line))
		TH_LOG("a refused rule is listed: %s", line);
	close(l);
}

/*
 * 4e. A -4 and a -6 rule on one port coexist, to two dual-stack sockets,
 * and each family reaches its own; a rule for both then conflicts.
 */
TEST_F(ns, per_family_rules_coexist)
{
	char out[OUTLEN];
	int a, b, c, rc;

	a = pd_server(AF_INET6, SOCK_STREAM, "::", 8081, false);
	b = pd_server(AF_INET6, SOCK_STREAM, "::", 8082, false);
	c = pd_server(AF_INET6, SOCK_STREAM, "::", 8083, false);
	ASSERT_LE(0, a);
	ASSERT_LE(0, b);
	ASSERT_LE(0, c);
	portctl_ok(out, "-4 add tcp 80 to pid %d fd %d", getpid(), a);
	portctl_ok(out, "-6 add tcp 80 to pid %d fd %d", getpid(), b);
	__expect_steered(_metadata, AF_INET, LO4, 80, a,
			 "[::ffff:127.0.0.1]:80");
	expect_steered(AF_INET6, LO6, 80, b);
	EXPECT_FALSE(pd_readable(a, 0));
	EXPECT_FALSE(pd_readable(b, 0));

	rc = pd_portctl(out, sizeof(out), "add tcp 80 to pid %d fd %d",
			getpid(), c);
	EXPECT_EQ(1, rc) TH_LOG("a rule for both families over a -4 and a -6 one: exit %d: %s",
				rc, out);
	close(a);
	close(b);
	close(c);
}

/*
 * 6a. A range covers its ends and what is between, nothing around it.
 * The table keeps ports in blocks of 256 (0-255, 256-511, ...), and a
 * change rebuilds only the blocks it touches. The ranges, added one by
 * one and checked as each comes: 9000-9010, inside a block; 250-260,
 * across the edge of blocks 0 and 1; 1-3, from the first port, and
 * 300-310, each rebuilding one of 250-260's blocks alone, which must keep
 * 250-260's part there; 65530-65535, to the last port. Deleting 1-3
 * rebuilds block 0 again: its ports go back to the normal lookup, and
 * 250-260 stays whole.
 */
static const struct range_case {
	const char *range;
	int in[4], out[2];	/* 0 ends a list */
	bool again;		/* rebuilds a block of 250-260: check it */
} ranges[] = {
	{ "9000-9010", { 9000, 9005, 9010 }, { 8999, 9011 }, false },
	{ "250-260", { 250, 255, 256, 260 }, { 249, 261 }, false },
	{ "1-3", { 1, 3 }, { 4 }, true },
	{ "300-310", { 300, 310 }, { 299, 311 }, true },
	{ "65530-65535", { 65530, 65535 }, { 65529 }, false },
};

/* Connections to @r's ports reach @l; those just outside are refused. */
static void __expect_range(struct __test_metadata *_metadata,
			   const struct range_case *r, int l)
{
	char why[64];
	unsigned int j;

	snprintf(why, sizeof(why), "outside %s", r->range);
	for (j = 0; j < ARRAY_SIZE(r->in) && r->in[j]; j++)
		expect_steered(AF_INET, LO4, r->in[j], l);
	for (j = 0; j < ARRAY_SIZE(r->out) && r->out[j]; j++)
		expect_refused(AF_INET, LO4, r->out[j], why);
}

#define expect_range(r, l)	__expect_range(_metadata, r, l)

TEST_F(ns, port_range_bounds)
{
	const struct range_case *across = &ranges[1];
	char out[OUTLEN];
	unsigned int i;
	int l;

	l = pd_server(AF_INET, SOCK_STREAM, LO4, 8080, false);
	ASSERT_LE(0, l);
	for (i = 0; i < ARRAY_SIZE(ranges); i++) {
		portctl_ok(out, "add tcp %s to pid %d fd %d", ranges[i].range,
			   getpid(), l);
		expect_range(&ranges[i], l);
		if (ranges[i].again)
			expect_range(across, l);
	}

	portctl_ok(out, "del tcp 1-3");
	expect_refused(AF_INET, LO4, 1, "tcp 1-3 was deleted");
	expect_refused(AF_INET, LO4, 3, "tcp 1-3 was deleted");
	expect_range(across, l);
	close(l);
}

/*
 * 6b. An overlapping range with the same prefix and family is refused,
 * naming the rule it overlaps; with another prefix it is a rule of its
 * own, and the longer prefix wins where both cover a port.
 */
TEST_F(ns, overlapping_ranges)
{
	char out[OUTLEN];
	int a, b, rc;

	a = pd_server(AF_INET, SOCK_STREAM, LO4, 8081, false);
	b = pd_server(AF_INET, SOCK_STREAM, LO4, 8082, false);
	ASSERT_LE(0, a);
	ASSERT_LE(0, b);
	portctl_ok(out, "add tcp 9000-9010 to pid %d fd %d", getpid(), a);

	rc = pd_portctl(out, sizeof(out), "add tcp 9005-9020 to pid %d fd %d",
			getpid(), b);
	ASSERT_EQ(1, rc) TH_LOG("overlap: expected exit 1, got %d: %s", rc,
				out);
	EXPECT_EQ(0, strncmp(out, "Error: ", 7)) TH_LOG("message: %s", out);
	EXPECT_NE(NULL, strstr(out, "tcp 9000-9010"))
		TH_LOG("the message should name tcp 9000-9010: %s", out);
	expect_refused(AF_INET, LO4, 9015, "the overlapping rule was refused");

	portctl_ok(out, "add tcp 9005-9020 dst 127.0.0.2 to pid %d fd %d",
		   getpid(), b);
	expect_steered(AF_INET, "127.0.0.2", 9015, b);
	expect_steered(AF_INET, "127.0.0.2", 9005, b);
	expect_steered(AF_INET, LO4, 9005, a);
	expect_refused(AF_INET, LO4, 9015, "only 127.0.0.2 has 9011-9020");
	close(a);
	close(b);
}

/*
 * 8a. Closing the target ends the rule: the next connection meets the
 * normal lookup (refused, no timeout) and the rule leaves the table.
 */
TEST_F(ns, closed_listener_stops_at_once)
{
	char out[OUTLEN], line[512];
	long t0;
	int l;

	l = pd_server(AF_INET, SOCK_STREAM, LO4, 8080, false);
	ASSERT_LE(0, l);
	portctl_ok(out, "add tcp 80 to pid %d fd %d", getpid(), l);
	expect_steered(AF_INET, LO4, 80, l);
	ASSERT_TRUE(rule_listed("tcp 80 ", line));

	t0 = pd_now_ms();
	close(l);
	expect_refused(AF_INET, LO4, 80, "the target was closed");
	/*
	 * The reaper must take the rule out of the table by itself: a
	 * listing would reap it on the spot, so count the rules first.
	 */
	expect_rule_gone(false, NULL, t0, "close");
	expect_rule_gone(true, "tcp 80 ", t0, "close");
}

/* 8b. The same when the process that owned the listener exits. */
TEST_F(ns, exited_owner_stops_at_once)
{
	char line[512], want[64];
	int ready[2], go[2], c, status;
	char rc = 0;
	long t0;
	pid_t child;

	ASSERT_EQ(0, pipe(ready));
	ASSERT_EQ(0, pipe(go));
	child = fork();
	ASSERT_LE(0, child);
	if (!child) {
		int l;

		close(ready[0]);
		close(go[1]);
		l = pd_server(AF_INET, SOCK_STREAM, LO4, 8080, false);
		rc = l < 0 ? 100 :
		     pd_portctl(NULL, 0, "add tcp 80 to pid %d fd %d",
				getpid(), l);
		if (write(ready[1], &rc, 1) != 1)
			_exit(1);
		/* Exit when told to, or when the test is gone. */
		if (read(go[0], &rc, 1) < 0)
			_exit(1);
		_exit(0);
	}
	close(ready[1]);
	close(go[0]);

	ASSERT_TRUE(pd_readable(ready[0], pd_ms(10 * 1000)))
		TH_LOG("the child did not report");
	ASSERT_EQ(1, read(ready[0], &rc, 1));
	ASSERT_EQ(0, rc) TH_LOG("child: listen or portctl add failed (%d)", rc);
	ASSERT_TRUE(rule_listed("tcp 80 ", line));
	snprintf(want, sizeof(want), "pid %d ", child);
	EXPECT_NE(NULL, strstr(line, want)) TH_LOG("rule: %s", line);

	/* Nothing of ours listens on 80: only the child's listener answers. */
	c = pd_connect(AF_INET, SOCK_STREAM, LO4, 80);
	ASSERT_LE(0, c) TH_LOG("connect to 80 while the child lives: %s",
			       strerror(-c));
	close(c);

	close(go[1]);
	ASSERT_EQ(child, waitpid(child, &status, 0));
	t0 = pd_now_ms();
	/*
	 * No packet comes to hurry the reaper this time (the test above
	 * sends one first): it must find the closed socket by itself.
	 */
	expect_rule_gone(false, NULL, t0, "exit");
	expect_rule_gone(true, "tcp 80 ", t0, "exit");
	expect_refused(AF_INET, LO4, 80, "the target's process exited");
	close(ready[0]);
}

/*
 * 8c. The same for a UDP target: the next datagram goes to the normal
 * lookup, here a socket bound to 53 itself, and the rule leaves the table.
 */
TEST_F(ns, closed_udp_target_stops_at_once)
{
	char out[OUTLEN];
	int t, u53;
	long t0;

	u53 = udp_target(AF_INET, LO4, 53);
	t = udp_target(AF_INET, LO4, 5353);
	ASSERT_LE(0, u53);
	ASSERT_LE(0, t);
	portctl_ok(out, "add udp 53 to pid %d fd %d", getpid(), t);
	expect_udp_delivered(AF_INET, LO4, 53, t);
	EXPECT_FALSE(pd_readable(u53, 0))
		TH_LOG("the socket bound to 53 got the steered datagram too");

	t0 = pd_now_ms();
	close(t);
	expect_udp_delivered(AF_INET, LO4, 53, u53);
	expect_rule_gone(false, NULL, t0, "close");
	close(u53);
}

/*
 * 9a. A port target with nothing on the port leaves the flow to the
 * normal lookup: an RST at once, counted as undeliverable; the same rule
 * steers once something listens.
 */
TEST_F(ns, port_target_without_listener)
{
	char out[OUTLEN];
	long undeliverable;
	int l;

	portctl_ok(out, "add tcp 80 to port 8080");
	expect_refused(AF_INET, LO4, 80, "nothing listens on 8080");
	portctl_ok(out, "-s list");
	undeliverable = number_after(out, "undeliverable ");
	EXPECT_LE(1, undeliverable)
		TH_LOG("the refused SYN should count as undeliverable: %s", out);

	l = pd_server(AF_INET, SOCK_STREAM, LO4, 8080, false);
	ASSERT_LE(0, l);
	expect_steered(AF_INET, LO4, 80, l);
	close(l);
}

/*
 * 9b. For UDP the normal lookup answers with ICMP port unreachable, which
 * a connected socket reads as ECONNREFUSED; not silence. The same rule
 * delivers once a socket is bound to 5353, and refuses again once that
 * socket is closed: a port target outlives its sockets, counting.
 */
TEST_F(ns, port_target_without_udp_socket)
{
	char out[OUTLEN];
	int u;

	portctl_ok(out, "add udp 53 to port 5353");
	expect_udp_refused(AF_INET, LO4, 53, "nothing bound to 5353");

	u = udp_target(AF_INET, LO4, 5353);
	ASSERT_LE(0, u);
	expect_udp_delivered(AF_INET, LO4, 53, u);

	close(u);
	expect_udp_refused(AF_INET, LO4, 53, "the socket on 5353 was closed");
	portctl_ok(out, "-s list");
	EXPECT_EQ(1, rule_count(out, "udp 53 ", "steered ")) TH_LOG("%s", out);
	EXPECT_EQ(2, rule_count(out, "udp 53 ", "undeliverable "))
		TH_LOG("%s", out);
}

/*
 * 9c. A port target is the socket a connection made straight to that
 * port would reach: a dual-stack listener on [::] takes both families
 * (IPv4 as ::ffff:127.0.0.1), and so does a dual-stack UDP socket; with
 * IPV6_V6ONLY ones in their place, IPv4 is left to the normal lookup.
 */
TEST_F(ns, port_target_dual_stack)
{
	char out[OUTLEN];
	int l, u;

	l = pd_server(AF_INET6, SOCK_STREAM, "::", 8080, false);
	u = udp_target(AF_INET6, "::", 5353);
	ASSERT_LE(0, l);
	ASSERT_LE(0, u);
	portctl_ok(out, "add tcp 80 to port 8080");
	portctl_ok(out, "add udp 53 to port 5353");
	__expect_steered(_metadata, AF_INET, LO4, 80, l,
			 "[::ffff:127.0.0.1]:80");
	expect_steered(AF_INET6, LO6, 80, l);
	expect_udp_delivered(AF_INET, LO4, 53, u);
	expect_udp_delivered(AF_INET6, LO6, 53, u);
	close(l);
	close(u);

	l = pd_server(AF_INET6, SOCK_STREAM, "::", 8080, true);
	u = udp_target_dev(AF_INET6, "::", 5353, true, NULL);
	ASSERT_LE(0, l) TH_LOG("listen on [::]:8080 again: %s", strerror(errno));
	ASSERT_LE(0, u) TH_LOG("bind [::]:5353 again: %s", strerror(errno));
	expect_refused(AF_INET, LO4, 80, "the listener on 8080 is IPv6-only");
	expect_udp_refused(AF_INET, LO4, 53, "the socket on 5353 is IPv6-only");
	expect_steered(AF_INET6, LO6, 80, l);
	expect_udp_delivered(AF_INET6, LO6, 53, u);
	portctl_ok(out, "-s list");
	EXPECT_EQ(1, rule_count(out, "tcp 80 ", "undeliverable "))
		TH_LOG("%s", out);
	EXPECT_EQ(1, rule_count(out, "udp 53 ", "undeliverable "))
		TH_LOG("%s", out);
	close(l);
	close(u);
}

/*
 * 9d. ... looked up at the packet's destination address: a listener and a
 * UDP socket bound to the target port on another local address (near)
 * leave a flow to lo to the normal lookup, as they would leave a
 * connection made straight to lo on the target port, and take the flows
 * to their own address.
 */
TEST_F(fam, port_target_other_address)
{
	char out[OUTLEN];
	int l, u, err;

	/* 127.0.0.2 is on lo already (127.0.0.0/8); 2001:db8::5 is not. */
	if (variant->family == AF_INET6) {
		err = pd_add_addr(AF_INET6, if_nametoindex("lo"), variant->near,
				  128);
		ASSERT_EQ(0, err) TH_LOG("%s on lo: %s", variant->near,
					 strerror(-err));
	}
	l = pd_server(variant->family, SOCK_STREAM, variant->near, 8080, false);
	u = udp_target(variant->family, variant->near, 5353);
	ASSERT_LE(0, l) TH_LOG("listen on %s:8080: %s", variant->near,
			       strerror(errno));
	ASSERT_LE(0, u) TH_LOG("bind %s:5353: %s", variant->near,
			       strerror(errno));
	portctl_ok(out, "add tcp 80 to port 8080");
	portctl_ok(out, "add udp 53 to port 5353");

	expect_refused(variant->family, variant->lo, 8080,
		       "straight to the target port, bound to another address");
	expect_refused(variant->family, variant->lo, 80,
		       "the listener on 8080 is bound to another address");
	expect_udp_refused(variant->family, variant->lo, 53,
			   "the socket on 5353 is bound to another address");
	portctl_ok(out, "-s list");
	EXPECT_EQ(1, rule_count(out, "tcp 80 ", "undeliverable "))
		TH_LOG("%s", out);
	EXPECT_EQ(1, rule_count(out, "udp 53 ", "undeliverable "))
		TH_LOG("%s", out);

	expect_steered(variant->family, variant->near, 80, l);
	expect_udp_delivered(variant->family, variant->near, 53, u);
	close(l);
	close(u);
}

/*
 * 10a. Flows that already have a socket keep it: an established TCP
 * connection and a connected UDP socket on the rule's port, while new
 * flows to that port go to the target.
 */
TEST_F(ns, existing_flows_keep_their_socket)
{
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	char out[OUTLEN], buf[64], local[80];
	int l80, t, c, s, u53, t53, uc;
	ssize_t n;

	/* A connection made before the rule. */
	l80 = pd_server(AF_INET, SOCK_STREAM, LO4, 80, false);
	ASSERT_LE(0, l80);
	c = pd_connect(AF_INET, SOCK_STREAM, LO4, 80);
	ASSERT_LE(0, c);
	s = accept_local(l80, WAIT_MS, local, sizeof(local));
	ASSERT_LE(0, s);

	/* A UDP socket on 53 connected to a client of its own. */
	uc = pd_server(AF_INET, SOCK_DGRAM, LO4, 0, false);
	u53 = pd_server(AF_INET, SOCK_DGRAM, LO4, 53, false);
	ASSERT_LE(0, uc);
	ASSERT_LE(0, u53);
	ASSERT_EQ(0, getsockname(uc, (struct sockaddr *)&ss, &sslen));
	ASSERT_EQ(0, connect(u53, (struct sockaddr *)&ss, sslen));

	t = pd_server(AF_INET, SOCK_STREAM, LO4, 8080, false);
	t53 = udp_target(AF_INET, LO4, 5353);
	ASSERT_LE(0, t);
	ASSERT_LE(0, t53);
	portctl_ok(out, "add tcp 80 to pid %d fd %d", getpid(), t);
	portctl_ok(out, "add udp 53 to pid %d fd %d", getpid(), t53);

	ASSERT_EQ(4, send(c, "ping", 4, 0));
	ASSERT_TRUE(pd_readable(s, WAIT_MS))
		TH_LOG("data of the established connection did not reach its socket");
	ASSERT_EQ(4, recv(s, buf, sizeof(buf), 0));
	ASSERT_EQ(4, send(s, "pong", 4, 0));
	ASSERT_EQ(4, recv(c, buf, sizeof(buf), 0))
		TH_LOG("the established connection broke: %s", strerror(errno));

	pd_sockaddr(AF_INET, LO4, 53, &ss);
	ASSERT_EQ(4, sendto(uc, "flow", 4, 0, (struct sockaddr *)&ss,
			    sizeof(struct sockaddr_in)));
	n = udp_recv(u53, WAIT_MS, buf, sizeof(buf), NULL, 0);
	ASSERT_EQ(4, n) TH_LOG("the connected UDP socket lost its flow");
	EXPECT_FALSE(pd_readable(t53, 0))
		TH_LOG("the UDP target got a datagram of a connected flow");

	/* New flows go to the targets, not to the sockets bound to 80/53. */
	expect_steered(AF_INET, LO4, 80, t);
	EXPECT_FALSE(pd_readable(l80, 0));
	ASSERT_EQ(0, udp_send(AF_INET, LO4, 53, "new", 3));
	n = udp_recv(t53, WAIT_MS, buf, sizeof(buf), NULL, 0);
	ASSERT_EQ(3, n) TH_LOG("a datagram of a new flow did not reach the target");
	close(c);
	close(s);
	close(l80);
	close(t);
	close(uc);
	close(u53);
	close(t53);
}

/*
 * 10b. A broadcast is not a new flow to a local address: it stays with
 * the stack, which hands it to every socket that listens for it, and not
 * to the target. The broadcast is sent first; a unicast datagram after it
 * is the marker: the first thing the target receives must be the marker.
 */
TEST_F(ns, broadcast_not_steered)
{
	char out[OUTLEN], buf[64];
	struct sockaddr_storage ss;
	socklen_t sslen;
	int any, t, s, on = 1;
	ssize_t n;

	any = pd_server(AF_INET, SOCK_DGRAM, "0.0.0.0", 53, false);
	t = udp_target(AF_INET, LO4, 5353);
	s = socket(AF_INET, SOCK_DGRAM, 0);
	ASSERT_LE(0, any);
	ASSERT_LE(0, t);
	ASSERT_LE(0, s);
	ASSERT_EQ(0, setsockopt(s, SOL_SOCKET, SO_BROADCAST, &on, sizeof(on)));
	portctl_ok(out, "add udp 53 to pid %d fd %d", getpid(), t);

	sslen = pd_sockaddr(AF_INET, "127.255.255.255", 53, &ss);
	ASSERT_EQ(5, sendto(s, "bcast", 5, 0, (struct sockaddr *)&ss, sslen))
		TH_LOG("sendto 127.255.255.255: %s", strerror(errno));
	n = udp_recv(any, WAIT_MS, buf, sizeof(buf), NULL, 0);
	if (n < 0) {
		/* Then the broadcast went nowhere, or to the target. */
		n = udp_recv(t, 0, buf, sizeof(buf), NULL, 0);
		ASSERT_EQ(-1, n) TH_LOG("the broadcast was steered to the target");
		SKIP(return, "a broadcast to 127.255.255.255 reaches no socket here");
	}
	ASSERT_EQ(0, memcmp(buf, "bcast", 5));

	sslen = pd_sockaddr(AF_INET, LO4, 53, &ss);
	ASSERT_EQ(6, sendto(s, "marker", 6, 0, (struct sockaddr *)&ss, sslen));
	n = udp_recv(t, WAIT_MS, buf, sizeof(buf), NULL, 0);
	ASSERT_LE(0, n) TH_LOG("the unicast marker did not reach the target");
	ASSERT_FALSE(n == 5 && !memcmp(buf, "bcast", 5))
		TH_LOG("the broadcast was steered to the target");
	ASSERT_EQ(6, n);
	ASSERT_EQ(0, memcmp(buf, "marker", 6));
	n = udp_recv(t, QUIET_MS, buf, sizeof(buf), NULL, 0);
	ASSERT_EQ(-1, n) TH_LOG("the target got %zd more bytes", n);
	close(any);
	close(t);
	close(s);
}

/*
 * Tests whose clients live in a namespace of their own, across a veth:
 *
 *   [ clients' ns ] pd-cli ===== veth ===== pd-srv [ test's ns: rules ]
 *   198.18.0.2, 2001:db8::2                198.18.0.1, 2001:db8::1
 */
FIXTURE(dev) {
};

FIXTURE_VARIANT(dev) {
	int family;
	const char *srv;	/* the test's address on the veth */
	const char *any;
};

FIXTURE_VARIANT_ADD(dev, ipv4) {
	.family = AF_INET,
	.srv = "198.18.0.1",
	.any = "0.0.0.0",
};

FIXTURE_VARIANT_ADD(dev, ipv6) {
	.family = AF_INET6,
	.srv = "2001:db8::1",
	.any = "::",
};

FIXTURE_SETUP(dev)
{
	const char *what;
	int err = pd_enter_netns();

	ASSERT_EQ(0, err) TH_LOG("private network namespace: %s",
				 strerror(-err));
	home_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, home_ns);
	err = pd_enter_netns();
	ASSERT_EQ(0, err) TH_LOG("the clients' namespace: %s", strerror(-err));
	client_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, client_ns);

	/* Made on the clients' side, its peer goes to the test's. */
	err = pd_make_veth("pd-cli", "pd-srv", home_ns);
	ASSERT_EQ(0, err) TH_LOG("veth pair: %s", strerror(-err));
	what = pd_link_setup("pd-cli", "198.18.0.2", "2001:db8::2");
	ASSERT_EQ(NULL, what) TH_LOG("pd-cli: %s: %s", what, strerror(errno));
	home_side();
	what = pd_link_setup("pd-srv", "198.18.0.1", "2001:db8::1");
	ASSERT_EQ(NULL, what) TH_LOG("pd-srv: %s: %s", what, strerror(errno));
}

FIXTURE_TEARDOWN(dev)
{
}

/*
 * 11. A port target served by sockets bound to a device
 * (SO_BINDTODEVICE) takes the flows that arrive on that device, and no
 * others, as a connection made straight to the target port would: a
 * listener and a UDP socket bound to lo leave flows from the veth to the
 * normal lookup; ones bound to the veth, on the same ports beside them,
 * take them.
 */
TEST_F(dev, port_target_device_bound)
{
	int family = variant->family, lo_l, lo_u, veth_l, veth_u;
	const char *srv = variant->srv, *any = variant->any;
	char out[OUTLEN];

	lo_l = pd_server_dev(family, SOCK_STREAM, any, 8080, true, "lo");
	lo_u = udp_target_dev(family, any, 5353, true, "lo");
	ASSERT_LE(0, lo_l) TH_LOG("listen on 8080, bound to lo: %s",
				  strerror(errno));
	ASSERT_LE(0, lo_u) TH_LOG("bind 5353, bound to lo: %s",
				  strerror(errno));
	portctl_ok(out, "add tcp 80 to port 8080");
	portctl_ok(out, "add udp 53 to port 5353");
	expect_refused(family, srv, 8080,
		       "straight to the target port, bound to lo");
	expect_refused(family, srv, 80, "the listener on 8080 is bound to lo");
	expect_udp_refused(family, srv, 53, "the socket on 5353 is bound to lo");
	portctl_ok(out, "-s list");
	EXPECT_EQ(1, rule_count(out, "tcp 80 ", "undeliverable "))
		TH_LOG("%s", out);
	EXPECT_EQ(1, rule_count(out, "udp 53 ", "undeliverable "))
		TH_LOG("%s", out);

	veth_l = pd_server_dev(family, SOCK_STREAM, any, 8080, true, "pd-srv");
	veth_u = udp_target_dev(family, any, 5353, true, "pd-srv");
	ASSERT_LE(0, veth_l) TH_LOG("listen on 8080, bound to pd-srv: %s",
				    strerror(errno));
	ASSERT_LE(0, veth_u) TH_LOG("bind 5353, bound to pd-srv: %s",
				    strerror(errno));
	expect_steered(family, srv, 80, veth_l);
	expect_steered(family, srv, 8080, veth_l);
	expect_udp_delivered(family, srv, 53, veth_u);
	EXPECT_FALSE(pd_readable(lo_l, 0))
		TH_LOG("the listener bound to lo got a connection from the veth");
	EXPECT_FALSE(pd_readable(lo_u, 0))
		TH_LOG("the socket bound to lo got a datagram from the veth");
	close(lo_l);
	close(lo_u);
	close(veth_l);
	close(veth_u);
}

TEST_HARNESS_MAIN
