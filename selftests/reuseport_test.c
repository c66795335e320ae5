// SPDX-License-Identifier: GPL-2.0
/*
 * Rules whose target is an SO_REUSEPORT group, or one member of it.
 *
 *   client lo:SPORT --+--> lo:80    a rule "to port 8080" or
 *                     |             "to pid P fd <member 1>"
 *                     +--> lo:8080  directly, for comparison
 *
 *   lo:8080 = members 0..N-1 of one reuseport group
 *
 * - hash_*: with a "port" target, a steered flow lands on the member that
 *   a direct flow from the same address and port lands on: the group's
 *   hash of the 4-tuple with the target port, as for the direct flow.
 * - bpf_*: the same with an SK_REUSEPORT eBPF program that picks member
 *   (low byte of the source port) & 1. The program must see the same
 *   bytes as for a direct flow, from the TCP or UDP header on; it counts
 *   every run that saw anything else.
 * - pid_fd_*: a "pid P fd F" target that is one member of a group takes
 *   every flow of its rule; the group does not spread them.
 *
 * The clients use fixed source ports (SPORT_BASE and up, even and odd) so
 * that each flow has a known 4-tuple. Every test runs in a network
 * namespace of its own, so its sockets and rules vanish with it.
 * The eBPF program is written as instructions here and loaded with the
 * bpf(2) system call, so the test needs no BPF toolchain.
 */

#include <linux/bpf.h>
#include <stddef.h>
#include <sys/syscall.h>
#include <time.h>

#include "harness.h"
#include "pd_test.h"

#define PORT		80	/* the port the rule covers */
#define TARGET_PORT	8080	/* where the group is bound */
#define SPORT_BASE	40000	/* 0x9c40: the first client port */
#define FLOWS		16	/* source ports SPORT_BASE and up */
#define MEMBERS		4	/* without a program: more to spread over */
#define BPF_MEMBERS	2	/* the program picks by one bit */
#define WAIT_MS		pd_ms(3000)	/* scaled to this kernel */

FIXTURE(rp) {
	int m[MEMBERS];		/* the group, in order of binding */
	char out[1024];		/* the last portctl's output */
};

FIXTURE_VARIANT(rp) {
	int family;
	int type;
	const char *lo;
	const char *proto;	/* as portctl spells it */
};

FIXTURE_VARIANT_ADD(rp, tcp4) {
	.family = AF_INET, .type = SOCK_STREAM, .lo = "127.0.0.1",
	.proto = "tcp",
};

FIXTURE_VARIANT_ADD(rp, udp4) {
	.family = AF_INET, .type = SOCK_DGRAM, .lo = "127.0.0.1",
	.proto = "udp",
};

FIXTURE_VARIANT_ADD(rp, tcp6) {
	.family = AF_INET6, .type = SOCK_STREAM, .lo = "::1", .proto = "tcp",
};

FIXTURE_VARIANT_ADD(rp, udp6) {
	.family = AF_INET6, .type = SOCK_DGRAM, .lo = "::1", .proto = "udp",
};

FIXTURE_SETUP(rp)
{
	int err = pd_enter_netns(), i;

	ASSERT_EQ(0, err) TH_LOG("private network namespace: %s",
				 strerror(-err));
	for (i = 0; i < MEMBERS; i++)
		self->m[i] = -1;
}

FIXTURE_TEARDOWN(rp)
{
	/* Sockets, rules and namespace go with the process. */
}

/* One member of the group on @addr:@port, listening for TCP. */
static int member(const FIXTURE_VARIANT(rp) *v, int port)
{
	struct sockaddr_storage ss;
	socklen_t len = pd_sockaddr(v->family, v->lo, port, &ss);
	int fd = socket(v->family, v->type, 0), one = 1;

	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) ||
	    (v->family == AF_INET6 &&
	     setsockopt(fd, SOL_IPV6, IPV6_V6ONLY, &one, sizeof(one))) ||
	    bind(fd, (struct sockaddr *)&ss, len) ||
	    (v->type == SOCK_STREAM && listen(fd, 64))) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

