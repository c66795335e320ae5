/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Links, addresses, routes and neighbours for portdispatch's C selftests,
 * made with rtnetlink (libmnl) or ioctls in the namespace the caller is
 * in, rather than with ip(8) and ethtool(8) (which the guests lack): on
 * the debug kernel every program started costs most of a second.
 * Everything here is static: each test program includes it once.
 */
#ifndef _PD_LINK_H
#define _PD_LINK_H

#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/ethtool.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sockios.h>
#include <linux/veth.h>
#include <net/if.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* One rtnetlink request and its ack: 0 or -errno. */
static inline int pd_rtnl(struct nlmsghdr *nlh)
{
	static char buf[8192];
	struct mnl_socket *nl = mnl_socket_open(NETLINK_ROUTE);
	int err = 0;
	ssize_t n;

	if (!nl)
		return -errno;
	nlh->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
	nlh->nlmsg_seq = 1;
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0 ||
	    mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
		err = -errno;
	} else {
		n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
		if (n < 0 || mnl_cb_run(buf, n, 1, mnl_socket_get_portid(nl),
					NULL, NULL) < 0)
			err = -errno;
	}
	mnl_socket_close(nl);
	return err;
}

/* A veth pair: @name here, its peer @peer in namespace @peer_ns. */
static inline int pd_make_veth(const char *name, const char *peer,
			       int peer_ns)
{
	char buf[512];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct nlattr *info, *data, *nest;

	nlh->nlmsg_type = RTM_NEWLINK;
	nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
	mnl_nlmsg_put_extra_header(nlh, sizeof(struct ifinfomsg));
	mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
	data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
	nest = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
	/* The peer's attributes follow an ifinfomsg of its own. */
	mnl_nlmsg_put_extra_header(nlh, sizeof(struct ifinfomsg));
	mnl_attr_put_strz(nlh, IFLA_IFNAME, peer);
	mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, peer_ns);
	mnl_attr_nest_end(nlh, nest);
	mnl_attr_nest_end(nlh, data);
	mnl_attr_nest_end(nlh, info);
	return pd_rtnl(nlh);
}

/* @addr/@plen on device @ifindex, without duplicate address detection. */
static inline int pd_add_addr(int family, int ifindex, const char *addr,
			      int plen)
{
	char buf[256];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	size_t alen = family == AF_INET ? 4 : 16;
	struct ifaddrmsg *ifa;
	uint8_t bin[16];

	if (inet_pton(family, addr, bin) != 1)
		return -EINVAL;
	nlh->nlmsg_type = RTM_NEWADDR;
	nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
	ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = family;
	ifa->ifa_prefixlen = plen;
	ifa->ifa_flags = IFA_F_NODAD;
	ifa->ifa_index = ifindex;
	mnl_attr_put(nlh, IFA_LOCAL, alen, bin);
	mnl_attr_put(nlh, IFA_ADDRESS, alen, bin);
	return pd_rtnl(nlh);
}

static inline int pd_link_up(int ifindex)
{
	char buf[256];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ifinfomsg *ifi;

	nlh->nlmsg_type = RTM_NEWLINK;
	ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_index = ifindex;
	ifi->ifi_flags = ifi->ifi_change = IFF_UP;
	return pd_rtnl(nlh);
}

/*
 * Give device @name @addr4/24 and @addr6/64 and bring it up: NULL, or
 * what failed, with errno saying why.
 */
static inline const char *pd_link_setup(const char *name, const char *addr4,
					const char *addr6)
{
	int ifindex = if_nametoindex(name), err;
	const char *what = NULL;

	err = ifindex ? 0 : -errno;
	if (err)
		what = "no such device";
	else if ((err = pd_add_addr(AF_INET, ifindex, addr4, 24)))
		what = "IPv4 address";
	else if ((err = pd_add_addr(AF_INET6, ifindex, addr6, 64)))
		what = "IPv6 address";
	else if ((err = pd_link_up(ifindex)))
		what = "link up";
	errno = -err;
	return what;
}

/* Device @name's hardware address, in @mac (6 bytes): 0 or -errno. */
static inline int pd_link_mac(const char *name, uint8_t *mac)
{
	struct ifreq ifr = { 0 };
	int fd, err = 0;

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0)
		return -errno;
	if (ioctl(fd, SIOCGIFHWADDR, &ifr))
		err = -errno;
	else
		memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
	close(fd);
	return err;
}

/*
 * A permanent neighbour: @addr is at @mac on device @ifindex, so that
 * nothing waits for ARP or neighbour discovery (which a router cannot do
 * on a veth whose link-local address is not there yet). 0 or -errno.
 */
static inline int pd_add_neigh(int family, int ifindex, const char *addr,
			       const uint8_t *mac)
{
	char buf[256];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ndmsg *ndm;
	uint8_t bin[16];

	if (inet_pton(family, addr, bin) != 1)
		return -EINVAL;
	nlh->nlmsg_type = RTM_NEWNEIGH;
	nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
	ndm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ndm));
	ndm->ndm_family = family;
	ndm->ndm_ifindex = ifindex;
	ndm->ndm_state = NUD_PERMANENT;
	mnl_attr_put(nlh, NDA_DST, family == AF_INET ? 4 : 16, bin);
	mnl_attr_put(nlh, NDA_LLADDR, 6, mac);
	return pd_rtnl(nlh);
}

