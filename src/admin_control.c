/*
 * The admin console's control commands (PAUSE, RESUME, ..., SHUTDOWN, SET): they act on the
 * pools; those that wait (PAUSE, SUSPEND, WAIT_CLOSE) answer later, never blocking the loop.
 */
#include "pgtide/admin.h"

#include <stdlib.h>
#include <string.h>

#include "pgtide/admin_int.h"
#include "pgtide/client.h"
#include "pgtide/config.h"
#include "pgtide/listener.h"
#include "pgtide/log.h"
#include "pgtide/pgtide.h"
#include "pgtide/pool.h"
#include "pgtide/server.h"
#include "pgtide/sqlscan.h"

/* ---- commands that answer later ---- */

/* What a waiting console command waits for (see admin_tick). */
enum admin_wait_kind {
	WAIT_PAUSE,   /* PAUSE: the paused pools hold no server */
	WAIT_SUSPEND, /* SUSPEND: every out-queue is flushed */
	WAIT_CLOSE,   /* WAIT_CLOSE: no server is marked close_needed */
};

static const char *const wait_tags[] = {
        [WAIT_PAUSE] = "PAUSE",
        [WAIT_SUSPEND] = "SUSPEND",
        [WAIT_CLOSE] = "WAIT_CLOSE",
};

/*
 * A console command that answers later. The console client stays IDLE with its later messages
 * held in its input buffer; admin_tick re-checks on the janitor tick and whenever the reaper
 * runs (servers closed or released), so no wait blocks the loop.
 */
struct admin_wait {
	enum admin_wait_kind kind;
	char *db;   /* the database it concerns; NULL: all */
	char *rest; /* statements after it in the same Query, run once it answers */
	size_t rest_len;
	int64_t started; /* pt_now() when it began: SUSPEND gives up after suspend_timeout */
};

static enum admin_result start_wait(struct client *c, struct pbuf *b, enum admin_wait_kind kind,
                                    const char *db)
{
	struct admin_wait *w = calloc(1, sizeof(*w));
	if (!w || (db && !(w->db = strdup(db)))) {
		free(w);
		admin_error(c, b, "53200", "out of memory");
		return ADMIN_FAILED;
	}
	w->kind = kind;
	w->started = pt_now();
	c->admin_wait = w;
	return ADMIN_WAITING;
}

void admin_control_keep_rest(struct client *c, const char *rest, size_t n)
{
	struct admin_wait *w = c->admin_wait;
	if (n > 0 && (w->rest = malloc(n)) != NULL) {
		memcpy(w->rest, rest, n);
		w->rest_len = n;
	} else if (n > 0) {
		log_error("out of memory: the statements after %s are dropped", wait_tags[w->kind]);
	}
}

static void free_wait(struct admin_wait *w)
{
	if (!w)
		return;
	free(w->db);
	free(w->rest);
	free(w);
}

void admin_client_free(struct client *c)
{
	free_wait(c->admin_wait);
	c->admin_wait = NULL;
}

/* True if the pools of db (all if NULL) hold no server in any state. */
static bool pools_empty(const struct pt_ctx *ctx, const char *db)
{
	const struct pool *p;
	TAILQ_FOREACH(p, &ctx->pools, link)
	if ((!db || strcmp(p->db_name, db) == 0) && pool_server_count(p) > 0)
		return false;
	return true;
}

/* True if no server of db (all if NULL) is marked to close when released. */
static bool close_done(const struct pt_ctx *ctx, const char *db)
{
	const struct pool *p;
	TAILQ_FOREACH(p, &ctx->pools, link)
	{
		if (db && strcmp(p->db_name, db) != 0)
			continue;
		const struct server_list *lists[] = {&p->connecting, &p->idle, &p->active,
		                                     &p->used};
		for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
			const struct server *s;
			TAILQ_FOREACH(s, lists[i], link)
			if (s->close_when_idle)
				return false;
		}
	}
	return true;
}

