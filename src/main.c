/* Command line, configuration, signals, the event loop, start and stop. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "pgtide/admin.h"
#include "pgtide/cancel.h"
#include "pgtide/client.h"
#include "pgtide/listener.h"
#include "pgtide/log.h"
#include "pgtide/metrics.h"
#include "pgtide/pgtide.h"
#include "pgtide/pool.h"
#include "pgtide/rnd.h"
#include "pgtide/server.h"

#define JANITOR_INTERVAL_USEC 250000

void pool_run_kicks(struct pt_ctx *ctx);

/* Set while an io callback runs (pt_now_hold): one clock read per wakeup, not one per use.
 * Per thread, as a loop runs on one thread (see "No mutable globals" in docs/DESIGN.md). */
static _Thread_local int64_t now_held;

void pt_now_hold(void)
{
	now_held = 0;
	now_held = pt_now();
}

void pt_now_release(void)
{
	now_held = 0;
}

int64_t pt_now(void)
{
	if (now_held)
		return now_held;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void pt_schedule_reaper(struct pt_ctx *ctx)
{
	if (ctx->reaper)
		event_active(ctx->reaper, EV_TIMEOUT, 0);
}

bool pt_conn_keyword_ok(const char *keyword)
{
	/* libpq's keyword list never changes while we run: read it once. */
	static PQconninfoOption *opts;
	if (!opts)
		opts = PQconndefaults();
	if (!opts)
		return true;
	for (PQconninfoOption *o = opts; o->keyword; o++)
		if (strcmp(o->keyword, keyword) == 0)
			return true;
	return false;
}

/* ---- usage ---- */

static void usage(FILE *f)
{
	fprintf(f,
	        "pgtide: a PostgreSQL connection pooler.\n"
	        "\n"
	        "Usage:\n"
	        "  pgtide [OPTIONS] CONFIG.ini\n"
	        "  pgtide [OPTIONS] --backend URL [--listen HOST:PORT]\n"
	        "\n"
	        "Options:\n"
	        "  -d, --daemon          run in the background (writes pidfile if set)\n"
	        "  -v, --verbose         more log output (repeat for more)\n"
	        "  -q, --quiet           only errors on stderr (the log file gets everything)\n"
	        "  -V, --version         print the version and exit\n"
	        "  -h, --help            print this help and exit\n"
	        "      --backend URL     run without a file, in front of the PostgreSQL at URL\n"
	        "                        (postgresql://user:password@host:port/db); clients log "
	        "in\n"
	        "                        with the same user, password and database name\n"
	        "      --listen HOST:PORT  where to listen (default 127.0.0.1:6432 with "
	        "--backend;\n"
	        "                        overrides listen_addr/listen_port of a file)\n"
	        "      --pool-mode MODE  session, transaction or statement (overrides pool_mode)\n"
	        "      --pool-size N     server connections per pool (overrides "
	        "default_pool_size)\n"
	        "\n"
	        "The file uses pgbouncer.ini's layout: [pgtide] (or [pgbouncer]) settings,\n"
	        "[databases] entries (libpq connection strings), [users]. See config/pgtide.ini.\n"
	        "\n"
	        "Signals: SIGHUP reloads the file and reopens the log; SIGTERM shuts down at "
	        "once;\n"
	        "SIGINT stops accepting and waits up to shutdown_wait_timeout for clients to "
	        "leave.\n");
}

/* ---- configuration ---- */

static void log_diag(enum log_level level, const struct config_diag *d)
{
	log_msg(level, "%s:%d: %s%s%s", d->file ? d->file : "?", d->line, d->key ? d->key : "",
	        d->key ? ": " : "", d->message ? d->message : "");
}

/* Appends s as a libpq conninfo value: single-quoted, with \ and ' escaped. */
static void put_conn_value(struct pbuf *b, const char *s)
{
	pbuf_put_u8(b, '\'');
	for (; *s; s++) {
		if (*s == '\'' || *s == '\\')
			pbuf_put_u8(b, '\\');
		pbuf_put_u8(b, (uint8_t)*s);
	}
	pbuf_put_u8(b, '\'');
}

/*
 * --backend URL: builds an ini text with one [databases] entry for the URL's database and a
 * user list holding the URL's user and password, so clients use the same credentials.
 */
static bool backend_config(struct pt_ctx *ctx, char **ini, char **userlist)
{
	char *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(ctx->cli.backend_url, &err);
	if (!opts) {
		fprintf(stderr, "pgtide: --backend: %s", err ? err : "invalid URL\n");
		PQfreemem(err);
		return false;
	}
	const char *user = NULL, *password = NULL, *dbname = NULL;
	struct pbuf conn = {0};
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		if (!o->val || !o->val[0])
			continue;
		if (strcmp(o->keyword, "user") == 0)
			user = o->val;
		if (strcmp(o->keyword, "password") == 0)
			password = o->val;
		if (strcmp(o->keyword, "dbname") == 0)
			dbname = o->val;
		if (conn.len)
			pbuf_put_u8(&conn, ' ');
		pbuf_put(&conn, o->keyword, strlen(o->keyword));
		pbuf_put_u8(&conn, '=');
		put_conn_value(&conn, o->val);
	}
	pbuf_put_u8(&conn, 0);
	const char *login_user = user ? user : getenv("USER") ? getenv("USER") : "postgres";
	const char *db = dbname ? dbname : login_user;
	char *u = NULL;
	int r1 = asprintf(ini,
	                  "[pgtide]\n"
	                  "listen_addr = 127.0.0.1\n"
	                  "listen_port = 6432\n"
	                  "auth_type = %s\n"
	                  "[databases]\n"
	                  "%s = %s\n",
	                  password ? "scram-sha-256" : "trust", db, (const char *)conn.data);
	/* userlist.txt quoting: a quote inside is doubled. */
	struct pbuf ul = {0};
	const char *parts[2] = {login_user, password ? password : ""};
	for (int i = 0; i < 2; i++) {
		pbuf_put_u8(&ul, '"');
		for (const char *s = parts[i]; *s; s++) {
			if (*s == '"')
				pbuf_put_u8(&ul, '"');
			pbuf_put_u8(&ul, (uint8_t)*s);
		}
		pbuf_put(&ul, i == 0 ? "\" " : "\"\n", 2);
	}
	pbuf_put_u8(&ul, 0);
	u = ul.oom ? NULL : (char *)ul.data;
	*userlist = u;
	pbuf_free(&conn);
	PQconninfoFree(opts);
	return r1 >= 0 && u;
}

