# SPDX-License-Identifier: GPL-2.0
# Helpers shared by netns.sh, permissions.sh, unload.sh and
# churn_vanish.sh, on top of lib.sh (which the test sources first): veth
# links between namespaces, servers started in a namespace, steered
# connections that stay open and keep talking, a check that the kernel
# log stayed clean, and one that a deleted namespace was freed.

# dmesg_mark: remember where the kernel log ends; dmesg_check_clean fails
# if anything bad was logged since.
dmesg_mark()
{
	_dmesg_mark=$(dmesg | wc -l)
}

dmesg_check_clean()
{
	local bad

	bad=$(dmesg | tail -n +$((_dmesg_mark + 1)) | grep -E "$KERNEL_COMPLAINTS" || true)
	[ -z "$bad" ] || fail "the kernel complained: $bad"
}

# veth_link NS1 IF1 NS2 IF2: a veth pair, IF1 in NS1 and IF2 in NS2, both up.
veth_link()
{
	ip link add "$2" netns "$1" type veth peer name "$4" netns "$3"
	ip -n "$1" link set "$2" up
	ip -n "$3" link set "$4" up
}

# _link_gone NS IF: NS has no link IF (any more).
_link_gone()
{
	! ip -n "$1" link show "$2" >/dev/null 2>&1
}

# addr NS IF ADDR...: add addresses (IPv6 ones without DAD, so they are
# usable at once).
addr()
{
	local ns=$1 dev=$2 a

	shift 2
	for a in "$@"; do
		case $a in
		*:*) ip -n "$ns" -6 addr add "$a" dev "$dev" nodad ;;
		*) ip -n "$ns" addr add "$a" dev "$dev" ;;
		esac
	done
}

# Guests run under TCG, where every fork costs: the helpers below keep
# to bash builtins where they can.

# has_line FILE REGEX: FILE has a line matching REGEX (extended).
has_line()
{
	local l

	[ -f "$1" ] || return 1
	while IFS= read -r l; do
		[[ $l =~ $2 ]] && return 0
	done < "$1"
	return 1
}

# wait_line FILE REGEX [MS]: until FILE has a line matching REGEX.
wait_line()
{
	busywait "${3:-10000}" has_line "$1" "$2"
}

# count_lines FILE REGEX: how many lines of FILE match REGEX, in $REPLY.
count_lines()
{
	local l n=0

	while IFS= read -r l; do
		[[ $l =~ $2 ]] && n=$((n + 1))
	done < "$1"
	REPLY=$n
}

# has_count FILE REGEX N: at least N lines of FILE match REGEX (how many
# in $REPLY).
has_count()
{
	count_lines "$1" "$2"
	[ "$REPLY" -ge "$3" ]
}

# new_file: a fresh file name in the test's own directory, in $REPLY. The
# directory goes when the test ends.
new_file()
{
	if [ -z "${_ns_dir:-}" ]; then
		_ns_dir=$(mktemp -d)
		defer rm -rf "$_ns_dir"
	fi
	_ns_files=$((${_ns_files:-0} + 1))
	REPLY=$_ns_dir/$_ns_files
}

# spawn_server VAR CMD...: run CMD (a `pdsock serve` or PY_ECHO_SERVER,
# behind `ip netns exec`, nsenter or setpriv, which all exec it) in the
# background and wait for its "ready pid=PID fd=FD" line. VAR_pid, VAR_fd
# and VAR_out (the file its output goes to) describe it; it is killed
# when the test ends.
spawn_server()
{
	local var=$1 out

	shift
	new_file
	out=$REPLY
	"$@" > "$out" 2>&1 &
	defer kill $!
	wait_line "$out" '^ready pid=[0-9]+ fd=[0-9]+' "$START_MS" ||
		fail "a server ($1 $2 $3 ...) did not start: $(cat "$out")"
	has_line "$out" '^ready pid=([0-9]+) fd=([0-9]+)'
	printf -v "${var}_pid" %s "${BASH_REMATCH[1]}"
	printf -v "${var}_fd" %s "${BASH_REMATCH[2]}"
	printf -v "${var}_out" %s "$out"
}