/* True if nothing is queued for any client or server socket (SUSPEND). */
static bool all_flushed(const struct pt_ctx *ctx)
{
	const struct client *c;
	TAILQ_FOREACH(c, &ctx->clients, all_link)
	if (!c->admin && io_outq_len(&c->io) > 0 && !c->io.failed)
		return false;
	const struct pool *p;
	TAILQ_FOREACH(p, &ctx->pools, link)
	{
		const struct server_list *lists[] = {&p->idle, &p->active, &p->used};
		for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
			const struct server *s;
			TAILQ_FOREACH(s, lists[i], link)
			if (s->io_ready && io_outq_len(&s->io) > 0 && !s->io.failed)
				return false;
		}
	}
	return true;
}

/*
 * suspend_timeout ran out: the connections whose buffers did not flush are closed, so that
 * SUSPEND can answer (PgBouncer's behaviour; a reader that stalls cannot hold it forever).
 */
static void drop_unflushed(struct pt_ctx *ctx)
{
	struct client *c, *cn;
	for (c = TAILQ_FIRST(&ctx->clients); c; c = cn) {
		cn = TAILQ_NEXT(c, all_link);
		if (!c->admin && c->state != CLIENT_CLOSED && io_outq_len(&c->io) > 0 &&
		    !c->io.failed)
			client_close(c, "57P01",
			             "terminating connection: SUSPEND could not flush it within "
			             "suspend_timeout");
	}
	struct pool *p;
	TAILQ_FOREACH(p, &ctx->pools, link)
	{
		struct server_list *lists[] = {&p->idle, &p->active, &p->used};
		for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
			struct server *s, *sn;
			for (s = TAILQ_FIRST(lists[i]); s; s = sn) {
				sn = TAILQ_NEXT(s, link);
				if (s->io_ready && io_outq_len(&s->io) > 0 && !s->io.failed)
					server_close(s, "SUSPEND could not flush it within "
					                "suspend_timeout");
			}
		}
	}
}

static bool suspend_timed_out(const struct pt_ctx *ctx, const struct admin_wait *w)
{
	return w->kind == WAIT_SUSPEND && ctx->pause_mode == PT_SUSPENDED &&
	       ctx->cfg.suspend_timeout > 0 && pt_now() - w->started >= ctx->cfg.suspend_timeout;
}

/*
 * Whether w is over: 1 done, -1 called off (RESUME came first; *why says so), 0 not yet.
 */
static int wait_over(const struct pt_ctx *ctx, const struct admin_wait *w, const char **why)
{
	switch (w->kind) {
	case WAIT_PAUSE:
		if (w->db ? !pool_db_paused(ctx, w->db) : ctx->pause_mode != PT_PAUSED) {
			*why = "PAUSE was called off by RESUME";
			return -1;
		}
		return pools_empty(ctx, w->db) ? 1 : 0;
	case WAIT_SUSPEND:
		if (ctx->pause_mode != PT_SUSPENDED) {
			*why = "SUSPEND was called off by RESUME";
			return -1;
		}
		return all_flushed(ctx) ? 1 : 0;
	case WAIT_CLOSE:
		return close_done(ctx, w->db) ? 1 : 0;
	}
	return 1;
}

/*
 * Answers c's waiting command: its tag (or the error sqlstate/msg), then the statements that
 * followed it in the Query, then ReadyForQuery; then the messages held meanwhile.
 */
static void finish_wait(struct client *c, const char *sqlstate, const char *msg)
{
	struct admin_wait *w = c->admin_wait;
	c->admin_wait = NULL;
	struct pbuf b = {0};
	enum admin_result r = ADMIN_DONE;
	if (sqlstate) {
		admin_error(c, &b, sqlstate, "%s", msg);
	} else {
		admin_put_command_complete(&b, wait_tags[w->kind]);
		if (w->rest)
			r = admin_run_statements(c, &b, w->rest, w->rest_len, NULL);
	}
	free_wait(w);
	if (r == ADMIN_GONE) {
		pbuf_free(&b);
		return;
	}
	if (r != ADMIN_WAITING)
		proto_build_ready(&b, 'I');
	if (!b.oom)
		io_write(&c->io, b.data, b.len);
	pbuf_free(&b);
	if (!c->admin_wait && c->state != CLIENT_CLOSED && io_in_len(&c->io) > 0)
		io_pump(&c->io);
}

