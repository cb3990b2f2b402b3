/* Table-driven tests for config.c: defaults, each value type, sections, diagnostics, includes. */
#include "pgtide/config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define SEC          1000000LL

/* The result of one config_parse call, kept together so every test frees it the same way. */
struct parsed {
	enum config_result r;
	struct config cfg;
	struct config_diag *w;
	size_t n_w;
	struct config_diag err;
};

/* Stands in for the PQconndefaults()-based check the daemon passes. */
static bool test_kw_ok(const char *kw)
{
	static const char *const known[] = {
	        "host",     "hostaddr", "port",    "dbname",           "user",
	        "password", "options",  "sslmode", "application_name", "connect_timeout",
	        NULL,
	};

	for (const char *const *k = known; *k; k++) {
		if (strcmp(*k, kw) == 0)
			return true;
	}
	return false;
}

static void parse_len(struct parsed *p, const char *text, size_t len, config_conn_keyword_fn kw)
{
	p->r = config_parse(&p->cfg, text, len, "test.ini", kw, &p->w, &p->n_w, &p->err);
}

static void parse(struct parsed *p, const char *text, config_conn_keyword_fn kw)
{
	parse_len(p, text, strlen(text), kw);
}

static void parsed_free(struct parsed *p)
{
	config_free(&p->cfg);
	config_diags_free(p->w, p->n_w);
	config_diag_free(&p->err);
}

/* What SHOW CONFIG would print for one key. */
struct probe {
	const char *key;
	char value[512];
	bool found;
};

static void probe_cb(const char *key, const char *value, void *arg)
{
	struct probe *pr = arg;

	if (strcmp(key, pr->key) == 0) {
		snprintf(pr->value, sizeof(pr->value), "%s", value);
		pr->found = true;
	}
}

static const char *setting_text(const struct config *cfg, const char *key, struct probe *pr)
{
	memset(pr, 0, sizeof(*pr));
	pr->key = key;
	config_each_setting(cfg, probe_cb, pr);
	return pr->found ? pr->value : NULL;
}

/* Every setting rendered as "key = value\n" lines: an ini body and a comparable snapshot. */
struct dump {
	char *text;
	size_t len, cap;
	int count;
};

static void dump_cb(const char *key, const char *value, void *arg)
{
	struct dump *d = arg;
	size_t need = strlen(key) + strlen(value) + 5;

	if (d->len + need + 1 > d->cap) {
		d->cap = (d->len + need + 1) * 2;
		d->text = realloc(d->text, d->cap);
		if (!d->text)
			abort();
	}
	d->len += (size_t)sprintf(d->text + d->len, "%s = %s\n", key, value);
	d->count++;
}

static char *dump_config(const struct config *cfg, int *count)
{
	struct dump d = {0};

	config_each_setting(cfg, dump_cb, &d);
	if (count)
		*count = d.count;
	return d.text;
}

static void test_defaults(void)
{
	static const struct {
		const char *key;
		const char *value;
	} rows[] = {
	        {"listen_addr", ""},
	        {"listen_port", "6432"},
	        {"listen_backlog", "128"},
	        {"unix_socket_dir", ""},
	        {"unix_socket_mode", "0777"},
	        {"unix_socket_group", ""},
	        {"auth_type", "md5"},
	        {"auth_file", ""},
	        {"scram_iterations", "4096"},
	        {"pool_mode", "session"},
	        {"max_client_conn", "100"},
	        {"default_pool_size", "20"},
	        {"min_pool_size", "0"},
	        {"reserve_pool_size", "0"},
	        {"reserve_pool_timeout", "5"},
	        {"max_db_connections", "0"},
	        {"max_user_connections", "0"},
	        {"max_db_client_connections", "0"},
	        {"max_user_client_connections", "0"},
	        {"server_round_robin", "0"},
	        {"disable_pqexec", "0"},
	        {"server_fast_close", "0"},
	        {"server_reset_query", "DISCARD ALL"},
	        {"server_reset_query_always", "0"},
	        {"server_check_query", "select 1"},
	        {"server_check_delay", "30"},
	        {"server_lifetime", "3600"},
	        {"autodb_idle_timeout", "3600"},
	        {"server_idle_timeout", "600"},
	        {"server_connect_timeout", "15"},
	        {"server_login_retry", "15"},
	        {"client_login_timeout", "60"},
	        {"query_timeout", "0"},
	        {"query_wait_timeout", "120"},
	        {"query_wait_notify", "5"},
	        {"client_idle_timeout", "0"},
	        {"idle_transaction_timeout", "0"},
	        {"transaction_timeout", "0"},
	        {"shutdown_wait_timeout", "60"},
	        {"suspend_timeout", "10"},
	        {"cancel_wait_timeout", "10"},
	        {"max_packet_size", "2147483647"},
	        {"pkt_buf", "4096"},
	        {"logfile", ""},
	        {"pidfile", ""},
	        {"syslog", "0"},
	        {"syslog_ident", "pgtide"},
	        {"syslog_facility", "daemon"},
	        {"log_connections", "1"},
	        {"log_disconnections", "1"},
	        {"log_pooler_errors", "1"},
	        {"verbose", "0"},
	        {"admin_users", ""},
	        {"stats_users", ""},
	        {"ignore_startup_parameters", ""},
	        {"track_extra_parameters", "IntervalStyle"},
	        {"application_name_add_host", "0"},
	        {"tcp_keepalive", "1"},
	        {"tcp_keepidle", "0"},
	        {"tcp_keepintvl", "0"},
	        {"tcp_keepcnt", "0"},
	        {"tcp_user_timeout", "0"},
	        {"tcp_socket_buffer", "0"},
	        {"tcp_defer_accept", "1"},
	        {"so_reuseport", "0"},
	        {"max_prepared_statements", "200"},
	        {"error_kind_field", "K"},
	        {"log_error_kinds", "log"},
	        {"pin_session_state", "on"},
	        {"metrics_listen", ""},
	        {"stats_period", "60"},
	        {"log_stats", "1"},
	        {"client_tls_sslmode", "disable"},
	        {"client_tls_key_file", ""},
	        {"client_tls_cert_file", ""},
	        {"client_tls_ca_file", ""},
	        {"client_tls_protocols", "secure"},
	        {"client_tls_ciphers", "fast"},
	        {"client_tls13_ciphers", ""},
	        {"client_tls_ecdhcurve", "auto"},
	        {"client_tls_dheparams", "auto"},
	        {"server_tls_sslmode", "disable"},
	        {"server_tls_ca_file", ""},
	        {"server_tls_key_file", ""},
	        {"server_tls_cert_file", ""},
	        {"server_tls_protocols", "secure"},
	};
	struct config cfg;
	struct parsed empty = {0};
	struct probe pr;
	char *a, *b;
	int count = 0;

	config_defaults(&cfg);
	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		const char *v = setting_text(&cfg, rows[i].key, &pr);

		CHECK_STR(v, rows[i].value, "default of %s: got '%s', want '%s'", rows[i].key,
		          v ? v : "(missing)", rows[i].value);
	}

	/* A default row per setting: a new setting without a documented default fails here. */
	a = dump_config(&cfg, &count);
	CHECK(count == (int)ARRAY_LEN(rows), "each_setting walks %d settings, test knows %zu",
	      count, ARRAY_LEN(rows));

	/* The typed fields behind the text. */
	CHECK(cfg.listen_port == 6432, "listen_port field");
	CHECK(cfg.unix_socket_mode == 0777, "unix_socket_mode field is octal 0777");
	CHECK(cfg.auth_type == AUTH_TYPE_MD5, "auth_type field");
	CHECK(cfg.pool_mode == POOL_MODE_SESSION, "pool_mode field");
	CHECK(cfg.server_connect_timeout == 15 * SEC, "server_connect_timeout is microseconds");
	CHECK(cfg.reserve_pool_timeout == 5 * SEC, "reserve_pool_timeout is microseconds");
	CHECK(cfg.log_connections && cfg.log_disconnections && cfg.log_pooler_errors,
	      "log_* default on");
	CHECK(cfg.tcp_keepalive && !cfg.syslog, "tcp_keepalive on, syslog off");
	CHECK(!cfg.server_round_robin, "server_round_robin off: idle servers reused LIFO");
	CHECK(cfg.scram_iterations == 4096, "scram_iterations field");
	CHECK(cfg.tcp_defer_accept == 1 && !cfg.so_reuseport,
	      "tcp_defer_accept 1, so_reuseport off");
	CHECK(cfg.n_dbs == 0 && cfg.n_users == 0 && cfg.path == NULL, "no dbs, users or path");

	/* An empty file is the defaults. */
	parse(&empty, "", NULL);
	CHECK(empty.r == CONFIG_OK && empty.n_w == 0, "empty text parses cleanly");
	b = dump_config(&empty.cfg, NULL);
	CHECK_STR(a, b, "empty file equals config_defaults");
	free(a);
	free(b);
	parsed_free(&empty);
	config_free(&cfg);
	config_free(&cfg); /* safe twice: config_free leaves a zeroed struct */
}