static int make_group(const FIXTURE_VARIANT(rp) *v, int *m, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		m[i] = member(v, TARGET_PORT);
		if (m[i] < 0)
			return m[i];
	}
	return 0;
}

/*
 * Which of the @n members got the flow within WAIT_MS: its index, or -1.
 * A connection is accepted and closed, a datagram read, so that the next
 * flow finds every member idle again.
 */
static int taker(const FIXTURE_VARIANT(rp) *v, const int *m, int n)
{
	struct pollfd p[MEMBERS];
	char buf[64];
	int i, fd;

	for (i = 0; i < n; i++)
		p[i] = (struct pollfd){ .fd = m[i], .events = POLLIN };
	if (poll(p, n, WAIT_MS) <= 0)
		return -1;
	for (i = 0; i < n; i++) {
		if (!(p[i].revents & POLLIN))
			continue;
		if (v->type == SOCK_DGRAM) {
			recv(m[i], buf, sizeof(buf), MSG_DONTWAIT);
			return i;
		}
		fd = accept(m[i], NULL, NULL);
		if (fd >= 0)
			close(fd);
		return i;
	}
	return -1;
}

/*
 * A client socket on lo:@sport. The last one on that port may still be
 * closing (its 4-tuple was another), which SO_REUSEADDR lets us share.
 */
static int client(const FIXTURE_VARIANT(rp) *v, int sport)
{
	struct sockaddr_storage ss;
	socklen_t len = pd_sockaddr(v->family, v->lo, sport, &ss);
	struct timeval tv = { .tv_sec = pd_ms(2000) / 1000 };
	int fd = socket(v->family, v->type, 0), one = 1, err;

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	err = pd_bind_retry(fd, &ss, len, WAIT_MS);
	if (err) {
		close(fd);
		return err;
	}
	return fd;
}

/*
 * One flow from lo:@sport to lo:@dport (a connection, or one datagram):
 * the index of the member that took it, -1 if none did, or -errno when
 * the client could not even start it.
 */
static int flow(const FIXTURE_VARIANT(rp) *v, const int *m, int n, int sport,
		int dport)
{
	struct sockaddr_storage ss;
	socklen_t len = pd_sockaddr(v->family, v->lo, dport, &ss);
	int fd = client(v, sport), who, err = 0;

	if (fd < 0)
		return fd;
	if (v->type == SOCK_STREAM) {
		if (connect(fd, (struct sockaddr *)&ss, len))
			err = -errno;
	} else if (sendto(fd, "flow", 4, 0, (struct sockaddr *)&ss, len) != 4) {
		err = -errno;
	}
	who = err ? err : taker(v, m, n);
	close(fd);
	return who;
}