static bool apply_cli_overrides(struct pt_ctx *ctx, struct config *cfg)
{
	if (ctx->cli.listen) {
		const char *colon = strrchr(ctx->cli.listen, ':');
		if (!colon) {
			fprintf(stderr, "pgtide: --listen wants HOST:PORT\n");
			return false;
		}
		int port = atoi(colon + 1);
		if (port <= 0 || port > 65535) {
			fprintf(stderr, "pgtide: --listen: bad port\n");
			return false;
		}
		free(cfg->listen_addr);
		cfg->listen_addr = strndup(ctx->cli.listen, (size_t)(colon - ctx->cli.listen));
		cfg->listen_port = port;
	}
	if (ctx->cli.pool_mode) {
		if (strcmp(ctx->cli.pool_mode, "session") == 0)
			cfg->pool_mode = POOL_MODE_SESSION;
		else if (strcmp(ctx->cli.pool_mode, "transaction") == 0)
			cfg->pool_mode = POOL_MODE_TRANSACTION;
		else if (strcmp(ctx->cli.pool_mode, "statement") == 0)
			cfg->pool_mode = POOL_MODE_STATEMENT;
		else {
			fprintf(stderr, "pgtide: --pool-mode: session, transaction or statement\n");
			return false;
		}
	}
	if (ctx->cli.pool_size > 0)
		cfg->default_pool_size = ctx->cli.pool_size;
	return true;
}

static bool load_userlist(const char *path, const char *text, struct auth_userlist *out)
{
	char *buf = NULL;
	size_t len = 0;
	if (!text) {
		if (!path || !path[0]) {
			memset(out, 0, sizeof(*out));
			return true;
		}
		FILE *f = fopen(path, "r");
		if (!f) {
			log_error("auth_file %s: %s", path, strerror(errno));
			return false;
		}
		char chunk[4096];
		size_t n;
		struct pbuf b = {0};
		while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
			pbuf_put(&b, chunk, n);
		fclose(f);
		buf = (char *)b.data;
		len = b.len;
		text = buf ? buf : "";
	} else {
		len = strlen(text);
	}
	int line = 0;
	const char *msg = NULL;
	bool ok = auth_userlist_parse(text, len, out, &line, &msg);
	if (!ok)
		log_error("auth_file %s:%d: %s", path ? path : "(--backend)", line, msg);
	if (buf) {
		memset(buf, 0, len);
		free(buf);
	}
	return ok;
}