/* Good values of each type, written as a user would, and how SHOW CONFIG renders them. */
static void test_values_ok(void)
{
	static const struct {
		const char *line;
		const char *key;
		const char *want;
	} rows[] = {
	        {"listen_addr = *", "listen_addr", "*"},
	        {"listen_addr = 127.0.0.1, ::1", "listen_addr", "127.0.0.1, ::1"},
	        {"listen_port = 7000", "listen_port", "7000"},
	        {"LISTEN_PORT = 7001", "listen_port", "7001"},
	        {"listen_port=65535", "listen_port", "65535"},
	        {"  \tlisten_port   =   6000   \t", "listen_port", "6000"},
	        {"unix_socket_mode = 0700", "unix_socket_mode", "0700"},
	        {"unix_socket_mode = 755", "unix_socket_mode", "0755"},
	        {"unix_socket_group = adm", "unix_socket_group", "adm"},
	        {"auth_type = trust", "auth_type", "trust"},
	        {"auth_type = any", "auth_type", "any"},
	        {"auth_type = plain", "auth_type", "plain"},
	        {"auth_type = MD5", "auth_type", "md5"},
	        {"auth_type = scram-sha-256", "auth_type", "scram-sha-256"},
	        {"pool_mode = transaction", "pool_mode", "transaction"},
	        {"pool_mode = Statement", "pool_mode", "statement"},
	        {"server_lifetime = 0.5", "server_lifetime", "0.5"},
	        {"server_lifetime = 1.25", "server_lifetime", "1.25"},
	        {"autodb_idle_timeout = 0.5", "autodb_idle_timeout", "0.5"},
	        {"query_wait_timeout = 30.0", "query_wait_timeout", "30"},
	        {"client_idle_timeout = .25", "client_idle_timeout", "0.25"},
	        {"server_idle_timeout = 0.000001", "server_idle_timeout", "0.000001"},
	        {"query_timeout = 0", "query_timeout", "0"},
	        {"suspend_timeout = 2.5", "suspend_timeout", "2.5"},
	        {"log_connections = off", "log_connections", "0"},
	        {"log_disconnections = 0", "log_disconnections", "0"},
	        {"log_pooler_errors = no", "log_pooler_errors", "0"},
	        {"tcp_keepalive = FALSE", "tcp_keepalive", "0"},
	        {"syslog = yes", "syslog", "1"},
	        {"syslog = on", "syslog", "1"},
	        {"syslog_facility = local0", "syslog_facility", "local0"},
	        {"syslog_facility = authpriv", "syslog_facility", "authpriv"},
	        {"syslog_facility = USER", "syslog_facility", "USER"},
	        {"disable_pqexec = 1", "disable_pqexec", "1"},
	        {"server_fast_close = on", "server_fast_close", "1"},
	        {"server_reset_query_always = true", "server_reset_query_always", "1"},
	        {"application_name_add_host = on", "application_name_add_host", "1"},
	        {"track_extra_parameters = IntervalStyle, search_path", "track_extra_parameters",
	         "IntervalStyle, search_path"},
	        {"server_reset_query = DEALLOCATE ALL; -- ; and # stay", "server_reset_query",
	         "DEALLOCATE ALL; -- ; and # stay"},
	        {"server_reset_query =", "server_reset_query", ""},
	        {"server_check_query = \"select 1\"", "server_check_query", "\"select 1\""},
	        {"error_kind_field = X", "error_kind_field", "X"},
	        {"error_kind_field = k", "error_kind_field", "k"},
	        {"error_kind_field =", "error_kind_field", ""},
	        {"max_packet_size = 1024", "max_packet_size", "1024"},
	        {"pkt_buf = 512", "pkt_buf", "512"},
	        {"default_pool_size = 1", "default_pool_size", "1"},
	        {"verbose = 2", "verbose", "2"},
	        {"admin_users = admin, ops", "admin_users", "admin, ops"},
	        {"metrics_listen = 127.0.0.1:9127", "metrics_listen", "127.0.0.1:9127"},
	        {"metrics_listen = [::1]:9127", "metrics_listen", "[::1]:9127"},
	        {"metrics_listen = *:9127", "metrics_listen", "*:9127"},
	        {"metrics_listen = localhost:1", "metrics_listen", "localhost:1"},
	        {"metrics_listen =", "metrics_listen", ""},
	        {"stats_period = 1", "stats_period", "1"},
	        {"log_stats = off", "log_stats", "0"},
	        {"server_round_robin = 1", "server_round_robin", "1"},
	        {"scram_iterations = 1", "scram_iterations", "1"},
	        {"scram_iterations = 100000", "scram_iterations", "100000"},
	        {"so_reuseport = on", "so_reuseport", "1"},
	        {"tcp_defer_accept = 0", "tcp_defer_accept", "0"},
	        {"tcp_defer_accept = 45", "tcp_defer_accept", "45"},
	        {"tcp_socket_buffer = 65536", "tcp_socket_buffer", "65536"},
	        {"tcp_user_timeout = 30000", "tcp_user_timeout", "30000"},
	        {"client_tls13_ciphers = TLS_AES_256_GCM_SHA384", "client_tls13_ciphers",
	         "TLS_AES_256_GCM_SHA384"},
	        {"client_tls_ecdhcurve = secp384r1", "client_tls_ecdhcurve", "secp384r1"},
	        {"client_tls_ecdhcurve = none", "client_tls_ecdhcurve", "none"},
	        {"client_tls_dheparams = none", "client_tls_dheparams", "none"},
	        {"client_tls_dheparams = Legacy", "client_tls_dheparams", "Legacy"},
	};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		struct parsed p = {0};
		struct probe pr;
		char text[256];
		const char *v;

		snprintf(text, sizeof(text), "[pgtide]\n%s\n", rows[i].line);
		parse(&p, text, NULL);
		CHECK(p.r == CONFIG_OK, "'%s' parses (%s)", rows[i].line,
		      p.err.message ? p.err.message : "");
		v = setting_text(&p.cfg, rows[i].key, &pr);
		CHECK_STR(v, rows[i].want, "'%s' renders as '%s', got '%s'", rows[i].line,
		          rows[i].want, v ? v : "(null)");
		CHECK(p.n_w == 0, "'%s' gives no warnings", rows[i].line);
		parsed_free(&p);
	}
}

/* Times are seconds in the file and exact microseconds in the struct. */
static void test_time_values(void)
{
	static const struct {
		const char *value;
		int64_t usec; /* -1: must be rejected */
	} rows[] = {
	        {"15", 15 * SEC},
	        {"0.5", SEC / 2},
	        {"0.1", 100000},
	        {".5", SEC / 2},
	        {"5.", 5 * SEC},
	        {"1.2345678", 1234567},
	        {"0", 0},
	        {"9223372036853", 9223372036853LL * SEC},
	        {"9223372036854", -1},
	        {"-1", -1},
	        {"1e3", -1},
	        {"1s", -1},
	        {"1 5", -1},
	        {".", -1},
	        {"", -1},
	        {"nan", -1},
	        {"0x10", -1},
	};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		struct parsed p = {0};
		char text[256];

		snprintf(text, sizeof(text), "[pgtide]\nserver_lifetime = %s\n", rows[i].value);
		parse(&p, text, NULL);
		if (rows[i].usec < 0) {
			CHECK(p.r == CONFIG_ERROR && p.err.message &&
			              strstr(p.err.message, "invalid time value"),
			      "time '%s' rejected", rows[i].value);
		} else {
			CHECK(p.r == CONFIG_OK && p.cfg.server_lifetime == rows[i].usec,
			      "time '%s' is %lld us, got %lld", rows[i].value,
			      (long long)rows[i].usec, (long long)p.cfg.server_lifetime);
		}
		parsed_free(&p);
	}
}

