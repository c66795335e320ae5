// SPDX-License-Identifier: GPL-2.0
/*
 * Targets. A socket target is named by a file descriptor of the requesting
 * process: the module never reaches into another process. A client that
 * wants another process's socket takes its own copy with pidfd_getfd(2),
 * which the kernel allows only with ptrace-attach rights over that
 * process, and the pid it names is only recorded, for reports.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/file.h>
#include <linux/net.h>
#include <linux/pid.h>
#include <linux/pid_namespace.h>
#include <linux/sched/task.h>
#include <net/genetlink.h>
#include <net/ipv6.h>
#include <net/sock.h>
#include <net/tcp_states.h>
#include <linux/portdispatch.h>

#include "compat.h"
#include "group.h"
#include "rule.h"
#include "target.h"

static u8 pd_sock_families(const struct sock *sk)
{
	if (sk->sk_family == AF_INET)
		return PD_FAM_V4;
	return ipv6_only_sock(sk) ? PD_FAM_V6 : PD_FAM_ALL;
}

static const char *pd_sock_kind(const struct sock *sk)
{
	if (sk->sk_protocol == IPPROTO_TCP && sk->sk_type == SOCK_STREAM)
		return "TCP";
	if (sk->sk_protocol == IPPROTO_UDP && sk->sk_type == SOCK_DGRAM)
		return "UDP";
	return "neither TCP nor UDP";
}

/* "fd 5 of process 1234", as the user named it, for messages. */
static void pd_target_name(const struct pd_target_req *req, char *buf,
			   size_t len)
{
	u32 fd = nla_get_u32(req->pid_fd_attr ?: req->fd_attr);

	if (req->pid_attr)
		scnprintf(buf, len, "fd %u of process %u", fd,
			  nla_get_u32(req->pid_attr));
	else
		scnprintf(buf, len, "fd %u", fd);
}

static int pd_target_check_socket(const struct sock *sk, struct net *net,
				  const struct pd_key *key, const char *name,
				  struct netlink_ext_ack *extack)
{
	const char *want = key->proto == PD_TCP ? "TCP" : "UDP";
	const char *have = pd_sock_kind(sk);
	u8 families;

	if (!net_eq(sock_net(sk), net)) {
		NL_SET_ERR_MSG_FMT(extack,
				   "%s lives in another network namespace",
				   name);
		return -EXDEV;
	}
	if (sk->sk_family != AF_INET && sk->sk_family != AF_INET6) {
		NL_SET_ERR_MSG_FMT(extack, "%s is not an IP socket", name);
		return -EAFNOSUPPORT;
	}
	if (strcmp(have, want)) {
		NL_SET_ERR_MSG_FMT(extack, "%s is %s, the rule is %s", name,
				   have, want);
		return -EPROTOTYPE;
	}

	families = pd_sock_families(sk) & key->families;
	if (!families) {
		if (sk->sk_family == AF_INET)
			NL_SET_ERR_MSG_FMT(extack,
					   "%s is IPv4 and cannot take IPv6 flows",
					   name);
		else
			NL_SET_ERR_MSG_FMT(extack,
					   "%s is IPv6-only and cannot take IPv4 flows",
					   name);
		return -EAFNOSUPPORT;
	}

	if (key->proto == PD_TCP && READ_ONCE(sk->sk_state) != TCP_LISTEN) {
		NL_SET_ERR_MSG_FMT(extack, "%s is not listening", name);
		return -EADDRNOTAVAIL;
	}
	if (key->proto == PD_UDP && !pd_udp_ready(sk)) {
		NL_SET_ERR_MSG_FMT(extack, "%s is not bound, or is connected",
				   name);
		return -EADDRNOTAVAIL;
	}
	return 0;
}

static int pd_target_set_owner(struct pd_target *target,
			       const struct pd_target_req *req,
			       struct netlink_ext_ack *extack)
{
	struct task_struct *task;
	struct pid *pid;

	/* The pid only names the owner, but one that does not exist is refused. */
	if (req->pid_attr)
		pid = find_get_pid(nla_get_u32(req->pid_attr));
	else
		pid = get_task_pid(current, PIDTYPE_TGID);

	task = pid ? get_pid_task(pid, PIDTYPE_PID) : NULL;
	if (!task) {
		put_pid(pid);
		NL_SET_BAD_ATTR(extack, req->pid_attr);
		NL_SET_ERR_MSG_FMT(extack, "no process with pid %u",
				   nla_get_u32(req->pid_attr));
		return -ESRCH;
	}
	get_task_comm(target->comm, task);
	put_task_struct(task);

	target->owner = pid;
	target->owner_ns = get_pid_ns(task_active_pid_ns(current));
	return 0;
}

