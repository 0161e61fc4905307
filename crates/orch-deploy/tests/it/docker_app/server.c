/*
 * The test app of the docker deployer's tests: a tiny HTTP/1.0 server, compiled with
 * `gcc -static` so that it runs in a `FROM scratch` image (no image can be pulled in CI).
 *
 *   server             listens on 127.0.0.1:$PORT; GET / answers the text of /greeting.txt,
 *                      GET /healthz answers 200, or 500 when /health.txt says "staging-only"
 *                      and $PORT is not $STAGING_PORT (an image that passes staging, fails prod)
 *   server selfcheck   exits 0 when /greeting.txt is readable, 3 otherwise (an exec check)
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int read_file(const char *path, char *out, size_t cap) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    fclose(f);
    return (int)n;
}

static int healthy(void) {
    char mode[64];
    if (read_file("/health.txt", mode, sizeof mode) < 0) return 1;
    if (strncmp(mode, "staging-only", 12) != 0) return 1;
    const char *port = getenv("PORT");
    const char *staging = getenv("STAGING_PORT");
    return port && staging && strcmp(port, staging) == 0;
}

static void answer(int fd) {
    char request[2048];
    ssize_t got = read(fd, request, sizeof request - 1);
    if (got <= 0) return;
    request[got] = '\0';
    char body[1024] = "";
    const char *status = "200 OK";
    if (strncmp(request, "GET /healthz", 12) == 0) {
        if (!healthy()) status = "500 Internal Server Error";
        strcpy(body, healthy() ? "ok\n" : "sick\n");
    } else if (strncmp(request, "GET / ", 6) == 0) {
        if (read_file("/greeting.txt", body, sizeof body) < 0) status = "500 Internal Server Error";
    } else {
        status = "404 Not Found";
    }
    char head[256];
    int len = snprintf(head, sizeof head,
                       "HTTP/1.0 %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                       "Connection: close\r\n\r\n",
                       status, strlen(body));
    if (write(fd, head, (size_t)len) < 0) return;
    if (write(fd, body, strlen(body)) < 0) return;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "selfcheck") == 0) {
        char greeting[1024];
        return read_file("/greeting.txt", greeting, sizeof greeting) < 0 ? 3 : 0;
    }
    const char *port = getenv("PORT");
    if (!port) {
        fprintf(stderr, "PORT is not set\n");
        return 2;
    }
    int server = socket(AF_INET, SOCK_STREAM, 0);
    int on = 1;
    setsockopt(server, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)atoi(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(server, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(server, 16) != 0) {
        perror("bind");
        return 1;
    }
    fprintf(stderr, "listening on 127.0.0.1:%s\n", port);
    for (;;) {
        int client = accept(server, NULL, NULL);
        if (client < 0) continue;
        answer(client);
        close(client);
    }
}
