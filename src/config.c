/* Configuration: pgbouncer.ini text into struct config, driven by one table of settings. */
#include "pgtide/config.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "pgtide/config_int.h"

/* PgBouncer has no limit; ours keeps a corrupt or hostile file from costing unbounded memory. */
#define CONFIG_MAX_LINE 65536
#define CONFIG_MAX_FILE (16 * 1024 * 1024)
/* An include loop would otherwise recurse until the stack runs out. */
#define CONFIG_MAX_INCLUDE_DEPTH 10
/* Enough for any rendered number and every error message we format (values are cut short). */
#define CONFIG_MSG_MAX 512

enum config_setting_type {
	CONFIG_T_STRING,    /* char *, the raw trimmed value */
	CONFIG_T_INT,       /* int, decimal, within [min, max] */
	CONFIG_T_BOOL,      /* bool: 0/1, on/off, true/false, yes/no */
	CONFIG_T_BOOL_TEXT, /* char * holding "1"/"0": a PgBouncer bool the header keeps as text */
	CONFIG_T_POOL_MODE, /* enum pool_mode */
	CONFIG_T_AUTH_TYPE, /* enum auth_type */
	CONFIG_T_TIME,      /* int64_t microseconds, written as (fractional) seconds */
	CONFIG_T_MODE,      /* int, a file mode written in octal, within [min, max] */
};

/*
 * One [pgtide] setting. Defaults are parsed from def with the same code as the file, so the
 * table cannot hold a default the parser would reject (test_config checks this).
 */
struct config_setting {
	const char *name;
	enum config_setting_type type;
	size_t offset; /* of the field in struct config */
	const char *def;
	int64_t min, max; /* CONFIG_T_INT and CONFIG_T_MODE only */
	/* Extra validation of a string value: false with why filled in rejects it. */
	bool (*check)(const char *value, char *why, size_t why_len);
};

/*
 * _Generic makes the table type-checked: naming a field whose C type does not match the
 * setting type is a compile error instead of a silent memory overwrite.
 */
/* clang-format off */
#define CONFIG_FIELD(field, ctype) \
	_Generic(((struct config *)0)->field, ctype: offsetof(struct config, field))
