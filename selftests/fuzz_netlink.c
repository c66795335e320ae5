// SPDX-License-Identifier: GPL-2.0
/*
 * A seeded, reproducible fuzzer of portdispatch's generic netlink family
 * (uapi/linux/portdispatch.h), checked against a model of the table.
 *
 * Every message is predicted before it is sent, byte by byte, the way the
 * kernel reads it: netlink's framing (netlink_rcv_skb), genetlink's header
 * checks and command lookup, the permission check, the strict attribute
 * policies (lib/nlattr.c), then the family's own checks and the meaning of
 * the command (module/netlink.c, module/txn.c, module/target.c) against
 * the model's table. Valid requests, mutations of them and random bytes all
 * go through the same prediction, so a random message the kernel accepts
 * is one the model accepted too, with the same effect: the model is never
 * resynchronised from the kernel. The prediction is the answer (an ack,
 * an errno, the replies before it, a dump, or silence for a message whose
 * netlink header is cut), compared with what comes back; every request
 * carries NLM_F_ACK and every sequence number must come back within a
 * bound. Dumps, and one every FUZZ_CHECK_EVERY messages, must equal the
 * model rule for rule (ids, keys, each target in order, a group member's
 * weight and counters), and STATS_GET its size; so must echoes.
 *
 * The mix: RULE_ADD, RULE_REPLACE, RULE_DEL, FLUSH, STATS_GET, dumps and
 * batches, with port targets and sockets the fuzzer owns (TCP and UDP,
 * IPv4, IPv6 and IPv6-only, each by two fds), ranges, prefixes and
 * families; rules of several targets ("groups": 2-16 members and 17, ports
 * and sockets, weights in and out of range, a member repeated, families
 * that do not meet), replaced by groups or by one target and back;
 * structured mutations of those requests (attributes dropped, duplicated,
 * retyped, resized, nested garbage, wrong values, trailing bytes, cut
 * messages, header fields and flags); random bytes; dumps read in part,
 * interleaved with changes and resumed, or abandoned with their socket;
 * batches opened and abandoned with their socket; three sockets of one
 * namespace fighting over the namespace's one batch; target sockets
 * closing under their rules and leaving their groups, to the last member.
 *
 *   privileged     root in a fresh network namespace
 *   unprivileged   an unprivileged uid: its requests to the privileged
 *                  namespace are all refused, then in a user and network
 *                  namespace of its own it fuzzes its own table
 *   module_unloads nothing holds the module: it unloads, and is loaded
 *                  again for what follows
 *
 * 100,000 messages a run (PORTDISPATCH_STRESS=1: 1,000,000; a quarter of
 * either on the debug kernel, which answers about 300 a second), --seed S and
 * --messages N to reproduce a run; every failure names both.
 */

#include <grp.h>
#include <linux/capability.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/utsname.h>

#include "harness.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "netlink_helpers.h"
#pragma GCC diagnostic pop

#include "pd_test.h"

#define FUZZ_MESSAGES		100000UL
#define FUZZ_STRESS_MESSAGES	1000000UL
#define FUZZ_CHECK_EVERY	10000UL
#define NL_SOCKS		3	/* fighting over the namespace's batch */
#define DUMP_SOCK		NL_SOCKS	/* reads dumps in small parts */
#define NSLOTS			6	/* target sockets */
#define MAX_FDS			1024
#define GROUP_MAX		16	/* targets of a rule */
/*
 * Rules sent with several targets, in percent. For each group it reads
 * whole, the module ranks the members of 4096 slots: about 0.15 ms a
 * member under TCG since a score's log comes from a table (0.6 ms
 * before), where a message otherwise costs 0.04 ms. So they are few,
 * mostly small, and most have a flaw that stops the reading (late in
 * large ones), which costs no more than a rule of one target does. The
 * debug kernel, at 1.5 ms a message, sends a quarter of the messages and
 * four times the share of groups (group_pct): as many groups, under KASAN.
 */
#define GROUP_PCT		4
#define PORT_BASE		1000	/* where valid rules go, to meet */
#define PORT_SPAN		48
#define BULK_BASE		20000	/* rules added by the hundred */
#define DGRAM_MAX		8	/* requests in one datagram */
#define MSG_MAX			1024
#define FIFO_MAX		64
/* A batch is ended well before batch_idle_ms (10 s) could drop it. */
#define BATCH_WALL_MS		2000

static uint64_t opt_seed;
static bool opt_seed_set;
static unsigned long opt_messages;
static unsigned int group_pct = GROUP_PCT;
/* Why the run sends fewer messages than FUZZ_MESSAGES, if it does. */
static const char *scaled_down;

/* ---- the model ---------------------------------------------------------- */

#define FAM_V4	1
#define FAM_V6	2
#define FAM_ALL	3

/* One target: a port, or a target socket of the fuzzer's. */
struct mtarget {
	bool sock;
	uint8_t weight;		/* of a group's member */
	int8_t slot;		/* target socket */
	uint8_t family;		/* ... its family, */
	bool v6only;		/* ... and whether it refuses IPv4 */
	uint32_t tport;
	uint32_t pid, pid_fd;
	uint64_t ino;
};

/* A group's members, in the order given; groups never change. */
struct mgroup {
	uint8_t n;
	struct mtarget m[GROUP_MAX];
};

struct mrule {
	uint32_t id;
	uint64_t ins;		/* insertion order in the kernel's store */
	uint8_t proto;		/* IPPROTO_TCP, IPPROTO_UDP */
	uint16_t pmin, pmax;
	uint8_t fams;
	uint8_t plen;
	uint8_t addr[16];	/* zero past the prefix's family */
	/*
	 * A rule of one target has it in t. A group (a rule made with
	 * several, even once the reaper left it one) is fz.grp[group - 1]:
	 * tables are copied whole for every dump and batch, members are not.
	 */
	uint32_t group;
	struct mtarget t;
};

struct mtab {
	struct mrule *r;
	unsigned int n, cap;
};

struct model {
	struct mtab live;	/* what dumps and packets see */
	struct mtab staged;	/* the open batch's view */
	int owner;		/* socket with the batch; -1: none */
	bool failed;		/* a command of the batch failed */
	bool changed;		/* ... staged something */
	long batch_since;	/* when it opened, ms */
	uint32_t next_id;
	uint64_t next_ins;
	uint32_t generation;	/* commits that published something */
};

/* ---- the fuzzer's sockets and files ------------------------------------ */

struct slot {
	int fd;
	int dupfd;		/* the same socket by another fd */
	int family, type;
	bool v6only;
	uint64_t ino;
};

/* What the kernel would find behind a file descriptor. */
struct fdinfo {
	bool known, sock, ip, other_ns, ready;
	uint8_t proto;		/* IPPROTO_TCP, IPPROTO_UDP, 0: neither */
	uint8_t fams;
	int slot;		/* -1: not a target slot */
};

enum xkind { X_SILENT, X_ACK, X_DUMP };

/* What one message must get back. */
struct exp {
	uint32_t seq;
	enum xkind kind;
	int err;		/* X_ACK: positive errno, 0: acked */
	unsigned int replies;	/* family messages before the ack */
	bool echo;		/* the reply is the rule echo_rule */
	struct mrule echo_rule;
	bool stats;		/* the reply is STATS_GET's */
	uint32_t stats_rules;
	struct mtab snap;	/* X_DUMP: the table when it started */
	uint32_t gen0;
	const char *what;
	uint8_t msg[MSG_MAX];
	size_t len;
	unsigned long index;	/* message number in the run */
};

/* A dump being read. */
struct dumpc {
	bool open;
	struct exp x;
	struct pdn_rule *rules;
	unsigned int count, cap;
	bool intr, not_multi;
	unsigned int parts, last_dgram;
};

struct nls {
	struct pdn n;
	bool open;
	bool small;		/* reads in 8 KiB: dumps come in small parts */
	bool dump_running;	/* a dump of a non-empty table is unfinished */
	struct exp *fifo[FIFO_MAX];
	unsigned int head, tail;
	struct dumpc dump;
};

struct fz {
	struct __test_metadata *md;
	const char *ctx;
	uint64_t seed;
	uint64_t rs;
	unsigned long budget, sent;
	unsigned long next_check;
	bool priv;		/* CAP_NET_ADMIN over the namespace */
	bool split_ops;		/* 6.2+: genetlink finds do and dump apart */
	uint16_t family;
	pid_t pid, ppid, dead_pid;
	uint32_t max_rules;
	struct nls s[NL_SOCKS + 1];
	struct model m;
	struct mgroup *grp;	/* every group the model's rules had */
	unsigned int ngrp, grp_cap;
	struct slot slot[NSLOTS];
	struct fdinfo fdi[MAX_FDS];
	int closed_fd;
	/* counts, for the report */
	unsigned long n_valid, n_mut, n_rand, n_silent, n_dumps, n_intr;
	unsigned long n_accepted, n_batches, n_commits, n_fights, n_churn;
	unsigned long n_multi, n_idump, max_table;
	unsigned long n_grp_sent, n_grp_made, n_left, n_emptied;
	long start_ms;
};

/* The last messages sent, for failure reports. */
#define HIST	12

struct hist {
	unsigned long index;
	int si;
	const char *what;
	enum xkind kind;
	int err;
	uint8_t msg[96];
	size_t len;
};

static struct hist hist[HIST];
static unsigned long hist_n;

static void fz_report_hex(const uint8_t *b, size_t len)
{
	size_t i;

	for (i = 0; i < len; i += 32) {
		size_t j;

		fprintf(stderr, "#   %04zx:", i);
		for (j = i; j < len && j < i + 32; j++)
			fprintf(stderr, "%s%02x", (j - i) % 4 ? "" : " ", b[j]);
		fprintf(stderr, "\n");
	}
}

/* A failure: what, the seed, how to run it again; the test fails. */
static void __attribute__((format(printf, 3, 4), noreturn))
fz_fail(struct fz *f, const struct exp *x, const char *fmt, ...)
{
	unsigned long i;
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "# FAIL %s, seed %llu, message %lu: ", f->ctx,
		(unsigned long long)opt_seed, x ? x->index : f->sent);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	if (x && x->len) {
		fprintf(stderr, "# the message (%s, seq %u, %zu bytes):\n",
			x->what, x->seq, x->len);
		fz_report_hex(x->msg, x->len);
	}
	fprintf(stderr, "# the messages before it, oldest first (socket, model's answer):\n");
	for (i = hist_n > HIST ? hist_n - HIST : 0; i < hist_n; i++) {
		const struct hist *h = &hist[i % HIST];

		fprintf(stderr, "#  message %lu, socket %d, %s: %s\n", h->index,
			h->si, h->what, h->kind == X_SILENT ? "silence" :
			h->kind == X_DUMP ? "a dump" :
			h->err ? strerror(h->err) : "ack");
		fz_report_hex(h->msg, h->len);
	}
	fprintf(stderr, "# reproduce: fuzz_netlink --seed %llu --messages %lu\n",
		(unsigned long long)opt_seed, opt_messages);
	fflush(stderr);
	_exit(1);
}

/* ---- randomness: splitmix64, one stream per context ---------------------- */

