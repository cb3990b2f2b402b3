/*
 * How a setting's value is spelled: numbers, booleans and times as PgBouncer writes them, and
 * the names of pool modes, auth types, sslmodes, TLS versions, DH parameters and syslog
 * facilities, each parsed, checked and named back. config.c applies them to settings.
 */
#include "pgtide/config_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pgtide/pin.h"

/* The largest whole number of seconds whose microseconds still fit in an int64_t. */
#define CONFIG_MAX_SECONDS (INT64_MAX / CONFIG_USEC - 1)

struct config_name {
	const char *name;
	int value;
};

static const struct config_name config_pool_modes[] = {
        {"session", POOL_MODE_SESSION},
        {"transaction", POOL_MODE_TRANSACTION},
        {"statement", POOL_MODE_STATEMENT},
        {NULL, 0},
};

static const struct config_name config_auth_types[] = {
        {"trust", AUTH_TYPE_TRUST},         {"any", AUTH_TYPE_ANY},
        {"plain", AUTH_TYPE_PLAIN},         {"md5", AUTH_TYPE_MD5},
        {"scram-sha-256", AUTH_TYPE_SCRAM}, {NULL, 0},
};

/* PgBouncer auth_type values pgtide cannot honour: failing beats silently weaker auth. */
static const char *const config_unsupported_auth_types[] = {"hba", "cert", "pam", "ldap", NULL};

/* Field codes PostgreSQL's ErrorResponse uses; error_kind_field must not collide with them. */
static const char config_pg_error_fields[] = "SVCMDHPpqWstcdnFLR";

enum config_value_result config_parse_int(const char *value, int base, int64_t min, int64_t max,
                                          int *out, char *why, size_t why_len)
{
	char *end;
	long long v;

	/* strtoll would skip leading blanks and accept a sign we never want for a count. */
	if (!config_is_digit(value[0]) && !(value[0] == '-' && config_is_digit(value[1]))) {
		snprintf(why, why_len, "invalid %s value '%.100s'",
		         base == 8 ? "octal mode" : "integer", value);
		return CONFIG_VALUE_INVALID;
	}
	errno = 0;
	v = strtoll(value, &end, base);
	if (*end != '\0') {
		snprintf(why, why_len, "invalid %s value '%.100s'",
		         base == 8 ? "octal mode" : "integer", value);
		return CONFIG_VALUE_INVALID;
	}
	if (errno == ERANGE || v < min || v > max) {
		if (base == 8)
			snprintf(why, why_len,
			         "mode '%.100s' out of range (%04" PRIo64 "..%04" PRIo64 ")", value,
			         (uint64_t)min, (uint64_t)max);
		else
			snprintf(why, why_len,
			         "value '%.100s' out of range (%" PRId64 "..%" PRId64 ")", value,
			         min, max);
		return CONFIG_VALUE_INVALID;
	}
	*out = (int)v;
	return CONFIG_VALUE_OK;
}

bool config_parse_bool(const char *value, bool *out)
{
	static const struct config_name names[] = {
	        {"1", 1},     {"0", 0},   {"on", 1}, {"off", 0}, {"true", 1},
	        {"false", 0}, {"yes", 1}, {"no", 0}, {NULL, 0},
	};

	for (const struct config_name *n = names; n->name; n++) {
		if (strcasecmp(n->name, value) == 0) {
			*out = n->value != 0;
			return true;
		}
	}
	return false;
}

/*
 * Seconds, possibly fractional, to microseconds. Parsed by hand rather than with strtod so the
 * result is exact ("0.1" is 100000) and does not depend on the locale's decimal point.
 * Digits past the microsecond are dropped.
 */
bool config_parse_time(const char *value, int64_t *out)
{
	const char *p = value;
	int64_t sec = 0, frac = 0;
	int n_frac = 0;
	bool digits = false;

	for (; config_is_digit(*p); p++) {
		digits = true;
		if (sec > (CONFIG_MAX_SECONDS - (*p - '0')) / 10)
			return false;
		sec = sec * 10 + (*p - '0');
	}
	if (*p == '.') {
		for (p++; config_is_digit(*p); p++) {
			digits = true;
			if (n_frac < 6) {
				frac = frac * 10 + (*p - '0');
				n_frac++;
			}
		}
	}
	if (!digits || *p != '\0')
		return false;
	for (; n_frac < 6; n_frac++)
		frac *= 10;
	*out = sec * CONFIG_USEC + frac;
	return true;
}

static bool config_lookup(const struct config_name *names, const char *value, int *out)
{
	for (; names->name; names++) {
		if (strcasecmp(names->name, value) == 0) {
			*out = names->value;
			return true;
		}
	}
	return false;
}