#define S_STRING(f, def) {#f, CONFIG_T_STRING, CONFIG_FIELD(f, char *), def, 0, 0, NULL}
#define S_STRING_CHECK(f, def, check) \
	{#f, CONFIG_T_STRING, CONFIG_FIELD(f, char *), def, 0, 0, check}
#define S_INT(f, def, min, max) {#f, CONFIG_T_INT, CONFIG_FIELD(f, int), def, min, max, NULL}
#define S_BOOL(f, def) {#f, CONFIG_T_BOOL, CONFIG_FIELD(f, bool), def, 0, 0, NULL}
#define S_BOOL_TEXT(f, def) {#f, CONFIG_T_BOOL_TEXT, CONFIG_FIELD(f, char *), def, 0, 0, NULL}
#define S_POOL_MODE(f, def) \
	{#f, CONFIG_T_POOL_MODE, CONFIG_FIELD(f, enum pool_mode), def, 0, 0, NULL}
#define S_AUTH_TYPE(f, def) \
	{#f, CONFIG_T_AUTH_TYPE, CONFIG_FIELD(f, enum auth_type), def, 0, 0, NULL}
#define S_TIME(f, def) {#f, CONFIG_T_TIME, CONFIG_FIELD(f, int64_t), def, 0, 0, NULL}
#define S_MODE(f, def, max) {#f, CONFIG_T_MODE, CONFIG_FIELD(f, int), def, 0, max, NULL}
/* clang-format on */

/* Every setting pgtide implements, in SHOW CONFIG order. Defaults follow PgBouncer's. */
static const struct config_setting config_settings[] = {
        S_STRING(listen_addr, ""),
        S_INT(listen_port, "6432", 1, 65535),
        S_INT(listen_backlog, "128", 0, INT_MAX),
        S_STRING(unix_socket_dir, ""),
        S_MODE(unix_socket_mode, "0777", 0777),
        S_STRING(unix_socket_group, ""),
        S_AUTH_TYPE(auth_type, "md5"),
        S_STRING(auth_file, ""),
        S_INT(scram_iterations, "4096", 1, INT_MAX),
        S_POOL_MODE(pool_mode, "session"),
        S_INT(max_client_conn, "100", 0, INT_MAX),
        S_INT(default_pool_size, "20", 1, INT_MAX),
        S_INT(min_pool_size, "0", 0, INT_MAX),
        S_INT(reserve_pool_size, "0", 0, INT_MAX),
        S_TIME(reserve_pool_timeout, "5"),
        S_INT(max_db_connections, "0", 0, INT_MAX),
        S_INT(max_user_connections, "0", 0, INT_MAX),
        S_INT(max_db_client_connections, "0", 0, INT_MAX),
        S_INT(max_user_client_connections, "0", 0, INT_MAX),
        S_BOOL(server_round_robin, "0"),
        S_BOOL(disable_pqexec, "0"),
        S_BOOL(server_fast_close, "0"),
        S_STRING(server_reset_query, "DISCARD ALL"),
        S_BOOL(server_reset_query_always, "0"),
        S_STRING(server_check_query, "select 1"),
        S_TIME(server_check_delay, "30"),
        S_TIME(server_lifetime, "3600"),
        S_TIME(autodb_idle_timeout, "3600"),
        S_TIME(server_idle_timeout, "600"),
        S_TIME(server_connect_timeout, "15"),
        S_TIME(server_login_retry, "15"),
        S_TIME(client_login_timeout, "60"),
        S_TIME(query_timeout, "0"),
        S_TIME(query_wait_timeout, "120"),
        S_TIME(query_wait_notify, "5"),
        S_TIME(client_idle_timeout, "0"),
        S_TIME(idle_transaction_timeout, "0"),
        S_TIME(transaction_timeout, "0"),
        S_TIME(shutdown_wait_timeout, "60"),
        S_TIME(suspend_timeout, "10"),
        S_TIME(cancel_wait_timeout, "10"),
        S_INT(max_packet_size, "2147483647", 1024, INT_MAX),
        S_INT(pkt_buf, "4096", 512, INT_MAX),
        S_STRING(logfile, ""),
        S_STRING(pidfile, ""),
        S_BOOL(syslog, "0"),
        S_STRING(syslog_ident, "pgtide"),
        S_STRING_CHECK(syslog_facility, "daemon", config_check_syslog_facility),
        S_BOOL(log_connections, "1"),
        S_BOOL(log_disconnections, "1"),
        S_BOOL(log_pooler_errors, "1"),
        S_INT(verbose, "0", 0, INT_MAX),
        S_STRING(admin_users, ""),
        S_STRING(stats_users, ""),
        S_STRING(ignore_startup_parameters, ""),
        S_STRING(track_extra_parameters, "IntervalStyle"),
        S_BOOL_TEXT(application_name_add_host, "0"),
        S_BOOL(tcp_keepalive, "1"),
        S_INT(tcp_keepidle, "0", 0, INT_MAX),
        S_INT(tcp_keepintvl, "0", 0, INT_MAX),
        S_INT(tcp_keepcnt, "0", 0, INT_MAX),
        S_INT(tcp_user_timeout, "0", 0, INT_MAX),
        S_INT(tcp_socket_buffer, "0", 0, INT_MAX),
        S_INT(tcp_defer_accept, "1", 0, INT_MAX),
        S_BOOL(so_reuseport, "0"),
        S_INT(max_prepared_statements, "200", 0, INT_MAX),
        S_STRING_CHECK(error_kind_field, "K", config_check_error_kind_field),
        S_STRING_CHECK(log_error_kinds, "log", config_check_log_level),
        S_STRING_CHECK(pin_session_state, "on", config_check_pin_mode),
        S_STRING_CHECK(metrics_listen, "", config_check_metrics_listen),
        S_INT(stats_period, "60", 1, 86400),
        S_BOOL(log_stats, "1"),
        S_STRING_CHECK(client_tls_sslmode, "disable", config_check_sslmode),
        S_STRING(client_tls_key_file, ""),
        S_STRING(client_tls_cert_file, ""),
        S_STRING(client_tls_ca_file, ""),
        S_STRING_CHECK(client_tls_protocols, "secure", config_check_tls_protocols),
        S_STRING(client_tls_ciphers, "fast"),
        S_STRING(client_tls13_ciphers, ""),
        S_STRING(client_tls_ecdhcurve, "auto"),
        S_STRING_CHECK(client_tls_dheparams, "auto", config_check_dheparams),
        S_STRING_CHECK(server_tls_sslmode, "disable", config_check_sslmode),
        S_STRING(server_tls_ca_file, ""),
        S_STRING(server_tls_key_file, ""),
        S_STRING(server_tls_cert_file, ""),
        S_STRING_CHECK(server_tls_protocols, "secure", config_check_tls_protocols),
};

#define CONFIG_N_SETTINGS (sizeof(config_settings) / sizeof(config_settings[0]))

/*
 * Settings that take effect only at start (sockets, files held open, buffer sizes): SET on the
 * admin console refuses them and SHOW CONFIG says changeable = no. The rest are read where they
 * are used, as PgBouncer's reloadable settings are.
 */
static const char *const config_fixed_settings[] = {
        "listen_addr",
        "listen_port",
        "listen_backlog",
        "unix_socket_dir",
        "unix_socket_mode",
        "unix_socket_group",
        "pidfile",
        "pkt_buf",
        "metrics_listen",
        "so_reuseport",
        NULL,
};

/*
 * PgBouncer settings pgtide accepts but does not act on: a pgbouncer.ini that uses them must
 * still start, so they warn instead of failing.
 */
static const char *const config_unimplemented_keys[] = {
        "dns_max_ttl",
        "dns_nxdomain_ttl",
        "dns_zone_check_period",
        "resolv_conf",
        "sbuf_loopcnt",
        "auth_hba_file",
        "auth_ident_file",
        "auth_ldap_options",
        "auth_query",
        "auth_user",
        "auth_dbname",
        "user",
        "conffile",
        "service_name",
        "job_name",
        "peer_id",
        NULL,
};

/*
 * PgBouncer TLS settings pgtide does not act on: libpq, which opens server connections, has no
 * cipher setting, so OpenSSL's defaults apply there.
 */
static const char *const config_unimplemented_tls_keys[] = {
        "server_tls_ciphers",
        "server_tls13_ciphers",
        NULL,
};

/* How a per-database or per-user option is stored. */
enum config_opt_type {
	CONFIG_OPT_INT,       /* int >= 0 */
	CONFIG_OPT_TIME,      /* int64_t microseconds, written as the [pgtide] times are */
	CONFIG_OPT_POOL_MODE, /* enum pool_mode */
	CONFIG_OPT_STRING,    /* char * */
};

struct config_opt {
	const char *name;
	enum config_opt_type type;
	size_t offset; /* in struct config_db or struct config_user */
};

/* PgBouncer's own [databases] keys: pulled out of the connection string into config_db. */
static const struct config_opt config_db_opts[] = {
        {"pool_size", CONFIG_OPT_INT, offsetof(struct config_db, pool_size)},
        {"min_pool_size", CONFIG_OPT_INT, offsetof(struct config_db, min_pool_size)},
        {"reserve_pool", CONFIG_OPT_INT, offsetof(struct config_db, reserve_pool)},
        /* Newer PgBouncer spells it reserve_pool_size and keeps reserve_pool as an alias. */
        {"reserve_pool_size", CONFIG_OPT_INT, offsetof(struct config_db, reserve_pool)},
        {"max_db_connections", CONFIG_OPT_INT, offsetof(struct config_db, max_db_connections)},
        {"server_lifetime", CONFIG_OPT_TIME, offsetof(struct config_db, server_lifetime)},
        {"max_db_client_connections", CONFIG_OPT_INT,
         offsetof(struct config_db, max_db_client_connections)},
        {"pool_mode", CONFIG_OPT_POOL_MODE, offsetof(struct config_db, pool_mode)},
        {"connect_query", CONFIG_OPT_STRING, offsetof(struct config_db, connect_query)},
        {"client_encoding", CONFIG_OPT_STRING, offsetof(struct config_db, client_encoding)},
        {"datestyle", CONFIG_OPT_STRING, offsetof(struct config_db, datestyle)},
        {"timezone", CONFIG_OPT_STRING, offsetof(struct config_db, timezone)},
        {NULL, 0, 0},
};

/*
 * PgBouncer [databases] keys pgtide ignores with a warning. They are not libpq keywords, so
 * they must not reach the connection string.
 */
static const char *const config_db_unimplemented[] = {
        "auth_user",
        "auth_query",
        "auth_dbname",
        NULL,
};

static const struct config_opt config_user_opts[] = {
        {"pool_mode", CONFIG_OPT_POOL_MODE, offsetof(struct config_user, pool_mode)},
        {"max_user_connections", CONFIG_OPT_INT,
         offsetof(struct config_user, max_user_connections)},
        {"max_user_client_connections", CONFIG_OPT_INT,
         offsetof(struct config_user, max_user_client_connections)},
        {"pool_size", CONFIG_OPT_INT, offsetof(struct config_user, pool_size)},
        {"reserve_pool_size", CONFIG_OPT_INT, offsetof(struct config_user, reserve_pool_size)},
        {"query_timeout", CONFIG_OPT_TIME, offsetof(struct config_user, query_timeout)},
        {"idle_transaction_timeout", CONFIG_OPT_TIME,
         offsetof(struct config_user, idle_transaction_timeout)},
        {"transaction_timeout", CONFIG_OPT_TIME, offsetof(struct config_user, transaction_timeout)},
        {"client_idle_timeout", CONFIG_OPT_TIME, offsetof(struct config_user, client_idle_timeout)},
        {NULL, 0, 0},
};

/* Newer PgBouncer [users] keys pgtide ignores (with a warning, like unimplemented settings). */
static const char *const config_user_unimplemented[] = {
        NULL,
};

enum config_section {
	CONFIG_SECT_NONE,      /* before the first [section] header */
	CONFIG_SECT_SETTINGS,  /* [pgtide] or [pgbouncer] */
	CONFIG_SECT_DATABASES, /* [databases] */
	CONFIG_SECT_USERS,     /* [users] */
	CONFIG_SECT_IGNORED,   /* a section we warned about; its lines are skipped */
};

/* State of one config_parse call; %include recurses with the same context. */
struct config_parse_ctx {
	struct config *cfg;
	config_conn_keyword_fn kw_ok;
	struct config_diag *warnings;
	size_t n_warnings, cap_warnings;
	struct config_diag *err; /* the caller's, or a local one when the caller passed NULL */
	enum config_result result;
	enum config_section section; /* carries across %include, as in PgBouncer */
	int depth;
};

/* --- small string helpers --- */

/* Trims s in place and returns the first non-space character. */
static char *config_trim(char *s)
{
	size_t n;

	while (config_is_space(*s))
		s++;
	n = strlen(s);
	while (n > 0 && config_is_space(s[n - 1]))
		n--;
	s[n] = '\0';
	return s;
}

static bool config_in_list(const char *const *list, const char *key, bool nocase)
{
	for (; *list; list++) {
		if (nocase ? strcasecmp(*list, key) == 0 : strcmp(*list, key) == 0)
			return true;
	}
	return false;
}

static char *config_vformat(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

static char *config_vformat(const char *fmt, va_list ap)
{
	char *s;
	va_list ap2;
	int n;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return NULL;
	s = malloc((size_t)n + 1);
	if (s)
		vsnprintf(s, (size_t)n + 1, fmt, ap);
	return s;
}

static char *config_format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *config_format(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	s = config_vformat(fmt, ap);
	va_end(ap);
	return s;
}

/* Replaces *dst with a copy of value; false (and *dst untouched) when out of memory. */
static bool config_set_str(char **dst, const char *value)
{
	char *copy = strdup(value);

	if (!copy)
		return false;
	free(*dst);
	*dst = copy;
	return true;
}

/* dir + "/" + name, or a copy of name when it is already absolute. */
static char *config_path_join(const char *dir, const char *name)
{
	size_t n;

	if (name[0] == '/' || !dir || !dir[0])
		return strdup(name);
	n = strlen(dir);
	return config_format("%s%s%s", dir, dir[n - 1] == '/' ? "" : "/", name);
}

/* The directory part of path: "." for a bare file name. */
static char *config_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

/* --- diagnostics --- */

static void config_diag_set(struct config_diag *d, const char *file, int line, const char *key,
                            char *message)
{
	d->file = file ? strdup(file) : NULL;
	d->line = line;
	d->key = key ? strdup(key) : NULL;
	d->message = message;
}

static void config_error(struct config_parse_ctx *ctx, enum config_result result, const char *file,
                         int line, const char *key, const char *fmt, ...)
        __attribute__((format(printf, 6, 7)));

/* Records the error that stops the parse. Only the first one counts. */
static void config_error(struct config_parse_ctx *ctx, enum config_result result, const char *file,
                         int line, const char *key, const char *fmt, ...)
{
	va_list ap;

	if (ctx->result != CONFIG_OK)
		return;
	ctx->result = result;
	va_start(ap, fmt);
	config_diag_set(ctx->err, file, line, key, config_vformat(fmt, ap));
	va_end(ap);
}

static void config_oom(struct config_parse_ctx *ctx, const char *file, int line, const char *key)
{
	config_error(ctx, CONFIG_ERROR, file, line, key, "out of memory");
}

static void config_warn(struct config_parse_ctx *ctx, const char *file, int line, const char *key,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void config_warn(struct config_parse_ctx *ctx, const char *file, int line, const char *key,
                        const char *fmt, ...)
{
	struct config_diag *d;
	va_list ap;
	char *msg;

	if (ctx->n_warnings == ctx->cap_warnings) {
		size_t cap = ctx->cap_warnings ? ctx->cap_warnings * 2 : 8;
		struct config_diag *w = realloc(ctx->warnings, cap * sizeof(*w));

		if (!w) {
			config_oom(ctx, file, line, key);
			return;
		}
		ctx->warnings = w;
		ctx->cap_warnings = cap;
	}
	va_start(ap, fmt);
	msg = config_vformat(fmt, ap);
	va_end(ap);
	d = &ctx->warnings[ctx->n_warnings];
	config_diag_set(d, file, line, key, msg);
	if (!msg || (file && !d->file) || (key && !d->key)) {
		config_diag_free(d);
		config_oom(ctx, file, line, key);
		return;
	}
	ctx->n_warnings++;
}

void config_diag_free(struct config_diag *d)
{
	if (!d)
		return;
	free(d->file);
	free(d->key);
	free(d->message);
	memset(d, 0, sizeof(*d));
}

void config_diags_free(struct config_diag *d, size_t n)
{
	for (size_t i = 0; i < n; i++)
		config_diag_free(&d[i]);
	free(d);
}

/* Parses value into the field s describes. Leaves the field untouched unless it succeeds. */
static enum config_value_result config_setting_parse(const struct config_setting *s,
                                                     struct config *cfg, const char *value,
                                                     char *why, size_t why_len)
{
	void *field = (char *)cfg + s->offset;
	int64_t usec;
	bool b;

	switch (s->type) {
	case CONFIG_T_STRING:
		if (s->check && !s->check(value, why, why_len))
			return CONFIG_VALUE_INVALID;
		return config_set_str(field, value) ? CONFIG_VALUE_OK : CONFIG_VALUE_OOM;
	case CONFIG_T_INT:
		return config_parse_int(value, 10, s->min, s->max, field, why, why_len);
	case CONFIG_T_MODE:
		return config_parse_int(value, 8, s->min, s->max, field, why, why_len);
	case CONFIG_T_BOOL:
	case CONFIG_T_BOOL_TEXT:
		if (!config_parse_bool(value, &b)) {
			snprintf(why, why_len,
			         "invalid boolean value '%.100s' (use 1/0, on/off, "
			         "true/false or "
			         "yes/no)",
			         value);
			return CONFIG_VALUE_INVALID;
		}
		if (s->type == CONFIG_T_BOOL) {
			*(bool *)field = b;
			return CONFIG_VALUE_OK;
		}
		return config_set_str(field, b ? "1" : "0") ? CONFIG_VALUE_OK : CONFIG_VALUE_OOM;
	case CONFIG_T_POOL_MODE:
		return config_parse_pool_mode(value, field, why, why_len);
	case CONFIG_T_AUTH_TYPE:
		return config_parse_auth_type(value, field, why, why_len);
	case CONFIG_T_TIME:
		if (!config_parse_time(value, &usec)) {
			snprintf(why, why_len,
			         "invalid time value '%.100s' (seconds, for example 15 or "
			         "0.5)",
			         value);
			return CONFIG_VALUE_INVALID;
		}
		*(int64_t *)field = usec;
		return CONFIG_VALUE_OK;
	}
	snprintf(why, why_len, "internal error: unknown setting type");
	return CONFIG_VALUE_INVALID;
}

static const struct config_setting *config_setting_find(const char *key)
{
	for (size_t i = 0; i < CONFIG_N_SETTINGS; i++) {
		if (strcasecmp(config_settings[i].name, key) == 0)
			return &config_settings[i];
	}
	return NULL;
}

/* Applies every default; false only when out of memory (the struct stays freeable). */
static bool config_apply_defaults(struct config *cfg)
{
	char why[CONFIG_MSG_MAX];
	bool ok = true;

	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < CONFIG_N_SETTINGS; i++) {
		if (config_setting_parse(&config_settings[i], cfg, config_settings[i].def, why,
		                         sizeof(why)) != CONFIG_VALUE_OK)
			ok = false;
	}
	return ok;
}

void config_defaults(struct config *cfg)
{
	/* Out of memory leaves some strings NULL, which every consumer must accept anyway.
	 */
	(void)config_apply_defaults(cfg);
}

/* --- key=value strings --- */

static void config_kvs_free(struct config_kv *kv, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(kv[i].key);
		free(kv[i].value);
	}
	free(kv);
}

static bool config_kv_push(struct config_kv **kv, size_t *n, size_t *cap, char *key, char *value)
{
	if (!key || !value)
		goto fail;
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 4;
		struct config_kv *grown = realloc(*kv, ncap * sizeof(**kv));

		if (!grown)
			goto fail;
		*kv = grown;
		*cap = ncap;
	}
	(*kv)[*n].key = key;
	(*kv)[*n].value = value;
	(*n)++;
	return true;
fail:
	free(key);
	free(value);
	return false;
}

/*
 * libpq conninfo syntax: keyword = value pairs separated by whitespace; a value is either a
 * run of non-blank characters or single-quoted; a backslash escapes the next character in
 * both forms (libpq's conninfo_parse does the same).
 */
bool config_parse_kv_string(const char *s, struct config_kv **out, size_t *n_out,
                            const char **errmsg)
{
	struct config_kv *kv = NULL;
	size_t n = 0, cap = 0;
	const char *p = s ? s : "";
	const char *msg = NULL;
	char *buf;

	*out = NULL;
	*n_out = 0;
	/* No value can be longer than the whole string, so one scratch buffer serves them
	 * all. */
	buf = malloc(strlen(p) + 1);
	if (!buf) {
		msg = "out of memory";
		goto fail;
	}
	for (;;) {
		const char *key;
		size_t key_len;
		char *w = buf;

		while (config_is_space(*p))
			p++;
		if (*p == '\0')
			break;
		key = p;
		while (*p && *p != '=' && !config_is_space(*p))
			p++;
		key_len = (size_t)(p - key);
		while (config_is_space(*p))
			p++;
		if (*p != '=') {
			msg = "missing \"=\" after keyword";
			goto fail;
		}
		if (key_len == 0) {
			msg = "missing keyword before \"=\"";
			goto fail;
		}
		p++;
		while (config_is_space(*p))
			p++;
		if (*p == '\'') {
			for (p++;; p++) {
				if (*p == '\\' && p[1] != '\0')
					p++;
				else if (*p == '\'')
					break;
				else if (*p == '\0' || *p == '\\') {
					/* A backslash at the very end escapes nothing:
					 * still unclosed. */
					msg = "unterminated quoted string";
					goto fail;
				}
				*w++ = *p;
			}
			p++;
		} else {
			for (; *p && !config_is_space(*p); p++) {
				if (*p == '\\') {
					/* libpq drops a backslash that ends the string. */
					if (p[1] == '\0') {
						p++;
						break;
					}
					p++;
				}
				*w++ = *p;
			}
		}
		*w = '\0';
		if (!config_kv_push(&kv, &n, &cap, strndup(key, key_len), strdup(buf))) {
			msg = "out of memory";
			goto fail;
		}
	}
	free(buf);
	*out = kv;
	*n_out = n;
	return true;
fail:
	free(buf);
	config_kvs_free(kv, n);
	if (errmsg)
		*errmsg = msg;
	return false;
}

/* --- [databases] and [users] --- */

static const struct config_opt *config_opt_find(const struct config_opt *opts, const char *key)
{
	for (; opts->name; opts++) {
		if (strcmp(opts->name, key) == 0)
			return opts;
	}
	return NULL;
}

/* Sets one per-database or per-user option in the struct at base. */
static enum config_value_result config_opt_parse(const struct config_opt *o, void *base,
                                                 const char *value, char *why, size_t why_len)
{
	void *field = (char *)base + o->offset;
	enum config_value_result r;

	switch (o->type) {
	case CONFIG_OPT_INT:
		r = config_parse_int(value, 10, 0, INT_MAX, field, why, why_len);
		if (r == CONFIG_VALUE_INVALID) {
			size_t len = strlen(why);

			snprintf(why + len, why_len - len, " for %s", o->name);
		}
		return r;
	case CONFIG_OPT_TIME:
		if (!config_parse_time(value, field)) {
			snprintf(why, why_len,
			         "invalid time value '%.100s' for %s (seconds, for example 15 or "
			         "0.5)",
			         value, o->name);
			return CONFIG_VALUE_INVALID;
		}
		return CONFIG_VALUE_OK;
	case CONFIG_OPT_POOL_MODE:
		return config_parse_pool_mode(value, field, why, why_len);
	case CONFIG_OPT_STRING:
		return config_set_str(field, value) ? CONFIG_VALUE_OK : CONFIG_VALUE_OOM;
	}
	snprintf(why, why_len, "internal error: unknown option type");
	return CONFIG_VALUE_INVALID;
}

static void config_db_free(struct config_db *db)
{
	free(db->name);
	config_kvs_free(db->conn, db->n_conn);
	free(db->connect_query);
	free(db->client_encoding);
	free(db->datestyle);
	free(db->timezone);
	memset(db, 0, sizeof(*db));
}

/* Adds a libpq keyword; a repeated keyword replaces the earlier value, as libpq does. */
static bool config_db_add_conn(struct config_db *db, size_t *cap, const char *key,
                               const char *value)
{
	for (size_t i = 0; i < db->n_conn; i++) {
		if (strcmp(db->conn[i].key, key) == 0)
			return config_set_str(&db->conn[i].value, value);
	}
	return config_kv_push(&db->conn, &db->n_conn, cap, strdup(key), strdup(value));
}

static void config_handle_db(struct config_parse_ctx *ctx, const char *name, const char *value,
                             const char *file, int line)
{
	struct config *cfg = ctx->cfg;
	struct config_db db = {
	        .pool_size = -1,
	        .min_pool_size = -1,
	        .reserve_pool = -1,
	        .max_db_connections = -1,
	        .server_lifetime = -1,
	        .max_db_client_connections = -1,
	        .pool_mode = POOL_MODE_UNSET,
	        .line = line,
	};
	struct config_kv *kv = NULL;
	size_t n_kv = 0, cap = 0;
	const char *errmsg = "out of memory";
	char why[CONFIG_MSG_MAX];

	if (!config_parse_kv_string(value, &kv, &n_kv, &errmsg)) {
		config_error(ctx, CONFIG_ERROR, file, line, name,
		             "database '%s': invalid connection string: %s", name, errmsg);
		return;
	}
	db.name = strdup(name);
	if (!db.name)
		goto oom;
	for (size_t i = 0; i < n_kv; i++) {
		const struct config_opt *o = config_opt_find(config_db_opts, kv[i].key);

		if (o) {
			enum config_value_result r =
			        config_opt_parse(o, &db, kv[i].value, why, sizeof(why));

			if (r == CONFIG_VALUE_OOM)
				goto oom;
			if (r == CONFIG_VALUE_INVALID) {
				config_error(ctx, CONFIG_ERROR, file, line, name,
				             "database '%s': %s", name, why);
				goto out;
			}
		} else if (config_in_list(config_db_unimplemented, kv[i].key, false)) {
			config_warn(ctx, file, line, name,
			            "database '%s': %s is not implemented, ignored", name,
			            kv[i].key);
		} else if (ctx->kw_ok && !ctx->kw_ok(kv[i].key)) {
			config_error(ctx, CONFIG_ERROR, file, line, name,
			             "database '%s': unknown connection keyword '%.100s'", name,
			             kv[i].key);
			goto out;
		} else if (!config_db_add_conn(&db, &cap, kv[i].key, kv[i].value)) {
			goto oom;
		}
	}
	if (ctx->result != CONFIG_OK)
		goto out;
	for (size_t i = 0; i < cfg->n_dbs; i++) {
		if (strcmp(cfg->dbs[i].name, name) == 0) {
			config_warn(ctx, file, line, name,
			            "database '%s' is defined again; this replaces the "
			            "definition "
			            "on line %d",
			            name, cfg->dbs[i].line);
			config_db_free(&cfg->dbs[i]);
			cfg->dbs[i] = db;
			memset(&db, 0, sizeof(db));
			goto out;
		}
	}
	{
		struct config_db *grown = realloc(cfg->dbs, (cfg->n_dbs + 1) * sizeof(*grown));

		if (!grown)
			goto oom;
		cfg->dbs = grown;
		cfg->dbs[cfg->n_dbs++] = db;
		memset(&db, 0, sizeof(db));
	}
	goto out;
oom:
	config_oom(ctx, file, line, name);
out:
	config_db_free(&db);
	config_kvs_free(kv, n_kv);
}

static void config_user_free(struct config_user *u)
{
	free(u->name);
	memset(u, 0, sizeof(*u));
}

static void config_handle_user(struct config_parse_ctx *ctx, const char *name, const char *value,
                               const char *file, int line)
{
	struct config *cfg = ctx->cfg;
	struct config_user user = {
	        .pool_mode = POOL_MODE_UNSET,
	        .max_user_connections = -1,
	        .max_user_client_connections = -1,
	        .pool_size = -1,
	        .reserve_pool_size = -1,
	        .query_timeout = -1,
	        .idle_transaction_timeout = -1,
	        .transaction_timeout = -1,
	        .client_idle_timeout = -1,
	        .line = line,
	};
	struct config_kv *kv = NULL;
	size_t n_kv = 0;
	const char *errmsg = "out of memory";
	char why[CONFIG_MSG_MAX];

	if (!config_parse_kv_string(value, &kv, &n_kv, &errmsg)) {
		config_error(ctx, CONFIG_ERROR, file, line, name, "user '%s': invalid settings: %s",
		             name, errmsg);
		return;
	}
	user.name = strdup(name);
	if (!user.name)
		goto oom;
	for (size_t i = 0; i < n_kv; i++) {
		const struct config_opt *o = config_opt_find(config_user_opts, kv[i].key);
		enum config_value_result r;

		if (!o && config_in_list(config_user_unimplemented, kv[i].key, false)) {
			config_warn(ctx, file, line, name,
			            "user '%s': %s is not implemented, ignored", name, kv[i].key);
			continue;
		}
		if (!o) {
			config_error(
			        ctx, CONFIG_ERROR, file, line, name,
			        "user '%s': unknown setting '%.100s' (use pool_mode, "
			        "pool_size, reserve_pool_size, max_user_connections, "
			        "max_user_client_connections, "
			        "query_timeout, idle_transaction_timeout, transaction_timeout or "
			        "client_idle_timeout)",
			        name, kv[i].key);
			goto out;
		}
		r = config_opt_parse(o, &user, kv[i].value, why, sizeof(why));
		if (r == CONFIG_VALUE_OOM)
			goto oom;
		if (r == CONFIG_VALUE_INVALID) {
			config_error(ctx, CONFIG_ERROR, file, line, name, "user '%s': %s", name,
			             why);
			goto out;
		}
	}
	if (ctx->result != CONFIG_OK)
		goto out;
	for (size_t i = 0; i < cfg->n_users; i++) {
		if (strcmp(cfg->users[i].name, name) == 0) {
			config_warn(ctx, file, line, name,
			            "user '%s' is defined again; this replaces the "
			            "definition on "
			            "line %d",
			            name, cfg->users[i].line);
			config_user_free(&cfg->users[i]);
			cfg->users[i] = user;
			memset(&user, 0, sizeof(user));
			goto out;
		}
	}
	{
		struct config_user *grown =
		        realloc(cfg->users, (cfg->n_users + 1) * sizeof(*grown));

		if (!grown)
			goto oom;
		cfg->users = grown;
		cfg->users[cfg->n_users++] = user;
		memset(&user, 0, sizeof(user));
	}
	goto out;
oom:
	config_oom(ctx, file, line, name);
out:
	config_user_free(&user);
	config_kvs_free(kv, n_kv);
}

/* --- [pgtide] settings --- */

static void config_handle_setting(struct config_parse_ctx *ctx, const char *key, const char *value,
                                  const char *file, int line)
{
	const struct config_setting *s = config_setting_find(key);
	char why[CONFIG_MSG_MAX];

	if (s) {
		switch (config_setting_parse(s, ctx->cfg, value, why, sizeof(why))) {
		case CONFIG_VALUE_OK:
			break;
		case CONFIG_VALUE_INVALID:
			config_error(ctx, CONFIG_ERROR, file, line, s->name, "%s", why);
			break;
		case CONFIG_VALUE_OOM:
			config_oom(ctx, file, line, s->name);
			break;
		}
	} else if (config_in_list(config_unimplemented_tls_keys, key, true)) {
		config_warn(ctx, file, line, key,
		            "not implemented, ignored (libpq has no cipher setting: OpenSSL's "
		            "defaults apply)");
	} else if (config_in_list(config_unimplemented_keys, key, true)) {
		config_warn(ctx, file, line, key, "not implemented, ignored");
	} else {
		config_warn(ctx, file, line, key, "unknown key, ignored");
	}
}

/* --- the INI reader --- */

static enum config_result config_read_file(const char *path, char **out, size_t *out_len,
                                           int *errnum)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0;

	*out = NULL;
	*out_len = 0;
	if (!f) {
		*errnum = errno;
		return CONFIG_IO;
	}
	for (;;) {
		size_t got;

		if (len == cap) {
			size_t ncap = cap ? cap * 2 : 8192;
			char *grown;

			if (cap >= CONFIG_MAX_FILE) {
				*errnum = EFBIG;
				goto fail;
			}
			grown = realloc(buf, ncap);
			if (!grown) {
				*errnum = ENOMEM;
				goto fail;
			}
			buf = grown;
			cap = ncap;
		}
		got = fread(buf + len, 1, cap - len, f);
		len += got;
		if (got == 0) {
			if (ferror(f)) {
				*errnum = errno ? errno : EIO;
				goto fail;
			}
			break;
		}
	}
	fclose(f);
	*out = buf;
	*out_len = len;
	return CONFIG_OK;
fail:
	fclose(f);
	free(buf);
	return CONFIG_IO;
}

static enum config_result config_parse_text(struct config_parse_ctx *ctx, const char *text,
                                            size_t len, const char *file);

static void config_handle_include(struct config_parse_ctx *ctx, const char *arg, const char *file,
                                  int line)
{
	char *dir = NULL, *path = NULL, *text = NULL;
	size_t len;
	int errnum = 0;

	if (arg[0] == '\0') {
		config_error(ctx, CONFIG_ERROR, file, line, NULL, "%%include needs a file name");
		return;
	}
	if (ctx->depth >= CONFIG_MAX_INCLUDE_DEPTH) {
		config_error(ctx, CONFIG_ERROR, file, line, NULL,
		             "%%include nested more than %d deep (an include loop?)",
		             CONFIG_MAX_INCLUDE_DEPTH);
		return;
	}
	if (arg[0] != '/' && !file) {
		config_error(ctx, CONFIG_ERROR, file, line, NULL,
		             "%%include '%s': a relative path needs the including file's name",
		             arg);
		return;
	}
	/* Relative to the including file, so a config tree works from any working
	 * directory. */
	if (arg[0] != '/')
		dir = config_dirname(file);
	path = config_path_join(dir, arg);
	if ((arg[0] != '/' && !dir) || !path) {
		config_oom(ctx, file, line, NULL);
		goto out;
	}
	if (config_read_file(path, &text, &len, &errnum) != CONFIG_OK) {
		if (errnum == ENOMEM)
			config_oom(ctx, file, line, NULL);
		else
			config_error(ctx, CONFIG_IO, file, line, NULL,
			             "%%include: cannot read '%s': %s", path, strerror(errnum));
		goto out;
	}
	ctx->depth++;
	config_parse_text(ctx, text, len, path);
	ctx->depth--;
out:
	free(text);
	free(path);
	free(dir);
}

static void config_handle_section(struct config_parse_ctx *ctx, char *s, const char *file, int line)
{
	char *close = strchr(s, ']');
	char *rest, *name;

	if (!close) {
		config_error(ctx, CONFIG_ERROR, file, line, NULL, "section header without ']'");
		return;
	}
	*close = '\0';
	/* PgBouncer's reader starts a fresh line after ']', so a trailing comment is fine
	 * there. */
	rest = config_trim(close + 1);
	if (rest[0] != '\0' && rest[0] != ';' && rest[0] != '#') {
		config_error(ctx, CONFIG_ERROR, file, line, NULL,
		             "unexpected text after section header: '%.100s'", rest);
		return;
	}
	name = config_trim(s + 1);
	if (strcasecmp(name, "pgtide") == 0 || strcasecmp(name, "pgbouncer") == 0) {
		ctx->section = CONFIG_SECT_SETTINGS;
	} else if (strcasecmp(name, "databases") == 0) {
		ctx->section = CONFIG_SECT_DATABASES;
	} else if (strcasecmp(name, "users") == 0) {
		ctx->section = CONFIG_SECT_USERS;
	} else if (strcasecmp(name, "peers") == 0) {
		ctx->section = CONFIG_SECT_IGNORED;
		config_warn(ctx, file, line, NULL, "section [peers] is not implemented, ignored");
	} else {
		ctx->section = CONFIG_SECT_IGNORED;
		config_warn(ctx, file, line, NULL, "unknown section [%.100s], ignored", name);
	}
}

/*
 * Splits "key = value". A key may be double-quoted with "" for a quote, as PgBouncer allows
 * for database names that are not plain identifiers. Returns false on a syntax error.
 */
static bool config_split_key_value(char *s, char **key, char **value)
{
	char *end;

	*key = s;
	if (*s == '"') {
		char *r = s + 1, *w = s;

		for (;; r++) {
			if (*r == '\0')
				return false;
			if (*r == '"') {
				if (r[1] != '"')
					break;
				r++;
			}
			*w++ = *r;
		}
		end = w;
		s = r + 1;
	} else {
		char *start = s;

		while (*s && *s != '=' && !config_is_space(*s))
			s++;
		end = s;
		if (end == start)
			return false;
	}
	while (config_is_space(*s))
		s++;
	if (*s != '=')
		return false;
	*value = config_trim(s + 1);
	/* Only now: end may point at the '=' that was just stepped over. */
	*end = '\0';
	return true;
}

static void config_parse_line(struct config_parse_ctx *ctx, char *line_text, const char *file,
                              int line)
{
	char *s = config_trim(line_text);
	char *key, *value;

	if (s[0] == '\0' || s[0] == ';' || s[0] == '#')
		return;
	if (s[0] == '[') {
		config_handle_section(ctx, s, file, line);
		return;
	}
	if (s[0] == '%') {
		if (strncmp(s, "%include", 8) == 0 && (s[8] == '\0' || config_is_space(s[8])))
			config_handle_include(ctx, config_trim(s + 8), file, line);
		else
			config_error(ctx, CONFIG_ERROR, file, line, NULL,
			             "unknown directive '%.100s'", s);
		return;
	}
	if (!config_split_key_value(s, &key, &value)) {
		config_error(ctx, CONFIG_ERROR, file, line, NULL,
		             "syntax error: expected 'key = value'");
		return;
	}
	if (key[0] == '\0') {
		config_error(ctx, CONFIG_ERROR, file, line, NULL, "empty key");
		return;
	}
	switch (ctx->section) {
	case CONFIG_SECT_NONE:
		config_error(ctx, CONFIG_ERROR, file, line, key,
		             "'%.100s' is outside any section; add [pgtide] or [databases] "
		             "above "
		             "it",
		             key);
		break;
	case CONFIG_SECT_SETTINGS:
		config_handle_setting(ctx, key, value, file, line);
		break;
	case CONFIG_SECT_DATABASES:
		config_handle_db(ctx, key, value, file, line);
		break;
	case CONFIG_SECT_USERS:
		config_handle_user(ctx, key, value, file, line);
		break;
	case CONFIG_SECT_IGNORED:
		break;
	}
}

static enum config_result config_parse_text(struct config_parse_ctx *ctx, const char *text,
                                            size_t len, const char *file)
{
	char *buf, *p, *end;
	int line = 0;

	buf = malloc(len + 1);
	if (!buf) {
		config_oom(ctx, file, 0, NULL);
		return ctx->result;
	}
	if (len)
		memcpy(buf, text, len);
	buf[len] = '\0';
	end = buf + len;
	p = buf;
	/* Editors on Windows like to start files with a UTF-8 byte order mark. */
	if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
		p += 3;
	while (p < end && ctx->result == CONFIG_OK) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		char *eol = nl ? nl : end;

		line++;
		if (eol - p > CONFIG_MAX_LINE) {
			config_error(ctx, CONFIG_ERROR, file, line, NULL,
			             "line longer than %d bytes", CONFIG_MAX_LINE);
			break;
		}
		*eol = '\0';
		if (strlen(p) != (size_t)(eol - p)) {
			config_error(ctx, CONFIG_ERROR, file, line, NULL, "NUL byte in line");
			break;
		}
		config_parse_line(ctx, p, file, line);
		p = eol + 1;
	}
	free(buf);
	return ctx->result;
}