/* Every way to get it wrong, with the exact line and key the error must name. */
static void test_errors(void)
{
	static const struct {
		const char *text;
		bool kw; /* validate connection keywords */
		int line;
		const char *key;
		const char *msg;
	} rows[] = {
	        {"[pgtide]\nlisten_port = abc\n", false, 2, "listen_port",
	         "invalid integer value 'abc'"},
	        {"[pgbouncer]\nclient_tls_sslmode = required\n", false, 2, "client_tls_sslmode",
	         "invalid sslmode 'required' (use disable, allow, prefer, require, verify-ca or "
	         "verify-full)"},
	        {"[pgtide]\nserver_tls_sslmode = verify\n", false, 2, "server_tls_sslmode",
	         "invalid sslmode 'verify'"},
	        {"[pgtide]\nclient_tls_protocols = tlsv1.4\n", false, 2, "client_tls_protocols",
	         "invalid TLS protocol list 'tlsv1.4'"},
	        {"[pgtide]\nserver_tls_protocols = secure,,ssl3\n", false, 2,
	         "server_tls_protocols", "invalid TLS protocol list"},
	        {"[pgtide]\nclient_tls_protocols = all,!all\n", false, 2, "client_tls_protocols",
	         "invalid TLS protocol list"},
	        {"[pgtide]\n\n; comment\nlisten_port = 0\n", false, 4, "listen_port",
	         "value '0' out of range (1..65535)"},
	        {"[pgtide]\nlisten_port = 65536\n", false, 2, "listen_port", "out of range"},
	        {"[pgtide]\nlisten_port = 12x\n", false, 2, "listen_port", "invalid integer value"},
	        {"[pgtide]\nlisten_port = 99999999999999999999\n", false, 2, "listen_port",
	         "out of range"},
	        {"[pgtide]\nlisten_port = 7000\nlisten_port = x\n", false, 3, "listen_port",
	         "invalid integer value 'x'"},
	        {"[pgtide]\nListen_Port = x\n", false, 2, "listen_port", "invalid integer"},
	        {"[pgtide]\ndefault_pool_size = 0\n", false, 2, "default_pool_size",
	         "out of range"},
	        {"[pgtide]\nmax_packet_size = 1023\n", false, 2, "max_packet_size", "out of range"},
	        {"[pgtide]\npkt_buf = 511\n", false, 2, "pkt_buf", "out of range"},
	        {"[pgtide]\nmax_client_conn = -1\n", false, 2, "max_client_conn", "out of range"},
	        {"[pgtide]\ntcp_keepidle = -5\n", false, 2, "tcp_keepidle", "out of range"},
	        {"[pgtide]\nscram_iterations = 0\n", false, 2, "scram_iterations",
	         "value '0' out of range (1..2147483647)"},
	        {"[pgtide]\ntcp_user_timeout = -1\n", false, 2, "tcp_user_timeout", "out of range"},
	        {"[pgtide]\ntcp_socket_buffer = 1k\n", false, 2, "tcp_socket_buffer",
	         "invalid integer value '1k'"},
	        {"[pgtide]\ntcp_defer_accept = -1\n", false, 2, "tcp_defer_accept", "out of range"},
	        {"[pgtide]\nso_reuseport = 2\n", false, 2, "so_reuseport", "invalid boolean"},
	        {"[pgtide]\nserver_round_robin = maybe\n", false, 2, "server_round_robin",
	         "invalid boolean"},
	        {"[pgtide]\nclient_tls_dheparams = 2048\n", false, 2, "client_tls_dheparams",
	         "invalid client_tls_dheparams '2048' (use none, auto or legacy)"},
	        {"[pgtide]\nunix_socket_mode = 0778\n", false, 2, "unix_socket_mode",
	         "invalid octal mode value '0778'"},
	        {"[pgtide]\nunix_socket_mode = rwx\n", false, 2, "unix_socket_mode",
	         "invalid octal mode"},
	        {"[pgtide]\nunix_socket_mode = 01777\n", false, 2, "unix_socket_mode",
	         "out of range"},
	        {"[pgtide]\nauth_type = hba\n", false, 2, "auth_type",
	         "auth_type 'hba' is not supported"},
	        {"[pgtide]\nauth_type = cert\n", false, 2, "auth_type", "'cert' is not supported"},
	        {"[pgtide]\nauth_type = pam\n", false, 2, "auth_type", "'pam' is not supported"},
	        {"[pgtide]\nauth_type = md6\n", false, 2, "auth_type", "invalid auth_type 'md6'"},
	        {"[pgtide]\npool_mode = sessions\n", false, 2, "pool_mode",
	         "invalid pool_mode 'sessions'"},
	        {"[pgtide]\nlog_connections = maybe\n", false, 2, "log_connections",
	         "invalid boolean value 'maybe'"},
	        {"[pgtide]\nsyslog =\n", false, 2, "syslog", "invalid boolean value ''"},
	        {"[pgtide]\nsyslog_facility = local8\n", false, 2, "syslog_facility",
	         "invalid syslog facility 'local8'"},
	        {"[pgtide]\nsyslog_facility = kern\n", false, 2, "syslog_facility",
	         "invalid syslog facility 'kern'"},
	        {"[pgtide]\nsyslog_facility =\n", false, 2, "syslog_facility",
	         "invalid syslog facility ''"},
	        {"[pgtide]\napplication_name_add_host = 2\n", false, 2, "application_name_add_host",
	         "invalid boolean"},
	        {"[pgtide]\nserver_lifetime = -1\n", false, 2, "server_lifetime",
	         "invalid time value '-1'"},
	        {"[pgtide]\nerror_kind_field = S\n", false, 2, "error_kind_field",
	         "'S' is an ErrorResponse field code"},
	        {"[pgtide]\nerror_kind_field = KK\n", false, 2, "error_kind_field",
	         "empty or one printable"},
	        {"[pgtide]\nlog_error_kinds = loud\n", false, 2, "log_error_kinds",
	         "invalid level 'loud' (use off, debug, log or warning)"},
	        {"[pgtide]\npin_session_state = yes\n", false, 2, "pin_session_state",
	         "invalid pin_session_state 'yes' (use on, off or error)"},
	        {"[pgtide]\nmetrics_listen = 9127\n", false, 2, "metrics_listen",
	         "invalid metrics_listen '9127'"},
	        {"[pgtide]\nmetrics_listen = 127.0.0.1:\n", false, 2, "metrics_listen",
	         "invalid metrics_listen"},
	        {"[pgtide]\nmetrics_listen = :9127\n", false, 2, "metrics_listen",
	         "invalid metrics_listen"},
	        {"[pgtide]\nmetrics_listen = 127.0.0.1:65536\n", false, 2, "metrics_listen",
	         "invalid metrics_listen"},
	        {"[pgtide]\nmetrics_listen = 127.0.0.1:0\n", false, 2, "metrics_listen",
	         "invalid metrics_listen"},
	        {"[pgtide]\nmetrics_listen = 127.0.0.1:91x\n", false, 2, "metrics_listen",
	         "invalid metrics_listen"},
	        {"[pgtide]\nmetrics_listen = 127.0.0.1:+80\n", false, 2, "metrics_listen",
	         "invalid metrics_listen"},
	        {"[pgtide]\nmetrics_listen = ::1:9127\n", false, 2, "metrics_listen",
	         "invalid metrics_listen"},
	        {"[pgtide]\nmetrics_listen = [::1]9127\n", false, 2, "metrics_listen",
	         "invalid metrics_listen"},
	        {"[pgtide]\nstats_period = 0\n", false, 2, "stats_period",
	         "out of range (1..86400)"},
	        {"listen_port = 1\n", false, 1, "listen_port", "outside any section"},
	        {"; header comment\n\napp = host=x\n[databases]\n", false, 3, "app",
	         "outside any section"},
	        {"[pgtide]\njust some words\n", false, 2, NULL, "expected 'key = value'"},
	        {"[pgtide]\nlisten port = 1\n", false, 2, NULL, "expected 'key = value'"},
	        {"[pgtide]\n= 5\n", false, 2, NULL, "expected 'key = value'"},
	        {"[pgtide]\n\"unterminated = 1\n", false, 2, NULL, "expected 'key = value'"},
	        {"[databases]\n\"\" = host=x\n", false, 2, NULL, "empty key"},
	        {"[pgtide\nlisten_port = 1\n", false, 1, NULL, "without ']'"},
	        {"[pgtide] junk\n", false, 1, NULL, "unexpected text after section header"},
	        {"[pgtide]\n%bogus x\n", false, 2, NULL, "unknown directive '%bogus x'"},
	        {"[pgtide]\n%include\n", false, 2, NULL, "%include needs a file name"},
	        {"[databases]\napp = host=x port\n", false, 2, "app",
	         "missing \"=\" after keyword"},
	        {"[databases]\napp = host='x\n", false, 2, "app", "unterminated quoted string"},
	        {"[databases]\napp = pool_size=abc\n", false, 2, "app",
	         "invalid integer value 'abc' for pool_size"},
	        {"[databases]\napp = reserve_pool=-2\n", false, 2, "app", "out of range"},
	        {"[databases]\napp = pool_mode=bogus\n", false, 2, "app",
	         "invalid pool_mode 'bogus'"},
	        {"[databases]\napp = host=x hots=y\n", true, 2, "app",
	         "unknown connection keyword 'hots'"},
	        {"[databases]\nok = host=x\n\nbad = host=x Pool_Size=1\n", true, 4, "bad",
	         "unknown connection keyword 'Pool_Size'"},
	        {"[users]\nbob = pool_mode=transaction bogus=1\n", false, 2, "bob",
	         "unknown setting 'bogus'"},
	        {"[users]\nbob = max_user_connections=-1\n", false, 2, "bob", "out of range"},
	        {"[users]\nbob = max_user_client_connections=-1\n", false, 2, "bob",
	         "out of range"},
	        {"[users]\nbob = max_user_client_connections=many\n", false, 2, "bob",
	         "invalid integer value 'many' for max_user_client_connections"},
	        {"[databases]\napp = max_db_client_connections=-3\n", false, 2, "app",
	         "out of range"},
	        {"[databases]\napp = max_db_client_connections=2x\n", false, 2, "app",
	         "invalid integer value '2x' for max_db_client_connections"},
	        {"[pgtide]\nmax_db_client_connections = -1\n", false, 2,
	         "max_db_client_connections", "out of range"},
	        {"[pgtide]\nmax_user_client_connections = lots\n", false, 2,
	         "max_user_client_connections", "invalid integer value"},
	        {"[users]\nbob = pool_mode=sess\n", false, 2, "bob", "invalid pool_mode 'sess'"},
	        {"[users]\nbob = pool_size\n", false, 2, "bob", "missing \"=\""},
	        {"[users]\nbob = reserve_pool_size=-1\n", false, 2, "bob", "out of range"},
	        {"[users]\nbob = query_timeout=abc\n", false, 2, "bob",
	         "invalid time value 'abc' for query_timeout"},
	        {"[users]\nbob = idle_transaction_timeout=-1\n", false, 2, "bob",
	         "invalid time value '-1' for idle_transaction_timeout"},
	        {"[users]\nbob = transaction_timeout=5s\n", false, 2, "bob",
	         "invalid time value '5s' for transaction_timeout"},
	        {"[users]\nbob = client_idle_timeout=\n", false, 2, "bob",
	         "invalid time value '' for client_idle_timeout"},
	        {"[users]\nbob = server_lifetime=5\n", false, 2, "bob",
	         "unknown setting 'server_lifetime'"},
	        {"[databases]\napp = server_lifetime=1.5.0\n", false, 2, "app",
	         "invalid time value '1.5.0' for server_lifetime"},
	        {"[databases]\napp = host=x query_timeout=5\n", true, 2, "app",
	         "unknown connection keyword 'query_timeout'"},
	};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		struct parsed p = {0};

		parse(&p, rows[i].text, rows[i].kw ? test_kw_ok : NULL);
		CHECK(p.r == CONFIG_ERROR, "row %zu (%s) fails", i, rows[i].msg);
		CHECK(p.err.line == rows[i].line, "row %zu (%s): line %d, want %d", i, rows[i].msg,
		      p.err.line, rows[i].line);
		CHECK_STR(p.err.key, rows[i].key, "row %zu (%s): key '%s', want '%s'", i,
		          rows[i].msg, p.err.key ? p.err.key : "(null)",
		          rows[i].key ? rows[i].key : "(null)");
		CHECK(p.err.message && strstr(p.err.message, rows[i].msg),
		      "row %zu: message '%s' should contain '%s'", i,
		      p.err.message ? p.err.message : "(null)", rows[i].msg);
		CHECK_STR(p.err.file, "test.ini", "row %zu names the file", i);
		CHECK(p.w == NULL && p.n_w == 0 && p.cfg.dbs == NULL && p.cfg.listen_addr == NULL,
		      "row %zu: no warnings handed out and cfg left freed", i);
		parsed_free(&p);
	}
}