/* "portctl add PROTO 80 to TARGET" must succeed. */
#define add_rule(target_fmt, ...)					\
	do {								\
		int __rc = pd_portctl(self->out, sizeof(self->out),	\
				      "add %s %d to " target_fmt,	\
				      variant->proto, PORT, ##__VA_ARGS__); \
		ASSERT_EQ(0, __rc)					\
			TH_LOG("portctl add %s %d: exit %d: %s",	\
			       variant->proto, PORT, __rc, self->out);	\
	} while (0)

/*
 * For every client port: the member a direct flow to TARGET_PORT reaches,
 * then the one a flow to PORT (steered by the rule) reaches; they must be
 * the same. @want, when not NULL, also says where the direct flow must
 * land (the program's choice), to prove that the program is in force.
 */
static void __same_member_as_direct(struct __test_metadata *_metadata,
				    const FIXTURE_VARIANT(rp) *v, const int *m,
				    int n, int (*want)(int sport))
{
	int i, sport, direct, steered, differ = 0;

	for (i = 0; i < FLOWS; i++) {
		sport = SPORT_BASE + i;
		direct = flow(v, m, n, sport, TARGET_PORT);
		ASSERT_LE(0, direct)
			TH_LOG("direct flow from port %d to %d reached no member (%s)",
			       sport, TARGET_PORT,
			       direct < -1 ? strerror(-direct) : "timeout");
		if (want)
			ASSERT_EQ(want(sport), direct)
				TH_LOG("the eBPF program is not in force: a direct flow from port %d reached member %d",
				       sport, direct);
		steered = flow(v, m, n, sport, PORT);
		ASSERT_LE(0, steered)
			TH_LOG("steered flow from port %d to %d reached no member (%s)",
			       sport, PORT,
			       steered < -1 ? strerror(-steered) : "timeout");
		if (steered != direct) {
			TH_LOG("source port %d: a direct flow reaches member %d, a steered one member %d",
			       sport, direct, steered);
			differ++;
		}
	}
	EXPECT_EQ(0, differ)
		TH_LOG("%d of %d steered flows reached another member than the direct flow from the same port",
		       differ, FLOWS);
}

#define same_member_as_direct(m, n, want)				\
	__same_member_as_direct(_metadata, variant, m, n, want)

/*
 * Without a program the group picks by a hash of the 4-tuple; a steered
 * flow is hashed with the target port, as a direct flow is.
 */
TEST_F(rp, hash_port_target_matches_direct)
{
	int err;

	err = make_group(variant, self->m, MEMBERS);
	ASSERT_EQ(0, err) TH_LOG("reuseport group on %d: %s", TARGET_PORT,
				 strerror(-err));
	add_rule("port %d", TARGET_PORT);
	same_member_as_direct(self->m, MEMBERS, NULL);
}

/*
 * A "pid P fd F" target names one socket: the group it belongs to must
 * not spread the rule's flows over the other members.
 */
TEST_F(rp, pid_fd_member_takes_every_flow)
{
	int i, sport, who, err, elsewhere = 0;

	err = make_group(variant, self->m, MEMBERS);
	ASSERT_EQ(0, err) TH_LOG("reuseport group on %d: %s", TARGET_PORT,
				 strerror(-err));
	add_rule("pid %d fd %d", (int)getpid(), self->m[1]);

	for (i = 0; i < FLOWS; i++) {
		sport = SPORT_BASE + i;
		who = flow(variant, self->m, MEMBERS, sport, PORT);
		ASSERT_LE(0, who)
			TH_LOG("flow from port %d to %d reached no member (%s)",
			       sport, PORT,
			       who < -1 ? strerror(-who) : "timeout");
		if (who != 1) {
			TH_LOG("source port %d: member %d took the flow, not member 1 (the rule's fd %d)",
			       sport, who, self->m[1]);
			elsewhere++;
		}
	}
	EXPECT_EQ(0, elsewhere)
		TH_LOG("%d of %d flows reached another member of the group than the rule's socket",
		       elsewhere, FLOWS);
}

/* The eBPF side: maps, the program, and the bpf(2) calls. */

static long sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

static int map_create(__u32 type, __u32 value_size, __u32 entries)
{
	union bpf_attr a;

	memset(&a, 0, sizeof(a));
	a.map_type = type;
	a.key_size = sizeof(__u32);
	a.value_size = value_size;
	a.max_entries = entries;
	return sys_bpf(BPF_MAP_CREATE, &a);
}

static int map_update(int map, __u32 key, const void *value)
{
	union bpf_attr a;

	memset(&a, 0, sizeof(a));
	a.map_fd = map;
	a.key = (unsigned long)&key;
	a.value = (unsigned long)value;
	a.flags = BPF_ANY;
	return sys_bpf(BPF_MAP_UPDATE_ELEM, &a);
}

static int map_lookup(int map, __u32 key, void *value)
{
	union bpf_attr a;

	memset(&a, 0, sizeof(a));
	a.map_fd = map;
	a.key = (unsigned long)&key;
	a.value = (unsigned long)value;
	return sys_bpf(BPF_MAP_LOOKUP_ELEM, &a);
}

/* One instruction; the few opcodes the program needs are spelled below. */
#define INSN(c, d, s, o, i)						\
	((struct bpf_insn){ .code = (c), .dst_reg = (d), .src_reg = (s), \
			    .off = (o), .imm = (i) })
#define MOV_REG(d, s)	INSN(BPF_ALU64 | BPF_MOV | BPF_X, d, s, 0, 0)
#define MOV_IMM(d, i)	INSN(BPF_ALU64 | BPF_MOV | BPF_K, d, 0, 0, i)
#define ADD_IMM(d, i)	INSN(BPF_ALU64 | BPF_ADD | BPF_K, d, 0, 0, i)
#define AND_IMM(d, i)	INSN(BPF_ALU64 | BPF_AND | BPF_K, d, 0, 0, i)
#define LDX(size, d, s, o) INSN(BPF_LDX | BPF_MEM | (size), d, s, o, 0)
#define STX(size, d, s, o) INSN(BPF_STX | BPF_MEM | (size), d, s, o, 0)
#define ST_IMM(size, d, o, i) INSN(BPF_ST | BPF_MEM | (size), d, 0, o, i)
#define JGT_REG(d, s, o) INSN(BPF_JMP | BPF_JGT | BPF_X, d, s, o, 0)
#define JNE_IMM(d, i, o) INSN(BPF_JMP | BPF_JNE | BPF_K, d, 0, o, i)
#define JEQ_IMM(d, i, o) INSN(BPF_JMP | BPF_JEQ | BPF_K, d, 0, o, i)
#define ATOMIC_ADD64(d, s) \
	INSN(BPF_STX | BPF_ATOMIC | BPF_DW, d, s, 0, BPF_ADD)
#define CALL(f)		INSN(BPF_JMP | BPF_CALL, 0, 0, 0, f)
#define EXIT()		INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
/* A map's fd, in two instruction slots; the kernel resolves it at load. */
#define LD_MAP(d, fd)							\
	INSN(BPF_LD | BPF_DW | BPF_IMM, d, BPF_PSEUDO_MAP_FD, 0, fd),	\
	INSN(0, 0, 0, 0, 0)

enum { R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 };

#define MD(field)	offsetof(struct sk_reuseport_md, field)

/*
 * The program: if the data holds at least two bytes and the first is the
 * clients' source port's high byte, select member (second byte & 1) from
 * @socks; otherwise count the run in @strays and let the group hash.
 * Jump offsets count the instructions after the jump; "stray" is at 20.
 */
static int load_selector(int socks, int strays, char *log, size_t loglen)
{
	const struct bpf_insn prog[] = {
		/*  0 */ MOV_REG(R6, R1),
		/*  1 */ LDX(BPF_DW, R2, R6, MD(data)),
		/*  2 */ LDX(BPF_DW, R3, R6, MD(data_end)),
		/*  3 */ MOV_REG(R4, R2),
		/*  4 */ ADD_IMM(R4, 2),
		/*  5 */ JGT_REG(R4, R3, 20 - 6),
		/*  6 */ LDX(BPF_B, R7, R2, 0),
		/*  7 */ LDX(BPF_B, R8, R2, 1),
		/*  8 */ JNE_IMM(R7, SPORT_BASE >> 8, 20 - 9),
		/*  9 */ AND_IMM(R8, 1),
		/* 10 */ STX(BPF_W, R10, R8, -4),
		/* 11 */ MOV_REG(R1, R6),
		/* 12 */ LD_MAP(R2, socks),
		/* 14 */ MOV_REG(R3, R10),
		/* 15 */ ADD_IMM(R3, -4),
		/* 16 */ MOV_IMM(R4, 0),
		/* 17 */ CALL(BPF_FUNC_sk_select_reuseport),
		/* 18 */ MOV_IMM(R0, SK_PASS),
		/* 19 */ EXIT(),
		/* 20: stray */ ST_IMM(BPF_W, R10, -4, 0),
		/* 21 */ LD_MAP(R1, strays),
		/* 23 */ MOV_REG(R2, R10),
		/* 24 */ ADD_IMM(R2, -4),
		/* 25 */ CALL(BPF_FUNC_map_lookup_elem),
		/* 26 */ JEQ_IMM(R0, 0, 29 - 27),
		/* 27 */ MOV_IMM(R1, 1),
		/* 28 */ ATOMIC_ADD64(R0, R1),
		/* 29 */ MOV_IMM(R0, SK_PASS),
		/* 30 */ EXIT(),
	};
	union bpf_attr a;

	memset(&a, 0, sizeof(a));
	a.prog_type = BPF_PROG_TYPE_SK_REUSEPORT;
	a.expected_attach_type = BPF_SK_REUSEPORT_SELECT;
	a.insns = (unsigned long)prog;
	a.insn_cnt = sizeof(prog) / sizeof(prog[0]);
	a.license = (unsigned long)"GPL";
	a.log_buf = (unsigned long)log;
	a.log_size = loglen;
	a.log_level = 1;
	log[0] = '\0';
	return sys_bpf(BPF_PROG_LOAD, &a);
}

static int select_by_source_port(int sport)
{
	return sport & 1;
}

/*
 * With the program attached, steered flows land where direct ones do
 * (even source ports on member 0, odd on member 1), and the program never
 * saw anything but a TCP or UDP header at the start of its data.
 */
TEST_F(rp, bpf_port_target_matches_direct)
{
	static char log[65536];
	__u64 strays = 0;
	int socks, counter, prog, i, err;

	socks = map_create(BPF_MAP_TYPE_REUSEPORT_SOCKARRAY, sizeof(__u64),
			   BPF_MEMBERS);
	if (socks < 0 && (errno == ENOSYS || errno == EPERM))
		SKIP(return, "no bpf(2) here (%s): the kernel lacks CONFIG_BPF_SYSCALL, or it is forbidden",
		     strerror(errno));
	ASSERT_LE(0, socks) TH_LOG("REUSEPORT_SOCKARRAY map: %s",
				   strerror(errno));
	counter = map_create(BPF_MAP_TYPE_ARRAY, sizeof(__u64), 1);
	ASSERT_LE(0, counter) TH_LOG("array map: %s", strerror(errno));
	prog = load_selector(socks, counter, log, sizeof(log));
	ASSERT_LE(0, prog) TH_LOG("loading the program: %s\n%s",
				  strerror(errno), log);

	err = make_group(variant, self->m, BPF_MEMBERS);
	ASSERT_EQ(0, err) TH_LOG("reuseport group on %d: %s", TARGET_PORT,
				 strerror(-err));
	for (i = 0; i < BPF_MEMBERS; i++) {
		__u64 fd = self->m[i];

		ASSERT_EQ(0, map_update(socks, i, &fd))
			TH_LOG("member %d into the map: %s", i,
			       strerror(errno));
	}
	ASSERT_EQ(0, setsockopt(self->m[0], SOL_SOCKET,
				SO_ATTACH_REUSEPORT_EBPF, &prog, sizeof(prog)))
		TH_LOG("SO_ATTACH_REUSEPORT_EBPF: %s", strerror(errno));

	add_rule("port %d", TARGET_PORT);
	same_member_as_direct(self->m, BPF_MEMBERS, select_by_source_port);

	ASSERT_EQ(0, map_lookup(counter, 0, &strays));
	EXPECT_EQ(0ULL, strays)
		TH_LOG("the program ran %llu time(s) on data that did not start with the %s header",
		       (unsigned long long)strays,
		       variant->type == SOCK_STREAM ? "TCP" : "UDP");
}

TEST_HARNESS_MAIN