enum config_result config_parse(struct config *cfg, const char *text, size_t len, const char *file,
                                config_conn_keyword_fn kw_ok, struct config_diag **warnings,
                                size_t *n_warnings, struct config_diag *err)
{
	struct config_diag local_err;
	struct config_parse_ctx ctx = {
	        .cfg = cfg,
	        .kw_ok = kw_ok,
	        .err = err ? err : &local_err,
	        .result = CONFIG_OK,
	        .section = CONFIG_SECT_NONE,
	};

	memset(ctx.err, 0, sizeof(*ctx.err));
	if (warnings)
		*warnings = NULL;
	if (n_warnings)
		*n_warnings = 0;
	if (!config_apply_defaults(cfg))
		config_oom(&ctx, file, 0, NULL);
	else
		config_parse_text(&ctx, text ? text : "", text ? len : 0, file);

	if (ctx.result != CONFIG_OK) {
		/* The contract hands out warnings only with a config; nothing to free on
		 * error. */
		config_free(cfg);
		config_diags_free(ctx.warnings, ctx.n_warnings);
		if (!err)
			config_diag_free(&local_err);
		return ctx.result;
	}
	if (warnings && n_warnings) {
		*warnings = ctx.warnings;
		*n_warnings = ctx.n_warnings;
	} else {
		config_diags_free(ctx.warnings, ctx.n_warnings);
	}
	return CONFIG_OK;
}

