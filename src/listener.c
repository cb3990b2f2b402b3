/* Listening sockets (TCP on listen_addr:listen_port, Unix in unix_socket_dir) and accept. */
#include "pgtide/listener.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "pgtide/client.h"
#include "pgtide/errmap.h"
#include "pgtide/io.h"
#include "pgtide/log.h"
#include "pgtide/pgtide.h"

/* Connections accepted per readiness event, so one busy listener cannot starve the loop. */
#define ACCEPT_BATCH 64

/* A client's TCP socket, as it comes out of accept. */
static void tune_tcp(struct pt_ctx *ctx, int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (ctx->cfg.tcp_user_timeout > 0)
		setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ctx->cfg.tcp_user_timeout,
		           sizeof(int));
	if (ctx->cfg.tcp_socket_buffer > 0)
		io_set_socket_buffers(fd, ctx->cfg.tcp_socket_buffer);
	if (ctx->cfg.tcp_keepalive) {
		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
		if (ctx->cfg.tcp_keepidle > 0)
			setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &ctx->cfg.tcp_keepidle,
			           sizeof(int));
		if (ctx->cfg.tcp_keepintvl > 0)
			setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &ctx->cfg.tcp_keepintvl,
			           sizeof(int));
		if (ctx->cfg.tcp_keepcnt > 0)
			setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &ctx->cfg.tcp_keepcnt,
			           sizeof(int));
	}
}

/*
 * tcp_defer_accept: the kernel holds a new connection back from accept until its first bytes
 * arrive (a client's SSLRequest or StartupMessage) or, with none, about this many seconds have
 * passed, so a connection that never speaks costs no client slot meanwhile. 0 turns it off.
 */
static void tune_accept(struct listener *l)
{
	int secs = l->ctx->cfg.tcp_defer_accept;
#ifdef TCP_DEFER_ACCEPT
	if (setsockopt(l->fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs, sizeof(secs)) != 0)
		log_warn("tcp_defer_accept on %s: %s", l->desc, strerror(errno));
#else
	if (secs > 0)
		log_warn("tcp_defer_accept on %s: not supported on this system", l->desc);
#endif
}

void listener_tune_all(struct pt_ctx *ctx)
{
	for (struct listener *l = ctx->listeners; l; l = l->next)
		if (!l->is_unix)
			tune_accept(l);
}

static void refuse_with_reserve(struct pt_ctx *ctx, int lfd)
{
	if (ctx->reserve_fd < 0)
		return;
	close(ctx->reserve_fd);
	ctx->reserve_fd = -1;
	int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (cfd >= 0) {
		/* Before any startup packet: counted under an empty database and user. */
		static const char msg[] = "sorry, too many clients already";
		struct pbuf b = {0}, json = {0}, out = {0};
		proto_build_error(&b, "FATAL", "53300", msg, NULL, NULL);
		struct proto_error e = {.severity = "FATAL", .sqlstate = "53300", .message = msg};
		enum errmap_kind kind = errmap_classify(&e, &json);
		pbuf_put_u8(&json, 0);
		stats_count_error(&ctx->errors, stats_error_row(&ctx->errors, "", ""), kind);
		const char *field = ctx->cfg.error_kind_field;
		struct pbuf *send_b = &b;
		if (field && field[0] && !json.oom && !b.oom &&
		    errmap_add_field(b.data, (uint32_t)b.len, field[0], (const char *)json.data,
		                     &out) &&
		    !out.oom)
			send_b = &out;
		if (!send_b->oom)
			(void)send(cfd, send_b->data, send_b->len, MSG_NOSIGNAL);
		pbuf_free(&b);
		pbuf_free(&json);
		pbuf_free(&out);
		close(cfd);
	}
	ctx->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void on_accept(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;
	struct pt_ctx *ctx = l->ctx;
	(void)what;
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int cfd = accept4(fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
			    errno == ECONNABORTED)
				return;
			if (errno == EMFILE || errno == ENFILE) {
				int err = errno; /* refuse_with_reserve's calls overwrite it */
				/*
				 * Out of descriptors. The listening socket stays readable, so
				 * leaving the connection queued would spin the loop: spend the
				 * reserve descriptor to accept it, tell it 53300 as PostgreSQL
				 * does, close it, take the reserve back.
				 */
				refuse_with_reserve(ctx, fd);
				int64_t now = pt_now();
				if (now - ctx->last_accept_error_log > 5 * 1000000) {
					log_warn("accept: %s (raise the open-files limit)",
					         strerror(err));
					ctx->last_accept_error_log = now;
				}
				return;
			}
			log_warn("accept on %s: %s", l->desc, strerror(errno));
			return;
		}
		if (!l->is_unix)
			tune_tcp(ctx, cfd);
		client_accept(ctx, cfd, (struct sockaddr *)&ss, len, l->is_unix);
	}
}

static bool add_listener(struct pt_ctx *ctx, int fd, bool is_unix, const char *path,
                         const char *desc)
{
	struct listener *l = calloc(1, sizeof(*l));
	if (!l)
		return false;
	l->ctx = ctx;
	l->fd = fd;
	l->is_unix = is_unix;
	l->path = path ? strdup(path) : NULL;
	snprintf(l->desc, sizeof(l->desc), "%s", desc);
	l->ev = event_new(ctx->base, fd, EV_READ | EV_PERSIST, on_accept, l);
	if (!l->ev || event_add(l->ev, NULL) != 0) {
		if (l->ev)
			event_free(l->ev);
		free(l->path);
		free(l);
		return false;
	}
	l->next = ctx->listeners;
	ctx->listeners = l;
	log_info("listening on %s", desc);
	return true;
}

