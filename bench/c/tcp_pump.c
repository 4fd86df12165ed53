// Loopback TCP baseline: one process forks; the child writes N bytes in 1 MiB
// writes, the parent reads them. Usage: tcp_pump BYTES
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
  long total = atol(argv[1]); size_t chunk = 1 << 20;
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
  socklen_t len = sizeof a;
  if (bind(l, (void *)&a, sizeof a) || listen(l, 1) || getsockname(l, (void *)&a, &len)) return 1;
  char *buf = malloc(chunk);
  for (size_t i = 0; i < chunk; i++) buf[i] = (char)i;
  pid_t pid = fork();
  if (pid == 0) {
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c, (void *)&a, sizeof a)) return 1;
    for (long sent = 0; sent < total;) { ssize_t n = write(c, buf, chunk); if (n <= 0) return 1; sent += n; }
    close(c); return 0;
  }
  int s = accept(l, 0, 0); long got = 0;
  for (ssize_t n; (n = read(s, buf, chunk)) > 0;) got += n;
  waitpid(pid, 0, 0);
  return got == total ? 0 : 1;
}