/* Makes a path from the file relative to dir, so it survives a later chdir (daemonizing). */
static bool config_resolve_path(char **field, const char *dir)
{
	char *joined;

	if (!*field || (*field)[0] == '\0' || (*field)[0] == '/')
		return true;
	joined = config_path_join(dir, *field);
	if (!joined)
		return false;
	free(*field);
	*field = joined;
	return true;
}

enum config_result config_load(struct config *cfg, const char *path, config_conn_keyword_fn kw_ok,
                               struct config_diag **warnings, size_t *n_warnings,
                               struct config_diag *err)
{
	struct config_diag local_err;
	struct config_diag *e = err ? err : &local_err;
	char *text = NULL, *abs_path = NULL, *dir = NULL, *cwd = NULL;
	struct config_diag *w = NULL;
	size_t len = 0, n_w = 0;
	enum config_result r;
	int errnum = 0;

	memset(e, 0, sizeof(*e));
	memset(cfg, 0, sizeof(*cfg));
	if (warnings)
		*warnings = NULL;
	if (n_warnings)
		*n_warnings = 0;

	if (path[0] == '/') {
		abs_path = strdup(path);
	} else {
		cwd = getcwd(NULL, 0);
		if (!cwd) {
			config_diag_set(e, path, 0, NULL,
			                config_format("cannot resolve '%s': getcwd: %s", path,
			                              strerror(errno)));
			r = CONFIG_IO;
			goto fail;
		}
		abs_path = config_path_join(cwd, path);
	}
	if (abs_path)
		dir = config_dirname(abs_path);
	if (!abs_path || !dir) {
		config_diag_set(e, path, 0, NULL, strdup("out of memory"));
		r = CONFIG_ERROR;
		goto fail;
	}