static int pd_target_init_socket(struct pd_target *target, struct net *net,
				 const struct pd_target_req *req,
				 struct pd_key *key,
				 struct netlink_ext_ack *extack)
{
	struct socket *sock;
	char name[48];
	int err;

	pd_target_name(req, name, sizeof(name));
	sock = sockfd_lookup(nla_get_u32(req->fd_attr), &err);
	if (!sock) {
		NL_SET_BAD_ATTR(extack, req->fd_attr);
		if (err == -ENOTSOCK)
			NL_SET_ERR_MSG_FMT(extack, "%s is not a socket", name);
		else
			NL_SET_ERR_MSG_FMT(extack, "%s is not open", name);
		return err;
	}

	err = pd_target_check_socket(sock->sk, net, key, name, extack);
	if (err) {
		NL_SET_BAD_ATTR(extack, req->fd_attr);
		goto out;
	}
	err = pd_target_set_owner(target, req, extack);
	if (err)
		goto out;

	target->kind = PD_TARGET_SOCKET;
	target->owner_fd = nla_get_u32(req->pid_fd_attr ?: req->fd_attr);
	target->ino = SOCK_INODE(sock)->i_ino;
	target->local_port = inet_sk(sock->sk)->inet_num;
	if (sock->sk->sk_family == AF_INET)
		target->local_addr.v4 = inet_sk(sock->sk)->inet_rcv_saddr;
	else
		target->local_addr.v6 = sock->sk->sk_v6_rcv_saddr;
	sock_hold(sock->sk);
	target->sk = sock->sk;
	key->families &= pd_sock_families(sock->sk);
out:
	sockfd_put(sock);
	return err;
}

/* Resolves what @req names, and narrows @key's families to what it takes. */
int pd_target_init(struct pd_target *target, struct net *net,
		   const struct pd_target_req *req, struct pd_key *key,
		   struct netlink_ext_ack *extack)
{
	u32 port;

	if (req->fd_attr && req->port_attr) {
		NL_SET_ERR_MSG(extack, "a target is a socket or a port, not both");
		return -EINVAL;
	}
	if (!req->fd_attr && !req->port_attr) {
		NL_SET_ERR_MSG(extack, "the rule needs a target: a socket or a port");
		return -EINVAL;
	}
	if (req->fd_attr)
		return pd_target_init_socket(target, net, req, key, extack);

	if (req->pid_attr || req->pid_fd_attr) {
		NL_SET_BAD_ATTR(extack, req->pid_attr ?: req->pid_fd_attr);
		NL_SET_ERR_MSG(extack, "a port target has no process");
		return -EINVAL;
	}
	port = nla_get_u32(req->port_attr);
	if (!port || port > 65535) {
		NL_SET_BAD_ATTR(extack, req->port_attr);
		NL_SET_ERR_MSG_FMT(extack,
				   "target port %u is out of range 1-65535",
				   port);
		return -EINVAL;
	}
	target->kind = PD_TARGET_PORT;
	target->port = port;
	return 0;
}

/* Also for a target that pd_target_init() left half made. */
void pd_target_release(struct pd_target *target)
{
	if (target->kind == PD_TARGET_GROUP)
		pd_group_free(target->group);
	else if (target->sk)
		sock_put(target->sk);
	put_pid(target->owner);
	if (target->owner_ns)
		put_pid_ns(target->owner_ns);
}

/* @dst takes references of its own to what @src holds. */
void pd_target_copy(struct pd_target *dst, const struct pd_target *src)
{
	*dst = *src;
	if (dst->sk)
		sock_hold(dst->sk);
	get_pid(dst->owner);
	if (dst->owner_ns)
		get_pid_ns(dst->owner_ns);
}

/* The socket is gone for good: its last file was closed. */
bool pd_target_closed(const struct pd_target *target)
{
	return target->kind == PD_TARGET_SOCKET &&
	       sock_flag(target->sk, SOCK_DEAD);
}

u8 pd_target_state(const struct pd_target *target)
{
	const struct sock *sk = target->sk;

	if (sock_flag(sk, SOCK_DEAD))
		return PORTDISPATCH_SOCK_STATE_CLOSED;
	if (sk->sk_protocol == IPPROTO_TCP)
		return READ_ONCE(sk->sk_state) == TCP_LISTEN ?
		       PORTDISPATCH_SOCK_STATE_LISTENING :
		       PORTDISPATCH_SOCK_STATE_NOT_READY;
	return pd_udp_ready(sk) ? PORTDISPATCH_SOCK_STATE_BOUND :
				  PORTDISPATCH_SOCK_STATE_NOT_READY;
}