/* Loads configuration and user list (first start or reload). Returns false with a message. */
static bool load_all(struct pt_ctx *ctx, struct config *cfg, struct auth_userlist *users)
{
	struct config_diag *warnings = NULL, err = {0};
	size_t n_warnings = 0;
	enum config_result r;
	char *ini = NULL, *ul_text = NULL;
	if (ctx->cli.backend_url) {
		if (!backend_config(ctx, &ini, &ul_text)) {
			free(ini);
			free(ul_text);
			return false;
		}
		r = config_parse(cfg, ini, strlen(ini), "(--backend)", pt_conn_keyword_ok,
		                 &warnings, &n_warnings, &err);
	} else {
		r = config_load(cfg, ctx->cli.config_path, pt_conn_keyword_ok, &warnings,
		                &n_warnings, &err);
	}
	free(ini);
	for (size_t i = 0; i < n_warnings; i++)
		log_diag(LOG_LEVEL_WARNING, &warnings[i]);
	config_diags_free(warnings, n_warnings);
	if (r != CONFIG_OK) {
		log_diag(LOG_LEVEL_FATAL, &err);
		config_diag_free(&err);
		free(ul_text);
		return false;
	}
	config_diag_free(&err);
	if (!apply_cli_overrides(ctx, cfg)) {
		config_free(cfg);
		free(ul_text);
		return false;
	}
	bool ok = load_userlist(cfg->auth_file, ul_text, users);
	if (ul_text) {
		memset(ul_text, 0, strlen(ul_text));
		free(ul_text);
	}
	if (!ok)
		config_free(cfg);
	return ok;
}

/*
 * A new client-side TLS context for new connections, from the files as they are now (a renewed
 * certificate at the same path counts). Established connections keep the one they were made
 * with. If the new one cannot be built, the old one (and its client_tls_sslmode) stays.
 */
void pt_reload_tls(struct pt_ctx *ctx)
{
	char err[512];
	if (!tls_load_client(&ctx->tls, &ctx->cfg, err, sizeof(err))) {
		log_error("client TLS settings not reloaded, keeping the previous ones: %s", err);
		return;
	}
	if (ctx->tls.accept_ctx)
		log_info("client TLS reloaded: client_tls_sslmode %s, certificate %s",
		         config_sslmode_name(ctx->tls.client_mode), ctx->cfg.client_tls_cert_file);
}

bool pt_reload(struct pt_ctx *ctx)
{
	struct config nc;
	struct auth_userlist nu = {0};
	memset(&nc, 0, sizeof(nc));
	if (!load_all(ctx, &nc, &nu)) {
		log_error("reload failed; keeping the previous configuration");
		return false;
	}
	if ((nc.listen_port != ctx->cfg.listen_port) ||
	    strcmp(nc.listen_addr ? nc.listen_addr : "",
	           ctx->cfg.listen_addr ? ctx->cfg.listen_addr : "") != 0 ||
	    strcmp(nc.unix_socket_dir ? nc.unix_socket_dir : "",
	           ctx->cfg.unix_socket_dir ? ctx->cfg.unix_socket_dir : "") != 0)
		log_warn("listen_addr, listen_port and unix_socket_dir change only at restart");
	if (nc.so_reuseport != ctx->cfg.so_reuseport)
		log_warn("so_reuseport changes only at restart");
	char *old_metrics = ctx->cfg.metrics_listen;
	ctx->cfg.metrics_listen = NULL; /* kept for metrics_reload */
	config_free(&ctx->cfg);
	ctx->cfg = nc;
	auth_userlist_free(&ctx->users);
	ctx->users = nu;
	if (!log_open(ctx->cfg.logfile, ctx->cfg.syslog, ctx->cfg.syslog_ident,
	              ctx->cfg.syslog_facility, ctx->cfg.verbose + ctx->cli.verbose,
	              ctx->cli.quiet))
		log_error("could not reopen logfile %s: %s", ctx->cfg.logfile, strerror(errno));
	pt_reload_tls(ctx);
	listener_tune_all(ctx);
	struct pool *p;
	TAILQ_FOREACH(p, &ctx->pools, link)
	{
		pool_refresh(p);
		pool_kick(p); /* a larger pool serves its waiting clients now */
	}
	if (ctx->phase != PT_SHUTDOWN_NOW)
		metrics_reload(ctx, old_metrics);
	free(old_metrics);
	log_info("configuration reloaded");
	return true;
}