	if (config_read_file(path, &text, &len, &errnum) != CONFIG_OK) {
		config_diag_set(e, path, 0, NULL,
		                config_format("cannot read '%s': %s", path, strerror(errnum)));
		r = errnum == ENOMEM ? CONFIG_ERROR : CONFIG_IO;
		goto fail;
	}

	r = config_parse(cfg, text, len, path, kw_ok, &w, &n_w, e);
	if (r != CONFIG_OK)
		goto fail;
	if (!config_resolve_path(&cfg->auth_file, dir) ||
	    !config_resolve_path(&cfg->logfile, dir) || !config_resolve_path(&cfg->pidfile, dir) ||
	    !config_resolve_path(&cfg->client_tls_key_file, dir) ||
	    !config_resolve_path(&cfg->client_tls_cert_file, dir) ||
	    !config_resolve_path(&cfg->client_tls_ca_file, dir) ||
	    !config_resolve_path(&cfg->server_tls_ca_file, dir) ||
	    !config_resolve_path(&cfg->server_tls_key_file, dir) ||
	    !config_resolve_path(&cfg->server_tls_cert_file, dir)) {
		config_free(cfg);
		config_diags_free(w, n_w);
		w = NULL;
		n_w = 0;
		config_diag_set(e, path, 0, NULL, strdup("out of memory"));
		r = CONFIG_ERROR;
		goto fail;
	}
	cfg->path = abs_path;
	abs_path = NULL;
	if (warnings && n_warnings) {
		*warnings = w;
		*n_warnings = n_w;
	} else {
		config_diags_free(w, n_w);
	}
	r = CONFIG_OK;
	goto out;
fail:
	if (!err)
		config_diag_free(&local_err);
out:
	free(text);
	free(abs_path);
	free(dir);
	free(cwd);
	return r;
}

