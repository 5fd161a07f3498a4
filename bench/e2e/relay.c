/*
 * vnetkit e2e relay: moves Ethernet frames between a TAP device (the NIC of a
 * network namespace whose kernel plays the guest) and a unix stream socket in
 * qemu's stream framing (4-byte big-endian length, then the frame; no FCS, no
 * vnet header). It stands in for "qemu + virtio-net" so every engine under test
 * sees the same NIC side.
 *
 *   relay --netns NS --tap IF --connect SOCK [--wait S]   engine listens (qemu server=off)
 *   relay --netns NS --tap IF --listen SOCK               engine connects, or a second relay
 *
 * Scheduling is deliberately qemu-like, because engines react to it:
 *  - tap -> socket: read at most BATCH frames, hand each to the socket in its own
 *    message (one sendmmsg), and do not read the tap again until all of them are in
 *    the socket. The tun tx ring then fills and drops, as a guest NIC queue would.
 *    One message per frame matters: bookworm's passt loses sync when a read ends
 *    inside a length header.
 *  - socket -> tap: handle at most RECV_CHUNK bytes per poll round, one write() per
 *    frame, so the namespace's ACKs (queued into the tap's tx ring by those writes)
 *    are drained between rounds instead of overflowing the ring.
 * On SIGTERM/SIGINT, or when the peer closes, it prints its counters and exits 0.
 *
 * Build: gcc -O2 -Wall -o relay relay.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define FRAME_MAX 65550u            /* 65535-byte IP packet + Ethernet header, rounded */
#define LEN_SANE (1u << 20)         /* a bigger length means the stream lost sync: give up */
#define BATCH 64                    /* tap frames per round (qemu's tap backend takes 50) */
#define RECV_CHUNK (64u << 10)      /* socket bytes per round (qemu reads 69632) */
#define INBUF_SIZE (2u << 20)       /* holds any partial frame plus one chunk */

static volatile sig_atomic_t stopping;
static unsigned long long n_t2s, b_t2s, n_s2t, b_s2t, drop_big, tap_err, sock_waits, max_t2s, max_s2t;

static void on_signal(int s) { (void)s; stopping = 1; }

static void fail(const char *what)
{
	fprintf(stderr, "relay: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void report(const char *why)
{
	fprintf(stderr, "relay: %s: tap->sock %llu frames %llu bytes (max %llu), sock->tap %llu frames %llu bytes (max %llu), "
		"oversize %llu, tap write errors %llu, socket-full waits %llu\n",
		why, n_t2s, b_t2s, max_t2s, n_s2t, b_s2t, max_s2t, drop_big, tap_err, sock_waits);
}

static void enter_netns(const char *name)
{
	char path[300];
	snprintf(path, sizeof path, strchr(name, '/') ? "%s" : "/run/netns/%s", name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) fail(path);
	if (setns(fd, CLONE_NEWNET) < 0) fail("setns");
	close(fd);
}

static int open_tap(const char *name)
{
	struct ifreq ifr;
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) fail("/dev/net/tun");
	memset(&ifr, 0, sizeof ifr);
	/* IFF_NO_PI: bare Ethernet frames, the same bytes qemu's stream netdev carries. */
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) fail("TUNSETIFF (tap not in this namespace?)");
	return fd;
}

static socklen_t sun_of(struct sockaddr_un *a, const char *path)
{
	memset(a, 0, sizeof *a);
	a->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof a->sun_path) { fprintf(stderr, "relay: socket path too long\n"); exit(2); }
	strcpy(a->sun_path, path);
	return sizeof *a;
}

static int connect_retry(const char *path, int wait_s)
{
	struct sockaddr_un a;
	socklen_t al = sun_of(&a, path);
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) fail("socket");
		if (connect(fd, (struct sockaddr *)&a, al) == 0) return fd;
		int e = errno;
		close(fd);
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (stopping || t.tv_sec - t0.tv_sec >= wait_s) { errno = e; fail(path); }
		usleep(50 * 1000);
	}
}

static int accept_one(const char *path)
{
	struct sockaddr_un a;
	socklen_t al = sun_of(&a, path);
	int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0) fail("socket");
	unlink(path);
	if (bind(l, (struct sockaddr *)&a, al) < 0) fail(path);
	if (listen(l, 1) < 0) fail("listen");
	fprintf(stderr, "relay: listening on %s\n", path);
	int fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0) fail("accept");
	close(l);
	unlink(path);
	return fd;
}

/* Frames read from the tap and not yet fully in the socket: each stored as
 * [4-byte BE length][frame] at off[i]; sent[] counts bytes of frame `head` already out. */
static uint8_t *outbuf;
static uint32_t off[BATCH], flen[BATCH];
static int nout, head;
static size_t head_sent;