/* Known-but-unimplemented and unknown input warns and carries on. */
static void test_warnings(void)
{
	static const struct {
		const char *text;
		size_t n; /* warnings expected */
		int line; /* of the first one */
		const char *key;
		const char *msg;
	} rows[] = {
	        {"[pgtide]\nauth_hba_file = hba.conf\n", 1, 2, "auth_hba_file",
	         "not implemented, ignored"},
	        {"[pgtide]\nserver_tls13_ciphers = x\n", 1, 2, "server_tls13_ciphers",
	         "not implemented, ignored"},
	        {"[pgtide]\nserver_tls_ciphers = fast\n", 1, 2, "server_tls_ciphers",
	         "libpq has no cipher setting"},
	        {"[pgtide]\nno_such_key = 1\n", 1, 2, "no_such_key", "unknown key, ignored"},
	        {"[pgtide]\n\ndns_max_ttl = 15\nfoo = 1\nlisten_port = 7000\n", 2, 3, "dns_max_ttl",
	         "not implemented, ignored"},
	        {"[peers]\n1 = host=x\n", 1, 1, NULL, "[peers] is not implemented, ignored"},
	        {"[weird]\nanything = at all\n", 1, 1, NULL, "unknown section [weird], ignored"},
	        {"[databases]\napp = host=a\napp = host=b\n", 1, 3, "app",
	         "defined again; this replaces the definition on line 2"},
	        {"[databases]\napp = host=a auth_user=pgb\n", 1, 2, "app",
	         "auth_user is not implemented, ignored"},
	        {"[users]\nbob = pool_size=1\nbob = pool_size=2\n", 1, 3, "bob", "defined again"},
	};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		struct parsed p = {0};

		parse(&p, rows[i].text, test_kw_ok);
		CHECK(p.r == CONFIG_OK, "warning row %zu (%s) still loads", i, rows[i].msg);
		CHECK(p.n_w == rows[i].n, "warning row %zu: %zu warnings, want %zu", i, p.n_w,
		      rows[i].n);
		if (p.n_w > 0) {
			CHECK(p.w[0].line == rows[i].line, "warning row %zu: line %d, want %d", i,
			      p.w[0].line, rows[i].line);
			CHECK_STR(p.w[0].key, rows[i].key, "warning row %zu: key", i);
			CHECK(strstr(p.w[0].message, rows[i].msg),
			      "warning row %zu: '%s' should contain '%s'", i, p.w[0].message,
			      rows[i].msg);
			CHECK_STR(p.w[0].file, "test.ini", "warning row %zu names the file", i);
		}
		parsed_free(&p);
	}
}

/* [pgtide] and [pgbouncer] are one section under two names. */
static void test_section_alias(void)
{
	static const char *const sections[] = {"pgtide", "pgbouncer", "PgBouncer", " pgtide "};
	char *first = NULL;

	for (size_t i = 0; i < ARRAY_LEN(sections); i++) {
		struct parsed p = {0};
		char text[512];
		char *d;

		snprintf(text, sizeof(text),
		         "[%s]\nlisten_port = 7432\npool_mode = transaction\nserver_lifetime = "
		         "0.5\n",
		         sections[i]);
		parse(&p, text, NULL);
		CHECK(p.r == CONFIG_OK && p.n_w == 0, "[%s] is the settings section", sections[i]);
		CHECK(p.cfg.listen_port == 7432 && p.cfg.pool_mode == POOL_MODE_TRANSACTION,
		      "[%s] values applied", sections[i]);
		d = dump_config(&p.cfg, NULL);
		if (!first)
			first = d;
		else {
			CHECK_STR(d, first, "[%s] gives the same config as [pgtide]", sections[i]);
			free(d);
		}
		parsed_free(&p);
	}
	free(first);
}

/* Comments, blank lines, CRLF and a byte order mark are all just layout. */
static void test_comments(void)
{
	static const struct {
		const char *name;
		const char *text;
		int port;
		const char *reset_query;
	} rows[] = {
	        {"semicolon and hash",
	         "; top\n# also\n[pgtide]\n; listen_port = 1\nlisten_port = 7\n", 7, "DISCARD ALL"},
	        {"indented comments", "[pgtide]\n   ; x = 1\n\t# y = 2\nlisten_port = 8\n", 8,
	         "DISCARD ALL"},
	        {"crlf", "[pgtide]\r\nlisten_port = 9\r\nserver_reset_query = RESET ALL\r\n", 9,
	         "RESET ALL"},
	        {"bom", "\xEF\xBB\xBF[pgtide]\nlisten_port = 10\n", 10, "DISCARD ALL"},
	        {"comment after header", "[pgtide] ; settings\nlisten_port = 11\n", 11,
	         "DISCARD ALL"},
	        {"no trailing newline", "[pgtide]\nlisten_port = 12", 12, "DISCARD ALL"},
	        {"inline ; is data", "[pgtide]\nserver_reset_query = RESET ALL ; # kept\n", 6432,
	         "RESET ALL ; # kept"},
	};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		struct parsed p = {0};

		parse(&p, rows[i].text, NULL);
		CHECK(p.r == CONFIG_OK && p.n_w == 0, "%s: parses cleanly (%s)", rows[i].name,
		      p.err.message ? p.err.message : "");
		CHECK(p.cfg.listen_port == rows[i].port, "%s: listen_port %d, want %d",
		      rows[i].name, p.cfg.listen_port, rows[i].port);
		CHECK_STR(p.cfg.server_reset_query, rows[i].reset_query, "%s: server_reset_query",
		          rows[i].name);
		parsed_free(&p);
	}
}

static void render_kvs(const struct config_kv *kv, size_t n, char *out, size_t out_len)
{
	size_t len = 0;

	out[0] = '\0';
	for (size_t i = 0; i < n && len < out_len; i++)
		len += (size_t)snprintf(out + len, out_len - len, "%s%s=%s", i ? "|" : "",
		                        kv[i].key, kv[i].value);
}

static void test_kv_string(void)
{
	static const struct {
		const char *in;
		const char *want; /* pairs as "k=v|k=v", or NULL when it must fail */
		const char *err;
	} rows[] = {
	        {"", "", NULL},
	        {"   ", "", NULL},
	        {"host=localhost port=5432", "host=localhost|port=5432", NULL},
	        {"host = localhost   port= 5432", "host=localhost|port=5432", NULL},
	        {"a=1\tb=2", "a=1|b=2", NULL},
	        {"password='a b c'", "password=a b c", NULL},
	        {"password='it\\'s'", "password=it's", NULL},
	        {"password='back\\\\slash'", "password=back\\slash", NULL},
	        {"options='-c search_path=x'", "options=-c search_path=x", NULL},
	        {"dbname=''", "dbname=", NULL},
	        {"a=b\\ c", "a=b c", NULL},
	        {"a='x'b=c", "a=x|b=c", NULL},
	        {"a=", "a=", NULL},
	        {"a=\\", "a=", NULL},
	        {"a=x=y", "a=x=y", NULL},
	        {"host", NULL, "missing \"=\" after keyword"},
	        {"host localhost", NULL, "missing \"=\" after keyword"},
	        {"=x", NULL, "missing keyword before \"=\""},
	        {"a='x", NULL, "unterminated quoted string"},
	        {"a='x\\'", NULL, "unterminated quoted string"},
	        {"a='x\\", NULL, "unterminated quoted string"},
	};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		struct config_kv *kv = (struct config_kv *)1;
		size_t n = 99;
		const char *err = NULL;
		bool ok = config_parse_kv_string(rows[i].in, &kv, &n, &err);
		char got[256];

		if (rows[i].want) {
			CHECK(ok, "kv '%s' parses (%s)", rows[i].in, err ? err : "");
			render_kvs(kv, ok ? n : 0, got, sizeof(got));
			CHECK_STR(got, rows[i].want, "kv '%s' gives '%s', got '%s'", rows[i].in,
			          rows[i].want, got);
		} else {
			CHECK(!ok && kv == NULL && n == 0, "kv '%s' fails and returns nothing",
			      rows[i].in);
			CHECK(err && strcmp(err, rows[i].err) == 0, "kv '%s' error '%s', want '%s'",
			      rows[i].in, err ? err : "(null)", rows[i].err);
		}
		for (size_t j = 0; ok && j < n; j++) {
			free(kv[j].key);
			free(kv[j].value);
		}
		if (ok)
			free(kv);
	}
}