/* --- lookups --- */

const struct config_db *config_find_db(const struct config *cfg, const char *name)
{
	const struct config_db *fallback = NULL;

	if (!cfg || !name)
		return NULL;
	for (size_t i = 0; i < cfg->n_dbs; i++) {
		if (strcmp(cfg->dbs[i].name, name) == 0)
			return &cfg->dbs[i];
		if (strcmp(cfg->dbs[i].name, "*") == 0)
			fallback = &cfg->dbs[i];
	}
	return fallback;
}

const struct config_user *config_find_user(const struct config *cfg, const char *name)
{
	if (!cfg || !name)
		return NULL;
	for (size_t i = 0; i < cfg->n_users; i++) {
		if (strcmp(cfg->users[i].name, name) == 0)
			return &cfg->users[i];
	}
	return NULL;
}

int config_db_client_limit(const struct config *cfg, const char *db)
{
	const struct config_db *d = config_find_db(cfg, db);
	return d && d->max_db_client_connections >= 0 ? d->max_db_client_connections
	                                              : cfg->max_db_client_connections;
}

int config_user_client_limit(const struct config *cfg, const char *user)
{
	const struct config_user *u = config_find_user(cfg, user);
	return u && u->max_user_client_connections >= 0 ? u->max_user_client_connections
	                                                : cfg->max_user_client_connections;
}

