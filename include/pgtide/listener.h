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

/* Opens every listener the configuration asks for. Logs and returns false on failure. */
bool listener_open_all(struct pt_ctx *ctx);
/* Stops accepting and closes every listener. */
void listener_close_all(struct pt_ctx *ctx);

#endif