/* IF_OPER_UP, of linux/if.h, which cannot be included with net/if.h. */
#define PD_IF_OPER_UP	6

static inline int pd_link_attr(const struct nlattr *a, void *data)
{
	if (mnl_attr_get_type(a) == IFLA_OPERSTATE &&
	    !mnl_attr_validate(a, MNL_TYPE_U8))
		*(uint8_t *)data = mnl_attr_get_u8(a);
	return MNL_CB_OK;
}

static inline int pd_link_msg(const struct nlmsghdr *nlh, void *data)
{
	return mnl_attr_parse(nlh, sizeof(struct ifinfomsg), pd_link_attr,
			      data);
}

/*
 * Wait up to @ms for device @ifindex to be operationally up. A device
 * that was brought up without a carrier (a veth whose peer was down)
 * sends nothing until the link watcher has seen its carrier come: its
 * queues keep the "noop" discipline, which drops everything, until
 * linkwatch_do_dev() calls dev_activate(), just after it sets the
 * operational state. (An ARP request or neighbour solicitation lost so
 * costs a second's retry.) 0 or -errno (-ETIMEDOUT).
 */
static inline int pd_link_wait_ready(int ifindex, int ms)
{
	static char buf[8192];
	struct mnl_socket *nl = mnl_socket_open(NETLINK_ROUTE);
	struct ifinfomsg *ifi;
	struct nlmsghdr *nlh;
	int err = -ETIMEDOUT, i;
	uint8_t operstate;
	ssize_t n;

	if (!nl)
		return -errno;
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		err = -errno;
		goto out;
	}
	for (i = 0; i <= ms / 10; i++) {
		nlh = mnl_nlmsg_put_header(buf);
		nlh->nlmsg_type = RTM_GETLINK;
		nlh->nlmsg_flags = NLM_F_REQUEST;
		nlh->nlmsg_seq = i + 1;
		ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
		ifi->ifi_index = ifindex;
		operstate = 0;
		if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
			err = -errno;
			break;
		}
		n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
		if (n < 0 || mnl_cb_run(buf, n, i + 1,
					mnl_socket_get_portid(nl),
					pd_link_msg, &operstate) < 0) {
			err = -errno;
			break;
		}
		if (operstate == PD_IF_OPER_UP) {
			err = 0;
			break;
		}
		usleep(10 * 1000);
	}
out:
	mnl_socket_close(nl);
	return err;
}

/* A default route of @family through @gateway: 0 or -errno. */
static inline int pd_add_default_route(int family, const char *gateway)
{
	char buf[256];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct rtmsg *rtm;
	uint8_t bin[16];

	if (inet_pton(family, gateway, bin) != 1)
		return -EINVAL;
	nlh->nlmsg_type = RTM_NEWROUTE;
	nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
	rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	rtm->rtm_family = family;
	rtm->rtm_table = RT_TABLE_MAIN;
	rtm->rtm_protocol = RTPROT_BOOT;
	rtm->rtm_scope = RT_SCOPE_UNIVERSE;
	rtm->rtm_type = RTN_UNICAST;
	mnl_attr_put(nlh, RTA_GATEWAY, family == AF_INET ? 4 : 16, bin);
	return pd_rtnl(nlh);
}

/*
 * Turn a device's transmit checksum offload on or off, as `ethtool -K DEV
 * tx on|off` does (the guests have no ethtool). Without it, what the stack
 * sends through the device is checksummed in software: a datagram built
 * for it gets its whole checksum at once, and a CHECKSUM_PARTIAL one
 * (from another device, forwarded, or GSO) is finished or segmented in
 * software in validate_xmit_skb(). 0 or -errno.
 */
static inline int pd_set_tx_csum(const char *name, bool on)
{
	struct ethtool_value ev = { .cmd = ETHTOOL_STXCSUM, .data = on };
	struct ifreq ifr = { 0 };
	int fd, err = 0;

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	ifr.ifr_data = (void *)&ev;
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0)
		return -errno;
	if (ioctl(fd, SIOCETHTOOL, &ifr))
		err = -errno;
	/* Read it back: a device may refuse quietly. */
	ev.cmd = ETHTOOL_GTXCSUM;
	ev.data = !on;
	if (!err && ioctl(fd, SIOCETHTOOL, &ifr))
		err = -errno;
	if (!err && !ev.data != !on)
		err = -EOPNOTSUPP;
	close(fd);
	return err;
}

/*
 * Packets device @name has sent, from /proc/net/dev of the caller's
 * namespace (sysfs would show the namespace it was mounted in); -1 when
 * the device is not there.
 */
static inline long pd_tx_packets(const char *name)
{
	char line[512], *colon, *p;
	unsigned long long v[10];
	size_t len = strlen(name);
	long packets = -1;
	FILE *f = fopen("/proc/net/dev", "r");

	if (!f)
		return -1;
	while (packets < 0 && fgets(line, sizeof(line), f)) {
		colon = strchr(line, ':');
		if (!colon)
			continue;
		for (p = line; *p == ' '; p++)
			;
		if ((size_t)(colon - p) != len || strncmp(p, name, len))
			continue;
		/*
		 * rx: bytes packets errs drop fifo frame compressed
		 * multicast; then tx: bytes packets...
		 */
		if (sscanf(colon + 1,
			   "%llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
			   &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
			   &v[7], &v[8], &v[9]) == 10)
			packets = v[9];
	}
	fclose(f);
	return packets;
}

#endif /* _PD_LINK_H */