const char *config_db_conn_get(const struct config_db *db, const char *key)
{
	if (!db || !key)
		return NULL;
	for (size_t i = 0; i < db->n_conn; i++) {
		if (strcmp(db->conn[i].key, key) == 0)
			return db->conn[i].value;
	}
	return NULL;
}

bool config_list_contains(const char *list, const char *name)
{
	size_t name_len;

	if (!list || !name || !name[0])
		return false;
	name_len = strlen(name);
	while (*list) {
		const char *start;

		while (*list == ',' || config_is_space(*list))
			list++;
		start = list;
		while (*list && *list != ',' && !config_is_space(*list))
			list++;
		if ((size_t)(list - start) == name_len && memcmp(start, name, name_len) == 0)
			return true;
	}
	return false;
}

bool config_split_host_port(const char *value, char *host, size_t host_len, int *port)
{
	const char *colon, *h = value;
	size_t n;
	if (value[0] == '[') {
		const char *close = strchr(value, ']');
		if (!close || close[1] != ':')
			return false;
		h = value + 1;
		n = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(value, ':');
		if (!colon || memchr(value, ':', (size_t)(colon - value)))
			return false; /* an IPv6 address needs its brackets */
		n = (size_t)(colon - value);
	}
	if (n == 0 || n >= host_len)
		return false;
	for (size_t i = 0; i < n; i++)
		if (config_is_space(h[i]) || h[i] == '[' || h[i] == ']' || h[i] == '/')
			return false;
	char *end;
	errno = 0;
	long p = strtol(colon + 1, &end, 10);
	if (!colon[1] || *end || errno || p < 1 || p > 65535 ||
	    !(colon[1] >= '0' && colon[1] <= '9'))
		return false;
	memcpy(host, h, n);
	host[n] = 0;
	*port = (int)p;
	return true;
}