/* ---- shutdown ---- */

static void shutdown_now(struct pt_ctx *ctx, const char *why)
{
	if (ctx->phase == PT_SHUTDOWN_NOW)
		return;
	log_info("shutting down: %s", why);
	ctx->phase = PT_SHUTDOWN_NOW;
	listener_close_all(ctx);
	metrics_stop_listening(ctx);
	struct client *c;
	while ((c = TAILQ_FIRST(&ctx->clients)) != NULL)
		client_close(c, "57P01", "terminating connection due to administrator command");
	struct pool *p;
	TAILQ_FOREACH(p, &ctx->pools, link)
	{
		struct server *s;
		while ((s = TAILQ_FIRST(&p->idle)) != NULL)
			server_close(s, "shutdown");
		while ((s = TAILQ_FIRST(&p->active)) != NULL)
			server_close(s, "shutdown");
		while ((s = TAILQ_FIRST(&p->used)) != NULL)
			server_close(s, "shutdown");
		while ((s = TAILQ_FIRST(&p->connecting)) != NULL)
			server_close(s, "shutdown");
	}
	event_base_loopexit(ctx->base, NULL);
}

void pt_shutdown(struct pt_ctx *ctx, const char *why)
{
	shutdown_now(ctx, why);
}

/* ---- loop callbacks ---- */

static void reaper_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pt_ctx *ctx = arg;
	(void)fd;
	(void)what;
	io_run_deferred(ctx);
	pool_run_kicks(ctx);
	io_run_deferred(ctx);
	metrics_reap(ctx);
	struct client *c;
	while ((c = TAILQ_FIRST(&ctx->zombie_clients)) != NULL) {
		TAILQ_REMOVE(&ctx->zombie_clients, c, all_link);
		client_free(c);
	}
	struct server *s;
	while ((s = TAILQ_FIRST(&ctx->zombie_servers)) != NULL) {
		TAILQ_REMOVE(&ctx->zombie_servers, s, link);
		server_free(s);
	}
	if (ctx->phase == PT_SHUTDOWN_WAIT && ctx->n_clients == 0)
		shutdown_now(ctx, "all clients have left");
	else if (!TAILQ_EMPTY(&ctx->admin_clients))
		admin_tick(ctx); /* servers closed or released: a PAUSE may be done */
}

static void janitor_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pt_ctx *ctx = arg;
	(void)fd;
	(void)what;
	int64_t now = pt_now();
	if (ctx->cfg.client_login_timeout > 0) {
		struct client *c, *next;
		for (c = TAILQ_FIRST(&ctx->login_clients); c; c = next) {
			next = TAILQ_NEXT(c, link);
			if (now - c->connect_time > ctx->cfg.client_login_timeout)
				client_close(c, "08P01", "client_login_timeout");
		}
	}
	struct pool *p;
	TAILQ_FOREACH(p, &ctx->pools, link)
	pool_janitor(p, now);
	pool_reap_autodb(ctx, now);
	if (!TAILQ_EMPTY(&ctx->admin_clients))
		admin_tick(ctx); /* a SUSPEND's buffers may be flushed */
	metrics_janitor(ctx, now);
	if (ctx->phase == PT_SHUTDOWN_WAIT) {
		if (ctx->n_clients == 0)
			shutdown_now(ctx, "all clients have left");
		else if (now >= ctx->shutdown_deadline)
			shutdown_now(ctx, "shutdown_wait_timeout reached");
	}
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct pt_ctx *ctx = arg;
	(void)what;
	switch (sig) {
	case SIGHUP:
		log_info("SIGHUP: reloading configuration");
		pt_reload(ctx);
		break;
	case SIGTERM:
		shutdown_now(ctx, "SIGTERM");
		break;
	case SIGINT:
		if (ctx->phase == PT_RUNNING) {
			log_info("SIGINT: not accepting new connections, waiting for %u clients to "
			         "leave",
			         ctx->n_clients);
			ctx->phase = PT_SHUTDOWN_WAIT;
			ctx->shutdown_deadline = pt_now() + ctx->cfg.shutdown_wait_timeout;
			listener_close_all(ctx);
			if (ctx->n_clients == 0)
				shutdown_now(ctx, "no clients");
		} else {
			shutdown_now(ctx, "second SIGINT");
		}
		break;
	default:
		break;
	}
}