static uint64_t rnd(struct fz *f)
{
	uint64_t z = (f->rs += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint32_t below(struct fz *f, uint32_t n)
{
	return n ? (uint32_t)(rnd(f) % n) : 0;
}

/* True with probability @pct percent. */
static bool pct(struct fz *f, unsigned int pct)
{
	return below(f, 100) < pct;
}

static uint32_t pick32(struct fz *f, const uint32_t *v, size_t n)
{
	return v[below(f, n)];
}

#define PICK(f, arr) pick32((f), (arr), sizeof(arr) / sizeof((arr)[0]))

/* ---- tables ------------------------------------------------------------- */

static void mtab_free(struct mtab *t)
{
	free(t->r);
	memset(t, 0, sizeof(*t));
}

static void mtab_copy(struct mtab *to, const struct mtab *from)
{
	to->n = from->n;
	to->cap = from->n > 16 ? from->n : 16;
	to->r = malloc(to->cap * sizeof(*to->r));
	if (!to->r)
		abort();
	memcpy(to->r, from->r, from->n * sizeof(*from->r));
}

static void mtab_add(struct mtab *t, const struct mrule *r)
{
	if (t->n == t->cap) {
		t->cap = t->cap ? 2 * t->cap : 64;
		t->r = realloc(t->r, t->cap * sizeof(*t->r));
		if (!t->r)
			abort();
	}
	t->r[t->n++] = *r;
}

static void mtab_del(struct mtab *t, unsigned int i)
{
	t->r[i] = t->r[--t->n];
}

/* Dump order: TCP then UDP (the module's own index), port, id. */
static int mrule_cmp(const void *a, const void *b)
{
	const struct mrule *x = a, *y = b;
	int px = x->proto == IPPROTO_TCP ? 0 : 1;
	int py = y->proto == IPPROTO_TCP ? 0 : 1;

	if (px != py)
		return px - py;
	if (x->pmin != y->pmin)
		return x->pmin < y->pmin ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static void mtab_sort(struct mtab *t)
{
	qsort(t->r, t->n, sizeof(*t->r), mrule_cmp);
}

/* The module's "class": the same protocol and prefix. */
static bool same_class(const struct mrule *a, const struct mrule *b)
{
	if (a->proto != b->proto || a->plen != b->plen)
		return false;
	return !a->plen ||
	       (a->fams == b->fams && !memcmp(a->addr, b->addr, 16));
}

/* A sibling the module's conflict checks look at. */
static bool sibling(const struct mrule *a, const struct mrule *b)
{
	return same_class(a, b) && a->pmin <= b->pmax && b->pmin <= a->pmax &&
	       (a->fams & b->fams);
}

/* The table a request of socket @si acts on: its batch's, or the live one. */
static struct mtab *view(struct fz *f, int si)
{
	return f->m.owner == si ? &f->m.staged : &f->m.live;
}

/* ---- requests as trees, so that mutations keep lengths consistent ------- */

#define TA_DATA		24
#define TA_KIDS		8
#define TM_TOP		24	/* a rule's key and 17 targets, and more */

struct ka {
	uint16_t type;
	uint8_t len;
	bool raw;		/* data without an attribute header: garbage */
	uint8_t data[TA_DATA];
};

struct ta {
	uint16_t type;		/* with NLA_F_NESTED for a nest */
	uint8_t len;
	bool nest;
	uint8_t data[TA_DATA];
	struct ka kids[TA_KIDS];
	int nkids;
};

struct tmsg {
	uint16_t type, flags;
	uint32_t seq;
	uint8_t cmd, version;
	uint16_t reserved;
	struct ta top[TM_TOP];
	int ntop;
	const char *what;
};

/* Attributes are cleared as they are put: a tree is kilobytes, mostly unused. */
static void tm_init(struct fz *f, int si, struct tmsg *m, uint8_t cmd)
{
	m->ntop = 0;
	m->reserved = 0;
	m->type = f->family;
	m->flags = NLM_F_REQUEST | NLM_F_ACK;
	m->seq = ++f->s[si].n.seq;
	m->cmd = cmd;
	m->version = PORTDISPATCH_FAMILY_VERSION;
	m->what = "valid";
}

static struct ta *tm_put(struct tmsg *m, uint16_t type, size_t len,
			 const void *data)
{
	struct ta *a;

	if (m->ntop == TM_TOP)
		return NULL;
	a = &m->top[m->ntop++];
	memset(a, 0, sizeof(*a));
	a->type = type;
	a->len = len;
	memcpy(a->data, data, len);
	return a;
}

static void tm_u8(struct tmsg *m, uint16_t type, uint8_t v)
{
	tm_put(m, type, 1, &v);
}

static void tm_u32(struct tmsg *m, uint16_t type, uint32_t v)
{
	tm_put(m, type, 4, &v);
}

static struct ta *tm_nest(struct tmsg *m, uint16_t type)
{
	struct ta *a = tm_put(m, type | NLA_F_NESTED, 0, NULL);

	if (a)
		a->nest = true;
	return a;
}

static void ta_kid_u32(struct ta *a, uint16_t type, uint32_t v)
{
	struct ka *k;

	if (a->nkids == TA_KIDS)
		return;
	k = &a->kids[a->nkids++];
	memset(k, 0, sizeof(*k));
	k->type = type;
	k->len = 4;
	memcpy(k->data, &v, 4);
}

static size_t put_attr(uint8_t *b, uint16_t type, size_t len, const void *d)
{
	struct nlattr nla = { .nla_len = NLA_HDRLEN + len, .nla_type = type };

	memcpy(b, &nla, sizeof(nla));
	memcpy(b + NLA_HDRLEN, d, len);
	memset(b + NLA_HDRLEN + len, 0, NLA_ALIGN(len) - len);
	return NLA_HDRLEN + NLA_ALIGN(len);
}

/* The bytes of top-level attribute @a. */
static size_t ta_size(const struct ta *a)
{
	size_t n = NLA_HDRLEN;
	int j;

	if (!a->nest)
		return n + NLA_ALIGN(a->len);
	for (j = 0; j < a->nkids; j++)
		n += a->kids[j].raw ? a->kids[j].len :
		     NLA_HDRLEN + NLA_ALIGN(a->kids[j].len);
	return NLA_ALIGN(n);
}

/*
 * The message's bytes, nlmsg_len its whole length: at most MSG_MAX, so
 * attributes past that are left out (a tree of many large nests).
 */
static size_t tm_bytes(const struct tmsg *m, uint8_t *b)
{
	struct nlmsghdr h = { .nlmsg_type = m->type, .nlmsg_flags = m->flags,
			      .nlmsg_seq = m->seq };
	struct genlmsghdr g = { .cmd = m->cmd, .version = m->version,
				.reserved = m->reserved };
	size_t len = NLMSG_HDRLEN;
	int i, j;

	memcpy(b + len, &g, sizeof(g));
	len += GENL_HDRLEN;
	for (i = 0; i < m->ntop; i++) {
		const struct ta *a = &m->top[i];
		size_t start = len, n;

		if (len + ta_size(a) > MSG_MAX)
			break;
		if (!a->nest) {
			len += put_attr(b + len, a->type, a->len, a->data);
			continue;
		}
		len += NLA_HDRLEN;
		for (j = 0; j < a->nkids; j++) {
			const struct ka *k = &a->kids[j];

			if (k->raw) {
				memcpy(b + len, k->data, k->len);
				len += k->len;
			} else {
				len += put_attr(b + len, k->type, k->len, k->data);
			}
		}
		n = len - start;
		memcpy(b + start, &(struct nlattr){ .nla_len = n,
						     .nla_type = a->type },
		       NLA_HDRLEN);
		/* Garbage of an odd length still leaves the next aligned. */
		while (len % NLA_ALIGNTO)
			b[len++] = 0;
	}
	h.nlmsg_len = len;
	memcpy(b, &h, sizeof(h));
	return len;
}

/* ---- the prediction: how the kernel reads one message -------------------- */

enum pol { P_UNSPEC, P_U8, P_U32, P_BIN16, P_NEST, P_REJECT };

#define R(a)	PORTDISPATCH_A_RULE_##a
#define T(a)	PORTDISPATCH_A_TARGET_##a
#define CMD(c)	PORTDISPATCH_CMD_##c

static const enum pol pol_set[R(MAX) + 1] = {
	[R(PROTO)] = P_U8, [R(PORT_MIN)] = P_U32, [R(PORT_MAX)] = P_U32,
	[R(FAMILY)] = P_U8, [R(DST)] = P_BIN16, [R(DST_PLEN)] = P_U8,
	[R(TARGET)] = P_NEST,
};

static const enum pol pol_del[R(MAX) + 1] = {
	[R(PROTO)] = P_U8, [R(PORT_MIN)] = P_U32, [R(PORT_MAX)] = P_U32,
	[R(FAMILY)] = P_U8, [R(DST)] = P_BIN16, [R(DST_PLEN)] = P_U8,
};

static const enum pol pol_target[T(MAX) + 1] = {
	[T(FD)] = P_U32, [T(PID)] = P_U32, [T(PID_FD)] = P_U32,
	[T(PORT)] = P_U32, [T(WEIGHT)] = P_U32,
};

/* A command without attributes: every attribute is an unknown one. */
static const enum pol pol_none[1] = { P_REJECT };

/*
 * lib/nlattr.c's strict parse (__nla_validate_parse, validate_nla): 0 or
 * the negative errno, and the last of each type in @tb.
 */
static int nla_sim(const uint8_t *head, int len, int maxtype,
		   const enum pol *pol, const uint8_t **tb)
{
	const uint8_t *pos = head;
	int rem = len;

	if (tb)
		memset(tb, 0, sizeof(*tb) * (maxtype + 1));
	for (;;) {
		struct nlattr nla;
		int type, alen;
		enum pol p;

		if (rem < NLA_HDRLEN)
			break;
		memcpy(&nla, pos, sizeof(nla));
		if (nla.nla_len < NLA_HDRLEN || nla.nla_len > rem)
			break;
		type = nla.nla_type & NLA_TYPE_MASK;
		if (type == 0 || type > maxtype)
			return -EINVAL;		/* Unknown attribute type */
		p = pol[type];
		alen = nla.nla_len - NLA_HDRLEN;
		if ((p == P_U8 && alen != 1) || (p == P_U32 && alen != 4))
			return -EINVAL;		/* invalid attribute length */
		if (p == P_NEST && !(nla.nla_type & NLA_F_NESTED))
			return -EINVAL;
		if (p != P_NEST && p != P_UNSPEC && (nla.nla_type & NLA_F_NESTED))
			return -EINVAL;
		switch (p) {
		case P_REJECT:
		case P_UNSPEC:			/* Unsupported attribute */
			return -EINVAL;
		case P_BIN16:
			if (alen > 16)
				return -ERANGE;
			break;
		case P_NEST:
			if (!alen)
				break;
			if (alen < NLA_HDRLEN)
				return -ERANGE;
			{
				int err = nla_sim(pos + NLA_HDRLEN, alen,
						  T(MAX), pol_target, NULL);

				if (err)
					return err;
			}
			break;
		default:
			break;
		}
		if (tb)
			tb[type] = pos;
		pos += NLA_ALIGN(nla.nla_len);
		rem -= NLA_ALIGN(nla.nla_len);
	}
	return rem > 0 ? -EINVAL : 0;	/* bytes leftover */
}

static int alen_of(const uint8_t *a)
{
	struct nlattr nla;

	memcpy(&nla, a, sizeof(nla));
	return nla.nla_len - NLA_HDRLEN;
}

static uint32_t get32(const uint8_t *a)
{
	uint32_t v;

	memcpy(&v, a + NLA_HDRLEN, 4);
	return v;
}

static uint8_t get8(const uint8_t *a)
{
	return a[NLA_HDRLEN];
}

/* A socket's families, as the module counts them. */
static uint8_t sock_fams(int family, bool v6only)
{
	if (family == AF_INET)
		return FAM_V4;
	return v6only ? FAM_V6 : FAM_ALL;
}

/* pd_nl_parse_key(): 0 or the positive errno. */
static int sim_key(const uint8_t **tb, struct mrule *k)
{
	uint32_t min, max;
	int dlen, bits;
	uint8_t dfam, masked[16] = { 0 };

	memset(k, 0, sizeof(*k));
	if (!tb[R(PROTO)])
		return EINVAL;
	k->proto = get8(tb[R(PROTO)]);
	if (k->proto != IPPROTO_TCP && k->proto != IPPROTO_UDP)
		return EINVAL;
	if (!tb[R(PORT_MIN)])
		return EINVAL;
	min = get32(tb[R(PORT_MIN)]);
	max = tb[R(PORT_MAX)] ? get32(tb[R(PORT_MAX)]) : min;
	if (!min || min > 65535 || !max || max > 65535 || max < min)
		return EINVAL;
	k->pmin = min;
	k->pmax = max;
	k->fams = FAM_ALL;
	if (tb[R(FAMILY)]) {
		uint8_t fam = get8(tb[R(FAMILY)]);

		if (fam == AF_INET)
			k->fams = FAM_V4;
		else if (fam == AF_INET6)
			k->fams = FAM_V6;
		else
			return EINVAL;
	}
	if (!tb[R(DST)] && !tb[R(DST_PLEN)])
		return 0;
	if (!tb[R(DST)] || !tb[R(DST_PLEN)])
		return EINVAL;
	dlen = alen_of(tb[R(DST)]);
	if (dlen == 4) {
		dfam = FAM_V4;
		bits = 32;
	} else if (dlen == 16) {
		dfam = FAM_V6;
		bits = 128;
	} else {
		return EINVAL;
	}
	k->plen = get8(tb[R(DST_PLEN)]);
	if (k->plen > bits || !(k->fams & dfam))
		return EINVAL;
	memcpy(k->addr, tb[R(DST)] + NLA_HDRLEN, dlen);
	memcpy(masked, k->addr, k->plen / 8);
	if (k->plen % 8)
		masked[k->plen / 8] = k->addr[k->plen / 8] &
				      (uint8_t)(0xff00 >> (k->plen % 8));
	if (memcmp(masked, k->addr, 16))
		return EINVAL;			/* bits past the prefix */
	if (dfam == FAM_V6 && k->plen >= 96 &&
	    !memcmp(k->addr, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12))
		return EINVAL;			/* IPv4-mapped */
	k->fams = dfam;
	return 0;
}

static const struct fdinfo *fd_info(struct fz *f, uint32_t fd,
				    struct fdinfo *tmp)
{
	struct stat st;

	if (fd < MAX_FDS && f->fdi[fd].known)
		return &f->fdi[fd];
	memset(tmp, 0, sizeof(*tmp));
	tmp->slot = -1;
	if ((int)fd < 0 || fcntl((int)fd, F_GETFD) < 0)
		return tmp;			/* not open */
	tmp->known = true;
	if (fstat((int)fd, &st) || !S_ISSOCK(st.st_mode))
		return tmp;
	/* Every socket of this process is in the table. */
	fz_fail(f, NULL, "fd %u is a socket the model does not know", fd);
}

static bool pid_exists(uint32_t pid)
{
	if (!pid || pid > 4194304)		/* PID_MAX_LIMIT */
		return false;
	return !kill((pid_t)pid, 0) || errno == EPERM;
}

/*
 * pd_nl_parse_target(), one RULE_TARGET nest: its weight (1 without one),
 * then pd_target_init(). 0 or the positive errno; narrows @k's families.
 */
static int sim_target(struct fz *f, const uint8_t *nest, struct mrule *k,
		      struct mtarget *t)
{
	const uint8_t *tt[T(MAX) + 1];
	const struct fdinfo *fi;
	struct fdinfo tmp;
	uint8_t fams;

	memset(t, 0, sizeof(*t));
	t->slot = -1;
	t->weight = 1;
	nla_sim(nest + NLA_HDRLEN, alen_of(nest), T(MAX), pol_target, tt);
	if (tt[T(WEIGHT)]) {
		uint32_t w = get32(tt[T(WEIGHT)]);

		if (!w || w > 255)
			return EINVAL;
		t->weight = w;
	}
	if (tt[T(FD)] && tt[T(PORT)])
		return EINVAL;
	if (!tt[T(FD)] && !tt[T(PORT)])
		return EINVAL;
	if (!tt[T(FD)]) {
		if (tt[T(PID)] || tt[T(PID_FD)])
			return EINVAL;
		t->tport = get32(tt[T(PORT)]);
		if (!t->tport || t->tport > 65535)
			return EINVAL;
		return 0;
	}
	fi = fd_info(f, get32(tt[T(FD)]), &tmp);
	if (!fi->known)
		return EBADF;
	if (!fi->sock)
		return ENOTSOCK;
	if (fi->other_ns)
		return EXDEV;
	if (!fi->ip)
		return EAFNOSUPPORT;
	if (fi->proto != k->proto)
		return EPROTOTYPE;
	fams = fi->fams & k->fams;
	if (!fams)
		return EAFNOSUPPORT;
	if (!fi->ready)
		return EADDRNOTAVAIL;
	if (tt[T(PID)] && !pid_exists(get32(tt[T(PID)])))
		return ESRCH;
	/* Every socket a rule may take is a target slot's. */
	if (fi->slot < 0)
		fz_fail(f, NULL, "fd %u is a socket of no target slot",
			get32(tt[T(FD)]));
	t->sock = true;
	t->slot = fi->slot;
	t->family = f->slot[fi->slot].family;
	t->v6only = f->slot[fi->slot].v6only;
	t->ino = f->slot[fi->slot].ino;
	t->pid = tt[T(PID)] ? get32(tt[T(PID)]) : (uint32_t)f->pid;
	t->pid_fd = get32(tt[T(PID_FD)] ?: tt[T(FD)]);
	k->fams = fams;
	return 0;
}

/* pd_target_same(): the same socket (whatever the fd), or the same port. */
static bool mtarget_same(const struct mtarget *a, const struct mtarget *b)
{
	if (a->sock != b->sock)
		return false;
	return a->sock ? a->slot == b->slot : a->tport == b->tport;
}

static const struct mgroup *rule_group(const struct fz *f,
				       const struct mrule *r)
{
	return r->group ? &f->grp[r->group - 1] : NULL;
}

/* A rule's targets, in order: a group's members, or its one. */
static const struct mtarget *rule_targets(const struct fz *f,
					  const struct mrule *r,
					  unsigned int *n)
{
	const struct mgroup *g = rule_group(f, r);

	*n = g ? g->n : 1;
	return g ? g->m : &r->t;
}

/* @g kept for good, as a rule's group: its number for mrule.group. */
static uint32_t group_keep(struct fz *f, const struct mgroup *g)
{
	if (f->ngrp == f->grp_cap) {
		f->grp_cap = f->grp_cap ? 2 * f->grp_cap : 256;
		f->grp = realloc(f->grp, f->grp_cap * sizeof(*f->grp));
		if (!f->grp)
			abort();
	}
	f->grp[f->ngrp++] = *g;
	return f->ngrp;
}

/* The RULE_TARGET nests of a request: there may be several. */
static unsigned int count_targets(const uint8_t *b, int len)
{
	unsigned int n = 0;
	int rem = len;

	while (rem >= NLA_HDRLEN) {
		struct nlattr nla;

		memcpy(&nla, b, sizeof(nla));
		if (nla.nla_len < NLA_HDRLEN || nla.nla_len > rem)
			break;
		n += (nla.nla_type & NLA_TYPE_MASK) == R(TARGET);
		b += NLA_ALIGN(nla.nla_len);
		rem -= NLA_ALIGN(nla.nla_len);
	}
	return n;
}

/*
 * pd_nl_rule_new(): the rule a request of @len bytes of attributes (@b)
 * asks for into @k, or the positive errno. The key first; then the
 * number of targets, before any is read; a lone target's weight is
 * checked and forgotten; a group's members are read in order, each
 * checked (weight, then target) and then compared with those before it.
 * Each socket narrows the families: one that no longer meets them fails
 * as its socket check does. @g: the group's members, for group_keep().
 */
static int sim_rule_new(struct fz *f, const uint8_t *b, int len,
			const uint8_t **tb, struct mrule *k, struct mgroup *g)
{
	unsigned int i, n = count_targets(b, len);
	int err, rem = len;

	err = sim_key(tb, k);
	if (err)
		return err;
	if (!tb[R(TARGET)] || n > GROUP_MAX)
		return EINVAL;
	if (n == 1)
		return sim_target(f, tb[R(TARGET)], k, &k->t);

	g->n = 0;
	while (rem >= NLA_HDRLEN) {
		struct nlattr nla;

		memcpy(&nla, b, sizeof(nla));
		if ((nla.nla_type & NLA_TYPE_MASK) == R(TARGET)) {
			struct mtarget *t = &g->m[g->n];

			err = sim_target(f, b, k, t);
			if (err)
				return err;
			for (i = 0; i < g->n; i++)
				if (mtarget_same(&g->m[i], t))
					return EINVAL;
			g->n++;
		}
		b += NLA_ALIGN(nla.nla_len);
		rem -= NLA_ALIGN(nla.nla_len);
	}
	return 0;
}

/* pd_nl_refuse(): a refused request of the batch's owner fails it. */
static int refuse(struct fz *f, int si, int err)
{
	if (f->m.owner == si)
		f->m.failed = true;
	return err;
}

/* pd_txn_put() after a change: a batch fails, a lone change commits. */
static int put_change(struct fz *f, int si, int err)
{
	if (f->m.owner == si) {
		if (err)
			f->m.failed = true;
		else
			f->m.changed = true;
	} else if (!err) {
		f->m.generation++;
	}
	return err;
}

/*
 * RULE_ADD, RULE_REPLACE: pd_nl_rule_set() and pd_txn_add(); @b and @len
 * are the request's attributes.
 */
static int sim_set(struct fz *f, int si, const uint8_t *b, int len,
		   const uint8_t **tb, bool replace, bool echo, struct exp *x)
{
	struct mrule k, *first = NULL;
	unsigned int i, replaced = 0;
	struct mgroup g;
	struct mtab *t;
	int err;

	g.n = 0;
	if (count_targets(b, len) > 1)
		f->n_grp_sent++;
	err = sim_rule_new(f, b, len, tb, &k, &g);
	if (err)
		return refuse(f, si, err);
	if (f->m.owner >= 0 && f->m.owner != si)
		return EBUSY;
	t = view(f, si);

	for (i = 0; i < t->n; i++) {
		struct mrule *o = &t->r[i];

		if (!sibling(o, &k))
			continue;
		if (replace && o->pmin == k.pmin && o->pmax == k.pmax) {
			replaced++;
			if (!first || o->ins < first->ins)
				first = o;
			continue;
		}
		return put_change(f, si, EEXIST);
	}
	if (t->n + 1 - replaced > f->max_rules)
		return put_change(f, si, ENOSPC);

	k.id = first ? first->id : ++f->m.next_id;
	k.ins = ++f->m.next_ins;
	if (g.n) {
		k.group = group_keep(f, &g);
		f->n_grp_made++;
	}
	for (i = 0; i < t->n;) {
		struct mrule *o = &t->r[i];

		if (replaced && sibling(o, &k) && o->pmin == k.pmin &&
		    o->pmax == k.pmax)
			mtab_del(t, i);
		else
			i++;
	}
	mtab_add(t, &k);
	if (echo) {
		x->replies = 1;
		x->echo = true;
		x->echo_rule = k;
	}
	return put_change(f, si, 0);
}

/* RULE_DEL: pd_nl_rule_del() and pd_txn_del(). */
static int sim_del(struct fz *f, int si, const uint8_t **tb)
{
	struct mrule k;
	unsigned int i, n = 0;
	struct mtab *t;
	int err = sim_key(tb, &k);

	if (err)
		return refuse(f, si, err);
	if (f->m.owner >= 0 && f->m.owner != si)
		return EBUSY;
	t = view(f, si);
	for (i = 0; i < t->n;) {
		if (sibling(&t->r[i], &k) && t->r[i].pmin == k.pmin &&
		    t->r[i].pmax == k.pmax) {
			mtab_del(t, i);
			n++;
		} else {
			i++;
		}
	}
	return put_change(f, si, n ? 0 : ENOENT);
}

static int sim_flush(struct fz *f, int si)
{
	if (f->m.owner >= 0 && f->m.owner != si)
		return EBUSY;
	view(f, si)->n = 0;
	return put_change(f, si, 0);
}

static int sim_batch(struct fz *f, int si, uint8_t cmd)
{
	struct model *m = &f->m;

	if (cmd == CMD(BATCH_BEGIN)) {
		if (m->owner >= 0)
			return EBUSY;
		m->owner = si;
		m->failed = m->changed = false;
		m->batch_since = pd_now_ms();
		mtab_free(&m->staged);
		mtab_copy(&m->staged, &m->live);
		f->n_batches++;
		return 0;
	}
	if (m->owner != si)
		return EINVAL;
	m->owner = -1;
	if (cmd == CMD(BATCH_ABORT))
		return 0;
	if (m->failed)
		return EINVAL;
	if (m->changed) {
		mtab_free(&m->live);
		mtab_copy(&m->live, &m->staged);
		m->generation++;
		f->n_commits++;
	}
	return 0;
}

/* The socket that owned the batch is gone: the batch with it. */
static void sim_release(struct fz *f, int si)
{
	if (f->m.owner == si)
		f->m.owner = -1;
}

/* Reserved bits, or flags genetlink gives no meaning to. */
static bool header_bad(const struct nlmsghdr *h, const struct genlmsghdr *g)
{
	uint16_t flags = h->nlmsg_flags;

	if ((flags & NLM_F_DUMP) == NLM_F_DUMP)
		flags &= ~NLM_F_DUMP;
	return g->reserved ||
	       (flags & ~(NLM_F_REQUEST | NLM_F_ACK | NLM_F_ECHO));
}

static bool known_cmd(uint8_t cmd)
{
	return cmd >= CMD(RULE_ADD) && cmd <= CMD(BATCH_ABORT);
}

/*
 * What the kernel does with message @b (its whole datagram, @len bytes),
 * sent on socket @si: into @x, and into the model.
 */
static void predict(struct fz *f, int si, const uint8_t *b, size_t len,
		    struct exp *x)
{
	const uint8_t *tb[R(MAX) + 1];
	struct genlmsghdr g;
	struct nlmsghdr h;
	bool dump, exists, bad_header, reached = false;
	int err = 0;

	x->kind = X_SILENT;
	x->replies = 0;
	x->echo = x->stats = false;
	if (len < NLMSG_HDRLEN)
		return;
	memcpy(&h, b, sizeof(h));
	x->seq = h.nlmsg_seq;
	if (h.nlmsg_len < NLMSG_HDRLEN || len < h.nlmsg_len)
		return;				/* dropped whole, unanswered */
	x->kind = X_ACK;
	if (!(h.nlmsg_flags & NLM_F_REQUEST) || h.nlmsg_type < NLMSG_MIN_TYPE)
		goto ack;			/* not for the kernel: acked */
	if (h.nlmsg_type != f->family)
		fz_fail(f, x, "the fuzzer sent to family %u", h.nlmsg_type);
	if (h.nlmsg_len < NLMSG_HDRLEN + GENL_HDRLEN) {
		err = EINVAL;
		goto ack;
	}
	memcpy(&g, b + NLMSG_HDRLEN, sizeof(g));
	/*
	 * genetlink checks the header of commands from resv_start_op on,
	 * which the family puts past its own; it checks its own itself.
	 */
	bad_header = header_bad(&h, &g);
	if (g.cmd >= __PORTDISPATCH_CMD_MAX && bad_header) {
		err = EINVAL;
		goto ack;
	}
	dump = (h.nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP;
	exists = dump ? g.cmd == CMD(RULE_GET) :
			known_cmd(g.cmd) && g.cmd != CMD(RULE_GET);
	if (!known_cmd(g.cmd) || (f->split_ops && !exists)) {
		err = EOPNOTSUPP;
		goto ack;
	}
	if (!f->priv) {
		err = EPERM;
		goto ack;
	}
	reached = true;
	if (!exists) {
		err = EOPNOTSUPP;
		goto ack;
	}

	if (dump) {
		if (f->s[si].dump_running)
			err = EBUSY;		/* one dump per socket */
		else if (bad_header)
			err = EINVAL;
		else
			err = -nla_sim(b + NLMSG_HDRLEN + GENL_HDRLEN,
				       h.nlmsg_len - NLMSG_HDRLEN - GENL_HDRLEN,
				       0, pol_none, NULL);
		if (err)
			goto ack;
		x->kind = X_DUMP;
		mtab_copy(&x->snap, &f->m.live);
		mtab_sort(&x->snap);
		x->gen0 = f->m.generation;
		/* A table that fits the first part ends there, with DONE. */
		f->s[si].dump_running = x->snap.n > 0;
		return;
	}

	/*
	 * The handler's own checks; a refused change of the batch's owner
	 * fails the batch, as any other refusal of it does.
	 */
	if (bad_header) {
		err = EINVAL;
		if (g.cmd == CMD(RULE_ADD) || g.cmd == CMD(RULE_REPLACE) ||
		    g.cmd == CMD(RULE_DEL) || g.cmd == CMD(FLUSH))
			refuse(f, si, err);
		goto ack;
	}
	switch (g.cmd) {
	case CMD(RULE_ADD):
	case CMD(RULE_REPLACE):
		err = -nla_sim(b + NLMSG_HDRLEN + GENL_HDRLEN,
			       h.nlmsg_len - NLMSG_HDRLEN - GENL_HDRLEN, R(MAX),
			       pol_set, tb);
		if (err)
			err = refuse(f, si, err);
		else
			err = sim_set(f, si, b + NLMSG_HDRLEN + GENL_HDRLEN,
				      h.nlmsg_len - NLMSG_HDRLEN - GENL_HDRLEN,
				      tb, g.cmd == CMD(RULE_REPLACE),
				      h.nlmsg_flags & NLM_F_ECHO, x);
		break;
	case CMD(RULE_DEL):
		err = -nla_sim(b + NLMSG_HDRLEN + GENL_HDRLEN,
			       h.nlmsg_len - NLMSG_HDRLEN - GENL_HDRLEN, R(MAX),
			       pol_del, tb);
		if (err)
			err = refuse(f, si, err);
		else
			err = sim_del(f, si, tb);
		break;
	default:
		err = -nla_sim(b + NLMSG_HDRLEN + GENL_HDRLEN,
			       h.nlmsg_len - NLMSG_HDRLEN - GENL_HDRLEN, 0,
			       pol_none, NULL);
		if (err) {
			if (g.cmd == CMD(FLUSH))
				refuse(f, si, err);
			break;
		}
		if (g.cmd == CMD(FLUSH)) {
			err = sim_flush(f, si);
		} else if (g.cmd == CMD(STATS_GET)) {
			x->replies = 1;
			x->stats = true;
			x->stats_rules = f->m.live.n;
		} else {
			err = sim_batch(f, si, g.cmd);
		}
		break;
	}
ack:
	x->err = err;
	if (!err && reached)
		f->n_accepted++;
	if (!err && !(h.nlmsg_flags & NLM_F_ACK))
		x->kind = X_SILENT;
}

/* ---- valid requests ------------------------------------------------------- */

struct pfx {
	const char *text;
	uint8_t len;		/* address bytes */
	uint8_t plen;
	uint8_t addr[16];
};

/* Mostly valid prefixes; a few the module refuses for their bits. */
static struct pfx pfxs[] = {
	{ .text = "198.18.0.0/15" }, { .text = "198.18.0.0/24" }, { .text = "198.18.1.0/24" },
	{ .text = "198.18.0.7/32" }, { .text = "0.0.0.0/0" }, { .text = "2001:db8::/32" },
	{ .text = "2001:db8:1::/48" }, { .text = "2001:db8::7/128" }, { .text = "::/0" },
	{ .text = "2001:db8::/64" }, { .text = "198.18.0.1/24" }, { .text = "::ffff:198.18.0.0/112" },
	{ .text = "2001:db8::1/64" },
};

static void pfx_init(void)
{
	unsigned int i;

	for (i = 0; i < sizeof(pfxs) / sizeof(pfxs[0]); i++) {
		struct pfx *p = &pfxs[i];
		const char *slash = strchr(p->text, '/');
		char addr[64];

		snprintf(addr, sizeof(addr), "%.*s", (int)(slash - p->text),
			 p->text);
		p->len = strchr(p->text, ':') ? 16 : 4;
		inet_pton(p->len == 4 ? AF_INET : AF_INET6, addr, p->addr);
		p->plen = atoi(slash + 1);
	}
}

/* A rule of @t to name again: often a group, if a few looks find one. */
static const struct mrule *pick_rule(struct fz *f, const struct mtab *t)
{
	const struct mrule *r = &t->r[below(f, t->n)];
	unsigned int i;

	for (i = 0; i < 8 && !r->group && pct(f, 40); i++)
		r = &t->r[below(f, t->n)];
	return r;
}

/* The key of a rule of @t (when @from_table and there is one) or a new one. */
static void gen_key(struct fz *f, struct tmsg *m, const struct mtab *t,
		    bool from_table)
{
	if (from_table && t->n) {
		const struct mrule *r = pick_rule(f, t);

		tm_u8(m, R(PROTO), r->proto);
		tm_u32(m, R(PORT_MIN), r->pmin);
		if (r->pmax != r->pmin || pct(f, 50))
			tm_u32(m, R(PORT_MAX), r->pmax);
		if (r->plen) {
			tm_put(m, R(DST), r->fams == FAM_V4 ? 4 : 16, r->addr);
			tm_u8(m, R(DST_PLEN), r->plen);
		}
		if ((r->fams != FAM_ALL && (!r->plen || pct(f, 50))) ||
		    pct(f, 10))
			tm_u8(m, R(FAMILY), r->fams == FAM_V6 ? AF_INET6 : AF_INET);
		return;
	}
	tm_u8(m, R(PROTO), pct(f, 50) ? IPPROTO_TCP : IPPROTO_UDP);
	{
		uint32_t min = PORT_BASE + below(f, PORT_SPAN);

		tm_u32(m, R(PORT_MIN), min);
		if (pct(f, 30))
			tm_u32(m, R(PORT_MAX), min + below(f, 6));
	}
	if (pct(f, 50))
		tm_u8(m, R(FAMILY), pct(f, 50) ? AF_INET : AF_INET6);
	if (pct(f, 30)) {
		const struct pfx *p = &pfxs[below(f, sizeof(pfxs) / sizeof(pfxs[0]))];

		tm_put(m, R(DST), p->len, p->addr);
		tm_u8(m, R(DST_PLEN), p->plen);
	}
}

static uint8_t tm_proto(const struct tmsg *m)
{
	int i;

	for (i = 0; i < m->ntop; i++)
		if (m->top[i].type == R(PROTO))
			return m->top[i].data[0];
	return IPPROTO_TCP;
}

/* Ports that rules of one target share. */
static const uint32_t tports[] = { 8080, 8081, 9000, 5353 };

/* Socket @slot of ours as a target: by its fd, or (@other %) its other. */
static void kid_socket(struct fz *f, struct ta *t, int slot,
		       unsigned int other)
{
	ta_kid_u32(t, T(FD), pct(f, other) ? f->slot[slot].dupfd :
			     f->slot[slot].fd);
	if (pct(f, 15))
		ta_kid_u32(t, T(PID), pct(f, 70) ? f->pid : f->ppid);
	if (pct(f, 15))
		ta_kid_u32(t, T(PID_FD), below(f, 1000));
}

/* A target: a port, or a socket of ours, TCP slots 0-2, UDP 3-5. */
static void gen_target(struct fz *f, struct tmsg *m)
{
	struct ta *t = tm_nest(m, R(TARGET));
	int slot;

	if (!t)
		return;
	if (pct(f, 50)) {
		ta_kid_u32(t, T(PORT), pct(f, 80) ? PICK(f, tports) :
			   1 + below(f, 65535));
		return;
	}
	slot = below(f, 3) + (tm_proto(m) == IPPROTO_UDP ? 3 : 0);
	if (pct(f, 10))
		slot = below(f, NSLOTS);
	kid_socket(f, t, slot, 10);
	/* A lone target's weight is checked, and then means nothing. */
	if (pct(f, 5))
		ta_kid_u32(t, T(WEIGHT), pct(f, 80) ? 1 + below(f, 255) : 0);
}

/* A member's weight: none (1), a few, any; @bad: one out of range. */
static void kid_weight(struct fz *f, struct ta *t, bool bad)
{
	static const uint32_t bad_weights[] = { 0, 256, 1000, 0xffffffff };

	if (bad)
		ta_kid_u32(t, T(WEIGHT), PICK(f, bad_weights));
	else if (pct(f, 50))
		ta_kid_u32(t, T(WEIGHT), pct(f, 70) ? 1 + below(f, 9) :
			   1 + below(f, 255));
}

/*
 * A socket of the protocol (slots @base to @base + 2) not @used yet, -1
 * when none is left; now and then any socket, used or not.
 */
static int free_socket(struct fz *f, const bool *used, int base)
{
	int slot = base + below(f, 3), j;

	if (pct(f, 5))
		return below(f, NSLOTS);
	for (j = 0; j < 3; j++, slot = base + (slot - base + 1) % 3)
		if (!used[slot])
			return slot;
	return -1;
}

/*
 * A rule of several targets, on purpose: 2-16 members, ports and sockets
 * of the rule's protocol mixed, with and without weights; or with a flaw:
 * 17 members, a member that repeats one before it (the same port; the
 * same socket by the same fd or by its other) or has a weight out of
 * range. Sockets whose families do not meet (IPv4 and IPv6-only) or do
 * not meet the rule's come by chance.
 */
static void gen_group(struct fz *f, struct tmsg *m)
{
	int base = tm_proto(m) == IPPROTO_UDP ? 3 : 0;
	unsigned int i, n, r = below(f, 100);
	int slot[GROUP_MAX + 1] = { 0 }, dup = -1, bad = -1;
	uint32_t port[GROUP_MAX + 1] = { 0 };
	bool used[NSLOTS] = { false };

	/*
	 * Mostly sockets whose families meet: IPv4 (slot 0 of a protocol's
	 * three) and dual-stack (1), or dual-stack and IPv6-only (2).
	 */
	if (pct(f, 70))
		used[base + (pct(f, 50) ? 0 : 2)] = true;

	if (pct(f, 35)) {
		/* Meant to be taken: mostly small, which costs least. */
		n = r < 70 ? 2 : r < 90 ? 3 + below(f, 2) :
		    r < 97 ? 5 + below(f, 11) : GROUP_MAX;
	} else {
		/*
		 * With a flaw: one member too many, or a member that repeats
		 * one before it or has a weight out of range, late in a
		 * large group so that every member before it is read.
		 */
		n = r < 40 ? 2 + below(f, 3) : r < 80 ? 5 + below(f, 11) :
		    r < 90 ? GROUP_MAX : GROUP_MAX + 1;
		if (n <= GROUP_MAX && pct(f, 60))
			dup = n > 4 ? n / 2 + below(f, n - n / 2) :
				      1 + below(f, n - 1);
		else if (n <= GROUP_MAX)
			bad = n > 4 ? n / 2 + below(f, n - n / 2) :
				      below(f, n);
	}
	for (i = 0; i < n; i++) {
		struct ta *t = tm_nest(m, R(TARGET));

		if (!t)
			return;
		if ((int)i == dup) {
			unsigned int j = below(f, i);

			slot[i] = slot[j];
			port[i] = port[j];
		} else if (pct(f, 40) &&
			   (slot[i] = free_socket(f, used, base)) >= 0) {
			used[slot[i]] = true;
		} else {
			/* A port no other member has. */
			slot[i] = -1;
			port[i] = i < 4 && pct(f, 30) ? tports[i] :
				  10000 + 16 * i + below(f, 16);
		}
		if (slot[i] >= 0)
			kid_socket(f, t, slot[i], (int)i == dup ? 50 : 10);
		else
			ta_kid_u32(t, T(PORT), port[i]);
		kid_weight(f, t, (int)i == bad);
	}
}

static void gen_rule(struct fz *f, int si, struct tmsg *m, uint8_t cmd)
{
	tm_init(f, si, m, cmd);
	gen_key(f, m, view(f, si), cmd != CMD(RULE_ADD) ? pct(f, 70) :
		pct(f, 20));
	if (cmd != CMD(RULE_DEL) && pct(f, group_pct))
		gen_group(f, m);
	else if (cmd != CMD(RULE_DEL))
		gen_target(f, m);
	if (cmd != CMD(RULE_DEL) && pct(f, 20))
		m->flags |= NLM_F_ECHO;
}

static void gen_valid(struct fz *f, int si, struct tmsg *m)
{
	unsigned int r = below(f, 100);

	if (r < 45)
		gen_rule(f, si, m, CMD(RULE_ADD));
	else if (r < 65)
		gen_rule(f, si, m, CMD(RULE_REPLACE));
	else
		gen_rule(f, si, m, CMD(RULE_DEL));
}

/* ---- mutations ---------------------------------------------------------- */

static const uint32_t odd_ports[] = { 0, 1, 80, 1000, 1047, 65535, 65536,
				      70000, 0xffffffff };
static const uint32_t odd_u8[] = { 0, 1, 2, 6, 10, 17, 24, 32, 33, 58, 96,
				   99, 112, 128, 129, 255 };
static const uint32_t odd_types[] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
				      12, 13, 14, 100, 255, 0x3fff };

static void fill_random(struct fz *f, uint8_t *d, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		d[i] = rnd(f);
}

/* A file descriptor worth naming: ours, good or bad, or any number. */
static uint32_t odd_fd(struct fz *f)
{
	unsigned int fd;

	if (pct(f, 10))
		return pct(f, 50) ? (uint32_t)f->closed_fd : (uint32_t)rnd(f);
	for (;;) {
		fd = below(f, 64);
		if (f->fdi[fd].known || pct(f, 5))
			return fd;
	}
}

static uint32_t odd_pid(struct fz *f)
{
	static const uint32_t pids[] = { 0, 1, 0x7fffffff, 4194305 };

	switch (below(f, 4)) {
	case 0:
		return f->pid;
	case 1:
		return f->dead_pid;
	case 2:
		return f->ppid;
	default:
		return PICK(f, pids);
	}
}

static void mutate_kid(struct fz *f, struct ka *k)
{
	uint32_t v;

	switch (below(f, 6)) {
	case 0:
		k->type = PICK(f, odd_types);
		break;
	case 1:
		k->type |= pct(f, 50) ? NLA_F_NESTED : NLA_F_NET_BYTEORDER;
		break;
	case 2:
		k->len = PICK(f, odd_u8) % (TA_DATA + 1);
		fill_random(f, k->data, k->len);
		break;
	default:
		switch (k->type & NLA_TYPE_MASK) {
		case T(FD):
			v = odd_fd(f);
			break;
		case T(PID):
			v = odd_pid(f);
			break;
		default:
			v = PICK(f, odd_ports);
			break;
		}
		k->len = 4;
		memcpy(k->data, &v, 4);
		break;
	}
}

static void mutate_top(struct fz *f, struct ta *a)
{
	uint32_t v;

	switch (below(f, 7)) {
	case 0:
		a->type = PICK(f, odd_types) | (a->type & NLA_F_NESTED);
		break;
	case 1:
		a->type ^= pct(f, 70) ? NLA_F_NESTED : NLA_F_NET_BYTEORDER;
		break;
	case 2:
		if (a->nest)
			break;
		a->len = PICK(f, odd_u8) % (TA_DATA + 1);
		fill_random(f, a->data, a->len);
		break;
	default:
		if (a->nest) {
			if (a->nkids)
				mutate_kid(f, &a->kids[below(f, a->nkids)]);
			break;
		}
		if (a->len == 4) {
			v = PICK(f, odd_ports);
			memcpy(a->data, &v, 4);
		} else if (a->len == 1) {
			a->data[0] = PICK(f, odd_u8);
		} else {
			const struct pfx *p =
				&pfxs[below(f, sizeof(pfxs) / sizeof(pfxs[0]))];

			a->len = pct(f, 80) ? p->len : below(f, 21);
			memcpy(a->data, p->addr, p->len);
		}
		break;
	}
}

/* Garbage in the target nest: random bytes, or random attributes. */
static void nest_garbage(struct fz *f, struct ta *a)
{
	struct ka *k;

	if (!a->nest || a->nkids == TA_KIDS)
		return;
	if (pct(f, 30))
		a->nkids = 0;
	k = &a->kids[a->nkids++];
	memset(k, 0, sizeof(*k));
	if (pct(f, 50)) {
		k->raw = true;
		k->len = 1 + below(f, 12);
		fill_random(f, k->data, k->len);
	} else {
		k->type = below(f, 16);
		k->len = PICK(f, odd_u8) % 9;
		fill_random(f, k->data, k->len);
	}
}

static void mutate_tree(struct fz *f, struct tmsg *m)
{
	struct ta *a = m->ntop ? &m->top[below(f, m->ntop)] : NULL;

	switch (below(f, 8)) {
	case 0:				/* an attribute less */
		if (a)
			*a = m->top[--m->ntop];
		break;
	case 1:				/* one twice, perhaps changed */
		if (a && m->ntop < TM_TOP) {
			m->top[m->ntop] = *a;
			if (pct(f, 50))
				mutate_top(f, &m->top[m->ntop]);
			m->ntop++;
		}
		break;
	case 2:				/* an attribute more */
		if (m->ntop < TM_TOP) {
			struct ta *n = &m->top[m->ntop++];

			memset(n, 0, sizeof(*n));
			n->type = PICK(f, odd_types);
			if (n->type == R(TARGET) && pct(f, 70)) {
				n->type |= NLA_F_NESTED;
				n->nest = true;
				ta_kid_u32(n, T(PORT), PICK(f, odd_ports));
			} else {
				n->len = PICK(f, odd_u8) % (TA_DATA + 1);
				fill_random(f, n->data, n->len);
			}
		}
		break;
	case 3:				/* nested garbage */
		if (a && a->nest)
			nest_garbage(f, a);
		else if (a)
			mutate_top(f, a);
		break;
	default:
		if (a)
			mutate_top(f, a);
		break;
	}
}

/*
 * Mutations of the bytes: the header's fields and flags, trailing bytes,
 * a length field, a cut. Returns the new length.
 */
static size_t mutate_bytes(struct fz *f, uint8_t *b, size_t len)
{
	struct nlmsghdr h;
	struct genlmsghdr g;

	memcpy(&h, b, sizeof(h));
	memcpy(&g, b + NLMSG_HDRLEN, sizeof(g));
	switch (below(f, 9)) {
	case 0:
		g.cmd = pct(f, 50) ? below(f, 16) : (uint8_t)rnd(f);
		break;
	case 1:
		g.version = rnd(f);
		break;
	case 2:
		g.reserved = 1 + below(f, 0xffff);
		break;
	case 3: {
		static const uint32_t bits[] = { NLM_F_MULTI, NLM_F_ECHO,
			NLM_F_DUMP_INTR, NLM_F_DUMP_FILTERED, NLM_F_ROOT,
			NLM_F_MATCH, NLM_F_ATOMIC, NLM_F_DUMP, 0x1000, 0x8000,
			NLM_F_ACK_TLVS };

		h.nlmsg_flags |= PICK(f, bits);
		break;
	}
	case 4:
		if (pct(f, 50))
			h.nlmsg_flags &= ~NLM_F_REQUEST;
		else
			h.nlmsg_type = below(f, NLMSG_MIN_TYPE);
		break;
	case 5: {			/* trailing bytes */
		size_t n = 1 + below(f, 7);

		fill_random(f, b + len, n);
		len += n;
		h.nlmsg_len = len;
		break;
	}
	case 6:				/* a cut, within the message */
		if (len > NLMSG_HDRLEN + 1)
			len = NLMSG_HDRLEN + below(f, len - NLMSG_HDRLEN);
		h.nlmsg_len = len;
		break;
	default: {			/* an attribute's length */
		size_t off = NLMSG_HDRLEN + GENL_HDRLEN, pick;
		uint16_t l;

		if (len < off + NLA_HDRLEN)
			break;
		pick = off + 4 * below(f, (len - off) / 4);
		l = pct(f, 50) ? below(f, 8) : below(f, 64);
		memcpy(b + pick, &l, sizeof(l));
		break;
	}
	}
	h.nlmsg_flags |= NLM_F_ACK;	/* every request asks for its answer */
	memcpy(b, &h, sizeof(h));
	if (len >= NLMSG_HDRLEN + GENL_HDRLEN)
		memcpy(b + NLMSG_HDRLEN, &g, sizeof(g));
	return len;
}

/* A request without attributes, valid. */
static void gen_plain(struct fz *f, int si, struct tmsg *m, uint8_t cmd)
{
	tm_init(f, si, m, cmd);
}

/* ---- random bytes ------------------------------------------------------- */

static size_t gen_random(struct fz *f, int si, uint8_t *b)
{
	struct nlmsghdr h = { .nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK,
			      .nlmsg_type = f->family,
			      .nlmsg_seq = ++f->s[si].n.seq };
	struct genlmsghdr g = {
		.cmd = pct(f, 70) ? 1 + below(f, 9) : (uint8_t)rnd(f),
		.version = pct(f, 50) ? 1 : (uint8_t)rnd(f),
		.reserved = pct(f, 90) ? 0 : (uint16_t)rnd(f),
	};
	size_t len = NLMSG_HDRLEN + GENL_HDRLEN;

	if (pct(f, 10))
		h.nlmsg_flags |= rnd(f) & ~NLM_F_ACK;
	memcpy(b + NLMSG_HDRLEN, &g, sizeof(g));
	if (pct(f, 40)) {
		size_t n = below(f, 49);

		fill_random(f, b + len, n);
		len += n;
	} else {
		unsigned int i, n = below(f, 7);

		for (i = 0; i < n; i++) {
			uint16_t type = pct(f, 80) ? 1 + below(f, 12) :
					(uint16_t)rnd(f);
			uint8_t d[TA_DATA];
			size_t l;

			if (pct(f, 10))
				type |= NLA_F_NESTED;
			if ((type & NLA_TYPE_MASK) == R(TARGET) && pct(f, 60)) {
				size_t start = len;
				unsigned int j, kids = below(f, 4);

				len += NLA_HDRLEN;
				for (j = 0; j < kids; j++) {
					uint32_t v = pct(f, 50) ? odd_fd(f) :
						     PICK(f, odd_ports);

					l = pct(f, 80) ? 4 : below(f, 9);
					memset(d, 0, sizeof(d));
					memcpy(d, &v, 4);
					len += put_attr(b + len, 1 + below(f, 12),
							l, d);
				}
				memcpy(b + start, &(struct nlattr){
					.nla_len = len - start,
					.nla_type = type | NLA_F_NESTED },
				       NLA_HDRLEN);
				continue;
			}
			l = pct(f, 60) ? (pct(f, 50) ? 1 : 4) : below(f, 21);
			fill_random(f, d, l);
			if (l == 1 && pct(f, 60))
				d[0] = PICK(f, odd_u8);
			if (l == 4 && pct(f, 60)) {
				uint32_t v = PICK(f, odd_ports);

				memcpy(d, &v, 4);
			}
			len += put_attr(b + len, type, l, d);
		}
	}
	h.nlmsg_len = len;
	memcpy(b, &h, sizeof(h));
	return len;
}

/* ---- the fuzzer's files ------------------------------------------------- */

static void fd_register(struct fz *f, int fd, const struct fdinfo *fi)
{
	if (fd < 0 || fd >= MAX_FDS)
		fz_fail(f, NULL, "fd %d is past the fuzzer's table", fd);
	f->fdi[fd] = *fi;
	f->fdi[fd].known = true;
}

static void fd_forget(struct fz *f, int fd)
{
	if (fd >= 0 && fd < MAX_FDS)
		memset(&f->fdi[fd], 0, sizeof(f->fdi[fd]));
}

static void fd_socket(struct fz *f, int fd, bool ip, uint8_t proto,
		      uint8_t fams, bool ready)
{
	struct fdinfo fi = { .sock = true, .ip = ip, .proto = proto,
			     .fams = fams, .ready = ready, .slot = -1 };

	fd_register(f, fd, &fi);
}

static const struct {
	int family, type;
	const char *addr;
	bool v6only;
} slot_kinds[NSLOTS] = {
	{ AF_INET, SOCK_STREAM, "127.0.0.1", false },
	{ AF_INET6, SOCK_STREAM, "::", false },
	{ AF_INET6, SOCK_STREAM, "::1", true },
	{ AF_INET, SOCK_DGRAM, "127.0.0.1", false },
	{ AF_INET6, SOCK_DGRAM, "::", false },
	{ AF_INET6, SOCK_DGRAM, "::1", true },
};

static void slot_open(struct fz *f, int i)
{
	struct slot *s = &f->slot[i];
	struct fdinfo fi = { .sock = true, .ip = true, .ready = true };
	struct stat st;

	s->family = slot_kinds[i].family;
	s->type = slot_kinds[i].type;
	s->v6only = slot_kinds[i].v6only;
	s->fd = pd_server(s->family, s->type, slot_kinds[i].addr, 0, s->v6only);
	if (s->fd < 0 || fstat(s->fd, &st))
		fz_fail(f, NULL, "target socket %d: %s", i, strerror(errno));
	s->ino = st.st_ino;
	s->dupfd = dup(s->fd);
	if (s->dupfd < 0)
		fz_fail(f, NULL, "target socket %d: dup: %s", i,
			strerror(errno));
	fi.proto = s->type == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP;
	fi.fams = sock_fams(s->family, s->v6only);
	fi.slot = i;
	fd_register(f, s->fd, &fi);
	fd_register(f, s->dupfd, &fi);
}

/* Sockets and files that no rule may name, each for its own reason. */
static void bad_fds_open(struct fz *f)
{
	struct sockaddr_storage ss;
	struct fdinfo fi = { .slot = -1 };
	socklen_t len;
	int p[2], fd;

	if (pipe(p))
		fz_fail(f, NULL, "pipe: %s", strerror(errno));
	fd_register(f, p[0], &fi);
	fd_register(f, p[1], &fi);

	fd = socket(AF_INET, SOCK_DGRAM, 0);		/* not bound */
	fd_socket(f, fd, true, IPPROTO_UDP, FAM_V4, false);
	fd = socket(AF_INET6, SOCK_STREAM, 0);		/* not listening */
	len = pd_sockaddr(AF_INET6, "::1", 0, &ss);
	if (bind(fd, (struct sockaddr *)&ss, len))
		fz_fail(f, NULL, "bind: %s", strerror(errno));
	/* Bound to an IPv6 address that is not IPv4-mapped: IPv6-only. */
	fd_socket(f, fd, true, IPPROTO_TCP, FAM_V6, false);
	fd = socket(AF_INET, SOCK_DGRAM, 0);		/* connected */
	len = pd_sockaddr(AF_INET, "127.0.0.1", 9, &ss);
	if (connect(fd, (struct sockaddr *)&ss, len))
		fz_fail(f, NULL, "connect: %s", strerror(errno));
	fd_socket(f, fd, true, IPPROTO_UDP, FAM_V4, false);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);		/* not IP */
	fd_socket(f, fd, false, 0, 0, false);

	for (f->closed_fd = 900; fcntl(f->closed_fd, F_GETFD) >= 0;)
		f->closed_fd++;
}

/* Every socket made so far lives in another namespace from now on. */
static void fds_now_elsewhere(struct fz *f)
{
	int fd;

	for (fd = 0; fd < MAX_FDS; fd++)
		if (f->fdi[fd].sock) {
			f->fdi[fd].other_ns = true;
			f->fdi[fd].slot = -1;
		}
}

static void nl_open(struct fz *f, int si)
{
	struct nls *s = &f->s[si];
	int err;

	memset(s, 0, sizeof(*s));
	if (si == DUMP_SOCK) {
		/*
		 * Never read with a large buffer: the kernel sizes a dump's
		 * parts by the largest read, and these should come small.
		 */
		int one = 1;

		s->small = true;
		s->n.rx = malloc(PDN_RX_SIZE);
		s->n.sock = mnl_socket_open(NETLINK_GENERIC);
		if (!s->n.rx || !s->n.sock ||
		    mnl_socket_bind(s->n.sock, 0, MNL_SOCKET_AUTOPID) ||
		    mnl_socket_setsockopt(s->n.sock, NETLINK_EXT_ACK, &one,
					  sizeof(one)) ||
		    mnl_socket_setsockopt(s->n.sock, NETLINK_CAP_ACK, &one,
					  sizeof(one)))
			fz_fail(f, NULL, "the dump socket: %s", strerror(errno));
		s->n.fd = mnl_socket_get_fd(s->n.sock);
		s->n.portid = mnl_socket_get_portid(s->n.sock);
		s->n.family = f->family;
		s->n.seq = 1000;
	} else {
		err = pdn_open(&s->n);
		if (err)
			fz_fail(f, NULL, "netlink socket %d: %s", si,
				strerror(-err));
		if (!f->family)
			f->family = s->n.family;
	}
	s->open = true;
	fd_socket(f, s->n.fd, false, 0, 0, false);
}

static void exp_free(struct exp *x)
{
	mtab_free(&x->snap);
	free(x);
}

static void nl_close(struct fz *f, int si)
{
	struct nls *s = &f->s[si];

	if (!s->open)
		return;
	fd_forget(f, s->n.fd);
	pdn_close(&s->n);
	while (s->head != s->tail)
		exp_free(s->fifo[s->head++ % FIFO_MAX]);
	mtab_free(&s->dump.x.snap);
	free(s->dump.rules);
	memset(s, 0, sizeof(*s));
	sim_release(f, si);
}

/* ---- answers -------------------------------------------------------------- */

static const struct nlmsghdr *nl_next(struct fz *f, struct nls *s)
{
	if (s->small && s->n.rx_pos >= s->n.rx_len) {
		struct pollfd p = { .fd = s->n.fd, .events = POLLIN };
		ssize_t len;
		int ret;

		do {
			ret = poll(&p, 1, PDN_TIMEOUT_MS);
		} while (ret < 0 && errno == EINTR);
		if (ret <= 0) {
			if (!ret)
				errno = ETIMEDOUT;
			return NULL;
		}
		len = recv(s->n.fd, s->n.rx, 8192, MSG_DONTWAIT | MSG_TRUNC);
		if (len < 0)
			return NULL;
		if (len > 8192)
			fz_fail(f, NULL, "a datagram of %zd bytes on the dump socket",
				len);
		s->n.rx_len = len;
		s->n.rx_pos = 0;
		s->n.datagrams++;
	}
	return pdn_next(&s->n, PDN_TIMEOUT_MS);
}

static const char *fam_str(uint8_t fams)
{
	return fams == FAM_V4 ? "ipv4" : fams == FAM_V6 ? "ipv6" : "any";
}

static void mrule_str(const struct fz *f, const struct mrule *r, char *buf,
		      size_t len)
{
	const struct mtarget *t;
	unsigned int i, n;
	char a[64] = "";
	int k;

	if (r->plen)
		inet_ntop(r->fams == FAM_V4 ? AF_INET : AF_INET6, r->addr, a,
			  sizeof(a));
	k = snprintf(buf, len, "id %u %s %u-%u %s%s%s%.0u ->", r->id,
		     r->proto == IPPROTO_TCP ? "tcp" : "udp", r->pmin, r->pmax,
		     fam_str(r->fams), r->plen ? " dst " : "", a, r->plen);
	t = rule_targets(f, r, &n);
	for (i = 0; i < n && k > 0 && (size_t)k < len; i++)
		k += snprintf(buf + k, len - k, "%s %s %u", i ? "," : "",
			      t[i].sock ? "fd" : "port",
			      t[i].sock ? t[i].pid_fd : t[i].tport);
	if (r->group && k > 0 && (size_t)k < len)
		snprintf(buf + k, len - k, " (a group)");
}

#define TBIT(a)	(1u << T(a))
#define SBIT(a)	(1u << PORTDISPATCH_A_RULE_STATS_##a)

/*
 * Does the dumped target @d say what the model's @t is? A group's member
 * has its weight and its counters (no replies: the rule counts those); a
 * rule's one target has neither.
 */
static const char *target_differs(const struct pdn_target *d,
				  const struct mtarget *t, bool member,
				  uint8_t proto)
{
	if (member) {
		if (!(d->seen & TBIT(WEIGHT)) || d->weight != t->weight)
			return "member's weight";
		if (!(d->seen & TBIT(STATS)) || !(d->sseen & SBIT(STEERED)) ||
		    !(d->sseen & SBIT(UNDELIVERABLE)) ||
		    (d->sseen & SBIT(REPLIES)))
			return "member's counters";
	} else if (d->seen & (TBIT(WEIGHT) | TBIT(STATS))) {
		return "weight or counters of a rule's one target";
	}
	if (!t->sock)
		return (d->seen & TBIT(PORT)) && d->port == t->tport &&
		       !(d->seen & TBIT(PID)) ? NULL : "port target";
	if ((d->seen & TBIT(PORT)) || d->pid != t->pid ||
	    d->pid_fd != t->pid_fd || d->inode != t->ino)
		return "socket target (pid, fd or inode)";
	if (d->state != (proto == IPPROTO_TCP ?
			 PORTDISPATCH_SOCK_STATE_LISTENING :
			 PORTDISPATCH_SOCK_STATE_BOUND) ||
	    !(d->seen & TBIT(FAMILY)) || d->family != t->family ||
	    d->v6only != t->v6only)
		return "socket target (state, family or v6only)";
	return NULL;
}

/* Does the dumped rule @d say what the model's @r is? */
static const char *rule_differs(struct fz *f, const struct pdn_rule *d,
				const struct mrule *r, unsigned int *at)
{
	bool v4 = r->fams == FAM_V4;
	const struct mtarget *t;
	unsigned int i, n;

	*at = 0;
	if (d->malformed)
		return "malformed";
	if (d->cmd != CMD(RULE_GET))
		return "command";
	if (d->id != r->id)
		return "id";
	if (d->proto != r->proto || d->port_min != r->pmin ||
	    d->port_max != r->pmax)
		return "protocol or ports";
	if (r->fams == FAM_ALL ? PDN_HAS(d, R(FAMILY)) :
	    !PDN_HAS(d, R(FAMILY)) || d->family != (v4 ? AF_INET : AF_INET6))
		return "family";
	if (r->plen ? !PDN_HAS(d, R(DST)) || !PDN_HAS(d, R(DST_PLEN)) ||
		      d->plen != r->plen || d->dst_len != (v4 ? 4u : 16u) ||
		      memcmp(d->dst, r->addr, d->dst_len) :
		      PDN_HAS(d, R(DST)) || PDN_HAS(d, R(DST_PLEN)))
		return "destination";
	if (!PDN_HAS(d, R(TARGET)) || !PDN_SHAS(d, PORTDISPATCH_A_RULE_STATS_STEERED))
		return "target or counters missing";
	t = rule_targets(f, r, &n);
	if (d->ntargets != n)
		return "number of targets";
	for (i = 0; i < n; i++) {
		const char *why = target_differs(&d->m[i], &t[i], r->group,
						 r->proto);

		if (why) {
			*at = i + 1;
			return why;
		}
	}
	return NULL;
}

static void dump_done(struct fz *f, struct nls *s)
{
	struct dumpc *d = &s->dump;
	const struct mtab *t = &d->x.snap;
	unsigned int i;

	f->n_dumps++;
	if (d->parts > 2)
		f->n_multi++;
	if (t->n > f->max_table)
		f->max_table = t->n;
	if (d->not_multi)
		fz_fail(f, &d->x, "dump: a rule without NLM_F_MULTI");
	for (i = 1; i < d->count; i++) {
		const struct pdn_rule *a = &d->rules[i - 1], *b = &d->rules[i];
		int pa = a->proto == IPPROTO_TCP ? 0 : 1;
		int pb = b->proto == IPPROTO_TCP ? 0 : 1;

		if (pa > pb || (pa == pb && (a->port_min > b->port_min ||
		    (a->port_min == b->port_min && a->id >= b->id))))
			fz_fail(f, &d->x, "dump: rule %u (id %u) out of order",
				i, b->id);
	}
	if (d->intr) {
		f->n_intr++;
		if (f->m.generation == d->x.gen0)
			fz_fail(f, &d->x, "dump flagged NLM_F_DUMP_INTR, but nothing was committed since it began");
	} else {
		char want[512], where[32] = "";

		for (i = 0; i < d->count && i < t->n; i++) {
			unsigned int at;
			const char *why = rule_differs(f, &d->rules[i], &t->r[i],
						       &at);

			if (why) {
				mrule_str(f, &t->r[i], want, sizeof(want));
				if (at)
					snprintf(where, sizeof(where),
						 " (target %u)", at);
				fz_fail(f, &d->x, "dump: rule %u differs from the model's in its %s%s: the kernel has id %u %u-%u with %u targets, the model %s",
					i, why, where,
					d->rules[i].id, d->rules[i].port_min,
					d->rules[i].port_max,
					d->rules[i].ntargets, want);
			}
		}
		if (d->count != t->n) {
			if (i < t->n)
				mrule_str(f, &t->r[i], want, sizeof(want));
			fz_fail(f, &d->x, "dump: %u rules, the model has %u (first missing: %s; first extra: id %u)",
				d->count, t->n, i < t->n ? want : "none",
				i < d->count ? d->rules[i].id : 0);
		}
	}
	d->open = false;
	s->dump_running = false;
	mtab_free(&d->x.snap);
	d->count = 0;
}

static void dump_msg(struct fz *f, struct nls *s, const struct nlmsghdr *nlh)
{
	struct dumpc *d = &s->dump;

	if (nlh->nlmsg_flags & NLM_F_DUMP_INTR)
		d->intr = true;
	if (s->n.datagrams != d->last_dgram) {
		d->last_dgram = s->n.datagrams;
		d->parts++;
	}
	if (nlh->nlmsg_type == NLMSG_DONE) {
		struct pdn_status st = { 0 };

		pdn_parse_status(nlh, &st);
		if (st.err)
			fz_fail(f, &d->x, "dump ended with %s \"%s\"",
				strerror(st.err), st.msg);
		dump_done(f, s);
		return;
	}
	if (nlh->nlmsg_type == NLMSG_ERROR) {
		struct pdn_status st = { 0 };

		pdn_parse_status(nlh, &st);
		fz_fail(f, &d->x, "dump answered %s \"%s\"", strerror(st.err),
			st.msg);
	}
	if (nlh->nlmsg_type != f->family)
		fz_fail(f, &d->x, "dump: a message of type %u", nlh->nlmsg_type);
	if (d->count == d->cap) {
		d->cap = d->cap ? 2 * d->cap : 256;
		d->rules = realloc(d->rules, d->cap * sizeof(*d->rules));
		if (!d->rules)
			abort();
	}
	pdn_parse_rule(nlh, s->n.datagrams, &d->rules[d->count++]);
	if (!(nlh->nlmsg_flags & NLM_F_MULTI))
		d->not_multi = true;
}

static uint32_t stats_rules(const struct nlmsghdr *nlh, bool *found)
{
	const struct nlattr *a;

	*found = false;
	mnl_attr_for_each(a, nlh, GENL_HDRLEN)
		if (mnl_attr_get_type(a) == PORTDISPATCH_A_NS_STATS_RULES &&
		    !mnl_attr_validate(a, MNL_TYPE_U32)) {
			*found = true;
			return mnl_attr_get_u32(a);
		}
	return 0;
}

static struct exp *fifo_head(struct nls *s)
{
	return s->head == s->tail ? NULL : s->fifo[s->head % FIFO_MAX];
}

static void fifo_pop(struct nls *s)
{
	exp_free(s->fifo[s->head++ % FIFO_MAX]);
}

/* Silent expectations at the head are met by nothing arriving. */
static void skip_silent(struct nls *s)
{
	struct exp *x;

	while ((x = fifo_head(s)) && x->kind == X_SILENT)
		fifo_pop(s);
}

static void handle(struct fz *f, int si, const struct nlmsghdr *nlh)
{
	struct nls *s = &f->s[si];
	struct exp *x;

	if (s->dump.open && nlh->nlmsg_seq == s->dump.x.seq) {
		dump_msg(f, s, nlh);
		return;
	}
	skip_silent(s);
	x = fifo_head(s);
	if (!x)
		fz_fail(f, NULL, "socket %d: an answer nobody waits for: type %u, flags %#x, seq %u",
			si, nlh->nlmsg_type, nlh->nlmsg_flags, nlh->nlmsg_seq);
	if (nlh->nlmsg_seq != x->seq)
		fz_fail(f, x, "an answer (type %u, flags %#x) to seq %u while seq %u waits: a lost or stray answer",
			nlh->nlmsg_type, nlh->nlmsg_flags, nlh->nlmsg_seq,
			x->seq);
	if (x->kind == X_DUMP) {
		if (s->dump.open)
			fz_fail(f, x, "two dumps at once on socket %d", si);
		s->dump.open = true;
		s->dump.x = *x;
		s->dump.intr = s->dump.not_multi = false;
		s->dump.count = s->dump.parts = 0;
		s->dump.last_dgram = 0;
		x->snap.r = NULL;	/* the collector has it now */
		fifo_pop(s);
		dump_msg(f, s, nlh);
		return;
	}
	if (nlh->nlmsg_type == NLMSG_ERROR) {
		struct pdn_status st = { 0 };

		pdn_parse_status(nlh, &st);
		if (st.err != x->err)
			fz_fail(f, x, "answered %s (%d) \"%s\", the model expected %s (%d)%s",
				st.err ? strerror(st.err) : "ack", st.err,
				st.msg, x->err ? strerror(x->err) : "an ack",
				x->err,
				st.err == ETIMEDOUT ? " (the batch idled out: a slow guest?)" : "");
		if (x->replies)
			fz_fail(f, x, "acked after %u of its %u replies",
				x->replies - 1, x->replies);
		fifo_pop(s);
		return;
	}
	if (nlh->nlmsg_type != f->family || !x->replies)
		fz_fail(f, x, "an unexpected message of type %u before the ack",
			nlh->nlmsg_type);
	x->replies--;
	if (x->echo) {
		struct pdn_rule r;
		unsigned int at;
		const char *why;
		char want[512];

		pdn_parse_rule(nlh, 0, &r);
		why = rule_differs(f, &r, &x->echo_rule, &at);
		if (why) {
			mrule_str(f, &x->echo_rule, want, sizeof(want));
			fz_fail(f, x, "the echo differs from the model's rule in its %s (target %u): the kernel's is id %u with %u targets, the model's %s",
				why, at, r.id, r.ntargets, want);
		}
	}
	if (x->stats) {
		bool found;
		uint32_t n = stats_rules(nlh, &found);

		if (!found || n != x->stats_rules)
			fz_fail(f, x, "STATS_GET counts %u rules, the model %u",
				n, x->stats_rules);
	}
}

/* Reads socket @si's answers until none is owed (and its dump is over). */
static void drain(struct fz *f, int si, bool keep_dump)
{
	struct nls *s = &f->s[si];

	for (;;) {
		const struct nlmsghdr *nlh;

		skip_silent(s);
		if (!fifo_head(s) && (keep_dump || !s->dump.open))
			return;
		nlh = nl_next(f, s);
		if (!nlh) {
			struct exp *x = fifo_head(s);

			fz_fail(f, x, "no answer%s within %d ms: %s",
				x ? "" : " (the rest of a dump)",
				PDN_TIMEOUT_MS, strerror(errno));
		}
		handle(f, si, nlh);
	}
}

/* Reads what one datagram of socket @si holds, at most. */
static void read_one_datagram(struct fz *f, int si)
{
	struct nls *s = &f->s[si];

	do {
		const struct nlmsghdr *nlh = nl_next(f, s);

		if (!nlh)
			fz_fail(f, NULL, "socket %d: nothing to read: %s", si,
				strerror(errno));
		handle(f, si, nlh);
	} while (s->n.rx_pos < s->n.rx_len);
}

/* ---- sending ---------------------------------------------------------------- */

struct dg {
	int si;
	uint8_t buf[DGRAM_MAX * (MSG_MAX + 8)];
	size_t len;
	struct exp *x[DGRAM_MAX];
	int n;
};

static void dg_start(struct dg *d, int si)
{
	d->si = si;
	d->len = 0;
	d->n = 0;
}

static void dg_add(struct fz *f, struct dg *d, const uint8_t *msg, size_t len,
		   const char *what)
{
	struct exp *x = calloc(1, sizeof(*x));

	if (!x)
		abort();
	memcpy(d->buf + d->len, msg, len);
	predict(f, d->si, d->buf + d->len, len, x);
	x->what = what;
	x->len = len < MSG_MAX ? len : MSG_MAX;
	memcpy(x->msg, msg, x->len);
	x->index = ++f->sent;
	{
		struct hist *h = &hist[hist_n++ % HIST];

		h->index = x->index;
		h->si = d->si;
		h->what = what;
		h->kind = x->kind;
		h->err = x->err;
		h->len = len < sizeof(h->msg) ? len : sizeof(h->msg);
		memcpy(h->msg, msg, h->len);
	}
	memset(d->buf + d->len + len, 0, NLMSG_ALIGN(len) - len);
	d->len += NLMSG_ALIGN(len);
	d->x[d->n++] = x;
}

static void dg_add_tm(struct fz *f, struct dg *d, const struct tmsg *m)
{
	uint8_t b[MSG_MAX + 64];
	size_t len = tm_bytes(m, b);

	dg_add(f, d, b, len, m->what);
}

static void dg_send(struct fz *f, struct dg *d)
{
	struct nls *s = &f->s[d->si];
	ssize_t n;
	int i;

	if (!d->n)
		return;
	n = mnl_socket_sendto(s->n.sock, d->buf, d->len);
	if (n != (ssize_t)d->len)
		fz_fail(f, d->x[0], "sending %zu bytes: %s", d->len,
			strerror(errno));
	for (i = 0; i < d->n; i++) {
		if (s->tail - s->head == FIFO_MAX)
			fz_fail(f, d->x[i], "too many answers owed");
		s->fifo[s->tail++ % FIFO_MAX] = d->x[i];
	}
	d->n = 0;
	d->len = 0;
}

/* One message alone, answered before this returns. */
static void send_one(struct fz *f, int si, const struct tmsg *m)
{
	struct dg *d = malloc(sizeof(*d));

	if (!d)
		abort();
	dg_start(d, si);
	dg_add_tm(f, d, m);
	dg_send(f, d);
	free(d);
	drain(f, si, false);
}

/* ---- operations ------------------------------------------------------------ */

static int pick_sock(struct fz *f)
{
	if (f->m.owner >= 0 && pct(f, 75))
		return f->m.owner;
	return pct(f, 60) ? 0 : below(f, NL_SOCKS);
}

/* One message of the mix into @d, from socket d->si. */
static void add_mixed(struct fz *f, struct dg *d)
{
	unsigned int r = below(f, 1000);

	/* A batch of refusals never commits: its owner mostly behaves. */
	if (f->m.owner == d->si && r >= 490 && pct(f, 85))
		r = below(f, 490);
	uint8_t b[MSG_MAX + 64];
	struct tmsg m;
	size_t len;

	if (r < 400) {
		gen_valid(f, d->si, &m);
		f->n_valid++;
		dg_add_tm(f, d, &m);
	} else if (r < 405) {
		gen_plain(f, d->si, &m, CMD(FLUSH));
		f->n_valid++;
		dg_add_tm(f, d, &m);
	} else if (r < 430) {
		gen_plain(f, d->si, &m, CMD(STATS_GET));
		f->n_valid++;
		dg_add_tm(f, d, &m);
	} else if (r < 490) {
		uint8_t cmd;

		if (f->m.owner < 0)
			cmd = CMD(BATCH_BEGIN);
		else if (f->m.owner == d->si)
			cmd = pct(f, 60) ? CMD(BATCH_COMMIT) : CMD(BATCH_ABORT);
		else
			cmd = CMD(BATCH_BEGIN) + below(f, 3);
		if (f->m.owner >= 0 && f->m.owner != d->si)
			f->n_fights++;
		gen_plain(f, d->si, &m, cmd);
		f->n_valid++;
		dg_add_tm(f, d, &m);
	} else if (r < 850) {
		unsigned int i, n = 1 + below(f, 2);

		if (pct(f, 85))
			gen_valid(f, d->si, &m);
		else
			gen_plain(f, d->si, &m, 1 + below(f, 9));
		for (i = 0; i < n; i++)
			mutate_tree(f, &m);
		m.what = "mutated";
		len = tm_bytes(&m, b);
		if (pct(f, 30)) {
			len = mutate_bytes(f, b, len);
			m.what = "mutated, bytes";
		}
		f->n_mut++;
		dg_add(f, d, b, len, m.what);
	} else {
		len = gen_random(f, d->si, b);
		f->n_rand++;
		dg_add(f, d, b, len, "random");
	}
}

static void op_datagram(struct fz *f)
{
	struct dg *d = malloc(sizeof(*d));
	int i, n = 1 + below(f, DGRAM_MAX);

	if (!d)
		abort();
	dg_start(d, pick_sock(f));
	for (i = 0; i < n; i++)
		add_mixed(f, d);
	dg_send(f, d);
	i = d->si;
	free(d);
	drain(f, i, false);
}

/* A message whose netlink header is cut: dropped whole, never answered. */
static void op_silent(struct fz *f)
{
	struct dg *d = malloc(sizeof(*d));
	uint8_t b[MSG_MAX + 64];
	struct nlmsghdr h;
	struct tmsg m;
	size_t len;

	if (!d)
		abort();
	gen_valid(f, 0, &m);
	len = tm_bytes(&m, b);
	memcpy(&h, b, sizeof(h));
	switch (below(f, 3)) {
	case 0:
		len = 1 + below(f, NLMSG_HDRLEN - 1);
		break;
	case 1:
		h.nlmsg_len = len + 1 + below(f, 64);
		break;
	default:
		h.nlmsg_len = below(f, NLMSG_HDRLEN);
		break;
	}
	memcpy(b, &h, sizeof(h) < len ? sizeof(h) : len);
	dg_start(d, 0);
	dg_add(f, d, b, len, "cut header");
	if (d->x[0]->kind != X_SILENT)
		fz_fail(f, d->x[0], "the model answers a cut header");
	f->n_silent++;
	dg_send(f, d);
	free(d);
}

static void op_dump(struct fz *f, int si)
{
	struct tmsg m;

	gen_plain(f, si, &m, CMD(RULE_GET));
	m.flags |= NLM_F_DUMP;
	send_one(f, si, &m);
}

/* STATS_GET and a whole dump, with nothing else going on. */
static void op_check(struct fz *f)
{
	struct tmsg m;

	gen_plain(f, 0, &m, CMD(STATS_GET));
	send_one(f, 0, &m);
	op_dump(f, 0);
}

/*
 * A dump read in part: one datagram, then changes (on its own socket or
 * another), then the rest; or its socket closed in the middle.
 */
static void op_dump_interrupted(struct fz *f)
{
	struct dg *d;
	struct tmsg m;
	int i, n = 1 + below(f, 4);

	if (!f->s[DUMP_SOCK].open)
		nl_open(f, DUMP_SOCK);
	f->n_idump++;
	gen_plain(f, DUMP_SOCK, &m, CMD(RULE_GET));
	m.flags |= NLM_F_DUMP;
	d = malloc(sizeof(*d));
	if (!d)
		abort();
	dg_start(d, DUMP_SOCK);
	dg_add_tm(f, d, &m);
	dg_send(f, d);
	read_one_datagram(f, DUMP_SOCK);

	if (pct(f, 20)) {		/* abandoned */
		nl_close(f, DUMP_SOCK);
		free(d);
		return;
	}
	for (i = 0; i < n; i++) {
		int si = pct(f, 50) ? DUMP_SOCK : pick_sock(f);

		dg_start(d, si);
		if (pct(f, 10))
			gen_plain(f, si, &m, CMD(FLUSH));
		else
			gen_valid(f, si, &m);
		dg_add_tm(f, d, &m);
		f->n_valid++;
		dg_send(f, d);
		drain(f, si, true);
	}
	free(d);
	drain(f, DUMP_SOCK, false);
}

/* A netlink socket closed: with its batch, if it has one. */
static void op_close_nl(struct fz *f)
{
	int si = f->m.owner >= 0 && pct(f, 70) ? f->m.owner :
		 (int)below(f, NL_SOCKS);

	nl_close(f, si);
	nl_open(f, si);
}

/* Is socket @i among @r's targets? */
static bool rule_uses(const struct fz *f, const struct mrule *r, int i)
{
	const struct mtarget *t;
	unsigned int j, n;

	t = rule_targets(f, r, &n);
	for (j = 0; j < n; j++)
		if (t[j].sock && t[j].slot == i)
			return true;
	return false;
}

/*
 * pd_reap_locked() once socket @i closed, in one commit: a rule of one
 * target on it leaves; of a group, the member leaves, and the members
 * left replace the group under its RULE_ID, with its key (the families
 * all its members made) and their weights; the last member leaving
 * removes the group. The reaper takes its rules in the order they were
 * committed, and a replacement goes into the store after its siblings.
 */
static void sim_reap(struct fz *f, int i)
{
	struct mtab *t = &f->m.live;
	uint64_t last = 0;
	bool changed = false;

	for (;;) {
		const struct mgroup *g;
		struct mrule *r = NULL;
		struct mgroup rest;
		unsigned int j;

		for (j = 0; j < t->n; j++)
			if (t->r[j].ins > last && rule_uses(f, &t->r[j], i) &&
			    (!r || t->r[j].ins < r->ins))
				r = &t->r[j];
		if (!r)
			break;
		last = r->ins;
		changed = true;
		g = rule_group(f, r);
		rest.n = 0;
		for (j = 0; g && j < g->n; j++)
			if (!g->m[j].sock || g->m[j].slot != i)
				rest.m[rest.n++] = g->m[j];
		if (rest.n) {
			r->group = group_keep(f, &rest);
			r->ins = ++f->m.next_ins;
			f->n_left++;
		} else {
			f->n_emptied += !!g;
			mtab_del(t, r - t->r);
		}
	}
	if (changed)
		f->m.generation++;
}

/* Target socket @i closes, and opens again; a dump reaps at once. */
static void churn(struct fz *f, int i)
{
	fd_forget(f, f->slot[i].fd);
	fd_forget(f, f->slot[i].dupfd);
	close(f->slot[i].fd);
	close(f->slot[i].dupfd);
	sim_reap(f, i);
	f->n_churn++;
	op_dump(f, below(f, NL_SOCKS));
	slot_open(f, i);
}

/*
 * A group with socket @i among its members, made now (RULE_REPLACE, no
 * batch being open): ports, and half the time another socket of ours
 * whose families meet @i's, returned (else -1) to close in turn.
 */
static int churn_group(struct fz *f, int i)
{
	int base = i < 3 ? 0 : 3, j = -1, member[4], n = 0, k;
	unsigned int ports;
	struct tmsg m;

	tm_init(f, 0, &m, CMD(RULE_REPLACE));
	tm_u8(&m, R(PROTO), base ? IPPROTO_UDP : IPPROTO_TCP);
	tm_u32(&m, R(PORT_MIN), PORT_BASE + below(f, PORT_SPAN));
	/* The dual-stack socket (1) meets both IPv4 (0) and IPv6-only (2). */
	if (pct(f, 50))
		j = base + (i - base != 1 ? 1 : pct(f, 50) ? 0 : 2);
	ports = j < 0 ? 1 + below(f, 3) : pct(f, 60) ? 0 : 1 + below(f, 2);
	member[n++] = i;
	if (j >= 0)
		member[n++] = j;
	for (; ports; ports--, n++)
		member[n] = -1 - n;
	/* In any order. */
	for (k = n - 1; k > 0; k--) {
		int o = below(f, k + 1), tmp = member[k];

		member[k] = member[o];
		member[o] = tmp;
	}
	for (k = 0; k < n; k++) {
		struct ta *t = tm_nest(&m, R(TARGET));

		if (member[k] >= 0)
			kid_socket(f, t, member[k], 10);
		else
			ta_kid_u32(t, T(PORT), 10000 - member[k]);
		kid_weight(f, t, false);
	}
	f->n_valid++;
	send_one(f, 0, &m);
	return j;
}

/* A socket of a live group, or -1. */
static int group_socket(struct fz *f)
{
	const struct mtab *t = &f->m.live;
	unsigned int i, j, start = below(f, t->n);

	for (i = 0; i < t->n; i++) {
		const struct mgroup *g = rule_group(f, &t->r[(start + i) % t->n]);

		for (j = 0; g && j < g->n; j++)
			if (g->m[(start + j) % g->n].sock)
				return g->m[(start + j) % g->n].slot;
	}
	return -1;
}

/*
 * A target socket closes: its rules leave, or it leaves their groups.
 * Mostly a member of a group: one made for it, then often another member
 * too, which may be the group's last; or one of a group of the mix.
 */
static void op_churn(struct fz *f)
{
	int i = below(f, NSLOTS), j = -1, k;
	unsigned int r = below(f, 100);

	if (f->m.owner >= 0)
		return;
	if (r < 50)
		j = churn_group(f, i);
	else if (r < 80 && (k = group_socket(f)) >= 0)
		i = k;
	churn(f, i);
	if (j >= 0 && pct(f, 70))
		churn(f, j);
}

/* Rules by the hundred in one batch, so that dumps take several parts. */
static void op_bulk(struct fz *f)
{
	struct dg *d = malloc(sizeof(*d));
	unsigned int i, n = 100 + below(f, 200);
	uint32_t port = below(f, 20000);
	struct tmsg m;

	if (!d)
		abort();
	gen_plain(f, 0, &m, CMD(BATCH_BEGIN));
	send_one(f, 0, &m);
	dg_start(d, 0);
	for (i = 0; i < n; i++, port++) {
		tm_init(f, 0, &m, CMD(RULE_ADD));
		tm_u8(&m, R(PROTO), i % 2 ? IPPROTO_UDP : IPPROTO_TCP);
		tm_u32(&m, R(PORT_MIN), BULK_BASE + port % 20000);
		if (pct(f, 70)) {
			ta_kid_u32(tm_nest(&m, R(TARGET)), T(PORT), 8080);
		} else {
			int slot = below(f, 3) + (i % 2 ? 3 : 0);

			ta_kid_u32(tm_nest(&m, R(TARGET)), T(FD), f->slot[slot].fd);
		}
		dg_add_tm(f, d, &m);
		f->n_valid++;
		if (d->n == DGRAM_MAX) {
			dg_send(f, d);
			drain(f, 0, false);
			dg_start(d, 0);
		}
	}
	dg_send(f, d);
	drain(f, 0, false);
	free(d);
	gen_plain(f, 0, &m, CMD(BATCH_COMMIT));
	send_one(f, 0, &m);
	/* Now dumps take parts: read one in parts, changing the table. */
	op_dump_interrupted(f);
}

/* The open batch is ended well within batch_idle_ms. */
static void end_batch(struct fz *f)
{
	struct tmsg m;
	int si = f->m.owner;

	if (si < 0)
		return;
	gen_plain(f, si, &m, pct(f, 70) ? CMD(BATCH_COMMIT) : CMD(BATCH_ABORT));
	send_one(f, si, &m);
}

static void step(struct fz *f)
{
	unsigned int r = below(f, 1000);

	if (f->m.owner >= 0 && pd_now_ms() - f->m.batch_since > BATCH_WALL_MS)
		end_batch(f);
	if (f->sent >= f->next_check) {
		f->next_check += FUZZ_CHECK_EVERY;
		op_check(f);
	} else if (r < 6) {
		op_dump_interrupted(f);
	} else if (r < 8) {
		op_close_nl(f);
	} else if (r < 10 && f->priv) {
		op_churn(f);
	} else if (r < 12 && f->priv && f->m.owner < 0 && f->m.live.n < 400) {
		op_bulk(f);
	} else if (r < 30) {
		op_silent(f);
	} else if (r < 45) {
		op_dump(f, below(f, NL_SOCKS));
	} else {
		op_datagram(f);
	}
}

/* ---- contexts --------------------------------------------------------------- */

static void fz_counts_reset(struct fz *f)
{
	f->n_valid = f->n_mut = f->n_rand = f->n_silent = f->n_dumps = 0;
	f->n_intr = f->n_accepted = f->n_batches = f->n_commits = 0;
	f->n_fights = f->n_churn = 0;
	f->n_multi = f->n_idump = f->max_table = 0;
	f->n_grp_sent = f->n_grp_made = f->n_left = f->n_emptied = 0;
}

static bool kernel_splits_ops(void)
{
	struct utsname u;
	int major = 0, minor = 0;

	uname(&u);
	sscanf(u.release, "%d.%d", &major, &minor);
	return major > 6 || (major == 6 && minor >= 2);
}

static uint32_t read_max_rules(void)
{
	char buf[32];

	if (pd_read_file("/sys/module/portdispatch/parameters/max_rules", buf,
			 sizeof(buf)))
		return 65536;
	return strtoul(buf, NULL, 10);
}

/*
 * A context in the namespace the caller is in: its sockets, its model
 * (empty: the namespace is new) and its own stream of randomness.
 */
static void fz_setup(struct fz *f, const char *ctx, uint64_t stream, bool priv)
{
	pid_t pid;
	int i;

	f->ctx = ctx;
	f->rs = opt_seed ^ (stream * 0xd1342543de82ef95ULL);
	fz_counts_reset(f);
	f->priv = priv;
	f->split_ops = kernel_splits_ops();
	f->pid = getpid();
	f->ppid = getppid();
	f->max_rules = read_max_rules();
	memset(&f->m, 0, sizeof(f->m));
	f->m.owner = -1;
	free(f->grp);
	f->grp = NULL;
	f->ngrp = f->grp_cap = 0;
	f->next_check = f->sent + FUZZ_CHECK_EVERY;

	pid = fork();
	if (pid < 0)
		fz_fail(f, NULL, "fork: %s", strerror(errno));
	if (!pid)
		_exit(0);
	waitpid(pid, NULL, 0);
	f->dead_pid = pid;

	for (i = 0; i < NSLOTS; i++)
		slot_open(f, i);
	bad_fds_open(f);
	for (i = 0; i < NL_SOCKS; i++)
		nl_open(f, i);
}

static void fz_run(struct fz *f, unsigned long messages)
{
	unsigned long end = f->sent + messages;

	f->start_ms = pd_now_ms();
	while (f->sent < end)
		step(f);
	end_batch(f);
	op_check(f);
}

static void fz_report(struct fz *f, unsigned long messages)
{
	long ms = pd_now_ms() - f->start_ms;

	printf("# %s: %lu messages in %ld.%01ld s, %lu messages/s (seed %llu)\n",
	       f->ctx, messages, ms / 1000, ms % 1000 / 100,
	       ms ? messages * 1000 / ms : 0, (unsigned long long)opt_seed);
	printf("# %s: %lu valid, %lu mutated, %lu random, %lu cut; %lu accepted; %lu dumps (%lu read in part, %lu in 3 parts or more, %lu flagged interrupted; up to %lu rules); %lu batches (%lu committed, %lu fights); %lu sockets closed under rules\n",
	       f->ctx, f->n_valid, f->n_mut, f->n_rand, f->n_silent,
	       f->n_accepted, f->n_dumps, f->n_idump, f->n_multi, f->n_intr,
	       f->max_table, f->n_batches, f->n_commits, f->n_fights,
	       f->n_churn);
	printf("# %s: %lu requests of several targets, %lu groups made; %lu groups lost a member that closed, %lu their last\n",
	       f->ctx, f->n_grp_sent, f->n_grp_made, f->n_left, f->n_emptied);
	fflush(stdout);
}

static void fz_close(struct fz *f)
{
	int i;

	for (i = 0; i <= NL_SOCKS; i++)
		nl_close(f, i);
	mtab_free(&f->m.live);
	mtab_free(&f->m.staged);
	free(f->grp);
	f->grp = NULL;
	f->ngrp = f->grp_cap = 0;
}

static unsigned long budget(unsigned int permille)
{
	return opt_messages * permille / 1000;
}

/* ---- the tests ---------------------------------------------------------------- */

FIXTURE(fuzz) {
	struct fz *f;
};

FIXTURE_SETUP(fuzz)
{
	struct pdn n;
	int err = pdn_open(&n);

	if (err == -ENOENT)
		SKIP(return, "no \"%s\" generic netlink family: the module is not loaded",
		     PORTDISPATCH_FAMILY_NAME);
	ASSERT_EQ(0, err) TH_LOG("a generic netlink socket: %s", strerror(-err));
	pdn_close(&n);
	self->f = calloc(1, sizeof(*self->f));
	ASSERT_NE(NULL, self->f);
	self->f->md = _metadata;
}

FIXTURE_TEARDOWN(fuzz)
{
	free(self->f);
}

static void say_seed(const char *what, unsigned long messages)
{
	printf("# %s: seed %llu, %lu messages (reproduce: fuzz_netlink --seed %llu --messages %lu)\n",
	       what, (unsigned long long)opt_seed, messages,
	       (unsigned long long)opt_seed, opt_messages);
	if (scaled_down)
		printf("# %s: %lu messages in all, not %lu: %s\n", what,
		       opt_messages, opt_messages * 4, scaled_down);
	fflush(stdout);
}

TEST_F_TIMEOUT(fuzz, privileged, 200)
{
	struct fz *f = self->f;
	int other = pd_server(AF_INET, SOCK_STREAM, "127.0.0.1", 0, false);
	unsigned long n = budget(550);

	ASSERT_LE(0, other);
	ASSERT_EQ(0, pd_enter_netns());
	say_seed("privileged", n);
	fz_setup(f, "privileged", 1, true);
	/* A listener of the namespace the test started in. */
	fd_socket(f, other, true, IPPROTO_TCP, FAM_V4, true);
	f->fdi[other].other_ns = true;
	fz_run(f, n);
	fz_report(f, n);
	fz_close(f);
}

static bool no_capabilities(void)
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3,
	};
	struct __user_cap_data_struct data[2] = { { 0 } };

	if (syscall(SYS_capget, &hdr, data))
		return false;
	return !(data[0].effective | data[1].effective | data[0].permitted |
		 data[1].permitted);
}

