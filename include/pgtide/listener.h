/* Listening sockets (TCP and Unix) and accepting connections. */
#ifndef PGTIDE_LISTENER_H
#define PGTIDE_LISTENER_H

#include <stdbool.h>

struct pt_ctx;
struct event;

struct listener {
	struct listener *next;
	struct pt_ctx *ctx;
	int fd;
	struct event *ev;
	bool is_unix;
	char *path; /* Unix socket path, removed on close */
	char desc[128];
};

/* Room for "[address]:port". */
#define LISTENER_DESC_MAX 80

/*
 * Binds and listens on every address host:port resolves to ("*": all of them), non-blocking,
 * at most max sockets, with SO_REUSEPORT if reuseport: fills fds[] and descs[]
 * ("127.0.0.1:6432", "[::1]:6432"). Returns how many, or -1 after logging why (`what` names
 * the setting), with none left open.
 */
int listener_bind_tcp(const char *what, const char *host, int port, int backlog, bool reuseport,
                      int *fds, char (*descs)[LISTENER_DESC_MAX], int max);

/* Opens every listener the configuration asks for. Logs and returns false on failure. */
bool listener_open_all(struct pt_ctx *ctx);
/* Applies tcp_defer_accept as it is now to every TCP listener (at start, reload and SET). */
void listener_tune_all(struct pt_ctx *ctx);
/* Stops accepting and closes every listener. */
void listener_close_all(struct pt_ctx *ctx);

#endif
