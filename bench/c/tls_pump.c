// Loopback TLS baseline: one process forks; the child connects as a TLS 1.3
// client (client-cert.pem), the parent accepts as the server
// (server-cert.pem, client certificates required and verified against
// ca-cert.pem), and the child writes N bytes in 1 MiB SSL_write calls that
// the parent reads. OpenSSL's default suite (AES-256-GCM) with AES-NI.
// Usage: tls_pump BYTES CREDS_DIR
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static SSL_CTX *ctx(const char *dir, int server) {
  char path[4096];
  SSL_CTX *c = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION);
  snprintf(path, sizeof path, "%s/ca-cert.pem", dir);
  if (!SSL_CTX_load_verify_locations(c, path, NULL)) return NULL;
  snprintf(path, sizeof path, "%s/%s-cert.pem", dir, server ? "server" : "client");
  if (!SSL_CTX_use_certificate_file(c, path, SSL_FILETYPE_PEM)) return NULL;
  snprintf(path, sizeof path, "%s/%s-key.pem", dir, server ? "server" : "client");
  if (!SSL_CTX_use_PrivateKey_file(c, path, SSL_FILETYPE_PEM)) return NULL;
  SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
  return c;
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  long total = atol(argv[1]);
  size_t chunk = 1 << 20;
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  if (bind(l, (void *)&a, sizeof a) || listen(l, 1) || getsockname(l, (void *)&a, &len)) return 1;
  char *buf = malloc(chunk);
  for (size_t i = 0; i < chunk; i++) buf[i] = (char)(i * 2654435761u >> 24);
  pid_t pid = fork();
  if (pid == 0) {
    SSL_CTX *c = ctx(argv[2], 0);
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (!c || connect(fd, (void *)&a, sizeof a)) return 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    SSL *s = SSL_new(c);
    SSL_set_fd(s, fd);
    SSL_set_tlsext_host_name(s, "localhost");
    SSL_set1_host(s, "localhost");
    if (SSL_connect(s) != 1) { ERR_print_errors_fp(stderr); return 1; }
    for (long sent = 0; sent < total;) {
      int n = SSL_write(s, buf, (int)chunk);
      if (n <= 0) return 1;
      sent += n;
    }
    SSL_shutdown(s);
    // Drain what the server sends (tickets, its close) so the close is not a reset.
    shutdown(fd, SHUT_WR);
    while (read(fd, buf, chunk) > 0) {}
    close(fd);
    return 0;
  }
  SSL_CTX *c = ctx(argv[2], 1);
  int fd = accept(l, 0, 0);
  if (!c || fd < 0) return 1;
  SSL *s = SSL_new(c);
  SSL_set_fd(s, fd);
  if (SSL_accept(s) != 1) { ERR_print_errors_fp(stderr); return 1; }
  long got = 0;
  for (int n; (n = SSL_read(s, buf, (int)chunk)) > 0;) got += n;
  close(fd);
  int status = 0;
  waitpid(pid, &status, 0);
  if (got != total || status != 0) fprintf(stderr, "tls_pump: got %ld of %ld, child status %d\n", got, total, status);
  return got == total && status == 0 ? 0 : 1;
}