#define CHILD_SKIP	42

/* In a child: unprivileged, then in namespaces of its own. */
static int unprivileged_child(struct fz *f)
{
	unsigned long n = budget(80), accepted;
	int i;

	for (i = 0; i <= NL_SOCKS; i++)
		nl_close(f, i);
	if (setgroups(0, NULL) || setresgid(65534, 65534, 65534) ||
	    setresuid(65534, 65534, 65534) || !no_capabilities()) {
		fprintf(stderr, "# cannot become an unprivileged user: %s\n",
			strerror(errno));
		return 100;
	}

	/* Every request to the privileged namespace is refused. */
	f->priv = false;
	f->ctx = "unprivileged uid, privileged namespace";
	for (i = 0; i < NL_SOCKS; i++)
		nl_open(f, i);
	f->next_check = f->sent + FUZZ_CHECK_EVERY;
	fz_counts_reset(f);
	accepted = f->n_accepted;
	f->start_ms = pd_now_ms();
	while (f->sent < n)
		step(f);
	if (f->n_accepted != accepted)
		fz_fail(f, NULL, "the model accepted %lu requests of the unprivileged user",
			f->n_accepted - accepted);
	fz_report(f, n);
	for (i = 0; i <= NL_SOCKS; i++)
		nl_close(f, i);

	/* Its own user and network namespace, its own table. */
	if (unshare(CLONE_NEWUSER)) {
		printf("# unshare(CLONE_NEWUSER) as uid 65534: %s\n",
		       strerror(errno));
		return CHILD_SKIP;
	}
	if (pd_enter_netns()) {
		fprintf(stderr, "# a network namespace of its own: %s\n",
			strerror(errno));
		return 101;
	}
	fds_now_elsewhere(f);
	n = budget(330);
	fz_setup(f, "unprivileged user, own namespaces", 3, true);
	fz_run(f, n);
	fz_report(f, n);
	fz_close(f);
	return 0;
}