void admin_tick(struct pt_ctx *ctx)
{
	struct client *c;
again:
	TAILQ_FOREACH(c, &ctx->admin_clients, link)
	{
		if (!c->admin_wait)
			continue;
		const char *why = NULL;
		int over = wait_over(ctx, c->admin_wait, &why);
		if (over == 0 && suspend_timed_out(ctx, c->admin_wait)) {
			log_warn("SUSPEND: suspend_timeout reached, closing the connections that "
			         "did not flush");
			drop_unflushed(ctx);
			over = 1; /* what closing them queued (a reset) waits for RESUME */
		}
		if (over == 0)
			continue;
		/* Answering runs what followed, which may change the list: start over. */
		finish_wait(c, over < 0 ? "57014" : NULL, why);
		goto again;
	}
}

static void resume_io(struct pt_ctx *ctx);

void admin_cancel(struct client *c)
{
	struct admin_wait *w = c->admin_wait;
	struct pt_ctx *ctx = c->ctx;
	if (!w)
		return;
	char pfx[256];
	log_info("%s cancel request: %s called off", client_prefix(c, pfx, sizeof(pfx)),
	         wait_tags[w->kind]);
	/* A cancelled command leaves nothing behind, as a cancelled statement would. */
	if (w->kind == WAIT_PAUSE && w->db) {
		pool_db_set_paused(ctx, w->db, false);
		pool_apply_pause(ctx);
	} else if (w->kind == WAIT_PAUSE && ctx->pause_mode == PT_PAUSED) {
		ctx->pause_mode = PT_ACTIVE;
		pool_apply_pause(ctx);
	} else if (w->kind == WAIT_SUSPEND && ctx->pause_mode == PT_SUSPENDED) {
		ctx->pause_mode = PT_ACTIVE;
		resume_io(ctx);
	}
	finish_wait(c, "57014", "canceling statement due to user request");
	pt_schedule_reaper(ctx); /* other waits may be over now */
}

/* ---- control commands ---- */

static void log_command(struct client *c, const char *cmd, const char *arg)
{
	char pfx[256];
	log_info("%s admin command: %s%s%s%s", client_prefix(c, pfx, sizeof(pfx)), cmd,
	         arg ? " '" : "", arg ? arg : "", arg ? "'" : "");
}

/* Checks a database argument: it must be a [databases] entry (or reach one through "*"). */
static bool check_db(struct client *c, struct pbuf *b, const char *db, const char *what)
{
	if (admin_is_console_db(db)) {
		admin_error(c, b, "0A000", "cannot %s admin db: %s", what, db);
		return false;
	}
	if (!config_find_db(&c->ctx->cfg, db)) {
		admin_error(c, b, "3D000", "no such database: %s", db);
		return false;
	}
	return true;
}

static bool check_not_paused(struct client *c, struct pbuf *b)
{
	if (c->ctx->pause_mode == PT_ACTIVE)
		return true;
	admin_error(c, b, "55000", "already suspended/paused");
	return false;
}

static enum admin_result cmd_pause(struct client *c, struct pbuf *b, const char *db)
{
	struct pt_ctx *ctx = c->ctx;
	if (!check_not_paused(c, b) || (db && !check_db(c, b, db, "pause")))
		return ADMIN_FAILED;
	log_command(c, "PAUSE", db);
	if (db) {
		if (!pool_db_set_paused(ctx, db, true)) {
			admin_error(c, b, "53200", "out of memory");
			return ADMIN_FAILED;
		}
	} else {
		ctx->pause_mode = PT_PAUSED;
	}
	pool_apply_pause(ctx);
	if (pools_empty(ctx, db)) {
		admin_put_command_complete(b, "PAUSE");
		return ADMIN_DONE;
	}
	return start_wait(c, b, WAIT_PAUSE, db);
}