/* Seconds as PgBouncer users write them: "15", "0.5", never a trailing zero. */
static void config_render_time(int64_t usec, char *buf, size_t len)
{
	int64_t sec = usec / CONFIG_USEC, frac = usec % CONFIG_USEC;
	size_t n;

	if (frac == 0) {
		snprintf(buf, len, "%" PRId64, sec);
		return;
	}
	snprintf(buf, len, "%" PRId64 ".%06" PRId64, sec, frac);
	n = strlen(buf);
	while (n > 0 && buf[n - 1] == '0')
		buf[--n] = '\0';
}

/* The value of setting s in cfg as text; buf (64 bytes) holds it when it is not a field's own. */
static const char *config_render(const struct config *cfg, const struct config_setting *s,
                                 char buf[64])
{
	const void *field = (const char *)cfg + s->offset;

	switch (s->type) {
	case CONFIG_T_STRING:
	case CONFIG_T_BOOL_TEXT:
		return *(char *const *)field ? *(char *const *)field : "";
	case CONFIG_T_INT:
		snprintf(buf, 64, "%d", *(const int *)field);
		return buf;
	case CONFIG_T_MODE:
		snprintf(buf, 64, "%04o", (unsigned)*(const int *)field);
		return buf;
	case CONFIG_T_BOOL:
		return *(const bool *)field ? "1" : "0";
	case CONFIG_T_POOL_MODE:
		return config_pool_mode_name(*(const enum pool_mode *)field);
	case CONFIG_T_AUTH_TYPE:
		return config_auth_type_name(*(const enum auth_type *)field);
	case CONFIG_T_TIME:
		config_render_time(*(const int64_t *)field, buf, 64);
		return buf;
	}
	return "";
}

void config_each_setting(const struct config *cfg,
                         void (*fn)(const char *key, const char *value, void *arg), void *arg)
{
	char buf[64];

	for (size_t i = 0; i < CONFIG_N_SETTINGS; i++)
		fn(config_settings[i].name, config_render(cfg, &config_settings[i], buf), arg);
}

bool config_setting_changeable(const char *key)
{
	return config_setting_find(key) && !config_in_list(config_fixed_settings, key, true);
}

void config_each_setting_view(const struct config *cfg,
                              void (*fn)(const struct config_setting_view *v, void *arg), void *arg)
{
	char buf[64];

	for (size_t i = 0; i < CONFIG_N_SETTINGS; i++) {
		const struct config_setting *s = &config_settings[i];
		/* Defaults are written in the table as the renderer writes them
		 * (test_config). */
		struct config_setting_view v = {
		        .key = s->name,
		        .value = config_render(cfg, s, buf),
		        .def = s->def,
		        .changeable = !config_in_list(config_fixed_settings, s->name, true),
		};
		fn(&v, arg);
	}
}

enum config_set_result config_set(struct config *cfg, const char *key, const char *value,
                                  const char **name, char *why, size_t why_len)
{
	const struct config_setting *s = config_setting_find(key);

	if (why_len)
		why[0] = '\0';
	if (!s) {
		if (config_in_list(config_unimplemented_keys, key, true) ||
		    config_in_list(config_unimplemented_tls_keys, key, true))
			return CONFIG_SET_UNSUPPORTED;
		return CONFIG_SET_UNKNOWN;
	}
	*name = s->name;
	if (config_in_list(config_fixed_settings, s->name, true))
		return CONFIG_SET_FIXED;
	switch (config_setting_parse(s, cfg, value, why, why_len)) {
	case CONFIG_VALUE_OK:
		return CONFIG_SET_OK;
	case CONFIG_VALUE_INVALID:
		return CONFIG_SET_INVALID;
	case CONFIG_VALUE_OOM:
		break;
	}
	return CONFIG_SET_OOM;
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < CONFIG_N_SETTINGS; i++) {
		const struct config_setting *s = &config_settings[i];

		if (s->type == CONFIG_T_STRING || s->type == CONFIG_T_BOOL_TEXT)
			free(*(char **)((char *)cfg + s->offset));
	}
	for (size_t i = 0; i < cfg->n_dbs; i++)
		config_db_free(&cfg->dbs[i]);
	free(cfg->dbs);
	for (size_t i = 0; i < cfg->n_users; i++)
		config_user_free(&cfg->users[i]);
	free(cfg->users);
	free(cfg->path);
	memset(cfg, 0, sizeof(*cfg));
}