TEST_F_TIMEOUT(fuzz, unprivileged, 200)
{
	struct fz *f = self->f;
	unsigned long n = budget(40);
	int status;
	pid_t pid;

	ASSERT_EQ(0, pd_enter_netns());
	say_seed("unprivileged", budget(450));
	/* A table to protect, made as root. */
	fz_setup(f, "privileged namespace, before", 2, true);
	fz_run(f, n);

	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		f->sent = 0;
		_exit(unprivileged_child(f));
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	if (WEXITSTATUS(status) == CHILD_SKIP)
		SKIP(return, "unprivileged users may not make user namespaces here");
	ASSERT_EQ(0, WEXITSTATUS(status))
		TH_LOG("the unprivileged child failed (100+: setup)");

	/* Nothing the child sent changed the privileged table. */
	f->ctx = "privileged namespace, after";
	op_check(f);
	fz_close(f);
}

/* Nothing holds the module: it unloads, and is loaded again. */
TEST_F_TIMEOUT(fuzz, module_unloads, 60)
{
	const char *ko = getenv("PD_MODULE");
	long end = pd_now_ms() + pd_ms(20000);
	int fd;

	if (!ko || access(ko, R_OK))
		SKIP(return, "PD_MODULE names no module to load again");
	while (syscall(SYS_delete_module, "portdispatch", O_NONBLOCK)) {
		char refs[32] = "?";

		ASSERT_TRUE(errno == EAGAIN || errno == EWOULDBLOCK ||
			    errno == EBUSY)
			TH_LOG("delete_module: %s", strerror(errno));
		pd_read_file("/sys/module/portdispatch/refcnt", refs,
			     sizeof(refs));
		ASSERT_LT(pd_now_ms(), end)
			TH_LOG("the module is still in use (refcnt %s)", refs);
		usleep(20000);
	}
	EXPECT_NE(0, access("/sys/module/portdispatch", F_OK));
	fd = open(ko, O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, fd) TH_LOG("%s: %s", ko, strerror(errno));
	ASSERT_EQ(0, syscall(SYS_finit_module, fd, "", 0))
		TH_LOG("loading %s again: %s", ko, strerror(errno));
	close(fd);
}