# nginx_serve NS PAGE LISTEN...: Debian's nginx, as nobody in namespace
# NS, serving PAGE at / with one "listen LISTEN;" each (8080, [::]:8080);
# NGINX_PID is its pid and NGINX_DIR its files (error.log, out). Killed
# when the test ends; the caller waits for its sockets.
nginx_serve()
{
	local ns=$1 page=$2 d listen

	shift 2
	d=$(mktemp -d)
	defer rm -rf "$d"
	mkdir "$d/www"
	echo "$page" > "$d/www/index.html"
	for listen in "$@"; do
		echo "listen $listen;"
	done > "$d/listen.conf"
	cat > "$d/nginx.conf" <<-EOF
		daemon off;
		worker_processes 1;
		pid $d/nginx.pid;
		error_log $d/error.log;
		events { worker_connections 64; }
		http {
			access_log off;
			client_body_temp_path $d/body;
			proxy_temp_path $d/proxy;
			fastcgi_temp_path $d/fastcgi;
			uwsgi_temp_path $d/uwsgi;
			scgi_temp_path $d/scgi;
			server { include $d/listen.conf; root $d/www; }
		}
	EOF
	chown -R nobody:nogroup "$d"
	ip netns exec "$ns" setpriv --reuid=nobody --regid=nogroup --clear-groups \
		nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log" > "$d/out" 2>&1 &
	NGINX_PID=$!
	NGINX_DIR=$d
	defer kill "$NGINX_PID"
}

# ns_server VAR NS PDSOCK-SERVE-ARGS...: pdsock serve in namespace NS.
ns_server()
{
	local var=$1 ns=$2

	shift 2
	spawn_server "$var" ip netns exec "$ns" "$PD_BIN/pdsock" serve "$@"
}

# An echo server that keeps its connections: pdsock's server says hello
# and closes, but a connection that must outlive a rule, a namespace or
# the module has to stay open. Listens on every PORT (0.0.0.0 or, with -6,
# [::], IPv4 too), bound to device DEV with -d (SO_BINDTODEVICE, a VRF);
# prints "ready pid=PID fd=FD port=PORT" per port, then "accept
# local=ADDR:PORT peer=ADDR:PORT" per connection, as pdsock does.
# Run it as: python3 -c "$PY_ECHO_SERVER" {-4|-6} [-d DEV] PORT...
# shellcheck disable=SC2034 # for the tests that source this
PY_ECHO_SERVER='
import os, selectors, socket, sys
fam = socket.AF_INET6 if sys.argv[1] == "-6" else socket.AF_INET
dev, ports = (sys.argv[3], sys.argv[4:]) if sys.argv[2] == "-d" else (None, sys.argv[2:])
sel = selectors.DefaultSelector()
def fmt(a):
    return ("[%s]:%d" if fam == socket.AF_INET6 else "%s:%d") % a[:2]
for port in ports:
    ls = socket.socket(fam, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6:
        ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    if dev:
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
    ls.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", int(port)))
    ls.listen(128)
    sel.register(ls, selectors.EVENT_READ, None)
    print("ready pid=%d fd=%d port=%s" % (os.getpid(), ls.fileno(), port),
          flush=True)
while True:
    for key, _ in sel.select():
        if key.data is None:
            c, peer = key.fileobj.accept()
            print("accept local=%s peer=%s" % (fmt(c.getsockname()),
                  fmt(peer)), flush=True)
            sel.register(c, selectors.EVENT_READ, "conn")
            continue
        try:
            data = key.fileobj.recv(4096)
        except OSError:
            data = b""
        if data:
            key.fileobj.sendall(data)
        else:
            sel.unregister(key.fileobj)
            key.fileobj.close()
'


# A client that opens one TCP connection per ADDR PORT, prints "open
# local=... peer=..." for each, then every 200 ms sends a numbered line on
# every connection and reads it back, printing "ok N" when all of them
# answered; "error ..." and exit 1 as soon as one does not.
# Run it as: python3 -c "$PY_CHATTER" ADDR PORT [ADDR PORT...]
# shellcheck disable=SC2034
PY_CHATTER='
import os, socket, sys, time
scale = int(os.environ.get("PD_TIME_SCALE", "1"))
conns = []
args = sys.argv[1:]
for i in range(0, len(args), 2):
    c = socket.create_connection((args[i], int(args[i + 1])), timeout=10 * scale)
    conns.append(c)
    l, p = c.getsockname(), c.getpeername()
    print("open local=%s:%d peer=%s:%d" % (l[0], l[1], p[0], p[1]),
          flush=True)
n = 0
while True:
    n += 1
    for c in conns:
        msg = b"ping %d\n" % n
        try:
            c.sendall(msg)
            got = b""
            while len(got) < len(msg):
                chunk = c.recv(len(msg) - len(got))
                if not chunk:
                    raise OSError("connection closed")
                got += chunk
        except OSError as e:
            print("error %s: %s" % (c.getpeername(), e), flush=True)
            sys.exit(1)
        if got != msg:
            print("error: sent %r, got %r" % (msg, got), flush=True)
            sys.exit(1)
    print("ok %d" % n, flush=True)
    time.sleep(0.2)
'


# spawn_chatter VAR NCONN CMD...: run a PY_CHATTER command in the
# background; wait until its NCONN connections are open and one exchange
# went through. VAR_out is its output file.
spawn_chatter()
{
	local var=$1 nconn=$2 out

	shift 2
	new_file
	out=$REPLY
	"$@" > "$out" 2>&1 &
	defer kill $!
	wait_line "$out" '^ok 1$' 20000 ||
		fail "the client did not get its connections going: $(cat "$out")"
	count_lines "$out" '^open '
	check_eq "$REPLY" "$nconn" "connections the client opened"
	printf -v "${var}_out" %s "$out"
}

# chatter_round FILE: the last round the chatter completed, in $REPLY; 1
# if it reported an error.
chatter_round()
{
	local l

	REPLY=0
	while IFS= read -r l; do
		case $l in
		"ok "*) REPLY=${l#ok } ;;
		error*) return 1 ;;
		esac
	done < "$1"
}