static void test_databases(void)
{
	static const char text[] =
	        "[databases]\n"
	        "app = host=db1 port=5433 dbname=appdb pool_size=5 min_pool_size=1 "
	        "reserve_pool=2 max_db_connections=50 pool_mode=transaction server_lifetime=0.25\n"
	        "nolife = host=db1 server_lifetime=0\n"
	        "\"odd \"\"name\" = host=db2 application_name='my app' connect_query='SET x = 1' "
	        "client_encoding=UTF8 datestyle=ISO timezone=UTC\n"
	        "empty =\n"
	        "* = host=fallback\n"
	        "dup = host=one host=two reserve_pool_size=4\n";
	static const struct {
		const char *query;
		const char *entry; /* the entry config_find_db must return */
		const char *key;
		const char *value; /* NULL: not among the connection keywords */
	} rows[] = {
	        {"app", "app", "host", "db1"},
	        {"app", "app", "port", "5433"},
	        {"app", "app", "dbname", "appdb"},
	        {"app", "app", "pool_size", NULL},
	        {"app", "app", "pool_mode", NULL},
	        {"app", "app", "server_lifetime", NULL},
	        {"odd \"name", "odd \"name", "application_name", "my app"},
	        {"odd \"name", "odd \"name", "connect_query", NULL},
	        {"missing", "*", "host", "fallback"},
	        {"App", "*", "host", "fallback"},
	        {"empty", "empty", "host", NULL},
	        {"dup", "dup", "host", "two"},
	};
	struct parsed p = {0};
	const struct config_db *db;

	parse(&p, text, test_kw_ok);
	CHECK(p.r == CONFIG_OK && p.n_w == 0, "databases parse (%s)",
	      p.err.message ? p.err.message : "");
	CHECK(p.cfg.n_dbs == 6, "6 databases, got %zu", p.cfg.n_dbs);
	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		const char *v;

		db = config_find_db(&p.cfg, rows[i].query);
		CHECK(db && strcmp(db->name, rows[i].entry) == 0, "db '%s' resolves to '%s'",
		      rows[i].query, rows[i].entry);
		v = config_db_conn_get(db, rows[i].key);
		CHECK_STR(v, rows[i].value, "db '%s' %s = '%s', got '%s'", rows[i].query,
		          rows[i].key, rows[i].value ? rows[i].value : "(none)", v ? v : "(none)");
	}

	db = config_find_db(&p.cfg, "app");
	CHECK(db && db->pool_size == 5 && db->min_pool_size == 1 && db->reserve_pool == 2 &&
	              db->max_db_connections == 50 && db->pool_mode == POOL_MODE_TRANSACTION &&
	              db->server_lifetime == SEC / 4,
	      "app's pgbouncer-only keys are pulled into fields");
	CHECK(db && db->n_conn == 3 && strcmp(db->conn[0].key, "host") == 0 &&
	              strcmp(db->conn[2].key, "dbname") == 0,
	      "app keeps libpq keywords in file order");
	CHECK(db && db->line == 2, "app remembers its line");
	db = config_find_db(&p.cfg, "nolife");
	CHECK(db && db->server_lifetime == 0 && db->n_conn == 1,
	      "server_lifetime=0 is kept (it turns the lifetime off for the database)");
	db = config_find_db(&p.cfg, "odd \"name");
	CHECK(db && db->connect_query && strcmp(db->connect_query, "SET x = 1") == 0 &&
	              strcmp(db->client_encoding, "UTF8") == 0 &&
	              strcmp(db->datestyle, "ISO") == 0 && strcmp(db->timezone, "UTC") == 0,
	      "quoted name with session defaults");
	db = config_find_db(&p.cfg, "empty");
	CHECK(db && db->n_conn == 0 && db->pool_size == -1 && db->reserve_pool == -1 &&
	              db->server_lifetime == -1 && db->pool_mode == POOL_MODE_UNSET &&
	              db->connect_query == NULL,
	      "an empty entry is valid and inherits everything");
	db = config_find_db(&p.cfg, "dup");
	CHECK(db && db->n_conn == 1 && db->reserve_pool == 4,
	      "a repeated keyword replaces, reserve_pool_size is reserve_pool");
	CHECK(config_find_db(&p.cfg, NULL) == NULL, "NULL name finds nothing");
	parsed_free(&p);

	/* Without "*", an unknown name has no entry; a later duplicate wins. */
	parse(&p, "[databases]\na = host=1\nb = host=2\na = host=3\n", NULL);
	CHECK(p.r == CONFIG_OK && p.n_w == 1 && p.cfg.n_dbs == 2, "duplicate replaces in place");
	CHECK(config_find_db(&p.cfg, "zzz") == NULL, "no fallback without '*'");
	db = config_find_db(&p.cfg, "a");
	CHECK_STR(config_db_conn_get(db, "host"), "3", "the later 'a' wins");
	CHECK(db && db->line == 4, "the later 'a' carries its own line");
	parsed_free(&p);
}

static void test_users(void)
{
	static const struct {
		const char *name;
		bool found;
		enum pool_mode mode;
		int max_conn;
		int pool_size;
		int reserve;
		int64_t query, idle_xact, xact, client_idle; /* usec, -1: not set */
	} rows[] = {
	        {"bob", true, POOL_MODE_TRANSACTION, 5, 3, -1, -1, -1, -1, -1},
	        {"alice", true, POOL_MODE_UNSET, -1, -1, -1, -1, -1, -1, -1},
	        {"carol", true, POOL_MODE_STATEMENT, -1, -1, -1, -1, -1, -1, -1},
	        {"dave", true, POOL_MODE_UNSET, -1, -1, 2, 30 * SEC, SEC / 2, 0, 3600 * SEC},
	        {"erin", true, POOL_MODE_UNSET, -1, 0, 0, 0, 0, 0, 0},
	        {"Bob", false, POOL_MODE_UNSET, -1, -1, -1, -1, -1, -1, -1},
	        {"nobody", false, POOL_MODE_UNSET, -1, -1, -1, -1, -1, -1, -1},
	};
	struct parsed p = {0};

	parse(&p,
	      "[users]\nbob = pool_mode=transaction max_user_connections=5 pool_size=3\n"
	      "alice =\ncarol = pool_mode='statement'\n"
	      "dave = reserve_pool_size=2 query_timeout=30 idle_transaction_timeout=.5 "
	      "transaction_timeout=0 client_idle_timeout=3600\n"
	      "erin = pool_size=0 reserve_pool_size=0 query_timeout=0 idle_transaction_timeout=0 "
	      "transaction_timeout=0.0 client_idle_timeout=0\n",
	      NULL);
	CHECK(p.r == CONFIG_OK && p.n_w == 0 && p.cfg.n_users == 5, "users parse (%s)",
	      p.err.message ? p.err.message : "");
	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		const struct config_user *u = config_find_user(&p.cfg, rows[i].name);

		CHECK((u != NULL) == rows[i].found, "user '%s' found=%d", rows[i].name,
		      rows[i].found);
		if (u) {
			CHECK(u->pool_mode == rows[i].mode &&
			              u->max_user_connections == rows[i].max_conn &&
			              u->pool_size == rows[i].pool_size &&
			              u->reserve_pool_size == rows[i].reserve,
			      "user '%s' pool settings", rows[i].name);
			CHECK(u->query_timeout == rows[i].query &&
			              u->idle_transaction_timeout == rows[i].idle_xact &&
			              u->transaction_timeout == rows[i].xact &&
			              u->client_idle_timeout == rows[i].client_idle,
			      "user '%s' timeouts: %lld %lld %lld %lld", rows[i].name,
			      (long long)u->query_timeout, (long long)u->idle_transaction_timeout,
			      (long long)u->transaction_timeout, (long long)u->client_idle_timeout);
		}
	}
	parsed_free(&p);
}

/*
 * max_db_client_connections and max_user_client_connections: global, per [databases] entry
 * ("*" included) and per [users] entry, parsed as limits and resolved as a login sees them. No
 * "not implemented" warning any more.
 */
static void test_client_limits(void)
{
	static const struct {
		const char *name;
		const char *text;
		const char *db;
		const char *user;
		int db_limit;
		int user_limit;
	} rows[] = {
	        {"nothing set: unlimited", "[databases]\napp = host=x\n", "app", "bob", 0, 0},
	        {"global values",
	         "[pgtide]\nmax_db_client_connections = 7\n"
	         "max_user_client_connections = 4\n[databases]\napp = host=x\n",
	         "app", "bob", 7, 4},
	        {"per database over global",
	         "[pgbouncer]\nmax_db_client_connections = 7\n[databases]\n"
	         "app = host=x max_db_client_connections=2\nother = host=x\n",
	         "app", "bob", 2, 0},
	        {"another database keeps the global one",
	         "[pgbouncer]\nmax_db_client_connections = 7\n[databases]\n"
	         "app = host=x max_db_client_connections=2\nother = host=x\n",
	         "other", "bob", 7, 0},
	        {"0 per database lifts a global limit",
	         "[pgtide]\nmax_db_client_connections = 7\n[databases]\n"
	         "app = max_db_client_connections=0\n",
	         "app", "bob", 0, 0},
	        {"the * entry's value for names it serves",
	         "[databases]\napp = host=x\n* = host=y max_db_client_connections=3\n", "zzz",
	         "bob", 3, 0},
	        {"a named entry is not the * entry's",
	         "[databases]\napp = host=x\n* = host=y max_db_client_connections=3\n", "app",
	         "bob", 0, 0},
	        {"unknown database: the global value",
	         "[pgtide]\nmax_db_client_connections = 5\n[databases]\napp = host=x\n", "nope",
	         "bob", 5, 0},
	        {"per user over global",
	         "[pgtide]\nmax_user_client_connections = 9\n[users]\n"
	         "bob = max_user_client_connections=1 pool_mode=session\n",
	         "app", "bob", 0, 1},
	        {"a user without the key keeps the global one",
	         "[pgtide]\nmax_user_client_connections = 9\n[users]\n"
	         "bob = max_user_client_connections=1\nalice = pool_size=2\n",
	         "app", "alice", 0, 9},
	        {"0 per user lifts a global limit",
	         "[pgtide]\nmax_user_client_connections = 9\n[users]\n"
	         "bob = max_user_client_connections=0\n",
	         "app", "bob", 0, 0},
	        {"user names are exact", "[users]\nbob = max_user_client_connections=1\n", "app",
	         "Bob", 0, 0},
	};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		struct parsed p = {0};

		parse(&p, rows[i].text, test_kw_ok);
		CHECK(p.r == CONFIG_OK, "%s: parses (%s)", rows[i].name,
		      p.err.message ? p.err.message : "");
		CHECK(p.n_w == 0, "%s: no warning (%s)", rows[i].name, p.n_w ? p.w[0].message : "");
		int dl = config_db_client_limit(&p.cfg, rows[i].db);
		int ul = config_user_client_limit(&p.cfg, rows[i].user);
		CHECK(dl == rows[i].db_limit, "%s: database '%s' limit %d, want %d", rows[i].name,
		      rows[i].db, dl, rows[i].db_limit);
		CHECK(ul == rows[i].user_limit, "%s: user '%s' limit %d, want %d", rows[i].name,
		      rows[i].user, ul, rows[i].user_limit);
		parsed_free(&p);
	}

	/* The keys stay out of the connection string and land in their fields. */
	struct parsed p = {0};
	parse(&p,
	      "[databases]\napp = host=x max_db_client_connections=4 dbname=y\nplain = host=z\n"
	      "[users]\nbob = max_user_client_connections=6\ncarol = pool_size=1\n",
	      test_kw_ok);
	const struct config_db *db = config_find_db(&p.cfg, "app");
	CHECK(db && db->max_db_client_connections == 4 && db->n_conn == 2 &&
	              config_db_conn_get(db, "max_db_client_connections") == NULL,
	      "max_db_client_connections= is pgtide's, not libpq's");
	db = config_find_db(&p.cfg, "plain");
	CHECK(db && db->max_db_client_connections == -1, "an entry without it inherits (-1)");
	const struct config_user *u = config_find_user(&p.cfg, "bob");
	CHECK(u && u->max_user_client_connections == 6, "bob's max_user_client_connections");
	u = config_find_user(&p.cfg, "carol");
	CHECK(u && u->max_user_client_connections == -1, "carol inherits (-1)");
	parsed_free(&p);
}