/* ---- start ---- */

static bool daemonize(const char *pidfile)
{
	pid_t pid = fork();
	if (pid < 0)
		return false;
	if (pid > 0)
		_exit(0);
	setsid();
	pid = fork();
	if (pid < 0)
		return false;
	if (pid > 0)
		_exit(0);
	int fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	if (pidfile && pidfile[0]) {
		FILE *f = fopen(pidfile, "w");
		if (!f)
			return false;
		fprintf(f, "%d\n", (int)getpid());
		fclose(f);
	}
	return true;
}

static void free_ctx(struct pt_ctx *ctx)
{
	reaper_cb(-1, 0, ctx);
	listener_close_all(ctx); /* open when start-up failed after them (metrics_open) */
	metrics_free(ctx);
	struct pool *p;
	while ((p = TAILQ_FIRST(&ctx->pools)) != NULL) {
		TAILQ_REMOVE(&ctx->pools, p, link);
		pool_free(p);
	}
	if (ctx->reaper)
		event_free(ctx->reaper);
	if (ctx->janitor)
		event_free(ctx->janitor);
	if (ctx->sig_hup)
		event_free(ctx->sig_hup);
	if (ctx->sig_term)
		event_free(ctx->sig_term);
	if (ctx->sig_int)
		event_free(ctx->sig_int);
	pool_db_switches_free(ctx);
	cancel_table_free(ctx->cancels);
	iobuf_pool_destroy(&ctx->bufs);
	pset_table_free(&ctx->psets);
	pbuf_free(&ctx->scratch);
	pbuf_free(&ctx->scratch_json);
	stats_errors_free(&ctx->errors);
	climit_table_free(&ctx->db_clients);
	climit_table_free(&ctx->user_clients);
	prep_registry_free(&ctx->prep);
	free(ctx->deferred_io);
	free(ctx->kick_pools);
	config_free(&ctx->cfg);
	auth_userlist_free(&ctx->users);
	tls_state_free(&ctx->tls);
	if (ctx->base)
		event_base_free(ctx->base);
	if (ctx->reserve_fd >= 0)
		close(ctx->reserve_fd);
}