# chatter_alive FILE N: the chatter completes N more rounds from now,
# without an error.
chatter_alive()
{
	chatter_round "$1" || fail "the open connections failed: $(grep -v '^ok' "$1")"
	busywait 20000 _chatter_reached "$1" $((REPLY + $2)) ||
		fail "the open connections stopped talking: $(grep -v '^ok' "$1" | tail -n 3)"
}

_chatter_reached()
{
	chatter_round "$1" && [ "$REPLY" -ge "$2" ]
}

# ns_inode NS: the inode of network namespace NS, which tells its
# processes apart in /proc.
ns_inode()
{
	stat -L -c %i "/run/netns/$1"
}

# procs_in_netns INODE: the pids of the processes in that namespace.
procs_in_netns()
{
	find -L /proc/[0-9]*/ns -maxdepth 1 -name net -inum "$1" 2>/dev/null |
		cut -d/ -f3
}

# Whether a deleted namespace was really freed. `ip netns del` only
# unmounts its name, and its last process leaving only drops one more
# reference: the namespace is freed (and the module's per-namespace exit
# runs, in the same work) when its last reference goes, a socket's
# included. A nsid names it in the initial namespace until then: the
# kernel removes it when it dismantles the namespace.

# ns_watch VAR NS: give NS a nsid here; VAR holds it.
ns_watch()
{
	local l re="^nsid ([0-9]+) \(iproute2 netns name: $2\)"

	ip netns set "$2" auto
	while IFS= read -r l; do
		if [[ $l =~ $re ]]; then
			printf -v "$1" %s "${BASH_REMATCH[1]}"
			return 0
		fi
	done <<< "$(ip netns list-id)"
	fail "namespace $2 got no nsid: $(ip netns list-id)"
}

# ns_freed NSID: no namespace has that nsid any more.
ns_freed()
{
	local l

	while IFS= read -r l; do
		[[ $l =~ ^nsid\ $1( |$) ]] && return 1
	done <<< "$(ip netns list-id)"
	return 0
}

# ns_vanish NS NSID [NS NSID...]: SIGKILL every process in the namespaces,
# delete them, and wait until they are freed.
ns_vanish()
{
	local a pids=()

	for ((a = 1; a < $#; a += 2)); do
		# shellcheck disable=SC2207
		pids+=($(ip netns pids "${!a}"))
	done
	if [ ${#pids[@]} -gt 0 ]; then
		kill -9 "${pids[@]}" 2>/dev/null || true
		# Reaped here, if ours, without the shell's "Killed" notes.
		wait "${pids[@]}" 2>/dev/null || true
	fi
	for ((a = 1; a < $#; a += 2)); do
		ip netns del "${!a}"
	done
	for ((a = 2; a <= $#; a += 2)); do
		busywait 20000 ns_freed "${!a}" ||
			fail "namespace ${*:a-1:1} (nsid ${!a}) was deleted and left by its processes, but not freed: a reference to it is stuck"
	done
}

# module_unused: nothing holds the module (a dump does while it lasts).
module_unused()
{
	local n

	read -r n < /sys/module/portdispatch/refcnt && [ "$n" = 0 ]
}