static void test_error_kind_field(void)
{
	static const struct {
		const char *value;
		bool ok;
	} rows[] = {
	        {"", true},   {"K", true},  {"X", true},  {"k", true},   {"~", true},
	        {"S", false}, {"V", false}, {"C", false}, {"M", false},  {"D", false},
	        {"H", false}, {"P", false}, {"p", false}, {"q", false},  {"W", false},
	        {"s", false}, {"t", false}, {"c", false}, {"d", false},  {"n", false},
	        {"F", false}, {"L", false}, {"R", false}, {"KK", false}, {"\xc3\xa9", false},
	};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		struct parsed p = {0};
		char text[128];

		snprintf(text, sizeof(text), "[pgtide]\nerror_kind_field = %s\n", rows[i].value);
		parse(&p, text, NULL);
		CHECK((p.r == CONFIG_OK) == rows[i].ok, "error_kind_field '%s' ok=%d",
		      rows[i].value, rows[i].ok);
		if (rows[i].ok)
			CHECK_STR(p.cfg.error_kind_field, rows[i].value,
			          "error_kind_field '%s' kept", rows[i].value);
		else
			CHECK_STR(p.err.key, "error_kind_field", "error_kind_field '%s' names key",
			          rows[i].value);
		parsed_free(&p);
	}
}

/* Lines are bounded and may not hide NUL bytes. */
static void test_limits(void)
{
	static const struct {
		size_t value_len;
		bool ok;
	} rows[] = {
	        {65536 - 21, true}, /* "server_reset_query = " is 21 bytes: exactly 64 KiB */
	        {65536 - 20, false},
	};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		size_t len = 9 + 21 + rows[i].value_len + 1;
		char *text = malloc(len + 1);
		struct parsed p = {0};

		if (!text)
			abort();
		memcpy(text, "[pgtide]\nserver_reset_query = ", 30);
		memset(text + 30, 'x', rows[i].value_len);
		text[len - 1] = '\n';
		text[len] = '\0';
		parse(&p, text, NULL);
		CHECK((p.r == CONFIG_OK) == rows[i].ok, "line of %zu bytes ok=%d",
		      21 + rows[i].value_len, rows[i].ok);
		if (rows[i].ok)
			CHECK(p.cfg.server_reset_query &&
			              strlen(p.cfg.server_reset_query) == rows[i].value_len,
			      "long value kept whole");
		else
			CHECK(p.err.line == 2 && strstr(p.err.message, "line longer than 65536"),
			      "long line rejected at line 2");
		parsed_free(&p);
		free(text);
	}

	{
		static const char nul[] = "[pgtide]\nlisten_port = 1\0 2\n";
		struct parsed p = {0};

		parse_len(&p, nul, sizeof(nul) - 1, NULL);
		CHECK(p.r == CONFIG_ERROR && p.err.line == 2 && strstr(p.err.message, "NUL byte"),
		      "NUL byte rejected at line 2");
		parsed_free(&p);
	}
}

static void test_list_contains(void)
{
	static const struct {
		const char *list;
		const char *name;
		bool want;
	} rows[] = {
	        {"admin, stats", "stats", true},
	        {"admin,stats", "admin", true},
	        {"admin stats", "stats", true},
	        {" admin ", "admin", true},
	        {"a,,b", "b", true},
	        {"ab,a", "a", true},
	        {"administrator", "admin", false},
	        {"admin", "administrator", false},
	        {"a,b", "A", false},
	        {"", "admin", false},
	        {NULL, "admin", false},
	        {"a", "", false},
	};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++)
		CHECK(config_list_contains(rows[i].list, rows[i].name) == rows[i].want,
		      "'%s' in '%s' is %d", rows[i].name, rows[i].list ? rows[i].list : "(null)",
		      rows[i].want);
}

static void test_names(void)
{
	static const struct {
		enum pool_mode m;
		const char *name;
	} modes[] = {
	        {POOL_MODE_SESSION, "session"},
	        {POOL_MODE_TRANSACTION, "transaction"},
	        {POOL_MODE_STATEMENT, "statement"},
	        {POOL_MODE_UNSET, "unset"},
	};
	static const struct {
		enum auth_type t;
		const char *name;
	} auths[] = {
	        {AUTH_TYPE_TRUST, "trust"},         {AUTH_TYPE_ANY, "any"},
	        {AUTH_TYPE_PLAIN, "plain"},         {AUTH_TYPE_MD5, "md5"},
	        {AUTH_TYPE_SCRAM, "scram-sha-256"},
	};

	for (size_t i = 0; i < ARRAY_LEN(modes); i++)
		CHECK_STR(config_pool_mode_name(modes[i].m), modes[i].name, "pool mode %d name",
		          (int)modes[i].m);
	for (size_t i = 0; i < ARRAY_LEN(auths); i++)
		CHECK_STR(config_auth_type_name(auths[i].t), auths[i].name, "auth type %d name",
		          (int)auths[i].t);
}

/* Whatever SHOW CONFIG prints must load back into the same config. */
static void test_round_trip(void)
{
	static const struct {
		const char *name;
		const char *text;
	} rows[] = {
	        {"defaults", ""},
	        {"everything changed",
	         "[pgtide]\nlisten_addr = *\nlisten_port = 7432\nlisten_backlog = 64\n"
	         "unix_socket_dir = /tmp\nunix_socket_mode = 0700\nauth_type = scram-sha-256\n"
	         "auth_file = /etc/pgtide/userlist.txt\npool_mode = statement\n"
	         "max_client_conn = 1000\ndefault_pool_size = 7\nmin_pool_size = 2\n"
	         "reserve_pool_size = 3\nreserve_pool_timeout = 0.25\nmax_db_connections = 9\n"
	         "max_user_connections = 8\nserver_reset_query = RESET ALL\n"
	         "server_reset_query_always = 1\nserver_check_query =\nserver_check_delay = 0\n"
	         "server_lifetime = 1.5\nserver_idle_timeout = 0.000001\n"
	         "server_connect_timeout = 3\nserver_login_retry = 0.1\n"
	         "client_login_timeout = 9\nquery_timeout = 100\nquery_wait_timeout = 0\n"
	         "query_wait_notify = 2.5\nclient_idle_timeout = 33\n"
	         "idle_transaction_timeout = 44\ntransaction_timeout = 55\n"
	         "shutdown_wait_timeout = 1\ncancel_wait_timeout = 2\nmax_packet_size = 65536\n"
	         "pkt_buf = 8192\nlogfile = /var/log/pgtide.log\npidfile = /run/pgtide.pid\n"
	         "syslog = on\nsyslog_ident = tide\nlog_connections = off\n"
	         "log_disconnections = off\nlog_pooler_errors = off\nverbose = 3\n"
	         "admin_users = a, b\nstats_users = c\nignore_startup_parameters = "
	         "extra_float_digits,options\napplication_name_add_host = yes\n"
	         "tcp_keepalive = no\ntcp_keepidle = 60\ntcp_keepintvl = 10\ntcp_keepcnt = 4\n"
	         "max_prepared_statements = 0\nerror_kind_field =\n"
	         "metrics_listen = 127.0.0.1:9127\nstats_period = 15\nlog_stats = off\n"
	         "scram_iterations = 10000\nserver_round_robin = 1\ntcp_user_timeout = 9000\n"
	         "tcp_socket_buffer = 262144\ntcp_defer_accept = 0\nso_reuseport = 1\n"
	         "client_tls13_ciphers = TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256\n"
	         "client_tls_ecdhcurve = X25519:P-256\nclient_tls_dheparams = none\n"},
	};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		struct parsed a = {0}, b = {0};
		char *dump_a, *dump_b, *text;

		parse(&a, rows[i].text, NULL);
		CHECK(a.r == CONFIG_OK && a.n_w == 0, "%s: source parses (%s)", rows[i].name,
		      a.err.message ? a.err.message : "");
		dump_a = dump_config(&a.cfg, NULL);
		text = malloc(strlen(dump_a) + 16);
		if (!text)
			abort();
		sprintf(text, "[pgtide]\n%s", dump_a);
		parse(&b, text, NULL);
		CHECK(b.r == CONFIG_OK && b.n_w == 0, "%s: rendered settings parse (%s)",
		      rows[i].name, b.err.message ? b.err.message : "");
		dump_b = dump_config(&b.cfg, NULL);
		CHECK_STR(dump_a, dump_b, "%s: round trip is stable", rows[i].name);
		CHECK(a.cfg.server_lifetime == b.cfg.server_lifetime &&
		              a.cfg.unix_socket_mode == b.cfg.unix_socket_mode &&
		              a.cfg.auth_type == b.cfg.auth_type,
		      "%s: typed fields survive", rows[i].name);
		free(dump_a);
		free(dump_b);
		free(text);
		parsed_free(&a);
		parsed_free(&b);
	}
}

/* --- %include and config_load, against real files in a scratch directory --- */

static char *path_in(const char *dir, const char *name)
{
	size_t len = strlen(dir) + strlen(name) + 2;
	char *p = malloc(len);

	if (!p)
		abort();
	snprintf(p, len, "%s/%s", dir, name);
	return p;
}

static void write_text(const char *dir, const char *name, const char *text)
{
	char *p = path_in(dir, name);
	FILE *f = fopen(p, "w");

	if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
		perror(p);
		abort();
	}
	free(p);
}

