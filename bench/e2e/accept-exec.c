/*
 * accept-exec: the e2e bench's stand-in for a VM launcher that hands vnetkit a ready socket.
 *
 *   accept-exec --listen PATH --sndbuf BYTES --fd N -- CMD [ARGS...]
 *
 * Binds a Unix stream socket at PATH, accepts one connection (the relay, playing the VM),
 * asks for SO_SNDBUF = BYTES on the accepted end, moves it to file descriptor N and execs CMD,
 * which adopts it (vnetkit --fd N). Node cannot size a stream socket's send buffer itself;
 * passt asks for the same on its own end of the VM link. exec keeps the pid, so the bench
 * measures the engine's CPU exactly as for any other peer.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void die(const char *what) {
  fprintf(stderr, "accept-exec: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void usage(void) {
  fprintf(stderr, "usage: accept-exec --listen PATH --sndbuf BYTES --fd N -- CMD [ARGS...]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *path = NULL;
  long sndbuf = -1, target = -1;
  int i = 1;
  for (; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) { i++; break; }
    if (i + 1 >= argc) usage();
    if (strcmp(argv[i], "--listen") == 0) path = argv[++i];
    else if (strcmp(argv[i], "--sndbuf") == 0) sndbuf = strtol(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--fd") == 0) target = strtol(argv[++i], NULL, 10);
    else usage();
  }
  if (path == NULL || sndbuf <= 0 || sndbuf > 0x7fffffff || target < 3 || target > 1023 || i >= argc) usage();

  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  if (strlen(path) >= sizeof sa.sun_path) { errno = ENAMETOOLONG; die(path); }
  strcpy(sa.sun_path, path);
  int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (ls < 0) die("socket");
  unlink(path);
  if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
  if (listen(ls, 1) < 0) die("listen");
  int c = accept4(ls, NULL, NULL, 0);
  if (c < 0) die("accept");
  close(ls);
  unlink(path);

  int v = (int)sndbuf;
  if (setsockopt(c, SOL_SOCKET, SO_SNDBUF, &v, sizeof v) < 0) die("setsockopt SO_SNDBUF");
  socklen_t len = sizeof v;
  if (getsockopt(c, SOL_SOCKET, SO_SNDBUF, &v, &len) < 0) die("getsockopt SO_SNDBUF");
  /* The kernel doubles the request for its bookkeeping and caps it at net.core.wmem_max. */
  fprintf(stderr, "accept-exec: accepted; SO_SNDBUF asked %ld, kernel reports %d; fd %ld -> %s\n", sndbuf, v, target, argv[i]);

  if (c != target) {
    if (dup2(c, (int)target) < 0) die("dup2");
    close(c);
  }
  /* The descriptor must survive exec (accept4 without SOCK_CLOEXEC, dup2 clears it anyway). */
  int fl = fcntl((int)target, F_GETFD);
  if (fl < 0 || fcntl((int)target, F_SETFD, fl & ~FD_CLOEXEC) < 0) die("fcntl");
  execvp(argv[i], argv + i);
  die(argv[i]);
  return 1;
}