/* Appends io to *v if SUSPEND stopped it. */
static void push_suspended(struct io *io, struct io ***v, size_t *n, size_t *cap)
{
	if (io->closed || io->want_read)
		return;
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 64;
		struct io **nv = realloc(*v, nc * sizeof(*nv));
		if (!nv) {
			io_resume(io); /* no memory to defer: at once */
			return;
		}
		*v = nv;
		*cap = nc;
	}
	(*v)[(*n)++] = io;
}

/*
 * Every suspended socket reads again; what arrived meanwhile is handled now. Collected first:
 * handling one connection's input may close others (the lists change), never free them (the
 * reaper does, after this callback).
 */
static void resume_io(struct pt_ctx *ctx)
{
	struct io **v = NULL;
	size_t n = 0, cap = 0;
	struct client *c;
	TAILQ_FOREACH(c, &ctx->clients, all_link)
	if (!c->admin && c->state >= CLIENT_LOGIN_WAIT && c->state <= CLIENT_ACTIVE)
		push_suspended(&c->io, &v, &n, &cap);
	struct pool *p;
	TAILQ_FOREACH(p, &ctx->pools, link)
	{
		struct server_list *lists[] = {&p->idle, &p->active, &p->used};
		for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
			struct server *s;
			TAILQ_FOREACH(s, lists[i], link)
			if (s->io_ready)
				push_suspended(&s->io, &v, &n, &cap);
		}
	}
	for (size_t i = 0; i < n; i++)
		io_resume(v[i]);
	free(v);
}

static enum admin_result cmd_resume(struct client *c, struct pbuf *b, const char *db)
{
	struct pt_ctx *ctx = c->ctx;
	if (db) {
		if (!config_find_db(&ctx->cfg, db) && !pool_db_paused(ctx, db)) {
			admin_error(c, b, "3D000", "no such database: %s", db);
			return ADMIN_FAILED;
		}
		if (!pool_db_paused(ctx, db)) {
			admin_error(c, b, "55000", "database %s is not paused", db);
			return ADMIN_FAILED;
		}
		log_command(c, "RESUME", db);
		pool_db_set_paused(ctx, db, false);
	} else {
		if (ctx->phase != PT_RUNNING) {
			admin_error(c, b, "55000", "pooler is shutting down");
			return ADMIN_FAILED;
		}
		if (ctx->pause_mode == PT_ACTIVE) {
			admin_error(c, b, "55000", "pooler is not paused/suspended");
			return ADMIN_FAILED;
		}
		log_command(c, "RESUME", NULL);
		enum pt_pause was = ctx->pause_mode;
		ctx->pause_mode = PT_ACTIVE;
		if (was == PT_SUSPENDED)
			resume_io(ctx);
	}
	pool_apply_pause(ctx);
	pt_schedule_reaper(ctx); /* a PAUSE or SUSPEND still waiting is called off */
	admin_put_command_complete(b, "RESUME");
	return ADMIN_DONE;
}

static enum admin_result cmd_suspend(struct client *c, struct pbuf *b, const char *arg)
{
	struct pt_ctx *ctx = c->ctx;
	(void)arg;
	if (!check_not_paused(c, b))
		return ADMIN_FAILED;
	for (size_t i = 0; i < ctx->n_db_switches; i++) {
		if (ctx->db_switches[i].paused) {
			admin_error(c, b, "55000", "cannot suspend with paused databases");
			return ADMIN_FAILED;
		}
	}
	log_command(c, "SUSPEND", NULL);
	ctx->pause_mode = PT_SUSPENDED;
	/* Stop reading now; a client still logging in stops at its first query. */
	struct client *cl;
	TAILQ_FOREACH(cl, &ctx->clients, all_link)
	if (!cl->admin && cl->state >= CLIENT_LOGIN_WAIT && cl->state <= CLIENT_ACTIVE)
		io_set_want_read(&cl->io, false);
	struct pool *p;
	TAILQ_FOREACH(p, &ctx->pools, link)
	{
		struct server_list *lists[] = {&p->idle, &p->active, &p->used};
		for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
			struct server *s;
			TAILQ_FOREACH(s, lists[i], link)
			if (s->io_ready)
				io_set_want_read(&s->io, false);
		}
	}
	if (all_flushed(ctx)) {
		admin_put_command_complete(b, "SUSPEND");
		return ADMIN_DONE;
	}
	return start_wait(c, b, WAIT_SUSPEND, NULL);
}