static void test_include(void)
{
	static const struct {
		const char *name;
		const char *text;
	} files[] = {
	        {"main.ini", "[pgtide]\nlisten_port = 7001\nauth_file = userlist.txt\n"
	                     "logfile = log/pgtide.log\npidfile = /abs/pgtide.pid\n"
	                     "%include conf.d/extra.ini\napp2 = host=y\n"},
	        {"conf.d/extra.ini", "; relative to main.ini's folder\nmax_client_conn = 55\n"
	                             "%include more.ini\n[databases]\napp = host=x\n"},
	        {"conf.d/more.ini", "default_pool_size = 7\n"},
	        {"bad_main.ini", "[pgtide]\n%include bad.ini\n"},
	        {"bad.ini", "; line 1\nlisten_port = x\n"},
	        {"missing_main.ini", "[pgtide]\n\n%include nope.ini\n"},
	        {"loop.ini", "[pgtide]\n%include loop.ini\n"},
	};
	static const struct {
		const char *file;
		enum config_result r;
		const char *err_file; /* which file the error names (basename) */
		int line;
		const char *msg;
	} errors[] = {
	        {"bad_main.ini", CONFIG_ERROR, "bad.ini", 2, "invalid integer value 'x'"},
	        {"missing_main.ini", CONFIG_IO, "missing_main.ini", 3, "cannot read"},
	        {"loop.ini", CONFIG_ERROR, "loop.ini", 2, "nested more than"},
	        {"does_not_exist.ini", CONFIG_IO, "does_not_exist.ini", 0, "cannot read"},
	};
	char tmpl[] = "/tmp/pgtide_test_config_XXXXXX";
	char *dir = mkdtemp(tmpl);
	char *sub, *main_path, *want, *old_cwd;
	struct config cfg;
	struct config_diag *w = NULL, err;
	size_t n_w = 0;
	enum config_result r;
	const struct config_db *db;

	if (!dir) {
		perror("mkdtemp");
		abort();
	}
	sub = path_in(dir, "conf.d");
	if (mkdir(sub, 0700) != 0)
		abort();
	for (size_t i = 0; i < ARRAY_LEN(files); i++)
		write_text(dir, files[i].name, files[i].text);

	main_path = path_in(dir, "main.ini");
	r = config_load(&cfg, main_path, NULL, &w, &n_w, &err);
	CHECK(r == CONFIG_OK && n_w == 0, "include tree loads (%s)",
	      err.message ? err.message : "");
	CHECK(cfg.listen_port == 7001 && cfg.max_client_conn == 55 && cfg.default_pool_size == 7,
	      "settings from all three files");
	db = config_find_db(&cfg, "app2");
	CHECK(config_find_db(&cfg, "app") && db && strcmp(db->name, "app2") == 0,
	      "section set in an included file carries on after it, as in PgBouncer");
	CHECK_STR(cfg.path, main_path, "cfg->path is the file");
	want = path_in(dir, "userlist.txt");
	CHECK_STR(cfg.auth_file, want, "relative auth_file resolved against the ini folder");
	free(want);
	want = path_in(dir, "log/pgtide.log");
	CHECK_STR(cfg.logfile, want, "relative logfile resolved");
	free(want);
	CHECK_STR(cfg.pidfile, "/abs/pgtide.pid", "absolute pidfile untouched");
	config_free(&cfg);
	config_diags_free(w, n_w);
	config_diag_free(&err);

	/* config_parse resolves %include against its file argument too. */
	{
		static const char rel[] = "[pgtide]\n%include x.ini\n";
		struct parsed p = {0};

		p.r = config_parse(&p.cfg, files[0].text, strlen(files[0].text), main_path, NULL,
		                   &p.w, &p.n_w, &p.err);
		CHECK(p.r == CONFIG_OK && p.cfg.default_pool_size == 7,
		      "config_parse follows %%include relative to file");
		CHECK_STR(p.cfg.auth_file, "userlist.txt", "config_parse leaves paths alone");
		CHECK(p.cfg.path == NULL, "config_parse sets no path");
		parsed_free(&p);

		p.r = config_parse(&p.cfg, rel, strlen(rel), NULL, NULL, &p.w, &p.n_w, &p.err);
		CHECK(p.r == CONFIG_ERROR && strstr(p.err.message, "needs the including file"),
		      "relative %%include without a file name is an error");
		parsed_free(&p);
	}

	for (size_t i = 0; i < ARRAY_LEN(errors); i++) {
		char *path = path_in(dir, errors[i].file);
		const char *base;

		w = NULL;
		n_w = 0;
		r = config_load(&cfg, path, NULL, &w, &n_w, &err);
		base = err.file ? strrchr(err.file, '/') : NULL;
		CHECK(r == errors[i].r, "%s: result %d, want %d", errors[i].file, r, errors[i].r);
		CHECK(base && strcmp(base + 1, errors[i].err_file) == 0,
		      "%s: error names %s, got %s", errors[i].file, errors[i].err_file,
		      err.file ? err.file : "(null)");
		CHECK(err.line == errors[i].line, "%s: line %d, want %d", errors[i].file, err.line,
		      errors[i].line);
		CHECK(err.message && strstr(err.message, errors[i].msg), "%s: '%s' has '%s'",
		      errors[i].file, err.message ? err.message : "(null)", errors[i].msg);
		CHECK(w == NULL && n_w == 0 && cfg.listen_addr == NULL, "%s: nothing handed out",
		      errors[i].file);
		config_diag_free(&err);
		free(path);
	}

	/* A relative path: cfg->path still comes out absolute. */
	old_cwd = getcwd(NULL, 0);
	if (!old_cwd || chdir(dir) != 0)
		abort();
	{
		char *cwd = getcwd(NULL, 0);
		char *abs = path_in(cwd, "main.ini");

		r = config_load(&cfg, "main.ini", NULL, NULL, NULL, NULL);
		CHECK(r == CONFIG_OK, "relative config_load works without diag outputs");
		CHECK_STR(cfg.path, abs, "relative path made absolute");
		config_free(&cfg);
		free(abs);
		free(cwd);
	}
	if (chdir(old_cwd) != 0)
		abort();
	free(old_cwd);

	for (size_t i = ARRAY_LEN(files); i-- > 0;) {
		char *p = path_in(dir, files[i].name);

		unlink(p);
		free(p);
	}
	rmdir(sub);
	rmdir(dir);
	free(sub);
	free(main_path);
}

/* SHOW CONFIG's view: every setting once, defaults rendered as values are, fixed ones marked. */
struct view_walk {
	int count;
	int fixed;
	const struct config *defaults;
};

static void view_cb(const struct config_setting_view *v, void *arg)
{
	struct view_walk *w = arg;
	struct probe pr;

	w->count++;
	if (!v->changeable)
		w->fixed++;
	CHECK_STR(setting_text(w->defaults, v->key, &pr), v->def,
	          "%s: the default as written differs from the default as rendered", v->key);
	CHECK(config_setting_changeable(v->key) == v->changeable, "%s: changeable", v->key);
}

static void test_setting_view(void)
{
	struct config cfg;
	struct view_walk w = {0};
	int n = 0;

	config_defaults(&cfg);
	w.defaults = &cfg;
	config_each_setting_view(&cfg, view_cb, &w);
	free(dump_config(&cfg, &n));
	CHECK(w.count == n, "view walks %d settings, config_each_setting %d", w.count, n);
	CHECK(w.fixed == 10, "%d settings are fixed at start, expected 10", w.fixed);
	CHECK(!config_setting_changeable("unix_socket_group"), "unix_socket_group is fixed");
	CHECK(!config_setting_changeable("so_reuseport"), "so_reuseport is fixed (listeners)");
	CHECK(config_setting_changeable("tcp_defer_accept"), "tcp_defer_accept is applied live");
	CHECK(!config_setting_changeable("listen_port"), "listen_port is fixed");
	CHECK(!config_setting_changeable("nosuchkey"), "an unknown key is not changeable");
	CHECK(config_setting_changeable("DEFAULT_POOL_SIZE"), "keys match case-insensitively");
	config_free(&cfg);
}