int main(int argc, char **argv)
{
	struct pt_ctx ctx;
	memset(&ctx, 0, sizeof(ctx));
	ctx.reserve_fd = -1;
	static const struct option longopts[] = {
	        {"daemon", no_argument, NULL, 'd'},
	        {"verbose", no_argument, NULL, 'v'},
	        {"quiet", no_argument, NULL, 'q'},
	        {"version", no_argument, NULL, 'V'},
	        {"help", no_argument, NULL, 'h'},
	        {"backend", required_argument, NULL, 1},
	        {"listen", required_argument, NULL, 2},
	        {"pool-mode", required_argument, NULL, 3},
	        {"pool-size", required_argument, NULL, 4},
	        {NULL, 0, NULL, 0},
	};
	int opt;
	while ((opt = getopt_long(argc, argv, "dvqVh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'd':
			ctx.cli.daemonize = true;
			break;
		case 'v':
			ctx.cli.verbose++;
			break;
		case 'q':
			ctx.cli.quiet = true;
			break;
		case 'V':
			printf("%s\n", PGTIDE_VERSION_STRING);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		case 1:
			ctx.cli.backend_url = optarg;
			break;
		case 2:
			ctx.cli.listen = optarg;
			break;
		case 3:
			ctx.cli.pool_mode = optarg;
			break;
		case 4:
			ctx.cli.pool_size = atoi(optarg);
			if (ctx.cli.pool_size <= 0) {
				fprintf(stderr, "pgtide: --pool-size wants a positive number\n");
				return 1;
			}
			break;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind < argc)
		ctx.cli.config_path = argv[optind];
	if (!ctx.cli.config_path && !ctx.cli.backend_url) {
		usage(stderr);
		return 1;
	}
	if (ctx.cli.backend_url && !ctx.cli.listen)
		ctx.cli.listen = "127.0.0.1:6432";

	log_open(NULL, false, NULL, NULL, ctx.cli.verbose, ctx.cli.quiet);
	if (!load_all(&ctx, &ctx.cfg, &ctx.users))
		return 1;
	if (!log_open(ctx.cfg.logfile, ctx.cfg.syslog, ctx.cfg.syslog_ident,
	              ctx.cfg.syslog_facility, ctx.cfg.verbose + ctx.cli.verbose, ctx.cli.quiet)) {
		log_fatal("could not open logfile %s: %s", ctx.cfg.logfile, strerror(errno));
		config_free(&ctx.cfg);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	char tls_err[512];
	if (!tls_load_client(&ctx.tls, &ctx.cfg, tls_err, sizeof(tls_err))) {
		log_fatal("%s", tls_err);
		config_free(&ctx.cfg);
		auth_userlist_free(&ctx.users);
		return 1;
	}
	if (ctx.tls.accept_ctx)
		log_info("client TLS: client_tls_sslmode %s, certificate %s",
		         config_sslmode_name(ctx.tls.client_mode), ctx.cfg.client_tls_cert_file);

	TAILQ_INIT(&ctx.pools);
	TAILQ_INIT(&ctx.clients);
	TAILQ_INIT(&ctx.login_clients);
	TAILQ_INIT(&ctx.admin_clients);
	TAILQ_INIT(&ctx.zombie_clients);
	TAILQ_INIT(&ctx.zombie_servers);
	struct event_config *ecfg = event_config_new();
	ctx.base = ecfg ? event_base_new_with_config(ecfg) : NULL;
	if (ecfg)
		event_config_free(ecfg);
	ctx.cancels = cancel_table_new();
	if (!ctx.base || !ctx.cancels) {
		log_fatal("could not initialise the event loop");
		free_ctx(&ctx);
		return 1;
	}
	ctx.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (!listener_open_all(&ctx) || !metrics_open(&ctx)) {
		free_ctx(&ctx);
		return 1;
	}
	ctx.stats_tick = pt_now();
	if (ctx.cli.daemonize && !daemonize(ctx.cfg.pidfile)) {
		log_fatal("could not daemonize: %s", strerror(errno));
		free_ctx(&ctx);
		return 1;
	}
	rnd_forget(); /* nothing drawn before the fork is handed out by this process */
	ctx.reaper = event_new(ctx.base, -1, 0, reaper_cb, &ctx);
	ctx.janitor = event_new(ctx.base, -1, EV_PERSIST, janitor_cb, &ctx);
	ctx.sig_hup = evsignal_new(ctx.base, SIGHUP, signal_cb, &ctx);
	ctx.sig_term = evsignal_new(ctx.base, SIGTERM, signal_cb, &ctx);
	ctx.sig_int = evsignal_new(ctx.base, SIGINT, signal_cb, &ctx);
	struct timeval jt = {0, JANITOR_INTERVAL_USEC};
	if (!ctx.reaper || !ctx.janitor || !ctx.sig_hup || !ctx.sig_term || !ctx.sig_int ||
	    event_add(ctx.janitor, &jt) || event_add(ctx.sig_hup, NULL) ||
	    event_add(ctx.sig_term, NULL) || event_add(ctx.sig_int, NULL)) {
		log_fatal("could not set up events");
		free_ctx(&ctx);
		return 1;
	}
	log_info("%s started (pid %d)", PGTIDE_VERSION_STRING, (int)getpid());
	event_base_dispatch(ctx.base);
	/* Let cancel workers finish before libpq's structures go away. */
	for (int i = 0; i < 200 && cancel_inflight() > 0; i++)
		usleep(10000);
	log_info("pgtide stopped");
	free_ctx(&ctx);
	if (ctx.cli.daemonize && ctx.cfg.pidfile)
		unlink(ctx.cfg.pidfile);
	log_close();
	return 0;
}