static enum admin_result cmd_disable(struct client *c, struct pbuf *b, const char *db)
{
	if (!check_db(c, b, db, "disable"))
		return ADMIN_FAILED;
	log_command(c, "DISABLE", db);
	if (!pool_db_set_disabled(c->ctx, db, true)) {
		admin_error(c, b, "53200", "out of memory");
		return ADMIN_FAILED;
	}
	admin_put_command_complete(b, "DISABLE");
	return ADMIN_DONE;
}

static enum admin_result cmd_enable(struct client *c, struct pbuf *b, const char *db)
{
	if (!check_db(c, b, db, "enable"))
		return ADMIN_FAILED;
	log_command(c, "ENABLE", db);
	pool_db_set_disabled(c->ctx, db, false);
	admin_put_command_complete(b, "ENABLE");
	return ADMIN_DONE;
}

static enum admin_result cmd_reconnect(struct client *c, struct pbuf *b, const char *db)
{
	if (db && !check_db(c, b, db, "reconnect"))
		return ADMIN_FAILED;
	log_command(c, "RECONNECT", db);
	struct pool *p;
	TAILQ_FOREACH(p, &c->ctx->pools, link)
	{
		if (db && strcmp(p->db_name, db) != 0)
			continue;
		/* Each closes when released; the idle ones are released now. */
		struct server_list *lists[] = {&p->connecting, &p->active, &p->used, &p->idle};
		for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
			struct server *s;
			TAILQ_FOREACH(s, lists[i], link)
			s->close_when_idle = true;
		}
		struct server *s;
		while ((s = TAILQ_FIRST(&p->idle)) != NULL)
			server_close(s, "RECONNECT");
		pool_kick(p); /* waiting clients get new servers */
	}
	admin_put_command_complete(b, "RECONNECT");
	return ADMIN_DONE;
}

/* Closes every client and server of pool p (KILL). */
static void kill_pool(struct pool *p)
{
	struct client_list *clients[] = {&p->active_clients, &p->waiting_clients, &p->idle_clients,
	                                 &p->login_wait};
	for (size_t i = 0; i < sizeof(clients) / sizeof(clients[0]); i++) {
		struct client *c;
		while ((c = TAILQ_FIRST(clients[i])) != NULL)
			client_close(c, "57P01",
			             "terminating connection due to administrator command");
	}
	struct server_list *servers[] = {&p->active, &p->used, &p->idle, &p->connecting};
	for (size_t i = 0; i < sizeof(servers) / sizeof(servers[0]); i++) {
		struct server *s;
		while ((s = TAILQ_FIRST(servers[i])) != NULL)
			server_close(s, "KILL");
	}
}

static enum admin_result cmd_kill(struct client *c, struct pbuf *b, const char *db)
{
	struct pt_ctx *ctx = c->ctx;
	if (!check_not_paused(c, b) || (db && !check_db(c, b, db, "kill")))
		return ADMIN_FAILED;
	log_command(c, "KILL", db);
	/* As PgBouncer: the database stays paused (new work waits) until RESUME. */
	struct pool *p;
	bool ok = !db || pool_db_set_paused(ctx, db, true);
	TAILQ_FOREACH(p, &ctx->pools, link)
	if (!db)
		ok = pool_db_set_paused(ctx, p->db_name, true) && ok;
	if (!ok) {
		admin_error(c, b, "53200", "out of memory");
		return ADMIN_FAILED;
	}
	pool_apply_pause(ctx);
	TAILQ_FOREACH(p, &ctx->pools, link)
	if (!db || strcmp(p->db_name, db) == 0)
		kill_pool(p);
	admin_put_command_complete(b, "KILL");
	return ADMIN_DONE;
}