/* A value that must be one of names (case-insensitive); why lists the choices. */
static bool config_check_named(const struct config_name *names, const char *what, const char *value,
                               char *why, size_t why_len)
{
	int v;
	char choices[160];
	size_t n = 0;

	if (config_lookup(names, value, &v))
		return true;
	choices[0] = '\0';
	for (const struct config_name *c = names; c->name && n < sizeof(choices); c++) {
		const char *sep = c == names ? "" : c[1].name ? ", " : " or ";
		int w = snprintf(choices + n, sizeof(choices) - n, "%s%s", sep, c->name);
		n = w < 0 ? sizeof(choices) : n + (size_t)w;
	}
	snprintf(why, why_len, "invalid %s '%.100s' (use %s)", what, value, choices);
	return false;
}

enum config_value_result config_parse_pool_mode(const char *value, enum pool_mode *out, char *why,
                                                size_t why_len)
{
	int v;

	if (!config_lookup(config_pool_modes, value, &v)) {
		snprintf(why, why_len,
		         "invalid pool_mode '%.100s' (use session, transaction or statement)",
		         value);
		return CONFIG_VALUE_INVALID;
	}
	*out = (enum pool_mode)v;
	return CONFIG_VALUE_OK;
}

enum config_value_result config_parse_auth_type(const char *value, enum auth_type *out, char *why,
                                                size_t why_len)
{
	int v;

	if (config_lookup(config_auth_types, value, &v)) {
		*out = (enum auth_type)v;
		return CONFIG_VALUE_OK;
	}
	for (const char *const *u = config_unsupported_auth_types; *u; u++) {
		if (strcasecmp(*u, value) == 0) {
			snprintf(why, why_len,
			         "auth_type '%s' is not supported by pgtide (use trust, any, "
			         "plain, md5 "
			         "or scram-sha-256)",
			         value);
			return CONFIG_VALUE_INVALID;
		}
	}
	snprintf(why, why_len,
	         "invalid auth_type '%.100s' (use trust, any, plain, md5 or scram-sha-256)", value);
	return CONFIG_VALUE_INVALID;
}

bool config_check_error_kind_field(const char *value, char *why, size_t why_len)
{
	if (value[0] == '\0')
		return true;
	if (value[1] != '\0' || value[0] < '!' || value[0] > '~') {
		snprintf(why, why_len,
		         "error_kind_field must be empty or one printable ASCII character, got "
		         "'%.100s'",
		         value);
		return false;
	}
	if (strchr(config_pg_error_fields, value[0])) {
		snprintf(why, why_len,
		         "error_kind_field '%s' is an ErrorResponse field code PostgreSQL uses",
		         value);
		return false;
	}
	return true;
}

/* In enum config_syslog_facility's order. */
static const char *const config_syslog_facilities[] = {
        "auth",   "authpriv", "daemon", "user",   "local0", "local1",
        "local2", "local3",   "local4", "local5", "local6", "local7",
};

int config_syslog_facility(const char *name)
{
	for (size_t i = 0;
	     i < sizeof(config_syslog_facilities) / sizeof(config_syslog_facilities[0]); i++)
		if (name && strcasecmp(name, config_syslog_facilities[i]) == 0)
			return (int)i;
	return -1;
}

bool config_check_syslog_facility(const char *value, char *why, size_t why_len)
{
	if (config_syslog_facility(value) >= 0)
		return true;
	snprintf(why, why_len,
	         "invalid syslog facility '%.64s' (auth, authpriv, daemon, user, local0 .. local7)",
	         value);
	return false;
}

bool config_check_log_level(const char *value, char *why, size_t why_len)
{
	static const char *const levels[] = {"off", "debug", "log", "warning"};
	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
		if (strcasecmp(value, levels[i]) == 0)
			return true;
	snprintf(why, why_len, "invalid level '%.100s' (use off, debug, log or warning)", value);
	return false;
}

bool config_check_pin_mode(const char *value, char *why, size_t why_len)
{
	if (pin_mode_valid(value))
		return true;
	snprintf(why, why_len, "invalid pin_session_state '%.100s' (use on, off or error)", value);
	return false;
}

bool config_check_metrics_listen(const char *value, char *why, size_t why_len)
{
	char host[CONFIG_HOST_MAX];
	int port;
	if (!value[0] || config_split_host_port(value, host, sizeof(host), &port))
		return true;
	snprintf(why, why_len,
	         "invalid metrics_listen '%.100s' (use HOST:PORT, [IPv6]:PORT or *:PORT, or empty "
	         "for off)",
	         value);
	return false;
}