int main(int argc, char **argv)
{
	char **args = calloc(argc + 1, sizeof(*args));
	struct __fixture_metadata *fx;
	struct __test_metadata *t;
	const char *stress = getenv("PORTDISPATCH_STRESS");
	unsigned long factor;
	int i, n = 1;

	if (!args)
		return 1;
	args[0] = argv[0];
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
			opt_seed = strtoull(argv[++i], NULL, 0);
			opt_seed_set = true;
		} else if (!strcmp(argv[i], "--messages") && i + 1 < argc) {
			opt_messages = strtoul(argv[++i], NULL, 0);
		} else {
			args[n++] = argv[i];
		}
	}
	if (!opt_seed_set) {
		int fd = open("/dev/urandom", O_RDONLY);

		if (fd < 0 || read(fd, &opt_seed, sizeof(opt_seed)) !=
		    sizeof(opt_seed))
			opt_seed = (uint64_t)time(NULL) ^ getpid();
		if (fd >= 0)
			close(fd);
		opt_seed %= 1000000000;	/* short enough to type */
	}
	if (!opt_messages) {
		opt_messages = stress && !strcmp(stress, "1") ?
			       FUZZ_STRESS_MESSAGES : FUZZ_MESSAGES;
		/*
		 * The debug kernel (KASAN, kmemleak, lockdep) under TCG
		 * answers about 300 messages a second, against 10,000 and
		 * more on Debian's: a quarter keeps a run within 90 s there.
		 */
		if (pd_time_scale() > 1) {
			opt_messages /= 4;
			scaled_down = "a quarter of the count on this slow kernel (about 300 messages/s): --messages for more";
		}
	}
	/* Whatever the count: the kernel, not --messages, sets the mix. */
	if (pd_time_scale() > 1)
		group_pct = 4 * GROUP_PCT;
	pfx_init();

	/* The time limits are written for FUZZ_MESSAGES. */
	factor = (opt_messages + FUZZ_MESSAGES - 1) / FUZZ_MESSAGES;
	for (fx = __fixture_list; fx; fx = fx->next)
		for (t = fx->tests; t; t = t->next)
			t->timeout *= factor ?: 1;
	return test_harness_run(n, args);
}