static enum admin_result cmd_kill_client(struct client *c, struct pbuf *b, const char *arg)
{
	char *end = NULL;
	unsigned long long id = 0;
	if (arg && arg[0] >= '0' && arg[0] <= '9')
		id = strtoull(arg, &end,
		              arg[0] == '0' && (arg[1] == 'x' || arg[1] == 'X') ? 16 : 10);
	if (!end || *end || id == 0) {
		admin_error(c, b, "22023", "invalid client pointer supplied");
		return ADMIN_FAILED;
	}
	struct client *t;
	TAILQ_FOREACH(t, &c->ctx->clients, all_link)
	if (t->id == id && t->state != CLIENT_CLOSED)
		break;
	if (!t) {
		admin_error(c, b, "42704", "client not found");
		return ADMIN_FAILED;
	}
	log_command(c, "KILL_CLIENT", arg);
	client_close(t, "57P01", "terminating connection due to administrator command");
	if (t == c)
		return ADMIN_GONE;
	admin_put_command_complete(b, "KILL_CLIENT");
	return ADMIN_DONE;
}

static enum admin_result cmd_wait_close(struct client *c, struct pbuf *b, const char *db)
{
	if (db && !check_db(c, b, db, "wait in"))
		return ADMIN_FAILED;
	log_command(c, "WAIT_CLOSE", db);
	if (close_done(c->ctx, db)) {
		admin_put_command_complete(b, "WAIT_CLOSE");
		return ADMIN_DONE;
	}
	return start_wait(c, b, WAIT_CLOSE, db);
}

static enum admin_result cmd_reload(struct client *c, struct pbuf *b, const char *arg)
{
	(void)arg;
	log_command(c, "RELOAD", NULL);
	if (!pt_reload(c->ctx)) {
		admin_error(c, b, "F0000", "RELOAD failed, see logs for additional details");
		return ADMIN_FAILED;
	}
	admin_put_command_complete(b, "RELOAD");
	return ADMIN_DONE;
}

static enum admin_result cmd_shutdown(struct client *c, struct pbuf *b, const char *arg)
{
	(void)b;
	(void)arg;
	log_command(c, "SHUTDOWN", NULL);
	pt_shutdown(c->ctx, "SHUTDOWN command");
	return ADMIN_GONE; /* every client, this one too, got 57P01 */
}

static const struct admin_cmd admin_cmds[] = {
        {"pause", ARG_OPT_DB, cmd_pause},
        {"resume", ARG_OPT_DB, cmd_resume},
        {"suspend", ARG_NONE, cmd_suspend},
        {"disable", ARG_DB, cmd_disable},
        {"enable", ARG_DB, cmd_enable},
        {"reconnect", ARG_OPT_DB, cmd_reconnect},
        {"kill", ARG_OPT_DB, cmd_kill},
        {"kill_client", ARG_ID, cmd_kill_client},
        {"wait_close", ARG_OPT_DB, cmd_wait_close},
        {"reload", ARG_NONE, cmd_reload},
        {"shutdown", ARG_NONE, cmd_shutdown},
};

const struct admin_cmd *admin_control_find(const char *word)
{
	const struct admin_cmd *cmd = NULL;
	for (size_t i = 0; i < sizeof(admin_cmds) / sizeof(admin_cmds[0]); i++)
		if (strcmp(word, admin_cmds[i].name) == 0)
			cmd = &admin_cmds[i];
	return cmd;
}

/* ---- SET ---- */