static const struct config_name config_sslmodes[] = {
        {"disable", CONFIG_SSLMODE_DISABLE},
        {"allow", CONFIG_SSLMODE_ALLOW},
        {"prefer", CONFIG_SSLMODE_PREFER},
        {"require", CONFIG_SSLMODE_REQUIRE},
        {"verify-ca", CONFIG_SSLMODE_VERIFY_CA},
        {"verify-full", CONFIG_SSLMODE_VERIFY_FULL},
        {NULL, 0},
};

bool config_sslmode_parse(const char *value, enum config_sslmode *out)
{
	int v;

	if (!value || !config_lookup(config_sslmodes, value, &v))
		return false;
	*out = (enum config_sslmode)v;
	return true;
}

bool config_check_sslmode(const char *value, char *why, size_t why_len)
{
	return config_check_named(config_sslmodes, "sslmode", value, why, why_len);
}

static const struct config_name config_dheparams_names[] = {
        {"none", CONFIG_DHE_NONE},
        {"auto", CONFIG_DHE_AUTO},
        {"legacy", CONFIG_DHE_LEGACY},
        {NULL, 0},
};

bool config_dheparams_parse(const char *value, enum config_dheparams *out)
{
	int v;

	if (!value || !config_lookup(config_dheparams_names, value, &v))
		return false;
	*out = (enum config_dheparams)v;
	return true;
}

bool config_check_dheparams(const char *value, char *why, size_t why_len)
{
	return config_check_named(config_dheparams_names, "client_tls_dheparams", value, why,
	                          why_len);
}

bool config_tls_protocols_parse(const char *value, unsigned *mask)
{
	static const struct config_name words[] = {
	        {"tlsv1.0", CONFIG_TLS_V1_0},
	        {"tlsv1.1", CONFIG_TLS_V1_1},
	        {"tlsv1.2", CONFIG_TLS_V1_2},
	        {"tlsv1.3", CONFIG_TLS_V1_3},
	        {"all", CONFIG_TLS_V1_0 | CONFIG_TLS_V1_1 | CONFIG_TLS_V1_2 | CONFIG_TLS_V1_3},
	        {"legacy", CONFIG_TLS_V1_0 | CONFIG_TLS_V1_1 | CONFIG_TLS_V1_2 | CONFIG_TLS_V1_3},
	        {"secure", CONFIG_TLS_V1_2 | CONFIG_TLS_V1_3},
	        {"default", CONFIG_TLS_V1_2 | CONFIG_TLS_V1_3},
	        {NULL, 0},
	};
	const unsigned every =
	        CONFIG_TLS_V1_0 | CONFIG_TLS_V1_1 | CONFIG_TLS_V1_2 | CONFIG_TLS_V1_3;
	unsigned m = 0;
	bool any = false;
	const char *p = value;

	if (!value)
		return false;
	for (;;) {
		char word[16];
		size_t n = 0;
		bool negate = false;
		int bits;

		while (*p == ',' || *p == ':' || config_is_space(*p))
			p++;
		if (!*p)
			break;
		if (*p == '!') {
			negate = true;
			p++;
		}
		while (*p && *p != ',' && *p != ':' && !config_is_space(*p)) {
			if (n + 1 >= sizeof(word))
				return false;
			word[n++] = *p++;
		}
		word[n] = '\0';
		if (!config_lookup(words, word, &bits))
			return false;
		/* "!tlsv1.0" alone means every version but that one, as in PgBouncer. */
		if (negate && !any)
			m = every;
		if (negate)
			m &= ~(unsigned)bits;
		else
			m |= (unsigned)bits;
		any = true;
	}
	if (m == 0)
		return false;
	*mask = m;
	return true;
}

bool config_check_tls_protocols(const char *value, char *why, size_t why_len)
{
	unsigned m;

	if (config_tls_protocols_parse(value, &m))
		return true;
	snprintf(why, why_len,
	         "invalid TLS protocol list '%.100s' (use tlsv1.0, tlsv1.1, tlsv1.2, "
	         "tlsv1.3, "
	         "secure, all or legacy)",
	         value);
	return false;
}

static const char *config_name_of(const struct config_name *names, int value)
{
	for (; names->name; names++) {
		if (names->value == value)
			return names->name;
	}
	return NULL;
}

const char *config_pool_mode_name(enum pool_mode m)
{
	const char *name = config_name_of(config_pool_modes, m);

	if (name)
		return name;
	return m == POOL_MODE_UNSET ? "unset" : "unknown";
}

const char *config_sslmode_name(enum config_sslmode m)
{
	const char *name = config_name_of(config_sslmodes, (int)m);

	return name ? name : "unknown";
}

const char *config_auth_type_name(enum auth_type t)
{
	const char *name = config_name_of(config_auth_types, (int)t);

	return name ? name : "unknown";
}