/* SET on the admin console: one row per case, the value SHOW CONFIG shows afterwards. */
static void test_set(void)
{
	static const struct {
		const char *key;
		const char *value;
		enum config_set_result want;
		const char *name;  /* canonical name reported, NULL when none */
		const char *shown; /* SHOW CONFIG value afterwards (NULL: the default stays) */
		const char *why;   /* a substring of the reason, for CONFIG_SET_INVALID */
	} rows[] = {
	        {"default_pool_size", "7", CONFIG_SET_OK, "default_pool_size", "7", NULL},
	        {"Default_Pool_Size", "8", CONFIG_SET_OK, "default_pool_size", "8", NULL},
	        {"default_pool_size", "0", CONFIG_SET_INVALID, "default_pool_size", NULL,
	         "out of range"},
	        {"default_pool_size", "x", CONFIG_SET_INVALID, "default_pool_size", NULL,
	         "invalid integer"},
	        {"max_client_conn", "500", CONFIG_SET_OK, "max_client_conn", "500", NULL},
	        {"max_db_client_connections", "3", CONFIG_SET_OK, "max_db_client_connections", "3",
	         NULL},
	        {"max_user_client_connections", "-1", CONFIG_SET_INVALID,
	         "max_user_client_connections", NULL, "out of range"},
	        {"log_connections", "off", CONFIG_SET_OK, "log_connections", "0", NULL},
	        {"log_connections", "maybe", CONFIG_SET_INVALID, "log_connections", NULL,
	         "invalid boolean"},
	        {"query_wait_timeout", "0.5", CONFIG_SET_OK, "query_wait_timeout", "0.5", NULL},
	        {"pool_mode", "transaction", CONFIG_SET_OK, "pool_mode", "transaction", NULL},
	        {"pool_mode", "bogus", CONFIG_SET_INVALID, "pool_mode", NULL, "invalid pool_mode"},
	        {"server_reset_query", "DISCARD ALL; SELECT 1", CONFIG_SET_OK, "server_reset_query",
	         "DISCARD ALL; SELECT 1", NULL},
	        {"error_kind_field", "C", CONFIG_SET_INVALID, "error_kind_field", NULL,
	         "field code"},
	        {"log_error_kinds", "warning", CONFIG_SET_OK, "log_error_kinds", "warning", NULL},
	        {"listen_port", "7000", CONFIG_SET_FIXED, "listen_port", NULL, NULL},
	        {"unix_socket_dir", "/tmp", CONFIG_SET_FIXED, "unix_socket_dir", NULL, NULL},
	        {"pkt_buf", "8192", CONFIG_SET_FIXED, "pkt_buf", NULL, NULL},
	        {"stats_period", "30", CONFIG_SET_OK, "stats_period", "30", NULL},
	        {"pin_session_state", "error", CONFIG_SET_OK, "pin_session_state", "error", NULL},
	        {"pin_session_state", "maybe", CONFIG_SET_INVALID, "pin_session_state", NULL,
	         "invalid pin_session_state"},
	        {"client_tls_sslmode", "require", CONFIG_SET_OK, "client_tls_sslmode", "require",
	         NULL},
	        {"server_round_robin", "1", CONFIG_SET_OK, "server_round_robin", "1", NULL},
	        {"scram_iterations", "8192", CONFIG_SET_OK, "scram_iterations", "8192", NULL},
	        {"scram_iterations", "0", CONFIG_SET_INVALID, "scram_iterations", NULL,
	         "out of range"},
	        {"tcp_defer_accept", "0", CONFIG_SET_OK, "tcp_defer_accept", "0", NULL},
	        {"tcp_user_timeout", "5000", CONFIG_SET_OK, "tcp_user_timeout", "5000", NULL},
	        {"so_reuseport", "1", CONFIG_SET_FIXED, "so_reuseport", NULL, NULL},
	        {"client_tls_dheparams", "legacy", CONFIG_SET_OK, "client_tls_dheparams", "legacy",
	         NULL},
	        {"client_tls_dheparams", "ffdhe2048", CONFIG_SET_INVALID, "client_tls_dheparams",
	         NULL, "use none, auto or legacy"},
	        {"server_tls13_ciphers", "x", CONFIG_SET_UNSUPPORTED, NULL, NULL, NULL},
	        {"dns_max_ttl", "1", CONFIG_SET_UNSUPPORTED, NULL, NULL, NULL},
	        {"no_such_setting", "1", CONFIG_SET_UNKNOWN, NULL, NULL, NULL},
	};

	for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
		struct config cfg, def;
		struct probe pr;
		char why[256] = "unset";
		const char *name = NULL;
		const char *key_name = rows[i].name ? rows[i].name : rows[i].key;

		config_defaults(&cfg);
		config_defaults(&def);
		enum config_set_result r =
		        config_set(&cfg, rows[i].key, rows[i].value, &name, why, sizeof(why));
		CHECK(r == rows[i].want, "SET %s = %s: result %d, expected %d", rows[i].key,
		      rows[i].value, (int)r, (int)rows[i].want);
		CHECK_STR(name, rows[i].name, "SET %s: canonical name", rows[i].key);
		if (rows[i].why)
			CHECK(strstr(why, rows[i].why) != NULL, "SET %s = %s: reason '%s'",
			      rows[i].key, rows[i].value, why);
		if (r != CONFIG_SET_UNKNOWN && r != CONFIG_SET_UNSUPPORTED) {
			const char *want = rows[i].shown;
			struct probe pd;
			if (!want)
				want = setting_text(&def, key_name, &pd);
			CHECK_STR(setting_text(&cfg, key_name, &pr), want,
			          "SET %s = %s: shown value", rows[i].key, rows[i].value);
		}
		config_free(&cfg);
		config_free(&def);
	}
}

/* PgBouncer's TLS protocol lists and sslmode names. */
static void test_tls_settings(void)
{
	static const struct {
		const char *value;
		bool ok;
		unsigned mask;
	} protos[] = {
	        {"secure", true, CONFIG_TLS_V1_2 | CONFIG_TLS_V1_3},
	        {"default", true, CONFIG_TLS_V1_2 | CONFIG_TLS_V1_3},
	        {"all", true,
	         CONFIG_TLS_V1_0 | CONFIG_TLS_V1_1 | CONFIG_TLS_V1_2 | CONFIG_TLS_V1_3},
	        {"legacy", true,
	         CONFIG_TLS_V1_0 | CONFIG_TLS_V1_1 | CONFIG_TLS_V1_2 | CONFIG_TLS_V1_3},
	        {"tlsv1.3", true, CONFIG_TLS_V1_3},
	        {"TLSv1.2", true, CONFIG_TLS_V1_2},
	        {"tlsv1.0,tlsv1.2", true, CONFIG_TLS_V1_0 | CONFIG_TLS_V1_2},
	        {"tlsv1.1:tlsv1.2", true, CONFIG_TLS_V1_1 | CONFIG_TLS_V1_2},
	        {" tlsv1.2 , tlsv1.3 ", true, CONFIG_TLS_V1_2 | CONFIG_TLS_V1_3},
	        {"!tlsv1.0", true, CONFIG_TLS_V1_1 | CONFIG_TLS_V1_2 | CONFIG_TLS_V1_3},
	        {"all,!tlsv1.3", true, CONFIG_TLS_V1_0 | CONFIG_TLS_V1_1 | CONFIG_TLS_V1_2},
	        {"", false, 0},
	        {",", false, 0},
	        {"tlsv1.4", false, 0},
	        {"ssl3", false, 0},
	        {"secure,!secure", false, 0},
	        {"tlsv1.2tlsv1.3", false, 0},
	        {"tlsv1.2345678901234567890", false, 0},
	};
	for (size_t i = 0; i < ARRAY_LEN(protos); i++) {
		unsigned m = 0xff;
		bool ok = config_tls_protocols_parse(protos[i].value, &m);
		CHECK(ok == protos[i].ok, "protocols '%s': %s, want %s", protos[i].value,
		      ok ? "accepted" : "refused", protos[i].ok ? "accepted" : "refused");
		if (ok && protos[i].ok)
			CHECK(m == protos[i].mask, "protocols '%s': mask %#x, want %#x",
			      protos[i].value, m, protos[i].mask);
	}

	static const struct {
		const char *value;
		bool ok;
		enum config_sslmode mode;
	} modes[] = {
	        {"disable", true, CONFIG_SSLMODE_DISABLE},
	        {"allow", true, CONFIG_SSLMODE_ALLOW},
	        {"prefer", true, CONFIG_SSLMODE_PREFER},
	        {"require", true, CONFIG_SSLMODE_REQUIRE},
	        {"verify-ca", true, CONFIG_SSLMODE_VERIFY_CA},
	        {"VERIFY-FULL", true, CONFIG_SSLMODE_VERIFY_FULL},
	        {"verify_full", false, 0},
	        {"on", false, 0},
	        {"", false, 0},
	};
	for (size_t i = 0; i < ARRAY_LEN(modes); i++) {
		enum config_sslmode m = CONFIG_SSLMODE_DISABLE;
		bool ok = config_sslmode_parse(modes[i].value, &m);
		CHECK(ok == modes[i].ok && (!ok || m == modes[i].mode), "sslmode '%s'",
		      modes[i].value);
	}

	static const struct {
		const char *value;
		bool ok;
		enum config_dheparams dh;
	} dhes[] = {
	        {"none", true, CONFIG_DHE_NONE},
	        {"auto", true, CONFIG_DHE_AUTO},
	        {"AUTO", true, CONFIG_DHE_AUTO},
	        {"legacy", true, CONFIG_DHE_LEGACY},
	        {"", false, 0},
	        {"2048", false, 0},
	        {"auto,legacy", false, 0},
	        {"/etc/ssl/dh.pem", false, 0},
	};
	for (size_t i = 0; i < ARRAY_LEN(dhes); i++) {
		enum config_dheparams d = CONFIG_DHE_NONE;
		bool ok = config_dheparams_parse(dhes[i].value, &d);
		CHECK(ok == dhes[i].ok && (!ok || d == dhes[i].dh), "dheparams '%s'",
		      dhes[i].value);
	}
	CHECK(!config_dheparams_parse(NULL, NULL), "dheparams NULL is refused");

	/* TLS settings and a [databases] sslmode are accepted as written. */
	struct parsed p = {0};
	parse(&p,
	      "[databases]\napp = host=a sslmode=verify-full\n[pgtide]\n"
	      "client_tls_sslmode = verify-ca\nclient_tls_ca_file = /x/ca.crt\n"
	      "server_tls_protocols = tlsv1.3\nclient_tls_ciphers = HIGH\n",
	      test_kw_ok);
	CHECK(p.r == CONFIG_OK && p.n_w == 0, "TLS settings parse without warnings");
	if (p.r == CONFIG_OK) {
		CHECK_STR(config_db_conn_get(&p.cfg.dbs[0], "sslmode"), "verify-full",
		          "the entry's sslmode reaches libpq");
		CHECK_STR(p.cfg.client_tls_sslmode, "verify-ca", "client_tls_sslmode");
		CHECK_STR(p.cfg.client_tls_ca_file, "/x/ca.crt", "client_tls_ca_file");
		CHECK_STR(p.cfg.server_tls_protocols, "tlsv1.3", "server_tls_protocols");
		CHECK_STR(p.cfg.client_tls_ciphers, "HIGH", "client_tls_ciphers");
	}
	parsed_free(&p);
}

int main(void)
{
	test_defaults();
	test_values_ok();
	test_time_values();
	test_errors();
	test_warnings();
	test_section_alias();
	test_comments();
	test_kv_string();
	test_databases();
	test_users();
	test_client_limits();
	test_error_kind_field();
	test_limits();
	test_list_contains();
	test_names();
	test_round_trip();
	test_include();
	test_setting_view();
	test_set();
	test_tls_settings();
	UNIT_DONE();
}