/* Settings whose change the pools must see at once (their limits and mode). */
static void apply_setting(struct pt_ctx *ctx, const char *name)
{
	static const char *const log_keys[] = {"logfile", "syslog", "syslog_ident",
	                                       "syslog_facility", "verbose"};
	for (size_t i = 0; i < sizeof(log_keys) / sizeof(log_keys[0]); i++) {
		if (strcmp(name, log_keys[i]) == 0 &&
		    !log_open(ctx->cfg.logfile, ctx->cfg.syslog, ctx->cfg.syslog_ident,
		              ctx->cfg.syslog_facility, ctx->cfg.verbose + ctx->cli.verbose,
		              ctx->cli.quiet))
			log_error("could not reopen logfile %s", ctx->cfg.logfile);
	}
	if (strncmp(name, "client_tls", 10) == 0) /* client_tls_* and client_tls13_ciphers */
		pt_reload_tls(ctx);
	if (strcmp(name, "tcp_defer_accept") == 0)
		listener_tune_all(ctx);
	struct pool *p;
	TAILQ_FOREACH(p, &ctx->pools, link)
	{
		pool_refresh(p);
		pool_kick(p);
	}
}

/* A SET value: a 'string' ('' for a quote, may be empty) or a bare word or number. */
static bool read_value(const char **pp, const char *end, char *out, size_t n)
{
	return admin_read_token(pp, end, '\'', "_.-+:/", true, out, n);
}

enum admin_result admin_control_set(struct client *c, struct pbuf *b, const char *p,
                                    const char *end)
{
	char key[SQLSCAN_NAME_MAX + 1], value[1024];
	if (!sqlscan_ident(&p, end, key)) {
		admin_error(c, b, "42601", "SET needs a setting: SET key = value");
		return ADMIN_FAILED;
	}
	p = sqlscan_skip_space(p, end);
	if (p < end && *p == '=')
		p++;
	else if (!sqlscan_word(&p, end, "to")) {
		admin_error(c, b, "42601", "SET needs = or TO: SET key = value");
		return ADMIN_FAILED;
	}
	if (!read_value(&p, end, value, sizeof(value)) || sqlscan_skip_space(p, end) != end) {
		admin_error(c, b, "42601",
		            "SET needs one value, a word, a number or a 'quoted string': SET %s = "
		            "value",
		            key);
		return ADMIN_FAILED;
	}
	if (admin_fake_param(key) >= 0) {
		proto_build_notice(b, "NOTICE", "00000", "SET ignored");
		admin_put_command_complete(b, "SET");
		return ADMIN_DONE;
	}
	if (!c->admin_write) {
		admin_error(c, b, "42501", "permission denied for SET: admin access needed");
		return ADMIN_FAILED;
	}
	struct pt_ctx *ctx = c->ctx;
	const char *name = NULL;
	char why[512];
	switch (config_set(&ctx->cfg, key, value, &name, why, sizeof(why))) {
	case CONFIG_SET_OK:
		break;
	case CONFIG_SET_UNKNOWN:
		admin_error(c, b, "42704", "unrecognized configuration parameter \"%s\"", key);
		return ADMIN_FAILED;
	case CONFIG_SET_UNSUPPORTED:
		admin_error(c, b, "0A000",
		            "configuration parameter \"%s\" is not implemented by pgtide", key);
		return ADMIN_FAILED;
	case CONFIG_SET_FIXED:
		admin_error(c, b, "55P02",
		            "parameter \"%s\" cannot be changed without restarting pgtide", name);
		return ADMIN_FAILED;
	case CONFIG_SET_INVALID:
		admin_error(c, b, "22023", "invalid value for parameter \"%s\": %s", name, why);
		return ADMIN_FAILED;
	case CONFIG_SET_OOM:
		admin_error(c, b, "53200", "out of memory");
		return ADMIN_FAILED;
	}
	char pfx[256];
	log_info("%s admin command: SET %s = '%s'", client_prefix(c, pfx, sizeof(pfx)), name,
	         value);
	apply_setting(ctx, name);
	admin_put_command_complete(b, "SET");
	return ADMIN_DONE;
}