static void flush_out(int sfd)
{
	static struct mmsghdr mm[BATCH];
	static struct iovec iov[BATCH];
	while (head < nout) {
		if (head_sent) {
			/* finish a frame the socket took only part of before anything else goes out */
			ssize_t w = send(sfd, outbuf + off[head] + head_sent, flen[head] - head_sent, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (w < 0) {
				if (errno == EAGAIN || errno == EINTR) { sock_waits++; return; }
				report("send error");
				fail("send");
			}
			head_sent += (size_t)w;
			if (head_sent == flen[head]) { head++; head_sent = 0; }
			continue;
		}
		int k = nout - head;
		for (int i = 0; i < k; i++) {
			iov[i].iov_base = outbuf + off[head + i];
			iov[i].iov_len = flen[head + i];
			memset(&mm[i], 0, sizeof mm[i]);
			mm[i].msg_hdr.msg_iov = &iov[i];
			mm[i].msg_hdr.msg_iovlen = 1;
		}
		int r = sendmmsg(sfd, mm, k, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (r < 0) {
			if (errno == EAGAIN || errno == EINTR) { sock_waits++; return; }
			report("send error");
			fail("sendmmsg");
		}
		for (int i = 0; i < r; i++) {
			if (mm[i].msg_len < flen[head]) { head_sent = mm[i].msg_len; break; }
			head++;
		}
		if (r < k && !head_sent) { sock_waits++; return; }
	}
	nout = head = 0;
}

int main(int argc, char **argv)
{
	const char *ns = NULL, *tap = "tap0", *conn = NULL, *lst = NULL;
	int wait_s = 10;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (v && !strcmp(a, "--netns")) ns = v;
		else if (v && !strcmp(a, "--tap")) tap = v;
		else if (v && !strcmp(a, "--connect")) conn = v;
		else if (v && !strcmp(a, "--listen")) lst = v;
		else if (v && !strcmp(a, "--wait")) wait_s = atoi(v);
		else {
			fprintf(stderr, "usage: relay [--netns NS] [--tap IF] (--connect SOCK [--wait S] | --listen SOCK)\n");
			return 2;
		}
		i++;
	}
	if (!conn == !lst) { fprintf(stderr, "relay: need exactly one of --connect and --listen\n"); return 2; }

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* The tap must be opened inside its namespace; the unix socket is a path, reachable from anywhere. */
	if (ns) enter_netns(ns);
	int tfd = open_tap(tap);
	int sfd = conn ? connect_retry(conn, wait_s) : accept_one(lst);
	fcntl(sfd, F_SETFL, fcntl(sfd, F_GETFL) | O_NONBLOCK);
	fprintf(stderr, "relay: %s <-> %s\n", tap, conn ? conn : lst);

	outbuf = malloc((size_t)BATCH * (4 + FRAME_MAX));
	uint8_t *in = malloc(INBUF_SIZE);
	if (!outbuf || !in) fail("malloc");
	size_t have = 0;

	while (!stopping) {
		int pending = head < nout;
		struct pollfd p[2] = {
			{ .fd = tfd, .events = pending ? 0 : POLLIN },
			{ .fd = sfd, .events = POLLIN | (pending ? POLLOUT : 0) },
		};
		if (poll(p, 2, 500) < 0) {
			if (errno == EINTR) continue;
			fail("poll");
		}

		if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
			size_t room = INBUF_SIZE - have;
			ssize_t n = recv(sfd, in + have, room < RECV_CHUNK ? room : RECV_CHUNK, 0);
			if (n == 0) { report("peer closed"); return 0; }
			if (n < 0 && errno != EAGAIN && errno != EINTR) { report("recv error"); fail("recv"); }
			if (n > 0) have += (size_t)n;
			size_t at = 0;
			while (have - at >= 4) {
				uint32_t len;
				memcpy(&len, in + at, 4);
				len = ntohl(len);
				if (len > LEN_SANE) { fprintf(stderr, "relay: frame length %u: stream out of sync\n", len); report("error"); return 1; }
				if (have - at - 4 < len) break;
				if (len > FRAME_MAX) drop_big++;
				else if (len > 0) {
					if (write(tfd, in + at + 4, len) < 0) tap_err++;
					else { n_s2t++; b_s2t += len; if (len > max_s2t) max_s2t = len; }
				}
				at += 4 + (size_t)len;
			}
			if (at) { memmove(in, in + at, have - at); have -= at; }
		}

		int try_send = (p[1].revents & POLLOUT) != 0;
		if (!pending && (p[0].revents & POLLIN)) {
			size_t used = 0;
			while (nout < BATCH) {
				ssize_t n = read(tfd, outbuf + used + 4, FRAME_MAX);
				if (n <= 0) break;
				uint32_t be = htonl((uint32_t)n);
				memcpy(outbuf + used, &be, 4);
				off[nout] = (uint32_t)used;
				flen[nout] = 4 + (uint32_t)n;
				nout++;
				used += 4 + (size_t)n;
				n_t2s++;
				b_t2s += (unsigned long long)n;
				if ((unsigned long long)n > max_t2s) max_t2s = (unsigned long long)n;
			}
			try_send = nout > 0;
		}
		if (try_send) flush_out(sfd);
	}
	report("signal");
	return 0;
}