int listener_bind_tcp(const char *what, const char *host, int port, int backlog, bool reuseport,
                      int *fds, char (*descs)[LISTENER_DESC_MAX], int max)
{
	struct addrinfo hints = {0}, *res = NULL;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	char portstr[16];
	snprintf(portstr, sizeof(portstr), "%d", port);
	int rc = getaddrinfo(strcmp(host, "*") == 0 ? NULL : host, portstr, &hints, &res);
	if (rc != 0) {
		log_error("%s %s: %s", what, host, gai_strerror(rc));
		return -1;
	}
	int n = 0;
	for (struct addrinfo *ai = res; ai && n < max; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		char hbuf[NI_MAXHOST] = "?";
		getnameinfo(ai->ai_addr, ai->ai_addrlen, hbuf, sizeof(hbuf), NULL, 0,
		            NI_NUMERICHOST);
		bool v6 = ai->ai_family == AF_INET6;
		snprintf(descs[n], LISTENER_DESC_MAX, "%s%s%s:%d", v6 ? "[" : "", hbuf,
		         v6 ? "]" : "", port);
		/* so_reuseport: every process that binds the port with it shares the port, the
		 * kernel spreading new connections between them; without it the bind fails. */
		const char *failed = NULL;
		if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
			failed = "could not set SO_REUSEPORT on";
		else if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, backlog) != 0)
			failed = "could not listen on";
		if (failed) {
			log_error("%s: %s %s: %s", what, failed, descs[n], strerror(errno));
			close(fd);
			while (n > 0)
				close(fds[--n]);
			freeaddrinfo(res);
			return -1;
		}
		fds[n++] = fd;
	}
	freeaddrinfo(res);
	if (n == 0) {
		log_error("%s %s: no usable address", what, host);
		return -1;
	}
	return n;
}

static bool listen_tcp(struct pt_ctx *ctx, const char *host, int port)
{
	int fds[16];
	char descs[16][LISTENER_DESC_MAX];
	int n = listener_bind_tcp("listen_addr", host, port, ctx->cfg.listen_backlog,
	                          ctx->cfg.so_reuseport, fds, descs, 16);
	for (int i = 0; i < n; i++) {
		if (!add_listener(ctx, fds[i], false, NULL, descs[i])) {
			while (i < n)
				close(fds[i++]);
			return false;
		}
	}
	return n > 0;
}

/* unix_socket_group: with unix_socket_mode 0770 (say), only that group's members connect. */
static bool set_socket_group(const char *path, const char *group)
{
	if (!group || !group[0])
		return true;
	errno = 0;
	struct group *gr = getgrnam(group);
	if (!gr) {
		log_error("unix_socket_group %s: %s", group,
		          errno ? strerror(errno) : "no such group");
		return false;
	}
	if (chown(path, (uid_t)-1, gr->gr_gid) != 0) {
		log_error("unix_socket_group %s: could not give %s to the group: %s", group, path,
		          strerror(errno));
		return false;
	}
	return true;
}

static bool listen_unix(struct pt_ctx *ctx, const char *dir, int port)
{
	struct sockaddr_un sun = {0};
	sun.sun_family = AF_UNIX;
	int n = snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/.s.PGSQL.%d", dir, port);
	if (n < 0 || (size_t)n >= sizeof(sun.sun_path)) {
		log_error("unix_socket_dir %s: path too long", dir);
		return false;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	unlink(sun.sun_path);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0 ||
	    listen(fd, ctx->cfg.listen_backlog) != 0) {
		log_error("could not listen on %s: %s", sun.sun_path, strerror(errno));
		close(fd);
		return false;
	}
	chmod(sun.sun_path, (mode_t)ctx->cfg.unix_socket_mode);
	if (!set_socket_group(sun.sun_path, ctx->cfg.unix_socket_group)) {
		close(fd);
		unlink(sun.sun_path);
		return false;
	}
	if (!add_listener(ctx, fd, true, sun.sun_path, sun.sun_path)) {
		close(fd);
		return false;
	}
	return true;
}

bool listener_open_all(struct pt_ctx *ctx)
{
	struct config *cfg = &ctx->cfg;
	bool any = false;
	if (cfg->listen_addr && cfg->listen_addr[0]) {
		char *list = strdup(cfg->listen_addr);
		if (!list)
			return false;
		char *save = NULL;
		for (char *h = strtok_r(list, ", ", &save); h; h = strtok_r(NULL, ", ", &save)) {
			if (!listen_tcp(ctx, h, cfg->listen_port)) {
				free(list);
				return false;
			}
			any = true;
		}
		free(list);
	}
	if (cfg->unix_socket_dir && cfg->unix_socket_dir[0]) {
		if (!listen_unix(ctx, cfg->unix_socket_dir, cfg->listen_port))
			return false;
		any = true;
	}
	if (!any)
		log_error("nothing to listen on: set listen_addr or unix_socket_dir");
	listener_tune_all(ctx);
	return any;
}

void listener_close_all(struct pt_ctx *ctx)
{
	struct listener *l = ctx->listeners;
	while (l) {
		struct listener *next = l->next;
		event_free(l->ev);
		close(l->fd);
		if (l->path)
			unlink(l->path);
		free(l->path);
		free(l);
		l = next;
	}
	ctx->listeners = NULL;
}
